"""A search result as the page keeps it, and what a new one writes: one shape and one set
of outputs for every way of searching (by image or text: :mod:`.callbacks`; by a region
and most anomalous first: :mod:`.region`)."""

from __future__ import annotations

from dash import Output, no_update

from ....search import SearchResult
from ... import ids
from ...common import ANEW, anew_outputs

MAX_K = 100  # most neighbours one search asks for
DEFAULT_K = 12


def clamp_k(k) -> int:
    """The number of neighbours to ask for: the page's box, clipped to 1 .. :data:`MAX_K`
    (:data:`DEFAULT_K` when it is empty or not a number)."""
    try:
        return int(min(max(int(k or DEFAULT_K), 1), MAX_K))
    except (TypeError, ValueError):
        return DEFAULT_K


def result_to_store(res: SearchResult, filename: str | None = None) -> dict:
    """The browser's copy of a search by an image: ids, similarities and the vote (no paths)."""
    return {
        "query": filename or res.query, "query_image_id": res.query_image_id,
        "neighbours": [[n.image_id, round(float(n.similarity), 4)] for n in res.neighbours],
        "vote": {k: round(float(v), 4) for k, v in res.vote.items()},
        "predicted_label": res.predicted_label, "likely_cluster": int(res.likely_cluster),
        "map_xy": [float(res.map_xy[0]), float(res.map_xy[1])],
        "best_similarity": float(res.best_similarity), "novelty_threshold": float(res.novelty_threshold),
        "is_novel": bool(res.is_novel), "top1_class": res.top1_class,
        "top1_prob": None if res.top1_prob is None else round(float(res.top1_prob), 4),
    }


def vote_fields(hits) -> dict:
    """The vote fields of a stored result from hits with ``similarity``, ``label`` and
    ``cluster`` (:func:`labeler.search.neighbour_vote`, the vote of a search by image)."""
    from ....search import neighbour_vote

    vote, predicted, likely = neighbour_vote((h.similarity, h.label, h.cluster) for h in hits)
    return {"vote": {lab: round(v, 4) for lab, v in vote.items()}, "predicted_label": predicted,
            "likely_cluster": likely}


def listed_result(query: str, neighbours: list, *, vote: dict | None = None, predicted_label: str | None = None,
                  likely_cluster: int = -1, query_image_id: int | None = None, **more) -> dict:
    """The browser's copy of a result that is not a search by a photo's embedding (by text,
    by a region, most anomalous first): no map position (the ★ stays where it was), no
    novelty warning, no ImageNet hint.

    Parameters
    ----------
    neighbours : list of [int, float]
        [image id, score] pairs, best first.
    vote, predicted_label, likely_cluster
        As :func:`vote_fields` gives them (no vote: ``{}``, None, the likely cluster).
    **more
        Fields of the search kind (a region's ``boxes`` and ``query_box``).
    """
    return {"query": query, "query_image_id": query_image_id, "neighbours": neighbours,
            "vote": vote or {}, "predicted_label": predicted_label, "likely_cluster": likely_cluster,
            "map_xy": None, "best_similarity": float(neighbours[0][1]) if neighbours else 0.0,
            "novelty_threshold": 0.0, "is_novel": False, "top1_class": None, "top1_prob": None, **more}


def result_outputs(allow_duplicate: bool) -> list[Output]:
    """What a new search result writes, in the order of :func:`new_result`'s values: the
    result store, the Search grid anew (ticks, page), the Search tab, the uploaded photo's
    preview (its style) and the error line. ``allow_duplicate``: False for the one callback
    that owns them (search by image and text), True for the others (the tab is always
    shared with other callbacks)."""
    d = allow_duplicate
    return [Output(ids.SEARCH_RESULT, "data", allow_duplicate=d), *anew_outputs(ids.SEARCH_TICKS, d),
            Output(ids.TABS, "value", allow_duplicate=True), Output(ids.SEARCH_PREVIEW, "style", allow_duplicate=d),
            Output(ids.SEARCH_ERROR, "children", allow_duplicate=d)]


def new_result(stored: dict, preview_style: dict | None = None) -> tuple:
    """Values of :func:`result_outputs` for a new result: it, shown on page 1 of the Search
    tab with every image ticked as usual, the preview hidden unless ``preview_style`` shows
    it, no error."""
    return (stored, *ANEW, ids.TAB_SEARCH, preview_style or {"display": "none"}, [])


def no_result(error, preview_style=no_update) -> tuple:
    """Values of :func:`result_outputs` for a search that failed: the last result stays,
    ``error`` shows (and ``preview_style``, to hide a refused photo's preview)."""
    return (no_update,) * 5 + (preview_style, error)
