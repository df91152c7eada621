"""Store methods for the file manifest and the whole-project checks (``labeler check``).

The manifest records, for each array, index and model file of the project, its size,
a sampled checksum and a full checksum (:mod:`labeler.integrity` computes them). A
file is written in three steps: the new file's entry is *staged* (``next_*``
columns), the file is renamed into place, the entry is *committed*. A process killed
between two steps leaves the old file with its committed entry, or the new file with
its staged entry: :mod:`labeler.integrity` accepts either, so a crash never makes a
sound project look corrupted.
"""

from __future__ import annotations

import time

#: DDL of the manifest table (run with the schema on every open: older projects get it).
MANIFEST_SCHEMA = """
CREATE TABLE IF NOT EXISTS manifest (
    name        TEXT PRIMARY KEY,
    size        INTEGER,
    sample      TEXT,
    digest      TEXT,
    written_at  REAL,
    next_size   INTEGER,
    next_sample TEXT,
    next_digest TEXT
);
"""

_COLUMNS = "name, size, sample, digest, written_at, next_size, next_sample, next_digest"


class ManifestMixin:
    """Methods of :class:`~labeler.store.Store` about the file manifest (see there)."""

    def manifest_stage(self, name: str, size: int, sample: str, digest: str) -> None:
        """Record the entry of a file about to replace ``name`` (before the rename)."""
        with self.transaction() as con:
            con.execute(
                "INSERT INTO manifest(name, next_size, next_sample, next_digest) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET next_size=excluded.next_size, "
                "next_sample=excluded.next_sample, next_digest=excluded.next_digest",
                (name, int(size), sample, digest))

    def manifest_commit(self, name: str, digest: str) -> None:
        """The staged file ``digest`` is now in place under ``name``: make its entry current."""
        with self.transaction() as con:
            con.execute(
                "UPDATE manifest SET size=next_size, sample=next_sample, digest=next_digest, written_at=?, "
                "next_size=NULL, next_sample=NULL, next_digest=NULL WHERE name=? AND next_digest=?",
                (time.time(), name, digest))

    def manifest_record(self, name: str, size: int, sample: str, digest: str) -> None:
        """Record the entry of a file already in place (a backup's copy of an unrecorded file)."""
        with self.transaction() as con:
            con.execute(
                "INSERT INTO manifest(name, size, sample, digest, written_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET size=excluded.size, sample=excluded.sample, "
                "digest=excluded.digest, written_at=excluded.written_at, "
                "next_size=NULL, next_sample=NULL, next_digest=NULL",
                (name, int(size), sample, digest, time.time()))

    def manifest_forget(self, name: str) -> None:
        """Drop the entry of a file that was deleted on purpose."""
        with self.transaction() as con:
            con.execute("DELETE FROM manifest WHERE name=?", (name,))

    def manifest_entry(self, name: str) -> dict | None:
        """The entry of ``name`` (a dict of the columns), or None when never recorded."""
        r = self.con.execute(f"SELECT {_COLUMNS} FROM manifest WHERE name=?", (name,)).fetchone()
        return None if r is None else dict(r)

    def manifest_entries(self) -> list[dict]:
        """Every entry, by name."""
        return [dict(r) for r in self.con.execute(f"SELECT {_COLUMNS} FROM manifest ORDER BY name")]

    # -- whole-database checks (labeler check) ------------------------------------------
    def integrity_problems(self) -> list[str]:
        """What ``PRAGMA integrity_check`` and ``PRAGMA foreign_key_check`` report (empty: sound)."""
        out = [r[0] for r in self.con.execute("PRAGMA integrity_check")]
        out = [] if out == ["ok"] else out
        for r in self.con.execute("PRAGMA foreign_key_check"):
            out.append(f"table {r[0]} row {r[1]} refers to a missing row of {r[2]}")
        return out

    def orphan_labels(self) -> list[int]:
        """Image ids that have a label or a label event but no image row."""
        return [int(r[0]) for r in self.con.execute(
            "SELECT image_id FROM labels WHERE image_id NOT IN (SELECT id FROM images) UNION "
            "SELECT image_id FROM label_events WHERE image_id NOT IN (SELECT id FROM images) ORDER BY 1")]

    def rows_without_image(self) -> list[int]:
        """Array rows below the highest one that no image holds (holes in the row numbering)."""
        n = self.next_row()
        held = {int(r[0]) for r in self.con.execute("SELECT row FROM images WHERE row IS NOT NULL")}
        return [i for i in range(n) if i not in held]
