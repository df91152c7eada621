"""Patch anomaly against a bank of normal patches, position-normalised (PatchCore), and its heat map.

After Roth et al. 2022, "Towards Total Recall in Industrial Anomaly Detection" (CVPR):
every image is a grid of locally aware patch features; a memory bank holds patches of
images the annotator labelled normal; a patch's anomaly is its Euclidean distance to the
nearest bank patch. This module is the one home of that computation: the heat map
(:func:`anomaly_map`, :func:`heatmap_png`, ``labeler heatmap``), the image anomaly scores
and the defect-aware feature set (:mod:`labeler.embedding.defect_features`) all read it.

What differs from the paper, stated:

- **Patches are the stored patch maps** (:mod:`labeler.embedding.patch_maps`: the
  paper's stride-8 + upsampled stride-16 features, average-pooled to 14 × 14 cells and
  projected on 64 principal components, float16), so fitting a bank and scoring every
  image needs no CNN pass (ELPV, 2,624 images: seconds instead of minutes).
- **Position normalisation** (opt-in, ``normalise='position'``; no labels needed): each
  patch's distance is divided by the median distance at its grid position over the
  project's images (all of them, or a random :data:`NORM_IMAGES` when more). A feasibility
  study for issue 24 found the most anomalous patch of 91 % of defect-free images on the
  outer rings (edges, padding) of one defect collection, and normalisation lifted its AUROC
  0.74 -> 0.80. Measured here with ``benchmarks/bench_defects.py`` (docs/defects.md) it did
  not help: ELPV 0.841 -> 0.845, DeepPCB crops 0.845 -> 0.569 (their defects sit at the crop
  centre in most images, so the median there is a defect's), hence off by default
  (:data:`NORMALISE`).
- **Bank**: every patch of up to :data:`MAX_BANK_IMAGES` normal images, randomly
  subsampled to :data:`MAX_BANK_PATCHES` (the paper selects a greedy k-center coreset;
  random subsampling is the cheaper approximation). A bank image's own patches are left
  out when it is scored, so the images of the bank are not scored zero.
- **No labels**: without a normal label the bank is drawn from a random sample of
  :data:`NO_LABEL_IMAGES` images (most images of an inspection collection are normal).
- Nearest neighbours: exact (FAISS ``IndexFlatL2``).

Image score: the largest (normalised) patch anomaly of the image.

Files: ``models/patchcore.npz`` (``bank`` (m, dim) float32, ``bank_rows`` (m,) int32 the
image row of each bank patch, ``normaliser`` (grid²,) float32, ``scores`` and ``raw_scores``
(n_rows,) float32, after and before position normalisation, NaN for rows without a map),
written through :func:`labeler.integrity.write_tracked`;
meta key ``patchcore`` (normal label, image ids used, bank size, the maps' creation time).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import images
from ..errors import BadInputError, NotFoundError
from ..integrity import verify, write_tracked
from .patch_maps import patch_features  # noqa: F401  (re-exported: the patch features' public home)

__all__ = ["Bank", "anomaly_grid_of_image", "anomaly_map", "build_bank", "fit_patchcore", "heatmap_png",
           "load_bank", "nearest_normal", "patch_features", "score_maps"]

#: Normal images used for the bank at most (a random sample of them).
MAX_BANK_IMAGES = 300
#: Bank patches at most (a random sample of the normal images' patches). Measured with
#: ``bench_defects.py --scan`` (50 normal images = 9,800 patches; k = 8, position-normalised): a
#: random 2,450 of them gave ELPV defective macro P@1 0.811 against 0.812 with all 9,800 and the
#: DeepPCB crops 0.302 against 0.287, for a quarter of the search time (ELPV: all 514k patches
#: scored in 16-28 s instead of 35-55 s on the shared, heavily loaded 2-core machine).
MAX_BANK_PATCHES = 2500
#: How patch distances are normalised by default: ``'none'`` (raw distances, PatchCore) or
#: ``'position'`` (divided by the median at the grid position over the images). Measured with
#: ``bench_defects.py`` (docs/defects.md): position normalisation left ELPV's anomaly AUROC where it
#: was (0.841 -> 0.845) and dropped the DeepPCB crops' from 0.845 to 0.569, where most crops are
#: defective and centred on their defect, so the median at the centre is a defect's anomaly.
NORMALISE = "none"
NORMALISATIONS = ("none", "position")
#: Images drawn for the bank when no image is labelled normal.
NO_LABEL_IMAGES = 50
#: Images whose patch anomalies give the per-position median, at most.
NORM_IMAGES = 5000
#: Gaussian smoothing of the heat map, pixels (Roth et al. 2022, sec. 4.1).
SIGMA = 4.0

META = "patchcore"
NO_BANK = "no PatchCore memory bank yet: run `labeler heatmap ID --normal-label LABEL` or " \
          "`labeler features --project DIR --compute defect` once"


@dataclass
class Bank:
    """A memory bank of normal patches and the per-position normaliser.

    Attributes
    ----------
    patches : ndarray (m, dim) float32
        Bank patches in the patch maps' PCA space.
    rows : ndarray (m,) int32
        Image row each bank patch came from (a row's own patches are skipped when it is scored).
    normaliser : ndarray (grid²,) float32
        Median raw anomaly at each grid position; ones before it is fitted.
    """

    patches: np.ndarray
    rows: np.ndarray
    normaliser: np.ndarray


def nearest_normal(patches: np.ndarray, bank: Bank, rows: np.ndarray | None = None, *,
                   block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Distance to, and index of, the nearest bank patch of every patch (exact, Euclidean).

    FAISS exact L2 search (``IndexFlatL2``) for patches of images outside the bank; the
    patches of a bank image are compared in numpy with the image's own bank patches masked.

    Parameters
    ----------
    patches : ndarray (N, dim) float
    bank : Bank
    rows : ndarray (N,) int or None
        Image row of each patch: bank patches of the same row are skipped. None: none skipped.

    Returns
    -------
    dist : ndarray (N,) float32
        Raw (not normalised) distance, units of the patch maps' PCA space.
    index : ndarray (N,) int64
        Row into ``bank.patches``.
    """
    import faiss

    b = np.ascontiguousarray(bank.patches, dtype=np.float32)
    q_all = np.ascontiguousarray(patches, dtype=np.float32)
    dist = np.empty(len(q_all), np.float32)
    index = np.empty(len(q_all), np.int64)
    own = np.isin(rows, bank.rows) if rows is not None else np.zeros(len(q_all), bool)
    free = np.flatnonzero(~own)
    if len(free):
        flat = faiss.IndexFlatL2(b.shape[1])
        flat.add(b)
        d2, j = flat.search(q_all[free], 1)
        dist[free], index[free] = np.sqrt(np.maximum(d2[:, 0], 0)), j[:, 0]
    mine = np.flatnonzero(own)
    bsq = (b * b).sum(1)
    for i in range(0, len(mine), block):
        sel = mine[i : i + block]
        q = q_all[sel]
        d2 = (q * q).sum(1)[:, None] + bsq[None, :] - 2.0 * (q @ b.T)
        d2[rows[sel, None] == bank.rows[None, :]] = np.inf
        j = d2.argmin(1)
        index[sel] = j
        dist[sel] = np.sqrt(np.maximum(d2[np.arange(len(q)), j], 0))
    return dist, index


def score_maps(maps: np.ndarray, rows: np.ndarray, bank: Bank, *, normalise: bool = True,
               chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Patch anomaly of stored maps against the bank: the one computation both the heat map
    and the defect-aware features use.

    Parameters
    ----------
    maps : ndarray (n_rows, grid², dim)
        The stored patch maps (:func:`labeler.embedding.patch_maps.load_patch_maps`), any float dtype.
    rows : ndarray (n,) int
        Rows to score.
    bank : Bank
    normalise : bool, default True
        Divide by ``bank.normaliser`` (position normalisation); False gives the raw distances.

    Returns
    -------
    anomaly : ndarray (n, grid²) float32
    nearest : ndarray (n, grid²) int64
        Index of each patch's nearest bank patch.
    """
    rows = np.asarray(rows, dtype=np.int64)
    p = maps.shape[1]
    anomaly = np.empty((len(rows), p), np.float32)
    nearest = np.empty((len(rows), p), np.int64)
    for i in range(0, len(rows), chunk):
        r = rows[i : i + chunk]
        d, j = nearest_normal(np.asarray(maps[r], np.float32).reshape(-1, maps.shape[2]), bank, np.repeat(r, p))
        anomaly[i : i + chunk], nearest[i : i + chunk] = d.reshape(-1, p), j.reshape(-1, p)
    if normalise:
        anomaly /= bank.normaliser[None, :]
    return anomaly, nearest


def _mapped_rows(maps: np.ndarray, n_rows: int | None = None) -> np.ndarray:
    """Rows holding a map (not all zero: an unreadable image's row is zero)."""
    nz = np.flatnonzero(np.abs(np.asarray(maps[:, :, 0], np.float32)).sum(1) + np.abs(
        np.asarray(maps[:, :, -1], np.float32)).sum(1) > 0)
    return nz if n_rows is None else nz[nz < n_rows]


def _ensure_maps(project, device: str, progress: bool):
    from .patch_maps import compute_patch_maps, load_patch_maps, patch_maps_info

    if not patch_maps_info(project):
        compute_patch_maps(project, device=device, progress=progress)
    return load_patch_maps(project)


def build_bank(project, normal_label: str | None = None, *, ids=None, seed: int = 0, device: str = "cpu",
               progress: bool = False, max_patches: int = MAX_BANK_PATCHES,
               normalise: str = NORMALISE) -> tuple[Bank, dict, np.ndarray, np.ndarray, np.ndarray]:
    """Fit a bank and its normaliser from the stored patch maps and score every mapped image.

    The patch maps are computed first when the project has none (one CNN pass).

    Parameters
    ----------
    project : labeler.project.Project
    normal_label : str or None
        Images carrying this label (in force) make the bank. None: a random sample of
        :data:`NO_LABEL_IMAGES` images.
    ids : sequence of int or None
        Use exactly these image ids as the normal images instead (benchmarks, tests).
    seed : int, default 0
        Draw of the images and patches.
    max_patches : int, default :data:`MAX_BANK_PATCHES`
        Bank patches at most (a random sample of the normal images' patches).
    normalise : {'none', 'position'}, default :data:`NORMALISE`
        'position': divide each patch distance by the median distance at its grid position over
        the images (at most :data:`NORM_IMAGES`); 'none': the normaliser is all ones.

    Returns
    -------
    bank : Bank
    info : dict
        ``normal_label``, ``image_ids`` (used), ``candidates`` (images carrying the label),
        ``images``, ``patches``, ``dim``, ``grid``, ``maps_created``, ``seconds``.
    rows : ndarray (n,) int64
        Rows scored (those with a map).
    anomaly : ndarray (n, grid²) float32
        Position-normalised patch anomaly of those rows.
    nearest : ndarray (n, grid²) int64
        Each patch's nearest bank patch.

    Raises
    ------
    BadInputError
        No image carries ``normal_label``, or none of them has a readable map.
    ProjectError
        The project has not been ingested.
    """
    if normalise not in NORMALISATIONS:
        raise BadInputError(f"unknown normalisation {normalise!r}: {' or '.join(NORMALISATIONS)}")
    t0 = time.perf_counter()
    candidates = None
    if ids is not None:
        candidates = sorted(int(i) for i in ids)
    elif normal_label is not None:  # checked before the maps, which may take minutes
        candidates = sorted(i for i, lab in project.store.labels().items() if lab == normal_label)
        if not candidates:
            raise BadInputError(f"no image is labelled {normal_label!r}; label some normal images first")
    maps, minfo = _ensure_maps(project, device, progress)
    rng = np.random.default_rng(seed)
    mapped = _mapped_rows(maps)
    table = project.store.image_table()
    row_of = {int(r["id"]): int(r["row"]) for r in table}
    id_of = {v: k for k, v in row_of.items()}
    if candidates is None:
        candidates = sorted(id_of[int(r)] for r in rng.choice(mapped, min(NO_LABEL_IMAGES, len(mapped)),
                                                              replace=False))
    mset = set(mapped.tolist())
    usable = [i for i in candidates if row_of.get(i, -1) in mset]
    if not usable:
        raise BadInputError(f"none of the {len(candidates)} normal images has a patch map (unreadable, or added "
                            "after the maps: run `labeler features --project DIR --patch-maps`)")
    if len(usable) > MAX_BANK_IMAGES:
        usable = sorted(int(i) for i in rng.choice(usable, MAX_BANK_IMAGES, replace=False))
    brows = np.array([row_of[i] for i in usable], np.int64)
    p, dim = maps.shape[1], maps.shape[2]
    patches = np.asarray(maps[brows], np.float32).reshape(-1, dim)
    prow = np.repeat(brows, p).astype(np.int32)
    if len(patches) > max_patches:
        keep = np.sort(rng.choice(len(patches), max_patches, replace=False))
        patches, prow = patches[keep], prow[keep]
    bank = Bank(np.ascontiguousarray(patches), prow, np.ones(p, np.float32))
    raw, nearest = score_maps(maps, mapped, bank, normalise=False)
    norm_rows = np.arange(len(mapped)) if len(mapped) <= NORM_IMAGES else rng.choice(len(mapped), NORM_IMAGES,
                                                                                   replace=False)
    if normalise == "position":
        bank.normaliser = np.maximum(np.median(raw[norm_rows], axis=0), 1e-6).astype(np.float32)
    anomaly = raw / bank.normaliser[None, :]
    info = {"normal_label": normal_label, "image_ids": [int(i) for i in usable], "candidates": len(candidates),
            "candidate_ids_hash": hash_ids(candidates), "images": len(usable), "patches": int(len(bank.patches)),
            "normalise": normalise,
            "dim": int(dim), "grid": int(minfo["grid"]), "maps_created": minfo.get("created"),
            "rows": int(maps.shape[0]), "backbone": minfo.get("backbone"),
            "seconds": round(time.perf_counter() - t0, 2), "created": time.time()}
    return bank, info, mapped, anomaly, nearest


def hash_ids(ids) -> str:
    """A short digest of a set of image ids (BLAKE2b of the sorted ids): what a bank was drawn from."""
    import hashlib

    return hashlib.blake2b(np.asarray(sorted(int(i) for i in ids), np.int64).tobytes(), digest_size=8).hexdigest()


def image_scores(anomaly: np.ndarray) -> np.ndarray:
    """Image anomaly score from patch anomalies: the largest, (n, P) -> (n,) float32."""
    return np.asarray(anomaly, np.float32).max(1)


def save_bank(project, bank: Bank, info: dict, rows: np.ndarray, anomaly: np.ndarray) -> None:
    """Write ``models/patchcore.npz`` (bank, normaliser, image scores) and the meta key ``patchcore``.

    ``rows`` (n,) and ``anomaly`` (n, grid²) float32 (position-normalised) as :func:`build_bank` returns
    them; the image scores are stored position-normalised (``scores``) and raw (``raw_scores``, the
    largest patch distance before normalisation), NaN for rows without a map.
    """
    scores = np.full(int(info["rows"]), np.nan, np.float32)
    raw = scores.copy()
    scores[rows] = image_scores(anomaly)
    raw[rows] = image_scores(anomaly * bank.normaliser[None, :])
    path = project.models_dir / "patchcore.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with write_tracked(project, path) as f:
        np.savez(f, bank=bank.patches, bank_rows=bank.rows, normaliser=bank.normaliser, scores=scores,
                 raw_scores=raw)
    project.store.set_meta(**{META: info})


def fit_patchcore(project, normal_label: str | None = None, *, ids=None, device: str = "cpu", seed: int = 0,
                  progress: bool = False, normalise: str = NORMALISE) -> dict:
    """Build and store the memory bank from images carrying ``normal_label`` (see :func:`build_bank`).

    Parameters
    ----------
    project : labeler.project.Project
    normal_label : str or None
        The label meaning "nothing wrong" (e.g. ``'no'``, ``'ok'``); None: a random sample of all images.
    ids, device, seed, progress, normalise
        As for :func:`build_bank` (``device``: for the patch maps when they must be computed first).

    Returns
    -------
    dict
        The stored description (:func:`build_bank`'s ``info``).

    Raises
    ------
    ProjectError
        The project has not been ingested.
    BadInputError
        No image carries ``normal_label``, or none of them could be read.
    """
    bank, info, rows, anomaly, _ = build_bank(project, normal_label, ids=ids, seed=seed, device=device,
                                              progress=progress, normalise=normalise)
    save_bank(project, bank, info, rows, anomaly)
    return info


def load_bank(project, *, raw: bool = False) -> tuple[Bank, dict, np.ndarray]:
    """The stored bank, its description and the image scores ((n_rows,) float32, NaN without a map).

    ``raw``: the scores before position normalisation (largest raw patch distance) instead.

    Raises
    ------
    NotFoundError
        No bank yet.
    CorruptFileError
        ``models/patchcore.npz`` differs from what labeler wrote.
    """
    info = project.store.get_meta(META)
    path = project.models_dir / "patchcore.npz"
    if not info or not path.is_file():
        raise NotFoundError(NO_BANK)
    verify(project, path)
    with np.load(path) as z:
        if "normaliser" not in z:
            raise NotFoundError("the PatchCore bank predates position normalisation: " + NO_BANK.split(": ", 1)[1])
        bank = Bank(z["bank"], z["bank_rows"], z["normaliser"])
        scores = z["raw_scores" if raw else "scores"]
    return bank, dict(info), scores


def anomaly_grid_of_image(project, image_id: int, *, device: str = "cpu",
                          allow_cnn: bool = False) -> np.ndarray:
    """Position-normalised patch anomaly of one image, (grid, grid) float32.

    From the image's stored patch map; with ``allow_cnn`` an image without one (added
    after the maps) gets its map from the CNN (:func:`labeler.embedding.patch_maps.patch_map_of_image`).

    Raises
    ------
    NotFoundError
        No bank or no maps yet, or (without ``allow_cnn``) the image has no stored map.
    StoreError
        No image with that id.
    """
    from .patch_maps import load_patch_maps, patch_map_of_image

    bank, _, _ = load_bank(project)
    maps, minfo = load_patch_maps(project)
    g = int(minfo["grid"])
    row = int(project.store.get_image(int(image_id))["row"])
    if row < maps.shape[0] and np.any(maps[row]):
        d, _ = nearest_normal(np.asarray(maps[row], np.float32), bank, np.full(g * g, row))
    elif allow_cnn:
        img = images.load_image(project.image_path(project.store.get_image(int(image_id))["path"]))
        d, _ = nearest_normal(patch_map_of_image(project, img, device=device), bank)
    else:
        raise NotFoundError(f"image {image_id} has no patch map: run `labeler features --project DIR --patch-maps`")
    return (d / bank.normaliser).reshape(g, g).astype(np.float32)


def anomaly_map(project, image_id: int, *, device: str = "cpu") -> tuple[np.ndarray, float]:
    """Per-pixel position-normalised anomaly of one image against the memory bank.

    Parameters
    ----------
    project : labeler.project.Project
    image_id : int
    device : str, default 'cpu'
        For the CNN when the image has no stored patch map.

    Returns
    -------
    heat : ndarray (H, W), float32
        At the image's own size (after EXIF orientation); 1 = the median anomaly at that
        position over the project's images (larger = less like any normal patch). With a
        centre-crop view, pixels outside the crop are 0.
    score : float
        The image's anomaly score: the largest position-normalised patch anomaly.

    Raises
    ------
    NotFoundError
        No bank yet (:func:`fit_patchcore`).
    StoreError
        No image with that id.
    """
    from .patch_maps import cell_boxes, patch_maps_info

    grid = anomaly_grid_of_image(project, image_id, device=device, allow_cnn=True)
    rec = project.store.get_image(int(image_id))
    w0, h0 = images.load_image(project.image_path(rec["path"])).size
    boxes = cell_boxes(w0, h0, patch_maps_info(project))
    g = grid.shape[0]
    x0, y0 = float(boxes[0, 0]), float(boxes[0, 1])
    sx, sy = float(boxes[0, 2]) * g, float(boxes[0, 3]) * g
    fw, fh = max(1, int(round(sx))), max(1, int(round(sy)))
    up = F.interpolate(torch.from_numpy(grid)[None, None], size=(fh, fw), mode="bilinear", align_corners=False)[0, 0]
    heat = torch.zeros(h0, w0)
    ox, oy = int(round(x0)), int(round(y0))
    sx0, sy0 = max(0, -ox), max(0, -oy)
    dx0, dy0 = max(0, ox), max(0, oy)
    ww, hh = min(w0 - dx0, fw - sx0), min(h0 - dy0, fh - sy0)
    heat[dy0 : dy0 + hh, dx0 : dx0 + ww] = up[sy0 : sy0 + hh, sx0 : sx0 + ww]
    heat = _gaussian(heat[None, None], SIGMA)[0, 0].numpy().astype(np.float32)
    return heat, float(grid.max())


def _gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = int(4 * sigma + 0.5)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def heatmap_png(project, image_id: int, *, device: str = "cpu", alpha: float = 0.5,
                heat: np.ndarray | None = None) -> bytes:
    """The image with its anomaly heat map blended over it, as PNG bytes (for the dashboard).

    Colours: matplotlib's ``inferno`` over the map scaled to [0, max(map)], or to
    [0, max(map, 2)] with a position-normalised bank (2 = twice the median anomaly at a
    position, so a normal image is not painted hot by its own scaling). ``heat``: the map
    from :func:`anomaly_map` when the caller has it already, (H, W) float32; otherwise it
    is computed.

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
    floor = 2.0 if (project.store.get_meta(META) or {}).get("normalise") == "position" else 1e-12
    colour = colormaps["inferno"](heat / max(float(heat.max()), floor))[..., :3] * 255.0
    out = ((1 - alpha) * img + alpha * colour).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="PNG")
    return buf.getvalue()
