"""End-to-end embedding speed: decode + preprocess + forward through ``embed_files``.

Writes N realistic 300x300 JPEG photos (random crops of scikit-image / scikit-learn
photos and ELPV solar cells) to a temp dir, then reports images/s per backbone and
batch size, beside

* the FLOP cap: measured fp32 GEMM GFLOP/s of this machine / (2 x MACs per image)
  (ResNet-50 4.1 GMACs, He et al. 2016 / torchvision docs; EfficientNet-Lite0
  0.41 GMACs, TF EfficientNet-Lite README), and
* the naive way: one image at a time through an eager channels-first model, the
  decoding in the same thread.

ResNet-50 uses random weights (speed does not depend on them): the private
``backbones._build(..., state_dict=None)``, which production code never calls.

Run:  python benchmarks/bench_embed.py            (~3 min on 2 cores)
      python benchmarks/bench_embed.py -n 64 --batch-sizes 16 --backbones efficientnet-lite0
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labeler import images  # noqa: E402
from labeler.embedding import backbones  # noqa: E402
from labeler.embedding.extract import default_num_workers, embed_files  # noqa: E402
from labeler.embedding.registry import get_spec  # noqa: E402


def write_photos(dest: Path, n: int, seed: int = 0) -> list[Path]:
    """n random 300x300 crops/resizes of real photos, saved as JPEG quality 90."""
    import skimage.data
    from sklearn.datasets import load_sample_image

    sources = [getattr(skimage.data, k)() for k in ("astronaut", "chelsea", "coffee")]
    sources += [load_sample_image(k) for k in ("china.jpg", "flower.jpg")]
    try:
        import elpv_dataset

        elpv = sorted((Path(elpv_dataset.__file__).parent / "data" / "images").glob("*.png"))[:20]
    except ImportError:  # e.g. on a GPU machine without the 90 MB data package
        elpv = []
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        if i % 4 == 3 and elpv:
            img = Image.open(elpv[i % len(elpv)]).convert("RGB")
        else:
            a = sources[i % len(sources)]
            h, w = a.shape[:2]
            side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            img = Image.fromarray(a[y:y + side, x:x + side]).convert("RGB")
        img = img.resize((300, 300), Image.Resampling.BILINEAR)
        p = dest / f"photo_{i:05d}.jpg"
        img.save(p, quality=90)
        paths.append(p)
    return paths


def gemm_gflops(seconds: float = 1.0) -> float:
    """Measured fp32 matrix-multiply throughput with torch's current threads."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    t0, k = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        a @ b
        k += 1
    return 2 * 1024**3 * k / (time.perf_counter() - t0) / 1e9


def run_embed(items, bb, batch_size, num_workers, device="cpu", precision="fp32") -> float:
    t0 = time.perf_counter()
    n = sum(len(b.ids) for b in embed_files(items, bb, batch_size=batch_size, num_workers=num_workers,
                                            progress=False, device=device, precision=precision))
    return n / (time.perf_counter() - t0)


def run_naive(paths, name, n) -> float:
    """One image at a time: decode, torchvision-style preprocessing, eager NCHW model."""
    bb = backbones._build(name, None)
    net = bb.model.net.to(memory_format=torch.contiguous_format)  # default layout
    t0 = time.perf_counter()
    with torch.no_grad():
        for p in paths[:n]:
            net(bb.preprocess(images.load_image(p))[None])
    return n / (time.perf_counter() - t0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=256, help="number of photos (default 256)")
    ap.add_argument("--batch-sizes", default="1,16,64")
    ap.add_argument("--backbones", default="resnet50,efficientnet-lite0")
    ap.add_argument("--num-workers", type=int, default=None)
    ap.add_argument("--naive-n", type=int, default=24, help="images for the naive baseline")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = ap.parse_args(argv)
    workers = default_num_workers() if args.num_workers is None else args.num_workers
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, num_workers={workers}")
    gflops = gemm_gflops()
    print(f"fp32 GEMM: {gflops:.0f} GFLOP/s measured")
    with tempfile.TemporaryDirectory() as d:
        paths = write_photos(Path(d), args.n)
        items = list(enumerate(paths))
        for name in args.backbones.split(","):
            bb = backbones._build(name, None)
            cap = gflops * 1e9 / get_spec(name).flops
            naive = run_naive(paths, name, min(args.naive_n, args.n))
            print(f"\n{name}: FLOP cap {cap:.1f} img/s; naive one-at-a-time {naive:.1f} img/s")
            run_embed(items[: min(32, len(items))], bb, 16, workers, args.device, args.precision)  # warm-up
            for bs in (int(b) for b in args.batch_sizes.split(",")):
                ips = run_embed(items, bb, bs, workers, args.device, args.precision)
                print(f"  embed_files batch {bs:3d}: {ips:6.1f} img/s ({ips / cap:.0%} of cap)", flush=True)
    print("\nreproduce: python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]]))


if __name__ == "__main__":
    main()
