"""The ingest pipeline: catalogue -> embed -> PCA -> UMAP -> cluster.

Each step is a function with plain inputs and outputs (clustering lives in
:mod:`labeler.clustering`, reduction in :mod:`labeler.reduce`); :func:`ingest` runs them
in order and is what ``labeler ingest`` calls. Re-running on the same folder
embeds only new or changed files (by content hash) and places them into the
existing map and clusters, so that nothing the annotator has seen moves
(``remap=True`` refits everything); an interrupted run resumes from the last
committed chunk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import images, novelty
from .clustering import CLUSTER_MODEL, can_place, cluster_project, clustering_up_to_date, place_images
from .config import Settings
from .embedding.feature_sets import (EMBEDDINGS, active_feature_set, feature_set_path, list_feature_sets,
                                     load_feature_set)
from .embedding.given import GIVEN, embed_given, is_given
from .embedding.stage import backbone_change, embed_pending, resolve_project_backbone
from .index import update_project_index
from .integrity import drop_tracked, dump_model, load_model, repair_embeddings
from .map_versions import current_map_id, keep_current_map, map_info, start_map
from .errors import BackboneMismatchError, BadInputError, NotFoundError, ProjectError
from .project import DB_NAME, Project, project_lock
from .reduce import fit_pca, fit_umaps, place_by_neighbours, transform_pca, transform_umap

log = logging.getLogger("labeler")




@dataclass
class CatalogueReport:
    """What a walk of the image folder found (counts of files)."""

    found: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    missing: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class IngestReport:
    """Summary of an ingest run, printed by the CLI."""

    catalogue: CatalogueReport
    backbone: str | None
    embedded: int
    skipped: list[tuple[str, str]]
    n_images: int
    n_clusters: int
    n_noise: int
    seconds: float
    rebuilt: bool
    placed: int = 0
    remapped: bool = False


def catalogue(project: Project, image_dir: Path) -> CatalogueReport:
    """Record every image file under ``image_dir`` in the project database.

    New files and files whose content hash changed become ``pending``; files no
    longer present become ``missing`` (kept, with their labels). A file whose
    size and mtime are unchanged is not hashed again.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        ``image_dir`` is missing or not a folder.
    ProjectError
        The project already catalogues another folder.
    """
    image_dir = Path(image_dir).expanduser().resolve()
    entries, skipped = images.discover(image_dir)
    root = project.image_root
    if root is not None and Path(root) != image_dir:
        raise ProjectError(
            f"this project catalogues {root}, not {image_dir}: one project per image folder"
        )
    project.store.set_meta(image_root=str(image_dir))
    known = project.store.images_by_path()
    rep = CatalogueReport(found=len(entries))
    fresh, seen = [], []
    for e in entries:
        old = known.get(e.rel_path)
        if old is not None and old["size"] == e.size and old["mtime"] == e.mtime:
            rep.unchanged += 1
            seen.append(e.rel_path)
            continue
        try:
            h = images.content_hash(image_dir / e.rel_path)
        except OSError as err:
            skipped.append((e.rel_path, f"unreadable: {err.strerror or err}"))
            continue
        if old is None:
            rep.new += 1
        elif old["hash"] != h:
            rep.changed += 1
        else:
            rep.unchanged += 1
        fresh.append({"path": e.rel_path, "size": e.size, "mtime": e.mtime, "hash": h})
        seen.append(e.rel_path)
    project.store.add_or_update_images(fresh)
    project.store.touch_images(seen)
    found = {e.rel_path for e in entries}
    gone = [p for p, r in known.items() if p not in found and r["status"] != "missing"]
    rep.missing = len(gone)
    project.store.mark_missing(gone)
    project.store.clear_skipped([r["path"] for r in project.store.skipped() if r["path"] not in found])
    if skipped:
        project.store.mark_skipped(skipped)
    rep.skipped = skipped
    return rep


def rebuild_maps(project: Project, settings: Settings, *, feature_set: str = EMBEDDINGS,
                 say: Callable[[str], None] = log.info) -> np.ndarray:
    """Fit PCA and the UMAP map + clustering space on all rows of a feature set; save them.

    The current map is kept first (:func:`labeler.map_versions.keep_current_map`), so that
    :func:`labeler.map_versions.use_clustering` can bring back a clustering made on it.

    Parameters
    ----------
    project : Project
    settings : Settings
        ``pca_components``, ``cluster_dims``, ``umap_neighbors``, ``umap_min_dist``, ``seed``.
    feature_set : str, default 'embeddings'
        The vectors mapped: the ingest embeddings (the PCA, its model, the search index and
        the novelty threshold are refitted too, and the UMAP reducers saved), or a stored
        feature set (:mod:`labeler.embedding.feature_sets`, e.g. a fine-tuned one): then only
        ``map.npy`` and ``cluster_space.npy`` change; the PCA vectors, the index and search
        stay those of the ingest embeddings, and new photos are placed on this map by their
        nearest neighbours there (a new photo has no vector in a feature set).
    say : callable(str)
        Receives one line per stage (the CLI prints them).

    Returns
    -------
    ndarray of shape (n_rows, P), float32
        The L2-normalised PCA vectors of ``feature_set`` (what KMeans and the cluster
        summaries of this space use).

    Raises
    ------
    NotFoundError
        No stored feature set of that name.
    BadInputError
        The feature set does not cover every image row (photos were added since it was made).
    """
    learned = feature_set != EMBEDDINGS
    if learned:
        x = load_feature_set(project, feature_set, mmap=False)
        n_rows = project.store.next_row()
        if len(x) != n_rows:
            raise BadInputError(f"feature set {feature_set!r} has {len(x)} rows, the project {n_rows} (photos were "
                                "added since it was made): compute it again before mapping in it")
    else:
        x = project.load_array("embeddings", mmap=False)
    what = f"vectors of feature set {feature_set}" if learned else "embeddings"
    say(f"PCA of {len(x)} {what} ({x.shape[1]}-d) ...")
    pca = fit_pca(x, settings.pca_components, seed=settings.seed)
    say(f"  {pca.vectors.shape[1]} components keep {pca.explained_variance_ratio.sum():.0%} of the variance")
    # A fixed seed makes umap-learn single-threaded: keep it (reproducible maps)
    # up to 50k images, trade it for both cores above (bench_reduce: 229 s -> 92 s at 100k).
    seed = settings.seed if len(x) <= 50_000 else None
    dims = int(min(settings.cluster_dims, max(2, len(x) - 2)))
    say(f"UMAP 2-D map and {dims}-d clustering space, one kNN graph (the first run in a process "
        "compiles numba code: about a minute) ...")
    (map_reducer, xy), (space_reducer, space) = fit_umaps(
        pca.vectors, [(2, settings.umap_min_dist), (dims, 0.0)], n_neighbors=settings.umap_neighbors, seed=seed
    )
    # Nothing of the current map was replaced so far: keep it, then write the new one.
    keep_current_map(project, say=say)
    # The saved clustering model lives in the space about to be replaced: a run killed
    # before re-clustering must re-cluster, never place images with the old model.
    project.store.set_meta(clustering_stale=True)
    (project.models_dir / CLUSTER_MODEL).unlink(missing_ok=True)
    if not learned:
        project.save_array("pca", pca.vectors)
        dump_model(project, pca.model, project.models_dir / "pca.joblib")  # atomic, in the manifest
    project.save_array("map", xy)
    project.save_array("cluster_space", space)
    for model, name in ((map_reducer, "umap_map.joblib"), (space_reducer, "umap_cluster.joblib")):
        if learned:  # they transform vectors of the feature set, which a new photo does not have
            drop_tracked(project, project.models_dir / name)
        else:
            dump_model(project, model, project.models_dir / name)
    start_map(project, {"feature_set": feature_set, "dims": dims, "pca_components": int(pca.vectors.shape[1]),
                        "pca_explained_variance": float(pca.explained_variance_ratio.sum()),
                        "fitted_rows": int(len(x)), "umap": not learned})
    if not learned:
        project.store.set_meta(pca_explained_variance=float(pca.explained_variance_ratio.sum()),
                               pca_components=int(pca.vectors.shape[1]))
        update_project_index(project, pca.vectors, say=say)  # HNSW above index.HNSW_FROM images
        _store_novelty(project, pca.vectors, settings)
    project.store.set_meta(maps_fitted_rows=int(len(x)), rows_to_place=[])
    # Written last: a run killed before this point rebuilds the maps next time.
    project.store.set_meta(maps_built_at=time.time(), maps_rows=int(len(x)))
    return pca.vectors


def _store_novelty(project: Project, vectors: np.ndarray, settings: Settings) -> None:
    cal = novelty.calibrate(vectors, settings.novelty_percentile, seed=settings.seed)
    project.store.set_meta(nn_similarity_percentiles=cal.percentiles, novelty_threshold=cal.threshold,
                           novelty_method=cal.method)


MAP_MODELS = ("pca.joblib", "umap_map.joblib", "umap_cluster.joblib")


def can_place_in_maps(project: Project) -> bool:
    """Whether the fitted PCA, map and clustering space exist to place new images in (and the
    UMAP reducers, for a map of the ingest embeddings: a map of another feature set has none)."""
    arrays = ("pca", "map", "cluster_space")
    models = MAP_MODELS if map_info(project).get("umap", True) else MAP_MODELS[:1]
    return (project.store.get_meta("maps_rows") is not None and all(project.has_array(a) for a in arrays)
            and all((project.models_dir / m).is_file() for m in models))


def place_in_maps(project: Project, rows: np.ndarray, settings: Settings, *, placement: str = "neighbours",
                  say: Callable[[str], None] = log.info) -> None:
    """Add the images at array ``rows`` to the existing PCA, map and clustering space.

    Nothing is refitted and no other row changes: the saved PCA projects the new
    embeddings, and the new points are placed on the 2-D map and in the
    clustering space either by their nearest fitted neighbours
    (``placement='neighbours'``, :func:`labeler.reduce.place_by_neighbours`) or by
    the saved UMAP reducers' ``transform`` (``'umap'``). The novelty statistics
    are recomputed over all rows.

    A map fitted in another feature set than the ingest embeddings
    (:func:`rebuild_maps`) takes ``'neighbours'`` only: the neighbours are found among the
    ingest PCA vectors, the positions are those of the map.

    Raises
    ------
    BadInputError
        An unknown ``placement``, or ``'umap'`` on a map without UMAP reducers.
    """
    if placement not in ("neighbours", "umap"):
        raise BadInputError(f"unknown placement {placement!r}: neighbours or umap")
    if placement == "umap" and not map_info(project).get("umap", True):
        raise BadInputError(f"the map was fitted in feature set {map_info(project)['feature_set']!r}, which a new "
                            "photo has no vector in: place by 'neighbours'")
    rows = np.asarray(sorted(set(int(r) for r in rows)), dtype=np.int64)
    emb = project.load_array("embeddings")
    n = len(emb)
    new = transform_pca(load_model(project, project.models_dir / "pca.joblib"), np.asarray(emb[rows]))
    pca = _grown(project.load_array("pca", mmap=False), n)
    old = np.setdiff1d(np.arange(min(len(pca), int(project.store.get_meta("maps_rows")))), rows)
    say(f"placing {len(rows)} image(s) on the existing map ({placement}; `--remap` refits it) ...")
    spaces = (("map", "umap_map.joblib"), ("cluster_space", "umap_cluster.joblib"))
    placed = {name: _grown(project.load_array(name, mmap=False), n) for name, _ in spaces}
    if placement == "neighbours":
        # One neighbour search serves both spaces.
        positions = place_by_neighbours(pca[old], [placed[name][old] for name, _ in spaces], new,
                                        k=PLACEMENT_NEIGHBOURS)
    else:
        positions = [transform_umap(load_model(project, project.models_dir / model), new) for _, model in spaces]
    for (name, _), pos in zip(spaces, positions):
        placed[name][rows] = pos
    pca[rows] = new
    project.save_array("pca", pca)
    for name, coords in placed.items():
        project.save_array(name, coords)
    update_project_index(project, pca, say=say)  # adds the new rows to a saved HNSW index
    _store_novelty(project, pca, settings)
    project.store.set_meta(maps_rows=int(n))


# bench_placement.py, ELPV (262 held-out of 2,624): k = 2..5 keep as many PCA neighbours on the
# map as UMAP's transform (0.40-0.41 vs 0.41) and agree as often on the cluster, ~50x faster.
PLACEMENT_NEIGHBOURS = 5


def _grown(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` (m, c) extended with zero rows to n rows (m <= n)."""
    if len(a) >= n:
        return np.array(a[:n])
    return np.concatenate([a, np.zeros((n - len(a), *a.shape[1:]), dtype=a.dtype)])


def maps_up_to_date(project: Project, n_rows: int) -> bool:
    """Whether PCA, map and clustering space exist and were all built from ``n_rows`` embeddings."""
    arrays = ("embeddings", "pca", "map", "cluster_space")
    return project.store.get_meta("maps_rows") == n_rows and all(project.has_array(a) for a in arrays)


def recluster(project: Project, settings: Settings, *, remap: bool = False, feature_set: str | None = None,
              say: Callable[[str], None] = log.info) -> int:
    """Cluster the project again (``labeler cluster``); the new clustering becomes current.

    Holds the project lock (:func:`labeler.project.project_lock`) throughout, so
    it never interleaves with an ingest or another re-clustering; labelling goes on
    meanwhile. The settings used are saved to ``labeler.toml``. Labels never change.
    The clustering and map replaced stay stored: :func:`labeler.map_versions.use_clustering`
    makes them current again.

    Parameters
    ----------
    project : Project
    settings : Settings
        ``method``, ``k``, ``min_cluster_size``, ``min_samples`` as wanted.
    remap : bool
        Refit PCA, the 2-D map and the clustering space of the ingest embeddings first
        (:func:`rebuild_maps`; every point moves).
    feature_set : str or None
        Re-map in this stored feature set first ('active': the active one, e.g. the
        ``finetuned-<k>`` a fine-tune press made active; 'embeddings': as ``remap``), then
        cluster in it: HDBSCAN on its UMAP space, KMeans on its PCA vectors. None
        (default): no re-mapping unless ``remap``; HDBSCAN runs in the current map's
        space, KMeans on the ingest PCA vectors.
    say : callable(str)
        Receives one line per stage.

    Returns
    -------
    int
        The id of the clustering :func:`labeler.clustering.cluster_project` stored.

    Raises
    ------
    ProjectLockedError
        Another process is writing to the project: nothing was changed.
    NotFoundError
        No stored feature set of that name.
    BadInputError
        The feature set does not cover every image row (see :func:`rebuild_maps`).
    BadInputError, NotIngestedError
        Raised by :func:`labeler.clustering.cluster_project` (see there).
    """
    with project_lock(project.root, "cluster run"):
        name = active_feature_set(project) if feature_set == "active" else feature_set
        if name is not None and not feature_set_path(project, name).is_file():  # before anything is fitted
            known = ", ".join(list_feature_sets(project)) or "none"
            raise NotFoundError(f"no feature set {name!r} in this project (stored: {known})")
        vectors = None
        if name is not None and name != EMBEDDINGS:
            vectors = rebuild_maps(project, settings, feature_set=name, say=say)
        elif remap or name == EMBEDDINGS:
            rebuild_maps(project, settings, say=say)
        say(f"clustering ({settings.method}) in map {current_map_id(project)} ({map_info(project)['feature_set']}) ...")
        cid = cluster_project(project, settings, vectors=vectors)
        project.save_settings(settings)
    return cid


def ingest(
    image_dir: Path | str,
    project_dir: Path | str,
    settings: Settings | None = None,
    *,
    force: bool = False,
    remap: bool = False,
    progress: bool = True,
    warn: Callable[[str], None] = log.warning,
    say: Callable[[str], None] = log.info,
    engine: str = "local",
    address: str | None = None,
    embeddings: Path | str | None = None,
    embedding_paths: Path | str | None = None,
) -> IngestReport:
    """Catalogue, embed, reduce and cluster a folder of images into a project.

    Parameters
    ----------
    image_dir : path
        The image folder (read only; nothing is written there).
    project_dir : path
        The project directory (created when missing).
    settings : Settings or None
        None = the project's settings (defaults < labeler.toml < LABELER_*).
    force : bool
        Allow re-embedding everything with another backbone.
    remap : bool
        Refit PCA, the map and the clustering even if only a few images are new.
        Without it, new or changed images are placed into the existing map and
        clusters (:func:`place_in_maps`, :func:`labeler.clustering.place_images`):
        every other image keeps its map position and cluster id.
    warn, say : callable(str)
        Receive warnings and one line per stage.
    engine : {"local", "ray"}
        Where decoding and embedding run; "ray" uses Ray Data (``pip install 'labeler[ray]'``).
    address : str or None
        The Ray cluster for ``engine="ray"`` (None: a local instance).
    embeddings, embedding_paths : path or None
        Take the vectors from this file instead of a backbone (``.npy`` with its paths
        list ``embedding_paths``, or Parquet): :mod:`labeler.embedding.given`.

    Raises
    ------
    BadInputError
        The image folder does not exist, is not a folder, or holds no usable image.
    BackboneMismatchError
        Another backbone, view or precision than the project's, without ``force``.
    ProjectError
        The project already catalogues another folder.
    ProjectLockedError
        Another process is writing to the project (an ingest or a re-clustering):
        nothing was changed.
    WeightsNotFoundError
        An explicit backbone whose weights cannot be found.
    """
    t0 = time.time()
    if engine not in ("local", "ray"):
        raise BadInputError(f"unknown engine {engine!r}; 'local' or 'ray'")
    if engine == "ray":
        from .embedding.ray_data import require_ray

        require_ray()  # before anything is written
    image_dir = check_ingest_input(image_dir, project_dir)
    with project_lock(project_dir, "ingest"):  # the policy: labeler.project.project_lock
        return _ingest(image_dir, project_dir, settings, force=force, remap=remap, progress=progress, warn=warn,
                       say=say, engine=engine, address=address, t0=t0, given=(embeddings, embedding_paths))


def _ingest(image_dir: Path, project_dir, settings, *, force, remap, progress, warn, say, engine, address,
            t0, given=(None, None)) -> IngestReport:
    project = Project(project_dir, create=True)
    settings = settings or project.settings()
    change = backbone_change(project, settings)
    if change and not force:
        raise BackboneMismatchError(change)
    if force and not change:
        repair_embeddings(project)  # a damaged embeddings.npy is embedded again (labeler.integrity)
    cat = catalogue(project, image_dir)
    project.consolidate_parts()  # a previous run may have been interrupted
    store = project.store
    # Changed files keep their array row: remember it before embedding clears 'pending',
    # so that a run killed after embedding still re-places them next time.
    changed = [int(r["row"]) for r in store.pending_images() if r["row"] is not None]
    if changed:
        store.set_meta(rows_to_place=sorted(set(store.get_meta("rows_to_place") or []) | set(changed)))
    backbone_name = None
    embedded, skipped = 0, list(cat.skipped)
    if given[0] is not None or (is_given(store.get_meta("backbone")) and not change):
        backbone_name = GIVEN  # vectors from a file, no model (labeler.embedding.given)
        embedded, failed = embed_given(project, given[0], paths=given[1], force=force, say=say)
        skipped += failed
    elif change or store.pending_images() or not store.get_meta("backbone"):
        bb = resolve_project_backbone(project, settings, force=force, warn=warn)
        backbone_name = bb.name
        embedded, failed = embed_pending(project, bb, settings, progress=progress, engine=engine, address=address,
                                         warn=warn)
        skipped += failed
    else:
        backbone_name = store.get_meta("backbone")["name"]
    project.save_settings(settings)
    n_rows = store.next_row()
    if n_rows == 0:
        raise BadInputError(
            f"no usable image in {image_dir} ({len(skipped)} file(s) skipped)"
            + "".join(f"\n  {p}: {r}" for p, r in skipped[:20])
        )
    placed = 0
    remapped = remap or bool(change) or not (can_place_in_maps(project) and can_place(project))
    if remapped:
        maps_stale = remap or bool(embedded) or not maps_up_to_date(project, n_rows)
        if maps_stale:
            rebuild_maps(project, settings, say=say)
        rebuilt = maps_stale or not clustering_up_to_date(project, n_rows) or bool(store.get_meta("clustering_stale"))
        if rebuilt:
            say(f"clustering ({settings.method}) ...")
            cluster_project(project, settings)
        remapped = rebuilt
    else:
        rows = set(store.get_meta("rows_to_place") or []) | set(range(int(store.get_meta("maps_rows")), n_rows))
        rebuilt = bool(rows)
        if rows:
            store.set_meta(rows_to_place=sorted(rows))
            place_in_maps(project, np.array(sorted(rows)), settings, say=say)
            place_images(project, np.array(sorted(rows)))
            store.set_meta(rows_to_place=[])
            placed = len(rows)
            fitted = int(store.get_meta("maps_fitted_rows") or 0)
            if n_rows > 2 * fitted:
                say(f"the map was fitted on {fitted} images and now shows {n_rows}: "
                    "`labeler cluster --remap` refits it")
        elif not clustering_up_to_date(project, n_rows):
            say(f"clustering ({settings.method}) ...")
            cluster_project(project, settings)
            rebuilt = True
    if settings.prefix_cache and backbone_name != GIVEN:  # last: the map and clusters are usable meanwhile
        _prepare_prefix_cache(project, settings, progress=progress, say=say)
    _, labels, _ = project.store.assignments()
    return IngestReport(
        catalogue=cat, backbone=backbone_name, embedded=embedded, skipped=skipped,
        n_images=n_rows, n_clusters=int(len(set(labels.tolist()) - {-1})),
        n_noise=int((labels == -1).sum()), seconds=time.time() - t0, rebuilt=rebuilt,
        placed=placed, remapped=remapped,
    )


def _prepare_prefix_cache(project: Project, settings: Settings, *, progress: bool, say) -> None:
    """The stage maps the fine-tune presses will read (``settings.prefix_cache``), for the
    photos not cached yet. The photos are embedded already: a refusal (budget, disk, a
    backbone that cannot be fine-tuned) is said in one line and the ingest goes on."""
    from .disk import size_text
    from .embedding.finetune import prepare_prefix_cache

    try:
        rep = prepare_prefix_cache(project, train_from=settings.prefix_cache, device=settings.device or "auto",
                                   progress=progress, say=say)
    except BadInputError as e:
        say(f"prefix cache not prepared: {e}")
        return
    if rep["computed"] or rep["failures"]:
        say(f"prefix cache ({settings.prefix_cache}): stage maps of {rep['computed']} images in {rep['seconds']:.1f} s"
            f" ({size_text(rep['bytes'])})" + (f", {len(rep['failures'])} unreadable" if rep["failures"] else ""))


def check_ingest_input(image_dir: Path | str, project_dir: Path | str) -> Path:
    """Validate an ingest before anything is written or any model loaded: the image
    folder exists, and for a new project it holds at least one image file.

    Returns
    -------
    Path
        ``image_dir`` with ``~`` expanded.

    Raises
    ------
    BadInputError
        Missing folder, not a folder, or (new project) no image file in it.
    """
    image_dir = Path(image_dir).expanduser()
    if not image_dir.exists():
        raise BadInputError(f"image folder not found: {image_dir}")
    if not image_dir.is_dir():
        raise BadInputError(f"not a folder: {image_dir}")
    if not (Path(project_dir).expanduser() / DB_NAME).is_file():
        _require_images(image_dir)
    return image_dir


def _require_images(image_dir: Path) -> None:
    """Refuse a folder without any image file, in one line, before anything is written."""
    from .images import IMAGE_EXTENSIONS, discover

    entries, skipped = discover(image_dir)
    if not entries:
        kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
        extra = f"; {len(skipped)} path(s) skipped" if skipped else ""
        raise BadInputError(f"no image files in {image_dir} (looked for {kinds}, recursively{extra}); "
                            "no project was created")
