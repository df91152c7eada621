"""Model predictions brought in from outside (``labeler import-predictions``).

A CSV or Parquet file with the columns ``path``, ``label`` and ``score`` (a score in
[0, 1]; several rows per image give several labels) from a classifier named by the user
(``--source my-classifier``). Rows are matched to catalogued images exactly as
``labeler import-labels`` matches them (:func:`labeler.export.importing.matched_rows`: path
relative to the image root, absolute path inside it, then file content), and stored in the
``predictions`` table (:mod:`labeler.store.predictions`): importing a source again
replaces all of its predictions in one transaction; a file with no usable row removes it.

Predictions are not labels. The suggestion model uses each source as one more expert
whose weight is fitted on the held-out hand labels (:mod:`labeler.assist.experts`): a
source that is often wrong gets little or no say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadInputError
from ..export.importing import listing, matched_rows, read_label_csv
from ..labels import clean_label

#: Longest source name accepted.
MAX_SOURCE_LENGTH = 80


def clean_source(source) -> str:
    """The source name as stored: stripped, one printable line, 1..80 characters.

    Raises
    ------
    BadInputError
        Empty, a control character, or too long.
    """
    text = "" if source is None else str(source).strip()
    if not text:
        raise BadInputError("name the predictions' source: --source my-classifier")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise BadInputError("a source name must be one line without TABs or control characters")
    if len(text) > MAX_SOURCE_LENGTH:
        raise BadInputError(f"a source name has at most {MAX_SOURCE_LENGTH} characters (got {len(text)})")
    return text


@dataclass
class PredictionReport:
    """What an import of predictions did (or, with ``dry_run``, would do).

    Attributes
    ----------
    file : str, the file read
    source : str, the predictions' source name
    rows : int, rows read
    written : int, predictions stored (image, label, score)
    images : int, distinct images with a stored prediction
    replaced : int, predictions of the same source removed first
    unmatched : list of str, paths naming no catalogued image
    blank : list of str, rows with an empty label
    bad : list of (str, str), rows refused (score missing, not a number, outside [0, 1];
        a refused label), and why
    duplicates : list of (str, str), (path, label) named twice: the first row is kept
    """

    file: str
    source: str
    rows: int = 0
    written: int = 0
    images: int = 0
    replaced: int = 0
    unmatched: list[str] = field(default_factory=list)
    blank: list[str] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    dry_run: bool = False

    def lines(self, limit: int = 10) -> list[str]:
        """The report as text lines: counts, then up to ``limit`` examples of each problem."""
        verb = "would store" if self.dry_run else "stored"
        out = [f"read {self.rows:,} row(s) from {self.file}: {self.images:,} image(s) matched",
               f"{verb} {self.written:,} prediction(s) of source {self.source!r}"
               + (f", replacing its {self.replaced:,} earlier one(s)" if self.replaced else "")]

        def some(title, items, fmt=str):
            out.extend(listing(title, items, limit, fmt))
        some("unmatched (no catalogued image with that path or content)", self.unmatched)
        some("blank label (not stored)", self.blank)
        some("refused row (not stored)", self.bad, lambda b: f"{b[0]}: {b[1]}")
        some("label named twice for one image (first row kept)", self.duplicates, lambda d: f"{d[0]}: {d[1]!r}")
        return out

    def to_dict(self) -> dict:
        """JSON-ready: every count, and every unmatched, blank, refused and duplicate row."""
        return {"file": self.file, "source": self.source, "dry_run": self.dry_run, "rows": self.rows,
                "written": self.written, "images": self.images, "replaced": self.replaced,
                "matched": self.images, "unmatched": self.unmatched, "blank": self.blank,
                "bad": [{"path": p, "reason": r} for p, r in self.bad],
                "duplicates": [{"path": p, "label": lab} for p, lab in self.duplicates]}


def _score(text: str) -> float:
    if not text:
        raise BadInputError("no score")
    try:
        v = float(text)
    except ValueError:
        raise BadInputError(f"score {text!r} is not a number") from None
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise BadInputError(f"score {text} is outside [0, 1]")
    return v


def import_predictions(project, file: Path | str, source: str, *, dry_run: bool = False) -> PredictionReport:
    """Store the predictions of ``file`` as source ``source``, replacing its earlier ones.

    Parameters
    ----------
    project : Project
    file : path, a CSV (comma, TAB or semicolon separated) or ``.parquet`` file with the
        columns path, label and score (see :func:`labeler.export.importing.read_label_csv`
        for the accepted column names and path forms)
    source : str, the name the suggestions show ("model: my-classifier")
    dry_run : bool, match and report; store nothing

    Returns
    -------
    PredictionReport

    Raises
    ------
    BadInputError
        The file is missing or unreadable, has no path, label or score column; a bad source name.
    """
    source = clean_source(source)
    file = Path(file).expanduser()
    if not file.is_file():
        raise BadInputError(f"not a file: {file}")
    rows = read_label_csv(file)
    if rows and not any(r.score for r in rows) and not _has_score_column(file):
        raise BadInputError(f"{file} needs a 'score' column (a number in [0, 1] per row) beside path and label")
    rep = PredictionReport(str(file), source, rows=len(rows), dry_run=dry_run)
    kept: dict[tuple[int, str], float] = {}
    for row, (label, score), ids, _ in matched_rows(project, rows, file.resolve().parent, rep,
                                                    lambda r: (clean_label(r.label), _score(r.score))):
        for i in ids:
            if (i, label) in kept:
                rep.duplicates.append((row.where, label))
                continue
            kept[(i, label)] = score
    rep.written, rep.images = len(kept), len({i for i, _ in kept})
    store = project.store
    with store.transaction():
        rep.replaced = next((s["rows"] for s in store.prediction_sources() if s["source"] == source), 0)
        if not dry_run:
            store.replace_predictions(source, [(i, lab, s) for (i, lab), s in sorted(kept.items())])
    return rep


def _has_score_column(file: Path) -> bool:
    """Whether the header names a score column (a file whose every score cell is empty has one)."""
    if file.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(file).names
    else:
        with open(file, encoding="utf-8-sig") as f:
            header = f.readline()
        names = [c for d in ",\t;" for c in header.strip().split(d)]
    return any(n.strip().lower() == "score" for n in names)
