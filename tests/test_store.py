"""The SQLite store: labels, bulk labels, undo, the event log, errors that change nothing."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from labeler.store import Store, StoreError


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "labeler.db")
    s.add_or_update_images(
        [{"path": f"img{i}.png", "size": 10 + i, "mtime": 1.0, "hash": f"h{i}"} for i in range(6)]
    )
    recs = [{"id": r["id"], "row": n, "width": 4, "height": 4, "top1": 1, "top1_prob": 0.5}
            for n, r in enumerate(s.pending_images())]
    s.commit_embedded(recs)
    ids = s.row_image_ids()
    s.add_clustering("kmeans", {"k": 2}, ids, np.array([0, 0, 0, 1, 1, -1]), None,
                     [{"cluster": 0, "size": 3, "representatives": list(ids[:3])},
                      {"cluster": 1, "size": 2, "representatives": list(ids[3:5])},
                      {"cluster": -1, "size": 1, "representatives": [ids[5]]}])
    yield s
    s.close()


def test_wal_mode(store):
    assert store.con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_label_bulk_and_events(store):
    ids = store.cluster_members(0)
    action = store.set_labels(ids, "crack", source="cluster", annotator="ana")
    assert store.labels() == {i: "crack" for i in ids}
    evs = store.label_events()
    assert [(e["image_id"], e["old_label"], e["new_label"], e["source"], e["annotator"], e["action_id"])
            for e in evs] == [(i, None, "crack", "cluster", "ana", action) for i in ids]


def test_relabel_logs_old_to_new(store):
    store.set_labels([1], "a", annotator="ana")
    store.set_labels([1], "b", annotator="bob")
    evs = store.label_events(1)
    assert [(e["old_label"], e["new_label"], e["annotator"]) for e in evs] == [(None, "a", "ana"), ("a", "b", "bob")]
    assert store.label_rows()[0]["annotator"] == "bob"


def test_undo_bulk_action_as_one(store):
    store.set_labels([1, 2], "a", annotator="ana")
    store.set_labels([1, 2, 3], "b", annotator="bob")
    undone = store.undo("bob")
    assert undone["kind"] == "label"
    assert store.labels() == {1: "a", 2: "a"}
    assert store.label_rows()[0]["annotator"] == "ana"  # the earlier label's author comes back
    store.undo("bob")
    assert store.labels() == {}
    assert store.undo("bob") is None
    # The log is append-only: undo added events, removed none.
    assert len(store.label_events()) == 2 + 3 + 3 + 2
    assert {e["source"] for e in store.label_events()[-5:]} == {"undo"}


def test_unknown_image_changes_nothing(store):
    store.set_labels([1], "a")
    before = (store.labels(), len(store.label_events()), len(store.actions()))
    with pytest.raises(StoreError, match="unknown image"):
        store.set_labels([1, 999], "b")
    assert (store.labels(), len(store.label_events()), len(store.actions())) == before


@pytest.mark.parametrize("label", ["", "   "])
def test_empty_label_rejected(store, label):
    with pytest.raises(StoreError):
        store.set_labels([1], label)
    assert store.labels() == {}


def test_unknown_cluster(store):
    with pytest.raises(StoreError, match="unknown cluster"):
        store.cluster_members(42)


def test_cluster_edit_undo_restores_previous_clustering(store):
    first = store.current_clustering()["id"]
    ids, labels, st = store.assignments()
    store.add_clustering("edit", {}, ids, np.zeros_like(labels), None, [{"cluster": 0, "size": 6}],
                         parent_id=first, annotator="ana", description="merge")
    assert store.current_clustering()["id"] != first
    assert store.undo("ana")["kind"] == "cluster"
    assert store.current_clustering()["id"] == first


def test_changed_file_becomes_pending_and_keeps_row(store):
    store.add_or_update_images([{"path": "img0.png", "size": 99, "mtime": 2.0, "hash": "new"}])
    pend = store.pending_images()
    assert [(r["path"], r["row"]) for r in pend] == [("img0.png", 0)]


def test_missing_keeps_labels(store):
    store.set_labels([1], "keep")
    store.mark_missing(["img0.png"])
    assert store.get_image(1)["status"] == "missing"
    assert store.labels() == {1: "keep"}
    store.touch_images(["img0.png"])
    assert store.get_image(1)["status"] == "embedded"


def test_concurrent_writers_lose_nothing(tmp_path, store):
    """Several threads (as several annotators / gunicorn workers) label at once."""
    errors = []

    def work(n):
        try:
            s = Store(store.path)  # own connection, like another process
            for _ in range(10):
                s.set_labels([n + 1], f"w{n}", annotator=f"a{n}")
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.labels() == {n + 1: f"w{n}" for n in range(5)}
    assert len(store.label_events()) == 50


def test_database_is_plain_sqlite(store):
    con = sqlite3.connect(store.path)
    assert {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")} >= {
        "images", "labels", "label_events", "clusterings", "assignments", "clusters", "skipped", "actions"}
