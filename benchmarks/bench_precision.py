"""Is the opt-in bf16 mode safe? Speed and accuracy of bf16 against fp32 embeddings.

For each backbone, embeds N real ELPV solar-cell photos twice (fp32, then bf16
autocast) through ``embed_files`` and prints:

* images/s end to end for both;
* cosine similarity of each image's bf16 embedding to its fp32 one (min, mean):
  the goal for an opt-in mode is >= 0.99;
* leave-one-out precision@10 of the cell type (mono/poly) on 256-d PCA vectors
  for both: the goal is "unchanged".

ResNet-50 has no pretrained weights offline; it is measured with the weights from
``--weights FILE``/``LABELER_WEIGHTS`` when given, else with random weights (speed
only is meaningful then; its accuracy rows are marked).

Run:  python benchmarks/bench_precision.py             (~4 min on 2 cores)
      python benchmarks/bench_precision.py -n 256 --backbones efficientnet-lite0
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labeler.embedding import backbones  # noqa: E402
from labeler.demo import elpv_source, read_elpv_labels  # noqa: E402
from labeler.embedding.extract import embed_files  # noqa: E402
from labeler.index import ExactIndex  # noqa: E402
from labeler.reduce import fit_pca  # noqa: E402


def precision_at_10(vectors: np.ndarray, truth: np.ndarray) -> float:
    idx = ExactIndex(vectors)
    _, rows = idx.search(vectors, 10, exclude=np.arange(len(vectors)))
    return float((truth[rows] == truth[:, None]).mean())


def embed(items, bb, precision):
    t0 = time.perf_counter()
    feats = np.concatenate([b.features for b in embed_files(items, bb, batch_size=16, progress=False,
                                                             precision=precision)])
    return feats, len(items) / (time.perf_counter() - t0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=512, help="ELPV photos (spread over the set)")
    ap.add_argument("--backbones", default="efficientnet-lite0,resnet50")
    args = ap.parse_args(argv)
    src = elpv_source()
    rows = read_elpv_labels(src)
    pick = np.linspace(0, len(rows) - 1, args.n).astype(int)
    items = [(i, src / rows[i]["file"]) for i in pick]
    truth = np.array([rows[i]["cell_type"] for i in pick])
    for name in args.backbones.split(","):
        try:
            bb, note = backbones.load_backbone(name, weights=os.environ.get("LABELER_WEIGHTS"), download=False), ""
        except backbones.WeightsNotFoundError:
            bb, note = backbones._build(name, None), " (random weights: accuracy rows not meaningful)"
        embed(items[:32], bb, "fp32")  # warm-up
        f32, s32 = embed(items, bb, "fp32")
        f16, s16 = embed(items, bb, "bf16")
        cos = (f32 * f16).sum(1) / (np.linalg.norm(f32, axis=1) * np.linalg.norm(f16, axis=1))
        p32 = precision_at_10(fit_pca(f32, 256).vectors, truth)
        p16 = precision_at_10(fit_pca(f16, 256).vectors, truth)
        print(f"{name}{note}: {len(items)} ELPV photos, batch 16")
        print(f"  fp32 {s32:6.1f} img/s   bf16 {s16:6.1f} img/s   ({s16 / s32:.2f}x)")
        print(f"  cosine(bf16, fp32): min {cos.min():.4f}  mean {cos.mean():.4f}")
        print(f"  precision@10 cell type: fp32 {p32:.4f}  bf16 {p16:.4f}", flush=True)
    print("\nreproduce: python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]]))


if __name__ == "__main__":
    main()
