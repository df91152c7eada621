"""Embeddings brought from a file (`labeler ingest DIR --embeddings FILE`, labeler.embedding.given):
clustering, map, search by id, the queue and suggestions run on them; a new photo needs a model."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_images as fx  # noqa: E402

from labeler.cli import main  # noqa: E402
from labeler.embedding.given import NEEDS_A_MODEL, read_embeddings  # noqa: E402
from labeler.errors import BadInputError, QueryImageError  # noqa: E402
from labeler.project import Project  # noqa: E402
from labeler.search import Searcher  # noqa: E402

N = 16


def run(*args, ok=True):
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


@pytest.fixture()
def photos(tmp_path):
    """N distinct ELPV cells and two well separated groups of 24-d vectors for them."""
    d = tmp_path / "photos"
    d.mkdir()
    for p in sorted(fx.elpv_images_dir().glob("*.png"))[:N]:
        shutil.copyfile(p, d / p.name)
    names = sorted(p.name for p in d.iterdir())
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 24)) * 10
    vectors = (centres[np.arange(N) % 2] + rng.normal(size=(N, 24))).astype(np.float32)
    return d, names, vectors


def test_npy_embeddings_drive_map_clusters_search_queue_and_suggestions(photos, tmp_path):
    d, names, vectors = photos
    np.save(tmp_path / "vectors.npy", vectors[::-1])  # any order: the paths list aligns them
    keys = names[::-1]
    keys[0] = str((d / keys[0]).resolve())  # absolute paths inside the image root work too
    (tmp_path / "vectors.txt").write_text("\n".join(keys) + "\n")
    proj = tmp_path / "proj"
    res = run("ingest", d, "--project", proj, "--embeddings", tmp_path / "vectors.npy", "--quiet")
    assert "backbone: file; embedded 16" in res.output
    p = Project(proj)
    by_path = p.store.images_by_path()
    emb = p.load_array("embeddings")
    for j, name in enumerate(names):
        assert np.allclose(emb[by_path[name]["row"]], vectors[j])
    assert p.has_array("map") and p.store.current_clustering() is not None
    assert all(p.thumb_path(r["id"]).is_file() for r in by_path.values())
    assert p.store.get_meta("backbone")["name"] == "file"

    # search by id: the neighbours are from the same group of vectors
    first = by_path[names[0]]["id"]
    hits = json.loads(run("search", first, "--project", proj, "--json", "-k", "5").output.splitlines()[0])
    row_of = {r["id"]: names.index(path) for path, r in by_path.items()}
    assert all(row_of[n["image_id"]] % 2 == 0 for n in hits["neighbours"])
    # a photo of the collection is found by its content; a new one needs a model
    assert run("search", d / names[1], "--project", proj).exit_code == 0
    new = fx.make_photo(tmp_path, "coffee")
    res = run("search", new, "--project", proj, ok=False)
    assert res.exit_code == 1 and NEEDS_A_MODEL.split(":")[0] in res.output and "image id" in res.output
    with pytest.raises(QueryImageError, match="came from a file"):  # the dashboard and the HTTP API show it
        Searcher(p).by_file(new)

    # labels, the queue and suggestions run on the given vectors
    ids = [by_path[n]["id"] for n in names]
    run("label", "--project", proj, "--image", ids[0], "--image", ids[2], "--image", ids[4], "even")
    run("label", "--project", proj, "--image", ids[1], "--image", ids[3], "--image", ids[5], "odd")
    assert json.loads(run("next", "--project", proj, "--json", "-n", "3").output)
    sugg = run("suggest", "--project", proj, "--json").output
    assert "even" in sugg and "odd" in sugg

    # a Parquet export with the embeddings brings the same vectors into a fresh project
    run("export", "--project", proj, "--format", "parquet", "--with-embeddings", "--include-unlabelled",
        "-o", tmp_path / "out.parquet")
    run("ingest", d, "--project", tmp_path / "again", "--embeddings", tmp_path / "out.parquet", "--quiet")
    again = Project(tmp_path / "again")
    rows = {path: r["row"] for path, r in again.store.images_by_path().items()}
    assert np.array_equal(again.load_array("embeddings")[[rows[n] for n in names]], vectors)


def test_parquet_embeddings_and_images_without_a_vector(photos, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    d, names, vectors = photos
    pq.write_table(pa.table({"path": names[1:], "embedding": [list(map(float, v)) for v in vectors[1:]]}),
                   tmp_path / "vectors.parquet")
    proj = tmp_path / "proj"
    res = run("ingest", d, "--project", proj, "--embeddings", tmp_path / "vectors.parquet", "--quiet")
    assert f"{names[0]}: no vector for it in vectors.parquet" in res.output
    p = Project(proj)
    assert p.load_array("embeddings").shape == (N - 1, 24)
    assert p.store.images_by_path()[names[0]]["status"] == "skipped"

    # a new photo later needs its vector: a plain ingest says so and embeds nothing with a model
    fx.make_photo(d, "coffee")
    res = run("ingest", d, "--project", proj, "--quiet", ok=False)
    assert res.exit_code == 1 and "--embeddings" in res.output
    # vectors of another length would mix two spaces: refused without --force
    np.save(tmp_path / "other.npy", np.zeros((N + 1, 5), np.float32))
    (tmp_path / "other.txt").write_text("\n".join(sorted(x.name for x in d.iterdir())))
    res = run("ingest", d, "--project", proj, "--quiet", "--embeddings", tmp_path / "other.npy", ok=False)
    assert res.exit_code == 1 and "24 dimensions" in res.output and "--force" in res.output
    assert p.load_array("embeddings").shape == (N - 1, 24)


def test_unreadable_or_misaligned_files_are_refused(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((3, 4), np.float32))
    with pytest.raises(BadInputError, match="paths list"):
        read_embeddings(tmp_path / "v.npy")
    (tmp_path / "v.txt").write_text("a.png\nb.png\n")
    with pytest.raises(BadInputError, match="3 vectors but its paths list has 2"):
        read_embeddings(tmp_path / "v.npy")
    (tmp_path / "v.csv").write_text("x")
    with pytest.raises(BadInputError, match=".npy"):
        read_embeddings(tmp_path / "v.csv")


def test_what_needs_a_model_says_so():
    from labeler.embedding.backbones import load_backbone

    with pytest.raises(BadInputError, match="came from a file and this needs a model"):
        load_backbone("file")  # fine-tuning, feature sets and heat maps load the project's backbone
