"""What fine-tuning on the annotator's labels costs on the CPU and what it adds (issue 9, item 3).

On a copy of an ingested project with truth (ELPV: ``truth.csv``):

1. **Labels, truth-blind.** A simulated annotator takes the product's "label next"
   queue (:func:`labeler.assist.next.next_to_label`, its defaults) ``--batch`` items at a
   time and answers each shown image from the truth file (one action per image), until
   ``--labels`` images are labelled. Nothing else looks at the truth: the annotator
   knows an image's class only once the queue has shown it.
2. **Before.** On the project's ingest embeddings: a logistic probe (each vector
   L2-normalised, standardised, multinomial logistic regression C = 1, as
   docs/features.md) trained on the labelled images, scored on every image not
   labelled (held out): accuracy and macro-F1 for each ``--score`` column; and
   leave-one-out cosine search over the whole collection, macro P@1 per column
   (:func:`labeler.evaluate.metrics.search_scores`; also over the held-out images only).
3. **Fine-tune** with :func:`labeler.embedding.finetune.finetune_project` on those labels
   (every label trained on: ``holdout=0``; the held-out check is step 4), on the CPU with
   ``--threads`` threads: wall time of bringing the prefix cache up to date, of training
   (the labelled images' symmetry maps included) and of re-embedding every image.
   ``--compare`` presses three times on the same labels in one run: without the prefix
   cache (the whole network over every image, as before the cache; ``--baseline KEY=VALUE``
   gives this press other arguments, e.g. an earlier default), with it on an empty
   cache (the first press fills it), and again (a later press, reusing it).
4. **After.** The same figures on the fine-tuned vectors.

ELPV: the annotator answers ``defect_level`` (4 classes; ``defective`` = level 2 or 3
follows from it), so ``--column defect_level --score defective,defect_level``.
Issue 9's targets: defect_level macro-F1 at 300 actions >= 0.60; defective macro P@1 >= 0.85.

Run (ELPV, ~10-15 min on 2 quiet cores with the default loss; `--loss ce` trains in half the time)::

    python benchmarks/bench_finetune.py --json     # the demo's data/projects/elpv and data/elpv/truth.csv
    python benchmarks/bench_finetune.py --project PROJECT --truth truth.csv --epochs 60 --lr 1e-3 \\
        --labels-cache labels300.json --json          # reuse the queue's labels of an earlier run
    python benchmarks/bench_finetune.py --project PROJECT --truth truth.csv --labels-cache labels300.json \
        --head cosine --tta --input-size 300 --train-from s8 --seed 1 --keep ft.npy --json   # the opt-in variants
    python benchmarks/bench_finetune.py --project PROJECT --truth truth.csv --labels-cache labels300.json \
        --loss ce --json                                 # cross-entropy alone (without the supervised contrastive loss)
    python benchmarks/bench_finetune.py --labels-cache labels300.json --compare --json   # press time, cache or not
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import add_project_argument, add_truth_argument, existing


def probe_scores(x: np.ndarray, train: np.ndarray, test: np.ndarray, y: np.ndarray) -> dict:
    """Logistic probe trained on rows ``train``, scored on rows ``test``: accuracy, macro-F1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
    clf.fit(x[train], y[train])
    pred = clf.predict(x[test])
    return {"accuracy": round(float(accuracy_score(y[test], pred)), 4),
            "macro_f1": round(float(f1_score(y[test], pred, average="macro")), 4)}


def figures(x: np.ndarray, rows: np.ndarray, labelled: np.ndarray, truths: dict[str, np.ndarray]) -> dict:
    """Probe and search figures of features ``x`` (n_rows, D) for each truth column.

    ``rows``: array rows with truth (aligned with each truth vector); ``labelled``: bool
    over ``rows``."""
    from labeler.evaluate.metrics import search_scores

    xs = np.asarray(x[rows], dtype=np.float32)
    train, test = np.flatnonzero(labelled), np.flatnonzero(~labelled)
    out = {}
    for col, y in truths.items():
        allc = search_scores(xs, y, max_queries=None)
        held = search_scores(xs[test], y[test], max_queries=None)
        out[col] = {**probe_scores(xs, train, test, y), "p1_macro": round(allc["p1_macro"], 4),
                    "p10_macro": round(allc["p10_macro"], 4), "p1_macro_heldout": round(held["p1_macro"], 4)}
    return out


def queue_labels(project, truth_by_row: dict[int, str], n: int, batch: int, log=print) -> list[int]:
    """Label ``n`` images the way a person following the queue does; returns their image ids in order."""
    from labeler.assist.next import next_to_label
    from labeler.labels import label_images

    row_of = {int(r["id"]): int(r["row"]) for r in project.store.image_table()}
    done: list[int] = []
    t0 = time.perf_counter()
    while len(done) < n:
        items = next_to_label(project, n=min(batch, n - len(done)))
        if not items:
            break
        for it in items:
            label_images(project, [it.image_id], truth_by_row[row_of[it.image_id]], annotator="simulated")
            done.append(it.image_id)
        log(f"  queue: {len(done)} labelled ({time.perf_counter() - t0:.0f} s)")
    return done


def estimate_at(project, rep, presses: list[dict], n: int, tmp: Path) -> dict:
    """Time the product's re-embedding (:func:`labeler.embedding.finetuned_net.embed_cached_maps`)
    of ``n`` synthetic prefix maps (random float16 of the project's cache shape, a memory-mapped
    file on disk) with the tail just trained, and estimate a press at ``n`` images.

    Later press (the cache is full): this press's training + the re-embedding of ``n``.
    First press: + the prefix over ``n`` images at this run's measured rate (the first
    press's cache seconds per image). Training does not grow with the collection (it sees
    the labelled images only)."""
    import torch

    from labeler.embedding.finetuned_net import embed_cached_maps, load_tail

    caches = [p for p in (project.root / "cache").glob("prefix-*.npy") if "-d4" not in p.name
              and not p.name.endswith(".sig.npy")]
    shape = np.load(caches[0], mmap_mode="r").shape[1:]
    path = tmp / "synthetic-maps.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, *shape))
    rng = np.random.default_rng(0)
    for i in range(0, n, 4096):  # activations after ReLU6-like units: non-negative, mostly small
        mm[i:i + 4096] = rng.exponential(0.5, size=(min(4096, n - i), *shape)).astype(np.float16)
    mm.flush()
    del mm
    tail, _ = load_tail(project, rep.name)
    maps = np.load(path, mmap_mode="r")
    t0 = time.perf_counter()
    x = embed_cached_maps(maps, np.ones(n, bool), tail, torch.device("cpu"))
    embed = time.perf_counter() - t0
    first = next((p for p in presses if p["mode"] in ("cache, first press", "cache")), None)
    per_image = first["cache_seconds"] / len(project.store.image_table()) if first else None
    later = rep.train_seconds + embed
    est = {"rows": n, "map_shape": list(shape), "cache_gib": round(n * int(np.prod(shape)) * 2 / 2**30, 2),
           "embed_seconds": round(embed, 1), "train_seconds": round(rep.train_seconds, 1),
           "later_press_seconds": round(later, 1),
           "first_press_seconds": round(later + per_image * n, 1) if per_image else None}
    assert x.shape[0] == n and np.isfinite(x).all()
    print(f"estimate at {n:,} images (prefix maps {tuple(shape)}, cache {est['cache_gib']} GiB): re-embedding "
          f"{embed:.0f} s measured; a later press {later:.0f} s (training {rep.train_seconds:.0f} s + re-embedding)"
          + (f", a first press {est['first_press_seconds']:.0f} s (the prefix over every image at "
             f"{1000 * per_image:.1f} ms each, this run's rate)" if per_image else ""))
    path.unlink()
    return est


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_project_argument(ap, "an ingested project (copied, never written)")
    add_truth_argument(ap)
    ap.add_argument("--column", default="defect_level", help="the column the simulated annotator answers")
    ap.add_argument("--score", default="defective,defect_level", help="truth columns scored before/after")
    ap.add_argument("--labels", type=int, default=300, help="label actions (default 300)")
    ap.add_argument("--batch", type=int, default=20, help="queue items taken per round (default 20)")
    ap.add_argument("--labels-cache", type=Path, default=None,
                    help="JSON of labelled image ids: read if present (skips the queue), else written")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--epochs", type=int, default=None, help="default: finetune_project's")
    ap.add_argument("--lr", type=float, default=None, help="default: finetune_project's")
    ap.add_argument("--train-from", default=None, help="default: finetune_project's (see its docstring)")
    ap.add_argument("--class-weight", default=None, help="default: finetune_project's (see its docstring)")
    ap.add_argument("--head", default=None, help="default: finetune_project's (see its docstring)")
    ap.add_argument("--loss", default=None, help="default: finetune_project's ('ce+supcon'; or 'ce')")
    ap.add_argument("--tta", action="store_true", default=None, help="average each vector over the 8 symmetries")
    ap.add_argument("--input-size", type=int, default=None, help="default: the backbone's")
    ap.add_argument("--seed", type=int, default=None, help="default: finetune_project's")
    ap.add_argument("--semi", default=None, help="default: finetune_project's ('none'; or 'fixmatch': also learn "
                                                  "from the unlabelled images)")
    ap.add_argument("--holdout", type=float, default=0.0,
                    help="share of each label held out of training (default 0: train on every label; "
                         "the product's press holds out 0.2, which FixMatch's held-out check needs)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="keep the fine-tuned vectors in this .npy (and the trained tail next to it, .pt)")
    ap.add_argument("--no-prefix-cache", action="store_true",
                    help="press without the prefix cache (the whole network over every image, as before)")
    ap.add_argument("--compare", action="store_true",
                    help="three presses on the same labels in one run: without the prefix cache, with it "
                         "(the first, filling it) and again (reusing it); figures of the first and the last")
    ap.add_argument("--baseline", action="append", default=[], metavar="KEY=VALUE",
                    help="with --compare: a finetune_project argument of the press without the cache only "
                         "(e.g. train_from=s16 to compare against an earlier default); repeatable")
    ap.add_argument("--presses", type=int, default=1,
                    help="presses with the prefix cache on the same labels (2: the first fills the cache, "
                         "the second is a later press); figures of the last")
    ap.add_argument("--estimate-rows", type=int, default=0, metavar="N",
                    help="also time the re-embedding of N images (synthetic prefix maps of the cache's shape, "
                         "memory-mapped from disk) with the trained tail, and estimate a press at N images")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    existing(args.project, "project")
    existing(args.truth, "truth")

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from labeler.embedding.feature_sets import load_feature_set
    from labeler.embedding.finetune import finetune_project
    from labeler.evaluate.truth import align_truth, read_truth
    from labeler.labels import label_images
    from labeler.project import Project

    out: dict = {"labels": args.labels, "column": args.column, "threads": args.threads,
                 "load_average_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "project"
        shutil.copytree(args.project, root, ignore=shutil.ignore_patterns("thumbs", "parts", "evaluation", "cache",
                                                                          "features", "*.db-shm", "*.db-wal"))
        project = Project(root)
        truths, answer = {}, None
        for col in args.score.split(",") + [args.column]:
            t, _ = read_truth(args.truth, col)
            rows, y, classes, _ = align_truth(project, t)
            truths[col] = (rows, y, classes)
        rows = truths[args.column][0]
        answer = {int(r): str(truths[args.column][2][c]) for r, c in zip(rows, truths[args.column][1])}
        if args.labels_cache and args.labels_cache.is_file():
            ids = json.loads(args.labels_cache.read_text())["image_ids"][: args.labels]
            row_of = {int(r["id"]): int(r["row"]) for r in project.store.image_table()}
            for i in ids:
                label_images(project, [i], answer[row_of[i]], annotator="simulated")
            print(f"{len(ids)} labels from {args.labels_cache}")
        else:
            print(f"simulated annotator: {args.labels} images from the 'label next' queue, {args.batch} at a time")
            ids = queue_labels(project, answer, args.labels, args.batch)
            if args.labels_cache:
                args.labels_cache.write_text(json.dumps({"image_ids": ids}))
        row_of = {int(r["id"]): int(r["row"]) for r in project.store.image_table()}
        labelled_rows = {row_of[i] for i in ids}
        scored = {c: (r, y) for c, (r, y, _) in truths.items() if c in args.score.split(",")}
        assert all(np.array_equal(r, rows) for r, _ in scored.values())
        labelled = np.array([int(r) in labelled_rows for r in rows])
        ys = {c: y for c, (_, y) in scored.items()}
        counts = {str(k): int(v) for k, v in zip(*np.unique([answer[r] for r in labelled_rows], return_counts=True))}
        print(f"labelled {int(labelled.sum())} images ({counts}); held out {int((~labelled).sum())}")
        out["label_counts"] = counts

        before = figures(np.asarray(load_feature_set(project, "embeddings")), rows, labelled, ys)
        kw = {k: v for k, v in {"epochs": args.epochs, "lr": args.lr, "train_from": args.train_from,
                                "class_weight": args.class_weight, "head": args.head,
                                "loss": args.loss, "tta": args.tta, "input_size": args.input_size,
                                "seed": args.seed, "semi": args.semi}.items() if v is not None}
        baseline = {}
        for item in args.baseline:
            key, _, value = item.partition("=")
            baseline[key] = int(value) if value.isdigit() else value
        out["baseline"] = baseline
        modes = ([("no cache", False), ("cache, first press", True), ("cache, later press", True)]
                 if args.compare else [("no cache", False)] if args.no_prefix_cache else
                 [("cache", True)] if args.presses < 2 else
                 [("cache, first press", True)] + [("cache, later press", True)] * (args.presses - 1))
        presses, afters = [], {}
        for mode, cached in modes:
            t0, c0 = time.perf_counter(), time.process_time()
            opts = {**kw, **baseline} if mode == "no cache" and args.compare else kw
            print(f"fine-tuning on the CPU, {args.threads} threads ({opts or 'defaults'}; {mode}) ...", flush=True)
            rep = finetune_project(project, device="cpu", holdout=args.holdout, progress=False, say=print,
                                   prefix_cache=cached, **opts)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            presses.append({"mode": mode, "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
                            "cache_seconds": round(rep.cache_seconds, 1), "train_seconds": round(rep.train_seconds, 1),
                            "embed_seconds": round(rep.embed_seconds, 1), "prefix_images": rep.prefix_images,
                            "heldout_accuracy": rep.heldout_accuracy, "semi_stats": rep.semi_stats,
                            "load_average": os.getloadavg()[0]})
            if rep.semi_stats:
                print(f"  unlabelled images: {rep.semi_stats}", flush=True)
            print(f"  {mode}: {wall:.1f} s (cache {rep.cache_seconds:.1f} s, training {rep.train_seconds:.1f} s, "
                  f"re-embedding {rep.embed_seconds:.1f} s; prefix run on {rep.prefix_images} images)", flush=True)
            after_x = np.asarray(load_feature_set(project, rep.name))
            if mode != "cache, first press":
                afters[mode] = figures(after_x, rows, labelled, ys)
        if args.estimate_rows:
            out["estimate"] = estimate_at(project, rep, presses, args.estimate_rows, Path(d))
        if args.keep:
            np.save(args.keep, after_x)
            shutil.copyfile(project.models_dir / f"{rep.name}.pt", args.keep.with_suffix(".pt"))
        after = afters[modes[-1][0]]
        project.store.close()
    if args.compare:
        base = presses[0]["wall_seconds"]
        out["speedup_first_press"] = round(base / presses[1]["wall_seconds"], 2)
        out["speedup_later_press"] = round(base / presses[2]["wall_seconds"], 2)
        out["after_no_cache"] = afters["no cache"]
        print(f"\npress without the cache {base:.0f} s; with it {presses[1]['wall_seconds']:.0f} s on the first "
              f"press ({out['speedup_first_press']}x), {presses[2]['wall_seconds']:.0f} s later "
              f"({out['speedup_later_press']}x)")
    out["presses"] = presses
    out.update({"finetune": {**kw, "epochs": rep.epochs}, "train_seconds": round(rep.train_seconds, 1),
                "embed_seconds": round(rep.embed_seconds, 1), "wall_seconds": round(wall, 1),
                "cpu_seconds": round(cpu, 1),
                "load_average_after": os.getloadavg()[0], "before": before, "after": after})
    print(f"\nwall time of the last press {wall:.0f} s: prefix cache {rep.cache_seconds:.0f} s, training "
          f"{rep.train_seconds:.0f} s (labelled images' symmetry maps included), re-embedding "
          f"{rep.embed_seconds:.0f} s; CPU time of this process {cpu:.0f} s (on {args.threads} uncontended cores "
          f"the wall time is at least {cpu / args.threads:.0f} s); load average "
          f"{out['load_average_before']:.1f} before, {out['load_average_after']:.1f} after")
    print("\n| column | features | probe accuracy | probe macro-F1 | macro P@1 (all) | macro P@1 (held out) |")
    print("|---|---|---:|---:|---:|---:|")
    for col in ys:
        for name, fig in (("ingest embeddings", before), *((f"fine-tuned ({m})", f) for m, f in afters.items())):
            f = fig[col]
            print(f"| {col} | {name} | {f['accuracy']:.3f} | {f['macro_f1']:.3f} | {f['p1_macro']:.3f} | "
                  f"{f['p1_macro_heldout']:.3f} |")
    print("\nreproduce: python " + " ".join([sys.argv[0], *sys.argv[1:]]))
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
