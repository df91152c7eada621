"""The command line: help with examples, exit codes, and the commands on a real project."""

import json

import pytest
from click.testing import CliRunner

from labeler.cli import main


def run(*args, ok=True):
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def test_every_command_has_help_with_an_example():
    for name, cmd in main.commands.items():
        out = run(name, "--help").output
        assert cmd.help and "Example" in out and "labeler" in out, name


def test_ingest_errors(tmp_path):
    res = run("ingest", tmp_path / "missing", "--project", tmp_path / "p", ok=False)
    assert res.exit_code != 0 and "not found" in res.output
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("no image here")
    # default backbone (auto): refused before any weights are looked for or anything is written
    res = run("ingest", tmp_path / "empty", "--project", tmp_path / "p2", ok=False)
    assert res.exit_code == 1 and "no image files in" in res.output and "no project was created" in res.output
    assert len(res.output.strip().splitlines()) == 1 and "weights" not in res.output.lower()
    assert not (tmp_path / "p2").exists()


def test_label_search_undo_export_info(project, tmp_path, elpv_dir):
    p = project.root
    members = project.store.cluster_members(1)
    out = run("label", "--project", p, "--cluster", 1, "poly", "--annotator", "ana").output
    assert f"Labelled {len(members)}" in out
    assert set(project.store.labels()) == set(members)

    res = run("label", "--project", p, "--cluster", 999, "x", ok=False)
    assert res.exit_code != 0 and "unknown cluster" in res.output
    res = run("label", "--project", p, "--image", 10**9, "x", ok=False)
    assert res.exit_code != 0
    assert set(project.store.labels()) == set(members)  # failed commands changed nothing

    q = json.loads(run("search", members[0], "--project", p, "-k", 5, "--json").output)
    assert len(q["neighbours"]) == 5 and q["query_image_id"] == members[0]
    photo = next((elpv_dir / "images").iterdir())
    text = run("search", photo, "--project", p, "-k", 3).output
    assert "of the collection" in text and "of 3 labelled" in text  # recognised, not its own hit

    assert "nothing to undo" in run("undo", "--project", p).output  # undo is per annotator (default: cli)
    assert "undone" in run("undo", "--project", p, "--annotator", "ana").output
    assert project.store.labels() == {}
    run("label", "--project", p, "--image", members[0], "--image", members[1], "cracked")
    out_csv = tmp_path / "l.csv"
    assert "wrote 2 row(s)" in run("export", "--project", p, "-o", out_csv).output
    info = run("info", "--project", p).output
    assert "efficientnet-lite0" in info and "cracked 2" in info


def test_search_bad_query(project, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    res = run("search", bad, "--project", project.root, ok=False)
    assert res.exit_code != 0 and "bad.jpg" in res.output


def test_user_errors_are_one_line_not_a_traceback(tmp_path, project):
    res = run("info", "--project", tmp_path / "nowhere", ok=False)
    assert res.exit_code == 1 and "is not a labeler project" in res.output and "Traceback" not in res.output
    before = project.store.current_clustering()["id"]
    res = run("cluster", "--project", project.root, "--method", "kmeans", "--k", 10**6, ok=False)
    assert res.exit_code == 1 and "k must be between" in res.output
    assert project.store.current_clustering()["id"] == before


def test_cluster_remap_refits_the_maps(project):
    before = project.store.current_clustering()["id"]
    (project.models_dir / "umap_cluster.joblib").unlink()
    res = run("cluster", "--project", project.root, "--remap")
    assert "UMAP 2-D map" in res.output and "cluster(s)" in res.output
    assert project.store.current_clustering()["id"] != before
    assert len(project.store.assignments()[0]) == 80 == len(project.load_array("map"))
    assert (project.models_dir / "umap_cluster.joblib").is_file() and not project.store.get_meta("clustering_stale")


def test_ingest_backbones_through_the_cli(tmp_path, monkeypatch):
    """auto without resnet50 weights: falls back, says so once and records why;
    explicit resnet50 with --weights FILE loads that state_dict; without any: a clear error."""
    import sys

    import torch
    import torchvision

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    import fixtures_images as fx
    from labeler.embedding import backbones
    from labeler.project import Project

    monkeypatch.delenv("LABELER_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network():
        raise OSError("offline")

    monkeypatch.setattr(backbones, "_download", lambda src: no_network())
    photos = tmp_path / "photos"
    photos.mkdir()
    fx.copy_elpv(photos, 6)

    res = run("ingest", photos, "--project", tmp_path / "auto", "--quiet")
    assert res.output.count("resnet50 ImageNet weights not found") == 1
    warning = next(ln for ln in res.output.splitlines() if "weights not found" in ln)
    assert len(warning) <= 120 and "labeler info" in warning  # short; the whole text is in `info`
    meta = Project(tmp_path / "auto").store.get_meta("backbone")
    assert meta["name"] == "efficientnet-lite0" and meta["requested"] == "auto" and "resnet50" in meta["note"]
    assert "asked for auto" in run("info", "--project", tmp_path / "auto").output

    res = run("ingest", photos, "--project", tmp_path / "r50", "--backbone", "resnet50", ok=False)
    assert res.exit_code == 1 and "--weights" in res.output and "LABELER_WEIGHTS" in res.output
    assert not (tmp_path / "r50" / "embeddings.npy").exists()

    weights = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)
    run("ingest", photos, "--project", tmp_path / "r50", "--backbone", "resnet50", "--weights", weights, "--quiet")
    p = Project(tmp_path / "r50")
    assert p.load_array("embeddings").shape == (6, 3584)  # multistage: layer2 + layer3 + layer4
    assert str(weights) in p.store.get_meta("backbone")["weights_source"]


def test_missing_project_and_bad_flag_values_are_one_line(tmp_path, project):
    # ours: a LabelerError -> one line on stderr, exit 1
    res = run("label", "--project", tmp_path / "nowhere", "--cluster", 0, "x", ok=False)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert [ln for ln in res.output.splitlines() if ln.strip()] == [
        f"error: {(tmp_path / 'nowhere').resolve()} is not a labeler project (no labeler.db); "
        "create one with `labeler ingest IMAGE_DIR --project DIR`"]
    # click's usage errors: exit 2, no traceback
    for args in (("search", "1", "--project", project.root, "-k", "0"),
                 ("label", "--project", project.root, "--cluster", "zero", "x"),
                 ("label", "--project", project.root, "x")):
        res = run(*args, ok=False)
        assert res.exit_code == 2 and "Traceback" not in res.output and "Error" in res.output, args
    assert project.store.labels() == {}


def test_label_cluster_names_its_clustering_and_refuses_a_stale_one(project):
    p = project.root
    cid = project.store.current_clustering()["id"]
    res = run("label", "--project", p, "--cluster", 0, "mono", "--annotator", "ana")
    assert f"current clustering {cid}" in res.output
    run("undo", "--project", p, "--annotator", "ana")
    run("cluster", "--project", p, "--method", "kmeans", "--k", 3)  # someone re-clusters
    res = run("label", "--project", p, "--cluster", 0, "--clustering", cid, "mono", ok=False)
    assert res.exit_code == 1 and "clustering changed" in res.output and "Traceback" not in res.output
    assert project.store.labels() == {}
    res = run("label", "--project", p, "--image", 1, "x" * 201, ok=False)
    assert res.exit_code == 1 and "at most 200" in res.output


def test_undo_and_redo_through_the_cli(project):
    p = project.root
    members = project.store.cluster_members(0)
    run("label", "--project", p, "--image", members[0], "mono", "--annotator", "ana")
    assert "undone: label 1 image(s) 'mono'" in run("undo", "--project", p, "--annotator", "ana").output
    assert project.store.labels() == {}
    assert "redone" in run("redo", "--project", p, "--annotator", "ana").output
    assert project.store.labels() == {members[0]: "mono"}
    assert "nothing to redo" in run("redo", "--project", p, "--annotator", "ana").output


def _mirrored(src, dest):
    from PIL import Image, ImageOps

    with Image.open(src) as im:
        ImageOps.mirror(im).save(dest)
    return dest


def test_search_many_files_and_folders_one_json_line_each(project, tmp_path, elpv_dir):
    """Folders expand to their images; ids, new files and collection files mix; a bad file
    gives an error line without stopping the others (exit 1)."""
    from labeler.images import content_hash

    photos = sorted((elpv_dir / "images").iterdir())[:3]
    folder = tmp_path / "new"
    folder.mkdir()
    new = [_mirrored(ph, folder / f"m{i}.png") for i, ph in enumerate(photos)]
    (folder / "notes.txt").write_text("not an image")  # ignored by discovery
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    in_collection = photos[0]
    known_id = project.store.embedded_ids_by_hash([content_hash(in_collection)])
    some_id = int(project.store.row_image_ids()[5])
    res = run("search", folder, in_collection, some_id, bad, "--project", project.root, "-k", 4, "--json",
              "--batch-size", 2, ok=False)
    assert res.exit_code == 1
    lines = [json.loads(ln) for ln in res.stdout.splitlines()]
    assert [d["query"] for d in lines] == [p.name for p in new] + [in_collection.name, f"image {some_id}", "bad.png"]
    for d in lines[:3]:
        assert d["query_image_id"] is None and len(d["neighbours"]) == 4 and len(d["map_xy"]) == 2
        assert d["neighbours"][0]["similarity"] < 0.9999 and d["n_labelled"] == 0
    qid = next(iter(known_id.values()))
    assert lines[3]["query_image_id"] == qid and qid not in [n["image_id"] for n in lines[3]["neighbours"]]
    assert lines[4]["query_image_id"] == some_id
    assert "error" in lines[5] and "bad.png" in lines[5]["error"]


def test_search_vote_counts_only_labelled_neighbours(project):
    from labeler.search import Searcher

    s = Searcher(project)
    image_id = int(project.store.row_image_ids()[0])
    first = s.by_id(image_id, k=8)
    labelled = [n.image_id for n in first.neighbours[:3]]
    run("label", "--project", project.root, *sum([["--image", i] for i in labelled], []), "mono")
    res = Searcher(project).by_id(image_id, k=8)
    assert res.n_labelled == 3 and res.vote == {"mono": 1.0}
    assert res.vote_summary == "mono 100% (3 of 8 labelled)"
    text = run("search", image_id, "--project", project.root, "-k", 8).output
    assert "vote: mono 100% (3 of 8 labelled)" in text


def test_search_exact_flag_gives_the_brute_force_cosine_ranking(project, monkeypatch):
    """--exact answers from the brute-force index even where an HNSW index is in use."""
    import numpy as np

    from labeler import index

    monkeypatch.setattr(index, "HNSW_FROM", 10)  # the 80-photo project now searches through HNSW
    image_id = int(project.store.row_image_ids()[3])
    d = json.loads(run("search", image_id, "--project", project.root, "-k", 6, "--json", "--exact").stdout)
    v = np.asarray(project.load_array("pca"), dtype=np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    sims = v @ v[3]
    sims[3] = -np.inf
    order = np.argsort(-sims)[:6]
    ids = project.store.row_image_ids()
    assert [n["image_id"] for n in d["neighbours"]] == [int(ids[r]) for r in order]
    assert np.allclose([n["similarity"] for n in d["neighbours"]], sims[order], atol=1e-4)


def test_label_the_noise_cluster_as_minus_one_or_noise(project):
    ids, assigned, _ = project.store.assignments()
    noise = sorted(int(i) for i, c in zip(ids, assigned) if c == -1)
    if noise:  # HDBSCAN on these 80 photos: the noise cluster as shown on the map
        out = run("label", "--project", project.root, "--cluster", -1, "odd").output
        assert f"Labelled {len(noise)}" in out and sorted(project.store.labels()) == noise
        run("undo", "--project", project.root)
        assert f"Labelled {len(noise)}" in run("label", "--project", project.root, "--cluster", "noise", "odd").output
    res = run("label", "--project", project.root, "--cluster", "nois", "odd", ok=False)
    assert res.exit_code == 2 and "'noise' / -1" in res.output
    run("cluster", "--project", project.root, "--method", "kmeans", "--k", 3)
    res = run("label", "--project", project.root, "--cluster", "noise", "odd", ok=False)
    assert res.exit_code == 1 and "no noise images" in res.output and "unknown" not in res.output
def test_label_vocabulary_commands(project):
    p = project.root
    a, b = project.store.cluster_members(0)[:2]
    run("label", "--project", p, "--image", a, "mono", "--annotator", "ana")
    res = run("label", "--project", p, "--image", b, "monomono", "--annotator", "bob")
    assert "close to 'mono'" in res.output  # a warning, the label is given
    out = run("labels", "--project", p).output
    assert "mono\t1 image(s)\tby ana 1" in out and "monomono\t1 image(s)\tby bob 1" in out
    assert "merged monomono into 'mono' (1 image(s))" in run(
        "labels", "--project", p, "merge", "monomono", "--into", "mono", "--annotator", "bob").output
    assert project.store.labels() == {a: "mono", b: "mono"}
    run("undo", "--project", p, "--annotator", "bob")
    assert project.store.labels() == {a: "mono", b: "monomono"}
    run("labels", "--project", p, "rename", "monomono", "mono-crystalline", "--annotator", "bob")
    assert project.store.labels()[b] == "mono-crystalline"
    res = run("labels", "--project", p, "rename", "nothing", "x", ok=False)
    assert res.exit_code == 1 and "no image has the label 'nothing'" in res.output


def test_cluster_says_which_settings_it_reuses_and_split_help_names_the_splits(project):
    out = run("cluster", "--project", project.root)
    assert "clustering with method hdbscan" in out.output
    assert "from the project's labeler.toml" in out.output
    out = run("cluster", "--project", project.root, "--method", "kmeans", "--k", 3)
    assert "clustering with method kmeans, k 3" in out.output and "labeler.toml" not in out.output.splitlines()[0]
    assert "train,test (0.8,0.2)" in " ".join(run("export", "--help").output.split())
