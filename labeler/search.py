"""Reverse image search: query by an image (file or id), get its nearest neighbours.

A query is embedded with the project's backbone, projected with the project's
fitted PCA and L2-normalised, then compared with every image by cosine
similarity (:mod:`labeler.index`). The result carries the neighbours' labels
with a similarity-weighted vote over the *labelled* neighbours only ("k of n
labelled"), the query's likely cluster, its position on the 2-D map and a
novelty flag: the query's best similarity is below a low percentile of the
collection's own nearest-neighbour similarities (stored at ingest).

A query file whose bytes are already in the collection (same SHA-256 content
hash as an embedded image) is recognised: its stored vector is used (no model
is loaded), its id is reported as ``query_image_id`` and it is left out of its
own neighbours.

The map position of a new file is the similarity-weighted mean of its
nearest neighbours' 2-D positions: the initialisation umap-learn's
``UMAP.transform`` starts from (McInnes, Healy & Melville 2018; umap-learn's
``init_transform``), without its optimisation epochs, which need a numba
compilation of ~10 s per process.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .embedding.given import NEEDS_A_MODEL, is_given
from .errors import ProjectError, QueryImageError, StoreError
from .images import content_hash
from .index import ExactIndex, project_index
from .patch_index import RegionSearchResult
from .project import Project
from .reduce import place_from_neighbours

#: Plain nearest neighbours re-ranked by a label-conditioned search.
FOR_LABEL_CANDIDATES = 1000




@dataclass
class Neighbour:
    """One search hit: image id, its path (relative to the image root), cosine
    similarity in [-1, 1], current label (or None) and cluster (-1 = noise)."""

    image_id: int
    path: str
    similarity: float
    label: str | None
    cluster: int


@dataclass
class SearchResult:
    """The answer to one query.

    Attributes
    ----------
    query : str
        'image 12' or the query file name.
    neighbours : list[Neighbour]
        Most similar first.
    vote : dict[str, float]
        Label -> share of the similarity mass among the *labelled* neighbours only
        (sums to 1; empty when none is labelled). Read it with ``n_labelled``.
    predicted_label : str or None
        The vote's winner.
    likely_cluster : int
        Similarity-weighted majority cluster among the neighbours.
    map_xy : tuple[float, float]
        The query's position on the 2-D map.
    best_similarity, novelty_threshold : float
    is_novel : bool
        best_similarity < novelty_threshold: unlike anything in the collection.
    query_image_id : int or None
        The collection's image the query is (an id query, or a file with the same
        content hash as an embedded image); that image is not among ``neighbours``.
    top1_class : str or None
        The backbone's ImageNet top-1 class for the query.
    top1_prob : float or None
        Its softmax probability (:mod:`labeler.hints` shows the class only above a threshold).
    n_labelled : int
        How many of the ``len(neighbours)`` neighbours have a label: the vote
        rests on these ("3 of 12 labelled").
    """

    query: str
    neighbours: list[Neighbour]
    vote: dict[str, float]
    predicted_label: str | None
    likely_cluster: int
    map_xy: tuple[float, float]
    best_similarity: float
    novelty_threshold: float
    is_novel: bool
    query_image_id: int | None = None
    top1_class: str | None = field(default=None)
    top1_prob: float | None = None
    n_labelled: int = 0

    @property
    def vote_summary(self) -> str:
        """E.g. ``"mono 75%, poly 25% (4 of 12 labelled)"``; ``"0 of 12 labelled"``."""
        share = ", ".join(f"{lab} {v:.0%}" for lab, v in self.vote.items())
        count = f"{self.n_labelled} of {len(self.neighbours)} labelled"
        return f"{share} ({count})" if share else count

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class QueryFailure:
    """A query of :meth:`Searcher.by_files` that could not be answered: the file is
    missing, unreadable or not a decodable image (``error`` says which)."""

    query: str
    error: str

    def to_dict(self) -> dict:
        return asdict(self)


class Searcher:
    """Reverse image search over one project.

    Loads the read-only arrays once (memory-mapped) and the backbone and UMAP
    model only when a file query needs them.

    Parameters
    ----------
    project : Project
    feature_set : str, default 'pca'
        The vectors compared: 'pca' (the ingest's PCA vectors, through the project's
        index), or 'active' / a stored feature set's name (:mod:`labeler.embedding.feature_sets`,
        e.g. the defect-aware 'defect'), L2-normalised and searched exactly; those
        answer images of the collection only (a new photo has no vector in them).

    Raises
    ------
    ProjectError
        The project has not been ingested yet.
    NotIngestedError
        No feature set of that name.
    """

    def __init__(self, project: Project, feature_set: str = "pca"):
        self.project = project
        self.feature_set = feature_set
        # Plain ndarray views of the memory maps (no copy): indexing a np.memmap costs ~6 us
        # a row against ~0.6 us, several times per query.
        self.map_xy = np.asarray(project.load_array("map"))
        self.row_ids = project.store.row_image_ids()
        self.id_to_row = {int(i): r for r, i in enumerate(self.row_ids) if i >= 0}
        if feature_set == "pca":
            self.vectors = np.asarray(project.load_array("pca"))
            # Exact below index.HNSW_FROM images, else the saved HNSW index (memory-mapped).
            self.index = project_index(project, self.vectors)
        else:  # another stored feature set (defect-aware, fine-tuned ...): exact cosine search
            from .assist.suggest import load_features

            self.vectors, _ = load_features(project, feature_set)
            self.index = ExactIndex(self.vectors)
        self._exact = self.index if isinstance(self.index, ExactIndex) else None
        self.novelty_threshold = float(project.store.get_meta("novelty_threshold", 0.0))
        self._backbone = None
        self._pca = None

    # -- queries -----------------------------------------------------------------------
    def by_id(self, image_id: int, k: int = 10, *, exact: bool = False, for_label: str | None = None) -> SearchResult:
        """Neighbours of an image of the collection (the image itself left out).

        ``exact`` compares with every image even where the collection uses the
        approximate HNSW index. ``for_label``: rank by similarity conditioned on that
        label (:meth:`_answer`).

        Raises
        ------
        StoreError
            Unknown image id, or an image without an embedding.
        """
        row = self.id_to_row.get(int(image_id))
        if row is None:
            raise StoreError(f"unknown image id {image_id} (or not embedded)")
        xy = tuple(float(v) for v in self.map_xy[row])
        return self._answer(f"image {image_id}", np.asarray(self.vectors[row]), k, exclude=row,
                            xy=xy, query_image_id=int(image_id), exact=exact, for_label=for_label)

    def by_file(self, path: Path | str, k: int = 10, *, exact: bool = False,
                for_label: str | None = None) -> SearchResult:
        """Neighbours of an image file (inside or outside the collection); ``exact``
        and ``for_label`` as in :meth:`by_id`.

        ``for_label``: rank by similarity conditioned on that label (:meth:`_answer`).

        Raises
        ------
        QueryImageError
            The file is missing or is not a decodable image.
        """
        (res,) = self.by_files([path], k, exact=exact, for_label=for_label)
        if isinstance(res, QueryFailure):
            raise QueryImageError(res.error)
        return res

    def by_files(self, paths: Sequence[Path | str], k: int = 10, *, batch_size: int = 16,
                 exact: bool = False, for_label: str | None = None) -> list[SearchResult | QueryFailure]:
        """Neighbours of many image files, one answer per file in input order.

        Files whose content hash matches an embedded image reuse its stored vector;
        the others are embedded ``batch_size`` at a time with the project's backbone
        (loaded once, and only if some file needs it). A file that cannot be read or
        decoded gives a :class:`QueryFailure` instead of stopping the others.

        Raises
        ------
        ProjectError
            A file needs embedding and the project has no backbone recorded.
        """
        paths = [Path(p) for p in paths]
        out: list[SearchResult | QueryFailure | None] = [None] * len(paths)
        own = f"the feature set {self.feature_set!r} has vectors only for the collection's own images: search by their id"
        hashes: dict[int, str] = {}
        for i, p in enumerate(paths):
            try:
                hashes[i] = content_hash(p)
            except IsADirectoryError:
                out[i] = QueryFailure(p.name, f"{p}: is a folder, not an image file")
            except OSError as e:
                out[i] = QueryFailure(p.name, f"query image not found or unreadable: {p} ({e.strerror or e})")
        known = self.project.store.embedded_ids_by_hash(list(hashes.values()))
        todo = []
        top1_ids = sorted(set(known.values()))
        top1, top1_p = self.project.store.imagenet_top1(top1_ids)
        top1_of = {i: (int(c), None if np.isnan(p) else float(p)) for i, c, p in zip(top1_ids, top1, top1_p)}
        for i, h in hashes.items():
            image_id = known.get(h)
            if image_id is not None and image_id in self.id_to_row:
                res = self.by_id(image_id, k, exact=exact, for_label=for_label)
                res.query = paths[i].name
                res.top1_class = self._top1_name(top1_of[image_id][0])
                res.top1_prob = top1_of[image_id][1]
                out[i] = res
            else:
                todo.append((i, paths[i]))
        if todo and (is_given(self.project.store.get_meta("backbone")) or self.feature_set != "pca"):
            for i, p in todo:  # no model to embed a new photo in these vectors
                out[i] = QueryFailure(p.name, f"{p.name}: {NEEDS_A_MODEL if self.feature_set == 'pca' else own}")
            todo = []
        if todo:
            for i, z, top1, err, prob in self._embed(todo, batch_size):
                if err is not None:
                    out[i] = QueryFailure(paths[i].name, f"{paths[i].name}: {err}")
                else:
                    res = self._answer(paths[i].name, z, k, exclude=None, xy=None, exact=exact,
                                       for_label=for_label)
                    res.top1_class = self._top1_name(top1)
                    res.top1_prob = prob
                    out[i] = res
        return out  # type: ignore[return-value]

    def run_queries(self, queries: Sequence[int | Path], k: int = 10, *, batch_size: int = 16,
                    exact: bool = False, for_label: str | None = None) -> list[SearchResult | QueryFailure]:
        """Answer image ids and files together, in input order (see :func:`expand_queries`)."""
        files = [(i, q) for i, q in enumerate(queries) if not isinstance(q, int)]
        answers = dict(zip((i for i, _ in files),
                           self.by_files([q for _, q in files], k, batch_size=batch_size, exact=exact,
                                         for_label=for_label)))
        out: list[SearchResult | QueryFailure] = []
        for i, q in enumerate(queries):
            if isinstance(q, int):
                try:
                    out.append(self.by_id(q, k, exact=exact, for_label=for_label))
                except StoreError as e:
                    out.append(QueryFailure(f"image {q}", str(e)))
            else:
                out.append(answers[i])
        return out

    def by_region(self, query: int | Path | str, box, k: int = 10) -> RegionSearchResult:
        """Images whose best-matching region is nearest to a box of the query image
        (:mod:`labeler.patch_index`; the query image itself left out).

        Parameters
        ----------
        query : int, Path or str
            An image id of the collection, or an image file (a file whose bytes are an
            embedded image's uses that image's stored map; others are run through the
            backbone and the maps' PCA, :func:`~labeler.embedding.patch_maps.patch_map_of_image`).
        box : (x, y, w, h) or "x,y,w,h"
            Pixels of the original (EXIF-oriented) image.
        k : int
            Images returned.

        Raises
        ------
        NotFoundError
            The project has no patch maps (the message names the command).
        BadInputError
            A malformed box, or one outside the image.
        StoreError
            Unknown image id.
        QueryImageError
            The file is missing or not a decodable image.
        """
        from .patch_index import query_region

        maps, info, index = self._patch_index()
        return query_region(self.project, self.id_to_row, maps, info, index, query, box, k)

    # -- internals ---------------------------------------------------------------------
    def _patch_index(self):
        """(maps, info, patch index or None) of the project, reloaded when the maps changed;
        None below :data:`labeler.patch_index.RERANK_ALL` images (every image is re-ranked)."""
        from .embedding.patch_maps import patch_maps_info
        from .patch_index import RERANK_ALL, project_patch_index, require_maps

        cached = getattr(self, "_patches", None)
        if cached is None or cached[1].get("created") != patch_maps_info(self.project).get("created"):
            maps, info = require_maps(self.project)
            index = project_patch_index(self.project, maps, info) if len(maps) > RERANK_ALL else None
            self._patches = cached = (maps, info, index)
        return cached

    def _index(self, exact: bool):
        if not exact:
            return self.index
        if self._exact is None:
            self._exact = ExactIndex(self.vectors)
        return self._exact

    def _answer(self, query, z, k, *, exclude, xy, query_image_id=None, exact=False, for_label=None) -> SearchResult:
        """The result of one query. With ``for_label`` the nearest
        ``FOR_LABEL_CANDIDATES`` (at least 20 k) images are re-ranked by their cosine
        similarity plus the probability the label's linear probe gives them
        (:mod:`labeler.assist.conditioned`; ``similarity`` stays the plain cosine).

        Raises
        ------
        BadInputError
            ``for_label`` is not a label in use, or no image lacks it.
        """
        want = k if for_label is None else max(FOR_LABEL_CANDIDATES, 20 * k)
        sims, rows = self._index(exact).search(z, want, exclude=None if exclude is None else np.array([exclude]))
        found = rows[0] >= 0  # HNSW may return fewer than k
        sims, rows = sims[0][found], rows[0][found]
        best = float(sims[0]) if len(sims) else -1.0  # novelty is about the plain nearest neighbour
        if for_label is not None:
            from .assist.conditioned import conditioned_scores, project_label_probe

            coef, b = project_label_probe(self.project, self.vectors, self.row_ids, for_label)
            order = np.argsort(-conditioned_scores(z, np.asarray(self.vectors[rows]), coef, b, "rerank"),
                               kind="stable")[:k]
            sims, rows = sims[order], rows[order]
        ids = self.row_ids[rows].tolist()
        meta = self.project.store.neighbour_rows(ids)  # path, label, cluster: one statement
        neighbours = [Neighbour(i, meta[i][0], s, meta[i][1], meta[i][2]) for i, s in zip(ids, sims.tolist())]
        vote, predicted, likely = neighbour_vote((n.similarity, n.label, n.cluster) for n in neighbours)
        if xy is None:
            xy = place_on_map(self.map_xy[rows], sims)
        return SearchResult(
            query=query, neighbours=neighbours, vote=vote, predicted_label=predicted, likely_cluster=likely,
            map_xy=xy, best_similarity=best, novelty_threshold=self.novelty_threshold,
            is_novel=best < self.novelty_threshold, query_image_id=query_image_id,
            n_labelled=sum(n.label is not None for n in neighbours),
        )

    def _embed(self, items: list[tuple[int, Path]], batch_size: int
               ) -> Iterator[tuple[int, np.ndarray | None, int, str | None, float | None]]:
        """(index, PCA vector or None, top-1 class index, error or None, top-1 probability) per item."""
        from .embedding.extract import embed_files
        from .embedding.stage import query_engine
        from .reduce import transform_pca

        bb = self._load_backbone()
        meta = self.project.store.get_meta("backbone")
        for b in embed_files(items, bb, view=meta.get("view", "whole"), batch_size=batch_size,
                             num_workers=0, progress=False, engine=query_engine(self.project, bb)):
            for i, reason in b.failures:
                yield int(i), None, -1, str(reason), None
            if len(b.ids):
                z = transform_pca(self._pca_model(), b.features)
                for j, i in enumerate(b.ids):
                    yield int(i), z[j], int(b.top1[j]), None, float(b.top1_prob[j])

    def _top1_name(self, top1: int) -> str | None:
        cats = self.project.store.get_meta("categories") or []
        return cats[top1] if 0 <= top1 < len(cats) else None

    def _device(self) -> str:
        return self.project.settings().device or "auto"

    def _load_backbone(self):
        if self._backbone is None:
            from .embedding.backbones import load_backbone

            meta = self.project.store.get_meta("backbone")
            if not meta:
                raise ProjectError("the project has no embeddings yet: run `labeler ingest` first")
            if is_given(meta):
                raise ProjectError(NEEDS_A_MODEL)
            s = self.project.settings()
            from .embedding.local_features import feature_backbone

            bb = load_backbone(meta["name"], weights=s.weights or None, device=self._device())
            # Queries get the same feature type as the stored embeddings.
            self._backbone = feature_backbone(bb, meta.get("features", "global"))
        return self._backbone

    def _pca_model(self):
        if self._pca is None:
            from .integrity import verify

            verify(self.project, self.project.models_dir / "pca.joblib")  # damaged: one line, never a wrong map
            self._pca = load_pca(self.project.models_dir)
        return self._pca


class LinearPCA:
    """The transform of a fitted scikit-learn ``PCA`` as plain arrays:
    ``(x - mean_) @ components_.T``, divided by ``sqrt(explained_variance_)`` when
    whitened (as ``sklearn.decomposition.PCA.transform``). Loading it needs no
    scikit-learn import (~1-3 s of a cold shell search)."""

    def __init__(self, mean: np.ndarray, components: np.ndarray, scale: np.ndarray | None):
        self.mean_ = np.asarray(mean, dtype=np.float32)
        self.components_ = np.asarray(components, dtype=np.float32)
        self.scale = None if scale is None or not len(scale) else np.asarray(scale, dtype=np.float32)
        self.n_components_ = len(self.components_)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(n, D) -> (n, n_components) float32."""
        z = (np.asarray(x, dtype=np.float32) - self.mean_) @ self.components_.T
        return z if self.scale is None else z / self.scale


def load_pca(models_dir: Path):
    """The project's fitted PCA (``models/pca.joblib``), through a plain-array copy
    (``models/pca_transform.npz``, keyed by the pickle's size and mtime) written
    the first time, so later processes skip the scikit-learn import. A project
    folder that cannot be written just keeps using the pickle.

    Returns
    -------
    LinearPCA or sklearn.decomposition.PCA
        Either has ``transform`` and ``n_components_``.
    """
    src, cache = models_dir / "pca.joblib", models_dir / "pca_transform.npz"
    st = src.stat()
    key = f"{st.st_size}:{st.st_mtime_ns}"
    try:
        with np.load(cache) as d:
            if str(d["key"]) == key:
                return LinearPCA(d["mean"], d["components"], d["scale"])
    except (OSError, KeyError, ValueError):
        pass
    import joblib

    from .atomic import atomic_write

    pca = joblib.load(src)
    scale = np.sqrt(pca.explained_variance_) if getattr(pca, "whiten", False) else np.zeros(0, np.float32)
    try:
        with atomic_write(cache, durable=False) as f:
            np.savez(f, key=np.array(key), mean=pca.mean_, components=pca.components_, scale=scale)
    except OSError:
        pass
    return pca


def neighbour_vote(neighbours) -> tuple[dict[str, float], str | None, int]:
    """The similarity-weighted vote of a query's neighbours, the one rule every search
    (by image, by region, by text) reports.

    Parameters
    ----------
    neighbours : iterable of (similarity, label or None, cluster)
        Similarity in cosine units (negative ones weigh 0); cluster -1 = noise.

    Returns
    -------
    vote : dict of str to float
        Share of the labelled neighbours' weight per label, largest first (sums to 1; {}
        when no neighbour is labelled).
    predicted_label : str or None
        The vote's winner.
    likely_cluster : int
        The cluster with the most weight among all neighbours (-1 with none).
    """
    vote, cl_vote = defaultdict(float), defaultdict(float)
    for similarity, label, cluster in neighbours:
        w = max(float(similarity), 0.0)
        cl_vote[int(cluster)] += w
        if label is not None:
            vote[label] += w
    total = sum(vote.values())
    vote = {lab: v / total for lab, v in sorted(vote.items(), key=lambda kv: -kv[1])} if total > 0 else {}
    return vote, next(iter(vote), None), int(max(cl_vote, key=cl_vote.get)) if cl_vote else -1


def place_on_map(neighbour_xy: np.ndarray, similarities: np.ndarray) -> tuple[float, float]:
    """Map position of a query from its nearest neighbours, as ingest places the images
    outside the UMAP fit sample (:func:`labeler.reduce.place_from_neighbours`: the mean
    of their positions weighted by UMAP's membership strengths; numpy only, no UMAP
    model, no numba compilation).

    Parameters
    ----------
    neighbour_xy : ndarray (k, 2) float
        Map positions of the query's nearest neighbours.
    similarities : ndarray (k,) float
        Their cosine similarities to the query (in any order).

    Returns
    -------
    tuple of float
        ``(x, y)``; ``(0.0, 0.0)`` with no neighbours.
    """
    xy = np.asarray(neighbour_xy, dtype=np.float32)
    if len(xy) == 0:
        return (0.0, 0.0)
    sims = np.asarray(similarities, dtype=np.float32)
    order = np.argsort(-sims, kind="stable")  # a label-conditioned re-rank may reorder them
    x, y = place_from_neighbours(sims[order][None, :], [xy[order][None, :, :]])[0][0]
    return (float(x), float(y))


def expand_queries(queries: Sequence[str | int | Path]) -> list[int | Path]:
    """Command-line queries to image ids and files: digits that are not a file name are
    an image id, a folder becomes its image files (:func:`labeler.images.discover`,
    recursive, sorted), anything else is a file path (checked when searched).

    Raises
    ------
    QueryImageError
        A folder holds no image file.
    """
    from .images import discover

    out: list[int | Path] = []
    for q in queries:
        if isinstance(q, int) or (isinstance(q, str) and q.isdigit() and not Path(q).exists()):
            out.append(int(q))
            continue
        p = Path(q)
        if p.is_dir():
            entries, _ = discover(p)
            if not entries:
                raise QueryImageError(f"no image files in folder {p}")
            out.extend(p / e.rel_path for e in entries)
        else:
            out.append(p)
    return out


def search_region(project: Project | Path | str, query: str | int | Path, box, k: int = 10) -> RegionSearchResult:
    """Search by a region: ``query`` an image id (int or digits) or an image file, ``box``
    x, y, w, h in its pixels (or "x,y,w,h"); see :meth:`Searcher.by_region`."""
    project = project if isinstance(project, Project) else Project(project)
    if isinstance(query, str) and query.isdigit() and not Path(query).exists():
        query = int(query)
    return Searcher(project).by_region(query, box, k)


def search(project: Project | Path | str, query: str | int | Path, k: int = 10, *,
           exact: bool = False, for_label: str | None = None, feature_set: str = "pca") -> SearchResult:
    """Reverse image search: ``query`` is an image id (int or digits) or an image file path.

    ``exact`` compares with every image (large collections otherwise use the
    approximate HNSW index, :mod:`labeler.index`). ``for_label`` ("more like this,
    for *crack*") re-ranks the neighbours by the label's linear probe
    (:mod:`labeler.assist.conditioned`). ``feature_set``: 'pca' (the ingest vectors,
    default), 'active' or a stored feature set's name (e.g. the defect-aware 'defect',
    :mod:`labeler.embedding.defect_features`), searched exactly; those answer image ids
    only (a file that is not in the collection is a :class:`QueryFailure`-worded error)."""
    project = project if isinstance(project, Project) else Project(project)
    s = Searcher(project, feature_set)
    if isinstance(query, int) or (isinstance(query, str) and query.isdigit() and not Path(query).exists()):
        return s.by_id(int(query), k, exact=exact, for_label=for_label)
    return s.by_file(Path(query), k, exact=exact, for_label=for_label)
