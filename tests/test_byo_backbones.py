"""Bring your own backbone (labeler.embedding.byo): an ONNX file, a TorchScript file and a timm
architecture each ingest real photos and answer a search by a new photo, from another folder,
with a model the test builds (random weights, nothing downloaded)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, PngImagePlugin
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_images as fx  # noqa: E402

from labeler.cli import main  # noqa: E402
from labeler.embedding import byo  # noqa: E402
from labeler.embedding.backbones import load_backbone  # noqa: E402
from labeler.embedding.registry import normalise_backbone_name, parse_byo  # noqa: E402
from labeler.errors import BadInputError  # noqa: E402
from labeler.images import load_image  # noqa: E402
from labeler.project import Project  # noqa: E402

N = 16


def run(*args, ok=True):
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


class TinyCNN(nn.Module):
    """Two strided convolutions: its output is a 4-D map (labeler average-pools it)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 24, 3, stride=2, padding=1), nn.ReLU())

    def forward(self, x):
        return self.body(x)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("byo") / "photos"
    d.mkdir()
    for p in sorted(fx.elpv_images_dir().glob("*.png"))[:N]:
        shutil.copyfile(p, d / p.name)
    return d


def _same_pixels_new_bytes(src: Path, dest: Path) -> Path:
    """The photo re-saved with a text chunk: other bytes (so search embeds it), same pixels."""
    info = PngImagePlugin.PngInfo()
    info.add_text("note", "a copy")
    Image.open(src).save(dest, pnginfo=info)
    return dest


def _ingest_and_search(photos: Path, work: Path, backbone: str, monkeypatch, *extra) -> Project:
    """Ingest with a backbone named relative to ``work``, then search from another folder."""
    monkeypatch.chdir(work)
    proj = work / "proj"
    res = run("ingest", photos, "--project", proj, "--backbone", backbone, "--quiet", *extra)
    assert f"embedded {N} image(s)" in res.output
    p = Project(proj)
    meta = p.store.get_meta("backbone")
    assert meta["name"] == normalise_backbone_name(backbone) and meta["features"] == "global"
    assert meta["name"] in (proj / "labeler.toml").read_text()  # the project records the model
    # The stored vectors are the model's own output for the prepared image.
    bb = load_backbone(meta["name"], weights=p.settings().weights or None)
    first = sorted(p.store.images_by_path().items())[0]
    x = bb.preprocess(load_image(p.image_path(first[0]), draft_size=(2 * bb.input_size,) * 2))[None]
    with torch.inference_mode():
        want = bb.model(x)[0][0].numpy()
    got = p.load_array("embeddings")[first[1]["row"]]
    assert np.allclose(got, want, rtol=1e-3, atol=1e-4)
    # Search by photos outside the collection, from another folder.
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    query = _same_pixels_new_bytes(photos / first[0], elsewhere / "copy.png")
    cat = fx.make_photo(elsewhere, "chelsea")
    res = run("search", query, cat, "--project", proj, "-k", 5, "--json")
    answers = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(answers) == 2, res.output
    assert [len(a["neighbours"]) for a in answers] == [5, 5]
    assert answers[0]["query_image_id"] is None  # embedded by the model, not found by hash
    assert answers[0]["neighbours"][0]["path"] == first[0]
    assert answers[0]["neighbours"][0]["similarity"] > 0.999
    return p


def test_onnx_file_with_metadata(photos, tmp_path, monkeypatch):
    import onnx

    model = TinyCNN().eval()
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 64, 64),), str(path), input_names=["pixels"],
                      output_names=["map"], dynamic_axes={"pixels": {0: "b"}, "map": {0: "b"}}, opset_version=17,
                      dynamo=False)
    m = onnx.load(str(path))
    onnx.helper.set_model_props(m, {"labeler.mean": "0.5,0.5,0.5", "labeler.std": "0.25"})
    onnx.save(m, str(path))
    p = _ingest_and_search(photos, tmp_path, "onnx:tiny.onnx", monkeypatch)
    meta = p.store.get_meta("backbone")
    assert meta["dim"] == 24 and meta["runtime_used"] == "onnxruntime"
    assert "mean (0.5, 0.5, 0.5) std (0.25, 0.25, 0.25)" in meta["preprocessing"]
    assert "64x64" in meta["preprocessing"] and "size from its input shape, mean/std from the model" in meta[
        "preprocessing"]
    assert meta["weights_id"].startswith("tiny.onnx sha256:")


def test_torchscript_traced_and_scripted(photos, tmp_path, monkeypatch):
    model = TinyCNN().eval()
    traced = torch.jit.trace(model, torch.zeros(1, 3, 48, 48))
    torch.jit.save(traced, str(tmp_path / "traced.pt"),
                   _extra_files={"labeler.json": json.dumps({"input_size": 48, "mean": [0.4], "std": [0.2]})})
    p = _ingest_and_search(photos, tmp_path, "torchscript:traced.pt", monkeypatch)
    meta = p.store.get_meta("backbone")
    assert "48x48" in meta["preprocessing"] and "std (0.2, 0.2, 0.2)" in meta["preprocessing"]
    assert meta["runtime_used"] == "torch"
    # A scripted module loads too, with the size and normalisation given in the name.
    torch.jit.save(torch.jit.script(model), str(tmp_path / "scripted.pt"))
    bb = load_backbone(f"torchscript:{tmp_path / 'scripted.pt'}:size=40:mean=0.5:std=0.5")
    assert (bb.input_size, bb.dim, bb.spec.mean) == (40, 24, (127.5,) * 3)


def test_timm_architecture_with_a_local_checkpoint(photos, tmp_path, monkeypatch):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False)  # with its classifier: labeler drops it
    torch.save(net.state_dict(), tmp_path / "test_resnet.pth")
    p = _ingest_and_search(photos, tmp_path, "timm:test_resnet:size=64", monkeypatch,
                           "--weights", "test_resnet.pth", "--runtime", "torch")
    meta = p.store.get_meta("backbone")
    assert meta["weights_id"].startswith("user weights test_resnet.pth sha256:")
    assert "mean (0.5, 0.5, 0.5)" in meta["preprocessing"]
    assert "size from the name, mean/std from timm's pretrained config" in meta["preprocessing"]
    assert meta["dim"] == net.num_features


def test_names_options_and_polite_failures(photos, tmp_path, monkeypatch):
    assert parse_byo("onnx:C:\\m.onnx:size=224:std=0.5") == ("onnx", "C:\\m.onnx", {"size": "224", "std": "0.5"})
    assert parse_byo("timm:resnet18.a1_in1k") == ("timm", "resnet18.a1_in1k", {})
    for bad in ("onnx:", "timm:x:size=abc", "onnx:m.onnx:std=0"):
        with pytest.raises(BadInputError):
            parse_byo(bad)
    res = run("ingest", photos, "--project", tmp_path / "p", "--backbone", "onnx:missing.onnx", ok=False)
    assert res.exit_code == 2 and "onnx file not found" in res.output and not (tmp_path / "p").exists()
    with pytest.raises(BadInputError, match="torchscript backbone file not found"):
        load_backbone(f"torchscript:{tmp_path / 'missing.pt'}")
    res = run("ingest", photos, "--backbone", "nonsense", ok=False)
    assert res.exit_code == 2 and "onnx:FILE, torchscript:FILE, timm:ARCH" in res.output
    real = byo.importlib.util.find_spec
    monkeypatch.setattr(byo.importlib.util, "find_spec", lambda m, *a: None if m == "timm" else real(m, *a))
    with pytest.raises(BadInputError, match=r"pip install 'labeler\[models\]'"):
        load_backbone("timm:resnet18")
