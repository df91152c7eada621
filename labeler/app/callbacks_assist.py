"""The Next tab: suggestions with calibrated confidence, bulk and one-by-one accept, and the
"label next" queue (:mod:`labeler.assist`).

Writes go through :func:`labeler.app.actions.run` like every other write: accepting
calls :func:`labeler.assist.suggest.accept` (which calls
:func:`labeler.labels.accept_suggestions`), labelling a queue image calls
:func:`labeler.labels.label_images`. Suggestions are recomputed only after a label
action (they are cached by the newest action id).
"""

from __future__ import annotations

import numpy as np
from dash import ALL, Dash, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from .. import labels
from ..assist.next import next_to_label
from ..assist.suggest import accept, suggest
from ..errors import BadInputError
from . import ids
from .actions import run, write_on_click
from .common import annotator_name
from .components import thumb
from .state import AppContext

NEXT_N = 8
#: Suggestions at least this confident colour the map in the "suggestion" mode.
MAP_MIN_CONFIDENCE = 0.8


def next_tab() -> dcc.Tab:
    """The tab's static part; the lists are filled by the callbacks."""
    return dcc.Tab(label="Next", value=ids.TAB_NEXT, children=[
        html.H4("Suggestions (calibrated confidence)"),
        html.Div(id=ids.NEXT_BANDS),
        html.Div([
            html.Span("accept every suggestion of ", className="muted"),
            dcc.Dropdown(id=ids.NEXT_ACCEPT_LABEL, placeholder="label", className="dropdown"),
            html.Span(" with confidence ≥ ", className="muted"),
            dcc.Input(id=ids.NEXT_ACCEPT_MIN, type="number", min=0, max=1, step=0.01, value=0.95,
                      className="page-input"),
            html.Button("Accept", id=ids.NEXT_ACCEPT_BUTTON, className="btn btn-primary", n_clicks=0),
        ], className="action-row wrap"),
        html.H4("Label next: the images that teach the model most"),
        html.Div(id=ids.NEXT_LIST),
        html.P("Suggestions are never labels until accepted; each accept is one undoable action.",
               className="muted small"),
    ])


# -- plain functions (tested directly) ------------------------------------------------------
def point_suggestions(actx: AppContext) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The suggestion of every map point.

    Returns
    -------
    code : ndarray (n_points,), int64
        Suggested class (index into ``classes``); -1 for a labelled point, or when
        there is no suggestion (no labels yet).
    confidence : ndarray (n_points,), float32
        Its calibrated confidence in [0, 1] (NaN where ``code`` is -1).
    classes : tuple of str
    """
    code = np.full(actx.n_points, -1, dtype=np.int64)
    conf = np.full(actx.n_points, np.nan, dtype=np.float32)
    if not actx.store.label_counts():  # nothing to learn from: no suggestion model to fit
        return code, conf, ()
    sug = suggest(actx.project)
    if not sug.classes or not actx.n_points:
        return code, conf, tuple(sug.classes)
    ok = sug.unlabelled
    sug_ids = sug.image_ids[ok]
    pos, hit = actx.id_index.locate(sug_ids)
    code[pos] = sug.label[ok][hit]
    conf[pos] = sug.confidence[ok][hit]
    return code, conf, tuple(sug.classes)


def suggested_point_labels(actx: AppContext, min_confidence: float = MAP_MIN_CONFIDENCE):
    """Per map point: its label, else '<suggestion> (suggested)' when at least
    ``min_confidence`` confident, else '' (shape (n_points,), object)."""
    code, conf, classes = point_suggestions(actx)
    out = actx.point_labels()
    for p in np.flatnonzero((code >= 0) & (conf >= min_confidence)):
        out[p] = f"{classes[int(code[p])]} (suggested)"
    return out


def cluster_suggestions(actx: AppContext) -> dict[int, dict]:
    """Per cluster with suggestions: its unlabelled members' leading suggested label.

    Returns
    -------
    dict
        cluster -> {label, share (of the cluster's suggested unlabelled images that
        lead with it), n (suggested unlabelled images), confidence (their mean
        calibrated confidence for it)}; empty when there are no suggestions.
    """
    code, conf, classes = point_suggestions(actx)
    if not classes:
        return {}
    clusters = actx.assignment().clusters
    has = np.flatnonzero(code >= 0)
    order = has[np.argsort(clusters[has], kind="stable")]
    uniq, starts = np.unique(clusters[order], return_index=True)
    out = {}
    for c, group in zip(uniq, np.split(order, starts[1:])):
        counts = np.bincount(code[group], minlength=len(classes))
        best = int(counts.argmax())
        out[int(c)] = {"label": classes[best], "share": float(counts[best] / len(group)), "n": int(len(group)),
                       "confidence": float(conf[group][code[group] == best].mean())}
    return out


def suggestion_text(s: dict | None) -> str | None:
    """'suggested: mono for 85% of 120 unlabelled (mean confidence 0.91)' (None when none)."""
    if not s:
        return None
    return (f"suggested: {s['label']} for {100 * s['share']:.0f}% of {s['n']:,} unlabelled "
            f"(mean confidence {s['confidence']:.2f})")


def bands_view(actx: AppContext) -> tuple[list, list]:
    """(the band table, the accept dropdown's options) for the current labels."""
    sug = suggest(actx.project)
    if not sug.classes:
        return [html.P("No labels yet: label the images below first.", className="muted")], []
    bands = sug.bands()
    names = list(next(iter(bands.values())))
    head = html.Tr([html.Th("label")] + [html.Th(n) for n in names])
    rows = [html.Tr([html.Td(lab)] + [html.Td(f"{c[n]:,}") for n in names]) for lab, c in bands.items()]
    note = html.P(f"{int(sug.unlabelled.sum()):,} unlabelled; calibrated on {sug.n_calibration} held-out "
                  f"label(s)", className="muted small")
    return [html.Table([head, *rows], className="bands"), note], [{"label": c, "value": c} for c in sug.classes]


def next_view(actx: AppContext, n: int = NEXT_N) -> list:
    """Cards of the next images: thumbnail, suggestion, why chosen, accept / label controls."""
    items = next_to_label(actx.project, n)
    if not items:
        return [html.P("Every image is labelled.", className="muted")]
    cards = []
    for it in items:
        badge = f"{it.suggestion} {it.confidence:.2f}" if it.suggestion else None
        controls = [dcc.Input(id=ids.next_button(ids.NEXT_LABEL_INPUT, it.image_id), type="text",
                              placeholder="label", list=ids.LABEL_OPTIONS, className="label-input"),
                    html.Button("Label", id=ids.next_button(ids.NEXT_LABEL_ONE, it.image_id), className="btn",
                                n_clicks=0)]
        if it.suggestion:
            controls.append(html.Button(f"✓ {it.suggestion}", id=ids.next_button(ids.NEXT_ACCEPT_ONE, it.image_id),
                                        className="btn", n_clicks=0, title="Accept the suggestion for this image"))
        cards.append(html.Div([
            thumb(ids.GRID_NEXT, it.image_id, f"#{it.image_id}", badge=badge, title=it.path),
            html.Div(it.reason, className="muted small"),
            html.Div(controls, className="action-row wrap"),
        ], className="next-card"))
    return cards


def accept_bulk_action(actx: AppContext, label, min_confidence, annotator) -> str:
    """Accept every suggestion of ``label`` at ``min_confidence`` or more (one action)."""
    if not label:
        raise BadInputError("Choose the label whose suggestions to accept.")
    if min_confidence is None:
        raise BadInputError("Give the minimum confidence (0 to 1).")
    _, done = accept(actx.project, label, float(min_confidence), annotator=annotator_name(annotator))
    return f"Accepted {len(done):,} suggestion(s) of '{label}' at confidence ≥ {float(min_confidence):g}."


def accept_one_action(actx: AppContext, image_id, annotator) -> str:
    """Accept the suggestion of one image (one action)."""
    sug = suggest(actx.project).for_image(int(image_id))
    if sug is None:
        raise BadInputError(f"Image {image_id} has no suggestion (it is labelled, or no longer exists).")
    accept(actx.project, sug[0], 0.0, annotator=annotator_name(annotator), image_ids=[int(image_id)])
    return f"Accepted '{sug[0]}' for image {image_id} (confidence {sug[1]:.2f})."


def label_one_action(actx: AppContext, image_id, label, annotator) -> str:
    """Label one queue image by hand (one action)."""
    text = labels.clean_label(label)
    labels.label_images(actx.project, [int(image_id)], text, annotator=annotator_name(annotator))
    return f"Labelled image {image_id} as '{text}'."


def register(app: Dash, actx: AppContext) -> None:
    """Register the Next tab's callbacks on ``app``."""

    @app.callback(
        Output(ids.NEXT_BANDS, "children"),
        Output(ids.NEXT_ACCEPT_LABEL, "options"),
        Output(ids.NEXT_LIST, "children"),
        Input(ids.VERSION, "data"),
        Input(ids.TABS, "value"),
    )
    def show(_version, tab):
        if tab != ids.TAB_NEXT:
            raise PreventUpdate
        bands, options = bands_view(actx)
        return bands, options, next_view(actx)

    write_on_click(app, actx, ids.NEXT_ACCEPT_BUTTON, accept_bulk_action,
                   State(ids.NEXT_ACCEPT_LABEL, "value"), State(ids.NEXT_ACCEPT_MIN, "value"))

    @app.callback(
        Output(ids.MESSAGE, "children", allow_duplicate=True),
        Output(ids.VERSION, "data", allow_duplicate=True),
        Input({"type": ids.NEXT_ACCEPT_ONE, "id": ALL}, "n_clicks"),
        Input({"type": ids.NEXT_LABEL_ONE, "id": ALL}, "n_clicks"),
        State({"type": ids.NEXT_LABEL_INPUT, "id": ALL}, "value"),
        State({"type": ids.NEXT_LABEL_INPUT, "id": ALL}, "id"),
        State(ids.ANNOTATOR, "data"),
        State(ids.VERSION, "data"),
        prevent_initial_call=True,
    )
    def act_on_one(_acc, _lab, values, input_ids, annotator, version):
        from dash import ctx

        trig = ctx.triggered_id
        if not trig or not any((t.get("value") or 0) > 0 for t in ctx.triggered):
            raise PreventUpdate  # the cards were re-rendered, nothing was clicked
        image_id = int(trig["id"])
        if trig["type"] == ids.NEXT_ACCEPT_ONE:
            r = run(accept_one_action, actx, image_id, annotator, version=version)
        else:
            label = dict(zip([i["id"] for i in input_ids], values)).get(image_id)
            r = run(label_one_action, actx, image_id, label, annotator, version=version)
        return r.message, r.version
