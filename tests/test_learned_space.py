"""Clusters and map in a learned space (issue 23, item 3), on the 80 real ELPV photos.

A re-cluster in a stored feature set (``labeler cluster --feature-set``) re-maps and
re-clusters there; labels never change; the clustering and map it replaced stay stored and
``labeler cluster --use ID`` brings them back exactly; search, ingest of new photos and
``labeler check`` keep working. The feature set stored here stands in for a fine-tuned one
(a real press is slow): the ingest embeddings with the truth's *defective* column added as a
strong one-hot part, a space that separates what the labels say, as training aims to.
"""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import fixtures_images as fx
from labeler.check import check_project
from labeler.cli import main
from labeler.config import Settings
from labeler.disk import disk_usage
from labeler.embedding.feature_sets import (drop_feature_set, feature_set_info, list_feature_sets,
                                            new_feature_set_name, save_feature_set, set_active_feature_set)
from labeler.errors import BadInputError, NotFoundError, StaleStateError
from labeler.evaluate.simulate import cluster_majority
from labeler.labels import label_cluster, label_images
from labeler.map_versions import current_map_id, forget_maps, list_clusterings, use_clustering
from labeler.pipeline import ingest, place_in_maps, recluster
from labeler.project import Project
from labeler.search import Searcher

FILES = ("map.npy", "cluster_space.npy", "models/clusterer.joblib", "models/umap_map.joblib",
         "models/umap_cluster.joblib")


def _truth(project: Project, elpv_dir) -> np.ndarray:
    """0/1 per array row: the ELPV *defective* column of the truth file."""
    with open(elpv_dir / "truth.csv", newline="") as f:
        defective = {r["path"]: r["defective"] == "yes" for r in csv.DictReader(f)}
    y = np.zeros(project.store.next_row(), dtype=np.int64)
    for r in project.store.image_table():
        y[r["row"]] = defective[r["path"]]
    return y


def _store_learned_set(project: Project, y: np.ndarray, name: str = "learned") -> str:
    emb = np.array(project.load_array("embeddings"), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return save_feature_set(project, name, np.hstack([emb, 2.0 * np.eye(2, dtype=np.float32)[y]]),
                            {"kind": "test", "feature_type": "embeddings + truth one-hot"})


def _snapshot(project: Project) -> dict:
    ids, cl, st = project.store.assignments()
    out = {"assignments": (ids, cl, st), "summaries": project.store.cluster_summaries()}
    for rel in FILES:
        path = project.root / rel
        out[rel] = path.read_bytes() if path.is_file() else None
    return out


def _labels(project: Project) -> dict:
    """Every label with who gave it, how and in which action."""
    return {r[0]: tuple(r[1:]) for r in project.store.con.execute(
        "SELECT image_id, label, source, annotator, action_id FROM labels")}


def _cost(project: Project, y: np.ndarray) -> int:
    """Cluster-majority actions to 90% accuracy (``labeler evaluate``'s simulated annotator)."""
    ids, cl, _ = project.store.assignments()
    clusters = dict(zip(ids.tolist(), cl.tolist()))
    rows = project.store.row_image_ids()
    return cluster_majority(y, np.array([clusters[int(i)] for i in rows])).actions_to_accuracy(0.9)


def test_recluster_in_a_feature_set_and_back(project, elpv_dir):
    y = _truth(project, elpv_dir)
    ids0, cl0, _ = project.store.assignments()
    label_images(project, [int(i) for i in ids0[:10]], "seen", annotator="ann")
    labels0 = _labels(project)
    before = _snapshot(project)
    pca0 = np.array(project.load_array("pca"))
    cost0, cid0, map0 = _cost(project, y), project.store.current_clustering()["id"], current_map_id(project)

    cid = recluster(project, project.settings(), feature_set=_store_learned_set(project, y), say=lambda m: None)
    cur = project.store.current_clustering()
    assert cur["id"] == cid and cur["params"]["feature_set"] == "learned" and cur["params"]["map"] != map0
    assert _labels(project) == labels0  # labels never change
    ids1, cl1, _ = project.store.assignments()
    np.testing.assert_array_equal(ids1, ids0)
    assert not np.array_equal(cl1, cl0)
    assert not np.array_equal(project.load_array("map"), np.load(project.root / f"maps/{map0}/map.npy"))
    np.testing.assert_array_equal(project.load_array("pca"), pca0)  # search's space stays the ingest one
    assert not (project.models_dir / "umap_map.joblib").exists()  # a new photo has no vector in that set
    # The clusters follow the space: labelling them by majority costs fewer actions.
    assert _cost(project, y) < cost0, (_cost(project, y), cost0)
    assert check_project(project.root) == []

    listed = {c["id"]: c for c in list_clusterings(project)}
    assert listed[cid]["current"] and listed[cid]["feature_set"] == "learned" and listed[cid0]["available"]
    assert listed[cid0]["map"] == map0 and listed[cid0]["feature_set"] == "embeddings"

    back = use_clustering(project, cid0)
    assert back > cid and project.store.current_clustering()["params"]["restored_from"] == cid0
    after = _snapshot(project)
    for key in ("assignments",):
        for a, b in zip(before[key], after[key]):
            np.testing.assert_array_equal(a, b)
    assert [{**s, "clustering_id": 0} for s in after["summaries"]] == \
        [{**s, "clustering_id": 0} for s in before["summaries"]]
    for rel in FILES:  # the map, its space, its UMAP reducers and clustering model, byte for byte
        assert after[rel] == before[rel], rel
    assert current_map_id(project) == map0 and _labels(project) == labels0
    assert check_project(project.root) == []
    # ... and forward again: the learned clustering and its map come back too.
    use_clustering(project, cid)
    np.testing.assert_array_equal(project.store.assignments()[1], cl1)
    assert current_map_id(project) == cur["params"]["map"] and check_project(project.root) == []


def test_search_and_placement_after_a_learned_recluster(project, elpv_dir, tmp_path):
    y = _truth(project, elpv_dir)
    recluster(project, project.settings(), feature_set=_store_learned_set(project, y), say=lambda m: None)
    s = Searcher(project)
    ids = project.store.assignments()[0]
    by_id = s.by_id(int(ids[0]), k=5)
    assert len(by_id.neighbours) == 5 and by_id.query_image_id == int(ids[0])
    assert by_id.map_xy == tuple(float(v) for v in project.load_array("map")[project.store.row_of([ids[0]])[0]])
    photo = fx.make_photo(tmp_path, "chelsea")
    by_file = s.by_file(photo, k=5)  # embedded by the backbone, placed by its ingest-space neighbours
    xy = project.load_array("map")
    assert len(by_file.neighbours) == 5 and np.all(np.isfinite(by_file.map_xy))
    assert np.all((np.array(by_file.map_xy) >= xy.min(0) - 1e-6) & (np.array(by_file.map_xy) <= xy.max(0) + 1e-6))
    with pytest.raises(ValueError, match="place by 'neighbours'"):
        place_in_maps(project, np.arange(70, 80), project.settings(), placement="umap")


def test_new_photos_join_a_learned_map_and_the_old_clustering_is_refused(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    src = sorted(fx.elpv_images_dir().glob("*.png"))
    for f in src[:30]:
        shutil.copy(f, d / f.name)
    s = Settings(backbone="efficientnet-lite0", pca_components=16, min_cluster_size=3, min_samples=2,
                 batch_size=8, num_workers=0)
    ingest(d, tmp_path / "proj", s, progress=False)
    p = Project(tmp_path / "proj")
    cid0 = p.store.current_clustering()["id"]
    rng = np.random.default_rng(0)
    emb = np.asarray(p.load_array("embeddings"))
    save_feature_set(p, "projection", emb @ rng.standard_normal((emb.shape[1], 24)).astype(np.float32))
    recluster(p, s, feature_set="projection", say=lambda m: None)
    ids1, cl1, _ = p.store.assignments()
    xy1 = np.array(p.load_array("map"))
    for f in src[30:33]:
        shutil.copy(f, d / f.name)
    rep = ingest(d, tmp_path / "proj", s, progress=False)
    assert rep.placed == 3 and not rep.remapped  # into the learned map and clusters, nothing moves
    ids2, cl2, _ = p.store.assignments()
    np.testing.assert_array_equal(cl2[np.isin(ids2, ids1)], cl1)
    np.testing.assert_array_equal(p.load_array("map")[:30], xy1)
    assert p.store.current_clustering()["params"]["feature_set"] == "projection"
    with pytest.raises(ValueError, match="covers 30 images, the project now has 33"):
        use_clustering(p, cid0)
    with pytest.raises(ValueError, match="has 30 rows, the project 33"):
        recluster(p, s, feature_set="projection", say=lambda m: None)
    assert check_project(p.root) == []
    p.store.close()


def test_a_recluster_in_the_middle_of_labelling_keeps_every_label(project, elpv_dir):
    y = _truth(project, elpv_dir)
    cid0 = project.store.current_clustering()["id"]
    big = [c["cluster"] for c in project.store.cluster_summaries() if c["cluster"] >= 0][-1]  # the smallest
    label_cluster(project, big, "first", annotator="a", clustering_id=cid0)
    ids = project.store.assignments()[0]
    label_images(project, [int(i) for i in ids[-5:]], "single", annotator="b", relabel=True)
    labels0 = _labels(project)
    cid = recluster(project, project.settings(), feature_set=_store_learned_set(project, y), say=lambda m: None)
    assert _labels(project) == labels0
    # The page that showed the old clustering is refused; the new one is labelled.
    with pytest.raises(StaleStateError, match="clustering changed"):
        label_cluster(project, big, "stale", annotator="a", clustering_id=cid0)
    new = next(c["cluster"] for c in project.store.cluster_summaries()
               if set(project.store.cluster_members(c["cluster"])) - set(labels0))
    label_cluster(project, new, "second", annotator="a", clustering_id=cid)
    labels1 = _labels(project)
    assert all(labels1[i] == v for i, v in labels0.items())  # labelled members are not relabelled
    assert len(labels1) > len(labels0) and "second" in {v[0] for v in labels1.values()}
    use_clustering(project, cid0)
    assert _labels(project) == labels1  # going back changes no label either
    assert check_project(project.root) == []


def _manifest(project: Project) -> set:
    return {r[0] for r in project.store.con.execute("SELECT name FROM manifest")}


def test_deleting_a_feature_set_and_kept_maps_frees_the_disk_and_loses_nothing_else(project, elpv_dir):
    """A learned set and the maps that piled up can be deleted: labels, the current map and
    clustering stay, a clustering on a deleted set's kept map still comes back, one on a
    deleted map is refused with a clear error, and ``labeler check`` finds nothing missing."""
    y = _truth(project, elpv_dir)
    label_images(project, [int(i) for i in project.store.row_image_ids()[:6]], "seen", annotator="ann")
    labels0 = _labels(project)
    cid0, map0 = project.store.current_clustering()["id"], current_map_id(project)
    cid1 = recluster(project, project.settings(), feature_set=_store_learned_set(project, y), say=lambda m: None)
    map1 = current_map_id(project)
    cid2 = recluster(project, project.settings(), remap=True, say=lambda m: None)
    assert sorted(int(d.name) for d in (project.root / "maps").iterdir()) == [map0, map1]

    with pytest.raises(BadInputError, match="ingest feature set"):
        drop_feature_set(project, "embeddings")
    with pytest.raises(NotFoundError, match="no feature set 'nope'"):
        drop_feature_set(project, "nope")
    set_active_feature_set(project, "learned")
    with pytest.raises(BadInputError, match="active feature set"):
        drop_feature_set(project, "learned")
    assert (project.root / "features/learned.npy").is_file()
    set_active_feature_set(project, "embeddings")
    size = (project.root / "features/learned.npy").stat().st_size
    assert disk_usage(project)["feature_sets"] == {"learned": size}
    assert drop_feature_set(project, "learned") == {"name": "learned", "freed_bytes": size}
    assert disk_usage(project)["parts"]["features"] == 0
    assert not (project.root / "features/learned.npy").exists() and "features/learned.npy" not in _manifest(project)
    assert "learned" not in list_feature_sets(project) and feature_set_info(project, "learned")["dropped_at"] > 0
    assert check_project(project.root) == [] and _labels(project) == labels0
    # The learned clustering's map keeps its own arrays: it comes back without the set.
    use_clustering(project, cid1)
    assert current_map_id(project) == map1 and check_project(project.root) == []
    now = use_clustering(project, cid2)

    map2 = current_map_id(project)
    use = disk_usage(project)
    assert set(use["kept_maps"]) == {map0, map1}  # map2's kept folder: links to the top-level files, free
    rep = forget_maps(project, keep=1)  # map1 was kept last (when cid2 came back), map0 before it
    assert rep["forgotten"] == [map0] and rep["kept"] == [map1] and rep["freed_bytes"] == use["kept_maps"][map0]
    assert disk_usage(project)["parts"]["maps"] == use["parts"]["maps"] - rep["freed_bytes"]
    assert not (project.root / f"maps/{map0}").exists()
    assert not any(n.startswith(f"maps/{map0}/") for n in _manifest(project))
    listed = {c["id"]: c for c in list_clusterings(project)}
    assert not listed[cid0]["available"] and listed[cid1]["available"] and listed[now]["current"]
    with pytest.raises(NotFoundError, match=f"map {map0}"):
        use_clustering(project, cid0)
    assert current_map_id(project) == map2 and project.store.current_clustering()["params"]["restored_from"] == cid2
    assert forget_maps(project)["forgotten"] == [map1] and not (project.root / "maps" / str(map1)).exists()
    assert check_project(project.root) == [] and _labels(project) == labels0
    with pytest.raises(BadInputError):
        forget_maps(project, keep=-1)


def test_a_deleted_sets_name_is_not_given_to_a_new_one(project):
    x = np.zeros((project.store.next_row(), 4), np.float32)
    save_feature_set(project, "finetuned-1", x, {"kind": "test"})
    assert new_feature_set_name(project, "finetuned") == "finetuned-2"
    drop_feature_set(project, "finetuned-1")
    assert new_feature_set_name(project, "finetuned") == "finetuned-2"  # a map may still say 'finetuned-1'


def _run(*args, ok=True):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert (r.exit_code == 0) == ok, r.output
    return r


def test_cli_feature_set_use_and_list(project, elpv_dir):
    _store_learned_set(project, _truth(project, elpv_dir))
    cid0 = project.store.current_clustering()["id"]
    r = _run("cluster", "--project", project.root, "--feature-set", "nope", ok=False)
    assert r.exit_code == 1 and "no feature set 'nope'" in r.output and "learned" in r.output
    assert "Traceback" not in r.output and project.store.current_clustering()["id"] == cid0
    r = _run("cluster", "--project", project.root, "--feature-set", "learned")
    assert "vectors of feature set learned" in r.output and f"--use {cid0}` goes back" in r.output
    r = _run("cluster", "--project", project.root, "--list")
    assert "learned" in r.output and "embeddings" in r.output and "*" in r.output
    r = _run("cluster", "--project", project.root, "--use", 9999, ok=False)
    assert r.exit_code == 1 and "no clustering 9999" in r.output and len(r.output.strip().splitlines()) == 1
    r = _run("cluster", "--project", project.root, "--use", cid0, "--method", "kmeans", ok=False)
    assert r.exit_code == 2 and "--use goes with none of --method" in r.output
    r = _run("cluster", "--project", project.root, "--use", cid0, "--keep-maps", 0, ok=False)
    assert r.exit_code == 2 and "--use goes with none of --keep-maps" in r.output
    r = _run("cluster", "--project", project.root, "--use", cid0)
    assert f"clustering {cid0} as it was" in r.output
    assert project.store.current_clustering()["params"]["restored_from"] == cid0
    r = _run("check", "--project", project.root)
    # Freeing the disk: the learned set (not active) and the kept learned map.
    r = _run("features", "--project", project.root)
    assert "learned" in r.output and "MiB" in r.output
    r = _run("info", "--project", project.root)
    disk = r.output.split("disk: ")[1]
    assert "feature sets (features/) (dropping frees learned " in disk and "labeler features --drop NAME" in disk
    assert "kept earlier maps (maps/) (1 kept)" in disk and "labeler cluster --keep-maps N" in disk
    r = _run("features", "--project", project.root, "--drop", "learned")
    assert "deleted feature set learned (" in r.output and "MiB freed" in r.output
    assert "learned" not in r.output.split("freed)")[1]  # the list that follows
    r = _run("cluster", "--project", project.root, "--keep-maps", 0)
    assert "deleted 1 kept map(s)" in r.output and "kept: none" in r.output
    assert [d.name for d in (project.root / "maps").iterdir()] == [str(current_map_id(project))]  # links, no cost
    r = _run("cluster", "--project", project.root, "--list")
    assert "(not kept)" in r.output
    r = _run("info", "--project", project.root)
    assert "feature sets" not in r.output and "kept earlier maps" not in r.output and "thumbnails" in r.output
    _run("check", "--project", project.root)


@pytest.mark.slow
def test_a_press_then_the_offered_recluster_in_its_set(project, elpv_dir, monkeypatch):
    """``labeler finetune`` (1 epoch at 64 px, as the faults test presses) offers the re-cluster
    in one line; running it clusters in the new set and keeps every label."""
    import functools
    import importlib

    ft = importlib.import_module("labeler.embedding.finetune")
    monkeypatch.setattr(ft, "finetune_project", functools.partial(ft.finetune_project, input_size=64))
    y = _truth(project, elpv_dir)
    rows = project.store.row_image_ids()
    for cls, name in ((0, "no"), (1, "yes")):
        label_images(project, [int(i) for i in rows[y == cls][:8]], name, annotator="ann")
    labels0 = _labels(project)
    r = _run("finetune", "--project", project.root, "--epochs", 1, "--holdout", 0, "--loss", "ce", "--device", "cpu",
             "--quiet")
    hint = [ln for ln in r.output.splitlines() if "--feature-set" in ln]
    assert len(hint) == 1 and "--feature-set finetuned-1" in hint[0] and "--use ID" in hint[0]
    _run("cluster", "--project", project.root, "--feature-set", "finetuned-1")
    assert project.store.current_clustering()["params"]["feature_set"] == "finetuned-1"
    assert _labels(project) == labels0 and check_project(project.root) == []
    # Deleting the pressed set takes its network too; its clustering stays current and whole.
    r = _run("features", "--project", project.root, "--drop", "finetuned-1", ok=False)
    assert "active feature set" in r.output and (project.models_dir / "finetuned-1.pt").is_file()
    _run("features", "--project", project.root, "--use", "embeddings", "--drop", "finetuned-1")
    assert not (project.models_dir / "finetuned-1.pt").exists() and not (project.root / "features/finetuned-1.npy").exists()
    assert project.store.current_clustering()["params"]["feature_set"] == "finetuned-1"
    assert _labels(project) == labels0 and check_project(project.root) == []


def test_a_running_dashboard_redraws_the_map_after_a_learned_recluster_and_back(project, elpv_dir):
    """The app's map points follow the project's map, not only its row count: after a
    re-map in a feature set (same images, new positions) and after going back, the
    app reloads the positions and its map token changes, so the page redraws the map whole."""
    from labeler.app.state import AppContext

    ctx = AppContext(project)
    before_xy, before_token = ctx.xy.copy(), ctx.map_token
    first = int(project.store.current_clustering()["id"])
    assert ctx.refresh() is False
    recluster(project, project.settings(), feature_set=_store_learned_set(project, _truth(project, elpv_dir)))
    ctx.assignment()  # what a callback does first after the clustering changed
    assert ctx.map_token != before_token and ctx.n_points == len(before_xy)
    assert not np.allclose(ctx.xy, before_xy)
    use_clustering(project, first)
    assert ctx.refresh() is True and np.array_equal(ctx.xy, before_xy)


def test_a_damaged_kept_map_names_what_is_lost_not_a_remap(project, elpv_dir):
    """A kept earlier map cannot be remade: check names it and says the current map is
    unaffected, instead of proposing `cluster --remap` (which would replace the current map)."""
    recluster(project, project.settings(), feature_set=_store_learned_set(project, _truth(project, elpv_dir)))
    kept = sorted((project.root / "maps").glob("*/map.npy"))
    assert kept
    raw = bytearray(kept[0].read_bytes())
    raw[-8] ^= 0xFF
    kept[0].write_bytes(bytes(raw))
    found = [str(f) for f in check_project(project.root)]
    assert len(found) == 1 and "kept earlier map" in found[0] and "--remap" not in found[0]


def test_evaluate_reuses_the_stored_clustering_space_only_while_it_is_the_pcas(project, elpv_dir, monkeypatch):
    """`labeler evaluate`'s PCA row clusters the stored cluster_space.npy (what ingest
    clustered); after a re-map in a learned set that file holds the learned space, so the PCA
    row fits its own UMAP instead of scoring the learned clusters under the PCA's name."""
    from labeler.evaluate import run

    fits = []
    real = run.fit_umap
    monkeypatch.setattr(run, "fit_umap", lambda *a, **kw: fits.append(1) or real(*a, **kw))
    rows = np.arange(project.store.next_row())
    pca = np.asarray(project.load_array("pca"))
    stored = np.asarray(project.load_array("cluster_space"))
    run.run_clusterings(project, rows, {"pca": pca}, 2, ks=[2], log=lambda m: None)
    assert fits == []  # the ingest map: its stored space is the PCA's
    recluster(project, project.settings(), feature_set=_store_learned_set(project, _truth(project, elpv_dir)),
              say=lambda m: None)
    assert not np.array_equal(np.asarray(project.load_array("cluster_space")), stored)
    run.run_clusterings(project, rows, {"pca": pca}, 2, ks=[2], log=lambda m: None)
    assert fits == [1]
