"""Placing new photos on an existing map: UMAP ``transform`` against nearest-neighbour placement.

``labeler ingest`` no longer refits the map when photos are added: it places the
new points (``pipeline.place_in_maps``). This measures the two ways to do it on
a real collection, holding out a share of the images as the "new photos":

- ``umap``: the saved reducer's ``transform`` (umap-learn: kNN initialisation,
  then 30-100 optimisation epochs against the fitted points);
- ``knn-k``: ``reduce.place_by_neighbours``, the membership-weighted mean of the
  map positions of the k most cosine-similar fitted points (what UMAP's
  transform starts from), for several k.

Quality figures, for the held-out points:

- ``neighbours_kept``: of a point's 10 nearest fitted neighbours in PCA space
  (cosine), the share that are also among its 10 nearest fitted points on the
  2-D map. Beside it, the same figure for the fitted points themselves
  (``fitted_reference``: what the map achieves for points it was fitted on) and
  for the held-out points when a full refit includes them (``refit_reference``).
- ``cluster_agreement``: HDBSCAN fitted on the 10-d clustering space of the
  fitted points, the held-out points placed in that space and assigned with
  ``approximate_predict``; agreement with the cluster most of the point's 10
  PCA neighbours belong to (``noise`` = share placed in noise).

Speed: seconds to place every held-out point; UMAP's first call in a process
includes numba compilation (``seconds_first_call``), which a ``labeler ingest``
process always pays.

Reproduce (the figures of the report)::

    python benchmarks/bench_placement.py --project data/projects/elpv --json   # the demo's project (default)
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from labeler.clustering import fit_hdbscan, predict_hdbscan
from labeler.index import ExactIndex
from labeler.reduce import fit_umap, place_by_neighbours, transform_umap

from common import add_project_argument, existing


def neighbours_kept(q_vec, q_xy, fit_vec, fit_xy, k=10, exclude=None) -> float:
    """Mean share of each query's k PCA neighbours (cosine) that are among its k map neighbours."""
    _, pca_nn = ExactIndex(fit_vec).search(q_vec, k, exclude=exclude)
    d = ((q_xy[:, None, :] - fit_xy[None, :, :]) ** 2).sum(-1)
    if exclude is not None:
        d[np.arange(len(d)), exclude] = np.inf
    map_nn = np.argpartition(d, k, axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(pca_nn, map_nn)]))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_project_argument(ap)
    ap.add_argument("--holdout", type=float, default=0.1, help="share of the images placed as new")
    ap.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    a = ap.parse_args(argv)

    from labeler.project import Project

    project = Project(existing(a.project, "project"))
    s = project.settings()
    vec = np.asarray(project.load_array("pca"), dtype=np.float32)
    n = len(vec)
    rng = np.random.default_rng(a.seed)
    new = np.sort(rng.choice(n, int(round(a.holdout * n)), replace=False))
    fit = np.setdiff1d(np.arange(n), new)
    print(f"{n} images ({a.project}), PCA {vec.shape[1]}-d; {len(fit)} fitted, {len(new)} placed as new")

    t0 = time.perf_counter()
    reducer, fit_xy = fit_umap(vec[fit], 2, n_neighbors=s.umap_neighbors, min_dist=s.umap_min_dist, seed=s.seed)
    fit_seconds = time.perf_counter() - t0
    dims = s.cluster_dims
    space_reducer, fit_space = fit_umap(vec[fit], dims, n_neighbors=s.umap_neighbors, min_dist=0.0, seed=s.seed)
    hdb = fit_hdbscan(fit_space, min_cluster_size=s.min_cluster_size, min_samples=s.min_samples, seed=s.seed)

    # The cluster most of each new point's 10 PCA neighbours belong to (noise = -1 counts as one).
    _, nn = ExactIndex(vec[fit]).search(vec[new], 10)
    expected = np.array([np.bincount(hdb.labels[r] + 1).argmax() - 1 for r in nn])

    out = {"n": int(n), "placed": int(len(new)), "fit_seconds_2d": round(fit_seconds, 2),
           "fitted_reference": neighbours_kept(vec[fit], fit_xy, vec[fit], fit_xy, exclude=np.arange(len(fit))),
           "methods": {}}

    def record(name, place_map, place_space):
        t0 = time.perf_counter()
        xy = place_map()
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        xy = place_map()
        t_map = time.perf_counter() - t0
        t0 = time.perf_counter()
        space = place_space()
        t_space = time.perf_counter() - t0
        lab, _ = predict_hdbscan(hdb, space)
        out["methods"][name] = {
            "neighbours_kept": neighbours_kept(vec[new], xy, vec[fit], fit_xy),
            "cluster_agreement": float(np.mean(lab == expected)),
            "noise": float(np.mean(lab == -1)),
            "seconds_first_call": round(t_first, 3),
            "seconds_map": round(t_map, 4),
            "seconds_space": round(t_space, 4),
        }

    record("umap", lambda: transform_umap(reducer, vec[new]), lambda: transform_umap(space_reducer, vec[new]))
    for k in a.ks:
        record(f"knn-{k}", lambda k=k: place_by_neighbours(vec[fit], [fit_xy], vec[new], k=k)[0],
               lambda k=k: place_by_neighbours(vec[fit], [fit_space], vec[new], k=k)[0])

    _, all_xy = fit_umap(vec, 2, n_neighbors=s.umap_neighbors, min_dist=s.umap_min_dist, seed=s.seed)
    out["refit_reference"] = neighbours_kept(vec[new], all_xy[new], vec[fit], all_xy[fit])
    out["expected_noise"] = float(np.mean(expected == -1))

    print(f"PCA neighbours kept on the map (10-NN overlap): fitted points {out['fitted_reference']:.3f}, "
          f"held-out points in a full refit {out['refit_reference']:.3f}")
    print("| method | neighbours kept | cluster agreement | noise | place map (s) | first call (s) | place 10-d space (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, m in out["methods"].items():
        print(f"| {name} | {m['neighbours_kept']:.3f} | {m['cluster_agreement']:.3f} | {m['noise']:.3f} | "
              f"{m['seconds_map']:.4f} | {m['seconds_first_call']:.3f} | {m['seconds_space']:.4f} |")
    if a.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
