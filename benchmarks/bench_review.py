"""Does ``labeler review`` find wrong labels, single and in whole groups? Planted on ELPV.

Labels every image of an ingested project with its truth class (``--column``,
default the ELPV cell type mono / poly), then per seed runs
:func:`labeler.review.review_labels` on two plantings:

* **singles**: ``--rate`` (5 %) of the labels flipped at random, one by one. Printed:
  the flagged images' precision (flips among the flagged) and recall (flips flagged),
  as before groups were checked, and the groups flagged although no group was planted
  (a flagged group counts as wrong when fewer than half its members carry a wrong label).
* **groups**: the same single flips plus whole wrong groups, each given one wrong
  label: ``--clusters`` (1) cluster(s) of the current clustering (5 to ``--max-cluster``
  images) and ``--neighbour-groups`` (3) groups of 5-20 near neighbours (an image and its
  nearest neighbours of the same truth class, cosine on the PCA vectors). A planted
  group is found when at least half of its members are in flagged groups; the
  precision of the flagged groups is the share of them whose members are mostly wrong.

The project is copied first (the original is not written to).

Run:  python benchmarks/bench_review.py                 (the demo's data/projects/elpv and truth)
      python benchmarks/bench_review.py --project P --truth T --json --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import add_project_argument, add_truth_argument, existing
from labeler.assist.suggest import clusters_by_row
from labeler.evaluate.truth import align_truth, read_truth
from labeler.index import build_index
from labeler.project import Project
from labeler.reduce import l2_normalize
from labeler.review import MAX_GROUP_SCORE, NEIGHBOUR_THRESHOLD, review_labels


def _other(rng, classes, c: str) -> str:
    return str(rng.choice([k for k in classes if k != c]))


def plant_groups(rng, x, true, clusters, n_clusters: int, n_neighbour: int, max_cluster: int) -> list[dict]:
    """Wrong groups: whole clusters and groups of 5-20 near neighbours of one truth class
    (row indices into the labelled images), each with one wrong label."""
    classes = sorted(set(true))
    used = np.zeros(len(true), bool)
    out = []
    if clusters is not None:
        ids, sizes = np.unique(clusters[clusters >= 0], return_counts=True)
        pool = [int(c) for c, s in zip(ids, sizes) if 5 <= s <= max_cluster]
        for c in rng.choice(pool, size=min(n_clusters, len(pool)), replace=False):
            rows = np.flatnonzero(clusters == c)
            major = max(classes, key=lambda k: int(np.sum(true[rows] == k)))
            rows = rows[true[rows] == major]  # the cluster's own class: one shared wrong label
            used[rows] = True
            out.append({"kind": "cluster", "rows": rows, "label": _other(rng, classes, major)})
    index = build_index(x)
    while sum(g["kind"] == "neighbours" for g in out) < n_neighbour:
        seed = int(rng.choice(np.flatnonzero(~used)))
        size = int(rng.integers(5, 21))
        _, nbrs = index.search(x[seed], 60, exclude=np.array([seed]))
        nbrs = [int(j) for j in np.ravel(nbrs) if true[j] == true[seed] and not used[j]][:size - 1]
        if len(nbrs) < size - 1:
            continue
        rows = np.array([seed, *nbrs])
        used[rows] = True
        out.append({"kind": "neighbours", "rows": rows, "label": _other(rng, classes, true[seed])})
    return out


def _apply(st, ids, labels: np.ndarray) -> None:
    for lab in sorted(set(labels)):
        st.set_labels([int(i) for i in ids[labels == lab]], str(lab), annotator="bench")


def _score(rep, ids, true, given, planted, flips) -> dict:
    wrong = {int(i) for i, t, g in zip(ids, true, given) if t != g}
    flagged = [it.image_id for it in rep.issues]
    hit = set(flagged) & flips
    in_groups = {i for g in rep.groups for i in g.image_ids}
    good = [g for g in rep.groups if 2 * sum(i in wrong for i in g.image_ids) >= len(g.image_ids)]
    found = {"cluster": [], "neighbours": []}
    for p in planted:
        members = {int(ids[r]) for r in p["rows"]}
        found[p["kind"]].append(2 * len(members & in_groups) >= len(members))
    out = {"n_flipped": len(flips), "n_flagged": len(flagged),
           "precision": round(len(set(flagged) & wrong) / max(1, len(flagged)), 4),
           "recall": round(len(hit) / max(1, len(flips)), 4),
           "n_groups_flagged": len(rep.groups), "n_groups_right": len(good),
           "group_precision": round(len(good) / len(rep.groups), 4) if rep.groups else None,
           "probe_accuracy": round(rep.probe_accuracy, 4), "group_accuracy": round(rep.group_accuracy, 4)}
    if planted:
        in_planted = {int(ids[r]) for p in planted for r in p["rows"]}
        out.update({"n_planted": len(planted), "n_found": int(sum(map(sum, found.values()))),
                    "planted_members_flagged_single": round(len(in_planted & set(flagged)) / len(in_planted), 4),
                    "found_clusters": f"{sum(found['cluster'])}/{len(found['cluster'])}",
                    "found_neighbours": f"{sum(found['neighbours'])}/{len(found['neighbours'])}",
                    "planted_sizes": [len(p["rows"]) for p in planted]})
    return out


def run_seed(src: Path, truth_path: Path, column: str, work: Path, seed: int, args) -> dict:
    dest = work / f"seed{seed}"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("thumbs", "parts", "*.tmp", "assist"))
    project = Project(dest)
    st = project.store
    truth, _ = read_truth(truth_path, column)
    rows, codes, classes, _ = align_truth(project, truth)
    ids = st.row_image_ids()[rows]
    true = np.asarray(classes)[codes].astype(object)
    x = l2_normalize(np.asarray(project.load_array("pca"))[rows])
    by_row = clusters_by_row(project, len(project.load_array("pca")))
    clusters = None if by_row is None else by_row[rows]
    rng = np.random.default_rng(seed)
    out = {"seed": seed, "n_images": len(ids)}
    planted = plant_groups(rng, x, true, clusters, args.clusters, args.neighbour_groups, args.max_cluster)
    in_group = np.zeros(len(ids), bool)
    for p in planted:
        in_group[p["rows"]] = True
    n_flip = int(round(args.rate * len(ids)))
    flip_rows = rng.choice(np.flatnonzero(~in_group), size=n_flip, replace=False)
    singles = true.copy()
    for r in flip_rows:
        singles[r] = _other(rng, sorted(set(true)), true[r])
    flips = {int(ids[r]) for r in flip_rows}
    for name, given, plant in (("singles", singles, []), ("groups", None, planted)):
        if given is None:
            given = singles.copy()
            for p in plant:
                given[p["rows"]] = p["label"]
        _apply(st, ids, given)
        t0 = time.perf_counter()
        rep = review_labels(project, vectors=args.vectors, use_clusters=not args.no_clusters,
                            neighbour_threshold=args.neighbour_threshold, max_group_score=args.max_group_score)
        out[name] = {**_score(rep, ids, true, given, plant, flips), "seconds": round(time.perf_counter() - t0, 1)}
    project.store.close()
    shutil.rmtree(dest, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_project_argument(ap, "an ingested, clustered ELPV project (read only)")
    add_truth_argument(ap)
    ap.add_argument("--column", default="cell_type", help="Truth column (default: cell_type).")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="Where the project copies go (default: a temporary folder, removed after).")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--rate", type=float, default=0.05, help="Share of labels flipped one by one.")
    ap.add_argument("--clusters", type=int, default=1, help="Whole clusters labelled wrong per seed.")
    ap.add_argument("--neighbour-groups", type=int, default=3, help="Groups of 5-20 neighbours labelled wrong.")
    ap.add_argument("--max-cluster", type=int, default=300, help="Largest cluster planted wrong.")
    ap.add_argument("--no-clusters", action="store_true",
                    help="Review without the clustering (groups of near neighbours only); clusters are still planted.")
    ap.add_argument("--neighbour-threshold", type=float, default=NEIGHBOUR_THRESHOLD,
                    help=f"Cosine similarity joining near neighbours (default {NEIGHBOUR_THRESHOLD}).")
    ap.add_argument("--max-group-score", type=float, default=MAX_GROUP_SCORE,
                    help=f"Flag a group when its label's mean held-out probability is at most this "
                         f"(default {MAX_GROUP_SCORE}).")
    ap.add_argument("--vectors", choices=["pca", "embeddings"], default="pca")
    ap.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")
    args = ap.parse_args()

    src, truth = existing(args.project, "project"), existing(args.truth, "truth file")
    with tempfile.TemporaryDirectory(prefix="bench-review-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = report_seeds(src, truth, work, args)
    summarise(results, args)


def report_seeds(src: Path, truth: Path, work: Path, args) -> list[dict]:
    results = []
    for s in args.seeds:
        results.append(run_seed(src, truth, args.column, work, s, args))
        r = results[-1]
        a, b = r["singles"], r["groups"]
        print(f"seed {s}: singles P {a['precision']:.3f} R {a['recall']:.3f}, {a['n_groups_flagged']} group(s) "
              f"flagged ({a['n_groups_flagged'] - a['n_groups_right']} wrong) | with groups: found clusters "
              f"{b['found_clusters']}, neighbour groups {b['found_neighbours']} (sizes {b['planted_sizes']}), "
              f"{b['n_groups_flagged']} flagged, {b['n_groups_right']} right; singles P {b['precision']:.3f} "
              f"R {b['recall']:.3f}  ({a['seconds']:.0f}+{b['seconds']:.0f} s)", flush=True)
    return results


def summarise(results: list[dict], args) -> None:
    n_planted = sum(r["groups"]["n_planted"] for r in results)
    flagged = sum(r["groups"]["n_groups_flagged"] for r in results)
    frac = lambda s: sum(int(v.split("/")[0]) for v in s) / max(1, sum(int(v.split("/")[1]) for v in s))  # noqa: E731
    mean = {
        "single_precision": round(float(np.mean([r["singles"]["precision"] for r in results])), 4),
        "single_recall": round(float(np.mean([r["singles"]["recall"] for r in results])), 4),
        "false_groups_without_planted": sum(r["singles"]["n_groups_flagged"] - r["singles"]["n_groups_right"]
                                            for r in results),
        "group_recall": round(sum(r["groups"]["n_found"] for r in results) / n_planted, 4),
        "group_recall_clusters": round(frac([r["groups"]["found_clusters"] for r in results]), 4),
        "group_recall_neighbours": round(frac([r["groups"]["found_neighbours"] for r in results]), 4),
        "group_precision": round(sum(r["groups"]["n_groups_right"] for r in results) / max(1, flagged), 4),
        "single_precision_with_groups": round(float(np.mean([r["groups"]["precision"] for r in results])), 4),
        "single_recall_with_groups": round(float(np.mean([r["groups"]["recall"] for r in results])), 4),
        "planted_members_flagged_single": round(float(np.mean([r["groups"]["planted_members_flagged_single"]
                                                               for r in results])), 4),
    }
    print(f"{args.column}, {results[0]['n_images']} images, {len(results)} seed(s), probe on {args.vectors}; "
          f"{args.rate:.0%} single flips; planted per seed: {args.clusters} cluster(s), "
          f"{args.neighbour_groups} neighbour group(s)")
    print(f"single flips alone: precision {mean['single_precision']:.3f}, recall {mean['single_recall']:.3f}; "
          f"groups flagged wrongly: {mean['false_groups_without_planted']}")
    print(f"planted wrong groups: recall {mean['group_recall']:.3f} (clusters {mean['group_recall_clusters']:.3f}, "
          f"neighbour groups {mean['group_recall_neighbours']:.3f}), precision {mean['group_precision']:.3f} "
          f"(goal: recall >= 0.8); the single-image check alone flags "
          f"{mean['planted_members_flagged_single']:.1%} of their members")
    print(f"single flips beside them: precision {mean['single_precision_with_groups']:.3f}, "
          f"recall {mean['single_recall_with_groups']:.3f}")
    print("command: " + " ".join(shlex.quote(a) for a in ["python", *sys.argv]))
    if args.json:
        print(json.dumps({"column": args.column, "rate": args.rate, "vectors": args.vectors, "mean": mean,
                          "runs": results}))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
