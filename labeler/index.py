"""Nearest-neighbour search over L2-normalised vectors (cosine similarity).

Two indexes with one ``search`` interface:

- :class:`ExactIndex`: every vector is compared with the query. A few queries
  are one numpy matrix product (memory-bound: it reads all n x d floats); many
  queries go through ``faiss.knn``, whose blocked BLAS product and heap keep
  memory at a few MiB whatever n is (the novelty statistics at 100k went from
  +770 MiB and 9 s to +11 MiB and 1.3 s).
- :class:`HnswIndex`: a graph index, FAISS ``IndexHNSWFlat`` with inner
  product (Malkov & Yashunin 2018, "Efficient and robust approximate nearest
  neighbor search using Hierarchical Navigable Small World graphs"; Johnson,
  Douze & Jegou 2017 for FAISS). It visits a few thousand vectors per query
  instead of all of them, and returns approximate neighbours (recall@10 is
  printed by ``benchmarks/bench_search.py``).

A project uses exact search below :data:`HNSW_FROM` images and the HNSW index
above (:func:`project_index`), searched with the smallest beam width that finds
the true top 10 of a sample of its own rows with recall :data:`HNSW_TARGET_RECALL`
(:func:`tune_ef_search`); where no beam width of :data:`HNSW_EF_CHOICES` does
(vectors of high intrinsic dimension), the project stays exact. The index is saved as ``models/index.faiss``
and read back with FAISS's ``IO_FLAG_MMAP_IFC``: the vector storage stays a
read-only memory map, so several dashboard workers share one copy through the
page cache. When images are appended (rows added, earlier rows unchanged) the
new vectors are added to the saved graph; when the PCA was refitted (earlier
rows changed) the index is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import BadInputError, CorruptFileError
from .integrity import replace_tracked, verify
from .locks import file_lock

if TYPE_CHECKING:
    from .project import Project

#: Exact search below this many vectors, HNSW from it. Chosen with
#: benchmarks/bench_search.py: see benchmarks/README.md for the figures.
HNSW_FROM = 50_000
#: Graph degree (FAISS ``M``), build and search beam widths (``efConstruction``,
#: ``efSearch``), chosen with benchmarks/bench_search.py at 1M vectors with the
#: spectrum of real CNN embeddings (ELPV): recall@10 0.973 at 0.14 ms a query
#: (M=16 reached 0.957 at 0.12 ms: too little margin for collections of higher
#: intrinsic dimension, where M=32 holds up better). A saved index keeps the
#: values it was built with (they are fields of the FAISS file).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 32
#: A project's saved index is tuned to its own vectors (:func:`tune_ef_search`): the
#: smallest efSearch of :data:`HNSW_EF_CHOICES` (from :data:`HNSW_EF_SEARCH` up) whose
#: recall@10 on :data:`HNSW_TUNE_QUERIES` random rows of the collection reaches
#: :data:`HNSW_TARGET_RECALL`; where none does, the project searches exactly. The
#: target is the goal of issue 23 (0.95) plus a margin for the sample's error (the
#: standard error of a recall near 0.95 over 200 x 10 neighbours is about 0.005).
#: The recall a graph reaches at a beam width depends on the data's intrinsic dimension: 0.973 at
#: efSearch 32 on 1M ELPV-spectrum vectors, 0.80 at 128 on 1M isotropic ones: no one width fits all.
HNSW_TARGET_RECALL = 0.96
#: The denser graph :func:`build_tuned` tries (M, efConstruction). 100k isotropic vectors: efC 80
#: reached recall@10 0.969 at efSearch 32, 40 needed 64 for 0.966. 1M isotropic: M 32 efC 80 needed
#: efSearch 384 (2.4 ms), M 48 efC 80 0.986 at 96 (1.1 ms; build 466 s) (benchmarks/README.md).
HNSW_M_HARD, HNSW_EF_CONSTRUCTION_HARD = 48, 80
HNSW_EF_CHOICES = (32, 48, 64, 96, 128, 192, 256, 384, 512)
HNSW_TUNE_QUERIES = 200
#: Fewer queries than this use numpy's product; more use faiss.knn's blocked BLAS.
_BLAS_FROM = 20

INDEX_FILE = "index.faiss"
INDEX_META = "index.json"


_blas = None


def one_blas_thread():
    """Context: BLAS on one thread (one cached threadpoolctl controller per process). A one-query product is memory-bound; OpenBLAS's
    threads only spin against other work (50 vs 78 ms at 100k on a loaded 2-core
    machine, 1 vs 33 ms at 10k)."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")


def _as_queries(queries: np.ndarray) -> np.ndarray:
    q = np.ascontiguousarray(queries, dtype=np.float32)
    return q[None, :] if q.ndim == 1 else q


def _drop_excluded(sims, rows, exclude, k):
    """Remove ``exclude[i]`` from row i of a (m, k+1) result; keep the first k. Many rows
    are done at once (a stable sort of the dropped flags moves the kept entries first, in
    their order: 8 vs 57 ms for 4,096 rows); a few row by row (19 vs 91 us for one)."""
    if len(rows) < 16:
        out_s = np.empty((len(rows), k), np.float32)
        out_r = np.empty((len(rows), k), np.int64)
        for i in range(len(rows)):
            keep = (rows[i] != exclude[i]) & (rows[i] >= 0)
            r, s = rows[i][keep][:k], sims[i][keep][:k]
            out_r[i, : len(r)], out_s[i, : len(r)] = r, s
            out_r[i, len(r):], out_s[i, len(r):] = -1, -np.inf  # HNSW may find fewer than k
        return out_s, out_r
    keep = (rows != np.asarray(exclude).reshape(-1, 1)) & (rows >= 0)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    kept = np.take_along_axis(keep, order, axis=1)
    out_r = np.where(kept, np.take_along_axis(rows, order, axis=1), -1).astype(np.int64)
    out_s = np.where(kept, np.take_along_axis(sims, order, axis=1), -np.inf).astype(np.float32)
    return out_s, out_r  # HNSW may find fewer than k: -1 / -inf there


class ExactIndex:
    """Exact cosine-similarity k-nearest-neighbour search.

    Parameters
    ----------
    vectors : ndarray (n, d) float32
        L2-normalised rows (e.g. ``pca.npy``); may be a read-only memory map
        (it is not copied).
    """

    exact = True

    def __init__(self, vectors: np.ndarray):
        self.vectors = np.asarray(vectors, dtype=np.float32)
        if self.vectors.ndim != 2:
            raise ValueError(f"vectors must be 2-D, got shape {self.vectors.shape}")

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int = 10, *, exclude: np.ndarray | None = None,
               batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar rows of each query.

        Parameters
        ----------
        queries : ndarray (m, d) or (d,) float32, L2-normalised
        k : int
            Capped at the number of rows (minus one with ``exclude``).
        exclude : ndarray (m,) int or None
            A row to leave out per query (the query itself, for leave-one-out).
        batch : int or None
            Queries per numpy product when fewer than 20 queries are asked;
            default keeps the (batch, n) similarity block near 32 MiB.

        Returns
        -------
        similarities : ndarray (m, k) float32, descending
        rows : ndarray (m, k) int64
        """
        q = _as_queries(queries)
        n = len(self.vectors)
        k = int(min(k, n - (1 if exclude is not None else 0)))
        if k < 1:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if len(q) >= _BLAS_FROM:
            import faiss

            kk = k + (1 if exclude is not None else 0)
            x = np.ascontiguousarray(self.vectors)  # no copy for a float32 memory map
            sims, rows = faiss.knn(q, x, kk, metric=faiss.METRIC_INNER_PRODUCT)
            if exclude is None:
                return sims.astype(np.float32), rows.astype(np.int64)
            return _drop_excluded(sims, rows, exclude, k)
        batch = batch or max(1, min(1024, 2**23 // max(n, 1)))
        out_s = np.empty((len(q), k), np.float32)
        out_r = np.empty((len(q), k), np.int64)
        with one_blas_thread():
            self._numpy_search(q, k, exclude, batch, out_s, out_r)
        return out_s, out_r

    def _numpy_search(self, q, k, exclude, batch, out_s, out_r) -> None:
        n = len(self.vectors)
        for i in range(0, len(q), batch):
            s = q[i : i + batch] @ self.vectors.T
            if exclude is not None:
                s[np.arange(len(s)), exclude[i : i + batch]] = -np.inf
            part = np.argpartition(s, n - k, axis=1)[:, n - k:]
            ps = np.take_along_axis(s, part, axis=1)
            order = np.argsort(-ps, axis=1, kind="stable")
            out_r[i : i + batch] = np.take_along_axis(part, order, axis=1)
            out_s[i : i + batch] = np.take_along_axis(ps, order, axis=1)


class HnswIndex:
    """Approximate cosine-similarity k-NN: FAISS ``IndexHNSWFlat``, inner product.

    Same ``search`` interface as :class:`ExactIndex`. Build with
    :meth:`build`, extend with :meth:`add`, persist with :meth:`save` /
    :meth:`load`. The index file keeps its parameters: M is the graph's
    degree, and efConstruction and efSearch are fields of FAISS's HNSW
    structure, which ``faiss.write_index`` writes and ``read_index`` restores,
    so a saved index searches with the beam width it was built for whatever
    the library's defaults are later.

    Parameters
    ----------
    index : faiss.IndexHNSWFlat
    ef_search : int or None
        Search beam width: larger = higher recall, slower. None: the index's
        own (``index.hnsw.efSearch``, i.e. the one saved in its file).
    mapped : bool
        The vector storage is a read-only memory map (then :meth:`add` refuses).
    """

    exact = False

    def __init__(self, index, *, ef_search: int | None = None, mapped: bool = False):
        self.index = index
        if ef_search is not None:
            self.ef_search = ef_search
        self.mapped = mapped
        self._params: dict = {}

    @property
    def ef_search(self) -> int:
        """Search beam width (FAISS ``efSearch``), saved with the index."""
        return int(self.index.hnsw.efSearch)

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self.index.hnsw.efSearch = int(value)

    @property
    def params(self) -> dict:
        """``{"m", "ef_construction", "ef_search"}`` of this index (M = links per node above level 0)."""
        h = self.index.hnsw
        return {"m": int(h.nb_neighbors(1)), "ef_construction": int(h.efConstruction),
                "ef_search": int(h.efSearch)}

    @classmethod
    def build(cls, vectors: np.ndarray, *, m: int | None = None, ef_construction: int | None = None,
              ef_search: int | None = None, chunk: int = 100_000) -> HnswIndex:
        """Build the graph over ``vectors`` (n, d) float32, L2-normalised.

        ``m``, ``ef_construction``, ``ef_search``: None takes :data:`HNSW_M`,
        :data:`HNSW_EF_CONSTRUCTION`, :data:`HNSW_EF_SEARCH`. Rows are added in
        chunks so a memory-mapped ``pca.npy`` is never copied whole.
        """
        import faiss

        m = HNSW_M if m is None else m
        ef_construction = HNSW_EF_CONSTRUCTION if ef_construction is None else ef_construction
        ef_search = HNSW_EF_SEARCH if ef_search is None else ef_search

        d = int(np.shape(vectors)[1])
        index = faiss.IndexHNSWFlat(d, int(m), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(ef_construction)
        out = cls(index, ef_search=ef_search)
        out.add(vectors, chunk=chunk)
        return out

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def add(self, vectors: np.ndarray, *, chunk: int = 100_000) -> None:
        """Append rows (their row numbers continue from ``len(self)``).

        Raises
        ------
        BadInputError
            The index was loaded memory-mapped (read-only), or the dimension differs.
        """
        if self.mapped:
            raise BadInputError("this index is memory-mapped read-only: load it with mmap=False to add vectors")
        if np.shape(vectors)[1] != self.dim:
            raise BadInputError(f"vectors have {np.shape(vectors)[1]} dimensions, the index {self.dim}")
        for i in range(0, len(vectors), chunk):
            self.index.add(np.ascontiguousarray(vectors[i : i + chunk], dtype=np.float32))

    def search(self, queries: np.ndarray, k: int = 10, *, exclude: np.ndarray | None = None,
               batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`ExactIndex.search` (``batch`` is ignored). Approximate:
        the true neighbours are found with the recall bench_search.py prints; a
        row is -1 (similarity -inf) if the graph search found fewer than k."""
        import faiss

        q = _as_queries(queries)
        n = len(self)
        k = int(min(k, n - (1 if exclude is not None else 0)))
        if k < 1:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        kk = k + (1 if exclude is not None else 0)
        ef = max(self.ef_search, kk)
        params = self._params.get(ef)
        if params is None:  # made once per beam width (~15 us each; read-only, shared by threads)
            params = self._params[ef] = faiss.SearchParametersHNSW(efSearch=ef)
        sims, rows = self.index.search(q, kk, params=params)
        if exclude is None:
            return sims.astype(np.float32), rows.astype(np.int64)
        return _drop_excluded(sims, rows, exclude, k)

    def save(self, path: Path | str) -> None:
        """Write the index, its parameters included, to ``path`` atomically (a reader
        sees the old or the new file)."""
        import faiss

        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path | str, *, mmap: bool = True, ef_search: int | None = None) -> HnswIndex:
        """Read a saved index; ``mmap`` maps its vectors read-only instead of copying them.

        ``ef_search`` None keeps the beam width saved in the file.

        Raises
        ------
        FileNotFoundError
            No file at ``path``.
        """
        import faiss

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no index at {path}")
        flags = faiss.IO_FLAG_MMAP_IFC if mmap else 0
        return cls(faiss.read_index(str(path), flags), ef_search=ef_search, mapped=mmap)


def tune_ef_search(index: HnswIndex, vectors: np.ndarray, *, target: float | None = None,
                   queries: int | None = None, seed: int = 0) -> tuple[int | None, float]:
    """The smallest beam width at which ``index`` finds the true top 10 of its own rows.

    ``queries`` random rows of ``vectors`` (each left out of its own answer, as "more
    like this image") are searched exactly (:class:`ExactIndex`, one batched product)
    and through the graph at each efSearch of :data:`HNSW_EF_CHOICES` from
    :data:`HNSW_EF_SEARCH` up; recall@10 = the share of the exact top 10 found.

    Parameters
    ----------
    index : HnswIndex
        Built over ``vectors``; its ``ef_search`` is left as it was.
    vectors : ndarray (n, d) float32, L2-normalised (may be a memory map)
    target : float or None
        Recall@10 to reach (default :data:`HNSW_TARGET_RECALL`).
    queries : int or None
        Rows sampled (default :data:`HNSW_TUNE_QUERIES`, at most n).

    Returns
    -------
    ef_search : int or None
        None: no beam width reached ``target`` (search exactly).
    recall : float
        Recall@10 at that beam width (at the largest tried when None).
    """
    target = HNSW_TARGET_RECALL if target is None else target
    n = len(vectors)
    rows = np.sort(np.random.default_rng(seed).choice(n, min(n, queries or HNSW_TUNE_QUERIES), replace=False))
    q = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    _, truth = ExactIndex(vectors).search(q, 10, exclude=rows)
    was, rec = index.ef_search, 0.0
    try:
        for ef in sorted({HNSW_EF_SEARCH, *(e for e in HNSW_EF_CHOICES if e > HNSW_EF_SEARCH)}):
            index.ef_search = ef
            _, found = index.search(q, truth.shape[1], exclude=rows)
            rec = float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found.tolist(), truth.tolist())]))
            if rec >= target:
                return ef, rec
        return None, rec
    finally:
        index.ef_search = was


def build_tuned(vectors: np.ndarray, *, say=lambda message: None) -> tuple[HnswIndex, int | None, float]:
    """A new HNSW graph over ``vectors`` (n, d) float32, L2-normalised, its beam tuned
    (:func:`tune_ef_search`): the one way the library builds a graph to search. One that
    needs more than :data:`HNSW_EF_SEARCH` is built again denser
    (:data:`HNSW_M_HARD`, :data:`HNSW_EF_CONSTRUCTION_HARD`) and kept if that needs a narrower beam.

    Returns
    -------
    (index, ef_search, recall)
        ``ef_search`` None: no beam width reached the target (search exactly); else the
        index searches with it. ``recall``: recall@10 measured at that beam.
    """
    index = HnswIndex.build(vectors)
    ef, recall = tune_ef_search(index, vectors)
    if ef != HNSW_EF_SEARCH and (HNSW_M_HARD > HNSW_M or HNSW_EF_CONSTRUCTION_HARD > HNSW_EF_CONSTRUCTION):
        say(f"these vectors need a wider beam (efSearch {ef or 'beyond ' + str(HNSW_EF_CHOICES[-1])}): "
            f"building a denser graph (M {HNSW_M_HARD}, efConstruction {HNSW_EF_CONSTRUCTION_HARD}) ...")
        dense = HnswIndex.build(vectors, m=HNSW_M_HARD, ef_construction=HNSW_EF_CONSTRUCTION_HARD)
        ef2, recall2 = tune_ef_search(dense, vectors)
        if ef2 is not None and (ef is None or ef2 < ef):  # kept only when it searches faster
            index, ef, recall = dense, ef2, recall2
    index.ef_search = ef or index.ef_search
    return index, ef, recall


def build_index(vectors: np.ndarray, *, exact: bool = False) -> ExactIndex | HnswIndex:
    """An in-memory index: exact below :data:`HNSW_FROM` rows, when ``exact`` or where no beam
    reaches the target; else the tuned graph of :func:`build_tuned` (as the saved index)."""
    if exact or len(vectors) < HNSW_FROM:
        return ExactIndex(vectors)
    index, ef, _ = build_tuned(np.ascontiguousarray(vectors, dtype=np.float32))
    return index if ef is not None else ExactIndex(vectors)


def self_neighbours(vectors: np.ndarray, k: int, *, rows: np.ndarray | None = None, index=None,
                    block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest *other* rows of each of ``rows``, by cosine similarity: the one
    k-NN search of a collection against itself (the suggestions' graph, near-duplicate
    groups, novelty statistics and the nearest-neighbour similarity all call it).

    Parameters
    ----------
    vectors : ndarray (n, d), float32, L2-normalised rows
    k : int
        Neighbours per row, capped at n - 1.
    rows : ndarray (m,) of int or None
        The rows to query (default: all n).
    index : ExactIndex, HnswIndex or None
        An index over ``vectors`` (default :func:`build_index`: exact below
        :data:`HNSW_FROM` rows, HNSW above).
    block : int
        Queries per search call: memory stays at ``block`` x n similarities for exact search.

    Returns
    -------
    (similarities, neighbours) : ndarray (m, k) float32, ndarray (m, k) int64
        Most similar first; a query never finds itself.

    Raises
    ------
    ValueError
        Fewer than 2 rows or ``k`` < 1.
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    if n < 2 or k < 1:
        raise ValueError(f"a k-NN search needs at least 2 rows and k >= 1 (got {n} rows, k={k})")
    k = int(min(k, n - 1))
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    index = build_index(x) if index is None else index
    sims = np.empty((len(rows), k), np.float32)
    nbrs = np.empty((len(rows), k), np.int64)
    for i in range(0, len(rows), block):
        part = rows[i : i + block]
        sims[i : i + len(part)], nbrs[i : i + len(part)] = index.search(x[part], k, exclude=part)
    return sims, nbrs


def nearest_neighbour_similarities(vectors: np.ndarray, *, sample: int | None = 5000, seed: int = 0) -> np.ndarray:
    """Cosine similarity of (a sample of) rows to their nearest other row (exact search).

    The distribution tells how close images in this collection usually are to
    each other; a low percentile of it is the novelty threshold for queries.
    Memory stays at a few MiB whatever n (faiss.knn's blocked product).

    Returns
    -------
    ndarray (m,), float32, m = min(n, sample)
    """
    x = np.asarray(vectors, dtype=np.float32)
    n = len(x)
    if n < 2:
        return np.ones(n, np.float32)
    rows = np.arange(n) if sample is None or n <= sample else np.random.default_rng(seed).choice(n, sample, replace=False)
    return self_neighbours(x, 1, rows=rows, index=ExactIndex(x))[0][:, 0]


# -- the project's saved index ---------------------------------------------------------


def _fingerprint(vectors: np.ndarray, n: int) -> str:
    """Hash of the first rows and of row ``n - 1``: changes when the PCA is refitted."""
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(vectors[: min(n, 256)]).tobytes())
    if n:
        h.update(np.ascontiguousarray(vectors[n - 1]).tobytes())
    return h.hexdigest()


def _load_saved(path: Path, meta: dict, *, mmap: bool) -> HnswIndex:
    """A project's saved index. One saved before the parameters were kept in the file
    (its index.json has no ``ef_search``) holds FAISS's default efSearch of 16, which it
    was never searched with: it gets the library's."""
    return HnswIndex.load(path, mmap=mmap, ef_search=None if "ef_search" in meta else HNSW_EF_SEARCH)


def update_project_index(project: Project, vectors: np.ndarray | None = None, *,
                         say=lambda message: None) -> str:
    """Bring ``models/index.faiss`` up to date with ``pca.npy``.

    Below :data:`HNSW_FROM` rows nothing is saved (exact search needs no
    index). Rows appended since the last build are added to the graph (which
    keeps the parameters saved in it); a refitted PCA (the first rows
    changed) rebuilds it with the library's. Either way the beam width is then
    tuned to the vectors (:func:`tune_ef_search`; a new graph through :func:`build_tuned`)
    and saved with the graph.
    ``models/index.json`` records rows, dimension, fingerprint, the parameters,
    the recall@10 measured and ``kind``: 'hnsw', or 'exact' where no beam width
    reached the target (:func:`project_index` then searches exactly). Concurrent callers
    (dashboard workers) wait on a file lock, so one of them does the work.

    Parameters
    ----------
    vectors : ndarray (n, d) float32 or None
        The project's PCA vectors (default: ``pca.npy``, memory-mapped).
    say : callable(str)
        Receives one line when the index is built or extended.

    Returns
    -------
    str
        What happened: 'exact' (small collection), 'current', 'added N' or 'built'.

    Raises
    ------
    ProjectError
        ``pca.npy`` does not exist yet.
    """
    x = project.load_array("pca") if vectors is None else vectors
    n = len(x)
    path, meta_path = project.models_dir / INDEX_FILE, project.models_dir / INDEX_META
    if n < HNSW_FROM:
        return "exact"
    project.models_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(project.models_dir / "index.lock"):
        meta, sound = _sound_index(project, path, meta_path, say)
        old = int(meta.get("rows", -1))
        if sound and old == n and meta.get("fingerprint") == _fingerprint(x, n):
            return "current"
        if sound and 0 < old < n and meta.get("dim") == x.shape[1] \
                and meta.get("fingerprint") == _fingerprint(x, old):
            say(f"adding {n - old:,} vectors to the HNSW index ...")
            index = _load_saved(path, meta, mmap=False)
            index.add(x[old:])
            ef, recall = tune_ef_search(index, x)  # a grown graph keeps its parameters, not its beam
            what = f"added {n - old}"
        else:
            say(f"building the HNSW search index over {n:,} vectors ...")
            index, ef, recall = build_tuned(x, say=say)
            what = "built"
        if ef is not None:
            index.ef_search = ef  # saved in the file: every reader searches with it
        else:
            say(f"the HNSW index reaches recall@10 {recall:.3f} at most (efSearch {HNSW_EF_CHOICES[-1]}) "
                f"on these vectors: searches stay exact")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
        index.save(tmp)
        replace_tracked(project, tmp, path)  # renamed into place, recorded in the manifest
        meta = {"kind": "hnsw" if ef is not None else "exact", "rows": n, "dim": int(x.shape[1]), **index.params,
                "recall_at_10": round(recall, 4), "fingerprint": _fingerprint(x, n)}
        tmp = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(meta))
        replace_tracked(project, tmp, meta_path)
        return what


def _sound_index(project: Project, path: Path, meta_path: Path, say) -> tuple[dict, bool]:
    """``(index.json's content, whether the saved index can be reused)``: both files exist
    and match the manifest (:mod:`labeler.integrity`); a damaged one is rebuilt."""
    try:
        for p in (path, meta_path):
            verify(project, p)
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    except (CorruptFileError, ValueError) as e:
        say(f"{e}: rebuilding the index")
        return {}, False
    return meta, path.is_file()


def project_index(project: Project, vectors: np.ndarray | None = None, *,
                  exact: bool = False) -> ExactIndex | HnswIndex:
    """The search index of a project: exact below :data:`HNSW_FROM` images or when
    ``exact``; otherwise the saved HNSW index, memory-mapped (brought up to date
    first with :func:`update_project_index` if ``pca.npy`` changed).

    Raises
    ------
    ProjectError
        ``pca.npy`` does not exist yet.
    """
    x = project.load_array("pca") if vectors is None else vectors
    if exact or len(x) < HNSW_FROM:
        return ExactIndex(x)
    update_project_index(project, x)
    meta_path = project.models_dir / INDEX_META
    verify(project, project.models_dir / INDEX_FILE)  # rebuilt above if it was damaged
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta.get("kind") == "exact":  # the graph missed the recall target on these vectors
        return ExactIndex(x)
    return _load_saved(project.models_dir / INDEX_FILE, meta, mmap=True)
