"""The Search tab's layout (search by image, text or region; most anomalous first)."""

from __future__ import annotations

from dash import dcc, html

from ... import ids
from ...components import label_input, pager
from ...state import AppContext
from ...uploads import MAX_UPLOAD_BYTES


def tab(ctx: AppContext) -> dcc.Tab:
    """The Search tab: by upload, clicked point, text or region, and the result's grid."""
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
        pager(ids.SEARCH_PAGE, ids.SEARCH_PAGES),
        html.Div(id=ids.SEARCH_GRID),
    ])
