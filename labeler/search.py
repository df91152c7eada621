"""Reverse image search: query by an image (file or id), get its nearest neighbours.

A query is embedded with the project's backbone, projected with the project's
fitted PCA and L2-normalised, then compared with every image by cosine
similarity (:mod:`labeler.index`). The result carries the neighbours' labels
with a similarity-weighted vote, the query's likely cluster, its position on
the 2-D map (the fitted UMAP's ``transform``) and a novelty flag: the query's
best similarity is below a low percentile of the collection's own
nearest-neighbour similarities (stored at ingest).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import joblib
import numpy as np

from .errors import ProjectError, QueryImageError, StoreError
from .index import ExactIndex, project_index
from .project import Project
from .reduce import transform_pca, transform_umap

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
        Label -> share of the similarity mass among labelled neighbours (sums to 1).
    predicted_label : str or None
        The vote's winner.
    likely_cluster : int
        Similarity-weighted majority cluster among the neighbours.
    map_xy : tuple[float, float]
        The query's position on the 2-D map.
    best_similarity, novelty_threshold : float
    is_novel : bool
        best_similarity < novelty_threshold: unlike anything in the collection.
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

    def to_dict(self) -> dict:
        return asdict(self)


class Searcher:
    """Reverse image search over one project.

    Loads the read-only arrays once (memory-mapped) and the backbone and UMAP
    model only when a file query needs them.

    Raises
    ------
    ProjectError
        The project has not been ingested yet.
    """

    def __init__(self, project: Project):
        self.project = project
        self.vectors = project.load_array("pca")
        self.map_xy = project.load_array("map")
        self.row_ids = project.store.row_image_ids()
        self.id_to_row = {int(i): r for r, i in enumerate(self.row_ids) if i >= 0}
        # Exact below index.HNSW_FROM images, else the saved HNSW index (memory-mapped).
        self.index = project_index(project, self.vectors)
        self._exact = self.index if isinstance(self.index, ExactIndex) else None
        self.novelty_threshold = float(project.store.get_meta("novelty_threshold", 0.0))
        self._backbone = None
        self._pca = None
        self._umap = None

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
        from .embedding.extract import embed_files
        from .embedding.stage import query_engine

        path = Path(path)
        if not path.is_file():
            raise QueryImageError(f"query image not found: {path}")
        bb = self._load_backbone()
        meta = self.project.store.get_meta("backbone")
        batches = list(embed_files([(0, path)], bb, view=meta.get("view", "whole"), batch_size=1,
                                   num_workers=0, progress=False, engine=query_engine(self.project, bb)))
        failures = [f for b in batches for f in b.failures]
        if failures:
            raise QueryImageError(f"{path.name}: {failures[0][1]}")
        b = next(b for b in batches if len(b.ids))
        z = transform_pca(self._pca_model(), b.features)[0]
        xy = tuple(float(v) for v in transform_umap(self._umap_model(), z[None, :])[0])
        cats = self.project.store.get_meta("categories") or []
        top1 = cats[int(b.top1[0])] if 0 <= int(b.top1[0]) < len(cats) else None
        res = self._answer(path.name, z, k, exclude=None, xy=xy, exact=exact, for_label=for_label)
        res.top1_class = top1
        return res

    # -- internals ---------------------------------------------------------------------
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
        ids = [int(self.row_ids[r]) for r in rows]
        store = self.project.store
        labels = store.labels_for(ids)
        clusters = store.clusters_for(ids)
        paths = {r["id"]: r["path"] for r in store.get_images(ids)} if ids else {}
        neighbours = [
            Neighbour(i, paths[i], float(s), labels.get(i), int(clusters.get(i, -1)))
            for i, s in zip(ids, sims)
        ]
        vote, cl_vote = defaultdict(float), defaultdict(float)
        for n in neighbours:
            w = max(n.similarity, 0.0)
            cl_vote[n.cluster] += w
            if n.label is not None:
                vote[n.label] += w
        total = sum(vote.values())
        vote = {lab: v / total for lab, v in sorted(vote.items(), key=lambda kv: -kv[1])} if total > 0 else {}
        return SearchResult(
            query=query, neighbours=neighbours, vote=vote,
            predicted_label=next(iter(vote), None),
            likely_cluster=int(max(cl_vote, key=cl_vote.get)) if cl_vote else -1,
            map_xy=xy, best_similarity=best, novelty_threshold=self.novelty_threshold,
            is_novel=best < self.novelty_threshold, query_image_id=query_image_id,
        )

    def _device(self) -> str:
        return self.project.settings().device or "auto"

    def _load_backbone(self):
        if self._backbone is None:
            from .embedding.backbones import load_backbone

            meta = self.project.store.get_meta("backbone")
            if not meta:
                raise ProjectError("the project has no embeddings yet: run `labeler ingest` first")
            s = self.project.settings()
            from .embedding.local_features import feature_backbone

            bb = load_backbone(meta["name"], weights=s.weights or None, device=self._device())
            # Queries get the same feature type as the stored embeddings.
            self._backbone = feature_backbone(bb, meta.get("features", "global"))
        return self._backbone

    def _pca_model(self):
        if self._pca is None:
            self._pca = joblib.load(self.project.models_dir / "pca.joblib")
        return self._pca

    def _umap_model(self):
        if self._umap is None:
            self._umap = joblib.load(self.project.models_dir / "umap_map.joblib")
        return self._umap


def search(project: Project | Path | str, query: str | int | Path, k: int = 10, *,
           exact: bool = False, for_label: str | None = None) -> SearchResult:
    """Reverse image search: ``query`` is an image id (int or digits) or an image file path.

    ``exact`` compares with every image (large collections otherwise use the
    approximate HNSW index, :mod:`labeler.index`). ``for_label`` ("more like this,
    for *crack*") re-ranks the neighbours by the label's linear probe
    (:mod:`labeler.assist.conditioned`)."""
    project = project if isinstance(project, Project) else Project(project)
    s = Searcher(project)
    if isinstance(query, int) or (isinstance(query, str) and query.isdigit() and not Path(query).exists()):
        return s.by_id(int(query), k, exact=exact, for_label=for_label)
    return s.by_file(Path(query), k, exact=exact, for_label=for_label)
