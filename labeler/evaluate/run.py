"""The whole evaluation of a project against one or more truth columns."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn import metrics

from ..clustering import NOISE, run_hdbscan, run_kmeans
from ..project import Project
from ..reduce import fit_umap, l2_normalize
from . import simulate
from .features import FEATURE_NAMES, FEATURES, load_features
from .metrics import clustering_scores, search_scores
from .truth import align_truth, read_truth


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
    (``cluster_space.npy``), exactly what ingest clustered, while the current map is one of
    the ingest embeddings; after a re-map in a learned feature set (``labeler cluster
    --feature-set``) that space is no longer the PCA's, so the PCA gets its own UMAP like
    the other features, which get one with the same settings. KMeans runs on the raw pixels as they
    are (per-pixel difference) and on L2-normalised embeddings / PCA vectors.
    """
    from ..map_versions import INGEST, map_info

    s = project.settings()
    ks = ks or sorted({n_classes, 2 * n_classes, 20})
    out = []
    stored_is_pca = project.has_array("cluster_space") and map_info(project)["feature_set"] == INGEST
    for name, x in feats.items():
        t0 = time.time()
        if name == "pca" and stored_is_pca:
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
                     group_column: str | None = None, seed: int = 0, log=print) -> list[dict]:
    """Evaluate a project against one or more truth columns.

    Returns one JSON-ready dict per column: truth (classes, counts, majority
    baseline), clustering (a list of rows), search ({feature: scores}), cost
    ({strategy: curve summary}) and the unmatched truth count. Clusterings of
    features that do not depend on the truth are computed once per column set.

    ``group_column`` names a column of the truth file whose equal values mark
    the same physical part (or burst of shots); the result then also holds
    ``search_cross_group`` ({feature: scores}) where a query's own group is left
    out of its neighbours (:func:`search_scores` ``groups``). Images with an
    empty group value are a group of their own.

    Raises
    ------
    BadInputError
        Bad truth file, unknown column, or no truth path matches the project.
    ProjectError
        No project at that path, or it has no embeddings yet.
    """
    project = project if isinstance(project, Project) else Project(project)
    columns = list(columns) if columns else [None]
    group_of = _group_codes(project, truth_path, group_column) if group_column else None
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
        if group_of is not None:
            groups = np.array([group_of.get(int(r), -1 - int(r)) for r in rows], dtype=np.int64)
            res["group_column"] = group_column
            res["groups"] = int(len(np.unique(groups)))
            res["search_cross_group"] = {}
            for f, x in feats.items():
                sc = search_scores(x, y, metric="euclidean" if f == "raw" else "cosine", seed=seed, groups=groups)
                sc["per_class"] = {str(classes[c]): v for c, v in sc["per_class"].items()}
                res["search_cross_group"][f] = sc
        if "pca" in feats:
            curves = simulate.simulate(y, current_clusters(project, rows), feats["pca"], seed=seed)
            res["cost"] = {k: c.to_dict() for k, c in curves.items()}
            res["_curves"] = curves
        if project.has_array("map"):
            res["_map"] = np.asarray(project.load_array("map")[rows])
            res["_truth"] = classes[y]
        results.append(res)
    return results



def _group_codes(project: Project, truth_path: Path | str, column: str) -> dict[int, int]:
    """{array row: group code} from a column of the truth file (rows without a value are left out)."""
    values, _ = read_truth(truth_path, column)
    rows, codes, _, _ = align_truth(project, values)
    return dict(zip(rows.tolist(), codes.tolist()))
