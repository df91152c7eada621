"""The label CSV: one row per image, data-faithful by default.

Columns: path (relative to the image root), absolute path, label, label source,
cluster, annotator, labelled_at (ISO 8601, UTC), content hash; plus split and
group with a split, and support / n_annotators with the consensus label.

Two forms, chosen explicitly:

- **faithful** (default, ``excel_safe=False``): every cell is written as is, so
  ``pandas.read_csv(path, dtype=str, keep_default_na=False)`` gives back exactly
  the stored strings (a label ``-1``, a file ``-dash.png``, ``+ve``, ``@home``).
  The CSV is the input of training code, which must not see altered data.
- **excel-safe** (``excel_safe=True``, ``labeler export --excel-safe``): for a
  file a person opens in a spreadsheet. Following OWASP's "CSV Injection"
  guidance, a cell a spreadsheet would run as a formula (it starts with ``=``,
  ``+``, ``-``, ``@``, tab or carriage return) gets a leading single quote; a
  cell that is a plain number (``-1``, ``+2.5``, ``-3e-4``) is data, not a
  formula, and stays as it is.

Any string stays a valid single CSV cell: the writer follows RFC 4180 (CRLF row
ends, so a cell holding a CR or LF is quoted).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from ..project import Project

COLUMNS = ["path", "absolute_path", "label", "label_source", "label_stale", "cluster", "annotator", "labelled_at",
           "hash"]
SPLIT_COLUMNS = ["split", "group"]
CONSENSUS_COLUMNS = ["support", "n_annotators"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A plain decimal number, as a spreadsheet would read it without evaluating anything.
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def escape_cell(value, *, excel_safe: bool = True) -> str:
    """One CSV cell as text.

    Parameters
    ----------
    value : object
        ``None`` becomes the empty string; anything else ``str(value)``.
    excel_safe : bool
        Prefix a single quote to text a spreadsheet would run as a formula
        (OWASP "CSV Injection": leading ``= + - @``, tab, CR), except plain
        numbers. False returns the text unchanged.

    Returns
    -------
    str
    """
    s = "" if value is None else str(value)
    if excel_safe and s.startswith(_FORMULA_START) and not _NUMBER.fullmatch(s):
        return "'" + s
    return s


def _columns(rows: list[dict]) -> list[str]:
    cols = list(COLUMNS)
    if rows and "group" in rows[0]:
        cols += SPLIT_COLUMNS
    if rows and "support" in rows[0]:
        cols += CONSENSUS_COLUMNS
    return cols


def write_csv_rows(rows: list[dict], *, excel_safe: bool = False) -> str:
    """Rows (dicts from :func:`labeler.export.table.label_table`) as CSV text (RFC 4180)."""
    cols = _columns(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\r\n", extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({k: escape_cell(row.get(k), excel_safe=excel_safe) for k in cols})
    return buf.getvalue()


def export_csv_text(project: Project, *, include_unlabelled: bool = False, excel_safe: bool = False) -> str:
    """The label CSV as text (the dashboard's download and ``labeler export`` share it).

    Parameters
    ----------
    project : Project
    include_unlabelled : bool
        Also a row (empty label) for every unlabelled image.
    excel_safe : bool
        See the module docstring; default False (data-faithful).
    """
    from .table import label_table

    return write_csv_rows(label_table(project, include_unlabelled=include_unlabelled), excel_safe=excel_safe)


def export_csv(project: Project, dest: Path | str, *, include_unlabelled: bool = False,
               excel_safe: bool = False, rows: list[dict] | None = None) -> int:
    """Write the label CSV to ``dest``; returns the number of data rows.

    ``rows``: precomputed rows (with split / consensus columns) instead of the
    plain label table.
    """
    from .table import label_table

    if rows is None:
        rows = label_table(project, include_unlabelled=include_unlabelled)
    from ..atomic import atomic_write

    # Atomic: a full disk or a kill leaves the previous file (or none), never half a CSV.
    with atomic_write(dest) as f:
        f.write(write_csv_rows(rows, excel_safe=excel_safe).encode("utf-8"))
    return len(rows)
