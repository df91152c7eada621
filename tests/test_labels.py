"""Labelling actions (labeler.labels): validation, bulk labels, accepting suggestions,
undo and redo, stale cluster requests. On a bare store (6 images, clusters 0, 1, noise)."""

from __future__ import annotations

import numpy as np
import pytest

from labeler import history
from labeler import labels
from labeler.errors import BadInputError, StaleStateError, StoreError


def _state(store):
    return store.labels(), len(store.label_events()), len(store.actions(10**6))


def test_undo_bulk_action_as_one(store):
    labels.label_images(store, [1, 2], "a", annotator="ana")
    labels.label_images(store, [1, 2, 3], "b", annotator="bob", relabel=True)
    undone = history.undo(store, "bob")
    assert undone.kind == "label"
    assert store.labels() == {1: "a", 2: "a"}
    assert store.label_rows()[0]["annotator"] == "ana"  # the earlier label's author comes back
    history.undo(store, "ana")
    assert store.labels() == {}
    assert history.undo(store, "ana") is None
    # The log is append-only: undo added events, removed none.
    assert len(store.label_events()) == 2 + 3 + 3 + 2
    assert {e["source"] for e in store.label_events()[-5:]} == {"undo"}


@pytest.mark.parametrize("label", ["", "   ", None, "two\nlines", "cr\rhere", "x" * 201])
def test_bad_labels_rejected_and_nothing_written(store, label):
    before = _state(store)
    with pytest.raises(BadInputError):
        labels.label_images(store, [1], label)
    with pytest.raises(BadInputError):
        labels.label_cluster(store, 0, label)
    assert _state(store) == before


def test_label_and_annotator_limits(store):
    labels.label_images(store, [1], " " + "x" * 200 + " ", annotator="a" * 100)
    assert store.labels() == {1: "x" * 200}
    with pytest.raises(BadInputError, match="at most 100"):
        labels.label_images(store, [1], "ok", annotator="a" * 101)
    with pytest.raises(BadInputError, match="single line"):
        labels.label_images(store, [1], "ok", annotator="ana\nbob")
    assert labels.clean_annotator("  ") == "anonymous"


def test_unknown_image_or_cluster_changes_nothing(store):
    labels.label_images(store, [1], "a")
    before = _state(store)
    with pytest.raises(StoreError, match="unknown image"):
        labels.label_images(store, [1, 999], "b")
    with pytest.raises(StoreError, match="unknown cluster"):
        labels.label_cluster(store, 42, "b")
    with pytest.raises(StoreError, match="excluded"):
        labels.label_cluster(store, 1, "b", exclude=store.cluster_members(1))
    assert _state(store) == before


def test_remove_labels_is_undoable(store):
    labels.label_images(store, [1, 2], "a", annotator="ana")
    labels.remove_labels(store, [1], annotator="ana")
    assert store.labels() == {2: "a"}
    history.undo(store, "ana")
    assert store.labels() == {1: "a", 2: "a"}


def test_accept_suggestions_above_threshold_records_confidence(store):
    res = labels.accept_suggestions(store, [1, 2, 3], ["mono", "poly", "mono"], [0.9, 0.5, 0.8],
                                    0.75, annotator="ana")
    action, ids = res.action_id, res.written
    assert ids == [1, 3] and store.labels() == {1: "mono", 3: "mono"}
    evs = store.label_events()
    assert [(e["image_id"], e["source"], e["confidence"], e["action_id"]) for e in evs] == [
        (1, "suggestion", 0.9, action), (3, "suggestion", 0.8, action)]
    assert {r["source"] for r in store.label_rows()} == {"suggestion"}
    nothing = labels.accept_suggestions(store, [2], ["poly"], [0.1], 0.75)
    assert nothing.action_id is None and nothing.written == []
    with pytest.raises(BadInputError):
        labels.accept_suggestions(store, [1, 2], ["a"], [0.9, 0.9], 0.5)
    with pytest.raises(BadInputError):
        labels.accept_suggestions(store, [1], ["a"], [1.5], 0.5)
    with pytest.raises(StoreError):
        labels.accept_suggestions(store, [999], ["a"], [0.9], 0.5)
    history.undo(store, "ana")  # one action: undoes as one
    assert store.labels() == {}
    history.redo(store, "ana")
    assert store.labels() == {1: "mono", 3: "mono"}
    assert [e["confidence"] for e in store.label_events()[-2:]] == [0.9, 0.8]


def test_redo_reapplies_and_a_fresh_action_ends_redo(store):
    labels.label_images(store, [1, 2], "a", annotator="ana")
    labels.label_images(store, [2, 3], "b", annotator="ana", relabel=True)
    assert history.redo(store, "ana") is None  # nothing undone yet
    history.undo(store, "ana")
    history.undo(store, "ana")
    assert store.labels() == {}
    assert history.redo(store, "ana").description.startswith("label 2 image(s) 'a'")
    assert store.labels() == {1: "a", 2: "a"}
    history.redo(store, "ana")
    assert store.labels() == {1: "a", 2: "b", 3: "b"}
    assert history.redo(store, "ana") is None
    # the redo is itself an action: undo takes it back
    history.undo(store, "ana")
    assert store.labels() == {1: "a", 2: "a"}
    labels.label_images(store, [5], "c", annotator="ana")  # a fresh action
    assert history.redo(store, "ana") is None
    assert {r["source"] for r in store.label_rows()} == {"manual"}


def test_cluster_edit_undo_and_redo(store):
    first = store.current_clustering()["id"]
    ids, clusters, _ = store.assignments()
    edit = store.add_clustering("edit", {}, ids, np.zeros_like(clusters), None, [{"cluster": 0, "size": 6}],
                                parent_id=first, annotator="ana", description="merge")
    assert history.undo(store, "ana").kind == "cluster"
    assert store.current_clustering()["id"] == first
    assert history.redo(store, "ana").kind == "cluster"
    assert store.current_clustering()["id"] == edit
    history.undo(store, "ana")
    assert store.current_clustering()["id"] == first


def test_label_cluster_refuses_a_stale_clustering_or_member_list(store):
    first = store.current_clustering()["id"]
    seen = store.cluster_members(0)
    ids, clusters, _ = store.assignments()
    store.add_clustering("edit", {}, ids, np.array([0, 0, 1, 1, 1, -1]), None, [],
                         parent_id=first, annotator="bob", description="move")
    before = _state(store)
    with pytest.raises(StaleStateError, match="clustering changed"):
        labels.label_cluster(store, 0, "x", clustering_id=first)
    with pytest.raises(StaleStateError, match="changed since you opened it"):
        labels.label_cluster(store, 0, "x", seen=seen)
    assert _state(store) == before
    done = labels.label_cluster(store, 0, "x", clustering_id=store.current_clustering()["id"],
                                seen=store.cluster_members(0)).written
    assert done == seen[:2]


def test_a_failure_inside_a_composed_action_writes_nothing(store):
    before = _state(store)
    with pytest.raises(RuntimeError):
        with store.transaction():
            labels.label_images(store, [1], "a")
            raise RuntimeError("boom")
    assert _state(store) == before


def test_undo_and_redo_are_per_annotator(store):
    labels.label_images(store, [1, 2, 3], "a", annotator="ana")
    labels.label_images(store, [2], "b", annotator="bob", relabel=True)
    labels.label_images(store, [4], "x", annotator="bob")
    # ana's undo reverts ana's action only; bob's later label of image 2 stays, and she is told
    done = history.undo(store, "ana")
    assert done.description.startswith("label 3 image(s) 'a'") and done.skipped == [2]
    assert "1 image(s) not restored" in done.note and "#2" in done.note
    assert store.labels() == {2: "b", 4: "x"}
    assert history.undo(store, "ana") is None  # bob's actions are not hers to undo
    assert store.labels() == {2: "b", 4: "x"}
    # bob's undo reverts his newest action only
    assert history.undo(store, "bob").description.startswith("label 1 image(s) 'x'")
    assert store.labels() == {2: "b"}
    # ana's redo re-applies her action where nobody else changed things since
    redone = history.redo(store, "ana")  # image 2: bob's later label stays in force
    assert redone.skipped == [2] and store.labels() == {1: "a", 2: "b", 3: "a"}
    assert history.redo(store, "ana") is None
    history.redo(store, "bob")
    assert store.labels() == {1: "a", 2: "b", 3: "a", 4: "x"}
    # who did what is in the log
    by = {(e["annotator"], e["source"]) for e in store.label_events()}
    assert {("ana", "undo"), ("ana", "redo"), ("bob", "undo"), ("bob", "redo")} <= by


def test_redo_skips_images_someone_else_changed_after_the_undo(store):
    labels.label_images(store, [1, 2], "a", annotator="ana")
    history.undo(store, "ana")
    labels.label_images(store, [2], "b", annotator="bob")
    redone = history.redo(store, "ana")
    assert redone.skipped == [2] and store.labels() == {1: "a", 2: "b"}


def test_undo_of_a_cluster_edit_under_a_later_one_says_so(store):
    first = store.current_clustering()["id"]
    ids, clusters, _ = store.assignments()
    store.add_clustering("edit", {}, ids, np.zeros_like(clusters), None, [], parent_id=first,
                         annotator="ana", description="merge")
    later = store.add_clustering("edit", {}, ids, np.ones_like(clusters), None, [],
                                 parent_id=store.current_clustering()["id"], annotator="bob", description="x")
    done = history.undo(store, "ana")
    assert done.kind == "cluster" and "stays" in done.note
    assert store.current_clustering()["id"] == later


def test_label_vocabulary_rename_merge_and_close_labels(store):
    labels.label_images(store, [1, 2], "mono", annotator="ana")
    labels.label_images(store, [3], "monomono", annotator="bob")
    labels.label_images(store, [4], "Poly", annotator="bob")
    summary = {d["label"]: d for d in labels.label_summary(store)}
    assert summary["mono"]["count"] == 2 and summary["mono"]["annotators"] == {"ana": 2}
    assert summary["monomono"]["annotators"] == {"bob": 1}
    # near-duplicates need a confirmation, the same label or a distinct one does not
    assert labels.close_labels("monomono", ["mono", "poly"]) == ["mono"]
    assert labels.close_labels("poly", ["Poly", "mono"]) == ["Poly"]
    assert labels.close_labels("mono", ["mono", "poly"]) == []
    with pytest.raises(labels.NeedsConfirmation, match="close to 'Poly'"):
        labels.check_new_label(store, "poly")
    assert labels.check_new_label(store, "poly", confirmed=True) == "poly"
    assert labels.check_new_label(store, "mono") == "mono"
    assert labels.check_new_label(store, "cracked") == "cracked"
    # merge is one undoable action
    action, n = labels.merge_labels(store, ["monomono"], "mono", annotator="ana")
    assert n == 1 and store.labels() == {1: "mono", 2: "mono", 3: "mono", 4: "Poly"}
    history.undo(store, "ana")
    assert store.labels()[3] == "monomono" and store.label_rows()[2]["annotator"] == "bob"
    action, n = labels.rename_label(store, "Poly", "poly", annotator="bob")
    assert n == 1 and store.labels()[4] == "poly"
    history.undo(store, "bob")
    assert store.labels()[4] == "Poly"
    from labeler.errors import NotFoundError

    with pytest.raises(NotFoundError):
        labels.rename_label(store, "nothing", "x")
    with pytest.raises(BadInputError):
        labels.rename_label(store, "mono", "two\nlines")


def test_changed_file_marks_its_label_stale_until_confirmed(store):
    labels.label_images(store, [1, 2], "a", annotator="ana")
    store.add_or_update_images([{"path": "img0.png", "size": 99, "mtime": 2.0, "hash": "new"},
                                {"path": "img1.png", "size": 11, "mtime": 1.0, "hash": "h1"}])
    assert store.stale_image_ids() == [1] and store.counts()["stale"] == 1
    assert labels.label_summary(store)[0]["stale"] == 1
    assert labels.confirm_stale(store) == 1 and store.stale_image_ids() == []
    store.add_or_update_images([{"path": "img0.png", "size": 98, "mtime": 3.0, "hash": "newer"}])
    assert store.stale_image_ids() == [1]
    labels.label_images(store, [1], "b", annotator="ana", relabel=True)  # re-labelling confirms too
    assert store.stale_image_ids() == []
