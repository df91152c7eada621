"""Store methods for imported model predictions (``labeler import-predictions``).

A prediction is one (source, image, label, score) row: a classifier named ``source`` gave
``image`` the label ``label`` with score ``score`` in [0, 1]; an image may have several
labels from one source. Predictions are never labels: the suggestion model uses each
source as one more expert whose reliability it measures on the held-out hand labels
(:mod:`labeler.assist.experts`). Re-importing a source replaces all of its rows in one
transaction.
"""

from __future__ import annotations

import time

#: DDL of the predictions table (schema version 4); one statement each, so the migration
#: from version 3 runs them as they are.
PREDICTIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS predictions (\n"
    "    source      TEXT NOT NULL,\n"
    "    image_id    INTEGER NOT NULL REFERENCES images(id),\n"
    "    label       TEXT NOT NULL,\n"
    "    score       REAL NOT NULL CHECK (score >= 0 AND score <= 1),\n"
    "    imported_at REAL NOT NULL,\n"
    "    PRIMARY KEY (source, image_id, label)\n"
    ")",
)
PREDICTIONS_SCHEMA = "".join(s + ";\n" for s in PREDICTIONS_DDL)


class PredictionsMixin:
    """Methods of :class:`~labeler.store.Store` about imported predictions (see there)."""

    def replace_predictions(self, source: str, rows, at: float | None = None) -> int:
        """Replace every prediction of ``source`` by ``rows`` in one transaction.

        Parameters
        ----------
        source : str
        rows : iterable of (image_id, label, score)
            Scores in [0, 1]; no two rows with the same image and label.
        at : float or None, the import time (default now)

        Returns
        -------
        int, rows written
        """
        rows = [(source, int(i), str(lab), float(s), time.time() if at is None else float(at))
                for i, lab, s in rows]
        with self.transaction() as con:
            con.execute("DELETE FROM predictions WHERE source=?", (source,))
            con.executemany("INSERT INTO predictions(source, image_id, label, score, imported_at) "
                            "VALUES (?, ?, ?, ?, ?)", rows)
        return len(rows)

    def delete_predictions(self, source: str) -> int:
        """Remove every prediction of ``source``; the number removed."""
        with self.transaction() as con:
            return con.execute("DELETE FROM predictions WHERE source=?", (source,)).rowcount

    def prediction_sources(self) -> list[dict]:
        """[{source, rows, images, labels, imported_at}], by source name."""
        return [dict(r) for r in self.con.execute(
            "SELECT source, COUNT(*) AS rows, COUNT(DISTINCT image_id) AS images, "
            "COUNT(DISTINCT label) AS labels, MAX(imported_at) AS imported_at "
            "FROM predictions GROUP BY source ORDER BY source")]

    def predictions(self, source: str) -> list[tuple[int, str, float]]:
        """The (image_id, label, score) rows of ``source``, by image then label."""
        return [(r[0], r[1], r[2]) for r in self.con.execute(
            "SELECT image_id, label, score FROM predictions WHERE source=? ORDER BY image_id, label", (source,))]
