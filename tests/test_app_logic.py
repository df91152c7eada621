"""Dashboard logic as plain functions (no browser): routes, auth, label/undo/search/refine
actions and the figure data, against a real 80-image ELPV project."""

from __future__ import annotations

import base64
import importlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from labeler.app import create_app
from labeler.app import panels
from labeler.app import views
from labeler.app import labelling as cl
from labeler.app.tabs.explore.callbacks import hover_card
from labeler.app.tabs.refine import callbacks as cr
from labeler.app.actions import BUG_MESSAGE, attempt, run
from labeler.app.labelling import progress_view
from labeler.app.tabs.clusters.callbacks import cluster_detail_view, excluded_note
from labeler.app.tabs.refine.callbacks import cluster_options, split_preview_action, split_preview_view
from labeler.app.tabs.search.callbacks import result_view, search_by_id, search_by_upload
from labeler.app.common import annotator_name, update_exclusions
from labeler.app.uploads import UploadError, check_image, decode_data_uri
from labeler.export import export_csv_text
from labeler.project import Project


def label_cluster_action(*a, **k):
    return attempt(cl.label_cluster_action, *a, **k)


def label_ids_action(*a, **k):
    return attempt(cl.label_ids_action, *a, **k)


def undo_action(*a, **k):
    return attempt(cl.undo_action, *a, **k)


def apply_split_action(*a, **k):
    return attempt(cr.apply_split_action, *a, **k)


def merge_action(*a, **k):
    return attempt(cr.merge_action, *a, **k)


def move_action(*a, **k):
    return attempt(cr.move_action, *a, **k)


@pytest.fixture()
def app(project):
    return create_app(project)


@pytest.fixture()
def actx(app):
    return app.labeler


def _data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _png(w=32, h=32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


# -- app factory, layout, routes -----------------------------------------------------------


def test_two_apps_in_one_process_register_their_own_callbacks(project):
    import dash._callback as cb

    before = len(cb.GLOBAL_CALLBACK_LIST)
    a, b = create_app(project), create_app(project)
    assert len(cb.GLOBAL_CALLBACK_LIST) == before  # nothing on the global list
    assert a.callback_map and set(a.callback_map) == set(b.callback_map)
    assert a.labeler is not b.labeler


def test_layout_holds_every_point_with_ids_only(app, project):
    client = app.server.test_client()
    assert client.get("/").status_code == 200
    layout = json.loads(client.get("/_dash-layout").data)
    text = json.dumps(layout)
    graph = _find(layout, "map")
    trace = graph["props"]["figure"]["data"][0]
    assert trace["type"] == "scattergl"
    ids = [int(i) for i in project.store.row_image_ids() if i >= 0]
    assert "customdata" not in trace and trace["x"]["dtype"] == "u2"  # binary, no per-point id list
    assert sorted(views.decode_id_runs(graph["props"]["figure"]["layout"]["meta"]["id_runs"], len(ids))) == sorted(ids)
    assert str(project.image_root) not in text  # no file paths in the page
    assert "data:image" not in text  # no base64 thumbnails in the layout


def _find(node, id_):
    if isinstance(node, dict):
        if isinstance(node.get("props"), dict) and node["props"].get("id") == id_:
            return node
        for v in node.values():
            hit = _find(v, id_)
            if hit:
                return hit
    elif isinstance(node, list):
        for v in node:
            hit = _find(v, id_)
            if hit:
                return hit
    return None


def test_thumbnail_and_image_routes_by_id(app, project):
    client = app.server.test_client()
    image_id = int(project.store.row_image_ids()[0])
    r = client.get(f"/thumb/{image_id}")
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    Image.open(io.BytesIO(r.data)).verify()
    r = client.get(f"/image/{image_id}")
    assert r.status_code == 200 and len(r.data) == (project.image_root / project.store.get_image(image_id)["path"]).stat().st_size
    assert client.get("/thumb/999999").status_code == 404
    assert client.get("/image/999999").status_code == 404
    # Not an int id: the thumbnail route does not match (Dash's catch-all answers
    # with the page itself), so no file is ever read from a browser-given path.
    for url in ("/thumb/..%2F..%2Flabeler.db", "/thumb/../labeler.db", "/image/..%2Flabeler.db", "/thumb/-1"):
        r = client.get(url)
        assert r.status_code in (200, 404) and b"SQLite format" not in r.data and r.mimetype != "image/jpeg"


def test_image_route_refuses_paths_leaving_the_image_root(app, project):
    project.store.add_or_update_images([{"path": "../../../etc/passwd", "size": 1, "mtime": 0.0, "hash": "x"}])
    bad = project.store.images_by_path()["../../../etc/passwd"]["id"]
    client = app.server.test_client()
    assert client.get(f"/image/{bad}").status_code == 403
    assert client.get(f"/thumb/{bad}").status_code == 404


def test_csv_download_is_the_export_file(app, project, actx):
    label_cluster_action(actx, 0, "mono", "ana")
    r = app.server.test_client().get("/export/labels.csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    assert r.data.decode() == export_csv_text(project)
    assert r.data.decode().count("\n") - 1 == len(project.store.cluster_members(0))


def test_basic_auth_guards_every_route(project):
    app = create_app(project, auth="anna:s3cret")
    client = app.server.test_client()
    good = {"Authorization": "Basic " + base64.b64encode(b"anna:s3cret").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"anna:wrong").decode()}
    image_id = int(project.store.row_image_ids()[0])
    for url in ("/", "/_dash-layout", f"/thumb/{image_id}", "/export/labels.csv"):
        r = client.get(url)
        assert r.status_code == 401 and "Basic" in r.headers["WWW-Authenticate"]
        assert client.get(url, headers=bad).status_code == 401
        assert client.get(url, headers=good).status_code == 200
    assert client.post("/_dash-update-component", json={}).status_code == 401
    for header in ("Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer x"):
        assert client.get("/", headers={"Authorization": header}).status_code == 401
    with pytest.raises(ValueError):
        create_app(project, auth="no-colon")


def test_wsgi_module_builds_the_app_from_env(monkeypatch, project):
    monkeypatch.setenv("LABELER_PROJECT", str(project.root))
    monkeypatch.delenv("LABELER_AUTH", raising=False)
    monkeypatch.setenv("LABELER_INSECURE_NO_AUTH", "1")  # without it the module refuses to serve
    import labeler.app.wsgi as wsgi

    wsgi = importlib.reload(wsgi)
    assert wsgi.server.test_client().get("/_dash-layout").status_code == 200


# -- labelling -----------------------------------------------------------------------------


def test_label_cluster_with_unticked_images(actx, project):
    members = project.store.cluster_members(0)
    text, kind = label_cluster_action(actx, 0, " mono ", "ana", excluded=members[:2])
    assert kind == "ok" and "2 unticked" in text
    labels = project.store.labels()
    assert {labels[i] for i in members[2:]} == {"mono"} and not set(members[:2]) & set(labels)
    rows = project.store.label_rows()
    assert {r["annotator"] for r in rows} == {"ana"} and {r["source"] for r in rows} == {"cluster"}
    assert "#%d" % members[0] in excluded_note(members[:2])


@pytest.mark.parametrize("cluster,label", [(None, "x"), (0, ""), (0, "   "), (999, "x")])
def test_label_cluster_refuses_bad_requests(actx, project, cluster, label):
    text, kind = label_cluster_action(actx, cluster, label, "ana")
    assert kind == "error" and text
    assert project.store.labels() == {}


def test_label_ids_then_undo_as_one(actx, project):
    ids = [int(i) for i in project.store.row_image_ids()[:5]]
    assert label_ids_action(actx, ids, "poly", None)[1] == "ok"
    assert project.store.labels_for(ids) == {i: "poly" for i in ids}
    assert {r["annotator"] for r in project.store.label_rows()} == {"anonymous"}
    assert undo_action(actx, "ana")[1] == "warn"  # not ana's action: undo is per annotator
    assert project.store.labels_for(ids) == {i: "poly" for i in ids}
    text, kind = undo_action(actx, None)
    assert kind == "ok" and project.store.labels() == {}
    assert undo_action(actx, None)[1] == "warn"  # nothing left
    assert label_ids_action(actx, [], "poly", "ana")[1] == "error"
    assert label_ids_action(actx, [10**9], "poly", "ana")[1] == "error"


def test_progress_counts_and_label_options(actx, project):
    label_cluster_action(actx, 0, "mono", "ana")
    label_ids_action(actx, project.store.cluster_members(1)[:3], "poly", "ana")
    text, style, chips, options = progress_view(actx)
    n0 = len(project.store.cluster_members(0))
    assert text.startswith(f"{n0 + 3} / {actx.n_points} labelled")
    assert style["width"].endswith("%")
    assert [o.value for o in options] == ["mono", "poly"]


def test_cluster_rows_flag_mixed_clusters_and_sort(actx, project):
    # Cluster 0 is the largest (ids are renumbered by size), so it has the 6 images this
    # needs whatever HDBSCAN found; cluster 1 stays unlabelled.
    members = project.store.cluster_members(0)
    assert len(members) >= 6
    label_ids_action(actx, members[:3], "a", "ana")
    label_ids_action(actx, members[3:6], "b", "ana")
    rows = {r["cluster"]: r for r in panels.cluster_rows(actx)}
    assert rows[0]["labelled"] == 6 and rows[0]["majority_share"] == 0.5
    assert rows[0]["needs_review"] and "mixed" in rows[0]["review_reason"]
    assert rows[1]["majority"] is None and rows[1]["share"] == 0
    assert panels.sort_clusters(list(rows.values()), "review")[0]["cluster"] == 0
    by_unlab = panels.sort_clusters(list(rows.values()), "unlabelled")
    assert [r["unlabelled"] for r in by_unlab if r["cluster"] >= 0] == sorted(
        [r["unlabelled"] for r in rows.values() if r["cluster"] >= 0], reverse=True)
    assert all("suggested_name" not in s for s in project.store.cluster_summaries())  # an unused column
    with pytest.raises(ValueError):
        panels.sort_clusters([], "colour")


def test_cluster_detail_lists_representatives_first(actx, project):
    title, grid, pages, page, _ = cluster_detail_view(actx, 0, [], 1)
    reps = next(s for s in project.store.cluster_summaries() if s["cluster"] == 0)["representatives"]
    shown = [c.children[0].id["id"] for c in grid.children]
    assert shown[: len(reps)] == reps and page == 1
    assert "no longer exists" in cluster_detail_view(actx, 999, [], 1)[0]


def test_update_exclusions_keeps_other_pages():
    assert update_exclusions([1, 50], [1, 2, 3], [[1], [], [3]]) == [2, 50]
    assert update_exclusions(None, [], []) == []
    assert annotator_name("  ") == "anonymous" and annotator_name(" ana ") == "ana"


# -- map -----------------------------------------------------------------------------------


def test_recolour_is_a_patch_of_marker_colours_only(actx, project):
    label_cluster_action(actx, 0, "mono", "ana")
    patch = views.recolor_patch(actx, views.COLOR_BY_LABEL).to_plotly_json()
    locations = {tuple(op["location"]) for op in patch["operations"]}
    assert all(loc[:3] == ("data", 0, "marker") or loc == ("layout", "annotations")
               or loc in {("data", 2, "x"), ("data", 2, "y"), ("data", 2, "marker", "color")} for loc in locations)  # 2: the open cluster
    col = views.coloring(actx, views.COLOR_BY_LABEL)
    members = set(project.store.cluster_members(0))
    labelled = np.array([int(i) in members for i in actx.point_ids])
    assert (col.codes[labelled] == 1).all() and (col.codes[~labelled] == 0).all()
    assert col.legend[1][0] == "mono" and col.legend[1][2] == len(members)
    by_cluster = views.color_by_cluster(np.array([-1, 0, 3, 3]))
    assert by_cluster.codes.tolist() == [0, 1, 2, 2] and by_cluster.colors[0] == views.NOISE_COLOR


def test_typed_array_round_trip():
    a = np.array([1, 2, 300], dtype=np.uint16)
    spec = views.typed_array(a)
    assert spec["dtype"] == "u2"
    assert np.frombuffer(base64.b64decode(spec["bdata"]), dtype=np.uint16).tolist() == [1, 2, 300]


def test_hover_card_shows_id_file_cluster_label(actx, project):
    image_id = int(project.store.cluster_members(0)[0])
    label_ids_action(actx, [image_id], "mono", "ana")
    text = json.dumps([c.to_plotly_json() for c in hover_card(actx, image_id)], default=str)
    name = project.store.get_image(image_id)["path"].rsplit("/", 1)[-1]
    assert f"/thumb/{image_id}" in text and name in text and "cluster 0" in text and "mono" in text


# -- search --------------------------------------------------------------------------------


def test_search_by_id_and_label_from_it(actx, project):
    assert actx.searcher() is actx.searcher()  # built once per app
    image_id = int(project.store.cluster_members(0)[0])
    stored = search_by_id(actx, image_id, k=5)
    nb = [i for i, _ in stored["neighbours"]]
    assert len(nb) == 5 and image_id not in nb
    sims = [s for _, s in stored["neighbours"]]
    assert sims == sorted(sims, reverse=True)
    assert str(project.image_root) not in json.dumps(stored)
    label_ids_action(actx, nb, "mono", "ana", source="search")
    view = result_view(actx, search_by_id(actx, image_id, k=5))
    assert "mono" in json.dumps(view["vote"], default=str)
    assert {r["source"] for r in project.store.label_rows()} == {"search"}
    # Two of the 5 labelled: the vote says how many it counts.
    from labeler import labels

    labels.remove_labels(project, nb[2:], annotator="ana")
    view = result_view(actx, search_by_id(actx, image_id, k=5))
    assert "(2 of 5 labelled)" in json.dumps(view["vote"], default=str)


def test_search_by_upload_of_a_collection_photo(actx, project):
    image_id = int(project.store.row_image_ids()[3])
    data = (project.image_root / project.store.get_image(image_id)["path"]).read_bytes()
    stored = search_by_upload(actx, _data_uri(data), "cell.png", k=6)
    assert stored["query"] == "cell.png" and len(stored["neighbours"]) == 6
    assert stored["query_image_id"] == image_id  # recognised by content hash
    assert image_id not in [i for i, _ in stored["neighbours"]]
    assert not stored["is_novel"] and len(stored["map_xy"]) == 2
    assert stored["preview"] is None  # shown by its thumbnail
    # a photo new to the collection gets a small preview (the Search tab's <img>)
    import io

    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).transpose(Image.FLIP_LEFT_RIGHT).save(buf, format="PNG")
    new = search_by_upload(actx, _data_uri(buf.getvalue()), "new.png", k=3)
    assert new["query_image_id"] is None and new["preview"].startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(new["preview"].split(",", 1)[1]))) as im:
        assert max(im.size) <= 240


def test_bad_uploads_are_refused_before_use(actx, project):
    with pytest.raises(UploadError, match="not a readable image"):
        search_by_upload(actx, _data_uri(b"hello, not an image", "image/png"), "x.png")
    with pytest.raises(UploadError, match="larger than"):
        decode_data_uri(_data_uri(b"x" * 2048), max_bytes=1024)
    with pytest.raises(UploadError):
        decode_data_uri("not a data uri")
    with pytest.raises(UploadError, match="too many pixels"):
        check_image(_png(100, 100), max_pixels=50)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="ICO")
    with pytest.raises(UploadError, match="not an accepted image type"):
        check_image(buf.getvalue())
    truncated = _png()[:40]
    with pytest.raises(UploadError):
        check_image(truncated)
    # The type comes from decoding, not from the claimed name or mime type.
    assert check_image(_png()) == "PNG"
    assert project.store.labels() == {}


# -- refine --------------------------------------------------------------------------------


def test_split_preview_apply_and_undo(actx, project):
    before = project.store.current_clustering()["id"]
    p = split_preview_action(actx, 0, "kmeans", 2)
    assert len(p["groups"]) == 2 and project.store.current_clustering()["id"] == before
    assert "part 1" in json.dumps([c.to_plotly_json() for c in split_preview_view(p)], default=str)
    assert apply_split_action(actx, p, "ana")[1] == "ok"
    assert project.store.current_clustering()["id"] != before
    assert apply_split_action(actx, None, "ana")[1] == "error"
    # the map recolours from the new clustering (assignments are cached per clustering id)
    assert actx.assignment().clustering_id == project.store.current_clustering()["id"]
    undo_action(actx, "ana")
    assert project.store.current_clustering()["id"] == before
    assert actx.assignment().clustering_id == before


def _partition(store) -> dict[int, int]:
    """{image_id: cluster} of the current clustering; asserts each image is in exactly one cluster."""
    ids, clusters, _ = store.assignments()
    assert len(ids) == len(set(ids.tolist())) == len(store.row_image_ids()[store.row_image_ids() >= 0])
    return dict(zip(ids.tolist(), clusters.tolist()))


def test_merge_and_move_actions(actx, project):
    # HDBSCAN on real photos: how many clusters it finds varies with the machine and the
    # library versions, so check invariants of the actions, not the clusters of one draw.
    before = _partition(project.store)
    real = sorted({c for c in before.values() if c >= 0})
    assert len(real) >= 2, "ELPV's mono and poly cells should give at least two clusters"
    merge_opts, move_opts = cluster_options(actx)
    assert [o["value"] for o in merge_opts] == real
    assert [o["value"] for o in move_opts[:2]] == ["new", -1] and move_opts[2:] == merge_opts
    merged = real[:2]
    label_ids_action(actx, project.store.cluster_members(merged[1])[:2], "poly", "ana")
    labels = project.store.labels()
    size = sum(len(project.store.cluster_members(c)) for c in merged)

    assert merge_action(actx, merged, "ana")[1] == "ok"
    after = _partition(project.store)
    assert set(after) == set(before)  # every image still in exactly one cluster
    assert len({c for c in after.values() if c >= 0}) == len(real) - (len(merged) - 1)
    assert len(project.store.cluster_members(min(merged))) == size
    assert {i: c for i, c in after.items() if before[i] not in merged} == \
        {i: c for i, c in before.items() if c not in merged}  # other clusters untouched
    assert project.store.labels() == labels  # labels survive the merge
    assert [o["value"] for o in cluster_options(actx)[0]] == sorted({c for c in after.values() if c >= 0})
    assert merge_action(actx, [min(merged)], "ana")[1] == "error"
    assert _partition(project.store) == after  # a refused merge changes nothing

    moved = project.store.cluster_members(min(merged))[:3]
    assert move_action(actx, moved, "new", "ana")[1] == "ok"
    new = set(project.store.clusters_for(moved).values())
    assert len(new) == 1 and new.isdisjoint(after.values())
    assert move_action(actx, moved, -1, "ana")[1] == "ok"
    assert set(project.store.clusters_for(moved).values()) == {-1}
    assert set(_partition(project.store)) == set(before)
    assert move_action(actx, [], "new", "ana")[1] == "error"
    assert project.store.labels() == labels


def test_two_annotators_see_each_others_labels(project):
    other = Project(project.root)  # a second process would open the project the same way
    a, b = create_app(project).labeler, create_app(other).labeler
    label_cluster_action(a, 0, "mono", "ana")
    label_cluster_action(b, 1, "poly", "bob")
    assert panels.progress(a)["counts"] == panels.progress(b)["counts"]
    annotators = {r["annotator"] for r in project.store.label_rows()}
    assert annotators == {"ana", "bob"}
    other.store.close()


def test_write_actions_report_errors_and_bugs_differently(actx, project, caplog):
    from dash import no_update

    from labeler.errors import StaleStateError

    r = run(cl.label_ids_action, actx, project.store.cluster_members(0)[:2], "mono", "ana", version=3)
    assert r.ok and r.version == 4 and "Labelled 2" in r.message.children

    def stale():
        raise StaleStateError("the clustering changed")

    r = run(stale, version=4)
    assert not r.ok and r.version is no_update and r.message.children.startswith("Conflict:")

    def bug():
        raise KeyError("internal detail")

    with caplog.at_level("ERROR", logger="labeler.app"):
        r = run(bug, version=4)
    assert not r.ok and r.message.children == BUG_MESSAGE and "internal detail" not in r.message.children
    assert "Traceback" in caplog.text and "internal detail" in caplog.text


def test_label_cluster_action_refuses_a_page_older_than_the_clustering(actx, project):
    cid = project.store.current_clustering()["id"]
    seen = project.store.cluster_members(0)
    assert merge_action(actx, [0, 1], "bob")[1] == "ok"  # B merges after A opened cluster 0
    text, kind = label_cluster_action(actx, 0, "mono", "ana", clustering_id=cid, seen=seen)
    assert kind == "error" and text.startswith("Conflict:") and project.store.labels() == {}
    assert merge_action(actx, [0, 2], "ana", clustering_id=cid)[1] == "error"


# -- issue 20: labelled images start unticked, the page follows the clustering ----------------


def test_labelled_images_start_unticked_and_a_tick_chooses_to_relabel(actx, project):
    from labeler import labels as lab
    from labeler.app.labelling import labelled_note, ticked
    from labeler.app.common import is_ticked, update_ticks

    members = project.store.cluster_members(0)
    lab.label_images(project, members[:2], "poly", annotator="bob")
    lab.label_images(project, members[2:3], "mono", annotator="ana")
    *_, shown = cluster_detail_view(actx, 0, [], 1)
    assert shown == {str(members[0]): "poly", str(members[1]): "poly", str(members[2]): "mono"}
    assert not is_ticked(members[0], "poly", [], {}) and is_ticked(members[3], None, [], {})
    note = labelled_note(actx, members, {})
    assert note == "3 already labelled (poly 2 by bob, mono 1 by ana): tick to relabel"
    # tick members[0] (labelled) and untick members[3] (unlabelled), on the visible page
    vis = members[:4]
    ex, rel = update_ticks([], {}, vis, [[vis[0]], [], [], []], shown)
    assert ex == [members[3]] and rel == {str(members[0]): "poly"}
    assert is_ticked(members[0], "poly", ex, rel) and not is_ticked(members[3], None, ex, rel)
    assert is_ticked(members[0], "mono", ex, rel) is False  # its label changed: no longer chosen
    assert "1 labelled image(s) ticked" in labelled_note(actx, members, rel)
    # the cluster action: ticked labelled image replaced, the others skipped and reported
    text, kind = label_cluster_action(actx, 0, "mono", "kim", excluded=ex, relabel={int(k): v for k, v in rel.items()})
    assert kind == "ok" and "replaced 1 earlier label(s) (poly 1 by bob)" in text
    assert "2 already labelled left unchanged (poly 1 by bob, mono 1 by ana): tick them to relabel" in text
    labels = project.store.labels()
    assert labels[members[0]] == "mono" and labels[members[1]] == "poly" and members[3] not in labels
    # a label someone changed after the page showed it is left alone (the mapping holds the label shown)
    lab.label_images(project, [members[1]], "crack", annotator="bob", relabel=True)
    chosen, kwargs = ticked(members[:2], [], {str(members[1]): "poly"})
    text, kind = label_ids_action(actx, chosen, "mono", "kim", **kwargs)
    assert kind == "warn" and "Nothing labelled" in text and project.store.labels()[members[1]] == "crack"


def test_a_label_with_a_tab_is_refused_with_a_message(actx, project):
    text, kind = label_ids_action(actx, project.store.cluster_members(0)[:2], "mono\tpoly", "ana")
    assert kind == "error" and "TAB" in text and project.store.labels() == {}


def test_keys_on_an_older_clustering_reload_the_page_instead_of_acting(actx, project):
    from labeler.app.follow import clustering_change
    from labeler.app.viewer import keyboard_step

    from labeler.app.tabs.clusters.callbacks import cluster_seen

    cid = int(project.store.current_clustering()["id"])
    assert clustering_change(actx, cid) is None and clustering_change(actx, None) is None
    seen = cluster_seen(actx, 0)
    assert merge_action(actx, [0, 1], "bob")[1] == "ok"  # someone else merges while the page is open
    new, what, who = clustering_change(actx, cid)
    assert new != cid and who == "bob" and what.startswith("merge") and what.endswith("by bob")
    state = {"cluster": 0, "label": "mono", "annotator": "ana", "version": 5, "seen": seen, "clustering": cid}
    for key in ("enter", "next", "prev", "label"):
        out = keyboard_step(actx, key, state)
        text = out["message"].children
        assert out["clustering"] == new and out["version"] == 6 and "Nothing was done" in text
        assert text.startswith("The clustering changed (merge") and out["cluster"] is None  # cluster 0 grew
    assert project.store.labels() == {}
    # on the clustering it shows, Enter labels and clears the box (a second Enter has no label)
    out = keyboard_step(actx, "enter", dict(state, clustering=new, seen=cluster_seen(actx, 0)))
    assert out["label"] == "" and out["relabel"] == {} and set(project.store.labels()) == set(
        project.store.cluster_members(0))
    undo_action(actx, "bob")  # an undo of the merge: the older clustering is current again
    back, what, who = clustering_change(actx, new)
    assert back == cid and what.startswith("undo of 'merge") and who == "bob"
