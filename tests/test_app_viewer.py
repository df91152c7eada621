"""The large view, keyboard steps and map view logic, called directly (no browser)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from labeler.app import create_app, panels, views
from labeler.app.viewer import keyboard_step, label_choices, large_view, next_cluster, step_in_cluster
from labeler.app.routes import view_jpeg


@pytest.fixture()
def actx(project):
    return create_app(project).labeler


def test_robust_range_ignores_outliers_and_fit_all_keeps_them():
    rng = np.random.default_rng(0)
    xy = np.vstack([rng.normal(size=(1000, 2)), [[500.0, -400.0]]]).astype(np.float32)
    (x0, x1), (y0, y1) = views.map_range(xy)
    assert x1 < 10 and y0 > -10  # the outlier does not decide the zoom
    assert (xy[:-1, 0] >= x0).mean() > 0.98
    (fx0, fx1), (fy0, fy1) = views.map_range(xy, robust=False)
    assert fx1 >= 500 and fy0 <= -400


def test_cluster_ids_do_not_overlap_and_opacity_marks_labelled_and_open(actx):
    ann = views.cluster_annotations(actx, views.COLOR_BY_CLUSTER)
    xr, yr = views.map_range(views.grid_xy(actx))
    gx, gy = 0.06 * (xr[1] - xr[0]), 0.06 * (yr[1] - yr[0])
    for i, a in enumerate(ann):
        for b in ann[i + 1:]:
            assert abs(a["x"] - b["x"]) >= gx or abs(a["y"] - b["y"]) >= gy
    op = views.point_opacity(np.array([True, False, True]), np.array([True, True, False]))
    assert op[0] > op[1] and op[2] < op[0]  # unlabelled faded, outside the open cluster dimmed
    fig = views.map_figure(actx, cluster=0)
    assert fig["data"][2]["name"] == "open cluster"
    assert fig["layout"]["xaxis"]["range"] == views.map_range(views.grid_xy(actx))[0]


def test_keyboard_steps_open_label_and_advance(actx, project):
    first = keyboard_step(actx, "next", {"cluster": None})["cluster"]
    assert first == next_cluster(actx, None)
    assert keyboard_step(actx, "label:1", {"cluster": first})["message"] is not None  # no labels yet
    seen = {"cluster": first, "clustering_id": int(project.store.current_clustering()["id"]),
            "members": project.store.cluster_members(first)}
    # A page that never showed the cluster's members is refused (labels-room's stale check).
    assert "version" in keyboard_step(actx, "enter", {"cluster": first, "label": "mono", "annotator": "kim"})
    assert project.store.labels() == {}
    out = keyboard_step(actx, "enter", {"cluster": first, "label": "mono", "annotator": "kim", "version": 0,
                                        "seen": seen})
    assert out["version"] == 1 and out["cluster"] != first
    assert all(project.store.labels().get(i) == "mono" for i in project.store.cluster_members(first))
    assert label_choices(actx) == ["mono"]
    assert keyboard_step(actx, "label:1", {"cluster": out["cluster"]}) == {"label": "mono"}
    # A bad label changes nothing and stays on the cluster.
    bad = keyboard_step(actx, "enter", {"cluster": out["cluster"], "label": "  ", "annotator": "kim"})
    assert "cluster" not in bad and "version" in bad
    assert keyboard_step(actx, "pgup", {"cluster": first, "page": 1}) == {"page": 1}


def test_large_view_and_moving_within_the_cluster(actx, project):
    members = panels.cluster_members_ordered(actx, 0)
    v = large_view(actx, members[0])
    assert v["src"] == f"/view/{members[0]}" and len(v["neighbours"]) == 9 and v["extras"] == []
    assert step_in_cluster(actx, members[0], 1) == members[1]
    assert step_in_cluster(actx, members[0], -1) == members[-1]


def test_view_route_caps_the_size(actx, project, tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 1200), "white").save(big)
    img = Image.open(io.BytesIO(view_jpeg(big, max_side=2048)))
    assert img.format == "JPEG" and img.size == (2048, 819)
    client = create_app(project).server.test_client()
    r = client.get(f"/view/{int(actx.point_ids[0])}")
    assert r.status_code == 200 and "max-age" in r.headers["Cache-Control"]
    assert client.get("/view/999999").status_code == 404
