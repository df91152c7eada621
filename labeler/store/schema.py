"""The database schema, its version and the migrations from older versions."""

from __future__ import annotations

from .predictions import PREDICTIONS_DDL, PREDICTIONS_SCHEMA

#: Version 2 added actions.redoes / redone_at (redo), label_events.confidence
#: (accepted suggestions) and labels.stale (the file changed since it was labelled).
#: Version 3: a redo re-activates the action it redoes (``undone_at`` cleared), the
#: model of :mod:`labeler.history`; the migration re-activates the actions redone before.
#: Version 4: the predictions table (imported model predictions, :mod:`labeler.store.predictions`).
SCHEMA_VERSION = 4

#: 'import': labels read from a file (a CSV, a folder tree) by ``labeler import-labels``.
LABEL_SOURCES = ("manual", "cluster", "search", "propagated", "suggestion", "undo", "redo", "rename",
                 "import")
#: Source of an accepted suggestion: the model proposed the label and a person only
#: accepted it in bulk. The suggestion model and the fine-tune never learn from it.
SUGGESTION_SOURCE = "suggestion"

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
-- Covering index for a cluster's members in id order (cluster_members): without it SQLite
-- walks the primary key over the whole clustering to skip a sort (172 ms at 1M points;
-- 0.3 ms with it). Run on every open, so older projects get it (once, ~1.5 s at 1M rows).
CREATE INDEX IF NOT EXISTS assignments_cluster_image ON assignments(clustering_id, cluster, image_id);
-- The same assignment as two packed arrays (image ids int64, clusters int32, little-endian,
-- in image-id order), written with it by add_clustering: the dashboard reads a whole
-- clustering at start in one row (1M rows of assignments cost ~1.3 s of SQLite stepping).
-- A clustering stored without it (older projects, copies made in SQL) is read row by row.
CREATE TABLE IF NOT EXISTS assignment_arrays (
    clustering_id INTEGER PRIMARY KEY REFERENCES clusterings(id),
    image_ids     BLOB NOT NULL,
    clusters      BLOB NOT NULL
);
-- Image id, ImageNet top-1 class and probability of every array row, packed (int64, int64,
-- float64, little-endian), as read at meta rows_version = version (store.row_table).
CREATE TABLE IF NOT EXISTS row_table_snapshot (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    row_ids BLOB NOT NULL,
    top1    BLOB NOT NULL,
    prob    BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS clusters (
    clustering_id   INTEGER NOT NULL REFERENCES clusterings(id),
    cluster         INTEGER NOT NULL,
    size            INTEGER NOT NULL,
    medoid_id       INTEGER,
    representatives TEXT NOT NULL,
    cohesion        REAL,
    -- Unused since the ImageNet hint is computed when shown (labeler.hints): nothing writes
    -- or reads it. Kept so that no migration has to rebuild the table of older projects.
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
""" + PREDICTIONS_SCHEMA

# Each step brings a database from version n to n + 1 (run in one transaction).
_MIGRATIONS = {
    1: (
        "ALTER TABLE actions ADD COLUMN redoes INTEGER REFERENCES actions(id)",
        "ALTER TABLE actions ADD COLUMN redone_at REAL",
        "ALTER TABLE label_events ADD COLUMN confidence REAL",
        "ALTER TABLE labels ADD COLUMN stale INTEGER NOT NULL DEFAULT 0",
    ),
    2: (
        # Before version 3 a redo left the redone action marked undone and copied its
        # writes into the redo action; now the redone action itself is active again.
        "UPDATE actions SET undone_at = NULL WHERE id IN (SELECT redoes FROM actions "
        "WHERE redoes IS NOT NULL AND undone_at IS NULL)",
    ),
    3: PREDICTIONS_DDL,
}


def _chunks(seq, n: int = 900):
    # SQLite caps host parameters per statement (999 on old builds).
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _rows_by_id(con, table: str, column: str, ids: list[int]) -> dict:
    """{id: row} of the rows of ``table`` whose ``column`` is one of ``ids`` (absent ids
    are absent), queried in chunks under SQLite's cap on host parameters."""
    out = {}
    for chunk in _chunks(ids):
        q = ",".join("?" * len(chunk))
        for r in con.execute(f"SELECT * FROM {table} WHERE {column} IN ({q})", chunk):
            out[r[column]] = r
    return out
