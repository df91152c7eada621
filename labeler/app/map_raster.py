"""The map of a large collection drawn on the server: a raster of every point plus a
bounded sample of points for the browser.

Above a number of points (setting ``map_raster_threshold``) a WebGL scatter of every
point is too slow to draw in the browser (software WebGL in headless Chromium drew
1M points in 51 s). The map then becomes a PNG of all the points, rendered here for
the visible range and placed under the plot in data coordinates, plus a scatter of
at most that many points (every point of the view once it holds few enough), so
hover and click keep working. Pure functions of numpy arrays: no Dash here.

Why numpy rather than datashader: the aggregation is a weighted 2-D histogram
(``np.bincount`` over pixel indices), and the colouring is our own (each point's
state colour and alpha composited as the WebGL scatter draws it), which datashader's
``shade`` does not do. datashader 0.19.1 measured 0.6 s to import and 0.9 s for its
first aggregation (numba compilation) in each server process, half of the 3 s
first-render budget, and would add six packages (xarray, param, colorcet, toolz,
multipledispatch, pyct); its later aggregations were faster (6-18 ms against
~70 ms for one bincount at 1M points).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np

MAX_RASTER_PX = 2048  # the longer side of a raster, whatever the page asks for
DEFAULT_PX = (1100, 900)  # a raster's size before the page has said how large the plot is
MAX_ALPHA = 0.999  # a point's alpha is capped below 1 so its log transmittance stays finite


@dataclass(frozen=True)
class View:
    """A rectangle of the map in the figure's units and the pixels it is drawn on.

    Attributes
    ----------
    x, y : tuple of float
        (low, high) of each axis, in the figure's grid units
        (:func:`labeler.app.views.to_grid`).
    width, height : int
        Size of the raster in pixels (the plot area's size in CSS pixels).
    """

    x: tuple[float, float]
    y: tuple[float, float]
    width: int
    height: int

    def to_dict(self) -> dict:
        """A JSON-able dict (the page's view store)."""
        return {"x": list(self.x), "y": list(self.y), "w": self.width, "h": self.height}

    def inside(self, xy: np.ndarray) -> np.ndarray:
        """Which of the points ``xy`` (m, 2) lie inside the view, (m,) bool."""
        x, y = xy[:, 0], xy[:, 1]
        return (x >= self.x[0]) & (x <= self.x[1]) & (y >= self.y[0]) & (y <= self.y[1])


def view_from(data, default: View) -> View:
    """The view the page reported (``{"x": [lo, hi], "y": [lo, hi], "w": px, "h": px}``),
    or ``default`` when it is missing or malformed (the page's store is user input).
    The pixel size is clamped to [16, :data:`MAX_RASTER_PX`]."""
    try:
        x0, x1 = (float(v) for v in data["x"])
        y0, y1 = (float(v) for v in data["y"])
        w, h = int(data.get("w") or default.width), int(data.get("h") or default.height)
    except (TypeError, ValueError, KeyError, AttributeError):
        return default
    if not all(np.isfinite([x0, x1, y0, y1])) or x1 == x0 or y1 == y0:
        return default
    w, h = (int(np.clip(v, 16, MAX_RASTER_PX)) for v in (w, h))
    return View((min(x0, x1), max(x0, x1)), (min(y0, y1), max(y0, y1)), w, h)


def padded_view(x: list[float], y: list[float], width: int = DEFAULT_PX[0], height: int = DEFAULT_PX[1],
                pad: float = 0.25) -> View:
    """A view around the axis ranges ``x`` and ``y``, each side widened by ``pad`` of the
    larger span: the first raster of a page, drawn before the page reports its plot's
    aspect (the axes share one scale, so Plotly widens one of the ranges to fit)."""
    span = max(x[1] - x[0], y[1] - y[0])
    cx, cy = (x[0] + x[1]) / 2, (y[0] + y[1]) / 2
    half = span / 2 + pad * span
    side = max(width, height)
    return View((cx - half, cx + half), (cy - half, cy + half), side, side)


def pixel_index(xy: np.ndarray, view: View) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel index of every point drawn in ``view`` (row 0 = the top of the view).

    Parameters
    ----------
    xy : ndarray (n, 2), numeric
        Point positions in the view's units.
    view : View

    Returns
    -------
    pixels : ndarray (m,), int64
        Index ``row * view.width + column`` of each point inside the view.
    points : ndarray (m,), int64
        Which point each entry of ``pixels`` is (the points outside the view are left out).
    """
    sx = view.width / (view.x[1] - view.x[0])
    sy = view.height / (view.y[1] - view.y[0])
    keep = np.flatnonzero(view.inside(xy))  # edges included, as a box selection counts them
    col = np.minimum(np.floor((xy[keep, 0] - view.x[0]) * sx).astype(np.int64), view.width - 1)
    row = np.minimum(np.floor((view.y[1] - xy[keep, 1]) * sy).astype(np.int64), view.height - 1)
    return np.maximum(row, 0) * view.width + np.maximum(col, 0), keep


def _box_sum(planes: np.ndarray, spread: int) -> np.ndarray:
    """Sum of each plane (k, h, w) over a ``spread`` x ``spread`` window around each pixel
    (``scipy.ndimage.uniform_filter``, separable, zeros outside): the per-pixel sums of
    points drawn as squares of that side."""
    if spread <= 1:
        return planes
    from scipy.ndimage import uniform_filter

    return uniform_filter(planes, size=(1, spread, spread), mode="constant") * np.float32(spread * spread)


def render_rgba(xy: np.ndarray, codes: np.ndarray, palette: np.ndarray, view: View, spread: int = 1,
                pixels: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Draw the points as the WebGL scatter would: each point a ``spread`` x ``spread``
    square of its code's colour and alpha.

    The points on one pixel are composited with the "over" operator (Porter & Duff
    1984): the pixel's alpha is ``1 - prod(1 - a_i)`` (exact in any order) and its
    colour the alpha-weighted mean of the points' colours (exact when they share a
    colour, an order-free average otherwise). The sums are taken per pixel
    (``np.bincount``) and then over each square. Pixels with no point are transparent.

    Parameters
    ----------
    xy : ndarray (n, 2), numeric
        Point positions in the view's units.
    codes : ndarray (n,), unsigned int
        Colour code of each point (an index into ``palette``).
    palette : ndarray (k, 4), float
        RGBA of each code, each in [0, 1].
    view : View
    spread : int
        Side of each point's square in pixels (1 = one pixel).
    pixels : tuple of ndarray, optional
        :func:`pixel_index` of ``xy`` in ``view``, when the caller kept it.

    Returns
    -------
    ndarray (view.height, view.width, 4), uint8
        Straight (not premultiplied) RGBA.
    """
    n_pix = view.width * view.height
    pix, pts = pixels if pixels is not None else pixel_index(np.asarray(xy), view)
    pal = np.asarray(palette, dtype=np.float64)
    a = np.clip(pal[:, 3], 0.0, MAX_ALPHA)
    # Per code, then gathered per point: bincount over (pixel, code) pairs would need n_pix * k bins.
    per_code = np.vstack([np.log1p(-a), a, a * pal[:, 0], a * pal[:, 1], a * pal[:, 2]])  # (5, k)
    c = np.asarray(codes)[pts]
    planes = np.stack([np.bincount(pix, weights=row[c], minlength=n_pix) for row in per_code]).astype(np.float32)
    planes = _box_sum(planes.reshape(5, view.height, view.width), int(spread)).reshape(5, n_pix)
    log_t, w = planes[0], planes[1]
    out = np.zeros((n_pix, 4), dtype=np.uint8)
    hit = w > 0
    out[hit, :3] = np.rint(255 * np.clip(planes[2:, hit] / w[hit], 0, 1)).T.astype(np.uint8)
    out[:, 3] = np.rint(255 * (1.0 - np.exp(log_t))).astype(np.uint8)
    return out.reshape(view.height, view.width, 4)


def spread_for(marker_px: float) -> int:
    """Side in raster pixels of a point drawn as a WebGL marker of ``marker_px`` pixels
    (1 to 3)."""
    return int(np.clip(round(marker_px), 1, 3))


def png_data_uri(rgba: np.ndarray, compress_level: int = 1) -> str:
    """An RGBA image (h, w, 4) uint8 as a ``data:image/png;base64,...`` URI (Pillow's
    PNG encoder; level 1 is the fastest zlib level, and a sparse map compresses well at it)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(buf, format="PNG", compress_level=compress_level)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def layout_image(source: str, view: View) -> dict:
    """A Plotly ``layout.images`` entry that stretches ``source`` over ``view`` in data
    coordinates, under the traces."""
    return {"source": source, "xref": "x", "yref": "y", "x": view.x[0], "y": view.y[1],
            "sizex": view.x[1] - view.x[0], "sizey": view.y[1] - view.y[0], "sizing": "stretch",
            "xanchor": "left", "yanchor": "top", "layer": "below", "opacity": 1, "visible": True,
            "name": "raster"}


def sample_priority(point_ids: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random priority per image id, (n,) uint32: Knuth's multiplicative
    hash (TAOCP vol. 3, 6.4) of the id, so a point keeps its place in the sample while
    the view moves and when images are added."""
    return (np.asarray(point_ids, dtype=np.uint64) * np.uint64(2654435761) % np.uint64(2 ** 32)).astype(np.uint32)


def sample_points(inside: np.ndarray, priority: np.ndarray, budget: int) -> np.ndarray:
    """The points to send as WebGL markers: every point inside the view when they are at
    most ``budget``, else the ``budget`` of them with the lowest priority.

    Parameters
    ----------
    inside : ndarray (n,), bool
        Which points lie in the view.
    priority : ndarray (n,), unsigned int
        :func:`sample_priority`.
    budget : int
        The most points to send.

    Returns
    -------
    ndarray (m,), int64
        Point indices, ascending; m = min(inside.sum(), budget).
    """
    idx = np.flatnonzero(inside)
    if len(idx) <= budget:
        return idx
    keep = np.argpartition(priority[idx], budget - 1)[:budget] if budget > 0 else np.zeros(0, np.int64)
    return np.sort(idx[keep])
