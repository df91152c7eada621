"""Text search and zero-shot with open_clip (labeler.embedding.text): a tiny random-weight CLIP the
test creates (a JSON model config + its state dict as the local checkpoint; nothing downloaded)
embeds real photos at ingest; `labeler search --text` ranks them by cosine to the sentence."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_images as fx  # noqa: E402

open_clip = pytest.importorskip("open_clip")

from labeler.cli import main  # noqa: E402
from labeler.embedding import byo, text  # noqa: E402
from labeler.embedding.feature_sets import list_feature_sets, load_feature_set  # noqa: E402
from labeler.errors import BadInputError, NotFoundError  # noqa: E402
from labeler.project import Project  # noqa: E402
from labeler.text_search import search_text  # noqa: E402

N = 12
TINY = {"embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1}}


def run(*args, ok=True):
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """(config file, checkpoint file) of a random-weight open_clip ViT (16-d, 32 px)."""
    d = tmp_path_factory.mktemp("clip")
    config = d / "tinyclip.json"
    config.write_text(json.dumps(TINY))
    open_clip.add_model_config(str(config))
    torch.manual_seed(0)
    model = open_clip.create_model("tinyclip", pretrained=None)
    torch.save(model.state_dict(), d / "tinyclip.pt")
    return config, d / "tinyclip.pt"


@pytest.fixture(scope="module")
def clip_project(tiny_clip, tmp_path_factory):
    d = tmp_path_factory.mktemp("text")
    photos = d / "photos"
    photos.mkdir()
    for p in sorted(fx.elpv_images_dir().glob("*.png"))[:N]:
        shutil.copyfile(p, photos / p.name)
    config, ckpt = tiny_clip
    res = run("ingest", photos, "--project", d / "proj", "--backbone", "efficientnet-lite0", "--quiet",
              "--text-model", f"{config}:{ckpt}")
    assert "stored feature set clip-tinyclip (text search): 12 x 16" in res.output
    return Project(d / "proj")


def test_search_by_text_ranks_images_by_cosine_to_the_sentence(clip_project, tiny_clip):
    p = clip_project
    sets = list_feature_sets(p)
    assert sets["clip-tinyclip"]["kind"] == "clip" and not sets["clip-tinyclip"]["active"]
    assert sets["clip-tinyclip"]["text_model"] == f"{tiny_clip[0]}:{tiny_clip[1]}"  # recorded to re-load
    res = run("search", "--text", "a cracked cell", "--text", "a scratch near the edge", "--project", p.root,
              "-k", 5, "--json")
    answers = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert [a["query"] for a in answers] == ["a cracked cell", "a scratch near the edge"]
    # The same ranking computed here from the model and the stored image vectors.
    model = open_clip.create_model("tinyclip", pretrained=str(tiny_clip[1])).eval()
    with torch.no_grad():
        t = model.encode_text(open_clip.get_tokenizer("tinyclip")(["a cracked cell"]), normalize=True)[0].numpy()
    v = np.asarray(load_feature_set(p, "clip-tinyclip"))
    sims = v @ t / np.linalg.norm(v, axis=1)
    rows = np.argsort(-sims)[:5]
    ids = p.store.row_image_ids()
    got = answers[0]["neighbours"]
    assert [n["image_id"] for n in got] == [int(ids[r]) for r in rows]
    assert np.allclose([n["similarity"] for n in got], sims[rows], atol=1e-5)
    # The stored image vector is the image tower's output on the prepared photo.
    bb = text._image_backbone(text.load_clip(f"{tiny_clip[0]}:{tiny_clip[1]}"))
    from labeler.images import load_image

    first = p.store.get_images([int(ids[0])])[0]
    x = bb.preprocess(load_image(p.image_path(first["path"])), "crop")[None]
    with torch.no_grad():
        want = bb.model(x)[0][0].numpy()
    assert np.allclose(v[0], want, atol=1e-4)
    assert "text 'a cracked cell' (clip-tinyclip):" in run("search", "--text", "a cracked cell", "--project",
                                                          p.root).output


def test_zero_shot_gives_label_probabilities_per_image(clip_project):
    zs = text.zero_shot(clip_project, ["cracked", "intact_cell"])
    assert zs.probs.shape == (N, 2) and np.allclose(zs.probs.sum(axis=1), 1, atol=1e-5)
    assert zs.prompts == ["a photo of a cracked", "a photo of a intact cell"]
    assert sorted(zs.image_ids.tolist()) == sorted(int(i) for i in clip_project.store.row_image_ids())
    sims, _ = text.text_scores(clip_project, zs.prompts)
    clip = text.load_clip(list_feature_sets(clip_project)["clip-tinyclip"]["text_model"])
    logits = clip.logit_scale * sims.T
    want = np.exp(logits - logits.max(1, keepdims=True))
    assert np.allclose(zs.probs, want / want.sum(1, keepdims=True), atol=1e-4)
    assert set(zs.top()) == set(zs.image_ids.tolist())
    with pytest.raises(BadInputError, match="class names"):
        text.zero_shot(clip_project)  # no labels given and none in use
    # As one more suggestion expert: stored like imported predictions, top 1 per image here.
    rep = text.zero_shot_predictions(clip_project, ["cracked", "intact_cell"], top=1)
    assert rep["source"] == "zero-shot clip-tinyclip" and rep["rows"] == N
    stored = clip_project.store.predictions(rep["source"])
    top = zs.top()
    assert {(i, lab): round(s, 5) for i, lab, s in stored} == {(i, lab): round(p, 5) for i, (lab, p) in top.items()}


def test_features_adds_a_text_set_later_and_failures_are_one_line(clip_project, tiny_clip, tmp_path, monkeypatch):
    config, ckpt = tiny_clip
    res = run("features", "--project", clip_project.root, "--text-model", f"{config}:{ckpt}", "--quiet")
    assert "stored feature set clip-tinyclip" in res.output
    res = run("features", "--project", clip_project.root, "--text-model", str(config), ok=False)
    assert res.exit_code == 1 and "names no weights" in res.output  # never silently random weights
    res = run("search", "--project", clip_project.root, ok=False)
    assert res.exit_code == 1 and "--text" in res.output
    with pytest.raises(BadInputError):
        search_text(clip_project, "  ")
    real = byo.importlib.util.find_spec
    monkeypatch.setattr(byo.importlib.util, "find_spec", lambda m, *a: None if m == "open_clip" else real(m, *a))
    with pytest.raises(BadInputError, match=r"pip install 'labeler\[models\]'"):
        text.load_clip("ViT-B-32:laion2b_s34b_b79k")


def test_a_project_without_clip_vectors_says_how_to_make_them(clip_project, monkeypatch):
    import labeler.embedding.feature_sets as fs

    monkeypatch.setattr(fs, "list_feature_sets", lambda project: {})
    with pytest.raises(NotFoundError, match="--text-model"):
        search_text(clip_project, "a cracked cell")
    res = run("search", "--text", "a cracked cell", "--project", clip_project.root, ok=False)
    assert res.exit_code == 1 and "--text-model" in res.output


def test_the_search_tab_searches_by_text(clip_project):
    """The Search tab's text box: the same neighbours as `labeler search --text`, shown like an
    image search's (labelled neighbours' vote, no map marker); a project without CLIP vectors
    answers with one line."""
    from labeler.app import create_app
    from labeler.app.tabs.search.callbacks import result_view, search_by_text
    from labeler.labels import label_images
    from labeler.text_search import search_text

    p = clip_project
    actx = create_app(p).labeler
    want = [n.image_id for n in search_text(p, "a cracked cell", 5)[0].neighbours]
    label_images(p, want[:2], "cracked", annotator="ana")
    stored = search_by_text(actx, "a cracked cell", 5)
    assert [i for i, _ in stored["neighbours"]] == want and stored["map_xy"] is None
    assert stored["vote"] == {"cracked": 1.0} and "a cracked cell" in stored["query"]
    view = result_view(actx, stored)
    assert "most of its neighbours" in str(view["query"]) and view["n_pages"] == 1
    with pytest.raises(BadInputError):
        search_by_text(actx, "   ", 5)
