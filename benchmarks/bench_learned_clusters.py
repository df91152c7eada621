"""Cluster-majority labelling cost before and after clusters in the learned space (issue 23, item 3).

On a copy of an ingested project with truth (ELPV: ``truth.csv``, column ``defective``):

1. **Before**: the project's current clustering, made at ingest in the space of the ingest
   embeddings. ``labeler evaluate``'s cluster-majority annotator
   (:func:`labeler.evaluate.simulate.cluster_majority`: label each cluster once with its
   majority class, largest first, then fix the rest one image at a time) gives the actions
   to 90 % and 95 % accuracy; beside them the clusters, the noise share and the purity (the
   accuracy once every cluster has its majority label, noise unlabelled).
2. **Labels**, truth-blind: ``--labels`` images drawn uniformly at random (``--seed``), or
   the image ids of a ``--labels-cache`` JSON (``{"image_ids": [...]}``, what
   ``bench_finetune.py --labels-cache`` writes after following the "label next" queue),
   each answered from the truth file.
3. **Press**: :func:`labeler.embedding.finetune.finetune_project` on those labels (all
   trained on, ``holdout=0``; ``--epochs``), on the CPU with ``--threads`` threads, then
   :func:`labeler.pipeline.recluster` with ``feature_set=`` the new set: a new map and
   clustering in the learned space, same clustering settings as the project.
4. **After**: the same figures on the new clustering.

The press has seen the labels of the images it trained on, so the learned space separates
those by construction (leakage): every figure is also given over the **held-out** images
only (the ones the press did not train on; the cluster-majority annotator then labels each
cluster with the majority of its held-out members). ``press flow`` counts what an annotator
after a press really pays: the N labels already given (correct), then each cluster labelled
once (a cluster label does not overwrite a person's label: :func:`labeler.labels.label_cluster`),
then the rest one by one.

Run (ELPV, 15-25 min on 2 shared cores with ``--epochs 10``; figures in docs/features.md)::

    nice -n 10 python benchmarks/bench_learned_clusters.py --labels 300 --epochs 10 --kmeans 2,20 --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from common import add_project_argument, add_truth_argument, existing


def cluster_figures(y: np.ndarray, clusters: np.ndarray) -> dict:
    """Cluster-majority figures of a clustering against truth codes ``y`` (both (n,) int)."""
    from labeler.evaluate.simulate import cluster_majority

    curve = cluster_majority(y, clusters)
    real = clusters >= 0
    majority = sum(np.bincount(y[clusters == c]).max() for c in np.unique(clusters[real]))
    return {"n": int(len(y)), "clusters": int(len(np.unique(clusters[real]))),
            "noise": round(float(1 - real.mean()), 4), "purity": round(float(majority / len(y)), 4),
            "actions_to_90": curve.actions_to_accuracy(0.9), "actions_to_95": curve.actions_to_accuracy(0.95)}


def press_flow(y: np.ndarray, clusters: np.ndarray, labelled: np.ndarray, targets=(0.9, 0.95)) -> dict:
    """Actions to each target accuracy when ``labelled`` (bool, (n,)) images already carry their
    true label (one action each): then each cluster, largest first, labelled once with the
    majority class of its members (labelled members keep theirs), then one image at a time."""
    correct, actions = [int(labelled.sum())], [int(labelled.sum())]
    ids, sizes = np.unique(clusters[clusters >= 0], return_counts=True)
    for c in ids[np.lexsort((ids, -sizes))]:
        members = clusters == c
        majority = np.bincount(y[members]).argmax()
        correct.append(correct[-1] + int((members & ~labelled & (y == majority)).sum()))
        actions.append(actions[-1] + 1)
    a, k = np.array(actions), np.array(correct)
    return {f"actions_to_{round(t * 100)}": int(np.min(a + np.maximum(0, math.ceil(t * len(y) - 1e-9) - k)))
            for t in targets}


def assignments_by_row(project, rows: np.ndarray) -> np.ndarray:
    """Current cluster of each array row in ``rows``."""
    ids, cl, _ = project.store.assignments()
    by_id = dict(zip(ids.tolist(), cl.tolist()))
    row_ids = project.store.row_image_ids()
    return np.array([by_id.get(int(row_ids[r]), -1) for r in rows], dtype=np.int64)


def measure(project, rows, y, held: np.ndarray, labelled: np.ndarray) -> dict:
    clusters = assignments_by_row(project, rows)
    return {"all": cluster_figures(y, clusters), "held_out": cluster_figures(y[held], clusters[held]),
            "press_flow": press_flow(y, clusters, labelled)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_project_argument(ap, "an ingested project (copied, never written)")
    add_truth_argument(ap)
    ap.add_argument("--column", default="defective", help="truth column answered and scored (default defective)")
    ap.add_argument("--labels", type=int, default=300, help="labels the press trains on (default 300)")
    ap.add_argument("--labels-cache", type=Path, default=None,
                    help='JSON {"image_ids": [...]} of the images to label (e.g. bench_finetune.py\'s queue)')
    ap.add_argument("--seed", type=int, default=0, help="seed of the random labels and of the press")
    ap.add_argument("--epochs", type=int, default=None, help="default: finetune_project's")
    ap.add_argument("--loss", default=None, help="default: finetune_project's ('ce+supcon'; or 'ce')")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--kmeans", default="", metavar="K,K",
                    help="also KMeans with these k in each space (labeler cluster --method kmeans --k K; after the "
                         "press with --feature-set, so each re-maps once more), e.g. 2,20")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    existing(args.project, "project")
    existing(args.truth, "truth")

    import torch

    torch.set_num_threads(args.threads)
    from labeler.embedding.feature_sets import feature_set_info
    from labeler.embedding.finetune import finetune_project
    from labeler.evaluate.truth import align_truth, read_truth
    from labeler.labels import label_images
    from labeler.pipeline import recluster
    from labeler.project import Project

    out: dict = {"column": args.column, "seed": args.seed, "threads": args.threads,
                 "load_average_before": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "project"
        shutil.copytree(args.project, root, ignore=shutil.ignore_patterns("thumbs", "parts", "evaluation", "cache",
                                                                          "*.db-shm", "*.db-wal"))
        project = Project(root)
        truth, _ = read_truth(args.truth, args.column)
        rows, y, classes, _ = align_truth(project, truth)
        row_ids = project.store.row_image_ids()
        if args.labels_cache:
            chosen = set(json.loads(args.labels_cache.read_text())["image_ids"][: args.labels])
            pick = np.array([i for i, r in enumerate(rows) if int(row_ids[r]) in chosen])
        else:
            pick = np.random.default_rng(args.seed).choice(len(rows), size=min(args.labels, len(rows)), replace=False)
        labelled = np.zeros(len(rows), dtype=bool)
        labelled[pick] = True
        for cls in range(len(classes)):
            ids = [int(row_ids[r]) for r in rows[labelled & (y == cls)]]
            if ids:
                label_images(project, ids, str(classes[cls]), annotator="simulated")
        counts = {str(classes[c]): int((y[labelled] == c).sum()) for c in range(len(classes))}
        print(f"{int(labelled.sum())} labels ({counts}, {'--labels-cache' if args.labels_cache else 'random'}); "
              f"{int((~labelled).sum())} images held out")
        out.update(labels=int(labelled.sum()), label_counts=counts, sampling="cache" if args.labels_cache else "random")

        ks = [int(k) for k in args.kmeans.split(",") if k]
        hdbscan = project.settings()
        before = measure(project, rows, y, ~labelled, labelled)
        for k in ks:  # in the ingest space, on its PCA vectors (no re-mapping)
            recluster(project, project.settings(method="kmeans", k=k), say=lambda m: None)
            before[f"kmeans_{k}"] = measure(project, rows, y, ~labelled, labelled)
        kw = {k: v for k, v in {"epochs": args.epochs, "loss": args.loss}.items() if v is not None}
        print(f"press: fine-tuning on the CPU, {args.threads} threads ({kw or 'defaults'}) ...", flush=True)
        t0 = time.perf_counter()
        rep = finetune_project(project, device="cpu", holdout=0.0, seed=args.seed, progress=False, say=print, **kw)
        press_s = time.perf_counter() - t0
        trained = set(feature_set_info(project, rep.name).get("train_image_ids") or row_ids[rows[labelled]].tolist())
        held = np.array([int(row_ids[r]) not in trained for r in rows])
        assert held.sum() == (~labelled).sum(), "the press trained on other images than the labelled ones"
        print(f"re-map and re-cluster in {rep.name} ...", flush=True)
        t0 = time.perf_counter()
        recluster(project, hdbscan, feature_set=rep.name, say=print)
        recluster_s = time.perf_counter() - t0
        after = measure(project, rows, y, held, labelled)
        for k in ks:  # KMeans on the PCA vectors of the learned set (a re-mapping in it each time)
            recluster(project, project.settings(method="kmeans", k=k), feature_set=rep.name, say=lambda m: None)
            after[f"kmeans_{k}"] = measure(project, rows, y, held, labelled)
        out.update(feature_set=rep.name, epochs=rep.epochs, press_seconds=round(press_s, 1),
                   recluster_seconds=round(recluster_s, 1), held_out=int(held.sum()),
                   settings={k: getattr(hdbscan, k) for k in ("method", "min_cluster_size", "min_samples")}, kmeans=ks,
                   before=before, after=after, load_average_after=round(os.getloadavg()[0], 2))
        project.store.close()

    print(f"\nELPV {args.column}: cluster-majority labelling cost, {out['labels']} labels ({out['sampling']}), "
          f"press {out['press_seconds']} s ({out['epochs']} epochs), re-map + re-cluster {out['recluster_seconds']} s")
    head = "| space | images | clusters | noise | purity | actions to 90 % | actions to 95 % |"
    print(head + "\n|" + "---|" * 7)
    runs = [("HDBSCAN", None)] + [(f"KMeans k={k}", f"kmeans_{k}") for k in ks]
    for method, key in runs:
        for name, res in (("ingest embeddings (before)", before), (f"{out['feature_set']} (after)", after)):
            res = res if key is None else res[key]
            for part, label in (("all", "all"), ("held_out", "held out")):
                f = res[part]
                print(f"| {method}: {name}, {label} | {f['n']} | {f['clusters']} | {f['noise']:.1%} | "
                      f"{f['purity']:.3f} | {f['actions_to_90']} | {f['actions_to_95']} |")
            pf = res["press_flow"]
            print(f"| {method}: {name}, press flow ({out['labels']} labels kept + clusters) | {before['all']['n']} "
                  f"| | | | {pf['actions_to_90']} | {pf['actions_to_95']} |")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
