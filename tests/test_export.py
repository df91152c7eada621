"""CSV export: columns, unlabelled rows, formula-injection escaping."""

import csv
import io

import pytest

from labeler.export import COLUMNS, escape_cell, export_csv, export_csv_text


@pytest.mark.parametrize("raw,safe", [
    ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("crack", "crack"), (None, ""), (3, "3"),
])
def test_escape_cell(raw, safe):
    assert escape_cell(raw) == safe


def test_export_rows(project, tmp_path):
    rows = project.store.image_table()
    a, b = rows[0]["id"], rows[1]["id"]
    project.store.set_labels([a], "=cmd|' /C calc'!A0", annotator="mallory")
    project.store.set_labels([b], "crack", annotator="ana", source="search")
    out = tmp_path / "labels.csv"
    assert export_csv(project, out) == 2
    data = list(csv.DictReader(open(out, encoding="utf-8")))
    assert list(data[0]) == COLUMNS
    by_path = {d["path"]: d for d in data}
    ra = by_path[rows[0]["path"]]
    assert ra["label"].startswith("'=") and ra["annotator"] == "mallory"
    rb = by_path[rows[1]["path"]]
    assert (rb["label"], rb["label_source"], rb["hash"]) == ("crack", "search", rows[1]["hash"])
    assert rb["absolute_path"] == str(project.image_root / rows[1]["path"])
    assert rb["cluster"] != "" and rb["labelled_at"].endswith("+00:00")

    full = list(csv.DictReader(io.StringIO(export_csv_text(project, include_unlabelled=True))))
    assert len(full) == len(rows)
    assert sum(1 for d in full if d["label"] == "") == len(rows) - 2
