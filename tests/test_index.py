"""The HNSW index against exact search, its saved memory-mapped form and incremental adds."""

import numpy as np
import pytest

from labeler import index as ix
from labeler.errors import BadInputError
from labeler.index import ExactIndex, HnswIndex, project_index, update_project_index
from labeler.project import Project


def clustered(n, dim=32, centers=20, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, dim))
    x = c[rng.integers(0, centers, n)] + 0.5 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall(a, b):
    return float(np.mean([len(set(r) & set(s)) / len(r) for r, s in zip(a, b)]))

def _spread_vectors(monkeypatch, ef_construction: int, hard: int, m_hard: int = 8) -> np.ndarray:
    """3,000 spread-out 24-d unit vectors, HNSW_FROM 500 and a sparse graph (M 8, the given
    efConstruction and denser rebuild's M and efConstruction, floor beam 10): the floor beam
    is not enough there."""
    monkeypatch.setattr(ix, "HNSW_FROM", 500)
    monkeypatch.setattr(ix, "HNSW_M", 8)
    monkeypatch.setattr(ix, "HNSW_M_HARD", m_hard)
    monkeypatch.setattr(ix, "HNSW_EF_CONSTRUCTION", ef_construction)
    monkeypatch.setattr(ix, "HNSW_EF_CONSTRUCTION_HARD", hard)
    monkeypatch.setattr(ix, "HNSW_EF_SEARCH", 10)
    x = np.random.default_rng(5).normal(size=(3000, 24)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)



def test_exact_index_blas_path_matches_the_numpy_path():
    x = clustered(3000)
    q = np.arange(40)
    s_blas, r_blas = ExactIndex(x).search(x[q], 5, exclude=q)  # >= 20 queries: faiss.knn
    s_np = np.empty_like(s_blas)
    r_np = np.empty_like(r_blas)
    for i in range(0, 40, 10):  # < 20 queries: numpy product
        s_np[i:i + 10], r_np[i:i + 10] = ExactIndex(x).search(x[q[i:i + 10]], 5, exclude=q[i:i + 10])
    assert (r_blas != q[:, None]).all()
    np.testing.assert_allclose(s_blas, s_np, atol=1e-5)
    assert recall(r_blas, r_np) > 0.99  # equal up to float ties


def test_hnsw_recall_against_exact_search_and_exclude():
    x = clustered(4000)
    q = np.arange(0, 4000, 40)
    _, truth = ExactIndex(x).search(x[q], 10, exclude=q)
    hnsw = HnswIndex.build(x, m=16, ef_construction=40, ef_search=64)
    sims, rows = hnsw.search(x[q], 10, exclude=q)
    assert rows.shape == (100, 10) and rows.dtype == np.int64 and sims.dtype == np.float32
    assert (rows != q[:, None]).all()
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # most similar first
    assert recall(rows, truth) >= 0.95
    assert isinstance(ix.build_index(x), ExactIndex)  # below HNSW_FROM
    assert isinstance(ix.build_index(x, exact=True), ExactIndex)


def test_few_and_many_queries_leave_out_the_same_rows():
    """Leaving the query out is done row by row for a few queries and at once for many:
    both give the same answer, -1 / -inf where fewer than k remain."""
    x = clustered(2000, seed=2)
    q = np.arange(0, 2000, 50)
    hnsw = HnswIndex.build(x, m=16, ef_construction=40, ef_search=64)
    many = hnsw.search(x[q], 10, exclude=q)
    few = [hnsw.search(x[q[i:i + 8]], 10, exclude=q[i:i + 8]) for i in range(0, len(q), 8)]
    np.testing.assert_array_equal(many[1], np.concatenate([f[1] for f in few]))
    np.testing.assert_array_equal(many[0], np.concatenate([f[0] for f in few]))
    sims = np.tile(np.linspace(1, 0, 4, dtype=np.float32), (20, 1))
    rows = np.tile(np.array([7, 3, -1, -1]), (20, 1))
    for m in (1, 20):  # row by row, at once
        s, r = ix._drop_excluded(sims[:m], rows[:m], np.full(m, 3), 3)
        assert r.tolist() == [[7, -1, -1]] * m and s[:, 1:].tolist() == [[-np.inf, -np.inf]] * m


def test_hnsw_save_load_mmap_and_add(tmp_path):
    x = clustered(3000, seed=1)
    hnsw = HnswIndex.build(x[:2000], m=16)
    path = tmp_path / "index.faiss"
    hnsw.save(path)
    mapped = HnswIndex.load(path, mmap=True)
    assert mapped.mapped and len(mapped) == 2000
    np.testing.assert_array_equal(mapped.search(x[:5], 5)[1], hnsw.search(x[:5], 5)[1])
    with pytest.raises(BadInputError):
        mapped.add(x[2000:])  # FAISS would abort the process on a mapped index
    loaded = HnswIndex.load(path, mmap=False)
    loaded.add(x[2000:])
    assert len(loaded) == 3000
    _, rows = loaded.search(x[2500:2510], 1)
    assert (rows[:, 0] == np.arange(2500, 2510)).all()  # the added rows are found as themselves
    with pytest.raises(FileNotFoundError):
        HnswIndex.load(tmp_path / "missing.faiss")


def test_project_index_builds_adds_and_rebuilds(tmp_path, monkeypatch):
    monkeypatch.setattr(ix, "HNSW_FROM", 500)
    p = Project(tmp_path / "p", create=True)
    x = clustered(1200, seed=2)
    p.save_array("pca", x[:300])
    assert update_project_index(p) == "exact"
    assert isinstance(project_index(p), ExactIndex)
    p.save_array("pca", x[:1000])
    assert update_project_index(p) == "built"
    assert update_project_index(p) == "current"
    p.save_array("pca", x)  # 200 images appended, earlier rows unchanged
    assert update_project_index(p) == "added 200"
    idx = project_index(p)
    assert isinstance(idx, HnswIndex) and idx.mapped and len(idx) == 1200
    assert isinstance(project_index(p, exact=True), ExactIndex)
    _, rows = idx.search(x[1100:1110], 1)
    assert (rows[:, 0] == np.arange(1100, 1110)).all()
    p.save_array("pca", x[::-1].copy())  # a refitted PCA changes every row
    assert update_project_index(p) == "built"
    p.store.close()


def test_saved_index_keeps_its_parameters(tmp_path, monkeypatch):
    x = clustered(1500, seed=3)
    hnsw = HnswIndex.build(x[:1000], m=12, ef_construction=30, ef_search=48)
    assert hnsw.params == {"m": 12, "ef_construction": 30, "ef_search": 48}
    path = tmp_path / "index.faiss"
    hnsw.save(path)
    monkeypatch.setattr(ix, "HNSW_EF_SEARCH", 7)  # later library defaults do not change a saved index
    for mmap in (True, False):
        assert HnswIndex.load(path, mmap=mmap).params == {"m": 12, "ef_construction": 30, "ef_search": 48}
    assert HnswIndex.load(path, ef_search=100).ef_search == 100  # an explicit beam width wins
    grown = HnswIndex.load(path, mmap=False)
    grown.add(x[1000:])
    grown.save(path)
    assert HnswIndex.load(path).params["ef_search"] == 48


def test_project_index_records_parameters_and_exact_on_request(tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(ix, "HNSW_FROM", 500)
    monkeypatch.setattr(ix, "HNSW_M", 8)
    monkeypatch.setattr(ix, "HNSW_EF_SEARCH", 40)
    p = Project(tmp_path / "p", create=True)
    x = clustered(800, seed=4)
    p.save_array("pca", x)
    idx = project_index(p)
    assert isinstance(idx, HnswIndex) and idx.params["m"] == 8 and idx.ef_search == 40
    meta = json.loads((p.models_dir / ix.INDEX_META).read_text())
    assert (meta["m"], meta["ef_search"], meta["rows"]) == (8, 40, 800)
    exact = project_index(p, exact=True)
    assert isinstance(exact, ExactIndex)
    q = np.arange(0, 800, 80)
    sims, rows = exact.search(x[q], 5, exclude=q)
    brute = x[q] @ x.T
    brute[np.arange(len(q)), q] = -np.inf
    np.testing.assert_array_equal(rows, np.argsort(-brute, axis=1, kind="stable")[:, :5])
    p.store.close()


def test_vectors_that_need_a_wide_beam_get_a_denser_graph_that_needs_a_narrower_one(tmp_path, monkeypatch):
    """Where the first graph needs more than the floor beam, the saved index is the denser
    graph (efConstruction HNSW_EF_CONSTRUCTION_HARD) when that one reaches the target with a
    narrower beam; index.json records which graph was kept."""
    import json

    x = _spread_vectors(monkeypatch, 8, 64, m_hard=16)
    sparse_ef, _ = ix.tune_ef_search(HnswIndex.build(x), x)
    assert sparse_ef is None or sparse_ef > 10  # the first graph needs a wider beam
    said = []
    p = Project(tmp_path / "p", create=True)
    p.save_array("pca", x)
    assert ix.update_project_index(p, say=said.append) == "built"
    meta = json.loads((p.models_dir / ix.INDEX_META).read_text())
    assert meta["kind"] == "hnsw" and (meta["m"], meta["ef_construction"]) == (16, 64)
    assert meta["ef_search"] < (sparse_ef or 10**9) and meta["recall_at_10"] >= ix.HNSW_TARGET_RECALL
    assert any("denser graph (M 16, efConstruction 64)" in s for s in said)
    p.store.close()


def test_project_index_tunes_its_beam_to_the_vectors_or_stays_exact(tmp_path, monkeypatch):
    """The saved index gets the smallest efSearch reaching the recall target on its own rows
    (recorded in index.json, measured against exact search here too); a target no beam width
    reaches leaves the project on exact search."""
    import json

    x = _spread_vectors(monkeypatch, 16, 16)  # no denser rebuild (the next test has it)
    p = Project(tmp_path / "p", create=True)
    p.save_array("pca", x)
    idx = project_index(p)
    meta = json.loads((p.models_dir / ix.INDEX_META).read_text())
    assert isinstance(idx, HnswIndex) and meta["kind"] == "hnsw"
    assert idx.ef_search == meta["ef_search"] > 10 and meta["recall_at_10"] >= ix.HNSW_TARGET_RECALL
    q = np.arange(1, 3000, 7)  # other rows than the tuning sample's (mostly)
    _, truth = ExactIndex(x).search(x[q], 10, exclude=q)
    assert recall(idx.search(x[q], 10, exclude=q)[1], truth) >= 0.94
    idx.ef_search = 10
    assert recall(idx.search(x[q], 10, exclude=q)[1], truth) < ix.HNSW_TARGET_RECALL  # the floor alone falls short
    monkeypatch.setattr(ix, "HNSW_TARGET_RECALL", 1.01)  # unreachable
    p.save_array("pca", x[::-1].copy())  # refitted: rebuilt and tuned again
    assert isinstance(project_index(p), ExactIndex)
    assert json.loads((p.models_dir / ix.INDEX_META).read_text())["kind"] == "exact"
    assert isinstance(project_index(p), ExactIndex)  # 'current': stays exact without a rebuild
    p.store.close()


def test_an_index_saved_before_parameters_were_kept_gets_the_library_beam(tmp_path, monkeypatch):
    import json

    import faiss

    monkeypatch.setattr(ix, "HNSW_FROM", 500)
    p = Project(tmp_path / "p", create=True)
    x = clustered(800, seed=5)
    p.save_array("pca", x)
    update_project_index(p)
    meta_path = p.models_dir / ix.INDEX_META
    meta = json.loads(meta_path.read_text())
    old = faiss.read_index(str(p.models_dir / ix.INDEX_FILE))
    old.hnsw.efSearch = 16  # what the earlier code left in the file (FAISS's default)
    faiss.write_index(old, str(p.models_dir / ix.INDEX_FILE))
    del meta["ef_search"]  # and its index.json did not record it
    meta_path.write_text(json.dumps(meta))
    assert project_index(p).ef_search == ix.HNSW_EF_SEARCH
    p.save_array("pca", np.concatenate([x, clustered(50, seed=6)]))
    assert update_project_index(p) == "added 50"
    assert json.loads(meta_path.read_text())["ef_search"] == ix.HNSW_EF_SEARCH
    assert project_index(p).ef_search == ix.HNSW_EF_SEARCH
    p.store.close()


def test_the_in_memory_index_is_tuned_like_the_saved_one(monkeypatch):
    """build_index (self_neighbours: the suggestions' graph, near-duplicates) builds its graph
    through build_tuned as the project's saved index does: its beam reaches the recall target,
    and where no beam does it searches exactly."""
    x = _spread_vectors(monkeypatch, 16, 16)
    idx = ix.build_index(x)
    assert isinstance(idx, HnswIndex) and idx.ef_search > 10  # the floor beam was not enough
    q = np.arange(1, 3000, 7)
    _, truth = ExactIndex(x).search(x[q], 10, exclude=q)
    assert recall(idx.search(x[q], 10, exclude=q)[1], truth) >= 0.94
    sims, nbrs = ix.self_neighbours(x, 5, rows=q)
    assert recall(nbrs, truth[:, :5]) >= 0.94
    monkeypatch.setattr(ix, "HNSW_TARGET_RECALL", 1.01)  # unreachable
    assert isinstance(ix.build_index(x), ExactIndex)
