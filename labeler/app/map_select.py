"""Which map points a lasso or a box selection covers, tested on every point.

When the map is drawn as a raster plus a sample (:mod:`labeler.app.map_raster`),
Plotly's selection event lists only the sampled points; the shapes Plotly keeps
(``layout.selections``, or the event's ``lassoPoints`` / ``range``) are tested here
against all of them, combined as Plotly combines them. Pure functions of numpy arrays.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import BadInputError


def points_in_box(xy: np.ndarray, x_range, y_range) -> np.ndarray:
    """Indices of the points inside a box (edges included).

    Parameters
    ----------
    xy : ndarray (n, 2), numeric
    x_range, y_range : pair of float
        The box's (low, high) on each axis (either order).

    Returns
    -------
    ndarray (m,), int64, ascending
    """
    x0, x1 = sorted(float(v) for v in x_range)
    y0, y1 = sorted(float(v) for v in y_range)
    x, y = xy[:, 0], xy[:, 1]
    return np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))


def points_in_polygon(xy: np.ndarray, xs, ys) -> np.ndarray:
    """Indices of the points inside a polygon (a lasso), by the even-odd rule of
    :meth:`matplotlib.path.Path.contains_points`, tested only on the points inside
    the polygon's bounding box.

    Parameters
    ----------
    xy : ndarray (n, 2), numeric
    xs, ys : sequence of float
        The polygon's vertices (closed implicitly).

    Returns
    -------
    ndarray (m,), int64, ascending

    Raises
    ------
    BadInputError
        Fewer than 3 vertices, or ``xs`` and ``ys`` of different lengths.
    """
    from matplotlib.path import Path

    poly = np.column_stack([np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)]) \
        if len(xs) == len(ys) else None
    if poly is None or len(poly) < 3:
        raise BadInputError("a lasso needs at least 3 vertices with an x and a y each")
    cand = points_in_box(xy, (poly[:, 0].min(), poly[:, 0].max()), (poly[:, 1].min(), poly[:, 1].max()))
    if not len(cand):
        return cand
    inside = Path(poly).contains_points(np.asarray(xy[cand], dtype=np.float64))
    return cand[inside]


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_NOT_A_LASSO = re.compile(r"[^MLZ\s,]")


def path_rings(path: str) -> list[np.ndarray]:
    """The rings (sub-polygons) of a lasso kept in Plotly's ``layout.selections``
    (``type: 'path'``): an SVG path of straight segments in data units,
    ``"M x,y L x,y ... [Z] [M x,y L ... Z]"``.

    The path is cut at every ``Z``, as plotly.js 4.1.1 does in ``getLayoutPolygons``
    (``src/components/selections/select.js``: ``selection.path.split('Z')``); a piece
    without coordinates is skipped. A single lasso drawn on the map is one ring (Plotly
    stores it without a ``Z``); several rings come from a merged outline (a selection
    made with ``newselection.mode = 'gradual'``, or set by ``Plotly.relayout``).

    Parameters
    ----------
    path : str
        Only the commands M, L and Z, absolute; numbers may use exponents.

    Returns
    -------
    list of ndarray (k, 2), float64
        Each ring's vertices in path order, closed implicitly, k >= 3.

    Raises
    ------
    BadInputError
        Another SVG command, an x without its y, or a ring of fewer than 3 vertices.
    """
    rings = []
    for piece in str(path).split("Z"):
        if _NOT_A_LASSO.search(_NUMBER.sub(" ", piece)):
            raise BadInputError("a lasso path may hold only straight segments (M, L, Z)")
        v = [float(t) for t in _NUMBER.findall(piece)]
        if not v:
            continue
        if len(v) % 2 or len(v) < 6:
            raise BadInputError("a lasso path needs an x and a y for each of at least 3 vertices per ring")
        rings.append(np.asarray(v, dtype=np.float64).reshape(-1, 2))
    return rings


def vertices_in_polygon(vertices: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Which vertices lie inside a polygon, by even-odd ray casting exactly as the
    ``point-in-polygon`` npm package (W. R. Franklin's PNPOLY) that plotly.js uses to
    tell a hole from an island.

    Parameters
    ----------
    vertices : ndarray (m, 2), float64
    polygon : ndarray (k, 2), float64
        Closed implicitly.

    Returns
    -------
    ndarray (m,), bool
    """
    x, y = vertices[:, 0], vertices[:, 1]
    inside = np.zeros(len(vertices), dtype=bool)
    xj, yj = polygon[-1]
    for xi, yi in polygon:
        with np.errstate(divide="ignore", invalid="ignore"):
            inside ^= ((yi > y) != (yj > y)) & (x < (xj - xi) * (y - yi) / (yj - yi) + xi)
        xj, yj = xi, yi
    return inside


def ring_subtracts(rings: list[np.ndarray]) -> np.ndarray:
    """Which rings of one lasso path take points away (holes) rather than add them.

    plotly.js 4.1.1, ``getSubtract`` in ``src/components/selections/select.js``: a ring
    subtracts when an odd number of the path's EARLIER rings each hold at least one of
    its vertices (:func:`vertices_in_polygon`). A path's first ring never subtracts.

    Parameters
    ----------
    rings : list of ndarray (k, 2), float64
        As :func:`path_rings` returns them.

    Returns
    -------
    ndarray (len(rings),), bool
    """
    out = np.zeros(len(rings), dtype=bool)
    for i, ring in enumerate(rings):
        out[i] = sum(bool(vertices_in_polygon(ring, rings[j]).any()) for j in range(i)) % 2 == 1
    return out


def _shape_parts(shape: dict) -> list[tuple[str, object, bool]]:
    """One shape of the page's store as (kind, geometry, subtract) parts, in order."""
    if shape.get("lassoPoints"):
        lasso = shape["lassoPoints"]
        return [("lasso", (lasso["x"], lasso["y"]), False)]
    if shape.get("path"):
        rings = path_rings(shape["path"])
        return [("lasso", (r[:, 0], r[:, 1]), bool(s)) for r, s in zip(rings, ring_subtracts(rings))]
    if shape.get("range"):
        box = shape["range"]
        return [("box", (box["x"], box["y"]), False)]
    return []


def selected_points(xy: np.ndarray, selected: dict | None) -> np.ndarray | None:
    """The points a Plotly selection covers, from its shape or shapes, with Plotly's
    own semantics.

    With ``"shapes"`` (Plotly's ``layout.selections``, in order) each shape gives one
    polygon, a box, or the rings of a lasso path (:func:`path_rings`), some of which
    subtract (:func:`ring_subtracts`; a box never does). plotly.js 4.1.1 then merges them
    in order, a union for each adding polygon and a difference for each subtracting one
    (``addTester`` and ``mergePolygons`` in ``src/components/selections/select.js``,
    with polybooljs). So a point is selected iff the LAST polygon that holds it adds.
    Checked against Plotly's own ``plotly_selected`` points by
    ``tests/test_map_select.py`` and ``tests/test_app_browser_raster.py``.

    Parameters
    ----------
    xy : ndarray (n, 2), numeric
        Every point, in the units of the figure's axes.
    selected : dict or None
        The page's shape store: Plotly's ``selectedData`` shape,
        ``{"lassoPoints": {"x": [...], "y": [...]}}`` or
        ``{"range": {"x": [lo, hi], "y": [lo, hi]}}``, used alone when ``"shapes"`` is
        empty; ``"shapes"``: ``layout.selections`` as a list of
        ``{"path": "M x,y L ... Z"}`` and ``{"range": ...}`` (or ``{"lassoPoints": ...}``).

    Returns
    -------
    ndarray (m,), int64 or None
        Point indices, ascending; None when the store carries no shape (a selection
        made another way: its listed points are the selection).

    Raises
    ------
    BadInputError
        A malformed shape.
    """
    if not selected:
        return None
    try:
        shapes = selected.get("shapes") or [selected]
        parts = [part for shape in shapes for part in _shape_parts(shape)]
        if not parts:
            return None
        chosen = np.zeros(len(xy), dtype=bool)
        for kind, (xs, ys), subtract in parts:
            inside = points_in_box(xy, xs, ys) if kind == "box" else points_in_polygon(xy, xs, ys)
            chosen[inside] = not subtract
        return np.flatnonzero(chosen).astype(np.int64)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BadInputError(f"a malformed map selection: {e}") from e
