"""An honest simulation of the product's own flow (strategy ``queue``).

A simulated annotator does exactly what a person does with the "label next"
view and the suggestions:

1. take the next ``batch`` items from the queue (:func:`labeler.assist.queue`);
   the queue sees only the features and the labels given so far;
2. label each item: 1 action per item (an item of near-identical images whose
   true classes differ costs 1 action per class among them). The truth of an
   image is revealed only here, for the images the product showed;
3. the model refreshes (in the product it refreshes after every action; here
   after each batch, which only delays its help);
4. accept suggestions: for each class with at least ``min_accept`` unlabelled
   images suggested at calibrated confidence >= ``threshold``, one bulk accept
   (1 action). Accepted suggestions become labels (source ``suggestion``) and are
   never shown again; they are not used to train the model (that would only
   confirm its own guesses);
5. repeat until ``max_actions``.

With ``refit`` the annotator also presses "fine-tune" once (1 action) when the
flow reaches a given action count: the features are replaced by what the
callback returns (in the product: :func:`labeler.embedding.finetune.finetune_project`
on the labels a person gave so far, accepted suggestions left out, then re-embedding), the kNN graph is rebuilt and the
suggestion model starts afresh on the new features.

Nothing chooses an image by looking at its truth.

Accuracy, two definitions, both over **all** images of the collection:

``accuracy`` (the headline)
    Labels given (manual + accepted suggestions) plus the model's current
    suggestion for every image still unlabelled: the accuracy of the labels the
    annotator would export if they stopped now and exported labels plus
    suggestions (one more accept of everything, per class, makes those
    suggestions labels). ``macro_f1`` is computed on the same labelling.
``labelled_accuracy``
    Correct labels given / all images, unlabelled = wrong: the definition of
    :mod:`labeler.simulate`'s strategies (``labeler evaluate``).

Unlike :mod:`labeler.simulate`, there is no oracle finish: ``actions_to(0.9)``
is the first action count at which the flow itself reaches 90 %.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import model as assist_model
from . import queue as assist_queue
from .graph import KnnGraph, build_knn_graph


@dataclass
class FlowResult:
    """The state of the collection after every action of one simulated flow.

    Attributes
    ----------
    strategy : str
    actions : ndarray (m,), int64, cumulative actions (0, 1, 2, ...)
    accuracy : ndarray (m,), float64, labels + suggestions (see module docstring)
    labelled_accuracy : ndarray (m,), float64, unlabelled = wrong
    macro_f1 : ndarray (m,), float64, on the same labelling as ``accuracy``
    accepted : int, suggestions accepted
    accepted_wrong : int, of which wrong
    refresh_seconds : list[float], time of each model refresh
    refit_at : int or None, the action count at which the features were replaced
    refit_seconds : float or None, wall time of that replacement (fine-tuning included)
    shown : list[int], rows shown to the annotator, in order (the only truths it read)
    final : ndarray (n,), int64, class code of every image at the end: its label, else the
        model's suggestion (what ``accuracy[-1]`` scores)
    stopped : str, why the flow ended: 'max_actions', 'all labelled' or 'queue empty'
    features : ndarray (n, d), float32, L2-normalised rows: the features at the end (the
        fine-tuned vectors after a ``refit``), i.e. what search then ranks by
    """

    strategy: str
    actions: np.ndarray
    accuracy: np.ndarray
    labelled_accuracy: np.ndarray
    macro_f1: np.ndarray
    accepted: int = 0
    accepted_wrong: int = 0
    refresh_seconds: list = field(default_factory=list)
    refit_at: int | None = None
    refit_seconds: float | None = None
    shown: list = field(default_factory=list)
    final: np.ndarray | None = None
    stopped: str = ""
    features: np.ndarray | None = None

    def actions_to(self, target: float, metric: str = "accuracy") -> int | None:
        """First action count whose ``metric`` reaches ``target`` (None: never)."""
        hit = np.flatnonzero(getattr(self, metric) >= target - 1e-12)
        return int(self.actions[hit[0]]) if len(hit) else None

    def at(self, actions: int, metric: str = "accuracy") -> float:
        """``metric`` after at most ``actions`` actions."""
        i = max(int(np.searchsorted(self.actions, actions, side="right")) - 1, 0)
        return float(getattr(self, metric)[i])

    @property
    def wrong_accepted_share(self) -> float | None:
        return None if self.accepted == 0 else self.accepted_wrong / self.accepted

    def summary(self) -> dict:
        """The benchmark's JSON record."""
        return {
            "actions_to_90": self.actions_to(0.9), "actions_to_95": self.actions_to(0.95),
            "accuracy_at_200": round(self.at(200), 4), "accuracy_at_400": round(self.at(400), 4),
            "macro_f1_at_300": round(self.at(300, "macro_f1"), 4),
            "wrong_accepted_share": None if self.wrong_accepted_share is None else round(self.wrong_accepted_share, 4),
            "actions_to_macro_f1_70": self.actions_to(0.7, "macro_f1"),
            "actions_to_macro_f1_90": self.actions_to(0.9, "macro_f1"),
            "labelled_accuracy_at_400": round(self.at(400, "labelled_accuracy"), 4),
            "accepted": self.accepted, "actions": int(self.actions[-1]),
            "median_refresh_s": round(float(np.median(self.refresh_seconds)), 4) if self.refresh_seconds else None,
            "refit_at": self.refit_at,
            "refit_seconds": None if self.refit_seconds is None else round(self.refit_seconds, 1),
        }


class _State:
    def __init__(self, y: np.ndarray):
        self.y = y
        self.n_classes = int(y.max()) + 1
        self.given = np.full(len(y), -1, np.int64)  # labels in the collection
        self.manual = np.zeros(len(y), bool)  # labels the model trains on
        self.suggested = np.zeros(len(y), np.int64)
        self.hist: list[tuple[int, float, float, float]] = []
        self.actions = 0

    def record(self) -> None:
        y, pred = self.y, np.where(self.given >= 0, self.given, self.suggested)
        ok = pred == y
        tp = np.bincount(y[ok], minlength=self.n_classes)
        n_true = np.bincount(y, minlength=self.n_classes)
        n_pred = np.bincount(pred, minlength=self.n_classes)
        present = n_true > 0
        f1 = float(np.mean(2 * tp[present] / (n_true + n_pred)[present]))
        self.hist.append((self.actions, float(ok.mean()), float((self.given == y).mean()), f1))


def queue_flow(y: np.ndarray, x: np.ndarray, *, graph: KnnGraph | None = None, batch: int = 5,
               threshold: float = 0.95, min_accept: int | None = None, max_actions: int = 400,
               method: str = "combined", pick: str = "queue", duplicate_similarity: float = 0.99,
               explore: float = 0.2, seed: int = 0, strategy: str | None = None,
               clusters: np.ndarray | None = None,
               refit: tuple[int, Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] | None = None,
               experts=None) -> FlowResult:
    """Simulate the annotator working through the queue and accepting suggestions.

    Parameters
    ----------
    y : ndarray (n,), int, true class codes 0..C-1 (revealed only for shown images)
    x : ndarray (n, d), float, features; rows are L2-normalised here (every step of the
        queue measures cosine similarity as a dot product)
    graph : KnnGraph of the normalised ``x`` or None (built here)
    batch : int, queue items taken between model refreshes
    threshold : float, minimum calibrated confidence of an accepted suggestion
    min_accept : int or None, fewest suggestions worth one accept action
        (default max(10, n / 100))
    max_actions : int
    method : suggestion method (:data:`labeler.assist.model.METHODS`)
    pick : 'queue' (the product's queue) or 'random' (a baseline: random unlabelled images)
    duplicate_similarity : float, near-identical images grouped into one queue item
    explore : float, share of each batch taken from typical images of uncovered regions
    seed : int
    clusters : ndarray (n,), int, or None
        The clustering the dashboard shows (-1 = noise): the suggestion model's
        calibration folds are grouped by it, as in the product
        (:func:`labeler.assist.suggest.suggest`).
    refit : (int, callable) or None
        ``(at, fn)``: once the flow has taken ``at`` actions, one more action calls
        ``fn(rows, codes)`` with the rows labelled by hand so far and their class
        codes; it returns ``(features, fitted)``: new features (n, d') for the same
        rows (e.g. fine-tuned vectors), used from then on, and the rows (int array)
        whose labels shaped them, which the suggestion model then never holds out
        for calibration (its ``fitted``), as in the product.
    experts : list of (name, ndarray (n, C)) or None
        More experts (imported predictions, a zero-shot model): their log-probabilities of
        the class codes, pooled as in the product (:mod:`labeler.assist.experts`).

    Returns
    -------
    FlowResult
        The flow ends at ``max_actions``, when every image is labelled, or when the
        queue offers nothing more to label (``stopped`` says which). Every batch
        labels at least one image, so it always ends.
    """
    y = np.asarray(y, dtype=np.int64)
    x = np.asarray(x, dtype=np.float32)
    # Unnormalised rows make "cosine" dot products exceed 1 (negative distances), and
    # the queue then found no image far enough to show: the flow looped forever.
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n = len(y)
    graph = graph or build_knn_graph(x)
    min_accept = min_accept or max(10, n // 100)
    classes = [str(c) for c in range(int(y.max()) + 1)]
    rng = np.random.default_rng(seed)
    st = _State(y)
    st.record()
    pred, mstate, fitted = None, None, None
    res = FlowResult(strategy or pick, *(np.zeros(0),) * 4)
    while st.actions < max_actions and (st.given < 0).any():
        labelled = st.given >= 0
        if pick == "random":
            rows = rng.permutation(np.flatnonzero(~labelled))[:batch]
            items = [assist_queue.QueueItem(int(r), [int(r)]) for r in rows]
        else:
            warm = pred is not None and len(np.unique(y[st.manual])) >= 2
            items = assist_queue.next_items(
                x, graph, labelled, batch, margin=pred.margin if warm else None,
                label=pred.label if warm else None, classes=classes, explore=explore,
                duplicate_similarity=duplicate_similarity, seed=seed + st.actions)
        if not items:  # the product shows nothing to label: the annotator cannot go on here
            res.stopped = "queue empty"
            break
        for it in items:
            g = np.asarray(it.group, dtype=np.int64)
            res.shown += g.tolist()
            for c in np.unique(y[g]):  # the annotator sees the images: one action per class among them
                m = g[y[g] == c]
                st.given[m] = c
                st.manual[m] = True
                st.actions += 1
                st.record()
        rows = np.flatnonzero(st.manual)
        if refit is not None and res.refit_at is None and st.actions >= refit[0] and st.actions < max_actions:
            t0 = time.perf_counter()
            x, fitted_rows = refit[1](rows, y[rows])
            x = np.asarray(x, dtype=np.float32)
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            fitted = np.zeros(n, bool)
            fitted[np.asarray(fitted_rows, dtype=np.int64)] = True
            graph, mstate = build_knn_graph(x), None
            res.refit_seconds = time.perf_counter() - t0
            st.actions += 1  # the fine-tune button
            res.refit_at = st.actions
            st.record()
        t0 = time.perf_counter()
        pred, mstate = assist_model.predict(x, graph, rows, y[rows], classes, method=method, state=mstate, seed=seed,
                                            clusters=clusters, fitted=fitted, experts=experts)
        res.refresh_seconds.append(time.perf_counter() - t0)
        st.suggested = pred.label
        if len(np.unique(y[rows])) >= 2:
            for c in range(len(classes)):
                sel = np.flatnonzero((st.given < 0) & (pred.label == c) & (pred.confidence >= threshold))
                if len(sel) >= min_accept and st.actions < max_actions:
                    st.given[sel] = c
                    st.actions += 1
                    res.accepted += len(sel)
                    res.accepted_wrong += int((y[sel] != c).sum())
        st.record()
    res.stopped = res.stopped or ("all labelled" if (st.given >= 0).all() else "max_actions")
    res.final = np.where(st.given >= 0, st.given, st.suggested)
    res.features = x
    a, acc, lacc, f1 = (np.array(v) for v in zip(*st.hist))
    res.actions, res.accuracy, res.labelled_accuracy, res.macro_f1 = a.astype(np.int64), acc, lacc, f1
    return res
