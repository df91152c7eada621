"""Near-duplicates on real photos with planted copies; grouped splits keep them together;
the CSV export round-trips tricky file names and labels."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from fixtures_images import copy_elpv
from labeler.duplicates import duplicate_components, find_duplicates
from labeler.errors import BadInputError
from labeler.export import escape_cell

TRICKY_NAMES = ["-dash.png", "+plus.png", "=cmd.png", "@at.png", 'quo"te,comma.png', "ünïcödé ✓.png",
                "long_" + "x" * 150 + ".png"]


def _plant(src_dir, out_dir):
    """ELPV photos, seven renamed to tricky names, plus planted copies: {copy: original}."""
    files = copy_elpv(src_dir, 30)
    for f, name in zip(files[:len(TRICKY_NAMES)], TRICKY_NAMES):
        f.rename(src_dir / name)
    files = sorted(src_dir.iterdir())
    planted = {}
    a, b, c, d, e = files[10:15]
    shutil.copyfile(a, out_dir / "exact_copy.png")
    planted["exact_copy.png"] = a.name
    shutil.copyfile(e, out_dir / "exact_copy_2.png")
    planted["exact_copy_2.png"] = e.name
    # Edits that keep cosine >= 0.99 on ELPV (benchmarks/bench_duplicates.py): brightness, light JPEG.
    ImageEnhance.Brightness(Image.open(b).convert("L")).enhance(1.05).save(out_dir / "brighter.png")
    planted["brighter.png"] = b.name
    ImageEnhance.Brightness(Image.open(c).convert("L")).enhance(0.95).save(out_dir / "darker.png")
    planted["darker.png"] = c.name
    Image.open(d).convert("RGB").save(out_dir / "reencoded.jpg", quality=95)
    planted["reencoded.jpg"] = d.name
    return planted


@pytest.fixture(scope="module")
def dup_project(tmp_path_factory):
    from labeler.config import Settings
    from labeler.pipeline import ingest
    from labeler.project import Project

    img = tmp_path_factory.mktemp("dups") / "images"
    img.mkdir()
    planted = _plant(img, img)
    root = img.parent / "project"
    s = Settings(backbone="efficientnet-lite0", pca_components=16, min_cluster_size=3, min_samples=2,
                 batch_size=16, num_workers=0)
    ingest(img, root, s, progress=False)
    p = Project(root)
    yield p, planted
    p.store.close()


def _ids(project):
    return {r["path"]: r["id"] for r in project.store.image_table()}


def test_components_unit():
    x = np.eye(4, dtype=np.float32)[[0, 0, 1, 2, 3]]
    x[1] += 0.01
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    comp, _ = duplicate_components(x, ["h0", "h1", "h2", "h3", "h2"], threshold=0.99, k=2)
    assert comp[0] == comp[1] and comp[2] == comp[4] and len({comp[0], comp[2], comp[3]}) == 3
    with pytest.raises(BadInputError):
        duplicate_components(x, threshold=1.5)


def test_planted_copies_found(dup_project):
    project, planted = dup_project
    ids = _ids(project)
    rep = find_duplicates(project)
    group_of = rep.group_of()
    for copy, orig in planted.items():
        assert group_of.get(ids[copy]) is not None and group_of[ids[copy]] == group_of.get(ids[orig]), copy
    c = rep.counts()
    assert c["exact_groups"] == 2 and c["exact_images"] == 4
    assert c["near_groups"] >= 3
    kinds = {g.kind for g in rep.groups}
    assert kinds == {"exact", "near"}
    # a threshold of 1.0 keeps only exact copies
    strict = find_duplicates(project, threshold=1.0)
    assert {g.kind for g in strict.groups} == {"exact"} and strict.counts()["near_groups"] == 0


def test_cli_duplicates_and_info(dup_project):
    from click.testing import CliRunner

    from labeler.cli import main

    project, _ = dup_project
    r = CliRunner().invoke(main, ["duplicates", "-p", str(project.root), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["exact_groups"] == 2 and data["groups"]
    r = CliRunner().invoke(main, ["info", "-p", str(project.root)])
    assert r.exit_code == 0 and "2 exact-copy set(s) (4 images)" in r.output, r.output
    r = CliRunner().invoke(main, ["duplicates", "-p", str(project.root), "--threshold", "2"])
    assert r.exit_code != 0


def test_grouped_split_keeps_planted_pairs_together(dup_project, tmp_path):
    import pandas as pd

    from labeler.export import export

    project, planted = dup_project
    ids = _ids(project)
    st = project.store
    paths = sorted(ids)
    for i, p in enumerate(paths):  # two labels, copies share the original's label
        st.set_labels([ids[p]], "even" if i % 2 == 0 else "odd", annotator="ana")
    for copy, orig in planted.items():
        st.set_labels([ids[copy]], st.labels_for([ids[orig]])[ids[orig]], annotator="ana")
    for seed in range(5):
        out = tmp_path / f"split{seed}.csv"
        rep = export(project, out, format="csv", split="0.6,0.2,0.2", seed=seed)
        df = pd.read_csv(out, dtype=str, keep_default_na=False).set_index("path")
        for copy, orig in planted.items():
            assert df.loc[copy, "split"] == df.loc[orig, "split"], (seed, copy)
            assert df.loc[copy, "group"] == df.loc[orig, "group"] != ""
        assert rep.summary.groups_kept_whole >= 5 and sum(rep.summary.sizes.values()) == len(df)
        assert set(df["split"]) == {"train", "validation", "test"}


def test_csv_round_trips_tricky_names_and_labels(dup_project, tmp_path):
    import pandas as pd

    from labeler.export import export

    project, _ = dup_project
    ids = _ids(project)
    labels = ["-1", "+ve", "-ve", "=SUM(A1)", "@home", 'say "hi", ok', "ünï ✓ 標籤", "y" * 200, "1e5", "NA",
              "-3.5e-2", "|pipe"]
    st = project.store
    names = TRICKY_NAMES + ["exact_copy.png", "reencoded.jpg", "darker.png", "brighter.png", "exact_copy_2.png"]
    for name, lab in zip(names, labels):
        st.set_labels([ids[name]], lab, annotator="=evil()" if lab == "-1" else "ana")
    want = {name: st.labels_for([ids[name]])[ids[name]] for name in names[:len(labels)]}
    out = tmp_path / "faithful.csv"
    export(project, out, format="csv")
    df = pd.read_csv(out, dtype=str, keep_default_na=False).set_index("path")
    for name, lab in want.items():
        assert df.loc[name, "label"] == lab, name
    assert df.loc[TRICKY_NAMES[0], "annotator"] == "=evil()"
    assert set(TRICKY_NAMES) <= set(df.index)

    safe = tmp_path / "safe.csv"
    export(project, safe, format="csv", excel_safe=True)
    ds = pd.read_csv(safe, dtype=str, keep_default_na=False).set_index("path")
    expect = {"-1": "-1", "+ve": "'+ve", "-ve": "'-ve", "=SUM(A1)": "'=SUM(A1)", "@home": "'@home",
              "1e5": "1e5", "-3.5e-2": "-3.5e-2", "NA": "NA", "|pipe": "|pipe"}
    by_label = {lab: name for name, lab in want.items()}
    for lab, cell in expect.items():
        assert ds.loc[escape_cell(by_label[lab], excel_safe=True), "label"] == cell, lab
    assert "'-dash.png" in ds.index and "'=cmd.png" in ds.index and "'+plus.png" in ds.index
    assert ds.loc["'-dash.png", "annotator"] == "'=evil()"
    assert len(ds) == len(df)


def test_counts_for_info_large_projects(dup_project, tmp_path):
    from labeler.duplicates import duplicate_counts, remember_counts

    project, _ = dup_project
    live = duplicate_counts(project)
    assert live["stored"] is False and live["exact_groups"] == 2
    assert duplicate_counts(project, live_limit=0) is None or duplicate_counts(project, live_limit=0)["stored"]
    remember_counts(project, find_duplicates(project))
    stored = duplicate_counts(project, live_limit=0)
    assert stored["stored"] is True and stored["near_groups"] == live["near_groups"]
