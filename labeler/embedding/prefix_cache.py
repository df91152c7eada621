"""The fine-tuning's frozen prefix and its cache of stage maps on disk.

The fine-tuning (:mod:`labeler.embedding.finetune`) trains only the stages after the
last stride-16 block of an EfficientNet-Lite (the *tail*); everything before it (stem ..
last stride-16 block, the *prefix*) keeps the backbone's ImageNet weights. Its output
for an image (for Lite0 at 224 px: 112 x 14 x 14 values, 43 KB in float16) therefore
never changes, and running it is most of the network's cost. So each project keeps,
per (backbone weights, prefix end, input size, view):

* ``cache/prefix-<key>.npy``: the prefix maps of **every** image, float16,
  (n_rows, C, h, w), row order = ``images.row``; read memory-mapped. Re-embedding after
  a press runs only the tail on them; the training reads the labelled images' rows.
* ``cache/prefix-<key>-d4.npy``: the maps of the 7 other symmetries of the square
  (:func:`d4`) of the images trained on so far, (m, 7, C, h, w), the recipe's
  augmentation: the prefix runs on the transformed image (transforming the cached map
  instead was measured worse, see finetune's docstring).

Each has a ``.sig.npy`` beside it: per row the image id and the first 60 bits of its
content hash when the row was computed (id -1: not computed). A row is reused only if
both still match, so new images (ingest) are computed incrementally, a replaced file
is computed again and an unreadable image is retried on the next press. Other weights,
another input size or prefix end give another key (another file). Files are written
whole and renamed into place (:func:`labeler.atomic.atomic_write`), data before
signature, so an interrupted write leaves the old cache or rows marked not computed.

Size: n x C x h x w x 2 bytes (ELPV's 2,624 images with Lite0 at 224 px: 115 MB;
100k images: 4.4 GB). Before writing, the size is checked against a budget
(``budget_gb``, default :data:`DEFAULT_BUDGET_GB` or ``$LABELER_PREFIX_CACHE_GB``) and the
free disk space; when it does not fit the press stops with a one-line message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write
from ..errors import BadInputError

__all__ = ["DEFAULT_BUDGET_GB", "PrefixCache", "d4", "drop_prefix_caches", "open_prefix_cache", "prefix_end",
           "run_prefix"]

#: Disk the prefix caches of one project may take by default (GiB); ``$LABELER_PREFIX_CACHE_GB`` overrides.
DEFAULT_BUDGET_GB = 20.0


def d4(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 symmetries of the square applied to (..., H, W): rotate by ``k % 4``
    quarter turns, then mirror left-right when ``k >= 4``.

    Same result as ``torch.rot90(x, k % 4, dims=(-2, -1))`` (then ``flip``), written with
    flips and transposes so that it exports to ONNX (``aten::rot90`` does not)."""
    r = k % 4
    if r == 1:
        x = x.flip(-1).transpose(-2, -1)
    elif r == 2:
        x = x.flip(-2).flip(-1)
    elif r == 3:
        x = x.flip(-2).transpose(-2, -1)
    return x.flip(-1) if k >= 4 else x


def prefix_end(net: nn.Module, stride_end: int = 16) -> int:
    """Index of the last block of ``net`` (EfficientNet) at stride ``stride_end``."""
    stride, last = 2, None
    for i, block in enumerate(net._blocks):
        s = block._block_args.stride
        stride *= int(s[0] if isinstance(s, (list, tuple)) else s)
        if stride == stride_end:
            last = i
    return last


def run_prefix(net: nn.Module, x: torch.Tensor, end: int) -> torch.Tensor:
    """The frozen prefix (stem .. block ``end``) on a batch of network inputs."""
    h = net._swish(net._bn0(net._conv_stem(x)))
    for block in net._blocks[: end + 1]:
        h = block(h)
    return h


class _PrefixMaps(nn.Module):
    """The frozen prefix as an engine model: ``forward(x) -> (maps (B, C*h*w), pooled (B, C))``.

    In the ``(features, logits)`` shape of :mod:`labeler.embedding.runtime`'s engines, so
    the prefix runs on ONNX Runtime on the CPU (exported, checked against torch to cosine
    >= 0.999 like any backbone, torch otherwise): it is most of the stage-map work.
    """

    def __init__(self, net: nn.Module, end: int):
        super().__init__()
        self.net, self.end = net, end

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = run_prefix(self.net, x.contiguous(memory_format=torch.channels_last), self.end)
        return h.flatten(1), h.mean(dim=(2, 3))


def map_shape(bb, net: nn.Module, end: int) -> tuple[int, int, int]:
    """(C, h, w) of the prefix's maps at ``bb.input_size``.

    Measured, not ceil(size / stride): the convolutions' padding is fixed for the
    backbone's own size (TF "same" padding of efficientnet-lite-pytorch), so another
    size can come out one smaller (300 px -> 18 at stride 16, not 19)."""
    s = bb.input_size
    with torch.inference_mode():
        c, h, w = run_prefix(net, torch.zeros(1, 3, s, s, device=next(net.parameters()).device), end).shape[1:]
    return int(c), int(h), int(w)


def prefix_backbone(bb, net: nn.Module, end: int):
    """``bb`` with the prefix as its model (features = the flattened maps)."""
    from .registry import get_spec

    c, h, w = map_shape(bb, net, end)
    size = "" if bb.input_size == get_spec(bb.name).input_size else f"-{bb.input_size}px"  # exports cached by name
    return dataclasses.replace(bb, model=_PrefixMaps(net, end).eval(), dim=c * h * w, features=f"prefix{end}{size}")


def prefix_engine(bb, net: nn.Module, end: int, probe: torch.Tensor, dev: torch.device, say):
    """The engine computing the prefix's maps (ONNX Runtime on the CPU, checked), and their (C, h, w)."""
    from .runtime import make_engine

    pbb = prefix_backbone(bb, net, end)
    return make_engine(pbb, runtime="auto", device=str(dev), probe=probe, warn=say), map_shape(bb, net, end)


def _sig(rows) -> np.ndarray:
    """(n, 2) int64: image id, first 60 bits of the content hash (0 without one)."""
    out = np.zeros((len(rows), 2), np.int64)
    for i, r in enumerate(rows):
        h = r["hash"]
        out[i] = (int(r["id"]), int(h[:15], 16) if h else 0)
    return out


def _write_npy(path: Path, shape: tuple, dtype, fill) -> None:
    """Write an .npy of ``shape`` atomically; ``fill(mm)`` writes its contents into a memmap."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    with atomic_write(path) as f:
        np.lib.format.write_array_header_2_0(f, header)
        offset = f.tell()
        f.truncate(offset + int(np.prod(shape)) * np.dtype(dtype).itemsize)
        f.flush()
        if int(np.prod(shape)):
            mm = np.memmap(f.name, dtype=dtype, mode="r+", offset=offset, shape=shape)
            fill(mm)
            mm.flush()
            del mm


def _save_sig(path: Path, sig: np.ndarray) -> None:
    with atomic_write(path) as f:
        np.save(f, sig)


def _load(path: Path, sig_path: Path, tail: tuple) -> tuple[np.ndarray | None, np.ndarray]:
    """The cached array (memory-mapped) and its signatures; (None, empty) if absent or unusable."""
    try:
        arr = np.load(path, mmap_mode="r")
        sig = np.load(sig_path)
    except (OSError, ValueError):
        return None, np.zeros((0, 2), np.int64)
    if arr.dtype != np.float16 or arr.shape[1:] != tail or sig.ndim != 2 or len(sig) > len(arr):
        return None, np.zeros((0, 2), np.int64)
    return arr, sig


class PrefixCache:
    """The prefix maps of a project's images for one backbone, prefix end, input size and view.

    Use :func:`open_prefix_cache`; then :meth:`fill` (computes the rows missing),
    :attr:`maps` (n_rows, C, h, w) float16 memory-mapped, :attr:`valid` (rows computed)
    and :meth:`symmetries` for the training's augmented maps.

    Attributes
    ----------
    computed : int
        Images whose prefix ran in this process (all images and symmetries together):
        0 on a press whose images and labels were all seen before.
    """

    def __init__(self, project, bb, net: nn.Module, end: int, view: str, dev: torch.device,
                 budget_gb: float | None = None, say=lambda s: None):
        from .runtime import weights_digest

        self.project, self.bb, self.net, self.end, self.view, self.dev, self.say = \
            project, bb, net, end, view, dev, say
        if budget_gb is None:
            budget_gb = float(os.environ.get("LABELER_PREFIX_CACHE_GB", DEFAULT_BUDGET_GB))
        self.budget = budget_gb * 2**30
        self.shape = map_shape(bb, net, end)
        spec = bb.spec
        ident = f"{weights_digest(bb)}:{end}:{bb.input_size}:{spec.crop_short_side}:{view}:{spec.mean}:{spec.std}"
        self.key = f"{bb.name}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"
        self.dir = project.root / "cache"
        self.path = self.dir / f"prefix-{self.key}.npy"
        self.sym_path = self.dir / f"prefix-{self.key}-d4.npy"
        self.computed = 0
        self.maps: np.ndarray | None = None
        self.valid = np.zeros(0, bool)
        self._engine = None

    @property
    def bytes_per_image(self) -> int:
        return int(np.prod(self.shape)) * 2

    def _check_budget(self, n_main: int, n_sym: int) -> None:
        """Refuse (one line) when the two files would exceed the budget or the free disk
        (the old file stays until the new one is complete: no credit for it)."""
        need = (n_main + 7 * n_sym) * self.bytes_per_image
        others = sum(p.stat().st_size for p in self.dir.glob("prefix-*.npy")
                     if p not in (self.path, self.sym_path)) if self.dir.is_dir() else 0
        free = shutil.disk_usage(self.dir if self.dir.is_dir() else self.project.root).free
        c, h, w = self.shape
        what = (f"the fine-tune's prefix cache needs {need / 2**30:.2f} GiB ({n_main} images + {n_sym} x 7 "
                f"symmetries, {c}x{h}x{w} float16 each)")
        if need + others > self.budget:
            raise BadInputError(f"{what} but its budget is {self.budget / 2**30:.2f} GiB"
                                + (f" ({others / 2**30:.2f} GiB taken by other caches)" if others else "")
                                + ": raise it (cache_budget_gb or $LABELER_PREFIX_CACHE_GB) or fine-tune without the "
                                  "cache (prefix_cache=False)")
        if need > free:
            raise BadInputError(f"{what} but only {free / 2**30:.2f} GiB are free on the disk of {self.dir}")

    def _engine_for(self, probe: torch.Tensor):
        if self._engine is None:
            self._engine, _ = prefix_engine(self.bb, self.net, self.end, probe, self.dev, self.say)
        return self._engine

    def fill(self, progress: bool = False) -> list[tuple[int, str]]:
        """Compute the maps of every image not cached yet (or changed); returns the
        ``(image id, reason)`` of images that could not be read (their rows stay not valid)."""
        from .extract import embed_files

        table = self.project.store.image_table()
        n = self.project.store.next_row()
        rows = np.array([int(r["row"]) for r in table], np.int64)
        want = np.full((n, 2), -1, np.int64)
        want[rows] = _sig(table)
        old, old_sig = _load(self.path, self.path.with_suffix(".sig.npy"), self.shape)
        have = np.full((n, 2), -2, np.int64)
        m = min(len(old_sig), n) if old is not None else 0
        have[:m] = old_sig[:m]
        ok = np.all(have == want, axis=1) & (want[:, 0] >= 0)
        missing = rows[~ok[rows]]
        # A file removed since its maps were cached gets no vector (a zero row and a
        # failure, as the full network's re-embedding gives); its row stays cached.
        gone = [(int(r["id"]), int(r["row"])) for r in table
                if ok[int(r["row"])] and not self.project.image_path(r["path"]).is_file()]
        lost = [(i, "file not found") for i, _ in gone]
        if not len(missing) and old is not None and len(old) == n:
            self.maps, self.valid = old, ok.copy()
            self.valid[[r for _, r in gone]] = False
            return lost
        n_sym = self.sym_path.stat().st_size // (7 * self.bytes_per_image) if self.sym_path.is_file() else 0
        self._check_budget(n, n_sym)
        by_row = {int(r["row"]): r for r in table}
        items = [(int(by_row[int(r)]["id"]), self.project.image_path(by_row[int(r)]["path"])) for r in missing]
        row_of_id = {i: int(r) for (i, _), r in zip(items, missing)}
        self.say(f"prefix cache: computing the stage maps of {len(missing)} of {len(rows)} images ...")
        failures: list[tuple[int, str]] = []
        pbb = prefix_backbone(self.bb, self.net, self.end)
        done = np.zeros(n, bool)

        def fill(mm):
            if old is not None:
                k = min(len(old), n)
                for i in range(0, k, 1024):  # rows kept, copied in chunks (memory stays bounded)
                    mm[i:min(i + 1024, k)] = old[i:min(i + 1024, k)]
            for b in embed_files(items, pbb, view=self.view, batch_size=32, device=str(self.dev),
                                 progress=progress, runtime="auto", warn=self.say):
                r = np.array([row_of_id[int(i)] for i in b.ids], np.int64)
                if len(r):
                    mm[r] = b.features.reshape(len(r), *self.shape).astype(np.float16)
                    done[r] = True
                failures.extend(b.failures)

        self.dir.mkdir(exist_ok=True)
        _write_npy(self.path, (n, *self.shape), np.float16, fill)
        self.computed += int(done.sum())
        valid = ok | done
        sig = np.where(valid[:, None], want, -1)
        _save_sig(self.path.with_suffix(".sig.npy"), sig)
        self.maps, self.valid = np.load(self.path, mmap_mode="r"), valid
        self.valid[[r for _, r in gone]] = False
        return failures + lost

    def symmetries(self, table_rows, inputs) -> tuple[torch.Tensor, list[int]]:
        """The 8 symmetries' maps of the images ``table_rows`` (rows of ``image_table``),
        as (8, b, C, h, w) float16 (symmetry 0 = the cached identity maps, :meth:`fill`
        first), and the positions among ``table_rows`` of those b images (the readable
        ones). ``inputs(rows)`` returns the network inputs of the readable images among
        ``rows`` and their positions (finetune's ``_inputs``); it runs only for images
        whose symmetries are not cached."""
        sig_path = self.sym_path.with_suffix(".sig.npy")
        key = [(int(r["row"]), *map(int, s)) for r, s in zip(table_rows, _sig(table_rows))]
        old, old_sig = _load(self.sym_path, sig_path, (7, *self.shape))
        if old is not None and old_sig.shape[1] != 3:
            old, old_sig = None, old_sig[:0]
        slot = {tuple(map(int, k)): j for j, k in enumerate(old_sig)}
        need = [i for i, k in enumerate(key) if k not in slot and self.valid[k[0]]]
        if need:
            m = len(old_sig)
            self._check_budget(len(self.valid), m + len(need))
            self.say(f"prefix cache: computing the 7 other symmetries of {len(need)} labelled images ...")
            new_maps = {}
            for c in range(0, len(need), 64):
                part = need[c:c + 64]
                x, ok = inputs([table_rows[i] for i in part])
                if x is None:
                    continue
                engine = self._engine_for(x[:8])
                with torch.inference_mode():
                    sym = torch.stack([engine(d4(x, k).contiguous())[0].view(-1, *self.shape).half().cpu()
                                       for k in range(1, 8)], dim=1).numpy()
                self.computed += len(ok)
                for j, p in enumerate(ok):
                    new_maps[part[p]] = sym[j]
            added = sorted(new_maps)

            def fill(mm):  # the old entries keep their positions, the new ones are appended
                for j in range(m):
                    mm[j] = old[j]
                for j, i in enumerate(added):
                    mm[m + j] = new_maps[i]

            self.dir.mkdir(exist_ok=True)
            _write_npy(self.sym_path, (m + len(added), 7, *self.shape), np.float16, fill)
            sig = np.concatenate([old_sig.reshape(-1, 3), np.array([key[i] for i in added], np.int64).reshape(-1, 3)])
            _save_sig(sig_path, sig)
            old = np.load(self.sym_path, mmap_mode="r")
            slot.update({key[i]: m + j for j, i in enumerate(added)})
        pos = [i for i, k in enumerate(key) if k in slot and self.valid[k[0]]]
        out = torch.empty((8, len(pos), *self.shape), dtype=torch.float16)
        for j, i in enumerate(pos):
            out[0, j] = torch.from_numpy(np.array(self.maps[key[i][0]]))  # copies: the memmap is read-only
            out[1:, j] = torch.from_numpy(np.array(old[slot[key[i]]]))
        return out, pos


def open_prefix_cache(project, bb, net: nn.Module, end: int, view: str, dev: torch.device, *,
                      budget_gb: float | None = None, say=lambda s: None) -> PrefixCache:
    """The project's prefix cache for these settings (nothing computed yet: :meth:`PrefixCache.fill`)."""
    return PrefixCache(project, bb, net, end, view, dev, budget_gb=budget_gb, say=say)


def drop_prefix_caches(project) -> int:
    """Delete every prefix cache of the project (``cache/prefix-*``: each backbone's and
    input size's stage maps and their signatures) to free the disk; the next press, or an
    ingest with ``prefix_cache`` set, computes them again. Nothing else reads them, so no
    label, feature set or map changes. Holds the project lock, so a press that is reading
    them makes it fail at once.

    Returns
    -------
    int
        Bytes deleted (0 when there was no cache).

    Raises
    ------
    ProjectLockedError
        Another process is writing to the project (a press, an ingest ...): nothing was deleted.
    """
    from ..project import project_lock

    folder = Path(project.root) / "cache"
    with project_lock(project.root, "deletion of the prefix cache"):
        files = sorted(folder.glob("prefix-*")) if folder.is_dir() else []
        freed = 0
        for p in files:
            freed += p.stat().st_size
            p.unlink()
    return freed
