"""The "label next" queue of a project: which images to show the annotator now.

Project-facing layer over :func:`labeler.assist.queue.next_items`: reads the
labels and suggestions (:func:`labeler.assist.suggest.suggest`), asks the queue
for the next items and returns them with their image ids, paths and the reason
each was chosen.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from ..project import Project
from . import queue as assist_queue
from .suggest import knn_graph, load_features, suggest


@dataclass
class NextImage:
    """One queue entry, as shown to the annotator.

    Attributes
    ----------
    image_id : int
    path : str, relative to the image root
    reason : str, why it was chosen
    suggestion : str or None, the current suggestion for it
    confidence : float or None, its vouched confidence (the probability capped by the
        held-out evidence; :class:`labeler.assist.suggest.Suggestions`)
    group : list[int], near-identical unlabelled image ids shown with it (``image_id`` first)
    probability : float or None, the calibrated probability that the suggestion is right
    vouched : bool or None, whether the held-out evidence vouches for it
    evidence_text : str or None, both numbers in words ('probability 0.97 it is right;
        vouched ≥ 0.95 by 60 held-out labels'), never a bare number; the expert that decided
        the suggestion first ('model: my-classifier; probability ...')
    source : str or None, that expert (:mod:`labeler.assist.experts`); None = labeler's model
    """

    image_id: int
    path: str
    reason: str
    suggestion: str | None
    confidence: float | None
    group: list[int]
    probability: float | None = None
    vouched: bool | None = None
    evidence_text: str | None = None
    source: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def next_to_label(project: Project | Path | str, n: int = 10, *,
                  features: str | os.PathLike | np.ndarray = "active", method: str = "combined",
                  explore: float = 0.2, seed: int = 0) -> list[NextImage]:
    """The next ``n`` unlabelled images whose labels should teach the model most.

    Parameters
    ----------
    project : Project or path
    n : int >= 1
    features, method : as in :func:`labeler.assist.suggest.suggest`
    explore : float, share of typical images of unlabelled regions (see
        :func:`labeler.assist.queue.next_items`)
    seed : int, KMeans seed of the cold-start part

    Returns
    -------
    list[NextImage], fewer than ``n`` when fewer images are unlabelled

    Raises
    ------
    BadInputError
        n < 1.
    NotIngestedError
        The project has no embeddings (no such features) yet.
    """
    if int(n) < 1:
        raise BadInputError(f"-n must be at least 1, got {n}")
    project = project if isinstance(project, Project) else Project(project)
    x, name = load_features(project, features)
    sug = suggest(project, features=features, method=method)
    graph = knn_graph(project, x, name)
    # The queue works on the embedded images only (missing or skipped files are never shown).
    xs = x[sug.rows]
    sub = _subgraph(graph, sug.rows, len(x))
    labelled = ~sug.unlabelled
    warm = len(sug.classes) >= 2
    items = assist_queue.next_items(
        xs, sub, labelled, int(n), margin=sug.margin if warm else None, label=sug.label if warm else None,
        classes=sug.classes, explore=explore, seed=seed)
    ids = [int(sug.image_ids[it.row]) for it in items]
    paths = {r["id"]: r["path"] for r in project.store.get_images(ids)} if ids else {}
    out = []
    for it, i in zip(items, ids):
        s = sug.detail(i) if warm else None
        out.append(NextImage(i, paths[i], it.reason, s["label"] if s else None, s["confidence"] if s else None,
                             [int(sug.image_ids[r]) for r in it.group], s["probability"] if s else None,
                             s["vouched"] if s else None, s["text"] if s else None, s["source"] if s else None))
    return out


def _subgraph(graph, rows: np.ndarray, n_rows: int):
    """The kNN graph restricted to ``rows`` (edges to other rows dropped, re-indexed)."""
    if len(rows) == n_rows and np.array_equal(rows, np.arange(n_rows)):
        return graph
    from .graph import KnnGraph

    pos = np.full(n_rows, -1, np.int64)
    pos[rows] = np.arange(len(rows))
    nb = pos[graph.neighbours[rows]]
    sims = np.where(nb >= 0, graph.similarities[rows], -1.0).astype(np.float32)
    nb = np.where(nb >= 0, nb, np.arange(len(rows))[:, None])  # a dropped edge points to itself, weight 0
    return KnnGraph(nb, sims, graph.fingerprint + "-sub")
