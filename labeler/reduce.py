"""Dimension reduction: PCA (+ L2 normalisation) and UMAP.

PCA compresses the backbone embeddings (e.g. 2048-d) to ``n_components``
(256 by default) and the result is L2-normalised so that a dot product is a
cosine similarity. UMAP (McInnes, Healy & Melville 2018, umap-learn) then makes
the 2-D map for the dashboard and a low-dimensional space for HDBSCAN.

Large collections: both are fitted on a random sample of at most
``fit_sample`` rows (UMAP: 20k) and the remaining rows are transformed, which
keeps the time and memory of a fit bounded (umap-learn docs: "UMAP on large
datasets"). At 100k synthetic embeddings this brought embeddings -> clusters +
map from 229 s to 92 s (benchmarks/bench_reduce.py).
"""

from __future__ import annotations

import warnings
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
):
    """Fit UMAP (cosine metric) and embed every row.

    Parameters
    ----------
    vectors : ndarray (n, k) float32, normalised PCA vectors
    n_components : int
        2 for the map, ~10 for clustering.
    seed : int or None
        Fixed seed = reproducible but single-threaded (umap-learn); None = parallel.
    fit_sample : int or None
        Fit on at most this many random rows and transform the rest.

    Returns
    -------
    reducer : umap.UMAP
        Fitted; ``reducer.transform`` places new points.
    coords : ndarray (n, n_components) float32

    Raises
    ------
    ValueError
        Fewer than 3 rows.
    """
    import umap  # slow import (numba): only when needed

    x = np.asarray(vectors, dtype=np.float32)
    n = len(x)
    if n < 3:
        raise ValueError(f"UMAP needs at least 3 images, got {n}")
    nn = int(max(2, min(n_neighbors, n - 1)))
    reducer = umap.UMAP(
        n_components=n_components,
        n_neighbors=nn,
        min_dist=min_dist,
        metric="cosine",
        random_state=seed,
        # Small collections: spectral init needs more points than components.
        init="spectral" if n > n_components + 2 else "random",
    )
    idx = _sample(n, fit_sample, seed or 0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        warnings.filterwarnings("ignore", message=".*k >= N.*")
        if idx is None:
            coords = reducer.fit_transform(x)
        else:
            reducer.fit(x[idx])
            coords = np.empty((n, n_components), dtype=np.float32)
            rest = np.setdiff1d(np.arange(n), idx)
            coords[idx] = reducer.embedding_
            for i in range(0, len(rest), 20_000):
                coords[rest[i : i + 20_000]] = reducer.transform(x[rest[i : i + 20_000]])
    return reducer, np.asarray(coords, dtype=np.float32)


def transform_umap(reducer, vectors: np.ndarray) -> np.ndarray:
    """Place new normalised PCA vectors (m, k) with a fitted reducer: (m, n_components) float32."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        return np.asarray(reducer.transform(x), dtype=np.float32)


def place_by_neighbours(
    fitted_vectors: np.ndarray, fitted_coords: np.ndarray, new_vectors: np.ndarray, *, k: int = 10,
    index=None,
) -> np.ndarray:
    """Place new points on an existing map without refitting: the similarity-weighted
    mean of the map coordinates of their ``k`` most cosine-similar fitted points.

    This is how umap-learn's ``UMAP.transform`` initialises new points before it
    optimises them (McInnes et al. 2018, sec. 4; umap-learn's
    ``init_transform``); without the optimisation epochs it needs no numba and
    no saved reducer, only a nearest-neighbour search
    (``benchmarks/bench_placement.py`` compares the two).

    Parameters
    ----------
    fitted_vectors : ndarray of shape (n, d), float32
        L2-normalised vectors of the points already on the map.
    fitted_coords : ndarray of shape (n, c), float32
        Their map coordinates (c = 2 for the map, ~10 for the clustering space).
    new_vectors : ndarray of shape (m, d), float32
        L2-normalised vectors to place.
    k : int
        Neighbours averaged (capped at n).
    index : object with ``search(queries, k)`` or None
        A prebuilt index over ``fitted_vectors`` (:func:`labeler.index.build_index`).

    Returns
    -------
    ndarray of shape (m, c), float32
    """
    from .index import build_index

    q = l2_normalize(np.atleast_2d(new_vectors))
    coords = np.asarray(fitted_coords, dtype=np.float32)
    if len(q) == 0:
        return np.zeros((0, coords.shape[1]), np.float32)
    index = index if index is not None else build_index(np.asarray(fitted_vectors, dtype=np.float32))
    sims, rows = index.search(q, int(min(k, len(coords))))
    w = np.maximum(sims, 0.0) + 1e-6
    return np.einsum("mk,mkc->mc", w / w.sum(1, keepdims=True), coords[rows]).astype(np.float32)
