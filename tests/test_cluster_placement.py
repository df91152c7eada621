"""Placing points outside an HDBSCAN fit sample: fast_approximate_predict against hdbscan's own."""

import hdbscan
import numpy as np
import pytest

from labeler import clustering
from labeler.errors import BadInputError


def space(n=6000, dim=5, centers=8, seed=0):
    """Gaussian blobs of unequal spread plus uniform background noise, (n, dim) float64."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(-10, 10, size=(centers, dim))
    y = rng.integers(0, centers, n)
    x = c[y] + rng.normal(size=(n, dim)) * rng.uniform(0.3, 1.2, centers)[y][:, None]
    x[: n // 20] = rng.uniform(-14, 14, size=(n // 20, dim))  # background: noise and far-away points
    return x


@pytest.fixture(scope="module")
def fitted():
    x = space()
    model = hdbscan.HDBSCAN(min_cluster_size=15, min_samples=5, prediction_data=True).fit(x[::4])
    return x, model


def test_vectorised_placement_equals_approximate_predict(fitted):
    x, model = fitted
    new = np.concatenate([x[1::4], x[2::4], x[::4][:200], np.full((3, x.shape[1]), 1e3)])
    want, want_s = hdbscan.approximate_predict(model, new)
    got, got_s = clustering.fast_approximate_predict(model, new, chunk=700)
    assert got.dtype == np.int64 and got_s.dtype == np.float32 and got.shape == (len(new),)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got_s, want_s, atol=1e-6)
    assert (want >= 0).any() and (want < 0).any()  # both branches were exercised
    assert (got[-3:] == -1).all()  # far away = noise
    assert clustering.fast_approximate_predict(model, x[:0])[0].shape == (0,)


def test_fit_on_a_sample_invariants_with_both_placements():
    x = space(n=5000, seed=1)
    fits = {p: clustering.fit_hdbscan(x, fit_sample=1500, placement=p) for p in ("vectorised", "hdbscan")}
    fit = fits["vectorised"]
    np.testing.assert_array_equal(fit.labels, fits["hdbscan"].labels)
    np.testing.assert_allclose(fit.strengths, fits["hdbscan"].strengths, atol=1e-6)
    n_clusters = len(fit.renumber)
    assert n_clusters >= 2
    # Every point gets a cluster or noise.
    assert fit.labels.shape == (5000,) and set(np.unique(fit.labels)) <= set(range(-1, n_clusters))
    assert ((fit.strengths >= 0) & (fit.strengths <= 1)).all()
    # The fitted points keep the clusters the fit gave them.
    sample = np.sort(np.random.default_rng(0).choice(5000, size=1500, replace=False))
    own = np.array([fit.renumber.get(int(r), -1) for r in fit.model.labels_])
    np.testing.assert_array_equal(fit.labels[sample], own)
    # A point identical to a fitted point at its cluster's core (strength 1) gets that cluster.
    core = sample[(own >= 0) & (fit.model.probabilities_ == 1.0)]
    assert len(core) > 50
    labels, strengths = clustering.predict_hdbscan(fit, x[core], placement="vectorised")
    np.testing.assert_array_equal(labels, fit.labels[core])


def test_unknown_placement_is_refused():
    x = space(n=300)
    with pytest.raises(BadInputError):
        clustering.fit_hdbscan(x, placement="vote")
    fit = clustering.fit_hdbscan(x)
    with pytest.raises(BadInputError):
        clustering.predict_hdbscan(fit, x[:2], placement="nope")
