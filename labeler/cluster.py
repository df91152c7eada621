"""Clustering algorithms and per-cluster summaries (pure numpy / scikit-learn).

- HDBSCAN (Campello, Moulavi & Sander 2013; the ``hdbscan`` package of McInnes,
  Healy & Astels) on a low-dimensional UMAP space: density clusters, noise = -1,
  membership strength from ``probabilities_``.
- KMeans (scikit-learn) on the normalised PCA vectors, k given or chosen by
  the silhouette coefficient (Rousseeuw 1987) over a range.

Cluster ids are renumbered largest first (0 = biggest cluster); noise stays -1.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np

NOISE = -1


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


def run_hdbscan(
    space: np.ndarray, *, min_cluster_size: int = 15, min_samples: int | None = 5,
    fit_sample: int | None = 200_000, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """HDBSCAN on ``space`` (n, d) float32.

    Above ``fit_sample`` points HDBSCAN is fitted on a random sample of that size
    and the other points are placed with ``hdbscan.approximate_predict`` (the
    hdbscan docs' "Predicting clusters for new points"): the full fit's time
    grows faster than linearly with n. ``min_cluster_size`` then counts points
    of the sample.

    Returns
    -------
    labels : ndarray (n,), int64, -1 = noise, renumbered largest first
    strengths : ndarray (n,), float32 in [0, 1] (``probabilities_``, or the
        prediction strength for points placed by approximate_predict)

    Raises
    ------
    ValueError
        min_cluster_size < 2.
    """
    import hdbscan

    if min_cluster_size < 2:
        raise ValueError("min_cluster_size must be at least 2")
    x = np.asarray(space, dtype=np.float64)
    n = len(x)
    if n < 3:
        return np.full(n, NOISE, dtype=np.int64), np.zeros(n, dtype=np.float32)
    sample = None
    if fit_sample is not None and n > fit_sample:
        sample = np.sort(np.random.default_rng(seed).choice(n, size=fit_sample, replace=False))
    fit_x = x if sample is None else x[sample]
    mcs = int(min(min_cluster_size, max(2, len(fit_x))))
    ms = None if not min_samples else int(min(min_samples, max(1, len(fit_x) - 1)))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        model = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=ms, core_dist_n_jobs=1,
                                prediction_data=sample is not None)
        model.fit(fit_x)
        if sample is None:
            return renumber_by_size(model.labels_), model.probabilities_.astype(np.float32)
        labels = np.empty(n, dtype=np.int64)
        strengths = np.empty(n, dtype=np.float32)
        labels[sample], strengths[sample] = model.labels_, model.probabilities_
        rest = np.setdiff1d(np.arange(n), sample)
        for i in range(0, len(rest), 100_000):
            part = rest[i : i + 100_000]
            labels[part], strengths[part] = hdbscan.approximate_predict(model, x[part])
    return renumber_by_size(labels), strengths


def run_kmeans(vectors: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """KMeans (k-means++, n_init=4) on (n, d) vectors: labels (n,) int64, largest first.

    Raises
    ------
    ValueError
        k < 1 or k > n.
    """
    from sklearn.cluster import KMeans

    x = np.asarray(vectors, dtype=np.float32)
    if not 1 <= k <= len(x):
        raise ValueError(f"k must be between 1 and the number of images ({len(x)}), got {k}")
    km = KMeans(n_clusters=int(k), n_init=4, random_state=seed)
    return renumber_by_size(km.fit_predict(x))


def choose_k(
    vectors: np.ndarray, k_range: Sequence[int] = (2, 20), *, seed: int = 0, sample: int = 5000
) -> tuple[int, dict[int, float]]:
    """The k in ``k_range`` (inclusive) with the best silhouette (cosine) of KMeans.

    Silhouette is computed on at most ``sample`` random rows (it is O(n^2)).
    Returns (best k, {k: silhouette}).
    """
    from sklearn.metrics import silhouette_score

    x = np.asarray(vectors, dtype=np.float32)
    lo, hi = int(k_range[0]), int(min(k_range[1], len(x) - 1))
    if hi < max(2, lo):
        raise ValueError(f"cannot choose k in {list(k_range)} for {len(x)} images")
    scores = {}
    for k in range(max(2, lo), hi + 1):
        labels = run_kmeans(x, k, seed=seed)
        scores[k] = float(
            silhouette_score(x, labels, metric="cosine", sample_size=min(sample, len(x)), random_state=seed)
        )
    best = max(scores, key=lambda k: (scores[k], -k))
    return best, scores


def suggested_name(top1: np.ndarray, categories: Sequence[str] | None, n: int = 2) -> str | None:
    """'class a 40%, class b 21%' from the most frequent ImageNet top-1 classes. A hint only."""
    if categories is None or len(top1) == 0:
        return None
    valid = [int(t) for t in top1 if t is not None and 0 <= int(t) < len(categories)]
    if not valid:
        return None
    counts = Counter(valid).most_common(n)
    return ", ".join(f"{categories[c]} {100 * m / len(valid):.0f}%" for c, m in counts)


def summarize(
    vectors: np.ndarray,
    image_ids: np.ndarray,
    labels: np.ndarray,
    *,
    top1: np.ndarray | None = None,
    categories: Sequence[str] | None = None,
    n_representatives: int = 12,
) -> list[dict]:
    """Per-cluster summaries.

    Parameters
    ----------
    vectors : ndarray (n, k) float32, L2-normalised PCA vectors
    image_ids, labels : ndarray (n,), int64 (labels: cluster id, -1 noise)
    top1 : ndarray (n,), int or None
        ImageNet top-1 class of each image, for the suggested name.

    Returns
    -------
    list of dict
        cluster, size, medoid_id (the member most similar to the centroid),
        representatives (ids, most similar to the centroid first), cohesion (mean
        cosine similarity to the normalised centroid, in [-1, 1]), suggested_name.
        Noise gets a summary too (cluster -1) with cohesion None.
    """
    x = np.asarray(vectors, dtype=np.float32)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        centroid = x[idx].mean(axis=0)
        norm = np.linalg.norm(centroid)
        sims = x[idx] @ (centroid / norm) if norm > 0 else np.zeros(len(idx), np.float32)
        order = idx[np.argsort(-sims, kind="stable")]
        out.append(
            {
                "cluster": int(c),
                "size": int(len(idx)),
                "medoid_id": int(image_ids[order[0]]),
                "representatives": [int(i) for i in image_ids[order[:n_representatives]]],
                "cohesion": None if c == NOISE else float(sims.mean()),
                "suggested_name": suggested_name(top1[idx], categories) if top1 is not None else None,
            }
        )
    return out
