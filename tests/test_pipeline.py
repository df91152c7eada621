"""The ingest pipeline end to end on real photos: catalogue, embed, reduce, cluster,
incremental re-ingest, resume after kill -9, bad input, backbone consistency."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fixtures_images as fx
from labeler.config import Settings
from labeler.pipeline import BackboneMismatchError, ingest
from labeler.errors import BadInputError
from labeler.project import Project, ProjectError

FAST = dict(backbone="efficientnet-lite0", pca_components=16, min_cluster_size=3, min_samples=2,
            batch_size=8, num_workers=0, commit_every=8)


def settings(**kw) -> Settings:
    return Settings(**{**FAST, **kw})


def test_built_project_has_every_stage(built_project, elpv_dir):
    p = Project(built_project)
    st = p.store
    assert st.counts()["embedded"] == 80
    emb, pca, xy = p.load_array("embeddings"), p.load_array("pca"), p.load_array("map")
    assert emb.shape == (80, 1432) and emb.dtype == np.float32 and np.isfinite(emb).all()  # multistage
    assert pca.shape == (80, 32)
    np.testing.assert_allclose(np.linalg.norm(pca, axis=1), 1.0, rtol=1e-4)
    assert xy.shape == (80, 2) and np.isfinite(xy).all()
    ids, clusters, _ = st.assignments()
    assert len(ids) == 80 and clusters.max() >= 1  # ELPV has at least mono and poly cells
    meta = st.get_meta("backbone")
    assert meta["name"] == "efficientnet-lite0" and meta["dim"] == 1432 and meta["preprocessing"]
    assert meta["features"] == "multistage"  # the default feature type of a new project
    assert len(list(p.thumbs_dir.glob("*.jpg"))) == 80
    assert (p.models_dir / "pca.joblib").is_file() and (p.models_dir / "umap_map.joblib").is_file()
    assert 0 < st.get_meta("novelty_threshold") <= 1
    # Nothing was written into the image folder.
    assert sorted(x.name for x in (elpv_dir / "images").iterdir()) == sorted(
        r["path"] for r in st.image_table())
    # The settings used are recorded.
    assert "pca_components = 32" in (p.root / "labeler.toml").read_text()


def test_neighbours_share_cell_type(built_project, elpv_dir):
    """Reverse image search on real photos: neighbours mostly share the cell type."""
    import csv

    from labeler.search import Searcher

    truth = {r["path"]: r["cell_type"] for r in csv.DictReader(open(elpv_dir / "truth.csv"))}
    p = Project(built_project)
    s = Searcher(p)
    rows = p.store.image_table()
    hits = []
    for r in rows:
        res = s.by_id(r["id"], k=5)
        hits += [truth[n.path] == truth[r["path"]] for n in res.neighbours]
    assert np.mean(hits) > 0.8


@pytest.fixture()
def small_dir(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    fx.copy_elpv(d, 12)
    fx.make_photo(d, "chelsea")
    fx.make_photo(d, "coffee", fmt="PNG")
    return d


def test_incremental_reingest(small_dir, tmp_path):
    proj = tmp_path / "proj"
    r1 = ingest(small_dir, proj, settings(), progress=False)
    assert (r1.catalogue.new, r1.embedded) == (14, 14)
    p = Project(proj)
    ids_before = {r["path"]: r["id"] for r in p.store.image_table()}
    p.store.set_labels([ids_before["chelsea.jpg"]], "cat", annotator="t")
    emb_before = np.array(p.load_array("embeddings"))

    # Unchanged: nothing embedded again.
    r2 = ingest(small_dir, proj, settings(), progress=False)
    assert (r2.catalogue.unchanged, r2.embedded, r2.rebuilt) == (14, 0, False)

    # One new, one changed, one removed file.
    fx.make_photo(small_dir, "astronaut")
    fx.make_photo(small_dir, "flower", filename="coffee.png", fmt="PNG")  # same name, new content
    (small_dir / "chelsea.jpg").unlink()
    r3 = ingest(small_dir, proj, settings(), progress=False)
    assert (r3.catalogue.new, r3.catalogue.changed, r3.catalogue.missing, r3.embedded) == (1, 1, 1, 2)
    st = p.store
    rows = {r["path"]: r for r in st.image_table()}
    assert rows["chelsea.jpg"]["status"] == "missing"
    assert st.labels() == {ids_before["chelsea.jpg"]: "cat"}  # a missing file keeps its label
    assert rows["coffee.png"]["id"] == ids_before["coffee.png"]  # changed file keeps id and row
    emb = p.load_array("embeddings")
    assert emb.shape[0] == 15
    changed_row = rows["coffee.png"]["row"]
    unchanged_row = rows[sorted(fx.elpv_images_dir().glob("*.png"))[0].name]["row"]
    assert not np.allclose(emb[changed_row], emb_before[changed_row])
    np.testing.assert_array_equal(emb[unchanged_row], emb_before[unchanged_row])


def _copy_elpv_range(directory, start, stop):
    for src in sorted(fx.elpv_images_dir().glob("*.png"))[start:stop]:
        shutil.copyfile(src, directory / src.name)


def test_new_photos_join_the_existing_map_and_clusters(tmp_path):
    """Re-ingest places new photos; old positions, cluster ids and labels stay exactly."""
    from labeler.clustering import cluster_project

    d = tmp_path / "photos"
    d.mkdir()
    _copy_elpv_range(d, 0, 30)
    proj = tmp_path / "proj"
    ingest(d, proj, settings(), progress=False)
    p = Project(proj)
    st = p.store
    ids0, cl0, _ = st.assignments()
    xy0, space0 = np.array(p.load_array("map")), np.array(p.load_array("cluster_space"))
    big = int(np.bincount(cl0[cl0 >= 0]).argmax()) if (cl0 >= 0).any() else -1
    st.set_labels([int(i) for i in ids0[cl0 == big]], "cell", annotator="t")
    st.set_labels([int(ids0[0])], "first", annotator="t")
    labels0 = st.labels()

    _copy_elpv_range(d, 30, 34)
    fx.make_photo(d, "chelsea")
    rep = ingest(d, proj, settings(), progress=False)
    assert rep.embedded == 5 and rep.placed == 5 and not rep.remapped
    ids1, cl1, _ = st.assignments()
    old = np.isin(ids1, ids0)
    np.testing.assert_array_equal(ids1[old], ids0)
    np.testing.assert_array_equal(cl1[old], cl0)  # every old image keeps its cluster id
    assert set(cl1[~old].tolist()) <= set(cl0.tolist()) | {-1}  # a known cluster or noise
    assert st.labels() == labels0
    xy1, space1 = p.load_array("map"), p.load_array("cluster_space")
    assert xy1.shape == (35, 2) and np.isfinite(xy1).all() and np.isfinite(space1).all()
    np.testing.assert_array_equal(xy1[:30], xy0)  # old points do not move at all
    np.testing.assert_array_equal(space1[:30], space0)
    assert len(p.load_array("pca")) == 35
    # The ELPV cells land among the ELPV cells, not on the cat photo's side of the map.
    new_rows = {r["path"]: r["row"] for r in st.image_table()}
    cells = [new_rows[x.name] for x in sorted(fx.elpv_images_dir().glob("*.png"))[30:34]]
    d_cells = np.linalg.norm(xy1[cells][:, None] - xy0[None], axis=2).min(1)
    assert np.all(d_cells < np.ptp(xy0, axis=0).max() / 4)

    # KMeans: new photos go to the nearest centroid, never to noise.
    s = settings(method="kmeans", k=3)
    cluster_project(p, s)
    ids2, cl2, _ = st.assignments()
    _copy_elpv_range(d, 34, 36)
    rep = ingest(d, proj, s, progress=False)
    ids3, cl3, _ = st.assignments()
    np.testing.assert_array_equal(cl3[np.isin(ids3, ids2)], cl2)
    assert rep.placed == 2 and set(cl3[~np.isin(ids3, ids2)].tolist()) <= set(range(3))

    # --remap refits everything: every image in exactly one cluster of a new clustering.
    before = st.current_clustering()["id"]
    rep = ingest(d, proj, s, remap=True, progress=False)
    assert rep.remapped and rep.placed == 0 and st.current_clustering()["id"] != before
    assert len(st.assignments()[0]) == 37 and len(p.load_array("map")) == 37
    assert st.labels() == labels0


@pytest.mark.parametrize("placement", ["neighbours", "umap"])
def test_place_in_maps_moves_no_other_point(project, placement):
    from labeler.pipeline import place_in_maps

    xy, space, pca = (np.array(project.load_array(a)) for a in ("map", "cluster_space", "pca"))
    rows = np.arange(70, 80)
    place_in_maps(project, rows, settings(), placement=placement)
    xy2, space2, pca2 = (project.load_array(a) for a in ("map", "cluster_space", "pca"))
    np.testing.assert_array_equal(xy2[:70], xy[:70])
    np.testing.assert_array_equal(space2[:70], space[:70])
    np.testing.assert_allclose(pca2, pca, atol=1e-5)  # the same PCA projects the same embeddings
    lo, hi = xy[:70].min(0), xy[:70].max(0)
    pad = (hi - lo) * 0.1
    assert np.all((xy2[70:] >= lo - pad) & (xy2[70:] <= hi + pad)) and np.isfinite(space2[70:]).all()
    with pytest.raises(ValueError, match="unknown placement"):
        place_in_maps(project, rows, settings(), placement="tsne")


def test_bad_input_is_skipped_and_reported(tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    good = fx.copy_elpv(d, 8)
    fx.make_photo(d, "chelsea", filename="über café 1.jpg")
    sub = d / "Sub Dir"
    sub.mkdir()
    fx.make_photo(sub, "coffee", filename="UPPER.JPG")
    fx.make_16bit_png(d)
    fx.make_cmyk_jpeg(d)
    fx.make_palette_transparent(d)
    fx.make_rgba(d)
    bad = [fx.make_zero_byte(d), fx.make_random_bytes(d), fx.make_text_as_jpg(d),
           fx.make_truncated_jpeg(d), fx.make_png_bomb(d), fx.make_one_pixel(d)]
    outside = tmp_path / "outside"
    outside.mkdir()
    fx.make_outside_symlink(d, outside)
    (d / "readme.txt").write_text("not an image extension: ignored")

    rep = ingest(d, tmp_path / "proj", settings(), progress=False)
    reasons = dict(rep.skipped)
    for b in bad:
        assert b.name in reasons, f"{b.name} not reported"
    assert "outside.jpg" in reasons and "outside" in reasons["outside.jpg"]
    assert rep.n_images == len(good) + 6
    p = Project(tmp_path / "proj")
    assert {r["path"] for r in p.store.skipped()} == set(reasons)
    assert "Sub Dir/UPPER.JPG" in {r["path"] for r in p.store.image_table()}
    assert "über café 1.jpg" in {r["path"] for r in p.store.image_table()}


def test_missing_or_empty_folder_is_an_error(tmp_path):
    with pytest.raises(BadInputError, match="image folder not found"):
        ingest(tmp_path / "nope", tmp_path / "proj", settings(), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no image files in"):
        ingest(tmp_path / "empty", tmp_path / "proj2", settings(), progress=False)
    assert not (tmp_path / "proj2").exists()  # no half-made project
    bad = tmp_path / "only_bad"
    bad.mkdir()
    (bad / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(BadInputError, match="no usable image"):
        ingest(bad, tmp_path / "proj3", settings(), progress=False)


def test_one_project_one_folder_and_one_backbone(small_dir, tmp_path):
    proj = tmp_path / "proj"
    ingest(small_dir, proj, settings(), progress=False)
    other = tmp_path / "other"
    other.mkdir()
    fx.copy_elpv(other, 3)
    with pytest.raises(ProjectError, match="one project per image folder"):
        ingest(other, proj, settings(), progress=False)
    with pytest.raises(BackboneMismatchError, match="--force"):
        ingest(small_dir, proj, settings(view="crop"), progress=False)
    rep = ingest(small_dir, proj, settings(view="crop"), force=True, progress=False)
    assert rep.embedded == 14
    assert Project(proj).store.get_meta("backbone")["view"] == "crop"


def test_resume_after_kill(tmp_path):
    """kill -9 in the middle of an ingest: the next run embeds only what was not committed."""
    d = tmp_path / "photos"
    d.mkdir()
    fx.copy_elpv(d, 48)
    proj = tmp_path / "proj"
    env = {**os.environ, **{f"LABELER_{k.upper()}": str(v) for k, v in FAST.items()}, "LABELER_COMMIT_EVERY": "8"}
    proc = subprocess.Popen([sys.executable, "-m", "labeler.cli", "ingest", str(d), "--project", str(proj), "--quiet"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = proj / "labeler.db"
    committed = 0
    deadline = time.time() + 600  # ends at the first commit; generous for a busy 2-core CI machine
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                con = sqlite3.connect(db, timeout=1)
                committed = con.execute("SELECT COUNT(*) FROM images WHERE status='embedded'").fetchone()[0]
                con.close()
            except sqlite3.OperationalError:
                pass
            if committed >= 16:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 16 <= committed < 48, f"could not catch the ingest mid-way ({committed} committed)"

    rep = ingest(d, proj, settings(), progress=False)
    p = Project(proj)
    assert rep.embedded <= 48 - 16 and p.store.counts()["embedded"] == 48
    # Resumed embeddings equal a clean run's, image by image.
    clean = tmp_path / "clean"
    ingest(d, clean, settings(), progress=False)
    q = Project(clean)
    a = {r["path"]: p.load_array("embeddings")[r["row"]] for r in p.store.image_table()}
    b = {r["path"]: q.load_array("embeddings")[r["row"]] for r in q.store.image_table()}
    for path in b:
        np.testing.assert_allclose(a[path], b[path], rtol=1e-4, atol=1e-5)
    assert not list(p.parts_dir.glob("*"))


@pytest.mark.parametrize("killed_in, remap", [("cluster_project", True), ("place_images", False)])
def test_interrupted_after_embedding_rebuilds_maps_and_clusters(small_dir, tmp_path, monkeypatch, killed_in, remap):
    """A run killed between embedding and clustering leaves no stale map or clustering."""
    import labeler.pipeline as pl

    proj = tmp_path / "proj"
    ingest(small_dir, proj, settings(), progress=False)
    fx.make_photo(small_dir, "astronaut")

    def killed(*a, **k):
        raise KeyboardInterrupt  # as if Ctrl-C arrived while clustering

    monkeypatch.setattr(pl, killed_in, killed)
    with pytest.raises(KeyboardInterrupt):
        ingest(small_dir, proj, settings(), remap=remap, progress=False)
    monkeypatch.undo()
    rep = ingest(small_dir, proj, settings(), progress=False)
    assert rep.embedded == 0 and rep.rebuilt
    p = Project(proj)
    assert len(p.store.assignments()[0]) == 15 == p.load_array("map").shape[0]


def test_a_runtime_fallback_during_ingest_reaches_the_callers_warn(tmp_path, monkeypatch):
    """The ONNX export fails for real (the model cache is a file, not a folder): ingest falls
    back to torch and says so through its ``warn``, not only to logging."""
    pytest.importorskip("onnxruntime")
    photos = tmp_path / "photos"
    photos.mkdir()
    fx.copy_elpv(photos, 6)
    cache = tmp_path / "not-a-folder"
    cache.write_text("")
    monkeypatch.setenv("LABELER_CACHE", str(cache))
    said: list[str] = []
    s = settings(runtime="onnxruntime", device="cpu", pca_components=4)
    ingest(photos, tmp_path / "proj", s, progress=False, warn=said.append)
    fallback = [w for w in said if "ONNX Runtime unavailable" in w and "embedding with torch" in w]
    assert len(fallback) == 1 and "\n" not in fallback[0]
    meta = Project(tmp_path / "proj").store.get_meta("backbone")
    assert (meta["runtime"], meta["runtime_used"]) == ("onnxruntime", "torch")
