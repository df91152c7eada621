"""Suggestions for a project: a label and two numbers for every unlabelled image.

The two numbers (:mod:`labeler.assist.evidence`): the calibrated **probability** that
the suggested label is right, and the held-out **evidence** for it: whether held-out
labels vouch for it ("vouched >= 0.95 by 60 held-out labels") or how many more it
would take; the *vouched confidence* (probability capped by that evidence) is what
``--min-confidence`` compares with.

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
its event records the vouched confidence at acceptance). The model trains on
every label except ``suggestion``: accepted suggestions are its own guesses.

Suggestions are never labels: :func:`accept` turns them into labels through
:func:`labeler.labels.accept_suggestions` (one undoable action) and never
touches an image that already has a label. It takes a threshold, an expected-error
budget or both, and refuses below probability 0.5 unless asked
(:mod:`labeler.assist.acceptance`).

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
from . import evidence
from .acceptance import LOW_PROBABILITY, AcceptResult, LowProbabilityError, budget_size  # noqa: F401
from . import model as assist_model
from .graph import KnnGraph, cached_knn_graph, fingerprint

#: The feature name that follows the project's active feature set (a fine-tuned set once
#: chosen with ``labeler features --use NAME``; else the PCA vectors of the ingest).
ACTIVE = "active"
#: Confidence bands of ``labeler suggest`` (lower edges).
BANDS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99)
#: Version of the cached suggestions' layout (2: both numbers; 3-4: the deciding expert); an
#: older cache is recomputed.
CACHE_FORMAT = 4


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

    Each suggestion carries **two numbers** (:mod:`labeler.assist.evidence`):
    ``probability``, how likely the suggested label is right, and the held-out
    evidence for it (``confidence``, ``evidence``, ``to_vouch``, ``by_cluster``): what
    held-out labels vouch for, or how many more it would take.

    Attributes
    ----------
    classes : tuple[str, ...], the labels in use (codes index into it)
    image_ids : ndarray (m,), int64, every embedded image
    rows : ndarray (m,), int64, their array rows
    label : ndarray (m,), int64, suggested class code
    confidence : ndarray (m,), float32, the *vouched* confidence in [0, 1]:
        ``min(probability, lower bound)``, the lower bound being the one-sided 95 %
        Clopper-Pearson bound of the held-out accuracy of predictions at least this
        confident (0 without held-out evidence). ``accept --min-confidence`` and
        :meth:`bands` use it.
    margin : ndarray (m,), float32, top-1 minus top-2 probability
    given : ndarray (m,), object, the current label (None = unlabelled)
    version : int, the newest action id the suggestions reflect
    temperature : float, n_calibration : int (see :mod:`labeler.assist.model`)
    features : str, method : str
    probability : ndarray (m,), float32, the calibrated probability in [0, 1] that the
        suggested label is right (temperature scaling; not capped by the evidence)
    evidence : ndarray (m,), float32, held-out labels behind ``confidence`` (held-out
        clusters where ``by_cluster``; a weighted count, so it may be fractional)
    to_vouch : ndarray (m,), int64, more held-out labels (clusters where
        ``by_cluster``), all right and at least this probable, needed before the
        evidence vouches for the probability (at most 0.95); 0 = vouched
    by_cluster : ndarray (m,), bool, the image's cluster has no labelled member: its
        evidence counts held-out clusters, each once
    source : ndarray (m,), object, the expert that decided the suggestion ('model:
        my-classifier', :mod:`labeler.assist.experts`), None = labeler's own model
    experts : dict, per expert: {weight, accuracy, checked} measured on the hand labels
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
    probability: np.ndarray | None = None
    evidence: np.ndarray | None = None
    to_vouch: np.ndarray | None = None
    by_cluster: np.ndarray | None = None
    source: np.ndarray | None = None
    experts: dict | None = None

    def __post_init__(self):
        m = len(self.image_ids)
        if self.source is None:
            self.source = np.full(m, None, dtype=object)
        if self.experts is None:
            self.experts = {}
        if self.probability is None:
            self.probability = np.asarray(self.confidence, np.float32).copy()
        if self.evidence is None:
            self.evidence = np.zeros(m, np.float32)
        if self.to_vouch is None:
            self.to_vouch = np.zeros(m, np.int64)
        if self.by_cluster is None:
            self.by_cluster = np.zeros(m, bool)

    @property
    def vouched(self) -> np.ndarray:
        """(m,) bool: the held-out evidence vouches for the suggestion (``to_vouch`` == 0)."""
        return (self.to_vouch == 0) & (self.evidence > 0)

    def text(self, i: int) -> str:
        """Both numbers of suggestion ``i`` (an index into the arrays) in words:
        'probability 0.97 · vouched ≥ 0.95 by 60 held-out labels'; the expert that decided it
        first ('model: my-classifier; probability ...')."""
        text = evidence.suggestion_text(self.probability[i], self.confidence[i], self.evidence[i],
                                        self.to_vouch[i], self.by_cluster[i])
        return text if self.source[i] is None else f"{self.source[i]}; {text}"

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

    def bands(self, by: str = "confidence") -> dict[str, dict[str, int]]:
        """{label: {band: unlabelled images suggested it with ``by`` in that band}}.

        ``by``: 'confidence' (the vouched confidence, what ``accept --min-confidence``
        compares with) or 'probability'. Bands are half-open ``[lo, hi)`` over
        :data:`BANDS`; the last is ``[0.99, 1]``.
        """
        if by not in ("confidence", "probability"):
            raise BadInputError(f"bands by {by!r}: one of 'confidence', 'probability'")
        values = self.confidence if by == "confidence" else self.probability
        edges = list(BANDS) + [1.0 + 1e-9]
        names = [f"{lo:g}-{hi:g}" if hi <= 1 else f"{lo:g}-1" for lo, hi in zip(edges, edges[1:])]
        un = self.unlabelled
        out = {}
        for c, lab in enumerate(self.classes):
            counts = np.histogram(values[un & (self.label == c)], bins=edges)[0]
            out[lab] = {nm: int(v) for nm, v in zip(names, counts)}
        return out

    def for_image(self, image_id: int) -> tuple[str, float] | None:
        """(suggested label, vouched confidence) of an unlabelled image; None when labelled
        or unknown. :meth:`detail` has both numbers."""
        d = self.detail(image_id)
        return None if d is None else (d["label"], d["confidence"])

    def detail(self, image_id: int) -> dict | None:
        """The suggestion of an unlabelled image, both numbers: {label, probability,
        confidence (vouched), evidence, to_vouch, by_cluster, vouched, text}; None when
        labelled or unknown."""
        hit = np.flatnonzero(self.image_ids == int(image_id))
        if not len(hit) or self.given[hit[0]] is not None or not self.classes:
            return None
        return self._row(int(hit[0]))

    def _row(self, i: int) -> dict:
        return {"image_id": int(self.image_ids[i]), "label": self.classes[int(self.label[i])],
                "probability": round(float(self.probability[i]), 4),
                "confidence": round(float(self.confidence[i]), 4),
                "evidence": round(float(self.evidence[i]), 2), "to_vouch": int(self.to_vouch[i]),
                "by_cluster": bool(self.by_cluster[i]), "vouched": bool(self.vouched[i]), "text": self.text(i),
                "source": self.source[i]}

    def evidence_summary(self) -> dict[str, dict]:
        """{label: {suggested, vouched (how many the evidence vouches for), median
        probability, fewest more labels any unvouched one needs (None: all vouched)}}."""
        un, out = self.unlabelled, {}
        for c, lab in enumerate(self.classes):
            m = un & (self.label == c)
            more = self.to_vouch[m & ~self.vouched]
            out[lab] = {"suggested": int(m.sum()), "vouched": int((m & self.vouched).sum()),
                        "median_probability": round(float(np.median(self.probability[m])), 4) if m.any() else None,
                        "fewest_more_to_vouch": int(more.min()) if len(more) else None}
        return out

    def to_dict(self, per_image: bool = False) -> dict:
        """JSON-ready: bands of both numbers, the evidence per label, the calibration;
        with ``per_image`` every unlabelled image's suggestion (:meth:`detail`)."""
        out = {"labels": self.bands(), "probability_bands": self.bands("probability"),
               "evidence": self.evidence_summary(), "unlabelled": int(self.unlabelled.sum()),
               "temperature": round(self.temperature, 4), "held_out": self.n_calibration,
               "features": self.features, "vouch_level": evidence.VOUCH_LEVEL,
               "experts": [{"source": name, **e, "decides": int((self.unlabelled & (self.source == name)).sum())}
                           for name, e in self.experts.items()]}
        if per_image:
            out["suggestions"] = [self._row(int(i)) for i in np.flatnonzero(self.unlabelled)] if self.classes else []
        return out


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
    project = project if isinstance(project, Project) else Project(project)
    if method not in assist_model.METHODS:
        raise BadInputError(f"unknown suggestion method {method!r}; one of {assist_model.METHODS}")
    from . import memo

    key = memo.state_key(project, features, method, active=ACTIVE) if use_cache else None
    if key is None:
        return _suggest(project, features, method, use_cache)
    return memo.once(key, lambda: _suggest(project, features, method, use_cache))


def _suggest(project: Project, features, method: str, use_cache: bool) -> Suggestions:
    """:func:`suggest` without the in-process memo."""
    import joblib

    x, name = load_features(project, features)
    from .experts import project_experts

    ids, rows, labels, decided, version = _label_state(project)
    experts = project_experts(project, len(x))
    given = np.array([labels.get(int(i)) for i in ids], dtype=object)
    train = [(r, decided[int(i)]) for i, r in zip(ids, rows) if int(i) in decided]
    classes = tuple(sorted({lab for _, lab in train}))
    m = len(ids)
    if not classes:
        z = np.zeros(m, np.float32)
        return Suggestions((), ids, rows, np.zeros(m, np.int64), z, z.copy(), given, version, 1.0, 0, name, method,
                           probability=z.copy())
    cache = _cache_dir(project) / f"state-{name}-{method}.joblib" if use_cache else None
    cached = None
    if cache is not None and cache.is_file():
        try:
            cached = joblib.load(cache)
        except Exception:  # a torn or foreign cache file is only a lost warm start
            cached = None
    if cached and cached.get("format") != CACHE_FORMAT:
        cached = None
    e_key = [e.key for e in experts]
    if cached and cached.get("version") == version and cached.get("fingerprint") == fingerprint(x) \
            and cached.get("experts", []) == e_key and np.array_equal(cached["suggestions"].image_ids, ids):
        return cached["suggestions"]
    graph = knn_graph(project, x, name) if use_cache else cached_knn_graph(x, None)
    t_rows = np.array([r for r, _ in train], dtype=np.int64)
    t_codes = np.array([classes.index(lab) for _, lab in train], dtype=np.int64)
    clusters = clusters_by_row(project, len(x))
    state = cached.get("state") if cached and cached.get("fingerprint") == fingerprint(x) else None
    pred, state = assist_model.predict(x, graph, t_rows, t_codes, classes, method=method, state=state,
                                       clusters=clusters, fitted=fitted_rows(project, name, len(x)),
                                       experts=[(e.name, e.log_proba(classes)) for e in experts])
    names = np.array([None] + [e.name for e in experts], dtype=object)
    out = Suggestions(classes, ids, rows, pred.label[rows], pred.confidence[rows], pred.margin[rows], given,
                      version, pred.temperature, pred.n_calibration, name, method,
                      probability=pred.probability[rows], evidence=pred.evidence[rows],
                      to_vouch=pred.to_vouch[rows], by_cluster=pred.by_cluster[rows],
                      source=names[pred.source[rows] + 1], experts=pred.experts)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp")
            joblib.dump({"format": CACHE_FORMAT, "version": version, "fingerprint": fingerprint(x), "suggestions": out,
                         "state": state, "experts": e_key}, tmp)
            os.replace(tmp, cache)
        except OSError:
            pass
    return out


def plan_accept(sug: Suggestions, label: str, min_confidence: float | None = None, *,
                max_expected_error: float | None = None, image_ids=None) -> np.ndarray:
    """Which suggestions :func:`accept` would take: positions into ``sug``'s arrays, (k,)
    int64, most probable first (ties: higher vouched confidence first).

    Unlabelled images suggested ``label`` with vouched confidence >= ``min_confidence``
    (0 when None), only ``image_ids`` when given, then the largest prefix within the
    expected-error budget ``max_expected_error`` (:func:`budget_size`) when given.

    Raises
    ------
    BadInputError
        Nothing meets the criteria.
    NotFoundError
        An image id that does not exist (any more) or has no embedding.
    """
    thr = 0.0 if min_confidence is None else float(min_confidence)
    ids, _ = sug.suggested(label, thr)
    if image_ids is not None:
        want = {int(i) for i in image_ids}
        unknown = want - set(sug.image_ids.tolist())
        if unknown:
            raise NotFoundError(f"image id(s) {sorted(unknown)[:10]} do not exist (any more); nothing changed")
        ids = ids[np.isin(ids, list(want))]
        if len(ids) == 0 and len(sug.suggested(label, thr)[0]):
            raise BadInputError(f"image(s) {sorted(want)[:10]} carry no suggestion of {label!r} at vouched confidence "
                                f"{thr:g} (labelled, or suggested another label); nothing changed")
    if len(ids) == 0:
        best = sug.suggested(label)[1]
        top = f"the highest is {best[0]:.3f}" if len(best) else f"no unlabelled image is suggested {label!r}"
        if len(best) and float(sug.probability[sug.unlabelled & (sug.label == sug.classes.index(label))].max()) >= thr:
            top += ": the held-out labels are too few to vouch for more; label more, or accept by an expected-error budget"
        raise BadInputError(f"no suggestion of {label!r} reaches vouched confidence {thr:g} ({top}); nothing changed")
    order = np.argsort(sug.image_ids, kind="stable")
    pos = order[np.searchsorted(sug.image_ids[order], ids)]
    pos = pos[np.lexsort((-sug.confidence[pos], -sug.probability[pos]))]
    if max_expected_error is not None:
        k = budget_size(sug.probability[pos], float(max_expected_error))
        if k == 0:
            raise BadInputError(f"no suggestion of {label!r} fits an expected error of {float(max_expected_error):g} "
                                f"(the most probable is {sug.probability[pos[0]]:.3f}); nothing changed")
        pos = pos[:k]
    return pos.astype(np.int64)


def low_probability(sug: Suggestions | None, pos: np.ndarray, label: str,
                    min_confidence: float | None = None) -> LowProbabilityError | None:
    """The refusal an accept of ``pos`` (:func:`plan_accept`) needs confirming for, or None:
    a threshold below :data:`LOW_PROBABILITY`, or an accepted probability below it."""
    if min_confidence is not None and float(min_confidence) < LOW_PROBABILITY:
        return LowProbabilityError(f"a threshold below {LOW_PROBABILITY:g} ({float(min_confidence):g}) accepts "
                                   "suggestions that may be more likely wrong than right", float(min_confidence),
                                   len(pos))
    if sug is None or not len(pos):
        return None
    p = sug.probability[pos]
    if float(p.min()) >= LOW_PROBABILITY:
        return None
    n_low = int((p < LOW_PROBABILITY).sum())
    return LowProbabilityError(f"{n_low:,} of the {len(pos):,} suggestion(s) of {label!r} have probability below "
                               f"{LOW_PROBABILITY:g} (lowest {float(p.min()):.2f}: more likely wrong than right)",
                               float(p.min()), len(pos))


def accept(project: Project | Path | str, label: str, min_confidence: float | None = None, *,
           max_expected_error: float | None = None, allow_low: bool = False, annotator: str | None = None,
           image_ids=None, features: str | os.PathLike | np.ndarray = "active",
           method: str = "combined") -> AcceptResult:
    """Accept suggestions of ``label`` as labels, in one undoable action.

    Two ways to choose them, alone or together (then both hold):

    - ``min_confidence``: every suggestion whose *vouched* confidence
      (:attr:`Suggestions.confidence`) is at least this;
    - ``max_expected_error``: an expected-error budget: of those, the largest set,
      most probable first, whose expected wrong count ``sum(1 - probability)`` is at
      most this share of the set (:func:`budget_size`).

    The result reports the expected wrong count and an upper bound of it from the
    held-out evidence (:class:`AcceptResult`). Goes through
    :func:`labeler.labels.accept_suggestions` (source ``suggestion``, each image's
    vouched confidence in its label event, the threshold in the action's description):
    an image labelled meanwhile is skipped, never relabelled.

    Parameters
    ----------
    project : Project or path
    label : str, the suggested label to accept
    min_confidence : float in [0, 1] or None
    max_expected_error : float in [0, 1] or None
    allow_low : bool
        Accept even when ``min_confidence`` or an accepted probability is below
        :data:`LOW_PROBABILITY` (more likely wrong than right); else that is refused.
    annotator : str or None
    image_ids : sequence of int or None
        Only these images (one by one from the dashboard); None = every unlabelled
        image suggested ``label``. With ``image_ids``, neither criterion is needed.
    features, method : as in :func:`suggest`

    Returns
    -------
    AcceptResult

    Raises
    ------
    LowProbabilityError
        Below 0.5 without ``allow_low`` (nothing changed).
    BadInputError
        A criterion outside [0, 1] or none given, nothing meets them, or every chosen
        image was labelled meanwhile (nothing changed).
    NotFoundError
        An image id that does not exist (any more) or has no embedding.
    """
    from .. import labels as label_actions

    project = project if isinstance(project, Project) else Project(project)
    for name, v in (("--min-confidence", min_confidence), ("--max-expected-error", max_expected_error)):
        if v is not None and not 0.0 <= float(v) <= 1.0:
            raise BadInputError(f"{name} {v} is outside [0, 1]")
    if min_confidence is None and max_expected_error is None and image_ids is None:
        raise BadInputError("give a minimum confidence (--min-confidence) or an expected-error budget "
                            "(--max-expected-error); nothing changed")
    sug = suggest(project, features=features, method=method)
    pos = plan_accept(sug, label, min_confidence, max_expected_error=max_expected_error, image_ids=image_ids)
    err = low_probability(sug, pos, label, min_confidence)
    if err is not None and not allow_low:
        raise err
    thr = 0.0 if min_confidence is None else float(min_confidence)
    conf = np.minimum(sug.confidence[pos], 1.0).astype(float)
    recorded = thr if min_confidence is not None else float(np.floor(conf.min() * 1000) / 1000)
    res = label_actions.accept_suggestions(
        project, sug.image_ids[pos].tolist(), [label] * len(pos), conf.tolist(), recorded,
        source=SUGGESTION_SOURCE, annotator=annotator)
    if res.action_id is None or not res.written:
        raise BadInputError(f"every chosen suggestion of {label!r} was labelled meanwhile; nothing changed")
    done = np.isin(sug.image_ids[pos], res.written)
    p, v = sug.probability[pos][done], sug.confidence[pos][done]
    return AcceptResult(res, label, None if min_confidence is None else float(min_confidence),
                        None if max_expected_error is None else float(max_expected_error), p.astype(np.float32),
                        float(np.sum(1.0 - p)), float(np.sum(1.0 - v)))
