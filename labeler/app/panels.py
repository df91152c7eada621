"""Pure logic that turns library results into the panels' rows: the Clusters panel,
progress, paging and the facts shown under each thumbnail.

No Dash callbacks here: every function takes plain values (or an
:class:`~labeler.app.state.AppContext`) and returns plain values, so the tests
call them directly.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import BadInputError
from .state import AppContext

SORT_KEYS = ("size", "unlabelled", "review")
MIXED_MAJORITY = 0.8  # a cluster whose labelled images agree less than this needs review
PER_PAGE = 40  # thumbnails per grid page (the Clusters, Selection and Search grids; PageDown / PageUp)
CARDS_PER_PAGE = 8  # cluster cards per page of the Clusters list


# -- clusters panel ---------------------------------------------------------------------


def cluster_rows(ctx: AppContext) -> list[dict]:
    """One row per cluster of the current clustering, for the Clusters panel.

    Returns
    -------
    list of dict
        cluster, size, labelled, unlabelled, share (labelled / size), majority
        (label or None), majority_share (among labelled), counts ({label: n}),
        cohesion, hint (the ImageNet hint where the backbone is
        confident, else None: :func:`cluster_hints`), representatives (ids,
        nearest to the centroid first), needs_review (bool) and review_reason (str).
    """
    summaries = ctx.store.cluster_summaries()
    clusters = ctx.assignment().clusters
    labels = ctx.point_labels()
    per: dict[int, Counter] = {}
    for c, lab in zip(clusters[labels != ""], labels[labels != ""]):
        per.setdefault(int(c), Counter())[lab] += 1
    cohesions = [s["cohesion"] for s in summaries if s["cohesion"] is not None and s["cluster"] >= 0]
    low = float(np.percentile(cohesions, 25)) if len(cohesions) >= 4 else -np.inf
    hints = cluster_hints(ctx)
    rows = []
    for s in summaries:
        c = int(s["cluster"])
        counts = per.get(c, Counter())
        n_lab = sum(counts.values())
        maj, maj_n = counts.most_common(1)[0] if counts else (None, 0)
        maj_share = maj_n / n_lab if n_lab else None
        reasons = []
        if c >= 0 and s["cohesion"] is not None and s["cohesion"] < low:
            reasons.append(f"low cohesion {s['cohesion']:.2f}")
        if n_lab >= 2 and maj_share < MIXED_MAJORITY:
            reasons.append(f"mixed labels ({len(counts)})")
        rows.append({
            "cluster": c, "size": int(s["size"]), "labelled": n_lab, "unlabelled": int(s["size"]) - n_lab,
            "share": n_lab / s["size"] if s["size"] else 0.0, "majority": maj, "majority_share": maj_share,
            "counts": dict(counts.most_common()), "cohesion": s["cohesion"],
            "hint": hints.get(c),
            "representatives": list(s["representatives"]),
            "needs_review": bool(reasons), "review_reason": ", ".join(reasons),
        })
    return rows


def cluster_hints(actx: AppContext) -> dict[int, str]:
    """The ImageNet hint of each cluster where the backbone is confident
    (:func:`labeler.hints.cluster_hint`); empty when the project hides hints."""
    from ..hints import hints_by_cluster

    min_prob = actx.hint_threshold()
    if min_prob is None:
        return {}
    top1, prob, cats = actx.imagenet()
    return hints_by_cluster(actx.assignment().clusters, top1, prob, cats, min_prob)


def sort_clusters(rows: list[dict], by: str = "size") -> list[dict]:
    """Clusters sorted for the panel; noise always last.

    ``by``: 'size' (largest first), 'unlabelled' (most unlabelled images first) or
    'review' (flagged first: mixed labels, then low cohesion; then by cohesion).
    """
    if by not in SORT_KEYS:
        raise BadInputError(f"unknown sort {by!r}: one of {SORT_KEYS}")

    def key(r):
        noise = r["cluster"] < 0
        if by == "size":
            return (noise, -r["size"], r["cluster"])
        if by == "unlabelled":
            return (noise, -r["unlabelled"], -r["size"], r["cluster"])
        mixed = 1 - r["majority_share"] if r["majority_share"] is not None else 0.0
        coh = r["cohesion"] if r["cohesion"] is not None else 1.0
        return (noise, not r["needs_review"], -mixed, coh, r["cluster"])

    return sorted(rows, key=key)


def cluster_members_ordered(ctx: AppContext, cluster: int) -> list[int]:
    """Members of a cluster: representatives first (nearest to the centroid), then by id."""
    members = ctx.store.cluster_members(cluster)
    summary = next((s for s in ctx.store.cluster_summaries() if s["cluster"] == cluster), None)
    reps = [i for i in (summary["representatives"] if summary else []) if i in set(members)]
    seen = set(reps)
    return reps + [i for i in members if i not in seen]


# -- progress and paging ----------------------------------------------------------------


def progress(ctx: AppContext) -> dict:
    """labelled, total (images on the map), percent, counts per label and stale labels
    (their file changed since they were given)."""
    counts = ctx.store.label_counts()
    labelled = sum(counts.values())
    total = max(ctx.n_points, labelled)
    return {"labelled": labelled, "total": total, "stale": len(ctx.store.stale_image_ids()),
            "percent": 100.0 * labelled / total if total else 0.0, "counts": counts}


def page_of(items: list, page: int, per_page: int) -> tuple[list, int, int]:
    """Items of a 1-based page: (items, page clamped to range, number of pages)."""
    n_pages = max(1, -(-len(items) // per_page))
    page = int(min(max(int(page or 1), 1), n_pages))
    return items[(page - 1) * per_page: page * per_page], page, n_pages


def image_facts(ctx: AppContext, image_ids: list[int]) -> dict[int, dict]:
    """{id: {path (file name), label, stale, cluster}} for captions and tooltips."""
    if not image_ids:
        return {}
    rows = ctx.store.get_images(image_ids)
    label_rows = ctx.store.current_label_rows(image_ids)
    clusters = ctx.store.clusters_for(image_ids)
    return {int(r["id"]): {"path": r["path"],
                           "label": label_rows[r["id"]]["label"] if r["id"] in label_rows else None,
                           "stale": bool(label_rows[r["id"]]["stale"]) if r["id"] in label_rows else False,
                           "cluster": int(clusters.get(r["id"], -1))} for r in rows}
