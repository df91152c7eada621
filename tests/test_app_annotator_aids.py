"""Annotator aids called directly (no browser): confident-only ImageNet hints and their
toggle, PageDown/PageUp in every grid, ← / → through the label-next queue, suggestions
on the cluster cards and the map's suggestion-confidence colouring, and an ingest that
adds photos while the dashboard is open."""

from __future__ import annotations

import shutil
import tomllib

import numpy as np
import pytest
from click.testing import CliRunner

import fixtures_images as fx
from labeler import labels
from labeler.app import create_app, ids, panels, views
from labeler.app.actions import placed_since, run
from labeler.app.labelling import label_cluster_action
from labeler.app.suggestions import cluster_suggestions, point_suggestions, suggestion_text
from labeler.app.tabs.clusters.callbacks import set_hints_action
from labeler.app.tabs.refine.callbacks import apply_split_action, split_preview_action
from labeler.app.tabs.search.callbacks import result_view, search_by_upload
from labeler.app.viewer import image_hint, keyboard_step, large_view, step_in_view
from labeler.config import save_setting
from labeler.hints import cluster_hint, hint_text


@pytest.fixture()
def actx(project):
    return create_app(project).labeler


def test_hint_text_only_from_the_threshold():
    assert hint_text("espresso", 0.62, 0.5) == "ImageNet hint: espresso (p=0.62)"
    assert hint_text("espresso", 0.49, 0.5) is None and hint_text(None, 0.9, 0.5) is None
    assert hint_text("espresso", float("nan"), 0.0) is None
    top1, prob = np.array([1, 1, 2, -1]), np.array([0.7, 0.6, 0.9, np.nan])
    assert cluster_hint(top1, prob, ["a", "b", "c"], 0.5) == "ImageNet hint: b (p=0.65, 50% of images)"
    assert cluster_hint(top1, prob, ["a", "b", "c"], 0.7) is None  # the leading class is not confident


def test_hints_follow_the_threshold_and_the_toggle(actx, project):
    top1, prob, cats = actx.imagenet()
    assert len(prob) == actx.n_points and cats
    shown = [image_hint(actx, int(i)) for i in actx.point_ids]
    # Shown exactly for the images whose top-1 probability reaches the default 0.5.
    assert [h is not None for h in shown] == list(prob >= 0.5)
    save_setting(project.settings_path, "imagenet_hint_min_prob", 0.0)
    rows = panels.cluster_rows(actx)
    assert rows and all(r["hint"] and r["hint"].startswith("ImageNet hint: ") and "(p=" in r["hint"] for r in rows)
    assert "pca_components = 32" in project.settings_path.read_text()  # the other settings stay
    assert "hidden" in set_hints_action(actx, False)
    assert tomllib.loads(project.settings_path.read_text())["imagenet_hints"] is False
    assert all(r["hint"] is None for r in panels.cluster_rows(actx))
    assert image_hint(actx, int(actx.point_ids[0])) is None
    set_hints_action(actx, True)
    assert panels.cluster_rows(actx)[0]["hint"]


def test_a_natural_photo_gets_its_hint_in_the_app_and_the_cli(actx, project, tmp_path):
    import base64

    photo = fx.make_photo(tmp_path, "chelsea")
    data = "data:image/jpeg;base64," + base64.b64encode(photo.read_bytes()).decode()
    stored = search_by_upload(actx, data, photo.name, 5)
    assert stored["top1_class"] and stored["top1_prob"] >= 0.5  # a cat: the backbone is sure
    text = str(result_view(actx, stored)["query"])
    assert f"ImageNet hint: {stored['top1_class']} (p={stored['top1_prob']:.2f})" in text
    low = dict(stored, top1_prob=0.2)
    assert "ImageNet hint" not in str(result_view(actx, low)["query"])

    from labeler.cli import main

    # An ELPV cell the backbone is unsure of: no hint line; the cat: one.
    _, prob, _ = actx.imagenet()
    unsure = int(actx.point_ids[int(np.argmin(prob))])
    cell = project.image_path(project.store.get_image(unsure)["path"])
    res = CliRunner().invoke(main, ["search", str(photo), str(cell), "--project", str(project.root), "-k", "3"])
    assert res.exit_code == 0, res.output
    assert res.output.count("ImageNet hint: ") == 1 and f"ImageNet hint: {stored['top1_class']}" in res.output
    save_setting(project.settings_path, "imagenet_hints", False)
    res = CliRunner().invoke(main, ["search", str(photo), "--project", str(project.root), "-k", "3"])
    assert res.exit_code == 0 and "ImageNet hint" not in res.output


def test_page_keys_turn_the_page_of_the_open_tab(actx):
    state = {"tab": ids.TAB_SELECTION, "selection_page": 1, "selection_pages": 3, "search_page": 2,
             "search_pages": 2}
    assert keyboard_step(actx, "pgdn", state) == {"selection_page": 2}
    assert keyboard_step(actx, "pgdn", dict(state, selection_page=3)) == {"selection_page": 3}
    assert keyboard_step(actx, "pgup", dict(state, selection_page=None)) == {"selection_page": 1}
    assert keyboard_step(actx, "pgup", dict(state, tab=ids.TAB_SEARCH)) == {"search_page": 1}
    assert keyboard_step(actx, "pgdn", dict(state, tab=ids.TAB_SEARCH)) == {"search_page": 2}
    assert keyboard_step(actx, "pgdn", dict(state, tab=ids.TAB_NEXT)) == {}
    big = max(panels.cluster_rows(actx), key=lambda r: r["size"])["cluster"]
    n_pages = -(-len(actx.store.cluster_members(big)) // 40)
    assert keyboard_step(actx, "pgdn", {"cluster": big, "page": n_pages}) == {"page": n_pages}


def test_arrows_walk_the_queue_the_view_was_opened_from(actx):
    members = panels.cluster_members_ordered(actx, 0)
    queue = [int(actx.point_ids[5]), members[0], int(actx.point_ids[40])]
    assert step_in_view(actx, queue[0], 1, queue) == queue[1]
    assert step_in_view(actx, queue[0], -1, queue) == queue[2]  # wraps around
    assert step_in_view(actx, members[0], 1, None) == members[1]  # no queue: the cluster
    assert step_in_view(actx, members[0], 1, [queue[0]]) == members[1]  # not in the queue: the cluster
    assert "label-next queue: image 2 of 3" in str(large_view(actx, members[0], queue)["facts"])


def _label_some(project, actx):
    """Label the smallest cluster 'poly' and 10 images of the largest 'mono'; returns
    the fully labelled cluster(s)."""
    real = sorted((r["size"], r["cluster"]) for r in panels.cluster_rows(actx) if r["cluster"] >= 0)
    small, big = real[0][1], real[-1][1]
    labels.label_cluster(project, small, "poly", annotator="kim")
    labels.label_images(project, project.store.cluster_members(big)[:10], "mono", annotator="kim")
    return [small]


def test_suggestions_on_cards_and_the_confidence_colouring(actx, project):
    assert cluster_suggestions(actx) == {}  # no labels: no suggestions, and none computed
    code, conf, classes = point_suggestions(actx)
    assert classes == () and (code == -1).all() and np.isnan(conf).all()
    done = _label_some(project, actx)
    code, conf, classes = point_suggestions(actx)
    labelled = actx.point_labels() != ""
    assert set(classes) == {"mono", "poly"}
    assert (code[labelled] == -1).all() and (code[~labelled] >= 0).all()
    assert ((conf[~labelled] >= 0) & (conf[~labelled] <= 1)).all()
    per = cluster_suggestions(actx)
    clusters = actx.assignment().clusters
    for c, s in per.items():
        assert c not in done and s["label"] in classes and 0 < s["share"] <= 1 and 0 <= s["confidence"] <= 1
        assert s["n"] == int(((clusters == c) & ~labelled).sum())
    assert per and suggestion_text(next(iter(per.values()))).startswith("suggested: ")

    col = views.coloring(actx, views.COLOR_BY_CONFIDENCE)
    steps = views.CONFIDENCE_STEPS
    assert (col.codes[labelled] > steps).all()  # labelled: drawn as labelled (label codes)
    expect = 1 + np.rint(conf[~labelled] * (steps - 1))
    np.testing.assert_array_equal(col.codes[~labelled], expect)
    scale = col.colorscale
    pos = [p for p, _ in scale]
    assert pos[0] == 0 and pos[-1] == 1 and pos == sorted(pos)
    m = col.marker()
    assert m["cmax"] == 1 + steps + 2 - 0.5 and col.colorbar[2] == int((~labelled).sum())
    # Code -> colour as plotly maps it: labels keep their colour of the label mode.
    by_label = views.color_by_label(actx.point_labels())
    k = 1 + steps + 2
    for j, colour in enumerate(by_label.colors[1:]):
        assert [(1 + steps + j) / k, colour] in scale or (j == 1 and scale[-1] == [1.0, colour])
    fig = views.map_figure(actx, views.COLOR_BY_CONFIDENCE)
    assert fig["layout"]["annotations"] == []


def _reroot(project, elpv_dir, tmp_path):
    """The project's photos moved to a folder of the test's own (so that photos can be added)."""
    photos = tmp_path / "photos"
    shutil.copytree(elpv_dir / "images", photos, copy_function=shutil.copy2)
    project.store.set_meta(image_root=str(photos.resolve()))
    return photos


def add_photos(project, photos, n=4):
    """Copy ``n`` more ELPV cells into the folder and ingest them for real (placement)."""
    from labeler.pipeline import ingest

    have = {p.name for p in photos.iterdir()}
    new = [p for p in sorted(fx.elpv_images_dir().glob("*.png")) if p.name not in have][:n]
    for p in new:
        shutil.copyfile(p, photos / p.name)
    rep = ingest(photos, project.root, project.settings(num_workers=0), progress=False)
    assert rep.placed == n and not rep.remapped
    return rep


def test_an_ingest_while_the_app_is_open_is_picked_up(actx, project, elpv_dir, tmp_path):
    photos = _reroot(project, elpv_dir, tmp_path)
    n0 = actx.n_points
    rows = panels.cluster_rows(actx)
    seen = {r["cluster"]: project.store.cluster_members(r["cluster"]) for r in rows}
    cid0 = int(project.store.current_clustering()["id"])
    previews = {c: split_preview_action(actx, c, "kmeans", 2) for c in seen if c >= 0}
    add_photos(project, photos)
    assert placed_since(project.store, cid0) == 4 and placed_since(project.store, None) is None
    now = {c: project.store.cluster_members(c) for c in seen}
    same = [c for c in seen if c >= 0 and now[c] == seen[c]]
    grown = [c for c in seen if now[c] != seen[c]]
    assert grown  # four photos went somewhere (a cluster or noise)
    if same:  # a cluster without new photos is labelled at once, against the new clustering
        r = run(label_cluster_action, actx, same[0], "mono", "kim", clustering_id=cid0, seen=seen[same[0]],
                version=3)
        assert r.ok and r.version == 4 and "4 new photo(s) were added by `labeler ingest`" in r.message.children
        assert all(project.store.labels().get(i) == "mono" for i in now[same[0]])
    # A cluster that gained photos is not labelled unseen: the page reloads and says so.
    r = run(label_cluster_action, actx, grown[0], "poly", "kim", clustering_id=cid0, seen=seen[grown[0]],
            version=3)
    assert not r.ok and r.version == 4 and "check it, then do it again" in r.message.children
    assert not any(project.store.labels().get(i) == "poly" for i in now[grown[0]])
    assert actx.n_points == n0 + 4  # the app reloaded its map points
    # A split previewed before the ingest: applied when its cluster got no new photo, else refused.
    for c, preview in sorted(previews.items(), key=lambda kv: kv[0] in same):  # refused ones first
        r = run(apply_split_action, actx, preview, "kim", clustering_id=cid0, version=5)
        assert "4 new photo(s) were added" in r.message.children
        assert r.ok == (c in same) and r.version == 6, (c, r.message.children)
        if r.ok:
            break
    # Anything but a placement (a re-clustering) still fails as before.
    from labeler.clustering import cluster_project

    cid1 = int(project.store.current_clustering()["id"])
    cluster_project(project, project.settings())
    r = run(label_cluster_action, actx, grown[0], "poly", "kim", clustering_id=cid1, version=3)
    assert not r.ok and "Conflict" in r.message.children and placed_since(project.store, cid1) is None


def test_the_cli_cluster_list_shows_hints_only_where_confident(actx, project):
    """`labeler info` lists a cluster's hint with the same rule as the dashboard."""
    from labeler.cli import main

    def listed():
        res = CliRunner().invoke(main, ["info", "--project", str(project.root)])
        assert res.exit_code == 0, res.output
        return [ln for ln in res.output.splitlines() if ln.strip().startswith("cluster ")]

    save_setting(project.settings_path, "imagenet_hint_min_prob", 0.0)
    lines = listed()
    assert lines and all("ImageNet hint: " in ln and "(p=" in ln for ln in lines)
    save_setting(project.settings_path, "imagenet_hint_min_prob", 1.01)  # nothing is that sure
    assert not any("hint" in ln for ln in listed())
    save_setting(project.settings_path, "imagenet_hint_min_prob", 0.0)
    save_setting(project.settings_path, "imagenet_hints", False)
    assert not any("hint" in ln for ln in listed())
