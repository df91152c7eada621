"""Speed and memory after embedding: PCA, UMAP, HDBSCAN, KMeans and one kNN query.

Runs the library functions that ``labeler ingest`` runs (reduce.fit_pca,
reduce.fit_umaps, cluster.run_hdbscan, novelty.calibrate;
also cluster.run_kmeans and one exact top-10 query, index.ExactIndex) on
synthetic clustered embeddings, and prints time and peak memory of each step
and the peak resident memory of the whole process. The HNSW index is measured
by bench_search.py.

Goals (issue 12): map + clusters for 1M embeddings in at most 300 s and 8 GiB
on 2 cores. ``--trust N`` measures what placing the rows outside the UMAP fit
sample by their nearest fitted neighbours costs in layout quality against
``UMAP.transform`` (sklearn.manifold.trustworthiness on N random rows).

Synthetic data: ``--clusters`` Gaussian clusters of Zipf-like sizes whose
centres lie in a 64-d subspace of the ``--dim``-d embedding space, plus
isotropic noise: roughly how CNN embeddings of a photo collection look after
PCA. The true cluster of each point gives the quality figure (ARI of HDBSCAN
against it), so the cost of fitting UMAP on a sample can be read beside the time.

Peak memory = the highest resident set size (RSS, sampled every 20 ms) during
the step, minus the RSS before it.

Reproduce::

    python benchmarks/bench_reduce.py --sizes 10000 100000
    python benchmarks/bench_reduce.py --sizes 1000000 --k 0 --json
    python benchmarks/bench_reduce.py --sizes 100000 --trust 5000 --json
    python benchmarks/bench_reduce.py --sizes 100000 --fit-sample 20000 --umap-seed none
    python benchmarks/bench_reduce.py --sizes 100000 200000 --placement --json
    python benchmarks/bench_reduce.py --sizes 0 --project data/projects/elpv --truth data/elpv/truth.csv
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from labeler.clustering import run_hdbscan, run_kmeans
from labeler.index import ExactIndex
from labeler.novelty import calibrate
from labeler.reduce import _sample, fit_pca, fit_umap, fit_umaps

from common import (DEFAULT_PROJECT, DEFAULT_TRUTH, existing, project_embeddings, realistic_vectors,
                    synthetic_embeddings)


class PeakRSS:
    """Context manager: ``peak_mb`` = highest RSS above the starting RSS, in MiB."""

    def __init__(self, every: float = 0.02):
        self.every, self.proc = every, psutil.Process()

    def __enter__(self):
        self.start = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    def _watch(self):
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.peak_mb = (self.peak - self.start) / 2**20
        self.rss_mb = self.peak / 2**20


def ari_clustered(y, labels) -> tuple[float, float]:
    from sklearn.metrics import adjusted_rand_score

    keep = labels >= 0
    return (float(adjusted_rand_score(y[keep], labels[keep])) if keep.any() else float("nan"), float(1 - keep.mean()))


def process_peak_gib() -> float:
    """Highest resident set size of this process so far (getrusage), GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run(n: int, args) -> dict:
    rows = []

    def step(name, fn):
        with PeakRSS() as m:
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
        rows.append((name, dt, m.peak_mb))
        print(f"  {name:<48} {dt:8.2f} s   peak +{m.peak_mb:7.0f} MiB   (RSS {m.rss_mb:6.0f} MiB)", flush=True)
        return out

    emb, y = synthetic_embeddings(n, args.dim, args.clusters, seed=0)
    print(f"\nn = {n:,}  embeddings {emb.shape} float32 ({emb.nbytes / 2**20:.0f} MiB), {args.clusters} true clusters")
    if args.umap_seed == "auto":
        seed = 0 if n <= 50_000 else None
    else:
        seed = None if args.umap_seed == "none" else int(args.umap_seed)
    pca = step(f"PCA {args.pca} (fit_sample 200k)", lambda: fit_pca(emb, args.pca, seed=0))
    v = pca.vectors
    # The embeddings stay in memory, as in pipeline.rebuild_maps (it loads them whole).
    umap_kw = dict(n_neighbors=15, seed=seed, fit_sample=args.fit_sample, place=args.place)
    if args.n_epochs:
        umap_kw["n_epochs"] = args.n_epochs
    spaces = [(2, 0.1), (args.cluster_dims, 0.0)]
    (_, xy), (_, space) = step(f"UMAP 2-d + {args.cluster_dims}-d, one kNN graph, place: {args.place}",
                               lambda: fit_umaps(v, spaces, **_kw(umap_kw)))
    labels, _ = step("HDBSCAN mcs=15 ms=5 on UMAP space", lambda: run_hdbscan(space, min_cluster_size=15, min_samples=5))
    step("novelty calibration (novelty.calibrate)", lambda: calibrate(v))
    total = sum(r[1] for r in rows)
    peak = process_peak_gib()
    out = {"n": n, "seconds": {r[0]: round(r[1], 2) for r in rows},
           "step_peak_mib": {r[0]: round(r[2]) for r in rows}}
    a_h, noise = ari_clustered(y, labels)
    out.update(total_s=round(total, 1), peak_rss_gib=round(peak, 2), ari_hdbscan=round(a_h, 4), noise=round(noise, 4),
               clusters=int(labels.max() + 1))
    if args.k:
        km = step(f"KMeans k={args.k} on PCA vectors", lambda: run_kmeans(v, args.k, seed=0))
        out["ari_kmeans"] = round(ari_clustered(y, km)[0], 4)
    index = ExactIndex(v)
    qs = v[np.random.default_rng(1).choice(n, 20, replace=False)]
    times = []
    for q in qs:
        t0 = time.perf_counter()
        index.search(q, 10)
        times.append(time.perf_counter() - t0)
    ms = 1000 * np.array(times)
    out["exact_query_ms"] = round(float(np.median(ms)), 3)
    print(f"  {'exact top-10 query (one image)':<48} median {np.median(ms):.2f} ms over 20 queries "
          f"(HNSW: bench_search.py)")
    print(f"  quality: HDBSCAN ARI {a_h:.3f} (noise {noise:.1%}, {labels.max() + 1} clusters)"
          + (f"; KMeans k={args.k} ARI {out['ari_kmeans']:.3f}" if args.k else ""))
    verdict = "meets" if total <= 300 and peak <= 8 else "MISSES"
    print(f"  embeddings -> clusters + map (PCA, UMAPs, HDBSCAN, novelty): {total:.1f} s, process peak RSS "
          f"{peak:.2f} GiB  ({verdict} the 300 s / 8 GiB goal)")
    if args.trust:
        out["trust"] = layout_quality(v, args, seed)
    return out


def layout_quality(v: np.ndarray, args, seed) -> dict:
    """Trustworthiness of the 2-D map when the rows outside the fit sample are placed by
    their nearest fitted neighbours vs by ``UMAP.transform`` (one fit, both placements)."""
    from sklearn.manifold import trustworthiness

    from labeler.reduce import place_by_neighbours

    n = len(v)
    idx = _sample(n, args.fit_sample, seed or 0)
    if idx is None:  # every row is in the fit sample: no row is placed, nothing to compare
        print(f"  layout quality: not measured, all {n:,} rows are in the UMAP fit sample "
              f"(--fit-sample {args.fit_sample:,}); --trust needs more rows than that")
        return {"rows": 0, "skipped": f"n {n} <= fit_sample {args.fit_sample}"}
    reducer, _ = fit_umap(v, 2, n_neighbors=15, seed=seed, fit_sample=args.fit_sample)
    rest = np.setdiff1d(np.arange(n), idx)
    xy_nb, xy_tr = np.empty((n, 2), np.float32), np.empty((n, 2), np.float32)
    xy_nb[idx] = xy_tr[idx] = reducer.embedding_
    t0 = time.perf_counter()
    xy_nb[rest] = place_by_neighbours(np.ascontiguousarray(v[idx]), [reducer.embedding_], v, rest)[0]
    t_nb = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(0, len(rest), 20_000):
        xy_tr[rest[i : i + 20_000]] = reducer.transform(v[rest[i : i + 20_000]])
    t_tr = time.perf_counter() - t0
    sub = np.random.default_rng(2).choice(n, min(args.trust, n), replace=False)
    t_nb_q = trustworthiness(v[sub], xy_nb[sub], n_neighbors=10, metric="cosine")
    t_tr_q = trustworthiness(v[sub], xy_tr[sub], n_neighbors=10, metric="cosine")
    fit_rows = np.random.default_rng(3).choice(idx, min(args.trust, len(idx)), replace=False)
    t_fit = trustworthiness(v[fit_rows], reducer.embedding_[np.searchsorted(idx, fit_rows)], n_neighbors=10,
                            metric="cosine")
    print(f"  layout quality on {len(sub):,} random rows (trustworthiness, 10 neighbours; fit sample alone "
          f"{t_fit:.4f}):\n    placed by neighbours {t_nb_q:.4f} in {t_nb:.1f} s;  UMAP.transform {t_tr_q:.4f} in "
          f"{t_tr:.1f} s  ({t_tr / t_nb:.0f}x the time)")
    return {"rows": int(len(sub)), "neighbours": round(float(t_nb_q), 4), "transform": round(float(t_tr_q), 4),
            "fit_sample_only": round(float(t_fit), 4), "neighbours_s": round(t_nb, 2), "transform_s": round(t_tr, 2)}


def sample_cost(project_dir: Path, truth: Path, columns: list[str], samples: list[int], seed=0) -> None:
    """Quality cost of fitting the clustering UMAP on a sample, on a real project.

    For each fit sample size, the 10-d UMAP is fitted on that many random images and
    the others are transformed; HDBSCAN (project settings) then clusters, and the
    clusters are scored against the truth with :func:`labeler.evaluate.clustering_scores`.
    """
    from labeler.evaluate import align_truth, clustering_scores, read_truth
    from labeler.project import Project

    project = Project(project_dir)
    st = project.settings()
    v = np.asarray(project.load_array("pca"))
    truths = {}
    for col in columns:
        rows, y, classes, _ = align_truth(project, read_truth(truth, col)[0])
        truths[col] = (rows, y)
    print(f"\nquality cost of sample fitting on {project_dir} ({len(v)} images; UMAP {st.cluster_dims}-d "
          f"+ HDBSCAN mcs={st.min_cluster_size} ms={st.min_samples}):")
    for fs in [None, *samples]:
        t0 = time.perf_counter()
        _, space = fit_umap(v, st.cluster_dims, n_neighbors=st.umap_neighbors, min_dist=0.0, seed=seed, fit_sample=fs)
        labels, _ = run_hdbscan(space, min_cluster_size=st.min_cluster_size, min_samples=st.min_samples)
        dt = time.perf_counter() - t0
        parts = []
        for col, (rows, y) in truths.items():
            sc = clustering_scores(y, labels[rows])
            parts.append(f"{col}: ARI {sc['ari']:.3f} NMI {sc['nmi']:.3f} purity {sc['purity']:.1%} "
                         f"bal. {sc['balanced_purity']:.1%}")
        print(f"  fit on {'all' if fs is None else fs:>5}: {dt:5.1f} s, {labels.max() + 1} clusters, "
              f"noise {np.mean(labels < 0):.1%}; " + "; ".join(parts), flush=True)


def vote_predict(model, fitted: np.ndarray, points: np.ndarray, k: int = 10, core_rule: bool = True):
    """The candidate rejected in favour of clustering.fast_approximate_predict (kept to measure it).

    Each point takes the cluster of the UMAP-membership-weighted vote of its k
    nearest fitted points (FAISS HNSW, L2 in the clustering space; noise is one
    more class), and is noise when noise wins or (``core_rule``) when it lies
    farther from its nearest fitted point than that point's core distance.
    """
    import faiss

    from labeler.reduce import membership_weights

    raw = np.asarray(model.labels_, dtype=np.int64)
    core = np.asarray(model.prediction_data_.core_distances, dtype=np.float32)
    index = faiss.IndexHNSWFlat(fitted.shape[1], 32)
    index.add(np.ascontiguousarray(fitted, dtype=np.float32))
    index.hnsw.efSearch = 64
    d2, ids = index.search(np.ascontiguousarray(points, dtype=np.float32), k)
    d = np.sqrt(np.maximum(d2, 0))
    ids = np.maximum(ids, 0)
    w = membership_weights(1.0 - d)
    votes = np.zeros((len(d), int(raw.max()) + 2), np.float32)
    np.add.at(votes, (np.repeat(np.arange(len(d)), k), raw[ids].ravel() + 1), w.ravel())
    win = votes.argmax(axis=1)
    noise = (win == 0) | ((d[:, 0] > core[ids[:, 0]]) if core_rule else False)
    return np.where(noise, -1, win - 1)


def placement_agreement(n: int, args) -> dict:
    """Place the rows outside an HDBSCAN fit sample three ways; compare with approximate_predict.

    Data: ``--data elpv`` = :func:`common.realistic_vectors` of the ``--embeddings-of``
    project's embeddings (the ELPV spectrum),
    ``isotropic`` = :func:`synthetic_embeddings` + PCA. The clustering space is
    the ingest one (fit_umaps, 10-d); HDBSCAN (mcs 15, ms 5) is fitted on
    ``n * --hdbscan-share`` random rows (ingest: 200k of 1M = 0.2).
    """
    import hdbscan
    from sklearn.metrics import adjusted_rand_score

    from labeler.clustering import fast_approximate_predict

    if args.data == "elpv":
        v = realistic_vectors(n, project_embeddings(args.embeddings_of), 256)[0]
    else:
        v = fit_pca(synthetic_embeddings(n, args.dim, args.clusters)[0], args.pca, seed=0).vectors
    t0 = time.perf_counter()
    (_, space), = fit_umaps(v, [(args.cluster_dims, 0.0)], seed=None, fit_sample=args.fit_sample)
    t_umap = time.perf_counter() - t0
    space = space.astype(np.float64)
    fit_rows = np.sort(np.random.default_rng(0).choice(n, int(n * args.hdbscan_share), replace=False))
    rest = np.setdiff1d(np.arange(n), fit_rows)
    model = hdbscan.HDBSCAN(min_cluster_size=15, min_samples=5, prediction_data=True, core_dist_n_jobs=1)
    model.fit(space[fit_rows])
    out = {"n": n, "data": args.data, "fitted": len(fit_rows), "placed": len(rest), "umap_s": round(t_umap, 1),
           "clusters": int(model.labels_.max() + 1), "fit_noise": round(float(np.mean(model.labels_ < 0)), 4)}
    times, labels = {}, {}
    ways = [("approximate_predict", lambda: hdbscan.approximate_predict(model, space[rest])[0]),
            ("vectorised", lambda: fast_approximate_predict(model, space[rest])[0]),
            ("vote", lambda: vote_predict(model, space[fit_rows], space[rest])),
            ("vote_no_core_rule", lambda: vote_predict(model, space[fit_rows], space[rest], core_rule=False))]
    for name, fn in ways[: 2 if args.no_vote else 4]:
        t0 = time.perf_counter()
        labels[name] = np.asarray(fn())
        times[name] = time.perf_counter() - t0
    ref = labels["approximate_predict"]
    out["noise_approximate_predict"] = round(float(np.mean(ref < 0)), 4)
    print(f"\nn = {n:,} ({args.data}): HDBSCAN fitted on {len(fit_rows):,}, {len(rest):,} placed; "
          f"{out['clusters']} clusters; approximate_predict {times['approximate_predict']:.2f} s, "
          f"noise {out['noise_approximate_predict']:.2%}")
    for name in list(labels)[1:]:
        lab = labels[name]
        row = {"s": round(times[name], 2), "speedup": round(times["approximate_predict"] / times[name], 2),
               "ari": round(float(adjusted_rand_score(ref, lab)), 4),
               "noise_flips": round(float(np.mean((ref < 0) != (lab < 0))), 4),
               "same_label": round(float(np.mean(ref == lab)), 4)}
        out[name] = row
        print(f"  {name:<20} {row['s']:7.2f} s ({row['speedup']:.2f}x)  ARI vs approximate_predict "
              f"{row['ari']:.4f}  noise status differs {row['noise_flips']:.2%}  same label {row['same_label']:.2%}")
    return out


def _kw(kw: dict) -> dict:
    if "n_epochs" not in kw:
        return kw
    # fit_umap has no n_epochs parameter: patch the constructor default for this run.
    import umap

    kw = dict(kw)
    n_epochs = kw.pop("n_epochs")
    orig = umap.UMAP.__init__
    if not getattr(orig, "_bench_patched", False):
        def patched(self, *a, **k):
            k.setdefault("n_epochs", n_epochs)
            orig(self, *a, **k)
        patched._bench_patched = True
        umap.UMAP.__init__ = patched
    return kw


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=1280, help="embedding dimension (1280 = efficientnet-lite0, 2048 = resnet50)")
    ap.add_argument("--clusters", type=int, default=30)
    ap.add_argument("--pca", type=int, default=256)
    ap.add_argument("--cluster-dims", type=int, default=10)
    ap.add_argument("--k", type=int, default=20, help="KMeans k (0: skip KMeans)")
    ap.add_argument("--fit-sample", type=int, default=20_000, help="UMAP fit sample (reduce.fit_umap default 20000)")
    ap.add_argument("--place", choices=["neighbours", "transform"], default="neighbours",
                    help="how rows outside the UMAP fit sample are placed (reduce.fit_umaps)")
    ap.add_argument("--trust", type=int, default=0, help="also measure layout quality on this many rows (0: no)")
    ap.add_argument("--json", action="store_true", help="print one JSON object of the figures as the last line")
    ap.add_argument("--umap-seed", default="auto", help="auto: as ingest (fixed seed 0 up to 50k, parallel above); 'none': parallel (not reproducible)")
    ap.add_argument("--n-epochs", type=int, default=None, help="UMAP optimisation epochs (umap-learn default: 200 above 10k rows)")
    ap.add_argument("--project", type=Path, default=None,
                    help=f"also measure the quality cost of sample fitting on this project (e.g. {DEFAULT_PROJECT})")
    ap.add_argument("--truth", type=Path, default=DEFAULT_TRUTH, help="truth.csv for --project (default: %(default)s)")
    ap.add_argument("--columns", nargs="+", default=["cell_type", "defect_level"])
    ap.add_argument("--samples", type=int, nargs="+", default=[1000, 500])
    ap.add_argument("--placement", action="store_true",
                    help="only compare ways of placing rows outside the HDBSCAN fit sample (placement_agreement)")
    ap.add_argument("--data", choices=["elpv", "isotropic"], default="elpv", help="data of --placement")
    ap.add_argument("--embeddings-of", type=Path, default=DEFAULT_PROJECT,
                    help="the project whose embeddings give --placement --data elpv its spectrum (default: %(default)s)")
    ap.add_argument("--no-vote", action="store_true", help="--placement without the neighbour-vote candidates")
    ap.add_argument("--hdbscan-share", type=float, default=0.2, help="HDBSCAN fit sample share for --placement")
    args = ap.parse_args(argv)
    import numba
    import sklearn
    import umap

    print(f"bench_reduce: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM; numba threads {numba.get_num_threads()}; "
          f"umap-learn {umap.__version__}, scikit-learn {sklearn.__version__}")
    print("command: python benchmarks/bench_reduce.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    if args.placement:
        runs = [placement_agreement(n, args) for n in args.sizes if n > 0]
        if args.json:
            print(json.dumps({"placement": runs}))
        return
    t0 = time.perf_counter()
    # Above 4096 rows UMAP switches from exact kNN to NN-descent: warm both code paths.
    warm = synthetic_embeddings(5000, args.dim, 5, seed=1)[0]
    v = fit_pca(warm, 64).vectors
    fit_umaps(v, [(2, 0.1), (args.cluster_dims, 0.0)], fit_sample=4500)
    run_hdbscan(fit_umap(v, 2)[1])
    print(f"warm-up (numba JIT compilation, paid once per process by ingest): {time.perf_counter() - t0:.1f} s")
    runs = [run(n, args) for n in args.sizes if n > 0]
    if args.project is not None:
        sample_cost(existing(args.project, "project"), existing(args.truth, "truth"), args.columns, args.samples)
    if args.json:
        print(json.dumps({"runs": runs, "peak_rss_gib": round(process_peak_gib(), 2)}))


if __name__ == "__main__":
    main()
