"""Named feature sets of a project: ``features/<name>.npy`` beside ``embeddings.npy``, one active.

A feature set is an (n_rows, D) float32 array whose row i belongs to the image with
``images.row == i`` (rows of images that could not be read are zero). The embeddings
made at ingest are the feature set ``'embeddings'``; others come from
``labeler features`` (another feature type, computed from the stored images) or
``labeler finetune`` (vectors of a network fine-tuned on the annotator's labels).
Nothing is overwritten: every set stays on disk, so the annotator can go back by
making an older one active, until someone deletes one to free the disk
(:func:`drop_feature_set`; a fine-tuned set at 1M images takes 5 GB). Which one is active is a project setting kept in the
database (meta key ``active_features``, :func:`active_features`). Suggestions and the
"label next" queue (:mod:`labeler.assist`) read the active set (the ingest PCA vectors
while the ingest embeddings are active), or any set by name.

No torch here: reading and choosing feature sets is cheap.
"""

from __future__ import annotations

import re
import time

import numpy as np

from ..errors import BadInputError, NotFoundError, ProjectError
from ..integrity import verify, write_tracked
from ..project import Project

__all__ = ["EMBEDDINGS", "active_feature_set", "active_features", "describe_feature_set", "drop_feature_set",
           "feature_set_path", "heldout_text", "list_feature_sets", "load_feature_set", "new_feature_set_name",
           "save_feature_set", "set_active_feature_set"]

#: The name of the ingest embeddings as a feature set.
EMBEDDINGS = "embeddings"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _check_name(name: str) -> str:
    if not _NAME.match(name or "") or name.endswith(".npy"):
        raise BadInputError(f"bad feature set name {name!r}: use letters, digits, '_', '-', '.' (at most 64)")
    return name


def feature_set_path(project: Project, name: str):
    """Path of a feature set's array (``embeddings.npy`` for :data:`EMBEDDINGS`).

    Raises
    ------
    BadInputError
        A malformed name.
    """
    if name == EMBEDDINGS:
        return project.array_path(EMBEDDINGS)
    return project.root / "features" / f"{_check_name(name)}.npy"


def list_feature_sets(project: Project) -> dict[str, dict]:
    """Every stored feature set with what is known about it.

    Returns
    -------
    dict of str to dict
        name -> ``{"dim": int, "rows": int, "active": bool, "bytes": int (file size), ...}`` plus the info saved
        with it (``kind``, ``feature_type``, ``created``, training figures ...).
        Ordered: the ingest embeddings first, then by creation time.
    """
    info = project.store.get_meta("feature_sets") or {}
    active = active_feature_set(project)
    out: dict[str, dict] = {}
    names = [EMBEDDINGS] + sorted(info, key=lambda n: info[n].get("created", 0))
    for name in names:
        p = feature_set_path(project, name)
        if not p.is_file():
            continue
        a = np.load(p, mmap_mode="r")
        meta = info.get(name, {"kind": "ingest", "feature_type": (project.store.get_meta("backbone") or {}).get(
            "features", "global")})
        out[name] = {**meta, "rows": int(a.shape[0]), "dim": int(a.shape[1]), "active": name == active,
                     "bytes": int(p.stat().st_size)}
    return out


def describe_feature_set(info: dict) -> str:
    """One line for a person about a listed set (an entry of :func:`list_feature_sets`):
    shape, size on disk, kind and feature type, and a fine-tuned set's held-out accuracy
    with the accuracy before it, e.g. ``'2624 x 1280, 12.8 MiB, finetuned, held-out accuracy
    0.860 (before 0.820)'``. Used by ``labeler features`` and the dashboard's Fine-tune tab."""
    from ..disk import size_text

    parts = [f"{info['rows']} x {info['dim']}", size_text(info["bytes"]),
             f"{info.get('kind', '')} {info.get('feature_type', '')}".strip()]
    parts.append(heldout_text(info.get("heldout_accuracy"), info.get("heldout_frozen_accuracy")))
    return ", ".join(p for p in parts if p)


def heldout_text(accuracy: float | None, before: float | None = None) -> str:
    """A press's held-out check for a person: ``'held-out accuracy 0.860 (before 0.820)'``
    (``before``: a logistic regression on the previous feature set, the same held-out
    labels), or ``''`` when the press held none out. Shared by ``labeler features``, the
    job's summary and the dashboard's messages."""
    if accuracy is None:
        return ""
    return f"held-out accuracy {accuracy:.3f}" + ("" if before is None else f" (before {before:.3f})")


def save_feature_set(project: Project, name: str, features: np.ndarray, info: dict | None = None) -> str:
    """Store a feature set (atomically) and record its description; does not activate it.

    Parameters
    ----------
    project : Project
    name : str
        Letters, digits, ``_-.``; not ``'embeddings'`` (ingest owns that one).
    features : ndarray (n_rows, D)
        Converted to float32; row i = the image with ``images.row == i``.
    info : dict, optional
        JSON-serialisable description kept in the database (kind, training figures ...).

    Returns
    -------
    str
        ``name``.

    Raises
    ------
    BadInputError
        A malformed or reserved name, or an array that is not 2-D with one row per
        image row.
    """
    if name == EMBEDDINGS:
        raise BadInputError("'embeddings' is the ingest feature set; choose another name")
    path = feature_set_path(project, name)
    a = np.asarray(features, dtype=np.float32)
    n_rows = project.store.next_row()
    if a.ndim != 2 or a.shape[0] != n_rows:
        raise BadInputError(f"feature set {name!r} has shape {a.shape}; expected ({n_rows}, D)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with write_tracked(project, path) as f:  # atomic, size and checksums in the manifest
        np.save(f, a)
    sets = dict(project.store.get_meta("feature_sets") or {})
    sets[name] = {"created": time.time(), **(info or {})}
    project.store.set_meta(feature_sets=sets)
    return name


def new_feature_set_name(project: Project, stem: str) -> str:
    """The first of ``<stem>-1``, ``<stem>-2`` ... that no feature set has had, stored or
    deleted: a deleted set's name stays its own, so that a clustering or map recorded as
    made in ``finetuned-2`` never comes to mean another network's vectors."""
    taken = set(list_feature_sets(project)) | set(project.store.get_meta("feature_sets") or {})
    return next(f"{stem}-{k}" for k in range(1, 1_000_000) if f"{stem}-{k}" not in taken)


def drop_feature_set(project: Project, name: str) -> dict:
    """Delete a stored feature set to free the disk: ``features/<name>.npy`` and, for a
    fine-tuned set, its network ``models/<name>.pt``.

    What is recorded about it stays in the database, marked ``dropped_at`` (Unix seconds),
    so that clusterings and maps made in it still say which vectors they came from, and
    its name is not given to a new set (:func:`new_feature_set_name`). Clusterings and
    maps made in it stay usable (a map keeps its own arrays). Labels never change. Holds
    the project lock, so it waits for no press: one that is running makes it fail at once.

    Returns
    -------
    dict
        ``name``, ``freed_bytes`` (int, the files deleted).

    Raises
    ------
    BadInputError
        ``'embeddings'`` (the ingest set: search and new photos need it), the active set
        (make another active first), or a malformed name.
    NotFoundError
        No stored feature set has that name.
    ProjectLockedError
        Another process is writing to the project (a press, an ingest ...): nothing was deleted.
    """
    from ..integrity import drop_tracked
    from ..project import project_lock

    if name == EMBEDDINGS:
        raise BadInputError("'embeddings' is the ingest feature set: search and new photos need it; it cannot be deleted")
    path = feature_set_path(project, name)
    with project_lock(project.root, "deletion of a feature set"):
        if not path.is_file():
            known = ", ".join(list_feature_sets(project)) or "none"
            raise NotFoundError(f"no feature set {name!r} in this project (stored: {known})")
        if active_feature_set(project) == name:
            raise BadInputError(f"{name!r} is the active feature set: make another active first "
                                "(`labeler features --use embeddings`)")
        files = [path]
        if feature_set_info(project, name).get("kind") == "finetuned":
            files.append(project.models_dir / f"{name}.pt")
        freed = sum(p.stat().st_size for p in files if p.is_file())
        sets = dict(project.store.get_meta("feature_sets") or {})
        sets[name] = {**sets.get(name, {}), "dropped_at": time.time()}
        project.store.set_meta(feature_sets=sets)  # first: a crash after it leaves listed files a retry deletes
        for p in files:
            drop_tracked(project, p)
    return {"name": name, "freed_bytes": int(freed)}


def feature_set_info(project: Project, name: str) -> dict:
    """The description saved with feature set ``name`` (``kind``, training figures,
    a fine-tuned set's ``train_image_ids`` ...); {} for the ingest embeddings, a
    project array or an unknown name. Reads the database only."""
    return dict((project.store.get_meta("feature_sets") or {}).get(name) or {})


def active_feature_set(project: Project) -> str:
    """Name of the active feature set (:data:`EMBEDDINGS` unless another was chosen)."""
    return project.store.get_meta("active_features") or EMBEDDINGS


def set_active_feature_set(project: Project, name: str) -> None:
    """Make ``name`` the feature set that suggestions and the queue use.

    Raises
    ------
    NotFoundError
        No stored feature set has that name.
    BadInputError
        A malformed name.
    """
    if not feature_set_path(project, name).is_file():
        known = ", ".join(list_feature_sets(project)) or "none"
        raise NotFoundError(f"no feature set {name!r} in this project (stored: {known})")
    project.store.set_meta(active_features=name)


def load_feature_set(project: Project, name: str, *, mmap: bool = True) -> np.ndarray:
    """A stored feature set, (n_rows, D) float32, memory-mapped read-only by default.

    Raises
    ------
    NotFoundError
        No stored feature set has that name.
    ProjectError
        ``'embeddings'`` before the first ingest.
    """
    p = feature_set_path(project, name)
    if not p.is_file():
        if name == EMBEDDINGS:
            raise ProjectError("the project has no embeddings yet: run `labeler ingest` first")
        raise NotFoundError(f"no feature set {name!r} in this project")
    verify(project, p)  # a damaged file: one line naming the command that remakes it
    return np.load(p, mmap_mode="r" if mmap else None)


def active_features(project: Project, *, mmap: bool = True) -> np.ndarray:
    """The active feature set, (n_rows, D) float32 aligned with ``images.row``.

    A feature set made before images were added has fewer rows than the project: then
    the ingest embeddings are returned and the stale set is named in the error-free
    fallback's log line, since vectors of two different networks must not be mixed.
    """
    name = active_feature_set(project)
    a = load_feature_set(project, name, mmap=mmap)
    if name != EMBEDDINGS and a.shape[0] != project.store.next_row():
        import logging

        logging.getLogger(__name__).warning(
            "feature set %r covers %d of %d image rows (images were added since); using the ingest "
            "embeddings until it is recomputed", name, a.shape[0], project.store.next_row())
        return load_feature_set(project, EMBEDDINGS, mmap=mmap)
    return a
