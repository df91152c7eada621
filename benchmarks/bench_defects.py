"""Defect-aware features against whole-image features, on ELPV and the DeepPCB crops (issue 24).

For each collection, in one run, on a copy of the project (the original is not written):

1. the stored patch maps (``labeler features --patch-maps``; computed in the copy when the
   project has none; seconds and MB);
2. banks of normal patches (:mod:`labeler.embedding.patchcore`) from ``--normal`` random
   images that the truth calls defect-free ("labelled normal"; ``--draws`` draws), and the
   no-label bank (a random sample of all images); seconds and MB;
3. the defect-aware feature set of each bank (:func:`labeler.embedding.defect_features.compute_defect_features`,
   the product path) against the ingest embeddings and the ingest PCA vectors:
   - retrieval macro P@1, leave-one-out, with the query's own group (``group`` column)
     left out where the truth has one (:func:`labeler.evaluate.metrics.search_scores`);
   - defect-only P@1: the mean P@1 of the defect classes;
   - defect -> defect-free first hits: 1 − P@1 of the defect queries when the classes are
     just defective / defect-free;
   - image anomaly AUROC (defective vs defect-free, bank images left out) with raw patch
     distances and position-normalised ones;
   - actions to 90 % accuracy in the label-next queue flow (:func:`labeler.evaluate.simulate.queue`,
     the product's flow, first class column; ~12 s a feature set on ELPV; ``--no-queue`` skips it).
4. with ``--scan``: macro P@1 over k (pooled patches), pooling and the score column's
   weight on the first labelled-normal bank (how the defaults were chosen).

Run from the repository root after ``labeler demo --no-serve`` (ELPV) and the DeepPCB
crops project (``data/projects/deeppcb``, truth ``data/deeppcb/truth.csv``)::

    python benchmarks/bench_defects.py --json

The last line is JSON with ``--json``. A collection whose project is missing is skipped
with a line that says so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common

#: (name, project, truth, class columns, defect column, group column)
DEEPPCB_PROJECT = Path("data/projects/deeppcb")
DEEPPCB_TRUTH = Path("data/deeppcb/truth.csv")


def _copy(project: Path, dest: Path) -> Path:
    """A copy of the project to write in; an earlier copy under ``--work`` is reused (its patch maps too)."""
    if (dest / "labeler.db").is_file():
        return dest
    shutil.copytree(project, dest, ignore=shutil.ignore_patterns("thumbs", "evaluation", "cache", "*.lock"))
    return dest


def _mb(path: Path) -> float:
    return round(path.stat().st_size / 2**20, 2)


def _truth_codes(project, truth: Path, column: str, rows_all: np.ndarray) -> np.ndarray:
    """Class codes aligned with ``rows_all`` (-1 where the truth has no value)."""
    from labeler.evaluate.truth import align_truth, read_truth

    values, _ = read_truth(truth, column)
    rows, y, classes, _ = align_truth(project, values)
    out = np.full(len(rows_all), -1, np.int64)
    pos = {int(r): i for i, r in enumerate(rows_all)}
    for r, c in zip(rows, y):
        if int(r) in pos:
            out[pos[int(r)]] = c
    return out, [str(c) for c in classes]


def _retrieval(feats: np.ndarray, y: np.ndarray, classes: list[str], defect_classes: list[str],
               ybin: np.ndarray, groups) -> dict:
    from labeler.evaluate.metrics import search_scores

    s = search_scores(feats, y, groups=groups, max_queries=None)
    dcodes = [classes.index(c) for c in defect_classes if c in classes]
    d_p1 = float(np.nanmean([s["per_class"][c]["p1"] for c in dcodes if c in s["per_class"]]))
    b = search_scores(feats, ybin, groups=groups, max_queries=None)
    return {"macro_p1": round(s["p1_macro"], 4), "defect_p1": round(d_p1, 4),
            "defect_to_free": round(1 - b["per_class"][1]["p1"], 4),
            "per_class_p1": {classes[c]: round(v["p1"], 4) for c, v in s["per_class"].items()}}


def _auroc(scores: np.ndarray, ybin: np.ndarray, keep: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    m = keep & np.isfinite(scores)
    return round(float(roc_auc_score(ybin[m], scores[m])), 4)


def run_collection(name: str, project_dir: Path, truth: Path, columns: list[str], defect_column: str,
                   group_column: str | None, work: Path, args) -> dict:
    from labeler.embedding.defect_features import compute_defect_features
    from labeler.embedding.feature_sets import load_feature_set
    from labeler.embedding.patch_maps import compute_patch_maps, load_patch_maps, patch_maps_info
    from labeler.embedding.patchcore import load_bank
    from labeler.evaluate.truth import align_truth, read_truth
    from labeler.project import Project

    t0 = time.perf_counter()
    p = Project(_copy(common.existing(project_dir, "project"), work / name))
    reused = bool(patch_maps_info(p))
    info = patch_maps_info(p) if reused else compute_patch_maps(p, progress=False)
    maps, _ = load_patch_maps(p)
    # The seconds are the computation's own (also when an earlier run under --work made the maps).
    cost = {"maps_seconds": info["seconds"], "maps_mb": _mb(p.root / "patches" / "maps.npy"),
            "maps_reused": reused}
    # Truth: the defect flag decides "normal" and the binary figures; class columns the macro figures.
    dvals, _ = read_truth(truth, defect_column)
    rows, ybin_codes, bclasses, _ = align_truth(p, dvals)
    ybin = (bclasses[ybin_codes] == "yes").astype(np.int64)
    groups = None
    if group_column:
        groups, _ = _truth_codes(p, truth, group_column, rows)
    id_of = {int(r["row"]): int(r["id"]) for r in p.store.image_table()}
    free_rows = rows[ybin == 0]
    banks = [(f"normal{args.normal}-draw{d}", sorted(id_of[int(r)] for r in np.random.default_rng(d).choice(
        free_rows, args.normal, replace=False))) for d in range(args.draws)] + [("no-label", None)]
    feats = {"embeddings": np.asarray(p.load_array("embeddings")[rows], np.float32),
             "pca": np.asarray(p.load_array("pca")[rows], np.float32)}
    auroc, bank_cost = {}, {}
    for bname, ids in banks:
        for norm in ("none", "position"):
            if norm == "position" and bname.endswith("draw1"):
                continue  # one labelled draw and the no-label bank suffice for the before/after
            fname = f"defect-{bname}" + ("-position" if norm == "position" else "")
            rep = compute_defect_features(p, None, ids=ids, name=fname, seed=0, normalise=norm)
            bank_cost[fname] = {"seconds_bank": rep["bank_seconds"], "seconds_total": rep["seconds"],
                                "bank_mb": round(rep["bank_bytes"] / 2**20, 2),
                                "features_mb": round(rep["features_bytes"] / 2**20, 2),
                                "bank_images": rep["bank_images"], "bank_patches": rep["bank_patches"]}
            feats[fname] = np.asarray(load_feature_set(p, fname)[rows], np.float32)
            # Image anomaly AUROC from the scores the product stored with this bank, bank images left out.
            bank, _, scores = load_bank(p)
            free_pos = ~np.isin(rows, np.unique(bank.rows))
            auroc.setdefault(bname, {})["raw" if norm == "none" else "position_normalised"] = _auroc(
                scores[rows], ybin, free_pos)
    out = {"collection": name, "images": int(len(rows)), "defective": int(ybin.sum()),
           "groups": None if groups is None else int(len(np.unique(groups))), "cost": cost, "banks": bank_cost,
           "auroc": auroc, "retrieval": {}}
    for col in columns:
        y, classes = _truth_codes(p, truth, col, rows)
        m = y >= 0
        defect_classes = _defect_classes(truth, col, defect_column)
        out["retrieval"][col] = {f: _retrieval(v[m], y[m], classes, defect_classes, ybin[m],
                                               None if groups is None else groups[m]) for f, v in feats.items()}
    if not args.no_queue:
        from labeler.evaluate.simulate import queue

        col = columns[0]
        y, classes = _truth_codes(p, truth, col, rows)
        out["queue_actions_to_90"] = {}
        for f in ["pca"] + [f"defect-{b}" for b, _ in banks]:
            t = time.perf_counter()
            curve = queue(y, feats[f], max_actions=args.queue_actions)
            out["queue_actions_to_90"][f] = {"actions": curve.actions_to_accuracy(0.9),
                                             "seconds": round(time.perf_counter() - t, 1)}
    if args.scan:
        out["scan"] = _scan(p, maps, banks[0][1], truth, rows, columns[0], defect_column, ybin, groups)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _scan(p, maps, ids, truth, rows, col, defect_column, ybin, groups) -> dict:
    """Macro / defect-only P@1 over bank size, k, pooling and score weight (first labelled-normal bank)."""
    from labeler.embedding.defect_features import defect_vectors
    from labeler.embedding.patchcore import build_bank

    y, classes = _truth_codes(p, truth, col, rows)
    dcl = _defect_classes(truth, col, defect_column)
    res = {}
    for size in (len(ids) * maps.shape[1] // 4, len(ids) * maps.shape[1]):
        bank, _, srows, anomaly, nearest = build_bank(p, None, ids=ids, seed=0, max_patches=size)
        pos = np.searchsorted(srows, rows)
        ok = (pos < len(srows)) & (srows[np.minimum(pos, len(srows) - 1)] == rows)
        for pooling in ("residual", "residual+feature"):
            for k in (4, 8, 16, 32, 64):
                for w in (0.0, 1.0, 3.0):
                    v = defect_vectors(maps, srows, bank, anomaly, nearest, k=k, score_weight=w, pooling=pooling)
                    f = np.zeros((len(rows), v.shape[1]), np.float32)
                    f[ok] = v[pos[ok]]
                    r = _retrieval(f, y, classes, dcl, ybin, groups)
                    res[f"bank={len(bank.patches)} {pooling} k={k} w={w:g}"] = {
                        "macro_p1": r["macro_p1"], "defect_p1": r["defect_p1"], "defect_to_free": r["defect_to_free"]}
    return res


def _defect_classes(truth: Path, col: str, defect_column: str) -> list[str]:
    """Classes of ``col`` whose images are all (or mostly) defective per ``defect_column``."""
    import csv

    with open(truth, newline="") as f:
        rows = list(csv.DictReader(f))
    by: dict[str, list[bool]] = {}
    for r in rows:
        if r.get(col):
            by.setdefault(r[col], []).append(r[defect_column] == "yes")
    return sorted(c for c, v in by.items() if np.mean(v) > 0.5)


def _print(res: dict) -> None:
    print(f"\n== {res['collection']}: {res['images']} images, {res['defective']} defective"
          + (f", {res['groups']} groups (query's own group left out)" if res["groups"] else "") + " ==")
    c = res["cost"]
    print(f"patch maps: {c['maps_seconds']} s, {c['maps_mb']} MB")
    for b, v in res["banks"].items():
        print(f"bank {b}: {v['bank_images']} images, {v['bank_patches']} patches, {v['seconds_bank']} s, "
              f"{v['bank_mb']} MB; features {v['seconds_total']} s in all, {v['features_mb']} MB")
    for b, v in res["auroc"].items():
        print(f"anomaly AUROC {b}: raw {v['raw']:.3f}" + (f" -> position-normalised {v['position_normalised']:.3f}"
                                                         if "position_normalised" in v else ""))
    for col, r in res["retrieval"].items():
        print(f"retrieval by {col}:   macro P@1  defect-only P@1  defect->defect-free first hit")
        for f, v in r.items():
            print(f"  {f:36s} {v['macro_p1']:.3f}      {v['defect_p1']:.3f}            {v['defect_to_free']:.1%}")
    for f, v in res.get("queue_actions_to_90", {}).items():
        print(f"queue flow ({list(res['retrieval'])[0]}), actions to 90 %: {f} {v['actions']} ({v['seconds']} s)")
    if "scan" in res:
        best = sorted(res["scan"].items(), key=lambda kv: -kv[1]["macro_p1"])[:8]
        print("scan (first labelled-normal bank), best macro P@1: "
              + "; ".join(f"{k} {v['macro_p1']:.3f}/{v['defect_p1']:.3f}" for k, v in best))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_project_argument(ap, "the ingested ELPV project")
    common.add_truth_argument(ap, "ELPV truth CSV")
    ap.add_argument("--deeppcb-project", type=Path, default=DEEPPCB_PROJECT)
    ap.add_argument("--deeppcb-truth", type=Path, default=DEEPPCB_TRUTH)
    ap.add_argument("--only", choices=["elpv", "deeppcb"], default=None, help="one collection only")
    ap.add_argument("--normal", type=int, default=50, help="images labelled normal (default 50)")
    ap.add_argument("--draws", type=int, default=2, help="random draws of the normal images (default 2)")
    ap.add_argument("--no-queue", action="store_true", help="skip the queue flow's actions to 90 %%")
    ap.add_argument("--queue-actions", type=int, default=400)
    ap.add_argument("--scan", action="store_true", help="also scan k, pooling and the score weight")
    ap.add_argument("--work", type=Path, default=None, help="where the project copies go (default: a temp dir)")
    ap.add_argument("--json", action="store_true", help="last line: the results as JSON")
    args = ap.parse_args(argv)
    collections = [("elpv", args.project, args.truth, ["defective", "defect_level"], "defective", None),
                   ("deeppcb", args.deeppcb_project, args.deeppcb_truth, ["label"], "defective", "group")]
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_defects-"))
    work.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/bench_defects.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"command: {cmd.strip()}")
    results = {"command": cmd.strip(), "normal": args.normal, "draws": args.draws, "collections": []}
    try:
        for name, proj, truth, cols, dcol, gcol in collections:
            if args.only and name != args.only:
                continue
            if not Path(proj).exists() or not Path(truth).exists():
                print(f"{name}: skipped ({proj} or {truth} not found)")
                continue
            res = run_collection(name, Path(proj), Path(truth), cols, dcol, gcol, work, args)
            _print(res)
            results["collections"].append(res)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
