"""review finds planted label flips, single and as whole groups; the CLI lists both."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from labeler.cli import main
from labeler.errors import BadInputError
from labeler.reduce import l2_normalize
from labeler.review import check_groups, neighbour_groups, out_of_fold_probabilities, review_labels


def _truth(project, elpv_dir) -> tuple[dict[int, str], dict[str, int]]:
    truth = {r["path"]: r["cell_type"] for r in csv.DictReader(open(elpv_dir / "truth.csv"))}
    ids = {r["path"]: r["id"] for r in project.store.image_table()}
    return {ids[p]: t for p, t in truth.items()}, ids


def _label_truth(project, true: dict[int, str]) -> None:
    for lab in ("mono", "poly"):
        project.store.set_labels([i for i, t in true.items() if t == lab], lab, annotator="ana")


def _other(lab: str) -> str:
    return "poly" if lab == "mono" else "mono"


def test_review_finds_planted_flips(project, elpv_dir):
    true, ids = _truth(project, elpv_dir)
    with pytest.raises(BadInputError):
        review_labels(project)  # nothing labelled yet
    _label_truth(project, true)
    rng = np.random.default_rng(0)
    flipped = sorted(int(i) for i in rng.choice(sorted(true), size=4, replace=False))
    for i in flipped:
        project.store.set_labels([i], _other(true[i]), annotator="bob")
    rep = review_labels(project)
    assert rep.n_labelled == 80 and rep.classes == ["mono", "poly"]
    found = {it.image_id: it for it in rep.issues}
    hits = [i for i in flipped if i in found]
    assert len(hits) >= 3, (flipped, list(found))
    assert all(found[i].suggested_label == true[i] and found[i].annotator == "bob" for i in hits)
    top = [it.image_id for it in rep.issues[:4]]
    assert len(set(top) & set(flipped)) >= 3
    assert [it.score for it in rep.issues] == sorted(it.score for it in rep.issues)

    r = CliRunner().invoke(main, ["review", "-p", str(project.root), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["n_issues"] == len(rep.issues) and out["n_groups"] == len(out["groups"]) == len(rep.groups)
    r = CliRunner().invoke(main, ["review", "-p", str(project.root), "--limit", "2"])
    assert r.exit_code == 0 and "likely label error(s) among 80 labelled" in r.output
    assert "group(s) labelled wrong as a whole" in r.output


def _plant_group(project, true: dict[int, str], size: int = 6) -> tuple[list[int], str]:
    """A poly cell and its nearest poly neighbours (the fixture's close-knit cells: its
    mono cells are far apart), all labelled mono."""
    st = project.store
    ids = sorted(true)
    x = l2_normalize(np.asarray(project.load_array("pca"))[st.row_of(np.array(ids))])
    seed = next(j for j, i in enumerate(ids) if true[i] == "poly")
    sims = x @ x[seed]
    order = [ids[j] for j in np.argsort(-sims) if true[ids[j]] == true[ids[seed]]][:size]
    wrong = _other(true[ids[seed]])
    st.set_labels(order, wrong, annotator="bob")
    return order, wrong


def test_a_planted_wrong_group_is_flagged_as_a_group(project, elpv_dir):
    true, _ = _truth(project, elpv_dir)
    _label_truth(project, true)
    members, wrong = _plant_group(project, true)
    # the image folds miss most of them: the group vouches for itself
    assert len({it.image_id for it in review_labels(project).issues} & set(members)) < len(members)
    for clusters in (True, False):  # with the fixture's clustering, and groups of near neighbours only
        rep = review_labels(project, use_clusters=clusters)
        assert rep.group_folds == ("clusters and neighbours" if clusters else "neighbours")
        assert rep.groups_checked > 0 and len(rep.groups) == 1, rep.groups
        g = rep.groups[0]
        assert g.kind == "neighbours" and sorted(g.image_ids) == sorted(members)
        assert g.label == wrong and g.suggested_label == true[members[0]] and g.score <= 0.3
        assert g.annotators == {"bob": g.size}
    out = json.loads(CliRunner().invoke(main, ["review", "-p", str(project.root), "--json"]).output)
    assert out["n_groups"] == 1 and out["groups"][0]["image_ids"] == g.image_ids
    assert out["groups"][0]["size"] == len(members) and out["groups"][0]["suggested_label"] == true[members[0]]
    r = CliRunner().invoke(main, ["review", "-p", str(project.root)])
    assert r.exit_code == 0 and "1 group(s) labelled wrong as a whole" in r.output
    assert f"{len(members)} image(s) '{wrong}' -> suggested '{true[members[0]]}'" in r.output


def test_a_cluster_labelled_wrong_is_flagged_as_the_cluster(project, elpv_dir):
    """A clustering whose cluster 0 is the planted group: flagged as that cluster (and not
    again as its group of near neighbours)."""
    true, _ = _truth(project, elpv_dir)
    _label_truth(project, true)
    members, wrong = _plant_group(project, true)
    st = project.store
    ids = st.row_image_ids()
    rest = [i for i in sorted(true) if i not in members]
    cluster = {i: 0 for i in members}
    cluster.update({i: 1 + (n % 5 if true[i] == "mono" else 5) for n, i in enumerate(rest)})
    labels = np.array([cluster[int(i)] for i in ids])
    st.add_clustering("manual", {}, ids, labels, None,
                      [{"cluster": int(c), "size": int((labels == c).sum()),
                        "representatives": [int(i) for i in ids[labels == c][:3]]} for c in np.unique(labels)])
    rep = review_labels(project)
    assert [(g.kind, g.group_id, sorted(g.image_ids)) for g in rep.groups] == [("cluster", "cluster 0", sorted(members))]
    assert rep.groups[0].suggested_label == true[members[0]]


def test_correct_groups_are_not_flagged(project, elpv_dir):
    true, _ = _truth(project, elpv_dir)
    _label_truth(project, true)
    for clusters in (True, False):
        rep = review_labels(project, use_clusters=clusters)
        assert rep.groups_checked > 0 and rep.groups == [], rep.groups


def test_neighbour_groups_join_one_label_only():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=8), rng.normal(size=8)
    x = l2_normalize(np.array([a, a + 0.01, a + 0.02, b, b + 0.01, a + 0.015, -a], dtype=np.float32))
    y = np.array([0, 0, 0, 0, 0, 1, 0])
    g = neighbour_groups(x, y, threshold=0.99)
    assert g[0] == g[1] == g[2] >= 0 and g[3] == g[4] >= 0 and g[3] != g[0]
    assert g[5] == -1 and g[6] == -1  # another label beside them; far from all


def test_one_cluster_per_label_cannot_vouch():
    """A group whose label the model saw only in one other group, or on fewer images than
    the group has, is not checked (the other group may be the wrong one)."""
    probs = np.array([[0.9, 0.1]] * 10)
    y = np.array([1] * 10)
    members = [np.arange(10)]
    assert check_groups(probs, y, members, (np.full(10, 2), np.full(10, 10)))
    assert not check_groups(probs, y, members, (np.full(10, 1), np.full(10, 50)))
    assert not check_groups(probs, y, members, (np.full(10, 5), np.full(10, 9)))


def test_group_folds_hold_a_group_out_whole():
    # a tight group of 6 labelled 1 inside a cloud of 0: image folds let the group vouch for
    # itself; group folds do not
    rng = np.random.default_rng(1)
    centre = rng.normal(size=16)
    cloud = centre + rng.normal(scale=1.0, size=(200, 16))
    far = -centre + rng.normal(scale=1.0, size=(200, 16))
    grp = cloud[0] + rng.normal(scale=0.05, size=(6, 16))
    x = l2_normalize(np.vstack([cloud, far, grp]).astype(np.float32))
    y = np.r_[np.zeros(200), np.ones(200), np.zeros(6)].astype(np.int64)
    y[-6:] = 1  # the group: labelled like the far cloud, placed in the near one
    groups = np.r_[np.full(400, -1), np.zeros(6)].astype(np.int64)
    by_group = out_of_fold_probabilities(x, y, folds=5, groups=groups)
    members = [np.arange(400, 406)]
    support = (np.full(len(y), 100), np.full(len(y), 100))
    flagged = check_groups(by_group, y, members, support)
    assert len(flagged) == 1 and flagged[0][:2] == (0, 0) and flagged[0][2] < 0.3
    assert not check_groups(by_group, y, members, support, min_size=7)
    by_image = out_of_fold_probabilities(x, y, folds=5)  # the group vouches for itself
    assert not check_groups(by_image, y, members, support)
