"""Scores of a clustering and of reverse image search against true classes (pure numpy)."""

from __future__ import annotations

import numpy as np
from sklearn import metrics

from ..clustering import NOISE
from ..errors import BadInputError
from ..index import ExactIndex
from ..reduce import l2_normalize


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
                  max_queries: int | None = 5000, seed: int = 0, batch: int = 256,
                  groups: np.ndarray | None = None) -> dict:
    """Leave-one-out reverse image search quality.

    Every image (or a random sample of ``max_queries``) queries all the others;
    a neighbour is relevant when it has the query's class. With ``groups``
    (images of one physical part, or one burst of shots) every image of the
    query's own group is left out too, so the figures say how well search finds
    the class on *other* parts rather than another shot of the same part.

    Parameters
    ----------
    features : ndarray (n, d), float
    y : ndarray (n,), int, class codes
    metric : 'cosine' or 'euclidean'
        Euclidean = the per-pixel difference baseline for raw pixels.
    groups : ndarray (n,), int, or None
        Group code of each image; images sharing a code are never each other's
        neighbours. None = leave out the query alone.

    Returns
    -------
    dict
        ``p1``, ``p{k}``, ``map`` (micro: mean over queries), ``*_macro`` (mean of
        the per-class means), ``per_class``: {class code: {n, p1, p{k}, ap}} and
        ``queries``. Average precision of a query whose class has no other image
        (outside its group) is undefined and left out; ``groups_excluded`` says
        whether same-group neighbours were left out.

    Raises
    ------
    BadInputError
        An unknown metric, or ``groups`` of another length than ``y``.
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
        raise BadInputError(f"unknown metric {metric!r}: cosine or euclidean")
    queries = np.arange(n) if max_queries is None or n <= max_queries else np.sort(
        np.random.default_rng(seed).choice(n, max_queries, replace=False))
    if groups is not None and len(groups) != n:
        raise BadInputError(f"{len(groups)} group codes for {n} images")
    index = ExactIndex(base)
    p1, pk, ap = (np.empty(len(queries)) for _ in range(3))
    for i in range(0, len(queries), batch):
        qs = queries[i : i + batch]
        _, ranked = index.search(q_all[qs], n - 1, exclude=qs)
        n_kept = np.full(len(qs), ranked.shape[1])
        if groups is not None:
            # Same-group neighbours leave the ranking; the others keep their order.
            keep = groups[ranked] != groups[qs][:, None]
            ranked = np.take_along_axis(ranked, np.argsort(~keep, axis=1, kind="stable"), axis=1)
            n_kept = keep.sum(1)
        valid = np.arange(ranked.shape[1])[None, :] < n_kept[:, None]
        rel = (y[ranked] == y[qs][:, None]) & valid
        p1[i : i + batch] = np.where(n_kept > 0, rel[:, 0], np.nan)
        pk[i : i + batch] = rel[:, :k].sum(1) / np.maximum(np.minimum(k, n_kept), 1)
        hits = np.cumsum(rel, axis=1)
        prec = hits / np.arange(1, rel.shape[1] + 1)
        denom = rel.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ap[i : i + batch] = np.where(denom > 0, (prec * rel).sum(1) / denom, np.nan)
    yq = y[queries]
    per_class = {}
    for c in np.unique(yq):
        m = yq == c
        per_class[int(c)] = {"n": int(m.sum()), "p1": _mean(p1[m]), f"p{k}": float(pk[m].mean()), "ap": _mean(ap[m])}
    pcs = list(per_class.values())
    return {
        "metric": metric, "queries": int(len(queries)), "k": k, "groups_excluded": groups is not None,
        "p1": _mean(p1), f"p{k}": float(pk.mean()), "map": _mean(ap),
        "p1_macro": float(np.mean([v["p1"] for v in pcs])),
        f"p{k}_macro": float(np.mean([v[f"p{k}"] for v in pcs])),
        "map_macro": _mean(np.array([v["ap"] for v in pcs])),
        "per_class": per_class,
    }


def _mean(values: np.ndarray) -> float:
    """Mean of the finite values; NaN (without a warning) when there is none."""
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    return float(values[ok].mean()) if ok.any() else float("nan")

