"""Imported predictions of a deliberately weak classifier: do they make accepted suggestions
more wrong? (issue 22, "Done when": predictions from a classifier trained on 50 labels.)

1. A weak classifier: logistic regression (scikit-learn, default C) on the L2-normalised
   backbone embeddings of 50 random images with their truth (``--column``, default
   ``defective``). Its class probabilities for every image are written to a CSV
   (path, label, score; one row per image and class).
2. The project is copied to a temporary folder (the original is never written) and the
   CSV imported there with the product's ``import_predictions`` (source ``weak-logreg``);
   the expert the suggestions then consult is read back from the copy
   (:func:`labeler.assist.experts.project_experts`).
3. Two arms in the same run, everything else equal:

   - **flow**: the product's labelling flow (:func:`labeler.assist.simulate.queue_flow`:
     label the queue's next 5 items, refresh, bulk-accept each class's suggestions at
     vouched confidence >= threshold; ``--max-actions`` actions; ``--flow-seeds`` queue seeds) without and with the
     predictions, at each ``--thresholds``;
   - **fixed**: ``--seeds`` random labelled subsets of ``--budgets`` images: the
     suggestions at vouched confidence >= threshold, and the largest set per class
     expected <= 5 % wrong (``accept --max-expected-error 0.05``), without and with.

   The figure that matters: the share of accepted suggestions that are wrong, without
   vs with the predictions (same threshold or budget).

Reproduce (defaults: the demo's project and truth)::

    python benchmarks/bench_predictions.py --project data/projects/elpv --truth data/elpv/truth.csv --json
    python benchmarks/bench_predictions.py --column cell_type --max-actions 200

With ``--json`` the last line is one JSON object: {"classifier": {...}, "expert": {...},
"flow": {"<threshold>": {"without": {...}, "with": {...}}}, "fixed": {...}}.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common
from labeler.assist import model as assist_model
from labeler.assist.acceptance import budget_size
from labeler.assist.experts import project_experts
from labeler.assist.predictions import import_predictions
from labeler.assist.simulate import queue_flow
from labeler.assist.suggest import clusters_by_row, knn_graph, load_features
from labeler.project import Project

SOURCE = "weak-logreg"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def truth_rows(project: Project, truth_csv: Path, column: str) -> tuple[np.ndarray, list[str], list[str]]:
    """(y (n_rows,) int64 codes, class names, path of each row)."""
    with open(truth_csv, newline="") as f:
        by_path = {r["path"]: r[column] for r in csv.DictReader(f)}
    ids = project.store.row_image_ids()
    path_of = {r["id"]: p for p, r in project.store.images_by_path().items()}
    paths = [path_of[int(i)] for i in ids]
    missing = [p for p in paths if p not in by_path]
    if missing:
        raise SystemExit(f"{len(missing)} image(s) have no {column!r} truth, e.g. {missing[0]}")
    names = sorted({by_path[p] for p in paths})
    return np.array([names.index(by_path[p]) for p in paths], np.int64), names, paths


def weak_classifier(emb: np.ndarray, y: np.ndarray, n_train: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, C) class probabilities of a logistic regression trained on ``n_train`` random rows
    (every class among them), and those rows."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    while True:
        train = rng.choice(len(y), n_train, replace=False)
        if len(np.unique(y[train])) == len(np.unique(y)):
            break
    x = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    clf = LogisticRegression(max_iter=2000).fit(x[train], y[train])
    proba = np.zeros((len(y), int(y.max()) + 1))
    proba[:, clf.classes_] = clf.predict_proba(x)
    return proba, train


def write_predictions(path: Path, paths: list[str], names: list[str], proba: np.ndarray) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "score"])
        for p, row in zip(paths, proba):
            for name, s in zip(names, row):
                w.writerow([p, name, f"{s:.6f}"])


def accepted_wrong(pred, y: np.ndarray, labelled: np.ndarray, threshold: float, budget: float = 0.05) -> dict:
    """Wrong share of what a threshold accept and a budget accept (per class) would take."""
    un = ~labelled
    out = {}
    take = un & (pred.confidence >= threshold)
    out["threshold"] = {"accepted": int(take.sum()), "wrong": int((take & (pred.label != y)).sum())}
    n_b = w_b = 0
    for c in np.unique(pred.label[un]):
        pos = np.flatnonzero(un & (pred.label == c))
        pos = pos[np.argsort(-pred.probability[pos], kind="stable")]
        k = budget_size(pred.probability[pos], budget)
        n_b += k
        w_b += int((y[pos[:k]] != c).sum())
    out["budget"] = {"accepted": n_b, "wrong": w_b}
    for v in out.values():
        v["wrong_share"] = round(v["wrong"] / v["accepted"], 4) if v["accepted"] else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_project_argument(ap)
    common.add_truth_argument(ap)
    ap.add_argument("--column", default="defective", help="truth column (default defective)")
    ap.add_argument("--train", type=int, default=50, help="images the weak classifier learns from (default 50)")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.95, 0.9],
                    help="accept thresholds of the flow and the fixed subsets (default 0.95 0.9)")
    ap.add_argument("--max-actions", type=int, default=400, help="actions per flow (default 400; 0: no flow)")
    ap.add_argument("--budgets", type=int, nargs="+", default=[100, 200], help="fixed labelled subset sizes")
    ap.add_argument("--seeds", type=int, default=3, help="random subsets per budget (default 3)")
    ap.add_argument("--flow-seeds", type=int, default=3, help="flows per arm and threshold (queue seeds; default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object last")
    args = ap.parse_args()

    src = common.existing(args.project, "project")
    common.existing(args.truth, "truth")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-predictions-") as tmp:
        copy = Path(tmp) / "project"
        shutil.copytree(src, copy, ignore=shutil.ignore_patterns("thumbs", "assist", "*.lock"))
        project = Project(copy)
        y, names, paths = truth_rows(project, args.truth, args.column)
        emb = np.asarray(project.load_array("embeddings"), np.float32)
        proba, train = weak_classifier(emb, y, args.train, args.seed)
        clf_acc = float((proba.argmax(1) == y).mean())
        log(f"weak classifier ({args.train} labels, {args.column}): accuracy {clf_acc:.3f} on all "
            f"{len(y):,} images")
        csv_path = Path(tmp) / "predictions.csv"
        write_predictions(csv_path, paths, names, proba)
        rep = import_predictions(project, csv_path, SOURCE)
        log("\n".join(rep.lines(limit=3)))
        (expert,) = [e for e in project_experts(project, len(y)) if e.name == f"model: {SOURCE}"]
        experts = [(expert.name, expert.log_proba(names))]
        x, fname = load_features(project)
        graph = knn_graph(project, x, fname)
        clusters = clusters_by_row(project, len(x))
        out = {"column": args.column, "images": len(y),
               "classifier": {"train": args.train, "accuracy": round(clf_acc, 4)},
               "import": {"written": rep.written, "images": rep.images, "unmatched": len(rep.unmatched)},
               "flow": {}, "fixed": {}}

        # -- fixed random labelled subsets: both arms on the same labels ----------------------
        for b in args.budgets:
            rows_out = {thr: {"without": [], "with": []} for thr in args.thresholds}
            weights = []
            for s in range(args.seeds):
                rng = np.random.default_rng(1000 + s)
                rows = rng.choice(len(y), b, replace=False)
                labelled = np.zeros(len(y), bool)
                labelled[rows] = True
                for arm, ex in (("without", None), ("with", experts)):
                    pred, _ = assist_model.predict(x, graph, rows, y[rows], names, clusters=clusters, experts=ex)
                    if ex:
                        weights.append(pred.experts[expert.name]["weight"])
                    for thr in args.thresholds:
                        rows_out[thr][arm].append(accepted_wrong(pred, y, labelled, thr))
            out["fixed"][str(b)] = {"expert_weight": [round(w, 3) for w in weights]}
            for thr, arms in rows_out.items():
                agg = {}
                for arm, runs in arms.items():
                    agg[arm] = {}
                    for kind in ("threshold", "budget"):
                        acc = sum(r[kind]["accepted"] for r in runs)
                        wr = sum(r[kind]["wrong"] for r in runs)
                        agg[arm][kind] = {"accepted": acc, "wrong": wr,
                                          "wrong_share": round(wr / acc, 4) if acc else None}
                out["fixed"][str(b)][str(thr)] = agg
            log(f"fixed {b} labels done ({time.perf_counter() - t_start:.0f} s)")

        # -- the product's flow, both arms --------------------------------------------------
        if args.max_actions > 0:
            for thr in args.thresholds:
                res = {}
                for arm, ex in (("without", None), ("with", experts)):
                    t0 = time.perf_counter()
                    runs = [queue_flow(y, x, graph=graph, threshold=thr, max_actions=args.max_actions,
                                       clusters=clusters, seed=args.seed + s, experts=ex)
                            for s in range(args.flow_seeds)]
                    acc, wrong = sum(r.accepted for r in runs), sum(r.accepted_wrong for r in runs)
                    res[arm] = {"accepted": acc, "accepted_wrong": wrong,
                                "wrong_accepted_share": round(wrong / acc, 4) if acc else None,
                                "per_seed": [[r.accepted, r.accepted_wrong] for r in runs],
                                "accuracy_final": round(float(np.mean([r.accuracy[-1] for r in runs])), 4),
                                "macro_f1_final": round(float(np.mean([r.macro_f1[-1] for r in runs])), 4),
                                "seconds": round(time.perf_counter() - t0, 1)}
                    log(f"flow at {thr:g} {arm}: {res[arm]}")
                out["flow"][str(thr)] = res
        out["seconds"] = round(time.perf_counter() - t_start, 1)
        project.store.close()

    print_table(out, args)
    if args.json:
        print(json.dumps(out))


def print_table(out: dict, args) -> None:
    def share(d):
        return "-" if d["wrong_share"] is None else f"{100 * d['wrong_share']:.1f} % of {d['accepted']:,}"

    print(f"ELPV {out['column']}: weak classifier ({out['classifier']['train']} labels) accuracy "
          f"{out['classifier']['accuracy']:.3f}; {out['import']['images']:,} images given predictions")
    print("\nwrong accepted share, without -> with the predictions")
    for b, per in out["fixed"].items():
        print(f"  fixed {b} random labels x {args.seeds} seeds (expert weight {per['expert_weight']}):")
        for thr in args.thresholds:
            a = per[str(thr)]
            print(f"    confidence >= {thr:g}: {share(a['without']['threshold'])} -> {share(a['with']['threshold'])}")
        a = per[str(args.thresholds[0])]
        print(f"    largest set per class expected <= 5 % wrong: {share(a['without']['budget'])} -> "
              f"{share(a['with']['budget'])}")
    for thr, a in out["flow"].items():
        w, x = a["without"], a["with"]

        def fl(d):
            s = "none accepted" if d["wrong_accepted_share"] is None else \
                f"{100 * d['wrong_accepted_share']:.1f} % of {d['accepted']:,}"
            return f"{s} (mean final accuracy {d['accuracy_final']:.3f})"
        print(f"  flow x {args.flow_seeds} seeds, {args.max_actions} actions, threshold {thr}: {fl(w)} -> {fl(x)}")


if __name__ == "__main__":
    main()
