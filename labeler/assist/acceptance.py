"""Accepting suggestions: the expected-error budget, the refusal below probability 0.5,
and what an accept reports (:func:`labeler.assist.suggest.accept` does the accept).

Pure numpy; no project access here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BadInputError


class LowProbabilityError(BadInputError):
    """An accept that would take suggestions below probability 0.5 (more likely wrong than
    right), or asked for a threshold below 0.5, without ``allow_low``. Nothing changed.

    Attributes: ``what`` (str, the reason without the advice: the CLI adds '--yes', the
    dashboard 'click again'), ``lowest`` (float, the lowest probability or threshold
    concerned), ``n`` (int, the suggestions the accept would take; 0 when not counted)."""

    def __init__(self, what: str, lowest: float, n: int):
        super().__init__(f"{what}; confirm to accept anyway; nothing changed")
        self.what, self.lowest, self.n = what, lowest, n


#: Below this probability (or threshold) an accept needs ``allow_low`` (``--yes``).
LOW_PROBABILITY = 0.5


def budget_size(probability: np.ndarray, max_expected_error: float) -> int:
    """How many of ``probability`` (descending) to accept under an expected-error budget.

    The largest ``k`` whose first ``k`` suggestions have an expected wrong count
    ``sum(1 - p)`` of at most ``max_expected_error * k``. Sorted descending, ``1 - p``
    ascends, so the running mean of the prefix never decreases: the admissible prefixes
    are the first ones, and no other set of ``k`` has a smaller expected wrong count, so
    the prefix is the largest such set. 0 when even the most probable one misses the budget.
    """
    p = np.asarray(probability, dtype=np.float64)
    if len(p) and np.any(np.diff(p) > 1e-12):
        raise ValueError("probability must be sorted in descending order")
    k = np.arange(1, len(p) + 1)
    ok = np.cumsum(1.0 - p) <= float(max_expected_error) * k + 1e-9
    return int(ok.sum())


@dataclass
class AcceptResult:
    """What :func:`accept` did.

    Attributes
    ----------
    result : :class:`labeler.labels.LabelResult`, the action (``action_id``, images
        written, skipped because labelled meanwhile)
    label : str
    min_confidence : float or None, the vouched-confidence threshold asked for
    max_expected_error : float or None, the expected-error budget asked for
    probability : ndarray (k,), float32, calibrated probabilities of the written images
    expected_wrong : float, ``sum(1 - probability)`` over the written images
    wrong_bound : float, an upper bound of that count from the held-out evidence:
        ``sum(1 - vouched confidence)``, each term one minus a one-sided 95 %
        Clopper-Pearson lower bound of the held-out accuracy of predictions at least that
        confident (:mod:`labeler.assist.evidence`; 95 % per confidence level, not
        simultaneous; no held-out evidence bounds nothing: 1 per image)
    """

    result: object
    label: str
    min_confidence: float | None
    max_expected_error: float | None
    probability: np.ndarray
    expected_wrong: float
    wrong_bound: float

    @property
    def action_id(self) -> int | None:
        return self.result.action_id

    @property
    def written(self) -> list[int]:
        return self.result.written

    @property
    def skipped(self) -> list:
        return self.result.skipped

    def message(self) -> str:
        """One line: how many accepted and how, the expected wrong count and its bound, skips."""
        from ..labels import held_summary

        n = len(self.written)
        how = []
        if self.min_confidence is not None:
            how.append(f"vouched confidence >= {self.min_confidence:g}")
        if self.max_expected_error is not None:
            how.append(f"the largest set expected <= {100 * self.max_expected_error:g} % wrong")
        out = (f"accepted {n:,} suggestion(s) of {self.label!r} ({', '.join(how) or 'chosen images'}): "
               f"expected wrong {self.expected_wrong:.1f} ({100 * self.expected_wrong / max(n, 1):.1f} %), "
               f"at most {self.wrong_bound:.1f} ({100 * self.wrong_bound / max(n, 1):.0f} %) "
               "by the held-out evidence")
        if self.skipped:
            out += f"; {len(self.skipped):,} labelled meanwhile left unchanged ({held_summary(self.skipped)})"
        return out

    def to_dict(self) -> dict:
        """JSON-ready: the action (:meth:`LabelResult.to_dict`) plus the accept's numbers."""
        n = len(self.written)
        return {**self.result.to_dict(), "label": self.label, "min_confidence": self.min_confidence,
                "max_expected_error": self.max_expected_error,
                "expected_wrong": round(self.expected_wrong, 3), "wrong_bound": round(self.wrong_bound, 3),
                "expected_wrong_share": round(self.expected_wrong / n, 4) if n else None,
                "wrong_bound_share": round(self.wrong_bound / n, 4) if n else None,
                "lowest_probability": round(float(self.probability.min()), 4) if n else None}
