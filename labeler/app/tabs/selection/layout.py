"""The Selection tab's layout."""

from __future__ import annotations

from dash import dcc, html

from ... import ids
from ...components import label_input, pager
from ...state import AppContext


def tab(ctx: AppContext) -> dcc.Tab:
    """The Selection tab: the images lassoed or box-selected on the map."""
    return dcc.Tab(label="Selection", value=ids.TAB_SELECTION, children=[
        html.Div(id=ids.SELECTION_TITLE, className="detail-title"),
        html.Div([label_input(ids.SELECTION_LABEL_INPUT, "label for the ticked images"),
                  html.Button("Label selection", id=ids.SELECTION_LABEL_BUTTON, className="btn btn-primary", n_clicks=0),
                  html.Button("clear", id=ids.SELECTION_CLEAR, className="btn-link", n_clicks=0)],
                 className="action-row"),
        html.Div(id=ids.SELECTION_LABELLED_NOTE, className="small labelled-note"),
        pager(ids.SELECTION_PAGE, ids.SELECTION_PAGES),
        html.Div(id=ids.SELECTION_GRID),
    ])
