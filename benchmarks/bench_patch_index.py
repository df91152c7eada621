"""Search by a region: the patch index's memory, build time and query time at 10k and 100k
images, and region search P@10 on the DeepPCB defect boxes.

1. **Synthetic patch maps of the stored shape** (``--sizes``, default 10,000 and 100,000
   images of 14 × 14 cells × 64 float16 components, 25 KiB an image, written to a
   temporary memory map as ``patches/maps.npy`` is). They are synthetic, not CNN
   features: each image is one of 50 "part" maps plus Gaussian noise with a decaying
   spectrum (component j's variance ∝ 1 / (j + 1), as the PCA leaves real patches; drawn
   from a bank of 512 noise maps, each used with a random cyclic shift of its cells), and
   10 % of the images carry a planted "defect" (one of 30 vectors) over 2 × 2 cells at a
   random place. Per size and index kind (``flat``: exact ``IndexFlatIP``, built only
   while it takes at most ``--flat-max-gb``; ``ivfpq``: the library's IVF-PQ) it prints
   the build time, the index's bytes (its serialised size, what it holds in memory), the
   median time of one region query (a 2 × 2-cell box on a planted defect: candidates from
   the index, then the re-ranking on the stored maps; :func:`labeler.patch_index.region_search`)
   and the share of the top 10 that carry the same planted defect (P@10). At sizes up to
   ``--exhaustive-max`` it also re-ranks every image (no index) for the same queries, the
   reference: ``recall_vs_exhaustive`` is the share of its top 10 the index path returns.
2. **DeepPCB** (``--deeppcb-project``, ``--deeppcb-truth``): for every defect crop with an
   annotated ``box`` (x,y,w,h), a region query of that box; relevant = the same defect label
   on another board group (hits from the query's own group are dropped before the top 10,
   as the issue's "query's own part left out"). P@10 of the region search (the project's
   path: the flat index above 2,000 images, and re-ranking every image), against the
   whole-image search (:meth:`labeler.search.Searcher.by_id`) on the same queries. Needs
   the project's patch maps: compute them on a copy if it has none (about 100 s idle;
   20 min on a loaded 2-core machine)::

       cp -r data/projects/deeppcb ../deeppcb-copy && python -c "from labeler.project import Project; \\
       from labeler.embedding.patch_maps import compute_patch_maps as c; c(Project('../deeppcb-copy'))"

Run::

    python benchmarks/bench_patch_index.py --json
    python benchmarks/bench_patch_index.py --sizes 10000 --deeppcb-project ../deeppcb-copy --json
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from labeler.patch_index import build_patch_index, region_search

GRID, DIM, SIDE = 14, 64, 224
INFO = {"grid": GRID, "view": "whole"}
N_PARTS, N_DEFECTS, DEFECT_RATE = 50, 30, 0.10


def synthetic_maps(n: int, path: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(maps memmap (n, 196, 64) float16, defect type per row (-1 none), top-left cell per row)."""
    rng = np.random.default_rng(seed)
    sd = (1.0 / np.sqrt(np.arange(1, DIM + 1))).astype(np.float32)
    parts = rng.normal(size=(N_PARTS, GRID * GRID, DIM)).astype(np.float32) * sd
    defects = rng.normal(size=(N_DEFECTS, DIM)).astype(np.float32) * 1.5
    kind = np.where(rng.random(n) < DEFECT_RATE, rng.integers(0, N_DEFECTS, n), -1)
    corner = rng.integers(0, GRID - 1, size=(n, 2))
    bank = (0.6 * rng.normal(size=(512, GRID * GRID, DIM)) * sd).astype(np.float32)
    maps = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, GRID * GRID, DIM))
    for r0 in range(0, n, 4096):
        r1 = min(n, r0 + 4096)
        # Noise from a bank of 512 draws, each shifted by a random number of cells (fast to make at 100k).
        noise = bank[rng.integers(0, len(bank), r1 - r0)]
        shift = rng.integers(0, GRID * GRID, r1 - r0)
        idx = (np.arange(GRID * GRID)[None, :] + shift[:, None]) % (GRID * GRID)
        x = parts[rng.integers(0, N_PARTS, r1 - r0)] + np.take_along_axis(noise, idx[:, :, None], axis=1)
        for j in np.flatnonzero(kind[r0:r1] >= 0):
            r, c = corner[r0 + j]
            cells = [r * GRID + c, r * GRID + c + 1, (r + 1) * GRID + c, (r + 1) * GRID + c + 1]
            x[j, cells] = 0.3 * x[j, cells] + defects[kind[r0 + j]]
        maps[r0:r1] = x.astype(np.float16)
    maps.flush()
    return maps, kind, corner


def _cells(corner) -> np.ndarray:
    r, c = corner
    return np.array([r * GRID + c, r * GRID + c + 1, (r + 1) * GRID + c, (r + 1) * GRID + c + 1])


def _index_bytes(pi, tmp: Path) -> int:
    f = tmp / "index.faiss"
    pi.save(f)
    size = f.stat().st_size
    f.unlink()
    return size


def bench_size(n: int, args, tmp: Path) -> dict:
    t0 = time.perf_counter()
    maps, kind, corner = synthetic_maps(n, tmp / f"maps{n}.npy", args.seed)
    out = {"images": n, "patches": n * GRID * GRID, "maps_bytes": int(maps.nbytes),
           "generate_s": round(time.perf_counter() - t0, 1), "kinds": {}}
    print(f"  {n:>7,} images: synthetic maps written in {out['generate_s']} s", flush=True)
    rng = np.random.default_rng(args.seed + 1)
    queries = rng.choice(np.flatnonzero(kind >= 0), args.queries, replace=False)
    row_ids = np.arange(n)
    exhaustive = {}
    if n <= args.exhaustive_max:
        t = time.perf_counter()
        for q in queries:
            found = region_search(None, np.asarray(maps[q], np.float32), _cells(corner[q]), 10, maps=maps,
                                  info=INFO, exclude_row=int(q), row_ids=row_ids, rerank_all=n)
            exhaustive[int(q)] = [r for r, _, _ in found]
        out["exhaustive_ms"] = round(1000 * (time.perf_counter() - t) / len(queries), 1)
        out["exhaustive_p_at_10"] = round(float(np.mean([np.mean(kind[v] == kind[q]) for q, v in exhaustive.items()])), 3)
        print(f"  {n:>7,} images  every image re-ranked: {out['exhaustive_ms']} ms a query, "
              f"P@10 {out['exhaustive_p_at_10']:.3f}", flush=True)
    flat_gb = n * GRID * GRID * DIM * 4 / 1e9
    for name in ("flat", "ivfpq"):
        if name == "flat" and flat_gb > args.flat_max_gb:
            out["kinds"][name] = {"skipped": f"{flat_gb:.1f} GB of float32 > --flat-max-gb {args.flat_max_gb}"}
            continue
        pi = build_patch_index(maps, exact_max=n * GRID * GRID if name == "flat" else 0)
        row = {"build_s": pi.params["seconds"], "index_bytes": _index_bytes(pi, tmp),
               **{k: v for k, v in pi.params.items() if k in ("nlist", "pq_m", "nprobe", "trained_on")}}
        times, p10, recall = [], [], []
        for q in queries:
            t = time.perf_counter()
            found = region_search(None, np.asarray(maps[q], np.float32), _cells(corner[q]), 10, maps=maps,
                                  info=INFO, index=pi, exclude_row=int(q), row_ids=row_ids, rerank_all=0)
            times.append(time.perf_counter() - t)
            rows = [r for r, _, _ in found]
            p10.append(np.mean(kind[rows] == kind[q]) if rows else 0.0)
            if int(q) in exhaustive:
                recall.append(len(set(rows) & set(exhaustive[int(q)])) / max(1, len(exhaustive[int(q)])))
        row.update(query_ms=round(1000 * statistics.median(times), 1), p_at_10=round(float(np.mean(p10)), 3))
        if recall:
            row["recall_vs_exhaustive"] = round(float(np.mean(recall)), 3)
        out["kinds"][name] = row
        print(f"  {n:>7,} images  {name:<6} build {row['build_s']:>7.1f} s  index {row['index_bytes'] / 2**20:>8.1f} MiB"
              f"  query {row['query_ms']:>7.1f} ms  P@10 {row['p_at_10']:.3f}"
              + (f"  recall vs exhaustive {row['recall_vs_exhaustive']:.3f}" if recall else ""), flush=True)
        del pi
    del maps
    (tmp / f"maps{n}.npy").unlink()
    return out


def bench_deeppcb(args) -> dict:
    from labeler.errors import NotFoundError
    from labeler.project import Project
    from labeler.search import Searcher

    project = Project(args.deeppcb_project)
    s = Searcher(project)
    try:
        maps, info, index = s._patch_index()
    except NotFoundError as e:
        return {"skipped": f"{e} (compute them on a copy of the project: see this script's docstring)"}
    truth = {r["path"]: r for r in csv.DictReader(open(args.deeppcb_truth, newline=""))}
    table = {r["path"]: int(r["id"]) for r in project.store.image_table()}
    group_of = {table[p]: r["group"] for p, r in truth.items() if p in table}
    label_of = {table[p]: r["label"] for p, r in truth.items() if p in table}
    queries = [(table[p], r) for p, r in truth.items() if r["box"] and p in table]
    if args.deeppcb_queries and len(queries) > args.deeppcb_queries:  # an even subsample, every label kept
        queries = queries[:: -(-len(queries) // args.deeppcb_queries)]
    def p_at_10(ids, q):
        other = [i for i in ids if group_of.get(i) != group_of[q]][:10]
        return float(np.mean([label_of.get(i) == label_of[q] for i in other])) if other else 0.0

    from labeler.embedding.patch_maps import box_cells
    from labeler.patch_index import stored_image_size

    res = {"images": len(table), "queries": len(queries), "index": index.kind if index is not None else "all"}
    row_ids = np.asarray(s.row_ids)
    group_rows = {}
    for i, g in group_of.items():
        group_rows.setdefault(g, []).append(s.id_to_row[i])
    for name, idx in (("region_index", index), ("region_exhaustive", None)):
        t0, ps, per = time.perf_counter(), [], {}
        for q, r in queries:
            w, h = stored_image_size(project, q)
            row = s.id_to_row[q]
            masked = row_ids.copy()
            masked[group_rows[group_of[q]]] = -1  # the query's own board group left out
            found = region_search(project, np.asarray(maps[row], np.float32),
                                  box_cells(tuple(float(v) for v in r["box"].split(",")), w, h, info), 10,
                                  maps=maps, info=info, index=idx, exclude_row=row, row_ids=masked,
                                  rerank_all=len(maps) if idx is None else 0)
            ps.append(p_at_10([int(row_ids[rr]) for rr, _, _ in found], q))
            per.setdefault(r["label"], []).append(ps[-1])
        res[name] = {"p_at_10": round(float(np.mean(ps)), 3), "ms_per_query": round(1000 * (time.perf_counter() - t0) / len(queries), 1),
                     "per_label": {k: round(float(np.mean(v)), 3) for k, v in sorted(per.items())}}
        print(f"  DeepPCB {name}: P@10 {res[name]['p_at_10']:.3f}", flush=True)
    extra = 10 + max(len(v) for v in group_rows.values())
    t0, ps = time.perf_counter(), []
    for q, _ in queries:
        ps.append(p_at_10([nb.image_id for nb in s.by_id(q, extra).neighbours], q))
    res["whole_image"] = {"p_at_10": round(float(np.mean(ps)), 3),
                          "ms_per_query": round(1000 * (time.perf_counter() - t0) / len(queries), 1)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000], help="Synthetic collection sizes.")
    ap.add_argument("--queries", type=int, default=50, help="Region queries per size.")
    ap.add_argument("--flat-max-gb", type=float, default=1.0, help="Largest exact index built (float32 GB).")
    ap.add_argument("--exhaustive-max", type=int, default=10_000, help="Largest size re-ranked exhaustively.")
    ap.add_argument("--deeppcb-project", type=Path, default=Path("data/projects/deeppcb"))
    ap.add_argument("--deeppcb-truth", type=Path, default=Path("data/deeppcb/truth.csv"))
    ap.add_argument("--deeppcb-queries", type=int, default=0, help="At most this many DeepPCB boxes (0: all).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_patch_index_"))
    out = {"synthetic": [], "note": "synthetic patch maps of the stored shape (14x14x64 float16), not CNN features"}
    try:
        for n in args.sizes:
            out["synthetic"].append(bench_size(n, args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.deeppcb_project.is_dir() and args.deeppcb_truth.is_file():
        out["deeppcb"] = bench_deeppcb(args)
        d = out["deeppcb"]
        if "skipped" in d:
            print(f"DeepPCB: skipped: {d['skipped']}")
        else:
            print(f"DeepPCB ({d['queries']} defect boxes, {d['images']} crops, index {d['index']}): region P@10 "
                  f"{d['region_index']['p_at_10']:.3f} ({d['region_index']['ms_per_query']:.0f} ms/query), "
                  f"re-ranking every image {d['region_exhaustive']['p_at_10']:.3f}, whole image "
                  f"{d['whole_image']['p_at_10']:.3f}")
    print("command: python benchmarks/bench_patch_index.py " + " ".join(sys.argv[1:]))
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
