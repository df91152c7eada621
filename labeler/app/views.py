"""Pure logic that turns library results into the map's figure data (the panels' rows:
:mod:`labeler.app.panels`).

No Dash callbacks here: every function takes plain values (or an
:class:`~labeler.app.state.AppContext`) and returns plain values, so the tests
call them directly.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .colors import (  # noqa: F401 (re-exported: callers import the colours from views)
    COLOR_BY_CLUSTER, COLOR_BY_CONFIDENCE, COLOR_BY_LABEL, COLOR_BY_SUGGESTION, COLOR_MODES, CONFIDENCE_STEPS,
    N_STATES, NOISE_COLOR, PALETTE, SEQUENTIAL, UNLABELLED_COLOR, Coloring, cluster_color, color_by_cluster,
    color_by_confidence, color_by_label, color_by_label_codes, coloring, point_labelled, point_state, rgba,
    rgba_array, sequential_steps, state_codes, step_scale, typed_array)
from .map_raster import (View, layout_image, padded_view, pixel_index, png_data_uri, render_rgba,
                         sample_points, sample_priority, spread_for, view_from)
from .map_select import selected_points
from .state import AppContext

LABELLED_OPACITY = 0.9
UNLABELLED_OPACITY = 0.35  # unlabelled points are faded: labelled vs unlabelled at a glance
CONFIDENCE_OPACITY = 0.85  # ... but not in the confidence mode, whose colours are the unlabelled points'
DIMMED = 0.6  # factor on the points outside the open cluster (0.35 left unlabelled ones at 0.12: small clusters vanished)
ROBUST_PERCENTILES = (1.0, 99.0)
RANGE_MARGIN = 0.08  # of the span, on each side


def map_range(xy: np.ndarray, robust: bool = True) -> tuple[list[float], list[float]]:
    """x and y axis ranges of the map.

    ``robust``: from the 1st to the 99th percentile of each coordinate plus an 8 %
    margin (never beyond the data's extent plus margin), so a few outliers do not
    squash every other point into a corner; otherwise the full extent plus margin
    (the 'fit all' view).

    Parameters
    ----------
    xy : ndarray (n, 2), float
    """
    xy = np.asarray(xy, dtype=np.float64)
    if len(xy) == 0:
        return [-1.0, 1.0], [-1.0, 1.0]
    out = []
    for d in (0, 1):
        full = (float(xy[:, d].min()), float(xy[:, d].max()))
        lo, hi = np.percentile(xy[:, d], ROBUST_PERCENTILES) if robust else full
        span = max(hi - lo, 1e-6)
        out.append([float(max(lo - RANGE_MARGIN * span, full[0] - RANGE_MARGIN * span)),
                    float(min(hi + RANGE_MARGIN * span, full[1] + RANGE_MARGIN * span))])
    return out[0], out[1]


def point_opacity(labelled: np.ndarray, in_open: np.ndarray | None = None, mode: str | None = None) -> np.ndarray:
    """Marker opacity per point: labelled points solid, unlabelled faded (less so in the
    confidence mode, where their colour is the information); with a cluster open,
    points outside it dimmed further. Shape (n_points,), float32. The map does not send
    it per point: :func:`state_alpha` takes the opacity of each state from here and the
    colour scale carries it (:func:`map_marker`)."""
    faded = CONFIDENCE_OPACITY if mode == COLOR_BY_CONFIDENCE else UNLABELLED_OPACITY
    op = np.where(np.asarray(labelled, bool), LABELLED_OPACITY, faded).astype(np.float32)
    if in_open is not None and np.any(in_open):
        op = np.where(in_open, op, op * DIMMED).astype(np.float32)
    return op


def state_alpha(mode: str | None = None) -> list[float]:
    """Opacity of each point state of :func:`~labeler.app.colors.point_state` (labelled,
    unlabelled, and both dimmed), as :func:`point_opacity` gives it: the alpha of the
    colours of the map's colour scale."""
    return [float(a) for a in point_opacity(np.array([True, False, True, False]),
                                            np.array([True, True, False, False]), mode)]


def map_marker(ctx: AppContext, mode: str, col: Coloring, cluster=None) -> dict:
    """The marker properties of the map's image trace that change on a recolour: each
    point's colour category and state (labelled or not, dimmed outside the open cluster)
    as one uint8 code, the state drawn as the alpha of a step colour scale
    (:meth:`Coloring.marker`). No per-point opacity array: at 1M points it was 4 MB of
    float32 with every recolour."""
    state = point_state(point_labelled(ctx), open_mask(ctx, cluster))
    return col.marker(state, state_alpha(mode))


def open_mask(ctx: AppContext, cluster) -> np.ndarray | None:
    """Which map points belong to the open cluster (None when no cluster is open)."""
    if cluster is None:
        return None
    return ctx.assignment().clusters == int(cluster)


def cluster_annotations(ctx: AppContext, mode: str, min_gap: float = 0.06) -> list[dict]:
    """Cluster-id labels just above the cluster medians, largest clusters first, leaving out a
    label that would sit closer than ``min_gap`` (share of the robust view's span) to
    one already placed, so the numbers do not overlap. None when colouring by label;
    every point's cluster is in its hover card."""
    if mode in (COLOR_BY_LABEL, COLOR_BY_SUGGESTION, COLOR_BY_CONFIDENCE):
        return []
    cx, cy, ct = ctx.assignment().centres(ctx.xy)
    if not ct:
        return []
    cx, cy = to_grid(ctx, np.c_[cx, cy]).T.tolist()
    sizes = np.bincount(np.maximum(ctx.assignment().clusters, -1) + 1)
    xr, yr = grid_range(ctx)
    gx, gy = min_gap * (xr[1] - xr[0]), min_gap * (yr[1] - yr[0])
    order = sorted(range(len(ct)), key=lambda j: -int(sizes[int(ct[j]) + 1]) if int(ct[j]) + 1 < len(sizes) else 0)
    placed: list[tuple[float, float]] = []
    out = []
    for j in order:
        x, y = cx[j], cy[j]
        if any(abs(x - px) < gx and abs(y - py) < gy for px, py in placed):
            continue
        placed.append((x, y))
        # Just above the median, not on it: a tight cluster (near-identical photos) is a
        # few pixels across and a label centred there hid it.
        out.append({"x": x, "y": y, "text": ct[j], "showarrow": False, "font": {"size": 11, "color": "#111"},
                    "bgcolor": "rgba(255,255,255,0.65)", "borderpad": 1, "yanchor": "bottom", "yshift": 4})
    return out


def marker_size(n_points: int) -> float:
    """Marker diameter in pixels: smaller as the map fills up."""
    return float(np.clip(9 - 1.2 * np.log10(max(n_points, 1)), 2.5, 7))


GRID = 65535  # map coordinates are sent as uint16 steps of the map's extent


def _grid_frame(ctx: AppContext) -> tuple[np.ndarray, np.ndarray]:
    frame = getattr(ctx, "_map_grid_frame", None)
    if frame is None:
        lo = ctx.xy.min(axis=0) if ctx.n_points else np.zeros(2, np.float32)
        hi = ctx.xy.max(axis=0) if ctx.n_points else np.ones(2, np.float32)
        frame = (lo.astype(np.float64), np.maximum(hi - lo, 1e-9).astype(np.float64) / GRID)
        ctx._map_grid_frame = frame  # the map of an app never changes
    return frame


def to_grid(ctx: AppContext, xy) -> np.ndarray:
    """Map positions (m, 2) in UMAP units -> the figure's grid units (m, 2) float64.

    The figure sends coordinates as uint16 (1/65535 of the map's extent, far
    below a pixel): half the bytes of float32. The cluster-id labels and the
    search star are placed in the same units.
    """
    lo, step = _grid_frame(ctx)
    return (np.atleast_2d(np.asarray(xy, dtype=np.float64)) - lo) / step


def id_runs(point_ids: np.ndarray) -> list[list[int]]:
    """[[first point index, its image id], ...]: one pair per run of consecutive ids.

    Point i has id ``id + (i - first)`` of the last run starting at or before i.
    Image ids mostly follow the map's row order, so a million points take a few
    pairs, where a list of ids took 8 MB of the page.
    """
    ids = np.asarray(point_ids, dtype=np.int64)
    if not len(ids):
        return []
    starts = np.flatnonzero(np.r_[True, np.diff(ids) != 1])
    return [[int(i), int(ids[i])] for i in starts]


def decode_id_runs(runs: list[list[int]], n: int) -> np.ndarray:
    """The inverse of :func:`id_runs`: image id of each of ``n`` points, (n,) int64
    (what the page's selection callback computes point by point)."""
    out = np.empty(n, dtype=np.int64)
    bounds = [r[0] for r in runs[1:]] + [n]
    for (start, first), end in zip(runs, bounds):
        out[start:end] = first + np.arange(end - start)
    return out


def point_image_id(ctx: AppContext, point: dict) -> int | None:
    """The image id of a Plotly event point of the map's image trace, else None (also for
    a point of a raster-drawn map without its ``customdata``: its index is the sample's)."""
    if point.get("curveNumber", 0) != 0:
        return None
    if point.get("customdata") is not None:
        v = point["customdata"]
        return int(v[0] if isinstance(v, list) else v)
    if raster_mode(ctx):
        return None
    i = point.get("pointIndex", point.get("pointNumber"))
    if not isinstance(i, int) or not 0 <= i < ctx.n_points:
        return None
    return int(ctx.point_ids[i])


def highlight_trace(ctx: AppContext, cluster, mode: str = COLOR_BY_CLUSTER) -> dict:
    """Trace values of the open-cluster highlight (trace 2): its points redrawn on top
    with a dark outline, filled with the cluster's colour (colour by cluster) or
    hollow (other modes, so the points' own colours show through)."""
    mask = open_mask(ctx, cluster)
    xy = grid_xy(ctx)[mask] if mask is not None else np.zeros((0, 2), np.uint16)
    colour = NOISE_COLOR if cluster is None or int(cluster) < 0 else cluster_color(int(cluster))
    if mode != COLOR_BY_CLUSTER:
        colour = "rgba(0,0,0,0)"
    if len(xy) == 0:
        # An empty typed array ({"bdata": ""}) makes plotly.js's scattergl fail to build its
        # WebGL buffers, which then shows "WebGL is not supported" in place of the whole map.
        return {"x": [], "y": [], "marker.color": colour}
    return {"x": typed_array(np.ascontiguousarray(xy[:, 0])), "y": typed_array(np.ascontiguousarray(xy[:, 1])),
            "marker.color": colour}


def grid_range(ctx: AppContext, robust: bool = True) -> tuple[list[float], list[float]]:
    """:func:`map_range` of :func:`grid_xy` (kept: the percentiles of 1M points took
    ~45 ms, and a layout or recolour asked for them three times)."""
    kept = ctx.__dict__.setdefault("_map_grid_range", {})
    if robust not in kept:
        kept[robust] = map_range(grid_xy(ctx), robust=robust)
    return kept[robust]


def grid_xy(ctx: AppContext) -> np.ndarray:
    """Every point's position in the figure's grid units, (n_points, 2) uint16."""
    g = getattr(ctx, "_map_grid_xy", None)
    if g is None:
        g = np.rint(to_grid(ctx, ctx.xy)).clip(0, GRID).astype(np.uint16) if ctx.n_points \
            else np.zeros((0, 2), np.uint16)
        ctx._map_grid_xy = g  # the map of an app never changes
    return g


def map_figure(ctx: AppContext, mode: str = COLOR_BY_CLUSTER, col: Coloring | None = None,
               cluster=None, view=None) -> dict:
    """The map figure as a plain dict (typed arrays for the big columns).

    Traces: 0 = every image (``Scattergl``; faded when unlabelled), 1 = the search
    query marker (empty until a search), 2 = the open cluster's points redrawn on
    top (outlined). Cluster ids are layout annotations at the cluster medians
    (annotations are drawn above the WebGL canvas), only where they do not overlap.
    The axes start on the robust range (:func:`map_range`). Coordinates are uint16
    grid steps (:func:`to_grid`); the image id of point i is not sent per point but
    as runs of consecutive ids in ``layout.meta.id_runs`` (:func:`id_runs`), and
    the server maps an event's ``pointIndex`` with :func:`point_image_id`.

    A map of more than ``map_raster_threshold`` points (:func:`raster_mode`) is
    drawn as a PNG of every point under the plot (``layout.images[0]``) and trace
    0 holds a sample of them, their image ids in ``customdata``
    (:func:`raster_parts`; ``view`` is the page's reported view, None = the first
    one, :func:`default_view`); ``layout.meta.raster`` tells the page to send a
    lasso's shape to the server (:mod:`labeler.app.map_select`).
    """
    col = col or coloring(ctx, mode)
    size = marker_size(ctx.n_points)
    grid = grid_xy(ctx)
    points = {
        "type": "scattergl",
        "mode": "markers",
        "x": typed_array(np.ascontiguousarray(grid[:, 0])),
        "y": typed_array(np.ascontiguousarray(grid[:, 1])),
        "hoverinfo": "none",
        "marker": {"size": size, "showscale": False},
        "selected": {"marker": {"opacity": 1}},
        "unselected": {"marker": {"opacity": 0.35}},
        "name": "images",
    }
    images, meta = [], {"id_runs": id_runs(ctx.point_ids)}
    if raster_mode(ctx):
        parts = raster_parts(ctx, mode, col, cluster, view)
        points.update(x=parts["x"], y=parts["y"], customdata=parts["customdata"])
        points["marker"].update(parts["marker"])
        size = parts["marker"]["size"]
        images, meta = [parts["image"]], {"raster": True, "id_runs": []}
    else:
        points["marker"].update(map_marker(ctx, mode, col, cluster))
    # The star is a WebGL trace too: SVG traces are drawn under the WebGL canvas.
    query = {
        "type": "scattergl", "mode": "markers", "x": [], "y": [], "hoverinfo": "skip", "name": "query",
        "marker": {"symbol": "star", "size": 24, "color": "#ffd400", "line": {"color": "#111", "width": 2}},
    }
    hl = highlight_trace(ctx, cluster, mode)
    ring = {"type": "scattergl", "mode": "markers", "hoverinfo": "skip", "name": "open cluster",
            "x": hl["x"], "y": hl["y"],
            "marker": {"size": size + 1, "color": hl["marker.color"], "opacity": 1,
                       "line": {"color": "#111", "width": 0.7}}}
    xr, yr = grid_range(ctx)
    axis = {"showgrid": False, "zeroline": False, "showticklabels": False, "title": None}
    layout = {
        "margin": {"l": 4, "r": 4, "t": 4, "b": 4},
        "dragmode": "lasso",
        "hovermode": "closest",
        "showlegend": False,
        "uirevision": "map",  # zoom and pan survive patches
        "plot_bgcolor": "#ffffff",
        "paper_bgcolor": "#ffffff",
        "xaxis": {**axis, "range": xr, "autorange": False},
        "yaxis": {**axis, "range": yr, "autorange": False, "scaleanchor": "x"},
        "annotations": cluster_annotations(ctx, mode),
        "images": images,
        "meta": meta,
    }
    return {"data": [points, query, ring], "layout": layout}


def recolor_patch(ctx: AppContext, mode: str, col: Coloring | None = None, cluster=None, view=None):
    """A :class:`dash.Patch` that changes only the marker colours (state as alpha), the
    open-cluster rings and the cluster-id annotations (which move when clusters are
    edited): no coordinates of the points are resent. A raster-drawn map
    (:func:`raster_mode`) gets a new raster and its sample for ``view``
    (:func:`view_patch`)."""
    from dash import Patch

    col = col or coloring(ctx, mode)
    if raster_mode(ctx):
        p = view_patch(ctx, mode, col, cluster, view, moved=False)
    else:
        p = Patch()
        for k, v in map_marker(ctx, mode, col, cluster).items():
            p["data"][0]["marker"][k] = v
    return patch_rings_and_annotations(p, ctx, mode, cluster)


def patch_rings_and_annotations(p, ctx: AppContext, mode: str, cluster=None):
    """Set the open cluster's rings (trace 2, :func:`highlight_trace`) and the cluster-id
    annotations (:func:`cluster_annotations`) in the :class:`dash.Patch` ``p``; returns ``p``."""
    ring = highlight_trace(ctx, cluster, mode)
    p["data"][2]["x"] = ring["x"]
    p["data"][2]["y"] = ring["y"]
    p["data"][2]["marker"]["color"] = ring["marker.color"]
    p["layout"]["annotations"] = cluster_annotations(ctx, mode)
    return p


def raster_mode(ctx: AppContext) -> bool:
    """Whether the map has more points than the ``map_raster_threshold`` setting, and is
    drawn as a raster plus a sample (:mod:`labeler.app.map_raster`)."""
    return ctx.n_points > map_limits(ctx)[0]


def map_limits(ctx: AppContext) -> tuple[int, int]:
    """The project's ``map_raster_threshold`` and ``map_sample_points`` settings (read
    once per app)."""
    limits = getattr(ctx, "_map_limits", None)
    if limits is None:
        from ..config import Settings

        project = getattr(ctx, "project", None)  # a bare context (tests) has the defaults
        s = project.settings() if project is not None else Settings()
        limits = (int(s.map_raster_threshold), max(1, int(s.map_sample_points)))
        ctx._map_limits = limits
    return limits


def default_view(ctx: AppContext) -> View:
    """The raster's view before the page reports one: the first view's axis ranges
    (:func:`map_range`) widened to a square (:func:`~labeler.app.map_raster.padded_view`)."""
    return padded_view(*grid_range(ctx))


def raster_parts(ctx: AppContext, mode: str, col: Coloring | None = None, cluster=None, view=None) -> dict:
    """Trace 0 and the raster of a raster-drawn map for ``view``.

    Parameters
    ----------
    view : dict or None
        The page's view store (:class:`~labeler.app.map_raster.View` as a dict); None
        or malformed = :func:`default_view`.

    Returns
    -------
    dict
        ``x``, ``y`` (uint16 grid units, typed arrays) and ``customdata`` (image ids,
        a list) of the sampled points, ``marker`` (colour codes, colour scale,
        size), ``image`` (the ``layout.images`` entry; hidden when every point of
        the view is sent as a point) and ``sample`` (the point indices, int64).
    """
    col = col or coloring(ctx, mode)
    v = view_from(view, default_view(ctx))
    grid = grid_xy(ctx)
    _, budget = map_limits(ctx)
    kept = getattr(ctx, "_map_view_cache", None)  # a recolour redraws the view the page shows
    if kept is None or kept[0] != (v, budget):
        prio = sample_priority(ctx.point_ids)
        pix = pixel_index(grid, v)
        kept = ((v, budget), len(pix[1]), sample_points(v.inside(grid), prio, budget), pix)
        ctx._map_view_cache = kept
    _, n_inside, sample, pix = kept
    state = point_state(point_labelled(ctx), open_mask(ctx, cluster))
    codes, colours = col.state_colors(state, state_alpha(mode))
    size = marker_size(n_inside)
    if n_inside > budget:
        image = _raster_image(ctx, grid, codes, colours, v, budget, size, pix)
    else:  # every point of the view is a marker: no raster under them
        image = {**layout_image("", v), "visible": False}
    sx = np.ascontiguousarray(grid[sample])
    return {"x": typed_array(np.ascontiguousarray(sx[:, 0])), "y": typed_array(np.ascontiguousarray(sx[:, 1])),
            # A JSON list, not a typed array: dcc.Graph copies an event point's customdata from
            # the figure's data (trace.customdata[pointNumber]), where a typed-array spec has no index.
            "customdata": ctx.point_ids[sample].tolist(),
            "marker": {"color": typed_array(codes[sample]),
                       "colorscale": step_scale([rgba(c, a) for c, a in colours] or [rgba(NOISE_COLOR, 1.0)]),
                       "cmin": -0.5, "cmax": max(len(colours), 1) - 0.5, "size": size},
            "image": image, "sample": sample}


def warm_map(ctx: AppContext) -> None:
    """Render the first page's raster (a raster-drawn map, :func:`raster_mode`) before the
    server takes requests, so the first page is not kept waiting for it (0.5 s at 1M
    points, ``bench_dashboard.py``); a map drawn point by point needs nothing."""
    if raster_mode(ctx):
        raster_parts(ctx, COLOR_BY_CLUSTER)


def forget_map_image(ctx: AppContext) -> None:
    """Drop the kept raster PNG (:func:`_raster_image`), so the next draw renders it anew,
    as a label action's new colour codes make it do (benchmarks time that drawing)."""
    ctx.__dict__.pop("_map_image_cache", None)


def _raster_image(ctx: AppContext, grid, codes, colours, v, budget, size, pix) -> dict:
    """The ``layout.images`` entry of the raster, rendered again only when its pixels can
    differ: the last one is kept with the view, the colour codes' digest and the colours.
    Dash asks for the layout twice on a server's first page (``_setup_server`` validates
    it, then ``/_dash-layout`` serves it): 0.5 s of rendering each at 1M points."""
    key = (v, budget, hashlib.blake2b(np.ascontiguousarray(codes).tobytes(), digest_size=16).digest(),
           tuple(colours))
    kept = getattr(ctx, "_map_image_cache", None)
    if kept is None or kept[0] != key:
        pixels = render_rgba(grid, codes, rgba_array(colours), v, spread_for(size), pixels=pix)
        kept = (key, layout_image(png_data_uri(pixels), v))
        ctx._map_image_cache = kept
    return kept[1]


def view_patch(ctx: AppContext, mode: str, col: Coloring | None = None, cluster=None, view=None,
               moved: bool = True):
    """A :class:`dash.Patch` that redraws a raster-drawn map for ``view``: the raster and
    the sampled points' colours (:func:`raster_parts`), and with ``moved`` (the view is
    not the one the page's sample was drawn for) the sampled points themselves."""
    from dash import Patch

    parts = raster_parts(ctx, mode, col, cluster, view)
    p = Patch()
    if moved:
        for k in ("x", "y", "customdata"):
            p["data"][0][k] = parts[k]
        p["data"][0]["selectedpoints"] = None  # the indices of a selection name other points now
    for k, v in parts["marker"].items():
        p["data"][0]["marker"][k] = v
    p["layout"]["images"] = [parts["image"]]
    return p


def shape_image_ids(ctx: AppContext, shape: dict | None) -> list[int] | None:
    """The image ids of every map point a raster-drawn map's lasso or box covers (the
    page's shape store, :func:`labeler.app.map_select.selected_points`); None when it
    carries no shape.

    Raises
    ------
    BadInputError
        A malformed shape.
    """
    idx = selected_points(grid_xy(ctx), shape)
    return None if idx is None else [int(i) for i in ctx.point_ids[idx]]


def fit_all_view(ctx: AppContext, view=None) -> dict:
    """The view store after 'fit all': a square around every point (:func:`map_range`, not
    robust; Plotly fits the square's axes to the plot), drawn on as many pixels as the
    larger side of ``view`` (the page's last reported view, if any)."""
    xr, yr = grid_range(ctx, robust=False)
    v = view_from(view, default_view(ctx))
    return padded_view(xr, yr, v.width, v.height, pad=0.1).to_dict()


def fit_all_patch(ctx: AppContext, n: int):
    """A :class:`dash.Patch` showing every point (outliers included); a new
    ``uirevision`` so the browser drops the annotator's zoom."""
    from dash import Patch

    xr, yr = grid_range(ctx, robust=False)
    p = Patch()
    p["layout"]["xaxis"]["range"] = xr
    p["layout"]["yaxis"]["range"] = yr
    p["layout"]["uirevision"] = f"fit-{int(n or 0)}"
    return p


def query_marker_patch(ctx: AppContext, xy: tuple[float, float] | None):
    """A :class:`dash.Patch` that moves the search-query star to map position ``xy``
    (UMAP units; None hides it)."""
    from dash import Patch

    p = Patch()
    g = None if xy is None else to_grid(ctx, [xy])[0]
    p["data"][1]["x"] = [] if g is None else [float(g[0])]
    p["data"][1]["y"] = [] if g is None else [float(g[1])]
    return p
