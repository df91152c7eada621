"""The Clusters tab's layout."""

from __future__ import annotations

from dash import dcc, html

from ... import ids
from ...components import label_input, pager
from ...state import AppContext


def tab(ctx: AppContext) -> dcc.Tab:
    """The Clusters tab: the open cluster's grid above the list of cluster cards."""
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
        pager(ids.CLUSTER_PAGE, ids.CLUSTER_PAGES),
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
            pager(ids.CLUSTER_LIST_PAGE, ids.CLUSTER_LIST_PAGES),
            html.Span(dcc.Checklist(id=ids.HINTS_TOGGLE, inline=True, className="hints-toggle",
                                    options=[{"label": " ImageNet hints", "value": "on"}],
                                    value=["on"] if ctx.hint_threshold() is not None else []),
                      title="Show the backbone's ImageNet class where it is confident "
                            "(project setting imagenet_hints)"),
        ], className="toolbar"),
        html.Div(id=ids.CLUSTER_LIST),
    ])
