"""End-to-end embedding speed: decode + preprocess + forward through ``embed_files``, per runtime.

Writes N realistic 300x300 JPEG photos (random crops of scikit-image / scikit-learn
photos and ELPV solar cells) to a temp dir, then reports, in one run, images/s of

* the cap: this CPU's measured convolution peak (a 3x3, 256 -> 256 channel, 56x56
  fp32 convolution through oneDNN in torch, channels_last, GFLOP/s) divided by the
  backbone's FLOPs per image (2 x GMACs from the registry: ResNet-50 4.09, torchvision
  model card; EfficientNet-Lite0 0.41, TF EfficientNet-Lite README);
* the naive way: one image at a time through an eager channels-first model, the
  decoding in the same thread;
* ``embed_files`` on torch per batch size, and on ONNX Runtime (fp32; int8 with
  ``--int8``, calibrated on the benchmark's own photos, held to its own cap: the same
  convolution quantised as the product quantises, on ONNX Runtime), each with the minimum cosine
  similarity of its features to torch fp32's, for each feature type of ``--features``
  (``global``, ``multistage``, ``multiscale``: labeler.embedding.local_features; each
  has its own ONNX export), and the ratio ONNX Runtime / torch (best batch size) per type.

ResNet-50 uses random weights (its ImageNet weights are not available offline; speed
does not depend on them; its int8 cosine is then not meaningful):
``backbones._build(..., state_dict=None)``, which production code never calls.
EfficientNet-Lite0 uses its real bundled weights.

Run:  python benchmarks/bench_embed.py --int8        (~5 min on 2 cores)
      python benchmarks/bench_embed.py -n 64 --batch-sizes 16 --backbones efficientnet-lite0 --json
      python benchmarks/bench_embed.py -n 128 --batch-sizes 16 --backbones efficientnet-lite0 \
          --features global,multistage --json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from labeler import images
from labeler.embedding import backbones
from labeler.embedding.extract import default_num_workers, embed_files
from labeler.embedding.local_features import feature_backbone
from labeler.embedding.registry import FEATURE_TYPES
from labeler.embedding.registry import get_spec
from labeler.embedding.runtime import OrtEngine, cosine_rows, onnx_model, quantize_int8


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


CONV = (8, 256, 56)  # the peak's convolution: batch, channels in = out, height = width (3x3, padding 1)


def _rate(fn, seconds: float) -> tuple[float, int]:
    """(G operations/s, calls) of ``fn`` (one call = the CONV convolution) over ``seconds``."""
    n, c, hw = CONV
    fn()
    t0, k = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        fn()
        k += 1
    return 2 * n * c * c * 9 * hw * hw * k / (time.perf_counter() - t0) / 1e9, k


def conv_gflops(seconds: float = 2.0) -> tuple[float, str]:
    """Measured fp32 convolution throughput (oneDNN through torch, current threads)."""
    n, c, hw = CONV
    x = torch.randn(n, c, hw, hw).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        rate, k = _rate(lambda: conv(x), seconds)
    return rate, (f"3x3 conv {c}->{c} ch, {n}x{hw}x{hw}, channels_last: {2 * n * c * c * 9 * hw * hw / 1e9:.1f} "
                  f"GFLOP x {k} in {seconds:.0f} s")


def int8_conv_gops(dest: Path, seconds: float = 2.0) -> tuple[float, str]:
    """Measured int8 convolution throughput on ONNX Runtime (the CPU's real int8 limit).

    The same convolution as :func:`conv_gflops`, exported to ONNX and quantised exactly
    as the product quantises a backbone (:func:`labeler.embedding.runtime.quantize_int8`:
    QDQ, per-channel int8 weights, uint8 activations), timed on ONNX Runtime's CPU
    execution provider with the process's threads. Returns (GOP/s, how), one
    multiply-add = 2 operations.
    """
    n, c, hw = CONV
    conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).eval()
    x = torch.randn(n, c, hw, hw)

    class Net(torch.nn.Module):  # the product's ONNX interface: input -> features, logits
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, inp):
            y = self.conv(inp)
            return y, y

    fp32 = dest / "conv-fp32.onnx"
    with torch.inference_mode():
        torch.onnx.export(Net().eval(), (x,), str(fp32), input_names=["input"], output_names=["features", "logits"],
                          opset_version=17, dynamo=False)
    engine = OrtEngine(quantize_int8(fp32, x.numpy(), dest / "conv-int8.onnx"), "int8")
    rate, k = _rate(lambda: engine(x), seconds)
    return rate, f"the same conv quantised (QDQ u8s8) on ONNX Runtime, {k} calls in {seconds:.0f} s"


def run_embed(items, bb, batch_size, num_workers, **kw) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    feats = [b.features for b in embed_files(items, bb, batch_size=batch_size, num_workers=num_workers,
                                             progress=False, **kw)]
    feats = np.concatenate(feats)
    return len(feats) / (time.perf_counter() - t0), feats


def run_naive(paths, bb, n) -> float:
    """One image at a time: decode, torchvision-style preprocessing, eager NCHW model."""
    net = bb.model.net.to(memory_format=torch.contiguous_format)  # default layout
    t0 = time.perf_counter()
    with torch.no_grad():
        for p in paths[:n]:
            net(bb.preprocess(images.load_image(p))[None])
    elapsed = time.perf_counter() - t0
    bb.model.to(memory_format=torch.channels_last)
    return n / elapsed


def _backbone(name):
    try:
        return backbones.load_backbone(name, download=False), "ImageNet weights"
    except backbones.WeightsNotFoundError:
        torch.manual_seed(0)  # the same random weights each run: the exported ONNX is reused
        return backbones._build(name, None), "random weights (speed only)"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=256, help="number of photos (default 256)")
    ap.add_argument("--batch-sizes", default="16,64", help="for the torch path")
    ap.add_argument("--ort-batch-size", type=int, default=16)
    ap.add_argument("--backbones", default="resnet50,efficientnet-lite0")
    ap.add_argument("--num-workers", type=int, default=None)
    ap.add_argument("--naive-n", type=int, default=24, help="images for the naive baseline")
    ap.add_argument("--features", default="global",
                    help=f"comma-separated feature types, of {','.join(FEATURE_TYPES)} (default global)")
    ap.add_argument("--int8", action="store_true", help="also ONNX Runtime int8 (quantisation takes ~1 min)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    feature_types = args.features.split(",")
    bad = [t for t in feature_types if t not in FEATURE_TYPES]
    if bad:
        ap.error(f"unknown feature type(s) {bad}; expected {FEATURE_TYPES}")
    workers = default_num_workers() if args.num_workers is None else args.num_workers
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, num_workers={workers}")
    peak, how = conv_gflops()
    print(f"convolution peak: {peak:.0f} GFLOP/s measured ({how})")
    out = {"cap_img_s": None, "naive_img_s": None, "conv_gflop_s": round(peak, 1), "results": [],
           "ort_over_torch": {}}
    with tempfile.TemporaryDirectory() as d:
        peak8 = None
        if args.int8:
            peak8, how8 = int8_conv_gops(Path(d))
            out["int8_conv_gop_s"] = round(peak8, 1)
            print(f"int8 convolution peak: {peak8:.0f} GOP/s measured ({how8}); {peak8 / peak:.2f}x fp32")
        paths = write_photos(Path(d), args.n)
        items = list(enumerate(paths))
        for name in args.backbones.split(","):
            bb, weights = _backbone(name)
            spec = get_spec(name)
            cap = peak * 1e9 / spec.flops
            naive = run_naive(paths, bb, min(args.naive_n, args.n))
            print(f"\n{name} ({weights}): cap {peak:.0f} GFLOP/s / {spec.flops / 1e9:.2f} GFLOP per image "
                  f"= {cap:.1f} img/s; naive one-at-a-time {naive:.1f} img/s")
            if out["cap_img_s"] is None:
                out["cap_img_s"], out["naive_img_s"] = round(cap, 2), round(naive, 2)

            for ft in feature_types:
                fb = feature_backbone(bb, ft)
                fcap = cap if ft != "multiscale" else cap / 5  # 1 + 4 pixels of the base size
                print(f" {ft} features ({fb.dim}-d, {fb.input_size} px):")

                def report(runtime, precision, bs, ips, cos):
                    c = "" if cos is None else f", cosine to torch fp32 min {cos:.5f}"
                    # fp32 is held to the fp32 convolution peak, int8 to the measured int8 one.
                    cap8 = None if peak8 is None else fcap * peak8 / peak
                    of_cap = (f"{ips / fcap:.0%} of cap" if precision == "fp32" else
                              f"{ips / cap8:.0%} of the int8 cap {cap8:.0f} img/s, {ips / fcap:.2f}x the fp32 cap")
                    print(f"  {runtime:11s} {precision} batch {bs:3d}: {ips:6.1f} img/s ({of_cap}, "
                          f"{ips / naive:.2f}x naive){c}", flush=True)
                    out["results"].append({"backbone": name, "features": ft, "runtime": runtime,
                                           "precision": precision, "device": "cpu", "batch_size": bs,
                                           "img_s": round(ips, 2),
                                           "cosine_to_fp32": None if cos is None else round(cos, 6)})

                run_embed(items[: min(32, len(items))], fb, 16, workers, runtime="torch")  # warm-up
                ref, best_torch = None, 0.0
                for bs in (int(b) for b in args.batch_sizes.split(",")):
                    ips, feats = run_embed(items, fb, bs, workers, runtime="torch")
                    ref = feats if ref is None else ref
                    best_torch = max(best_torch, ips)
                    report("torch", "fp32", bs, ips, None if ref is feats else float(cosine_rows(feats, ref).min()))
                bs = args.ort_batch_size
                said = []
                run_embed(items[: min(32, len(items))], fb, bs, workers, runtime="onnxruntime",
                          warn=said.append)  # export + verify
                ips, feats = run_embed(items, fb, bs, workers, runtime="onnxruntime")
                if said:
                    print("  " + " / ".join(said))
                report("onnxruntime", "fp32", bs, ips, float(cosine_rows(feats, ref).min()))
                out["ort_over_torch"][f"{name}/{ft}"] = round(ips / best_torch, 2)
                print(f"  onnxruntime / torch (best batch size): {ips / best_torch:.2f}x")
                if args.int8:
                    calib = torch.stack([fb.preprocess(images.load_image(p)) for p in paths[:32]]).numpy()
                    t0 = time.perf_counter()
                    q = quantize_int8(onnx_model(fb), calib, Path(d) / f"{name}-{ft}-int8.onnx")
                    print(f"  (int8 quantisation on 32 of the photos: {time.perf_counter() - t0:.0f} s)")
                    engine = OrtEngine(q, "int8")
                    run_embed(items[: min(32, len(items))], fb, bs, workers, engine=engine)
                    ips, feats = run_embed(items, fb, bs, workers, engine=engine)
                    report("onnxruntime", "int8", bs, ips, float(cosine_rows(feats, ref).min()))
    print("\nreproduce: python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]]))
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
