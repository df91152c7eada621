"""Does ``labeler review`` find wrong labels? Planted flips on ELPV cell types.

Labels every ELPV photo of an ingested project with its true cell type (mono /
poly), flips 5 % of them at random (the "wrong" labels), runs
:func:`labeler.review.review_labels` and prints, per seed:

* the flagged list (cleanlab ``find_label_issues``): its size, precision (flips
  among the flagged) and recall (flips flagged);
* precision among the top 5 % of the flagged list (its first n_flipped entries,
  or all of it when shorter; the issue's target is >= 0.8) and the recall there.

The project is copied first (the original is not written to). Without
``--project`` the 2,624 ELPV photos are ingested into ``--workdir`` (minutes).

Run:  python benchmarks/bench_review.py --project /path/to/elpv-project --json
      python benchmarks/bench_review.py --seeds 0 1 2 --vectors embeddings
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labeler.config import Settings  # noqa: E402
from labeler.demo import prepare_elpv, read_elpv_labels  # noqa: E402
from labeler.pipeline import ingest  # noqa: E402
from labeler.project import Project  # noqa: E402
from labeler.review import review_labels  # noqa: E402


def run_seed(src: Path, work: Path, seed: int, rate: float, vectors: str) -> dict:
    dest = work / f"seed{seed}"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("thumbs", "parts", "*.tmp"))
    project = Project(dest)
    st = project.store
    truth = {Path(r["file"]).name: r["cell_type"] for r in read_elpv_labels()}
    ids = {r["path"]: r["id"] for r in st.image_table() if Path(r["path"]).name in truth}
    true_of = {i: truth[Path(p).name] for p, i in ids.items()}
    for lab in ("mono", "poly"):
        st.set_labels([i for i, t in true_of.items() if t == lab], lab, annotator="truth")
    rng = np.random.default_rng(seed)
    n_flip = int(round(rate * len(ids)))
    flipped = {int(i) for i in rng.choice(sorted(true_of), size=n_flip, replace=False)}
    for i in sorted(flipped):
        st.set_labels([i], "poly" if true_of[i] == "mono" else "mono", annotator="flip")
    t0 = time.perf_counter()
    rep = review_labels(project, vectors=vectors)
    seconds = time.perf_counter() - t0
    flagged = [it.image_id for it in rep.issues]
    hit = flipped & set(flagged)
    # the flagged list is ranked; below it, the unflagged are by definition less suspicious
    top = flagged[:n_flip]
    suggested_ok = sum(1 for it in rep.issues if it.image_id in flipped and it.suggested_label == true_of[it.image_id])
    project.store.close()
    shutil.rmtree(dest, ignore_errors=True)
    return {"seed": seed, "n_images": len(ids), "n_flipped": n_flip, "n_flagged": len(flagged),
            "precision": round(len(hit) / max(1, len(flagged)), 4), "recall": round(len(hit) / n_flip, 4),
            "precision_top5pct": round(len(flipped & set(top)) / max(1, len(top)), 4),
            "recall_top5pct": round(len(flipped & set(top)) / n_flip, 4),
            "suggested_label_correct": round(suggested_ok / max(1, len(hit)), 4),
            "probe_accuracy": round(rep.probe_accuracy, 4), "seconds": round(seconds, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, default=None, help="An ingested ELPV project (read only).")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/labeler-bench-review"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rate", type=float, default=0.05, help="Share of labels flipped.")
    ap.add_argument("--vectors", choices=["pca", "embeddings"], default="pca")
    ap.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")
    args = ap.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    src = args.project
    if src is None:
        src = args.workdir / "elpv-project"
        if not (src / "pca.npy").is_file():
            img, _ = prepare_elpv(args.workdir / "elpv")
            ingest(img, src, Settings(backbone="efficientnet-lite0"), progress=False)
    results = [run_seed(src, args.workdir, s, args.rate, args.vectors) for s in args.seeds]
    print(f"ELPV cell type, {results[0]['n_images']} images, {results[0]['n_flipped']} labels flipped "
          f"({args.rate:.0%}), probe on {args.vectors}")
    print(f"{'seed':>4}  {'flagged':>7}  {'precision':>9}  {'recall':>6}  {'P@top5%':>7}  "
          f"{'suggestion ok':>13}  {'probe acc':>9}  {'s':>5}")
    for r in results:
        print(f"{r['seed']:>4}  {r['n_flagged']:>7}  {r['precision']:>9.3f}  {r['recall']:>6.3f}  "
              f"{r['precision_top5pct']:>7.3f}  {r['suggested_label_correct']:>13.3f}  {r['probe_accuracy']:>9.3f}  "
              f"{r['seconds']:>5.1f}")
    mean = {k: round(float(np.mean([r[k] for r in results])), 4)
            for k in ("precision", "recall", "precision_top5pct")}
    print(f"mean: precision {mean['precision']:.3f}, recall {mean['recall']:.3f}, "
          f"precision among the top 5 % {mean['precision_top5pct']:.3f} (target >= 0.8)")
    print("command: " + " ".join(shlex.quote(a) for a in ["python", *sys.argv]))
    if args.json:
        print(json.dumps({"rate": args.rate, "vectors": args.vectors, "mean": mean, "runs": results}))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
