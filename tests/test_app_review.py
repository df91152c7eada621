"""The dashboard's Review tab as plain functions: label a near-duplicate group in one
action, walk the likely label errors, refuse a stale suggestion, relabel a group labelled
wrong as a whole in one undoable action."""

from __future__ import annotations

import csv

import numpy as np

from labeler.app import create_app
from labeler.app.tabs.review import callbacks as rv
from labeler.app.actions import attempt
from labeler.history import undo
from labeler.labels import label_images


def test_review_tab_in_layout(project):
    app = create_app(project)
    text = str(app.layout())
    assert "tab-review" in text and rv.DUP_FIND in text and rv.ISSUE_ACCEPT in text


def test_label_a_group_in_one_action(project):
    actx = create_app(project).labeler
    groups, summary = rv.find_groups(actx, 0.9)  # a low threshold: the 80 photos hold groups
    assert groups and "group(s)" in summary
    assert [len(g) for g in groups] == sorted((len(g) for g in groups), reverse=True)
    content, pages, page = rv.group_view(actx, groups, 1)
    assert pages == f" of {len(groups)}" and page == 1 and content
    out = attempt(rv.label_group_action, actx, groups, 1, "cracked", "ana")
    assert out.ok, out.text
    assert {project.store.labels()[i] for i in groups[0]} == {"cracked"}
    acts = [a for a in project.store.actions(5) if a["kind"] == "label"]
    assert "near-duplicate group" in acts[0]["description"]
    undo(project, "ana")  # one action: one undo clears the whole group
    assert not set(project.store.labels()) & set(groups[0])
    assert not attempt(rv.label_group_action, actx, [], 1, "x", "ana").ok
    assert not attempt(rv.find_groups, actx, 1.5).ok


def test_walk_likely_errors(project, elpv_dir):
    actx = create_app(project).labeler
    truth = {r["path"]: r["cell_type"] for r in csv.DictReader(open(elpv_dir / "truth.csv"))}
    ids = {r["path"]: r["id"] for r in project.store.image_table()}
    for lab in ("mono", "poly"):
        label_images(project, [ids[p] for p, t in truth.items() if t == lab], lab, annotator="ana")
    flipped = sorted(np.random.default_rng(1).choice(sorted(ids), size=3, replace=False))
    for p in flipped:
        label_images(project, [ids[p]], "poly" if truth[p] == "mono" else "mono", annotator="bob", relabel=True)
    issues, groups, summary = rv.find_issues(actx)
    assert "likely label error(s)" in summary and "group(s) labelled wrong as a whole" in summary
    flipped_ids = {ids[p] for p in flipped}
    first = issues[0]
    assert first["image_id"] in flipped_ids
    content, pages, _ = rv.issue_view(actx, issues, 1)
    assert content and pages == f" of {len(issues)}"
    out = attempt(rv.relabel_issue_action, actx, issues, 1, "carl")
    assert out.ok, out.text
    assert project.store.labels()[first["image_id"]] == first["suggested_label"]
    # the list is now stale for that image: a second accept is refused, nothing written
    before = project.store.labels()
    out = attempt(rv.relabel_issue_action, actx, issues, 1, "carl", "other")
    assert not out.ok and "Conflict" in out.text and project.store.labels() == before
    if len(issues) > 1:
        out = attempt(rv.relabel_issue_action, actx, issues, 2, "carl", "checked")
        assert out.ok and project.store.labels()[issues[1]["image_id"]] == "checked"


def test_relabel_a_group_labelled_wrong_in_one_action(project, elpv_dir):
    from labeler.reduce import l2_normalize

    actx = create_app(project).labeler
    truth = {r["path"]: r["cell_type"] for r in csv.DictReader(open(elpv_dir / "truth.csv"))}
    ids = {r["path"]: r["id"] for r in project.store.image_table()}
    true = {ids[p]: t for p, t in truth.items()}
    for lab in ("mono", "poly"):
        label_images(project, [i for i, t in true.items() if t == lab], lab, annotator="ana")
    # a poly cell and its five nearest poly neighbours, labelled mono together
    order = sorted(true)
    x = l2_normalize(np.asarray(project.load_array("pca"))[project.store.row_of(np.array(order))])
    seed = next(j for j, i in enumerate(order) if true[i] == "poly")
    members = [order[j] for j in np.argsort(-(x @ x[seed])) if true[order[j]] == "poly"][:6]
    label_images(project, members, "mono", annotator="bob", relabel=True)

    issues, groups, summary = rv.find_issues(actx)
    assert summary.startswith("1 group(s) labelled wrong as a whole")
    assert len(groups) == 1 and sorted(groups[0]["image_ids"]) == sorted(members)
    g = groups[0]
    assert g["label"] == "mono" and g["suggested_label"] == "poly" and g["score"] <= 0.3
    content, pages, page = rv.wrong_group_view(actx, groups, 1)
    text = str(content)
    assert pages == " of 1" and page == 1 and f"{len(members)} images labelled 'mono'" in text
    assert "suggested 'poly'" in text and text.count("thumb-btn") == len(members)
    assert "now hold another label" not in text

    # someone relabels one member meanwhile: the card says so, the group action skips it
    moved = members[0]
    label_images(project, [moved], "checked", annotator="carl", relabel=True)
    assert "1 of them now hold another label" in str(rv.wrong_group_view(actx, groups, 1)[0])
    n_actions = len(project.store.actions(100))
    out = attempt(rv.relabel_group_action, actx, groups, 1, "dora")
    assert out.ok, out.text
    assert f"{len(members) - 1} image(s) of {g['group_id']} as 'poly'" in out.text and "left unchanged" in out.text
    labels = project.store.labels()
    assert labels[moved] == "checked" and {labels[i] for i in members[1:]} == {"poly"}
    assert len(project.store.actions(100)) == n_actions + 1  # one action
    assert {r["annotator"] for r in project.store.label_rows() if r["image_id"] in members[1:]} == {"dora"}
    undo(project, "dora")  # one undo restores the whole group
    labels = project.store.labels()
    assert {labels[i] for i in members[1:]} == {"mono"} and labels[moved] == "checked"

    # another label from the text box
    out = attempt(rv.relabel_group_action, actx, groups, 1, "dora", "poly-cell")
    assert out.ok and {project.store.labels()[i] for i in members[1:]} == {"poly-cell"}
    assert not attempt(rv.relabel_group_action, actx, [], 1, "dora").ok
    assert rv.wrong_group_view(actx, [], 1) == ([], "", 1)
