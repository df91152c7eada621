"""ImageNet class hints, shown only when the backbone is confident.

The backbones are ImageNet classifiers; their top-1 class of an image ("window
screen", "shoji") is a hint about what it shows. On photos unlike ImageNet's
(solar cells, X-rays) the class is noise, and its softmax probability says so:
on the 2,624 ELPV cells the median top-1 probability is 0.12 and 98.4 % are
below 0.5; on natural photos the backbone's right answers are the sure ones (a
cat p=0.79, espresso p=0.90) and its wrong guesses unsure (an astronaut as
'bobsled' p=0.29, a rocket as 'drilling platform' p=0.42;
``benchmarks/bench_hints.py``). A hint is therefore shown only when the
probability is at least ``Settings.imagenet_hint_min_prob`` (0.5), and not at all
when the project setting ``imagenet_hints`` is off.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .config import save_setting

HINTS_SETTING = "imagenet_hints"


def hint_text(name: str | None, prob: float | None, min_prob: float) -> str | None:
    """'ImageNet hint: X (p=0.62)' when ``prob`` >= ``min_prob``, else None.

    Parameters
    ----------
    name : str or None
        The top-1 ImageNet class name (None = unknown).
    prob : float or None
        Its softmax probability in [0, 1] (None = unknown: no hint).
    min_prob : float
        The threshold (``Settings.imagenet_hint_min_prob``).
    """
    if not name or prob is None or not np.isfinite(prob) or float(prob) < float(min_prob):
        return None
    return f"ImageNet hint: {name} (p={float(prob):.2f})"


def cluster_hint(top1: np.ndarray, prob: np.ndarray, categories: Sequence[str] | None,
                 min_prob: float) -> str | None:
    """The hint of a group of images (a cluster): its most frequent top-1 class, shown
    when the mean probability of the members with that class is at least ``min_prob``.

    Parameters
    ----------
    top1 : ndarray of shape (n,), int
        Top-1 class index of each member (-1 = unknown).
    prob : ndarray of shape (n,), float
        Its softmax probability (NaN = unknown).
    categories : sequence of str or None
        Class names, indexed by ``top1``.
    min_prob : float

    Returns
    -------
    str or None
        'ImageNet hint: X (p=0.62, 40% of images)', or None.
    """
    if not categories:
        return None
    top1 = np.asarray(top1, dtype=np.int64)
    prob = np.asarray(prob, dtype=np.float64)
    ok = (top1 >= 0) & (top1 < len(categories)) & np.isfinite(prob)
    if not ok.any():
        return None
    counts = np.bincount(top1[ok], minlength=len(categories))
    best = int(counts.argmax())
    p = float(prob[ok][top1[ok] == best].mean())
    text = hint_text(categories[best], p, min_prob)
    return None if text is None else f"{text[:-1]}, {100 * counts[best] / len(top1):.0f}% of images)"


def hints_by_cluster(clusters: np.ndarray, top1: np.ndarray, prob: np.ndarray,
                     categories: Sequence[str] | None, min_prob: float) -> dict[int, str]:
    """:func:`cluster_hint` of every cluster (noise, -1, included), where confident.

    Parameters
    ----------
    clusters, top1 : ndarray (n,), int; prob : ndarray (n,), float (NaN = unknown)
    categories : class names; min_prob : float

    Returns
    -------
    dict
        cluster -> hint text, only for clusters whose hint is shown.
    """
    clusters = np.asarray(clusters, dtype=np.int64)
    order = np.argsort(clusters, kind="stable")
    uniq, starts = np.unique(clusters[order], return_index=True)
    out = {}
    for c, group in zip(uniq, np.split(order, starts[1:])):
        text = cluster_hint(np.asarray(top1)[group], np.asarray(prob)[group], categories, min_prob)
        if text:
            out[int(c)] = text
    return out


def project_cluster_hints(project, clustering_id: int | None = None) -> dict[int, str]:
    """The shown hint of each cluster of a project's clustering (default: current);
    empty when the project hides hints (settings ``imagenet_hints``,
    ``imagenet_hint_min_prob``)."""
    s = project.settings()
    if not s.imagenet_hints:
        return {}
    ids, clusters, _ = project.store.assignments(clustering_id)
    top1, prob = project.store.imagenet_top1(ids)
    return hints_by_cluster(clusters, top1, prob, project.store.get_meta("categories") or [],
                            float(s.imagenet_hint_min_prob))


def set_hints_shown(project, shown: bool) -> None:
    """Turn the project's ImageNet hints on or off (writes ``imagenet_hints`` to labeler.toml)."""
    save_setting(project.settings_path, HINTS_SETTING, bool(shown))
