"""Labels brought in from a CSV or a folder tree (labeler.export.importing, `labeler import-labels`,
`labeler ingest --labels-from-folders`), and the round trip export -> import."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_images as fx  # noqa: E402

from labeler import history, labels  # noqa: E402
from labeler.cli import main  # noqa: E402
from labeler.export.importing import import_labels  # noqa: E402
from labeler.pipeline import catalogue  # noqa: E402
from labeler.project import Project  # noqa: E402

#: folder -> number of ELPV cells in it; "" = directly in the image root (no label folder).
LAYOUT = {"mono": 3, "poly": 2, "odd label": 1, "": 1}


def run(*args, ok=True):
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def sorted_tree(root: Path) -> dict[str, str]:
    """Copy distinct ELPV cells into class folders under ``root``; {relative path: folder}."""
    src = sorted(fx.elpv_images_dir().glob("*.png"))
    out, k = {}, 0
    for folder, n in LAYOUT.items():
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        for p in src[k:k + n]:
            shutil.copyfile(p, d / p.name)
            out[(d / p.name).relative_to(root).as_posix()] = folder
        k += n
    return out


def catalogued(image_dir: Path, project_dir: Path) -> Project:
    """A project that catalogues ``image_dir`` without embedding (labels need no embedding)."""
    p = Project(project_dir, create=True)
    catalogue(p, image_dir)
    return p


def current(project: Project) -> dict[str, str]:
    """{relative path: label} of every labelled image."""
    by_id = {r["id"]: path for path, r in project.store.images_by_path().items()}
    return {by_id[r["image_id"]]: r["label"] for r in project.store.label_rows()}


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "photos"
    return root, sorted_tree(root)


def test_folder_tree_in_the_image_root_labels_by_folder_name_as_one_undoable_action(tree, tmp_path):
    root, layout = tree
    p = catalogued(root, tmp_path / "proj")
    rep = import_labels(p, root, annotator="ana")
    want = {path: folder for path, folder in layout.items() if folder}
    assert current(p) == want
    assert rep.matched == len(want) == len(rep.new) and rep.by_content == 0
    assert rep.blank == [next(path for path, f in layout.items() if not f)]  # the file with no folder
    assert not rep.unmatched and not rep.skipped and not rep.conflicts
    assert {r["source"] for r in p.store.label_rows()} == {"import"}
    action = p.store.get_action(rep.action_id)
    assert action["annotator"] == "ana" and str(root.resolve()) in action["description"]
    assert len(p.store.action_events(rep.action_id)) == len(want)
    history.undo(p, "ana")  # the whole import at once
    assert current(p) == {}


def test_an_import_never_replaces_a_persons_label_unasked(tree, tmp_path):
    root, layout = tree
    p = catalogued(root, tmp_path / "proj")
    ids = p.store.images_by_path()
    mono = sorted(path for path, f in layout.items() if f == "mono")
    labels.label_images(p, [ids[mono[0]]["id"]], "cracked", annotator="bob")
    labels.label_images(p, [ids[mono[1]]["id"]], "mono", annotator="bob")
    rep = import_labels(p, root, annotator="ana")
    assert current(p)[mono[0]] == "cracked"
    assert [(h.label, h.annotator) for h in rep.skipped] == [("cracked", "bob")] and rep.unchanged == 1
    assert "cracked 1 by bob" in "\n".join(rep.lines()) and "--relabel" in "\n".join(rep.lines())
    again = import_labels(p, root, annotator="ana", relabel=True)
    assert current(p)[mono[0]] == "mono" and [h.label for h in again.replaced] == ["cracked"]
    assert not again.new and again.unchanged == len(rep.written) + 1


def test_csv_with_unknown_paths_blank_labels_and_disagreements_writes_nothing_wrong(tree, tmp_path):
    root, layout = tree
    p = catalogued(root, tmp_path / "proj")
    paths = sorted(layout)
    a, b, c, d = paths[:4]
    csv_file = tmp_path / "other-tool.csv"
    csv_file.write_text(
        "\ufeffPath,Label,annotator\n"          # a byte-order mark and capitals, as spreadsheets write
        f"{a},good,carol\n"
        f"{root.resolve() / b},bad,\n"          # absolute, inside the image root
        "nowhere/x.png,good,\n"                 # unknown path
        f"{c},  ,\n"                            # blank label
        f"{d},good,\n"
        f"./{d},bad,\n"                         # the same image again, another label
        f"{a},good,carol\n"                     # a repeat that agrees
        "\n", encoding="utf-8")
    res = run("import-labels", "--project", p.root, csv_file, "--json", "--annotator", "ana")
    rep = json.loads(res.output)
    assert current(p) == {a: "good", b: "bad"}
    assert rep["unmatched"] == ["nowhere/x.png"] and rep["blank"] == [c]
    assert rep["conflicts"] == [{"path": d, "labels": ["bad", "good"]}]
    assert rep["new"] == 2 and rep["matched"] == 2 and rep["rows"] == 7
    rows = {r["image_id"]: r for r in p.store.label_rows()}
    by_path = p.store.images_by_path()
    assert rows[by_path[a]["id"]]["annotator"] == "carol" and rows[by_path[b]["id"]]["annotator"] == "ana"
    text = run("import-labels", "--project", p.root, csv_file, "--dry-run").output
    assert "unmatched" in text and "nowhere/x.png" in text and "blank label" in text and "would label 0" in text


def test_a_tree_elsewhere_matches_by_content_not_by_a_path_that_looks_alike(tree, tmp_path):
    root, layout = tree
    p = catalogued(root, tmp_path / "proj")
    same, other = sorted(path for path, f in layout.items() if f == "mono")[:2]
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "good").mkdir(parents=True)
    shutil.copyfile(root / same, elsewhere / "good" / "renamed.png")       # same content, another name
    (elsewhere / "mono").mkdir()
    shutil.copyfile(root / "poly" / Path(next(x for x, f in layout.items() if f == "poly")).name,
                    elsewhere / other)                                         # other's path, other content
    rep = import_labels(p, elsewhere)
    by_path = p.store.images_by_path()
    assert current(p) == {same: "good", next(x for x, f in layout.items() if f == "poly"): "mono"}
    assert rep.by_content == 2 and by_path[other]["id"] not in rep.written


def test_csv_without_the_columns_is_refused_in_one_line(tree, tmp_path):
    root, _ = tree
    p = catalogued(root, tmp_path / "proj")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,value\nx,1\n")
    res = run("import-labels", "--project", p.root, bad, ok=False)
    assert res.exit_code == 1 and "'path'" in res.output and "'label'" in res.output
    assert current(p) == {}


@pytest.mark.parametrize("copy", [False, True], ids=["symlinks", "copies"])
def test_imagefolder_export_round_trips_into_a_fresh_project(tree, tmp_path, copy):
    root, layout = tree
    src = catalogued(root, tmp_path / "src")
    ids = {path: r["id"] for path, r in src.store.images_by_path().items()}
    given = {path: folder or "a/b: .hidden?" for path, folder in layout.items()}  # encoded folder names
    given[sorted(layout)[0]] = ".dot%20label"
    for path, lab in given.items():
        labels.label_images(src, [ids[path]], lab, annotator="ana")
    out = tmp_path / "export"
    run("export", "--project", src.root, "--format", "imagefolder", "-o", out, *(["--copy"] if copy else []))
    assert any(f.is_symlink() for f in out.rglob("*.png")) != copy
    fresh = catalogued(root, tmp_path / "fresh")
    rep = import_labels(fresh, out)
    assert current(fresh) == current(src) == given
    assert rep.by_content == (len(given) if copy else 0) and not rep.unmatched and not rep.blank


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_exports_round_trip_into_a_fresh_project(tree, tmp_path, fmt):
    root, layout = tree
    src = catalogued(root, tmp_path / "src")
    ids = {path: r["id"] for path, r in src.store.images_by_path().items()}
    for path, folder in layout.items():
        labels.label_images(src, [ids[path]], folder or "-1", annotator="ana")
    out = tmp_path / f"labels.{fmt}"
    run("export", "--project", src.root, "--format", fmt, "-o", out, "--include-unlabelled")
    fresh = catalogued(root, tmp_path / "fresh")
    rep = json.loads(run("import-labels", "--project", fresh.root, out, "--json").output)
    assert current(fresh) == current(src) and rep["new"] == len(layout)
    assert {r["annotator"] for r in fresh.store.label_rows()} == {"ana"}  # the CSV's annotator column


def test_ingest_labels_from_folders(tmp_path):
    root = tmp_path / "photos"
    layout = sorted_tree(root)
    res = run("ingest", root, "--project", tmp_path / "proj", "--backbone", "efficientnet-lite0", "--quiet",
              "--labels-from-folders")
    p = Project(tmp_path / "proj")
    assert current(p) == {path: f for path, f in layout.items() if f}
    assert "labelled 6 image(s): 6 new" in res.output and "blank label" in res.output
    assert p.store.newest_undoable_action("cli")["description"].startswith("import 6 label(s) from")
