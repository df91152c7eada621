"""Search at scale: exact top-10 against the HNSW index, one query at a time.

On ``--n`` synthetic clustered vectors of the project's search dimension (the
PCA components, 256; the generator of bench_reduce.py, centred and
L2-normalised as the PCA step leaves them) this measures

- ``exact_ms``: median time of one top-10 query by :class:`labeler.index.ExactIndex`;
- ``build_s``: building the :class:`labeler.index.HnswIndex` (FAISS IndexHNSWFlat);
- ``ann_ms`` and ``recall_at_10``: one top-10 query through the HNSW index
  (median time) and the share of the exact top 10 it returns, for the
  library's ``efSearch`` and, in the table, for other values of it.

Queries are ``--queries`` random rows (each left out of its own answer, as
"more like this image" does). Run::

    python benchmarks/bench_search.py --n 100000
    python benchmarks/bench_search.py --n 1000000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reduce import synthetic_embeddings  # noqa: E402

from labeler import index as ix  # noqa: E402


def search_vectors(n: int, dim: int = 256, clusters: int = 30, seed: int = 0) -> np.ndarray:
    """(n, dim) float32 clustered, centred, unit-norm vectors (what PCA + normalisation yield)."""
    x, _ = synthetic_embeddings(n, dim, clusters, seed=seed)
    x -= x.mean(axis=0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def timed_queries(index, x, rows, k=10) -> tuple[float, np.ndarray]:
    """Median ms of one query at a time, and the (m, k) rows found."""
    times, found = [], []
    for r in rows:
        t = time.perf_counter()
        _, got = index.search(x[r], k, exclude=np.array([r]))
        times.append(time.perf_counter() - t)
        found.append(got[0])
    return 1000 * float(np.median(times)), np.array(found)


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def similarity_ratio(x, rows, found, truth) -> float:
    """Mean cosine similarity of the found top 10 over that of the exact top 10: how
    close the misses are (near-ties in dense clusters count as misses for recall)."""
    q = x[rows]
    s_found = np.einsum("md,mkd->mk", q, x[np.where(found < 0, truth, found)])
    s_true = np.einsum("md,mkd->mk", q, x[truth])
    return float(s_found.mean() / s_true.mean())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="number of vectors")
    ap.add_argument("--dim", type=int, default=256, help="search dimension (PCA components)")
    ap.add_argument("--clusters", type=int, default=30)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128], help="efSearch values for the table")
    ap.add_argument("--json", action="store_true", help="print one JSON object of the figures as the last line")
    args = ap.parse_args(argv)
    import faiss

    print(f"bench_search: {os.cpu_count()} CPU(s), faiss {faiss.__version__} ({faiss.omp_get_max_threads()} "
          f"OpenMP threads); HNSW M={ix.HNSW_M} efConstruction={ix.HNSW_EF_CONSTRUCTION} "
          f"efSearch={ix.HNSW_EF_SEARCH}; exact below {ix.HNSW_FROM:,} in the library")
    t = time.perf_counter()
    x = search_vectors(args.n, args.dim, args.clusters)
    print(f"{args.n:,} x {args.dim} synthetic vectors ({x.nbytes / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f} s")
    rows = np.random.default_rng(1).choice(args.n, args.queries, replace=False)
    exact = ix.ExactIndex(x)
    _, truth = exact.search(x[rows], 10, exclude=rows)  # batched ground truth
    exact_ms, _ = timed_queries(exact, x, rows[: min(len(rows), 50)])
    print(f"exact top-10, one query:  {exact_ms:8.2f} ms (median of {min(len(rows), 50)})")
    t = time.perf_counter()
    hnsw = ix.HnswIndex.build(x)
    build_s = time.perf_counter() - t
    print(f"HNSW build:               {build_s:8.1f} s")
    table = {}
    for ef in sorted(set(args.ef) | {ix.HNSW_EF_SEARCH}):
        hnsw.ef_search = ef
        ms, found = timed_queries(hnsw, x, rows)
        table[ef] = (ms, recall_at(found, truth), similarity_ratio(x, rows, found, truth))
        mark = "  <- library default" if ef == ix.HNSW_EF_SEARCH else ""
        print(f"HNSW efSearch {ef:4d}:       {ms:8.3f} ms   recall@10 {table[ef][1]:.4f}   "
              f"similarity ratio {table[ef][2]:.4f}   {exact_ms / ms:6.1f}x faster than exact{mark}")
    ann_ms, rec, _ = table[ix.HNSW_EF_SEARCH]
    out = {"n": args.n, "dim": args.dim, "exact_ms": round(exact_ms, 4), "ann_ms": round(ann_ms, 4),
           "recall_at_10": round(rec, 4), "build_s": round(build_s, 2)}
    print("command: python benchmarks/bench_search.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    if args.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
