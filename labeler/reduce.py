"""Dimension reduction: PCA (+ L2 normalisation) and UMAP.

PCA compresses the backbone embeddings (e.g. 2048-d) to ``n_components``
(256 by default) and the result is L2-normalised so that a dot product is a
cosine similarity. UMAP (McInnes, Healy & Melville 2018, umap-learn) then makes
the 2-D map for the dashboard and a low-dimensional space for HDBSCAN.

Large collections: both are fitted on a random sample of at most
``fit_sample`` rows (UMAP: 20k), which keeps the time and memory of a fit
bounded (umap-learn docs: "UMAP on large datasets"). PCA transforms the other
rows; UMAP places them at the weighted mean of their nearest fitted
neighbours' positions (:func:`place_by_neighbours`) instead of running
``UMAP.transform`` on each, and the map and the clustering space share one
kNN graph (:func:`fit_umaps`). Figures: benchmarks/README.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # scikit-learn takes ~1 s to import: only when fitting
    from sklearn.decomposition import PCA


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm. (n, d) float -> (n, d) float32; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, eps)


def _sample(n: int, limit: int | None, seed: int) -> np.ndarray | None:
    if limit is None or n <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


@dataclass
class PCAResult:
    """A fitted PCA and the normalised vectors of the rows it was applied to.

    Attributes
    ----------
    model : sklearn.decomposition.PCA
    vectors : ndarray (n, n_components) float32, unit L2 norm
    explained_variance_ratio : ndarray (n_components,) float64
    """

    model: "PCA"
    vectors: np.ndarray
    explained_variance_ratio: np.ndarray


def fit_pca(
    embeddings: np.ndarray, n_components: int = 256, *, seed: int = 0, fit_sample: int | None = 200_000
) -> PCAResult:
    """Fit PCA on the embeddings and return L2-normalised PCA vectors.

    Parameters
    ----------
    embeddings : ndarray (n, D) float32
    n_components : int
        Capped at min(n, D) (sklearn's limit); must be >= 1.
    fit_sample : int or None
        Fit on at most this many random rows, then transform all.

    Raises
    ------
    ValueError
        Fewer than 2 rows, or n_components < 1.
    """
    from sklearn.decomposition import PCA

    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"PCA needs at least 2 embeddings, got shape {x.shape}")
    if n_components < 1:
        raise ValueError("n_components must be at least 1")
    k = int(min(n_components, x.shape[0], x.shape[1]))
    idx = _sample(len(x), fit_sample, seed)
    pca = PCA(n_components=k, svd_solver="auto", random_state=seed)
    pca.fit(x if idx is None else x[idx])
    z = transform_pca(pca, x)
    return PCAResult(pca, z, pca.explained_variance_ratio_.copy())


def transform_pca(pca: "PCA", embeddings: np.ndarray, batch: int = 65536) -> np.ndarray:
    """Project embeddings (n, D) with a fitted PCA and L2-normalise: (n, k) float32."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    out = np.empty((len(x), pca.n_components_), dtype=np.float32)
    for i in range(0, len(x), batch):
        out[i : i + batch] = pca.transform(x[i : i + batch])
    return l2_normalize(out)


def fit_umap(
    vectors: np.ndarray,
    n_components: int = 2,
    *,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    seed: int | None = 0,
    fit_sample: int | None = 20_000,
    place: str = "neighbours",
):
    """Fit UMAP (cosine metric) and embed every row.

    One space of :func:`fit_umaps`; see there for the parameters.

    Returns
    -------
    reducer : umap.UMAP
        Fitted; ``reducer.transform`` places new points.
    coords : ndarray (n, n_components) float32

    Raises
    ------
    ValueError
        Fewer than 3 rows, or an unknown ``place``.
    """
    return fit_umaps(vectors, [(n_components, min_dist)], n_neighbors=n_neighbors, seed=seed,
                     fit_sample=fit_sample, place=place)[0]


def fit_umaps(
    vectors: np.ndarray,
    spaces: Sequence[tuple[int, float]] = ((2, 0.1), (10, 0.0)),
    *,
    n_neighbors: int = 15,
    seed: int | None = 0,
    fit_sample: int | None = 20_000,
    place: str = "neighbours",
    place_k: int = 15,
) -> list[tuple]:
    """Fit several UMAPs (cosine metric) of the same rows on one kNN graph.

    The map (2-D) and the clustering space (~10-D) differ only in
    ``n_components`` and ``min_dist``; their fits share the k-nearest-neighbour
    graph, computed once with ``umap.umap_.nearest_neighbors`` (NN-descent)
    and passed as ``precomputed_knn`` (umap-learn docs, "Precomputed k-nn").
    Below 4,096 fitted rows umap-learn computes exact distances itself.

    Parameters
    ----------
    vectors : ndarray (n, k) float32, normalised PCA vectors
    spaces : sequence of (n_components, min_dist)
        E.g. ``[(2, 0.1), (10, 0.0)]``: the map, then the clustering space.
    seed : int or None
        Fixed seed = reproducible but single-threaded (umap-learn); None = parallel.
    fit_sample : int or None
        Fit on at most this many random rows and place the others.
    place : {'neighbours', 'transform'}
        How rows outside the fit sample are placed. 'neighbours': the
        weighted mean of the positions of their ``place_k`` nearest fitted rows
        (HNSW search in the PCA space; weights are UMAP's fuzzy membership
        strengths, as in the initialisation of ``UMAP.transform``), one kNN
        search for all spaces. 'transform': ``UMAP.transform`` (also optimises
        each new point's position; much slower at 1M).
    place_k : int
        Neighbours per placed row.

    Returns
    -------
    list of (reducer, coords)
        Per space: the fitted ``umap.UMAP`` and coords (n, n_components) float32.

    Raises
    ------
    ValueError
        Fewer than 3 rows, or an unknown ``place``.
    """
    import umap  # slow import (numba): only when needed
    from sklearn.utils import check_random_state

    if place not in ("neighbours", "transform"):
        raise ValueError(f"unknown placement {place!r}: 'neighbours' or 'transform'")
    x = np.asarray(vectors, dtype=np.float32)
    n = len(x)
    if n < 3:
        raise ValueError(f"UMAP needs at least 3 images, got {n}")
    idx = _sample(n, fit_sample, seed or 0)
    fit_x = x if idx is None else np.ascontiguousarray(x[idx])
    nn = int(max(2, min(n_neighbors, len(fit_x) - 1)))
    knn = None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        warnings.filterwarnings("ignore", message=".*k >= N.*")
        if len(fit_x) >= 4096:
            knn = umap.umap_.nearest_neighbors(fit_x, nn, "cosine", {}, False, check_random_state(seed),
                                               low_memory=True, use_pynndescent=True, n_jobs=-1)
        fitted = []
        for n_components, min_dist in spaces:
            reducer = umap.UMAP(
                n_components=n_components, n_neighbors=nn, min_dist=min_dist, metric="cosine",
                random_state=seed,
                # Small collections: spectral init needs more points than components.
                init="spectral" if len(fit_x) > n_components + 2 else "random",
                # umap-learn marks disconnected edges in these arrays in place: one copy each.
                precomputed_knn=(None, None, None) if knn is None else (knn[0].copy(), knn[1].copy(), knn[2]),
            )
            reducer.fit(fit_x)
            fitted.append(reducer)
        if idx is None:
            return [(r, np.asarray(r.embedding_, dtype=np.float32)) for r in fitted]
        rest = np.setdiff1d(np.arange(n), idx)
        coords = [np.empty((n, r.n_components), dtype=np.float32) for r in fitted]
        for r, c in zip(fitted, coords):
            c[idx] = r.embedding_
        if place == "transform":
            for r, c in zip(fitted, coords):
                for i in range(0, len(rest), 20_000):
                    c[rest[i : i + 20_000]] = r.transform(x[rest[i : i + 20_000]])
        else:
            placed = place_by_neighbours(fit_x, [r.embedding_ for r in fitted], x, rest, k=place_k)
            for c, p in zip(coords, placed):
                c[rest] = p
    return list(zip(fitted, coords))


#: umap-learn's constants of ``smooth_knn_dist`` (umap/umap_.py).
SMOOTH_K_TOLERANCE = 1e-5
MIN_K_DIST_SCALE = 1e-3


def membership_weights(similarities: np.ndarray, *, n_iter: int = 64) -> np.ndarray:
    """UMAP's fuzzy-set membership strengths of each row's neighbours, normalised per row.

    Distance d = 1 - cosine similarity; strength exp(-max(d - rho, 0) / sigma)
    with rho the nearest non-zero distance and sigma found by bisection so the
    strengths of neighbours 2..k sum to log2(k) (McInnes, Healy & Melville 2018,
    sec. 3; ``umap.umap_.smooth_knn_dist``, with ``local_connectivity=1``,
    vectorised over rows in numpy so a search query needs neither umap nor numba).

    Parameters
    ----------
    similarities : ndarray (m, k) float
        Cosine similarities of each row's k nearest neighbours, most similar first;
        -inf (a missing neighbour) gets weight 0.

    Returns
    -------
    ndarray (m, k) float32
        Non-negative weights summing to 1 per row (a row with no finite
        similarity: uniform).
    """
    s = np.atleast_2d(np.asarray(similarities, dtype=np.float64))
    m, k = s.shape
    if k == 0:
        return np.zeros((m, 0), np.float32)
    missing = ~np.isfinite(s)
    d = np.clip(1.0 - np.where(missing, 1.0, s), 0.0, None)
    d = np.where(missing, np.nan, d)
    pos = np.where(d > 0, d, np.inf)
    rho = np.min(pos, axis=1)
    rho = np.where(np.isfinite(rho), rho, 0.0)
    target = np.log2(k)
    lo, hi, mid = np.zeros(m), np.full(m, np.inf), np.ones(m)
    active = np.ones(m, bool)
    tail = d[:, 1:] - rho[:, None]
    for _ in range(n_iter):
        if not active.any():
            break
        a = np.flatnonzero(active)
        t = tail[a]
        psum = np.nansum(np.exp(-np.maximum(t, 0.0) / mid[a, None]), axis=1)  # d <= rho counts 1
        done = np.abs(psum - target) < SMOOTH_K_TOLERANCE
        high = ~done & (psum > target)
        low = ~done & ~high
        hi[a[high]] = mid[a[high]]
        mid[a[high]] = (lo[a[high]] + hi[a[high]]) / 2.0
        lo[a[low]] = mid[a[low]]
        mid[a[low]] = np.where(np.isinf(hi[a[low]]), mid[a[low]] * 2, (lo[a[low]] + hi[a[low]]) / 2.0)
        active[a[done]] = False
    mean_row = np.nanmean(np.where(missing, np.nan, d), axis=1) if missing.any() else d.mean(axis=1)
    mean_all = np.nanmean(d) if missing.any() else d.mean()
    floor = MIN_K_DIST_SCALE * np.where(rho > 0, np.nan_to_num(mean_row), np.nan_to_num(mean_all))
    sigma = np.maximum(mid, floor)
    w = np.exp(-np.maximum(d - rho[:, None], 0.0) / np.maximum(sigma[:, None], 1e-12))
    w = np.where(missing, 0.0, w)
    total = w.sum(axis=1, keepdims=True)
    w = np.where(total > 0, w / np.where(total > 0, total, 1.0), 1.0 / k)
    return w.astype(np.float32)


def place_by_neighbours(fitted: np.ndarray, fitted_coords: Sequence[np.ndarray], vectors: np.ndarray,
                        rows: np.ndarray | None = None, *, k: int = 15, chunk: int = 50_000) -> list[np.ndarray]:
    """Place new points in fitted low-dimensional spaces by their nearest fitted points.

    Each new point goes to the weighted mean of the positions of its ``k``
    nearest fitted points (cosine similarity in the PCA space), weighted by
    :func:`membership_weights` (UMAP's fuzzy-set membership strengths): the
    starting position ``UMAP.transform`` gives a point before optimising it.
    A search query is placed on the map the same way (:func:`place_from_neighbours`).

    Parameters
    ----------
    fitted : ndarray (m, p) float32
        Normalised PCA vectors of the fitted points.
    fitted_coords : sequence of ndarray (m, c_j) float
        Their positions in each space (e.g. the 2-D map and the 10-D space).
    vectors : ndarray (n, p) float32
        Normalised PCA vectors; ``rows`` selects the ones to place (default all).
    k : int
        Neighbours per point (capped at m).

    Returns
    -------
    list of ndarray (len(rows), c_j) float32
        The placed positions, one array per space.
    """
    from .index import ExactIndex, HnswIndex

    rows = np.arange(len(vectors)) if rows is None else np.asarray(rows)
    k = int(min(k, len(fitted)))
    # HNSW over the fitted sample (~20k): a few thousand inner products per placed point.
    index = HnswIndex.build(fitted, m=16, ef_search=max(32, 2 * k)) if len(fitted) > 2000 else ExactIndex(fitted)
    outs = [np.empty((len(rows), np.shape(c)[1]), dtype=np.float32) for c in fitted_coords]
    coords = [np.asarray(c, dtype=np.float32) for c in fitted_coords]
    for i in range(0, len(rows), chunk):
        part = rows[i : i + chunk]
        sims, nbr = index.search(np.ascontiguousarray(vectors[part], dtype=np.float32), k)
        placed = place_from_neighbours(sims, [c[np.maximum(nbr, 0)] for c in coords])
        for out, p in zip(outs, placed):
            out[i : i + len(part)] = p
    return outs


def place_from_neighbours(similarities: np.ndarray, neighbour_coords: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Positions from already-found neighbours: the :func:`membership_weights`-weighted
    mean of their coordinates.

    Parameters
    ----------
    similarities : ndarray (m, k) float
        Cosine similarities, most similar first (-inf = no neighbour, weight 0).
    neighbour_coords : sequence of ndarray (m, k, c_j) float
        The neighbours' positions in each space.

    Returns
    -------
    list of ndarray (m, c_j) float32
    """
    w = membership_weights(similarities)
    return [np.einsum("nk,nkc->nc", w, np.asarray(c, dtype=np.float32)).astype(np.float32)
            for c in neighbour_coords]


def transform_umap(reducer, vectors: np.ndarray) -> np.ndarray:
    """Place new normalised PCA vectors (m, k) with a fitted reducer: (m, n_components) float32."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        return np.asarray(reducer.transform(x), dtype=np.float32)
