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


# Export n real ELPV photos with export_hf in a fresh interpreter; print the peaks of Python
# allocations (tracemalloc) and of Arrow's memory pool during the export, and the bytes exported.
HF_MEMORY_CHILD = """
import json, sys, tracemalloc
from pathlib import Path
import datasets, pyarrow as pa
from labeler.export.hf import export_hf

files = sorted(Path(sys.argv[1]).glob("*.png"))[: int(sys.argv[2])]
rows = [{"image_id": i, "label": ("mono", "poly")[i % 2], "split": "test" if i % 5 == 0 else "train",
         "absolute_path": str(f), "path": f.name, "label_source": "manual", "annotator": "ana",
         "cluster": str(i % 3)} for i, f in enumerate(files)]
arrow_before = pa.default_memory_pool().max_memory()
tracemalloc.start()
sizes, missing = export_hf(rows, Path(sys.argv[3]), shard_bytes=int(sys.argv[4]))
python_peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({"python_peak": python_peak, "arrow_peak": pa.default_memory_pool().max_memory() - arrow_before,
                  "image_bytes": sum(f.stat().st_size for f in files), "sizes": sizes}))
"""


def test_hf_export_streams_images_so_peak_memory_does_not_grow_with_their_count(tmp_path):
    """100 and 500 real photos (about 2.8 and 14 MB of PNG), shards of 1 MB: the peak of Python
    and Arrow allocations during the export stays the same (holding every image, as the export
    did, grows it by at least the 11 MB more of images; so does one shard of everything)."""
    import json
    import subprocess
    import sys

    import datasets
    import fixtures_images as fx

    got = {}
    for n in (100, 500):
        out = tmp_path / f"hf{n}"
        res = subprocess.run([sys.executable, "-c", HF_MEMORY_CHILD, str(fx.elpv_images_dir()), str(n), str(out),
                              str(2**20)], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        got[n] = json.loads(res.stdout.strip().splitlines()[-1])
        assert got[n]["sizes"] == {"train": n - n // 5, "test": n // 5}
        dd = datasets.load_from_disk(str(out))
        assert {k: len(v) for k, v in dd.items()} == got[n]["sizes"]
        assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # the scratch folder is gone
    small, large = got[100], got[500]
    assert large["image_bytes"] > 4 * small["image_bytes"]
    peak = {n: g["python_peak"] + g["arrow_peak"] for n, g in got.items()}
    assert peak[500] - peak[100] < 0.1 * (large["image_bytes"] - small["image_bytes"]), got
    assert len(list((tmp_path / "hf500" / "train").glob("data-*.arrow"))) >= 10  # 1 MB shards
    first = datasets.load_from_disk(str(tmp_path / "hf500"))["train"][0]
    assert first["image"].size == (300, 300) and first["path"] == sorted(fx.elpv_images_dir().glob("*.png"))[1].name
