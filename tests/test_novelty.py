"""The novelty threshold on synthetic collections with and without bursts of near-copies."""

import numpy as np
import pytest

from labeler import novelty
from labeler.index import nearest_neighbour_similarities
from labeler.reduce import l2_normalize


def parts(n, rng, basis):
    """Photos of n different parts: points of an 8-d Gaussian seen through a fixed 32-d basis."""
    return l2_normalize(rng.normal(size=(n, 8)) @ basis)


def burst_collection(n_parts=300, shots=3, seed=0):
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(8, 32))
    p = parts(n_parts, rng, basis)
    shots_ = l2_normalize(np.repeat(p, shots, axis=0) + 0.02 * rng.normal(size=(n_parts * shots, 32)))
    return shots_, np.repeat(np.arange(n_parts), shots), parts(200, rng, basis), l2_normalize(rng.normal(size=(100, 32)))


def novel_share(threshold, collection, queries):
    return float(np.mean((queries @ collection.T).max(1) < threshold))


def test_bursts_do_not_raise_the_threshold():
    coll, groups, held_out, _ = burst_collection()
    naive = np.percentile(nearest_neighbour_similarities(coll, sample=None), 1)
    rank = novelty.calibrate(coll, 1.0, sample=None)
    by_group = novelty.calibrate(coll, 1.0, sample=None, groups=groups)
    # The old statistic (nearest other image = another shot of the same part) flags
    # most new ordinary photos as novel; the held-out-style ones do not.
    assert novel_share(naive, coll, held_out) > 0.5
    assert novel_share(rank.threshold, coll, held_out) <= 0.05
    assert novel_share(by_group.threshold, coll, held_out) <= 0.05
    assert rank.method == "rank-5" and by_group.method == "leave-group-out" and rank.sample == len(coll)


def test_without_bursts_the_threshold_still_flags_other_photos():
    coll, _, held_out, ood = burst_collection(shots=1, n_parts=600)
    cal = novelty.calibrate(coll, 1.0)
    assert novel_share(cal.threshold, coll, held_out) <= 0.05
    assert novel_share(cal.threshold, coll, ood) >= 0.95  # unlike the collection: novel
    assert list(cal.percentiles) == ["0.5", "1", "2", "5", "10", "50"]


def test_held_out_similarities_by_hand():
    x = l2_normalize(np.array([[1, 0], [1, 0.05], [1, 0.5], [0, 1]], np.float32))
    s01 = float(x[0] @ x[2])  # 0's nearest image outside its group {0, 1}
    got = novelty.held_out_similarities(x, sample=None, groups=np.array([5, 5, 6, 7]))
    assert got[0] == pytest.approx(s01) and got[1] == pytest.approx(float(x[1] @ x[2]))
    assert got[3] == pytest.approx(float(x[3] @ x[2]))
    second = novelty.held_out_similarities(x, sample=None, rank=2)
    assert second[0] == pytest.approx(s01)  # 2nd nearest other image of image 0
    assert novelty.held_out_similarities(x, sample=None, groups=np.zeros(4, int)).tolist() == [-1.0] * 4
    with pytest.raises(ValueError):
        novelty.calibrate(x, 101)
    with pytest.raises(ValueError, match="group codes"):
        novelty.held_out_similarities(x, groups=np.zeros(3, int))


def test_a_sample_is_answered_exactly_without_building_a_graph(monkeypatch):
    from labeler import index as ix
    from labeler.novelty import held_out_similarities

    rng = np.random.default_rng(7)
    x = rng.normal(size=(600, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    monkeypatch.setattr(ix, "HNSW_FROM", 100)  # "a large collection"

    def no_graph(*a, **k):
        raise AssertionError("a graph index was built for a sample")

    monkeypatch.setattr(ix.HnswIndex, "build", no_graph)
    got = held_out_similarities(x, sample=50, rank=1)
    rows = np.sort(np.random.default_rng(0).choice(600, 50, replace=False))
    full = x[rows] @ x.T
    full[np.arange(50), rows] = -np.inf
    np.testing.assert_allclose(got, full.max(axis=1), rtol=1e-5)
