"""How well does labeler do on a collection whose true classes are known?

``labeler evaluate --project DIR --truth truth.csv`` compares a project with a
CSV mapping image path -> true class and reports three things:

Clustering against the truth
    For each feature (raw pixels downsampled to 32x32 = the per-pixel difference
    baseline, the backbone embedding, the PCA vectors) and each method (HDBSCAN
    with the project's settings on a 10-d UMAP of the feature, as ingest does;
    KMeans with k = number of classes and larger k): adjusted Rand index
    (Hubert & Arabie 1985), normalised mutual information (Strehl & Ghosh 2002),
    homogeneity and completeness (Rosenberg & Hirschberg 2007), all from
    ``sklearn.metrics``; purity (accuracy when every cluster takes its majority
    class) and its macro twin, the balanced accuracy of that labelling. These are
    computed over the clustered images; the noise share is reported beside them
    (as umap-learn's "Using UMAP for Clustering" does).
Reverse image search
    Leave-one-out precision@1, precision@10 and mean average precision
    (Manning, Raghavan & Schuetze 2008, ch. 8), overall (micro: mean over
    queries) and per class with the macro average (mean over classes).
Labeling cost
    The simulated annotator of :mod:`labeler.simulate`: accuracy and macro-F1
    against the number of dashboard actions, and the actions needed for 90% and
    95% accuracy.

Clusterings are refit on the images that have a truth (the whole collection
when every image has one). The feature arrays come from the project; raw
pixels are decoded from the image files.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn import metrics

from . import simulate
from .cluster import NOISE, run_hdbscan, run_kmeans
from .index import ExactIndex
from .project import Project, ProjectError
from .reduce import fit_umap, l2_normalize

FEATURES = ("raw", "embedding", "pca")
FEATURE_NAMES = {"raw": "raw pixels 32x32", "embedding": "backbone embedding", "pca": "PCA vectors"}


# -- truth ------------------------------------------------------------------------------
def read_truth(path: Path | str, column: str | None = None) -> tuple[dict[str, str], str]:
    """Read a truth CSV: the first column is the image path, ``column`` the class.

    Returns ({path: class}, name of the class column). Rows with an empty class
    are left out. ``column`` None = the second column.

    Raises
    ------
    ValueError
        Fewer than two columns, or no column of that name.
    """
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or len(rows[0]) < 2:
        raise ValueError(f"{path}: needs a header with a path column and a class column")
    header = [h.strip() for h in rows[0]]
    name = column or header[1]
    if name not in header[1:]:
        raise ValueError(f"{path}: no column {name!r}; columns: {', '.join(header[1:])}")
    j = header.index(name)
    return {r[0].strip(): r[j].strip() for r in rows[1:] if len(r) > j and r[j].strip()}, name


def align_truth(project: Project, truth: dict[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Match truth paths to the project's embedded images.

    A truth path may be relative to the image folder, absolute, or a bare file
    name (used when it is unique in the project).

    Returns
    -------
    rows : ndarray (n,), int64, array rows of the matched images, ascending
    y : ndarray (n,), int64, class codes (index into ``classes``)
    classes : ndarray (C,), str, sorted class names
    unmatched : int
        Truth rows with no embedded image.
    """
    table = [r for r in project.store.image_table() if r["status"] == "embedded"]
    by_path = {r["path"]: int(r["row"]) for r in table}
    names: dict[str, list[int]] = {}
    for r in table:
        names.setdefault(Path(r["path"]).name, []).append(int(r["row"]))
    root = project.image_root
    found: dict[int, str] = {}
    for p, label in truth.items():
        row = by_path.get(p)
        if row is None and root is not None and Path(p).is_absolute():
            try:
                row = by_path.get(Path(p).resolve().relative_to(root).as_posix())
            except ValueError:
                row = None
        if row is None and len(names.get(Path(p).name, [])) == 1:
            row = names[Path(p).name][0]
        if row is not None:
            found[row] = label
    if not found:
        raise ValueError("no truth path matches an embedded image of the project")
    rows = np.array(sorted(found), dtype=np.int64)
    classes, y = np.unique(np.array([found[int(r)] for r in rows]), return_inverse=True)
    return rows, y.astype(np.int64), classes, len(truth) - len(found)


# -- metrics ----------------------------------------------------------------------------
def majority_mapping(y_true: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each image's cluster's majority true class, (n,) int64 (ties: lowest code)."""
    y_true, labels = np.asarray(y_true), np.asarray(labels)
    out = np.empty(len(y_true), dtype=np.int64)
    for c in np.unique(labels):
        m = labels == c
        out[m] = np.argmax(np.bincount(y_true[m]))
    return out


def purity(y_true: np.ndarray, labels: np.ndarray) -> float:
    """Share of images whose class is their cluster's majority class, in [0, 1]."""
    return float(np.mean(majority_mapping(y_true, labels) == np.asarray(y_true)))


def clustering_scores(y_true: np.ndarray, labels: np.ndarray) -> dict:
    """Agreement of a clustering with the truth, over the non-noise images.

    Parameters
    ----------
    y_true : ndarray (n,), int, true class codes
    labels : ndarray (n,), int, cluster ids, -1 = noise

    Returns
    -------
    dict
        clusters, noise (share of images that are noise), ari, nmi, homogeneity,
        completeness, purity, balanced_purity (balanced accuracy of the
        majority-class labelling: the macro twin of purity). Scores are NaN when
        every image is noise.
    """
    y_true, labels = np.asarray(y_true), np.asarray(labels)
    keep = labels != NOISE
    out = {"clusters": int(len(np.unique(labels[keep]))), "noise": float(1 - keep.mean())}
    if not keep.any():
        return {**out, **dict.fromkeys(("ari", "nmi", "homogeneity", "completeness", "purity", "balanced_purity"), float("nan"))}
    t, c = y_true[keep], labels[keep]
    h, comp, _ = metrics.homogeneity_completeness_v_measure(t, c)
    mapped = majority_mapping(t, c)
    return {
        **out,
        "ari": float(metrics.adjusted_rand_score(t, c)),
        "nmi": float(metrics.normalized_mutual_info_score(t, c)),
        "homogeneity": float(h),
        "completeness": float(comp),
        "purity": float(np.mean(mapped == t)),
        "balanced_purity": float(balanced_accuracy(t, mapped)),
    }


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (predictions of
    other codes, e.g. -1 = unlabelled, count as misses)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]))


def search_scores(features: np.ndarray, y: np.ndarray, *, metric: str = "cosine", k: int = 10,
                  max_queries: int | None = 5000, seed: int = 0, batch: int = 256) -> dict:
    """Leave-one-out reverse image search quality.

    Every image (or a random sample of ``max_queries``) queries all the others;
    a neighbour is relevant when it has the query's class.

    Parameters
    ----------
    features : ndarray (n, d), float
    y : ndarray (n,), int, class codes
    metric : 'cosine' or 'euclidean'
        Euclidean = the per-pixel difference baseline for raw pixels.

    Returns
    -------
    dict
        ``p1``, ``p{k}``, ``map`` (micro: mean over queries), ``*_macro`` (mean of
        the per-class means), ``per_class``: {class code: {n, p1, p{k}, ap}} and
        ``queries``. Average precision of a query whose class has no other image
        is undefined and left out.
    """
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    n = len(x)
    if metric == "cosine":
        base, q_all = l2_normalize(x), l2_normalize(x)
    elif metric == "euclidean":
        # argmax_b (q.b - |b|^2/2) = argmin_b |q - b|^2: Euclidean order as a dot product.
        sq = (x.astype(np.float64) ** 2).sum(1)
        base = np.hstack([x, (-sq / 2)[:, None].astype(np.float32)])
        q_all = np.hstack([x, np.ones((n, 1), np.float32)])
    else:
        raise ValueError(f"unknown metric {metric!r}: cosine or euclidean")
    queries = np.arange(n) if max_queries is None or n <= max_queries else np.sort(
        np.random.default_rng(seed).choice(n, max_queries, replace=False))
    index = ExactIndex(base)
    n_rel = np.bincount(y) - 1
    p1, pk, ap = (np.empty(len(queries)) for _ in range(3))
    for i in range(0, len(queries), batch):
        qs = queries[i : i + batch]
        _, ranked = index.search(q_all[qs], n - 1, exclude=qs)
        rel = y[ranked] == y[qs][:, None]
        p1[i : i + batch] = rel[:, 0]
        pk[i : i + batch] = rel[:, :k].mean(1)
        hits = np.cumsum(rel, axis=1)
        prec = hits / np.arange(1, rel.shape[1] + 1)
        denom = n_rel[y[qs]]
        with np.errstate(invalid="ignore", divide="ignore"):
            ap[i : i + batch] = np.where(denom > 0, (prec * rel).sum(1) / denom, np.nan)
    yq = y[queries]
    per_class = {}
    for c in np.unique(yq):
        m = yq == c
        per_class[int(c)] = {"n": int(m.sum()), "p1": float(p1[m].mean()), f"p{k}": float(pk[m].mean()),
                             "ap": float(np.nanmean(ap[m])) if np.isfinite(ap[m]).any() else float("nan")}
    pcs = list(per_class.values())
    return {
        "metric": metric, "queries": int(len(queries)), "k": k,
        "p1": float(p1.mean()), f"p{k}": float(pk.mean()), "map": float(np.nanmean(ap)),
        "p1_macro": float(np.mean([v["p1"] for v in pcs])),
        f"p{k}_macro": float(np.mean([v[f"p{k}"] for v in pcs])),
        "map_macro": float(np.nanmean([v["ap"] for v in pcs])),
        "per_class": per_class,
    }


# -- features ---------------------------------------------------------------------------
def raw_pixels(paths: list[Path], size: int = 32) -> tuple[np.ndarray, int]:
    """Images decoded safely (:func:`labeler.images.load_image`: RGB, EXIF
    orientation), resized to size x size (bilinear) and flattened.

    Returns (features (n, size*size*3) float32 in [0, 1], number of files that
    could not be decoded: their rows are zeros).
    """
    from PIL import Image

    from .images import BadImageError, load_image

    out = np.zeros((len(paths), size * size * 3), dtype=np.float32)
    failed = 0
    for i, p in enumerate(paths):
        try:
            im = load_image(p, draft_size=(size * 4, size * 4)).resize((size, size), Image.BILINEAR, reducing_gap=2.0)
            out[i] = np.asarray(im, dtype=np.float32).reshape(-1) / 255.0
        except BadImageError:
            failed += 1
    return out, failed


def load_features(project: Project, rows: np.ndarray, which=FEATURES) -> dict[str, np.ndarray]:
    """The evaluated features of the given array rows: {name: (n, d) float32}."""
    out = {}
    if "raw" in which:
        path_of = {int(r["row"]): r["path"] for r in project.store.image_table()}
        out["raw"], _ = raw_pixels([project.image_path(path_of[int(r)]) for r in rows])
    if "embedding" in which:
        out["embedding"] = np.asarray(project.load_array("embeddings")[rows], dtype=np.float32)
    if "pca" in which:
        out["pca"] = np.asarray(project.load_array("pca")[rows], dtype=np.float32)
    return out


@dataclass
class Clustering:
    """One clustering run of the evaluation."""

    feature: str
    method: str
    params: dict
    labels: np.ndarray = field(repr=False)
    seconds: float = 0.0


def run_clusterings(project: Project, rows: np.ndarray, feats: dict[str, np.ndarray], n_classes: int,
                    ks: list[int] | None = None, log=print) -> list[Clustering]:
    """HDBSCAN (project settings, on a 10-d UMAP) and KMeans for each feature.

    The PCA feature reuses the project's stored clustering space
    (``cluster_space.npy``), exactly what ingest clustered; other features get
    their own UMAP with the same settings. KMeans runs on the raw pixels as they
    are (per-pixel difference) and on L2-normalised embeddings / PCA vectors.
    """
    s = project.settings()
    ks = ks or sorted({n_classes, 2 * n_classes, 20})
    out = []
    for name, x in feats.items():
        t0 = time.time()
        if name == "pca" and project.has_array("cluster_space"):
            space = np.asarray(project.load_array("cluster_space")[rows])
        else:
            dims = int(min(s.cluster_dims, max(2, len(x) - 2)))
            _, space = fit_umap(x, dims, n_neighbors=s.umap_neighbors, min_dist=0.0, seed=s.seed)
        labels, _ = run_hdbscan(space, min_cluster_size=s.min_cluster_size, min_samples=s.min_samples)
        out.append(Clustering(name, "hdbscan", {"min_cluster_size": s.min_cluster_size,
                                                "min_samples": s.min_samples}, labels, time.time() - t0))
        xk = x if name == "raw" else l2_normalize(x)
        for k in ks:
            if k <= len(x):
                t0 = time.time()
                out.append(Clustering(name, "kmeans", {"k": int(k)}, run_kmeans(xk, k, seed=s.seed), time.time() - t0))
        log(f"  clustered {FEATURE_NAMES[name]}")
    return out


def current_clusters(project: Project, rows: np.ndarray) -> np.ndarray:
    """The project's current clustering (what the dashboard shows) for the given rows."""
    ids, cl, _ = project.store.assignments()
    by_id = dict(zip(ids.tolist(), cl.tolist()))
    row_ids = project.store.row_image_ids()
    return np.array([by_id.get(int(row_ids[r]), NOISE) for r in rows], dtype=np.int64)


# -- the whole evaluation ---------------------------------------------------------------
def evaluate_project(project: Project | Path | str, truth_path: Path | str, columns: list[str] | None = None, *,
                     features: tuple[str, ...] = FEATURES, ks: list[int] | None = None,
                     seed: int = 0, log=print) -> list[dict]:
    """Evaluate a project against one or more truth columns.

    Returns one JSON-ready dict per column: truth (classes, counts, majority
    baseline), clustering (a list of rows), search ({feature: scores}), cost
    ({strategy: curve summary}) and the unmatched truth count. Clusterings of
    features that do not depend on the truth are computed once per column set.

    Raises
    ------
    ValueError
        Bad truth file or no truth path matches the project.
    ProjectError
        The project has no embeddings yet.
    """
    project = project if isinstance(project, Project) else Project(project)
    columns = list(columns) if columns else [None]
    results, cache = [], {}
    for col in columns:
        truth, name = read_truth(truth_path, col)
        rows, y, classes, unmatched = align_truth(project, truth)
        log(f"truth {name!r}: {len(rows)} images, {len(classes)} classes ({unmatched} truth rows unmatched)")
        key = rows.tobytes()
        if key not in cache:
            cache.clear()
            feats = load_features(project, rows, features)
            cache[key] = (feats, {})
        feats, runs_by_c = cache[key]
        if len(classes) not in runs_by_c:
            runs_by_c[len(classes)] = run_clusterings(project, rows, feats, len(classes), ks, log=log)
        runs = runs_by_c[len(classes)]
        counts = np.bincount(y, minlength=len(classes))
        maj = int(np.argmax(counts))
        res = {
            "column": name, "truth_file": str(truth_path), "project": str(project.root),
            "n": int(len(rows)), "unmatched": int(unmatched),
            "classes": {str(c): int(k) for c, k in zip(classes, counts)},
            "majority_baseline": {"class": str(classes[maj]), "accuracy": float(counts[maj] / len(y)),
                                  "macro_f1": float(metrics.f1_score(y, np.full_like(y, maj), average="macro"))},
            "backbone": (project.store.get_meta("backbone") or {}).get("name"),
            "clustering": [
                {"feature": r.feature, "method": r.method, "params": r.params, "seconds": round(r.seconds, 2),
                 **clustering_scores(y, r.labels)} for r in runs
            ],
            "search": {},
        }
        for f, x in feats.items():
            sc = search_scores(x, y, metric="euclidean" if f == "raw" else "cosine", seed=seed)
            sc["per_class"] = {str(classes[c]): v for c, v in sc["per_class"].items()}
            res["search"][f] = sc
        if "pca" in feats:
            curves = simulate.simulate(y, current_clusters(project, rows), feats["pca"], seed=seed)
            res["cost"] = {k: c.to_dict() for k, c in curves.items()}
            res["_curves"] = curves
        if project.has_array("map"):
            res["_map"] = np.asarray(project.load_array("map")[rows])
            res["_truth"] = classes[y]
        results.append(res)
    return results


# -- reporting --------------------------------------------------------------------------
def _f(v, pct=False) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{100 * v:.0f}%" if pct else f"{v:.2f}"


def markdown_table(res: dict) -> str:
    """The evaluation of one truth column as Markdown (clustering, search, cost tables)."""
    cls = ", ".join(f"{c} {k}" for c, k in res["classes"].items())
    mb = res["majority_baseline"]
    out = [f"### Truth `{res['column']}`: {len(res['classes'])} classes ({cls}); {res['n']} images",
           "",
           f"Majority class alone ('{mb['class']}'): accuracy {_f(mb['accuracy'], True)}, "
           f"macro-F1 {_f(mb['macro_f1'])}. Backbone: {res['backbone']}.", "",
           "**Clustering** (scores over clustered images; noise share beside; bal. purity = macro twin of purity)", "",
           "| feature | method | clusters | noise | ARI | NMI | homog. | compl. | purity | bal. purity |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["clustering"]:
        m = "HDBSCAN mcs={min_cluster_size} ms={min_samples}".format(**r["params"]) if r["method"] == "hdbscan" \
            else f"KMeans k={r['params']['k']}"
        out.append(f"| {FEATURE_NAMES[r['feature']]} | {m} | {r['clusters']} | {_f(r['noise'], True)} | {_f(r['ari'])} | "
                   f"{_f(r['nmi'])} | {_f(r['homogeneity'])} | {_f(r['completeness'])} | {_f(r['purity'], True)} | "
                   f"{_f(r['balanced_purity'], True)} |")
    out += ["", "**Reverse image search** (leave-one-out; macro = mean over classes)", "",
            "| feature | P@1 | P@1 macro | P@10 | P@10 macro | mAP | mAP macro |", "|---|---:|---:|---:|---:|---:|---:|"]
    for f, s in res["search"].items():
        out.append(f"| {FEATURE_NAMES[f]} | {_f(s['p1'])} | {_f(s['p1_macro'])} | {_f(s['p10'])} | "
                   f"{_f(s['p10_macro'])} | {_f(s['map'])} | {_f(s['map_macro'])} |")
    if "pca" in res["search"]:
        out += ["", "Per class, PCA vectors:", "", "| class | images | P@1 | P@10 | AP |", "|---|---:|---:|---:|---:|"]
        for c, v in res["search"]["pca"]["per_class"].items():
            out.append(f"| {c} | {v['n']} | {_f(v['p1'])} | {_f(v['p10'])} | {_f(v['ap'])} |")
    if "cost" in res:
        n = res["n"]
        b1, b2 = max(1, round(0.01 * n)), max(2, round(0.05 * n))
        out += ["", f"**Labeling cost** (simulated annotator; one action = one click that sets labels; "
                f"{n} images; unlabelled = wrong)", "",
                f"| strategy | actions to 90% acc. | to 95% acc. | to macro-F1 0.9 | acc. / macro-F1 after {b1} actions "
                f"| after {b2} actions |", "|---|---:|---:|---:|---:|---:|"]
        for name, c in res["_curves"].items():
            a1, f1, _ = c.at(b1)
            a2, f2, _ = c.at(b2)
            mf = c.actions_to_macro_f1(0.9)
            out.append(f"| {name.replace('_', ' ')} | {c.actions_to_accuracy(0.9)} | {c.actions_to_accuracy(0.95)} | "
                       f"{'-' if mf is None else mf} | {_f(a1, True)} / {_f(f1)} | {_f(a2, True)} / {_f(f2)} |")
    return "\n".join(out) + "\n"


def write_outputs(res: dict, out_dir: Path | str, *, plots: bool = True) -> list[Path]:
    """Write ``evaluation-<column>.json`` (+ .md, and PNG/HTML plots) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    col = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in res["column"])
    written = [out_dir / f"evaluation-{col}.json", out_dir / f"evaluation-{col}.md"]
    written[0].write_text(json.dumps({k: v for k, v in res.items() if not k.startswith("_")}, indent=1))
    written[1].write_text(markdown_table(res))
    if plots:
        from .evaluate_plots import write_plots

        written += write_plots(res, out_dir, col)
    return written
