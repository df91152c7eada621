"""The page shell: the browser stores, a top bar (progress, annotator, undo, export), the
map panel on the left, the tabs on the right, the annotator dialog, the large view and
the keyboard help.

The shell knows no tab: :func:`labeler.app.serve_layout` (the app factory's module)
hands it the map panel and the tabs' layouts (``labeler/app/tabs/<tab>/layout.py``), and
it is called on every page load, so a refresh shows the labels of every annotator as
they are now.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dash import dcc, html

from ..labels import MAX_ANNOTATOR_LENGTH
from . import ids
from .components import help_table
from .routes import EXPORT_URL
from .state import AppContext

POLL_MS = 3000  # how often the page asks whether the project's clustering changed (follow.py)


def _stores(ctx: AppContext, clustering_id: int, more: Iterable) -> list:
    return [
        dcc.Store(id=ids.ANNOTATOR, storage_type="local"),
        dcc.Store(id=ids.VERSION, data=0),
        dcc.Store(id=ids.SELECTION, data=[]),
        dcc.Store(id=ids.SELECTION_EXCLUDED, data=[]),
        dcc.Store(id=ids.CLUSTER_OPEN, data=None),
        dcc.Store(id=ids.CLUSTER_EXCLUDED, data=[]),
        dcc.Store(id=ids.SEARCH_RESULT, data=None),
        dcc.Store(id=ids.SEARCH_EXCLUDED, data=[]),
        dcc.Store(id=ids.SPLIT_PREVIEW, data=None),
        dcc.Store(id=ids.CLUSTER_SEEN, data=None),
        dcc.Store(id=ids.CLUSTERING_SEEN, data=None),
        dcc.Store(id=ids.CLUSTERING_SHOWN, data=clustering_id),
        dcc.Interval(id=ids.CLUSTERING_POLL, interval=POLL_MS),
        dcc.Store(id=ids.CLUSTER_RELABEL, data={}),
        dcc.Store(id=ids.CLUSTER_SHOWN, data={}),
        dcc.Store(id=ids.SELECTION_RELABEL, data={}),
        dcc.Store(id=ids.SELECTION_SHOWN, data={}),
        dcc.Store(id=ids.SEARCH_RELABEL, data={}),
        dcc.Store(id=ids.SEARCH_SHOWN, data={}),
        html.Div("0", id=ids.KB_ACK, style={"display": "none"}),
        dcc.Store(id=ids.LABEL_CONFIRM, data=None),
        dcc.Store(id=ids.KB_EVENT, data=None),
        dcc.Store(id=ids.LV_IMAGE, data=None),
        dcc.Store(id=ids.LV_QUEUE, data=None),
        dcc.Store(id=ids.LV_BOX, data=None),
        dcc.Store(id=ids.MAP_POINTS, data=ctx.map_token),
        dcc.Store(id=ids.MAP_VIEW, data=None),
        dcc.Store(id=ids.MAP_SHAPE, data=None),
        dcc.Store(id=ids.SELECTION_N_PAGES, data=1),
        dcc.Store(id=ids.SEARCH_N_PAGES, data=1),
        *more,
    ]


def _topbar(ctx: AppContext) -> html.Header:
    return html.Header([
        html.Div([html.Span("labeler", className="brand"),
                  html.Span(ctx.project.root.name, className="muted", title=str(ctx.project.root))],
                 className="topbar-left"),
        html.Div([
            html.Div(id=ids.PROGRESS_TEXT, className="progress-text"),
            html.Div(html.Div(id=ids.PROGRESS_BAR, className="progress-fill"), className="progress"),
            html.Div(id=ids.LABEL_COUNTS, className="label-counts"),
        ], className="topbar-progress"),
        html.Div([
            html.Span("annotator: ", className="muted"),
            html.Span(id=ids.ANNOTATOR_NAME, className="annotator"),
            html.Button("change", id=ids.ANNOTATOR_CHANGE, className="btn-link", n_clicks=0,
                        style={"display": "none"} if ctx.users is not None else {}),
            html.Span(dcc.Checklist(id=ids.HEAT_TOGGLE, inline=True, value=[],
                                    options=[{"label": " heat map", "value": "on"}]),
                      title="Anomaly heat map over the Next cards and the large view "
                            "(needs: labeler features --compute defect)"),
            html.Button("?", id=ids.HELP_BUTTON, className="btn", n_clicks=0, title="Keyboard shortcuts (?)"),
            html.Button("↶ Undo", id=ids.UNDO, className="btn", n_clicks=0,
                        title="Undo your last action (u or Ctrl+Z); a bulk label undoes as one"),
            html.Button("↷ Redo", id=ids.REDO, className="btn", n_clicks=0,
                        title="Redo what you last undid (r or Ctrl+Shift+Z)"),
            html.A("⬇ Export CSV", id=ids.EXPORT_LINK, href=EXPORT_URL, className="btn", download="labels.csv"),
        ], className="topbar-right"),
    ], className="topbar")


def _name_dialog() -> html.Div:
    return html.Div(html.Div([
        html.H3("Who is labelling?"),
        html.P("Your name is stored with every label you give (asked once in this browser).",
               className="muted"),
        dcc.Input(id=ids.NAME_INPUT, type="text", placeholder="your name", className="label-input",
                  autoFocus=True, n_submit=0, maxLength=MAX_ANNOTATOR_LENGTH),
        html.Button("Start labelling", id=ids.NAME_SAVE, className="btn btn-primary", n_clicks=0),
    ], className="dialog"), id=ids.NAME_DIALOG, className="overlay", style={"display": "none"})


def _large_view() -> html.Div:
    """The large view (filled by viewer.show_large_view; zoom/pan in keys.js)."""
    side = html.Div([
        html.Div([html.Button("‹ prev", id=ids.LV_PREV, className="btn btn-small", n_clicks=0, title="←"),
                  html.Button("next ›", id=ids.LV_NEXT, className="btn btn-small", n_clicks=0, title="→"),
                  html.Button("similar → Search tab", id=ids.LV_SEARCH, className="btn btn-small", n_clicks=0),
                  html.Button("✕ close (Esc)", id=ids.LV_CLOSE, className="btn btn-small", n_clicks=0)]),
        html.Div(id=ids.LV_FACTS),
        html.Div(id=ids.LV_EXTRA),
        html.Div("wheel = zoom · drag = pan · double-click = reset", className="muted small"),
        html.Div([html.Button("▭ draw a box", id=ids.LV_BOX_MODE, className="btn btn-small", n_clicks=0,
                              title="Then drag over the image (Shift+drag draws a box in any mode)"),
                  html.Button("Search this region", id=ids.LV_REGION_SEARCH, className="btn btn-small btn-primary",
                              n_clicks=0, title="The images whose best-matching region is nearest to the box: "
                                                "the Search tab, each with its match outlined")],
                 className="lv-region-row"),
        html.Div("Shift+drag (or ▭ then drag) draws a box over the image.", id=ids.LV_REGION_NOTE,
                 className="muted small"),
        dcc.Checklist(id=ids.LV_HEAT, inline=True, value=[], className="lv-heat-toggle",
                      options=[{"label": " anomaly heat map", "value": "on"}]),
        html.Div(id=ids.LV_HEAT_NOTE, className="muted small"),
        html.Div("nearest neighbours", className="muted small", style={"marginTop": "10px"}),
        html.Div(id=ids.LV_NEIGHBOURS, className="lv-neighbours"),
    ], className="lv-side")
    stage = html.Div(html.Div([html.Img(id=ids.LV_IMG, alt="large view"),
                               html.Img(id=ids.LV_HEAT_IMG, alt="", className="lv-heat", style={"display": "none"}),
                               html.Div(id=ids.LV_BOX_RECT, className="lv-box", style={"display": "none"})],
                              id=ids.LV_IMG_WRAP, className="lv-img-wrap"), className="lv-stage")
    return html.Div([stage, side], id=ids.LV_OVERLAY, className="lv-overlay", style={"display": "none"})


def _help() -> html.Div:
    return html.Div(html.Div([html.H3("Keyboard"), help_table(),
                              html.P("Keys are ignored while typing in a text box: Esc (or Enter, which "
                                     "submits) leaves it.", className="muted small")],
                             className="help-box"),
                    id=ids.HELP_OVERLAY, className="help-overlay", style={"display": "none"})


def page(ctx: AppContext, panel: Callable[[AppContext], object], tabs: Iterable[Callable[[AppContext], dcc.Tab]],
         stores: Iterable = ()) -> html.Div:
    """The whole page (called per page load).

    Parameters
    ----------
    ctx : AppContext
    panel : callable
        ``panel(ctx)``: the left half (the map).
    tabs : iterable of callable
        ``tab(ctx) -> dcc.Tab`` of each tab, in the order shown; the Clusters tab is open.
    stores : iterable of dash components
        The tabs' own stores, placed at the page's top level so they outlive tab switches.
    """
    clustering_id = int(ctx.store.current_clustering()["id"])  # before the map is drawn from it
    return html.Div([
        *_stores(ctx, clustering_id, stores),
        html.Datalist(id=ids.LABEL_OPTIONS),
        _topbar(ctx),
        html.Div(id=ids.MESSAGE, className="message-bar"),
        html.Div([
            panel(ctx),
            html.Div(dcc.Tabs(id=ids.TABS, value=ids.TAB_CLUSTERS, children=[tab(ctx) for tab in tabs],
                              className="tabs"), className="right"),
        ], className="main"),
        _name_dialog(),
        _large_view(),
        _help(),
    ], className="app", id=ids.APP_ROOT)
