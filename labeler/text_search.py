"""Text search ("a cracked cell"): the images whose CLIP embeddings are nearest to a sentence.

The CLIP image embeddings are a stored feature set (``labeler features --text-model``,
:mod:`labeler.embedding.text`); this module ranks the collection by their cosine to each
text's embedding and returns the neighbours as :mod:`labeler.search` does for images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .project import Project
from .search import Neighbour

__all__ = ["TextSearchResult", "search_text"]


@dataclass
class TextSearchResult:
    """The images nearest to a sentence: ``neighbours`` most similar first (cosine of the
    CLIP text and image embeddings), from the CLIP feature set ``feature_set``."""

    query: str
    neighbours: list[Neighbour]
    feature_set: str

    def to_dict(self) -> dict:
        return asdict(self)


def search_text(project: Project | Path | str, texts: Sequence[str] | str, k: int = 10, *,
                feature_set: str | None = None, device: str = "auto") -> list[TextSearchResult]:
    """Text search ("a cracked cell"): the ``k`` images whose CLIP embeddings are nearest to
    each text's (:mod:`labeler.embedding.text`; the model loads once for all texts).

    Raises
    ------
    NotFoundError
        The project has no CLIP feature set (``labeler features --text-model``).
    BadInputError
        An empty text; open_clip not installed.
    """
    from .embedding.text import clip_feature_set, text_scores

    project = project if isinstance(project, Project) else Project(project)
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts or any(not t.strip() for t in texts):
        from .errors import BadInputError

        raise BadInputError("text search needs a non-empty text")
    name, _ = clip_feature_set(project, feature_set)
    sims, row_ids = text_scores(project, texts, feature_set=name, device=device)
    store = project.store
    out = []
    for text, s in zip(texts, sims):
        s = np.where(row_ids >= 0, s, -np.inf)
        top = np.argsort(-s, kind="stable")[:k]
        top = top[np.isfinite(s[top])]
        ids = [int(row_ids[r]) for r in top]
        labels, clusters = store.labels_for(ids), store.clusters_for(ids)
        paths = {r["id"]: r["path"] for r in store.get_images(ids)} if ids else {}
        out.append(TextSearchResult(text, [Neighbour(i, paths[i], float(s[r]), labels.get(i), int(clusters.get(i, -1)))
                                           for i, r in zip(ids, top)], name))
    return out
