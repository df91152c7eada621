"""What held-out labels vouch for: the evidence half of a suggestion's two numbers.

A suggestion carries two numbers (:mod:`labeler.assist.model`,
:class:`labeler.assist.suggest.Suggestions`):

- its **probability**: the calibrated probability that the suggested label is right
  (temperature scaling on held-out predictions);
- its **evidence**: whether held-out labels are enough to vouch for that probability.
  Held-out (out-of-fold) predictions at least as confident as the suggestion form a
  population; the one-sided Clopper-Pearson lower bound of its accuracy is what the
  evidence vouches for. A suggestion is *vouched* once that bound reaches its
  probability (at most :data:`VOUCH_LEVEL`); until then :func:`more_to_vouch` says how
  many more held-out labels, all right, it would take.

The *vouched confidence* ``min(probability, lower bound)`` is what ``labeler accept
--min-confidence`` compares with (measured: ``benchmarks/bench_labeling.py``).
Pure numpy / scipy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: One-sided level of the Clopper-Pearson lower bound in :func:`evidence_bound` (the
#: conventional 95 % bound). At 0.2 (an 80 % bound) the label-next flow on ELPV accepted
#: "no defect" suggestions of confidence >= 0.95 that were 17 % wrong, and at >= 0.9
#: 27.5 % wrong (defect level; ``benchmarks/bench_labeling.py --threshold 0.9``): the
#: held-out images are the ones the queue chose, easier at the top than the rest.
EVIDENCE_ALPHA = 0.05
#: The level a suggestion is "vouched" at when its probability is higher: the held-out
#: evidence vouches for a suggestion once its lower bound reaches min(probability, this).
VOUCH_LEVEL = 0.95


def evidence_bound(p: np.ndarray, oof_confidence: np.ndarray, oof_correct: np.ndarray,
                   oof_count: np.ndarray | None = None) -> np.ndarray:
    """Cap each confidence by what held-out labels at that confidence have shown.

    ``min(p, lower bound)`` of :func:`evidence_detail` (its ``vouched``); see there.
    Non-decreasing in ``p``; 0 without held-out evidence. Returns (n,) float32.
    """
    return evidence_detail(p, oof_confidence, oof_correct, oof_count).vouched


@dataclass
class Evidence:
    """What held-out labels vouch for, per suggestion (all arrays (n,)).

    Attributes
    ----------
    vouched : float32, ``min(p, lower)``: the confidence the held-out evidence backs
    lower : float32, the one-sided Clopper-Pearson lower bound (level
        :data:`EVIDENCE_ALPHA`) of the accuracy of held-out predictions at least this
        confident, the best such population; 0 without held-out evidence
    count : float32, held-out predictions in that population (a weighted count: a
        held-out cluster counts once), the evidence behind ``lower``
    to_vouch : int64, how many more held-out predictions that confident, all right,
        would make ``lower`` reach :func:`vouch_target` (0: vouched)
    """

    vouched: np.ndarray
    lower: np.ndarray
    count: np.ndarray
    to_vouch: np.ndarray


def vouch_target(p: np.ndarray) -> np.ndarray:
    """The level a suggestion of probability ``p`` is vouched at: ``p`` rounded down to
    two decimals (what a card shows), at most :data:`VOUCH_LEVEL`. (n,) float64."""
    return np.minimum(np.floor(np.asarray(p, dtype=np.float64) * 100 + 1e-6) / 100, VOUCH_LEVEL)


def _lower_bound(right, count) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound (level :data:`EVIDENCE_ALPHA`) of an accuracy
    from ``right`` of ``count`` (floats: weighted counts); 0 when nothing was right."""
    from scipy.stats import beta

    c, k = np.broadcast_arrays(np.asarray(right, dtype=np.float64), np.asarray(count, dtype=np.float64))
    out = np.zeros(c.shape, np.float64)
    pos = c > 0
    out[pos] = beta.ppf(EVIDENCE_ALPHA, c[pos], np.maximum(k[pos] - c[pos], 0) + 1)
    return out


def more_to_vouch(right, count, target, cap: int = 100_000, lower=None) -> np.ndarray:
    """The least n >= 0 such that ``right + n`` right of ``count + n`` held-out
    predictions give a lower bound (:func:`_lower_bound`) of at least ``target``:
    how many more labels, all right, the evidence needs. Capped at ``cap``. (n,) int64.
    ``lower``: the bound of ``right`` of ``count`` when already known (saves its computation)."""
    c, k, t = (np.asarray(v, dtype=np.float64).ravel() for v in (right, count, target))
    out = np.zeros(len(t), np.int64)
    low = _lower_bound(c, k) if lower is None else np.asarray(lower, dtype=np.float64).ravel()
    todo = low < t - 1e-9
    if not todo.any():
        return out
    # Few distinct (population, target) pairs: bisect each once (rows deduplicated by their bytes).
    key = np.ascontiguousarray(np.c_[c[todo], k[todo], t[todo]])
    _, first, inv = np.unique(key.view(np.dtype((np.void, key.itemsize * 3))).ravel(),
                              return_index=True, return_inverse=True)
    uniq = key[first]
    lo, hi = np.zeros(len(uniq)), np.full(len(uniq), float(cap))
    for _ in range(int(np.ceil(np.log2(cap))) + 1):  # invariant: lo fails, hi passes (or is the cap)
        mid = np.floor((lo + hi) / 2)
        ok = _lower_bound(uniq[:, 0] + mid, uniq[:, 1] + mid) >= uniq[:, 2] - 1e-9
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    out[todo] = hi[np.ravel(inv)].astype(np.int64)
    return out


def evidence_detail(p: np.ndarray, oof_confidence: np.ndarray | None, oof_correct: np.ndarray | None,
                    oof_count: np.ndarray | None = None) -> Evidence:
    """What held-out labels at each confidence have shown, and what they vouch for.

    An image with calibrated probability ``p`` belongs to every population
    "predictions at least t confident" with t <= p. For each such t seen among
    the out-of-fold (held-out) predictions, with k of them at least t confident
    and c of those right, the accuracy of that population is at least the
    one-sided Clopper-Pearson lower bound (level :data:`EVIDENCE_ALPHA`) of c/k.
    The evidence of ``p`` is the population with the best such bound; it vouches
    for ``min(p, bound)``: 95 % is claimed only after ~59 held-out predictions that
    confident were all right (more when some were wrong), in the spirit of
    selective classification with a guaranteed risk (Geifman & El-Yaniv 2017,
    "Selective classification for deep neural networks", NeurIPS). ``vouched`` is
    non-decreasing in ``p``; without held-out evidence it is 0 (nothing vouched).

    Parameters
    ----------
    p : ndarray (n,), float, calibrated probability of the suggested label
    oof_confidence : ndarray (m,), float, held-out confidences, descending (None: none)
    oof_correct : ndarray (m,), cumulative count of right ones in that order
    oof_count : ndarray (m,), float, or None
        Cumulative count of held-out predictions in that order (default 1, 2, ..., m).
        Weighted counts give correlated predictions their effective sample size: a
        held-out cluster counts once, however many members it has.

    Returns
    -------
    Evidence
    """
    p = np.asarray(p, dtype=np.float64)
    n = len(p)
    m = 0 if oof_confidence is None else len(oof_confidence)
    if m == 0:
        zero = np.zeros(n, np.float32)
        return Evidence(zero, zero.copy(), zero.copy(), more_to_vouch(np.zeros(n), np.zeros(n), vouch_target(p)))
    k = np.arange(1, m + 1, dtype=np.float64) if oof_count is None else np.asarray(oof_count, dtype=np.float64)
    c = np.asarray(oof_correct, dtype=np.float64)
    lower = _lower_bound(c, k)
    # Tied confidences form one population: only the last index of a run of ties counts.
    conf = np.asarray(oof_confidence, dtype=np.float64)
    last = np.r_[conf[1:] != conf[:-1], True]
    lower = np.where(last, lower, 0.0)
    # The best bound over prefixes j >= i, and where it is reached.
    rev = lower[::-1]
    run = np.maximum.accumulate(rev)
    at = np.maximum.accumulate(np.where(rev >= run, np.arange(m), 0))
    best_from, best_at = run[::-1], (m - 1 - at)[::-1]
    # Populations open to p: "at least t confident" for t <= p, i.e. the prefixes
    # at least as long as the count of held-out predictions with confidence >= p.
    j0 = np.maximum(np.searchsorted(-conf, -p, side="right") - 1, 0)
    j = best_at[j0]
    low = best_from[j0]
    return Evidence(np.minimum(p, low).astype(np.float32), low.astype(np.float32), k[j].astype(np.float32),
                    more_to_vouch(c[j], k[j], vouch_target(p), lower=low))


def _floor2(v: float) -> float:
    return float(np.floor(float(v) * 100 + 1e-6) / 100)


def vouch_text(probability: float, vouched: float, count: float, to_vouch: int, by_cluster: bool = False) -> str:
    """The evidence half in words, never a bare number.

    'vouched ≥ 0.95 by 60 held-out labels' (vouched); 'vouched only ≥ 0.78 by 12
    held-out labels: 47 more to vouch for 0.95' (partly); 'not enough labels yet to
    vouch: 59 more' (the bound is below 0.5, or there is no evidence). With
    ``by_cluster`` the unit is held-out clusters (the image's cluster has no label).
    """
    unit = "clusters" if by_cluster else "labels"
    n = f"{count:,.0f}" if count >= 1 or count == 0 else f"{count:.1f}"
    if int(to_vouch) == 0 and count > 0:
        return f"vouched ≥ {_floor2(vouched):.2f} by {n} held-out {unit}"
    if vouched >= 0.5:
        return (f"vouched only ≥ {_floor2(vouched):.2f} by {n} held-out {unit}: {int(to_vouch):,} more to vouch "
                f"for {float(vouch_target([probability])[0]):.2f}")
    what = "labelled clusters" if by_cluster else "labels"
    return f"not enough {what} yet to vouch: {int(to_vouch):,} more"


def probability_text(probability: float) -> str:
    """'probability 0.97 it is right'; below 0.5 it says 'more likely wrong than right'."""
    p = float(probability)
    return f"probability {_floor2(p):.2f} it is right" + (" (more likely wrong than right)" if p < 0.5 else "")


def suggestion_text(probability: float, vouched: float, count: float, to_vouch: int, by_cluster: bool = False) -> str:
    """Both numbers of one suggestion: 'probability 0.97 it is right; vouched ≥ 0.95 by
    60 held-out labels' (see :func:`vouch_text`)."""
    return f"{probability_text(probability)}; {vouch_text(probability, vouched, count, to_vouch, by_cluster)}"
