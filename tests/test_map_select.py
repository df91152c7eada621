"""Plotly's own semantics of several selection shapes, reproduced on the server: the
rings of a lasso path, holes and islands, and the order of ``layout.selections``.

Each case below is what plotly.js 4.1.1 (the bundle in labeler/app/assets) stored in
``layout.selections`` or was given by ``Plotly.relayout``, on a 20 x 20 grid of points
at (i + 0.5, j + 0.5), with the number of points Plotly itself then selected (its
``plotly_selected`` event and ``selectedpoints``, recorded in headless Chromium); the
expected sets are written out as set algebra on boxes of the grid."""

from __future__ import annotations

import numpy as np
import pytest

from labeler.app import map_select as ms
from labeler.errors import BadInputError

XY = np.array([(i + 0.5, j + 0.5) for i in range(20) for j in range(20)])


def box(x0, y0, x1, y1) -> set[int]:
    """The grid points strictly inside a box."""
    return {k for k, (x, y) in enumerate(XY) if x0 < x < x1 and y0 < y < y1}


def ring(*corners) -> str:
    return "M" + "L".join(f"{x},{y}" for x, y in corners) + "Z"


A = ring((2, 2), (12, 2), (12, 12), (2, 12))      # 100 points
H = ring((5, 5), (9, 5), (9, 9), (5, 9))          # 16 points, inside A
I = ring((6, 6), (8, 6), (8, 8), (6, 8))          # 4 points, inside H
C = ring((18, 6), (8, 6), (8, 18), (18, 18))      # one corner inside A: bites it
D = ring((14, 14), (18, 14), (18, 18), (14, 18))  # apart from A
SA, SH, SI, SC, SD = box(2, 2, 12, 12), box(5, 5, 9, 9), box(6, 6, 8, 8), box(8, 6, 18, 18), box(14, 14, 18, 18)


def rect(x0, y0, x1, y1):
    return {"range": {"x": [x0, x1], "y": [y0, y1]}}


# (layout.selections as the page sends them, the points Plotly selected, their count as Plotly reported it)
CASES = {
    "one lasso, as a drag stores it (no Z)": ([{"path": "M2,2L12,2L12,12L2,12L2,2"}], SA, 100),
    "a hole": ([{"path": A + H}], SA - SH, 84),
    "a hole and an island in it": ([{"path": A + H + I}], (SA - SH) | SI, 88),
    "a ring with one vertex inside an earlier ring subtracts all of it": ([{"path": A + C}], SA - SC, 76),
    "rings apart add": ([{"path": A + D}], SA | SD, 116),
    "the inner ring first: no ring holds an earlier one's vertex": ([{"path": H + A}], SA, 100),
    "a ring subtracts only within its own path": ([{"path": A}, {"path": H}], SA, 100),
    "a later box adds back": ([{"path": A + H}, rect(5, 5, 9, 9)], SA, 100),
    "a later hole takes from an earlier box": ([rect(5, 5, 9, 9), {"path": A + H}], SA - SH, 84),
    "a box, then a bitten lasso": ([rect(0, 0, 20, 4), {"path": A + C}], box(0, 0, 20, 4) | (SA - SC), 136),
    "rings separated by a space": ([{"path": A + " " + H}], SA - SH, 84),
    "shift + a second lasso and a box: their union": (
        [{"path": A}, {"path": "M17,17L8,17L8,8L17,8L17,17"}, rect(14, 1, 18, 5)],
        SA | box(8, 8, 17, 17) | box(14, 1, 18, 5), 181),
}


@pytest.mark.parametrize("name", list(CASES))
def test_shapes_select_what_plotly_selects(name):
    shapes, expected, plotly_count = CASES[name]
    assert len(expected) == plotly_count  # the set written here is the one Plotly selected
    got = ms.selected_points(XY, {"lassoPoints": {"x": [0, 1, 1], "y": [0, 0, 1]}, "shapes": shapes})
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, sorted(expected))


def test_a_point_follows_the_last_polygon_that_holds_it():
    # Three nested rings make hole then island; a fourth, later path re-adds part of the hole.
    shapes = [{"path": A + H + I}, {"path": ring((5, 5), (6, 5), (6, 9), (5, 9))}]
    got = set(ms.selected_points(XY, {"shapes": shapes}).tolist())
    assert got == (SA - SH) | SI | box(5, 5, 6, 9)


def test_path_rings_and_which_subtract():
    rings = ms.path_rings(A + H + " " + I + "M 1e1,-2 L3.5,4 L5,5")
    assert [r.shape for r in rings] == [(4, 2), (4, 2), (4, 2), (3, 2)]
    assert all(r.dtype == np.float64 for r in rings)
    np.testing.assert_array_equal(rings[3], [[10.0, -2.0], [3.5, 4.0], [5.0, 5.0]])
    np.testing.assert_array_equal(ms.ring_subtracts(rings[:3]), [False, True, False])
    np.testing.assert_array_equal(ms.ring_subtracts(ms.path_rings(H + A)), [False, False])
    assert ms.ring_subtracts([]).shape == (0,)


def test_vertices_in_polygon_is_even_odd():
    star = np.array([[0, 0], [4, 0], [4, 4], [2, 1], [0, 4]], dtype=np.float64)  # concave: a notch at the top
    pts = np.array([[1, 0.5], [2, 2], [3.7, 3], [5, 1]], dtype=np.float64)
    np.testing.assert_array_equal(ms.vertices_in_polygon(pts, star), [True, False, True, False])


@pytest.mark.parametrize("path", ["M1,2L3,4Z", "M1,2L3,4L5Z", "M1,2 L3,4 L5,6 ZM1,1L2,2Z", "M1,2H3V4Z",
                                  "m1,2l3,4l5,6z"])
def test_a_malformed_path_is_refused(path):
    with pytest.raises(BadInputError):
        ms.path_rings(path)
    with pytest.raises(BadInputError):
        ms.selected_points(XY, {"shapes": [{"path": path}]})
