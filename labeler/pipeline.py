"""The ingest pipeline: catalogue -> embed -> PCA -> UMAP -> cluster.

Each step is a function with plain inputs and outputs (clustering lives in
:mod:`labeler.clustering`, reduction in :mod:`labeler.reduce`); :func:`ingest` runs them
in order and is what ``labeler ingest`` calls. Re-running on the same folder
embeds only new or changed files (by content hash); an interrupted run resumes
from the last committed chunk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np

from . import images
from .clustering import cluster_project, clustering_up_to_date
from .config import Settings
from .index import nearest_neighbour_similarities
from .errors import BackboneMismatchError, BadInputError, ProjectError
from .project import Project
from .reduce import fit_pca, fit_umap

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


#: The feature type a new project gets with ``features='auto'`` (docs/features.md).
DEFAULT_FEATURES = "multistage"


def wanted_features(recorded: dict | None, settings: Settings) -> str:
    """The feature type to embed with: ``settings.features``, where 'auto' keeps the
    project's (projects from before feature types had 'global') or, for a new project,
    :data:`DEFAULT_FEATURES`."""
    if settings.features != "auto":
        return settings.features
    return recorded.get("features", "global") if recorded else DEFAULT_FEATURES


def backbone_change(project: Project, settings: Settings) -> str | None:
    """Why ``settings`` would re-embed the project with another backbone or view, or None."""
    recorded = project.store.get_meta("backbone")
    if not recorded:
        return None
    wanted = recorded["name"] if settings.backbone == "auto" else settings.backbone
    was = (recorded["name"], recorded.get("view"), recorded.get("precision", "fp32"),
           recorded.get("features", "global"))
    now = (wanted, settings.view, settings.precision, wanted_features(recorded, settings))
    if was == now:
        return None
    return (
        "the project's embeddings were made with {} (view {}, {}, {} features); re-embedding everything "
        "with {} (view {}, {}, {} features) needs --force".format(*was, *now)
    )


def resolve_project_backbone(project: Project, settings: Settings, *, force: bool = False, warn: Callable[[str], None] = log.warning):
    """Load the backbone for this project, keeping one backbone per project.

    ``auto`` keeps the backbone the project already uses. Another backbone or
    view needs ``force``, which marks every image for re-embedding (labels stay).

    Raises
    ------
    BackboneMismatchError
        Another backbone was asked for without ``force``.
    WeightsNotFoundError
        Explicit resnet50 without weights.
    """
    from .embedding.backbones import load_backbone
    from .embedding.local_features import feature_backbone

    change = backbone_change(project, settings)
    if change and not force:
        raise BackboneMismatchError(change)
    recorded = project.store.get_meta("backbone")
    wanted = recorded["name"] if recorded and settings.backbone == "auto" else settings.backbone
    notes: list[str] = []

    def noted(message: str) -> None:
        notes.append(message)
        warn(message)

    bb = load_backbone(wanted, weights=settings.weights or None, device=settings.device or "auto", warn=noted)
    features = wanted_features(recorded, settings)
    bb = feature_backbone(bb, features)
    if change:
        project.store.mark_all_pending()
        for name in ("embeddings", "pca", "map", "cluster_space"):
            project.array_path(name).unlink(missing_ok=True)
    project.store.set_meta(
        backbone={
            "name": bb.name,
            "dim": bb.dim,
            "weights_id": bb.weights_id,
            "weights_source": str(bb.weights_source),
            "preprocessing": bb.describe_preprocessing(settings.view),
            "view": settings.view,
            "precision": settings.precision,
            "features": features,
            "requested": settings.backbone,
            # Why auto chose this backbone (e.g. no resnet50 weights), for `labeler info`.
            "note": " ".join(notes) or None,
        },
        categories=list(bb.categories),
    )
    return bb


def embed_pending(project: Project, backbone, settings: Settings, *, progress: bool = True,
                  engine: str = "local", address: str | None = None) -> tuple[int, list[tuple[str, str]]]:
    """Embed every pending image in committed chunks. Returns (embedded, skipped).

    ``engine`` "ray" embeds on a Ray cluster (:mod:`labeler.embedding.ray_data`,
    ``address`` None = a local instance); commits and resume are the same.
    """
    from .embedding.extract import embed_files

    store = project.store
    pending = store.pending_images()
    if not pending:
        return 0, []
    items = [(int(r["id"]), project.image_path(r["path"])) for r in pending]
    by_id = {int(r["id"]): r for r in pending}
    next_row = store.next_row()
    done, skipped = 0, []
    feats, records, failures = [], [], []

    def flush():
        nonlocal feats, records, failures, done, skipped
        if records:
            # Chunk file first, DB commit second: a crash between the two leaves a
            # chunk that consolidate_parts() discards, never a row without vectors.
            project.write_part(np.array([r["row"] for r in records]), np.stack(feats))
            store.commit_embedded(records)
        if failures:
            store.mark_skipped(failures)
        done += len(records)
        skipped += failures
        feats, records, failures = [], [], []

    # One pass over all pending images (one progress bar, one set of decoding
    # workers); committed every ``commit_every`` images.
    if engine == "ray":
        from .embedding.ray_data import embed_files_ray

        batches = embed_files_ray(items, backbone.name, weights=settings.weights or None, view=settings.view,
                                  batch_size=settings.batch_size, device=settings.device or "auto",
                                  thumbs_dir=project.thumbs_dir, precision=settings.precision, address=address,
                                  progress=progress,
                                  features=(store.get_meta("backbone") or {}).get("features", "global"))
    elif engine == "local":
        batches = embed_files(
            items, backbone, view=settings.view, batch_size=settings.batch_size,
            num_workers=settings.num_workers, device=settings.device or "auto",
            thumbs_dir=project.thumbs_dir, progress=progress, precision=settings.precision,
        )
    else:
        raise BadInputError(f"unknown engine {engine!r}; 'local' or 'ray'")
    for b in batches:
        failures += [(by_id[i]["path"], reason) for i, reason in b.failures]
        for j, i in enumerate(b.ids):
            row = by_id[int(i)]["row"]
            if row is None:
                row, next_row = next_row, next_row + 1
            records.append({
                "id": int(i), "row": int(row), "width": int(b.width[j]), "height": int(b.height[j]),
                "top1": int(b.top1[j]), "top1_prob": float(b.top1_prob[j]),
            })
            feats.append(b.features[j])
        if len(records) + len(failures) >= settings.commit_every:
            flush()
    flush()
    project.consolidate_parts()
    return done, skipped


def rebuild_maps(project: Project, settings: Settings, *, say: Callable[[str], None] = log.info) -> None:
    """Fit PCA and the UMAP map + clustering space on all embeddings; save models.

    Also stores the collection's nearest-neighbour similarity distribution, from
    which the novelty threshold of reverse image search is derived. ``say``
    receives one line per stage (the CLI prints them).
    """
    emb = project.load_array("embeddings", mmap=False)
    say(f"PCA of {len(emb)} embeddings ({emb.shape[1]}-d) ...")
    pca = fit_pca(emb, settings.pca_components, seed=settings.seed)
    say(f"  {pca.vectors.shape[1]} components keep {pca.explained_variance_ratio.sum():.0%} of the variance")
    project.save_array("pca", pca.vectors)
    # A fixed seed makes umap-learn single-threaded: keep it (reproducible maps)
    # up to 50k images, trade it for both cores above (bench_reduce: 229 s -> 92 s at 100k).
    seed = settings.seed if len(emb) <= 50_000 else None
    say("UMAP 2-D map (the first run in a process compiles numba code: about a minute) ...")
    map_reducer, xy = fit_umap(
        pca.vectors, 2, n_neighbors=settings.umap_neighbors, min_dist=settings.umap_min_dist, seed=seed
    )
    project.save_array("map", xy)
    dims = int(min(settings.cluster_dims, max(2, len(emb) - 2)))
    say(f"UMAP {dims}-d space for clustering ...")
    _, space = fit_umap(pca.vectors, dims, n_neighbors=settings.umap_neighbors, min_dist=0.0, seed=seed)
    project.save_array("cluster_space", space)
    joblib.dump(pca.model, project.models_dir / "pca.joblib")
    joblib.dump(map_reducer, project.models_dir / "umap_map.joblib")
    # 2,000 queries pin the 1st percentile well (its 20th value) and cost 50 s at 1M rows, not 120.
    nn_sims = nearest_neighbour_similarities(pca.vectors, sample=2000, seed=settings.seed)
    project.store.set_meta(
        pca_explained_variance=float(pca.explained_variance_ratio.sum()),
        pca_components=int(pca.vectors.shape[1]),
        nn_similarity_percentiles={str(p): float(np.percentile(nn_sims, p)) for p in (0.5, 1, 2, 5, 10, 50)},
        novelty_threshold=float(np.percentile(nn_sims, settings.novelty_percentile)),
        maps_built_at=time.time(),
        # Written last: a run killed before this point rebuilds the maps next time.
        maps_rows=int(len(emb)),
    )


def maps_up_to_date(project: Project, n_rows: int) -> bool:
    """Whether PCA, map and clustering space exist and were all built from ``n_rows`` embeddings."""
    arrays = ("embeddings", "pca", "map", "cluster_space")
    return project.store.get_meta("maps_rows") == n_rows and all(project.has_array(a) for a in arrays)


def ingest(
    image_dir: Path | str,
    project_dir: Path | str,
    settings: Settings | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    warn: Callable[[str], None] = log.warning,
    say: Callable[[str], None] = log.info,
    engine: str = "local",
    address: str | None = None,
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
    warn, say : callable(str)
        Receive warnings and one line per stage.
    engine : {"local", "ray"}
        Where decoding and embedding run; "ray" uses Ray Data (``pip install 'labeler[ray]'``).
    address : str or None
        The Ray cluster for ``engine="ray"`` (None: a local instance).

    Raises
    ------
    BadInputError
        The image folder does not exist, is not a folder, or holds no usable image.
    BackboneMismatchError
        Another backbone, view or precision than the project's, without ``force``.
    ProjectError
        The project already catalogues another folder.
    WeightsNotFoundError
        An explicit backbone whose weights cannot be found.
    """
    t0 = time.time()
    if engine not in ("local", "ray"):
        raise BadInputError(f"unknown engine {engine!r}; 'local' or 'ray'")
    if engine == "ray":
        from .embedding.ray_data import require_ray

        require_ray()  # before anything is written
    image_dir = Path(image_dir).expanduser()
    if not image_dir.exists():
        raise BadInputError(f"image folder not found: {image_dir}")
    if not image_dir.is_dir():
        raise BadInputError(f"not a folder: {image_dir}")
    project = Project(project_dir, create=True)
    settings = settings or project.settings()
    change = backbone_change(project, settings)
    if change and not force:
        raise BackboneMismatchError(change)
    cat = catalogue(project, image_dir)
    project.consolidate_parts()  # a previous run may have been interrupted
    backbone_name = None
    embedded, skipped = 0, list(cat.skipped)
    if change or project.store.pending_images() or not project.store.get_meta("backbone"):
        bb = resolve_project_backbone(project, settings, force=force, warn=warn)
        backbone_name = bb.name
        embedded, failed = embed_pending(project, bb, settings, progress=progress, engine=engine, address=address)
        skipped += failed
    else:
        backbone_name = project.store.get_meta("backbone")["name"]
    project.save_settings(settings)
    n_rows = project.store.next_row()
    if n_rows == 0:
        raise BadInputError(
            f"no usable image in {image_dir} ({len(skipped)} file(s) skipped)"
            + "".join(f"\n  {p}: {r}" for p, r in skipped[:20])
        )
    maps_stale = bool(embedded) or not maps_up_to_date(project, n_rows)
    if maps_stale:
        rebuild_maps(project, settings, say=say)
    rebuilt = maps_stale or not clustering_up_to_date(project, n_rows)
    if rebuilt:
        say(f"clustering ({settings.method}) ...")
        cluster_project(project, settings)
    _, labels, _ = project.store.assignments()
    return IngestReport(
        catalogue=cat, backbone=backbone_name, embedded=embedded, skipped=skipped,
        n_images=n_rows, n_clusters=int(len(set(labels.tolist()) - {-1})),
        n_noise=int((labels == -1).sum()), seconds=time.time() - t0, rebuilt=rebuilt,
    )
