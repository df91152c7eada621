"""Exact copies and near-duplicate shots.

Two images are *exact copies* when their files have the same content hash. They
are *near-duplicates* when the cosine similarity of their L2-normalised PCA
vectors (``pca.npy``) is at least a threshold: the same part photographed twice,
a re-encoded JPEG, a slight crop or brightness change. Groups are the connected
components (``scipy.sparse.csgraph.connected_components``) of the graph whose
edges join each image to those of its ``k`` nearest neighbours above the
threshold, plus every pair of equal hashes; a chain a~b~c puts a, b and c in one
group, which is what a leakage-safe split needs.

The default threshold, :data:`DEFAULT_THRESHOLD` = 0.99, is the best pair F1 of
``benchmarks/bench_duplicates.py`` on all 2,624 ELPV photos plus 410 planted
copies (10 byte-identical; JPEG re-encoding at quality 70-90, 1-3 % crops,
+-8 % brightness, a mix): precision 0.58, recall 0.33 at 0.99; 1.00 / 0.25 at
0.995; 0.03 / 0.45 at 0.97. ELPV is a hard case: distinct cells look alike to an
ImageNet CNN (in an 800-photo sample a tenth have a neighbour at cosine >= 0.97), so exact
copies, brightness changes (0.95) and light JPEG (0.32) are found at 0.99 and
crops are not; the natural groups it forms there are neighbouring cells cut from
one module photo (consecutive file numbers), which a leakage-safe split is right
to keep together. Collections of more varied photos can use a lower threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import BadInputError
from .project import Project

DEFAULT_THRESHOLD = 0.99
DEFAULT_K = 10


@dataclass
class DuplicateGroup:
    """One group of two or more images that are copies or near-copies of each other.

    Attributes
    ----------
    group : int
        Group number, 0.. in order of decreasing size.
    image_ids : list of int
        Members, ascending.
    kind : str
        ``"exact"`` when every member has the same content hash, else ``"near"``.
    min_similarity : float
        Smallest cosine similarity on an edge that joined the group (1.0 for exact).
    """

    group: int
    image_ids: list[int]
    kind: str
    min_similarity: float

    def to_dict(self) -> dict:
        return {"group": self.group, "kind": self.kind, "size": len(self.image_ids),
                "min_similarity": round(float(self.min_similarity), 4), "image_ids": self.image_ids}


@dataclass
class DuplicateReport:
    """The duplicate groups of a project.

    Attributes
    ----------
    threshold : float
        Cosine-similarity threshold used.
    k : int
        Nearest neighbours examined per image.
    n_images : int
        Embedded images examined.
    groups : list of DuplicateGroup
        Groups of two or more images, largest first.
    exact_copy_groups, exact_copy_images : int
        Sets of files sharing one content hash (whatever group they sit in), and
        their images.
    """

    threshold: float
    k: int
    n_images: int
    groups: list[DuplicateGroup] = field(default_factory=list)
    exact_copy_groups: int = 0
    exact_copy_images: int = 0

    @property
    def near_groups(self) -> list[DuplicateGroup]:
        return [g for g in self.groups if g.kind == "near"]

    def group_of(self) -> dict[int, int]:
        """{image_id: group} for every image in a group of two or more."""
        return {i: g.group for g in self.groups for i in g.image_ids}

    def counts(self) -> dict[str, int]:
        """exact_groups, exact_images (same hash), near_groups, near_images (groups not all one hash)."""
        near = self.near_groups
        return {"exact_groups": self.exact_copy_groups, "exact_images": self.exact_copy_images,
                "near_groups": len(near), "near_images": sum(len(g.image_ids) for g in near)}

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "k": self.k, "n_images": self.n_images, **self.counts(),
                "groups": [g.to_dict() for g in self.groups]}


def duplicate_components(vectors: np.ndarray, hashes: list[str] | None = None, *,
                         threshold: float = DEFAULT_THRESHOLD, k: int = DEFAULT_K
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the thresholded k-nearest-neighbour graph.

    Parameters
    ----------
    vectors : ndarray (n, d) float32
        L2-normalised rows; cosine similarity is their inner product.
    hashes : list of str, length n, or None
        Content hashes; equal hashes are always joined.
    threshold : float
        Cosine similarity in (0, 1]; pairs at or above it are joined.
    k : int
        Neighbours searched per row (through :func:`labeler.index.build_index`).

    Returns
    -------
    components : ndarray (n,) int64
        Component number of each row; a row alone in its component is not a duplicate.
    edge_min : ndarray (n_components,) float32
        Smallest similarity on an edge inside each component (1.0 where none).

    Raises
    ------
    BadInputError
        ``threshold`` outside (0, 1] or ``k`` < 1.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from .index import self_neighbours

    if not 0.0 < threshold <= 1.0:
        raise BadInputError(f"the duplicate threshold is a cosine similarity in (0, 1], got {threshold}")
    if k < 1:
        raise BadInputError(f"k must be at least 1, got {k}")
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    if n < 2:
        return np.arange(n, dtype=np.int64), np.ones(n, np.float32)
    sims, nbrs = self_neighbours(x, k)
    # float rounding puts identical vectors at 0.9999999: compare with a small slack.
    keep = sims >= threshold - 1e-6
    src = np.repeat(np.arange(n), sims.shape[1])[keep.ravel()]
    dst = nbrs.ravel()[keep.ravel()]
    w = sims.ravel()[keep.ravel()]
    if hashes is not None:
        first: dict[str, int] = {}
        hs, hd = [], []
        for i, h in enumerate(hashes):
            j = first.setdefault(h, i)
            if j != i:
                hs.append(j)
                hd.append(i)
        src = np.concatenate([src, np.array(hs, np.int64)])
        dst = np.concatenate([dst, np.array(hd, np.int64)])
        w = np.concatenate([w, np.ones(len(hs), np.float32)])
    graph = coo_matrix((np.ones(len(src), np.int8), (src, dst)), shape=(n, n))
    n_comp, comp = connected_components(graph, directed=False)
    edge_min = np.ones(n_comp, np.float32)
    if len(src):
        np.minimum.at(edge_min, comp[src], np.minimum(w, 1.0).astype(np.float32))
    return comp.astype(np.int64), edge_min


def find_duplicates(project: Project, *, threshold: float | None = None, k: int = DEFAULT_K) -> DuplicateReport:
    """Exact copies and near-duplicate groups among a project's embedded images.

    Parameters
    ----------
    project : Project
    threshold : float or None
        Cosine similarity; default :data:`DEFAULT_THRESHOLD`.
    k : int
        Nearest neighbours searched per image.

    Returns
    -------
    DuplicateReport

    Raises
    ------
    ProjectError
        The project has no ``pca.npy`` yet (not ingested).
    BadInputError
        ``threshold`` outside (0, 1] or ``k`` < 1.
    """
    threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    table = [r for r in project.store.image_table() if r["status"] == "embedded"]
    pca = project.load_array("pca")
    rows = np.array([r["row"] for r in table], dtype=np.int64)
    ids = np.array([r["id"] for r in table], dtype=np.int64)
    hashes = [r["hash"] for r in table]
    comp, edge_min = duplicate_components(pca[rows] if len(rows) else np.zeros((0, pca.shape[1]), np.float32),
                                          hashes, threshold=threshold, k=k)
    by_hash: dict[str, int] = {}
    for h in hashes:
        by_hash[h] = by_hash.get(h, 0) + 1
    rep = DuplicateReport(threshold=threshold, k=k, n_images=len(ids),
                          exact_copy_groups=sum(1 for v in by_hash.values() if v > 1),
                          exact_copy_images=sum(v for v in by_hash.values() if v > 1))
    sizes = np.bincount(comp) if len(comp) else np.zeros(0, np.int64)
    order = np.argsort(comp, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    members_of = {int(c): order[starts[c]:starts[c + 1]] for c in np.flatnonzero(sizes > 1)}
    multi = sorted(members_of, key=lambda c: (-sizes[c], int(ids[members_of[c]].min())))
    for g, c in enumerate(multi):
        members = members_of[c]
        kind = "exact" if len({hashes[m] for m in members}) == 1 else "near"
        rep.groups.append(DuplicateGroup(group=g, image_ids=sorted(int(i) for i in ids[members]), kind=kind,
                                         min_similarity=float(edge_min[c])))
    return rep


LIVE_COUNT_LIMIT = 20_000


def remember_counts(project: Project, report: DuplicateReport) -> None:
    """Store a report's counts in the project's metadata, for ``labeler info`` on large projects."""
    project.store.set_meta(duplicate_counts={**report.counts(), "threshold": report.threshold,
                                             "n_images": report.n_images})


def duplicate_counts(project: Project, *, live_limit: int = LIVE_COUNT_LIMIT) -> dict | None:
    """Duplicate counts for ``labeler info``: computed now up to ``live_limit`` images.

    Above it (a full k-NN pass is seconds to minutes there) the counts of the last
    ``labeler duplicates`` run are returned if they cover the current number of
    images, else None.

    Returns
    -------
    dict or None
        exact_groups, exact_images, near_groups, near_images, threshold, n_images,
        and ``stored`` (True when read from the last run).

    Raises
    ------
    ProjectError
        The project is not ingested yet.
    """
    n = sum(1 for r in project.store.image_table() if r["status"] == "embedded")
    if n <= live_limit:
        rep = find_duplicates(project)
        return {**rep.counts(), "threshold": rep.threshold, "n_images": rep.n_images, "stored": False}
    saved = project.store.get_meta("duplicate_counts")
    if saved and saved.get("n_images") == n:
        return {**saved, "stored": True}
    return None
