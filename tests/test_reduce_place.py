"""Placing the rows outside the UMAP fit sample by their nearest fitted neighbours."""

import numpy as np
import pytest

from labeler.reduce import fit_umap, fit_umaps, l2_normalize, place_by_neighbours


def blobs(n, centers=4, dim=32, seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, dim))
    y = rng.integers(0, centers, n)
    return l2_normalize(c[y] + spread * rng.normal(size=(n, dim))), y


def nearest_centre_accuracy(coords, y, ref_coords, ref_y):
    centres = np.stack([ref_coords[ref_y == c].mean(0) for c in range(y.max() + 1)])
    got = np.argmin(((coords[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    return float(np.mean(got == y))


def test_place_by_neighbours_puts_points_with_their_cluster():
    x, y = blobs(3000)
    fitted, rest = np.arange(0, 3000, 2), np.arange(1, 3000, 2)
    # Positions of the fitted points: their cluster's corner of a square plus jitter; a 3-d space too.
    corners = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], np.float32)
    rng = np.random.default_rng(1)
    xy = corners[y[fitted]] + rng.normal(scale=0.5, size=(len(fitted), 2)).astype(np.float32)
    xyz = np.c_[xy, y[fitted].astype(np.float32)]
    placed_xy, placed_xyz = place_by_neighbours(x[fitted], [xy, xyz], x, rest, k=10, chunk=400)
    assert placed_xy.shape == (1500, 2) and placed_xyz.shape == (1500, 3)
    assert placed_xy.dtype == np.float32 and np.isfinite(placed_xyz).all()
    assert nearest_centre_accuracy(placed_xy, y[rest], xy, y[fitted]) > 0.98
    np.testing.assert_allclose(placed_xyz[:, :2], placed_xy, atol=1e-4)  # one kNN search, every space
    # A point equal to a fitted one lands next to it (its weight is the largest).
    again = place_by_neighbours(x[fitted], [xy], x[fitted[:20]], k=10)[0]
    assert np.median(np.linalg.norm(again - xy[:20], axis=1)) < 1.5


def test_fit_umaps_on_a_sample_places_the_rest():
    x, y = blobs(5200, seed=2)
    (r2, xy), (r5, space) = fit_umaps(x, [(2, 0.1), (5, 0.0)], n_neighbors=10, seed=0, fit_sample=4200)
    assert xy.shape == (5200, 2) and space.shape == (5200, 5)
    assert np.isfinite(xy).all() and np.isfinite(space).all()
    # Both fits used the one precomputed kNN graph (with its search index, so transform works).
    assert r2.knn_search_index is not None and r2.knn_search_index is r5.knn_search_index
    assert r2.transform(x[:3]).shape == (3, 2)
    sample = np.zeros(5200, bool)
    sample[np.sort(np.random.default_rng(0).choice(5200, 4200, replace=False))] = True
    np.testing.assert_allclose(xy[sample], r2.embedding_)
    assert nearest_centre_accuracy(xy[~sample], y[~sample], xy[sample], y[sample]) > 0.97
    assert nearest_centre_accuracy(space[~sample], y[~sample], space[sample], y[sample]) > 0.97
    with pytest.raises(ValueError):
        fit_umap(x, 2, place="nowhere")


def test_membership_weights_match_umap_smooth_knn_dist():
    from umap.umap_ import smooth_knn_dist

    from labeler.reduce import membership_weights

    rng = np.random.default_rng(3)
    sims = -np.sort(-rng.uniform(0.2, 1.0, size=(500, 15)), axis=1)
    sims[0, :4] = 1.0  # duplicates of the query: distance 0
    sims[1, :] = 1.0
    dist = np.clip(1 - sims, 0, None).astype(np.float32)
    sigma, rho = smooth_knn_dist(dist, 15.0, local_connectivity=1.0)
    ref = np.exp(-np.maximum(dist - rho[:, None], 0) / np.maximum(sigma[:, None], 1e-12))
    ref /= ref.sum(axis=1, keepdims=True)
    w = membership_weights(sims)
    assert w.dtype == np.float32 and w.shape == (500, 15)
    np.testing.assert_allclose(w, ref, atol=1e-5)
    short = sims[2:3].copy()
    short[0, 9:] = -np.inf  # an HNSW answer with fewer than k neighbours
    ws = membership_weights(short)[0]
    assert (ws[9:] == 0).all() and ws.sum() == pytest.approx(1.0) and (ws[:9] > 0).all()


def test_search_places_a_query_as_ingest_places_a_row():
    from labeler.index import ExactIndex
    from labeler.search import place_on_map

    x, y = blobs(600, seed=4)
    fitted = x[:500]
    xy = np.random.default_rng(5).normal(size=(500, 2)).astype(np.float32)
    q = x[500:510]
    placed = place_by_neighbours(fitted, [xy], q, k=10)[0]
    sims, rows = ExactIndex(fitted).search(q, 10)
    for i in range(10):
        np.testing.assert_allclose(place_on_map(xy[rows[i]], sims[i]), placed[i], atol=1e-5)
        shuffled = np.random.default_rng(i).permutation(10)  # a re-ranked answer: same place
        np.testing.assert_allclose(place_on_map(xy[rows[i]][shuffled], sims[i][shuffled]), placed[i], atol=1e-5)
    assert place_on_map(np.zeros((0, 2)), np.zeros(0)) == (0.0, 0.0)
