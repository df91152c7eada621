"""Train / validation / test splits stratified by label and grouped.

Near-duplicates on both sides of a split inflate validation accuracy, so every
group (a near-duplicate group, or a group column the user gives) goes to one
split whole. Within that constraint each split keeps the label proportions of
the whole set as closely as it can.

The assignment is the greedy used by scikit-learn's ``StratifiedGroupKFold``
and by iterative stratification (Sechidis, Tsoumakas & Vlahavas, "On the
stratification of multi-label data", ECML PKDD 2011): groups, largest first
(ties in a seeded random order), each go to the split where they bring the
per-label counts closest to their targets (least squared deviation, each label
weighted by 1 / its size so rare labels count). Unlike ``StratifiedGroupKFold``
it takes any fractions (0.8/0.1/0.1 or 0.7/0.2/0.1), not only 1/k folds.
"""

from __future__ import annotations

import numpy as np

from ..errors import BadInputError

SPLIT_NAMES = {1: ("train",), 2: ("train", "test"), 3: ("train", "validation", "test")}


def parse_split(text: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Split names and fractions from ``"0.8,0.1,0.1"``.

    One fraction gives ("train",), two ("train", "test"), three ("train",
    "validation", "test"). The fractions must be positive and sum to 1.

    Returns
    -------
    names : tuple of str
    ratios : ndarray (n_splits,) float64

    Raises
    ------
    BadInputError
        Not 1-3 numbers, a fraction <= 0, or a sum other than 1.
    """
    try:
        ratios = np.array([float(x) for x in str(text).split(",")], dtype=np.float64)
    except ValueError:
        raise BadInputError(f"--split takes fractions like 0.8,0.1,0.1; got {text!r}") from None
    if not 1 <= len(ratios) <= 3 or (ratios <= 0).any() or not np.isfinite(ratios).all():
        raise BadInputError(f"--split takes 1 to 3 positive fractions (train,validation,test); got {text!r}")
    if abs(ratios.sum() - 1.0) > 1e-6:
        raise BadInputError(f"--split fractions must sum to 1; {text!r} sums to {ratios.sum():g}")
    return SPLIT_NAMES[len(ratios)], ratios


def grouped_stratified_split(labels, groups, ratios, *, seed: int = 0) -> np.ndarray:
    """Assign samples to splits: whole groups, label proportions kept.

    Parameters
    ----------
    labels : sequence of hashable, length n
        Class of each sample.
    groups : sequence of hashable, length n
        Group of each sample; samples of one group always share a split.
    ratios : array-like (n_splits,) float
        Target fraction of each split (sums to 1).
    seed : int
        Order of equal-sized groups.

    Returns
    -------
    ndarray (n,) int64
        Split index of each sample.
    """
    n = len(labels)
    if n == 0:
        return np.zeros(0, np.int64)
    ratios = np.asarray(ratios, dtype=np.float64)
    _, y = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    _, g = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    n_groups, n_classes, n_splits = g.max() + 1, y.max() + 1, len(ratios)
    counts = np.zeros((n_groups, n_classes), np.float64)
    np.add.at(counts, (g, y), 1.0)
    class_total = counts.sum(0)
    target = ratios[:, None] * class_total[None, :]
    weight = 1.0 / class_total
    size_target = ratios * n
    current = np.zeros((n_splits, n_classes), np.float64)
    size = np.zeros(n_splits, np.float64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_groups)
    order = order[np.argsort(-counts[order].sum(1), kind="stable")]
    group_split = np.empty(n_groups, np.int64)
    for gi in order:
        c = counts[gi]
        m = c.sum()
        # Increase of the squared deviation from target if the group joins each split.
        cost = ((2.0 * (current - target) * c + c * c) * weight).sum(1)
        cost += (2.0 * (size - size_target) * m + m * m) / n
        s = int(np.argmin(cost))
        group_split[gi] = s
        current[s] += c
        size[s] += m
    return group_split[g]
