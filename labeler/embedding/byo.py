"""Bring your own backbone: an ONNX file, a TorchScript file or a timm architecture by name.

A backbone of the user's own is named like a registry backbone, as one ``--backbone`` value
(so ``labeler.toml`` and the project's metadata keep it whole, and ``labeler search`` of a new
photo re-loads the same model with no other setting)::

    onnx:FILE[:size=S][:mean=R,G,B][:std=R,G,B]         run by ONNX Runtime (CPU)
    torchscript:FILE[:size=S][:mean=R,G,B][:std=R,G,B]  torch.jit.load, run by torch
    timm:ARCH[:size=S][:mean=...][:std=...]             timm.create_model(ARCH, num_classes=0)

A file path is made absolute when the project records it
(:func:`~labeler.embedding.registry.normalise_backbone_name`); the file's SHA-256 is kept
in the project's metadata as its weights id. ``mean``/``std`` are in 0..1 units (as
torchvision and timm give them), one value or three (RGB).

Input size and normalisation, the first found wins:

- the name's options (``:size=224:mean=0.5:std=0.5``);
- what the model says: an ONNX file's ``metadata_props`` (keys ``labeler.input_size``,
  ``labeler.mean``, ``labeler.std``: ``"224"``, ``"0.485,0.456,0.406"``) or its input's
  static height; a TorchScript file's extra file ``labeler.json``
  (``{"input_size": 224, "mean": [...], "std": [...]}``, ``torch.jit.save(m, f,
  _extra_files=...)``); timm's pretrained config (``resolve_model_data_config``);
- 224 px and ImageNet's mean and std.

The model's output is the embedding: the first output (of a tuple, list or dict),
average-pooled over height and width when it is 4-D, flattened when it has more than two
dimensions. A user's model gives no ImageNet classes: the project gets no ImageNet hints.
Only the ``'global'`` feature type (the model's own output) and fp32/bf16 exist for them.

timm's pretrained weights download (Hugging Face hub) where a network exists; ``--weights
FILE`` (a state dict of the same architecture, e.g. ``torch.save(model.state_dict(), f)``)
works offline, its classifier keys ignored. A missing ``timm`` or ``onnxruntime`` raises one
line naming ``pip install 'labeler[models]'``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import BadInputError, WeightsNotFoundError
from .weights_file import file_sha256, read_state_dict
from .registry import IMAGENET_MEAN, IMAGENET_STD, BackboneSpec, normalise_backbone_name, parse_byo

__all__ = ["MODELS_EXTRA", "EmbeddingModel", "OrtModule", "load_byo", "pooled", "require"]

#: What to install for timm and open_clip (pyproject.toml's optional extra).
MODELS_EXTRA = "pip install 'labeler[models]'"
#: The input side when neither the name, nor the model, nor its config says one.
DEFAULT_SIZE = 224
#: Seconds before a hung timm weights download is abandoned.
DOWNLOAD_TIMEOUT_S = 20.0


def require(module: str, what: str) -> None:
    """Raise one line naming the extra to install when ``module`` cannot be imported.

    Raises
    ------
    BadInputError
        ``module`` is not installed.
    """
    if importlib.util.find_spec(module) is None:
        raise BadInputError(f"{what} needs the {module} package: {MODELS_EXTRA}")


def pooled(out) -> torch.Tensor:
    """A model's output as (B, D) float32: the first of a tuple/list/dict, average-pooled over
    H and W when 4-D, flattened beyond 2-D."""
    if isinstance(out, dict):
        out = out.get("features", out.get("embedding", next(iter(out.values()))))
    if isinstance(out, (tuple, list)):
        out = out[0]
    if out.ndim == 4:
        out = out.float().mean(dim=(2, 3))
    elif out.ndim > 2:
        out = out.flatten(1)
    elif out.ndim == 1:
        out = out[:, None]
    return out.float()


class EmbeddingModel(nn.Module):
    """``model(x) -> (features (B, D), logits (B, 1) zeros)``: the shape
    :func:`~labeler.embedding.extract.embed_files` expects, for a network without ImageNet
    classes. ``native_runtime``: the runtime it must run on (None: any, so it may be
    exported to ONNX Runtime like a registry backbone)."""

    def __init__(self, net: nn.Module, native_runtime: str | None = None):
        super().__init__()
        self.net = net
        self.native_runtime = native_runtime

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = pooled(self.net(x))
        return f, f.new_zeros(f.shape[0], 1)


class OrtModule(nn.Module):
    """An ONNX file on ONNX Runtime's CPU provider, behind a torch module's call: ``x`` (B, 3,
    S, S) float32 -> its first output. Models exported with a fixed batch of 1 run image by
    image. The zero-size parameter only tells callers which device the inputs come from."""

    def __init__(self, path: Path):
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name, self.input_shape = inp.name, list(inp.shape)
        self.output_name = self.session.get_outputs()[0].name
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map or {})
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        if isinstance(self.input_shape[0], int) and self.input_shape[0] != len(arr):
            outs = [self.session.run([self.output_name], {self.input_name: arr[i:i + 1]})[0] for i in range(len(arr))]
            return torch.from_numpy(np.concatenate(outs))
        return torch.from_numpy(self.session.run([self.output_name], {self.input_name: arr})[0])


def _numbers(value, what: str, n: int | None = None) -> tuple[float, ...]:
    vals = value if isinstance(value, (list, tuple)) else str(value).replace(" ", "").split(",")
    try:
        out = tuple(float(v) for v in vals)
    except ValueError:
        raise BadInputError(f"{what}: {value!r} is not a list of numbers") from None
    if n == 3 and len(out) == 1:
        out = out * 3
    if n is not None and len(out) != n:
        raise BadInputError(f"{what}: expected {n} numbers, got {value!r}")
    return out


def _preprocessing(name: str, options: dict, said: dict, shape_size: int | None) -> tuple[int, tuple, tuple, str]:
    """(input size, mean, std in 0..1 units, where they came from): options, then what the
    model ``said``, then its input shape, then the defaults."""
    size = options.get("size") or said.get("input_size") or shape_size or DEFAULT_SIZE
    size = int(float(size if not isinstance(size, (list, tuple)) else size[-1]))
    if shape_size is not None and size != shape_size:
        raise BadInputError(f"backbone {name}: its input is {shape_size} px square, not {size}")
    mean = _numbers(options.get("mean") or said.get("mean") or IMAGENET_MEAN, f"{name} mean", 3)
    std = _numbers(options.get("std") or said.get("std") or IMAGENET_STD, f"{name} std", 3)
    if min(std) <= 0:
        raise BadInputError(f"backbone {name}: std must be positive, got {std}")
    size_from = ("the name" if options.get("size") else "the model" if said.get("input_size") else
                 "its input shape" if shape_size else "the default")
    norm_from = ("the name" if options.get("mean") or options.get("std") else
                 "the model" if said.get("mean") or said.get("std") else "ImageNet's defaults")
    return size, mean, std, f"size from {size_from}, mean/std from {norm_from}"


def _spec(name: str, size: int, mean, std, dim: int, crop_pct: float, source: str, origin: str,
          requires: tuple[str, ...]) -> BackboneSpec:
    return BackboneSpec(
        name=name, build=_no_build, weights=None, input_size=size, dim=dim,
        mean=tuple(255.0 * m for m in mean), std=tuple(255.0 * s for s in std),
        crop_short_side=int(round(size / crop_pct)),
        normalisation=f"normalise mean {tuple(round(m, 4) for m in mean)} std {tuple(round(s, 4) for s in std)} "
                      f"(0..1 units, from {origin})",
        gmacs=0.0, source=source, requires=requires, pip_extra=MODELS_EXTRA)


def _no_build():
    raise BadInputError("a bring-your-own backbone is loaded by labeler.embedding.byo.load_byo")


def _file(kind: str, target: str) -> Path:
    path = Path(target).expanduser()
    if not path.is_file():
        raise BadInputError(f"{kind} backbone file not found: {path}")
    return path


def _finish(name: str, net: nn.Module, size: int, mean, std, origin: str, *, weights_id: str, weights_source: str,
            source: str, requires: tuple[str, ...], device: str, crop_pct: float = 0.875) -> dict:
    net = net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    native = "onnxruntime" if isinstance(net, OrtModule) else ("torch" if isinstance(net, torch.jit.ScriptModule)
                                                              else None)
    model = EmbeddingModel(net, native).eval()
    if native != "onnxruntime":
        model = model.to(device)
    try:
        with torch.inference_mode():
            dim = int(model(torch.zeros(2, 3, size, size, device=device))[0].shape[1])
    except Exception as e:
        raise BadInputError(f"backbone {name} does not run on a (2, 3, {size}, {size}) input: "
                            f"{type(e).__name__}: {str(e)[:300]}") from None
    spec = _spec(name, size, mean, std, dim, crop_pct, source, origin, requires)
    return dict(name=name, dim=dim, input_size=size, weights_id=weights_id, weights_source=weights_source,
                model=model, categories=[], spec=spec)


def _load_onnx(name: str, target: str, options: dict, device: str) -> dict:
    require("onnxruntime", "an ONNX backbone")
    path = _file("onnx", target)
    try:
        net = OrtModule(path)
    except Exception as e:  # onnxruntime's own error types for a bad file
        raise BadInputError(f"cannot load {path} with ONNX Runtime: {str(e).splitlines()[0][:300]}") from None
    said = {k.split(".", 1)[1]: v for k, v in net.metadata.items() if k.startswith("labeler.")}
    shape = net.input_shape
    if len(shape) != 4:
        raise BadInputError(f"{path}: expected an image input (N, 3, H, W), got shape {shape}")
    h, w = shape[2], shape[3]
    static = h if isinstance(h, int) and isinstance(w, int) else None
    if static is not None and h != w:
        raise BadInputError(f"{path}: labeler feeds square images; the model's input is {h}x{w}")
    size, mean, std, origin = _preprocessing(name, options, said, static)
    digest = file_sha256(path)
    return _finish(name, net, size, mean, std, origin, weights_id=f"{path.name} sha256:{digest[:12]}",
                   weights_source=str(path), source=f"ONNX file {path.name}", requires=("onnxruntime",),
                   device=device)


def _load_torchscript(name: str, target: str, options: dict, device: str) -> dict:
    path = _file("torchscript", target)
    extra = {"labeler.json": ""}
    try:
        net = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as e:
        raise BadInputError(f"cannot load {path} as TorchScript (torch.jit.save): {str(e).splitlines()[0][:300]}"
                            ) from None
    said = {}
    if extra["labeler.json"]:
        try:
            said = dict(json.loads(extra["labeler.json"]))
        except (ValueError, TypeError):
            raise BadInputError(f"{path}: its labeler.json extra file is not a JSON object") from None
    size, mean, std, origin = _preprocessing(name, options, said, None)
    digest = file_sha256(path)
    return _finish(name, net, size, mean, std, origin, weights_id=f"{path.name} sha256:{digest[:12]}",
                   weights_source=str(path), source=f"TorchScript file {path.name}", requires=(), device=device)


def _load_timm(name: str, arch: str, options: dict, weights: Path | None, device: str, download: bool) -> dict:
    require("timm", "a timm backbone")
    import timm

    try:
        net = timm.create_model(arch, pretrained=False, num_classes=0)
    except RuntimeError as e:  # timm: "Unknown model (...)"
        raise BadInputError(f"timm has no architecture {arch!r} ({e}); `timm.list_models()` lists them") from None
    if weights is not None:
        sd = read_state_dict(weights)
        missing, unexpected = net.load_state_dict(sd, strict=False)
        head = str(net.pretrained_cfg.get("classifier") or "fc")
        unexpected = [k for k in unexpected if not k.startswith(head + ".")]
        if missing or unexpected:
            raise BadInputError(f"weights {weights} do not fit timm {arch}: missing {missing[:5]}, "
                                f"unexpected {unexpected[:5]}")
        wid, src = f"user weights {weights.name} sha256:{file_sha256(weights)[:12]}", str(weights)
    else:
        if not download:
            raise WeightsNotFoundError(f"timm {arch}: give its weights with --weights FILE (downloads disabled)")
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            net = timm.create_model(arch, pretrained=True, num_classes=0)
        except Exception as e:  # no network, no such pretrained tag, hub errors
            raise WeightsNotFoundError(
                f"timm could not get pretrained weights for {arch} ({type(e).__name__}: {str(e).splitlines()[0][:200]})."
                f" Give a local checkpoint with --weights FILE (a state dict of timm's {arch}), or run once with a "
                "network so timm downloads them into the Hugging Face cache") from None
        finally:
            socket.setdefaulttimeout(old)
        tag = net.pretrained_cfg.get("tag") or ""
        wid, src = f"timm {arch}{'.' + tag if tag else ''} pretrained", f"timm: {net.pretrained_cfg.get('hf_hub_id') or arch}"
    cfg = timm.data.resolve_model_data_config(net)
    said = {"input_size": cfg["input_size"][-1], "mean": cfg["mean"], "std": cfg["std"]}
    size, mean, std, origin = _preprocessing(name, options, said, None)
    origin = origin.replace("the model", "timm's pretrained config")
    net = net.to(memory_format=torch.channels_last)
    return _finish(name, net, size, mean, std, origin, weights_id=wid, weights_source=src,
                   source=f"timm {arch} (timm {timm.__version__})", requires=("timm",), device=device,
                   crop_pct=float(cfg.get("crop_pct") or 0.875))


def load_byo(name: str, *, weights: str | Path | None = None, device: str = "cpu", download: bool = True) -> dict:
    """Load a backbone of the user's own by its name (see the module docstring).

    Parameters
    ----------
    name : str
        ``onnx:FILE``, ``torchscript:FILE`` or ``timm:ARCH``, with optional ``:size=``,
        ``:mean=``, ``:std=``.
    weights : str or Path, optional
        timm only: a state dict file (``--weights`` / ``LABELER_WEIGHTS``).
    device : str
        A resolved torch device (ONNX files run on the CPU whatever it is).
    download : bool
        Let timm download pretrained weights.

    Returns
    -------
    dict
        The fields of a :class:`~labeler.embedding.backbones.Backbone` (which
        :func:`~labeler.embedding.backbones.load_backbone` makes of them): ``name`` normalised
        (files absolute), ``categories`` empty; its feature type is 'global'.

    Raises
    ------
    BadInputError
        A malformed name, a missing or unreadable file, an unknown timm architecture, a
        missing extra (one line naming ``pip install 'labeler[models]'``), weights given
        for a file backbone, or weights that do not fit.
    WeightsNotFoundError
        timm's pretrained weights cannot be had and no ``weights`` file was given.
    """
    name = normalise_backbone_name(name)
    kind, target, options = parse_byo(name)
    env = os.environ.get("LABELER_WEIGHTS") or None
    if kind != "timm":
        if weights is not None:
            raise BadInputError(f"--weights is for registry and timm backbones: a {kind} file holds its weights")
        if kind == "onnx":
            return _load_onnx(name, target, options, device)
        return _load_torchscript(name, target, options, device)
    wfile = weights if weights is not None else env
    if wfile is not None:
        wfile = Path(wfile).expanduser()
        if not wfile.is_file():
            raise BadInputError(f"weights file not found: {wfile}")
    return _load_timm(name, target, options, wfile, device, download)
