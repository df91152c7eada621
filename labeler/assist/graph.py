"""The k-nearest-neighbour graph that label spreading runs on, built once and cached.

The graph depends only on the feature matrix, never on the labels, so it is
built once per feature set and reused by every refresh of the suggestions.
Neighbours come from :func:`labeler.index.self_neighbours`, the one k-NN search of a
collection against itself (exact cosine similarity below 50k rows, HNSW above: the same
search the dashboard uses), or a FAISS inverted file above ``IVF_FROM`` rows.

The edge weights follow Zhou et al. (2004), "Learning with local and global
consistency" (NIPS): a symmetric affinity ``W`` (here the cosine similarity of
k-nearest neighbours, clipped at 0, symmetrised by the maximum) normalised as
``S = D^-1/2 W D^-1/2``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

from ..atomic import atomic_write
from ..index import self_neighbours

#: From this many rows the graph is approximate (FAISS IVF), below it exact.
IVF_FROM = 50_000
#: Inverted lists probed per query.
IVF_NPROBE = 8


@dataclass
class KnnGraph:
    """A cached kNN graph of one feature matrix.

    Attributes
    ----------
    neighbours : ndarray (n, k), int64
        Row indices of each row's k nearest other rows, most similar first.
    similarities : ndarray (n, k), float32
        Their cosine similarities.
    fingerprint : str
        Hash of the feature matrix the graph was built from (cache key).
    """

    neighbours: np.ndarray
    similarities: np.ndarray
    fingerprint: str = ""

    def __post_init__(self):
        self._s = None

    @property
    def n(self) -> int:
        return len(self.neighbours)

    def normalized(self) -> sparse.csr_matrix:
        """``S = D^-1/2 W D^-1/2`` (Zhou et al. 2004), (n, n) float32 CSR, computed once."""
        if self._s is None:
            n, k = self.neighbours.shape
            w = np.clip(self.similarities, 0.0, None).astype(np.float32).ravel()
            rows = np.repeat(np.arange(n), k)
            a = sparse.csr_matrix((w, (rows, self.neighbours.ravel())), shape=(n, n))
            a = a.maximum(a.T).tocsr()
            d = np.asarray(a.sum(axis=1)).ravel()
            inv = np.where(d > 0, 1.0 / np.sqrt(np.maximum(d, 1e-12)), 0.0).astype(np.float32)
            self._s = sparse.diags(inv) @ a @ sparse.diags(inv)
            self._s = self._s.tocsr().astype(np.float32)
        return self._s


def fingerprint(x: np.ndarray) -> str:
    """A cheap content hash of a feature matrix: shape plus up to 512 sampled rows."""
    n = len(x)
    step = max(1, n // 512)
    h = hashlib.sha1(repr(x.shape).encode())
    h.update(np.ascontiguousarray(x[::step], dtype=np.float32).tobytes())
    if n:
        h.update(np.ascontiguousarray(x[-1], dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def build_knn_graph(x: np.ndarray, k: int = 10) -> KnnGraph:
    """The k nearest other rows of every row by cosine similarity.

    Parameters
    ----------
    x : ndarray (n, d), float32, L2-normalised rows
    k : int
        Neighbours per row (capped at n - 1).

    Returns
    -------
    KnnGraph

    Raises
    ------
    ValueError
        Fewer than 2 rows.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if n < 2:
        raise ValueError("a kNN graph needs at least 2 images")
    k = int(min(k, n - 1))
    if n >= IVF_FROM:
        return _ivf_graph(x, k)
    sims, nbrs = self_neighbours(x, k)
    return KnnGraph(nbrs, sims, fingerprint(x))


def _ivf_graph(x: np.ndarray, k: int) -> KnnGraph:
    """Approximate kNN graph with a FAISS inverted file (IVF-Flat, inner product).

    ``4 sqrt(n)`` lists (the FAISS wiki's "Guidelines to choose an index" range),
    probing ``nprobe`` of them: every query reads ~n * nprobe / nlist vectors
    instead of n, so 100k images take seconds instead of minutes. A missed true
    neighbour only swaps in a slightly less similar one, which label spreading
    tolerates.
    """
    import faiss

    n, d = x.shape
    nlist = int(4 * np.sqrt(n))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    index.train(x[rng.choice(n, min(n, 40 * nlist), replace=False)])
    index.add(x)
    index.nprobe = IVF_NPROBE
    sims, rows = index.search(x, k + 1)
    nbrs = np.empty((n, k), np.int64)
    out_s = np.empty((n, k), np.float32)
    for i in range(n):  # drop the query itself (or the last hit when it is missing)
        keep = rows[i] != i
        r, s = rows[i][keep][:k], sims[i][keep][:k]
        if len(r) < k or (r < 0).any():  # too few hits in the probed lists: pad with the best
            r = np.where(r < 0, r[0], r)
            r, s = np.resize(r, k), np.resize(s, k)
        nbrs[i], out_s[i] = r, s
    return KnnGraph(nbrs, out_s, fingerprint(x))


def cached_knn_graph(x: np.ndarray, cache: Path | None, k: int = 10) -> KnnGraph:
    """:func:`build_knn_graph`, stored at ``cache`` (.npz) and reused while the features
    are unchanged (same :func:`fingerprint`). ``cache`` None = no caching; a cache that
    cannot be written (read-only project) is skipped silently."""
    fp = fingerprint(x)
    if cache is not None and cache.is_file():
        try:
            with np.load(cache) as z:
                if str(z["fingerprint"]) == fp and z["neighbours"].shape[1] == min(k, len(x) - 1):
                    return KnnGraph(z["neighbours"], z["similarities"], fp)
        except (OSError, KeyError, ValueError):
            pass
    g = build_knn_graph(x, k)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(cache, durable=False) as f:  # a cache: rebuilt if lost
                np.savez(f, neighbours=g.neighbours, similarities=g.similarities, fingerprint=np.array(fp))
        except OSError:
            pass
    return g
