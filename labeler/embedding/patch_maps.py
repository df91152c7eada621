"""Stored patch feature maps of every image: what defect-aware features and region search read.

A *patch map* is the grid of locally aware patch features of one image
(:func:`patch_features`, also importable from :mod:`labeler.embedding.patchcore`: the last
stride-8 stage and the upsampled stride-16 stage, concatenated and averaged over 3×3
neighbours), average-pooled
to ``grid × grid`` cells and projected onto the first ``dim`` principal components of the
project's own patches (PCA fitted on a random sample of images, Pearson 1901 / scikit-learn).

Why stored: the defect-aware feature set (:mod:`labeler.embedding.defect_features`) is
recomputed whenever more images are labelled normal, and region search compares a box
against the patches of every image; neither should run the CNN over the whole collection
again. Disk budget: ``rows × grid² × dim × 2`` bytes (float16): with the defaults
(14 × 14 cells, 64 components) 25 KiB per image, 64 MiB for 2,624 ELPV images,
2.4 GiB for 100k images.

Files: ``patches/maps.npy`` (n_rows, grid², dim) float16, rows aligned with ``images.row``
(zero for images that could not be read), ``patches/pca.npz`` (``mean`` (C,), ``components``
(dim, C), float32), meta key ``patch_maps`` (grid, dim, backbone, view, input size,
created, failures). Both files are recorded in the integrity manifest.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import BadInputError, NotFoundError, ProjectError
from ..integrity import verify, write_tracked
from .local_features import stage_maps

__all__ = ["DIM", "GRID", "PatchMapModel", "cell_boxes", "box_cells", "compute_patch_maps", "load_patch_maps",
           "patch_features", "patch_map_of_image", "patch_maps_info"]

#: Cells per side of a stored map (the stride-8 grid of a 224-px input is 28; pooled 2×2).
GRID = 14
#: Principal components kept per cell.
DIM = 64
#: Images sampled to fit the PCA.
PCA_IMAGES = 128

META = "patch_maps"


def patch_features(model, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Locally aware patch features of a batch.

    Parameters
    ----------
    model : EfficientNetFeatures or ResNetFeatures
        A wrapped backbone (``Backbone.model``).
    x : torch.Tensor
        (B, 3, S, S) float32 network input.

    Returns
    -------
    patches : torch.Tensor
        (B, h * w, C8 + C16) float32, row-major over the (h, w) = (S/8, S/8) grid.
    grid : (int, int)
        ``(h, w)``.
    """
    m = stage_maps(model, x)
    s8, s16 = m["s8"].float(), m["s16"].float()
    h, w = s8.shape[-2:]
    up = F.interpolate(s16, size=(h, w), mode="bilinear", align_corners=False)
    f = F.avg_pool2d(torch.cat([s8, up], dim=1), kernel_size=3, stride=1, padding=1)
    return f.flatten(2).transpose(1, 2).contiguous(), (h, w)


class PatchMapModel(nn.Module):
    """``forward(x) -> (maps, logits)`` for :func:`labeler.embedding.extract.embed_files`.

    ``x``: (B, 3, S, S) float32. ``maps``: (B, grid² · C) float32, the pooled patch
    features of each image flattened row-major over (cell, channel); ``logits``: (B, 1)
    zeros (no classifier is run).
    """

    def __init__(self, base: nn.Module, grid: int):
        super().__init__()
        self.base = base
        self.grid = int(grid)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, (h, w) = patch_features(self.base, x)  # (B, h*w, C)
        b, _, c = p.shape
        m = p.transpose(1, 2).reshape(b, c, h, w)
        m = F.adaptive_avg_pool2d(m, self.grid)  # (B, C, g, g)
        return m.flatten(2).transpose(1, 2).reshape(b, -1), torch.zeros(b, 1, device=x.device)


def _paths(project) -> tuple[Path, Path]:
    d = project.root / "patches"
    return d / "maps.npy", d / "pca.npz"


def _map_backbone(project, grid: int, device: str):
    import dataclasses

    from .backbones import load_backbone
    from .local_features import _stage_channels
    from .networks import EfficientNetFeatures, ResNetFeatures

    meta = project.store.get_meta("backbone")
    if not meta:
        raise ProjectError("the project has no embeddings yet: run `labeler ingest` first")
    bb = load_backbone(meta["name"], weights=project.settings().weights or None, device=device)
    if not isinstance(bb.model, (EfficientNetFeatures, ResNetFeatures)):
        raise BadInputError(f"patch maps need an EfficientNet-Lite or ResNet backbone, not {meta['name']}")
    c8, c16, _ = _stage_channels(bb.model)
    model = PatchMapModel(bb.model, grid).eval()
    return dataclasses.replace(bb, model=model, dim=grid * grid * (c8 + c16), features=f"patchmap{grid}"), meta


def compute_patch_maps(project, *, grid: int = GRID, dim: int = DIM, device: str = "cpu", batch_size: int = 16,
                       num_workers: int | None = None, progress: bool = True, seed: int = 0) -> dict:
    """Compute and store the patch map of every image (replacing any earlier maps).

    Two passes of the project's backbone: over ``PCA_IMAGES`` random images to fit the
    PCA, then over all images, each batch projected and written to a float16 memory map
    (memory stays at one batch whatever the collection's size).

    Parameters
    ----------
    project : labeler.project.Project
    grid : int, default :data:`GRID`
        Cells per side (1 to the backbone's stride-8 grid, 28 at 224 px).
    dim : int, default :data:`DIM`
        Principal components kept (at most the channel count, 152 on EfficientNet-Lite0).
    device, batch_size, num_workers, progress
        As for :func:`labeler.embedding.extract.embed_files`.
    seed : int, default 0
        Draw of the PCA sample.

    Returns
    -------
    dict
        The stored description: ``grid``, ``dim``, ``rows``, ``bytes``, ``seconds``,
        ``failures`` (list of (id, reason)), ``backbone``, ``view``, ``input_size``.

    Raises
    ------
    ProjectError
        The project has not been ingested.
    BadInputError
        A backbone without known stages, or ``grid``/``dim`` out of range.
    """
    from sklearn.decomposition import PCA

    from .extract import embed_files

    bb, meta = _map_backbone(project, grid, device)
    channels = bb.dim // (grid * grid)
    if not 1 <= grid <= bb.input_size // 8 or not 1 <= dim <= channels:
        raise BadInputError(f"grid must be 1..{bb.input_size // 8} and dim 1..{channels}, not {grid} and {dim}")
    view = meta.get("view", "whole")
    table = project.store.image_table()
    items = [(int(r["id"]), project.image_path(r["path"])) for r in table]
    row_of = {int(r["id"]): int(r["row"]) for r in table}
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    sample = [items[i] for i in sorted(rng.choice(len(items), min(PCA_IMAGES, len(items)), replace=False))]
    fit = [b.features.reshape(-1, channels) for b in embed_files(
        sample, bb, view=view, batch_size=batch_size, num_workers=num_workers, device=device, progress=False)]
    if not fit:
        raise BadInputError("none of the sampled images could be read; nothing to fit the patch PCA on")
    pca = PCA(n_components=dim, random_state=seed).fit(np.concatenate(fit))
    mean, comps = pca.mean_.astype(np.float32), pca.components_.astype(np.float32)
    maps_path, pca_path = _paths(project)
    maps_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = maps_path.with_name(".maps.building.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(project.store.next_row(), grid * grid, dim))
    failures: list[tuple[int, str]] = []
    for b in embed_files(items, bb, view=view, batch_size=batch_size, num_workers=num_workers, device=device,
                         progress=progress):
        if len(b.ids):
            z = (b.features.reshape(len(b.ids), grid * grid, channels) - mean) @ comps.T
            out[[row_of[int(i)] for i in b.ids]] = z.astype(np.float16)
        failures += b.failures
    out.flush()
    del out
    with write_tracked(project, pca_path) as f:
        np.savez(f, mean=mean, components=comps)
    with write_tracked(project, maps_path) as f, open(tmp, "rb") as src:
        while chunk := src.read(1 << 22):
            f.write(chunk)
    tmp.unlink(missing_ok=True)
    info = {"grid": grid, "dim": dim, "channels": channels, "rows": project.store.next_row(),
            "bytes": maps_path.stat().st_size, "seconds": round(time.perf_counter() - t0, 1),
            "failures": [list(x) for x in failures], "backbone": meta["name"], "view": view,
            "input_size": bb.input_size, "created": time.time(),
            "explained_variance": float(pca.explained_variance_ratio_.sum())}
    project.store.set_meta(**{META: info})
    return info


def patch_maps_info(project) -> dict:
    """The description stored by :func:`compute_patch_maps`; {} when there are no maps."""
    return dict(project.store.get_meta(META) or {})


def load_patch_maps(project, *, mmap: bool = True) -> tuple[np.ndarray, dict]:
    """The stored patch maps and their description.

    Returns
    -------
    maps : ndarray (n_rows, grid², dim), float16
        Memory-mapped read-only by default; row i belongs to the image with ``images.row == i``.
        Images added after the maps were computed have no row (``maps.shape[0] < next_row``).
    info : dict
        See :func:`compute_patch_maps`.

    Raises
    ------
    NotFoundError
        No maps yet.
    CorruptFileError
        The file does not match its manifest entry.
    """
    maps_path, _ = _paths(project)
    info = patch_maps_info(project)
    if not info or not maps_path.is_file():
        raise NotFoundError("no patch maps yet: run `labeler features --project DIR --patch-maps` first")
    verify(project, maps_path)
    return np.load(maps_path, mmap_mode="r" if mmap else None), info


def patch_map_of_image(project, img, *, device: str = "cpu") -> np.ndarray:
    """The patch map of an image that need not be in the project (an upload, a query).

    Parameters
    ----------
    project : labeler.project.Project
        Its backbone, view and stored PCA are used, so the map is comparable with the stored ones.
    img : PIL.Image.Image

    Returns
    -------
    ndarray (grid², dim), float32

    Raises
    ------
    NotFoundError
        No maps yet.
    """
    _, pca_path = _paths(project)
    info = patch_maps_info(project)
    if not info or not pca_path.is_file():
        raise NotFoundError("no patch maps yet: run `labeler features --project DIR --patch-maps` first")
    verify(project, pca_path)
    with np.load(pca_path) as z:
        mean, comps = z["mean"], z["components"]
    bb, _ = _map_backbone(project, int(info["grid"]), device)
    x = bb.preprocess(img.convert("RGB"), info.get("view", "whole"))[None].to(device)
    with torch.inference_mode():
        m, _ = bb.model(x)
    m = m[0].cpu().numpy().reshape(int(info["grid"]) ** 2, -1)
    return ((m - mean) @ comps.T).astype(np.float32)


def _input_frame(width: int, height: int, info: dict) -> tuple[float, float, float, float]:
    """(x0, y0, side_x, side_y): the part of the original image the network input covers, pixels."""
    if info.get("view", "whole") == "whole":
        return 0.0, 0.0, float(width), float(height)
    from .registry import get_spec

    spec = get_spec(info["backbone"])
    scale = spec.crop_short_side / min(width, height)
    side = spec.input_size / scale  # the crop's side in original pixels
    return (width - side) / 2, (height - side) / 2, side, side


def cell_boxes(width: int, height: int, info: dict) -> np.ndarray:
    """Pixel box of every cell of a stored map, in the original image.

    Parameters
    ----------
    width, height : int
        Original image size in pixels (after EXIF orientation).
    info : dict
        From :func:`patch_maps_info` (``grid``, ``view``, ``backbone``).

    Returns
    -------
    ndarray (grid², 4), float32
        ``x, y, w, h`` per cell, row-major like the map.
    """
    g = int(info["grid"])
    x0, y0, sx, sy = _input_frame(width, height, info)
    r, c = np.divmod(np.arange(g * g), g)
    return np.stack([x0 + c * sx / g, y0 + r * sy / g, np.full(g * g, sx / g), np.full(g * g, sy / g)],
                    axis=1).astype(np.float32)


def box_cells(box: tuple[float, float, float, float], width: int, height: int, info: dict) -> np.ndarray:
    """Indices of the cells a pixel box covers (at least half of a cell, or the one it overlaps most).

    Parameters
    ----------
    box : (x, y, w, h)
        Pixels of the original image; w and h > 0.
    width, height : int
        Original image size.
    info : dict
        From :func:`patch_maps_info`.

    Returns
    -------
    ndarray (k,), int64
        Row-major cell indices, k ≥ 1.

    Raises
    ------
    BadInputError
        An empty box, or one outside the part of the image the network sees.
    """
    x, y, w, h = (float(v) for v in box)
    if not (w > 0 and h > 0):
        raise BadInputError(f"the box {box} is empty: give x,y,w,h with w and h > 0 (pixels)")
    cells = cell_boxes(width, height, info)
    ix = np.clip(np.minimum(x + w, cells[:, 0] + cells[:, 2]) - np.maximum(x, cells[:, 0]), 0, None)
    iy = np.clip(np.minimum(y + h, cells[:, 1] + cells[:, 3]) - np.maximum(y, cells[:, 1]), 0, None)
    cover = ix * iy / (cells[:, 2] * cells[:, 3])
    if cover.max() <= 0:
        raise BadInputError(f"the box {box} lies outside the image ({width} x {height} px)")
    picked = np.flatnonzero(cover >= 0.5)
    return picked if len(picked) else np.array([int(cover.argmax())])
