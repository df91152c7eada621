"""labeler.embedding.finetune options: which stages are trained, class weights, refusals."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from labeler.errors import BadInputError


def _label_cell_types(project, per_class: int = 20) -> None:
    from labeler.labels import label_images

    with open(project.image_root.parent / "truth.csv") as f:
        truth = {r["path"]: r["cell_type"] for r in csv.DictReader(f)}
    by_class: dict[str, list[int]] = {}
    for r in project.store.image_table():
        by_class.setdefault(truth[r["path"].split("/")[-1]], []).append(int(r["id"]))
    for lab, ids in by_class.items():
        label_images(project, ids[:per_class], lab)


@pytest.mark.parametrize("kw", [{"train_from": "s4"}, {"class_weight": "inverse"}, {"epochs": 0},
                                {"head": "arcface"}, {"input_size": 32},
                                {"loss": "triplet"}])
def test_bad_options_are_refused_and_change_nothing(project, kw):
    from labeler.embedding import feature_sets as fs
    from labeler.embedding.finetune import finetune_project

    _label_cell_types(project)
    with pytest.raises(BadInputError):
        finetune_project(project, device="cpu", progress=False, **kw)
    assert list(fs.list_feature_sets(project)) == ["embeddings"] and fs.active_feature_set(project) == "embeddings"


def test_training_from_the_stride_8_stages_with_balanced_weights(project):
    """train_from='s8' also trains the stride-16 stages; the record says what was trained
    (and that the vectors were averaged over the symmetries)."""
    from labeler.embedding import feature_sets as fs
    from labeler.embedding.finetune import finetune_project

    _label_cell_types(project, per_class=6)
    rep = finetune_project(project, epochs=1, device="cpu", holdout=0.0, train_from="s8", class_weight="balanced",
                           tta=True, progress=False)
    assert rep.n_train == 12 and rep.n_heldout == 0 and rep.heldout_accuracy is None
    info = fs.list_feature_sets(project)[rep.name]
    assert (info["train_from"], info["class_weight"], info["tta"], info["dim"]) == ("s8", "balanced", True, 1280)
    assert sorted(info["train_image_ids"]) == sorted(project.store.labels())  # holdout 0: every label seen
    x = np.asarray(fs.load_feature_set(project, rep.name))
    assert np.isfinite(x).all() and np.all(np.linalg.norm(x, axis=1) > 0)
    import torch

    saved = torch.load(project.models_dir / f"{rep.name}.pt", weights_only=False)
    assert saved["prefix_end"] < 10  # Lite0's last stride-8 block is block 4 (s16 would be 10)


def test_each_cut_point_freezes_the_blocks_before_it():
    """train_start: the last frozen block of Lite0 (16 blocks) for each TRAIN_FROM value."""
    from labeler.embedding.backbones import load_backbone
    from labeler.embedding.finetune import TRAIN_FROM, train_start

    net = load_backbone("efficientnet-lite0", device="cpu").model.net
    assert {t: train_start(net, t) for t in TRAIN_FROM} == {"s8": 4, "s16": 10, "last": 14, "head": 15}
    with pytest.raises(BadInputError, match="train_from"):
        train_start(net, "s32")


@pytest.mark.parametrize("train_from, n_blocks", [("last", 1), ("head", 0)])
def test_a_press_that_trains_only_the_last_block_or_the_head(project, train_from, n_blocks):
    """A later cut trains fewer blocks: the saved tail holds that many blocks, the frozen
    ones keep the ImageNet weights, and the new vectors are finite, one per image."""
    import torch

    from labeler.embedding import feature_sets as fs
    from labeler.embedding.backbones import load_backbone
    from labeler.embedding.finetune import finetune_project

    _label_cell_types(project, per_class=6)
    rep = finetune_project(project, epochs=2, device="cpu", holdout=0.0, train_from=train_from, progress=False)
    info = fs.list_feature_sets(project)[rep.name]
    assert info["train_from"] == train_from and fs.active_feature_set(project) == rep.name
    x = np.asarray(fs.load_feature_set(project, rep.name))
    assert x.shape == (len(project.store.image_table()), 1280) and np.isfinite(x).all()
    saved = torch.load(project.models_dir / f"{rep.name}.pt", weights_only=False)
    trained = {k.split(".")[1] for k in saved["tail"] if k.startswith("blocks.")}
    assert len(trained) == n_blocks and saved["prefix_end"] == 15 - n_blocks
    net = load_backbone("efficientnet-lite0", device="cpu").model.net
    head_w = saved["tail"]["conv_head.weight"]
    assert head_w.shape == net._conv_head.weight.shape and not torch.equal(head_w, net._conv_head.weight)


def test_cosine_classifier_depends_on_angles_only():
    """Logits = scale * cosine: bounded by the scale, unchanged when a vector is rescaled."""
    import torch

    from labeler.embedding.finetune import CosineClassifier

    torch.manual_seed(0)
    head = CosineClassifier(16, 3, scale=20.0)
    x = torch.rand(8, 16)  # non-negative, like the pooled activations it sees
    with torch.no_grad():
        z = head(x)
        assert z.shape == (8, 3) and float(z.abs().max()) <= 20.0 + 1e-4
        assert torch.allclose(head(5.0 * x), z, atol=1e-4)
        cos = torch.nn.functional.cosine_similarity(x[:1], head.weight[:1])[0]
        assert torch.allclose(z[0, 0], 20.0 * cos, atol=1e-4)


def test_cosine_head_at_another_size_is_recorded_and_its_export_leaves_the_cache(project, monkeypatch, tmp_path):
    """head='cosine' trains a CosineClassifier (here with the supervised contrastive term
    too, loss='ce+supcon'); input_size=100 (not a multiple of 16) trains
    and embeds at 100 px, the prefix's export cached under that size; the fine-tuned
    network's ONNX export (new weights every run, used once to re-embed without the
    prefix cache) is removed from the cache, the frozen prefix's export (the backbone's
    weights) is kept."""
    import torch

    from labeler.embedding import feature_sets as fs
    from labeler.embedding import runtime
    from labeler.embedding.finetune import finetune_project

    monkeypatch.setenv("LABELER_CACHE", str(tmp_path / "cache"))
    exported = []
    real = runtime.onnx_model
    monkeypatch.setattr(runtime, "onnx_model", lambda bb: exported.append(real(bb)) or exported[-1])
    _label_cell_types(project, per_class=6)
    rep = finetune_project(project, epochs=1, device="cpu", holdout=0.0, head="cosine", input_size=100,
                           loss="ce+supcon", progress=False, prefix_cache=False)  # the path that exports it
    info = fs.list_feature_sets(project)[rep.name]
    assert (info["head"], info["input_size"], info["dim"], info["loss"]) == ("cosine", 100, 1280, "ce+supcon")
    x = np.asarray(fs.load_feature_set(project, rep.name))
    assert np.isfinite(x).all() and np.all(np.linalg.norm(x, axis=1) > 0)
    saved = torch.load(project.models_dir / f"{rep.name}.pt", weights_only=False)
    assert saved["head"] == "cosine" and saved["tail"]["fc.weight"].shape == (2, 1280)
    assert "fc.bias" not in saved["tail"]
    tuned = [p for p in exported if "-finetuned-" in p.name]
    prefix = [p for p in exported if "-prefix10-100px-" in p.name]
    if not runtime.ort_available():
        pytest.skip("onnxruntime not installed: nothing is exported")
    assert tuned and prefix, exported
    assert not any(p.exists() for p in tuned) and all(p.exists() for p in prefix)


def test_symmetry_averaged_vectors_do_not_depend_on_orientation():
    """symmetries=8: an image, rotated or mirrored, gets the same vector; one view does not."""
    import torch

    from labeler.embedding.backbones import load_backbone
    from labeler.embedding.finetuned_net import FinetunedFeatures, Tail
    from labeler.embedding.prefix_cache import d4, prefix_end

    bb = load_backbone("efficientnet-lite0", device="cpu")
    end = prefix_end(bb.model.net, 16)
    tail = Tail(bb.model.net, end, 3).eval()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    for k in range(8):  # d4 is torch.rot90 (+ mirror), written to export to ONNX
        ref = torch.rot90(x, k % 4, dims=(-2, -1))
        assert torch.equal(d4(x, k).contiguous(), ref.flip(-1) if k >= 4 else ref)
    with torch.no_grad():
        avg, one = FinetunedFeatures(bb.model, tail, end, symmetries=8).eval(), FinetunedFeatures(bb.model, tail, end)
        e = avg(x)[0]
        assert e.shape == (2, 1280)
        for k in (1, 5):
            assert torch.allclose(avg(d4(x, k))[0], e, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(one(d4(x, 1))[0], one(x)[0], rtol=1e-4, atol=1e-5)


def test_supcon_loss_rewards_same_class_embeddings_close_together():
    """Khosla et al. 2020's loss on a hand-made batch: each class's vectors identical and the
    classes orthogonal gives the known minimum; the same vectors with the labels shuffled
    give more; gradients are finite; a row without positives is left out."""
    import math

    import torch

    from labeler.embedding.finetune import supcon_loss

    e = torch.eye(4)[:2]  # two orthogonal directions
    z = torch.stack([e[0], e[0], e[1], e[1]]) * 3.0  # scale does not matter (normalised)
    y = torch.tensor([0, 0, 1, 1])
    t = 0.1
    # anchor: 1 positive at cos 1, 2 negatives at cos 0 -> -log(e^10 / (e^10 + 2))
    best = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    assert abs(float(supcon_loss(z, y, t)) - best) < 1e-5
    assert float(supcon_loss(z, torch.tensor([0, 1, 0, 1]), t)) > best + 1.0
    zg = torch.randn(6, 8, requires_grad=True)
    supcon_loss(zg, torch.tensor([0, 0, 1, 1, 2, 3])).backward()
    assert torch.isfinite(zg.grad).all() and float(zg.grad[4:].abs().sum()) > 0  # negatives still get a gradient
    assert float(supcon_loss(z[:2], torch.tensor([0, 1]))) == 0.0  # no anchor has a positive


@pytest.mark.parametrize("bad", [{"temperature": 0.0}, {"y": [0, 1]}])
def test_supcon_loss_refuses_bad_input(bad):
    import torch

    from labeler.embedding.finetune import supcon_loss

    z, y = torch.randn(4, 3), torch.tensor(bad.get("y", [0, 0, 1, 1]))
    with pytest.raises(BadInputError):
        supcon_loss(z, y, bad.get("temperature", 0.1))



def _count_prefix_runs(monkeypatch) -> list[int]:
    """Batch sizes of every run of the frozen prefix (each engine built for it, ONNX or torch)."""
    from labeler.embedding import extract, runtime

    seen: list[int] = []
    real = runtime.make_engine

    def counted(bb, **kw):
        engine = real(bb, **kw)
        if not bb.features.startswith("prefix"):
            return engine

        def run(x):
            seen.append(int(x.shape[0]))
            return engine(x)

        run.device, run.runtime = engine.device, getattr(engine, "runtime", None)
        return run

    monkeypatch.setattr(runtime, "make_engine", counted)
    monkeypatch.setattr(extract, "make_engine", counted)
    return seen


def test_prefix_cache_is_filled_once_and_reused(project, monkeypatch):
    """The first press computes the prefix maps of every image (and of the 7 other
    symmetries of the labelled ones) into cache/; a second press on the same labels runs
    no prefix at all and gives the same vectors; one new label computes only its own 7
    symmetries; images ingested since the cache was made only their own maps; another
    input size has a cache of its own; a file removed since is a failure, not a vector."""
    from labeler.embedding import feature_sets as fs
    from labeler.embedding.finetune import finetune_project
    from labeler.labels import label_images

    seen = _count_prefix_runs(monkeypatch)
    _label_cell_types(project, per_class=6)
    table = project.store.image_table()
    n = len(table)
    rep = finetune_project(project, epochs=1, device="cpu", holdout=0.0, progress=False)
    assert rep.prefix_images == n + 12 and sum(seen) == n + 12 * 7  # symmetry 0 comes from the cache
    cache = project.root / "cache"
    assert len(list(cache.glob("prefix-*.npy"))) == 4  # maps, symmetries, and the signatures of each
    maps = np.load(next(p for p in cache.glob("prefix-*.npy") if not p.name.endswith(("-d4.npy", ".sig.npy"))),
                   mmap_mode="r")
    assert maps.dtype == np.float16 and maps.shape == (project.store.next_row(), 112, 14, 14)
    seen.clear()
    rep2 = finetune_project(project, epochs=1, device="cpu", holdout=0.0, progress=False)
    assert rep2.prefix_images == 0 and seen == [] and rep2.failures == []
    x1, x2 = (np.asarray(fs.load_feature_set(project, r.name)) for r in (rep, rep2))
    assert np.allclose(x1, x2, atol=1e-4)  # same labels, same seed, same maps
    labelled = project.store.labels()
    label_images(project, [int(r["id"]) for r in table if int(r["id"]) not in labelled][:1], "mono")
    rep3 = finetune_project(project, epochs=1, device="cpu", holdout=0.0, progress=False)
    assert rep3.prefix_images == 1 and sum(seen) == 7

    import torch

    from labeler.embedding.backbones import load_backbone
    from labeler.embedding.finetune import _at_size
    from labeler.embedding.prefix_cache import open_prefix_cache, prefix_end

    bb = load_backbone("efficientnet-lite0", device="cpu")
    end = prefix_end(bb.model.net, 16)
    c = open_prefix_cache(project, bb, bb.model.net, end, "whole", torch.device("cpu"))
    sig_path = c.path.with_suffix(".sig.npy")
    full, sig = np.array(np.load(c.path)), np.load(sig_path)
    np.save(c.path, full[:-5])  # as if made before the last 5 images were ingested
    np.save(sig_path, sig[:-5])
    seen.clear()
    assert c.fill() == [] and sum(seen) == 5 and c.valid.all()
    assert np.allclose(np.asarray(c.maps, np.float32), full.astype(np.float32), atol=1e-2)
    other = open_prefix_cache(project, _at_size(bb, 100), bb.model.net, end, "whole", torch.device("cpu"))
    assert other.key != c.key and other.shape[0] == 112 and other.shape[1] < 14  # another size, another file
    real = project.image_path
    monkeypatch.setattr(project, "image_path", lambda p: real(p).with_name("removed.png") if p == table[0]["path"]
                        else real(p))  # a file removed since it was cached: a failure and a zero row, as without
    assert c.fill() == [(int(table[0]["id"]), "file not found")] and not c.valid[int(table[0]["row"])]


def test_vectors_from_the_cache_equal_the_full_network(project):
    """Re-embedding = the trained tail on the cached float16 prefix maps: the same vectors
    as the whole fine-tuned network run on each image (cosine >= 0.999)."""
    import dataclasses

    import torch

    from labeler.embedding import feature_sets as fs
    from labeler.embedding.backbones import load_backbone
    from labeler.embedding.finetune import finetune_project
    from labeler.embedding.finetuned_net import FinetunedFeatures, Tail
    from labeler.embedding.local_features import embed_project

    _label_cell_types(project, per_class=6)
    rep = finetune_project(project, epochs=1, device="cpu", holdout=0.0, progress=False)
    saved = torch.load(project.models_dir / f"{rep.name}.pt", weights_only=False)
    bb = load_backbone("efficientnet-lite0", device="cpu")
    tail = Tail(bb.model.net, saved["prefix_end"], len(saved["classes"]))
    tail.load_state_dict(saved["tail"])
    full = FinetunedFeatures(bb.model, tail.eval(), saved["prefix_end"]).eval()
    ref, _ = embed_project(project, dataclasses.replace(bb, model=full, dim=1280, features="ft-test"),
                           device="cpu", progress=False, runtime="torch", num_workers=0)
    x = np.asarray(fs.load_feature_set(project, rep.name))
    cos = np.sum(x * ref, axis=1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.999, cos.min()


def test_a_cache_over_its_disk_budget_is_refused_in_one_line(project, monkeypatch):
    """The size is estimated before anything is computed: too small a budget (argument or
    $LABELER_PREFIX_CACHE_GB) stops the press with one line and writes nothing;
    prefix_cache=False presses without the cache."""
    from labeler.embedding import feature_sets as fs
    from labeler.embedding.finetune import finetune_project

    _label_cell_types(project, per_class=6)
    with pytest.raises(BadInputError) as e:
        finetune_project(project, epochs=1, device="cpu", holdout=0.0, progress=False, cache_budget_gb=0.001)
    msg = str(e.value)
    assert "\n" not in msg and "prefix cache needs" in msg and "budget is 0.00 GiB" in msg and "112x14x14" in msg
    assert not list(project.root.glob("cache/prefix-*")) and list(fs.list_feature_sets(project)) == ["embeddings"]
    monkeypatch.setenv("LABELER_PREFIX_CACHE_GB", "0.001")
    with pytest.raises(BadInputError):
        finetune_project(project, epochs=1, device="cpu", holdout=0.0, progress=False)
    rep = finetune_project(project, epochs=1, device="cpu", holdout=0.0, progress=False, prefix_cache=False)
    assert rep.cache_seconds == 0.0 and not list(project.root.glob("cache/prefix-*"))


def test_a_step_callback_that_raises_stops_the_press_before_anything_is_written(project):
    """``step`` is called when the stage maps start and before each epoch (a background
    job's cancel raises from it): the press stops there, no feature set or model is written
    and the active set stays."""
    from labeler.embedding import feature_sets as fs
    from labeler.embedding.finetune import finetune_project

    class Stop(Exception):
        pass

    seen = []

    def step(stage, done, total):
        seen.append((stage, done, total))
        if stage == "training" and done == 2:
            raise Stop

    _label_cell_types(project, per_class=6)
    with pytest.raises(Stop):
        finetune_project(project, epochs=4, device="cpu", holdout=0.0, train_from="head", progress=False, step=step)
    assert seen == [("stage maps", 0, 1), ("training", 0, 4), ("training", 1, 4), ("training", 2, 4)]
    assert list(fs.list_feature_sets(project)) == ["embeddings"] and fs.active_feature_set(project) == "embeddings"
    assert not list(project.models_dir.glob("*.pt")) if project.models_dir.exists() else True


@pytest.mark.parametrize("epochs", [10, 3, 2, 1])
def test_a_press_of_few_optimiser_steps_trains(project, epochs):
    """10 labels are one batch: 10 epochs are exactly 10 steps, where torch's one-cycle
    schedule with a 10 % warm-up divided by zero (``labeler finetune --epochs 10`` on a
    small label set crashed); fewer steps train too."""
    from labeler.embedding.finetune import finetune_project

    _label_cell_types(project, per_class=5)
    rep = finetune_project(project, epochs=epochs, device="cpu", holdout=0.0, train_from="head", progress=False)
    assert rep.n_train == 10 and rep.epochs == epochs


def test_an_ingest_with_the_prefix_cache_leaves_the_first_press_only_training(tmp_path, monkeypatch):
    """``prefix_cache='last'`` (``labeler ingest --prefix-cache last``): the ingest computes
    the stage maps of every photo, then of the photos added later only; the first press
    computes none of the collection's maps (only its labelled images' other symmetries)."""
    import shutil

    import fixtures_images as fx
    from labeler.config import Settings, load_settings
    from labeler.embedding.finetune import finetune_project
    from labeler.labels import label_images
    from labeler.pipeline import ingest
    from labeler.project import Project

    photos, proj = tmp_path / "photos", tmp_path / "proj"
    photos.mkdir()
    files = fx.copy_elpv(photos, 16)
    held_back = [f.rename(tmp_path / f.name) for f in files[12:]]
    fast = dict(backbone="efficientnet-lite0", pca_components=8, min_cluster_size=3, min_samples=2, batch_size=8,
                num_workers=0, prefix_cache="last")
    said = []
    ingest(photos, proj, Settings(**fast), progress=False, say=said.append)
    assert any("prefix cache (last): stage maps of 12 images" in s for s in said), said
    assert load_settings(proj / "labeler.toml").prefix_cache == "last"  # saved: later ingests keep it
    for f in held_back:
        shutil.move(f, photos / f.name)
    said.clear()
    ingest(photos, proj, None, progress=False, say=said.append)
    assert any("prefix cache (last): stage maps of 4 images" in s for s in said), said

    project = Project(proj)
    ids = [int(r["id"]) for r in project.store.image_table()]
    label_images(project, ids[:6], "a")
    label_images(project, ids[6:12], "b")
    rep = finetune_project(project, epochs=1, device="cpu", holdout=0, train_from="last", loss="ce", progress=False)
    assert rep.prefix_images == 12  # the labelled images' symmetries; no photo's own maps again

    # Freeing the disk: `labeler features --drop-cache` deletes the maps and says how much.
    from click.testing import CliRunner

    from labeler.cli import main
    from labeler.disk import disk_usage

    cached = disk_usage(project)["parts"]["cache"]
    assert cached > 16 * 40_000  # every photo's maps (~43 KB each) and the symmetries
    out = CliRunner().invoke(main, ["features", "--project", str(proj), "--drop-cache"])
    assert out.exit_code == 0, out.output
    assert f"deleted the fine-tune's prefix cache ({cached / 2**20:.1f} MiB freed)" in out.output
    assert disk_usage(project)["parts"]["cache"] == 0 and not list((proj / "cache").glob("prefix-*"))
    assert len(project.store.labels()) == 12


def test_a_prefix_cache_that_does_not_fit_is_said_and_the_ingest_goes_on(tmp_path, monkeypatch):
    import fixtures_images as fx
    from labeler.config import Settings
    from labeler.pipeline import ingest

    monkeypatch.setenv("LABELER_PREFIX_CACHE_GB", "0.000001")
    photos = tmp_path / "photos"
    photos.mkdir()
    fx.copy_elpv(photos, 8)
    said = []
    rep = ingest(photos, tmp_path / "proj", Settings(backbone="efficientnet-lite0", pca_components=4, min_cluster_size=2,
                                                     min_samples=1, num_workers=0, prefix_cache="s16"),
                 progress=False, say=said.append)
    assert rep.n_images == 8 and not (tmp_path / "proj" / "cache").exists()
    line = [s for s in said if s.startswith("prefix cache not prepared")]
    assert len(line) == 1 and "budget" in line[0]
