"""Patch-level anomaly score and heat map against images labelled normal (PatchCore).

After Roth et al. 2022, "Towards Total Recall in Industrial Anomaly Detection" (CVPR):
every image becomes a grid of locally aware patch features (the last stride-8 stage and
the upsampled last stride-16 stage, concatenated, averaged over a 3×3 neighbourhood);
a memory bank holds patches of images the annotator labelled normal; a patch's anomaly
score is its Euclidean distance to the nearest bank patch, and an image's score is the
largest of its patches. The heat map is the per-patch score upsampled to the image size
and smoothed with a Gaussian (σ = 4 px, as in the paper).

One simplification, stated: the bank is a uniform random subsample of the normal patches
(the paper selects a greedy k-center coreset; random subsampling is the cheaper
approximation and keeps the fit to seconds on 2 cores). Nearest neighbours: FAISS exact
L2 search (``IndexFlatL2``).

Files: ``models/patchcore.npz`` (bank, float32) and meta key ``patchcore`` (normal label,
image count, backbone).
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F

from .. import images
from ..errors import BadInputError, NotFoundError, ProjectError
from .local_features import stage_maps

__all__ = ["anomaly_map", "fit_patchcore", "heatmap_png", "patch_features"]

#: Bank patches kept per normal image (784 patches per 224-px image on Lite0).
PATCHES_PER_IMAGE = 80
#: Normal images used for the bank at most (a random sample of them).
MAX_BANK_IMAGES = 300
#: Gaussian smoothing of the heat map, pixels (Roth et al. 2022, sec. 4.1).
SIGMA = 4.0


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


def _backbone(project, device: str):
    from .backbones import load_backbone

    meta = project.store.get_meta("backbone")
    if not meta:
        raise ProjectError("the project has no embeddings yet: run `labeler ingest` first")
    return load_backbone(meta["name"], weights=project.settings().weights or None, device=device), meta


def _input(project, bb, image_id: int, view: str) -> tuple[torch.Tensor, tuple[int, int]]:
    row = project.store.get_image(int(image_id))
    img = images.load_image(project.image_path(row["path"]))
    return bb.preprocess(img, view)[None], img.size


def fit_patchcore(project, normal_label: str, *, device: str = "cpu", seed: int = 0) -> dict:
    """Build the memory bank from images carrying ``normal_label``.

    Parameters
    ----------
    project : labeler.project.Project
    normal_label : str
        The label meaning "nothing wrong" (e.g. ``'no'``, ``'ok'``).
    device : str, default 'cpu'
    seed : int, default 0

    Returns
    -------
    dict
        ``normal_label``, ``images`` (used), ``patches`` (bank size), ``dim``.

    Raises
    ------
    ProjectError
        The project has not been ingested.
    BadInputError
        No image carries ``normal_label``, or none of them could be read.
    """
    import faiss  # noqa: F401  (fail early when missing, before the slow part)

    ids = [i for i, lab in project.store.labels().items() if lab == normal_label]
    if not ids:
        raise BadInputError(f"no image is labelled {normal_label!r}; label some normal images first")
    rng = np.random.default_rng(seed)
    if len(ids) > MAX_BANK_IMAGES:
        ids = list(rng.choice(ids, MAX_BANK_IMAGES, replace=False))
    bb, meta = _backbone(project, device)
    view = meta.get("view", "whole")
    bank, used = [], 0
    for i in ids:
        try:
            x, _ = _input(project, bb, i, view)
        except (images.BadImageError, OSError):
            continue
        with torch.inference_mode():
            p, _ = patch_features(bb.model, x.to(device))
        p = p[0].cpu().numpy()
        bank.append(p[rng.choice(len(p), min(PATCHES_PER_IMAGE, len(p)), replace=False)])
        used += 1
    if not bank:
        raise BadInputError(f"none of the images labelled {normal_label!r} could be read")
    bank = np.ascontiguousarray(np.concatenate(bank), dtype=np.float32)
    np.savez(project.models_dir / "patchcore.npz", bank=bank)
    info = {"normal_label": normal_label, "images": used, "patches": int(len(bank)), "dim": int(bank.shape[1]),
            "backbone": meta["name"]}
    project.store.set_meta(patchcore=info)
    return info


def anomaly_map(project, image_id: int, *, device: str = "cpu") -> tuple[np.ndarray, float]:
    """Per-pixel anomaly score of one image against the memory bank.

    Parameters
    ----------
    project : labeler.project.Project
    image_id : int
    device : str, default 'cpu'

    Returns
    -------
    heat : ndarray (H, W), float32
        At the image's own size (after EXIF orientation); distance units of the patch
        features (larger = less like any normal patch).
    score : float
        The image's anomaly score: the largest patch distance.

    Raises
    ------
    NotFoundError
        No bank yet (:func:`fit_patchcore`).
    StoreError
        No image with that id.
    """
    import faiss

    info = project.store.get_meta("patchcore")
    path = project.models_dir / "patchcore.npz"
    if not info or not path.is_file():
        raise NotFoundError("no PatchCore memory bank yet: run `labeler heatmap ID --normal-label LABEL` once")
    bank = np.load(path)["bank"]
    bb, meta = _backbone(project, device)
    x, (w0, h0) = _input(project, bb, image_id, meta.get("view", "whole"))
    with torch.inference_mode():
        p, (h, w) = patch_features(bb.model, x.to(device))
    index = faiss.IndexFlatL2(bank.shape[1])
    index.add(bank)
    d2, _ = index.search(np.ascontiguousarray(p[0].cpu().numpy(), dtype=np.float32), 1)
    d = np.sqrt(np.maximum(d2[:, 0], 0)).reshape(h, w).astype(np.float32)
    heat = F.interpolate(torch.from_numpy(d)[None, None], size=(h0, w0), mode="bilinear", align_corners=False)
    heat = _gaussian(heat, SIGMA)[0, 0].numpy().astype(np.float32)
    return heat, float(d.max())


def _gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = int(4 * sigma + 0.5)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def heatmap_png(project, image_id: int, *, device: str = "cpu", alpha: float = 0.5,
                heat: np.ndarray | None = None) -> bytes:
    """The image with its anomaly heat map blended over it, as PNG bytes (for the dashboard).

    Colours: matplotlib's ``inferno`` over the map scaled to [0, max(map)] of this image.
    ``heat``: the map from :func:`anomaly_map` when the caller has it already, (H, W)
    float32; otherwise it is computed.

    Raises
    ------
    NotFoundError
        No bank yet.
    StoreError
        No image with that id.
    """
    from matplotlib import colormaps
    from PIL import Image

    if heat is None:
        heat, _ = anomaly_map(project, image_id, device=device)
    row = project.store.get_image(int(image_id))
    img = np.asarray(images.load_image(project.image_path(row["path"])), dtype=np.float32)
    colour = colormaps["inferno"](heat / max(float(heat.max()), 1e-12))[..., :3] * 255.0
    out = ((1 - alpha) * img + alpha * colour).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="PNG")
    return buf.getvalue()
