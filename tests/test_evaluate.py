"""Evaluation metrics on hand-computed examples, and `labeler evaluate` on the 80-photo project."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labeler import evaluate as ev


# -- metrics on tiny examples -----------------------------------------------------------
def test_purity_and_balanced_purity_by_hand():
    y = np.array([0, 0, 1, 1, 1])
    labels = np.array([0, 0, 0, 1, 1])
    assert ev.purity(y, labels) == pytest.approx(4 / 5)
    # Everything in one cluster: purity = majority share, balanced purity = 1 / classes.
    y = np.array([0, 0, 0, 0, 1])
    s = ev.clustering_scores(y, np.zeros(5, int))
    assert s["purity"] == pytest.approx(0.8)
    assert s["balanced_purity"] == pytest.approx(0.5)
    assert s["ari"] == pytest.approx(0.0)
    assert s["homogeneity"] == pytest.approx(0.0)
    assert s["completeness"] == pytest.approx(1.0)


def test_clustering_scores_leave_noise_out():
    y = np.array([0, 0, 1, 1, 1, 0])
    labels = np.array([5, 5, 2, 2, -1, -1])
    s = ev.clustering_scores(y, labels)
    assert s["clusters"] == 2
    assert s["noise"] == pytest.approx(2 / 6)
    assert s["ari"] == pytest.approx(1.0) and s["nmi"] == pytest.approx(1.0) and s["purity"] == 1.0
    allnoise = ev.clustering_scores(y, np.full(6, -1))
    assert allnoise["noise"] == 1.0 and np.isnan(allnoise["ari"])


def test_clustering_scores_match_a_hand_computed_ari():
    # Contingency [[2, 1], [0, 2]]: sum C(n_ij,2) = 1 + 1 = 2; rows C(3,2)+C(2,2) = 4;
    # cols C(2,2)+C(3,2) = 4; C(5,2) = 10; expected = 16/10; ARI = (2-1.6)/(4-1.6) = 1/6.
    y = np.array([0, 0, 0, 1, 1])
    labels = np.array([0, 0, 1, 1, 1])
    assert ev.clustering_scores(y, labels)["ari"] == pytest.approx(1 / 6)


def test_search_scores_euclidean_by_hand():
    # Points 0, 1, 2.5, 10 on a line, classes 0 1 0 1. Leave-one-out rankings:
    # q0 -> 1,2,3 rel [0,1,0] AP 1/2; q1 -> 0,2,3 rel [0,0,1] AP 1/3;
    # q2 -> 1,0,3 rel [0,1,0] AP 1/2; q3 -> 2,1,0 rel [0,1,0] AP 1/2.
    x = np.array([[0.0], [1.0], [2.5], [10.0]], np.float32)
    y = np.array([0, 1, 0, 1])
    s = ev.search_scores(x, y, metric="euclidean", k=2)
    assert s["p1"] == 0.0
    assert s["p2"] == pytest.approx((0.5 + 0 + 0.5 + 0.5) / 4)
    assert s["map"] == pytest.approx((0.5 + 1 / 3 + 0.5 + 0.5) / 4)
    assert s["per_class"][1]["ap"] == pytest.approx((1 / 3 + 0.5) / 2)
    assert s["map_macro"] == pytest.approx((0.5 + (1 / 3 + 0.5) / 2) / 2)


def test_search_scores_leave_the_query_group_out_by_hand():
    # Points 0, 0.1, 3, 3.1 on a line, classes 0 0 1 0; images 0 and 1 are shots of one part.
    # Plain: q0 -> 1,2,3 rel [1,0,1]; q1 -> 0,2,3 [1,0,1]; q2 -> 3,1,0 [0,0,0]; q3 -> 2,1,0 [0,1,1].
    # Part left out: q0 -> 2,3 [0,1] AP 1/2; q1 -> 2,3 [0,1] AP 1/2; q2, q3 unchanged.
    x = np.array([[0.0], [0.1], [3.0], [3.1]], np.float32)
    y = np.array([0, 0, 1, 0])
    plain = ev.search_scores(x, y, metric="euclidean", k=2)
    cross = ev.search_scores(x, y, metric="euclidean", k=2, groups=np.array([7, 7, 8, 9]))
    assert plain["p1"] == 0.5 and not plain["groups_excluded"]
    assert cross["p1"] == 0.0 and cross["groups_excluded"]
    assert cross["p2"] == pytest.approx((0.5 + 0.5 + 0 + 0.5) / 4)
    assert cross["map"] == pytest.approx((0.5 + 0.5 + (1 / 2 + 2 / 3) / 2) / 3)
    # Every image its own group = the plain leave-one-out figures.
    same = ev.search_scores(x, y, metric="euclidean", k=2, groups=np.arange(4))
    assert (same["p1"], same["p2"], same["map"]) == (plain["p1"], plain["p2"], plain["map"])
    with pytest.raises(ValueError, match="group codes"):
        ev.search_scores(x, y, groups=np.arange(3))


def test_search_scores_macro_differs_from_micro_for_a_rare_class():
    # Two tight pairs of class 0; class 1 = one image between the pairs, one opposite.
    x = np.array([[1, 0], [1, 0.01], [1, 0.3], [1, 0.31], [1, 0.15], [-1, 0]], np.float32)
    y = np.array([0, 0, 0, 0, 1, 1])
    s = ev.search_scores(x, y, metric="cosine", k=1)
    # Class 0 queries all hit class 0 first; both class-1 queries miss.
    assert s["per_class"][0]["p1"] == 1.0 and s["per_class"][1]["p1"] == 0.0
    assert s["p1"] == pytest.approx(4 / 6)
    assert s["p1_macro"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        ev.search_scores(x, y, metric="manhattan")


def test_read_truth(tmp_path):
    p = tmp_path / "truth.csv"
    p.write_text("path,kind,defective\na.png,mono,yes\nb.png,poly,\nc.png,poly,no\n")
    truth, col = ev.read_truth(p)
    assert col == "kind" and truth == {"a.png": "mono", "b.png": "poly", "c.png": "poly"}
    truth, col = ev.read_truth(p, "defective")
    assert truth == {"a.png": "yes", "c.png": "no"}  # empty class left out
    with pytest.raises(ValueError, match="no column 'colour'"):
        ev.read_truth(p, "colour")


# -- on the 80-photo project ------------------------------------------------------------
@pytest.fixture(scope="module")
def results(built_project, elpv_dir):
    return ev.evaluate_project(built_project, elpv_dir / "truth.csv", ["cell_type", "defective"],
                               features=("embedding", "pca"), log=lambda m: None)


def test_evaluate_project_on_elpv(results, elpv_dir):
    cell, defective = results
    assert cell["column"] == "cell_type" and cell["n"] == 80 and cell["unmatched"] == 0
    assert set(cell["classes"]) <= {"mono", "poly"}
    assert defective["majority_baseline"]["accuracy"] >= 0.5
    methods = {(r["feature"], r["method"], r["params"].get("k")) for r in cell["clustering"]}
    assert ("pca", "hdbscan", None) in methods and ("embedding", "kmeans", 2) in methods
    for r in cell["clustering"]:
        assert -1 <= r["ari"] <= 1 and 0 <= r["purity"] <= 1 and 0 <= r["noise"] <= 1
    s = cell["search"]["pca"]
    assert 0 <= s["p1"] <= 1 and 0 <= s["map_macro"] <= 1 and s["queries"] == 80
    # Monocrystalline and polycrystalline cells look different: search finds the type.
    assert s["p1"] > 0.8
    cost = cell["cost"]
    assert set(cost) == {"cluster_majority", "cluster_split", "propagation", "one_by_one", "queue"}
    assert cost["one_by_one"]["actions_to_accuracy"]["0.9"] == 72
    assert cost["cluster_majority"]["actions_to_accuracy"]["0.9"] < 72


def test_group_column_leaves_same_part_neighbours_out(built_project, elpv_dir, tmp_path):
    """Pairs of mutual nearest neighbours marked as one part: their plain P@1 is flattered."""
    import csv

    from labeler.project import Project

    rows = list(csv.DictReader(open(elpv_dir / "truth.csv")))
    p = Project(built_project)
    row_of = {r["path"]: r["row"] for r in p.store.image_table()}
    v = np.asarray(p.load_array("pca"))
    sims = v @ v.T
    np.fill_diagonal(sims, -1)
    nn = sims.argmax(1)
    part = {path: f"part{min(int(row_of[path]), int(nn[row_of[path]]))}" if nn[nn[row_of[path]]] == row_of[path]
            else "" for path in row_of}
    truth = tmp_path / "truth.csv"
    with open(truth, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "cell_type", "part"])
        for r in rows:
            w.writerow([r["path"], r["cell_type"], part[r["path"]]])
    (res,) = ev.evaluate_project(built_project, truth, ["cell_type"], features=("pca",), group_column="part",
                                 log=lambda m: None)
    paired = sum(1 for x in part.values() if x)
    assert paired >= 10 and res["groups"] == 80 - paired // 2
    plain, cross = res["search"]["pca"], res["search_cross_group"]["pca"]
    assert plain["queries"] == cross["queries"] == 80
    # The CSV's parts reach the right rows: the same figures as groups given by hand.
    by_row = {int(r): path for path, r in row_of.items()}
    cell = {r["path"]: r["cell_type"] for r in rows}
    order = sorted(by_row)
    y = np.unique([cell[by_row[r]] for r in order], return_inverse=True)[1]
    groups = np.array([hash(part[by_row[r]]) if part[by_row[r]] else -1 - r for r in order])
    want = ev.search_scores(v[order], y, groups=groups)
    assert (cross["p1"], cross["p10"], cross["map"]) == pytest.approx((want["p1"], want["p10"], want["map"]))
    assert (cross["p1"], cross["map"]) != (plain["p1"], plain["map"])
    md = ev.markdown_table(res)
    assert "PCA vectors, other part" in md and f"{res['groups']} groups" in md


def test_write_outputs_and_markdown(results, tmp_path):
    written = ev.write_outputs(results[1], tmp_path)
    names = {p.name for p in written}
    assert {"evaluation-defective.json", "evaluation-defective.md", "cost-defective.png",
            "cost-defective.html", "map-defective.html", "search-defective.png"} <= names
    data = json.loads((tmp_path / "evaluation-defective.json").read_text())
    assert data["column"] == "defective" and "cost" in data and "_curves" not in data
    md = ev.markdown_table(results[1])
    assert "| PCA vectors | HDBSCAN" in md and "macro" in md and "actions to 90% acc." in md


def test_cli_evaluate(built_project, elpv_dir, tmp_path):
    from click.testing import CliRunner

    from labeler.cli import main

    md = tmp_path / "eval.md"
    r = CliRunner().invoke(main, ["evaluate", "-p", str(built_project), "--truth", str(elpv_dir / "truth.csv"),
                                  "-o", str(tmp_path / "out"), "--no-plots", "--markdown", str(md),
                                  "--group-column", "cell_type"])
    assert r.exit_code == 0, r.output
    assert "Truth `cell_type`" in r.output  # default: the second column
    assert (tmp_path / "out" / "evaluation-cell_type.json").is_file() and md.is_file()
    # Grouped by the truth itself, every relevant neighbour is in the query's own group.
    data = json.loads((tmp_path / "out" / "evaluation-cell_type.json").read_text())
    assert data["groups"] == len(data["classes"]) and "PCA vectors, other cell_type" in r.output
    cross, plain = data["search_cross_group"]["pca"], data["search"]["pca"]
    assert cross["groups_excluded"] and cross["p1"] == 0.0 and plain["p1"] > 0.8
    bad = CliRunner().invoke(main, ["evaluate", "-p", str(built_project), "--truth", str(elpv_dir / "truth.csv"),
                                    "--column", "nope", "-o", str(tmp_path / "out")])
    assert bad.exit_code == 1 and "no column 'nope'" in bad.output
