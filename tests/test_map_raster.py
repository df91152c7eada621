"""A large map drawn as a raster plus a sample: the pixels, the view, the sample, the
selection of every point inside a lasso or box, and the figure on a real project."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from labeler.app import map_raster as mr
from labeler.app.map_select import points_in_box, points_in_polygon, selected_points
from labeler.config import save_setting
from labeler.errors import BadInputError


def decode_png(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGBA"))


def decode(spec) -> np.ndarray:
    dt = {"u1": np.uint8, "u2": np.uint16, "i4": np.int32, "f4": np.float32}[spec["dtype"]]
    return np.frombuffer(base64.b64decode(spec["bdata"]), dtype=dt)


PALETTE = np.array([[1.0, 0.0, 0.0, 1.0], [0.0, 0.5, 1.0, 0.35], [0.2, 0.8, 0.2, 0.5]])


def test_pixels_take_the_colour_and_alpha_of_their_points_code():
    view = mr.View((0.0, 10.0), (0.0, 5.0), 10, 5)  # one pixel per unit
    xy = np.array([[0.5, 4.5],    # top-left pixel (row 0, col 0)
                   [9.5, 0.5],    # bottom-right pixel
                   [3.5, 2.5],    # row 2, col 3
                   [6.5, 1.5], [6.6, 1.4]])  # two points of code 2 on one pixel (row 3, col 6)
    codes = np.array([0, 1, 1, 2, 2], dtype=np.uint8)
    img = mr.render_rgba(xy, codes, PALETTE, view)
    assert img.shape == (5, 10, 4) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == (255, 0, 0, 255)  # alpha 1 (capped at 0.999 -> 255)
    assert tuple(img[4, 9]) == (0, 128, 255, 89)  # 0.35 * 255
    assert tuple(img[2, 3]) == (0, 128, 255, 89)
    assert tuple(img[3, 6]) == (51, 204, 51, 191)  # two of alpha 0.5 composited: 1 - 0.5**2
    assert (img[..., 3] > 0).sum() == 4  # nothing else drawn


def test_mixed_colours_on_one_pixel_average_by_alpha():
    view = mr.View((0.0, 1.0), (0.0, 1.0), 1, 1)
    img = mr.render_rgba(np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([1, 2]), PALETTE, view)
    w = np.array([0.35, 0.5])
    expect = (w[:, None] * PALETTE[1:, :3]).sum(0) / w.sum()
    np.testing.assert_allclose(img[0, 0, :3], np.rint(255 * expect), atol=1)
    assert img[0, 0, 3] == round(255 * (1 - 0.65 * 0.5))


def test_the_raster_covers_its_view_and_a_zoomed_view_draws_only_the_points_inside():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, size=(5000, 2))
    codes = np.zeros(len(xy), np.uint8)
    full = mr.View((0.0, 100.0), (0.0, 100.0), 200, 200)
    # The view's corners are the image's: a point at (x0, y1) is pixel (0, 0).
    corner = mr.render_rgba(np.array([[0.0, 100.0], [100.0, 0.0]]), np.array([0, 0]), PALETTE, full)
    assert corner[0, 0, 3] == 255 and corner[-1, -1, 3] == 255 and (corner[..., 3] > 0).sum() == 2
    zoom = mr.View((20.0, 40.0), (60.0, 70.0), 100, 50)
    img = mr.render_rgba(xy, codes, PALETTE, zoom)
    inside = zoom.inside(xy)
    pix, pts = mr.pixel_index(xy, zoom)
    np.testing.assert_array_equal(np.sort(pts), np.flatnonzero(inside & (xy[:, 0] < 40) & (xy[:, 1] > 60)))
    assert (img[..., 3] > 0).sum() == len(np.unique(pix)) > 0
    # Each drawn point lands where its coordinates say.
    rows, cols = np.divmod(pix, zoom.width)
    np.testing.assert_array_less(np.abs(20 + (cols + 0.5) * 0.2 - xy[pts, 0]), 0.1 + 1e-9)
    np.testing.assert_array_less(np.abs(70 - (rows + 0.5) * 0.2 - xy[pts, 1]), 0.1 + 1e-9)


def test_a_spread_point_is_a_square():
    view = mr.View((0.0, 10.0), (0.0, 10.0), 10, 10)
    img = mr.render_rgba(np.array([[5.5, 4.5]]), np.array([0]), PALETTE, view, spread=3)
    rows, cols = np.nonzero(img[..., 3])
    assert sorted(set(rows)) == [4, 5, 6] and sorted(set(cols)) == [4, 5, 6]
    assert mr.spread_for(2.5) == 2 and mr.spread_for(7) == 3 and mr.spread_for(0.2) == 1


def test_png_round_trip_and_layout_image():
    img = mr.render_rgba(np.array([[1.0, 1.0]]), np.array([2]), PALETTE, mr.View((0.0, 4.0), (0.0, 3.0), 4, 3))
    uri = mr.png_data_uri(img)
    np.testing.assert_array_equal(decode_png(uri), img)
    entry = mr.layout_image(uri, mr.View((2.0, 6.0), (1.0, 4.0), 4, 3))
    assert (entry["x"], entry["y"], entry["sizex"], entry["sizey"]) == (2.0, 4.0, 4.0, 3.0)
    assert entry["layer"] == "below" and entry["xanchor"] == "left" and entry["yanchor"] == "top"


def test_view_from_the_page_and_its_fallback():
    default = mr.View((0.0, 1.0), (0.0, 1.0), 100, 100)
    v = mr.view_from({"x": [5, 2], "y": [1, 3], "w": 99999, "h": 3}, default)
    assert v == mr.View((2.0, 5.0), (1.0, 3.0), mr.MAX_RASTER_PX, 16)
    for bad in (None, {}, {"x": [1, 1], "y": [0, 1]}, {"x": ["a", 2], "y": [0, 1]}, {"x": [0, float("nan")],
                "y": [0, 1]}, "junk"):
        assert mr.view_from(bad, default) == default
    pv = mr.padded_view([0.0, 10.0], [0.0, 4.0], 800, 600, pad=0.25)
    assert pv.x == (-2.5, 12.5) and pv.y == (-5.5, 9.5) and pv.width == pv.height == 800  # a square, 1.5 x the span


def test_sample_is_bounded_deterministic_and_exact_when_the_view_holds_few_points():
    ids = np.arange(1, 10_001)
    prio = mr.sample_priority(ids)
    assert len(np.unique(prio)) == len(ids)
    inside = np.zeros(len(ids), bool)
    inside[::3] = True
    s = mr.sample_points(inside, prio, 500)
    assert len(s) == 500 and inside[s].all() and (np.diff(s) > 0).all()
    np.testing.assert_array_equal(s, mr.sample_points(inside, prio, 500))
    # the lowest priorities among the points inside
    assert prio[s].max() < np.sort(prio[inside])[500]
    few = np.zeros(len(ids), bool)
    few[10:40] = True
    np.testing.assert_array_equal(mr.sample_points(few, prio, 500), np.arange(10, 40))
    # A point keeps its priority when other images are added.
    np.testing.assert_array_equal(mr.sample_priority(np.arange(1, 20_001))[:10_000], prio)


# -- selection over every point ------------------------------------------------------------


def test_box_and_lasso_select_exactly_the_points_inside():
    xy = np.array([[0, 0], [1, 1], [2, 2], [3, 3], [1, 3], [3, 1], [5, 5]], dtype=np.uint16)
    np.testing.assert_array_equal(points_in_box(xy, (1, 3), (3, 1)), [1, 2, 3, 4, 5])  # edges included
    np.testing.assert_array_equal(points_in_box(xy, (4, 6), (4, 6)), [6])
    # A concave (L-shaped) lasso: (3, 3) lies in its notch, (1, 3) and (3, 1) in its arms.
    lasso = {"x": [0.5, 3.5, 3.5, 2.5, 2.5, 0.5], "y": [0.5, 0.5, 2.5, 2.5, 3.5, 3.5]}
    np.testing.assert_array_equal(points_in_polygon(xy, lasso["x"], lasso["y"]), [1, 2, 4, 5])
    np.testing.assert_array_equal(selected_points(xy, {"lassoPoints": lasso, "range": None}), [1, 2, 4, 5])
    np.testing.assert_array_equal(selected_points(xy, {"lassoPoints": None, "range": {"x": [4, 6], "y": [4, 6]}}),
                                  [6])
    assert selected_points(xy, None) is None and selected_points(xy, {"points": []}) is None
    assert len(points_in_polygon(xy, [10, 11, 11], [10, 10, 11])) == 0


def test_a_lasso_at_scale_matches_a_brute_force_count():
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 1000, size=(200_000, 2))
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    r = 150 + 60 * np.sin(5 * t)  # a star: concave
    px, py = 500 + r * np.cos(t), 400 + r * np.sin(t)
    got = points_in_polygon(xy, px, py)
    # even-odd ray casting, written out
    inside = np.zeros(len(xy), bool)
    for i in range(len(px)):
        x0, y0, x1, y1 = px[i - 1], py[i - 1], px[i], py[i]
        cross = ((y0 > xy[:, 1]) != (y1 > xy[:, 1])) & (xy[:, 0] < (x1 - x0) * (xy[:, 1] - y0) / (y1 - y0) + x0)
        inside ^= cross
    np.testing.assert_array_equal(got, np.flatnonzero(inside))
    assert 5_000 < len(got) < 30_000


def test_shift_selected_shapes_select_their_union():
    xy = np.array([[0, 0], [1, 1], [2, 2], [3, 3], [1, 3], [3, 1], [5, 5]], dtype=np.uint16)
    # Plotly's layout.selections after a lasso and a shift-box: an SVG path and a rect.
    lasso = {"path": "M0.5,0.5L2.5,0.5L2.5,2.5L0.5,2.5Z"}  # (1, 1) and (2, 2)
    box = {"range": {"x": [4, 6], "y": [6, 4]}}  # (5, 5)
    sel = {"lassoPoints": {"x": [4, 6, 6], "y": [4, 4, 6]}, "shapes": [lasso, box]}  # the last shape alone
    np.testing.assert_array_equal(selected_points(xy, sel), [1, 2, 6])
    np.testing.assert_array_equal(selected_points(xy, {"shapes": [lasso, lasso]}), [1, 2])  # no duplicates


@pytest.mark.parametrize("bad", [{"lassoPoints": {"x": [1, 2], "y": [1, 2]}},
                                 {"lassoPoints": {"x": [1, 2, 3], "y": [1, 2]}},
                                 {"range": {"x": [1]}}, {"range": {"x": ["a", 2], "y": [0, 1]}},
                                 {"shapes": [{"path": "M1,2L3,4L5Z"}]}, {"shapes": [{"path": "M1,2L3,4Z"}]},
                                 {"shapes": ["M1,2L3,4L5,6Z"]}])
def test_a_malformed_shape_is_refused(bad):
    with pytest.raises(BadInputError):
        selected_points(np.zeros((3, 2)), bad)


# -- the figure on a real project -------------------------------------------------------------


@pytest.fixture()
def raster_actx(project):
    from labeler.app import create_app

    save_setting(project.settings_path, "map_raster_threshold", 20)
    save_setting(project.settings_path, "map_sample_points", 25)
    return create_app(project).labeler


def test_a_small_map_is_drawn_point_by_point(project):
    from labeler.app import create_app
    from labeler.app.views import map_figure

    fig = map_figure(create_app(project).labeler)
    assert fig["layout"]["images"] == [] and "raster" not in fig["layout"]["meta"]
    assert decode(fig["data"][0]["x"]).size == create_app(project).labeler.n_points


def test_raster_figure_agrees_with_its_sampled_points(raster_actx):
    from labeler.app import views

    actx = raster_actx
    fig = views.map_figure(actx, views.COLOR_BY_CLUSTER)
    assert fig["layout"]["meta"]["raster"] is True
    trace = fig["data"][0]
    ids = np.array(trace["customdata"])
    assert len(ids) == 25 and len(set(ids)) == 25 and set(ids) <= set(actx.point_ids.tolist())
    assert views.point_image_id(actx, {"curveNumber": 0, "pointNumber": 3, "customdata": int(ids[3])}) == ids[3]
    assert views.point_image_id(actx, {"curveNumber": 0, "pointNumber": 3}) is None  # a sample index alone
    pos = actx.positions(ids)
    grid = views.grid_xy(actx)
    np.testing.assert_array_equal(decode(trace["x"]), grid[pos, 0])
    np.testing.assert_array_equal(decode(trace["y"]), grid[pos, 1])
    # The raster: every point, each pixel in the colour of its code, alpha of its state.
    image = fig["layout"]["images"][0]
    img = decode_png(image["source"])
    view = mr.View((image["x"], image["x"] + image["sizex"]), (image["y"] - image["sizey"], image["y"]),
                   img.shape[1], img.shape[0])
    d = views.default_view(actx)
    assert view.x == pytest.approx(d.x) and view.y == pytest.approx(d.y) and (view.width, view.height) == (
        d.width, d.height)
    lo, hi = views.map_range(grid)
    assert view.x[0] <= lo[0] and view.x[1] >= lo[1] and view.y[0] <= hi[0] and view.y[1] >= hi[1]
    codes = decode(trace["marker"]["color"])
    scale = trace["marker"]["colorscale"]
    pix, pts = mr.pixel_index(grid, view)
    assert len(pts) == actx.n_points  # the first view holds every point here
    spread = mr.spread_for(trace["marker"]["size"])
    cover = np.zeros(img.shape[:2], int)
    r, c = np.divmod(pix, view.width)
    for dr in range(-(spread // 2), spread - spread // 2):
        for dc in range(-(spread // 2), spread - spread // 2):
            np.add.at(cover, (np.clip(r + dr, 0, view.height - 1), np.clip(c + dc, 0, view.width - 1)), 1)
    alone = 0
    for k, i in enumerate(pos):  # a sampled point whose pixel no other point covers
        j = int(np.flatnonzero(pts == i)[0])
        if cover[r[j], c[j]] != 1:
            continue
        alone += 1
        colour = scale[2 * int(codes[k])][1]  # 'rgba(r,g,b,a)' of the point's code
        want = [float(v) for v in colour[5:-1].split(",")]
        got = img[r[j], c[j]]
        np.testing.assert_allclose(got[:3], want[:3], atol=1)
        assert abs(int(got[3]) - round(255 * min(want[3], mr.MAX_ALPHA))) <= 1
    assert alone >= 3
    assert (img[..., 3] > 0).sum() >= len(np.unique(pix))


def test_a_zoomed_view_sends_every_point_inside_and_hides_the_raster(raster_actx):
    from labeler.app import views

    actx = raster_actx
    grid = views.grid_xy(actx).astype(np.float64)
    centre = np.median(grid, axis=0)
    order = np.argsort(np.abs(grid - centre).max(axis=1))
    half = np.abs(grid[order[11]] - centre).max() + 0.5  # a square holding the 12 nearest points
    view = {"x": [centre[0] - half, centre[0] + half], "y": [centre[1] - half, centre[1] + half], "w": 300, "h": 300}
    parts = views.raster_parts(actx, views.COLOR_BY_LABEL, view=view)
    inside = mr.View(tuple(view["x"]), tuple(view["y"]), 300, 300).inside(grid)
    np.testing.assert_array_equal(parts["sample"], np.flatnonzero(inside))
    assert parts["image"]["visible"] is False
    # A wider view holds more than the sample: a raster of that view, the sample inside it.
    wide = {"x": [grid[:, 0].min() - 1, grid[:, 0].max() + 1], "y": [grid[:, 1].min() - 1, grid[:, 1].max() + 1],
            "w": 320, "h": 200}
    parts = views.raster_parts(actx, views.COLOR_BY_LABEL, view=wide)
    assert len(parts["sample"]) == 25 and parts["image"]["visible"] is True
    assert decode_png(parts["image"]["source"]).shape == (200, 320, 4)
    patch = views.recolor_patch(actx, views.COLOR_BY_LABEL, view=wide).to_plotly_json()
    where = {tuple(op["location"]) for op in patch["operations"]}
    assert ("layout", "images") in where and ("data", 0, "marker", "color") in where
    assert ("data", 0, "customdata") not in where  # a recolour keeps the page's sample
    moved = views.view_patch(actx, views.COLOR_BY_LABEL, view=wide).to_plotly_json()
    assert ("data", 0, "customdata") in {tuple(op["location"]) for op in moved["operations"]}


def test_fit_all_view_covers_every_point(raster_actx):
    from labeler.app import views

    grid = views.grid_xy(raster_actx)
    v = mr.view_from(views.fit_all_view(raster_actx, {"x": [0, 1], "y": [0, 1], "w": 640, "h": 480}), None)
    assert v.inside(grid).all() and v.width == v.height == 640


def test_the_raster_is_rendered_again_only_when_its_pixels_can_differ(raster_actx):
    from labeler.app import views

    actx = raster_actx  # create_app rendered the first view already (views.warm_map)
    first = views.raster_parts(actx, views.COLOR_BY_CLUSTER)["image"]
    assert views.raster_parts(actx, views.COLOR_BY_CLUSTER)["image"] is first
    opened = views.raster_parts(actx, views.COLOR_BY_CLUSTER, cluster=0)["image"]  # other points dimmed
    assert opened["source"] != first["source"]
    by_label = views.raster_parts(actx, views.COLOR_BY_LABEL)["image"]  # nothing labelled: other colours
    assert by_label["source"] not in (first["source"], opened["source"])
    again = views.raster_parts(actx, views.COLOR_BY_CLUSTER)["image"]
    assert again is not first and again == first


def test_a_shape_selects_the_image_ids_of_every_point_inside(raster_actx):
    from labeler.app import views

    actx = raster_actx
    grid = views.grid_xy(actx).astype(np.float64)
    lo, hi = grid.min(axis=0), grid.max(axis=0)
    everything = {"range": {"x": [float(lo[0]), float(hi[0])], "y": [float(lo[1]), float(hi[1])]}}
    assert sorted(views.shape_image_ids(actx, everything)) == sorted(actx.point_ids.tolist())
    assert views.shape_image_ids(actx, None) is None and views.shape_image_ids(actx, {"points": []}) is None
    with pytest.raises(BadInputError):
        views.shape_image_ids(actx, {"range": {"x": [1]}})
