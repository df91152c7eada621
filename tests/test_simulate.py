"""The simulated annotator: action counts and curves on tiny hand-checked collections."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from labeler.evaluate import simulate
from labeler.evaluate.simulate import Curve, _Tracker


def test_cluster_majority_by_hand():
    y = np.array([0, 0, 0, 1, 1, 2])
    clusters = np.array([0, 0, 0, 0, 1, -1])
    c = simulate.cluster_majority(y, clusters)
    # action 1: cluster 0 (4 images) -> class 0, 3 right; action 2: cluster 1 -> class 1;
    # then image 3 (wrong) and image 5 (noise, unlabelled) one by one.
    assert c.actions.tolist() == [0, 1, 2, 3, 4]
    assert c.correct.tolist() == [0, 3, 4, 5, 6]
    assert c.labelled.tolist() == [0, 4, 5, 6, 6] or c.labelled.tolist() == [0, 4, 5, 5, 6]
    # After action 1: F1 class 0 = 2*3/(4+3), classes 1 and 2 = 0.
    assert c.macro_f1[1] == pytest.approx((6 / 7) / 3)
    assert c.macro_f1[-1] == pytest.approx(1.0)
    assert c.actions_to_accuracy(0.5) == 1  # 3 of 6 right after one action
    assert c.actions_to_accuracy(0.9) == 4  # needs all 6
    assert c.actions_to_accuracy(0.8) == 3  # 5 of 6: two cluster clicks + one fix
    assert c.at(1) == pytest.approx((0.5, (6 / 7) / 3, 4 / 6))


def test_one_by_one_is_linear():
    y = np.repeat([0, 1], [7, 3])
    c = simulate.one_by_one(y, seed=3)
    assert c.actions.tolist() == list(range(11))
    assert c.correct.tolist() == list(range(11))
    assert c.actions_to_accuracy(0.9) == 9
    assert c.actions_to_accuracy(0.95) == 10


def test_split_is_taken_when_it_pays():
    # One cluster holding two classes that sit at two distinct points of the PCA space.
    y = np.repeat([0, 1], 20)
    clusters = np.zeros(40, dtype=int)
    x = np.zeros((40, 4), np.float32)
    x[:20, 0] = 1
    x[20:, 1] = 1
    plain = simulate.cluster_majority(y, clusters)
    split = simulate.cluster_split(y, clusters, x)
    assert plain.actions_to_accuracy(1.0) == 1 + 20  # one cluster click, 20 fixes
    assert split.actions_to_accuracy(1.0) == 3  # split + two sub-cluster labels
    assert split.correct[1] == 0 and split.actions[1] == 1  # the split sets no label


def test_split_is_declined_when_it_does_not_pay():
    # The classes are interleaved at identical vectors: no split can separate them.
    y = np.tile([0, 0, 0, 1], 10)
    clusters = np.zeros(40, dtype=int)
    x = np.tile(np.eye(4, dtype=np.float32)[:2], (20, 1))  # 2-means splits by position, not class
    plain = simulate.cluster_majority(y, clusters)
    split = simulate.cluster_split(y, clusters, x)
    assert split.actions.tolist() == plain.actions.tolist()
    assert split.correct.tolist() == plain.correct.tolist()


def test_propagation_from_two_medoids_labels_two_blobs():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    x = np.zeros((60, 8), np.float32)
    x[:30, 0] = 1
    x[30:, 1] = 1
    x += 0.05 * rng.normal(size=x.shape).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    c = simulate.propagation(y, x, ladder=[2, 4])
    assert c.actions[1] == 3  # 2 medoids + 1 propagation
    assert c.correct[1] == 60
    assert c.actions_to_accuracy(0.95) == 3


def test_tracker_macro_f1_matches_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 200)
    t = _Tracker(y, 4, "t")
    for _ in range(30):
        idx = np.unique(rng.integers(0, 200, rng.integers(1, 30)))
        t.assign(idx, int(rng.integers(0, 4)))
        t.record(1)
        pred = t.pred
        # Unlabelled images (-1) are misses for their class; -1 is not a class.
        want = f1_score(y, pred, labels=[0, 1, 2, 3], average="macro", zero_division=0)
        assert t.macro_f1() == pytest.approx(want)
        assert t.hist[-1][1] == int((pred == y).sum())


def test_seed_ladder_and_errors():
    assert simulate.seed_ladder(2624, 2) == [2, 4, 5, 10, 20, 50, 100, 200, 500]
    assert simulate.seed_ladder(40, 4) == [4, 5, 8, 10]
    with pytest.raises(ValueError):
        simulate.cluster_majority(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError):
        simulate.simulate(np.array([0, 1]), np.array([0, 0]), np.eye(2), strategies=("guess",))


def test_simulate_runs_all_strategies_and_serialises():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 90)
    x = np.eye(3, dtype=np.float32)[y] + 0.3 * rng.normal(size=(90, 3)).astype(np.float32)
    # Unnormalised toy vectors on purpose: the "queue" strategy looped forever on them once
    # (dot products above 1 left its queue empty), it must finish in seconds.
    curves = simulate.simulate(y, y.copy(), x)
    assert set(curves) == set(simulate.STRATEGIES)
    for c in curves.values():
        assert isinstance(c, Curve) and c.correct[-1] == 90  # every curve ends complete
        d = c.to_dict(max_points=20)
        assert len(d["curve"]["actions"]) <= 30
        assert d["actions_to_accuracy"]["0.9"] == c.actions_to_accuracy(0.9)
    # Labelling the true partition cluster by cluster costs one action per class.
    assert curves["cluster_majority"].actions_to_accuracy(1.0) == 3


def test_propagation_runs_the_products_label_spreading(monkeypatch):
    """`labeler evaluate`'s propagation strategy calls the suggestions' own graph and
    spreading (issue 21: a second implementation with other settings measured another model)."""
    import labeler.assist.model as product
    from labeler.evaluate import simulate

    calls = []
    real = product.spread

    def counted(*a, **kw):
        calls.append(kw)
        return real(*a, **kw)

    monkeypatch.setattr(product, "spread", counted)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8))
    x = np.vstack([c + 0.05 * rng.normal(size=(40, 8)) for c in centres]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.repeat(np.arange(3), 40)
    pred = simulate.spread_labels(x, np.array([0, 40, 80]), np.array([0, 1, 2]))
    assert calls and (pred == y).mean() > 0.95
