"""Which map points a lasso or a box selection covers, tested on every point.

When the map is drawn as a raster plus a sample (:mod:`labeler.app.map_raster`),
Plotly's selection event lists only the sampled points; the shape it reports
(``selectedData["lassoPoints"]`` or ``["range"]``) is tested here against all of
them. Pure functions of numpy arrays.
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


def path_vertices(path: str) -> tuple[list[float], list[float]]:
    """The vertices of a lasso kept in Plotly's ``layout.selections`` (``type: 'path'``):
    an SVG path of straight segments in data units, ``"M x,y L x,y ... Z"``.

    Raises
    ------
    BadInputError
        Not an even number of coordinates.
    """
    v = [float(t) for t in _NUMBER.findall(str(path))]
    if len(v) % 2:
        raise BadInputError("a lasso path needs an x and a y for every vertex")
    return v[0::2], v[1::2]


def _one_shape(xy: np.ndarray, shape: dict) -> np.ndarray | None:
    if shape.get("lassoPoints"):
        lasso = shape["lassoPoints"]
        return points_in_polygon(xy, lasso["x"], lasso["y"])
    if shape.get("path"):
        return points_in_polygon(xy, *path_vertices(shape["path"]))
    if shape.get("range"):
        box = shape["range"]
        return points_in_box(xy, box["x"], box["y"])
    return None


def selected_points(xy: np.ndarray, selected: dict | None) -> np.ndarray | None:
    """The points a Plotly selection event covers, from its shape or shapes.

    Parameters
    ----------
    xy : ndarray (n, 2), numeric
        Every point, in the units of the figure's axes.
    selected : dict or None
        Plotly's ``selectedData``: ``{"lassoPoints": {"x": [...], "y": [...]}}`` or
        ``{"range": {"x": [lo, hi], "y": [lo, hi]}}``; with ``"shapes"``, a list of
        such shapes or ``{"path": "M x,y L ... Z"}`` lassos (Plotly's
        ``layout.selections`` after shift-selecting more: their union is selected,
        and the single shape is ignored).

    Returns
    -------
    ndarray (m,), int64 or None
        Point indices, ascending; None when the event carries no shape (a
        selection made another way: its listed points are the selection).

    Raises
    ------
    BadInputError
        A malformed shape.
    """
    if not selected:
        return None
    try:
        if selected.get("shapes"):
            parts = [_one_shape(xy, shape) for shape in selected["shapes"]]
            parts = [p for p in parts if p is not None]
            return np.unique(np.concatenate(parts)).astype(np.int64) if parts else None
        return _one_shape(xy, selected)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BadInputError(f"a malformed map selection: {e}") from e
