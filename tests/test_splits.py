"""Grouped stratified splits: no group spans two splits, label proportions kept."""

import numpy as np
import pytest

from labeler.errors import BadInputError
from labeler.export.splits import grouped_stratified_split, parse_split


def test_parse_split():
    assert parse_split("0.8,0.1,0.1")[0] == ("train", "validation", "test")
    assert parse_split("0.7,0.3")[0] == ("train", "test")
    for bad in ("0.8,0.3", "a,b", "0.5,0.5,0,0", "-0.2,1.2", "0.25,0.25,0.25,0.25"):
        with pytest.raises(BadInputError):
            parse_split(bad)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_groups_never_split_and_strata_kept(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    labels = rng.choice(["a", "b", "c"], size=n, p=[0.6, 0.3, 0.1])
    groups = np.arange(n)
    # plant 300 duplicate pairs and 20 larger groups; members share a label
    pairs = rng.choice(n, size=(300, 2), replace=False)
    groups[pairs[:, 1]] = pairs[:, 0]
    labels[pairs[:, 1]] = labels[pairs[:, 0]]
    for start in range(0, 200, 10):
        members = np.arange(start, start + 10)
        groups[members] = members[0] + 10_000
        labels[members] = labels[members[0]]
    split = grouped_stratified_split(labels, groups, [0.8, 0.1, 0.1], seed=seed)
    for g in np.unique(groups):
        assert len(set(split[groups == g])) == 1
    sizes = np.bincount(split, minlength=3) / n
    assert np.allclose(sizes, [0.8, 0.1, 0.1], atol=0.01)
    for lab in "abc":
        frac = np.bincount(split[labels == lab], minlength=3) / (labels == lab).sum()
        assert np.allclose(frac, [0.8, 0.1, 0.1], atol=0.03), (lab, frac)


def test_seed_changes_assignment_but_not_sizes():
    labels = ["x"] * 50 + ["y"] * 50
    a = grouped_stratified_split(labels, range(100), [0.5, 0.5], seed=0)
    b = grouped_stratified_split(labels, range(100), [0.5, 0.5], seed=1)
    assert (a != b).any() and np.bincount(a).tolist() == np.bincount(b).tolist() == [50, 50]
