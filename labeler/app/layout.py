"""The page: a top bar (progress, annotator, undo, export), the map on the left and a
tabbed panel on the right (Clusters / Selection / Search / Refine).

``serve_layout`` is called on every page load, so a refresh shows the labels of
every annotator as they are now.
"""

from __future__ import annotations

from dash import dcc, html

from ..labels import MAX_ANNOTATOR_LENGTH
from . import ids
from .callbacks_assist import next_tab
from .callbacks_review import review_tab, stores as review_stores
from .components import help_table, label_input, legend
from .routes import EXPORT_URL
from .state import AppContext
from .uploads import MAX_UPLOAD_BYTES
from .views import COLOR_BY_CLUSTER, COLOR_MODES, coloring, map_figure

PER_PAGE = 40  # thumbnails per grid page
POLL_MS = 3000  # how often the page asks whether the project's clustering changed (callbacks_follow.py)
CARDS_PER_PAGE = 8


def _stores(ctx: AppContext, clustering_id: int) -> list:
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
        dcc.Store(id=ids.MAP_POINTS, data=ctx.n_points),
        dcc.Store(id=ids.MAP_VIEW, data=None),
        dcc.Store(id=ids.MAP_SHAPE, data=None),
        dcc.Store(id=ids.SELECTION_N_PAGES, data=1),
        dcc.Store(id=ids.SEARCH_N_PAGES, data=1),
        *review_stores(),
    ]


def _pager(input_id: str, text_id: str) -> html.Div:
    """A static 'page [n] of N' control (the grid below it is re-rendered, not the pager)."""
    return html.Div([html.Span("page ", className="muted"),
                     dcc.Input(id=input_id, type="number", min=1, value=1, className="page-input"),
                     html.Span(id=text_id, className="muted")], className="pager")


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


def _map_panel(ctx: AppContext) -> html.Div:
    col = coloring(ctx, COLOR_BY_CLUSTER)
    return html.Div([
        html.Div([
            html.Span("colour by ", className="muted"),
            dcc.RadioItems(id=ids.COLOR_MODE, value=COLOR_BY_CLUSTER, inline=True,
                           options=[{"label": name, "value": mode} for mode, (name, _) in COLOR_MODES.items()]),
            html.Button("fit all", id=ids.MAP_FIT, className="btn btn-small", n_clicks=0,
                        title="Show every point, outliers included (the default view leaves out the outer 1%)"),
            html.Span("· lasso or box-select points to label them; click a point to open it",
                      className="muted small"),
        ], className="map-toolbar"),
        html.Div(legend(col, COLOR_BY_CLUSTER), id=ids.MAP_LEGEND, className="legend"),
        dcc.Graph(id=ids.MAP, figure=map_figure(ctx, COLOR_BY_CLUSTER, col), className="map-graph",
                  clear_on_unhover=True, responsive=True, style={"flex": "1", "minHeight": "420px"},
                  config={"displaylogo": False, "scrollZoom": True,
                          "modeBarButtonsToRemove": ["toImage", "autoScale2d"]}),
        dcc.Tooltip(id=ids.MAP_TOOLTIP, direction="right"),
    ], className="left")


def _clusters_tab(ctx: AppContext) -> dcc.Tab:
    detail = html.Div([
        html.Div([html.Div(id=ids.CLUSTER_TITLE, className="detail-title"),
                  html.Button("✕ close", id=ids.CLUSTER_CLOSE, className="btn-link", n_clicks=0)],
                 className="row-between"),
        html.Div([label_input(ids.CLUSTER_LABEL_INPUT, "label for the whole cluster"),
                  html.Button("Label cluster", id=ids.CLUSTER_LABEL_BUTTON, className="btn btn-primary", n_clicks=0,
                              title="Label the ticked images (Enter in the box, or the Enter key: label and open the next cluster)")],
                 className="action-row"),
        html.Div("Untick the images that do not belong: they stay unlabelled. Labelled images start "
                 "unticked: tick one to relabel it.", className="muted small"),
        html.Div(id=ids.CLUSTER_LABELLED_NOTE, className="small labelled-note"),
        html.Div(id=ids.CLUSTER_EXCLUDED_NOTE, className="small"),
        _pager(ids.CLUSTER_PAGE, ids.CLUSTER_PAGES),
        html.Div(id=ids.CLUSTER_GRID),
    ], id=ids.CLUSTER_DETAIL, className="detail", style={"display": "none"})
    return dcc.Tab(label="Clusters", value=ids.TAB_CLUSTERS, children=[
        detail,
        html.Div([
            html.Span("sort by ", className="muted"),
            dcc.RadioItems(id=ids.CLUSTER_SORT, value="size", inline=True, options=[
                {"label": "size", "value": "size"},
                {"label": "unlabelled", "value": "unlabelled"},
                {"label": "needs review", "value": "review"}]),
            _pager(ids.CLUSTER_LIST_PAGE, ids.CLUSTER_LIST_PAGES),
            html.Span(dcc.Checklist(id=ids.HINTS_TOGGLE, inline=True, className="hints-toggle",
                                    options=[{"label": " ImageNet hints", "value": "on"}],
                                    value=["on"] if ctx.hint_threshold() is not None else []),
                      title="Show the backbone's ImageNet class where it is confident "
                            "(project setting imagenet_hints)"),
        ], className="toolbar"),
        html.Div(id=ids.CLUSTER_LIST),
    ])


def _selection_tab() -> dcc.Tab:
    return dcc.Tab(label="Selection", value=ids.TAB_SELECTION, children=[
        html.Div(id=ids.SELECTION_TITLE, className="detail-title"),
        html.Div([label_input(ids.SELECTION_LABEL_INPUT, "label for the ticked images"),
                  html.Button("Label selection", id=ids.SELECTION_LABEL_BUTTON, className="btn btn-primary", n_clicks=0),
                  html.Button("clear", id=ids.SELECTION_CLEAR, className="btn-link", n_clicks=0)],
                 className="action-row"),
        html.Div(id=ids.SELECTION_LABELLED_NOTE, className="small labelled-note"),
        _pager(ids.SELECTION_PAGE, ids.SELECTION_PAGES),
        html.Div(id=ids.SELECTION_GRID),
    ])


def _search_tab() -> dcc.Tab:
    mb = MAX_UPLOAD_BYTES // (1024 * 1024)
    return dcc.Tab(label="Search", value=ids.TAB_SEARCH, children=[
        html.Div([
            dcc.Upload(id=ids.UPLOAD, accept="image/*", max_size=MAX_UPLOAD_BYTES, multiple=False,
                       className="upload", children=html.Div(
                           ["Drop a photo here or ", html.A("choose a file"),
                            html.Span(f" (image, ≤ {mb} MB)", className="muted")])),
            html.Span([html.Span(" neighbours ", className="muted"),
                       dcc.Input(id=ids.SEARCH_K, type="number", min=1, max=100, value=12, className="page-input")]),
            html.Span([html.Span(" for label ", className="muted"),
                       dcc.Input(id=ids.SEARCH_FOR_LABEL, type="text", list=ids.LABEL_OPTIONS, placeholder="any",
                                 className="label-input", debounce=True)],
                      title="More like this, for a label: re-rank by that label's linear probe"),
        ], className="toolbar"),
        html.Div([dcc.Input(id=ids.SEARCH_TEXT, type="text", placeholder="or describe it: a cracked cell",
                            className="label-input", maxLength=300),
                  html.Button("Search by text", id=ids.SEARCH_TEXT_BUTTON, className="btn", n_clicks=0,
                              title="Needs a CLIP feature set: labeler features --text-model NAME"),
                  html.Button("Unlabelled, most anomalous first", id=ids.SEARCH_ANOMALOUS, className="btn",
                              n_clicks=0, title="The unlabelled images by their anomaly score, highest first "
                                                "(needs: labeler features --compute defect)")],
                 className="action-row"),
        html.Div(id=ids.SEARCH_ERROR),
        dcc.Loading(html.Div([html.Img(id=ids.SEARCH_PREVIEW, className="query-img", style={"display": "none"}),
                              html.Div(id=ids.SEARCH_QUERY)], className="query-row"),
                    type="dot", delay_show=300),
        html.Div([label_input(ids.IMAGE_LABEL_INPUT, "relabel this image"),
                  html.Button("Set label", id=ids.IMAGE_LABEL_BUTTON, className="btn", n_clicks=0)],
                 className="action-row", id=ids.IMAGE_LABEL_ROW, style={"display": "none"}),
        html.Div(id=ids.SEARCH_NOVEL),
        html.Div(id=ids.SEARCH_VOTE),
        html.Div([label_input(ids.SEARCH_LABEL_INPUT, "label for the ticked neighbours"),
                  html.Button("Label neighbours", id=ids.SEARCH_LABEL_BUTTON, className="btn btn-primary", n_clicks=0)],
                 className="action-row"),
        html.Div(id=ids.SEARCH_LABELLED_NOTE, className="small labelled-note"),
        _pager(ids.SEARCH_PAGE, ids.SEARCH_PAGES),
        html.Div(id=ids.SEARCH_GRID),
    ])


def _refine_tab() -> dcc.Tab:
    return dcc.Tab(label="Refine", value=ids.TAB_REFINE, children=[
        html.H4("Split a cluster"),
        html.Div([
            html.Span("cluster ", className="muted"),
            dcc.Input(id=ids.SPLIT_CLUSTER, type="number", min=0, className="page-input"),
            dcc.RadioItems(id=ids.SPLIT_METHOD, value="kmeans", inline=True, options=[
                {"label": "KMeans", "value": "kmeans"}, {"label": "HDBSCAN", "value": "hdbscan"}]),
            html.Span(" k ", className="muted"),
            dcc.Input(id=ids.SPLIT_K, type="number", min=2, max=20, value=2, className="page-input"),
            html.Span(" min size ", className="muted"),
            dcc.Input(id=ids.SPLIT_MIN_SIZE, type="number", min=2, value=5, className="page-input"),
            html.Button("Preview", id=ids.SPLIT_PREVIEW_BUTTON, className="btn", n_clicks=0),
            html.Button("Apply split", id=ids.SPLIT_APPLY, className="btn btn-primary", n_clicks=0),
        ], className="action-row wrap"),
        html.Div(id=ids.SPLIT_PREVIEW_VIEW),
        html.H4("Merge clusters"),
        html.Div([dcc.Dropdown(id=ids.MERGE_CLUSTERS, multi=True, placeholder="two or more clusters",
                               className="dropdown"),
                  html.Button("Merge", id=ids.MERGE_BUTTON, className="btn btn-primary", n_clicks=0)],
                 className="action-row"),
        html.H4("Move the ticked images of the Selection tab"),
        html.Div([dcc.Dropdown(id=ids.MOVE_TARGET, placeholder="to a new cluster", className="dropdown"),
                  html.Button("Move", id=ids.MOVE_BUTTON, className="btn btn-primary", n_clicks=0)],
                 className="action-row"),
        html.Div(id=ids.MOVE_NOTE, className="muted small"),
        html.P("Every edit is one undoable action (Undo, u or Ctrl+Z).", className="muted small"),
    ])


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
    """The large view (filled by callbacks_viewer.show_large_view; zoom/pan in keys.js)."""
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


def serve_layout(ctx: AppContext):
    """The whole page (called per page load)."""
    clustering_id = int(ctx.store.current_clustering()["id"])  # before the map is drawn from it
    return html.Div([
        *_stores(ctx, clustering_id),
        html.Datalist(id=ids.LABEL_OPTIONS),
        _topbar(ctx),
        html.Div(id=ids.MESSAGE, className="message-bar"),
        html.Div([
            _map_panel(ctx),
            html.Div(dcc.Tabs(id=ids.TABS, value=ids.TAB_CLUSTERS, children=[
                _clusters_tab(ctx), _selection_tab(), _search_tab(), _refine_tab(), review_tab(), next_tab()],
                className="tabs"), className="right"),
        ], className="main"),
        _name_dialog(),
        _large_view(),
        _help(),
    ], className="app", id=ids.APP_ROOT)
