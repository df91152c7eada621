"""Suggestions, the label-next queue and the simulated product flow (labeler.assist), on
synthetic features (pure functions) and on the real 80-photo ELPV project (project layer)."""

from __future__ import annotations

import numpy as np
import pytest

from labeler.assist import model, queue
from labeler.assist.graph import build_knn_graph, cached_knn_graph
from labeler.assist.simulate import queue_flow


def blobs(n=600, d=32, k=3, spread=0.35, seed=0, shares=(0.6, 0.3, 0.1)):
    """Unit vectors around k random centres, with class = centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    y = rng.choice(k, n, p=shares[:k])
    x = centres[y] + spread * np.sqrt(d) / 4 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


@pytest.fixture(scope="module")
def data():
    x, y = blobs()
    return x, y, build_knn_graph(x)


def test_knn_graph_excludes_self_and_sorts(data):
    x, _, g = data
    assert g.neighbours.shape == (len(x), 10)
    assert not (g.neighbours == np.arange(len(x))[:, None]).any()
    assert (np.diff(g.similarities, axis=1) <= 1e-6).all()
    s = g.normalized()
    assert abs(s - s.T).max() < 1e-6  # symmetric, as Zhou et al. need


def test_knn_graph_cache_reused_until_features_change(data, tmp_path):
    x, _, _ = data
    path = tmp_path / "knn.npz"
    g1 = cached_knn_graph(x, path)
    mtime = path.stat().st_mtime_ns
    g2 = cached_knn_graph(x, path)
    assert path.stat().st_mtime_ns == mtime and np.array_equal(g1.neighbours, g2.neighbours)
    x2 = x.copy()
    x2[0] = -x2[0]
    g3 = cached_knn_graph(x2, path)
    assert g3.fingerprint != g1.fingerprint


@pytest.mark.parametrize("method", model.METHODS)
def test_predictions_learn_the_classes_and_stay_probabilities(data, method):
    x, y, g = data
    rows = np.random.default_rng(1).choice(len(y), 60, replace=False)
    pred, state = model.predict(x, g, rows, y[rows], ["a", "b", "c"], method=method)
    assert pred.proba.shape == (len(y), 3)
    np.testing.assert_allclose(pred.proba.sum(1), 1, atol=1e-5)
    assert ((pred.confidence >= 0) & (pred.confidence <= 1)).all()
    assert (pred.label == y).mean() > 0.9
    # a refresh after one more label warm-starts and stays as good
    rows2 = np.r_[rows, np.setdiff1d(np.arange(len(y)), rows)[:1]]
    pred2, _ = model.predict(x, g, rows2, y[rows2], ["a", "b", "c"], method=method, state=state)
    assert (pred2.label == y).mean() > 0.9


def test_one_class_gives_no_confidence(data):
    x, y, g = data
    rows = np.flatnonzero(y == 0)[:5]
    pred, _ = model.predict(x, g, rows, y[rows], ["a", "b", "c"])
    assert (pred.label == 0).all() and (pred.confidence == 0).all()


def test_few_labels_never_claim_high_confidence(data):
    """Ten held-out checks cannot vouch for 95 %, however sure the model is."""
    x, y, g = data
    rows = np.r_[np.flatnonzero(y == 0)[:5], np.flatnonzero(y == 1)[:5]]
    pred, _ = model.predict(x, g, rows, y[rows], ["a", "b", "c"])
    assert pred.confidence.max() < 0.95


def test_evidence_bound_is_monotone_and_needs_evidence():
    conf = np.linspace(1.0, 0.5, 100)
    correct = np.cumsum(np.ones(100))
    p = np.linspace(0, 1, 201)
    b = model.evidence_bound(p, conf, correct)
    assert (np.diff(b) >= -1e-7).all() and (b <= p + 1e-7).all()
    assert b.max() > 0.95  # 100 right answers do vouch for 95 %
    few = model.evidence_bound(p, conf[:10], correct[:10])
    assert few.max() < 0.9
    wrong = model.evidence_bound(p, conf, np.cumsum(np.arange(100) % 2 == 0))  # half of them wrong
    assert wrong.max() < 0.6


def test_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3, size=(4000, 3))
    p = np.exp(logits / 2.0)
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    assert abs(model.fit_temperature(logits, y) - 2.0) < 0.25


def test_expected_calibration_error():
    conf = np.full(1000, 0.8)
    assert model.expected_calibration_error(conf, np.arange(1000) < 800) < 1e-9
    assert abs(model.expected_calibration_error(conf, np.ones(1000, bool)) - 0.2) < 1e-9


def test_cold_start_takes_typical_images_of_distinct_regions(data):
    x, y, g = data
    labelled = np.zeros(len(y), bool)
    items = queue.cold_start(x, g, labelled, 6)
    rows = [it.row for it in items]
    assert len(set(rows)) == 6 and all(it.reason for it in items)
    assert len(set(y[rows])) >= 2  # covers more than one class without looking at it


def test_queue_never_returns_labelled_images_and_spreads_out(data):
    x, y, g = data
    rng = np.random.default_rng(2)
    labelled = np.zeros(len(y), bool)
    labelled[rng.choice(len(y), 50, replace=False)] = True
    pred, _ = model.predict(x, g, np.flatnonzero(labelled), y[labelled], ["a", "b", "c"])
    items = queue.next_items(x, g, labelled, 10, margin=pred.margin, label=pred.label, classes=["a", "b", "c"])
    rows = [r for it in items for r in it.group]
    assert len(items) == 10 and len(set(rows)) == len(rows)
    assert not labelled[rows].any()
    picked = x[[it.row for it in items]]
    sims = picked @ picked.T
    assert sims[~np.eye(10, dtype=bool)].max() < 0.999  # no two picks are the same spot


def test_k_center_greedy_picks_the_far_point_first():
    x = np.array([[1, 0], [0.99, 0.141], [0, 1], [-1, 0]], dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    picked, dist = queue.k_center_greedy(x, np.array([1, 2, 3]), np.array([0]), 2)
    assert picked[0] == 3 and picked[1] == 2 and dist[0] > dist[1]


def test_k_center_greedy_still_picks_exact_copies_of_a_labelled_image():
    # Row 3 is row 0 again: its cosine distance to the labelled row 0 is 0 or a rounding
    # error below it; it comes last but is picked (a negative distance once ended the picks).
    x = np.array([[0.6, 0.8], [0.8, 0.6], [-0.6, 0.8], [0.6, 0.8]], dtype=np.float32)
    picked, dist = queue.k_center_greedy(x, np.array([1, 2, 3]), np.array([0]), 3)
    assert picked.tolist() == [2, 1, 3] and abs(dist[-1]) < 1e-6


def test_flow_ends_on_unnormalised_vectors_and_exact_copies():
    """The queue strategy once looped forever on unnormalised vectors (every 'cosine distance'
    negative, so the queue offered nothing and the flow refreshed the model without end)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    x = np.eye(3, dtype=np.float32)[y] + 0.3 * rng.normal(size=(90, 3)).astype(np.float32)  # test_simulate's
    res = queue_flow(y, x, max_actions=400, batch=5)
    assert res.stopped == "all labelled" and res.actions[-1] < 90  # accepted suggestions count
    assert res.accuracy[-1] == pytest.approx(np.mean(res.final == y)) and res.accuracy[-1] > 0.9
    copies = np.repeat((3 * rng.normal(size=(3, 4))).astype(np.float32), 10, axis=0)
    for truth in (np.repeat([0, 1, 1], 10), np.zeros(30, np.int64)):
        res = queue_flow(truth, copies, max_actions=400, batch=5)
        assert res.stopped == "all labelled" and res.actions[-1] <= 5


def test_near_duplicates_join_their_item():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 16))
    x = np.vstack([base, base[:1] + 1e-4 * rng.normal(size=(1, 16))])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    g = build_knn_graph(x, k=5)
    items = queue.add_near_duplicates([queue.QueueItem(0, [0])], g, np.zeros(len(x), bool))
    assert items[0].group == [0, 50] and "near-identical" in items[0].reason


def test_flow_reaches_high_accuracy_and_counts_accepts(data):
    x, y, g = data
    res = queue_flow(y, x, graph=g, max_actions=60, batch=5)
    assert res.actions[0] == 0 and (np.diff(res.actions) >= 0).all()
    assert res.actions_to(0.9) is not None and res.actions_to(0.9) <= 20
    s = res.summary()
    assert set(s) >= {"actions_to_90", "actions_to_95", "accuracy_at_200", "accuracy_at_400", "macro_f1_at_300",
                      "wrong_accepted_share"}
    if res.accepted:
        assert 0 <= res.wrong_accepted_share <= 0.1
    assert (res.labelled_accuracy <= res.accuracy + 1e-12).all()


def test_flow_never_looks_at_the_truth_of_images_it_did_not_show(data):
    """Changing the truth of every image never shown leaves the flow's picks unchanged."""
    x, y, g = data
    first = queue_flow(y, x, graph=g, max_actions=30, batch=5)
    hidden = np.setdiff1d(np.arange(len(y)), first.shown)
    y2 = y.copy()
    y2[hidden] = np.random.default_rng(5).permutation(y2[hidden])
    y2[hidden[:40]] = (y2[hidden[:40]] + 1) % 3
    second = queue_flow(y2, x, graph=g, max_actions=30, batch=5)
    assert second.shown == first.shown


def test_random_baseline_runs(data):
    x, y, g = data
    res = queue_flow(y, x, graph=g, max_actions=20, pick="random")
    assert res.strategy == "random" and len(res.shown) >= 15


def test_calibration_folds_keep_a_cluster_together():
    rows = np.arange(200)
    y = np.repeat([0, 1], 100)
    groups = np.repeat(np.arange(10), 20)  # 10 clusters of 20 images
    fold = model.stable_folds(rows, y, 5, groups)
    for g in range(10):
        assert len(set(fold[groups == g])) == 1
    assert len(set(model.stable_folds(rows, y, 5)[groups == 0])) > 1  # by image: a cluster is split
    noise = model.stable_folds(rows, y, 5, np.full(200, -1))  # noise: every image is its own group
    assert np.array_equal(noise, model.stable_folds(rows, y, 5))


def _labelled_clusters_and_a_look_alike(seed=0):
    """Class 0 = blobs A1, A2; class 1 = blob B1. Blob A2 lies next to B1, far from A1.
    The annotator labelled the clusters A1 and B1 whole; A2 is unlabelled."""
    rng = np.random.default_rng(seed)
    d = 16
    a1, b1 = np.zeros(d), np.zeros(d)
    a1[0], b1[1] = 1.0, 1.0
    a2 = b1 + 0.25 * np.eye(d)[2]
    x = np.concatenate([c + 0.05 * rng.standard_normal((60, d)) for c in (a1, b1, a2)]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.repeat([0, 1, 0], 60)
    clusters = np.repeat([0, 1, 2], 60)
    return x, y, clusters, np.arange(120)


def test_labels_of_whole_clusters_do_not_vouch_for_an_unlabelled_cluster():
    x, y, clusters, rows = _labelled_clusters_and_a_look_alike()
    g = build_knn_graph(x)
    rest = np.arange(120, 180)
    by_image, _ = model.predict(x, g, rows, y[rows], ["a", "b"])
    by_cluster, _ = model.predict(x, g, rows, y[rows], ["a", "b"], clusters=clusters)
    wrong_img = (by_image.label[rest] != y[rest]) & (by_image.confidence[rest] >= 0.95)
    wrong_cl = (by_cluster.label[rest] != y[rest]) & (by_cluster.confidence[rest] >= 0.95)
    assert wrong_img.sum() > 30  # image folds: near-identical members on both sides -> sure and wrong
    assert wrong_cl.sum() == 0  # grouped folds: held-out clusters showed the model is not to be trusted
    # Images of the labelled clusters keep the image folds' evidence: still confident, and right.
    seen = np.arange(120)
    assert np.array_equal(by_cluster.confidence[seen], by_image.confidence[seen])


def test_flow_refit_replaces_features_once_with_the_labels_so_far():
    """The 'fine-tune' press: called once at the given action count with the hand labels
    so far, costs one action, and the flow goes on with the returned features."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    noise = rng.normal(size=(200, 8)).astype(np.float32)  # says nothing about y
    good = np.eye(2, dtype=np.float32)[y] + 0.1 * rng.normal(size=(200, 2)).astype(np.float32)
    calls = []

    def refit(rows, codes):
        calls.append((rows.copy(), codes.copy()))
        return good, rows

    res = queue_flow(y, noise, max_actions=60, batch=5, refit=(20, refit))
    assert len(calls) == 1
    rows, codes = calls[0]
    assert set(rows.tolist()) <= set(res.shown) and np.array_equal(codes, y[rows]) and len(rows) >= 20
    at = res.refit_at
    assert at is not None and at >= 21 and res.summary()["refit_at"] == at
    before = res.accuracy[res.actions < at][-1]
    assert before < 0.8 and res.accuracy[-1] > 0.95
    # What search ranks by at the end: the returned features, rows normalised.
    assert res.features.shape == good.shape
    np.testing.assert_allclose(res.features, good / np.linalg.norm(good, axis=1, keepdims=True), rtol=1e-6)
    plain = queue_flow(y, noise, max_actions=60, batch=5)
    assert plain.refit_at is None and plain.accuracy[-1] < 0.8
    np.testing.assert_allclose(plain.features, noise / np.linalg.norm(noise, axis=1, keepdims=True), rtol=1e-6)


def test_fitted_rows_are_never_held_out_for_calibration(data):
    """Labels a fine-tune trained on vouch for nothing: with every label fitted there is no
    held-out evidence, so no confidence above 0.5; the same labels unfitted give more."""
    x, y, g = data
    rows = np.random.default_rng(0).choice(len(y), 120, replace=False)
    classes = ["a", "b", "c"]
    free, _ = model.predict(x, g, rows, y[rows], classes)
    fitted = np.zeros(len(y), bool)
    fitted[rows] = True
    none_held, _ = model.predict(x, g, rows, y[rows], classes, fitted=fitted)
    assert free.confidence.max() > 0.9 and none_held.confidence.max() <= 0.5 + 1e-6
    assert none_held.n_calibration == 0
    half = fitted.copy()
    half[rows[:60]] = False  # the labels the fine-tune held out calibrate
    some, _ = model.predict(x, g, rows, y[rows], classes, fitted=half)
    assert 0 < some.n_calibration <= 60 and some.confidence.max() > 0.5


# -- the two numbers: probability and the held-out evidence (issue 20, part 6) -------------
def test_evidence_says_how_many_labels_vouch_and_how_many_more_it_takes():
    from labeler.assist import evidence

    p = np.array([0.999, 0.96, 0.7])
    conf = np.linspace(1.0, 0.9, 12)
    few = evidence.evidence_detail(p, conf, np.arange(1, 13))  # 12 held-out, all right
    assert np.allclose(few.count, 12) and abs(few.lower[0] - 0.05 ** (1 / 12)) < 1e-5  # Clopper-Pearson, 0 wrong
    assert few.vouched[0] < 0.8 < p[0]  # the evidence caps what it vouches for, not the probability
    assert few.to_vouch[0] == 47 and few.to_vouch[2] == 0  # 59 all right vouch for 0.95; 12 do for 0.7
    # n more right ones reach the target (0.96 capped at VOUCH_LEVEL 0.95), n - 1 do not
    n = int(few.to_vouch[1])
    assert evidence.vouch_target([0.96])[0] == evidence.VOUCH_LEVEL == 0.95
    assert evidence._lower_bound(12 + n, 12 + n) >= 0.95 > evidence._lower_bound(11 + n, 11 + n)
    many = evidence.evidence_detail(p, np.linspace(1.0, 0.9, 60), np.arange(1, 61))
    assert (many.to_vouch[:2] == 0).all() and many.vouched[0] >= 0.95
    none = evidence.evidence_detail(p, None, None)  # no held-out evidence vouches for nothing
    assert (none.vouched == 0).all() and (none.count == 0).all() and none.to_vouch[0] == 59


def test_evidence_in_words_is_never_a_bare_number():
    from labeler.assist import evidence

    assert evidence.vouch_text(0.99, 0.96, 60, 0) == "vouched ≥ 0.96 by 60 held-out labels"
    assert evidence.vouch_text(0.99, 0.02, 0.4, 58, True) == "not enough labelled clusters yet to vouch: 58 more"
    partly = evidence.vouch_text(0.999, 0.78, 12, 47)
    assert partly.startswith("vouched only ≥ 0.78 by 12 held-out labels") and "47 more" in partly
    low = evidence.suggestion_text(0.31, 0.0, 0, 2)
    assert low.startswith("probability 0.31 it is right (more likely wrong than right)")
    assert evidence.probability_text(0.9996) == "probability 0.99 it is right"  # never rounds up to 1


def test_probability_is_not_capped_by_the_evidence(data):
    """12 labels on well separated classes: the probability says 'right', the evidence
    says 'not yet vouched', and the vouched confidence never exceeds the probability."""
    x, y, g = data
    rows = np.r_[np.flatnonzero(y == 0)[:6], np.flatnonzero(y == 1)[:6]]
    pred, _ = model.predict(x, g, rows, y[rows], ["a", "b", "c"])
    two = np.isin(y, [0, 1])
    assert np.median(pred.probability[two]) > 0.95 and pred.confidence.max() < 0.95
    assert (pred.confidence <= pred.probability + 1e-6).all()
    assert (pred.to_vouch[pred.probability >= 0.95] > 0).all()
    assert pred.evidence.max() <= 12 and pred.probability.dtype == np.float32
    assert pred.to_vouch.dtype == np.int64 and pred.by_cluster.dtype == bool and not pred.by_cluster.any()


def test_budget_takes_the_largest_set_within_the_expected_error():
    from labeler.assist.acceptance import budget_size

    rng = np.random.default_rng(0)
    for _ in range(200):
        p = np.sort(rng.beta(5, 1, rng.integers(1, 40)))[::-1]
        budget = float(rng.choice([0.0, 0.01, 0.05, 0.1, 0.3]))
        k = budget_size(p, budget)
        assert k == 0 or np.sum(1 - p[:k]) <= budget * k + 1e-9  # within the budget
        # the prefix has the least expected wrong count of any set of its size: k + 1 cannot fit
        assert k == len(p) or np.sum(1 - p[:k + 1]) > budget * (k + 1)
    assert budget_size(np.array([0.99, 0.97, 0.9, 0.6]), 0.05) == 3  # 0.14 <= 0.15; 0.54 > 0.2
    with pytest.raises(ValueError):
        budget_size(np.array([0.5, 0.9]), 0.05)
