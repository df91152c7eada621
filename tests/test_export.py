"""CSV export: columns, unlabelled rows, faithful by default, excel-safe on request."""

import csv
import io

import pytest

from labeler.export import COLUMNS, escape_cell, export_csv, export_csv_text
from labeler.export.csv import write_csv_rows


@pytest.mark.parametrize("raw,safe", [
    ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"), ("+1", "+1"), ("-1", "-1"), ("-2.5e-3", "-2.5e-3"),
    ("-ve", "'-ve"), ("+ve", "'+ve"), ("-dash.png", "'-dash.png"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("\t1", "'\t1"), ("crack", "crack"), (None, ""), (3, "3"), (-3, "-3"),
    ("-1+1", "'-1+1"),
])
def test_escape_cell_excel_safe(raw, safe):
    assert escape_cell(raw, excel_safe=True) == safe
    assert escape_cell(raw, excel_safe=False) == ("" if raw is None else str(raw))


def test_any_string_stays_one_cell():
    tricky = ["a\nb", "c\rd", "e\r\nf", 'q"uote', "com,ma", "", " lead", "trail "]
    rows = [{c: "" for c in COLUMNS} | {"label": s, "path": f"p{i}"} for i, s in enumerate(tricky)]
    back = list(csv.DictReader(io.StringIO(write_csv_rows(rows), newline="")))
    assert [r["label"] for r in back] == tricky


def test_export_rows(project, tmp_path):
    rows = project.store.image_table()
    a, b = rows[0]["id"], rows[1]["id"]
    project.store.set_labels([a], "=cmd|' /C calc'!A0", annotator="mallory")
    project.store.set_labels([b], "crack", annotator="ana", source="search")
    out = tmp_path / "labels.csv"
    assert export_csv(project, out) == 2
    data = list(csv.DictReader(open(out, encoding="utf-8", newline="")))
    assert list(data[0]) == COLUMNS
    by_path = {d["path"]: d for d in data}
    ra = by_path[rows[0]["path"]]
    assert ra["label"] == "=cmd|' /C calc'!A0" and ra["annotator"] == "mallory"
    rb = by_path[rows[1]["path"]]
    assert (rb["label"], rb["label_source"], rb["hash"]) == ("crack", "search", rows[1]["hash"])
    assert rb["absolute_path"] == str(project.image_root / rows[1]["path"])
    assert rb["cluster"] != "" and rb["labelled_at"].endswith("+00:00")
    safe = {d["path"]: d for d in csv.DictReader(io.StringIO(export_csv_text(project, excel_safe=True)))}
    assert safe[rows[0]["path"]]["label"] == "'=cmd|' /C calc'!A0"

    full = list(csv.DictReader(io.StringIO(export_csv_text(project, include_unlabelled=True))))
    assert len(full) == len(rows)
    assert sum(1 for d in full if d["label"] == "") == len(rows) - 2
