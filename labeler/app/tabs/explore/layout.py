"""The map panel's layout (left half of the page)."""

from __future__ import annotations

from dash import dcc, html

from ... import ids
from ...components import legend
from ...state import AppContext
from ...views import COLOR_BY_CLUSTER, COLOR_MODES, coloring, map_figure


def panel(ctx: AppContext) -> html.Div:
    """The left half of the page: colour modes, legend, the map and its tooltip."""
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
