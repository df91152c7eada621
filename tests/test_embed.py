"""labeler.embedding.extract: batched extraction over a mix of good and bad real files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fixtures_images as fx
from labeler.embedding import EmbedBatch, default_num_workers, embed_files, load_backbone, pick_device

CAT_CLASSES = range(281, 286)


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet-lite0")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """(items, expected failure reasons by id, good ids). Batches of 3 with batch_size=3:
    [good, bad, good] [good, good, bad] [bad, bad, bad] [good]."""
    d = tmp_path_factory.mktemp("mixed")
    chelsea = fx.make_photo(d, "chelsea")  # 451 x 300 JPEG
    elpv = fx.copy_elpv(d, n=2)
    paths = [
        chelsea,
        fx.make_zero_byte(d),
        fx.make_photo(d, "coffee", fmt="PNG", filename="über café 1.png"),
        elpv[0],
        elpv[1],
        fx.make_truncated_jpeg(d),
        fx.make_text_as_jpg(d),
        fx.make_one_pixel(d),
        fx.make_random_bytes(d),
        chelsea,  # same file again under another id: same features
    ]
    ids = [10 * i + 5 for i in range(len(paths))]
    bad = {ids[1]: "empty file (0 bytes)", ids[5]: "truncated file",
           ids[6]: "not an image (cannot identify image file)", ids[7]: "image too small: 1x1",
           ids[8]: "not an image (cannot identify image file)"}
    good = [i for i in ids if i not in bad]
    return list(zip(ids, paths)), bad, good


@pytest.mark.parametrize("num_workers", [0, 1])
def test_mixed_good_and_bad(lite0, mixed, tmp_path, num_workers):
    items, bad, good = mixed
    thumbs = tmp_path / "thumbs"
    batches = list(embed_files(items, lite0, batch_size=3, num_workers=num_workers,
                               thumbs_dir=thumbs, progress=False))
    assert all(isinstance(b, EmbedBatch) for b in batches)
    assert len(batches) == 4
    empty = batches[2]  # every item failed: still yielded, with empty arrays
    assert empty.features.shape == (0, 1280) and empty.ids.shape == (0,)
    assert len(empty.failures) == 3

    ids = np.concatenate([b.ids for b in batches])
    assert ids.tolist() == good  # input order, successes only
    feats = np.concatenate([b.features for b in batches])
    assert feats.shape == (len(good), 1280) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    for b in batches:
        assert b.ids.dtype == np.int64 and b.top1.dtype == np.int64
        assert b.top1_prob.dtype == np.float32 and b.width.dtype == np.int64
        assert len(b.ids) == len(b.features) == len(b.top1) == len(b.top1_prob) == len(b.width) == len(b.height)
    failures = dict(f for b in batches for f in b.failures)
    assert failures == bad

    first, last = batches[0], batches[-1]
    assert (first.width[0], first.height[0]) == (451, 300)  # original size, not the draft size
    assert int(first.top1[0]) in CAT_CLASSES and 0 < first.top1_prob[0] <= 1
    # Same image, same features; oneDNN picks kernels by batch size, so a batch of 3
    # and a batch of 1 agree to float32 rounding (~1e-6), not bit for bit.
    np.testing.assert_allclose(first.features[0], last.features[0], rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in thumbs.iterdir()) == sorted(f"{i}.jpg" for i in good)


def test_workers_and_main_process_agree(lite0, mixed):
    items = mixed[0][:1]
    a = next(embed_files(items, lite0, num_workers=0, progress=False)).features
    b = next(embed_files(items, lite0, num_workers=1, progress=False)).features
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_preprocessing_error_is_a_failure(lite0, mixed, monkeypatch):
    items, _, _ = mixed
    from labeler.embedding import decode

    real = decode.resize_pil

    def picky(img, spec, view="whole"):
        if img.size == (300, 300):  # the ELPV cells
            raise RuntimeError("boom")
        return real(img, spec, view)

    monkeypatch.setattr(decode, "resize_pil", picky)
    batches = list(embed_files(items[2:5], lite0, num_workers=0, progress=False))
    assert batches[0].ids.tolist() == [items[2][0]]
    assert [r for _, r in batches[0].failures] == ["preprocessing failed: RuntimeError: boom"] * 2


def test_edge_arguments(lite0, mixed):
    assert list(embed_files([], lite0, progress=False)) == []
    with pytest.raises(ValueError, match="unknown view"):
        list(embed_files(mixed[0], lite0, view="zoom"))
    with pytest.raises(ValueError, match="batch_size"):
        list(embed_files(mixed[0], lite0, batch_size=0))
    assert default_num_workers() >= 1


def test_bf16_is_close_to_fp32_and_leaks_no_context(lite0, mixed):
    """The opt-in bf16 mode keeps cosine similarity >= 0.99 to fp32 on real photos."""
    items = [(i, p) for i, p in mixed[0] if i in mixed[2]]
    f32 = np.concatenate([b.features for b in embed_files(items, lite0, num_workers=0, progress=False)])
    gen = embed_files(items, lite0, num_workers=0, progress=False, batch_size=2, precision="bf16")
    first = next(gen)
    # Between batches the caller's code runs without autocast or inference mode.
    assert not torch.is_autocast_enabled("cpu") and not torch.is_inference_mode_enabled()
    f16 = np.concatenate([first.features] + [b.features for b in gen])
    assert f16.dtype == np.float32
    cos = (f32 * f16).sum(1) / np.linalg.norm(f32, axis=1) / np.linalg.norm(f16, axis=1)
    assert cos.min() >= 0.99
    with pytest.raises(ValueError, match="precision"):
        list(embed_files(items, lite0, precision="fp8"))


def test_pick_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device() == pick_device("auto") == expected
    assert pick_device("cpu") == "cpu"
    with pytest.raises(ValueError):
        pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(mixed):
    items = [mixed[0][0], mixed[0][3]]
    bb = load_backbone("efficientnet-lite0")
    cpu = next(embed_files(items, bb, device="cpu", progress=False))
    gpu = next(embed_files(items, bb, device="cuda", progress=False))
    assert next(bb.model.parameters()).device.type == "cuda"
    # cuDNN uses TF32 for convolutions by default: single elements differ by a few
    # percent, the feature vectors agree in direction.
    a, b = gpu.features, cpu.features
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.999, cos
    assert gpu.top1.tolist() == cpu.top1.tolist()
