"""The map's per-point label codes follow every label change, from any connection."""

import numpy as np

from labeler import history
from labeler import labels
from labeler.app import views
from labeler.app.label_codes import PointLabelCodes
from labeler.store import Store


def truth(store, point_ids):
    current = store.labels()
    return np.array([current.get(int(i), "") for i in point_ids], dtype=object)


def same_coloring(a, b):
    np.testing.assert_array_equal(a.codes, b.codes)
    assert a.colors == b.colors and a.legend == b.legend


def test_codes_follow_labels_undo_rename_and_other_writers(store, tmp_path):
    ids = store.row_image_ids()
    point_ids = ids[[4, 0, 2, 1, 3]]  # the map's order, not id order; ids[5] is not on the map
    codes = PointLabelCodes(point_ids)
    labels.label_images(store, [ids[5]], "off-map")  # before the first look: read from the labels table
    labels.label_images(store, ids[:3], "crack")
    np.testing.assert_array_equal(codes.names_of(store), truth(store, point_ids))
    labels.label_images(store, ids[2:4], "clean", relabel=True)  # relabels ids[2]
    labels.label_images(store, [ids[0]], "crack", relabel=True)  # the same label again
    np.testing.assert_array_equal(codes.names_of(store), truth(store, point_ids))
    history.undo(store)
    history.undo(store)
    np.testing.assert_array_equal(codes.names_of(store), truth(store, point_ids))
    other = Store(tmp_path / "labeler.db")  # another worker process's connection
    labels.label_images(other, [ids[4]], "finger")
    labels.rename_label(other, "crack", "Crack")
    other.close()
    got = codes.names_of(store)
    np.testing.assert_array_equal(got, truth(store, point_ids))
    assert got[0] == "finger" and "crack" not in set(got)
    # The same colours and legend as colouring the strings; a label no image has left is left out.
    same_coloring(views.color_by_label_codes(codes.codes(store), codes.names),
                  views.color_by_label(truth(store, point_ids)))
    assert "crack" in codes.names and all(name != "crack" for name, _, _ in
                                          views.color_by_label_codes(codes.codes(store), codes.names).legend)
    np.testing.assert_array_equal(codes.labelled(store), truth(store, point_ids) != "")
    fresh = PointLabelCodes(point_ids)  # a new worker starts from the labels table
    np.testing.assert_array_equal(fresh.names_of(store), truth(store, point_ids))


def test_codes_of_an_unlabelled_map_and_empty_map(store):
    codes = PointLabelCodes(store.row_image_ids())
    assert not codes.labelled(store).any()
    col = views.color_by_label_codes(codes.codes(store), codes.names)
    assert col.legend == [("unlabelled", views.UNLABELLED_COLOR, 6)] and col.colors == [views.UNLABELLED_COLOR]
    empty = PointLabelCodes(np.zeros(0, np.int64))
    labels.label_images(store, [int(store.row_image_ids()[0])], "x")
    assert empty.codes(store).shape == (0,)


def test_recolour_after_a_label_action_shows_it(project):
    from labeler.app import create_app

    actx = create_app(project).labeler
    before = views.coloring(actx, views.COLOR_BY_LABEL)
    assert before.legend[0][2] == actx.n_points
    cluster = int(np.max(actx.assignment().clusters))
    labels.label_cluster(project, cluster, "cell")
    members = actx.assignment().clusters == cluster
    after = views.coloring(actx, views.COLOR_BY_LABEL)
    assert (after.codes[members] == 1).all() and (after.codes[~members] == 0).all()
    same_coloring(after, views.color_by_label(actx.point_labels()))
    patch = views.recolor_patch(actx, views.COLOR_BY_LABEL, after).to_plotly_json()
    marker = {op["location"][-1]: op["params"]["value"] for op in patch["operations"]
              if op["location"][:3] == ["data", 0, "marker"]}
    assert "opacity" not in marker  # the state rides in the colour codes, no float per point
    rgba = drawn_rgba(marker)
    assert (rgba[members, 3] == views.LABELLED_OPACITY).all() and (rgba[~members, 3] == views.UNLABELLED_OPACITY).all()
    assert {tuple(c) for c in rgba[members, :3]} == {hex_rgb(after.colors[1])}
    assert {tuple(c) for c in rgba[~members, :3]} == {hex_rgb(views.UNLABELLED_COLOR)}


def hex_rgb(colour):
    return tuple(float(int(colour[i:i + 2], 16)) for i in (1, 3, 5))


def drawn_rgba(marker):
    """(n, 4) rgba of each point as plotly maps a code through the step colour scale
    (cmin=-0.5, cmax=m-0.5: code i -> band i)."""
    import base64
    import re

    codes = np.frombuffer(base64.b64decode(marker["color"]["bdata"]),
                          {"u1": np.uint8, "u2": np.uint16}[marker["color"]["dtype"]])
    scale = marker["colorscale"]
    m = marker["cmax"] + 0.5
    assert marker["cmin"] == -0.5 and len(scale) == 2 * m and float(m).is_integer()
    bands = []
    for i in range(int(m)):
        (lo, c), (hi, c2) = scale[2 * i], scale[2 * i + 1]
        assert c == c2 and np.isclose(lo, i / m) and np.isclose(hi, (i + 1) / m)  # flat bands
        bands.append([float(v) for v in re.match(r"rgba\((.*)\)", c).group(1).split(",")])
    return np.array(bands)[codes]


def test_point_states_ride_in_the_codes_for_every_mode_and_open_cluster(project):
    from labeler.app import create_app

    actx = create_app(project).labeler
    clusters = actx.assignment().clusters
    labels.label_cluster(project, int(np.max(clusters)), "cell")
    labelled = actx.point_labels() != ""
    for mode in (views.COLOR_BY_CLUSTER, views.COLOR_BY_LABEL, views.COLOR_BY_CONFIDENCE):
        col = views.coloring(actx, mode)
        flat = col.code_colors or col.colors
        for cluster in (None, int(clusters[0])):
            marker = views.map_figure(actx, mode, col, cluster)["data"][0]["marker"]
            assert "opacity" not in marker and marker["color"]["dtype"] == "u1"
            rgba = drawn_rgba(marker)
            expect = views.point_opacity(labelled, views.open_mask(actx, cluster), mode)
            np.testing.assert_allclose(rgba[:, 3], expect, atol=1e-4)
            # The hue is the category's colour whatever the state.
            want = np.array([hex_rgb(flat[c]) for c in col.codes])
            np.testing.assert_array_equal(rgba[:, :3], want)
            patch = views.recolor_patch(actx, mode, col, cluster).to_plotly_json()
            got = {op["location"][-1]: op["params"]["value"] for op in patch["operations"]
                   if op["location"][:3] == ["data", 0, "marker"]}
            assert got == {k: marker[k] for k in ("color", "colorscale", "cmin", "cmax")}


def test_cluster_colouring_is_made_once_per_clustering(project):
    from labeler.app import create_app

    actx = create_app(project).labeler
    first = views.coloring(actx, views.COLOR_BY_CLUSTER)
    assert views.coloring(actx, views.COLOR_BY_CLUSTER) is first
    from labeler.refine import merge_clusters

    ids = [int(c) for c in np.unique(actx.assignment().clusters) if c >= 0][:2]
    merge_clusters(project, ids)  # an edit makes a new clustering: a new colouring
    again = views.coloring(actx, views.COLOR_BY_CLUSTER)
    assert again is not first and views.coloring(actx, views.COLOR_BY_CLUSTER) is again
    same_coloring(again, views.color_by_cluster(actx.assignment().clusters))


def test_state_codes_number_the_pairs_present():
    cats = np.array([0, 3, 3, 1, 0], np.uint8)
    state = np.array([1, 0, 2, 3, 1], np.uint8)
    codes, pairs = views.state_codes(cats, state)
    assert codes.dtype == np.uint8 and pairs.tolist() == [[0, 1], [1, 3], [3, 0], [3, 2]]
    assert codes.tolist() == [0, 2, 3, 1, 0]
    wide, pairs = views.state_codes(np.arange(100, dtype=np.uint8).repeat(4), np.tile(np.arange(4, dtype=np.uint8), 100))
    assert wide.dtype == np.uint16 and len(pairs) == 400
    empty, none = views.state_codes(np.zeros(0, np.uint8), np.zeros(0, np.uint8))
    assert empty.shape == (0,) and none.shape == (0, 2)


def test_app_codes_follow_a_reload_of_the_map_points(store):
    from labeler.app.label_codes import point_label_codes

    class Ctx:
        point_ids = store.row_image_ids()[:4]

    ctx = Ctx()
    first = point_label_codes(ctx)
    assert point_label_codes(ctx) is first
    labels.label_images(store, [int(store.row_image_ids()[5])], "late")
    ctx.point_ids = store.row_image_ids()  # the app reloaded its points: two more
    again = point_label_codes(ctx)
    assert again is not first and again.names_of(store).tolist() == ["", "", "", "", "", "late"]


def test_cluster_members_use_a_covering_index_also_in_an_older_project(tmp_path):
    import sqlite3

    db = tmp_path / "old.db"
    store = Store(db)
    store.close()
    con = sqlite3.connect(db)  # a project made before the index existed
    con.execute("DROP INDEX assignments_cluster_image")
    con.commit()
    con.close()
    store = Store(db)  # opening it adds the index
    plan = store.con.execute("EXPLAIN QUERY PLAN SELECT image_id FROM assignments WHERE clustering_id=1 AND "
                             "cluster=2 ORDER BY image_id").fetchall()
    store.close()
    assert "COVERING INDEX assignments_cluster_image" in " ".join(str(r[-1]) for r in plan)
