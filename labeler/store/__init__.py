"""The project database: SQLite in WAL mode. Only this package writes SQL.

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
manifest        size and checksums of the array, index and model files (labeler.integrity)
predictions     imported model predictions: source, image, label, score (labeler.assist.experts)

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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ProjectError, StoreError
from .clusterings import ClusteringsMixin
from .images import ImagesMixin
from .labels import LabelsMixin
from .manifest import MANIFEST_SCHEMA, ManifestMixin
from .predictions import PredictionsMixin
from .schema import _MIGRATIONS, _SCHEMA, LABEL_SOURCES, SCHEMA_VERSION

__all__ = ["Store", "StoreError", "LABEL_SOURCES", "SCHEMA_VERSION"]


class Store(ImagesMixin, ClusteringsMixin, LabelsMixin, ManifestMixin, PredictionsMixin):
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
        self.con.executescript(_SCHEMA + MANIFEST_SCHEMA)
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
            # SQLite may have rolled back already (SQLITE_FULL, "database or disk is full",
            # does): a second ROLLBACK would raise and hide the error that matters.
            if con.in_transaction:
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
