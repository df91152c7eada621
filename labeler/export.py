"""Export labels as CSV for training.

One row per image: path (relative to the image root), absolute path, label,
label source, cluster, annotator, labelled_at (ISO 8601, UTC), content hash.
Cells that a spreadsheet would run as a formula (starting with = + - @, tab or
carriage return) are prefixed with a single quote, as OWASP's "CSV Injection"
guidance recommends.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from pathlib import Path

from .project import Project

COLUMNS = ["path", "absolute_path", "label", "label_source", "cluster", "annotator", "labelled_at", "hash"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value) -> str:
    """A CSV cell safe to open in a spreadsheet: formula-like text gets a leading quote."""
    s = "" if value is None else str(value)
    return "'" + s if s.startswith(_FORMULA_START) else s


def label_table(project: Project, *, include_unlabelled: bool = False) -> list[dict]:
    """Rows of the export (unescaped), ordered by path."""
    store = project.store
    labels = {r["image_id"]: r for r in store.label_rows()}
    try:
        clusters = store.clusters_for([r["id"] for r in store.image_table()])
    except ValueError:  # no clustering yet
        clusters = {}
    root = project.image_root
    out = []
    for img in sorted(store.images_by_path().values(), key=lambda r: r["path"]):
        lab = labels.get(img["id"])
        if lab is None and not include_unlabelled:
            continue
        out.append({
            "path": img["path"],
            "absolute_path": str(root / img["path"]) if root else "",
            "label": lab["label"] if lab else "",
            "label_source": lab["source"] if lab else "",
            "cluster": clusters.get(img["id"], ""),
            "annotator": lab["annotator"] if lab else "",
            "labelled_at": datetime.fromtimestamp(lab["labelled_at"], timezone.utc).isoformat(timespec="seconds") if lab else "",
            "hash": img["hash"],
        })
    return out


def export_csv_text(project: Project, *, include_unlabelled: bool = False) -> str:
    """The label CSV as text (the dashboard's download and ``labeler export`` share it)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in label_table(project, include_unlabelled=include_unlabelled):
        w.writerow({k: escape_cell(v) for k, v in row.items()})
    return buf.getvalue()


def export_csv(project: Project, dest: Path | str, *, include_unlabelled: bool = False) -> int:
    """Write the label CSV to ``dest``; returns the number of data rows."""
    text = export_csv_text(project, include_unlabelled=include_unlabelled)
    Path(dest).write_text(text, encoding="utf-8", newline="")
    return text.count("\n") - 1
