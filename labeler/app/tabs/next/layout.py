"""The Next tab's layout and its own component ids (the bulk accept's budget and confirmation)."""

from __future__ import annotations

from dash import dcc, html

from ... import ids
from ...state import AppContext

# Component ids of the bulk accept's budget and confirmation (this tab's own).
NEXT_ACCEPT_BUDGET = "next-accept-budget"  # expected-error budget, in %
NEXT_ACCEPT_WARN = "next-accept-warn"  # live warning below 0.5
NEXT_ACCEPT_PENDING = "next-accept-pending"  # the low accept awaiting a second click


def tab(ctx: AppContext) -> dcc.Tab:
    """The tab's static part; the lists are filled by the callbacks."""
    return dcc.Tab(label="Next", value=ids.TAB_NEXT, children=[
        html.H4("Suggestions: probability, and what held-out labels vouch for"),
        html.Div(id=ids.NEXT_BANDS),
        html.Div([
            html.Span("accept suggestions of ", className="muted"),
            dcc.Dropdown(id=ids.NEXT_ACCEPT_LABEL, placeholder="label", className="dropdown"),
            html.Span(" with vouched confidence ≥ ", className="muted",
                      title="the probability capped by what held-out labels back; leave empty to use the budget alone"),
            dcc.Input(id=ids.NEXT_ACCEPT_MIN, type="number", min=0, max=1, step=0.01, value=0.95,
                      className="page-input"),
            html.Span(" and/or the largest set expected ≤ ", className="muted",
                      title="expected wrong count sum(1 - probability), as a share of the set"),
            dcc.Input(id=NEXT_ACCEPT_BUDGET, type="number", min=0, max=100, step=0.5, value=None,
                      placeholder="%", className="page-input"),
            html.Span("% wrong ", className="muted"),
            html.Button("Accept", id=ids.NEXT_ACCEPT_BUTTON, className="btn btn-primary", n_clicks=0),
            html.Span(id=NEXT_ACCEPT_WARN, className="small", style={"color": "var(--warn)"}),
            dcc.Store(id=NEXT_ACCEPT_PENDING, data=None),
        ], className="action-row wrap"),
        html.H4("Label next: the images that teach the model most"),
        html.Div(id=ids.NEXT_LIST),
        html.P("Suggestions are never labels until accepted; each accept is one undoable action. "
               "Probability: how likely a suggestion is right. Vouched: whether enough held-out labels "
               "back it (else how many more it takes).", className="muted small"),
    ])
