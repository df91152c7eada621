"""Clustering, reduction and the exact index on synthetic clustered vectors."""

import numpy as np
import pytest

from labeler import clustering
from labeler.index import ExactIndex, nearest_neighbour_similarities
from labeler.reduce import fit_pca, fit_umap, l2_normalize, transform_pca


def blobs(n_per=60, centers=3, dim=64, seed=0, spread=0.15):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, dim))
    x = np.concatenate([c[i] + spread * rng.normal(size=(n_per, dim)) for i in range(centers)])
    return x.astype(np.float32), np.repeat(np.arange(centers), n_per)


def test_pca_caps_components_and_normalises():
    x, _ = blobs(n_per=10)
    res = fit_pca(x, 256)
    assert res.vectors.shape == (30, 30) and res.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(res.vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(transform_pca(res.model, x[:3]), res.vectors[:3], atol=1e-5)
    with pytest.raises(ValueError):
        fit_pca(x[:1], 4)


def test_kmeans_recovers_blobs_largest_first():
    x, truth = blobs()
    x = np.concatenate([x, x[:30] + 0.01])  # make blob 0 the largest
    truth = np.concatenate([truth, truth[:30]])
    labels = clustering.run_kmeans(l2_normalize(x), 3)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, labels) == pytest.approx(1.0)
    assert np.bincount(labels).tolist() == sorted(np.bincount(labels).tolist(), reverse=True)
    with pytest.raises(ValueError):
        clustering.run_kmeans(x, 0)


def test_choose_k_finds_three():
    x, _ = blobs()
    k, scores = clustering.choose_k(l2_normalize(x), (2, 6))
    assert k == 3 and set(scores) == {2, 3, 4, 5, 6}


def test_hdbscan_with_noise():
    x, truth = blobs(dim=5, spread=0.05)
    rng = np.random.default_rng(1)
    x = np.concatenate([x, rng.uniform(-5, 5, size=(5, 5)).astype(np.float32)])
    labels, strength = clustering.run_hdbscan(x, min_cluster_size=10, min_samples=3)
    assert len(set(labels) - {-1}) == 3
    assert strength.shape == labels.shape and 0 <= strength.min() and strength.max() <= 1


def test_umap_shapes():
    x, _ = blobs(n_per=20)
    reducer, xy = fit_umap(l2_normalize(x), 2, n_neighbors=10)
    assert xy.shape == (60, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()


def test_summaries_medoid_and_representatives():
    x, truth = blobs(n_per=5, dim=8)
    v = l2_normalize(x)
    ids = np.arange(100, 115)
    sums = clustering.summarize(v, ids, truth, n_representatives=3)
    assert [s["size"] for s in sums] == [5, 5, 5]
    s0 = sums[0]
    centroid = l2_normalize(v[:5].mean(0))
    assert s0["medoid_id"] == 100 + int(np.argmax(v[:5] @ centroid))
    assert len(s0["representatives"]) == 3 and s0["representatives"][0] == s0["medoid_id"]
    assert "suggested_name" not in s0  # the ImageNet hint is computed when shown (labeler.hints)


def test_exact_index_matches_brute_force():
    x = l2_normalize(np.random.default_rng(0).normal(size=(500, 16)))
    idx = ExactIndex(x)
    s, r = idx.search(x[:7], 5, exclude=np.arange(7))
    full = x[:7] @ x.T
    full[np.arange(7), np.arange(7)] = -np.inf
    np.testing.assert_array_equal(r, np.argsort(-full, axis=1)[:, :5])
    assert (r != np.arange(7)[:, None]).all()
    nn = nearest_neighbour_similarities(x, sample=None)
    np.testing.assert_allclose(nn, np.sort(x @ x.T - 2 * np.eye(500), axis=1)[:, -1], rtol=1e-5)


def test_hdbscan_on_a_sample_places_the_rest():
    x, truth = blobs(n_per=200, dim=5, spread=0.05)
    full, _ = clustering.run_hdbscan(x, min_cluster_size=10, min_samples=3)
    part, strength = clustering.run_hdbscan(x, min_cluster_size=10, min_samples=3, fit_sample=150)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, part) > 0.95 and adjusted_rand_score(full, part) > 0.95
    assert strength.shape == (600,) and np.isfinite(strength).all()


def test_medoid_is_the_member_with_the_least_total_cosine_distance():
    """The closed form of :func:`medoid_order` agrees with the brute-force pairwise definition."""
    from sklearn.metrics import pairwise_distances

    rng = np.random.default_rng(3)
    for n, d in ((2, 3), (7, 5), (60, 16), (300, 32)):
        # Skewed clusters (a dense core plus a far tail): the centroid is pulled away from the core.
        x = np.concatenate([rng.normal(size=(n - n // 3, d)) * 0.3 + 1.0, rng.normal(size=(n // 3, d)) * 2.0])
        total = pairwise_distances(x, metric="cosine").sum(1)
        order, sims = clustering.medoid_order(x)
        assert order[0] == int(np.argmin(total))
        np.testing.assert_allclose(total[order], np.sort(total), rtol=1e-4, atol=1e-4)
        ids = np.arange(1000, 1000 + n)
        s = clustering.summarize(x, ids, np.zeros(n, int), n_representatives=5)[0]
        assert s["medoid_id"] == 1000 + int(np.argmin(total))
        assert s["representatives"] == [int(i) for i in ids[np.argsort(total, kind="stable")[:5]]]
