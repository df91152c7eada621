"""Search by a region: a FAISS index over every stored patch, and the region query.

The patch maps (:mod:`labeler.embedding.patch_maps`: ``grid × grid`` cells of ``dim``
PCA components per image) are L2-normalised and indexed patch by patch; patch ``p``
is cell ``p % grid²`` of the image at row ``p // grid²``. Two kinds of index:

- ``flat``: FAISS ``IndexFlatIP`` (exact inner product), up to
  :data:`EXACT_MAX_PATCHES` patches (1,000,000: ~5,100 images of 196 cells,
  256 MiB of float32);
- ``ivfpq``: FAISS ``IndexIVFPQ`` above it (Jégou, Douze & Schmid 2011, "Product
  quantization for nearest neighbor search"): :data:`PQ_M` sub-quantisers of 8 bits,
  16 bytes a patch plus its 8-byte id, ``nlist`` = √patches coarse cells (at most
  :data:`MAX_NLIST`), trained on a random sample of patches; searched with
  :data:`NPROBE` cells. Memory and build time at 10k and 100k images are printed
  by ``benchmarks/bench_patch_index.py``.

The index is saved as ``patches/index.faiss`` with ``patches/index.json`` (both in the
integrity manifest) and read back memory-mapped; it is rebuilt when the maps change
(their creation time, shape or size differ from what ``index.json`` recorded).

A region query takes the cells a box covers (:func:`~labeler.embedding.patch_maps.box_cells`)
and, in two steps,

1. *candidates*: each query cell's nearest patches in the index, aggregated per image
   (the sum over query cells of the image's best hit), the query image left out;
2. *re-ranking* on the exact stored maps: the box's cell pattern is slid over each
   candidate's grid (every shift that keeps it inside) and scored by the mean cosine
   of the cells it lands on (template matching on the feature grid, as in Lewis 1995,
   "Fast normalized cross-correlation", applied to CNN patch features); the best
   shift is the image's matched region, reported as a pixel box of that image
   (:func:`~labeler.embedding.patch_maps.cell_boxes`) with its similarity.

Collections of at most :data:`RERANK_ALL` images skip step 1 and re-rank every image.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import BadInputError, CorruptFileError, NotFoundError
from .integrity import replace_tracked, verify
from .locks import file_lock

__all__ = ["EXACT_MAX_PATCHES", "PatchIndex", "RegionHit", "RegionSearchResult", "build_patch_index",
           "parse_box", "project_patch_index", "region_search"]

#: Exact ``IndexFlatIP`` up to this many patches, IVF-PQ above.
EXACT_MAX_PATCHES = 1_000_000
#: Sub-quantisers of the IVF-PQ codes (64 dims → 4 dims each, 8 bits: 16 bytes a patch).
PQ_M = 16
#: Most coarse cells of the IVF-PQ index, and cells visited per query.
MAX_NLIST = 4096
NPROBE = 32
#: Patches sampled to train the IVF-PQ quantisers.
TRAIN_SAMPLE = 160_000
#: At most this many images: every image is re-ranked on its stored map (no candidate step).
RERANK_ALL = 2000
#: Nearest patches fetched per query cell, and images re-ranked, in the candidate step.
PER_CELL = 512
CANDIDATES = 400

INDEX_FILE = "index.faiss"
INDEX_META = "index.json"


def _normalise(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` (…, d) as float32 unit vectors (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


class PatchIndex:
    """A FAISS index over the patches of stored maps.

    Attributes
    ----------
    index : faiss.Index
        ``IndexFlatIP`` (``kind == 'flat'``) or ``IndexIVFPQ`` (``'ivfpq'``) over
        L2-normalised patches; ids are ``row * cells + cell``.
    kind : str
    cells : int
        Patches per image (grid²).
    params : dict
        What it was built with (kind, patches, nlist, pq_m, nprobe, seconds, bytes).
    """

    def __init__(self, index, kind: str, cells: int, params: dict | None = None):
        self.index, self.kind, self.cells = index, kind, int(cells)
        self.params = dict(params or {})
        if kind == "ivfpq":
            self.index.nprobe = int(self.params.get("nprobe", NPROBE))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest patches of each query patch.

        Parameters
        ----------
        queries : ndarray (m, dim)
            Normalised here.
        k : int

        Returns
        -------
        sims : ndarray (m, k) float32
            Inner products of unit vectors (cosine; approximate for ``ivfpq``), -inf where fewer were found.
        patch_ids : ndarray (m, k) int64
            ``row * cells + cell``; -1 where fewer were found.
        """
        k = int(min(max(k, 1), len(self)))
        sims, pids = self.index.search(np.ascontiguousarray(_normalise(queries)), k)
        sims = np.where(pids >= 0, sims, -np.inf).astype(np.float32)
        return sims, pids

    def save(self, path: Path | str) -> None:
        import faiss

        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path | str, meta: dict, *, mmap: bool = True) -> PatchIndex:
        """An index saved by :meth:`save`, its vectors/codes memory-mapped (``mmap``)."""
        import faiss

        flags = 0
        if mmap:
            flags = faiss.IO_FLAG_MMAP_IFC if meta.get("kind") == "flat" else faiss.IO_FLAG_MMAP
        return cls(faiss.read_index(str(path), flags), meta["kind"], meta["cells"], meta)


def _chunks(maps: np.ndarray, rows_per_chunk: int):
    """(first row, normalised float32 patches (rows·cells, dim)) of consecutive rows."""
    n, cells, dim = maps.shape
    for r0 in range(0, n, rows_per_chunk):
        yield r0, _normalise(np.asarray(maps[r0: r0 + rows_per_chunk]).reshape(-1, dim))


def build_patch_index(maps: np.ndarray, *, exact_max: int = EXACT_MAX_PATCHES, pq_m: int = PQ_M,
                      pq_bits: int = 8, nlist: int | None = None, nprobe: int = NPROBE, train_sample: int = TRAIN_SAMPLE,
                      seed: int = 0) -> PatchIndex:
    """Index every patch of ``maps``: exact up to ``exact_max`` patches, IVF-PQ above.

    Parameters
    ----------
    maps : ndarray (n_rows, cells, dim), float16 or float32
        E.g. :func:`~labeler.embedding.patch_maps.load_patch_maps` (a memory map is read
        in chunks of 2,048 images, so memory stays at the index plus one chunk).
    exact_max : int
        Largest patch count indexed exactly (``IndexFlatIP``).
    pq_m : int
        IVF-PQ sub-quantisers (must divide ``dim``).
    pq_bits : int
        Bits of each sub-quantiser's code (2^bits centroids each).
    nlist : int or None
        IVF-PQ coarse cells; default √patches within [64, :data:`MAX_NLIST`].
    nprobe : int
        Coarse cells visited per query.
    train_sample : int
        Patches drawn (``seed``) to train the coarse and product quantisers.

    Returns
    -------
    PatchIndex

    Raises
    ------
    BadInputError
        ``maps`` is not 3-dimensional, or ``pq_m`` does not divide ``dim``.
    """
    import faiss

    if np.ndim(maps) != 3:
        raise BadInputError(f"patch maps must be (rows, cells, dim), not shape {np.shape(maps)}")
    n, cells, dim = (int(v) for v in maps.shape)
    total = n * cells
    t0 = time.perf_counter()
    if total <= exact_max:
        index, kind, params = faiss.IndexFlatIP(dim), "flat", {}
        for _, x in _chunks(maps, 2048):
            index.add(x)
    else:
        if dim % pq_m:
            raise BadInputError(f"pq_m={pq_m} must divide the patch dimension {dim}")
        nlist = int(nlist or min(max(int(np.sqrt(total)), 64), MAX_NLIST))
        rng = np.random.default_rng(seed)
        want = min(total, max(train_sample, 40 * nlist))
        rows = np.sort(rng.choice(n, min(n, -(-want // cells)), replace=False))  # whole maps of random images
        train = _normalise(np.asarray(maps[rows]).reshape(-1, dim))
        quantiser = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFPQ(quantiser, dim, nlist, pq_m, int(pq_bits), faiss.METRIC_INNER_PRODUCT)
        index.cp.min_points_per_centroid = index.pq.cp.min_points_per_centroid = 1  # small samples: no warning
        index.train(np.ascontiguousarray(train))
        for r0, x in _chunks(maps, 2048):
            index.add_with_ids(x, np.arange(r0 * cells, r0 * cells + len(x), dtype=np.int64))
        kind, params = "ivfpq", {"nlist": nlist, "pq_m": pq_m, "pq_bits": int(pq_bits), "nprobe": int(nprobe), "trained_on": int(len(train))}
    params.update(kind=kind, cells=cells, dim=dim, rows=n, patches=total,
                  seconds=round(time.perf_counter() - t0, 2))
    return PatchIndex(index, kind, cells, params)


def _fingerprint(info: dict, maps: np.ndarray) -> dict:
    """What the saved index is checked against: the maps' creation time and shape."""
    return {"maps_created": info.get("created"), "maps_shape": [int(v) for v in maps.shape]}


def project_patch_index(project, maps: np.ndarray | None = None, info: dict | None = None, *,
                        say=lambda message: None) -> PatchIndex:
    """The project's patch index, built and saved (``patches/index.faiss``) the first time
    and whenever the maps changed; later calls read it back memory-mapped.

    Concurrent callers (dashboard workers) wait on a file lock, so one of them builds it.

    Parameters
    ----------
    maps, info : optional
        From :func:`~labeler.embedding.patch_maps.load_patch_maps` (loaded when omitted).
    say : callable(str)
        Receives one line when the index is built.

    Raises
    ------
    NotFoundError
        No patch maps yet (the message names the command that computes them).
    """
    from .embedding.patch_maps import load_patch_maps

    if maps is None or info is None:
        maps, info = load_patch_maps(project)
    d = project.root / "patches"
    path, meta_path = d / INDEX_FILE, d / INDEX_META
    want = _fingerprint(info, maps)
    with file_lock(d / "index.lock"):
        try:
            verify(project, path)
            verify(project, meta_path)
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        except (CorruptFileError, ValueError) as e:
            say(f"{e}: rebuilding the patch index")
            meta = {}
        if path.is_file() and all(meta.get(k) == v for k, v in want.items()):
            return PatchIndex.load(path, meta)
        say(f"building the patch index over {maps.shape[0] * maps.shape[1]:,} patches ...")
        pi = build_patch_index(maps)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
        pi.save(tmp)
        pi.params["bytes"] = tmp.stat().st_size
        replace_tracked(project, tmp, path)
        tmp = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**pi.params, **want}))
        replace_tracked(project, tmp, meta_path)
        pi.params.update(want)
        return pi


# -- the region query -----------------------------------------------------------------------


def parse_box(text) -> tuple[float, float, float, float]:
    """``"x,y,w,h"`` (pixels; a list or tuple of 4 numbers also) as 4 floats, w and h > 0.

    Raises
    ------
    BadInputError
        Not four finite numbers, or an empty box (one line).
    """
    parts = text.split(",") if isinstance(text, str) else list(text) if isinstance(text, (list, tuple)) else None
    try:
        if parts is None or len(parts) != 4:
            raise ValueError
        box = tuple(float(v) for v in parts)
    except (TypeError, ValueError):
        raise BadInputError(f"the box must be x,y,w,h in pixels (four numbers), not {str(text)[:60]!r}") from None
    if not all(np.isfinite(box)):
        raise BadInputError(f"the box must be x,y,w,h in pixels (four finite numbers), not {str(text)[:60]!r}")
    if box[2] <= 0 or box[3] <= 0:
        raise BadInputError(f"the box {','.join(f'{v:g}' for v in box)} is empty: width and height must be > 0")
    return box  # type: ignore[return-value]


@dataclass
class RegionHit:
    """One image found by a region: ``box`` (x, y, w, h, pixels of that image) is where it
    matched, ``similarity`` the mean cosine of the matched cells, ``cells`` their indices."""

    image_id: int
    path: str
    similarity: float
    label: str | None
    cluster: int
    box: list[float]
    width: int
    height: int
    cells: list[int] = field(default_factory=list)


@dataclass
class RegionSearchResult:
    """The answer to a region query: ``hits`` best first; ``query_box`` the box asked for
    and ``query_cells_box`` the cells it was read as (pixels of the query image, ``width``
    × ``height``); ``index`` the patch index kind ('flat', 'ivfpq' or 'all' when every
    image was re-ranked)."""

    query: str
    query_image_id: int | None
    query_box: list[float]
    query_cells_box: list[float]
    width: int
    height: int
    hits: list[RegionHit]
    index: str

    def to_dict(self) -> dict:
        return asdict(self)


def _union_box(boxes: np.ndarray) -> list[float]:
    """The bounding box (x, y, w, h) of boxes (k, 4)."""
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()
    return [round(float(x0), 1), round(float(y0), 1), round(float(x1 - x0), 1), round(float(y1 - y0), 1)]


def _template_scores(q: np.ndarray, cells: np.ndarray, grid: int, cand: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Best placement of the query cells' pattern on each candidate map.

    q (m, d) unit query patches at ``cells`` (m,), cand (C, grid², d) unit maps.
    Returns (scores (C,), best top-left shift index into the (grid-H+1)·(grid-W+1) placements).
    """
    r, c = np.divmod(cells, grid)
    dr, dc = r - r.min(), c - c.min()
    h, w = int(dr.max()) + 1, int(dc.max()) + 1
    ph, pw = grid - h + 1, grid - w + 1
    s = np.einsum("md,npd->nmp", q, cand, optimize=True).reshape(len(cand), len(q), grid, grid)
    acc = np.zeros((len(cand), ph, pw), np.float32)
    for i in range(len(q)):
        acc += s[:, i, dr[i]: dr[i] + ph, dc[i]: dc[i] + pw]
    acc = acc.reshape(len(cand), -1) / len(q)
    best = acc.argmax(axis=1)
    return acc[np.arange(len(cand)), best], best


def region_search(project, query_map: np.ndarray, cells: np.ndarray, k: int = 10, *,
                  maps: np.ndarray, info: dict, index: PatchIndex | None = None,
                  exclude_row: int | None = None, row_ids: np.ndarray | None = None,
                  rerank_all: int | None = None) -> list[tuple[int, float, np.ndarray]]:
    """The rows whose best-matching region is nearest to the query cells.

    Parameters
    ----------
    query_map : ndarray (grid², dim)
        The query image's patch map (stored row, or :func:`patch_map_of_image`).
    cells : ndarray (m,) int
        The cells of the box (:func:`~labeler.embedding.patch_maps.box_cells`).
    k : int
        Images returned.
    maps, info
        The stored maps and their description (re-ranking reads the candidates' rows).
    index : PatchIndex or None
        Used for the candidate step above :data:`RERANK_ALL` images (built when None).
    exclude_row : int or None
        The query image's row, left out.
    row_ids : ndarray (n_rows,) or None
        Image id of each row, -1 for rows without an image (default: the project's;
        with it, ``project`` may be None when ``index`` is given).
    rerank_all : int or None
        Re-rank every image, without the index, up to this many rows (default :data:`RERANK_ALL`).

    Returns
    -------
    list of (row, similarity, matched cells (m,) int64)
        Best first; similarity is the mean cosine over the matched cells.
    """
    grid = int(info["grid"])
    cells = np.asarray(cells, dtype=np.int64)
    q = _normalise(np.asarray(query_map)[cells])
    n = len(maps)
    row_ids = project.store.row_image_ids() if row_ids is None else row_ids
    valid = np.zeros(n, bool)
    m = min(n, len(row_ids))
    valid[:m] = np.asarray(row_ids[:m]) >= 0
    if exclude_row is not None and 0 <= exclude_row < n:
        valid[exclude_row] = False
    if n <= (RERANK_ALL if rerank_all is None else rerank_all):
        cand = np.flatnonzero(valid)
    else:
        index = index or project_patch_index(project, maps, info)
        sims, pids = index.search(q, min(PER_CELL, len(index)))
        rows = np.where(pids >= 0, pids // index.cells, -1)
        score: dict[int, float] = {}
        for i in range(len(q)):  # each query cell votes its best hit per image
            best: dict[int, float] = {}
            for rr, ss in zip(rows[i], sims[i]):
                if rr >= 0 and valid[rr] and ss > best.get(rr, -np.inf):
                    best[int(rr)] = float(ss)
            for rr, ss in best.items():
                score[rr] = score.get(rr, 0.0) + ss
        cand = np.array(sorted(score, key=lambda r: -score[r])[:max(CANDIDATES, 4 * k)], dtype=np.int64)
    if not len(cand):
        return []
    r, c = np.divmod(cells, grid)
    dr, dc = r - r.min(), c - c.min()
    pw = grid - (int(dc.max()) + 1) + 1
    out_s, out_shift = [], []
    chunk = max(1, 4096 // len(cells))
    for j in range(0, len(cand), chunk):
        rows_j = np.sort(cand[j: j + chunk])
        s, shift = _template_scores(q, cells, grid, _normalise(np.asarray(maps[rows_j])))
        order = np.searchsorted(rows_j, cand[j: j + chunk])
        out_s.append(s[order])
        out_shift.append(shift[order])
    s, shift = np.concatenate(out_s), np.concatenate(out_shift)
    top = np.argsort(-s, kind="stable")[:k]
    res = []
    for t in top:
        sr, sc = divmod(int(shift[t]), pw)
        res.append((int(cand[t]), float(s[t]), (sr + dr) * grid + (sc + dc)))
    return res


def region_result(project, query: str, query_image_id: int | None, box, width: int, height: int,
                  cells: np.ndarray, found: list, info: dict, kind: str) -> RegionSearchResult:
    """A :class:`RegionSearchResult` from :func:`region_search`'s rows (ids, paths,
    labels, clusters and each hit's matched box in its own image's pixels)."""
    from .embedding.patch_maps import cell_boxes

    store = project.store
    row_ids = store.row_image_ids()
    ids = [int(row_ids[r]) for r, _, _ in found]
    labels, clusters = store.labels_for(ids), store.clusters_for(ids)
    recs = {int(r["id"]): r for r in store.get_images(ids)} if ids else {}
    hits = []
    for i, (_, s, mcells) in zip(ids, found):
        rec = recs[i]
        w, h = _size_of(project, rec)
        hits.append(RegionHit(i, rec["path"], round(s, 4), labels.get(i), int(clusters.get(i, -1)),
                              _union_box(cell_boxes(w, h, info)[mcells]), w, h, [int(v) for v in mcells]))
    qbox = _union_box(cell_boxes(width, height, info)[cells])
    return RegionSearchResult(query, query_image_id, [float(v) for v in box], qbox, int(width), int(height),
                              hits, kind)



def query_region(project, id_to_row: dict, maps: np.ndarray, info: dict, index: PatchIndex | None,
                 query, box, k: int = 10) -> RegionSearchResult:
    """:meth:`labeler.search.Searcher.by_region` on loaded maps: resolve the query (image id,
    or file: by content hash, else through the backbone), read the box's cells, search
    (:func:`region_search`) and describe the hits (:func:`region_result`).

    Raises
    ------
    BadInputError, StoreError, QueryImageError
        As :meth:`labeler.search.Searcher.by_region`.
    """
    from pathlib import Path

    from .embedding.patch_maps import box_cells, patch_map_of_image
    from .errors import BadImageError, QueryImageError, StoreError
    from .images import content_hash, load_image

    box = parse_box(box)
    name, qid, row = f"image {query}", None, None
    if not isinstance(query, int):
        p = Path(query)
        try:
            digest = content_hash(p)
        except OSError as e:
            raise QueryImageError(f"query image not found or unreadable: {p} ({e.strerror or e})") from None
        qid, name = project.store.embedded_ids_by_hash([digest]).get(digest), p.name
    else:
        qid = int(query)
    if qid is not None:
        row = id_to_row.get(int(qid))
        if row is None:
            raise StoreError(f"unknown image id {qid} (or not embedded)")
        width, height = stored_image_size(project, qid)
    if row is not None and row < len(maps):
        qmap = np.asarray(maps[row], dtype=np.float32)
    else:  # a new file, or an image added after the maps were computed
        try:
            img = load_image(Path(query) if qid is None else
                             project.image_path(project.store.get_image(qid)["path"]))
        except BadImageError as e:
            raise QueryImageError(f"{name}: {e}") from None
        width, height = img.size
        qmap = patch_map_of_image(project, img)
    cells = box_cells(box, width, height, info)
    found = region_search(project, qmap, cells, k, maps=maps, info=info, index=index, exclude_row=row)
    kind = "all" if index is None else index.kind
    return region_result(project, name, qid, box, width, height, cells, found, info, kind)


def _size_of(project, rec) -> tuple[int, int]:
    """(width, height) of a stored image (oriented), from the database or else the file's header."""
    keys = rec.keys() if hasattr(rec, "keys") else rec
    if "width" in keys and rec["width"] and rec["height"]:
        return int(rec["width"]), int(rec["height"])
    from PIL import Image, ImageOps

    with Image.open(project.image_path(rec["path"])) as im:
        return ImageOps.exif_transpose(im).size


def stored_image_size(project, image_id: int) -> tuple[int, int]:
    """(width, height) in pixels of a stored image, as the maps' boxes use.

    Raises
    ------
    StoreError
        Unknown image id.
    """
    return _size_of(project, project.store.get_image(int(image_id)))


def require_maps(project) -> tuple[np.ndarray, dict]:
    """:func:`~labeler.embedding.patch_maps.load_patch_maps`, with the one-line error naming
    the command (``labeler features --project DIR --patch-maps``) when there are none.

    Raises
    ------
    NotFoundError
    """
    from .embedding.patch_maps import load_patch_maps

    try:
        return load_patch_maps(project)
    except NotFoundError:
        raise NotFoundError("region search needs patch maps: run `labeler features --project "
                            f"{project.root} --patch-maps` first") from None
