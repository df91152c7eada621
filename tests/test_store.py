"""The SQLite store: labels, bulk labels, the event log, schema versions, errors that change nothing.

Undo, redo and label validation are in test_labels.py."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from labeler import history
from labeler.store import Store, StoreError


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


def test_unknown_image_changes_nothing(store):
    store.set_labels([1], "a")
    before = (store.labels(), len(store.label_events()), len(store.actions()))
    with pytest.raises(StoreError, match="unknown image"):
        store.set_labels([1, 999], "b")
    assert (store.labels(), len(store.label_events()), len(store.actions())) == before


def test_unknown_cluster(store):
    with pytest.raises(StoreError, match="unknown cluster"):
        store.cluster_members(42)


def test_changed_file_becomes_pending_and_keeps_row(store):
    store.add_or_update_images([{"path": "img0.png", "size": 99, "mtime": 2.0, "hash": "new"}])
    pend = store.pending_images()
    assert [(r["path"], r["row"]) for r in pend] == [("img0.png", 0)]


def test_row_of_is_the_inverse_of_row_image_ids_and_follows_other_writers(store, tmp_path):
    row_ids = store.row_image_ids()
    assert store.row_of(row_ids).tolist() == list(range(len(row_ids)))
    assert store.row_of([row_ids[2], 999, -5, row_ids[0]]).tolist() == [2, -1, -1, 0]
    assert store.row_of(np.array([[row_ids[1]]])).shape == (1, 1) and int(store.row_of(row_ids[3])) == 3
    table = store._row_of_cache
    store.set_labels([int(row_ids[0])], "a")  # a label write keeps the table
    store.row_of(row_ids)
    assert store._row_of_cache is table
    # Another connection (as another process would) adds a pending image, then embeds it.
    other = Store(store.path)
    other.add_or_update_images([{"path": "late.png", "size": 1, "mtime": 1.0, "hash": "late"}])
    [late] = other.pending_images()
    assert store.row_of([late["id"]]).tolist() == [-1]  # catalogued, not embedded yet
    other.commit_embedded([{"id": late["id"], "row": 6, "width": 4, "height": 4, "top1": 1, "top1_prob": 0.5}])
    other.close()
    assert store.row_of([late["id"], row_ids[5]]).tolist() == [6, 5]


def test_imagenet_top1_by_id_few_or_many(store):
    """Top-1 class and probability per id: unknown ids and never-embedded images get
    -1 / NaN, and the by-id path (<= 500 ids) agrees with the whole-table path."""
    ids = [int(i) for i in store.row_image_ids()]
    store.add_or_update_images([{"path": "pending.png", "size": 1, "mtime": 1.0, "hash": "p"}])
    [pending] = store.pending_images()
    ask = [ids[1], 10**9, -3, pending["id"], ids[0]]
    top1, prob = store.imagenet_top1(ask)
    assert top1.tolist() == [1, -1, -1, -1, 1] and top1.dtype == np.int64
    assert prob[[0, 4]].tolist() == [0.5, 0.5] and np.isnan(prob[[1, 2, 3]]).all()
    many = ask * 101  # 505 ids: the whole-table path
    t_many, p_many = store.imagenet_top1(many)
    assert t_many.tolist() == top1.tolist() * 101 and np.array_equal(p_many, np.tile(prob, 101), equal_nan=True)
    p2 = store.imagenet_top1([ids[2], 10**9])[1]
    assert p2[0] == 0.5 and np.isnan(p2[1])
    assert [len(a) for a in store.imagenet_top1([])] == [0, 0]


def test_neighbour_rows_agree_with_the_separate_lookups(store):
    """A search's one-statement metadata: path, label and cluster as get_images, labels_for and
    clusters_for give them, in the current clustering (a newer one counts, an undone one not)."""
    ids = [int(i) for i in store.row_image_ids()]
    store.set_labels(ids[:2], "crack")

    def separate():
        labels, clusters = store.labels_for(ids), store.clusters_for(ids)
        return {r["id"]: (r["path"], labels.get(r["id"]), clusters.get(r["id"], -1)) for r in store.get_images(ids)}

    assert store.neighbour_rows(ids) == separate()
    assert [c for _, _, c in store.neighbour_rows(ids).values()] == [0, 0, 0, 1, 1, -1]
    newer = store.add_clustering("kmeans", {"k": 1}, np.array(ids[:3]), np.array([0, 0, 0]), None,
                                 [{"cluster": 0, "size": 3, "representatives": ids[:3]}])
    assert store.neighbour_rows(ids) == separate()
    assert [c for _, _, c in store.neighbour_rows(ids).values()] == [0, 0, 0, -1, -1, -1]  # not in it: -1
    store.con.execute("UPDATE clusterings SET undone=1 WHERE id=?", (newer,))
    assert [c for _, _, c in store.neighbour_rows(ids).values()] == [0, 0, 0, 1, 1, -1]
    with pytest.raises(StoreError, match="unknown image"):
        store.neighbour_rows([ids[0], 999])


def test_packed_assignments_and_row_table_equal_the_row_by_row_reads(store):
    """The dashboard's start reads: a clustering from its packed copy (or row by row where it
    has none, as a copy made in SQL) and the images table once for ids and ImageNet top-1."""
    ids, clusters, strengths = store.assignments()
    packed = store.assignment_arrays()
    np.testing.assert_array_equal(packed[0], ids)
    np.testing.assert_array_equal(packed[1], clusters)
    assert packed[0].dtype == packed[1].dtype == np.int64 and np.isnan(strengths).all()
    shuffled = np.array([5, 2, 0, 4, 1, 3])  # stored in any order, read in image-id order
    cid = store.add_clustering("kmeans", {"k": 3}, ids[shuffled], np.array([2, 1, 0, 2, 1, -1]),
                               np.linspace(0, 1, 6), [])
    want = store.assignments(cid)
    np.testing.assert_array_equal(store.assignment_arrays(cid)[1], want[1])
    np.testing.assert_array_equal(want[1][shuffled], np.array([2, 1, 0, 2, 1, -1]))  # ids ascend
    copy = store.copy_clustering(cid, {"copy": True})  # the packed copy goes with it
    assert store.con.execute("SELECT COUNT(*) FROM assignment_arrays WHERE clustering_id=?", (copy,)).fetchone()[0]
    np.testing.assert_array_equal(store.assignment_arrays(copy)[1], want[1])
    store.con.execute("DELETE FROM assignment_arrays WHERE clustering_id=?", (cid,))  # none: row by row
    np.testing.assert_array_equal(store.assignment_arrays(cid)[1], want[1])
    store.con.execute("UPDATE images SET top1=NULL, top1_prob=NULL WHERE id=?", (int(ids[1]),))
    store.con.execute("DELETE FROM row_table_snapshot")  # a direct edit: only commit_embedded keeps it current
    row_ids, top1, prob = store.row_table()
    np.testing.assert_array_equal(row_ids, store.row_image_ids())
    t1, p1 = store.imagenet_top1(row_ids)
    np.testing.assert_array_equal(top1, t1)
    np.testing.assert_array_equal(prob, p1)
    assert top1[1] == -1 and np.isnan(prob[1]) and store.row_table(top1=False)[1] is None


def test_row_table_snapshot_is_served_only_while_current(store):
    """The packed row table is what a row-by-row read gives, and a new embedding (rows_version
    bumped) is seen at once, never the old snapshot."""
    first = store.row_table()
    assert store.con.execute("SELECT version FROM row_table_snapshot").fetchone()[0] == store.get_meta("rows_version")
    for a, b in zip(store.row_table(), store._row_table_read(True)):
        np.testing.assert_array_equal(a, b)
    store.add_or_update_images([{"path": "new.png", "size": 1, "mtime": 1.0, "hash": "hn"}])
    new = store.pending_images()[0]["id"]
    store.commit_embedded([{"id": new, "row": 9, "width": 4, "height": 4, "top1": 7, "top1_prob": 0.25}])
    row_ids, top1, prob = store.row_table()
    assert len(row_ids) == 10 and row_ids[9] == new and top1[9] == 7 and prob[9] == 0.25
    assert (row_ids[6:9] == -1).all() and np.array_equal(row_ids[:6], first[0])
    np.testing.assert_array_equal(store.row_image_ids(), row_ids)


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


# The schema of labeler 0.1.0 (SCHEMA_VERSION 1), verbatim: projects made with it must open.
_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id       INTEGER PRIMARY KEY,
    row      INTEGER UNIQUE,
    path     TEXT NOT NULL UNIQUE,
    size     INTEGER NOT NULL,
    mtime    REAL NOT NULL,
    width    INTEGER,
    height   INTEGER,
    hash     TEXT NOT NULL,
    status   TEXT NOT NULL CHECK (status IN ('pending', 'embedded', 'missing', 'skipped')),
    top1     INTEGER,
    top1_prob REAL,
    added_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS images_status ON images(status);
CREATE TABLE IF NOT EXISTS skipped (
    path    TEXT PRIMARY KEY,
    reason  TEXT NOT NULL,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS clusterings (
    id         INTEGER PRIMARY KEY,
    method     TEXT NOT NULL,
    params     TEXT NOT NULL,
    parent_id  INTEGER REFERENCES clusterings(id),
    action_id  INTEGER REFERENCES actions(id),
    created_at REAL NOT NULL,
    undone     INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS assignments (
    clustering_id INTEGER NOT NULL REFERENCES clusterings(id),
    image_id      INTEGER NOT NULL REFERENCES images(id),
    cluster       INTEGER NOT NULL,
    strength      REAL,
    PRIMARY KEY (clustering_id, image_id)
);
CREATE INDEX IF NOT EXISTS assignments_cluster ON assignments(clustering_id, cluster);
CREATE TABLE IF NOT EXISTS clusters (
    clustering_id   INTEGER NOT NULL REFERENCES clusterings(id),
    cluster         INTEGER NOT NULL,
    size            INTEGER NOT NULL,
    medoid_id       INTEGER,
    representatives TEXT NOT NULL,
    cohesion        REAL,
    suggested_name  TEXT,
    PRIMARY KEY (clustering_id, cluster)
);
CREATE TABLE IF NOT EXISTS actions (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    annotator   TEXT NOT NULL,
    at          REAL NOT NULL,
    description TEXT NOT NULL,
    undone_at   REAL,
    undoes      INTEGER REFERENCES actions(id)
);
CREATE TABLE IF NOT EXISTS labels (
    image_id   INTEGER PRIMARY KEY REFERENCES images(id),
    label      TEXT NOT NULL,
    source     TEXT NOT NULL,
    annotator  TEXT NOT NULL,
    action_id  INTEGER NOT NULL REFERENCES actions(id),
    labelled_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_label ON labels(label);
CREATE TABLE IF NOT EXISTS label_events (
    id         INTEGER PRIMARY KEY,
    action_id  INTEGER NOT NULL REFERENCES actions(id),
    image_id   INTEGER NOT NULL REFERENCES images(id),
    old_label  TEXT,
    new_label  TEXT,
    old_source TEXT,
    source     TEXT NOT NULL,
    annotator  TEXT NOT NULL,
    at         REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS label_events_image ON label_events(image_id);
CREATE INDEX IF NOT EXISTS label_events_action ON label_events(action_id);
"""


def _v1_project_db(path):
    con = sqlite3.connect(path)
    con.executescript(_SCHEMA_V1)
    con.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '1')")
    con.execute("INSERT INTO images(id, row, path, size, mtime, hash, status, added_at) "
                "VALUES (1, 0, 'a.png', 1, 0, 'h', 'embedded', 0)")
    con.execute("INSERT INTO actions(id, kind, annotator, at, description) VALUES (1, 'label', 'ana', 0, 'x')")
    con.execute("INSERT INTO labels VALUES (1, 'mono', 'manual', 'ana', 1, 0)")
    con.execute("INSERT INTO label_events(action_id, image_id, old_label, new_label, old_source, source, "
                "annotator, at) VALUES (1, 1, NULL, 'mono', NULL, 'manual', 'ana', 0)")
    con.commit()
    con.close()


def test_a_version_1_project_is_migrated_and_keeps_its_labels(tmp_path):
    from labeler import labels
    from labeler.store import SCHEMA_VERSION

    _v1_project_db(tmp_path / "labeler.db")
    s = Store(tmp_path / "labeler.db")
    assert s.get_meta("schema_version") == SCHEMA_VERSION == 4
    assert s.labels() == {1: "mono"} and s.label_rows()[0]["stale"] == 0
    history.undo(s, "ana")  # the old action undoes, and redo (new columns) works on it
    assert s.labels() == {}
    history.redo(s, "ana")
    assert s.labels() == {1: "mono"}
    s.close()
    assert Store(tmp_path / "labeler.db").get_meta("schema_version") == 4  # opening again: no-op


def test_a_newer_project_is_refused_unchanged(tmp_path):
    from labeler.errors import ProjectError

    _v1_project_db(tmp_path / "labeler.db")
    con = sqlite3.connect(tmp_path / "labeler.db")
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(ProjectError, match="newer than this labeler"):
        Store(tmp_path / "labeler.db")
    con = sqlite3.connect(tmp_path / "labeler.db")
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "99"
    cols = {r[1] for r in con.execute("PRAGMA table_info(labels)")}
    assert "stale" not in cols
