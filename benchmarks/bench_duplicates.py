"""Which cosine threshold finds near-duplicates? Pair precision and recall on ELPV.

Takes N real ELPV solar-cell photos, plants M near-copies of distinct originals
made by small real edits (a quarter each):

* ``jpeg``: re-encoded as JPEG, quality 70-90;
* ``crop``: 1-3 % cut from each side, resized back;
* ``brightness``: brightness x 0.92-1.08;
* ``combo``: 1-2 % crop + brightness x 0.95-1.05 + JPEG quality 85;

plus 10 byte-identical copies, ingests everything into a fresh project with the
default settings (the same path as ``labeler ingest``), then for each threshold
runs :func:`labeler.duplicates.find_duplicates` and scores the pairs it puts in
one group against the planted pairs: precision = planted pairs found / pairs
grouped, recall = planted pairs found / planted pairs. Two natural ELPV photos
grouped together count against precision.

With ``--project`` (an ingested ELPV project, read only) all its photos are the
originals; only the planted copies are embedded, with the project's backbone,
and placed with its fitted PCA (the path of a reverse-image-search query), so
the full 2,624 photos are measured in a few minutes.

The planted copies (and without ``--project`` the ingested project) are written to a
temporary folder, removed at the end; ``--workdir DIR`` keeps them there instead, and
``--reuse`` takes an earlier run's ingested project from that folder.

Run:  python benchmarks/bench_duplicates.py                 (N=800, M=200, one full ingest)
      python benchmarks/bench_duplicates.py --workdir dup-bench --reuse     (kept; a second run skips the ingest)
      python benchmarks/bench_duplicates.py --project data/projects/elpv -m 400 --json   (after `labeler demo --no-serve`)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from labeler.config import Settings
from labeler.demo import elpv_source, read_elpv_labels
from labeler.duplicates import duplicate_components, find_duplicates
from labeler.pipeline import ingest
from labeler.project import Project

from common import DEFAULT_PROJECT, existing

THRESHOLDS = [0.80, 0.85, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995]
KINDS = ["jpeg", "crop", "brightness", "combo"]


def _crop(im: Image.Image, frac: float) -> Image.Image:
    w, h = im.size
    dx, dy = round(w * frac), round(h * frac)
    return im.crop((dx, dy, w - dx, h - dy)).resize((w, h), Image.Resampling.BILINEAR)


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


def augment(im: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """A near-copy of ``im`` by one of KINDS."""
    if kind == "jpeg":
        return _jpeg(im, int(rng.integers(70, 91)))
    if kind == "crop":
        return _crop(im, float(rng.uniform(0.01, 0.03)))
    if kind == "brightness":
        return ImageEnhance.Brightness(im).enhance(float(rng.uniform(0.92, 1.08)))
    im = ImageEnhance.Brightness(_crop(im, float(rng.uniform(0.01, 0.02)))).enhance(float(rng.uniform(0.95, 1.05)))
    return _jpeg(im, 85)


def plant(dest: Path, n: int, m: int, seed: int, originals_dir: Path | None = None) -> dict[str, tuple[str, str]]:
    """Write n originals (none with ``originals_dir``: they are there) and m + 10 copies
    into dest; returns {copy: (original, kind)}."""
    rng = np.random.default_rng(seed)
    src = elpv_source()
    rows = read_elpv_labels(src)
    pick = rng.choice(len(rows), size=n, replace=False)
    originals = []
    for i in pick:
        name = Path(rows[i]["file"]).name
        if originals_dir is None:
            shutil.copyfile(src / rows[i]["file"], dest / name)
        originals.append(name)
    chosen = rng.choice(n, size=m + 10, replace=False)
    planted = {}
    for j, oi in enumerate(chosen):
        orig = originals[oi]
        if j >= m:
            copy = f"exact_{j}_{orig}"
            shutil.copyfile((originals_dir or dest) / orig, dest / copy)
            planted[copy] = (orig, "exact")
            continue
        kind = KINDS[j % len(KINDS)]
        out = augment(Image.open((originals_dir or dest) / orig), kind, rng)
        # JPEG-degraded pixels are kept losslessly (PNG), so no second encoding adds loss.
        copy = f"{kind}_{j}_{Path(orig).stem}.png"
        out.save(dest / copy)
        planted[copy] = (orig, kind)
    return planted


def score(project: Project, planted: dict, threshold: float, placed=None) -> dict:
    if placed is None:
        ids = {r["path"]: r["id"] for r in project.store.image_table()}
        rep = find_duplicates(project, threshold=threshold)
        groups = [g.image_ids for g in rep.groups]
    else:  # originals from the project, copies placed with its PCA: ids are positions
        names, vectors, hashes = placed
        ids = {n: i for i, n in enumerate(names)}
        comp, _ = duplicate_components(vectors, hashes, threshold=threshold)
        sizes = np.bincount(comp)
        groups = [np.flatnonzero(comp == c).tolist() for c in np.flatnonzero(sizes > 1)]
    truth = {frozenset((ids[c], ids[o])) for c, (o, _) in planted.items()}
    kind_of = {frozenset((ids[c], ids[o])): k for c, (o, k) in planted.items()}
    pred = {frozenset(p) for g in groups for p in combinations(g, 2)}
    hit = truth & pred
    per_kind = {k: round(sum(1 for p in hit if kind_of[p] == k) / max(1, sum(1 for v in kind_of.values() if v == k)), 3)
                for k in ["exact", *KINDS]}
    return {"threshold": threshold, "pairs_grouped": len(pred), "planted_found": len(hit),
            "precision": round(len(hit) / len(pred), 4) if pred else 1.0,
            "recall": round(len(hit) / len(truth), 4), "recall_by_kind": per_kind,
            "groups": len(groups)}


def place_copies(project: Project, table, img: Path, planted: dict):
    """Names, L2-normalised PCA vectors and hashes of the project's images followed by the copies."""
    from labeler.embedding.backbones import load_backbone
    from labeler.embedding.extract import embed_files
    from labeler.embedding.local_features import feature_backbone
    from labeler.images import content_hash
    from labeler.reduce import transform_pca
    from labeler.search import load_pca

    meta = project.store.get_meta("backbone")
    # the project's own backbone and feature type, as a reverse-image-search query gets them
    bb = feature_backbone(load_backbone(meta["name"], device="cpu"), meta.get("features", "global"))
    copies = sorted(planted)
    feats = np.concatenate([b.features for b in embed_files(list(enumerate(img / c for c in copies)), bb,
                                                             view=meta.get("view", "whole"), batch_size=16,
                                                             num_workers=0, progress=False)])
    z = transform_pca(load_pca(project.models_dir), feats)
    pca = np.asarray(project.load_array("pca"))
    names = [r["path"] for r in table] + copies
    vectors = np.concatenate([pca[[r["row"] for r in table]], z])
    hashes = [r["hash"] for r in table] + [content_hash(img / c) for c in copies]
    return names, vectors, hashes


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="labeler-bench-duplicates-") as tmp:
        run(tmp)


def run(tmp: str) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=800, help="ELPV originals")
    ap.add_argument("-m", type=int, default=200, help="planted near-copies (plus 10 exact copies)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="Keep the planted copies and the ingested project here (default: a temporary folder, removed).")
    ap.add_argument("--reuse", action="store_true", help="Reuse an earlier run's ingested project in --workdir.")
    ap.add_argument("--project", type=Path, default=None,
                    help=f"An ingested ELPV project (e.g. {DEFAULT_PROJECT}): its photos are the originals.")
    ap.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")
    args = ap.parse_args()
    if args.reuse and args.workdir is None:
        ap.error("--reuse needs the --workdir of an earlier run")
    workdir = args.workdir or Path(tmp)

    img, proj = workdir / "images", workdir / "project"
    manifest = workdir / "planted.json"
    t0 = time.perf_counter()
    placed = None
    if args.project is not None:
        project = Project(existing(args.project, "project"))
        shutil.rmtree(workdir, ignore_errors=True)
        img.mkdir(parents=True)
        table = [r for r in project.store.image_table() if r["status"] == "embedded"]
        args.n = len(table)
        planted = plant(img, args.n, args.m, args.seed, originals_dir=project.image_root)
        placed = place_copies(project, table, img, planted)
        n_total = len(placed[0])
    else:
        if not (args.reuse and manifest.is_file() and (proj / "labeler.db").is_file()):
            shutil.rmtree(workdir, ignore_errors=True)
            img.mkdir(parents=True)
            planted = plant(img, args.n, args.m, args.seed)
            manifest.write_text(json.dumps(planted))
            ingest(img, proj, Settings(backbone="efficientnet-lite0"), progress=False)
        planted = {k: tuple(v) for k, v in json.loads(manifest.read_text()).items()}
        project = Project(proj)
        n_total = len(project.store.image_table())
    setup_s = time.perf_counter() - t0
    results = [score(project, planted, t, placed) for t in THRESHOLDS]
    print(f"{n_total} images ({args.n} ELPV originals, {len(planted)} planted copies), "
          f"backbone efficientnet-lite0, PCA {project.store.get_meta('pca_components')} components; "
          f"setup {setup_s:.0f} s")
    print(f"{'threshold':>9}  {'grouped pairs':>13}  {'precision':>9}  {'recall':>6}  recall by kind")
    for r in results:
        print(f"{r['threshold']:>9}  {r['pairs_grouped']:>13}  {r['precision']:>9.3f}  {r['recall']:>6.3f}  "
              + ", ".join(f"{k} {v:.2f}" for k, v in r["recall_by_kind"].items()))
    best = max(results, key=lambda r: 2 * r["precision"] * r["recall"] / max(1e-9, r["precision"] + r["recall"]))
    print(f"best F1 at threshold {best['threshold']}")
    print("command: " + " ".join(shlex.quote(a) for a in ["python", *sys.argv]))
    if args.json:
        print(json.dumps({"n": args.n, "m": args.m, "seed": args.seed, "results": results,
                          "best_f1_threshold": best["threshold"]}))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
