"""Search at scale: exact top-10 against HNSW indexes, one query at a time.

On ``--n`` vectors of the project's search dimension (the PCA components, 256;
L2-normalised as the PCA step leaves them) this measures

- ``exact_ms``: median time of one top-10 query by :class:`labeler.index.ExactIndex`;
- per (M, efConstruction) of ``--grid``: building a :class:`labeler.index.HnswIndex`
  (FAISS IndexHNSWFlat, inner product) and its memory (vectors + graph links);
- per efSearch of ``--ef``: one top-10 query through that index (median ms)
  and recall@10, the share of the exact top 10 it returns;
- ``searcher_ms``: one whole top-10 query of :meth:`labeler.search.Searcher.by_id`
  (median), on a project written from the same vectors (image rows, ``pca.npy``, a
  map, a clustering of ``--clusters`` groups, 10 % of the images labelled): the index
  search plus the neighbours' labels, clusters and paths from SQLite, the vote and
  the result object; ``searcher_index_ms`` is its index search alone and
  ``searcher_recall_at_10`` the recall of its answers. The project's index is the
  one ``Searcher`` gets (:func:`labeler.index.project_index`: exact below
  ``index.HNSW_FROM``, else HNSW built with the library's parameters for that size);
  ``searcher_build_s`` is the time to build and save it. ``--no-searcher`` skips this.

The row of the library's parameters (``index.HNSW_M``, ``HNSW_EF_CONSTRUCTION``,
``HNSW_EF_SEARCH``) gives ``ann_ms`` / ``recall_at_10`` / ``build_s`` of the JSON.
Queries are ``--queries`` random rows (each left out of its own answer, as
"more like this image" does).

Data (``--data``):

- ``elpv`` (default): real CNN embeddings (``--embeddings`` FILE.npy, default the
  embeddings of ``--project``: the demo project's 2,624 ELPV vectors) are PCA'd to 256
  components (:func:`common.realistic_vectors`); each synthetic vector is a random real one plus Gaussian noise
  drawn in the whitened PCA space and mapped back (the inverse whitening:
  component j scaled by sqrt(variance_j)), so the set keeps the real, decaying
  spectrum (ELPV: the first component 40 % of the variance, participation ratio
  about 5.5). The noise scale is set so a synthetic vector lies from its real
  anchor as far as a real photo lies from its nearest other photo (the median),
  i.e. each anchor becomes a blob of near-duplicates of one photo.
- ``isotropic``: :func:`common.synthetic_embeddings` (Gaussian clusters whose centres
  span a 64-d subspace plus isotropic noise, ReLU), centred and normalised: a
  flat spectrum of intrinsic dimension about 64, the hardest case for a graph
  index (hnswlib's ALGO_PARAMS: high intrinsic dimension needs a larger M) and
  unlike CNN embeddings after PCA.

Run::

    python benchmarks/bench_search.py --n 100000                  # after `labeler demo --no-serve`
    python benchmarks/bench_search.py --n 1000000 --json
    python benchmarks/bench_search.py --n 200000 --data isotropic --grid 32:40 48:80 --ef 64 128 256
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from labeler import index as ix
from labeler.project import Project

from common import add_project_argument, existing, project_embeddings, realistic_vectors, synthetic_embeddings


def search_vectors(n: int, dim: int = 256, clusters: int = 30, seed: int = 0) -> np.ndarray:
    """(n, dim) float32 isotropic clustered, centred, unit-norm vectors."""
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


def searcher_project(root: Path, x: np.ndarray, clusters: int, seed: int = 0) -> Project:
    """A project whose ``pca.npy`` is ``x``: one image row per vector, a random 2-D map,
    a clustering of ``clusters`` random groups and every tenth image labelled."""
    n = len(x)
    rng = np.random.default_rng(seed)
    p = Project(root, create=True)
    p.store.set_meta(image_root=str(root / "images"), novelty_threshold=0.5,
                     backbone={"name": "synthetic", "view": "whole"})
    p.store.add_or_update_images([{"path": f"img/{i:07d}.jpg", "size": 1000, "mtime": 0.0, "hash": f"{i:016x}"}
                                  for i in range(n)])
    ids = np.array(sorted(r["id"] for r in p.store.images_by_path().values()), dtype=np.int64)
    p.store.commit_embedded([{"id": int(i), "row": r, "width": 64, "height": 64, "top1": 0, "top1_prob": 0.5}
                             for r, i in enumerate(ids)])
    p.save_array("pca", x)
    p.save_array("map", rng.normal(size=(n, 2)).astype(np.float32))
    groups = rng.integers(0, clusters, n)
    p.store.add_clustering("kmeans", {"k": clusters, "synthetic": True}, ids, groups, None, [])
    for name in ("a", "b", "c"):
        p.store.set_labels(ids[::10][rng.integers(0, 3, len(ids[::10])) == "abc".index(name)], name)
    return p


def searcher_figures(x: np.ndarray, rows: np.ndarray, truth: np.ndarray, clusters: int) -> dict:
    """Build a project of ``x`` (:func:`searcher_project`), open a :class:`Searcher` on it
    and time one ``by_id`` top-10 query per row of ``rows`` (median ms), whole and its
    index search alone."""
    import tempfile

    from labeler.search import Searcher

    with tempfile.TemporaryDirectory(prefix="labeler-bench-search-") as tmp:
        t = time.perf_counter()
        project = searcher_project(Path(tmp) / "project", x, clusters)
        write_s = time.perf_counter() - t
        t = time.perf_counter()
        s = Searcher(project)
        build_s = time.perf_counter() - t
        row_ids = s.row_ids
        for r in rows[:5]:  # first touches of the memory maps and SQLite pages
            s.by_id(int(row_ids[r]), 10)
        whole, found = [], []
        for r in rows:
            t = time.perf_counter()
            res = s.by_id(int(row_ids[r]), 10)
            whole.append(time.perf_counter() - t)
            found.append([s.id_to_row[nb.image_id] for nb in res.neighbours])
        index_ms, _ = timed_queries(s.index, x, rows)
        kind = "exact" if isinstance(s.index, ix.ExactIndex) else f"HNSW {s.index.params}"
        meta_path = project.models_dir / ix.INDEX_META  # what index.tune_ef_search measured
        tuned = json.loads(meta_path.read_text()).get("recall_at_10") if meta_path.is_file() else None
        if tuned is not None:
            kind += f", tuned on its own rows to recall@10 {tuned:.4f}"
        project.store.close()
    out = {"searcher_ms": round(1000 * float(np.median(whole)), 4), "searcher_index_ms": round(index_ms, 4),
           "searcher_recall_at_10": round(recall_at(np.array(found), truth), 4), "searcher_index": kind,
           "searcher_build_s": round(build_s, 1), "searcher_p90_ms": round(1000 * float(np.quantile(whole, 0.9)), 4)}
    print(f"Searcher.by_id top-10 (index: {kind}; project written in {write_s:.1f} s, index built and saved in "
          f"{build_s:.1f} s): {out['searcher_ms']:.3f} ms a query, metadata included (median of {len(rows)}; "
          f"p90 {out['searcher_p90_ms']:.3f} ms); its index search alone {index_ms:.3f} ms; recall@10 "
          f"{out['searcher_recall_at_10']:.4f}", flush=True)
    return out


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def index_mib(hnsw: ix.HnswIndex) -> float:
    """Vectors (n x d float32) + graph links (int32) + per-node offsets and levels, MiB."""
    h = hnsw.index.hnsw
    n = len(hnsw)
    links = h.neighbors.size() * 4 + h.offsets.size() * 8 + h.levels.size() * 4
    return (n * hnsw.dim * 4 + links) / 2**20


def _grid(text: str) -> tuple[int, int]:
    m, efc = text.split(":")
    return int(m), int(efc)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="number of vectors")
    ap.add_argument("--dim", type=int, default=256, help="search dimension (PCA components)")
    ap.add_argument("--data", choices=["elpv", "isotropic"], default="elpv", help="see the module docstring")
    add_project_argument(ap, "the project whose embeddings --data elpv uses")
    ap.add_argument("--embeddings", type=Path, default=None,
                    help="an (n, D) .npy of real embeddings for --data elpv instead of the project's")
    ap.add_argument("--clusters", type=int, default=30, help="clusters of --data isotropic")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--grid", type=_grid, nargs="+", default=None,
                    help="M:efConstruction pairs to build (default: the library's)")
    ap.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128], help="efSearch values for the table")
    ap.add_argument("--searcher", action=argparse.BooleanOptionalAction, default=True,
                    help="also time a whole Searcher query on a project of the vectors (default: on)")
    ap.add_argument("--table", action=argparse.BooleanOptionalAction, default=True,
                    help="build the --grid indexes and print the efSearch table (default: on)")
    ap.add_argument("--json", action="store_true", help="print one JSON object of the figures as the last line")
    args = ap.parse_args(argv)
    import faiss

    lib = (ix.HNSW_M, ix.HNSW_EF_CONSTRUCTION)
    grid = args.grid or [lib]
    print(f"bench_search: {os.cpu_count()} CPU(s), faiss {faiss.__version__} ({faiss.omp_get_max_threads()} "
          f"OpenMP threads); library HNSW M={ix.HNSW_M} efConstruction={ix.HNSW_EF_CONSTRUCTION} "
          f"efSearch={ix.HNSW_EF_SEARCH}; exact below {ix.HNSW_FROM:,}")
    t = time.perf_counter()
    noise = None
    if args.data == "elpv":
        real = (np.load(existing(args.embeddings, "embeddings")) if args.embeddings is not None
                else project_embeddings(args.project))
        source = args.embeddings or args.project
        x, noise = realistic_vectors(args.n, real, args.dim)
        what = f"ELPV-spectrum vectors ({source}, noise {noise:.3f} whitened)"
    else:
        x = search_vectors(args.n, args.dim, args.clusters)
        what = f"isotropic clustered vectors ({args.clusters} clusters)"
    print(f"{args.n:,} x {args.dim} {what}, {x.nbytes / 2**20:.0f} MiB, in {time.perf_counter() - t:.1f} s")
    rows = np.random.default_rng(1).choice(args.n, args.queries, replace=False)
    exact = ix.ExactIndex(x)
    _, truth = exact.search(x[rows], 10, exclude=rows)  # batched ground truth
    exact_ms, _ = timed_queries(exact, x, rows[: min(len(rows), 50)])
    print(f"exact top-10, one query: {exact_ms:.2f} ms (median of {min(len(rows), 50)})")
    searcher = searcher_figures(x, rows, truth, args.clusters) if args.searcher else {}
    print(f"\n{'M':>4} {'efC':>5} {'efS':>5} {'build s':>9} {'ms/query':>9} {'recall@10':>10} {'memory MiB':>11}")
    table, out = [], {}
    for m, efc in (grid if args.table else []):
        t = time.perf_counter()
        hnsw = ix.HnswIndex.build(x, m=m, ef_construction=efc)
        build_s = time.perf_counter() - t
        mib = index_mib(hnsw)
        efs = sorted(set(args.ef) | ({ix.HNSW_EF_SEARCH} if (m, efc) == lib else set()))
        for ef in efs:
            hnsw.ef_search = ef
            ms, found = timed_queries(hnsw, x, rows)
            rec = recall_at(found, truth)
            table.append({"m": m, "ef_construction": efc, "ef_search": ef, "build_s": round(build_s, 1),
                          "ms": round(ms, 4), "recall_at_10": round(rec, 4), "memory_mib": round(mib, 1)})
            mark = "  <- library" if (m, efc, ef) == (*lib, ix.HNSW_EF_SEARCH) else ""
            print(f"{m:>4} {efc:>5} {ef:>5} {build_s:>9.1f} {ms:>9.3f} {rec:>10.4f} {mib:>11.0f}{mark}", flush=True)
            if (m, efc, ef) == (*lib, ix.HNSW_EF_SEARCH):
                out = {"ann_ms": round(ms, 4), "recall_at_10": round(rec, 4), "build_s": round(build_s, 2)}
        del hnsw
    ok = [r for r in table if r["recall_at_10"] >= 0.95]
    if ok:
        best = min(ok, key=lambda r: r["ms"])
        print(f"\nfastest with recall@10 >= 0.95: M={best['m']} efC={best['ef_construction']} "
              f"efS={best['ef_search']}: {best['ms']:.3f} ms ({exact_ms / best['ms']:.0f}x faster than exact), "
              f"recall@10 {best['recall_at_10']:.4f}")
    result = {"n": args.n, "dim": args.dim, "data": args.data, "noise": noise, "exact_ms": round(exact_ms, 4),
              "ann_ms": out.get("ann_ms"), "recall_at_10": out.get("recall_at_10"), "build_s": out.get("build_s"),
              **searcher, "library": {"m": ix.HNSW_M, "ef_construction": ix.HNSW_EF_CONSTRUCTION,
                          "ef_search": ix.HNSW_EF_SEARCH}, "table": table}
    print("command: python benchmarks/bench_search.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
