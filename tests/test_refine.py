"""Label a cluster, split, merge, move, undo of cluster edits, on a real project."""

import pytest

from labeler.errors import StoreError
from labeler.history import undo
from labeler.labels import label_cluster
from labeler.refine import apply_split, merge_clusters, move_images, split_preview


def test_label_cluster_with_exclusions(project):
    members = project.store.cluster_members(0)
    ids = label_cluster(project, 0, "mono", annotator="ana", exclude=members[:2]).written
    assert set(ids) == set(members[2:])
    labels = project.store.labels()
    assert all(labels[i] == "mono" for i in ids) and not set(members[:2]) & set(labels)
    assert {e["source"] for e in project.store.label_events()} == {"cluster"}
    undo(project, "ana")
    assert project.store.labels() == {}
    with pytest.raises(StoreError):
        label_cluster(project, 999, "x")


def test_split_preview_then_apply_then_undo(project):
    before = project.store.current_clustering()["id"]
    members = project.store.cluster_members(0)
    groups = split_preview(project, 0, method="kmeans", k=2)
    assert len(groups) == 2 and sorted(sum(groups.values(), [])) == sorted(members)
    assert project.store.current_clustering()["id"] == before  # a preview stores nothing
    apply_split(project, 0, groups, annotator="ana")
    _, clusters, _ = project.store.assignments()
    sub_ids = {project.store.clusters_for([g[0]])[g[0]] for g in groups.values()}
    assert len(sub_ids) == 2 and 0 not in sub_ids
    with pytest.raises(StoreError):
        project.store.cluster_members(0)
    undo(project, "ana")
    assert project.store.current_clustering()["id"] == before
    assert project.store.cluster_members(0) == members


def test_merge_and_move(project):
    sums = [s for s in project.store.cluster_summaries() if s["cluster"] >= 0]
    a, b = sums[0]["cluster"], sums[1]["cluster"]
    size = sums[0]["size"] + sums[1]["size"]
    merge_clusters(project, [a, b], annotator="ana")
    assert len(project.store.cluster_members(min(a, b))) == size
    moved = project.store.cluster_members(min(a, b))[:3]
    move_images(project, moved, None, annotator="ana")
    new = project.store.clusters_for(moved)
    assert len(set(new.values())) == 1 and min(a, b) not in new.values()
    with pytest.raises(StoreError):
        merge_clusters(project, [a])
    with pytest.raises(StoreError):
        move_images(project, [10**9], None)
