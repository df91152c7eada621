"""Novelty flag of reverse image search: false alarms on new in-domain photos, AUROC against other photos.

A query is novel when its best cosine similarity to the collection is below the
project's threshold (``labeler.novelty.calibrate``). Two collections are built
from a project with ELPV embeddings, and a held-out share of ELPV photos (never
in either collection) are the "new, ordinary photos from the same line":

- ``elpv``: every ELPV photo that is not held out (no bursts);
- ``bursts``: ``--parts`` ELPV photos, each with ``--shots - 1`` more shots of the
  same part. ELPV has no part ids, so the extra shots are synthetic: the same
  photo re-shot with a small shift, rotation and zoom, another exposure, some
  blur and sensor noise (:func:`burst_shot`); the part id is the group column.

Out-of-domain photos: the real photos bundled with scikit-image
(``skimage.data``: people, animals, objects, textures, microscopy, astronomy,
text) and scikit-learn (``load_sample_images``), each whole and as 3 random
crops. No download is needed.

Per collection, the PCA is refitted on the collection (as ingest does) and the
thresholds compared are a percentile (``--percentile``, default labeler's 5) of:

- ``nearest``: each image's similarity to its nearest other image (what labeler
  did before, at the 1st percentile: ``before: nearest p1``);
- ``rank-5``: the 5th nearest other image (labeler's default now);
- ``leave-group-out``: the nearest image of another part (needs part ids).

A grid of neighbour rank x percentile shows the trade-off behind the defaults.

Figures: false-novel rate on the held-out ELPV photos (target <= 5 %), share of
out-of-domain photos flagged, and the AUROC of the best similarity between
held-out ELPV photos and out-of-domain photos (target >= 0.95; it does not
depend on the threshold). For the burst collection it also prints retrieval of
each truth column with the query's own part left out, beside the plain figures
(``labeler.evaluate.search_scores(groups=...)``, what ``labeler evaluate
--group-column`` reports).

Reproduce (the figures of the report)::

    python benchmarks/bench_novelty.py --project data/projects/elpv --json   # the demo's project (default)
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from labeler import novelty
from labeler.evaluate import search_scores
from labeler.index import ExactIndex, nearest_neighbour_similarities
from labeler.reduce import fit_pca, transform_pca

from common import add_project_argument, existing

SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "cat", "cell", "chelsea", "clock", "coffee", "coins", "grass",
                  "gravel", "hubble_deep_field", "immunohistochemistry", "microaneurysms", "moon",
                  "page", "retina", "rocket", "text")


def burst_shot(img, rng: np.random.Generator):
    """Another shot of the same part from a fixed camera: shift <= 1 %, rotation <= 1 degree,
    zoom <= 2 %, exposure and contrast +-8 %, blur half of the time, sensor noise (sigma 2/255)."""
    from PIL import Image, ImageEnhance, ImageFilter

    w, h = img.size
    dx, dy = rng.uniform(-0.01, 0.01, size=2) * (w, h)
    out = img.rotate(rng.uniform(-1.0, 1.0), resample=Image.BILINEAR, translate=(dx, dy), fillcolor=0)
    zoom = rng.uniform(1.0, 1.02)
    cw, ch = w / zoom, h / zoom
    out = out.resize((w, h), Image.BILINEAR, box=((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2))
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.92, 1.08))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.92, 1.08))
    if rng.random() < 0.5:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.7)))
    a = np.asarray(out, dtype=np.float32)
    return Image.fromarray(np.clip(a + rng.normal(0, 2.0, size=a.shape), 0, 255).astype(np.uint8))


def ood_photos(folder: Path, rng: np.random.Generator, crops: int = 3) -> list[Path]:
    """Write the bundled scikit-image and scikit-learn photos (whole + random crops) as PNG."""
    import skimage.data
    from PIL import Image
    from sklearn.datasets import load_sample_images

    arrays = [(n, getattr(skimage.data, n)()) for n in SKIMAGE_PHOTOS]
    arrays += [(f"sklearn{i}", a) for i, a in enumerate(load_sample_images().images)]
    out = []
    for name, a in arrays:
        a = np.asarray(a, dtype=np.float64) if a.dtype != np.uint8 else a
        im = Image.fromarray(a if a.dtype == np.uint8 else (255 * (a - a.min()) / max(np.ptp(a), 1e-9)).astype(np.uint8))
        views = [im]
        for _ in range(crops):
            w, h = im.size
            cw, ch = int(w * 0.6), int(h * 0.6)
            x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
            views.append(im.crop((x0, y0, x0 + cw, y0 + ch)))
        for j, v in enumerate(views):
            p = folder / f"ood_{name}_{j}.png"
            v.convert("RGB").save(p)
            out.append(p)
    return out


def embed(project, paths: list[Path]) -> np.ndarray:
    """Embed files with the project's backbone, view and precision: (n, D) float32, input order."""
    from labeler.embedding import embed_files, load_backbone

    meta = project.store.get_meta("backbone")
    s = project.settings()
    bb = load_backbone(meta["name"], weights=s.weights or None, device=s.device or "auto")
    feats: dict[int, np.ndarray] = {}
    for b in embed_files(list(enumerate(paths)), bb, view=meta.get("view", "whole"), batch_size=16, num_workers=0,
                         device=s.device or "auto", progress=False, precision=meta.get("precision", "fp32")):
        if b.failures:
            raise RuntimeError(f"could not embed {b.failures}")
        for j, i in enumerate(b.ids):
            feats[int(i)] = b.features[j]
    return np.stack([feats[i] for i in range(len(paths))])


def measure(coll_emb, groups, held_emb, ood_emb, n_whole_ood, *, percentile, components, seed) -> dict:
    from sklearn.metrics import roc_auc_score

    pca = fit_pca(coll_emb, components, seed=seed)
    v = pca.vectors
    index = ExactIndex(v)
    best_in = index.search(transform_pca(pca.model, held_emb), 1)[0][:, 0]
    best_out = index.search(transform_pca(pca.model, ood_emb), 1)[0][:, 0]
    whole = np.zeros(len(best_out), bool)
    whole[::len(best_out) // n_whole_ood] = True  # the first view of each photo is the whole photo
    y = np.r_[np.zeros(len(best_in)), np.ones(len(best_out))]
    out = {"collection": int(len(v)), "held_out": int(len(best_in)), "ood": int(len(best_out)),
           "auroc": float(roc_auc_score(y, -np.r_[best_in, best_out])),
           "auroc_whole_photos": float(roc_auc_score(np.r_[np.zeros(len(best_in)), np.ones(whole.sum())],
                                                     -np.r_[best_in, best_out[whole]])),
           "best_similarity_held_out_p50": float(np.median(best_in)),
           "best_similarity_ood_max": float(best_out.max()), "thresholds": {}}
    nearest = nearest_neighbour_similarities(v, sample=2000, seed=seed)
    thresholds = {"before: nearest p1": float(np.percentile(nearest, 1.0)),
                  f"nearest p{percentile:g}": float(np.percentile(nearest, percentile)),
                  f"now: rank-5 p{percentile:g}": novelty.calibrate(v, percentile, seed=seed).threshold}
    if groups is not None:
        thresholds[f"leave-group-out p{percentile:g}"] = novelty.calibrate(v, percentile, seed=seed,
                                                                          groups=groups).threshold
    for name, t in thresholds.items():
        out["thresholds"][name] = {"threshold": t, "false_novel": float(np.mean(best_in < t)),
                                   "ood_flagged": float(np.mean(best_out < t))}
    # The trade-off behind the defaults: rank of the neighbour x percentile.
    out["grid"] = {}
    for rank in (1, 2, 3, 5, 8):
        sims = novelty.held_out_similarities(v, rank=rank, seed=seed, index=index)
        for p in (1, 2, 5):
            t = float(np.percentile(sims, p))
            out["grid"][f"rank-{rank} p{p}"] = {"false_novel": float(np.mean(best_in < t)),
                                               "ood_flagged": float(np.mean(best_out < t))}
    out["_vectors"] = v
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_project_argument(ap, "an ingested ELPV project")
    ap.add_argument("--truth", type=Path, default=None,
                    help="truth CSV (default: truth.csv beside the image folder; the demo's data/elpv/truth.csv)")
    ap.add_argument("--parts", type=int, default=300)
    ap.add_argument("--shots", type=int, default=3)
    ap.add_argument("--held-out", type=float, default=0.1, help="share of ELPV photos held out")
    ap.add_argument("--percentile", type=float, default=None, help="default: labeler's default novelty_percentile")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    a = ap.parse_args(argv)

    from PIL import Image

    from labeler.config import Settings
    from labeler.project import Project

    t0 = time.time()
    project = Project(existing(a.project, "project"))
    s = project.settings()
    pct = Settings().novelty_percentile if a.percentile is None else a.percentile
    emb = np.asarray(project.load_array("embeddings"), dtype=np.float32)
    table = [r for r in project.store.image_table() if r["status"] == "embedded"]
    path_of = {int(r["row"]): r["path"] for r in table}
    rows = np.array(sorted(path_of))
    rng = np.random.default_rng(a.seed)
    held = np.sort(rng.choice(rows, int(round(a.held_out * len(rows))), replace=False))
    rest = np.setdiff1d(rows, held)
    parts = np.sort(rng.choice(rest, a.parts, replace=False))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shots = []
        for r in parts:
            im = Image.open(project.image_path(path_of[int(r)]))
            for j in range(a.shots - 1):
                p = tmp / f"shot_{r}_{j}.png"
                burst_shot(im, rng).save(p)
                shots.append(p)
        ood = ood_photos(tmp, rng)
        print(f"embedding {len(shots)} synthetic burst shots and {len(ood)} out-of-domain photos ...", file=sys.stderr)
        new = embed(project, shots + ood)
    shot_emb, ood_emb = new[: len(shots)], new[len(shots):]
    burst_emb = np.concatenate([emb[parts], shot_emb])
    burst_groups = np.concatenate([np.arange(len(parts)), np.repeat(np.arange(len(parts)), a.shots - 1)])
    n_whole = len(SKIMAGE_PHOTOS) + 2
    common = dict(percentile=pct, components=s.pca_components, seed=s.seed)
    res = {"percentile": pct, "parts": a.parts, "shots": a.shots,
           "elpv": measure(emb[rest], None, emb[held], ood_emb, n_whole, **common),
           "bursts": measure(burst_emb, burst_groups, emb[held], ood_emb, n_whole, **common)}

    truth_path = a.truth or Path(project.image_root).parent / "truth.csv"
    if truth_path.is_file():
        truth = {r["path"]: r for r in csv.DictReader(open(truth_path))}
        v = res["bursts"]["_vectors"]
        res["bursts"]["retrieval"] = {}
        for col in ("cell_type", "defective"):
            if col not in next(iter(truth.values())):
                continue
            part_class = np.array([truth[path_of[int(r)]][col] for r in parts])
            y = np.unique(np.concatenate([part_class, np.repeat(part_class, a.shots - 1)]), return_inverse=True)[1]
            plain, cross = search_scores(v, y, seed=a.seed), search_scores(v, y, seed=a.seed, groups=burst_groups)
            res["bursts"]["retrieval"][col] = {
                "plain": {k: plain[k] for k in ("p1", "p10", "map", "p1_macro")},
                "other_parts": {k: cross[k] for k in ("p1", "p10", "map", "p1_macro")}}
    for c in ("elpv", "bursts"):
        res[c].pop("_vectors")
    res["seconds"] = round(time.time() - t0, 1)

    print(f"novelty percentile {pct}; held-out ELPV photos: {len(held)}; out-of-domain photos: {len(ood_emb)} "
          f"({n_whole} whole + crops)")
    print("| collection | images | AUROC (all / whole photos) | threshold | value | false-novel (held-out ELPV) "
          "| out-of-domain flagged |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for c in ("elpv", "bursts"):
        m = res[c]
        for name, t in m["thresholds"].items():
            print(f"| {c} | {m['collection']} | {m['auroc']:.3f} / {m['auroc_whole_photos']:.3f} | {name} | "
                  f"{t['threshold']:.3f} | {100 * t['false_novel']:.1f} % | {100 * t['ood_flagged']:.1f} % |")
    print("rank x percentile (false-novel / out-of-domain flagged):")
    for key in res["elpv"]["grid"]:
        e, b = res["elpv"]["grid"][key], res["bursts"]["grid"][key]
        print(f"  {key:>10}: elpv {100 * e['false_novel']:5.1f} % / {100 * e['ood_flagged']:5.1f} %   "
              f"bursts {100 * b['false_novel']:5.1f} % / {100 * b['ood_flagged']:5.1f} %")
    for col, r in res["bursts"].get("retrieval", {}).items():
        p, o = r["plain"], r["other_parts"]
        print(f"retrieval '{col}' in the burst collection: P@1 {p['p1']:.3f} -> {o['p1']:.3f} with the query's part "
              f"left out; P@10 {p['p10']:.3f} -> {o['p10']:.3f}; mAP {p['map']:.3f} -> {o['map']:.3f}")
    if a.json:
        print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
