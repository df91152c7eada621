"""More experts for the suggestion model: imported predictions, and any other source of
per-image label probabilities (a zero-shot text model, another classifier).

An **expert** is a source name and, per image, scores of some labels (:class:`Expert`).
The suggestion model (:func:`labeler.assist.model.predict`) does not trust it blindly:
its say is a weight fitted on the held-out hand labels, jointly with the temperature.

Method: a weighted logarithmic opinion pool (a product of experts with fitted exponents;
Heskes 1998, "Selecting weighting factors in logarithmic opinion pools", NIPS), fitted
by stacking (Wolpert 1992, "Stacked generalization"; with non-negative weights as in
Breiman 1996, "Stacked regressions"): the suggestion's log-probabilities are

    z = logp_model / T + sum_e w_e * log p_e,    w_e >= 0,

with T and every w_e minimising the negative log-likelihood of the *out-of-fold*
predictions of the labelled images (the model's held-out log-probabilities that the
temperature scaling already uses, plus each expert's scores of those images), with the
same log-normal prior on T as :func:`labeler.assist.model.fit_temperature` and a
standard normal prior on each w_e. An expert that is often wrong gets w_e = 0 and changes
nothing; one that is right where the model is unsure gets a weight that the held-out
labels support. The pooled probability is the suggestion's label and probability.

The *vouched* confidence stays the model's own: the held-out evidence
(:mod:`labeler.assist.evidence`) of the model's probability of the suggested label, capped
by the pooled probability. An expert can lower it (by disagreeing), never raise it: the
held-out labels are the images the queue chose, typical ones, on which an outside
classifier looks better than on the rest; with the evidence taken on the pooled
predictions instead (and the queue ranking by the pooled margin), a weak classifier's
predictions let 27 % of the defect-level suggestions accepted at 0.9 in one flow be wrong
(10 % without them; ``benchmarks/bench_predictions.py``).
So a suggestion an expert turned to another label is never bulk-accepted by a threshold;
it is shown with the expert's name, and accepted one by one or by an expected-error budget
(which uses the pooled probability). For the same reason the label-next queue ranks by the
model's own margin.

An image an expert gave no score contributes nothing (a uniform vote). Scores become
probabilities over the labels in use (:meth:`Expert.log_proba`): a listed label's score is
its probability; the mass the listed scores leave (1 - their sum, at least 0) is spread
evenly over the labels not listed; each probability is floored at :data:`FLOOR` (one
confident wrong score must not veto the model) and the row renormalised.

Adding a source: write a function ``provider(project, n_rows) -> list[Expert]`` and
:func:`register` it; :func:`project_experts` (called by
:func:`labeler.assist.suggest.suggest`) asks every provider. Imported predictions are the
built-in provider (:func:`prediction_experts`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Floor of an expert's probability of any label (before renormalising).
FLOOR = 0.01
#: Bounds of an expert's fitted weight; its prior standard deviation (per held-out label).
MAX_WEIGHT = 4.0
WEIGHT_SD = 1.0


@dataclass
class Expert:
    """One source of label scores for the images of a project.

    Attributes
    ----------
    name : str, as suggestions show it: 'model: my-classifier', 'zero-shot: ViT-B-32'
    labels : tuple of str, L labels the scores are for
    scores : ndarray (n_rows, L), float32 in [0, 1], NaN = no score (one row per array row)
    key : str, changes whenever the scores change (the suggestions' cache key)
    """

    name: str
    labels: tuple[str, ...]
    scores: np.ndarray
    key: str = ""

    def __post_init__(self):
        if not self.key:
            self.key = self.name + ":" + hashlib.sha1(np.ascontiguousarray(self.scores).tobytes()
                                                      + "\0".join(self.labels).encode()).hexdigest()[:16]

    def log_proba(self, classes) -> np.ndarray:
        """(n_rows, C) float64: centred log-probabilities of ``classes`` (rows sum to 0;
        all 0 for an image without a score). See the module docstring for the rule."""
        classes = list(classes)
        s = np.asarray(self.scores, dtype=np.float64)
        n, k = len(s), len(classes)
        out = np.zeros((n, k), np.float64)
        if k == 0 or s.size == 0:
            return out
        given = np.isfinite(s)
        any_score = given.any(axis=1)
        left = np.maximum(1.0 - np.where(given, s, 0.0).sum(axis=1), 0.0)
        col = {lab: j for j, lab in enumerate(self.labels)}
        p = np.full((n, k), np.nan)
        for c, lab in enumerate(classes):
            if lab in col:
                p[:, c] = s[:, col[lab]]
        unlisted = ~np.isfinite(p)
        share = left / np.maximum(unlisted.sum(axis=1), 1)
        p = np.where(unlisted, share[:, None], p)
        p = np.maximum(p, FLOOR)
        lp = np.log(p / p.sum(axis=1, keepdims=True))
        lp -= lp.mean(axis=1, keepdims=True)
        out[any_score] = lp[any_score]
        return out

    def covered(self) -> np.ndarray:
        """(n_rows,) bool: images with at least one score."""
        return np.isfinite(np.asarray(self.scores, dtype=np.float64)).any(axis=1)


# -- the pool ------------------------------------------------------------------------------
def fit_pool(oof: np.ndarray, experts: list[np.ndarray], y: np.ndarray, *, t0: float = 1.0, prior_sd: float = 0.5,
             weight_sd: float = WEIGHT_SD, max_weight: float = MAX_WEIGHT) -> tuple[float, np.ndarray]:
    """Temperature and expert weights of the pool, fitted on held-out labels (MAP).

    Parameters
    ----------
    oof : ndarray (m, C), the model's out-of-fold log-probabilities (or logits) of m labelled images
    experts : list of ndarray (m, C), each expert's log-probabilities of the same images
        (:meth:`Expert.log_proba`)
    y : ndarray (m,), int, their true codes
    t0 : float, the starting temperature (the model's own, :func:`labeler.assist.model.fit_temperature`)

    Returns
    -------
    (float, ndarray (E,)) : T in [0.05, 20], weights in [0, ``max_weight``]
    """
    from scipy.optimize import minimize

    from ..probe import log_softmax

    oof = np.where(np.isfinite(oof), oof, -1e4)
    m = max(len(y), 1)
    if not experts:
        return float(t0), np.zeros(0)
    e = np.stack(experts)  # (E, m, C)
    idx = np.arange(len(y))

    def loss(v):
        log_t, w = v[0], v[1:]
        z = oof / np.exp(log_t) + np.tensordot(w, e, axes=1)
        nll = -float(np.mean(log_softmax(z)[idx, y]))
        return nll + log_t**2 / (2 * prior_sd**2 * m) + float(w @ w) / (2 * weight_sd**2 * m)

    x0 = np.r_[np.log(t0), np.zeros(len(experts))]
    bounds = [(np.log(0.05), np.log(20.0))] + [(0.0, max_weight)] * len(experts)
    r = minimize(loss, x0, method="L-BFGS-B", bounds=bounds)
    v = r.x if r.fun <= loss(x0) else x0
    return float(np.exp(v[0])), np.clip(v[1:], 0.0, max_weight)


def deciding(base: np.ndarray, contributions: list[np.ndarray]) -> np.ndarray:
    """(n,) int64: the expert that decided each row's label, -1 where the model alone
    suggests the same label. ``base`` (n, C): the model's log-probabilities at the pool's
    temperature; ``contributions``: each expert's weighted log-probabilities (n, C). Where
    the pooled label differs from the model's own, the expert pushing hardest from the
    model's label to the pooled one decided it."""
    n = len(base)
    out = np.full(n, -1, np.int64)
    if not contributions or n == 0:
        return out
    c = np.stack(contributions)  # (E, n, C)
    full = base + c.sum(axis=0)
    own, pooled = np.argmax(base, axis=1), np.argmax(full, axis=1)
    moved = np.flatnonzero(own != pooled)
    if len(moved):
        push = c[:, moved, pooled[moved]] - c[:, moved, own[moved]]  # (E, k)
        out[moved] = np.argmax(push, axis=0)
    return out


# -- providers -----------------------------------------------------------------------------
def prediction_experts(project, n_rows: int) -> list[Expert]:
    """One expert per imported predictions source (``labeler import-predictions``), named
    'model: SOURCE'."""
    store = project.store
    out = []
    for src in store.prediction_sources():
        preds = store.predictions(src["source"])
        labels = tuple(sorted({lab for _, lab, _ in preds}))
        col = {lab: j for j, lab in enumerate(labels)}
        ids = np.array([i for i, _, _ in preds], dtype=np.int64)
        rows = store.row_of(ids) if len(ids) else np.zeros(0, np.int64)
        scores = np.full((n_rows, len(labels)), np.nan, np.float32)
        ok = (rows >= 0) & (rows < n_rows)
        j = np.array([col[lab] for _, lab, _ in preds], dtype=np.int64)
        scores[rows[ok], j[ok]] = np.array([s for _, _, s in preds], dtype=np.float32)[ok]
        key = f"model: {src['source']}:{src['rows']}:{src['imported_at']!r}"
        out.append(Expert(f"model: {src['source']}", labels, scores, key))
    return out


_PROVIDERS: list[Callable] = [prediction_experts]


def register(provider: Callable) -> Callable:
    """Add ``provider(project, n_rows) -> list[Expert]`` to the experts every suggestion
    consults (idempotent; usable as a decorator)."""
    if provider not in _PROVIDERS:
        _PROVIDERS.append(provider)
    return provider


def providers() -> tuple[Callable, ...]:
    """The registered expert providers, built-in first (:func:`register`)."""
    return tuple(_PROVIDERS)


def project_experts(project, n_rows: int) -> list[Expert]:
    """Every registered provider's experts for ``project`` (``n_rows`` array rows)."""
    return [e for p in _PROVIDERS for e in p(project, n_rows)]
