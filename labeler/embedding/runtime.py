"""Runtimes the forward pass runs on: torch eager, or ONNX Runtime on the CPU (fp32 or int8).

ONNX Runtime's CPU execution provider runs the same network 2-3x faster than torch
eager on the CPUs measured (``benchmarks/bench_embed.py``). Every feature type is
one forward pass of one graph, so each is exported: ``'global'``, ``'multistage'``
(the pooled stage outputs are graph outputs like the last layer) and ``'multiscale'``
(one graph at the doubled input size; its base-size view is an antialiased 2x
downsampling written as a convolution, :func:`~labeler.embedding.local_features.halve`). The
``.onnx`` file is exported once per backbone, weights and feature type, with
``torch.onnx.export``, and cached in the user's cache directory (:func:`cache_dir`)
under the SHA-256 of the weights and the feature type's name. Before an exported
model is first used in a process, its features are compared with torch's on a probe
batch; below a cosine similarity of 0.999 (or when onnxruntime is not installed) the
run falls back to torch with a one-line message.

int8 (opt-in) is ONNX Runtime static quantisation (QDQ, per-channel int8 weights,
uint8 activations), calibrated on the collection's own images; it is accepted only
when its features keep a cosine similarity of at least 0.99 to fp32 on held-out
images of the collection (precision@10 on ELPV: ``benchmarks/bench_precision.py``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write
from ..errors import BadInputError
from .backbones import Backbone

__all__ = [
    "MIN_COSINE_FP32",
    "MIN_COSINE_INT8",
    "OrtEngine",
    "TorchEngine",
    "cache_dir",
    "cosine_rows",
    "int8_engine",
    "make_engine",
    "onnx_model",
    "onnx_path",
    "ort_available",
    "quantize_int8",
    "resolve_runtime",
    "weights_digest",
]

log = logging.getLogger(__name__)

#: An exported fp32 model is used only if every probe image's features keep this
#: cosine similarity to torch's (float32 reassociation gives ~0.99999).
MIN_COSINE_FP32 = 0.999
#: The int8 model's acceptance threshold against fp32 (issue 12).
MIN_COSINE_INT8 = 0.99
_OPSET = 17
_VERIFIED: dict[tuple[str, str], float] = {}  # (onnx path, precision) -> min cosine, this process


def ort_available() -> bool:
    """Whether ``onnxruntime`` can be imported."""
    return importlib.util.find_spec("onnxruntime") is not None


def cache_dir() -> Path:
    """Where exported models are cached: ``$LABELER_CACHE``, else the user cache dir + ``labeler``.

    ``platformdirs.user_cache_dir`` (``~/.cache/labeler`` on Linux, honouring
    ``XDG_CACHE_HOME``); created when missing.
    """
    env = os.environ.get("LABELER_CACHE")
    if env:
        d = Path(env).expanduser()
    else:
        try:
            from platformdirs import user_cache_dir

            d = Path(user_cache_dir("labeler"))
        except ImportError:
            d = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "labeler"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _unwrapped(name: str) -> str:
    """A state-dict key without the feature-type wrappers' ``base.`` prefixes."""
    while name.startswith("base."):
        name = name[len("base."):]
    return name


def weights_digest(backbone: Backbone) -> str:
    """SHA-256 over the model's parameters and buffers (names, shapes, bytes), 64 hex digits.

    Keys are taken without the ``base.`` prefix of the feature-type wrappers
    (:mod:`labeler.embedding.local_features`), which hold no weights of their own:
    every feature type of one backbone and weights has the same digest (the export's
    file name adds the type); a model with weights of its own (a fine-tuned tail)
    gets another.
    """
    from .registry import REGISTRY

    size = REGISTRY[backbone.name].input_size if backbone.name in REGISTRY else backbone.spec.input_size
    h = hashlib.sha256(f"{backbone.name}:{size}".encode())
    for name, t in sorted((_unwrapped(k), v) for k, v in backbone.model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b``: (N,) float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.where(den > 0, den, 1.0)


# ---------------------------------------------------------------------------
# engines: x (B, 3, S, S) float32 normalised -> (features (B, dim), logits (B, 1000))


class TorchEngine:
    """The backbone's torch model on ``device``, fp32 or bf16 autocast."""

    runtime = "torch"

    def __init__(self, backbone: Backbone, device: torch.device, precision: str = "fp32"):
        self.model = backbone.model.eval()
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        self.device = device
        self.precision = precision

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The contexts wrap each forward pass only: held across a ``yield`` they
        # would leak (they are thread-local) into the caller's code.
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.precision == "bf16"):
            f, logits = self.model(x.to(self.device, non_blocking=True))
            return f.float(), logits.float()


class OrtEngine:
    """An ONNX model on ONNX Runtime's CPU execution provider.

    Parameters
    ----------
    path : Path
        The ``.onnx`` file (input ``'input'`` (B, 3, S, S) float32; outputs
        ``'features'``, ``'logits'``).
    precision : {'fp32', 'int8'}
        What the model computes in (for the record).
    threads : int, optional
        Intra-op threads; default: the cores this process may use.
    """

    runtime = "onnxruntime"
    device = torch.device("cpu")

    def __init__(self, path: Path, precision: str = "fp32", threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or _cores()
        # Idle intra-op threads block instead of spinning (ORT session config key
        # "session.intra_op.allow_spinning"): the decoding workers share these cores.
        # Same run, 2 cores, 1 worker: ResNet-50 int8 69.8 -> 72.7 img/s (medians),
        # efficientnet-lite0 fp32 103.7 -> 119.9, ResNet-50 fp32 unchanged (24.4 / 24.3).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.path = Path(path)
        self.precision = precision

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        arr = np.ascontiguousarray(x.detach().to("cpu", memory_format=torch.contiguous_format).numpy(),
                                   dtype=np.float32)
        feats, logits = self.session.run(["features", "logits"], {"input": arr})
        return torch.from_numpy(feats), torch.from_numpy(logits)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------
# export, verification, quantisation


def onnx_path(backbone: Backbone) -> Path:
    """Where the fp32 export of ``backbone`` is cached.

    ``cache_dir()/onnx/<name>-<feature type>-<weights sha256[:16]>-fp32.onnx``: one
    file per backbone, weights and feature type (``backbone.features``).
    """
    digest = weights_digest(backbone)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in backbone.name.split(":size=")[0])[-80:]
    return cache_dir() / "onnx" / f"{stem}-{backbone.features}-{digest[:16]}-fp32.onnx"


def onnx_model(backbone: Backbone) -> Path:
    """The backbone, with its feature type, exported to ONNX (fp32), from the cache or exported now.

    Cached at :func:`onnx_path`; written atomically, so concurrent processes at worst
    export twice. The graph's outputs are ``features`` (B, ``backbone.dim``) and
    ``logits`` (B, 1000), its input ``input`` (B, 3, S, S) with S = ``backbone.input_size``.

    Raises
    ------
    RuntimeError
        The exporter failed (the caller falls back to torch).
    """
    path = onnx_path(backbone)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    model = backbone.model.eval().to("cpu")
    dummy = torch.zeros(2, 3, backbone.input_size, backbone.input_size)
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")  # the TorchScript exporter's constant-folding notes
        out = Path(tmp) / "model.onnx"
        torch.onnx.export(model, (dummy,), str(out), input_names=["input"], output_names=["features", "logits"],
                          dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=_OPSET, dynamo=False)
        with atomic_write(path) as f:
            f.write(out.read_bytes())
    return path


def verify(engine: OrtEngine, backbone: Backbone, probe: torch.Tensor, min_cosine: float,
           reference: np.ndarray | None = None) -> float:
    """Minimum cosine similarity of ``engine``'s features to torch fp32 on ``probe`` (cached per process).

    ``probe``: (B, 3, S, S) float32 network input; ``reference``: torch fp32 features
    of it when already computed.
    """
    key = (str(engine.path), engine.precision)
    if key in _VERIFIED:
        return _VERIFIED[key]
    if reference is None:
        reference = TorchEngine(backbone, torch.device("cpu"))(probe)[0].numpy()
    got = engine(probe)[0].numpy()
    cos = float(cosine_rows(got, reference).min())
    if cos >= min_cosine:
        _VERIFIED[key] = cos
    return cos


def quantize_int8(fp32_path: Path, calibration: np.ndarray, dest: Path, project=None) -> Path:
    """ONNX Runtime static quantisation of an exported model, calibrated on ``calibration``.

    QDQ format, per-channel symmetric int8 weights, uint8 activations with MinMax
    calibration (onnxruntime.quantization.quantize_static; ORT docs, "Quantize ONNX
    models"). ``calibration``: (N, 3, S, S) float32 network inputs from the
    collection's own images. ``project``: the project ``dest`` belongs to; the file is
    then recorded in its integrity manifest (:func:`labeler.integrity.write_tracked`)
    and :func:`int8_engine` checks it before use.

    Raises
    ------
    BadInputError
        ``calibration`` is empty.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise BadInputError("int8 calibration needs at least one decodable image")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": calibration[i:i + 16]} for i in range(0, len(calibration), 16)])

        def get_next(self):
            return next(self.batches, None)

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        out = Path(tmp) / "int8.onnx"
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
        if project is None:
            writer = atomic_write(dest)
        else:
            from ..integrity import write_tracked

            writer = write_tracked(project, dest)
        with writer as f:
            f.write(out.read_bytes())
    return dest


def int8_engine(project, path: Path | str) -> "OrtEngine":
    """The project's int8 model (:func:`quantize_int8`) on ONNX Runtime, after checking
    the file against the project's integrity manifest.

    Raises
    ------
    CorruptFileError
        The file is truncated, altered or swapped: one line naming it and the command
        that quantises it again.
    """
    from ..integrity import verify

    verify(project, path)
    return OrtEngine(Path(path), "int8")


def resolve_runtime(runtime: str, precision: str, device: str) -> str:
    """Which runtime ``runtime='auto'`` means here, after checking the combination.

    ``'auto'``: ONNX Runtime for fp32 and int8 on the CPU (measured faster:
    benchmarks/bench_embed.py), torch for bf16 and on GPUs.

    Raises
    ------
    BadInputError
        int8 without ONNX Runtime or off the CPU; bf16 with ONNX Runtime; unknown names.
    """
    from .registry import PRECISIONS, RUNTIMES

    if runtime not in RUNTIMES:
        raise BadInputError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
    if precision not in PRECISIONS:
        raise BadInputError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    cpu = torch.device(device).type == "cpu"
    if precision == "int8":
        if runtime == "torch" or not cpu:
            raise BadInputError("precision int8 runs on ONNX Runtime on the CPU: use --runtime auto "
                                "or onnxruntime and --device cpu")
        if not ort_available():
            raise BadInputError("precision int8 needs onnxruntime: pip install onnxruntime")
        return "onnxruntime"
    if precision == "bf16":
        if runtime == "onnxruntime":
            raise BadInputError("precision bf16 runs on torch: use --runtime auto or torch")
        return "torch"
    if runtime == "auto":
        return "onnxruntime" if cpu else "torch"
    if runtime == "onnxruntime" and not cpu:
        raise BadInputError("--runtime onnxruntime runs on the CPU here: use --device cpu")
    return runtime


def make_engine(backbone: Backbone, *, runtime: str = "torch", precision: str = "fp32", device: str = "cpu",
                probe: torch.Tensor | None = None, int8_model: Path | None = None,
                warn: Callable[[str], None] | None = None, project=None):
    """The engine that runs ``backbone``'s forward pass.

    Parameters
    ----------
    backbone : Backbone
    runtime : {'auto', 'torch', 'onnxruntime'}
    precision : {'fp32', 'bf16', 'int8'}
    device : str
        A device from :func:`labeler.embedding.device.pick_device`.
    probe : tensor (B, 3, S, S), float32, optional
        Network inputs to verify an ONNX model on before first use (default: 8
        fixed random images; callers pass real ones from the collection).
    int8_model : Path, optional
        A quantised model from :func:`quantize_int8` (required for int8).
    warn : callable, optional
        Receives the one-line fallback message (default ``logging.warning``).
    project : Project, optional
        The project ``int8_model`` belongs to: the file is checked against its
        integrity manifest first (:func:`int8_engine`).

    Returns
    -------
    TorchEngine or OrtEngine
        ``.runtime`` and ``.precision`` say what actually runs.

    Raises
    ------
    BadInputError
        A combination :func:`resolve_runtime` refuses, int8 without ``int8_model``,
        or an int8 model below :data:`MIN_COSINE_INT8` on the probe.
    CorruptFileError
        ``int8_model`` differs from what labeler wrote (with ``project``).
    """
    warn = warn or log.warning
    dev = torch.device(device)
    native = getattr(backbone.model, "native_runtime", None)
    if native is not None:  # a user's ONNX / TorchScript file runs as it is (labeler.embedding.byo)
        if precision == "int8" or (native == "onnxruntime" and precision != "fp32"):
            raise BadInputError(f"{backbone.name} runs on {native} in fp32" + ("" if native != "torch" else
                                                                              " or bf16"))
        engine = TorchEngine(backbone, dev, precision)
        engine.runtime = native
        return engine
    chosen = resolve_runtime(runtime, precision, device)
    if chosen == "torch":
        return TorchEngine(backbone, dev, precision)
    if not ort_available():
        warn("onnxruntime is not installed: embedding with torch (pip install onnxruntime for 2-3x on CPUs)")
        return TorchEngine(backbone, dev, precision)
    if probe is None:
        g = torch.Generator().manual_seed(0)
        s = backbone.input_size
        probe = torch.randn(8, 3, s, s, generator=g)
    if precision == "int8":
        if int8_model is None:
            raise BadInputError("precision int8 needs a model quantised on the collection (int8_model)")
        engine = OrtEngine(int8_model, "int8") if project is None else int8_engine(project, int8_model)
        cos = verify(engine, backbone, probe, MIN_COSINE_INT8)
        if cos < MIN_COSINE_INT8:
            raise BadInputError(f"int8 model of {backbone.name} keeps cosine {cos:.4f} < {MIN_COSINE_INT8} "
                                "to fp32 on this collection: use --precision fp32")
        return engine
    try:
        engine = OrtEngine(onnx_model(backbone), "fp32")
        cos = verify(engine, backbone, probe, MIN_COSINE_FP32)
    except Exception as e:  # exporter or runtime failure: torch still works
        warn(f"ONNX Runtime unavailable for {backbone.name} {backbone.features} features "
             f"({type(e).__name__}: {str(e)[:200]}): embedding with torch")
        return TorchEngine(backbone, dev, precision)
    if cos < MIN_COSINE_FP32:
        warn(f"ONNX model of {backbone.name} {backbone.features} features differs from torch "
             f"(cosine {cos:.5f} < {MIN_COSINE_FP32}): embedding with torch")
        return TorchEngine(backbone, dev, precision)
    return engine
