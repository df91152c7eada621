"""The map's per-point label codes follow every label change, from any connection."""

import numpy as np

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
    labels.label_images(store, ids[2:4], "clean")  # relabels ids[2]
    labels.label_images(store, [ids[0]], "crack")  # the same label again
    np.testing.assert_array_equal(codes.names_of(store), truth(store, point_ids))
    labels.undo(store)
    labels.undo(store)
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
    opacity = next(op["params"]["value"] for op in patch["operations"]
                   if op["location"] == ["data", 0, "marker", "opacity"])
    import base64

    op = np.frombuffer(base64.b64decode(opacity["bdata"]), np.float32)
    assert (op[members] == views.LABELLED_OPACITY).all() and (op[~members] == views.UNLABELLED_OPACITY).all()


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
