"""Search by a region drawn on the large view, and the unlabelled images sorted most
anomalous first (issue 24, items 3 and 4): both fill the Search tab's grid.

The box is drawn with the mouse by ``assets/region.js`` (Shift+drag, or drag after
"▭ draw a box"), which writes it into :data:`~labeler.app.ids.LV_BOX` as fractions of
the image shown; "Search this region" turns it into pixels of the original image and
asks :meth:`labeler.search.Searcher.by_region`. The answer goes to the Search tab's grid
(label, tick and page through it as any search), each thumbnail with its matched region
outlined. Without patch maps or anomaly scores the controls say in one line which
command makes them.
"""

from __future__ import annotations

from collections import Counter

from dash import Dash, Input, Output, State, ctx, no_update
from dash.exceptions import PreventUpdate

from ....errors import LabelerError
from ... import ids
from ...common import result, triggered_value
from ...state import AppContext
from .results import clamp_k, listed_result, new_result, no_result, result_outputs, vote_fields

#: Most images the "most anomalous first" list holds (pages of the Search grid).
ANOMALOUS_MAX = 400
BOX_HINT = "Draw a box first: Shift+drag over the image (or ▭ draw a box, then drag)."


def box_pixels(box: dict, width: int, height: int) -> tuple[float, float, float, float]:
    """A box of fractions ``{fx, fy, fw, fh}`` (of the image shown) in pixels of a
    ``width`` × ``height`` image, clipped to it.

    Raises
    ------
    BadInputError
        Missing or non-numeric fractions.
    """
    from ....errors import BadInputError

    try:
        fx, fy, fw, fh = (float(box[k]) for k in ("fx", "fy", "fw", "fh"))
    except (KeyError, TypeError, ValueError):
        raise BadInputError(BOX_HINT) from None
    x0, y0 = min(max(fx, 0.0), 1.0), min(max(fy, 0.0), 1.0)
    x1, y1 = min(max(fx + fw, 0.0), 1.0), min(max(fy + fh, 0.0), 1.0)
    return (round(x0 * width, 1), round(y0 * height, 1), round((x1 - x0) * width, 1), round((y1 - y0) * height, 1))


def region_search_store(actx: AppContext, image_id: int, box: dict, k=12) -> dict:
    """The Search tab's stored result for a box drawn on image ``image_id``: the hits as
    neighbours (similarity = mean cosine of the matched cells), ``boxes`` {id: [x, y, w, h,
    width, height]} of their matched regions and ``query_box`` likewise for the query.

    Raises
    ------
    LabelerError
        No patch maps (names the command), a box outside the image, an unknown image.
    """
    from ....patch_index import stored_image_size

    w, h = stored_image_size(actx.project, int(image_id))
    px = box_pixels(box, w, h)
    res = actx.searcher().by_region(int(image_id), px, clamp_k(k))
    nb = [[hit.image_id, round(float(hit.similarity), 4)] for hit in res.hits]
    return listed_result(f"region {','.join(f'{v:g}' for v in px)} of image {image_id}", nb, **vote_fields(res.hits),
                         query_image_id=int(image_id),
                         boxes={str(hit.image_id): [*hit.box, hit.width, hit.height] for hit in res.hits},
                         query_box=[*res.query_cells_box, res.width, res.height], region=True)


def anomalous_store(actx: AppContext, n: int = ANOMALOUS_MAX) -> dict:
    """The Search tab's stored result listing the unlabelled images by anomaly score,
    highest first (at most ``n``; "similarity" holds the score,
    :func:`labeler.embedding.defect_features.most_anomalous_unlabelled`).

    Raises
    ------
    NotFoundError
        No anomaly scores yet (names the command).
    """
    from ....embedding.defect_features import most_anomalous_unlabelled

    top, scored = most_anomalous_unlabelled(actx.project, n)
    nb = [[i, round(s, 4)] for i, s in top]
    clusters = actx.store.clusters_for([i for i, _ in nb])
    cl = Counter(int(clusters.get(i, -1)) for i, _ in nb)
    return listed_result(f"unlabelled images, most anomalous first ({scored:,} with a score; "
                         "the number is the anomaly score)", nb,
                         likely_cluster=int(cl.most_common(1)[0][0]) if cl else -1)


def register(app: Dash, actx: AppContext) -> None:
    """Register the region search and anomaly sort callbacks on ``app``."""

    @app.callback(
        *result_outputs(allow_duplicate=True),
        Output(ids.LV_IMAGE, "data", allow_duplicate=True),
        Output(ids.LV_REGION_NOTE, "children"),
        Input(ids.LV_REGION_SEARCH, "n_clicks"),
        Input(ids.SEARCH_ANOMALOUS, "n_clicks"),
        State(ids.LV_BOX, "data"),
        State(ids.LV_IMAGE, "data"),
        State(ids.SEARCH_K, "value"),
        prevent_initial_call=True,
    )
    def search_region_or_anomalous(_region, _anomalous, box, lv_image, k):
        if not triggered_value():
            raise PreventUpdate
        if ctx.triggered_id == ids.SEARCH_ANOMALOUS:
            try:
                stored = anomalous_store(actx)
            except (ImportError, LabelerError) as e:
                return (*no_result(result(str(e), "error")), no_update, no_update)
            return (*new_result(stored), no_update, no_update)
        if lv_image is None:
            raise PreventUpdate
        if not box or str(box.get("src", "")).rsplit("/", 1)[-1] != str(int(lv_image)):
            return (no_update,) * 8 + (result(BOX_HINT, "warn"),)
        try:
            stored = region_search_store(actx, int(lv_image), box, k)
        except LabelerError as e:
            return (no_update,) * 8 + (result(str(e), "error"),)
        # The large view closes on the Search tab, as 'similar → Search tab' does.
        return (*new_result(stored), None, no_update)
