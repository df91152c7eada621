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
    assert onnx.name.startswith("efficientnet-lite0-") and runtime.weights_digest(lite0)[:16] in onnx.name
    mtime = onnx.stat().st_mtime_ns
    engine = runtime.make_engine(lite0, runtime="auto", device="cpu")
    assert (engine.runtime, engine.precision) == ("onnxruntime", "fp32")
    assert onnx.stat().st_mtime_ns == mtime  # exported once


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
    assert emb.shape == (len(cells), 1280) and np.isfinite(emb).all()
    engine = stage.query_engine(project, bb)
    assert (engine.runtime, engine.precision) == ("onnxruntime", "int8")
    for other in (s.updated(precision="fp32"), s.updated(runtime="torch")):
        assert stage.backbone_change(project, other)
        with pytest.raises(BackboneMismatchError):
            stage.resolve_project_backbone(project, other)
    assert stage.backbone_change(project, s.updated(runtime="auto")) is None
