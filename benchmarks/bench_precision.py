"""Are the opt-in precisions and runtimes safe? Speed and accuracy against torch fp32 embeddings.

For each backbone, embeds N real ELPV solar-cell photos through ``embed_files`` with
torch fp32 (the reference), torch bf16, ONNX Runtime fp32 and ONNX Runtime int8
(static quantisation calibrated on 128 of the same collection's photos, as
``labeler ingest --precision int8`` does), and prints for each:

* images/s end to end;
* cosine similarity of each image's embedding to its torch fp32 one (min, mean);
* leave-one-out precision@10 of the cell type (mono/poly) on 256-d PCA vectors, and
  its change from fp32.

The gate for int8 (issue 12): min cosine >= 0.99 and precision@10 within 0.01 of
fp32; the line says whether it passes. ``labeler`` itself checks the cosine on
held-out images of the user's collection before accepting int8.

ResNet-50 has no pretrained weights offline; it is measured with the weights from
``--weights FILE``/``LABELER_WEIGHTS`` when given, else with random weights (speed
only is meaningful then; its accuracy rows are marked).

Run:  python benchmarks/bench_precision.py                (~6 min on 2 cores)
      python benchmarks/bench_precision.py -n 256 --backbones efficientnet-lite0 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from labeler.demo import elpv_source, read_elpv_labels
from labeler.embedding import backbones
from labeler.embedding.extract import embed_files
from labeler.embedding.runtime import OrtEngine, cosine_rows, onnx_model, ort_available, quantize_int8
from labeler.images import load_image
from labeler.index import ExactIndex
from labeler.reduce import fit_pca


def precision_at_10(vectors: np.ndarray, truth: np.ndarray) -> float:
    idx = ExactIndex(vectors)
    _, rows = idx.search(vectors, 10, exclude=np.arange(len(vectors)))
    return float((truth[rows] == truth[:, None]).mean())


def embed(items, bb, **kw):
    t0 = time.perf_counter()
    feats = np.concatenate([b.features for b in embed_files(items, bb, batch_size=16, progress=False, **kw)])
    return feats, len(items) / (time.perf_counter() - t0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=512, help="ELPV photos (spread over the set)")
    ap.add_argument("--backbones", default="efficientnet-lite0,resnet50")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    src = elpv_source()
    rows = read_elpv_labels(src)
    pick = np.linspace(0, len(rows) - 1, args.n).astype(int)
    items = [(i, src / rows[i]["file"]) for i in pick]
    truth = np.array([rows[i]["cell_type"] for i in pick])
    out = {"n": len(items), "results": []}
    for name in args.backbones.split(","):
        try:
            bb, note = backbones.load_backbone(name, weights=os.environ.get("LABELER_WEIGHTS"), download=False), ""
        except backbones.WeightsNotFoundError:
            bb, note = backbones._build(name, None), " (random weights: accuracy rows not meaningful)"
        embed(items[:32], bb)  # warm-up
        ref, s_ref = embed(items, bb)
        p_ref = precision_at_10(fit_pca(ref, 256).vectors, truth)
        print(f"{name}{note}: {len(items)} ELPV photos, batch 16")
        rows_out = [("torch", "fp32", ref, s_ref)]
        feats, speed = embed(items, bb, precision="bf16")
        rows_out.append(("torch", "bf16", feats, speed))
        if ort_available():
            embed(items[:32], bb, runtime="onnxruntime")  # export + verify
            feats, speed = embed(items, bb, runtime="onnxruntime")
            rows_out.append(("onnxruntime", "fp32", feats, speed))
            with tempfile.TemporaryDirectory() as d:
                calib = np.stack([bb.preprocess(load_image(p)).numpy() for _, p in items[:128]])
                engine = OrtEngine(quantize_int8(onnx_model(bb), calib, Path(d) / "int8.onnx"), "int8")
                embed(items[:32], bb, engine=engine)
                feats, speed = embed(items, bb, engine=engine)
                rows_out.append(("onnxruntime", "int8", feats, speed))
        for runtime, precision, feats, speed in rows_out:
            cos = cosine_rows(feats, ref)
            p = p_ref if feats is ref else precision_at_10(fit_pca(feats, 256).vectors, truth)
            gate = ""
            if precision == "int8":
                ok = cos.min() >= 0.99 and abs(p - p_ref) <= 0.01
                gate = f"  int8 gate (cosine >= 0.99, |dP@10| <= 0.01): {'PASS' if ok else 'FAIL'}"
            print(f"  {runtime:11s} {precision}: {speed:6.1f} img/s ({speed / s_ref:.2f}x torch fp32)  "
                  f"cosine to fp32 min {cos.min():.4f} mean {cos.mean():.4f}  "
                  f"precision@10 {p:.4f} ({p - p_ref:+.4f}){gate}", flush=True)
            out["results"].append({"backbone": name, "runtime": runtime, "precision": precision,
                                   "img_s": round(speed, 2), "cosine_min": round(float(cos.min()), 6),
                                   "cosine_mean": round(float(cos.mean()), 6), "precision_at_10": round(p, 4),
                                   "precision_at_10_fp32": round(p_ref, 4), "weights": "random" if note else "imagenet"})
    print("\nreproduce: python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]]))
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
