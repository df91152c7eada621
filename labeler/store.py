"""The project database: SQLite in WAL mode. Only this module writes SQL.

Tables
------
meta            key/value settings of the project (image root, backbone, ...)
images          one row per catalogued file; ``row`` is its row in every array
skipped         files that could not be used, with the reason
clusterings     one row per clustering run; the newest non-undone one is current
assignments     (clustering, image) -> cluster id (-1 = noise) and membership strength
clusters        per-cluster summary of a clustering (size, medoid, representatives, ...)
actions         one row per user action (a bulk label is one action); undo/redo work on these
labels          the current label of each image (``stale``: its file changed since)
label_events    append-only log: who, when, old -> new, source, confidence, action

The store offers SQL primitives only; what a labelling action means (validation,
undo, redo, accepting suggestions) lives in :mod:`labeler.labels`, which composes
these primitives inside one :meth:`Store.transaction`.

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

from .errors import NotFoundError, ProjectError, StaleStateError, StoreError

#: Version 2 added actions.redoes / redone_at (redo), label_events.confidence
#: (accepted suggestions) and labels.stale (the file changed since it was labelled).
SCHEMA_VERSION = 2

LABEL_SOURCES = ("manual", "cluster", "search", "propagated", "suggestion", "undo", "redo")

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
    undoes      INTEGER REFERENCES actions(id),
    redoes      INTEGER REFERENCES actions(id),
    redone_at   REAL
);
CREATE INDEX IF NOT EXISTS actions_annotator ON actions(annotator, id);
CREATE TABLE IF NOT EXISTS labels (
    image_id   INTEGER PRIMARY KEY REFERENCES images(id),
    label      TEXT NOT NULL,
    source     TEXT NOT NULL,
    annotator  TEXT NOT NULL,
    action_id  INTEGER NOT NULL REFERENCES actions(id),
    labelled_at REAL NOT NULL,
    stale      INTEGER NOT NULL DEFAULT 0
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
    at         REAL NOT NULL,
    confidence REAL
);
CREATE INDEX IF NOT EXISTS label_events_image ON label_events(image_id);
CREATE INDEX IF NOT EXISTS label_events_action ON label_events(action_id);
"""

# Each step brings a database from version n to n + 1 (run in one transaction).
_MIGRATIONS = {
    1: (
        "ALTER TABLE actions ADD COLUMN redoes INTEGER REFERENCES actions(id)",
        "ALTER TABLE actions ADD COLUMN redone_at REAL",
        "ALTER TABLE label_events ADD COLUMN confidence REAL",
        "ALTER TABLE labels ADD COLUMN stale INTEGER NOT NULL DEFAULT 0",
    ),
}


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
        self._migrate()
        # executescript commits on its own: the DDL is idempotent (IF NOT EXISTS).
        self.con.executescript(_SCHEMA)
        with self.transaction() as con:
            con.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    def _migrate(self) -> None:
        """Bring an older database to :data:`SCHEMA_VERSION`; refuse a newer one.

        Raises
        ------
        ProjectError
            The database was written by a newer labeler (its schema is unknown here).
        """
        con = self.con
        has_meta = con.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if not has_meta:
            return  # a new database: the schema below is the current one
        with self.transaction():
            r = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(json.loads(r[0])) if r else SCHEMA_VERSION
            if version > SCHEMA_VERSION:
                raise ProjectError(
                    f"{self.path} has schema version {version}, newer than this labeler "
                    f"understands ({SCHEMA_VERSION}): upgrade labeler to open it")
            for v in range(version, SCHEMA_VERSION):
                for stmt in _MIGRATIONS[v]:
                    con.execute(stmt)
            if version != SCHEMA_VERSION:
                con.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                            (str(SCHEMA_VERSION),))

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
            self._local.depth = 0
        return con

    @contextmanager
    def transaction(self):
        """A write transaction (``BEGIN IMMEDIATE``): all or nothing.

        Re-entrant per thread: a ``transaction()`` inside another joins it, so a
        caller can compose several primitives (read, check, write) into one atomic
        step; reads made inside see a state no other writer can change meanwhile.
        """
        con = self.con
        if self._local.depth:
            self._local.depth += 1
            try:
                yield con
            finally:
                self._local.depth -= 1
            return
        con.execute("BEGIN IMMEDIATE")
        self._local.depth = 1
        try:
            yield con
        except BaseException:
            self._local.depth = 0
            con.execute("ROLLBACK")
            raise
        else:
            self._local.depth = 0
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

        Raises
        ------
        StaleStateError
            ``parent_id`` is given and is no longer the current clustering (another
            edit or re-clustering came first): nothing is written.
        """
        now = time.time()
        with self.transaction() as con:
            if parent_id is not None:
                cur = con.execute(
                    "SELECT id FROM clusterings WHERE undone=0 ORDER BY id DESC LIMIT 1").fetchone()
                if cur is None or int(cur[0]) != int(parent_id):
                    raise StaleStateError(
                        f"the clustering changed while this edit was computed (it was {parent_id}, "
                        f"it is now {cur[0] if cur else None}): reload and try again; nothing was changed")
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

    # -- labels: SQL primitives (labeler.labels composes them into actions) ----------
    def check_images_exist(self, image_ids: Sequence[int]) -> None:
        """Raise :class:`StoreError` unless every id names a catalogued image."""
        ids = sorted({int(i) for i in image_ids})
        known = 0
        for chunk in _chunks(ids):
            q = ",".join("?" * len(chunk))
            known += self.con.execute(
                f"SELECT COUNT(*) FROM images WHERE id IN ({q})", chunk).fetchone()[0]
        if known != len(ids):
            raise StoreError("unknown image id(s) in the label request; nothing changed")

    def add_action(self, kind: str, annotator: str, description: str, *, at: float | None = None,
                   undoes: int | None = None, redoes: int | None = None) -> int:
        """Append one row to ``actions``; returns its id."""
        with self.transaction() as con:
            return int(con.execute(
                "INSERT INTO actions(kind, annotator, at, description, undoes, redoes) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (kind, annotator, time.time() if at is None else at, description, undoes, redoes),
            ).lastrowid)

    def get_action(self, action_id: int) -> sqlite3.Row:
        """One action row.

        Raises
        ------
        NotFoundError
            Unknown action id.
        """
        r = self.con.execute("SELECT * FROM actions WHERE id=?", (int(action_id),)).fetchone()
        if r is None:
            raise NotFoundError(f"unknown action {action_id}")
        return r

    def newest_undoable_action(self, annotator: str | None = None) -> sqlite3.Row | None:
        """The newest label or cluster action not undone (of ``annotator``, or of anyone)."""
        who, args = ("AND annotator=?", (annotator,)) if annotator is not None else ("", ())
        return self.con.execute(
            f"SELECT * FROM actions WHERE undone_at IS NULL AND kind NOT IN ('undo') {who} "
            "ORDER BY id DESC LIMIT 1", args).fetchone()

    def newest_redoable_undo(self, annotator: str | None = None) -> sqlite3.Row | None:
        """The newest undo not yet redone and newer than the last fresh action
        (neither an undo nor a redo) of ``annotator`` (or of anyone): a fresh
        action ends what can be redone, as in every editor."""
        who, args = ("AND annotator=?", (annotator,)) if annotator is not None else ("", ())
        return self.con.execute(
            f"SELECT * FROM actions WHERE kind='undo' AND redone_at IS NULL {who} AND id > "
            f"COALESCE((SELECT MAX(id) FROM actions WHERE kind!='undo' AND redoes IS NULL {who}), 0) "
            "ORDER BY id DESC LIMIT 1", args + args).fetchone()

    def mark_action_undone(self, action_id: int, at: float) -> None:
        with self.transaction() as con:
            con.execute("UPDATE actions SET undone_at=? WHERE id=?", (at, int(action_id)))

    def mark_undo_redone(self, undo_id: int, at: float) -> None:
        with self.transaction() as con:
            con.execute("UPDATE actions SET redone_at=? WHERE id=?", (at, int(undo_id)))

    def set_clustering_undone(self, action_id: int, undone: bool) -> None:
        """Hide (``undone``) or restore the clustering a cluster-edit action stored."""
        with self.transaction() as con:
            con.execute("UPDATE clusterings SET undone=? WHERE action_id=?",
                        (int(bool(undone)), int(action_id)))

    def action_events(self, action_id: int) -> list[sqlite3.Row]:
        """The label events of one action, in order."""
        return self.con.execute(
            "SELECT * FROM label_events WHERE action_id=? ORDER BY id", (int(action_id),)).fetchall()

    def label_event_before(self, image_id: int, label: str, before_event: int) -> sqlite3.Row | None:
        """The newest event before ``before_event`` that gave ``image_id`` the label ``label``."""
        return self.con.execute(
            "SELECT action_id, annotator, at, source FROM label_events WHERE image_id=? "
            "AND new_label IS ? AND id<? ORDER BY id DESC LIMIT 1",
            (int(image_id), label, int(before_event))).fetchone()

    def current_label_rows(self, image_ids: Sequence[int]) -> dict[int, sqlite3.Row]:
        """The ``labels`` rows of the given images that have one: {image_id: row}."""
        ids = [int(i) for i in image_ids]
        out: dict[int, sqlite3.Row] = {}
        for chunk in _chunks(ids):
            q = ",".join("?" * len(chunk))
            for r in self.con.execute(f"SELECT * FROM labels WHERE image_id IN ({q})", chunk):
                out[r["image_id"]] = r
        return out

    def write_labels(self, action_id: int, changes: Sequence[dict], annotator: str, at: float) -> None:
        """Apply label changes of one action: an event each, then the ``labels`` rows.

        Parameters
        ----------
        changes : list of dict
            ``image_id``; ``label`` (None removes the label); ``source`` (of the label
            row); optional ``event_source`` (default ``source``), ``confidence``, and
            the provenance a restored label gets back: ``label_annotator``,
            ``label_action_id``, ``labelled_at`` (default: this action's).

        Raises
        ------
        StoreError
            An unknown source (nothing written).
        """
        bad = {c.get("event_source", c["source"]) for c in changes} | {c["source"] for c in changes}
        if not bad <= set(LABEL_SOURCES):
            raise StoreError(f"unknown label source {sorted(bad - set(LABEL_SOURCES))}; one of {LABEL_SOURCES}")
        with self.transaction() as con:
            old = self.current_label_rows([c["image_id"] for c in changes])
            con.executemany(
                "INSERT INTO label_events(action_id, image_id, old_label, new_label, old_source, "
                "source, annotator, at, confidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(action_id, int(c["image_id"]),
                  old[c["image_id"]]["label"] if c["image_id"] in old else None, c["label"],
                  old[c["image_id"]]["source"] if c["image_id"] in old else None,
                  c.get("event_source", c["source"]), annotator, at, c.get("confidence"))
                 for c in changes],
            )
            con.executemany("DELETE FROM labels WHERE image_id=?",
                            [(int(c["image_id"]),) for c in changes if c["label"] is None])
            con.executemany(
                "INSERT INTO labels(image_id, label, source, annotator, action_id, labelled_at, stale) "
                "VALUES (?, ?, ?, ?, ?, ?, 0) ON CONFLICT(image_id) DO UPDATE SET "
                "label=excluded.label, source=excluded.source, annotator=excluded.annotator, "
                "action_id=excluded.action_id, labelled_at=excluded.labelled_at, stale=0",
                [(int(c["image_id"]), c["label"], c["source"],
                  c.get("label_annotator", annotator), c.get("label_action_id", action_id),
                  c.get("labelled_at", at)) for c in changes if c["label"] is not None],
            )

    def set_labels(
        self,
        image_ids: Sequence[int],
        label: str | None,
        *,
        source: str = "manual",
        annotator: str = "anonymous",
        description: str | None = None,
    ) -> int:
        """Give ``label`` to every image as one action (``None`` removes); returns its id.

        A primitive: :func:`labeler.labels.label_images` validates the label and the
        annotator's name first, and is what callers use.

        Raises
        ------
        StoreError
            No image given, an unknown image id or an unknown source (nothing written).
        """
        ids = sorted({int(i) for i in image_ids})
        if not ids:
            raise StoreError("no images given to label")
        if source not in LABEL_SOURCES:
            raise StoreError(f"unknown label source {source!r}; one of {LABEL_SOURCES}")
        now = time.time()
        with self.transaction():
            self.check_images_exist(ids)
            action_id = self.add_action(
                "label", annotator, description or f"label {len(ids)} image(s) {label!r}", at=now)
            self.write_labels(action_id, [{"image_id": i, "label": label, "source": source} for i in ids],
                              annotator, now)
        return action_id

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
