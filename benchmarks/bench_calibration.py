"""Can the suggestions' confidence be trusted after the annotator labels whole clusters?

The annotator of the dashboard's main flow labels whole clusters, largest first (the
cluster list's default order), each with the label most of its members carry (they
see the members; the simulated annotator here reads that majority from the truth
file, as ``labeler evaluate``'s ``cluster`` strategy does). After each cluster the
suggestion model (:mod:`labeler.assist.model`, method ``combined``) predicts every
other image. Its confidence is calibrated on out-of-fold predictions of the labelled
images, with the folds

* ``image``: by image (before): members of one cluster sit on both sides of a fold;
* ``cluster``: grouped by cluster (after, what :func:`labeler.assist.suggest.suggest`
  does): the confidence is what held-out *clusters* support.

Printed per truth column and number of clusters labelled: the share of unlabelled
images suggested at confidence >= 0.95 (what "accept all >= 0.95" would take), the
precision of those (target: >= 0.95, or the threshold means nothing), how many of
them are wrong, and the expected calibration error (ECE, 10 bins) over all
unlabelled images.

Run:  python benchmarks/bench_calibration.py        (the demo's data/projects/elpv and data/elpv/truth.csv)
      python benchmarks/bench_calibration.py --project P --truth T --columns cell_type --json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from labeler.assist import model as assist_model
from labeler.assist.graph import build_knn_graph
from labeler.assist.suggest import clusters_by_row, load_features
from labeler.evaluate.truth import align_truth, read_truth
from labeler.project import Project

from common import add_project_argument, add_truth_argument, existing

THRESHOLD = 0.95


def run_column(project: Project, truth_path: str, column: str, x, graph, steps: list[int]) -> list[dict]:
    truth, _ = read_truth(truth_path, column)
    t_rows, t_y, classes, _ = align_truth(project, truth)
    y = np.full(len(x), -1, np.int64)
    y[t_rows] = t_y
    cl = clusters_by_row(project, len(x))
    sizes = np.bincount(cl[cl >= 0])
    order = np.argsort(-sizes, kind="stable")  # the cluster list's default: largest first
    out = []
    for n in steps:
        members = np.flatnonzero(np.isin(cl, order[:n]) & (y >= 0))
        rows, codes = [], []
        for c in order[:n]:
            m = np.flatnonzero((cl == c) & (y >= 0))
            if len(m):
                rows.append(m)
                codes.append(np.full(len(m), np.bincount(y[m]).argmax()))  # the cluster's majority
        rows, codes = np.concatenate(rows), np.concatenate(codes)
        rest = np.setdiff1d(np.flatnonzero(y >= 0), members)
        row = {"column": column, "clusters_labelled": n, "labelled": int(len(rows)),
               "classes_seen": int(len(np.unique(codes)))}
        if len(np.unique(codes)) < 2:
            row["note"] = "one class seen: no confidence claimed"
            out.append(row)
            continue
        for folds in ("image", "cluster"):
            t0 = time.perf_counter()
            pred, _ = assist_model.predict(x, graph, rows, codes, [str(c) for c in classes],
                                           clusters=cl if folds == "cluster" else None)
            conf, ok = pred.confidence[rest], pred.label[rest] == y[rest]
            sure = conf >= THRESHOLD
            row[folds] = {
                "share_ge_095": round(float(sure.mean()), 4),
                "precision_ge_095": round(float(ok[sure].mean()), 4) if sure.any() else None,
                "wrong_ge_095": int((sure & ~ok).sum()),
                "accuracy": round(float(ok.mean()), 4),
                "ece": round(float(assist_model.expected_calibration_error(conf, ok)), 4),
                "seconds": round(time.perf_counter() - t0, 2),
            }
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_project_argument(ap)
    add_truth_argument(ap)
    ap.add_argument("--columns", default="cell_type,defective,defect_level")
    ap.add_argument("--steps", default="2,3,5,10,20", help="numbers of clusters labelled")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    existing(a.truth, "truth")
    project = Project(existing(a.project, "project"))
    x, _ = load_features(project, "pca")
    graph = build_knn_graph(x, 10)
    steps = [int(s) for s in a.steps.split(",")]
    results = []
    print(f"{'column':<13}{'clusters':>9}{'labels':>7}  {'folds':<8}{'>=0.95':>8}{'precision':>10}"
          f"{'wrong':>7}{'accuracy':>9}{'ECE':>7}")
    for column in a.columns.split(","):
        for row in run_column(project, a.truth, column, x, graph, steps):
            results.append(row)
            if "note" in row:
                print(f"{column:<13}{row['clusters_labelled']:>9}{row['labelled']:>7}  {row['note']}")
                continue
            for folds in ("image", "cluster"):
                r = row[folds]
                prec = "-" if r["precision_ge_095"] is None else f"{r['precision_ge_095']:.3f}"
                print(f"{column:<13}{row['clusters_labelled']:>9}{row['labelled']:>7}  {folds:<8}"
                      f"{r['share_ge_095']:>8.3f}{prec:>10}{r['wrong_ge_095']:>7}{r['accuracy']:>9.3f}{r['ece']:>7.3f}")
    print(f"command: python benchmarks/bench_calibration.py --project {a.project} --truth {a.truth} "
          f"--columns {a.columns} --steps {a.steps}")
    if a.json:
        print(json.dumps({"threshold": THRESHOLD, "results": results}))


if __name__ == "__main__":
    main()
