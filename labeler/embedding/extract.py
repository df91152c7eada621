"""Batched feature extraction: decode in DataLoader workers, overlapped with inference.

A bad file never aborts a run: it becomes a ``(id, reason)`` failure in the batch it
belongs to. Batches come out in the order of the input items, so the caller can
commit each to the database as it arrives and resume after an interruption.

Workers hand over uint8 (pixels or undecoded JPEG bytes, :mod:`.decode`); the main
process normalises on the device and runs the forward pass on an engine of
:mod:`.runtime` (torch, or ONNX Runtime on the CPU). On a GPU the copy of one
batch's results back to the host overlaps the next batch's work.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..errors import BadInputError
from .backbones import Backbone
from .decode import DECODES, DecodeTask, collate, to_device_input
from .device import pick_device
from .registry import VIEWS
from .runtime import make_engine, resolve_runtime

__all__ = ["EmbedBatch", "embed_files", "default_num_workers"]

#: Images a decoding worker prepares at a time (at most; a divisor of the batch size).
WORKER_CHUNK = 32


@dataclass
class EmbedBatch:
    """The outcome of one batch of :func:`embed_files`.

    Attributes
    ----------
    ids : ndarray of shape (B,), int64
        The caller's ids of the images that decoded (successes only, input order).
    features : ndarray of shape (B, dim), float32
        Backbone features (global-average-pooled penultimate layer).
    top1 : ndarray of shape (B,), int64
        ImageNet class index of the highest logit (``backbone.categories[i]``).
    top1_prob : ndarray of shape (B,), float32
        Its softmax probability.
    width, height : ndarray of shape (B,), int64
        Original image size in pixels, after EXIF orientation.
    failures : list of (int, str)
        ``(id, reason)`` for items of this batch that could not be used.
    """

    ids: np.ndarray
    features: np.ndarray
    top1: np.ndarray
    top1_prob: np.ndarray
    width: np.ndarray
    height: np.ndarray
    failures: list[tuple[int, str]]


_ALLOCATOR_TUNED = False


def _tune_glibc_malloc() -> None:
    """Stop glibc returning activation buffers to the OS after every forward pass.

    With glibc's default dynamic thresholds, each batch's large activation tensors
    are ``mmap``-ed and ``munmap``-ed (or trimmed) again, so every forward pass pays
    page faults. Fixing ``M_MMAP_THRESHOLD`` at its 32 MiB maximum and raising
    ``M_TRIM_THRESHOLD`` keeps freed memory for reuse (the effect of ``LD_PRELOAD``
    tcmalloc without asking the user). Measured +25 % img/s for ResNet-50 on 2 cores
    (benchmarks/bench_embed.py). Process-wide, once; no-op off glibc; opt out with
    ``LABELER_NO_MALLOPT=1``. Cost: up to ~1 GiB of freed heap kept by the process.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or os.environ.get("LABELER_NO_MALLOPT") or not sys.platform.startswith("linux"):
        return
    _ALLOCATOR_TUNED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        libc.mallopt(m_mmap_threshold, 32 << 20)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):  # musl or another libc
        pass


def default_num_workers() -> int:
    """Decoding processes: one fewer than the CPU cores (inference needs the rest), 1 to 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(8, cores - 1))


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar on stderr, or a no-op (tqdm is imported only when one is shown)."""
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc=desc, dynamic_ncols=True)


def embed_files(
    items: Sequence[tuple[int, Path]],
    backbone: Backbone,
    *,
    view: str = "whole",
    batch_size: int = 32,
    num_workers: int | None = None,
    device: str = "cpu",
    thumbs_dir: Path | None = None,
    progress: bool = True,
    precision: str = "fp32",
    runtime: str = "torch",
    engine=None,
    decode: str = "auto",
    warn=None,
) -> Iterator[EmbedBatch]:
    """Embed image files with a backbone, batch by batch, in input order.

    Worker processes decode each file with :func:`labeler.images.load_image` (JPEG
    draft at twice the input size), write its thumbnail and resize it, while the
    main process normalises and runs the model. With ``decode='device'`` the workers
    only validate JPEGs (at thumbnail scale) and hand over their bytes, which are
    decoded in batches on the device (:mod:`labeler.embedding.decode`).

    Parameters
    ----------
    items : sequence of (int, Path)
        ``(image id, absolute path)``.
    backbone : Backbone
        From :func:`labeler.embedding.load_backbone`; its model is moved to ``device``.
    view : {'whole', 'crop'}
        See :meth:`Backbone.preprocess`.
    batch_size : int, default 32
        Images per forward pass and per yielded batch.
    num_workers : int, optional
        Decoding processes; default :func:`default_num_workers` (1 on 2 cores).
        0 decodes in the calling process (no overlap).
    device : str, default 'cpu'
        Validated by :func:`pick_device`; ``'auto'`` chooses.
    thumbs_dir : Path, optional
        If given, ``thumbs_dir / f"{id}.jpg"`` is written for every decoded image.
    progress : bool, default True
        Show a tqdm bar (images/s, ETA) on stderr.
    precision : {'fp32', 'bf16', 'int8'}, default 'fp32'
        'bf16' runs the forward pass under ``torch.autocast`` in bfloat16 (opt-in:
        about 2x faster on CPUs with AVX-512 BF16; features are returned as float32
        and keep a cosine similarity of at least 0.99 to fp32, checked by
        ``benchmarks/bench_precision.py``). 'int8' needs an ``engine`` from
        :func:`labeler.embedding.runtime.make_engine`.
    runtime : {'torch', 'onnxruntime', 'auto'}, default 'torch'
        Ignored when ``engine`` is given. ONNX Runtime models are verified against
        torch on the first batch before use (fallback: torch, one line to ``warn``).
    engine : TorchEngine or OrtEngine, optional
        A ready engine (it fixes runtime, precision and device).
    decode : {'auto', 'cpu', 'device'}, default 'auto'
        Where JPEGs are decoded; 'auto' = on the device when it is a GPU.
    warn : callable, optional
        Receives one-line fallback messages.

    Yields
    ------
    EmbedBatch
        One per ``batch_size`` items, even when every item in it failed.

    Raises
    ------
    BadInputError
        Unknown ``view``, ``precision``, ``runtime`` or ``decode``, ``batch_size < 1``,
        an unavailable ``device``, or a refused runtime/precision combination.
    """
    if view not in VIEWS:
        raise BadInputError(f"unknown view {view!r}; expected one of {VIEWS}")
    if batch_size < 1:
        raise BadInputError(f"batch_size must be >= 1, got {batch_size}")
    if decode not in DECODES:
        raise BadInputError(f"unknown decode {decode!r}; expected one of {DECODES}")
    dev = engine.device if engine is not None else torch.device(pick_device(device))
    if engine is None:
        runtime = resolve_runtime(runtime, precision, str(dev))
        if precision == "int8":
            raise BadInputError("precision int8 needs an engine from labeler.embedding.runtime.make_engine")
        if runtime == "torch":
            engine = make_engine(backbone, runtime="torch", precision=precision, device=str(dev))
    if num_workers is None:
        num_workers = default_num_workers()
    if thumbs_dir is not None:
        thumbs_dir = Path(thumbs_dir)
        thumbs_dir.mkdir(parents=True, exist_ok=True)
    if not items:
        return
    on_device = decode == "device" or (decode == "auto" and dev.type == "cuda")
    # Workers decode in chunks that divide the batch: many workers share one large
    # GPU batch (a worker filling 256 images alone leaves the others idle and the
    # first batch late); the main process joins the chunks on the device.
    chunk = max(d for d in range(1, min(batch_size, WORKER_CHUNK) + 1) if batch_size % d == 0)
    loader = DataLoader(
        DecodeTask(items, backbone.spec, view, thumbs_dir, device_jpeg=on_device),
        batch_size=chunk,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=dev.type == "cuda",
        prefetch_factor=max(2, 2 * batch_size // chunk // max(1, num_workers)) if num_workers else None,
        persistent_workers=False,
    )
    if dev.type == "cpu":
        _tune_glibc_malloc()
    bar = _progress_bar(len(items), f"embed {backbone.name}", progress)
    pending, parts, n_parts = None, [], 0
    try:
        for i, batch in enumerate(loader):
            # ONNX Runtime takes NCHW; torch's convolutions prefer channels_last (backbones.py).
            x, keep, lost = to_device_input(batch, backbone.spec, view, dev,
                                            channels_last=getattr(engine, "runtime", None) != "onnxruntime")
            if engine is None:  # ONNX Runtime, verified on this first batch of real images
                engine = make_engine(backbone, runtime=runtime, precision=precision, device=str(dev),
                                     probe=x[:8] if x is not None else None, warn=warn)
            # The batch rides along until its results are on the host: its pinned buffers
            # may still feed asynchronous copies and nvJPEG until then (freed early, they
            # were reused under them: corrupted rows on an H200).
            parts.append((batch.ids[keep], batch.width[keep], batch.height[keep], batch.failures + lost, x, batch))
            n_parts += len(batch.ids) + len(batch.failures)
            if n_parts < batch_size and (i + 1) * chunk < len(items):
                continue
            launched = _launch(engine, parts, backbone.dim)
            parts, n_parts = [], 0
            if pending is not None:
                out = _finish(pending)
                bar.update(len(out.ids) + len(out.failures))
                yield out
            pending = launched
        if pending is not None:
            out = _finish(pending)
            bar.update(len(out.ids) + len(out.failures))
            yield out
    finally:
        bar.close()


def _launch(engine, parts, dim: int):
    """Join decoded chunks, start the forward pass and the copy of its results to the host
    (asynchronous on a GPU: the next chunks are decoded meanwhile)."""
    ids = np.concatenate([p[0] for p in parts])
    w = np.concatenate([p[1] for p in parts])
    h = np.concatenate([p[2] for p in parts])
    failures = [f for p in parts for f in p[3]]
    xs = [p[4] for p in parts if p[4] is not None]
    keepalive = [p[5] for p in parts]
    if not xs:
        return ids, w, h, failures, dim, None, keepalive
    feats, logits = engine(torch.cat(xs) if len(xs) > 1 else xs[0])
    prob, top = torch.softmax(logits.float(), dim=1).max(dim=1)
    tensors = [t.to("cpu", non_blocking=True) for t in (feats.float(), top, prob)]
    event = None
    if feats.device.type == "cuda":
        event = torch.cuda.Event()
        event.record()
    return ids, w, h, failures, tensors, event, keepalive


def _finish(launched) -> EmbedBatch:
    ids, w, h, failures, tensors, event, _keepalive = launched
    if isinstance(tensors, int):  # nothing in this batch decoded; ``tensors`` is the feature dim
        return EmbedBatch(ids=ids, features=np.zeros((0, tensors), np.float32), top1=np.zeros(0, np.int64),
                          top1_prob=np.zeros(0, np.float32), width=w, height=h, failures=failures)
    if event is not None:
        event.synchronize()
    feats, top, prob = (t.numpy() for t in tensors)
    return EmbedBatch(ids=ids, features=np.ascontiguousarray(feats, dtype=np.float32),
                      top1=top.astype(np.int64), top1_prob=prob.astype(np.float32),
                      width=w, height=h, failures=failures)
