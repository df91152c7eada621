"""End-to-end, in headless Chromium: a map above ``map_raster_threshold`` points (forced
low on the small real project) is drawn as a raster plus a sample, the raster where
its data coordinates say; a lasso selects every point inside it, sampled or not, and
real Shift+Alt / Alt lasso drags and a lasso path with a hole select what Plotly itself
selects; a click on a sampled point opens that image and a hover shows its card;
zooming in until the view holds few points sends them all and hides the raster."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("selenium")
from browser_helpers import ServerThread, map_drawn_js, text_of, wait_until  # noqa: E402
from test_app_browser import download_dir, driver  # noqa: E402,F401 (the shared browser fixtures)
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from labeler.app import create_app  # noqa: E402
from labeler.app.map_select import path_rings, points_in_box, points_in_polygon  # noqa: E402
from labeler.app.views import grid_xy  # noqa: E402
from labeler.config import save_setting  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning:selenium.*")]

GRAPH_JS = "document.querySelector('#map .js-plotly-plot')"
SAMPLE = 25


@pytest.fixture()
def raster_served(project):
    save_setting(project.settings_path, "map_raster_threshold", 20)
    save_setting(project.settings_path, "map_sample_points", SAMPLE)
    app = create_app(project)
    with ServerThread(app.server) as srv:
        yield srv, app


def _open(driver, srv, app):
    driver.get(srv.url)
    box = wait_until(lambda: driver.find_element(By.ID, "name-input"), what="name dialog")
    wait_until(lambda: box.is_displayed(), what="name dialog shown")
    box.send_keys("rasta")
    driver.find_element(By.ID, "name-save").click()
    wait_until(lambda: not driver.find_element(By.ID, "name-dialog").is_displayed(), what="dialog closed")
    wait_until(lambda: driver.execute_script(map_drawn_js(app.labeler.n_points)), what="raster and sample drawn")


def test_raster_map_lasso_click_and_zoom(driver, raster_served, project):
    srv, app = raster_served
    actx = app.labeler
    assert actx.n_points > 20
    _open(driver, srv, app)
    state = driver.execute_script(f"""const g = {GRAPH_JS}; const im = g.querySelector('.imagelayer image');
        return {{n: g._fullData[0]._length, raster: g.layout.meta.raster, ids: g.data[0].customdata,
                 img: !!im && im.getBoundingClientRect().width > 100}}""")
    assert state["raster"] is True and state["n"] == SAMPLE and state["img"]
    # The raster lies where its data coordinates say: its box is the axes' image of its extent.
    box = driver.execute_script(f"""const g = {GRAPH_JS}, fl = g._fullLayout, xa = fl.xaxis, ya = fl.yaxis;
        const im = g.layout.images[0], r = g.querySelector('.imagelayer image').getBoundingClientRect();
        const gr = g.getBoundingClientRect();
        return [[r.left - gr.left, r.top - gr.top, r.right - gr.left, r.bottom - gr.top],
                [xa._offset + xa.l2p(im.x), ya._offset + ya.l2p(im.y),
                 xa._offset + xa.l2p(im.x + im.sizex), ya._offset + ya.l2p(im.y - im.sizey)]]""")
    np.testing.assert_allclose(box[0], box[1], atol=1.0)
    assert len(set(state["ids"])) == SAMPLE and set(state["ids"]) <= set(actx.point_ids.tolist())

    # A lasso around the middle of the map: a triangle holding about half the points. The event
    # lists only the sampled points inside, as Plotly's would; the server tests every point.
    grid = grid_xy(actx).astype(np.float64)
    lo, hi = grid.min(axis=0), grid.max(axis=0)
    mid = (lo + hi) / 2
    px = [float(lo[0] - 1), float(hi[0] + 1), float(mid[0])]
    py = [float(lo[1] - 1), float(lo[1] - 1), float(hi[1] + 1)]
    truth = points_in_polygon(grid, px, py)
    assert 0 < len(truth) < actx.n_points
    sampled = [i for i, v in enumerate(state["ids"]) if int(actx.positions([v])[0]) in set(truth.tolist())]
    assert len(sampled) < len(truth)  # the sample alone would undercount
    driver.execute_script(f"""
        const g = {GRAPH_JS};
        const pts = {sampled}.map(i => ({{curveNumber: 0, pointNumber: i, pointIndex: i,
            x: g._fullData[0].x[i], y: g._fullData[0].y[i]}}));
        g.emit('plotly_selected', {{points: pts, lassoPoints: {{x: {px}, y: {py}}}}});
    """)
    wait_until(lambda: f"{len(truth)} images selected" in text_of(driver, "#selection-title"),
               what=f"{len(truth)} selected (last: {text_of(driver, '#selection-title')!r})")
    shown = [int(b.get_attribute("id").split('"id":')[1].split(",")[0].strip(" }"))
             for b in driver.find_elements(By.CSS_SELECTOR, "#selection-grid .thumb-btn")]
    assert shown and set(shown) <= set(actx.point_ids[truth].tolist())

    # Shift + a box over the top-right quarter: Plotly keeps both shapes in layout.selections and
    # its event carries only the box; the union of the two is selected.
    bx, by = [float(mid[0]), float(hi[0] + 1)], [float(mid[1]), float(hi[1] + 1)]
    union = np.union1d(truth, points_in_box(grid, bx, by))
    assert len(union) > len(truth)
    path = "M" + "L".join(f"{x},{y}" for x, y in zip(px, py)) + "Z"
    driver.execute_script(f"""
        const g = {GRAPH_JS};
        Plotly.relayout(g, {{selections: [
            {{type: 'path', xref: 'x', yref: 'y', path: '{path}'}},
            {{type: 'rect', xref: 'x', yref: 'y', x0: {bx[0]}, x1: {bx[1]}, y0: {by[0]}, y1: {by[1]}}}]}})
        .then(() => g.emit('plotly_selected', {{points: [], range: {{x: {bx}, y: {by}}}}}));
    """)
    wait_until(lambda: f"{len(union)} images selected" in text_of(driver, "#selection-title"),
               what=f"{len(union)} selected by two shapes (last: {text_of(driver, '#selection-title')!r})")

    _subtract_and_holes(driver, actx, grid, state["ids"])

    # A click on a sampled point opens that image (its id from customdata, not its index).
    k = 7
    clicked = int(state["ids"][k])
    driver.execute_script(f"{GRAPH_JS}.emit('plotly_click', {{points: [{{curveNumber: 0, pointNumber: {k}}}]}})")
    wait_until(lambda: f"#{clicked} ·" in text_of(driver, "#search-query"), what="clicked image opened")
    # Hovering a sampled point shows that image's card.
    k = 11
    hovered = int(state["ids"][k])
    driver.execute_script(f"""{GRAPH_JS}.emit('plotly_hover', {{points: [{{curveNumber: 0, pointNumber: {k},
        bbox: {{x0: 100, x1: 104, y0: 100, y1: 104}}}}]}})""")
    wait_until(lambda: f"#{hovered} ·" in text_of(driver, "#map-tooltip"), what="hover card of the sampled point")

    # Zoom to a box holding the 10 points nearest the centre: the page reports its view, the
    # server sends every point inside it and hides the raster.
    centre = [float(v) for v in np.median(grid, axis=0)]
    half = float(np.sort(np.abs(grid - centre).max(axis=1))[9] + 0.5)
    driver.execute_script(f"""Plotly.relayout({GRAPH_JS}, {{'xaxis.range': [{centre[0] - half}, {centre[0] + half}],
        'yaxis.range': [{centre[1] - half}, {centre[1] + half}]}})""")
    wait_until(lambda: driver.execute_script(
        f"const g = {GRAPH_JS}; return g.layout.images[0].visible === false"), what="raster hidden after zoom")
    got = driver.execute_script(f"""const g = {GRAPH_JS}; const fl = g._fullLayout;
        return {{ids: g.data[0].customdata, x: fl.xaxis.range, y: fl.yaxis.range}}""")
    inside = ((grid[:, 0] >= got["x"][0]) & (grid[:, 0] <= got["x"][1])
              & (grid[:, 1] >= got["y"][0]) & (grid[:, 1] <= got["y"][1]))
    assert 10 <= inside.sum() <= SAMPLE
    assert sorted(got["ids"]) == sorted(actx.point_ids[inside].tolist())


def _drag(driver, corners, keys=()):
    """A real lasso drag through ``corners`` (viewport pixels), holding ``keys``."""
    ab = ActionBuilder(driver, duration=40)
    for k in keys:
        ab.key_action.key_down(k)
    ab.pointer_action.move_to_location(*corners[0])
    ab.pointer_action.pointer_down()
    for c in corners[1:] + corners[:1]:
        ab.pointer_action.move_to_location(*c)
    ab.pointer_action.pointer_up()
    for k in reversed(keys):
        ab.key_action.key_up(k)
    ab.perform()


def _plotly_selected_ids(driver) -> set[int]:
    """The sampled points Plotly itself marks selected (its own semantics), as image ids."""
    return set(driver.execute_script(f"""const g = {GRAPH_JS}, sp = g.data[0].selectedpoints || [];
        return sp.map(i => g.data[0].customdata[i]);"""))


def _subtract_and_holes(driver, actx, grid, sample_ids):
    """Real lasso drags with Shift+Alt and Alt, then a lasso path with a hole set as Plotly
    stores one: each time the dashboard selects what Plotly's own semantics select (checked
    on the sampled points against Plotly's selectedpoints) on every point."""
    lo, hi = grid.min(axis=0), grid.max(axis=0)
    ids = actx.point_ids
    sample = set(int(v) for v in sample_ids)
    to_px = driver.execute_script(f"""const g = {GRAPH_JS}, fl = g._fullLayout, r = g.getBoundingClientRect();
        return [r.left + fl.xaxis._offset + fl.xaxis.l2p(0), (fl.xaxis.l2p(1e6) - fl.xaxis.l2p(0)) / 1e6,
                r.top + fl.yaxis._offset + fl.yaxis.l2p(0), (fl.yaxis.l2p(1e6) - fl.yaxis.l2p(0)) / 1e6]""")

    def px(u, v):  # a fraction of the points' extent -> viewport pixels
        x, y = lo + (hi - lo) * np.array([u, v])
        return [int(round(to_px[0] + to_px[1] * x)), int(round(to_px[2] + to_px[3] * y))]

    def stored():
        return driver.execute_script(f"return JSON.parse(JSON.stringify({GRAPH_JS}.layout.selections || []))")

    def inside(sel) -> set[int]:
        (ring,) = path_rings(sel["path"])
        return set(points_in_polygon(grid, ring[:, 0], ring[:, 1]).tolist())

    def check(truth: set[int], what: str):
        wait_until(lambda: f"{len(truth)} images selected" in text_of(driver, "#selection-title"),
                   what=f"{len(truth)} selected after {what} (last: {text_of(driver, '#selection-title')!r})")
        want = set(ids[sorted(truth)].tolist()) & sample
        assert _plotly_selected_ids(driver) == want, what  # Plotly, on the sample, agrees

    # Shapes are placed from the points themselves (each point's fraction of the extent), so the
    # test holds whatever layout UMAP gives the 80 photos.
    f = (grid - lo) / (hi - lo)

    def around(rows, pad=0.03):
        """The corners (fractions) of a box round the points ``rows``."""
        (u0, v0), (u1, v1) = f[list(rows)].min(axis=0) - pad, f[list(rows)].max(axis=0) + pad
        return [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]

    def bite(chosen):
        """A point of ``chosen`` and the nearest point outside it: a box round both bites the
        selection and adds to it."""
        inn, out = sorted(chosen), [i for i in range(len(f)) if i not in chosen]
        d = np.linalg.norm(f[inn][:, None] - f[out][None], axis=2)
        a, b = np.unravel_index(np.argmin(d), d.shape)
        return [inn[a], out[b]]

    def outside(corners, *shapes):
        """The corners turned so that the drag starts outside every stored shape (a drag that
        starts inside one moves it instead of drawing)."""
        for k in range(len(corners)):
            x, y = lo + (hi - lo) * np.array(corners[k])
            if not any(len(points_in_polygon(np.array([[x, y]]), r[:, 0], r[:, 1]))
                       for sh in shapes for r in path_rings(sh["path"])):
                return corners[k:] + corners[:k]
        raise AssertionError("every corner lies inside a stored shape")

    # A plain lasso around the top right (whatever points lie there), starting outside the earlier shapes.
    # A plain lasso around the top right, starting outside the earlier shapes (a drag starting
    # inside one moves it): Plotly replaces them with this one path (no Z).
    before = text_of(driver, "#selection-title")
    _drag(driver, [px(-0.08, 1.03), px(1.08, 1.03), px(1.08, 0.65), px(0.6, 0.65), px(0.3, 0.9)])
    wait_until(lambda: len(stored()) == 1 and stored()[0]["type"] == "path", what="one lasso stored")
    p = inside(stored()[0])
    assert f"{len(p)} images selected" not in before and 0 < len(p) < actx.n_points
    check(p, "a lasso")
    # Shift+Alt + a lasso biting it: with newselection.mode 'immediate' (Plotly's default, the
    # app's) Plotly appends the raw shape and selects the UNION; Alt does not subtract.
    _drag(driver, [px(*c) for c in outside(around(bite(p)), stored()[0])], keys=(Keys.SHIFT, Keys.ALT))
    wait_until(lambda: len(stored()) == 2, what="the second lasso appended")
    q = inside(stored()[1])
    assert p & q and q - p and len(p | q) != len(p)
    check(p | q, "Shift+Alt + a lasso")
    # Alt alone starts a new selection: Plotly keeps only the new lasso.
    far = int(np.argmax(np.linalg.norm(f - f[sorted(p | q)].mean(axis=0), axis=1)))
    _drag(driver, [px(*c) for c in outside(around([far]), *stored())], keys=(Keys.ALT,))
    wait_until(lambda: len(stored()) == 1 and stored()[0]["path"] != "", what="Alt + a lasso alone stored")
    r = inside(stored()[0])
    assert r and len(r) != len(p | q)
    check(r, "Alt + a lasso")

    # Set, as Plotly.relayout would: a box, then a lasso path of two rings, the second inside the
    # first, so a hole (Plotly stores such a path for the merged outline of a selection made with
    # newselection.mode 'gradual'; a drag in the app's 'immediate' mode never makes one), then a
    # strip. Plotly merges them in order: the hole takes points from the earlier box too, the
    # strip adds some back. Plotly emits its own plotly_selected after the relayout (with the
    # active shape's lassoPoints or range, or none: the page sends layout.selections).
    def frac(corners):
        return lo + (hi - lo) * np.array(corners, dtype=np.float64)

    def ring(corners):
        return "M" + "L".join(f"{x},{y}" for x, y in frac(corners)) + "Z"

    # The box round the first lasso's points; the ring round them with a hole round one of them
    # (h); the strip round the point farthest from h.
    pts = sorted(p)
    h = pts[0]
    far_h = pts[int(np.argmax(np.linalg.norm(f[pts] - f[h], axis=1)))]
    (ax0, ay0), _, (ax1, ay1), _ = frac(around(pts, 0.01))
    outer, hole = around(pts, 0.05), around([h], 0.004)
    (bx0, by0), _, (bx1, by1), _ = frac(around([far_h], 0.004))
    driver.execute_script(f"""Plotly.relayout({GRAPH_JS}, {{selections: [
        {{type: 'rect', xref: 'x', yref: 'y', x0: {ax0}, x1: {ax1}, y0: {ay0}, y1: {ay1}}},
        {{type: 'path', xref: 'x', yref: 'y', path: '{ring(outer) + ring(hole)}'}},
        {{type: 'rect', xref: 'x', yref: 'y', x0: {bx0}, x1: {bx1}, y0: {by0}, y1: {by1}}}]}})""")
    in_outer, in_hole = (set(points_in_polygon(grid, c[:, 0], c[:, 1]).tolist()) for c in map(frac, (outer, hole)))
    box1, strip = (set(points_in_box(grid, bx, by).tolist()) for bx, by in (((ax0, ax1), (ay0, ay1)),
                                                                           ((bx0, bx1), (by0, by1))))
    truth = ((box1 | in_outer) - in_hole) | strip
    assert (box1 & in_hole) - strip and len(truth) != len(r)  # the hole takes from the box; a new count
    check(truth, "a box, a path with a hole, a strip")
