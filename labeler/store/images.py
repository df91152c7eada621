"""Store methods for images: the catalogue, embedding status, skipped files."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

import numpy as np

from ..errors import StoreError
from .schema import _chunks, _rows_by_id


class ImagesMixin:
    """Methods of :class:`~labeler.store.Store` about images (see there)."""

    # -- images ------------------------------------------------------------------------
    def images_by_path(self) -> dict[str, sqlite3.Row]:
        """Every catalogued image keyed by its path relative to the image root."""
        return {r["path"]: r for r in self.con.execute("SELECT * FROM images")}

    def add_or_update_images(self, entries: Sequence[dict]) -> None:
        """Insert new files or mark changed ones pending.

        ``entries``: dicts with path, size, mtime, hash. A known path whose hash
        changed keeps its id, row and label and becomes ``pending`` (re-embedded);
        its label is marked ``stale`` until an annotator confirms or changes it.
        """
        now = time.time()
        with self.transaction() as con:
            for e in entries:
                con.execute(
                    "UPDATE labels SET stale=1 WHERE image_id=(SELECT id FROM images "
                    "WHERE path=:path AND hash!=:hash)", e)
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
            # Rows were given out: every process's cached id -> row table (row_of) is stale.
            con.execute(
                "INSERT INTO meta(key, value) VALUES ('rows_version', '1') "
                "ON CONFLICT(key) DO UPDATE SET value=CAST(value AS INTEGER) + 1")

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
        found = _rows_by_id(self.con, "images", "id", ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise StoreError(f"unknown image id(s): {missing[:10]}")
        return [found[i] for i in ids]

    def row_image_ids(self) -> np.ndarray:
        """Image id of each array row, shape (n_rows,), int64; -1 where no image.

        Rows cover 0..max(row): every image that was ever embedded.
        """
        return self.row_table(top1=False)[0]

    def row_table(self, *, top1: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Image id, and ImageNet top-1 class and probability, of each array row, in one
        read of the images table (the dashboard's start reads both; two 1M-row reads cost
        twice as much). Rows cover 0..max(row) as :meth:`row_image_ids`.

        The three arrays are kept packed in one row (``row_table_snapshot``) with the
        ``rows_version`` they were read at, and served from it while that version is
        current (only :meth:`commit_embedded` changes rows, ids and top-1, and it bumps
        the version in the same transaction): ~10 ms instead of ~1.3 s at 1M images.
        A stale or missing snapshot is read row by row and, with ``top1``, written anew.

        Returns
        -------
        row_ids : ndarray (n_rows,), int64, -1 where no image
        top1 : ndarray (n_rows,), int64, -1 where unknown; None unless ``top1``
        prob : ndarray (n_rows,), float64, NaN where unknown; None unless ``top1``
        """
        version = self.get_meta("rows_version", 0)  # read first: the rows below are at least this new
        snap = self.con.execute("SELECT row_ids, top1, prob FROM row_table_snapshot WHERE version=?",
                                (int(version),)).fetchone()
        if snap is not None:
            row_ids = np.frombuffer(snap[0], dtype="<i8").astype(np.int64)
            if not top1:
                return row_ids, None, None
            return row_ids, np.frombuffer(snap[1], dtype="<i8").astype(np.int64), \
                np.frombuffer(snap[2], dtype="<f8").astype(np.float64)
        row_ids, t1, prob = self._row_table_read(top1)
        if top1:  # keep it for the next start (best effort: a read-only database keeps none)
            try:
                with self.transaction() as con:
                    con.execute("INSERT OR REPLACE INTO row_table_snapshot(id, version, row_ids, top1, prob) "
                                "VALUES (1, ?, ?, ?, ?)", (int(version), row_ids.astype("<i8").tobytes(),
                                                            t1.astype("<i8").tobytes(), prob.astype("<f8").tobytes()))
            except sqlite3.OperationalError:
                pass
        return row_ids, t1, prob

    def _row_table_read(self, top1: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """:meth:`row_table` read row by row from the images table."""
        cols = "row, id, top1, top1_prob" if top1 else "row, id"
        cur = self.con.cursor()
        cur.row_factory = None  # plain tuples: sqlite3.Row objects cost 2.4x the read at 1M rows
        rows = cur.execute(f"SELECT {cols} FROM images WHERE row IS NOT NULL").fetchall()
        table = np.array(rows, dtype=np.float64 if top1 else np.int64).reshape(-1, 4 if top1 else 2)
        at = table[:, 0].astype(np.int64)
        n = int(at.max(initial=-1)) + 1
        row_ids = np.full(n, -1, dtype=np.int64)
        row_ids[at] = table[:, 1]
        if not top1:
            return row_ids, None, None
        t1, prob = np.full(n, -1, dtype=np.int64), np.full(n, np.nan)
        t1[at] = np.where(np.isnan(table[:, 2]), -1, table[:, 2])  # NULL -> NaN -> -1
        prob[at] = table[:, 3]
        return row_ids, t1, prob

    def row_of(self, image_ids) -> np.ndarray:
        """Array row of each image id; -1 for an unknown id or an image never embedded.

        A vectorised lookup in an id -> row table built once and cached on this
        store. The table is rebuilt only when rows were given out since it was
        built (by :meth:`commit_embedded`, in this or any other process: it bumps
        the ``rows_version`` meta key in the same transaction), so an ingest
        invalidates it and label writes or re-clusterings do not (an image keeps
        its row for life).

        Parameters
        ----------
        image_ids : int or array-like of int, any shape

        Returns
        -------
        ndarray of int64, the shape of ``image_ids``
        """
        version = self.get_meta("rows_version", 0)
        cached = getattr(self, "_row_of_cache", None)
        if cached is None or cached[0] != version:
            # Read after the version: the table is at least that new (a newer one only
            # costs one more rebuild next time).
            pairs = np.array(self.con.execute("SELECT id, row FROM images WHERE row IS NOT NULL").fetchall(),
                             dtype=np.int64).reshape(-1, 2)
            lut = np.full(int(pairs[:, 0].max(initial=-1)) + 1, -1, dtype=np.int64)
            lut[pairs[:, 0]] = pairs[:, 1]
            cached = self._row_of_cache = (version, lut)
        lut = cached[1]
        ids = np.asarray(image_ids, dtype=np.int64)
        ok = (ids >= 0) & (ids < len(lut))
        if not ok.any():
            return np.full(ids.shape, -1, dtype=np.int64)
        return np.where(ok, lut[np.where(ok, ids, 0)], -1)

    def image_table(self) -> list[sqlite3.Row]:
        """All embedded images (id, row, path, status, top1, top1_prob), by row."""
        return self.con.execute(
            "SELECT id, row, path, status, width, height, hash, top1, top1_prob "
            "FROM images WHERE row IS NOT NULL ORDER BY row"
        ).fetchall()

    def embedded_ids_by_hash(self, hashes: Sequence[str]) -> dict[str, int]:
        """Embedded image of each content hash (SHA-256 hex), where there is one.

        Returns
        -------
        dict[str, int]
            Hash -> the smallest id of an embedded image with that content; hashes
            with no embedded image are absent.
        """
        out: dict[str, int] = {}
        uniq = list(dict.fromkeys(hashes))
        for i in range(0, len(uniq), 500):
            part = uniq[i : i + 500]
            q = ("SELECT hash, MIN(id) FROM images WHERE row IS NOT NULL AND hash IN ("
                 + ",".join("?" * len(part)) + ") GROUP BY hash")
            out.update({h: int(i_) for h, i_ in self.con.execute(q, part)})
        return out

    def imagenet_top1(self, image_ids) -> tuple[np.ndarray, np.ndarray]:
        """ImageNet top-1 class and its softmax probability of each image, vectorised
        (one query, then a lookup by id; at 1M images the per-id lookup it replaces
        took seconds). Up to 500 ids are looked up by id, more read the whole table.

        Parameters
        ----------
        image_ids : array-like of int, shape (n,)

        Returns
        -------
        top1 : ndarray (n,), int64, -1 where unknown
        prob : ndarray (n,), float64, NaN where unknown
        """
        ids = np.asarray(image_ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        few = len(ids) <= 500  # a search's query image: look those up, not the whole table
        where = (" WHERE id IN (" + ",".join(str(int(i)) for i in ids) + ")") if few else ""
        cur = self.con.cursor()
        cur.row_factory = None  # plain tuples (see row_table)
        rows = cur.execute(f"SELECT id, top1, top1_prob FROM images{where}").fetchall()
        table = np.array(rows, dtype=np.float64).reshape(-1, 3)  # NULL -> NaN in one C-level pass
        known = table[:, 0].astype(np.int64)
        pos = np.full(int(known.max(initial=-1)) + 1, -1, dtype=np.int64)
        pos[known] = np.arange(len(known))
        ok = (ids >= 0) & (ids < len(pos))
        at = np.where(ok, pos[np.where(ok, ids, 0)], -1)
        top1, prob = np.full(len(ids), -1, np.int64), np.full(len(ids), np.nan)
        hit = at >= 0
        t1 = table[at[hit], 1]
        top1[hit] = np.where(np.isnan(t1), -1, t1).astype(np.int64)
        prob[hit] = table[at[hit], 2]
        return top1, prob

    def counts(self) -> dict[str, int]:
        """Number of images per status plus ``skipped`` files and ``labelled`` images."""
        out = {s: 0 for s in ("pending", "embedded", "missing", "skipped")}
        for r in self.con.execute("SELECT status, COUNT(*) AS n FROM images GROUP BY status"):
            out[r["status"]] = r["n"]
        out["skipped_files"] = self.con.execute("SELECT COUNT(*) FROM skipped").fetchone()[0]
        out["labelled"] = self.con.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
        out["stale"] = self.con.execute("SELECT COUNT(*) FROM labels WHERE stale=1").fetchone()[0]
        return out
