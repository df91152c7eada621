"""The "label next" queue: the unlabelled images whose labels should teach the model most.

Two regimes (pure numpy / scikit-learn; no project access here):

Cold start (fewer than two labels given classes, or no model yet)
    TypiClust (Hacohen, Dekel & Weinshall 2022, "Active learning on a budget:
    opposite strategies suit high and low budgets", ICML): cluster the features
    into (labelled + n) clusters with KMeans, take the clusters holding no labelled
    image, largest first, and from each its most *typical* image, the one with the
    highest density ``1 / mean(1 - cosine similarity to its k nearest neighbours)``.
    Typical points of large uncovered clusters teach most when labels are few.
With a model
    Margin uncertainty sampling (Scheffer, Decomain & Wrobel 2001: the smallest gap
    between the two most probable classes) balanced by coverage: the
    ``pool_factor * n`` most uncertain images are pre-filtered (Zhdanov 2019,
    "Diverse mini-batch active learning") and ``n`` of them are picked by k-center
    greedy (Sener & Savarese 2018, "Active learning for convolutional neural
    networks: a core-set approach", ICLR): each pick is the pool image farthest (in
    cosine distance) from every labelled and already picked image, so a batch does
    not spend five labels on one spot of the space.

Each item may carry its near-identical unlabelled neighbours (cosine similarity
>= ``duplicate_similarity`` on the kNN graph) so the annotator labels a burst of
shots of one part once.

scikit-activeml (which has TypiClust, CoreSet and UncertaintySampling) installs
cleanly, but its query strategies refit their own scikit-learn estimator on every
query and compute full distance matrices; here the probabilities already come
from the calibrated suggestion model and the queue must answer in well under a
second at 100k images, so the ~80 lines below do the two steps directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .graph import KnnGraph


@dataclass
class QueueItem:
    """One entry of the queue.

    Attributes
    ----------
    row : int, the array row to show
    group : list[int], near-identical unlabelled rows shown with it (``row`` first)
    reason : str, why it was chosen, in words
    score : float, the criterion's value (typicality or 1 - margin)
    """

    row: int
    group: list[int] = field(default_factory=list)
    reason: str = ""
    score: float = 0.0


def typicality(graph: KnnGraph) -> np.ndarray:
    """TypiClust's typicality: 1 / mean cosine distance to the k nearest neighbours, (n,) float32."""
    d = np.clip(1.0 - graph.similarities, 1e-6, None)
    return (1.0 / d.mean(axis=1)).astype(np.float32)


def cold_start(x: np.ndarray, graph: KnnGraph, labelled: np.ndarray, n: int, *, seed: int = 0) -> list[QueueItem]:
    """TypiClust picks: the most typical image of each large cluster without labels.

    Parameters
    ----------
    x : ndarray (N, d), float32, L2-normalised
    graph : KnnGraph of ``x``
    labelled : ndarray (N,), bool, rows that already have a label
    n : int, items wanted

    Returns
    -------
    list[QueueItem], at most ``n``
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    cand = ~labelled
    if not cand.any() or n < 1:
        return []
    k = int(min(int(labelled.sum()) + n, cand.sum()))
    est = (KMeans(k, n_init=1, random_state=seed) if len(x) <= 20_000
           else MiniBatchKMeans(k, n_init=1, random_state=seed, batch_size=4096))
    cl = est.fit_predict(np.asarray(x, dtype=np.float32))
    covered = set(cl[labelled].tolist())
    sizes = np.bincount(cl, minlength=k)
    typ = typicality(graph)
    out = []
    for c in np.argsort(-sizes, kind="stable"):
        if c in covered or sizes[c] == 0:
            continue
        members = np.flatnonzero((cl == c) & cand)
        if len(members) == 0:
            continue
        r = int(members[np.argmax(typ[members])])
        out.append(QueueItem(r, [r], f"typical image of an unlabelled region ({int(sizes[c])} similar images)",
                             float(typ[r])))
        if len(out) == n:
            break
    return out


def typical_and_far(x: np.ndarray, graph: KnnGraph, labelled: np.ndarray, n: int, *, sample: int = 5000,
                    seed: int = 0) -> list[QueueItem]:
    """Typical images far from every label: exploration once a model exists.

    A greedy pick of the unlabelled image maximising ``typicality / max typicality
    x cosine distance to the nearest labelled (or already picked) image``: TypiClust's
    typical points (Hacohen et al. 2022) placed like k-center greedy's (Sener &
    Savarese 2018), without re-running KMeans at every refresh. Candidates are a
    random sample of ``sample`` unlabelled images, so the cost does not grow with
    the collection.

    Returns
    -------
    list[QueueItem], at most ``n``
    """
    cand = np.flatnonzero(~labelled)
    if len(cand) == 0 or n < 1:
        return []
    if len(cand) > sample:
        cand = np.sort(np.random.default_rng(seed).choice(cand, sample, replace=False))
    typ = typicality(graph)[cand]
    typ = typ / max(float(typ.max()), 1e-12)
    xc = np.asarray(x[cand], dtype=np.float32)
    lab = np.flatnonzero(labelled)
    best = np.full(len(cand), -1.0, np.float32)
    for i in range(0, len(lab), 4096):
        best = np.maximum(best, (xc @ np.asarray(x[lab[i:i + 4096]], dtype=np.float32).T).max(axis=1))
    dist = 1.0 - best
    out = []
    for _ in range(min(n, len(cand))):
        j = int(np.argmax(typ * dist))
        if dist[j] <= 0:
            break
        r = int(cand[j])
        out.append(QueueItem(r, [r], f"typical image far from every label (cosine distance {float(dist[j]):.2f} "
                                     "to the nearest labelled image)", float(typ[j] * dist[j])))
        dist = np.minimum(dist, 1.0 - xc @ xc[j])
        dist[j] = 0.0
    return out


def k_center_greedy(x: np.ndarray, pool: np.ndarray, centres: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``n`` pool rows, each farthest from the centres and the earlier picks (Sener & Savarese 2018).

    Parameters
    ----------
    x : ndarray (N, d), float32, L2-normalised
    pool : ndarray (p,), int, candidate rows
    centres : ndarray (m,), int, rows already covered (the labelled images)
    n : int

    Returns
    -------
    picked : ndarray (min(n, p),), int64, rows in pick order
    distance : ndarray (min(n, p),), float32, cosine distance of each pick to its nearest centre when
        picked (about 0, or a hair below in float32, for an exact copy of a centre)
    """
    pool = np.asarray(pool, dtype=np.int64)
    xp = np.asarray(x[pool], dtype=np.float32)
    if len(centres):
        best = np.full(len(pool), -np.inf, np.float32)
        for i in range(0, len(centres), 4096):
            best = np.maximum(best, (xp @ np.asarray(x[centres[i:i + 4096]], dtype=np.float32).T).max(axis=1))
        dist = 1.0 - best
    else:
        dist = np.full(len(pool), 2.0, np.float32)
    # Picked rows are masked by -inf, not by a negative distance: an exact copy of a
    # labelled image has distance 0 or a rounding error below it, and must stay pickable
    # (last), or the queue runs dry while such copies are still unlabelled.
    picked, how_far = [], []
    for _ in range(min(n, len(pool))):
        j = int(np.argmax(dist))
        picked.append(int(pool[j]))
        how_far.append(float(dist[j]))
        dist = np.minimum(dist, 1.0 - xp @ xp[j])
        dist[j] = -np.inf
    return np.array(picked, np.int64), np.array(how_far, np.float32)


def uncertain_and_diverse(x: np.ndarray, margin: np.ndarray, label: np.ndarray, classes, labelled: np.ndarray,
                          n: int, *, pool_factor: int = 10) -> list[QueueItem]:
    """Margin uncertainty pre-filter, then k-center greedy inside the pool.

    Parameters
    ----------
    x : ndarray (N, d), float32, L2-normalised
    margin : ndarray (N,), float32, top-1 minus top-2 calibrated probability
    label : ndarray (N,), int, suggested class codes
    classes : sequence of str
    labelled : ndarray (N,), bool
    n : int
    pool_factor : int
        Pool size = ``pool_factor * n`` most uncertain unlabelled rows.
    """
    cand = np.flatnonzero(~labelled)
    if len(cand) == 0 or n < 1:
        return []
    p = int(min(len(cand), max(n, pool_factor * n)))
    pool = cand[np.argpartition(margin[cand], p - 1)[:p]] if p < len(cand) else cand
    picked, far = k_center_greedy(x, pool, np.flatnonzero(labelled), n)
    return [QueueItem(int(r), [int(r)],
                      f"uncertain: suggested {classes[int(label[r])]!r} with margin {float(margin[r]):.2f} over the "
                      f"runner-up; cosine distance {float(d):.2f} to the nearest labelled image",
                      float(1.0 - margin[r])) for r, d in zip(picked, far)]


def add_near_duplicates(items: list[QueueItem], graph: KnnGraph, labelled: np.ndarray,
                        duplicate_similarity: float = 0.99) -> list[QueueItem]:
    """Attach each item's near-identical unlabelled neighbours (not already in another item)."""
    taken = {it.row for it in items}
    for it in items:
        nb, sim = graph.neighbours[it.row], graph.similarities[it.row]
        extra = [int(r) for r, s in zip(nb, sim) if s >= duplicate_similarity and not labelled[r] and int(r) not in taken]
        taken.update(extra)
        it.group = [it.row, *extra]
        if extra:
            it.reason += f"; with {len(extra)} near-identical image(s)"
    return items


def next_items(x: np.ndarray, graph: KnnGraph, labelled: np.ndarray, n: int, *, margin: np.ndarray | None = None,
               label: np.ndarray | None = None, classes=(), explore: float = 0.2, pool_factor: int = 10,
               duplicate_similarity: float = 0.99, seed: int = 0) -> list[QueueItem]:
    """The next ``n`` items to label: the product's queue.

    Without a model (``margin`` None) every item comes from :func:`cold_start`.
    With one, ``round(explore * n)`` items come from :func:`typical_and_far`
    (typical images of regions no label covers yet; low-budget active learning
    favours them, Hacohen et al. 2022) and the rest from
    :func:`uncertain_and_diverse`. Near-identical images join their item
    (:func:`add_near_duplicates`).

    Parameters
    ----------
    x : ndarray (N, d), float32, L2-normalised
    graph : KnnGraph of ``x``
    labelled : ndarray (N,), bool
    n : int
    margin, label : ndarray (N,) or None, from the suggestion model
    classes : sequence of str
    explore : float in [0, 1]
    pool_factor, duplicate_similarity, seed : see the functions above

    Returns
    -------
    list[QueueItem], at most ``n``, no row twice
    """
    labelled = np.asarray(labelled, dtype=bool)
    if margin is None:
        items = cold_start(x, graph, labelled, n, seed=seed)
    else:
        n_explore = int(round(explore * n))
        items = typical_and_far(x, graph, labelled, n_explore, seed=seed) if n_explore else []
        mask = labelled.copy()
        mask[[it.row for it in items]] = True
        items += uncertain_and_diverse(x, margin, label, classes, mask, n - len(items), pool_factor=pool_factor)
    return add_near_duplicates(items, graph, labelled, duplicate_similarity)
