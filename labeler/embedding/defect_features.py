"""Defect-aware feature set: what is *unlike normal* in an image, not its layout and lighting.

Whole-image features (global or multistage pooling of an ImageNet CNN) describe a part's
layout and lighting; a defect is a few percent of the image. This feature set describes
the image by its most anomalous patches instead (issue 24; docs/defects.md):

1. A bank of normal patches (:mod:`labeler.embedding.patchcore`) from the images carrying
   one label the annotator names (``ok``, ``no`` ...), or, when none is labelled, from a
   random sample of all images (most images of an inspection collection are normal).
2. Every patch of every image gets its position-normalised anomaly: distance to the
   nearest bank patch over the median distance at that grid position
   (:func:`labeler.embedding.patchcore.score_maps`, the computation the heat map uses).
3. Per image: the mean, over its :data:`K` most anomalous patches, of (patch feature −
   its nearest normal patch), followed by the image's anomaly score (its largest
   position-normalised patch anomaly) scaled to the median norm of those means times
   :data:`SCORE_WEIGHT`. One (n_rows, dim + 1) float32 vector per image.

Patches come from the stored patch maps (:mod:`labeler.embedding.patch_maps`): no CNN
runs here unless the maps are missing (then they are computed first, one pass). The
vectors are stored as the feature set ``'defect'`` (:func:`labeler.embedding.feature_sets.save_feature_set`,
kind ``'defect'``), so search, the label-next queue, suggestions and exports use them like
any feature set (``labeler features --use defect``).

The constants were chosen by ``benchmarks/bench_defects.py`` on ELPV and the DeepPCB crops
(figures in docs/defects.md).

Refreshing: the set records the normal images its bank was drawn from;
:func:`defect_features_stale` says whether the images carrying the normal label changed
since (or the maps, the bank or the image count did), and :func:`refresh_defect_features`
recomputes with the same normal label.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import BadInputError, NotFoundError
from .patchcore import Bank, build_bank, hash_ids, image_scores, load_bank, save_bank

__all__ = ["K", "NAME", "POOLING", "SCORE_WEIGHT", "anomaly_grid", "anomaly_scores", "compute_defect_features",
           "defect_features_stale", "defect_vectors", "most_anomalous_unlabelled", "refresh_defect_features"]

#: The feature set's name.
NAME = "defect"
#: Most anomalous patches pooled per image (of 196 cells with the default 14 x 14 maps). Measured
#: (bench_defects.py --scan and runs in docs/defects.md), unnormalised bank of 2,450: ELPV defective
#: macro P@1 0.806 / 0.793 at k = 8 / 16; DeepPCB crops (label, own board out) 0.582 / 0.543 / 0.468
#: at k = 8 / 16 / 32.
K = 8
#: Pooling: the mean residual and the mean patch feature of the k patches (ELPV 0.811 against 0.776
#: for the residual alone at k = 8, position-normalised; DeepPCB 0.582 against 0.549 unnormalised).
POOLING = "residual+feature"
#: Weight of the anomaly-score column, relative to the median norm of the pooled residuals (ELPV
#: macro P@1 0.812 at 1 against 0.816 at 0 and 0.812 at 3, within noise; kept so that the vector
#: carries how anomalous the image is).
SCORE_WEIGHT = 1.0

NOT_COMPUTED = "no anomaly scores yet: run `labeler features --project DIR --compute defect --normal-label LABEL`"


def defect_vectors(maps: np.ndarray, rows: np.ndarray, bank: Bank, anomaly: np.ndarray, nearest: np.ndarray, *,
                   k: int = K, score_weight: float = SCORE_WEIGHT, pooling: str = POOLING) -> np.ndarray:
    """Pool each image's ``k`` most anomalous patches into one vector.

    Parameters
    ----------
    maps : ndarray (n_rows, P, dim)
        Stored patch maps.
    rows : ndarray (n,) int
        Rows described (those :func:`labeler.embedding.patchcore.build_bank` scored).
    bank : Bank
    anomaly, nearest : ndarray (n, P)
        Position-normalised patch anomaly and nearest bank patch of those rows
        (:func:`labeler.embedding.patchcore.score_maps`).
    k : int, default :data:`K`
        1 to P.
    score_weight : float, default :data:`SCORE_WEIGHT`
        0 leaves the score column at zero.
    pooling : {'residual', 'residual+feature'}, default :data:`POOLING`
        Mean of (patch − nearest normal patch), or that and the mean of the patches themselves.

    Returns
    -------
    ndarray (n, dim + 1) or (n, 2 dim + 1), float32
        The last column is the scaled image anomaly score.

    Raises
    ------
    BadInputError
        ``k`` out of range or an unknown pooling.
    """
    p, dim = maps.shape[1], maps.shape[2]
    if not 1 <= k <= p:
        raise BadInputError(f"k must be 1..{p} (cells per map), not {k}")
    if pooling not in ("residual", "residual+feature"):
        raise BadInputError(f"unknown pooling {pooling!r}: residual or residual+feature")
    top = np.argpartition(-anomaly, k - 1, axis=1)[:, :k] if k < p else np.tile(np.arange(p), (len(rows), 1))
    parts = []
    res = np.empty((len(rows), dim), np.float32)
    feat = np.empty((len(rows), dim), np.float32)
    for i in range(0, len(rows), 1024):
        r, t = rows[i : i + 1024], top[i : i + 1024]
        f = np.take_along_axis(np.asarray(maps[r], np.float32), t[:, :, None], axis=1)  # (b, k, dim)
        nn = bank.patches[np.take_along_axis(nearest[i : i + 1024], t, axis=1)]  # (b, k, dim)
        res[i : i + 1024] = (f - nn).mean(1)
        feat[i : i + 1024] = f.mean(1)
    parts.append(res)
    if pooling == "residual+feature":
        parts.append(feat)
    scale = float(np.median(np.linalg.norm(res, axis=1))) if len(res) else 1.0
    score = image_scores(anomaly)
    s_med = float(np.median(score)) if len(score) else 1.0
    parts.append((score_weight * scale * score / max(s_med, 1e-6))[:, None])
    return np.concatenate(parts, axis=1).astype(np.float32)


def compute_defect_features(project, normal_label: str | None = None, *, ids=None, name: str = NAME, k: int = K,
                            score_weight: float = SCORE_WEIGHT, pooling: str = POOLING, seed: int = 0,
                            normalise: str | None = None, device: str = "cpu", progress: bool = False) -> dict:
    """Fit the normal bank, store it, and store the defect-aware feature set.

    Parameters
    ----------
    project : labeler.project.Project
    normal_label : str or None
        The label meaning "nothing wrong"; None: the bank comes from a random sample of all images.
    ids : sequence of int or None
        Exactly these normal image ids (benchmarks); overrides ``normal_label``'s images.
    name : str, default :data:`NAME`
    k, score_weight, pooling
        See :func:`defect_vectors`.
    seed : int, default 0
    normalise : {'none', 'position'} or None
        How patch distances are normalised (:func:`labeler.embedding.patchcore.build_bank`);
        None: :data:`labeler.embedding.patchcore.NORMALISE`.
    device, progress
        For the patch maps, computed first when missing.

    Returns
    -------
    dict
        ``name``, ``rows``, ``dim``, ``seconds``, ``bank_seconds``, ``bank_images``,
        ``bank_patches``, ``bank_bytes``, ``features_bytes``, ``failures`` (rows without a map).

    Raises
    ------
    BadInputError
        No image carries ``normal_label`` (or none has a map), a bad ``k`` or pooling.
    ProjectError
        The project has not been ingested.
    """
    from .feature_sets import feature_set_path, save_feature_set
    from .patch_maps import load_patch_maps

    t0 = time.perf_counter()
    from .patchcore import NORMALISE

    normalise = normalise or NORMALISE
    bank, binfo, rows, anomaly, nearest = build_bank(project, normal_label, ids=ids, seed=seed, device=device,
                                                     progress=progress, normalise=normalise)
    t_bank = time.perf_counter() - t0
    save_bank(project, bank, binfo, rows, anomaly)
    maps, _ = load_patch_maps(project)
    v = defect_vectors(maps, rows, bank, anomaly, nearest, k=k, score_weight=score_weight, pooling=pooling)
    out = np.zeros((project.store.next_row(), v.shape[1]), np.float32)
    out[rows] = v
    info = {"kind": "defect", "feature_type": "defect", "normal_label": normal_label,
            "normal_ids": binfo["image_ids"], "candidate_ids_hash": binfo["candidate_ids_hash"],
            "bank_images": binfo["images"], "bank_patches": binfo["patches"], "bank_created": binfo["created"],
            "maps_created": binfo["maps_created"], "k": int(k), "pooling": pooling,
            "score_weight": float(score_weight), "seed": int(seed), "explicit_ids": ids is not None,
            "normalise": normalise}
    save_feature_set(project, name, out, info)
    return {"name": name, "rows": int(out.shape[0]), "dim": int(out.shape[1]),
            "seconds": round(time.perf_counter() - t0, 2), "bank_seconds": round(t_bank, 2),
            "bank_images": binfo["images"], "bank_patches": binfo["patches"],
            "bank_bytes": int((project.models_dir / "patchcore.npz").stat().st_size),
            "features_bytes": int(feature_set_path(project, name).stat().st_size),
            "failures": int(out.shape[0] - len(rows))}


def _set_info(project, name: str) -> dict:
    info = (project.store.get_meta("feature_sets") or {}).get(name)
    if not info or info.get("kind") != "defect":
        raise NotFoundError(f"no defect feature set {name!r} yet: run "
                            "`labeler features --project DIR --compute defect --normal-label LABEL`")
    return info


def defect_features_stale(project, name: str = NAME) -> bool:
    """Whether the defect feature set should be recomputed.

    True when the images carrying its normal label are no longer those its bank was drawn
    from (more normal labels arrived, or some were removed), when images were added, or when
    the patch maps or the stored bank changed since. A set made from explicit ids (benchmarks)
    or without a normal label is stale only for the last three reasons.

    Raises
    ------
    NotFoundError
        No defect feature set of that name.
    """
    from .patch_maps import patch_maps_info

    info = _set_info(project, name)
    if (patch_maps_info(project).get("created") != info.get("maps_created")
            or (project.store.get_meta("patchcore") or {}).get("created") != info.get("bank_created")):
        return True
    from .feature_sets import load_feature_set

    if load_feature_set(project, name).shape[0] != project.store.next_row():
        return True
    label = info.get("normal_label")
    if label is None or info.get("explicit_ids"):
        return False
    now = [i for i, lab in project.store.labels().items() if lab == label]
    return hash_ids(now) != info.get("candidate_ids_hash")


def refresh_defect_features(project, name: str = NAME, *, force: bool = False, device: str = "cpu",
                            progress: bool = False) -> dict | None:
    """Recompute the defect feature set with its stored settings when it is stale.

    Returns
    -------
    dict or None
        :func:`compute_defect_features`'s report; None when it was up to date (and not ``force``).

    Raises
    ------
    NotFoundError
        No defect feature set of that name.
    BadInputError
        No image carries its normal label any more.
    """
    info = _set_info(project, name)
    if not force and not defect_features_stale(project, name):
        return None
    return compute_defect_features(project, info.get("normal_label"), name=name, k=int(info.get("k", K)),
                                   score_weight=float(info.get("score_weight", SCORE_WEIGHT)),
                                   pooling=info.get("pooling", POOLING), seed=int(info.get("seed", 0)),
                                   normalise=info.get("normalise"), device=device, progress=progress)


def anomaly_scores(project) -> np.ndarray:
    """Image anomaly score of every image row.

    Returns
    -------
    ndarray (n_rows,) float32
        Row i belongs to the image with ``images.row == i``: its largest patch anomaly,
        the distance to the nearest normal patch (by default), or that distance over the
        median at its grid position when the bank was fitted with ``normalise='position'``
        (then 1 = typical). Larger = less like any normal patch. NaN for rows without a
        patch map (unreadable, or added after the bank was fitted).

    Raises
    ------
    NotFoundError
        No bank yet (the message names the command).
    """
    try:
        _, _, scores = load_bank(project)
    except NotFoundError:
        raise NotFoundError(NOT_COMPUTED) from None
    n = project.store.next_row()
    out = np.full(n, np.nan, np.float32)
    out[: min(n, len(scores))] = scores[:n]
    return out


def most_anomalous_unlabelled(project, n: int) -> tuple[list[tuple[int, float]], int]:
    """The unlabelled images with the highest anomaly scores (:func:`anomaly_scores`).

    Returns
    -------
    top : list of (int, float)
        (image id, score), highest first, at most ``n``.
    scored : int
        How many unlabelled images have a score.

    Raises
    ------
    NotFoundError
        No bank yet (the message names the command).
    """
    scores = anomaly_scores(project)
    row_ids = np.asarray(project.store.row_image_ids())
    m = min(len(scores), len(row_ids))
    scores, row_ids = scores[:m], row_ids[:m]
    labelled = np.fromiter(project.store.labels(), dtype=np.int64)
    rows = np.flatnonzero((row_ids >= 0) & np.isfinite(scores) & ~np.isin(row_ids, labelled))
    top = rows[np.argsort(-scores[rows], kind="stable")[:n]]
    return [(int(row_ids[r]), float(scores[r])) for r in top], int(len(rows))


def anomaly_grid(project, image_id: int) -> np.ndarray:
    """Position-normalised patch anomaly of a stored image, from its stored map and the current bank.

    No CNN runs (one exact search of grid² patches against the bank: milliseconds).

    Returns
    -------
    ndarray (grid, grid) float32
        Row-major like the map; cell boxes in pixels: :func:`labeler.embedding.patch_maps.cell_boxes`.

    Raises
    ------
    NotFoundError
        No maps or no bank yet, or the image has no stored map.
    StoreError
        No image with that id.
    """
    from .patchcore import anomaly_grid_of_image

    try:
        return anomaly_grid_of_image(project, image_id)
    except NotFoundError as e:
        if "memory bank" in str(e):
            raise NotFoundError(NOT_COMPUTED) from None
        raise
