"""The clustering stage: fit HDBSCAN / KMeans, place the rest, summarise each cluster.

- HDBSCAN (Campello, Moulavi & Sander 2013; the ``hdbscan`` package of McInnes,
  Healy & Astels) on a low-dimensional UMAP space: density clusters, noise = -1,
  membership strength from ``probabilities_``.
- KMeans (scikit-learn) on the normalised PCA vectors, k given or chosen by
  the silhouette coefficient (Rousseeuw 1987) over a range.

Cluster ids are renumbered largest first (0 = biggest cluster); noise stays -1.

The algorithms (``run_*``, :func:`choose_k`, :func:`summarize`) take and return
plain arrays; :func:`cluster_project` and :func:`summarize_clusters` apply them
to a project and store the result (``labeler ingest`` and ``labeler cluster``
call them).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .cluster_placement import fast_approximate_predict
from .errors import BadInputError, NotIngestedError
from .reduce import l2_normalize

if TYPE_CHECKING:
    from .config import Settings
    from .project import Project

NOISE = -1
CLUSTER_MODEL = "clusterer.joblib"  # under models/: what place_images needs
PLACEMENTS = ("auto", "vectorised", "hdbscan")
#: 'auto' placement: fast_approximate_predict from this many points on (below, the
#: per-call set-up over the condensed tree is not worth it).
VECTORISED_FROM = 2_000
#: Points HDBSCAN is fitted on above this size; the rest are placed (:func:`run_hdbscan`).
#: Chosen on 1M synthetic points (10-d UMAP space of ``benchmarks/bench_reduce.py``'s
#: clustered embeddings, 30 true clusters), one run: a 200k fit took 240.7 s, 100k 70.7 s,
#: 50k 36.2 s (placement of the rest included), with the same ARI against the truth
#: (0.980) and ARI 0.999 between them; 46 / 41 / 36 clusters.
HDBSCAN_FIT_SAMPLE = 100_000


def renumber_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber cluster ids 0..m-1, largest first (ties by old id); -1 stays -1."""
    labels = np.asarray(labels, dtype=np.int64)
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    order = ids[np.lexsort((ids, -counts))]
    mapping = {int(old): new for new, old in enumerate(order)}
    out = np.full_like(labels, NOISE)
    for old, new in mapping.items():
        out[labels == old] = new
    return out


@dataclass
class HDBSCANFit:
    """A fitted HDBSCAN and the cluster ids it gave.

    Attributes
    ----------
    model : hdbscan.HDBSCAN
        Fitted with ``prediction_data=True`` when :func:`fit_hdbscan` was asked
        for it, so that :func:`predict_hdbscan` can place new points.
    labels : ndarray of shape (n,), int64
        Cluster of each point, -1 = noise, renumbered largest first.
    strengths : ndarray of shape (n,), float32 in [0, 1]
    renumber : dict[int, int]
        The model's own cluster id -> the renumbered id in ``labels``.
    """

    model: Any
    labels: np.ndarray
    strengths: np.ndarray
    renumber: dict[int, int]


def fit_hdbscan(
    space: np.ndarray, *, min_cluster_size: int = 15, min_samples: int | None = 5,
    fit_sample: int | None = HDBSCAN_FIT_SAMPLE, seed: int = 0, prediction_data: bool = True,
    placement: str = "auto",
) -> HDBSCANFit:
    """HDBSCAN on ``space`` (n, d) float32; see :func:`run_hdbscan`.

    ``prediction_data`` keeps what ``hdbscan.approximate_predict`` needs to place
    new points later (always kept when fitting on a sample). ``placement``
    places the points outside the fit sample: 'hdbscan' =
    ``hdbscan.approximate_predict``, 'vectorised' = :func:`fast_approximate_predict`
    (same result, faster), 'auto' = vectorised from ``VECTORISED_FROM`` points on.

    Raises
    ------
    BadInputError
        min_cluster_size < 2, or an unknown ``placement``.
    """
    import hdbscan

    if min_cluster_size < 2:
        raise BadInputError("min_cluster_size must be at least 2")
    if placement not in PLACEMENTS:
        raise BadInputError(f"unknown placement {placement!r}: one of {', '.join(PLACEMENTS)}")
    x = np.asarray(space, dtype=np.float64)
    n = len(x)
    if n < 3:
        return HDBSCANFit(None, np.full(n, NOISE, dtype=np.int64), np.zeros(n, dtype=np.float32), {})
    sample = None
    if fit_sample is not None and n > fit_sample:
        sample = np.sort(np.random.default_rng(seed).choice(n, size=fit_sample, replace=False))
    fit_x = x if sample is None else x[sample]
    mcs = int(min(min_cluster_size, max(2, len(fit_x))))
    ms = None if not min_samples else int(min(min_samples, max(1, len(fit_x) - 1)))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        model = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=ms, core_dist_n_jobs=1,
                                prediction_data=prediction_data or sample is not None)
        model.fit(fit_x)
        if sample is None:
            raw, strengths = model.labels_.astype(np.int64), model.probabilities_.astype(np.float32)
        else:
            raw = np.empty(n, dtype=np.int64)
            strengths = np.empty(n, dtype=np.float32)
            raw[sample], strengths[sample] = model.labels_, model.probabilities_
            rest = np.setdiff1d(np.arange(n), sample)
            raw[rest], strengths[rest] = _approximate_predict(model, x[rest], placement)
    labels = renumber_by_size(raw)
    renumber = {int(r): int(lab) for r, lab in zip(*np.unique(np.stack([raw, labels]), axis=1)) if r >= 0}
    return HDBSCANFit(model, labels, strengths, renumber)


def run_hdbscan(
    space: np.ndarray, *, min_cluster_size: int = 15, min_samples: int | None = 5,
    fit_sample: int | None = HDBSCAN_FIT_SAMPLE, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """HDBSCAN on ``space`` (n, d) float32.

    Above ``fit_sample`` points HDBSCAN is fitted on a random sample of that size
    and the other points are placed as ``hdbscan.approximate_predict`` places
    them (the hdbscan docs' "Predicting clusters for new points"; from 2,000
    points on by :func:`fast_approximate_predict`): the full fit's time
    grows faster than linearly with n. ``min_cluster_size`` then counts points
    of the sample: a cluster needs about ``min_cluster_size * n / fit_sample``
    images (150 at 1M with the default).

    Returns
    -------
    labels : ndarray (n,), int64, -1 = noise, renumbered largest first
    strengths : ndarray (n,), float32 in [0, 1] (``probabilities_``, or the
        prediction strength for points placed by approximate_predict)

    Raises
    ------
    BadInputError
        min_cluster_size < 2.
    """
    fit = fit_hdbscan(space, min_cluster_size=min_cluster_size, min_samples=min_samples,
                      fit_sample=fit_sample, seed=seed, prediction_data=False)
    return fit.labels, fit.strengths


def _approximate_predict(model: Any, x: np.ndarray, placement: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels (m,) int64 and strengths (m,) float32 of ``x`` by the chosen ``placement``."""
    import hdbscan

    if placement == "vectorised" or (placement == "auto" and len(x) >= VECTORISED_FROM):
        return fast_approximate_predict(model, x)
    raw = np.empty(len(x), dtype=np.int64)
    strengths = np.empty(len(x), dtype=np.float32)
    for i in range(0, len(x), 100_000):
        raw[i : i + 100_000], strengths[i : i + 100_000] = hdbscan.approximate_predict(model, x[i : i + 100_000])
    return raw, strengths


def predict_hdbscan(fit: HDBSCANFit, points: np.ndarray, *, placement: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Place new points (m, d) in the clusters of a fit (``hdbscan.approximate_predict``).

    The points must live in the space the model was fitted in. A point that
    falls in no cluster is noise (-1); the model is not refitted, so no
    existing point changes cluster (hdbscan docs, "Predicting clusters for new
    points").

    Returns
    -------
    labels : ndarray (m,), int64, the fit's renumbered ids, -1 = noise
    strengths : ndarray (m,), float32 in [0, 1]

    Raises
    ------
    BadInputError
        An unknown ``placement`` (see :func:`fit_hdbscan`).
    """
    if placement not in PLACEMENTS:
        raise BadInputError(f"unknown placement {placement!r}: one of {', '.join(PLACEMENTS)}")
    x = np.asarray(points, dtype=np.float64)
    if fit.model is None or len(x) == 0:
        return np.full(len(x), NOISE, dtype=np.int64), np.zeros(len(x), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        raw, strengths = _approximate_predict(fit.model, x, placement)
    labels = np.array([fit.renumber.get(int(r), NOISE) for r in raw], dtype=np.int64)
    return labels, np.asarray(strengths, dtype=np.float32)


def nearest_centroid(vectors: np.ndarray, labels: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The cluster whose normalised centroid is most cosine-similar to each point.

    How KMeans assigns a point (Lloyd 1982) without refitting; noise (-1)
    members are left out, so every point gets a real cluster.

    Parameters
    ----------
    vectors : ndarray of shape (n, d), float32
        Unit vectors of the clustered images.
    labels : ndarray of shape (n,), int
        Their clusters (-1 = noise).
    points : ndarray of shape (m, d), float32
        Unit vectors to place.

    Returns
    -------
    ndarray of shape (m,), int64; -1 everywhere when there is no cluster.
    """
    labels = np.asarray(labels)
    ids = np.unique(labels[labels != NOISE])
    if len(ids) == 0:
        return np.full(len(points), NOISE, dtype=np.int64)
    x = np.asarray(vectors, dtype=np.float32)
    centroids = l2_normalize(np.stack([x[labels == c].mean(axis=0) for c in ids]))
    return ids[np.argmax(np.asarray(points, dtype=np.float32) @ centroids.T, axis=1)].astype(np.int64)


def run_kmeans(vectors: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """KMeans (k-means++, n_init=4) on (n, d) vectors: labels (n,) int64, largest first.

    Raises
    ------
    BadInputError
        k < 1 or k > n.
    """
    from sklearn.cluster import KMeans

    x = np.asarray(vectors, dtype=np.float32)
    if not 1 <= k <= len(x):
        raise BadInputError(f"k must be between 1 and the number of images ({len(x)}), got {k}")
    km = KMeans(n_clusters=int(k), n_init=4, random_state=seed)
    return renumber_by_size(km.fit_predict(x))


def choose_k(
    vectors: np.ndarray, k_range: Sequence[int] = (2, 20), *, seed: int = 0, sample: int = 5000
) -> tuple[int, dict[int, float]]:
    """The k in ``k_range`` (inclusive) with the best silhouette (cosine) of KMeans.

    Silhouette is computed on at most ``sample`` random rows (it is O(n^2)).
    Returns (best k, {k: silhouette}).

    Raises
    ------
    BadInputError
        No k >= 2 of ``k_range`` fits the number of rows.
    """
    from sklearn.metrics import silhouette_score

    x = np.asarray(vectors, dtype=np.float32)
    lo, hi = int(k_range[0]), int(min(k_range[1], len(x) - 1))
    if hi < max(2, lo):
        raise BadInputError(f"cannot choose k in {list(k_range)} for {len(x)} images")
    scores = {}
    for k in range(max(2, lo), hi + 1):
        labels = run_kmeans(x, k, seed=seed)
        scores[k] = float(
            silhouette_score(x, labels, metric="cosine", sample_size=min(sample, len(x)), random_state=seed)
        )
    best = max(scores, key=lambda k: (scores[k], -k))
    return best, scores


def medoid_order(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Members of one cluster ordered by their sum of cosine distances to the others.

    The first is the cluster's **medoid** under cosine distance (the member that
    minimises the sum of distances to all members; Kaufman & Rousseeuw 1990,
    "Finding Groups in Data", ch. 2). For unit vectors the sum needs no pairwise
    matrix: with ``S`` the sum of the members,
    ``sum_j (1 - x_i . x_j) = n - x_i . S``, so ordering by ``x_i . S`` descending
    orders by that sum ascending. This is exact, O(n d), with no sampling,
    whatever the cluster's size. It is also the member most similar to the
    normalised centroid ``S / |S|``.

    Parameters
    ----------
    vectors : ndarray of shape (n, d), float
        The members' vectors; rows are L2-normalised here (zero rows stay zero).

    Returns
    -------
    order : ndarray of shape (n,), int64
        Member positions, medoid first (ties keep input order).
    mean_similarity : ndarray of shape (n,), float32
        Each member's cosine similarity to the normalised centroid, in input
        order (its mean is the cluster's cohesion); zeros when ``S`` is zero.
    """
    x = l2_normalize(vectors)
    total = x.sum(axis=0, dtype=np.float64)
    norm = np.linalg.norm(total)
    sims = (x @ (total / norm)).astype(np.float32) if norm > 0 else np.zeros(len(x), np.float32)
    return np.argsort(-sims, kind="stable").astype(np.int64), sims


def summarize(
    vectors: np.ndarray,
    image_ids: np.ndarray,
    labels: np.ndarray,
    *,
    n_representatives: int = 12,
) -> list[dict]:
    """Per-cluster summaries.

    Parameters
    ----------
    vectors : ndarray of shape (n, k), float32
        PCA vectors (normalised here if they are not).
    image_ids, labels : ndarray of shape (n,), int64
        Image id and cluster id (-1 = noise) of each row.
    n_representatives : int
        How many representatives each summary lists.

    Returns
    -------
    list of dict
        cluster, size, medoid_id (the cosine medoid, :func:`medoid_order`),
        representatives (ids of the most central members, medoid first),
        cohesion (mean cosine similarity to the normalised centroid, in [-1, 1]).
        Noise gets a summary too (cluster -1) with cohesion None. A cluster's
        ImageNet hint is computed when shown (:func:`labeler.hints.project_cluster_hints`).
    """
    x = np.asarray(vectors, dtype=np.float32)
    labels = np.asarray(labels)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        order, sims = medoid_order(x[idx])
        central = idx[order]
        out.append(
            {
                "cluster": int(c),
                "size": int(len(idx)),
                "medoid_id": int(image_ids[central[0]]),
                "representatives": [int(i) for i in image_ids[central[:n_representatives]]],
                "cohesion": None if c == NOISE else float(sims.mean()),
            }
        )
    return out


# -- a project's clustering ---------------------------------------------------------------
def clustering_up_to_date(project: "Project", n_rows: int) -> bool:
    """Whether the current clustering assigns every one of the ``n_rows`` images."""
    return project.store.current_clustering() is not None and len(project.store.assignments()[0]) == n_rows


def cluster_project(project: "Project", settings: "Settings", *, vectors: np.ndarray | None = None) -> int:
    """Cluster the project with ``settings.method``; store it as the current clustering.

    HDBSCAN runs on ``cluster_space.npy`` (the space of the current map, whichever
    feature set it was fitted in: :mod:`labeler.map_versions`), KMeans on ``vectors``
    (default: the normalised ingest PCA vectors, ``pca.npy``), which also give the
    cluster summaries. The clustering's params record the map it was made on
    (``map``) and the feature set of the space it was clustered in (``feature_set``).

    Parameters
    ----------
    project : Project
    settings : Settings
    vectors : ndarray of shape (n_rows, P), float32, optional
        L2-normalised PCA vectors of the current map's feature set
        (:func:`labeler.pipeline.rebuild_maps` returns them), row i = image row i.

    Returns
    -------
    int
        The id of the new clustering.

    Raises
    ------
    BadInputError
        Unknown method, or a k the collection cannot take.
    NotIngestedError
        The project has no PCA vectors or clustering space yet.
    """
    from .map_versions import INGEST, current_map_id, map_info

    if settings.method not in ("hdbscan", "kmeans"):
        raise BadInputError(f"unknown clustering method {settings.method!r}: hdbscan or kmeans")
    store = project.store
    row_ids = store.row_image_ids()
    info = map_info(project)
    space_set = info["feature_set"]
    vector_set = INGEST if vectors is None else space_set
    vectors = _load(project, "pca") if vectors is None else np.asarray(vectors, dtype=np.float32)
    of = "" if space_set == INGEST else f" of {space_set}"
    fit = None
    if settings.method == "hdbscan":
        space = _load(project, "cluster_space")
        fit = fit_hdbscan(
            space, min_cluster_size=settings.min_cluster_size, min_samples=settings.min_samples,
            seed=settings.seed,
        )
        labels, strengths = fit.labels, fit.strengths
        params = {"min_cluster_size": settings.min_cluster_size, "min_samples": settings.min_samples,
                  "space": f"umap-{space.shape[1]}d of pca-{info.get('pca_components') or vectors.shape[1]}{of}",
                  "feature_set": space_set}
    else:
        k = settings.k
        params = {"space": f"pca-{vectors.shape[1]}{'' if vector_set == INGEST else of} (cosine)",
                  "feature_set": vector_set}
        if not k:
            k, scores = choose_k(vectors, settings.k_range, seed=settings.seed)
            params["silhouette"] = {str(kk): round(v, 4) for kk, v in scores.items()}
        labels, strengths = run_kmeans(vectors, k, seed=settings.seed), None
        params["k"] = int(k)
    params["map"] = current_map_id(project)
    summaries = summarize_clusters(project, row_ids, labels, vectors)
    cid = store.add_clustering(settings.method, params, row_ids, labels, strengths, summaries)
    _save_model(project, {"method": settings.method, "fit": fit, "clustering_id": cid})
    store.set_meta(clustering_stale=False)
    return cid


def _save_model(project: "Project", bundle: dict) -> None:
    from .integrity import dump_model

    dump_model(project, bundle, project.models_dir / CLUSTER_MODEL)  # atomic, in the manifest


def can_place(project: "Project") -> bool:
    """Whether new images can join the current clustering without re-clustering.

    True when a clustering exists and the clustering model that made it was
    saved (projects clustered by labeler 0.1 lack ``models/clusterer.joblib``).
    """
    return project.store.current_clustering() is not None and (project.models_dir / CLUSTER_MODEL).is_file()


def place_images(project: "Project", rows: np.ndarray) -> int:
    """Put the images at array ``rows`` into the current clustering's clusters.

    The images must already have their PCA vectors and clustering-space
    coordinates (``pca.npy``, ``cluster_space.npy``). Every other image keeps its
    cluster id and strength exactly; the images at ``rows`` get the cluster the
    saved model predicts: HDBSCAN ``approximate_predict`` in the clustering space
    (noise where they fit no cluster; :func:`predict_hdbscan`), or for KMeans the
    nearest centroid of the current clusters in PCA space
    (:func:`nearest_centroid`). When the annotator has edited the clustering
    since it was fitted (split, merge, move), a fitted cluster id is translated
    to the current cluster that holds most of its images.

    The result is stored as a new clustering whose parent is the current one
    (not an annotator action: nothing to undo).

    Parameters
    ----------
    project : Project
    rows : ndarray of shape (m,), int
        Array rows of the images to place (new or re-embedded images).

    Returns
    -------
    int
        The id of the new current clustering.

    Raises
    ------
    NotIngestedError
        No clustering yet, or no saved clustering model (run ``labeler cluster --remap``).
    """
    from .integrity import load_model

    store = project.store
    cur = store.current_clustering()
    if cur is None or not can_place(project):
        raise NotIngestedError("no saved clustering to place new images in: run `labeler cluster --remap`")
    bundle = load_model(project, project.models_dir / CLUSTER_MODEL)
    rows = np.asarray(rows, dtype=np.int64)
    row_ids = store.row_image_ids()
    cur_ids, cur_cl, cur_st = store.assignments()
    new_ids = row_ids[rows]
    pca = _load(project, "pca")
    if bundle["method"] == "hdbscan":
        fitted, strengths = predict_hdbscan(bundle["fit"], _load(project, "cluster_space")[rows])
        placed = _translate(fitted, store.assignments(bundle["clustering_id"]), (cur_ids, cur_cl))
    else:
        pos = np.full(int(row_ids.max(initial=-1)) + 1, -1, dtype=np.int64)
        pos[row_ids[row_ids >= 0]] = np.flatnonzero(row_ids >= 0)
        old = ~np.isin(cur_ids, new_ids)
        placed = nearest_centroid(pca[pos[cur_ids[old]]], cur_cl[old], pca[rows])
        strengths = np.full(len(rows), np.nan, dtype=np.float32)
    cluster_of = dict(zip(cur_ids.tolist(), zip(cur_cl.tolist(), cur_st.tolist())))
    cluster_of.update(zip(new_ids.tolist(), zip(placed.tolist(), strengths.tolist())))
    ids = row_ids[row_ids >= 0]
    labels = np.array([cluster_of[int(i)][0] for i in ids], dtype=np.int64)
    st = np.array([cluster_of[int(i)][1] for i in ids], dtype=np.float32)
    summaries = summarize_clusters(project, ids, labels, pca[row_ids >= 0])
    params = {**cur["params"], "base": int(cur["id"]), "placed": int(len(rows))}
    return store.add_clustering(cur["method"], params, ids, labels, None if np.isnan(st).all() else st,
                                summaries, parent_id=int(cur["id"]))


def _translate(fitted: np.ndarray, fit_assign: tuple, current: tuple) -> np.ndarray:
    """Fitted cluster ids -> the current cluster holding most of each fitted cluster's images."""
    fit_of = dict(zip(fit_assign[0].tolist(), fit_assign[1].tolist()))
    votes: dict[int, Counter] = {}
    for i, c in zip(current[0].tolist(), current[1].tolist()):
        f = fit_of.get(i)
        if f is not None and f != NOISE:
            votes.setdefault(f, Counter())[c] += 1
    to_current = {f: v.most_common(1)[0][0] for f, v in votes.items()}
    return np.array([to_current.get(int(f), NOISE) for f in fitted], dtype=np.int64)


def _load(project: "Project", name: str) -> np.ndarray:
    if not project.has_array(name):
        raise NotIngestedError(f"{name}.npy does not exist yet: run `labeler ingest` first")
    return project.load_array(name, mmap=False)


def summarize_clusters(project: "Project", image_ids: np.ndarray, labels: np.ndarray,
                       vectors: np.ndarray) -> list[dict]:
    """Per-cluster summaries (:func:`summarize`) of a project's clustering.

    Parameters
    ----------
    image_ids, labels : ndarray of shape (n,), int64
    vectors : ndarray of shape (n, k), float32
        The normalised PCA vectors of ``image_ids``, in the same order.
    """
    return summarize(vectors, image_ids, labels)
