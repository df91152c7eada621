"""Each export format is loaded back by the library that reads it."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from click.testing import CliRunner

from labeler.cli import main
from labeler.errors import BadInputError
from labeler.export import export
from labeler.export.imagefolder import label_folder


@pytest.fixture()
def labelled(project, elpv_dir):
    """The 80-photo project with every photo labelled by its true cell type."""
    truth = {r["path"]: r["cell_type"] for r in csv.DictReader(open(elpv_dir / "truth.csv"))}
    ids = {r["path"]: r["id"] for r in project.store.image_table()}
    for lab in ("mono", "poly"):
        project.store.set_labels([ids[p] for p, t in truth.items() if t == lab], lab, annotator="ana")
    return project


def test_imagefolder_torchvision_and_hf(labelled, tmp_path, monkeypatch):
    from torchvision.datasets import ImageFolder

    out = tmp_path / "set"
    rep = export(labelled, out, format="imagefolder", split="0.8,0.1,0.1", seed=3)
    assert rep.written == 80 and sum(rep.summary.sizes.values()) == 80
    assert set(rep.summary.sizes) == {"train", "validation", "test"}
    counts = labelled.store.label_counts()
    total = 0
    for split, n in rep.summary.sizes.items():
        ds = ImageFolder(str(out / split))
        assert ds.classes == ["mono", "poly"] and len(ds) == n
        img, target = ds[0]
        assert img.size == (300, 300) and target in (0, 1)
        total += len(ds)
        assert all(os.path.islink(p) for p, _ in ds.samples)
    assert total == sum(counts.values())

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # the imagefolder builder is local: no network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    dd = datasets.load_dataset("imagefolder", data_dir=str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert {k: len(v) for k, v in dd.items()} == rep.summary.sizes
    assert dd["train"].features["label"].names == ["mono", "poly"]
    assert dd["test"][0]["image"].size == (300, 300)


def test_imagefolder_copy_and_refuses_non_empty(labelled, tmp_path):
    out = tmp_path / "copied"
    rep = export(labelled, out, format="imagefolder", copy=True)
    files = list(out.glob("train/*/*"))
    assert rep.written == len(files) == 80 and not any(f.is_symlink() for f in files)
    with pytest.raises(BadInputError):
        export(labelled, out, format="imagefolder")


def test_label_folder_names():
    assert label_folder("mono") == "mono"
    assert label_folder("../etc") == "%2E.%2Fetc"
    assert label_folder("a/b\\c") == "a%2Fb%5Cc"
    assert label_folder("ünï ✓") == "ünï ✓"
    from urllib.parse import unquote

    for s in ["../etc", "a/b\\c", "50%", 'x:"y"|z?*', ".hidden"]:
        assert unquote(label_folder(s)) == s and "/" not in label_folder(s)


def test_parquet_round_trip(labelled, tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    out = tmp_path / "labels.parquet"
    rep = export(labelled, out, format="parquet", split="0.8,0.2", with_embeddings=True, include_unlabelled=True)
    t = pq.read_table(out)
    assert t.num_rows == rep.written == 80
    for col in ["image_id", "path", "label", "label_source", "annotator", "labelled_at", "hash", "cluster",
                "split", "group", "embedding"]:
        assert col in t.column_names, col
    df = pd.read_parquet(out)
    assert set(df["split"]) == {"train", "test"} and (df["label_source"] == "manual").all()
    emb = np.stack(df["embedding"].to_numpy())
    stored = np.asarray(labelled.load_array("embeddings"))
    rows = {r["id"]: r["row"] for r in labelled.store.image_table()}
    assert np.allclose(emb, stored[[rows[i] for i in df["image_id"]]])
    assert str(t.schema.field("labelled_at").type) == "timestamp[us, tz=UTC]"


def test_hf_dataset_with_classlabel(labelled, tmp_path):
    import datasets

    out = tmp_path / "hf"
    rep = export(labelled, out, format="hf", split="0.5,0.5", seed=1)
    dd = datasets.load_from_disk(str(out))
    assert {k: len(v) for k, v in dd.items()} == rep.summary.sizes
    feat = dd["train"].features["label"]
    assert isinstance(feat, datasets.ClassLabel) and feat.names == ["mono", "poly"]
    row = dd["train"][0]
    assert row["image"].size == (300, 300) and labelled.store.labels()[
        {r["path"]: r["id"] for r in labelled.store.image_table()}[row["path"]]] == feat.int2str(row["label"])


def test_hf_missing_dependency_message(labelled, tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_datasets(name, *a, **k):
        if name == "datasets":
            raise ImportError("no datasets")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(BadInputError, match=r"pip install 'labeler\[hf\]'"):
        export(labelled, tmp_path / "hf", format="hf")
    assert not (tmp_path / "hf").exists()


def test_cli_export_prints_split_sizes(labelled, tmp_path):
    out = tmp_path / "cli.csv"
    r = CliRunner().invoke(main, ["export", "-p", str(labelled.root), "-o", str(out), "--split", "0.8,0.1,0.1"])
    assert r.exit_code == 0, r.output
    assert "split sizes: train" in r.output and "kept whole" in r.output
    r = CliRunner().invoke(main, ["export", "-p", str(labelled.root), "-o", str(out), "--split", "0.8,0.3"])
    assert r.exit_code == 1 and "sum to 1" in r.output


def test_group_column_from_csv(labelled, tmp_path):
    import pandas as pd

    paths = sorted(r["path"] for r in labelled.store.image_table())
    groups = tmp_path / "groups.csv"
    with open(groups, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "module"])
        for i, p in enumerate(paths):
            w.writerow([p, f"m{i // 8}"])  # ten modules of eight cells
    out = tmp_path / "g.csv"
    rep = export(labelled, out, format="csv", split="0.6,0.2,0.2", groups_csv=groups, group_column="module")
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert (df.groupby("group")["split"].nunique() == 1).all()
    assert rep.summary.groups_kept_whole == 10
    with pytest.raises(BadInputError):
        export(labelled, out, format="csv", split="0.5,0.5", groups_csv=groups, group_column="nope")
