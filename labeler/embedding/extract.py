"""Batched feature extraction: decode in DataLoader workers, overlapped with inference.

A bad file never aborts a run: it becomes a ``(id, reason)`` failure in the batch it
belongs to. Batches come out in the order of the input items, so the caller can
commit each to the database as it arrives and resume after an interruption.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .. import images
from ..errors import BadInputError
from .backbones import Backbone
from .device import pick_device
from .registry import PRECISIONS, VIEWS

__all__ = ["EmbedBatch", "embed_files", "default_num_workers"]


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


class _Decode(Dataset):
    """Item i -> (id, tensor or None, width, height, failure reason or None)."""

    def __init__(self, items, preprocessor: Backbone, view: str, thumbs_dir: Path | None):
        self.items = list(items)
        self.pre = preprocessor
        self.view = view
        self.thumbs_dir = thumbs_dir
        side = 2 * preprocessor.input_size  # libjpeg draft: decode no smaller than 2x the input
        self.draft = (side, side)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        image_id, path = self.items[i]
        try:
            img = images.load_image(Path(path), draft_size=self.draft)
        except images.BadImageError as e:
            return image_id, None, 0, 0, str(e)
        except Exception as e:  # whatever else an odd file provokes in a decoder
            return image_id, None, 0, 0, f"cannot decode: {type(e).__name__}: {e}"
        w, h = img.info.get(images.ORIGINAL_SIZE_KEY, img.size)
        if self.thumbs_dir is not None:
            # Not caught: failing to write into the project (disk full) is no bad file.
            images.make_thumbnail(img, self.thumbs_dir / f"{image_id}.jpg")
        try:
            x = self.pre.preprocess(img, self.view)
        except Exception as e:
            return image_id, None, 0, 0, f"preprocessing failed: {type(e).__name__}: {e}"
        return image_id, x, int(w), int(h), None


def _collate(samples):
    ok = [s for s in samples if s[1] is not None]
    x = torch.stack([s[1] for s in ok]) if ok else None
    return (
        np.array([s[0] for s in ok], dtype=np.int64),
        x,
        np.array([s[2] for s in ok], dtype=np.int64),
        np.array([s[3] for s in ok], dtype=np.int64),
        [(int(s[0]), s[4]) for s in samples if s[1] is None],
    )


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
) -> Iterator[EmbedBatch]:
    """Embed image files with a backbone, batch by batch, in input order.

    Worker processes decode each file with :func:`labeler.images.load_image` (JPEG
    draft at twice the input size), write its thumbnail, and preprocess it, while
    the main process runs the model under ``torch.inference_mode``.

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
    precision : {'fp32', 'bf16'}, default 'fp32'
        'bf16' runs the forward pass under ``torch.autocast`` in bfloat16 (opt-in:
        about 2x faster on CPUs with AVX-512 BF16; features are returned as float32
        and keep a cosine similarity of at least 0.99 to fp32, checked by
        ``benchmarks/bench_precision.py``).

    Yields
    ------
    EmbedBatch
        One per ``batch_size`` items, even when every item in it failed.

    Raises
    ------
    BadInputError
        Unknown ``view`` or ``precision``, ``batch_size < 1``, or an unavailable ``device``.
    """
    if precision not in PRECISIONS:
        raise BadInputError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if view not in VIEWS:
        raise BadInputError(f"unknown view {view!r}; expected one of {VIEWS}")
    if batch_size < 1:
        raise BadInputError(f"batch_size must be >= 1, got {batch_size}")
    dev = torch.device(pick_device(device))
    if num_workers is None:
        num_workers = default_num_workers()
    if thumbs_dir is not None:
        thumbs_dir = Path(thumbs_dir)
        thumbs_dir.mkdir(parents=True, exist_ok=True)
    if not items:
        return
    # Workers get the preprocessing recipe only, not the (large) model.
    recipe = backbone.recipe()
    loader = DataLoader(
        _Decode(items, recipe, view, thumbs_dir),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=dev.type == "cuda",
        prefetch_factor=2 if num_workers else None,
        persistent_workers=False,
    )
    if dev.type == "cpu":
        _tune_glibc_malloc()
    model = backbone.model.eval()
    if next(model.parameters()).device != dev:
        model.to(dev)
    bar = _progress_bar(len(items), f"embed {backbone.name}", progress)
    try:
        # The contexts wrap each forward pass only: held across a ``yield`` they
        # would leak (they are thread-local) into the caller's code.
        bf16 = precision == "bf16"
        for ids, x, w, h, failures in loader:
            if x is None:
                feats = np.zeros((0, backbone.dim), np.float32)
                top1, prob = np.zeros(0, np.int64), np.zeros(0, np.float32)
            else:
                with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    f, logits = model(x.to(dev, non_blocking=True))
                    p, top = torch.softmax(logits.float(), dim=1).max(dim=1)
                    feats = f.float().cpu().numpy()
                    top1, prob = top.cpu().numpy().astype(np.int64), p.cpu().numpy().astype(np.float32)
            bar.update(len(ids) + len(failures))
            yield EmbedBatch(ids=ids, features=feats, top1=top1, top1_prob=prob,
                             width=w, height=h, failures=failures)
    finally:
        bar.close()
