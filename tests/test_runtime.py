"""labeler.embedding.runtime and .stage: ONNX Runtime fp32/int8, verification, fallbacks, project records."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fixtures_images as fx
from labeler.embedding import embed_files, load_backbone, runtime
from labeler.errors import BackboneMismatchError, BadInputError

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet-lite0")


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """24 real ELPV solar-cell photos as (id, path)."""
    return list(enumerate(fx.copy_elpv(tmp_path_factory.mktemp("cells"), 24)))


def _features(items, bb, **kw):
    return np.concatenate([b.features for b in embed_files(items, bb, num_workers=0, progress=False,
                                                           batch_size=8, **kw)])


def test_onnxruntime_matches_torch_and_is_cached_by_weights(lite0, cells, tmp_path, monkeypatch):
    monkeypatch.setenv("LABELER_CACHE", str(tmp_path / "cache"))
    ref = _features(cells, lite0, runtime="torch")
    got = _features(cells, lite0, runtime="onnxruntime")
    assert runtime.cosine_rows(got, ref).min() >= runtime.MIN_COSINE_FP32
    [onnx] = (tmp_path / "cache" / "onnx").glob("*.onnx")
    assert onnx.name == f"efficientnet-lite0-global-{runtime.weights_digest(lite0)[:16]}-fp32.onnx"
    mtime = onnx.stat().st_mtime_ns
    engine = runtime.make_engine(lite0, runtime="auto", device="cpu")
    assert (engine.runtime, engine.precision) == ("onnxruntime", "fp32")
    assert onnx.stat().st_mtime_ns == mtime  # exported once


def test_every_feature_type_is_exported_keyed_and_checked_on_its_own(lite0, cells, tmp_path, monkeypatch):
    """global, multistage and multiscale each get their own ONNX file (weights hash + type in the
    name), match torch on real photos, and a type whose export computes something else falls back to
    torch alone, with one line, while the others keep ONNX Runtime."""
    from labeler.embedding.local_features import feature_backbone

    monkeypatch.setenv("LABELER_CACHE", str(tmp_path / "cache"))
    digest = runtime.weights_digest(lite0)[:16]
    few = cells[:6]
    typed = {t: feature_backbone(lite0, t) for t in ("global", "multistage", "multiscale")}
    for t, bb in typed.items():
        assert runtime.weights_digest(bb)[:16] == digest  # the network's weights, whatever the wrapper
        ref = _features(few, bb, runtime="torch")
        got = _features(few, bb, runtime="onnxruntime")
        assert got.shape == (len(few), bb.dim)
        assert runtime.cosine_rows(got, ref).min() >= runtime.MIN_COSINE_FP32, t
    names = sorted(p.name for p in (tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert names == sorted(f"efficientnet-lite0-{t}-{digest}-fp32.onnx" for t in typed)

    said = []
    real_call = runtime.OrtEngine.__call__

    def wrong_for_multistage(self, x):  # only the multistage export computes something else
        f, logits = real_call(self, x)
        return (torch.rand_like(f), logits) if "-multistage-" in self.path.name else (f, logits)

    monkeypatch.setattr(runtime.OrtEngine, "__call__", wrong_for_multistage)
    monkeypatch.setattr(runtime, "_VERIFIED", {})  # a new process: every type is checked again
    for t, bb in typed.items():
        engine = runtime.make_engine(bb, runtime="onnxruntime", warn=said.append)
        assert engine.runtime == ("torch" if t == "multistage" else "onnxruntime"), t
    assert len(said) == 1 and "multistage features differs from torch" in said[0] and "\n" not in said[0]


def test_multiscale_decodes_at_twice_the_input_size(lite0, cells):
    """The 2x scale sees the image at 448 px (its two halves differ), and the in-graph 2x
    downsampling equals torch's antialiased bilinear resize."""
    import torch.nn.functional as F

    from labeler.embedding.local_features import feature_backbone, halve

    bb = feature_backbone(lite0, "multiscale")
    assert (bb.input_size, bb.spec.input_size) == (448, 448)
    f = _features(cells[:2], bb, runtime="torch")
    assert f.shape == (2, 2560) and runtime.cosine_rows(f[:, :1280], f[:, 1280:]).max() < 0.999
    x = torch.rand(2, 3, 448, 448, generator=torch.Generator().manual_seed(0))
    ref = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(halve(x), ref, atol=1e-5)


def test_falls_back_to_torch_with_one_line(lite0, monkeypatch, tmp_path):
    monkeypatch.setenv("LABELER_CACHE", str(tmp_path / "cache"))
    said = []
    monkeypatch.setattr(runtime, "ort_available", lambda: False)
    assert runtime.make_engine(lite0, runtime="onnxruntime", warn=said.append).runtime == "torch"
    assert len(said) == 1 and "onnxruntime is not installed" in said[0] and "\n" not in said[0]
    monkeypatch.undo()
    monkeypatch.setenv("LABELER_CACHE", str(tmp_path / "cache"))

    def wrong(self, x):  # an exported model that computes something else
        return torch.rand(len(x), 1280), torch.rand(len(x), 1000)

    monkeypatch.setattr(runtime.OrtEngine, "__call__", wrong)
    said.clear()
    assert runtime.make_engine(lite0, runtime="onnxruntime", warn=said.append).runtime == "torch"
    assert len(said) == 1 and "differs from torch" in said[0]


def test_runtime_and_precision_combinations():
    assert runtime.resolve_runtime("auto", "fp32", "cpu") == "onnxruntime"
    assert runtime.resolve_runtime("auto", "fp32", "cuda") == "torch"
    assert runtime.resolve_runtime("auto", "bf16", "cpu") == "torch"
    assert runtime.resolve_runtime("auto", "int8", "cpu") == "onnxruntime"
    for args in [("torch", "int8", "cpu"), ("auto", "int8", "cuda"), ("onnxruntime", "bf16", "cpu"),
                 ("tensorrt", "fp32", "cpu"), ("auto", "fp8", "cpu")]:
        with pytest.raises(BadInputError):
            runtime.resolve_runtime(*args)


def test_int8_is_accepted_only_above_its_cosine_gate(lite0, cells, tmp_path, monkeypatch):
    """--precision int8: quantised on the collection, checked against fp32 on held-out images of it,
    refused below the gate without changing the project; when accepted it is recorded, queries use it,
    and changing precision or runtime back refuses without --force."""
    from labeler.config import Settings
    from labeler.embedding import stage
    from labeler.pipeline import catalogue
    from labeler.project import Project

    monkeypatch.setenv("LABELER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(stage, "INT8_CALIBRATION_IMAGES", 12)
    monkeypatch.setattr(stage, "INT8_CHECK_IMAGES", 8)
    project = Project(tmp_path / "p", create=True)
    catalogue(project, cells[0][1].parent)
    s = Settings(backbone="efficientnet-lite0", precision="int8", num_workers=0, batch_size=8)

    monkeypatch.setattr(runtime, "MIN_COSINE_INT8", 0.9999)  # a gate this int8 model cannot pass
    with pytest.raises(BadInputError, match="use --precision fp32"):
        stage.resolve_project_backbone(project, s)
    assert project.store.get_meta("backbone") is None and not list(project.models_dir.glob("*int8*"))

    monkeypatch.setattr(runtime, "MIN_COSINE_INT8", 0.5)  # and one it passes
    bb = stage.resolve_project_backbone(project, s)
    done, skipped = stage.embed_pending(project, bb, s, progress=False)
    assert (done, skipped) == (len(cells), [])
    meta = project.store.get_meta("backbone")
    assert (meta["precision"], meta["runtime"], meta["runtime_used"]) == ("int8", "onnxruntime", "onnxruntime")
    assert (project.root / meta["int8_model"]).is_file() and 0.5 <= meta["int8_min_cosine"] <= 1
    emb = project.load_array("embeddings")
    assert meta["features"] == "multistage" and "-multistage-int8-" in meta["int8_model"]  # the default type
    assert emb.shape == (len(cells), 1432) and np.isfinite(emb).all()
    engine = stage.query_engine(project, bb)
    assert (engine.runtime, engine.precision) == ("onnxruntime", "int8")
    for other in (s.updated(precision="fp32"), s.updated(runtime="torch")):
        assert stage.backbone_change(project, other)
        with pytest.raises(BackboneMismatchError):
            stage.resolve_project_backbone(project, other)
    assert stage.backbone_change(project, s.updated(runtime="auto")) is None


def test_projects_embedded_before_keep_their_vectors_without_force(tmp_path):
    """A multistage project embedded on torch (before multistage had an ONNX export) and a global
    project from before feature types: runtime auto asks for no re-embedding; a new project gets
    multistage."""
    from labeler.config import Settings
    from labeler.embedding import stage
    from labeler.project import Project

    p = Project(tmp_path / "p", create=True)
    try:
        assert stage.wanted_features(None, Settings()) == stage.DEFAULT_FEATURES == "multistage"
        for recorded in ({"name": "efficientnet-lite0", "view": "whole", "precision": "fp32", "runtime": "torch",
                          "features": "multistage"},
                         {"name": "efficientnet-lite0", "view": "whole", "precision": "fp32"}):
            p.store.set_meta(backbone=recorded)
            assert stage.backbone_change(p, Settings(backbone="auto")) is None
            assert stage.wanted_features(recorded, Settings()) == recorded.get("features", "global")
        assert "--force" in stage.backbone_change(p, Settings(backbone="auto", features="multistage"))
    finally:
        p.store.close()
