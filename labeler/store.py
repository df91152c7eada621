"""The project database: SQLite in WAL mode. Only this module writes SQL.

Tables
------
meta            key/value settings of the project (image root, backbone, ...)
images          one row per catalogued file; ``row`` is its row in every array
skipped         files that could not be used, with the reason
clusterings     one row per clustering run; the newest non-undone one is current
assignments     (clustering, image) -> cluster id (-1 = noise) and membership strength
clusters        per-cluster summary of a clustering (size, medoid, representatives, ...)
actions         one row per user action (a bulk label is one action); undo works on these
labels          the current label of each image
label_events    append-only log: who, when, old -> new, source, action

Connections are per thread (``sqlite3`` objects must not cross threads), so one
:class:`Store` can serve a multi-threaded web server. WAL mode lets several
processes (gunicorn workers, the CLI) read while one writes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .errors import StoreError

SCHEMA_VERSION = 1

LABEL_SOURCES = ("manual", "cluster", "search", "propagated", "undo")

_SCHEMA = """
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




def _chunks(seq: Sequence[Any], n: int = 900) -> Iterable[Sequence[Any]]:
    # SQLite caps host parameters per statement (999 on old builds).
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


class Store:
    """Thread-safe access to one project database.

    Parameters
    ----------
    path : Path
        The ``labeler.db`` file; created with the schema if missing.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._local = threading.local()
        # executescript commits on its own: the DDL is idempotent (IF NOT EXISTS).
        self.con.executescript(_SCHEMA)
        with self.transaction() as con:
            con.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    # -- connections ---------------------------------------------------------------
    @property
    def con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA foreign_keys=ON")
            self._local.con = con
        return con

    @contextmanager
    def transaction(self):
        """A write transaction (``BEGIN IMMEDIATE``): all or nothing."""
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        else:
            con.execute("COMMIT")

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    # -- meta --------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        """The JSON-decoded value stored under ``key``, or ``default``."""
        r = self.con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if r is None else json.loads(r["value"])

    def set_meta(self, **items: Any) -> None:
        """Store JSON-encodable values under their keys."""
        with self.transaction() as con:
            con.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                [(k, json.dumps(v)) for k, v in items.items()],
            )

    # -- images ------------------------------------------------------------------------
    def images_by_path(self) -> dict[str, sqlite3.Row]:
        """Every catalogued image keyed by its path relative to the image root."""
        return {r["path"]: r for r in self.con.execute("SELECT * FROM images")}

    def add_or_update_images(self, entries: Sequence[dict]) -> None:
        """Insert new files or mark changed ones pending.

        ``entries``: dicts with path, size, mtime, hash. A known path whose hash
        changed keeps its id, row and label and becomes ``pending`` (re-embedded).
        """
        now = time.time()
        with self.transaction() as con:
            for e in entries:
                con.execute(
                    "INSERT INTO images(path, size, mtime, hash, status, added_at) "
                    "VALUES (:path, :size, :mtime, :hash, 'pending', :now) "
                    "ON CONFLICT(path) DO UPDATE SET size=excluded.size, "
                    "mtime=excluded.mtime, "
                    "status=CASE WHEN images.hash=excluded.hash AND images.status "
                    "IN ('embedded','skipped') THEN images.status ELSE 'pending' END, "
                    "hash=excluded.hash",
                    {**e, "now": now},
                )

    def touch_images(self, paths: Sequence[str]) -> None:
        """Mark files seen again (unchanged): a file once missing becomes live again."""
        with self.transaction() as con:
            for chunk in _chunks(list(paths)):
                q = ",".join("?" * len(chunk))
                con.execute(
                    f"UPDATE images SET status = CASE WHEN row IS NULL THEN 'pending' "
                    f"ELSE 'embedded' END WHERE status='missing' AND path IN ({q})",
                    chunk,
                )

    def mark_missing(self, paths: Sequence[str]) -> None:
        """Files that disappeared: kept, with their labels, as ``missing``."""
        with self.transaction() as con:
            for chunk in _chunks(list(paths)):
                q = ",".join("?" * len(chunk))
                con.execute(f"UPDATE images SET status='missing' WHERE path IN ({q})", chunk)

    def mark_all_pending(self) -> None:
        """Every embedded image must be embedded again (backbone change); labels stay."""
        with self.transaction() as con:
            con.execute("UPDATE images SET status='pending' WHERE status IN ('embedded','skipped')")

    def pending_images(self) -> list[sqlite3.Row]:
        """Images still to embed, ordered by id."""
        return self.con.execute(
            "SELECT id, path, row FROM images WHERE status='pending' ORDER BY id"
        ).fetchall()

    def next_row(self) -> int:
        """The first array row not yet given to any image."""
        r = self.con.execute("SELECT MAX(row) AS m FROM images").fetchone()
        return 0 if r["m"] is None else int(r["m"]) + 1

    def commit_embedded(self, records: Sequence[dict]) -> None:
        """Mark images embedded at their rows (one transaction).

        ``records``: dicts with id, row, width, height, top1, top1_prob.
        """
        with self.transaction() as con:
            con.executemany(
                "UPDATE images SET row=:row, width=:width, height=:height, top1=:top1, "
                "top1_prob=:top1_prob, status='embedded' WHERE id=:id",
                records,
            )
            con.executemany(
                "DELETE FROM skipped WHERE path=(SELECT path FROM images WHERE id=?)",
                [(r["id"],) for r in records],
            )

    def mark_skipped(self, failures: Sequence[tuple[str, str]]) -> None:
        """Record files that could not be used: ``(relative path, reason)`` pairs.

        A catalogued image among them becomes ``skipped`` (its label, and the
        embedding of an earlier good version, stay).
        """
        now = time.time()
        with self.transaction() as con:
            con.executemany(
                "INSERT INTO skipped(path, reason, seen_at) VALUES (?, ?, ?) "
                "ON CONFLICT(path) DO UPDATE SET reason=excluded.reason, "
                "seen_at=excluded.seen_at",
                [(p, r, now) for p, r in failures],
            )
            con.executemany(
                "UPDATE images SET status='skipped' WHERE path=?",
                [(p,) for p, _ in failures],
            )

    def clear_skipped(self, paths: Sequence[str]) -> None:
        """Forget skip records for files that are gone or now fine."""
        with self.transaction() as con:
            con.executemany("DELETE FROM skipped WHERE path=?", [(p,) for p in paths])

    def skipped(self) -> list[sqlite3.Row]:
        """Every skipped file with its reason, by path."""
        return self.con.execute("SELECT * FROM skipped ORDER BY path").fetchall()

    def get_image(self, image_id: int) -> sqlite3.Row:
        """One image row. Raises :class:`StoreError` for an unknown id."""
        r = self.con.execute("SELECT * FROM images WHERE id=?", (int(image_id),)).fetchone()
        if r is None:
            raise StoreError(f"unknown image id {image_id}")
        return r

    def get_images(self, image_ids: Sequence[int]) -> list[sqlite3.Row]:
        """Image rows in the order of ``image_ids`` (unknown ids raise StoreError)."""
        ids = [int(i) for i in image_ids]
        found: dict[int, sqlite3.Row] = {}
        for chunk in _chunks(ids):
            q = ",".join("?" * len(chunk))
            for r in self.con.execute(f"SELECT * FROM images WHERE id IN ({q})", chunk):
                found[r["id"]] = r
        missing = [i for i in ids if i not in found]
        if missing:
            raise StoreError(f"unknown image id(s): {missing[:10]}")
        return [found[i] for i in ids]

    def row_image_ids(self) -> np.ndarray:
        """Image id of each array row, shape (n_rows,), int64; -1 where no image.

        Rows cover 0..max(row): every image that was ever embedded.
        """
        n = self.next_row()
        out = np.full(n, -1, dtype=np.int64)
        for r in self.con.execute("SELECT id, row FROM images WHERE row IS NOT NULL"):
            out[r["row"]] = r["id"]
        return out

    def image_table(self) -> list[sqlite3.Row]:
        """All embedded images (id, row, path, status, top1, top1_prob), by row."""
        return self.con.execute(
            "SELECT id, row, path, status, width, height, hash, top1, top1_prob "
            "FROM images WHERE row IS NOT NULL ORDER BY row"
        ).fetchall()

    def top1_of(self, image_ids: Sequence[int]) -> np.ndarray:
        """ImageNet top-1 class of each image, shape (n,), int64; -1 where unknown."""
        top1 = {r[0]: r[1] for r in self.con.execute("SELECT id, top1 FROM images WHERE top1 IS NOT NULL")}
        return np.array([top1.get(int(i), -1) for i in image_ids], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        """Number of images per status plus ``skipped`` files and ``labelled`` images."""
        out = {s: 0 for s in ("pending", "embedded", "missing", "skipped")}
        for r in self.con.execute("SELECT status, COUNT(*) AS n FROM images GROUP BY status"):
            out[r["status"]] = r["n"]
        out["skipped_files"] = self.con.execute("SELECT COUNT(*) FROM skipped").fetchone()[0]
        out["labelled"] = self.con.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
        return out

    # -- clusterings -----------------------------------------------------------------
    def add_clustering(
        self,
        method: str,
        params: dict,
        image_ids: np.ndarray,
        clusters: np.ndarray,
        strengths: np.ndarray | None,
        summaries: Sequence[dict],
        *,
        parent_id: int | None = None,
        annotator: str | None = None,
        description: str | None = None,
    ) -> int:
        """Store a clustering run; it becomes current. Returns its id.

        Parameters
        ----------
        image_ids, clusters : ndarray of shape (n,), int
            Cluster id of each image; -1 is noise.
        strengths : ndarray of shape (n,), float, or None
            Membership strength in [0, 1] where the method gives one.
        summaries : list of dict
            Per cluster: cluster, size, medoid_id, representatives (list of ids),
            cohesion, suggested_name.
        parent_id, annotator, description
            For an edit of an existing clustering (split, merge, move): the edit is
            recorded as an undoable action by ``annotator``.
        """
        now = time.time()
        with self.transaction() as con:
            action_id = None
            if annotator is not None:
                action_id = con.execute(
                    "INSERT INTO actions(kind, annotator, at, description) "
                    "VALUES ('cluster', ?, ?, ?)",
                    (annotator, now, description or method),
                ).lastrowid
            cid = con.execute(
                "INSERT INTO clusterings(method, params, parent_id, action_id, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (method, json.dumps(params), parent_id, action_id, now),
            ).lastrowid
            st = strengths if strengths is not None else [None] * len(image_ids)
            con.executemany(
                "INSERT INTO assignments(clustering_id, image_id, cluster, strength) "
                "VALUES (?, ?, ?, ?)",
                (
                    (cid, int(i), int(c), None if s is None else float(s))
                    for i, c, s in zip(image_ids, clusters, st)
                ),
            )
            con.executemany(
                "INSERT INTO clusters(clustering_id, cluster, size, medoid_id, "
                "representatives, cohesion, suggested_name) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        cid,
                        int(s["cluster"]),
                        int(s["size"]),
                        None if s.get("medoid_id") is None else int(s["medoid_id"]),
                        json.dumps([int(x) for x in s.get("representatives", [])]),
                        None if s.get("cohesion") is None else float(s["cohesion"]),
                        s.get("suggested_name"),
                    )
                    for s in summaries
                ],
            )
        return int(cid)

    def current_clustering(self) -> dict | None:
        """The newest clustering not undone: dict(id, method, params, parent_id, created_at)."""
        r = self.con.execute(
            "SELECT * FROM clusterings WHERE undone=0 ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if r is None:
            return None
        return {**dict(r), "params": json.loads(r["params"])}

    def _clustering_id(self, clustering_id: int | None) -> int:
        if clustering_id is not None:
            return int(clustering_id)
        cur = self.current_clustering()
        if cur is None:
            raise StoreError("the project has no clustering yet: run `labeler ingest` first")
        return int(cur["id"])

    def assignments(self, clustering_id: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cluster of every image in a clustering (default: current).

        Returns
        -------
        image_ids : ndarray (n,), int64
        clusters : ndarray (n,), int64 (-1 = noise)
        strengths : ndarray (n,), float32 (NaN where the method gives none)
        """
        cid = self._clustering_id(clustering_id)
        rows = self.con.execute(
            "SELECT image_id, cluster, strength FROM assignments WHERE clustering_id=? "
            "ORDER BY image_id",
            (cid,),
        ).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        cl = np.array([r[1] for r in rows], dtype=np.int64)
        st = np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=np.float32)
        return ids, cl, st

    def cluster_members(self, cluster: int, clustering_id: int | None = None) -> list[int]:
        """Image ids in ``cluster``. Raises StoreError for an unknown cluster id."""
        cid = self._clustering_id(clustering_id)
        ids = [
            r[0]
            for r in self.con.execute(
                "SELECT image_id FROM assignments WHERE clustering_id=? AND cluster=? "
                "ORDER BY image_id",
                (cid, int(cluster)),
            )
        ]
        if not ids:
            raise StoreError(f"unknown cluster {cluster} in clustering {cid}")
        return ids

    def cluster_summaries(self, clustering_id: int | None = None) -> list[dict]:
        """Per-cluster summaries of a clustering (default: current), largest first."""
        cid = self._clustering_id(clustering_id)
        out = []
        for r in self.con.execute(
            "SELECT * FROM clusters WHERE clustering_id=? ORDER BY size DESC, cluster",
            (cid,),
        ):
            d = dict(r)
            d["representatives"] = json.loads(d["representatives"])
            out.append(d)
        return out

    # -- labels ------------------------------------------------------------------------
    def set_labels(
        self,
        image_ids: Sequence[int],
        label: str | None,
        *,
        source: str = "manual",
        annotator: str = "anonymous",
        description: str | None = None,
    ) -> int:
        """Give ``label`` to every image in one undoable action; ``None`` clears.

        Returns the action id. Raises :class:`StoreError` (nothing written) for an
        empty list, an unknown image id, an empty label or an unknown source.
        """
        ids = sorted({int(i) for i in image_ids})
        if not ids:
            raise StoreError("no images given to label")
        if label is not None:
            label = str(label).strip()
            if not label:
                raise StoreError("the label is empty")
        if source not in LABEL_SOURCES:
            raise StoreError(f"unknown label source {source!r}; one of {LABEL_SOURCES}")
        annotator = (annotator or "anonymous").strip() or "anonymous"
        now = time.time()
        with self.transaction() as con:
            old: dict[int, sqlite3.Row] = {}
            known = 0
            for chunk in _chunks(ids):
                q = ",".join("?" * len(chunk))
                known += con.execute(
                    f"SELECT COUNT(*) FROM images WHERE id IN ({q})", chunk
                ).fetchone()[0]
                for r in con.execute(f"SELECT * FROM labels WHERE image_id IN ({q})", chunk):
                    old[r["image_id"]] = r
            if known != len(ids):
                raise StoreError("unknown image id(s) in the label request; nothing changed")
            desc = description or f"label {len(ids)} image(s) {label!r}"
            action_id = con.execute(
                "INSERT INTO actions(kind, annotator, at, description) VALUES ('label', ?, ?, ?)",
                (annotator, now, desc),
            ).lastrowid
            self._write_labels(con, ids, label, source, annotator, action_id, now, old)
        return int(action_id)

    @staticmethod
    def _write_labels(con, ids, label, source, annotator, action_id, now, old) -> None:
        events = []
        for i in ids:
            o = old.get(i)
            events.append(
                (action_id, i, o["label"] if o else None, label, o["source"] if o else None,
                 source, annotator, now)
            )
        con.executemany(
            "INSERT INTO label_events(action_id, image_id, old_label, new_label, old_source, "
            "source, annotator, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            events,
        )
        if label is None:
            con.executemany("DELETE FROM labels WHERE image_id=?", [(i,) for i in ids])
        else:
            con.executemany(
                "INSERT INTO labels(image_id, label, source, annotator, action_id, labelled_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(image_id) DO UPDATE SET "
                "label=excluded.label, source=excluded.source, annotator=excluded.annotator, "
                "action_id=excluded.action_id, labelled_at=excluded.labelled_at",
                [(i, label, source, annotator, action_id, now) for i in ids],
            )

    def undo(self, annotator: str = "anonymous") -> dict | None:
        """Undo the newest action not yet undone (a bulk action undoes as one).

        A label action restores every image's previous label; a cluster edit makes
        the previous clustering current again. The undo itself is logged as events
        with source ``undo``. Returns dict(id, kind, description) of the undone
        action, or None when there is nothing to undo.
        """
        now = time.time()
        with self.transaction() as con:
            act = con.execute(
                "SELECT * FROM actions WHERE undone_at IS NULL AND kind IN ('label','cluster') "
                "ORDER BY id DESC LIMIT 1"
            ).fetchone()
            if act is None:
                return None
            con.execute("UPDATE actions SET undone_at=? WHERE id=?", (now, act["id"]))
            undo_id = con.execute(
                "INSERT INTO actions(kind, annotator, at, description, undoes) "
                "VALUES ('undo', ?, ?, ?, ?)",
                (annotator, now, f"undo: {act['description']}", act["id"]),
            ).lastrowid
            if act["kind"] == "cluster":
                con.execute("UPDATE clusterings SET undone=1 WHERE action_id=?", (act["id"],))
            else:
                evs = con.execute(
                    "SELECT * FROM label_events WHERE action_id=? ORDER BY id", (act["id"],)
                ).fetchall()
                for ev in evs:
                    i = ev["image_id"]
                    cur = con.execute("SELECT * FROM labels WHERE image_id=?", (i,)).fetchone()
                    con.execute(
                        "INSERT INTO label_events(action_id, image_id, old_label, new_label, "
                        "old_source, source, annotator, at) VALUES (?, ?, ?, ?, ?, 'undo', ?, ?)",
                        (undo_id, i, cur["label"] if cur else None, ev["old_label"],
                         cur["source"] if cur else None, annotator, now),
                    )
                    if ev["old_label"] is None:
                        con.execute("DELETE FROM labels WHERE image_id=?", (i,))
                    else:
                        # The previous label's own action and source come back too.
                        prev = con.execute(
                            "SELECT action_id, annotator, at FROM label_events WHERE "
                            "image_id=? AND new_label IS ? AND id<? ORDER BY id DESC LIMIT 1",
                            (i, ev["old_label"], ev["id"]),
                        ).fetchone()
                        con.execute(
                            "INSERT INTO labels(image_id, label, source, annotator, action_id, "
                            "labelled_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(image_id) DO "
                            "UPDATE SET label=excluded.label, source=excluded.source, "
                            "annotator=excluded.annotator, action_id=excluded.action_id, "
                            "labelled_at=excluded.labelled_at",
                            (i, ev["old_label"], ev["old_source"] or "manual",
                             prev["annotator"] if prev else annotator,
                             prev["action_id"] if prev else undo_id,
                             prev["at"] if prev else now),
                        )
        return {"id": int(act["id"]), "kind": act["kind"], "description": act["description"]}

    def labels(self) -> dict[int, str]:
        """Current label of every labelled image: {image_id: label}."""
        return {r[0]: r[1] for r in self.con.execute("SELECT image_id, label FROM labels")}

    def labels_for(self, image_ids: Sequence[int]) -> dict[int, str]:
        """Current labels of the given images only: {image_id: label}."""
        ids = [int(i) for i in image_ids]
        out: dict[int, str] = {}
        for chunk in _chunks(ids):
            q = ",".join("?" * len(chunk))
            out.update(self.con.execute(
                f"SELECT image_id, label FROM labels WHERE image_id IN ({q})", chunk).fetchall())
        return out

    def clusters_for(self, image_ids: Sequence[int], clustering_id: int | None = None) -> dict[int, int]:
        """Cluster of the given images in a clustering (default: current)."""
        cid = self._clustering_id(clustering_id)
        ids = [int(i) for i in image_ids]
        out: dict[int, int] = {}
        for chunk in _chunks(ids):
            q = ",".join("?" * len(chunk))
            out.update(self.con.execute(
                f"SELECT image_id, cluster FROM assignments WHERE clustering_id=? "
                f"AND image_id IN ({q})", [cid, *chunk]).fetchall())
        return out

    def label_rows(self) -> list[sqlite3.Row]:
        """Current labels with source, annotator, labelled_at and action_id."""
        return self.con.execute("SELECT * FROM labels ORDER BY image_id").fetchall()

    def label_counts(self) -> dict[str, int]:
        """Images per label, most frequent first."""
        return {
            r[0]: r[1]
            for r in self.con.execute(
                "SELECT label, COUNT(*) AS n FROM labels GROUP BY label ORDER BY n DESC, label"
            )
        }

    def label_events(self, image_id: int | None = None) -> list[sqlite3.Row]:
        """The append-only label log (optionally of one image), oldest first."""
        if image_id is None:
            return self.con.execute("SELECT * FROM label_events ORDER BY id").fetchall()
        return self.con.execute(
            "SELECT * FROM label_events WHERE image_id=? ORDER BY id", (int(image_id),)
        ).fetchall()

    def actions(self, limit: int = 50) -> list[sqlite3.Row]:
        """The newest actions first."""
        return self.con.execute(
            "SELECT * FROM actions ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()

    def annotator_labels(self) -> list[sqlite3.Row]:
        """Each annotator's latest label of each image, for agreement between annotators.

        Taken from the label events of actions not undone (undo events left out);
        an annotator whose latest event cleared the label has none.

        Returns
        -------
        list of sqlite3.Row
            (image_id, annotator, label, at), by image_id then annotator.
        """
        return self.con.execute(
            "WITH ev AS (SELECT e.image_id, e.annotator, e.new_label, e.at, ROW_NUMBER() OVER "
            "(PARTITION BY e.image_id, e.annotator ORDER BY e.id DESC) AS rn FROM label_events e "
            "JOIN actions a ON a.id = e.action_id WHERE a.undone_at IS NULL AND e.source != 'undo') "
            "SELECT image_id, annotator, new_label AS label, at FROM ev "
            "WHERE rn = 1 AND new_label IS NOT NULL ORDER BY image_id, annotator"
        ).fetchall()
