"""Speed and memory after embedding: PCA, UMAP, HDBSCAN, KMeans and one kNN query.

Runs the library functions that ``labeler ingest`` runs (reduce.fit_pca,
reduce.fit_umap, cluster.run_hdbscan, cluster.run_kmeans, index.ExactIndex) on
synthetic clustered embeddings, and prints time and peak memory of each step.

Goals (the issue): 100k images from embeddings to clusters + map in at most
2 minutes; a top-10 query in at most 5 ms at 100k.

Synthetic data: ``--clusters`` Gaussian clusters of Zipf-like sizes whose
centres lie in a 64-d subspace of the ``--dim``-d embedding space, plus
isotropic noise: roughly how CNN embeddings of a photo collection look after
PCA. The true cluster of each point gives the quality figure (ARI of HDBSCAN
against it), so the cost of fitting UMAP on a sample can be read beside the time.

Peak memory = the highest resident set size (RSS, sampled every 20 ms) during
the step, minus the RSS before it.

Reproduce::

    python benchmarks/bench_reduce.py --sizes 10000 100000
    python benchmarks/bench_reduce.py --sizes 100000 --fit-sample 20000 --umap-seed none
    python benchmarks/bench_reduce.py --sizes 0 --project data/projects/elpv --truth data/elpv/truth.csv
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labeler.clustering import run_hdbscan, run_kmeans  # noqa: E402
from labeler.index import build_index, nearest_neighbour_similarities  # noqa: E402
from labeler.reduce import fit_pca, fit_umap  # noqa: E402


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


def synthetic_embeddings(n: int, dim: int, n_clusters: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) float32 clustered embeddings and (n,) int64 true clusters."""
    rng = np.random.default_rng(seed)
    sizes = 1.0 / np.arange(1, n_clusters + 1) ** 0.7
    y = rng.choice(n_clusters, size=n, p=sizes / sizes.sum())
    basis = np.linalg.qr(rng.normal(size=(dim, 64)))[0].T.astype(np.float32)  # (64, dim) orthonormal
    centres = rng.normal(size=(n_clusters, 64)).astype(np.float32) * 1.0
    x = np.empty((n, dim), np.float32)
    for i in range(0, n, 50_000):
        j = slice(i, min(n, i + 50_000))
        latent = centres[y[j]] + 0.9 * rng.standard_normal((len(y[j]), 64), dtype=np.float32)
        x[j] = latent @ basis + 0.08 * rng.standard_normal((len(y[j]), dim), dtype=np.float32)
    np.maximum(x, 0, out=x)  # CNN features after ReLU + pooling are non-negative
    return x, y.astype(np.int64)


def ari_clustered(y, labels) -> tuple[float, float]:
    from sklearn.metrics import adjusted_rand_score

    keep = labels >= 0
    return (float(adjusted_rand_score(y[keep], labels[keep])) if keep.any() else float("nan"), float(1 - keep.mean()))


def run(n: int, args) -> list[tuple[str, float, float]]:
    rows = []

    def step(name, fn):
        with PeakRSS() as m:
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
        rows.append((name, dt, m.peak_mb))
        print(f"  {name:<34} {dt:8.2f} s   peak +{m.peak_mb:7.0f} MiB   (RSS {m.rss_mb:6.0f} MiB)", flush=True)
        return out

    emb, y = synthetic_embeddings(n, args.dim, args.clusters, seed=0)
    print(f"\nn = {n:,}  embeddings {emb.shape} float32 ({emb.nbytes / 2**20:.0f} MiB), {args.clusters} true clusters")
    if args.umap_seed == "auto":
        seed = 0 if n <= 50_000 else None
    else:
        seed = None if args.umap_seed == "none" else int(args.umap_seed)
    pca = step(f"PCA {args.pca} (fit_sample 200k)", lambda: fit_pca(emb, args.pca, seed=0))
    v = pca.vectors
    umap_kw = dict(n_neighbors=15, seed=seed, fit_sample=args.fit_sample)
    if args.n_epochs:
        umap_kw["n_epochs"] = args.n_epochs
    _, xy = step(f"UMAP 2-d map (fit_sample {args.fit_sample})", lambda: fit_umap(v, 2, min_dist=0.1, **_kw(umap_kw)))
    _, space = step(f"UMAP {args.cluster_dims}-d cluster space", lambda: fit_umap(v, args.cluster_dims, min_dist=0.0, **_kw(umap_kw)))
    labels, _ = step("HDBSCAN mcs=15 ms=5 on UMAP space", lambda: run_hdbscan(space, min_cluster_size=15, min_samples=5))
    step("nn-similarity sample (novelty)", lambda: nearest_neighbour_similarities(v, sample=2000))
    total = sum(r[1] for r in rows)
    km = step(f"KMeans k={args.k} on PCA vectors", lambda: run_kmeans(v, args.k, seed=0))
    index = step("index build (build_index: exact < 50k, FAISS fp16 above)", lambda: build_index(v))
    rng = np.random.default_rng(1)
    qs = v[rng.choice(n, 200, replace=False)]
    times = []
    for q in qs:
        t0 = time.perf_counter()
        index.search(q, 10)
        times.append(time.perf_counter() - t0)
    ms = 1000 * np.array(times)
    print(f"  {'top-10 query (one image)':<34} median {np.median(ms):.2f} ms, p95 {np.percentile(ms, 95):.2f} ms over 200 queries")
    a_h, noise = ari_clustered(y, labels)
    a_k, _ = ari_clustered(y, km)
    print(f"  quality: HDBSCAN ARI {a_h:.3f} (noise {noise:.1%}, {labels.max() + 1} clusters); KMeans k={args.k} ARI {a_k:.3f}")
    verdict = "meets" if total <= 120 else "MISSES"
    print(f"  embeddings -> clusters + map (PCA, 2 UMAPs, HDBSCAN, nn-sims): {total:.1f} s  ({verdict} the 2-minute goal)")
    rows.append(("total embeddings -> clusters + map", total, float("nan")))
    rows.append(("top-10 query median (ms)", float(np.median(ms)), float("nan")))
    return rows


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
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--fit-sample", type=int, default=20_000, help="UMAP fit sample (reduce.fit_umap default 20000)")
    ap.add_argument("--umap-seed", default="auto", help="auto: as ingest (fixed seed 0 up to 50k, parallel above); 'none': parallel (not reproducible)")
    ap.add_argument("--n-epochs", type=int, default=None, help="UMAP optimisation epochs (umap-learn default: 200 above 10k rows)")
    ap.add_argument("--project", type=Path, default=None, help="also measure the quality cost of sample fitting here")
    ap.add_argument("--truth", type=Path, default=None, help="truth.csv for --project")
    ap.add_argument("--columns", nargs="+", default=["cell_type", "defect_level"])
    ap.add_argument("--samples", type=int, nargs="+", default=[1000, 500])
    args = ap.parse_args(argv)
    import numba
    import sklearn
    import umap

    print(f"bench_reduce: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM; numba threads {numba.get_num_threads()}; "
          f"umap-learn {umap.__version__}, scikit-learn {sklearn.__version__}")
    print("command: python benchmarks/bench_reduce.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    t0 = time.perf_counter()
    # Above 4096 rows UMAP switches from exact kNN to NN-descent: warm both code paths.
    warm = synthetic_embeddings(5000, args.dim, 5, seed=1)[0]
    v = fit_pca(warm, 64).vectors
    fit_umap(v, 2)
    fit_umap(v, args.cluster_dims, min_dist=0.0)
    run_hdbscan(fit_umap(v, 2)[1])
    print(f"warm-up (numba JIT compilation, paid once per process by ingest): {time.perf_counter() - t0:.1f} s")
    for n in [n for n in args.sizes if n > 0]:
        run(n, args)
    if args.project is not None:
        sample_cost(args.project, args.truth, args.columns, args.samples)


if __name__ == "__main__":
    main()
