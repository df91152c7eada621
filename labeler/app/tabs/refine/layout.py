"""The Refine tab's layout."""

from __future__ import annotations

from dash import dcc, html

from ... import ids
from ...state import AppContext


def tab(ctx: AppContext) -> dcc.Tab:
    """The Refine tab: split, merge, move."""
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
