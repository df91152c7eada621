"""Feature types that keep local evidence, feature sets, and fine-tuning on labels (real lite0 weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labeler.errors import BadInputError, NotFoundError


@pytest.fixture(scope="module")
def lite0():
    from labeler.embedding import load_backbone

    return load_backbone("efficientnet-lite0", device="cpu")


def test_gem_pooling_on_a_tiny_tensor():
    from labeler.embedding.local_features import gem

    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[-1.0, 0.0], [0.0, 8.0]]]])  # (2, 1, 2, 2)
    expected0 = ((1 + 8 + 27 + 64) / 4) ** (1 / 3)
    expected1 = ((3 * 1e-18 + 512) / 4) ** (1 / 3)  # negatives and zeros clamp to eps = 1e-6
    out = gem(x)
    assert out.shape == (2, 1) and out.dtype == torch.float32
    assert out[0, 0].item() == pytest.approx(expected0, rel=1e-5)
    assert out[1, 0].item() == pytest.approx(expected1, rel=1e-5)
    # p = 1 is average pooling; large p approaches max pooling
    assert gem(x[:1], p=1.0)[0, 0].item() == pytest.approx(2.5, rel=1e-6)
    assert gem(x[:1], p=60.0)[0, 0].item() == pytest.approx(4.0, rel=0.03)


@pytest.mark.parametrize("feature_type,dim,side", [("global", 1280, 224), ("multistage", 1432, 224),
                                                   ("multiscale", 2560, 448)])
def test_feature_types_shapes_and_blocks(lite0, feature_type, dim, side):
    from labeler.embedding.local_features import feature_backbone

    bb = feature_backbone(lite0, feature_type)
    assert bb.dim == dim and bb.input_size == side
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, side, side, generator=g) * 2 - 1
    with torch.inference_mode():
        f, logits = bb.model(x)
    assert f.shape == (2, dim) and f.dtype == torch.float32 and logits.shape == (2, 1000)
    assert torch.isfinite(f).all()
    if feature_type != "global":  # each block is L2-normalised
        cuts = {"multistage": [0, 40, 152, 1432], "multiscale": [0, 1280, 2560]}[feature_type]
        for a, b in zip(cuts, cuts[1:]):
            assert torch.allclose(f[:, a:b].norm(dim=1), torch.ones(2), atol=1e-4)


def test_multistage_keeps_the_global_logits(lite0):
    """The wrapper reuses the network: its ImageNet logits equal the global model's."""
    from labeler.embedding.local_features import feature_backbone

    x = torch.rand(1, 3, 224, 224) * 2 - 1
    with torch.inference_mode():
        f_global, l_global = lite0.model(x)
        f_ms, l_ms = feature_backbone(lite0, "multistage").model(x)
    assert torch.allclose(l_global, l_ms, atol=1e-4)
    tail = f_global / f_global.norm(dim=1, keepdim=True)
    assert torch.allclose(f_ms[:, 152:], tail, atol=1e-5)


def test_unknown_feature_type_is_a_clear_error(lite0):
    from labeler.embedding.local_features import feature_backbone

    with pytest.raises(BadInputError, match="unknown feature type"):
        feature_backbone(lite0, "patches")


def test_ingest_records_the_default_feature_type(built_project):
    from labeler.project import Project

    p = Project(built_project)
    try:
        assert p.store.get_meta("backbone")["features"] == "multistage"  # the default for a new project
        assert p.load_array("embeddings").shape[1] == 1432
    finally:
        p.store.close()


def test_ingest_multistage_runs_on_its_own_onnx_export(elpv_dir, tmp_path):
    """multistage on the CPU runs its own ONNX export (runtime auto), nothing said; the stored
    1432-d vectors are the multistage network's (torch agrees to cosine > 0.999)."""
    import shutil

    from labeler.config import Settings
    from labeler.embedding import load_backbone
    from labeler.embedding.local_features import feature_backbone
    from labeler.pipeline import ingest
    from labeler.project import Project

    photos = tmp_path / "photos"
    photos.mkdir()
    for f in sorted((elpv_dir / "images").iterdir())[:6]:
        shutil.copy(f, photos / f.name)
    s = Settings(backbone="efficientnet-lite0", features="multistage", runtime="auto", device="cpu",
                 pca_components=4, min_cluster_size=2, min_samples=1, batch_size=8, num_workers=0)
    warnings: list[str] = []
    ingest(photos, tmp_path / "ms", s, progress=False, warn=warnings.append)
    p = Project(tmp_path / "ms")
    try:
        meta = p.store.get_meta("backbone")
        assert (meta["features"], meta["runtime"], meta["runtime_used"]) == ("multistage", "onnxruntime",
                                                                              "onnxruntime")
        emb = p.load_array("embeddings")
        assert emb.shape == (6, 1432)
        assert not any("torch" in w for w in warnings)
        # the stored vectors are the multistage network's (not the global export's)
        bb = feature_backbone(load_backbone("efficientnet-lite0", device="cpu"), "multistage")
        q = p.image_path(p.store.image_table()[0]["path"])
        from labeler.embedding.extract import embed_files

        [b] = [b for b in embed_files([(0, q)], bb, batch_size=1, num_workers=0, progress=False, runtime="torch")
               if len(b.ids)]
        row = int(p.store.image_table()[0]["row"])
        cos = float(b.features[0] @ emb[row] / np.linalg.norm(b.features[0]) / np.linalg.norm(emb[row]))
        assert cos > 0.999
    finally:
        p.store.close()


def test_feature_sets_compute_store_activate(project):
    from labeler.embedding import feature_sets as fs
    from labeler.embedding.local_features import compute_feature_set

    assert fs.active_feature_set(project) == "embeddings"
    rep = compute_feature_set(project, "global", device="cpu", num_workers=0, progress=False)
    assert rep["name"] == "global" and rep["dim"] == 1280 and not rep["failures"]
    a = fs.load_feature_set(project, "global")
    assert a.dtype == np.float32 and a.shape == (project.store.next_row(), 1280)
    assert np.all(np.linalg.norm(a, axis=1) > 0)
    sets = fs.list_feature_sets(project)
    assert list(sets) == ["embeddings", "global"] and sets["embeddings"]["active"]
    fs.set_active_feature_set(project, "global")
    assert fs.active_features(project).shape[1] == 1280
    with pytest.raises(NotFoundError):
        fs.set_active_feature_set(project, "nope")
    assert fs.active_feature_set(project) == "global"  # a failed switch changes nothing
    with pytest.raises(BadInputError):
        fs.save_feature_set(project, "../evil", a)
    with pytest.raises(BadInputError):
        fs.save_feature_set(project, "short", a[:3])


def test_finetune_one_epoch_saves_a_new_set_and_keeps_the_old(project):
    from labeler.embedding import feature_sets as fs
    from labeler.embedding.finetune import finetune_project
    from labeler.labels import label_images

    truth = {}
    import csv

    root = project.image_root
    with open(root.parent / "truth.csv") as f:
        for r in csv.DictReader(f):
            truth[r["path"]] = r["cell_type"]
    by_class: dict[str, list[int]] = {}
    for r in project.store.image_table():
        by_class.setdefault(truth[r["path"].split("/")[-1]], []).append(int(r["id"]))
    assert len(by_class) == 2
    for lab, ids in by_class.items():
        label_images(project, ids[:20], lab)
    before = np.array(fs.load_feature_set(project, "embeddings"))
    rep = finetune_project(project, epochs=1, device="cpu", holdout=0.2, progress=False)
    assert rep.name == "finetuned-1" and rep.previous == "embeddings"
    assert rep.n_train + rep.n_heldout == 40 and rep.n_heldout >= 4
    assert 0.0 <= rep.heldout_accuracy <= 1.0 and rep.heldout_frozen_accuracy is not None
    assert fs.active_feature_set(project) == "finetuned-1"
    new = fs.active_features(project)
    assert new.shape == (project.store.next_row(), 1280) and new.dtype == np.float32
    assert np.all(np.isfinite(new)) and np.all(np.linalg.norm(new, axis=1) > 0)
    assert np.array_equal(np.asarray(fs.load_feature_set(project, "embeddings")), before)  # old set kept
    assert (project.models_dir / "finetuned-1.pt").is_file()
    assert fs.feature_set_info(project, "finetuned-1")["loss"] == "ce+supcon"  # the default loss
    fs.set_active_feature_set(project, "embeddings")  # going back
    assert fs.active_features(project).shape[1] == before.shape[1] == 1432  # the multistage embeddings again


def test_finetune_refuses_too_few_labels(project):
    from labeler.embedding.finetune import finetune_project

    with pytest.raises(BadInputError, match="at least 10 images labelled by a person"):
        finetune_project(project, epochs=1, device="cpu")


def test_cli_finetune_with_cross_entropy_alone(project):
    """`labeler finetune --loss ce`: trains on the hand labels, prints what it did, stores
    the set without activating it (--no-use)."""
    from click.testing import CliRunner

    from labeler.cli import main
    from labeler.embedding import feature_sets as fs
    from labeler.labels import label_images

    ids = [int(r["id"]) for r in project.store.image_table()]
    label_images(project, ids[:6], "a")
    label_images(project, ids[6:12], "b")
    project.store.close()
    r = CliRunner().invoke(main, ["finetune", "--project", str(project.root), "--loss", "ce", "--epochs", "1",
                                  "--device", "cpu", "--holdout", "0", "--no-use", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "trained on 12 labelled images (a, b), 1 epochs on cpu" in r.output
    assert fs.active_feature_set(project) == "embeddings"
    assert fs.feature_set_info(project, "finetuned-1")["loss"] == "ce"
    r = CliRunner().invoke(main, ["finetune", "--project", str(project.root), "--loss", "triplet"])
    assert r.exit_code == 2 and "'triplet' is not one of 'ce+supcon', 'ce'" in r.output


def test_finetune_does_not_learn_from_accepted_suggestions(project):
    """8 labels by hand and 30 accepted suggestions: too few to train on, because the
    fine-tune (like the suggestion model) learns only from what a person decided."""
    from labeler.embedding.finetune import finetune_project
    from labeler.labels import accept_suggestions, label_images

    ids = [int(r["id"]) for r in project.store.image_table()]
    label_images(project, ids[:4], "a")
    label_images(project, ids[4:8], "b")
    rest = ids[8:38]
    accept_suggestions(project, rest, ["a", "b"] * 15, [0.99] * 30, 0.95)
    assert len(project.store.labels()) == 38 and len(project.store.decided_labels()) == 8
    with pytest.raises(BadInputError, match="has 8 in 2 .and 30 accepted suggestions"):
        finetune_project(project, epochs=1, device="cpu")
    assert len(project.store.labels()) == 38  # nothing changed


def test_patchcore_heatmap_shape_and_png(project, lite0):
    from PIL import Image

    from labeler.embedding.patchcore import anomaly_map, fit_patchcore, heatmap_png, patch_features
    from labeler.labels import label_images

    x = torch.rand(1, 3, 224, 224) * 2 - 1
    with torch.inference_mode():
        p, grid = patch_features(lite0.model, x)
    assert grid == (28, 28) and p.shape == (1, 784, 152) and p.dtype == torch.float32

    ids = [int(r["id"]) for r in project.store.image_table()]
    with pytest.raises(BadInputError, match="no image is labelled"):
        fit_patchcore(project, "ok")
    label_images(project, ids[1:6], "ok")
    info = fit_patchcore(project, "ok")
    assert info["images"] == 5 and info["patches"] == 5 * 196 and info["dim"] == 64  # stored 14x14 PCA-64 maps
    heat, score = anomaly_map(project, ids[0])
    row = project.store.get_image(ids[0])
    assert heat.dtype == np.float32 and heat.shape == (row["height"], row["width"])
    assert np.isfinite(heat).all() and heat.min() >= 0 and score > 0
    png = heatmap_png(project, ids[0])
    import io

    assert Image.open(io.BytesIO(png)).size == (row["width"], row["height"])


def test_cli_features_lists_and_heatmap_without_bank_is_one_line(project, tmp_path):
    from click.testing import CliRunner

    from labeler.cli import main

    r = CliRunner().invoke(main, ["features", "--project", str(project.root)])
    assert r.exit_code == 0 and "* embeddings" in r.output and "1432" in r.output and "multistage" in r.output
    r = CliRunner().invoke(main, ["features", "--project", str(project.root), "--use", "nope"])
    assert r.exit_code == 1 and "no feature set 'nope'" in r.output
    r = CliRunner().invoke(main, ["heatmap", "1", "--project", str(project.root), "-o", str(tmp_path / "h.png")])
    assert r.exit_code == 1 and "no PatchCore memory bank" in r.output and not (tmp_path / "h.png").exists()


def test_projects_from_before_feature_types_keep_global(tmp_path):
    """'auto' keeps an old project's global vectors; asking for another type needs --force."""
    from labeler.config import Settings
    from labeler.embedding.stage import backbone_change, wanted_features
    from labeler.project import Project

    p = Project(tmp_path / "old", create=True)
    try:
        assert wanted_features(None, Settings()) == "multistage"  # a new project gets the default
        p.store.set_meta(backbone={"name": "efficientnet-lite0", "view": "whole", "precision": "fp32"})
        old = p.store.get_meta("backbone")
        assert wanted_features(old, Settings()) == "global"
        assert backbone_change(p, Settings(backbone="auto")) is None
        msg = backbone_change(p, Settings(backbone="auto", features="multistage"))
        assert "global features" in msg and "multistage features" in msg and "--force" in msg
    finally:
        p.store.close()
