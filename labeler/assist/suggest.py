"""Suggestions for a project: a label and a calibrated confidence for every unlabelled image.

This is the project-facing layer over :mod:`labeler.assist.model`: it reads the
labels given so far and a feature matrix, computes (or reloads) the suggestions,
and caches what makes the next refresh fast under ``PROJECT/assist/``:

- ``knn-<features>-k<k>.npz``: the kNN graph of the features (labels never change it);
- ``state-<features>-<method>.joblib``: the last suggestions and the model's warm
  start, keyed by the newest action id (any label, accept or undo makes a new one).

Label sources (``labels.source`` / ``label_events.source``; exports show them as
provenance): ``manual`` (a person chose the label for the image), ``cluster`` (a
person labelled a whole cluster), ``search`` (labelled from a search result),
``propagated`` (older bulk propagation), ``suggestion`` (an accepted suggestion;
its event records the calibrated confidence at acceptance). The model trains on
every label except ``suggestion``: accepted suggestions are its own guesses.

Suggestions are never labels: :func:`accept` turns them into labels through
:func:`labeler.labels.accept_suggestions` (one undoable action) and never
touches an image that already has a label.

Feature sets: ``pca`` (default, ``pca.npy``), ``embeddings`` (``embeddings.npy``,
L2-normalised here), any other ``<name>.npy`` array of the project (e.g. features
added by a later stage), or the path of an N x D ``.npy`` file aligned with
``images.row``; the library calls also take an ndarray.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInputError, NotFoundError, NotIngestedError
from ..project import Project
from ..store.schema import SUGGESTION_SOURCE  # what accept() records as the source
from . import model as assist_model
from .graph import KnnGraph, cached_knn_graph, fingerprint

#: The feature name that follows the project's active feature set (a fine-tuned set once
#: chosen with ``labeler features --use NAME``; else the PCA vectors of the ingest).
ACTIVE = "active"
#: Confidence bands of ``labeler suggest`` (lower edges).
BANDS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99)


def load_features(project: Project, features: str | os.PathLike | np.ndarray = "active") -> tuple[np.ndarray, str]:
    """The feature matrix of a project, L2-normalised, one row per array row.

    Parameters
    ----------
    project : Project
    features : str, path or ndarray
        ``active`` (the project's active feature set: a fine-tuned or other stored set
        once chosen, else ``pca``), a project array (``pca``, ``embeddings``), a stored
        feature set's name, a ``.npy`` path, or an (n_rows, D) array.

    Returns
    -------
    x : ndarray (n_rows, D), float32, unit rows (zero rows stay zero)
    name : str, a short name for cache files

    Raises
    ------
    NotIngestedError
        The project has no such array yet (no embeddings: run ``labeler ingest``).
    BadInputError
        The matrix is not 2-D or its row count differs from the project's.
    """
    n_rows = len(project.store.row_image_ids())
    if isinstance(features, np.ndarray):
        x, name = features, f"array-{fingerprint(features)}"
    else:
        p = Path(features)
        if p.suffix == ".npy":
            if not p.is_file():
                raise NotIngestedError(f"feature file not found: {p}")
            x, name = np.load(p, mmap_mode="r"), "file-" + p.stem
        else:
            x, name = _named_features(project, str(features))
    if x.ndim != 2 or len(x) != n_rows or n_rows == 0:
        raise BadInputError(f"features {name!r} have shape {x.shape}; the project has {n_rows} image rows")
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32), name


@dataclass
class Suggestions:
    """The suggestions of a project at one moment.

    Attributes
    ----------
    classes : tuple[str, ...], the labels in use (codes index into it)
    image_ids : ndarray (m,), int64, every embedded image
    rows : ndarray (m,), int64, their array rows
    label : ndarray (m,), int64, suggested class code
    confidence : ndarray (m,), float32, calibrated confidence in [0, 1]
    margin : ndarray (m,), float32, top-1 minus top-2 probability
    given : ndarray (m,), object, the current label (None = unlabelled)
    version : int, the newest action id the suggestions reflect
    temperature : float, n_calibration : int (see :mod:`labeler.assist.model`)
    features : str, method : str
    """

    classes: tuple[str, ...]
    image_ids: np.ndarray
    rows: np.ndarray
    label: np.ndarray
    confidence: np.ndarray
    margin: np.ndarray
    given: np.ndarray
    version: int
    temperature: float
    n_calibration: int
    features: str
    method: str

    @property
    def unlabelled(self) -> np.ndarray:
        """(m,) bool: images without a label (the only ones that carry a suggestion)."""
        return np.array([g is None for g in self.given], dtype=bool)

    def suggested(self, label: str | None = None, min_confidence: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Unlabelled images suggested ``label`` (None: any) at ``min_confidence`` or more.

        Returns (image ids (k,) int64, confidences (k,) float32), most confident first.
        """
        m = self.unlabelled & (self.confidence >= min_confidence)
        if label is not None:
            if label not in self.classes:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            m &= self.label == self.classes.index(label)
        idx = np.flatnonzero(m)
        idx = idx[np.argsort(-self.confidence[idx], kind="stable")]
        return self.image_ids[idx], self.confidence[idx]

    def bands(self) -> dict[str, dict[str, int]]:
        """{label: {band: unlabelled images suggested it with a confidence in that band}}.

        Bands are half-open ``[lo, hi)`` over :data:`BANDS`; the last is ``[0.99, 1]``.
        """
        edges = list(BANDS) + [1.0 + 1e-9]
        names = [f"{lo:g}-{hi:g}" if hi <= 1 else f"{lo:g}-1" for lo, hi in zip(edges, edges[1:])]
        un = self.unlabelled
        out = {}
        for c, lab in enumerate(self.classes):
            conf = self.confidence[un & (self.label == c)]
            counts = np.histogram(conf, bins=edges)[0]
            out[lab] = {nm: int(v) for nm, v in zip(names, counts)}
        return out

    def for_image(self, image_id: int) -> tuple[str, float] | None:
        """(suggested label, confidence) of an unlabelled image; None when labelled or unknown."""
        hit = np.flatnonzero(self.image_ids == int(image_id))
        if not len(hit) or self.given[hit[0]] is not None:
            return None
        i = hit[0]
        return self.classes[int(self.label[i])], float(self.confidence[i])


def fitted_rows(project: Project, features: str, n_rows: int) -> np.ndarray | None:
    """(n_rows,) bool: the rows a fine-tuned feature set named ``features`` was trained
    on with their labels (its ``train_image_ids``); None for any other features.
    The suggestion model never calibrates on them (:func:`labeler.assist.model.predict`)."""
    from ..embedding import feature_sets  # numpy only: no torch

    info = feature_sets.feature_set_info(project, features)
    ids = info.get("train_image_ids")
    if info.get("kind") != "finetuned" or ids is None:
        return None
    rows = project.store.row_of(np.asarray(ids, dtype=np.int64))
    out = np.zeros(n_rows, bool)
    out[rows[(rows >= 0) & (rows < n_rows)]] = True
    return out


def _named_features(project: Project, name: str) -> tuple[np.ndarray, str]:
    """A project array (``pca``, ``embeddings``) or a stored feature set
    (:mod:`labeler.embedding.feature_sets`, e.g. a fine-tuned one); ``active``: the
    project's active feature set, its PCA vectors when that is the ingest embeddings."""
    from ..embedding import feature_sets  # numpy only: no torch

    if name == ACTIVE:
        name = feature_sets.active_feature_set(project)
        name = "pca" if name == feature_sets.EMBEDDINGS else name
    if project.has_array(name):
        return project.load_array(name), name
    path = feature_sets.feature_set_path(project, name)
    if not path.is_file():
        raise NotIngestedError(f"the project has no {name!r} features: run `labeler ingest` first, "
                               "or `labeler features` to list the feature sets")
    return np.load(path, mmap_mode="r"), name


def _label_state(project: Project):
    """(image ids, rows) of embedded images, {image id: label}, the labels a person decided
    (:meth:`~labeler.store.Store.decided_labels`, what the model learns from), version."""
    store = project.store
    table = [r for r in store.image_table() if r["status"] == "embedded"]
    ids = np.array([r["id"] for r in table], dtype=np.int64)
    rows = np.array([r["row"] for r in table], dtype=np.int64)
    labels, decided = store.labels(), store.decided_labels()
    newest = store.actions(limit=1)
    return ids, rows, labels, decided, int(newest[0]["id"]) if newest else 0


def clusters_by_row(project: Project, n_rows: int) -> np.ndarray | None:
    """(n_rows,) int64 cluster of each array row in the current clustering (-1 = noise,
    not clustered or not embedded); None when the project has no clustering. The
    suggestion model's calibration holds out whole clusters by it
    (:func:`labeler.assist.model.predict`)."""
    if project.store.current_clustering() is None:
        return None
    ids, clusters, _ = project.store.assignments()
    rows = project.store.row_of(ids)
    out = np.full(n_rows, -1, np.int64)
    ok = (rows >= 0) & (rows < n_rows)
    out[rows[ok]] = clusters[ok]
    return out


def _cache_dir(project: Project) -> Path:
    return project.root / "assist"


def knn_graph(project: Project, x: np.ndarray, name: str, k: int = 10) -> KnnGraph:
    """The project's cached kNN graph of feature set ``name`` (built on first use)."""
    return cached_knn_graph(x, _cache_dir(project) / f"knn-{name}-k{k}.npz", k)


def suggest(project: Project | Path | str, *, features: str | os.PathLike | np.ndarray = "active",
            method: str = "combined", use_cache: bool = True) -> Suggestions:
    """Suggest a label with a calibrated confidence for every unlabelled image.

    Recomputes only when a label action happened since the cached suggestions
    (warm-starting the model from them); reuses the cached kNN graph.

    Parameters
    ----------
    project : Project or path
    features : feature set name, ``.npy`` path or (n_rows, D) array (see :func:`load_features`)
    method : 'combined' (default), 'probe' or 'spreading' (:mod:`labeler.assist.model`)
    use_cache : bool
        Read and write ``PROJECT/assist/`` (a read-only project works without).

    Returns
    -------
    Suggestions
        With no labels yet, every image gets no suggestion (``classes`` empty).

    Raises
    ------
    NotIngestedError
        No such features (no embeddings yet).
    BadInputError
        Features of the wrong shape, or an unknown method.
    """
    import joblib

    project = project if isinstance(project, Project) else Project(project)
    if method not in assist_model.METHODS:
        raise BadInputError(f"unknown suggestion method {method!r}; one of {assist_model.METHODS}")
    x, name = load_features(project, features)
    ids, rows, labels, decided, version = _label_state(project)
    given = np.array([labels.get(int(i)) for i in ids], dtype=object)
    train = [(r, decided[int(i)]) for i, r in zip(ids, rows) if int(i) in decided]
    classes = tuple(sorted({lab for _, lab in train}))
    m = len(ids)
    if not classes:
        z = np.zeros(m, np.float32)
        return Suggestions((), ids, rows, np.zeros(m, np.int64), z, z.copy(), given, version, 1.0, 0, name, method)
    cache = _cache_dir(project) / f"state-{name}-{method}.joblib" if use_cache else None
    cached = None
    if cache is not None and cache.is_file():
        try:
            cached = joblib.load(cache)
        except Exception:  # a torn or foreign cache file is only a lost warm start
            cached = None
    if cached and cached.get("version") == version and cached.get("fingerprint") == fingerprint(x) \
            and np.array_equal(cached["suggestions"].image_ids, ids):
        return cached["suggestions"]
    graph = knn_graph(project, x, name) if use_cache else cached_knn_graph(x, None)
    t_rows = np.array([r for r, _ in train], dtype=np.int64)
    t_codes = np.array([classes.index(lab) for _, lab in train], dtype=np.int64)
    clusters = clusters_by_row(project, len(x))
    state = cached.get("state") if cached and cached.get("fingerprint") == fingerprint(x) else None
    pred, state = assist_model.predict(x, graph, t_rows, t_codes, classes, method=method, state=state,
                                       clusters=clusters, fitted=fitted_rows(project, name, len(x)))
    out = Suggestions(classes, ids, rows, pred.label[rows], pred.confidence[rows], pred.margin[rows], given,
                      version, pred.temperature, pred.n_calibration, name, method)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp")
            joblib.dump({"version": version, "fingerprint": fingerprint(x), "suggestions": out, "state": state}, tmp)
            os.replace(tmp, cache)
        except OSError:
            pass
    return out


def accept(project: Project | Path | str, label: str, min_confidence: float, *, annotator: str | None = None,
           image_ids=None, features: str | os.PathLike | np.ndarray = "active", method: str = "combined"):
    """Accept the suggestions of ``label`` at ``min_confidence`` or more as one undoable action.

    Goes through :func:`labeler.labels.accept_suggestions` (source ``suggestion``,
    each image's confidence recorded in its label event, the threshold in the
    action's description). Images that already have a label are never touched.

    Parameters
    ----------
    project : Project or path
    label : str, the suggested label to accept
    min_confidence : float in [0, 1]
    annotator : str or None
    image_ids : sequence of int or None
        Accept only these images (one by one from the dashboard); None = every
        unlabelled image suggested ``label``.
    features, method : as in :func:`suggest`

    Returns
    -------
    (action id, accepted image ids)

    Raises
    ------
    BadInputError
        ``min_confidence`` outside [0, 1], or no suggestion of ``label`` reaches it
        (nothing changed).
    NotFoundError
        An image id that does not exist (any more) or has no embedding.
    """
    from .. import labels as label_actions

    project = project if isinstance(project, Project) else Project(project)
    if not 0.0 <= float(min_confidence) <= 1.0:
        raise BadInputError(f"--min-confidence {min_confidence} is outside [0, 1]")
    sug = suggest(project, features=features, method=method)
    ids, conf = sug.suggested(label, float(min_confidence))
    if image_ids is not None:
        want = {int(i) for i in image_ids}
        unknown = want - set(sug.image_ids.tolist())
        if unknown:
            raise NotFoundError(f"image id(s) {sorted(unknown)[:10]} do not exist (any more); nothing changed")
        keep = np.isin(ids, list(want))
        ids, conf = ids[keep], conf[keep]
    if len(ids) == 0:
        best = sug.suggested(label)[1]
        top = f"the highest is {best[0]:.3f}" if len(best) else f"no unlabelled image is suggested {label!r}"
        raise BadInputError(f"no suggestion of {label!r} reaches confidence {min_confidence:g} ({top}); "
                            "nothing changed")
    store = project.store
    with store.transaction():  # re-entrant: the check and the accept are one atomic step
        # A label given since the suggestions were computed (another annotator) is never overwritten.
        taken = store.current_label_rows(ids.tolist())
        keep = np.array([int(i) not in taken for i in ids], dtype=bool)
        ids, conf = ids[keep], conf[keep]
        if len(ids) == 0:
            raise BadInputError(f"every suggestion of {label!r} above {min_confidence:g} was labelled "
                                "meanwhile; nothing changed")
        action, done = label_actions.accept_suggestions(
            project, ids.tolist(), [label] * len(ids), np.minimum(conf, 1.0).astype(float).tolist(),
            float(min_confidence), source=SUGGESTION_SOURCE, annotator=annotator)
    return action, done
