"""The suggestion model: label spreading + a linear probe, calibrated on held-out labels.

Pure numpy / scikit-learn; nothing here reads a project (see
:mod:`labeler.assist.suggest` for that).

Method (chosen by measurement on ELPV, ``benchmarks/bench_labeling.py``):

- **label spreading** on the kNN graph (Zhou et al. 2004, "Learning with local
  and global consistency", NIPS): ``F <- alpha S F + (1 - alpha) Y`` iterated,
  warm-started from the previous refresh;
- a **linear probe**: multinomial logistic regression on the L2-normalised
  features (scikit-learn ``LogisticRegression``, lbfgs, warm-started from the
  previous coefficients);
- the two are combined as a product of experts (Hinton 2002): the normalised
  product of their class probabilities;
- **calibration** by temperature scaling (Guo et al. 2017, "On calibration of
  modern neural networks", ICML): one temperature fitted by minimising the
  negative log-likelihood of out-of-fold predictions of the labelled images
  (k folds by image), with a prior on T for small samples: the suggestion's
  **probability**. Apart from it, the **evidence**: what held-out predictions at
  least that confident showed (:mod:`labeler.assist.evidence`, one-sided
  Clopper-Pearson bounds): a handful of labels cannot vouch for 99 %. The
  *vouched confidence* is the probability capped by that bound. With the
  clustering given, the held-out evidence for an image in a cluster nobody
  labelled comes from folds of whole clusters (grouped cross-validation), each
  held-out cluster counting as one observation: labels of a few whole clusters
  vouch only for what other clusters confirm
  (``benchmarks/bench_calibration.py``);
- **more experts** (imported predictions, a zero-shot model): a weighted
  logarithmic opinion pool whose weights are fitted with the temperature on the
  same out-of-fold predictions (stacking; :mod:`labeler.assist.experts`), so an
  expert's say is what the held-out labels measured, never trusted blindly.

The spreading of every fold runs in the same sparse products as the main one
(its seed matrices are stacked as extra columns), so calibration costs one
spreading pass, not k.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .evidence import (EVIDENCE_ALPHA, VOUCH_LEVEL, Evidence, evidence_bound, evidence_detail,  # noqa: F401
                       more_to_vouch, vouch_target)
from ..probe import fit_probe, log_softmax, probe_logits  # noqa: F401 (re-exported: one probe)
from .experts import deciding, fit_pool
from .graph import KnnGraph

METHODS = ("combined", "probe", "spreading")
@dataclass
class ModelState:
    """What one refresh hands to the next (warm starts), tied to one class list.

    Attributes
    ----------
    classes : tuple[str, ...]
    coef : ndarray (C or 1, D) float64 or None, last probe coefficients
    intercept : ndarray (C or 1,) float64 or None
    spread : ndarray (n, (folds + 1) * C) float32 or None, last spreading scores
    temperature : float
    n_calibration : int, held-out predictions behind ``temperature``
    n_labelled_at_calibration : int
    oof_confidence, oof_correct : held-out evidence of image folds (:func:`evidence_bound`)
    cross_confidence, cross_correct, cross_count : the same for folds of whole clusters
        (each held-out cluster counts once), or None
    """

    classes: tuple[str, ...]
    coef: np.ndarray | None = None
    intercept: np.ndarray | None = None
    spread: np.ndarray | None = None
    temperature: float = 1.0
    n_calibration: int = 0
    n_labelled_at_calibration: int = 0
    oof_confidence: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    oof_correct: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cross_confidence: np.ndarray | None = None
    cross_correct: np.ndarray | None = None
    cross_count: np.ndarray | None = None
    expert_key: tuple = ()
    expert_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    model_temperature: float = 1.0


@dataclass
class Prediction:
    """Calibrated class probabilities of every row.

    Attributes
    ----------
    classes : tuple[str, ...], C labels (codes index into it)
    proba : ndarray (n, C), float32, rows sum to 1
    label : ndarray (n,), int64, argmax of ``proba``
    confidence : ndarray (n,), float32, the *vouched* confidence: the calibrated
        probability of ``label`` capped by what held-out labels back
        (:func:`evidence_detail`; 0 without held-out evidence)
    margin : ndarray (n,), float32, top-1 minus top-2 probability (uncertainty
        sampling's margin, Scheffer et al. 2001) of the model's own probabilities (experts
        left out)
    temperature : float
    n_calibration : int
    probability : ndarray (n,), float32, the calibrated probability of ``label``
        (temperature scaling, not capped): how likely the suggestion is right
    evidence : ndarray (n,), float32, held-out predictions behind ``confidence``
        (:attr:`Evidence.count`; held-out clusters where ``by_cluster``)
    to_vouch : ndarray (n,), int64, more held-out labels (clusters where
        ``by_cluster``), all right, needed to vouch for the probability (at most
        :data:`VOUCH_LEVEL`); 0 = vouched
    by_cluster : ndarray (n,), bool, the evidence counts held-out clusters: the
        image's cluster has no labelled member
    source : ndarray (n,), int64, the expert (index into ``experts``) that decided the
        suggestion, -1 = the model's own (:func:`labeler.assist.experts.deciding`)
    experts : dict, per expert name: {weight (fitted on held-out labels), accuracy (of its
        top label on the labelled images it scored), checked (how many)}
    """

    classes: tuple[str, ...]
    proba: np.ndarray
    label: np.ndarray
    confidence: np.ndarray
    margin: np.ndarray
    temperature: float = 1.0
    n_calibration: int = 0
    extra: dict = field(default_factory=dict)
    probability: np.ndarray | None = None
    evidence: np.ndarray | None = None
    to_vouch: np.ndarray | None = None
    by_cluster: np.ndarray | None = None
    source: np.ndarray | None = None
    experts: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.label)
        if self.source is None:
            self.source = np.full(n, -1, np.int64)
        if self.probability is None:
            self.probability = self.proba[np.arange(n), self.label].astype(np.float32) if n else \
                np.zeros(0, np.float32)
        if self.evidence is None:
            self.evidence = np.zeros(n, np.float32)
        if self.to_vouch is None:
            self.to_vouch = more_to_vouch(np.zeros(n), np.zeros(n), vouch_target(self.probability))
        if self.by_cluster is None:
            self.by_cluster = np.zeros(n, bool)


# -- label spreading ----------------------------------------------------------------------
def spread(graph: KnnGraph, seeds: np.ndarray, n_classes: int, *, alpha: float = 0.9,
           n_iter: int = 20, init: np.ndarray | None = None) -> np.ndarray:
    """Iterate ``F <- alpha S F + (1 - alpha) Y`` (Zhou et al. 2004).

    Parameters
    ----------
    graph : KnnGraph
    seeds : ndarray (n, m), float32
        ``Y``: one-hot rows for labelled images (several stacked problems may share
        the call: m = problems x classes), zeros elsewhere.
    n_classes : int
        Unused by the iteration; kept for the shape check.
    alpha : float in (0, 1)
    n_iter : int
        Iterations; a warm start (``init``) needs fewer.
    init : ndarray (n, m) or None
        The previous ``F`` (warm start).

    Returns
    -------
    ndarray (n, m), float32, unnormalised scores
    """
    s = graph.normalized()
    y = np.asarray(seeds, dtype=np.float32)
    if y.shape[0] != graph.n or y.shape[1] % max(n_classes, 1):
        raise ValueError(f"seed matrix {y.shape} does not fit {graph.n} rows x {n_classes} classes")
    f = y.copy() if init is None or init.shape != y.shape else init.astype(np.float32, copy=True)
    base = (1.0 - alpha) * y
    for _ in range(n_iter):
        f = alpha * (s @ f) + base
    return f


def _normalise_rows(f: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    tot = f.sum(axis=1, keepdims=True)
    c = f.shape[1]
    return np.where(tot > eps, f / np.maximum(tot, eps), 1.0 / c).astype(np.float32)


# -- calibration --------------------------------------------------------------------------
def fit_temperature(logp: np.ndarray, y: np.ndarray, *, prior_sd: float = 0.5) -> float:
    """Temperature T of ``softmax(logp / T)`` (Guo et al. 2017), a MAP estimate.

    Guo et al. minimise the negative log-likelihood (NLL) of held-out predictions.
    With a few dozen held-out labels that minimum is unstable (all of them right
    sends T to 0: every probability to 1), so a log-normal prior centred on T = 1
    (standard deviation ``prior_sd`` in log T) is added: the estimate minimises
    ``mean NLL + (log T)^2 / (2 prior_sd^2 m)``, which the data overrides as the
    number m of held-out labels grows.

    Parameters
    ----------
    logp : ndarray (m, C), float, log-probabilities (or logits)
    y : ndarray (m,), int, true codes
    prior_sd : float

    Returns
    -------
    float in [0.05, 20]
    """
    from scipy.optimize import minimize_scalar

    logp = np.where(np.isfinite(logp), logp, -1e4)
    m = max(len(y), 1)

    def loss(log_t):
        lp = log_softmax(logp / np.exp(log_t))
        return -float(np.mean(lp[np.arange(len(y)), y])) + log_t**2 / (2 * prior_sd**2 * m)

    r = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(r.x))


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> float:
    """ECE with equal-width confidence bins (Naeini et al. 2015; Guo et al. 2017, eq. 3).

    Parameters
    ----------
    confidence : ndarray (m,), float in [0, 1]
    correct : ndarray (m,), bool

    Returns
    -------
    float in [0, 1]: the bin-size-weighted mean |accuracy - confidence|
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if len(confidence) == 0:
        return float("nan")
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        m = bins == b
        ece += m.mean() * abs(correct[m].mean() - confidence[m].mean())
    return float(ece)


def stable_folds(rows: np.ndarray, y: np.ndarray, n_folds: int,
                 groups: np.ndarray | None = None) -> np.ndarray:
    """Cross-validation fold of each labelled row, whole groups held out together.

    The fold of an image depends only on its row (a multiplicative hash, Knuth's
    2654435761), so an image stays in its fold as labels are added and the folds'
    label spreading can be warm-started from the previous calibration. Rows of one
    group share a fold (grouped cross-validation, as scikit-learn's ``GroupKFold``):
    an annotator labels whole clusters, and near-identical members of one cluster on
    both sides of a fold make the held-out predictions, hence the confidence, look
    better than they are on clusters nobody has labelled. The suggestions' calibration
    and :mod:`labeler.review` (likely label errors) use these folds.

    Parameters
    ----------
    rows : ndarray (m,) int64
        Stable key of each labelled row (its array row).
    y : ndarray (m,) int64
        Class index of each labelled row.
    n_folds : int
        Number of folds.
    groups : ndarray (m,) int64 or None
        Group of each labelled row (e.g. its cluster; -1 = a group of its own); None:
        every row is its own group.

    Returns
    -------
    ndarray (m,) int64
        Fold id 0..n_folds-1 per row; -1 = always trained on (its class has a single example).
    """
    key = np.asarray(rows, dtype=np.int64)
    if groups is not None:
        g = np.asarray(groups, dtype=np.int64)
        key = np.where(g >= 0, g + (1 << 40), key)  # groups apart from the rows' own keys
    fold = ((key.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
            % np.uint64(n_folds)).astype(np.int64)
    counts = np.bincount(y)
    fold[counts[y] < 2] = -1
    return fold


# -- the whole model ----------------------------------------------------------------------
def _held_out_evidence(oof: np.ndarray, codes: np.ndarray, held: np.ndarray, temperature: float,
                       groups: np.ndarray | None = None):
    """The input of :func:`evidence_bound` from held-out predictions ``oof[held]``
    (log-probabilities, (m, C)) at ``temperature``: (confidences descending, cumulative
    count right, cumulative count). With ``groups`` (m,) each held-out prediction
    weighs 1 / (its group's held-out size): a cluster counts as one observation."""
    if held.sum() < 2:
        return np.zeros(0, np.float32), np.zeros(0, np.float64), np.zeros(0, np.float64)
    lp = np.where(np.isfinite(oof[held]), oof[held], -1e4)
    p_oof = np.exp(log_softmax(lp / temperature))
    order = np.argsort(-p_oof.max(axis=1), kind="stable")
    w = np.ones(int(held.sum()))
    if groups is not None:
        g = np.asarray(groups)[held]
        _, inv, size = np.unique(g, return_inverse=True, return_counts=True)
        w = np.where(g >= 0, 1.0 / size[inv], 1.0)  # noise images are their own groups
    right = (np.argmax(p_oof, axis=1) == codes[held]).astype(np.float64)
    return p_oof.max(axis=1)[order], np.cumsum((w * right)[order]), np.cumsum(w[order])


def predict(x: np.ndarray, *args, **kwargs) -> tuple[Prediction, ModelState]:
    """Calibrated suggestions for every row; see :func:`_predict` for the parameters.

    BLAS runs single-threaded here: the probe's problems are small (a few hundred
    labelled rows), and on a busy 2-core machine a second BLAS thread made each
    L-BFGS step 10x slower, not faster.
    """
    from ..index import one_blas_thread  # one cached ThreadpoolController: building one per
    # call rescans every loaded library, which dominated the simulation's time

    with one_blas_thread():
        return _predict(x, *args, **kwargs)


def _predict(x: np.ndarray, graph: KnnGraph, rows: np.ndarray, codes: np.ndarray, classes, *,
            method: str = "combined", state: ModelState | None = None, c: float = 10.0,
            alpha: float = 0.9, n_iter: int = 20, n_iter_warm: int = 5, n_folds: int = 5, recalibrate: float = 0.1,
            balanced: bool = False, seed: int = 0, clusters: np.ndarray | None = None,
            fitted: np.ndarray | None = None, experts=None) -> tuple[Prediction, ModelState]:
    """Calibrated suggestions for every row from the labelled rows.

    Parameters
    ----------
    x : ndarray (n, d), float32, L2-normalised features
    graph : KnnGraph of ``x``
    rows : ndarray (m,), int, labelled rows
    codes : ndarray (m,), int, their class codes (index into ``classes``)
    classes : sequence of str, C >= 1 labels
    method : 'combined', 'probe' or 'spreading'
    state : ModelState or None
        The previous refresh's state (warm start); ignored when its classes differ.
    c : float
        Inverse L2 regularisation of the probe (scikit-learn's ``C``).
    alpha, n_iter : label spreading parameters (:func:`spread`)
    n_iter_warm : int
        Iterations when warm-started from the previous refresh (one more label
        moves the fixed point little; the iteration keeps converging across refreshes).
    n_folds : int
        Folds for the out-of-fold predictions that fit the temperature.
    recalibrate : float
        Refit the temperature only when the labelled count grew by this share
        since the last fit (the folds' spreading is kept warm meanwhile).
    clusters : ndarray (n,), int64, or None
        The cluster of every row (-1 = noise). Then the calibration also holds out
        whole clusters (:func:`stable_folds` with groups), and an image in a cluster with
        no labelled member gets no more confidence than held-out *clusters*
        support: labels of a few whole clusters (near-identical members on both
        sides of an image fold) cannot vouch for the clusters nobody looked at.
        Images of labelled clusters keep the image-fold evidence. None: image
        folds only.
    fitted : ndarray (n,), bool, or None
        Rows whose features were fitted to their labels (the training images of a
        fine-tuned feature set). They train the models but are never held out: a
        network that has seen an image's label places it on the right side, so its
        held-out prediction says nothing about unseen images (in the flow on ELPV
        this let 9.9 % of accepted suggestions be wrong after one fine-tune). The
        labels the fine-tune held out, and those given since, calibrate.
    experts : list of (name, ndarray (n, C)) or None
        More experts: each one's log-probabilities of ``classes`` for every row (0 rows
        where it has no opinion; :meth:`labeler.assist.experts.Expert.log_proba`). Pooled
        with weights fitted on the held-out labels (:func:`labeler.assist.experts.fit_pool`).

    Returns
    -------
    (Prediction, ModelState)

    Raises
    ------
    ValueError
        Unknown method, or no labelled rows.
    """
    if method not in METHODS:
        raise ValueError(f"unknown suggestion method {method!r}; one of {METHODS}")
    rows = np.asarray(rows, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64)
    classes = tuple(str(v) for v in classes)
    n, k = len(x), len(classes)
    if len(rows) == 0:
        raise ValueError("no labelled images: nothing to learn from")
    if clusters is not None:
        clusters = np.asarray(clusters, dtype=np.int64)
        if clusters.shape != (n,):
            raise ValueError(f"clusters of shape {clusters.shape} for {n} rows")
    if state is None or state.classes != classes:
        state = ModelState(classes)
    if len(np.unique(codes)) < 2:
        # One class seen: nothing to tell it from. Suggest it, with no confidence.
        proba = np.zeros((n, k), np.float32)
        proba[:, codes[0]] = 1.0
        zero = np.zeros(n, np.float32)
        return Prediction(classes, proba, np.full(n, codes[0], np.int64), zero, zero.copy()), state

    experts = list(experts or [])
    e_key = tuple((name, _digest(lp)) for name, lp in experts)
    grow = len(rows) - state.n_labelled_at_calibration
    calibrate = state.n_calibration == 0 or grow >= max(1, recalibrate * state.n_labelled_at_calibration) \
        or (clusters is not None and state.cross_confidence is None) \
        or getattr(state, "expert_key", ()) != e_key
    # Fold sets of the calibration: by image (what an image of an already labelled
    # cluster can expect) and, with the clusters given, by cluster (what an image of a
    # cluster nobody labelled can expect).
    fold_sets = []
    if calibrate:
        fold_sets.append(stable_folds(rows, codes, n_folds))
        if clusters is not None:
            fold_sets.append(stable_folds(rows, codes, n_folds, clusters[rows]))
        if fitted is not None:
            seen = np.asarray(fitted, dtype=bool)[rows]
            for f in fold_sets:
                f[seen] = -1  # always on the training side
    splits = [(s, f) for s in range(len(fold_sets)) for f in range(n_folds)]
    n_f = len(splits)

    logp = np.zeros((n, k), np.float64)
    oof = np.zeros((len(fold_sets), len(rows), k), np.float64)
    if method in ("combined", "spreading"):
        y = np.zeros((n, (n_f + 1) * k), np.float32)
        y[rows, codes] = 1.0
        for j, (s, f) in enumerate(splits):
            tr = fold_sets[s] != f
            y[rows[tr], (j + 1) * k + codes[tr]] = 1.0
        prev = state.spread
        init = None
        if prev is not None and prev.shape[0] == n and prev.shape[1] >= y.shape[1]:
            init = prev[:, :y.shape[1]]
        f_all = spread(graph, y, k, alpha=alpha, n_iter=n_iter if init is None else n_iter_warm, init=init)
        if prev is not None and prev.shape[0] == n and prev.shape[1] > f_all.shape[1]:
            prev[:, :k] = f_all[:, :k]  # keep the folds' columns for the next calibration's warm start
        else:
            state.spread = f_all
        logp += np.log(np.maximum(_normalise_rows(f_all[:, :k]), 1e-6))
        for j, (s, f) in enumerate(splits):
            held = fold_sets[s] == f
            p = _normalise_rows(f_all[rows[held], (j + 1) * k:(j + 2) * k])
            oof[s, held] += np.log(np.maximum(p, 1e-6))
    if method in ("combined", "probe"):
        model, present = fit_probe(x[rows], codes, k, c=c, init=(state.coef, state.intercept), balanced=balanced)
        state.coef, state.intercept = model.coef_, model.intercept_
        logp += log_softmax(probe_logits(model, present, x, k))
        for s, f in splits:
            held, tr = fold_sets[s] == f, fold_sets[s] != f
            if not held.any():
                continue
            if len(np.unique(codes[tr])) < 2:
                oof[s, held] += np.log(1.0 / k)
                continue
            m, pr = fit_probe(x[rows[tr]], codes[tr], k, c=c, init=(model.coef_, model.intercept_), balanced=balanced)
            oof[s, held] += log_softmax(probe_logits(m, pr, x[rows[held]], k))
    e_rows = [lp[rows] for _, lp in experts]
    if calibrate:
        held = fold_sets[0] >= 0
        state.expert_key, state.expert_weights = e_key, np.zeros(len(experts))
        if held.sum() >= 2:
            state.temperature = state.model_temperature = fit_temperature(oof[0][held], codes[held])
            if experts:
                state.temperature, state.expert_weights = fit_pool(
                    oof[0][held], [e[held] for e in e_rows], codes[held], t0=state.model_temperature)
        # The evidence is the model's own (at its own temperature): see "vouched" below.
        t_own = state.model_temperature
        state.oof_confidence, state.oof_correct, _ = _held_out_evidence(oof[0], codes, held, t_own)
        state.cross_confidence = state.cross_correct = state.cross_count = None
        if len(fold_sets) > 1:
            state.cross_confidence, state.cross_correct, state.cross_count = _held_out_evidence(
                oof[1], codes, fold_sets[1] >= 0, t_own, groups=clusters[rows])
        state.n_calibration = int(held.sum())
        state.n_labelled_at_calibration = len(rows)
    clean = np.where(np.isfinite(logp), logp, -1e4)
    base = clean / state.temperature
    parts = [w * lp for w, (_, lp) in zip(state.expert_weights, experts)]
    proba = np.exp(log_softmax(base + sum(parts, np.zeros_like(base)))).astype(np.float32)
    own = proba if not experts else np.exp(log_softmax(clean / state.model_temperature)).astype(np.float32)
    # The queue's margin is the model's own: the labels it asks for teach the model and are the
    # held-out evidence, so experts do not steer which images get measured.
    top2 = np.partition(own, -2, axis=1)[:, -2:] if k >= 2 else np.c_[np.zeros(n), own]
    label = np.argmax(proba, axis=1).astype(np.int64)
    p_top = proba[np.arange(n), label]
    # Vouched: what held-out labels back for the model's *own* probability of the label. An
    # expert can lower a vouched confidence (its disagreement lowers p_top), never raise it:
    # the held-out labels are the images the queue chose, typical ones, on which an outside
    # classifier looks better than on the rest (bench_predictions.py: pooled evidence let
    # 27 % of the defect-level suggestions accepted at 0.9 be wrong, 10 % without the expert).
    p_own = own[np.arange(n), label]
    ev = evidence_detail(p_own, state.oof_confidence, state.oof_correct)
    conf, count, more = ev.vouched, ev.count, ev.to_vouch
    unseen = np.zeros(n, bool)
    if clusters is not None:
        # An image in a cluster with no labelled member is held to what held-out clusters showed.
        lab = clusters[rows]
        unseen = ~np.isin(clusters, lab[lab >= 0])
        cross = evidence_detail(p_own[unseen], state.cross_confidence, state.cross_correct, state.cross_count)
        conf[unseen], count[unseen], more[unseen] = cross.vouched, cross.count, cross.to_vouch
    margin = (top2[:, 1] - top2[:, 0]).astype(np.float32)
    conf = np.minimum(conf, p_top).astype(np.float32)
    report = {}
    for (name, lp), w, e in zip(experts, state.expert_weights, e_rows):
        has = np.any(e != 0, axis=1)
        report[name] = {"weight": round(float(w), 4), "checked": int(has.sum()),
                        "accuracy": round(float(np.mean(np.argmax(e[has], axis=1) == codes[has])), 4)
                        if has.any() else None}
    return Prediction(classes, proba, label, conf, margin, state.temperature, state.n_calibration,
                      probability=p_top.astype(np.float32), evidence=count, to_vouch=more, by_cluster=unseen,
                      source=deciding(base, parts), experts=report), state


def _digest(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha1(np.ascontiguousarray(a, dtype=np.float64).tobytes()).hexdigest()[:16]
