"""The novelty threshold of reverse image search, calibrated without near-duplicates.

A query photo is flagged novel (unlike anything in the collection) when its best
cosine similarity to the collection is below a threshold: a low percentile of
the similarities a *new, ordinary* photo of the collection would get.

Those are estimated from the collection itself, one sampled image at a time,
as if it had been held out. The naive estimate, an image's similarity to its
nearest other image, is not held-out-like when the collection holds bursts
(several shots of one part): the nearest other image is then another shot of
the same part, almost a copy, whereas a new photo of a new part has no such
sibling. Calibrated on those inflated values the threshold rises and ordinary
new photos are flagged novel. So the statistic leaves the image's near-copies
out:

- with known groups (images sharing a part id or burst id): the similarity to
  the nearest image of *another* group (leave-group-out);
- otherwise: the similarity to the ``rank``-th nearest other image. Among an
  image's ``rank`` nearest neighbours at most ``b - 1`` are shots of its own
  burst (burst size ``b``), so for bursts of up to ``rank`` shots this value is
  at most the similarity to the nearest image of another part: the threshold
  errs towards flagging too little, never too much. Without bursts it is
  lower than the nearest-neighbour value, so the default percentile is 5, not 1.

Measured with ``benchmarks/bench_novelty.py`` (262 held-out ELPV photos; 84
out-of-domain photos from scikit-image and scikit-learn): at the 5th percentile
of the 5th-neighbour similarity, 1.9 % of held-out photos were flagged novel
against the 2,362 other ELPV photos and 1.1 % against a collection of 300 parts
x 3 synthetic burst shots (the nearest-neighbour rule at its old 1st
percentile: 1.5 % and 18.3 %), and 95 % / 89 % of out-of-domain photos.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BadInputError
from .index import ExactIndex, build_index, self_neighbours

# Bursts of up to 5 shots of one part are left out of the statistic.
NOVELTY_RANK = 5
# 2,000 queries pin the 1st percentile well (its 20th value) and cost ~50 s at 1M rows.
SAMPLE = 2000
PERCENTILES = (0.5, 1, 2, 5, 10, 50)


@dataclass
class NoveltyCalibration:
    """A novelty threshold and the statistics it came from.

    Attributes
    ----------
    threshold : float
        Cosine similarity in [-1, 1]; a query whose best similarity is below it is novel.
    percentiles : dict[str, float]
        Percentiles (keys '0.5', '1', ... '50') of the held-out-style similarities.
    method : str
        'rank-5' (the 5th nearest other image) or 'leave-group-out'.
    sample : int
        Images the statistics were computed on.
    """

    threshold: float
    percentiles: dict[str, float]
    method: str
    sample: int


def held_out_similarities(vectors: np.ndarray, *, sample: int | None = SAMPLE, seed: int = 0,
                          rank: int = NOVELTY_RANK, groups: np.ndarray | None = None,
                          index=None) -> np.ndarray:
    """What a held-out image's best similarity to the collection would be, for a sample of images.

    Parameters
    ----------
    vectors : ndarray of shape (n, d), float32
        L2-normalised rows (``pca.npy``).
    sample : int or None
        Images to compute it for (random, without replacement); None = all.
    rank : int
        Without ``groups``: the similarity to the ``rank``-th nearest other image
        (capped at n - 1).
    groups : ndarray of shape (n,), int, or None
        Group code of each image (same part or burst); then the similarity to
        the nearest image of another group (-1.0 when there is none).
    index : object with ``search(queries, k, exclude=)`` or None
        A prebuilt index over ``vectors``; None: exact search for a sample,
        :func:`labeler.index.build_index` when every row is a query.

    Returns
    -------
    ndarray of shape (m,), float32; m = min(n, sample).

    Raises
    ------
    BadInputError
        rank < 1, or ``groups`` of another length than ``vectors``.
    """
    x = np.asarray(vectors, dtype=np.float32)
    n = len(x)
    if rank < 1:
        raise BadInputError(f"rank must be at least 1, got {rank}")
    if groups is not None and len(groups) != n:
        raise BadInputError(f"{len(groups)} group codes for {n} images")
    if n < 2:
        return np.ones(n, np.float32)
    rows = np.arange(n) if sample is None or n <= sample else np.sort(
        np.random.default_rng(seed).choice(n, sample, replace=False))
    if index is None:
        # A sample's queries cost sample x n inner products exactly (faiss.knn, blocked);
        # a graph index would first cost a build over all n rows (minutes at 1M).
        index = build_index(x) if len(rows) == n else ExactIndex(x)
    if groups is None:
        sims, _ = self_neighbours(x, rank, rows=rows, index=index)
        return sims[:, -1].astype(np.float32)
    groups = np.asarray(groups)
    _, counts = np.unique(groups, return_counts=True)
    # One more neighbour than the largest group always reaches another group (if any).
    sims, found = self_neighbours(x, int(counts.max()), rows=rows, index=index)
    other = groups[found] != groups[rows][:, None]
    first = np.argmax(other, axis=1)
    return np.where(other.any(1), sims[np.arange(len(rows)), first], -1.0).astype(np.float32)


def calibrate(vectors: np.ndarray, percentile: float = 1.0, *, sample: int | None = SAMPLE, seed: int = 0,
              rank: int = NOVELTY_RANK, groups: np.ndarray | None = None, index=None) -> NoveltyCalibration:
    """The novelty threshold: the ``percentile``-th percentile of :func:`held_out_similarities`.

    A percentile p flags about p % of new in-domain photos as novel when the
    statistic matches held-out photos (fewer with bursts of up to ``rank``
    shots). Parameters as in :func:`held_out_similarities`.

    Raises
    ------
    BadInputError
        ``percentile`` outside [0, 100], rank < 1, or ``groups`` of the wrong length.
    """
    if not 0 <= percentile <= 100:
        raise BadInputError(f"novelty percentile must be in [0, 100], got {percentile}")
    sims = held_out_similarities(vectors, sample=sample, seed=seed, rank=rank, groups=groups, index=index)
    return NoveltyCalibration(
        threshold=float(np.percentile(sims, percentile)),
        percentiles={str(p): float(np.percentile(sims, p)) for p in PERCENTILES},
        method="leave-group-out" if groups is not None else f"rank-{rank}",
        sample=int(len(sims)),
    )
