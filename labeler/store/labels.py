"""Store methods for labels: actions, label rows and the append-only event log.

SQL primitives only; :mod:`labeler.labels` composes them into labelling actions.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from ..errors import NotFoundError, StoreError
from .schema import LABEL_SOURCES, SUGGESTION_SOURCE, _chunks, _rows_by_id


class LabelsMixin:
    """Methods of :class:`~labeler.store.Store` about labels and actions (see there)."""

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

    def mark_action_active(self, action_id: int) -> None:
        """Clear ``undone_at`` of an action a redo re-applies (see :mod:`labeler.history`)."""
        with self.transaction() as con:
            con.execute("UPDATE actions SET undone_at=NULL WHERE id=?", (int(action_id),))

    def labels_in_force(self, image_ids: Sequence[int]) -> dict[int, sqlite3.Row]:
        """The write in force for each image: the label event of the newest *active* fresh
        action that wrote it (kind 'label', not a redo, not undone), by event order.

        Returns
        -------
        dict {image_id: sqlite3.Row}
            Rows with ``image_id, label`` (None: that action removed the label), ``source``
            (the label row's source: a rename keeps the source of the label it renamed),
            ``annotator, action_id, at, confidence``. Images no active action wrote are absent.

        The rule is :mod:`labeler.history`'s model of undo for several annotators.
        """
        ids = [int(i) for i in image_ids]
        out: dict[int, sqlite3.Row] = {}
        for chunk in _chunks(ids):
            q = ",".join("?" * len(chunk))
            for r in self.con.execute(
                    "SELECT e.image_id, e.new_label AS label, "
                    "CASE WHEN e.source = 'rename' THEN COALESCE(e.old_source, 'manual') ELSE e.source END "
                    "AS source, e.annotator, e.action_id, e.at, e.confidence FROM label_events e "
                    "JOIN actions a ON a.id = e.action_id "
                    "WHERE a.kind = 'label' AND a.redoes IS NULL AND a.undone_at IS NULL "
                    f"AND e.image_id IN ({q}) ORDER BY e.id", chunk):
                out[r["image_id"]] = r  # later events overwrite earlier ones
        return out

    def set_clustering_undone(self, action_id: int, undone: bool) -> None:
        """Hide (``undone``) or restore the clustering a cluster-edit action stored."""
        with self.transaction() as con:
            con.execute("UPDATE clusterings SET undone=? WHERE action_id=?",
                        (int(bool(undone)), int(action_id)))

    def action_events(self, action_id: int) -> list[sqlite3.Row]:
        """The label events of one action, in order."""
        return self.con.execute(
            "SELECT * FROM label_events WHERE action_id=? ORDER BY id", (int(action_id),)).fetchall()

    def current_label_rows(self, image_ids: Sequence[int]) -> dict[int, sqlite3.Row]:
        """The ``labels`` rows of the given images that have one: {image_id: row}."""
        return _rows_by_id(self.con, "labels", "image_id", [int(i) for i in image_ids])

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

    def images_with_label(self, label: str) -> list[int]:
        """Ids of the images whose current label is exactly ``label``."""
        return [r[0] for r in self.con.execute(
            "SELECT image_id FROM labels WHERE label=? ORDER BY image_id", (label,))]

    def label_usage(self) -> list[sqlite3.Row]:
        """Per label and annotator: images (current labels) and how many are stale."""
        return self.con.execute(
            "SELECT label, annotator, COUNT(*) AS n, SUM(stale) AS stale FROM labels "
            "GROUP BY label, annotator ORDER BY label, n DESC").fetchall()

    def stale_image_ids(self) -> list[int]:
        """Images whose file changed since they were labelled (label not confirmed yet)."""
        return [r[0] for r in self.con.execute("SELECT image_id FROM labels WHERE stale=1 ORDER BY image_id")]

    def clear_stale(self, image_ids: Sequence[int]) -> int:
        """Mark the labels of ``image_ids`` confirmed (not stale); returns how many were stale."""
        n = 0
        with self.transaction() as con:
            for chunk in _chunks([int(i) for i in image_ids]):
                q = ",".join("?" * len(chunk))
                n += con.execute(f"UPDATE labels SET stale=0 WHERE stale=1 AND image_id IN ({q})",
                                 chunk).rowcount
        return n

    def labels(self) -> dict[int, str]:
        """Current label of every labelled image: {image_id: label}."""
        return {r[0]: r[1] for r in self.con.execute("SELECT image_id, label FROM labels")}

    def decided_labels(self) -> dict[int, str]:
        """Current labels a person decided: {image_id: label}, accepted suggestions
        (source :data:`~labeler.store.schema.SUGGESTION_SOURCE`) left out, by image id.
        What the suggestion model, the label-conditioned search and the fine-tune learn
        from: the one place that rule lives."""
        return {r[0]: r[1] for r in self.con.execute(
            "SELECT image_id, label FROM labels WHERE source != ? ORDER BY image_id", (SUGGESTION_SOURCE,))}

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
            # INDEXED BY the primary key (clustering_id, image_id): without it SQLite's plan
            # walks the covering (clustering_id, cluster, image_id) index over the whole
            # clustering (11 ms for 10 ids at 50k rows against 0.016 ms; issue 23).
            out.update(self.con.execute(
                f"SELECT image_id, cluster FROM assignments INDEXED BY sqlite_autoindex_assignments_1 "
                f"WHERE clustering_id=? AND image_id IN ({q})", [cid, *chunk]).fetchall())
        return out

    def neighbour_rows(self, image_ids: Sequence[int]) -> dict[int, tuple[str, str | None, int]]:
        """Path, current label and current cluster of a few images (a search's neighbours),
        in one statement: {image_id: (path, label or None, cluster, -1 where none)}.

        One query instead of :meth:`get_images` + :meth:`labels_for` + :meth:`clusters_for`
        (and the current clustering's row): each statement costs ~0.05-0.1 ms of SQLite
        set-up, more than its few index lookups (issue 23: a top-10 search's metadata).
        The current clustering is the newest one not undone, as :meth:`current_clustering`.

        Raises
        ------
        StoreError
            An unknown image id.
        """
        ids = [int(i) for i in image_ids]
        out: dict[int, tuple[str, str | None, int]] = {}
        for chunk in _chunks(ids):
            q = ",".join("?" * len(chunk))
            # INDEXED BY the primary key, as clusters_for (not a walk of the clustering).
            out.update((r[0], (r[1], r[2], -1 if r[3] is None else r[3])) for r in self.con.execute(
                "SELECT i.id, i.path, l.label, a.cluster FROM images i "
                "LEFT JOIN labels l ON l.image_id = i.id "
                "LEFT JOIN assignments a INDEXED BY sqlite_autoindex_assignments_1 ON a.image_id = i.id "
                "AND a.clustering_id = (SELECT id FROM clusterings WHERE undone=0 ORDER BY id DESC LIMIT 1) "
                f"WHERE i.id IN ({q})", chunk))
        missing = [i for i in ids if i not in out]
        if missing:
            raise StoreError(f"unknown image id(s): {missing[:10]}")
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

    def last_label_event(self) -> int:
        """Id of the newest label event (0 when none): a cursor for :meth:`label_events_after`."""
        return int(self.con.execute("SELECT COALESCE(MAX(id), 0) FROM label_events").fetchone()[0])

    def label_events_after(self, event_id: int) -> list[tuple[int, int, str | None]]:
        """``(event id, image_id, new_label)`` of every label event newer than ``event_id``,
        oldest first (``new_label`` None = removed): what changed since a cursor."""
        return self.con.execute("SELECT id, image_id, new_label FROM label_events WHERE id>? ORDER BY id",
                                (int(event_id),)).fetchall()

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
