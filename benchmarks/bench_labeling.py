"""Labelling that learns: the product's own flow on a collection with known classes.

For each truth column it simulates the annotator of :mod:`labeler.assist.simulate`
(strategy ``queue``: take the next items of the "label next" queue, label them,
accept suggestions above a confidence threshold, repeat; nothing picks images by
their truth) beside a baseline ``random`` (the same suggestions and accepts, but
random images to label), and with ``--finetune-at N`` a strategy
``queue+finetune``: the same flow, in which the annotator presses "fine-tune" once
after N actions (1 action; :func:`finetune_refit`). Several values
(``--finetune-at 150 200 250``) run one such flow each, named ``queue+finetune@N``;
``--finetune-option KEY=VALUE`` passes a non-default argument to ``finetune_project``
(e.g. ``loss=ce``, ``class_weight=balanced``). Accuracy = labels given + current suggestions for the
rest, over all images (see the module docstring of labeler.assist.simulate);
``labelled_accuracy`` counts unlabelled images as wrong, as ``labeler evaluate``.

Also measured:

- the suggestion model chosen by measurement: ``probe``, ``spreading`` and
  ``combined`` at the same label budgets (random labelled subsets), with the
  expected calibration error (ECE, 10 bins) on held-out labelled images before
  and after temperature scaling;
- search conditioned on a label (``labeler search Q --for-label L``): P@10 of the
  minority classes (a share below 1 / number of classes), plain cosine against the probe-conditioned
  modes, the probe trained on 300 random labels;
- refresh time after one label action on synthetic N x 256 features (10k, 100k),
  the kNN graph built once beforehand (cached in the product).

Reproduce::

    python benchmarks/bench_labeling.py        # the demo's data/projects/elpv and data/elpv/truth.csv
    python benchmarks/bench_labeling.py --project data/projects/elpv --truth data/elpv/truth.csv
    python benchmarks/bench_labeling.py --features path/to/features.npy --json
    python benchmarks/bench_labeling.py --skip-quality --sizes 10000 100000   # speed only
    python benchmarks/bench_labeling.py --project P --truth T --columns defective --finetune-at 150 \
        --skip-model-choice --sizes --json     # + the flow with one fine-tune (~10 min of CPU per column)
    python benchmarks/bench_labeling.py --project P --truth T --columns defect_level --finetune-at 200 250 \
        --finetune-option loss=ce --skip-model-choice --sizes --json   # one press at 200, one at 250 (cross-entropy alone)

With ``--json`` the last line is one JSON object:
``{"<truth column>": {"<strategy>": {"actions_to_90", "actions_to_95", "accuracy_at_200",
"accuracy_at_400", "macro_f1_at_300", "wrong_accepted_share", ..., "search_p1_macro_final"}},
"_model": ..., "_search": ...,
"_speed": ...}`` (keys starting with "_" are the extra measurements).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from labeler.assist import conditioned, model as assist_model
from labeler.assist.graph import build_knn_graph
from labeler.assist.simulate import queue_flow
from labeler.assist.suggest import clusters_by_row, load_features
from labeler.project import Project

from common import DEFAULT_PROJECT, add_truth_argument, existing

COLUMNS = ("cell_type", "defective", "defect_level")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def model_choice(x, graph, y, *, budgets=(50, 200, 400), seed=0) -> dict:
    """Accuracy, macro-F1 and ECE (raw / calibrated) of each method on random labelled subsets."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(seed)
    n = len(y)
    classes = [str(c) for c in range(int(y.max()) + 1)]
    out = {}
    for b in budgets:
        if b >= n:  # a small collection: no image would be left to score
            continue
        rows = rng.choice(n, b, replace=False)
        held = np.setdiff1d(np.arange(n), rows)
        for method in assist_model.METHODS:
            t0 = time.perf_counter()
            pred, state = assist_model.predict(x, graph, rows, y[rows], classes, method=method, seed=seed)
            secs = time.perf_counter() - t0
            correct = pred.label[held] == y[held]
            raw = np.exp(np.log(np.maximum(pred.proba[held], 1e-12)) * pred.temperature)
            raw /= raw.sum(1, keepdims=True)
            out.setdefault(str(b), {})[method] = {
                "accuracy": round(float(correct.mean()), 4),
                "macro_f1": round(float(f1_score(y[held], pred.label[held], average="macro")), 4),
                "ece_raw": round(assist_model.expected_calibration_error(raw.max(1), correct), 4),
                "ece_calibrated": round(assist_model.expected_calibration_error(pred.proba[held].max(1), correct), 4),
                "temperature": round(pred.temperature, 3), "seconds": round(secs, 3),
            }
    return out


def search_conditioned(x, y, classes, *, n_train=300, k=10, candidates=1000, seed=0) -> dict:
    """P@10 of rare-class queries: plain cosine vs each conditioning mode (probe from n_train random labels)."""
    rng = np.random.default_rng(seed)
    n = len(y)
    train = rng.choice(n, min(n_train, n), replace=False)
    m = min(candidates, n - 1)  # a collection under candidates + 1 images: every other image
    out = {}
    for c in np.unique(y):
        share = float((y == c).mean())
        if share >= 1.0 / len(classes) or not (y[train] == c).any():
            continue
        coef, b = conditioned.label_probe(x[train], y[train] == c)
        queries = np.flatnonzero(y == c)
        res = {"images": int(len(queries)), "share": round(share, 3), "plain": [], **{m: [] for m in conditioned.MODES}}
        for q in queries:
            s = x @ x[q]
            s[q] = -np.inf
            top = np.argpartition(-s, m - 1)[:m]
            top = top[np.argsort(-s[top])]
            res["plain"].append(float(np.mean(y[top[:k]] == c)))
            for mode in conditioned.MODES:
                sc = conditioned.conditioned_scores(x[q], x[top], coef, b, mode)
                res[mode].append(float(np.mean(y[top[np.argsort(-sc)[:k]]] == c)))
        out[str(classes[c])] = {key: (round(float(np.mean(v)), 4) if isinstance(v, list) else v) for key, v in res.items()}
    return out


def finetune_refit(project_dir: Path, truth_rows: np.ndarray, classes: np.ndarray, options: dict | None = None):
    """The 'fine-tune' press of the simulated annotator, for :func:`queue_flow`'s ``refit``.

    Returns ``fn(rows, codes)``: on a fresh copy of the project (never the original),
    label the images at ``truth_rows[rows]`` with ``classes[codes]`` (annotator
    'simulated'), run :func:`labeler.embedding.finetune.finetune_project` on the CPU
    with the product's defaults (it holds out 20 % of the labels) except ``options``
    (keyword arguments of ``finetune_project``), and return the
    fine-tuned vectors of ``truth_rows`` (len(truth_rows), D) float32 and the flow rows
    it trained on (its ``train_image_ids``).
    """
    import shutil
    import tempfile

    from labeler.embedding.feature_sets import feature_set_info, load_feature_set
    from labeler.embedding.finetune import finetune_project
    from labeler.labels import label_images

    def refit(rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
        with tempfile.TemporaryDirectory() as d:
            root = Path(d) / "project"
            shutil.copytree(project_dir, root, ignore=shutil.ignore_patterns(
                "thumbs", "parts", "evaluation", "features", "assist", "*.db-shm", "*.db-wal"))
            p = Project(root)
            if p.store.labels():
                raise SystemExit(f"{project_dir} has labels: --finetune-at needs a project without labels")
            ids = p.store.row_image_ids()
            for c in np.unique(codes):
                label_images(p, [int(ids[truth_rows[r]]) for r in rows[codes == c]], str(classes[c]),
                             annotator="simulated")
            t0 = time.perf_counter()
            rep = finetune_project(p, device="cpu", progress=False, say=log, **(options or {}))
            log(f"  fine-tuned on {len(rows)} labels in {time.perf_counter() - t0:.0f} s")
            out = np.asarray(load_feature_set(p, rep.name), dtype=np.float32)[truth_rows]
            trained = p.store.row_of(np.asarray(feature_set_info(p, rep.name)["train_image_ids"], dtype=np.int64))
            p.store.close()
        return out, np.flatnonzero(np.isin(truth_rows, trained))

    return refit


def _option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` of ``--finetune-option``: VALUE as int, float, true/false or the string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SystemExit(f"--finetune-option wants KEY=VALUE, got {text!r}")
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(value.lower(), value)


def speed(sizes, *, dim=256, n_labels=500, n_classes=4, seed=0) -> dict:
    """Refresh time after one label action on synthetic clustered features (graph built once)."""
    from labeler.assist import queue as assist_queue

    out = {}
    for n in sizes:
        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(50, dim)).astype(np.float32)
        cl = rng.integers(0, 50, n)
        x = centres[cl] * 0.5 + rng.normal(size=(n, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        y = cl % n_classes
        t0 = time.perf_counter()
        graph = build_knn_graph(x)
        graph.normalized()
        t_graph = time.perf_counter() - t0
        rows = rng.choice(n, n_labels, replace=False)
        classes = [str(c) for c in range(n_classes)]
        t0 = time.perf_counter()
        pred, state = assist_model.predict(x, graph, rows, y[rows], classes)
        t_cold = time.perf_counter() - t0
        extra = np.setdiff1d(rng.choice(n, 20, replace=False), rows)[:1]
        rows2 = np.r_[rows, extra]
        t0 = time.perf_counter()
        pred, state = assist_model.predict(x, graph, rows2, y[rows2], classes, state=state)
        t_warm = time.perf_counter() - t0
        big = np.r_[rows2, np.setdiff1d(rng.choice(n, 200, replace=False), rows2)]
        t0 = time.perf_counter()
        pred, state = assist_model.predict(x, graph, big, y[big], classes, state=state)
        t_recal = time.perf_counter() - t0
        labelled = np.zeros(n, bool)
        labelled[big] = True
        t0 = time.perf_counter()
        assist_queue.uncertain_and_diverse(x, pred.margin, pred.label, classes, labelled, 20)
        t_queue = time.perf_counter() - t0
        out[str(n)] = {"graph_build_s": round(t_graph, 2), "first_fit_s": round(t_cold, 3),
                       "refresh_after_one_label_s": round(t_warm, 3),
                       "refresh_with_recalibration_s": round(t_recal, 3), "queue_20_s": round(t_queue, 3)}
        log(f"  speed n={n}: {out[str(n)]}")
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--project", type=Path, default=Path(os.environ.get("LABELER_PROJECT", DEFAULT_PROJECT)),
                    help=f"an ingested project (default: $LABELER_PROJECT, else {DEFAULT_PROJECT}, "
                         "written by `labeler demo --no-serve`)")
    add_truth_argument(ap)
    ap.add_argument("--features", default="pca", help="feature set name (pca, embeddings, ...) or an N x D .npy path")
    ap.add_argument("--columns", nargs="+", default=list(COLUMNS))
    ap.add_argument("--max-actions", type=int, default=400)
    ap.add_argument("--batch", type=int, default=5, help="queue items labelled between refreshes")
    ap.add_argument("--threshold", type=float, default=0.95, help="confidence of accepted suggestions")
    ap.add_argument("--method", default="combined", choices=assist_model.METHODS)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000], help="synthetic sizes for speed")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-model-choice", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--finetune-at", type=int, nargs="*", default=[],
                    help="also run strategy 'queue+finetune': the queue flow, and at this many actions one "
                         "press of fine-tune (finetune_project on a copy of the project, CPU, its defaults) "
                         "on the hand labels so far; several values: one flow each, 'queue+finetune@N' "
                         "(each run costs minutes of CPU)")
    ap.add_argument("--finetune-option", action="append", default=[], metavar="KEY=VALUE",
                    help="a finetune_project argument for the fine-tune presses (repeatable), e.g. "
                         "loss=ce, class_weight=balanced, epochs=60")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    ft_options = dict(_option(o) for o in args.finetune_option)

    from labeler.evaluate import align_truth, read_truth
    from labeler.evaluate.metrics import search_scores

    result: dict = {}
    if not args.skip_quality:
        existing(args.truth, "truth")
        project = Project(existing(args.project, "project"))
        x_all, name = load_features(project, args.features)
        log(f"features {name}: {x_all.shape}")
        cl_rows = clusters_by_row(project, len(x_all))  # the dashboard's clusters, as suggest() uses them
        graphs = {}
        for col in args.columns:
            truth, col_name = read_truth(args.truth, col)
            rows, y, classes, unmatched = align_truth(project, truth)
            x = x_all[rows]
            key = rows.tobytes()
            if key not in graphs:
                graphs.clear()
                t0 = time.perf_counter()
                graphs[key] = build_knn_graph(x)
                log(f"  kNN graph of {len(x)} images: {time.perf_counter() - t0:.1f} s")
            g = graphs[key]
            counts = dict(zip(classes.tolist(), np.bincount(y).tolist()))
            log(f"truth {col_name!r}: {len(rows)} images, classes {counts}")
            res = {}

            def p1(features):  # leave-one-out search macro P@1 of this column
                return round(search_scores(features, y, max_queries=None)["p1_macro"], 4)

            res_p1 = p1(x)
            log(f"  search macro P@1 of the features before any fine-tune: {res_p1}")
            for pick in ("queue", "random"):
                t0 = time.perf_counter()
                flow = queue_flow(y, x, graph=g, batch=args.batch, threshold=args.threshold,
                                  max_actions=args.max_actions, method=args.method, pick=pick, seed=args.seed,
                                  clusters=None if cl_rows is None else cl_rows[rows])
                res[pick] = flow.summary()
                res[pick]["seconds"] = round(time.perf_counter() - t0, 1)
                res[pick]["search_p1_macro_final"] = res_p1
                log(f"  {pick}: {res[pick]}")
            for at in args.finetune_at:
                name_ft = "queue+finetune" if len(args.finetune_at) == 1 else f"queue+finetune@{at}"
                t0 = time.perf_counter()
                refit = finetune_refit(args.project, rows, classes, ft_options)
                flow = queue_flow(y, x, graph=g, batch=args.batch, threshold=args.threshold,
                                  max_actions=args.max_actions, method=args.method, seed=args.seed,
                                  strategy=name_ft, clusters=None if cl_rows is None else cl_rows[rows],
                                  refit=(at, refit))
                res[name_ft] = flow.summary()
                res[name_ft]["seconds"] = round(time.perf_counter() - t0, 1)
                res[name_ft]["search_p1_macro_final"] = p1(flow.features)  # what search ranks by after the press
                res[name_ft]["finetune_options"] = ft_options
                log(f"  {name_ft}: {res[name_ft]}")
            if not args.skip_model_choice:
                res["_model"] = model_choice(x, g, y, seed=args.seed)
                for b, v in res["_model"].items():
                    log(f"  model @ {b} random labels: " + "; ".join(
                        f"{m} acc {r['accuracy']:.3f} F1 {r['macro_f1']:.3f} ECE {r['ece_raw']:.3f}->{r['ece_calibrated']:.3f}"
                        for m, r in v.items()))
            res["_search"] = search_conditioned(x, y, classes, seed=args.seed)
            for c, v in res["_search"].items():
                log(f"  search P@10, rare class {c!r} ({v['images']} images): plain {v['plain']:.3f}, "
                    + ", ".join(f"for-label {m} {v[m]:.3f}" for m in conditioned.MODES))
            result[col_name] = res
        result["_features"] = {"name": name, "shape": list(x_all.shape)}
    if args.sizes:
        result["_speed"] = speed(args.sizes, seed=args.seed)
    print_table(result)
    if args.json:
        print(json.dumps(result))
    return result


def print_table(result: dict) -> None:
    cols = [c for c in result if not c.startswith("_")]
    if cols:
        print("| truth | strategy | actions to 90% | to 95% | acc@200 | acc@400 | macro-F1@300 | wrong accepted | accepted "
              "| search macro P@1 at the end |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in cols:
            for s, r in result[c].items():
                if s.startswith("_"):
                    continue
                w = "-" if r["wrong_accepted_share"] is None else f"{100 * r['wrong_accepted_share']:.1f}%"
                print(f"| {c} | {s} | {r['actions_to_90'] or '-'} | {r['actions_to_95'] or '-'} | "
                      f"{r['accuracy_at_200']:.3f} | {r['accuracy_at_400']:.3f} | {r['macro_f1_at_300']:.3f} | {w} | "
                      f"{r['accepted']} | {r.get('search_p1_macro_final', '-')} |")
    for n, v in result.get("_speed", {}).items():
        print(f"speed n={n}: " + ", ".join(f"{k} {val}" for k, val in v.items()))


if __name__ == "__main__":
    main()
