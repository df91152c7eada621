"""Refine clusters: split, merge, move images (labelling is in :mod:`labeler.labels`).

Every edit of the clustering stores a new clustering derived from the current
one (so the history stays and an edit undoes as one action, like a bulk label).
An edit is a short SQLite transaction and, like a label, does not take the project
lock (see :func:`labeler.project.project_lock`); an edit based on a clustering that
is no longer current is refused (``clustering_id``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import clustering
from .clustering import summarize_clusters
from .project import Project
from .errors import BadInputError, StoreError
from .labels import clean_annotator


def _current(project: Project, clustering_id: int | None = None):
    cur = project.store.checked_clustering(clustering_id,
                                           advice="reload and check before editing it; nothing was changed")
    ids, labels, strengths = project.store.assignments(cur["id"])
    return ids, labels, strengths, cur


def _vectors_for(project: Project, image_ids: np.ndarray) -> np.ndarray:
    rows = project.store.row_of(image_ids)
    if (rows < 0).any():
        raise StoreError(f"image(s) without an embedding: {np.asarray(image_ids)[rows < 0][:10].tolist()}")
    return np.asarray(project.load_array("pca")[rows])


def split_preview(project: Project, cluster: int, *, method: str = "kmeans", k: int = 2,
                  min_cluster_size: int = 5) -> dict[int, list[int]]:
    """Sub-clusters of ``cluster`` without storing anything: {sub id: image ids}.

    ``method`` 'kmeans' (k sub-clusters) or 'hdbscan' (density sub-clusters on the
    cluster's own PCA vectors; -1 = noise inside it).

    Raises
    ------
    StoreError
        An unknown cluster, or one with fewer than two images.
    BadInputError
        An unknown method, or a bad k.
    """
    members = np.array(project.store.cluster_members(cluster), dtype=np.int64)
    if len(members) < 2:
        raise StoreError(f"cluster {cluster} has fewer than 2 images: nothing to split")
    x = _vectors_for(project, members)
    if method == "kmeans":
        sub = clustering.run_kmeans(x, min(int(k), len(members)))
    elif method == "hdbscan":
        sub, _ = clustering.run_hdbscan(x, min_cluster_size=max(2, min_cluster_size), min_samples=None)
    else:
        raise BadInputError(f"unknown split method {method!r}: kmeans or hdbscan")
    return {int(s): members[sub == s].tolist() for s in np.unique(sub)}


def _store_edit(project: Project, ids, labels, strengths, parent, description, annotator) -> int:
    # Ids stay stable across edits (new clusters get new ids): the annotator's
    # mental map of 'cluster 3' must survive a merge elsewhere.
    summaries = summarize_clusters(project, ids, labels, _vectors_for(project, ids))
    st = None if np.isnan(strengths).all() else np.nan_to_num(strengths, nan=1.0)
    return project.store.add_clustering(
        "edit", {"edit": description, "base": parent["id"]}, ids, labels, st, summaries,
        parent_id=parent["id"], annotator=clean_annotator(annotator), description=description,
    )


def apply_split(project: Project, cluster: int, groups: dict[int, list[int]], *, annotator: str = "anonymous",
                clustering_id: int | None = None) -> int:
    """Replace ``cluster`` by the given sub-clusters (from :func:`split_preview`).

    Sub-cluster -1 becomes noise. Returns the new clustering id.

    Raises
    ------
    StaleStateError
        ``clustering_id`` (the clustering the caller saw) is no longer current.
    StoreError
        An unknown cluster, or groups that are not exactly its members.
    """
    ids, labels, strengths, parent = _current(project, clustering_id)
    members = set(project.store.cluster_members(cluster, parent["id"]))
    given = {i for g in groups.values() for i in g}
    if given != members:
        raise StoreError(f"the split groups do not match cluster {cluster}'s members (it changed?)")
    labels = labels.copy()
    nxt = labels.max() + 1
    pos = {int(i): j for j, i in enumerate(ids)}
    for n, (sub, g) in enumerate(sorted(groups.items())):
        for i in g:
            labels[pos[i]] = -1 if sub == -1 else nxt + n
    return _store_edit(project, ids, labels, strengths, parent,
                       f"split cluster {cluster} into {len(groups)}", annotator)


def merge_clusters(project: Project, clusters: Sequence[int], *, annotator: str = "anonymous",
                   clustering_id: int | None = None) -> int:
    """Merge two or more clusters into one. Returns the new clustering id.

    Raises
    ------
    StaleStateError
        ``clustering_id`` (the clustering the caller saw) is no longer current.
    StoreError
        Fewer than two clusters, or an unknown one.
    """
    clusters = sorted({int(c) for c in clusters})
    if len(clusters) < 2:
        raise StoreError("merging needs at least two clusters")
    ids, labels, strengths, parent = _current(project, clustering_id)
    for c in clusters:
        project.store.cluster_members(c, parent["id"])  # raises for an unknown cluster
    target = min(c for c in clusters if c >= 0) if any(c >= 0 for c in clusters) else -1
    labels = np.where(np.isin(labels, clusters), target, labels)
    return _store_edit(project, ids, labels, strengths, parent,
                       f"merge clusters {', '.join(map(str, clusters))}", annotator)


def move_images(project: Project, image_ids: Sequence[int], target: int | None = None, *,
                annotator: str = "anonymous", clustering_id: int | None = None) -> int:
    """Move images to cluster ``target`` (an existing cluster, -1 = noise) or, with
    None, to a new cluster of their own. Returns the new clustering id.

    Raises
    ------
    StaleStateError
        ``clustering_id`` (the clustering the caller saw) is no longer current.
    StoreError
        No image, an unknown image id or an unknown target cluster.
    """
    ids, labels, strengths, parent = _current(project, clustering_id)
    pos = {int(i): j for j, i in enumerate(ids)}
    unknown = [i for i in image_ids if int(i) not in pos]
    if unknown or not image_ids:
        raise StoreError(f"unknown or no image ids to move: {unknown[:10]}")
    if target is not None and target != -1 and target not in set(labels.tolist()):
        raise StoreError(f"unknown target cluster {target}")
    labels = labels.copy()
    new = labels.max() + 1 if target is None else target
    labels[[pos[int(i)] for i in image_ids]] = new
    desc = f"move {len(image_ids)} image(s) to " + ("a new cluster" if target is None else f"cluster {target}")
    return _store_edit(project, ids, labels, strengths, parent, desc, annotator)
