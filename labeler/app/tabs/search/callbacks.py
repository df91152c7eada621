"""The Search tab: reverse image search by clicking a point, the large view's 'similar'
button or an uploaded photo, and search by text; the result, the query star on the map,
and labelling from it. Search by a region and 'most anomalous first' fill the same grid
(:mod:`.region`, registered with this module)."""

from __future__ import annotations

from dash import Dash, Input, Output, State, html, no_update
from dash.exceptions import PreventUpdate

from ....errors import BadInputError, LabelerError, StoreError
from ....hints import hint_text
from ....search import QueryImageError
from ... import ids
from ...common import is_ticked, page_callback, result, shown_labels, track_ticks, triggered_value
from ...components import caption, full_image_link, grid, outline_style, thumb
from ...labelling import label_on_submit, labelled_note_on, ticked
from ...panels import PER_PAGE, image_facts, page_of
from ...routes import thumb_url
from ...state import AppContext
from ...uploads import UploadError, preview_data_uri, uploaded_image
from ...views import point_image_id, query_marker_patch
from . import region
from .results import clamp_k, listed_result, new_result, no_result, result_outputs, result_to_store, vote_fields

def search_by_id(actx: AppContext, image_id: int, k=12, for_label: str | None = None) -> dict:
    """Neighbours of a collection image, as stored in the browser; ``for_label``: "more like
    this, for LABEL" (:mod:`labeler.assist.conditioned`).

    Raises
    ------
    StoreError
        Unknown image id.
    BadInputError
        ``for_label`` is not a label in use.
    """
    return result_to_store(actx.searcher().by_id(int(image_id), clamp_k(k), for_label=for_label or None))


def search_by_upload(actx: AppContext, contents: str, filename: str | None, k=12,
                     for_label: str | None = None) -> dict:
    """Neighbours of an uploaded photo (checked server-side, then searched from a temp file).

    Raises
    ------
    UploadError
        Too big, not an image type we accept, too many pixels, or undecodable.
    """
    with uploaded_image(contents) as path:
        try:
            res = actx.searcher().by_file(path, clamp_k(k), for_label=for_label or None)
        except QueryImageError as e:
            raise UploadError(f"the image could not be used: {e}") from e
        # A photo of the collection is shown by its thumbnail; a new one by a small preview.
        preview = preview_data_uri(path) if res.query_image_id is None else None
    name = (filename or "uploaded photo").replace("/", "_")[-120:]
    return {**result_to_store(res, name), "preview": preview}


def search_by_text(actx: AppContext, text: str, k=12) -> dict:
    """The images nearest to a sentence (:func:`labeler.search.search_text`), stored like an
    image search's result: no query image, no map position (the marker stays where it was),
    the labelled neighbours' vote, the neighbours' most common cluster.

    Raises
    ------
    LabelerError
        An empty text, no CLIP feature set in the project, open_clip missing.
    """
    from ....text_search import search_text

    (res,) = search_text(actx.project, [str(text or "")], clamp_k(k))
    nb = res.neighbours
    return listed_result(f"text: \u201c{res.query}\u201d ({res.feature_set})",
                         [[n.image_id, round(float(n.similarity), 4)] for n in nb], **vote_fields(nb))


def result_view(actx: AppContext, stored: dict, excluded=(), page=1, relabel=None) -> dict:
    """Page pieces of a stored result: query, novel, vote, grid (one page of
    :data:`~labeler.app.panels.PER_PAGE` neighbours), pages ('of N' text), n_pages,
    image_row_style, shown (labels of the page's labelled neighbours). Labelled
    neighbours start unticked (ticked when ``relabel`` holds them)."""
    nb = stored["neighbours"]
    qid = stored.get("query_image_id")
    facts = image_facts(actx, [i for i, _ in nb] + ([qid] if qid is not None else []))
    lc = stored["likely_cluster"]
    star = " · the ★ on the map is its position" if stored.get("map_xy") is not None else " (most of its neighbours)"
    where = [html.Div(f"likely cluster: {lc if lc >= 0 else 'noise'}{star}", className="muted small")]
    if stored.get("query_box"):
        where.insert(0, html.Div(f"Search by a region: {stored['query']} (outlined); each result's "
                                 "best-matching region is outlined", className="small", id="region-query"))
    if qid is not None:
        f = facts.get(qid, {})
        cl = f.get("cluster", -1)
        qimg = html.Img(src=thumb_url(qid), className="query-img")
        if stored.get("query_box"):  # a region search: the box asked for, outlined on the query
            b = stored["query_box"]
            qimg = html.Div([qimg, html.Div(className="region-box", style=outline_style(b[:4], b[4], b[5]))],
                            className="query-region")
        query = [qimg, html.Div([
            html.Div(f"#{qid} · {f.get('path', '').rsplit('/', 1)[-1]}", className="detail-title"),
            html.Div(f"cluster {cl}" if cl >= 0 else "noise"),
            html.Div(f"label: {f.get('label') or '—'}", id="query-label"),
            full_image_link(qid), *where])]
    else:
        min_prob = actx.hint_threshold()
        text = None if min_prob is None else hint_text(stored.get("top1_class"), stored.get("top1_prob"), min_prob)
        hint = [html.Div(text, className="hint", id="search-hint")] if text else []
        query = [html.Div([html.Div(f"Query: {stored['query']}", className="detail-title"), *hint, *where])]
    novel = []
    if stored["is_novel"]:
        novel = [html.Div(
            f"⚠ This photo is unlike anything in the collection: best similarity "
            f"{stored['best_similarity']:.2f} is below the collection's usual "
            f"{stored['novelty_threshold']:.2f}. Its neighbours may not share its label.",
            className="msg msg-warn", id="novel-warning")]
    n_lab = sum(1 for i, _ in nb if (facts.get(i) or {}).get("label"))
    if stored["vote"]:
        # The shares are among the labelled neighbours only: say how many those are.
        vote = [html.Span(f"neighbours' label vote ({n_lab} of {len(nb)} labelled): ", className="muted",
                          id="vote-count")] + [
            html.Span(f"{lab} {100 * share:.0f}%", className="count-chip") for lab, share in stored["vote"].items()]
    else:
        vote = [html.Span(f"None of the {len(nb)} neighbours is labelled yet.", className="muted")]
    ex = {int(i) for i in excluded or []}
    shown, page, n_pages = page_of(nb, page, PER_PAGE)
    labels_shown = shown_labels([i for i, _ in shown], facts)
    boxes = stored.get("boxes") or {}  # a region search: where each image matched
    thumbs = [thumb(ids.SEARCH_TICKS.name, i, caption(i, facts.get(i), s), held=str(i) in labels_shown,
                    checked=is_ticked(i, labels_shown.get(str(i)), ex, relabel),
                    outline=_outline(boxes.get(str(i)))) for i, s in shown]
    return {"query": query, "novel": novel, "vote": vote, "grid": grid(thumbs),
            "pages": f" of {n_pages} ({len(nb)} neighbours)", "n_pages": n_pages,
            "image_row_style": {"display": "flex" if qid is not None else "none"}, "shown": labels_shown}


def register(app: Dash, actx: AppContext) -> None:
    """Register the Search tab's callbacks on ``app`` (with :func:`.region.register`)."""

    @app.callback(
        *result_outputs(allow_duplicate=False),
        Output(ids.MAP, "figure", allow_duplicate=True),
        Output(ids.SEARCH_PREVIEW, "src"),
        Output(ids.UPLOAD, "contents"),
        Input(ids.MAP, "clickData"),
        Input(ids.LV_SEARCH, "n_clicks"),
        Input(ids.UPLOAD, "contents"),
        Input(ids.SEARCH_TEXT_BUTTON, "n_clicks"),
        Input(ids.SEARCH_TEXT, "n_submit"),
        State(ids.SEARCH_TEXT, "value"),
        State(ids.UPLOAD, "filename"),
        State(ids.SEARCH_K, "value"),
        State(ids.SEARCH_FOR_LABEL, "value"),
        State(ids.LV_IMAGE, "data"),
        prevent_initial_call=True,
    )
    def run_search(click, _similar, contents, _text_click, _text_submit, text, filename, k, for_label, lv_image):
        from dash import ctx

        tid = ctx.triggered_id
        try:
            if tid in (ids.SEARCH_TEXT_BUTTON, ids.SEARCH_TEXT):
                if not triggered_value():
                    raise PreventUpdate
                stored = search_by_text(actx, text, k)
            elif tid == ids.UPLOAD:
                if not contents:
                    raise PreventUpdate
                stored = search_by_upload(actx, contents, filename, k, for_label)
            else:
                if tid == ids.MAP:
                    pts = (click or {}).get("points") or []
                    image_id = point_image_id(actx, pts[0]) if pts else None
                    if image_id is None:
                        raise PreventUpdate
                elif tid == ids.LV_SEARCH and triggered_value() and lv_image is not None:
                    image_id = lv_image
                else:
                    raise PreventUpdate
                stored = search_by_id(actx, int(image_id), k, for_label)
        except (UploadError, StoreError, BadInputError, LabelerError) as e:
            return (*no_result(result(f"Search failed: {e}", "error"), {"display": "none"}), no_update, no_update,
                    None)
        # The upload's contents are cleared once used, so the same file dropped again
        # is a change (and searched again) rather than an identical value.
        # The preview is shown only with a picture in it (an <img> without one is a broken image).
        src = stored.pop("preview", None)
        style = {"display": "block" if src else "none"}
        marker = no_update if stored["map_xy"] is None else query_marker_patch(actx, stored["map_xy"])
        return (*new_result(stored, style), marker, src or no_update, None)

    @page_callback(app, ids.SEARCH_TICKS, Input(ids.SEARCH_RESULT, "data"),
                   Output(ids.SEARCH_QUERY, "children"), Output(ids.SEARCH_NOVEL, "children"),
                   Output(ids.SEARCH_VOTE, "children"), Output(ids.IMAGE_LABEL_ROW, "style"),
                   Output(ids.SEARCH_N_PAGES, "data"))
    def show_result(stored, _version, page, excluded, relabel):
        if not stored:
            hint = html.Div("Upload a photo, click a point on the map or any thumbnail to see "
                            "its nearest neighbours.", className="muted")
            return hint, [], [], {"display": "none"}, 1, [], "", {}
        v = result_view(actx, stored, excluded, page, relabel)
        return (v["query"], v["novel"], v["vote"], v["image_row_style"], v["n_pages"], v["grid"], v["pages"],
                v["shown"])

    track_ticks(app, ids.SEARCH_TICKS)
    labelled_note_on(app, actx, ids.SEARCH_TICKS, _neighbour_ids, Input(ids.SEARCH_RESULT, "data"))
    label_on_submit(app, actx, ids.SEARCH_LABEL_BUTTON, ids.SEARCH_LABEL_INPUT,
                    lambda stored, excluded, relabel: ticked(_neighbour_ids(stored), excluded, relabel),
                    State(ids.SEARCH_RESULT, "data"), State(ids.SEARCH_EXCLUDED, "data"),
                    State(ids.SEARCH_RELABEL, "data"), relabel_store=ids.SEARCH_RELABEL,
                    source="search", what="neighbour(s)")
    label_on_submit(app, actx, ids.IMAGE_LABEL_BUTTON, ids.IMAGE_LABEL_INPUT, _query_image,
                    State(ids.SEARCH_RESULT, "data"))
    region.register(app, actx)


def _outline(b) -> tuple | None:
    """``thumb``'s outline from a stored ``[x, y, w, h, width, height]`` (None: no box)."""
    return None if not b or len(b) != 6 else (b[:4], b[4], b[5])


def _neighbour_ids(stored) -> list[int]:
    return [int(i) for i, _ in (stored or {}).get("neighbours", [])]


def _query_image(stored) -> tuple[list[int], dict]:
    """The search's query image, when it is one of the collection: 'relabel this image'
    is an explicit choice of one image the annotator sees, so it replaces its label."""
    qid = (stored or {}).get("query_image_id")
    if qid is None:
        raise PreventUpdate
    return [int(qid)], {"what": f"image #{qid}", "relabel": True}
