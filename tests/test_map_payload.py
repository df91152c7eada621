"""The map figure at scale: binary (typed-array) coordinates and colours, ids as runs."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from labeler.app import views


class _Ctx:
    """The attributes of AppContext the map payload functions read."""

    def __init__(self, ids, xy):
        self.point_ids = np.asarray(ids, dtype=np.int64)
        self.xy = np.asarray(xy, dtype=np.float32)

    @property
    def n_points(self):
        return len(self.point_ids)


def decode(spec):
    dt = {"u1": np.uint8, "u2": np.uint16, "i4": np.int32, "f4": np.float32}[spec["dtype"]]
    return np.frombuffer(base64.b64decode(spec["bdata"]), dtype=dt)


@pytest.mark.parametrize("ids", [np.arange(1, 1001), np.r_[np.arange(5, 505), np.arange(900, 1400)[::-1]],
                                 np.random.default_rng(0).permutation(1000) + 10])
def test_id_runs_round_trip(ids):
    runs = views.id_runs(ids)
    np.testing.assert_array_equal(views.decode_id_runs(runs, len(ids)), ids)
    if (np.diff(ids) == 1).all():
        assert runs == [[0, int(ids[0])]]  # a contiguous collection: one pair for every point


def test_grid_coordinates_and_event_ids():
    rng = np.random.default_rng(1)
    ctx = _Ctx(np.arange(100, 2100), rng.normal(scale=5, size=(2000, 2)))
    g = views.to_grid(ctx, ctx.xy)
    assert g.min() == pytest.approx(0) and g.max() == pytest.approx(views.GRID)
    # Back to map units: the uint16 rounding is below 1/65535 of the extent.
    lo, step = views._grid_frame(ctx)
    q = np.rint(g).astype(np.uint16)
    np.testing.assert_allclose(q * step + lo, ctx.xy, atol=step.max())
    assert views.point_image_id(ctx, {"curveNumber": 0, "pointIndex": 7}) == 107
    assert views.point_image_id(ctx, {"curveNumber": 0, "pointNumber": 1999}) == 2099
    assert views.point_image_id(ctx, {"curveNumber": 1, "pointIndex": 0}) is None  # the query star
    assert views.point_image_id(ctx, {"curveNumber": 0, "pointIndex": 2000}) is None
    assert views.point_image_id(ctx, {"curveNumber": 0, "customdata": [55]}) == 55
    star = views.query_marker_patch(ctx, (float(ctx.xy[3, 0]), float(ctx.xy[3, 1]))).to_plotly_json()
    assert json.dumps(star)  # plain numbers
    xs = [op["params"]["value"] for op in star["operations"] if op["location"] == ["data", 1, "x"]]
    assert xs and xs[0][0] == pytest.approx(g[3, 0])


def test_map_figure_is_binary(actx):
    fig = views.map_figure(actx)
    trace = fig["data"][0]
    assert trace["x"]["dtype"] == trace["y"]["dtype"] == "u2" and trace["marker"]["color"]["dtype"] in ("u1", "u2")
    x, y = decode(trace["x"]), decode(trace["y"])
    assert len(x) == len(y) == actx.n_points
    np.testing.assert_allclose(np.c_[x, y], views.to_grid(actx, actx.xy), atol=0.51)
    np.testing.assert_array_equal(views.decode_id_runs(fig["layout"]["meta"]["id_runs"], actx.n_points),
                                  actx.point_ids)
    assert "customdata" not in trace
    # The page's JSON has no per-point number lists: about 2 bytes per coordinate.
    size = len(json.dumps(fig))
    assert size < 8 * actx.n_points + 20_000


@pytest.fixture()
def actx(project):
    from labeler.app import create_app

    return create_app(project).labeler
