"""A simulated annotator: how many dashboard actions does a labelled collection cost?

The annotator knows the true class of every image and works the way the
dashboard lets a person work. Each click that sets labels (or edits the
clustering) counts as one **action**:

- label a whole cluster = 1 action (``refine.label_cluster``);
- split a cluster = 1 action, then labelling each sub-cluster = 1 action each
  (``refine.split_preview`` + ``apply_split``: KMeans with k=2 on the cluster's
  PCA vectors);
- label one image = 1 action;
- label propagation = labelling each seed image (1 action each) + 1 action to
  propagate.

Strategies
----------
cluster_majority
    (a) Label each cluster once with its majority class, largest cluster first.
cluster_split
    (b) The same, but a cluster whose label mix is poor is split first. The
    annotator previews the split (free: it sets nothing) and accepts it only
    when it gains more correct labels than the extra actions it costs.
propagation
    (c) Label the medoids of a KMeans clustering (s seed images), then spread
    the labels over the kNN graph of the PCA vectors (label spreading, Zhou et
    al. 2004, with the product's own graph and spreading: :func:`spread_labels`).
    Tried for a ladder of seed counts s.
one_by_one
    (d) The baseline: label images one at a time in random order.
queue
    (e) The product's own flow (:func:`labeler.assist.simulate.queue_flow`):
    label the "label next" queue's items, accept confident suggestions, repeat;
    no image is picked by its truth. Its states count the labels given plus the
    current suggestions for the rest, and every state pays one more action per
    class for the accepts that would turn those suggestions into labels.

After its bulk phase every strategy finishes one image at a time: each
remaining wrong or unlabelled image, in random order, costs one action. This is
an oracle bound (a person must also find those images) and makes every curve
reach 100%.

Accuracy counts unlabelled images as wrong; coverage (labelled share) is
reported separately. Macro-F1 is the unweighted mean over the true classes of
the per-class F1 (an unlabelled image is a miss for its class), as
``sklearn.metrics.f1_score(average="macro")`` would compute it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..clustering import NOISE, medoid_order, run_kmeans
from ..errors import BadInputError

STRATEGIES = ("cluster_majority", "cluster_split", "propagation", "one_by_one", "queue")


@dataclass
class Curve:
    """The state of the collection after each action of one strategy.

    Attributes
    ----------
    strategy : str
    actions : ndarray (m,), int64, cumulative actions, non-decreasing, starts at 0
    correct : ndarray (m,), int64, images whose label equals the truth
    labelled : ndarray (m,), int64, images with any label
    macro_f1 : ndarray (m,), float64
    n : int
        Images in the collection.
    """

    strategy: str
    actions: np.ndarray
    correct: np.ndarray
    labelled: np.ndarray
    macro_f1: np.ndarray
    n: int

    @property
    def accuracy(self) -> np.ndarray:
        """Correct share after each action (unlabelled = wrong), (m,) float64."""
        return self.correct / self.n

    @property
    def coverage(self) -> np.ndarray:
        """Labelled share after each action, (m,) float64."""
        return self.labelled / self.n

    def actions_to_accuracy(self, target: float) -> int:
        """Fewest actions that reach ``target`` accuracy.

        From any state the annotator can stop the bulk work and fix the rest one
        image at a time (+1 correct per action), so this is
        ``min_i actions_i + max(0, ceil(target * n) - correct_i)``.
        """
        need = math.ceil(target * self.n - 1e-9)
        return int(np.min(self.actions + np.maximum(0, need - self.correct)))

    def actions_to_macro_f1(self, target: float) -> int | None:
        """Actions at the first state whose macro-F1 reaches ``target`` (None: never)."""
        hit = np.flatnonzero(self.macro_f1 >= target - 1e-12)
        return int(self.actions[hit[0]]) if len(hit) else None

    def at(self, actions: int) -> tuple[float, float, float]:
        """(accuracy, macro-F1, coverage) after at most ``actions`` actions."""
        i = int(np.searchsorted(self.actions, actions, side="right")) - 1
        i = max(i, 0)
        return float(self.accuracy[i]), float(self.macro_f1[i]), float(self.coverage[i])

    def to_dict(self, max_points: int = 400) -> dict:
        """JSON-ready summary; the curve is thinned to about ``max_points`` states."""
        m = len(self.actions)
        keep = np.unique(np.r_[np.linspace(0, m - 1, min(m, max_points)).astype(int),
                               np.flatnonzero(np.diff(self.actions, prepend=-1) > 0)[:max_points // 4]])
        return {
            "strategy": self.strategy,
            "n": self.n,
            "actions_to_accuracy": {"0.9": self.actions_to_accuracy(0.9), "0.95": self.actions_to_accuracy(0.95)},
            "actions_to_macro_f1": {"0.9": self.actions_to_macro_f1(0.9)},
            "curve": {
                "actions": self.actions[keep].tolist(),
                "accuracy": np.round(self.accuracy[keep], 5).tolist(),
                "macro_f1": np.round(self.macro_f1[keep], 5).tolist(),
                "coverage": np.round(self.coverage[keep], 5).tolist(),
            },
        }


class _Tracker:
    """Current labels of the collection with running per-class counts (for F1)."""

    def __init__(self, y: np.ndarray, n_classes: int, name: str):
        self.y = y
        self.name = name
        self.pred = np.full(len(y), -1, dtype=np.int64)
        self.tp = np.zeros(n_classes, np.int64)
        self.n_pred = np.zeros(n_classes, np.int64)
        self.n_true = np.bincount(y, minlength=n_classes).astype(np.int64)
        self.present = self.n_true > 0
        self.actions = 0
        self.hist: list[tuple[int, int, int, float]] = []
        self.record(0)

    def assign(self, idx: np.ndarray, label: int) -> None:
        idx = np.asarray(idx, dtype=np.int64)
        old = self.pred[idx]
        had = old >= 0
        np.subtract.at(self.n_pred, old[had], 1)
        np.subtract.at(self.tp, old[had & (old == self.y[idx])], 1)
        self.pred[idx] = label
        self.n_pred[label] += len(idx)
        self.tp[label] += int((self.y[idx] == label).sum())

    def assign_one(self, i: int, label: int) -> None:
        old = self.pred[i]
        if old >= 0:
            self.n_pred[old] -= 1
            self.tp[old] -= int(old == self.y[i])
        self.pred[i] = label
        self.n_pred[label] += 1
        self.tp[label] += int(label == self.y[i])

    def macro_f1(self) -> float:
        denom = (self.n_pred + self.n_true)[self.present]
        return float(np.mean(2 * self.tp[self.present] / denom))

    def record(self, actions: int = 1) -> None:
        self.actions += actions
        self.hist.append((self.actions, int(self.tp.sum()), int((self.pred >= 0).sum()), self.macro_f1()))

    def finish_one_by_one(self, rng: np.random.Generator) -> None:
        """Fix every wrong or unlabelled image, one action each, in random order."""
        todo = np.flatnonzero(self.pred != self.y)
        for i in rng.permutation(todo):
            self.assign_one(int(i), int(self.y[i]))
            self.record(1)

    def curve(self) -> Curve:
        a, c, lab, f = (np.array(v) for v in zip(*self.hist))
        return Curve(self.name, a.astype(np.int64), c.astype(np.int64), lab.astype(np.int64),
                     f.astype(np.float64), len(self.y))


def _check(y: np.ndarray, clusters: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    y = np.asarray(y, dtype=np.int64)
    if y.ndim != 1 or len(y) == 0 or y.min() < 0:
        raise BadInputError("y must be a non-empty 1-D array of class codes >= 0")
    if clusters is not None and len(clusters) != len(y):
        raise BadInputError(f"{len(clusters)} cluster labels for {len(y)} images")
    return y, int(y.max()) + 1


def _clusters_by_size(clusters: np.ndarray) -> list[np.ndarray]:
    ids, counts = np.unique(clusters[clusters != NOISE], return_counts=True)
    order = ids[np.lexsort((ids, -counts))]
    return [np.flatnonzero(clusters == c) for c in order]


def _majority(y: np.ndarray, members: np.ndarray, n_classes: int) -> tuple[int, int]:
    """(majority class, its count) among ``members``; ties go to the lower class code."""
    counts = np.bincount(y[members], minlength=n_classes)
    c = int(np.argmax(counts))
    return c, int(counts[c])


def cluster_majority(y: np.ndarray, clusters: np.ndarray, *, seed: int = 0) -> Curve:
    """(a) Label each cluster with its majority class, largest first; then one by one.

    Parameters
    ----------
    y : ndarray (n,), int, true class codes 0..C-1
    clusters : ndarray (n,), int, cluster ids (-1 = noise: left for the one-by-one phase)
    seed : int
        Order of the one-by-one phase.
    """
    y, n_classes = _check(y, clusters)
    t = _Tracker(y, n_classes, "cluster_majority")
    for members in _clusters_by_size(np.asarray(clusters)):
        t.assign(members, _majority(y, members, n_classes)[0])
        t.record(1)
    t.finish_one_by_one(np.random.default_rng(seed))
    return t.curve()


def _split_groups(y, vectors, members, n_classes, *, min_size, max_depth, depth, seed):
    """Best partition of ``members`` by repeated 2-means splits, as the oracle would
    accept them. Returns (groups, number of split actions)."""
    _, keep = _majority(y, members, n_classes)
    if depth >= max_depth or len(members) < min_size or keep == len(members):
        return [members], 0
    sub = run_kmeans(vectors[members], 2, seed=seed)
    groups, splits = [], 1
    for s in (0, 1):
        g, k = _split_groups(y, vectors, members[sub == s], n_classes, min_size=min_size,
                             max_depth=max_depth, depth=depth + 1, seed=seed)
        groups += g
        splits += k
    gain = sum(_majority(y, g, n_classes)[1] for g in groups) - keep
    extra = splits + len(groups) - 1  # split clicks + one more label click per extra group
    if gain <= extra:
        return [members], 0
    return groups, splits


def cluster_split(
    y: np.ndarray, clusters: np.ndarray, vectors: np.ndarray, *, purity_below: float = 0.95,
    min_size: int = 10, max_depth: int = 3, seed: int = 0,
) -> Curve:
    """(b) Like :func:`cluster_majority`, splitting clusters whose label mix is poor.

    A cluster whose majority share is below ``purity_below`` and that holds at
    least ``min_size`` images is split by 2-means on its PCA vectors (what the
    dashboard's split does), recursively up to ``max_depth`` levels. The split is
    kept only when the extra correct labels outnumber its extra actions.

    Parameters
    ----------
    y : ndarray (n,), int, true class codes
    clusters : ndarray (n,), int, -1 = noise
    vectors : ndarray (n, d), float32, the normalised PCA vectors
    """
    y, n_classes = _check(y, clusters)
    x = np.asarray(vectors, dtype=np.float32)
    t = _Tracker(y, n_classes, "cluster_split")
    for members in _clusters_by_size(np.asarray(clusters)):
        _, keep = _majority(y, members, n_classes)
        groups, splits = [members], 0
        if keep < purity_below * len(members):
            groups, splits = _split_groups(y, x, members, n_classes, min_size=min_size,
                                           max_depth=max_depth, depth=0, seed=seed)
        if splits:
            t.record(splits)
        for g in sorted(groups, key=len, reverse=True):
            t.assign(g, _majority(y, g, n_classes)[0])
            t.record(1)
    t.finish_one_by_one(np.random.default_rng(seed))
    return t.curve()


def medoids(vectors: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """Rows of the KMeans(k) clusters' cosine medoids (:func:`labeler.clustering.medoid_order`,
    as the dashboard's cluster summaries pick them). (k,) int64."""
    x = np.asarray(vectors, dtype=np.float32)
    labels = run_kmeans(x, k, seed=seed)
    out = []
    for c in range(labels.max() + 1):
        idx = np.flatnonzero(labels == c)
        out.append(idx[int(medoid_order(x[idx])[0][0])])
    return np.array(out, dtype=np.int64)


def spread_labels(vectors: np.ndarray, seeds: np.ndarray, seed_labels: np.ndarray, *,
                  n_neighbors: int = 10) -> np.ndarray:
    """kNN label spreading from labelled seed rows to every row, with the product's code.

    The same computation the suggestions run: the k-NN graph of
    :func:`labeler.assist.graph.build_knn_graph` (cosine, ``n_neighbors``) and
    :func:`labeler.assist.model.spread` (Zhou et al. 2004, the product's ``alpha`` and
    iterations), then the arg-max class of each row. So ``labeler evaluate``'s propagation
    strategy measures the model labeler ships, not a second one with other settings.

    Parameters
    ----------
    vectors : ndarray (n, d), float32, L2-normalised
    seeds : ndarray (s,), int, row indices of the labelled seeds
    seed_labels : ndarray (s,), int, their class codes (0..C-1)
    n_neighbors : int, the graph's k

    Returns
    -------
    ndarray (n,), int64, class codes (a row no seed reaches gets the most common seed class)
    """
    from ..assist.graph import build_knn_graph
    from ..assist.model import spread

    x = np.asarray(vectors, dtype=np.float32)
    seed_labels = np.asarray(seed_labels, dtype=np.int64)
    if len(np.unique(seed_labels)) == 1:
        return np.full(len(x), int(seed_labels[0]), dtype=np.int64)
    n_classes = int(seed_labels.max()) + 1
    y = np.zeros((len(x), n_classes), dtype=np.float32)
    y[np.asarray(seeds), seed_labels] = 1.0
    f = spread(build_knn_graph(x, k=int(min(n_neighbors, len(x) - 1))), y, n_classes)
    pred = f.argmax(axis=1).astype(np.int64)
    pred[f.max(axis=1) <= 0] = int(np.bincount(seed_labels).argmax())
    return pred


def seed_ladder(n: int, n_classes: int, cap: int = 1000) -> list[int]:
    """Seed counts tried by :func:`propagation`: C, 2C, 5, 10, 20, 50, ... up to
    min(n/4, ``cap``) (KMeans with many thousands of clusters would dominate the run)."""
    top = max(n_classes, min(n // 4, cap))
    ladder = {n_classes, 2 * n_classes}
    ladder.update(m * 10**e for e in range(1, 8) for m in (1, 2, 5))
    ladder.add(5)
    return sorted(s for s in ladder if n_classes <= s <= min(top, n))


def propagation(
    y: np.ndarray, vectors: np.ndarray, *, ladder: list[int] | None = None, n_neighbors: int = 10,
    stop_at: float = 0.99, seed: int = 0,
) -> Curve:
    """(c) Label ``s`` KMeans medoids (s actions), propagate (1 action), for each s.

    Each seed count is an independent attempt: its state is (s + 1 actions, the
    collection after propagation). The ladder stops once accuracy reaches
    ``stop_at``; the last attempt is then finished one image at a time. The
    curve's states are therefore not one annotator's history, but
    :meth:`Curve.actions_to_accuracy` (minimum over states) is the cost of the
    best seed count.

    Parameters
    ----------
    y : ndarray (n,), int, true class codes
    vectors : ndarray (n, d), float32, normalised PCA vectors
    ladder : list of int or None
        Seed counts (default :func:`seed_ladder`).
    """
    y, n_classes = _check(y)
    x = np.asarray(vectors, dtype=np.float32)
    ladder = ladder or seed_ladder(len(y), n_classes)
    t = _Tracker(y, n_classes, "propagation")
    for s in ladder:
        s = int(min(s, len(y)))
        rows = medoids(x, s, seed=seed)
        pred = spread_labels(x, rows, y[rows], n_neighbors=n_neighbors)
        pred[rows] = y[rows]
        t = _restart(t, pred, s + 1)
        if t.hist[-1][1] >= stop_at * len(y):
            break
    t.finish_one_by_one(np.random.default_rng(seed))
    return t.curve()


def _restart(t: _Tracker, pred: np.ndarray, actions: int) -> _Tracker:
    """Record an independent attempt that cost ``actions`` and left labels ``pred``."""
    t.pred[:] = -1
    t.tp[:] = 0
    t.n_pred[:] = 0
    for c in np.unique(pred):
        t.assign(np.flatnonzero(pred == c), int(c))
    t.actions = actions - 1
    t.record(1)
    return t


def one_by_one(y: np.ndarray, *, seed: int = 0) -> Curve:
    """(d) The baseline: label every image on its own, in random order (n actions)."""
    y, n_classes = _check(y)
    t = _Tracker(y, n_classes, "one_by_one")
    t.finish_one_by_one(np.random.default_rng(seed))
    return t.curve()


def queue(y: np.ndarray, vectors: np.ndarray, *, max_actions: int = 400, seed: int = 0,
          clusters: np.ndarray | None = None) -> Curve:
    """(e) The product's flow, then one by one (see the module docstring); ``clusters``
    (the dashboard's, -1 = noise) group the suggestion model's calibration folds as in
    the product."""
    from ..assist.simulate import queue_flow

    y, n_classes = _check(y, clusters)
    r = queue_flow(y, vectors, max_actions=max_actions, seed=seed, clusters=clusters)
    t = _Tracker(y, n_classes, "queue")
    t.hist = [(int(a) + n_classes, int(round(acc * len(y))), len(y), float(f1))
              for a, acc, f1 in zip(r.actions, r.accuracy, r.macro_f1) if a]
    t.hist.insert(0, (0, 0, 0, 0.0))  # nothing labelled yet: every image counts as wrong
    t.actions = t.hist[-1][0]
    # From the flow's end state (labels + suggestions), one image at a time like every strategy.
    for c in np.unique(r.final):
        t.assign(np.flatnonzero(r.final == c), int(c))
    t.finish_one_by_one(np.random.default_rng(seed))
    return t.curve()


def simulate(y: np.ndarray, clusters: np.ndarray, vectors: np.ndarray, *, seed: int = 0,
             strategies: tuple[str, ...] = STRATEGIES) -> dict[str, Curve]:
    """Run the strategies on one collection: {strategy name: Curve}.

    Parameters
    ----------
    y : ndarray (n,), int, true class codes 0..C-1
    clusters : ndarray (n,), int, the clustering the dashboard shows (-1 = noise)
    vectors : ndarray (n, d), float32, normalised PCA vectors

    Raises
    ------
    BadInputError
        An unknown strategy, ``y`` empty or not class codes >= 0, or
        ``clusters`` of another length than ``y``.
    """
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        raise BadInputError(f"unknown strategies {sorted(unknown)}; choose from {STRATEGIES}")
    run = {
        "cluster_majority": lambda: cluster_majority(y, clusters, seed=seed),
        "cluster_split": lambda: cluster_split(y, clusters, vectors, seed=seed),
        "propagation": lambda: propagation(y, vectors, seed=seed),
        "one_by_one": lambda: one_by_one(y, seed=seed),
        "queue": lambda: queue(y, vectors, seed=seed, clusters=clusters),
    }
    return {s: run[s]() for s in strategies}
