"""The Review tab's layout and its own component ids (near-duplicates, likely label errors)."""

from __future__ import annotations

from dash import dcc, html

from ... import ids
from ...components import label_input, pager
from ...state import AppContext

# -- component ids (this tab only) ------------------------------------------------------
DUP_STORE = "review-dup-store"  # [[image ids], ...] largest group first
ISSUE_STORE = "review-issue-store"  # [{image_id, label, suggested_label, score}, ...]
WGROUP_STORE = "review-wgroup-store"  # [{group_id, kind, image_ids, label, suggested_label, score}, ...]
DUP_THRESHOLD = "review-dup-threshold"
DUP_FIND = "review-dup-find"
DUP_SUMMARY = "review-dup-summary"
DUP_PAGE = "review-dup-page"
DUP_PAGES = "review-dup-pages"
DUP_VIEW = "review-dup-view"
DUP_LABEL_INPUT = "review-dup-label-input"
DUP_LABEL_BUTTON = "review-dup-label-button"
ISSUE_FIND = "review-issue-find"
ISSUE_SUMMARY = "review-issue-summary"
ISSUE_PAGE = "review-issue-page"
ISSUE_PAGES = "review-issue-pages"
ISSUE_VIEW = "review-issue-view"
ISSUE_ACCEPT = "review-issue-accept"
ISSUE_LABEL_INPUT = "review-issue-label-input"
ISSUE_LABEL_BUTTON = "review-issue-label-button"
WGROUP_PAGE = "review-wgroup-page"
WGROUP_PAGES = "review-wgroup-pages"
WGROUP_VIEW = "review-wgroup-view"
WGROUP_ACCEPT = "review-wgroup-accept"
WGROUP_LABEL_INPUT = "review-wgroup-label-input"
WGROUP_LABEL_BUTTON = "review-wgroup-label-button"
GRID_WRONG_GROUP = "review-group"  # thumbnails of a group labelled wrong (apart from the image's)


def stores() -> list:
    """The tab's browser stores (placed at the page's top level, so they outlive tab switches)."""
    return [dcc.Store(id=DUP_STORE, data=[]), dcc.Store(id=ISSUE_STORE, data=[]), dcc.Store(id=WGROUP_STORE, data=[])]


def tab(ctx: AppContext) -> dcc.Tab:
    """The Review tab's layout."""
    return dcc.Tab(label="Review", value=ids.TAB_REVIEW, children=[
        html.H4("Near-duplicates"),
        html.Div([html.Span("cosine ≥ ", className="muted"),
                  dcc.Input(id=DUP_THRESHOLD, type="number", min=0.5, max=1.0, step=0.005, value=None,
                            placeholder="0.99", className="page-input"),
                  html.Button("Find duplicate groups", id=DUP_FIND, className="btn", n_clicks=0)],
                 className="action-row"),
        html.Div(id=DUP_SUMMARY, className="muted small"),
        pager(DUP_PAGE, DUP_PAGES, "group"),
        html.Div(id=DUP_VIEW),
        html.Div([label_input(DUP_LABEL_INPUT, "label for the whole group"),
                  html.Button("Label group", id=DUP_LABEL_BUTTON, className="btn btn-primary", n_clicks=0)],
                 className="action-row"),
        html.H4("Likely label errors"),
        html.Div([html.Button("Find likely label errors", id=ISSUE_FIND, className="btn", n_clicks=0),
                  html.Span(" linear probes on the embeddings + cleanlab, whole clusters and groups of near "
                            "neighbours held out; takes a few seconds", className="muted small")],
                 className="action-row"),
        dcc.Loading(html.Div(id=ISSUE_SUMMARY, className="muted small"), type="dot", delay_show=300),
        html.H5("Groups labelled wrong as a whole"),
        pager(WGROUP_PAGE, WGROUP_PAGES, "group"),
        html.Div(id=WGROUP_VIEW),
        html.Div([html.Button("Relabel group as suggested", id=WGROUP_ACCEPT, className="btn btn-primary",
                              n_clicks=0),
                  label_input(WGROUP_LABEL_INPUT, "or another label for the group"),
                  html.Button("Set group label", id=WGROUP_LABEL_BUTTON, className="btn", n_clicks=0)],
                 className="action-row"),
        html.H5("Single images"),
        pager(ISSUE_PAGE, ISSUE_PAGES, "image"),
        html.Div(id=ISSUE_VIEW),
        html.Div([html.Button("Accept suggestion", id=ISSUE_ACCEPT, className="btn btn-primary", n_clicks=0),
                  label_input(ISSUE_LABEL_INPUT, "or another label"),
                  html.Button("Set label", id=ISSUE_LABEL_BUTTON, className="btn", n_clicks=0)],
                 className="action-row"),
    ])
