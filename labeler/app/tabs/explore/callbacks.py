"""The map: recolour (a Patch), hover tooltip, lasso selection, and
the redraw of a raster-drawn map when it is zoomed or panned."""

from __future__ import annotations

from dash import Dash, Input, Output, Patch, State, html, no_update
from dash.exceptions import PreventUpdate

from ....errors import BadInputError
from ... import ids
from ...components import legend
from ...routes import thumb_url
from ...state import AppContext
from ...panels import image_facts
from ...views import (coloring, fit_all_patch, fit_all_view, map_figure, point_image_id, raster_mode, recolor_patch,
                    shape_image_ids, view_patch)


def hover_card(actx: AppContext, image_id: int) -> list:
    """Tooltip content of one map point: thumbnail, id, file name, cluster, label."""
    facts = image_facts(actx, [int(image_id)]).get(int(image_id))
    if facts is None:
        return []
    cl = facts["cluster"]
    return [html.Div([
        html.Img(src=thumb_url(image_id), className="tooltip-img"),
        html.Div(f"#{image_id} · {facts['path'].rsplit('/', 1)[-1]}", className="tooltip-title"),
        html.Div(f"cluster {cl}" if cl >= 0 else "noise"),
        html.Div(f"label: {facts['label'] or '—'}" + (" (stale: file changed)" if facts.get("stale") else "")),
    ], className="tooltip-card")]


# Reduce Plotly's selection to the image ids before anything goes to the server:
# a 50k-point lasso then costs a list of integers, not 50k point records.
_SELECTION_JS = """
function(sel) {
    const nu = window.dash_clientside.no_update;
    if (!sel || !sel.points) { return [[], nu, nu]; }
    const gd = document.querySelector("#%s .js-plotly-plot");
    // A raster-drawn map lists only its sampled points: the server tests the shapes on every point.
    // layout.selections holds every shape, in order (Shift-selecting more appends one); Plotly
    // combines them, and a lasso path's rings, as map_select.selected_points does. The event's own
    // lassoPoints glue a path's rings together, and an event after a relayout has none.
    const raster = gd && gd.layout.meta && gd.layout.meta.raster;
    const shapes = raster ? (gd.layout.selections || []).map(s =>
        s.type === "path" ? {path: s.path} :
        s.type === "rect" ? {range: {x: [s.x0, s.x1], y: [s.y0, s.y1]}} : null).filter(s => s) : [];
    if (raster && (shapes.length || sel.lassoPoints || sel.range)) {
        return [nu, nu, {lassoPoints: sel.lassoPoints || null, range: sel.range || null,
                         shapes: shapes.length ? shapes : null, t: Date.now()}];
    }
    // Image id of point i: layout.meta.id_runs (views.id_runs), binary search.
    const runs = (gd && gd.layout.meta && gd.layout.meta.id_runs) || [];
    const idOf = function(i) {
        let lo = 0, hi = runs.length - 1;
        if (hi < 0) { return undefined; }
        while (lo < hi) { const m = (lo + hi + 1) >> 1; if (runs[m][0] <= i) { lo = m; } else { hi = m - 1; } }
        return runs[lo][1] + (i - runs[lo][0]);
    };
    const seen = new Set(), out = [];
    for (const p of sel.points) {
        if (p.curveNumber !== 0) { continue; }
        const v = p.customdata !== undefined ? (Array.isArray(p.customdata) ? p.customdata[0] : p.customdata)
                                             : idOf(p.pointIndex !== undefined ? p.pointIndex : p.pointNumber);
        if (v !== undefined && !seen.has(v)) { seen.add(v); out.push(Number(v)); }
    }
    return [out, out.length ? "%s" : nu, nu];
}
""" % (ids.MAP, ids.TAB_SELECTION)

# A raster-drawn map reports its visible range (after Plotly fitted the shared scale) and
# its plot size in pixels whenever the user zooms or pans; the server redraws the raster.
_VIEW_JS = """
function(relayout, current) {
    const nu = window.dash_clientside.no_update;
    const gd = document.querySelector("#%s .js-plotly-plot");
    if (!relayout || !gd || !gd._fullLayout || !(gd.layout.meta && gd.layout.meta.raster)) { return nu; }
    const fl = gd._fullLayout;
    const view = {x: fl.xaxis.range.slice(), y: fl.yaxis.range.slice(), w: Math.round(fl._size.w),
                  h: Math.round(fl._size.h)};
    // A relayout that moved nothing (the lasso tool chosen, a hover label) redraws nothing.
    return JSON.stringify(view) === JSON.stringify(current) ? nu : view;
}
""" % ids.MAP

# u / Ctrl+Z (Undo) and r / Ctrl+Shift+Z / Ctrl+Y (Redo) are in assets/keys.js: they wait, in
# order, behind the shortcuts sent before them.


def register(app: Dash, actx: AppContext) -> None:
    """Register the map callbacks on ``app``."""

    @app.callback(
        Output(ids.MAP, "figure"),
        Output(ids.MAP_LEGEND, "children"),
        Output(ids.MAP_POINTS, "data"),
        Input(ids.COLOR_MODE, "value"),
        Input(ids.VERSION, "data"),
        Input(ids.CLUSTER_OPEN, "data"),
        State(ids.MAP_POINTS, "data"),
        State(ids.MAP_VIEW, "data"),
        prevent_initial_call=True,
    )
    def recolor(mode, _version, cluster, drawn, view):
        col = coloring(actx, mode)  # reloads the map points first when an ingest added photos
        if drawn != actx.map_token:  # new points or another map (a re-map): redraw it whole (the zoom stays)
            return (map_figure(actx, mode, col, cluster, view), legend(col, mode, open_cluster=cluster),
                    actx.map_token)
        return recolor_patch(actx, mode, col, cluster, view), legend(col, mode, open_cluster=cluster), no_update

    @app.callback(
        Output(ids.MAP, "figure", allow_duplicate=True),
        Output(ids.MAP_VIEW, "data", allow_duplicate=True),
        Input(ids.MAP_FIT, "n_clicks"),
        State(ids.MAP_VIEW, "data"),
        prevent_initial_call=True,
    )
    def fit_all(n, view):
        if not n:
            raise PreventUpdate
        return fit_all_patch(actx, n), fit_all_view(actx, view) if raster_mode(actx) else no_update

    app.clientside_callback(_VIEW_JS, Output(ids.MAP_VIEW, "data"), Input(ids.MAP, "relayoutData"),
                            State(ids.MAP_VIEW, "data"), prevent_initial_call=True)

    @app.callback(
        Output(ids.MAP, "figure", allow_duplicate=True),
        Input(ids.MAP_VIEW, "data"),
        State(ids.COLOR_MODE, "value"),
        State(ids.CLUSTER_OPEN, "data"),
        prevent_initial_call=True,
    )
    def redraw_view(view, mode, cluster):
        if not raster_mode(actx):
            raise PreventUpdate
        return view_patch(actx, mode, None, cluster, view)

    @app.callback(
        Output(ids.SELECTION, "data", allow_duplicate=True),
        Output(ids.TABS, "value", allow_duplicate=True),
        Input(ids.MAP_SHAPE, "data"),
        prevent_initial_call=True,
    )
    def select_shape(shape):
        try:
            chosen = shape_image_ids(actx, shape)
        except BadInputError:  # the store is the page's: a malformed shape selects nothing
            raise PreventUpdate from None
        if chosen is None:
            raise PreventUpdate
        return chosen, ids.TAB_SELECTION if chosen else no_update

    @app.callback(
        Output(ids.MAP_TOOLTIP, "show"),
        Output(ids.MAP_TOOLTIP, "bbox"),
        Output(ids.MAP_TOOLTIP, "children"),
        Input(ids.MAP, "hoverData"),
        prevent_initial_call=True,
    )
    def tooltip(hover):
        if not hover or not hover.get("points"):
            return False, no_update, no_update
        pt = hover["points"][0]
        image_id = point_image_id(actx, pt)
        if image_id is None:
            return False, no_update, no_update
        return True, pt.get("bbox"), hover_card(actx, image_id)

    app.clientside_callback(
        _SELECTION_JS,
        Output(ids.SELECTION, "data"),
        Output(ids.TABS, "value", allow_duplicate=True),
        Output(ids.MAP_SHAPE, "data"),
        Input(ids.MAP, "selectedData"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output(ids.SELECTION, "data", allow_duplicate=True),
        Output(ids.MAP, "figure", allow_duplicate=True),
        Input(ids.SELECTION_CLEAR, "n_clicks"),
        prevent_initial_call=True,
    )
    def clear_selection(n):
        if not n:
            raise PreventUpdate
        p = Patch()
        p["data"][0]["selectedpoints"] = None
        p["layout"]["selections"] = []
        return [], p
