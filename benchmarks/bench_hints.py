"""ImageNet class hints: how many would be shown at each probability threshold.

A hint ("ImageNet hint: shoji (p=0.62)") is shown only when the backbone's
softmax probability of its top-1 class is at least a threshold
(``Settings.imagenet_hint_min_prob``, :mod:`labeler.hints`). This measures, per
threshold, the share of a project's images whose hint would be shown (on an
inspection collection such as ELPV the classes are noise: the fewer the better)
and the share of natural photos (scikit-image's and scikit-learn's bundled
photos: an astronaut, a cat, coffee, a rocket, a pagoda, a flower) whose hint would be shown (the more the better),
with each photo's class and probability. The photos are queried through the
project's own backbone (``Searcher.by_files``), exactly as ``labeler search`` and
the dashboard's upload do; nothing is written to the project.

Reproduce::

    python benchmarks/bench_hints.py --project data/projects/elpv --json   # the demo's project (default)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from labeler.project import Project
from labeler.search import Searcher

from common import add_project_argument, existing

#: Photos of things ImageNet has classes for, shipped with scikit-image and scikit-learn.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "china", "flower")
THRESHOLDS = (0.3, 0.5, 0.7)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_project_argument(ap)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import skimage.data
    from PIL import Image
    from sklearn.datasets import load_sample_image

    project = Project(existing(args.project, "project"))
    prob = np.array([r["top1_prob"] for r in project.store.image_table() if r["top1_prob"] is not None], float)
    print(f"{args.project}: {len(prob)} images, top-1 probability median {np.median(prob):.3f}, "
          f"95th percentile {np.percentile(prob, 95):.3f}, max {prob.max():.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for name in PHOTOS:
            try:
                arr = load_sample_image(f"{name}.jpg") if name in ("china", "flower") else getattr(skimage.data, name)()
            except Exception as e:  # a photo that needs a download: leave it out, say so
                print(f"  skip {name}: {e}")
                continue
            path = Path(tmp) / f"{name}.png"
            Image.fromarray(arr).convert("RGB").save(path)
            files.append(path)
        results = Searcher(project).by_files(files, k=1)
    photos = {}
    for path, res in zip(files, results):
        photos[path.stem] = (getattr(res, "top1_class", None), getattr(res, "top1_prob", None))
        print(f"  {path.stem:16s} {photos[path.stem][0]!s:24s} p={photos[path.stem][1]:.3f}")
    nat = np.array([p for _, p in photos.values() if p is not None], float)
    out = {"project": str(args.project), "n_images": int(len(prob)), "photos": photos, "shown": {}}
    print(f"{'threshold':>9}  {'project shown':>13}  {'photos shown':>12}")
    for t in THRESHOLDS:
        a, b = float((prob >= t).mean()), float((nat >= t).mean()) if len(nat) else float("nan")
        out["shown"][str(t)] = {"project": round(a, 4), "photos": round(b, 4)}
        print(f"{t:>9.1f}  {100 * a:>12.1f}%  {100 * b:>11.0f}%")
    print(f"reproduce: python benchmarks/bench_hints.py --project {args.project}")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
