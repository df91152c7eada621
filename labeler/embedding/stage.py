"""The embedding stage of a project: one backbone, view, precision, runtime and feature type per project.

:func:`resolve_project_backbone` loads the backbone a project uses (refusing another
one without ``force``), :func:`embed_pending` embeds the images still pending in
committed chunks on the runtime the settings ask for, and records in the project's
metadata what actually ran. ``labeler.pipeline.ingest`` calls them in order.

No torch at import: the torch-side modules are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..config import Settings
from ..errors import BackboneMismatchError
from ..project import Project
from .registry import is_byo, normalise_backbone_name

__all__ = ["DEFAULT_FEATURES", "backbone_change", "embed_pending", "make_project_engine", "query_engine",
           "resolve_project_backbone", "wanted_features"]

log = logging.getLogger("labeler")

#: Images the int8 model is calibrated on (ORT MinMax calibration), and held-out
#: images its features are checked on against fp32.
INT8_CALIBRATION_IMAGES = 128
INT8_CHECK_IMAGES = 32


#: The feature type a new project gets with ``features='auto'``: ``multistage`` beats
#: ``global`` on every figure of every ELPV truth column (cell type included) at the
#: same network cost (docs/features.md), and runs on ONNX Runtime like ``global``.
#: Existing projects keep the type recorded for them (before feature types: 'global').
DEFAULT_FEATURES = "multistage"


def _recorded(project: Project) -> dict | None:
    return project.store.get_meta("backbone")


def wanted_features(recorded: dict | None, settings: Settings) -> str:
    """The feature type to embed with: ``settings.features``, where 'auto' keeps the
    project's (projects from before feature types had 'global') or, for a new project,
    :data:`DEFAULT_FEATURES`."""
    if settings.features != "auto":
        return settings.features
    if is_byo(recorded["name"] if recorded and settings.backbone == "auto" else settings.backbone):
        return "global"  # a user's model gives its own output (labeler.embedding.byo)
    if recorded and recorded.get("name") == "file" and settings.backbone != "auto":
        return DEFAULT_FEATURES  # from vectors read from a file (embedding.given) to a backbone
    return recorded.get("features", "global") if recorded else DEFAULT_FEATURES


def backbone_change(project: Project, settings: Settings) -> str | None:
    """Why ``settings`` would re-embed the project with another backbone, view, precision or runtime, or None.

    ``auto`` keeps the project's backbone; runtime ``auto`` accepts either fp32
    runtime (torch and ONNX Runtime agree to cosine >= 0.999, checked before use).
    Projects embedded before runtimes were recorded count as ``torch``.
    """
    recorded = _recorded(project)
    if not recorded:
        return None
    was_runtime = recorded.get("runtime", "torch")
    wanted = recorded["name"] if settings.backbone == "auto" else normalise_backbone_name(settings.backbone)
    features = wanted_features(recorded, settings)
    runtime = was_runtime if settings.runtime == "auto" else settings.runtime
    was = (recorded["name"], recorded.get("view"), recorded.get("precision", "fp32"), was_runtime,
           recorded.get("features", "global"))
    now = (wanted, settings.view, settings.precision, runtime, features)
    if was == now:
        return None
    return (
        "the project's embeddings were made with {} (view {}, {}, {}, {} features); re-embedding everything "
        "with {} (view {}, {}, {}, {} features) needs --force".format(*was, *now)
    )


def resolve_project_backbone(project: Project, settings: Settings, *, force: bool = False,
                             warn: Callable[[str], None] = log.warning):
    """Load the backbone for this project, keeping one backbone per project.

    ``auto`` keeps the backbone the project already uses. Another backbone, view,
    precision or runtime needs ``force``, which marks every image for re-embedding
    (labels stay).

    Returns
    -------
    labeler.embedding.backbones.Backbone

    Raises
    ------
    BackboneMismatchError
        Another backbone, view, precision or runtime was asked for without ``force``.
    WeightsNotFoundError
        An explicitly named backbone without weights.
    BadInputError
        A runtime/precision/device combination that cannot run (int8 on a GPU, ...),
        or int8 refused on this collection (see :func:`build_int8_model`).
    """
    from .backbones import load_backbone
    from .local_features import feature_backbone
    from .runtime import resolve_runtime

    change = backbone_change(project, settings)
    if change and not force:
        raise BackboneMismatchError(change)
    recorded = _recorded(project)
    wanted = recorded["name"] if recorded and settings.backbone == "auto" else normalise_backbone_name(settings.backbone)
    if is_byo(wanted) and settings.precision == "int8":
        from ..errors import BadInputError

        raise BadInputError(f"precision int8 is for the registry's backbones; {wanted} runs in fp32 or bf16")
    notes: list[str] = []

    def noted(message: str) -> None:
        notes.append(message)
        warn(message)

    features = wanted_features(recorded, settings)
    bb = feature_backbone(load_backbone(wanted, weights=settings.weights or None, device=settings.device or "auto",
                                        warn=noted), features)
    device = str(next(bb.model.parameters()).device)
    runtime = resolve_runtime(settings.runtime, settings.precision, device)
    int8 = {}
    if settings.precision == "int8":  # quantised and checked before anything is written
        old = recorded or {}
        if not change and old.get("int8_model") and (project.root / old["int8_model"]).is_file():
            int8 = {k: old[k] for k in ("int8_model", "int8_min_cosine", "int8_calibration_images") if k in old}
        else:
            int8 = build_int8_model(project, bb, settings, _collection_paths(project))
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
            # The runtime asked for ('auto' resolved here); embed_pending records in
            # runtime_used what ran (torch after a fallback).
            "runtime": runtime,
            "features": features,
            **int8,
            "requested": settings.backbone,
            # Why auto chose this backbone (e.g. no resnet50 weights), for `labeler info`.
            "note": " ".join(notes) or None,
        },
        categories=list(bb.categories),
    )
    return bb


def _probe(backbone, paths: list[Path], view: str, n: int):
    """Network inputs (n, 3, S, S) float32 of the first ``n`` decodable ``paths`` (CPU decode), or None."""
    import torch

    from .decode import DecodeTask, collate, to_device_input

    task = DecodeTask([(i, p) for i, p in enumerate(paths)], backbone.spec, view, None, device_jpeg=False)
    got = []
    for i in range(len(task)):
        item = task[i]
        if item.kind != "failed":
            got.append(item)
        if len(got) == n:
            break
    if not got:
        return None
    x, _, _ = to_device_input(collate(got), backbone.spec, view, torch.device("cpu"), channels_last=False)
    return x


def _collection_paths(project: Project) -> list[Path]:
    return [project.image_path(p) for p, r in sorted(project.store.images_by_path().items())
            if r["status"] != "missing"]


def build_int8_model(project: Project, backbone, settings: Settings, paths: list[Path]) -> dict:
    """Quantise ``backbone`` to int8 on images of the collection and check it against fp32.

    Calibrates on up to :data:`INT8_CALIBRATION_IMAGES` of ``paths`` (spread over
    them) and compares features on up to :data:`INT8_CHECK_IMAGES` others. Writes
    ``models/<backbone>-<feature type>-int8-<calibration hash>.onnx``.

    Returns
    -------
    dict
        ``int8_model`` (path relative to the project), ``int8_min_cosine``,
        ``int8_calibration_images``: to record in the project metadata.

    Raises
    ------
    BadInputError
        No decodable image, or the int8 features fall below cosine
        :data:`~labeler.embedding.runtime.MIN_COSINE_INT8` to fp32 on the held-out
        images (the model file is removed; nothing is recorded).
    """
    from ..errors import BadInputError
    from .runtime import MIN_COSINE_INT8, OrtEngine, TorchEngine, cosine_rows, onnx_model, quantize_int8

    import torch

    n_fit, n_check = INT8_CALIBRATION_IMAGES, INT8_CHECK_IMAGES
    spread = paths[:: max(1, len(paths) // (n_fit + n_check))]
    x = _probe(backbone, spread, settings.view, n_fit + n_check)
    if x is None:
        raise BadInputError("int8 calibration needs decodable images in the collection")
    n_fit = min(n_fit, max(1, len(x) - n_check // 4))  # a few held out even from a small collection
    fit, held_out = x[:n_fit].numpy(), x[n_fit:]
    if len(held_out) == 0:
        held_out = x
    digest = hashlib.sha256(fit.tobytes()).hexdigest()[:16]
    path = project.models_dir / f"{backbone.name}-{backbone.features}-int8-{digest}.onnx"
    quantize_int8(onnx_model(backbone), fit, path, project)  # recorded in the integrity manifest
    ref = TorchEngine(backbone, torch.device("cpu"))(held_out)[0].numpy()
    cos = float(cosine_rows(OrtEngine(path, "int8")(held_out)[0].numpy(), ref).min())
    if cos < MIN_COSINE_INT8:
        path.unlink(missing_ok=True)
        raise BadInputError(f"int8 {backbone.name} keeps cosine {cos:.4f} < {MIN_COSINE_INT8} to fp32 on "
                            f"{len(held_out)} held-out images of this collection: use --precision fp32")
    return {"int8_model": str(path.relative_to(project.root)), "int8_min_cosine": round(cos, 5),
            "int8_calibration_images": int(len(fit))}


def make_project_engine(project: Project, backbone, settings: Settings, paths: list[Path], *,
                        warn: Callable[[str], None] = log.warning):
    """The engine for this project's embeddings, verified on its images before use.

    ``paths``: image files of the collection to probe (the pending ones). int8 uses
    the model :func:`resolve_project_backbone` quantised and recorded.

    Raises
    ------
    BadInputError
        A runtime/precision combination that cannot run here, or int8 refused.
    """
    from .runtime import make_engine

    device = str(next(backbone.model.parameters()).device)
    probe = _probe(backbone, paths[:: max(1, len(paths) // 8)], settings.view, 8)
    meta = _recorded(project) or {}
    int8_model = None
    if settings.precision == "int8":
        if not (meta.get("int8_model") and (project.root / meta["int8_model"]).is_file()):
            meta = dict(meta, **build_int8_model(project, backbone, settings, _collection_paths(project)))
            project.store.set_meta(backbone=meta)
        int8_model = project.root / meta["int8_model"]
    return make_engine(backbone, runtime=settings.runtime, precision=settings.precision, device=device,
                       probe=probe, int8_model=int8_model, warn=warn, project=project)


def query_engine(project: Project, backbone):
    """The engine for embedding query images the way the project's images were embedded.

    fp32 and bf16 queries run on torch (one image: no session to build); int8 on
    the project's quantised model.
    """
    from .runtime import TorchEngine, int8_engine

    meta = _recorded(project) or {}
    precision = meta.get("precision", "fp32")
    if precision == "int8" and meta.get("int8_model"):
        return int8_engine(project, project.root / meta["int8_model"])  # checked against the manifest
    device = next(backbone.model.parameters()).device
    return TorchEngine(backbone, device, "bf16" if precision == "bf16" else "fp32")


def embed_pending(project: Project, backbone, settings: Settings, *, progress: bool = True,
                  engine: str = "local", address: str | None = None,
                  warn: Callable[[str], None] = log.warning) -> tuple[int, list[tuple[str, str]]]:
    """Embed every pending image in committed chunks. Returns (embedded, skipped).

    ``engine`` "ray" embeds on a Ray cluster (:mod:`labeler.embedding.ray_data`,
    ``address`` None = a local instance; torch there); commits and resume are the
    same. Locally, records the runtime that actually ran in the project metadata
    (``backbone.runtime_used``; ``backbone.runtime`` is the one asked for).

    Raises
    ------
    BadInputError
        Unknown ``engine``, or a runtime/precision that cannot run here.
    """
    from ..errors import BadInputError
    from .extract import embed_files

    if engine not in ("local", "ray"):
        raise BadInputError(f"unknown engine {engine!r}; 'local' or 'ray'")

    store = project.store
    pending = store.pending_images()
    if not pending:
        return 0, []
    items = [(int(r["id"]), project.image_path(r["path"])) for r in pending]
    if engine == "ray" and settings.precision == "int8":
        raise BadInputError("--engine ray runs torch (fp32, bf16): int8 needs the local engine")
    runner = None
    if engine == "local":
        runner = make_project_engine(project, backbone, settings, [p for _, p in items], warn=warn)
    used = runner.runtime if runner is not None else "torch"
    meta = _recorded(project)
    if meta is not None and meta.get("runtime_used") != used:
        store.set_meta(backbone=dict(meta, runtime_used=used))
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
        from .ray_data import embed_files_ray

        batches = embed_files_ray(items, backbone.name, weights=settings.weights or None, view=settings.view,
                                  batch_size=settings.batch_size, device=settings.device or "auto",
                                  thumbs_dir=project.thumbs_dir, precision=settings.precision, address=address,
                                  progress=progress, features=(_recorded(project) or {}).get("features", "global"))
    else:
        batches = embed_files(
            items, backbone, view=settings.view, batch_size=settings.batch_size,
            num_workers=settings.num_workers, thumbs_dir=project.thumbs_dir, progress=progress, engine=runner,
        )
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
