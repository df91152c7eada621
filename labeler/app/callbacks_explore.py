"""The map: recolour (a Patch), hover tooltip, lasso selection, the Ctrl+Z shortcut."""

from __future__ import annotations

from dash import Dash, Input, Output, Patch, html, no_update
from dash.exceptions import PreventUpdate

from . import ids
from .components import legend
from .routes import thumb_url
from .state import AppContext
from .views import coloring, fit_all_patch, image_facts, recolor_patch


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
        html.Div(f"label: {facts['label'] or '—'}"),
    ], className="tooltip-card")]


# Reduce Plotly's selection to the image ids before anything goes to the server:
# a 50k-point lasso then costs a list of integers, not 50k point records.
_SELECTION_JS = """
function(sel) {
    const nu = window.dash_clientside.no_update;
    if (!sel || !sel.points) { return [[], nu]; }
    const seen = new Set(), out = [];
    for (const p of sel.points) {
        if (p.curveNumber !== 0 || p.customdata === undefined) { continue; }
        const v = Array.isArray(p.customdata) ? p.customdata[0] : p.customdata;
        if (!seen.has(v)) { seen.add(v); out.push(Number(v)); }
    }
    return [out, out.length ? "%s" : nu];
}
""" % ids.TAB_SELECTION

# Ctrl+Z (Cmd+Z) clicks the Undo button, except while typing in a text box, where
# the browser's own text undo is wanted.
_KEYS_JS = """
function(installed) {
    if (window._labelerKeys) { return true; }
    window._labelerKeys = true;
    document.addEventListener("keydown", function(e) {
        if (!(e.ctrlKey || e.metaKey) || e.shiftKey || e.altKey || (e.key !== "z" && e.key !== "Z")) { return; }
        const t = e.target, tag = (t && t.tagName || "").toLowerCase();
        if (tag === "input" || tag === "textarea" || (t && t.isContentEditable)) { return; }
        const b = document.getElementById("%s");
        if (b) { e.preventDefault(); b.click(); }
    });
    return true;
}
""" % ids.UNDO


def register(app: Dash, actx: AppContext) -> None:
    """Register the map callbacks on ``app``."""

    @app.callback(
        Output(ids.MAP, "figure"),
        Output(ids.MAP_LEGEND, "children"),
        Input(ids.COLOR_MODE, "value"),
        Input(ids.VERSION, "data"),
        Input(ids.CLUSTER_OPEN, "data"),
        prevent_initial_call=True,
    )
    def recolor(mode, _version, cluster):
        col = coloring(actx, mode)
        return recolor_patch(actx, mode, col, cluster), legend(col, mode, open_cluster=cluster)

    @app.callback(
        Output(ids.MAP, "figure", allow_duplicate=True),
        Input(ids.MAP_FIT, "n_clicks"),
        prevent_initial_call=True,
    )
    def fit_all(n):
        if not n:
            raise PreventUpdate
        return fit_all_patch(actx, n)

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
        if pt.get("curveNumber", 0) != 0 or pt.get("customdata") is None:
            return False, no_update, no_update
        image_id = pt["customdata"]
        image_id = int(image_id[0] if isinstance(image_id, list) else image_id)
        return True, pt.get("bbox"), hover_card(actx, image_id)

    app.clientside_callback(
        _SELECTION_JS,
        Output(ids.SELECTION, "data"),
        Output(ids.TABS, "value", allow_duplicate=True),
        Input(ids.MAP, "selectedData"),
        prevent_initial_call=True,
    )
    app.clientside_callback(_KEYS_JS, Output(ids.KEYS, "data"), Input(ids.KEYS, "id"))

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
