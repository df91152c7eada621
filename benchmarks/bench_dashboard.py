"""Dashboard at scale: page payload, label-action latency and recolour Patch size.

Builds a synthetic project (random clustered vectors written straight into a
Project: image rows through the store, pca.npy, map.npy, a clustering with
summaries; one tiny placeholder thumbnail) and measures the server side with
Flask's test client, no browser:

- the initial page payload: ``/_dash-layout`` (layout + map figure) plus the
  callback responses the page requests on load;
- the server part of a label action: the label callback's function for a
  1,000-image cluster and for a single image (median of N runs), and the
  recolour that follows it;
- the size of the recolour ``Patch`` (marker colours only);
- the first render in headless Chromium (``--browser``, on by default when
  chromium and chromedriver are installed), by the page's own clock
  (``performance.now()``, navigation start = 0): for a map of at most
  ``map_raster_threshold`` points, until the map trace holds every point; for a
  larger map (drawn as a raster of every point plus a sample of points,
  :mod:`labeler.app.map_raster`), until the sampled points are drawn and the
  raster image is in the plot (every point is then on screen, as pixels);
- a lasso selection (Plotly's ``plotly_selected`` event, as the browser tests
  emit it) until the Selection tab lists it: 1,000 listed points on a map drawn
  point by point; on a raster-drawn map a polygon around a cluster holding
  1,000+ points, whose count in the Selection tab is checked against an
  independent even-odd count of every point inside the polygon
  (``lasso_count_ok``).

Goals (issue 12) at 1M points: payload <= 8 MB, first render <= 3 s, label
action + recolour (server) <= 300 ms. Run::

    python benchmarks/bench_dashboard.py --n 100000
    python benchmarks/bench_dashboard.py --n 1000000 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from labeler.clustering import summarize
from labeler.project import Project


def build_synthetic_project(root: Path | str, n: int = 100_000, *, n_clusters: int = 100, dim: int = 64,
                            thumbs: bool = True, seed: int = 0) -> Project:
    """A project of ``n`` fake images in ``n_clusters`` Gaussian blobs (10% noise).

    With ``thumbs`` every image gets a tiny placeholder thumbnail (a symbolic
    link to one small JPEG per cluster shade).
    """
    import os

    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    p = Project(root, create=True)
    img_root = root / "images"
    img_root.mkdir(exist_ok=True)
    p.store.set_meta(image_root=str(img_root), categories=[f"class {i}" for i in range(1000)],
                     novelty_threshold=0.5, backbone={"name": "synthetic", "view": "whole"})
    entries = [{"path": f"img/{i:07d}.jpg", "size": 1000, "mtime": 0.0, "hash": f"{i:016x}"} for i in range(n)]
    p.store.add_or_update_images(entries)
    by_path = p.store.images_by_path()
    ids = np.array([by_path[e["path"]]["id"] for e in entries], dtype=np.int64)
    top1 = rng.integers(0, 1000, n)
    p.store.commit_embedded([{"id": int(i), "row": r, "width": 64, "height": 64, "top1": int(top1[r]),
                              "top1_prob": 0.5} for r, i in enumerate(ids)])
    labels = rng.integers(0, n_clusters, n)
    labels[rng.random(n) < 0.1] = -1
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    vec = rng.normal(scale=0.6, size=(n, dim)).astype(np.float32)
    vec[labels >= 0] += centres[labels[labels >= 0]]
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    xy_c = rng.uniform(-20, 20, size=(n_clusters, 2)).astype(np.float32)
    xy = rng.normal(scale=0.8, size=(n, 2)).astype(np.float32)
    xy[labels >= 0] += xy_c[labels[labels >= 0]]
    xy[labels < 0] *= 12
    p.save_array("pca", vec)
    p.save_array("map", xy)
    summaries = summarize(vec, ids, labels)
    p.store.add_clustering("kmeans", {"k": n_clusters, "synthetic": True}, ids, labels, None, summaries)
    if thumbs:
        # Symbolic links, not hard links: a file system caps the hard links of one
        # file (ext4: 65,000), which crashed this fixture at 1M images. The shades
        # live in thumbs/ because the thumbnail route serves only files under it.
        shades = []
        for c in range(n_clusters + 1):
            path = p.thumbs_dir / f"shade-{c}.jpg"
            g = int(40 + 200 * c / max(n_clusters, 1))
            Image.new("RGB", (32, 32), (g, 255 - g, (g * 7) % 256)).save(path)
            shades.append(path.name)
        for i, c in zip(ids, labels):
            os.symlink(shades[int(c) + 1 if c >= 0 else 0], p.thumb_path(int(i)))
    return p


NAMES = ("crack", "clean", "blurred")  # far apart: no "close to an existing label" check


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="number of images")
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--keep", type=Path, default=None, help="build the project here and keep it")
    ap.add_argument("--browser", action=argparse.BooleanOptionalAction, default=None,
                    help="measure the first render in headless Chromium (default: when installed)")
    ap.add_argument("--json", action="store_true", help="print one JSON object of the figures as the last line")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of one cluster label action")
    args = ap.parse_args(argv)
    figures = {"n": args.n}

    from labeler.app import create_app
    from labeler.app.actions import attempt
    from labeler.app.labelling import label_cluster_action, label_ids_action
    from labeler.app.views import COLOR_BY_CLUSTER, COLOR_BY_LABEL, coloring, forget_map_image, recolor_patch

    tmp = None
    root = args.keep
    if root is None:
        # A request thread of the served page may still write (SQLite's -shm file) while it goes.
        tmp = tempfile.TemporaryDirectory(prefix="labeler-bench-", ignore_cleanup_errors=True)
        root = Path(tmp.name) / "project"
    t = time.perf_counter()
    project = build_synthetic_project(root, args.n, n_clusters=args.clusters)
    print(f"built a synthetic project of {args.n:,} images, {args.clusters} clusters in "
          f"{time.perf_counter() - t:.1f} s")

    t = time.perf_counter()
    app = create_app(project)
    client = app.server.test_client()
    figures["create_app_ms"] = round(1000 * (time.perf_counter() - t))
    print(f"create_app: {figures['create_app_ms']} ms (goal at 1M: <= 2,000 ms)")

    t = time.perf_counter()
    page = client.get("/")
    layout = client.get("/_dash-layout")
    deps = client.get("/_dash-dependencies")
    t_layout = time.perf_counter() - t
    cb_ms: dict[str, float] = {}
    initial = initial_callback_payloads(client, json.loads(deps.data), json.loads(layout.data), cb_ms)
    total = len(page.data) + len(layout.data) + sum(initial.values())
    print("\ninitial page payload (uncompressed JSON as Dash serves it)")
    print(f"  index.html            {len(page.data) / 1e3:10.1f} kB")
    print(f"  /_dash-layout         {len(layout.data) / 1e6:10.2f} MB   (layout + {args.n:,}-point figure;"
          f" {1000 * t_layout:.0f} ms to serve)")
    for name, size in sorted(initial.items(), key=lambda kv: -kv[1]):
        print(f"  callback {name:<40s} {size / 1e3:8.1f} kB  {cb_ms[name]:7.0f} ms to serve")
    figures["initial_callbacks_ms"] = round(sum(cb_ms.values()))
    print(f"  total                 {total / 1e6:10.2f} MB")
    figures.update(payload_mb=round(total / 1e6, 3), layout_mb=round(len(layout.data) / 1e6, 3),
                   layout_serve_ms=round(1000 * t_layout))
    from dash._utils import to_json as _to_json

    from labeler.app.views import point_labelled, point_opacity, typed_array

    # Before (main before the state codes): the same figure plus a float32 opacity per point.
    extra = len(_to_json({"opacity": typed_array(point_opacity(point_labelled(app.labeler)))})) - 2
    figures["payload_float_opacity_mb"] = round((total + extra) / 1e6, 3)
    print(f"  before: with a float32 opacity per point  {(total + extra) / 1e6:10.2f} MB")

    actx = app.labeler
    clusters = [s for s in project.store.cluster_summaries() if s["cluster"] >= 0]
    big = min(clusters, key=lambda s: abs(s["size"] - 1000))
    ids_single = [int(actx.point_ids[0])]
    label_n = [0]

    # Each repeat replaces the label the previous one wrote: relabel=True is the annotator
    # ticking every labelled image (otherwise labelled images are skipped, nothing is written).
    def label_big():
        label_n[0] += 1
        text, kind = attempt(label_cluster_action, actx, big["cluster"], NAMES[label_n[0] % 3], "bench",
                             relabel=True)
        assert kind == "ok", text

    def label_one():
        label_n[0] += 1
        text, kind = attempt(label_ids_action, actx, ids_single, NAMES[label_n[0] % 3], "bench", relabel=True)
        assert kind == "ok", text

    # A recolour follows a label action, which changes the colour codes: the raster is drawn
    # anew each time (views keeps the last PNG only for the same codes and colours).
    def anew(recolor, mode):
        forget_map_image(actx)
        return recolor(actx, mode)

    def recolor_label():
        return anew(recolor_patch, COLOR_BY_LABEL)

    def recolor_label_before():
        return anew(recolor_patch_strings, COLOR_BY_LABEL)

    def recolor_cluster():
        return anew(recolor_patch, COLOR_BY_CLUSTER)

    print(f"\nlabel action, server part (median of {args.repeat})")
    figures["label_cluster_ms"] = round(median_ms(label_big, args.repeat), 1)
    figures["label_one_ms"] = round(median_ms(label_one, args.repeat), 1)
    figures["recolor_label_ms"] = round(median_ms(recolor_label, args.repeat), 1)
    figures["recolor_label_before_ms"] = round(median_ms(recolor_label_before, args.repeat), 1)
    figures["recolor_cluster_ms"] = round(median_ms(recolor_cluster, args.repeat), 1)

    store = project.store
    cid = int(store.current_clustering()["id"])
    figures["cluster_members_ms"] = round(median_ms(lambda: store.cluster_members(big["cluster"]), args.repeat), 1)
    # Before the covering index: the plan SQLite chose without it (the primary key, walked over the
    # whole clustering so that no sort is needed).
    old_plan = ("SELECT image_id FROM assignments INDEXED BY sqlite_autoindex_assignments_1 "
                "WHERE clustering_id=? AND cluster=? ORDER BY image_id")
    figures["cluster_members_before_ms"] = round(median_ms(
        lambda: store.con.execute(old_plan, (cid, big["cluster"])).fetchall(), args.repeat), 1)

    def recolor_cluster_uncached():
        actx._cluster_coloring = None  # as before the cache: np.unique over every point each time
        return recolor_cluster()

    figures["recolor_cluster_uncached_ms"] = round(median_ms(recolor_cluster_uncached, args.repeat), 1)
    from labeler.app.views import color_by_label, raster_mode

    raster = raster_mode(actx)
    figures["raster_mode"] = raster
    if raster:  # the label-code colours are the strings' (the raster recolour has no 'before' Patch to compare)
        assert np.array_equal(coloring(actx, COLOR_BY_LABEL).codes, color_by_label(actx.point_labels()).codes)
    else:
        assert_same_patch(recolor_label(), recolor_label_before())
    print(f"  label a {big['size']:,}-image cluster       {figures['label_cluster_ms']:8.1f} ms")
    print(f"  label a single image              {figures['label_one_ms']:8.1f} ms")
    print(f"  recolour by label (Patch)         {figures['recolor_label_ms']:8.1f} ms   (label codes"
          + ("; a new raster PNG of every point + the sample's colours)" if raster else ")"))
    print(f"  the same, before (strings)        {figures['recolor_label_before_ms']:8.1f} ms   "
          f"(a label string per point, as before; same Patch)")
    print(f"  members of that cluster (SQL)     {figures['cluster_members_ms']:8.1f} ms   "
          f"(before the covering index: {figures['cluster_members_before_ms']:.1f} ms)")
    print(f"  recolour by cluster (Patch)       {figures['recolor_cluster_ms']:8.1f} ms   "
          f"(colouring cached per clustering; {figures['recolor_cluster_uncached_ms']:.1f} ms made afresh)")
    figures["label_plus_recolor_ms"] = round(figures["label_cluster_ms"] + figures["recolor_label_ms"], 1)
    print(f"  label a cluster + recolour        {figures['label_plus_recolor_ms']:8.1f} ms  (goal <= 300 ms)")
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(label_big)
        print("\none cluster label action, cProfile (cumulative, top 18):")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(18)
    from dash._utils import to_json

    for mode in (COLOR_BY_CLUSTER, COLOR_BY_LABEL):
        for cluster, tag in ((None, ""), (big["cluster"], "_open")):
            size = len(to_json(recolor_patch(actx, mode, coloring(actx, mode), cluster).to_plotly_json()))
            old = len(to_json(recolor_patch_float_opacity(actx, mode, cluster).to_plotly_json()))
            figures[f"patch_{mode}{tag}_kb"] = round(size / 1e3, 1)
            figures[f"patch_{mode}{tag}_float_opacity_kb"] = round(old / 1e3, 1)
            print(f"  recolour Patch payload ({mode:7s}{', a cluster open' if cluster is not None else '':16s})"
                  f"  {size / 1e3:8.1f} kB   (before, codes + float32 opacity per point: {old / 1e3:8.1f} kB)")
    if raster:
        figures.update(raster_figures(actx, args.repeat))
    use_browser = args.browser if args.browser is not None else _chromium_installed()
    if use_browser:
        figures.update(browser_render(app, actx.n_points))
    print(f"\nreproduce: python benchmarks/bench_dashboard.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    project.store.close()
    if args.json:
        print(json.dumps(figures), flush=True)
    if tmp is not None:
        tmp.cleanup()
    return figures


def raster_figures(actx, repeat: int) -> dict:
    """Server side of a raster-drawn map: the first view's raster and sample (the PNG's
    size, the time to draw and encode it) and a 1,000+ point lasso tested on every point."""
    from dash._utils import to_json

    from labeler.app.map_select import selected_points
    from labeler.app.views import COLOR_BY_CLUSTER, forget_map_image, grid_xy, map_limits, raster_parts

    out = {}
    parts = raster_parts(actx, COLOR_BY_CLUSTER)
    out["raster_png_kb"] = round(len(parts["image"]["source"]) / 1e3, 1)
    out["sample_points"] = len(parts["sample"])
    out["sample_kb"] = round(len(to_json({k: parts[k] for k in ("x", "y", "customdata", "marker")})) / 1e3, 1)

    def drawn_anew():
        forget_map_image(actx)  # the PNG of the same codes is kept: time a new one
        return raster_parts(actx, COLOR_BY_CLUSTER)

    out["raster_parts_ms"] = round(median_ms(drawn_anew, repeat), 1)
    px, py = lasso_polygon(actx)
    shape = {"lassoPoints": {"x": px, "y": py}, "range": None}
    out["lasso_server_ms"] = round(median_ms(lambda: selected_points(grid_xy(actx), shape), repeat), 1)
    out["lasso_true_count"] = int(even_odd_count(grid_xy(actx), px, py))
    threshold, budget = map_limits(actx)
    print(f"\nraster-drawn map (more than map_raster_threshold = {threshold:,} points)")
    print(f"  first view: raster PNG {out['raster_png_kb']:.0f} kB + {out['sample_points']:,} sampled points "
          f"({out['sample_kb']:.0f} kB); raster + sample made in {out['raster_parts_ms']:.0f} ms")
    print(f"  lasso around a cluster: {out['lasso_true_count']:,} points inside, tested on every point "
          f"in {out['lasso_server_ms']:.0f} ms (server)")
    return out


def lasso_polygon(actx, k: int = 1200, vertices: int = 24) -> tuple[list[float], list[float]]:
    """A circle (as a polygon, figure grid units) around the median of the largest
    cluster holding about ``k`` points of the map."""
    from labeler.app.views import grid_xy

    grid = grid_xy(actx).astype(np.float64)
    clusters = actx.assignment().clusters
    big = np.bincount(clusters[clusters >= 0]).argmax()
    centre = np.median(grid[clusters == big], axis=0)
    r = np.sort(np.hypot(*(grid - centre).T))[min(k, len(grid) - 1)]
    t = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    return (centre[0] + r * np.cos(t)).tolist(), (centre[1] + r * np.sin(t)).tolist()


def even_odd_count(xy: np.ndarray, px, py) -> int:
    """Points inside a polygon by even-odd ray casting, written out (the check of the
    dashboard's matplotlib-based selection)."""
    x, y = xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)
    inside = np.zeros(len(xy), bool)
    for i in range(len(px)):
        x0, y0, x1, y1 = px[i - 1], py[i - 1], px[i], py[i]
        if y0 == y1:
            continue
        inside ^= ((y0 > y) != (y1 > y)) & (x < (x1 - x0) * (y - y0) / (y1 - y0) + x0)
    return int(inside.sum())


def recolor_patch_strings(actx, mode):
    """The recolour as it was before the label codes (this branch's parent): the
    current label of every point rebuilt as a Python string from ``store.labels()``,
    twice (colours and opacity). Kept to measure before/after in one run."""
    from dash import Patch

    from labeler.app.views import (COLOR_BY_LABEL, color_by_label, coloring, open_mask,
                                   patch_rings_and_annotations, point_state, state_alpha)

    col = color_by_label(actx.point_labels()) if mode == COLOR_BY_LABEL else coloring(actx, mode)
    p = Patch()
    state = point_state(actx.point_labels() != "", open_mask(actx, None))
    for k, v in col.marker(state, state_alpha(mode)).items():
        p["data"][0]["marker"][k] = v
    return patch_rings_and_annotations(p, actx, mode)


def recolor_patch_float_opacity(actx, mode, cluster=None):
    """The recolour as main sent it before the state codes: category codes plus a float32
    opacity per point (labelled / unlabelled / dimmed). Kept to measure the bytes before/after
    in one run."""
    from dash import Patch

    from labeler.app.views import (coloring, highlight_trace, open_mask, point_labelled, point_opacity,
                                   typed_array)

    col = coloring(actx, mode)
    p = Patch()
    for k, v in col.marker().items():
        p["data"][0]["marker"][k] = v
    p["data"][0]["marker"]["opacity"] = typed_array(point_opacity(point_labelled(actx), open_mask(actx, cluster),
                                                                  mode))
    ring = highlight_trace(actx, cluster, mode)
    p["data"][2]["x"] = ring["x"]
    p["data"][2]["y"] = ring["y"]
    p["data"][2]["marker"]["color"] = ring["marker.color"]
    return p


def assert_same_patch(a, b) -> None:
    """The two recolours send the same bytes."""
    from dash._utils import to_json

    if to_json(a.to_plotly_json()) != to_json(b.to_plotly_json()):
        raise AssertionError("the label-code recolour differs from the string one")


def _chromium_installed() -> bool:
    import shutil

    return bool((shutil.which("chromium") or Path("/usr/bin/chromium").exists())
                and (shutil.which("chromedriver") or Path("/usr/bin/chromedriver").exists()))


_GRAPH_JS = "document.querySelector('#map .js-plotly-plot')"


def browser_render(app, n_points: int, timeout: float = 900.0) -> dict:
    """First render of the page in headless Chromium and a lasso selection.

    Returns {"first_render_s": float, "layout_received_s": float, "plotly_js_received_s":
    float, "lasso_s": float, "first_render_reload_s": float} and, on a raster-drawn map,
    "lasso_count" and "lasso_count_ok": the page's
    ``performance.now()`` when the map is drawn (navigation start = 0; the
    trace holds all ``n_points`` points, or on a raster-drawn map the sample
    and the raster image are drawn: ``browser_helpers.map_drawn_js``), and the
    time from emitting Plotly's ``plotly_selected`` event until the Selection
    tab lists the points; then the page is loaded again in the same browser.
    """
    import importlib.util

    # the test suite's browser helpers, loaded from their file (tests/ is not a package)
    spec = importlib.util.spec_from_file_location(
        "browser_helpers", Path(__file__).resolve().parents[1] / "tests" / "browser_helpers.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    ServerThread, chrome_driver, map_drawn_js = helpers.ServerThread, helpers.chrome_driver, helpers.map_drawn_js

    from labeler.app.views import grid_xy, raster_mode

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    out = {}
    driver = chrome_driver()
    try:
        with ServerThread(app.server) as srv:
            driver.set_page_load_timeout(timeout)
            driver.get(srv.url)
            ready = f"return (function() {{ {map_drawn_js(n_points)} }})() ? performance.now() : null"
            t_ms = _poll(lambda: driver.execute_script(ready), timeout, "the map's first render")
            out["first_render_s"] = round(t_ms / 1000, 3)
            got = driver.execute_script("const e = performance.getEntriesByType('resource').find("
                                        "r => r.name.endsWith('/_dash-layout')); return e ? e.responseEnd : null")
            out["layout_received_s"] = None if got is None else round(got / 1000, 3)
            got = driver.execute_script("const e = performance.getEntriesByType('resource').find("
                                        r"r => /[/]plotly[^/]*[.]min[.]js/.test(r.name)); return e ? e.responseEnd : null")
            out["plotly_js_received_s"] = None if got is None else round(got / 1000, 3)
            raster = raster_mode(app.labeler)
            what = "a raster of" if raster else "WebGL markers for"
            print(f"\nheadless Chromium (software WebGL): first render of {what} {n_points:,} points "
                  f"{out['first_render_s']:.2f} s after navigation start  (goal <= 3 s); "
                  f"/_dash-layout received at {out['layout_received_s']} s")
            if raster:
                px, py = lasso_polygon(app.labeler)
                truth = even_odd_count(grid_xy(app.labeler), px, py)
                t0 = time.perf_counter()
                driver.execute_script(f"{_GRAPH_JS}.emit('plotly_selected', {{points: [], "
                                      f"lassoPoints: {{x: {px}, y: {py}}}}})")
                title = "return (document.querySelector('#selection-title') || {}).innerText || ''"
                got = _poll(lambda: _selected_count(driver.execute_script(title)), timeout, "the lasso selection")
                out["lasso_s"] = round(time.perf_counter() - t0, 3)
                out["lasso_count"], out["lasso_count_ok"] = got, got == truth
                print(f"  lasso around a cluster -> Selection tab: {got:,} images selected in {out['lasso_s']:.2f} s"
                      f" (every point inside the polygon by an even-odd count: {truth:,}; "
                      f"{'equal' if got == truth else 'DIFFERENT'})")
                _reload(driver, srv.url, ready, timeout, out)
                return out
            m = min(1000, n_points)
            t0 = time.perf_counter()
            driver.execute_script(f"""
                const g = {_GRAPH_JS};
                const pts = [];
                for (let i = 0; i < {m}; i++) {{ pts.push({{curveNumber: 0, pointNumber: i, pointIndex: i,
                    x: g._fullData[0].x[i], y: g._fullData[0].y[i]}}); }}
                g.emit('plotly_selected', {{points: pts}});
            """)
            title = "return (document.querySelector('#selection-title') || {}).innerText || ''"
            _poll(lambda: f"{m:,} images selected".replace(",", "") in driver.execute_script(title).replace(",", ""),
                  timeout, "the lasso selection")
            out["lasso_s"] = round(time.perf_counter() - t0, 3)
            print(f"  lasso of {m:,} points -> Selection tab lists them: {out['lasso_s']:.2f} s")
            _reload(driver, srv.url, ready, timeout, out)
    finally:
        driver.quit()
    return out


def _reload(driver, url: str, ready: str, timeout: float, out: dict) -> None:
    """The first render again in the same browser (a returning annotator: Chromium has
    compiled plotly.js once), into ``out["first_render_reload_s"]``."""
    driver.get(url)
    t_ms = _poll(lambda: driver.execute_script(ready), timeout, "the map's render after a reload")
    out["first_render_reload_s"] = round(t_ms / 1000, 3)
    print(f"  plotly.js received at {out['plotly_js_received_s']} s; the page loaded again in the same "
          f"browser: map drawn {out['first_render_reload_s']:.2f} s after navigation start")


def _selected_count(title: str) -> int | None:
    """The N of the Selection tab's 'N images selected' (None before it shows)."""
    import re

    m = re.search(r"([\d,]+) images? selected", title)
    return int(m.group(1).replace(",", "")) if m else None


def _poll(fn, timeout: float, what: str):
    from selenium.common.exceptions import TimeoutException

    end = time.time() + timeout
    while time.time() < end:
        try:
            v = fn()
        except TimeoutException:  # the page's main thread is busy drawing: ask again
            continue
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def initial_callback_payloads(client, deps: list[dict], layout: dict, times: dict | None = None) -> dict[str, int]:
    """POST the callbacks a fresh page fires to /_dash-update-component; response sizes
    (and, into ``times``, each one's server time in ms).

    Only plain-id callbacks whose inputs all exist in the initial layout and that
    allow an initial call are sent (the ones a browser sends on load).
    """
    values = {}

    def walk(node):
        if isinstance(node, dict):
            props = node.get("props")
            if isinstance(props, dict) and isinstance(props.get("id"), str):
                values[props["id"]] = props
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(layout)
    out = {}
    for d in deps:
        if d.get("prevent_initial_call") or d.get("clientside_function"):
            continue
        ins = d["inputs"] + d.get("state", [])
        if any(i["id"].startswith("{") or i["id"] not in values for i in ins):
            continue
        body = {
            "output": d["output"],
            "outputs": [_parse_output(o) for o in d["output"].strip(".").split("...")],
            "inputs": [{"id": i["id"], "property": i["property"], "value": values[i["id"]].get(i["property"])}
                       for i in d["inputs"]],
            "state": [{"id": i["id"], "property": i["property"], "value": values[i["id"]].get(i["property"])}
                      for i in d.get("state", [])],
            "changedPropIds": [],
        }
        if len(body["outputs"]) == 1 and not d["output"].startswith(".."):
            body["outputs"] = body["outputs"][0]
        t = time.perf_counter()
        r = client.post("/_dash-update-component", json=body)
        if r.status_code == 200:
            out[d["output"][:40]] = len(r.data)
            if times is not None:
                times[d["output"][:40]] = 1000 * (time.perf_counter() - t)
    return out


def _parse_output(o: str) -> dict:
    cid, prop = o.rsplit(".", 1)
    return {"id": cid, "property": prop.split("@")[0]}


if __name__ == "__main__":
    main()
