"""labeler.embedding.decode: uint8 handover, batched device JPEG decoding and its CPU fallbacks.

The device path is exercised on the CPU (torchvision's CPU JPEG decoder stands in for
nvJPEG: same call, ``device='cpu'``), so batching, fallback decisions and the
handover are tested on every machine; ``benchmarks/gpu_check.sh`` measures it on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import fixtures_images as fx
from labeler.embedding import decode, embed_files, load_backbone
from labeler.embedding.registry import get_spec
from labeler.embedding.runtime import cosine_rows


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet-lite0")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(items, bad ids with reasons, JPEG ids the device decodes, ids Pillow must decode)."""
    d = tmp_path_factory.mktemp("decode")
    paths = [
        fx.make_photo(d, "chelsea"),                           # RGB JPEG -> device
        fx.make_truncated_jpeg(d),                             # bad
        fx.make_photo(d, "coffee", fmt="PNG"),                 # PNG -> CPU
        fx.make_cmyk_jpeg(d),                                  # CMYK JPEG -> CPU
        fx.make_exif_rotated_jpeg(d),                          # JPEG, orientation 6 -> device, rotated there
        fx.make_text_as_jpg(d),                                # bad
        fx.make_photo(d, "astronaut", filename="grey.jpg"),    # replaced below by a greyscale JPEG
        fx.make_zero_byte(d),                                  # bad
    ]
    Image.open(paths[6]).convert("L").save(paths[6], format="JPEG")
    ids = [100 + i for i in range(len(paths))]
    bad = {ids[1]: "truncated file", ids[5]: "not an image (cannot identify image file)",
           ids[7]: "empty file (0 bytes)"}
    return list(zip(ids, paths)), bad, {ids[0], ids[4], ids[6]}, {ids[2], ids[3]}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pillow_exif_transpose(orientation):
    a = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.info["exif"] = exif.tobytes()
    want = np.asarray(ImageOps.exif_transpose(img))
    got = decode.orient(torch.from_numpy(a).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, want)


def test_workers_hand_over_uint8_and_route_by_format(files):
    items, bad, device_ids, cpu_ids = files
    spec = get_spec("efficientnet-lite0")
    task = decode.DecodeTask(items, spec, "whole", None, device_jpeg=True)
    got = {task[i].image_id: task[i] for i in range(len(task))}
    assert {i for i, it in got.items() if it.kind == "jpeg"} == device_ids
    assert {i for i, it in got.items() if it.kind == "pixels"} == cpu_ids
    assert {i: it.reason for i, it in got.items() if it.kind == "failed"} == bad
    for i in cpu_ids:
        assert got[i].payload.dtype == np.uint8 and got[i].payload.shape == (224, 224, 3)
    rotated = got[items[4][0]]
    assert rotated.orientation == 6 and (rotated.width, rotated.height) == (40, 80)  # size after EXIF
    assert rotated.payload[:2] == b"\xff\xd8"  # the file's bytes, undecoded
    batch = decode.collate([got[i] for i, _ in items])
    assert batch.pixels.dtype == torch.uint8 and batch.pixels.shape == (2, 224, 224, 3)
    assert len(batch.jpegs) == 3 and sorted(batch.pixel_pos + batch.jpeg_pos) == list(range(5))
    assert batch.jpeg_blob.dtype == torch.uint8  # one tensor for all the batch's JPEG bytes
    assert [bytes(j.numpy()) for j in batch.jpegs] == [got[i].payload for i, _ in items if got[i].kind == "jpeg"]
    # the CPU path hands over uint8 pixels for every good file
    plain = decode.DecodeTask(items, spec, "whole", None, device_jpeg=False)
    assert all(plain[i].kind in ("pixels", "failed") for i in range(len(plain)))


@pytest.mark.parametrize("channels_last", [True, False])
def test_cpu_decoded_batch_is_normalised_in_the_asked_layout(files, channels_last):
    items, _, _, _ = files
    spec = get_spec("efficientnet-lite0")
    task = decode.DecodeTask(items, spec, "whole", None, device_jpeg=False)
    batch = decode.collate([task[i] for i in range(len(task))])
    assert batch.jpeg_blob is None and batch.pixel_pos == list(range(len(batch.ids)))
    x, keep, failures = decode.to_device_input(batch, spec, "whole", torch.device("cpu"),
                                               channels_last=channels_last)
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    want = (batch.pixels.permute(0, 3, 1, 2).float() - mean) / std  # the arithmetic of the general path
    assert torch.equal(x, want) and keep.tolist() == list(range(len(batch.ids))) and failures == []
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert x.is_contiguous(memory_format=layout)


@pytest.mark.parametrize("view", ["whole", "crop"])
def test_device_decode_path_agrees_with_the_cpu_path(lite0, files, tmp_path, view):
    """Same ids, same failures, thumbnails for every good file, features in the same direction."""
    items, bad, _, _ = files
    runs = {}
    for mode in ("cpu", "device"):
        thumbs = tmp_path / f"{mode}-{view}"
        batches = list(embed_files(items, lite0, view=view, batch_size=4, num_workers=0, decode=mode,
                                   thumbs_dir=thumbs, progress=False))
        runs[mode] = (np.concatenate([b.ids for b in batches]), np.concatenate([b.features for b in batches]),
                      dict(f for b in batches for f in b.failures),
                      sorted(p.name for p in thumbs.iterdir()),
                      np.concatenate([b.width for b in batches]))
    (ids_c, f_c, fail_c, th_c, w_c), (ids_d, f_d, fail_d, th_d, w_d) = runs["cpu"], runs["device"]
    assert ids_c.tolist() == ids_d.tolist() == [i for i, _ in items if i not in bad]
    assert fail_c == fail_d == bad
    assert th_c == th_d == sorted(f"{i}.jpg" for i in ids_c)
    assert w_c.tolist() == w_d.tolist()
    # Pillow's and torch's antialiased bilinear resizes differ by rounding only.
    assert cosine_rows(f_c, f_d).min() > 0.99


def test_a_jpeg_the_device_decoder_refuses_is_decoded_by_pillow(lite0, files, monkeypatch):
    items, _, device_ids, _ = files
    good = [(i, p) for i, p in items if i in device_ids]
    ref = np.concatenate([b.features for b in embed_files(good, lite0, num_workers=0, decode="cpu",
                                                          progress=False)])
    real = decode._decode_jpegs

    def refuses_first(data, device):
        out = real(data, device)
        return [None] + out[1:]

    monkeypatch.setattr(decode, "_decode_jpegs", refuses_first)
    b = next(embed_files(good, lite0, num_workers=0, decode="device", progress=False))
    assert b.ids.tolist() == [i for i, _ in good] and not b.failures
    np.testing.assert_allclose(b.features[0], ref[0], rtol=1e-4, atol=1e-4)  # the Pillow path exactly


def test_batched_decode_survives_one_bad_member(files):
    items, _, _, _ = files
    data = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in (items[0][1], items[1][1])]
    out = decode._decode_jpegs(data, torch.device("cpu"))
    assert out[0] is not None and out[0].shape[0] == 3
    assert len(out) == 2  # the truncated one is None or a (partial) image, never an exception


def test_the_embedding_stage_imports_nothing_a_gpu_box_lacks():
    """benchmarks/gpu_check.sh runs where umap, hdbscan, dash, faiss, click, tqdm and tomli_w are absent."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "blocked = ('umap', 'hdbscan', 'dash', 'faiss', 'click', 'tqdm', 'tomli_w')\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in blocked: raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import labeler.embedding.extract, labeler.embedding.decode, labeler.embedding.runtime\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
