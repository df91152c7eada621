"""The suggestions of the map's points and of each cluster, in the dashboard's terms
(:func:`labeler.assist.suggest.suggest`, cached by the newest action id).

Shared by the map's "suggestion" and "confidence" colourings (:mod:`labeler.app.colors`),
the Clusters tab's cards (the leading suggestion of a cluster) and the Next tab's tests:
one place turns a suggestion into numbers per point and into words.
"""

from __future__ import annotations

import numpy as np

from ..assist.evidence import probability_text, vouch_text
from ..assist.suggest import suggest
from .state import AppContext

#: Suggestions at least this confident colour the map in the "suggestion" mode.
MAP_MIN_CONFIDENCE = 0.8


def _point_arrays(actx: AppContext) -> dict:
    """Per map point: code (int64, -1 = labelled or none), confidence (vouched), probability,
    evidence, to_vouch, by_cluster (NaN / 0 / False where code is -1); and classes."""
    n = actx.n_points
    out = {"code": np.full(n, -1, np.int64), "confidence": np.full(n, np.nan, np.float32),
           "probability": np.full(n, np.nan, np.float32), "evidence": np.zeros(n, np.float32),
           "to_vouch": np.zeros(n, np.int64), "by_cluster": np.zeros(n, bool), "classes": (),
           "source": np.full(n, None, object)}
    if not actx.store.label_counts():  # nothing to learn from: no suggestion model to fit
        return out
    sug = suggest(actx.project)
    out["classes"] = tuple(sug.classes)
    if not sug.classes or not n:
        return out
    ok = sug.unlabelled
    pos, hit = actx.id_index.locate(sug.image_ids[ok])
    out["code"][pos] = sug.label[ok][hit]
    for key in ("confidence", "probability", "evidence", "to_vouch", "by_cluster", "source"):
        out[key][pos] = getattr(sug, key)[ok][hit]
    return out


def point_suggestions(actx: AppContext) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The suggestion of every map point.

    Returns
    -------
    code : ndarray (n_points,), int64
        Suggested class (index into ``classes``); -1 for a labelled point, or when
        there is no suggestion (no labels yet).
    confidence : ndarray (n_points,), float32
        Its vouched confidence in [0, 1]: the calibrated probability capped by what
        held-out labels back (NaN where ``code`` is -1).
    classes : tuple of str
    """
    a = _point_arrays(actx)
    return a["code"], a["confidence"], a["classes"]


def suggested_point_labels(actx: AppContext, min_confidence: float = MAP_MIN_CONFIDENCE):
    """Per map point: its label, else '<suggestion> (suggested)' when at least
    ``min_confidence`` confident, else '' (shape (n_points,), object)."""
    code, conf, classes = point_suggestions(actx)
    out = actx.point_labels()
    for p in np.flatnonzero((code >= 0) & (conf >= min_confidence)):
        out[p] = f"{classes[int(code[p])]} (suggested)"
    return out


def cluster_suggestions(actx: AppContext) -> dict[int, dict]:
    """Per cluster with suggestions: its unlabelled members' leading suggested label.

    Returns
    -------
    dict
        cluster -> {label, share (of the cluster's suggested unlabelled images that
        lead with it), n (suggested unlabelled images), confidence (their mean vouched
        confidence), probability (their median calibrated probability), vouched (share
        of them the held-out evidence vouches for), evidence (the evidence of the
        median member, in words: 'vouched ≥ 0.95 by 60 held-out labels' or 'not enough
        labels yet to vouch: 12 more')}; empty when there are no suggestions.
    """
    a = _point_arrays(actx)
    code, classes = a["code"], a["classes"]
    if not classes:
        return {}
    clusters = actx.assignment().clusters
    has = np.flatnonzero(code >= 0)
    order = has[np.argsort(clusters[has], kind="stable")]
    uniq, starts = np.unique(clusters[order], return_index=True)
    out = {}
    for c, group in zip(uniq, np.split(order, starts[1:])):
        counts = np.bincount(code[group], minlength=len(classes))
        best = int(counts.argmax())
        lead = group[code[group] == best]
        mid = lead[np.argsort(a["probability"][lead], kind="stable")[len(lead) // 2]]
        vouched = (a["to_vouch"][lead] == 0) & (a["evidence"][lead] > 0)
        srcs = [v for v in a["source"][lead] if v is not None]  # an expert decided most of them
        source = max(set(srcs), key=srcs.count) if 2 * len(srcs) > len(lead) else None
        out[int(c)] = {"label": classes[best], "share": float(counts[best] / len(group)), "n": int(len(group)),
                       "confidence": float(a["confidence"][lead].mean()),
                       "probability": float(a["probability"][mid]), "vouched": float(vouched.mean()),
                       "source": source,
                       "evidence": vouch_text(a["probability"][mid], a["confidence"][mid], a["evidence"][mid],
                                              a["to_vouch"][mid], a["by_cluster"][mid])}
    return out


def suggestion_text(s: dict | None) -> str | None:
    """'suggested: mono for 85% of 120 unlabelled: probability 0.97 it is right (median);
    vouched ≥ 0.95 by 60 held-out labels' (None when none). Both numbers, in words."""
    if not s:
        return None
    head = f"suggested: {s['label']} for {100 * s['share']:.0f}% of {s['n']:,} unlabelled" \
        + (f" ({s['source']})" if s.get("source") else "")
    if "probability" not in s:  # an older dict: say what the number is
        return f"{head} (mean vouched confidence {s['confidence']:.2f})"
    return f"{head}: {probability_text(s['probability'])} (median); {s['evidence']}"
