"""GPU embedding check: the limits (forward pass, nvJPEG) beside embed_files' CPU- and GPU-decode paths.

Writes synthetic JPEG photos (quality 90; smooth random content with grain, so the
files are photo-sized rather than noise-sized) at 300x300 and 2048x1536, then prints
images/s for

1. forward only, ResNet-50, bf16 autocast, channels_last, batch 256 (the network's limit);
2. nvJPEG batched decode + resize to 224 on the GPU (``torchvision.io.decode_jpeg(list,
   device='cuda')``), from bytes already in memory (the decoder's limit);
3. ``embed_files(decode='cpu')``: Pillow decodes and resizes in the worker processes,
   uint8 handed over, normalised on the GPU (the CPU-decode path);
4. ``embed_files(decode='device')``: workers validate each file with a thumbnail-scale
   draft decode, write the thumbnail and hand over the JPEG bytes; nvJPEG decodes the
   batch, resize and normalisation run on the GPU (the new default on CUDA);

for both sizes, plus the cosine similarity between the features of paths 3 and 4.
ResNet-50 has random weights (speed does not depend on them; no weights offline).
Imports only ``labeler.embedding`` (torch, torchvision, numpy, Pillow).

Run:  python benchmarks/gpu_check.py                 (GPU: about 3-5 min)
      python benchmarks/gpu_check.py --cpu-smoke     (tiny, on the CPU: checks it runs end to end)
(``labeler`` installed; where it is not, ``bash benchmarks/gpu_check.sh`` puts the checkout
on ``PYTHONPATH``.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image


def _write_one(args) -> int:
    path, w, h, seed = args
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 48), max(2, w // 48), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)  # sensor-like grain
    Image.fromarray(img).save(path, format="JPEG", quality=90)
    return os.path.getsize(path)


def write_jpegs(dest: Path, n: int, size: tuple[int, int], workers: int) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    jobs = [(dest / f"{i:05d}.jpg", size[0], size[1], i) for i in range(n)]
    with ProcessPoolExecutor(workers) as ex:
        sizes = list(ex.map(_write_one, jobs, chunksize=8))
    print(f"  wrote {n} JPEGs {size[0]}x{size[1]} q90, mean {np.mean(sizes) / 1e3:.0f} kB", flush=True)
    return [j[0] for j in jobs]


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def forward_limit(bb, device, batch: int, iters: int) -> float:
    import torch

    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    model = bb.model.to(device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
        for _ in range(3):
            model(x)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            model(x)
        _sync(device)
    return batch * iters / (time.perf_counter() - t0)


def decode_limit(paths, spec, device, batch: int) -> float:
    import torch

    from labeler.embedding.decode import _decode_jpegs, resize_on_device

    data = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]
    _decode_jpegs(data[:batch], device)  # warm-up (nvJPEG handles, allocator)
    _sync(device)
    t0 = time.perf_counter()
    for i in range(0, len(data), batch):
        imgs = _decode_jpegs(data[i:i + batch], device)
        resize_on_device(torch.stack(imgs), spec, "whole")
    _sync(device)
    return len(data) / (time.perf_counter() - t0)


def embed_rate(paths, bb, device, decode, batch, workers, thumbs) -> tuple[float, np.ndarray]:
    from labeler.embedding.extract import embed_files

    items = list(enumerate(paths))
    kw = dict(batch_size=batch, num_workers=workers, device=str(device), decode=decode, progress=False,
              precision="bf16" if device.type == "cuda" else "fp32", thumbs_dir=thumbs)
    for _ in embed_files(items[: 2 * batch], bb, **kw):  # warm-up: workers, cuDNN autotuning
        pass
    t0 = time.perf_counter()
    feats = np.concatenate([b.features for b in embed_files(items, bb, **kw)])
    rate = len(items) / (time.perf_counter() - t0)
    assert len(feats) == len(items), (len(feats), len(items))
    return rate, feats


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (checks the script runs)")
    ap.add_argument("--small", type=int, default=4000, help="300x300 photos")
    ap.add_argument("--large", type=int, default=1500, help="2048x1536 photos")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--workers", type=int, default=None, help="decoding processes (default: cores - 1)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from labeler.embedding import backbones
    from labeler.embedding.registry import get_spec

    cores = len(os.sched_getaffinity(0))
    if args.cpu_smoke:
        device, args.small, args.large, args.batch = torch.device("cpu"), 12, 3, 4
        iters = 2
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --cpu-smoke to check the script on a CPU")
        device, iters = torch.device("cuda"), 20
        torch.backends.cudnn.benchmark = True
    workers = args.workers if args.workers is not None else max(1, cores - 1)
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, "
          f"{cores} cores, {workers} decoding workers, batch {args.batch}", flush=True)
    torch.manual_seed(0)
    bb = backbones._build("resnet50", None)  # random weights: speed only
    spec = get_spec("resnet50")
    out = {"device": str(device), "batch": args.batch, "workers": workers}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        sets = {"300x300": write_jpegs(d / "small", args.small, (300, 300), cores),
                "2048x1536": write_jpegs(d / "large", args.large, (2048, 1536), cores)}
        lim = forward_limit(bb, device, args.batch, iters)
        out["forward_bf16_img_s"] = round(lim, 1)
        print(f"\n1. forward only, bf16, channels_last, batch {args.batch}: {lim:8.0f} img/s", flush=True)
        for name, paths in sets.items():
            dec = decode_limit(paths, spec, device, args.batch)
            thumbs = d / f"thumbs-{name}"
            cpu, f_cpu = embed_rate(paths, bb, device, "cpu", args.batch, workers, thumbs / "cpu")
            dev, f_dev = embed_rate(paths, bb, device, "device", args.batch, workers, thumbs / "device")
            a, b = f_cpu.astype(np.float64), f_dev.astype(np.float64)
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            n_thumbs = len(list((thumbs / "device").iterdir()))
            print(f"\n{name} ({len(paths)} JPEGs q90)")
            print(f"2. nvJPEG batched decode + resize (limit):          {dec:8.0f} img/s")
            print(f"3. embed_files, CPU decode in workers (old-style):   {cpu:8.0f} img/s")
            print(f"4. embed_files, GPU decode (new):                   {dev:8.0f} img/s  ({dev / cpu:.2f}x path 3)")
            print(f"   features path 4 vs path 3: cosine min {cos.min():.4f} mean {cos.mean():.4f}; "
                  f"thumbnails written {n_thumbs}/{len(paths)}", flush=True)
            out[name] = {"nvjpeg_limit_img_s": round(dec, 1), "embed_cpu_decode_img_s": round(cpu, 1),
                         "embed_gpu_decode_img_s": round(dev, 1), "cosine_min": round(float(cos.min()), 5)}
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
