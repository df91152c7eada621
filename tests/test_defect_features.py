"""Defect-aware features and position-normalised anomaly (labeler.embedding.defect_features,
labeler.embedding.patchcore) on 80 real ELPV photos: end to end through the library and the CLI."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from labeler.errors import BadInputError, NotFoundError


@pytest.fixture(scope="module")
def mapped_root(built_project, tmp_path_factory):
    """The built project with patch maps (computed once for the module); tests copy it."""
    from labeler.embedding.patch_maps import compute_patch_maps
    from labeler.project import Project

    dest = tmp_path_factory.mktemp("defect") / "project"
    shutil.copytree(built_project, dest)
    p = Project(dest)
    compute_patch_maps(p, progress=False, num_workers=0)
    p.store.close()
    return dest


@pytest.fixture()
def proj(mapped_root, tmp_path):
    from conftest import writable_copy

    yield from writable_copy(mapped_root, tmp_path / "p")


def _defective(p, elpv_dir) -> dict[int, bool]:
    with open(elpv_dir / "truth.csv") as f:
        truth = {r["path"]: r["defective"] == "yes" for r in csv.DictReader(f)}
    return {int(r["id"]): truth[r["path"].split("/")[-1]] for r in p.store.image_table()}


def _label_normal(p, elpv_dir, n: int) -> list[int]:
    from labeler.labels import label_images

    ok = sorted(i for i, d in _defective(p, elpv_dir).items() if not d)[:n]
    label_images(p, ok, "no")
    return ok


def test_not_computed_is_one_line_naming_the_command(proj):
    from labeler.embedding.defect_features import anomaly_grid, anomaly_scores, defect_features_stale

    for call in (lambda: anomaly_scores(proj), lambda: anomaly_grid(proj, 1)):
        with pytest.raises(NotFoundError, match=r"labeler features --project DIR --compute defect"):
            call()
    with pytest.raises(NotFoundError, match="no defect feature set"):
        defect_features_stale(proj)


def test_defect_set_scores_grid_and_heat_map_agree(proj, elpv_dir):
    from labeler.embedding.defect_features import K, anomaly_grid, anomaly_scores, compute_defect_features
    from labeler.embedding.feature_sets import list_feature_sets, load_feature_set
    from labeler.embedding.patchcore import MAX_BANK_PATCHES, anomaly_map, load_bank

    ok = _label_normal(proj, elpv_dir, 15)  # of the 19 defect-free images among the 80
    with pytest.raises(BadInputError, match="no image is labelled 'ok'"):
        compute_defect_features(proj, "ok")
    rep = compute_defect_features(proj, "no")
    n = proj.store.next_row()
    assert rep["rows"] == n and rep["bank_images"] == 15 and not rep["failures"]
    assert rep["bank_patches"] == min(15 * 196, MAX_BANK_PATCHES)
    v = load_feature_set(proj, "defect")
    assert v.shape == (n, 2 * 64 + 1) and v.dtype == np.float32 and np.isfinite(v).all()
    info = list_feature_sets(proj)["defect"]
    assert info["kind"] == "defect" and info["normal_label"] == "no" and sorted(info["normal_ids"]) == ok
    assert info["k"] == K and not info["active"]

    row_of = {int(r["id"]): int(r["row"]) for r in proj.store.image_table()}
    rows = np.array([row_of[i] for i in sorted(row_of)])
    bank, _, _ = load_bank(proj)
    assert (bank.normaliser == 1).all()  # raw distances by default (measured: docs/defects.md)
    for norm in ("position", "none"):
        compute_defect_features(proj, "no", normalise=norm)
        scores = anomaly_scores(proj)
        assert scores.shape == (n,) and scores.dtype == np.float32 and np.isfinite(scores).all()
        grids = np.stack([anomaly_grid(proj, i) for i in sorted(row_of)])
        assert grids.shape == (n, 14, 14) and grids.dtype == np.float32
        # One computation: the image score is the largest cell of its grid.
        np.testing.assert_allclose(scores[rows], grids.reshape(n, -1).max(1), rtol=1e-5)
        if norm == "position":  # the median anomaly at every cell is 1 over the images
            bank, _, _ = load_bank(proj)
            assert bank.normaliser.shape == (196,) and (bank.normaliser > 0).all() and bank.normaliser.std() > 0
            np.testing.assert_allclose(np.median(grids.reshape(n, -1), axis=0), 1.0, rtol=1e-4)
    # A bank image is scored against the others' patches, not its own (it would be 0).
    assert scores[[row_of[i] for i in ok]].min() > 0.1 * np.median(scores)
    # Defective cells score higher than the defect-free ones outside the bank.
    d = _defective(proj, elpv_dir)
    bad = [row_of[i] for i in d if d[i]]
    good = [row_of[i] for i in d if not d[i] and i not in ok]
    assert np.median(scores[bad]) > np.median(scores[good])
    # The heat map is the same grid at the image's size.
    i0 = sorted(row_of)[0]
    heat, s = anomaly_map(proj, i0)
    rec = proj.store.get_image(i0)
    assert heat.shape == (rec["height"], rec["width"]) and heat.dtype == np.float32
    assert s == pytest.approx(float(grids[0].max()), rel=1e-5)
    with pytest.raises(Exception, match="unknown image id"):
        anomaly_grid(proj, 10_000)


def test_stale_when_more_normal_labels_arrive_and_refresh(proj, elpv_dir):
    from labeler.embedding.defect_features import (compute_defect_features, defect_features_stale,
                                                   refresh_defect_features)
    from labeler.embedding.feature_sets import list_feature_sets
    from labeler.labels import label_images

    ok = _label_normal(proj, elpv_dir, 10)
    compute_defect_features(proj, "no", k=8)
    assert not defect_features_stale(proj) and refresh_defect_features(proj) is None
    more = sorted(i for i, dd in _defective(proj, elpv_dir).items() if not dd and i not in ok)[:5]
    label_images(proj, more, "no")
    assert defect_features_stale(proj)
    rep = refresh_defect_features(proj)
    assert rep["bank_images"] == 15
    info = list_feature_sets(proj)["defect"]
    assert sorted(info["normal_ids"]) == sorted(ok + more) and info["k"] == 8  # settings kept
    assert not defect_features_stale(proj)
    # Another bank fitted for the heat map makes the set stale too.
    from labeler.embedding.patchcore import fit_patchcore

    fit_patchcore(proj, "no", seed=1)
    assert defect_features_stale(proj)


def test_no_label_bank_is_a_sample_of_all_images(proj):
    from labeler.embedding import defect_features as dfm

    rep = dfm.compute_defect_features(proj, None, k=4, pooling="residual+feature")
    assert rep["bank_images"] == min(dfm.NO_LABEL_IMAGES if hasattr(dfm, "NO_LABEL_IMAGES") else 50,
                                     proj.store.next_row())
    assert rep["dim"] == 2 * 64 + 1
    assert not dfm.defect_features_stale(proj)
    with pytest.raises(BadInputError, match="k must be"):
        dfm.compute_defect_features(proj, None, k=0)
    with pytest.raises(BadInputError, match="unknown pooling"):
        dfm.compute_defect_features(proj, None, pooling="max")


def test_search_and_queue_work_on_the_defect_set(proj, elpv_dir):
    from labeler.assist.next import next_to_label
    from labeler.embedding.defect_features import compute_defect_features
    from labeler.embedding.feature_sets import set_active_feature_set
    from labeler.labels import label_images

    _label_normal(proj, elpv_dir, 15)
    compute_defect_features(proj, "no")
    set_active_feature_set(proj, "defect")
    bad = sorted(i for i, dd in _defective(proj, elpv_dir).items() if dd)[:6]
    label_images(proj, bad, "yes")
    batch = next_to_label(proj, 5, features="defect")
    assert len(batch) == 5 and all(b.image_id not in bad for b in batch)

    # Search by image on the defect set: the exact cosine neighbours of its vectors.
    import json

    from click.testing import CliRunner

    from labeler.cli import main
    from labeler.embedding.feature_sets import load_feature_set
    from labeler.search import search

    x = np.asarray(load_feature_set(proj, "defect"), dtype=np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    row_ids = proj.store.row_image_ids()
    q = bad[0]
    sims = x @ x[list(row_ids).index(q)]
    sims[list(row_ids).index(q)] = -np.inf
    want = [int(row_ids[r]) for r in np.argsort(-sims, kind="stable")[:5]]
    got = [n.image_id for n in search(proj, q, k=5, feature_set="defect").neighbours]
    assert got == want
    assert got != [n.image_id for n in search(proj, q, k=5).neighbours]  # not the ingest vectors
    r = CliRunner().invoke(main, ["search", str(q), "--project", str(proj.root), "-k", "5", "--feature-set", "defect",
                                  "--json"])
    assert r.exit_code == 0, r.output
    assert [n["image_id"] for n in json.loads(r.output.strip().splitlines()[-1])["neighbours"]] == want
    new_photo = proj.root / "new.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (120, 30, 200)).save(new_photo)
    r = CliRunner().invoke(main, ["search", str(new_photo), "--project", str(proj.root), "--feature-set", "defect"])
    assert r.exit_code == 1 and "search by their id" in r.output


def test_cli_patch_maps_defect_and_heatmap(proj, elpv_dir, tmp_path):
    from click.testing import CliRunner

    from labeler.cli import main

    root = str(proj.root)
    r = CliRunner().invoke(main, ["features", "--project", root, "--normal-label", "no"])
    assert r.exit_code != 0 and "--compute defect" in r.output
    r = CliRunner().invoke(main, ["features", "--project", root, "--compute", "defect", "--normal-label", "no",
                                  "--quiet"])
    assert r.exit_code == 1 and "no image is labelled 'no'" in r.output
    _label_normal(proj, elpv_dir, 12)
    r = CliRunner().invoke(main, ["features", "--project", root, "--compute", "defect", "--normal-label", "no",
                                  "--quiet", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "stored feature set defect: 80 x 129" in r.output and "from 12 images labelled 'no'" in r.output
    assert "  defect" in r.output  # listed
    out = tmp_path / "h.png"
    r = CliRunner().invoke(main, ["heatmap", "1", "--project", root, "-o", str(out)])
    assert r.exit_code == 0 and out.stat().st_size > 0 and "anomaly score" in r.output
    r = CliRunner().invoke(main, ["features", "--project", root, "--patch-maps", "--quiet", "--device", "cpu"])
    assert r.exit_code == 0 and "stored patch maps: 80 images x 14x14 cells x 64" in r.output


def test_most_anomalous_unlabelled_leaves_labelled_images_out(proj, elpv_dir):
    from labeler.embedding.defect_features import anomaly_scores, compute_defect_features, most_anomalous_unlabelled
    from labeler.labels import label_images

    _label_normal(proj, elpv_dir, 10)
    compute_defect_features(proj, "no")
    scores, row_ids = anomaly_scores(proj), proj.store.row_image_ids()
    top, scored = most_anomalous_unlabelled(proj, 5)
    label_images(proj, [top[0][0]], "yes")
    after, scored_after = most_anomalous_unlabelled(proj, 5)
    assert scored_after == scored - 1 and after[0] == top[1] and top[0][0] not in [i for i, _ in after]
    labelled = set(proj.store.labels())
    want = sorted(((float(s), int(i)) for i, s in zip(row_ids, scores) if i >= 0 and i not in labelled),
                  key=lambda t: -t[0])[:5]
    assert [i for i, _ in after] == [i for _, i in want]
