"""Kept maps: every map a project had, so that an earlier clustering can come back with its map.

A *map* is what one re-mapping fits (:func:`labeler.pipeline.rebuild_maps`), in the ingest
embeddings or in another feature set (a fine-tuned one, ``labeler cluster --feature-set``):

- ``map.npy`` (n_rows, 2) float32, the 2-D map, and ``cluster_space.npy`` (n_rows, d)
  float32, the UMAP space HDBSCAN runs on;
- ``models/umap_map.joblib`` and ``models/umap_cluster.joblib``, the UMAP reducers (a map
  of the ingest embeddings only: a map of another feature set cannot ``transform`` a new
  photo, which has no vector in that set, so it keeps none);
- ``models/clusterer.joblib``, the clustering model fitted last in that space (what
  :func:`labeler.clustering.place_images` places new photos with).

The current map lives at those paths, as it always did, and its id is the meta key
``map_id`` (absent: 0, the map of a project made before maps were kept). When a
re-mapping or :func:`use_clustering` replaces it, its files are first kept under
``maps/<id>/`` by hard links (a copy where the file system has none), recorded in the
integrity manifest (:func:`labeler.integrity.replace_tracked`): keeping a map costs no copy,
and the replaced top-level files are new files, so the kept ones stay exactly as they were.
``pca.npy``, ``models/pca.joblib`` and the search index always stay those of the ingest
embeddings: search by a new photo (embedded by the backbone) and the placement of new
photos at ingest run there, then take the map position and cluster from the nearest
neighbours (:func:`labeler.reduce.place_by_neighbours`), whatever space the map was fitted in.

Each clustering records the map it was made on (``params['map']``; a placement or an
edit inherits it from its parent). :func:`use_clustering` makes an earlier clustering
current again with its map; the clusterings made since stay stored. Labels are never
touched by any of this.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import BadInputError, CorruptFileError, NotFoundError
from .integrity import drop_tracked, replace_tracked, verify

if TYPE_CHECKING:
    from .project import Project

#: The files of one map: top-level path (relative to the project) -> name under ``maps/<id>/``.
MAP_FILES = {"map.npy": "map.npy", "cluster_space.npy": "cluster_space.npy",
             "models/umap_map.joblib": "umap_map.joblib", "models/umap_cluster.joblib": "umap_cluster.joblib",
             "models/clusterer.joblib": "clusterer.joblib"}
MAPS_DIR = "maps"
#: The feature set name of the ingest embeddings (:data:`labeler.embedding.feature_sets.EMBEDDINGS`).
INGEST = "embeddings"


def current_map_id(project: "Project") -> int:
    """Id of the map at the top-level paths (0: a project made before maps were kept)."""
    return int(project.store.get_meta("map_id") or 0)


def map_info(project: "Project", map_id: int | None = None) -> dict:
    """What is recorded of map ``map_id`` (default: the current one): feature_set, built_at,
    rows, dims, umap (whether it has UMAP reducers). A map of a project made before maps
    were kept is a map of the ingest embeddings."""
    map_id = current_map_id(project) if map_id is None else int(map_id)
    info = dict((project.store.get_meta("maps") or {}).get(str(map_id)) or {})
    if map_id == 0 and not info:
        info = {"feature_set": INGEST, "built_at": project.store.get_meta("maps_built_at"), "umap": True}
    info.setdefault("feature_set", INGEST)
    return info


def kept_dir(project: "Project", map_id: int) -> Path:
    """Folder of a kept map: ``maps/<id>/`` under the project."""
    return project.root / MAPS_DIR / str(int(map_id))


def is_available(project: "Project", map_id: int) -> bool:
    """Whether map ``map_id`` can be shown: it is current, or its arrays were kept."""
    if int(map_id) == current_map_id(project):
        return project.has_array("map")
    d = kept_dir(project, map_id)
    return (d / "map.npy").is_file() and (d / "cluster_space.npy").is_file()


def _record(project: "Project", map_id: int, info: dict) -> None:
    maps = dict(project.store.get_meta("maps") or {})
    maps[str(int(map_id))] = info
    project.store.set_meta(maps=maps)


def _link_tracked(project: "Project", src: Path, dest: Path) -> None:
    """``dest`` becomes the file ``src`` (a hard link, else a copy), recorded in the manifest."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:  # no hard links on this file system
            shutil.copyfile(src, tmp)
        replace_tracked(project, tmp, dest)  # atomic rename; the entry staged first, committed after
    finally:
        tmp.unlink(missing_ok=True)


def keep_current_map(project: "Project", *, say: Callable[[str], None] = lambda m: None) -> int | None:
    """Keep the current map's files under ``maps/<id>/`` before something replaces them.

    Nothing at the top-level paths changes. A file the current map lacks (a map of a
    feature set has no UMAP reducers) is removed from the kept folder too, so that the
    folder is that map exactly. A damaged file (:func:`labeler.integrity.verify`) is not
    kept: a re-mapping is how it gets rebuilt, and must not fail on it.

    Returns
    -------
    int or None
        The id of the kept map; None when the project has no map yet.
    """
    if not project.has_array("map"):
        return None
    map_id = current_map_id(project)
    info = map_info(project, map_id)
    dest = kept_dir(project, map_id)
    dest.mkdir(parents=True, exist_ok=True)
    for rel, name in MAP_FILES.items():
        src = project.root / rel
        try:
            verify(project, src)
            ok = src.is_file()
        except CorruptFileError as e:
            say(f"not keeping {rel}: {e}")
            ok = False
        if ok:
            _link_tracked(project, src, dest / name)
        elif (dest / name).exists():
            drop_tracked(project, dest / name)
    rows = int(np.load(project.array_path("map"), mmap_mode="r").shape[0])
    _record(project, map_id, {**info, "rows": rows, "kept_at": time.time()})
    return map_id


def forget_maps(project: "Project", keep: int = 0) -> dict:
    """Delete kept maps to free the disk: every folder ``maps/<id>/`` except the current
    map's and the ``keep`` most recently kept others.

    A clustering made on a deleted map can no longer be made current
    (:func:`use_clustering` says so; ``labeler cluster --list`` marks it "not kept"); the
    clusterings themselves, the current map and labels do not change. What is recorded
    about a deleted map stays, marked ``forgotten_at``. Holds the project lock.

    Parameters
    ----------
    keep : int, default 0
        How many kept maps besides the current one stay, newest first (by ``kept_at``).

    Returns
    -------
    dict
        ``forgotten`` (list of map ids, ascending), ``kept`` (the other maps' ids left under
        ``maps/``; the current map's folder, if any, holds hard links of its files and stays),
        ``freed_bytes`` (int; a file hard-linked elsewhere, e.g. the current map's, frees
        nothing and is not counted).

    Raises
    ------
    BadInputError
        ``keep`` < 0.
    ProjectLockedError
        Another process is writing to the project: nothing was deleted.
    """
    from .project import project_lock

    if keep < 0:
        raise BadInputError(f"keep must be >= 0, got {keep}")
    with project_lock(project.root, "deletion of kept maps"):
        current = current_map_id(project)
        recorded = project.store.get_meta("maps") or {}
        root = project.root / MAPS_DIR
        ids = sorted(int(d.name) for d in root.iterdir() if d.is_dir() and d.name.isdigit()) if root.is_dir() else []
        others = sorted((m for m in ids if m != current),
                        key=lambda m: (float((recorded.get(str(m)) or {}).get("kept_at") or 0), m), reverse=True)
        gone = sorted(others[keep:])
        freed = 0
        for m in gone:
            d = kept_dir(project, m)
            _record(project, m, {**map_info(project, m), "forgotten_at": time.time()})
            for f in sorted(d.iterdir()):
                st = f.stat()
                freed += st.st_size if st.st_nlink == 1 else 0
                drop_tracked(project, f)
            d.rmdir()
    return {"forgotten": gone, "kept": sorted(set(others) - set(gone)), "freed_bytes": int(freed)}


def start_map(project: "Project", info: dict) -> int:
    """Give the map just written at the top-level paths a new id and record ``info`` for it
    (feature_set, dims, umap ...; ``built_at`` is added). Returns the new id."""
    known = [int(k) for k in (project.store.get_meta("maps") or {})] + [current_map_id(project)]
    map_id = max(known) + 1
    _record(project, map_id, {**info, "built_at": time.time()})
    project.store.set_meta(map_id=map_id)
    return map_id


def restore_map(project: "Project", map_id: int) -> None:
    """Put kept map ``map_id`` back at the top-level paths (each file replaced atomically);
    the caller kept the current one first (:func:`keep_current_map`).

    Raises
    ------
    NotFoundError
        The map was not kept (its arrays are not under ``maps/<id>/``).
    CorruptFileError
        A kept file is damaged: nothing was replaced.
    """
    src = kept_dir(project, map_id)
    if not is_available(project, map_id):
        raise NotFoundError(f"map {map_id} was not kept (no {MAPS_DIR}/{map_id}/map.npy): "
                            "`labeler cluster --remap` or `--feature-set NAME` makes a new one")
    for name in MAP_FILES.values():
        verify(project, src / name)  # all of them before the first replacement
    for rel, name in MAP_FILES.items():
        top = project.root / rel
        if (src / name).is_file():
            _link_tracked(project, src / name, top)
        elif top.exists():
            drop_tracked(project, top)
    project.store.set_meta(map_id=int(map_id))


def clustering_map(project: "Project", clustering_id: int) -> int | None:
    """The map clustering ``clustering_id`` was made on, or None when that map is unknown.

    ``params['map']`` where recorded, else the parent's (placements and edits). A
    clustering of a project made before maps were kept is on map 0 when it was fitted
    after map 0 was (``maps_built_at``); one fitted before was on a map nobody kept.

    Raises
    ------
    NotFoundError
        No clustering has that id.
    """
    store = project.store
    c = store.get_clustering(clustering_id)
    if c is None:
        raise NotFoundError(f"no clustering {clustering_id} in this project (`labeler cluster --list`)")
    for _ in range(100_000):  # the parent chain; ids only decrease along it
        if "map" in c["params"]:
            return int(c["params"]["map"])
        parent = c["parent_id"] if c["parent_id"] is not None else c["params"].get("base")
        if parent is None:
            break
        c = store.get_clustering(int(parent))
        if c is None:
            return None
    built = map_info(project, 0).get("built_at")
    return 0 if built is not None and c["created_at"] >= float(built) else None


def _kind(c: dict) -> str:
    p = c["params"]
    if "restored_from" in p:
        return "restored"
    if c["method"] == "edit":
        return "edit"
    return "placed" if "placed" in p else "fit"


def list_clusterings(project: "Project") -> list[dict]:
    """Every clustering of the project with its map, oldest first.

    Returns
    -------
    list of dict
        id, method, kind ('fit', 'placed' = new photos placed into a fit, 'edit' = a
        split / merge / move, 'restored' = made current again by :func:`use_clustering`),
        created_at (Unix seconds), current (bool), undone (bool), n_clusters, n_noise,
        n_images, map (id or None when unknown), feature_set (of the map's space, or of
        the vectors KMeans ran on), available (whether :func:`use_clustering` can bring it
        back with its map), restored_from (id or None).
    """
    store = project.store
    cur = store.current_clustering()
    maps: dict[int, int | None] = {}
    out = []
    for c in store.clustering_overview():
        m = c["params"].get("map")
        if m is None:
            parent = c["parent_id"] if c["parent_id"] is not None else c["params"].get("base")
            m = maps[int(parent)] if parent is not None and int(parent) in maps else clustering_map(project, c["id"])
        maps[int(c["id"])] = m
        fs = c["params"].get("feature_set") or (map_info(project, m)["feature_set"] if m is not None else None)
        out.append({"id": int(c["id"]), "method": c["method"], "kind": _kind(c), "created_at": c["created_at"],
                    "current": cur is not None and int(cur["id"]) == int(c["id"]), "undone": bool(c["undone"]),
                    "n_clusters": int(c["n_clusters"]), "n_noise": int(c["n_noise"]), "n_images": int(c["n_images"]),
                    "map": m, "feature_set": fs, "available": m is not None and is_available(project, m),
                    "restored_from": c["params"].get("restored_from")})
    return out


def use_clustering(project: "Project", clustering_id: int, *, say: Callable[[str], None] = lambda m: None) -> int:
    """Make an earlier clustering current again, with the map it was made on.

    The clustering is copied as the new current one (:meth:`labeler.store.Store.copy_clustering`;
    params ``restored_from``), so the clusterings made since stay stored and going
    forward again is another ``use_clustering``. When its map is not the current one, the
    current map is kept (:func:`keep_current_map`) and the earlier one put back
    (:func:`restore_map`): map, clustering space, clustering model and, for a map of the
    ingest embeddings, the UMAP reducers, exactly as they were. Labels, the PCA vectors,
    the search index and the active feature set do not change. Holds the project lock.

    Returns
    -------
    int
        The id of the new current clustering (``clustering_id``'s own when it is current).

    Raises
    ------
    NotFoundError
        No clustering has that id, or its map was not kept.
    BadInputError
        It does not cover the project's images as they are now (photos were added or
        re-embedded since), or it was made on a map nobody kept (before labeler kept maps).
    ProjectLockedError
        Another process is writing to the project: nothing was changed.
    """
    from .project import project_lock

    store = project.store
    with project_lock(project.root, "change of clustering"):
        c = store.get_clustering(clustering_id)
        if c is None:
            raise NotFoundError(f"no clustering {clustering_id} in this project (`labeler cluster --list`)")
        cur = store.current_clustering()
        if cur is not None and int(cur["id"]) == int(clustering_id):
            say(f"clustering {clustering_id} is current already")
            return int(clustering_id)
        ids = store.assignments(int(clustering_id))[0]
        row_ids = store.row_image_ids()
        now = np.sort(row_ids[row_ids >= 0])
        if len(ids) != len(now) or not np.array_equal(ids, now):
            raise BadInputError(f"clustering {clustering_id} covers {len(ids)} images, the project now has "
                                f"{len(now)} (photos were added or re-embedded since): `labeler cluster` "
                                "re-clusters them instead")
        m = clustering_map(project, clustering_id)
        if m is None:
            raise BadInputError(f"clustering {clustering_id} was made on a map that was not kept (before labeler "
                                "kept maps): `labeler cluster --remap` or `--feature-set NAME` makes a new one")
        if m != current_map_id(project):
            if not is_available(project, m):
                raise NotFoundError(f"the map of clustering {clustering_id} (map {m}) was not kept")
            rows = int(np.load(kept_dir(project, m) / "map.npy", mmap_mode="r").shape[0])
            if rows != len(row_ids):
                raise BadInputError(f"map {m} has {rows} rows, the project {len(row_ids)}: `labeler cluster` "
                                    "re-clusters instead")
            say(f"putting back map {m} ({map_info(project, m)['feature_set']}); keeping map "
                f"{current_map_id(project)} under {MAPS_DIR}/")
            keep_current_map(project, say=say)
            # A run killed from here on must not place new photos with a clustering model of
            # another space: the ingest re-clusters while this is set (as after a re-mapping).
            store.set_meta(clustering_stale=True)
            restore_map(project, m)
            store.set_meta(maps_rows=rows, maps_fitted_rows=int(map_info(project, m).get("fitted_rows", rows)))
        params = {**c["params"], "map": int(m), "restored_from": int(clustering_id)}
        new = store.copy_clustering(int(clustering_id), params)
        store.set_meta(clustering_stale=False)
    return new
