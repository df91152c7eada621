"""Likely label errors: labelled images, and whole groups of them, whose label disagrees with the evidence.

**Single images.** A linear probe (multinomial logistic regression, the suggestion
model's own: :mod:`labeler.assist.model`) over the images' L2-normalised PCA vectors
gives, for every labelled image, *held-out* class probabilities: the image's own
label never trains the model that scores it. The folds hold out near-duplicate groups
whole (connected components of the k-nearest-neighbour graph of same-label images
above :data:`DUPLICATE_THRESHOLD`, :func:`labeler.duplicates.duplicate_components`), so a
copy of an image cannot vouch for it. cleanlab's ``find_label_issues`` (confident
learning: Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 2021) flags the images whose given label is unlikely under those
probabilities, and ``get_label_quality_scores`` (self-confidence: the probability of the
given label) ranks them, lowest first. The suggested label is the probe's most
probable class.

**Whole groups.** Twelve close neighbours labelled wrong together are invisible to
image folds: the probe learns their label from the group's own members. So a second
pass holds out whole groups (the folds of the suggestion calibration,
:func:`labeler.assist.model.stable_folds` with groups: scikit-learn's ``GroupKFold`` idea),
where a group is a cluster of the current clustering, or for images outside any
cluster a group of near neighbours: a connected component of the k-NN graph over
the labelled images of one label, cosine similarity at least
:data:`NEIGHBOUR_THRESHOLD`. The labelled members of one cluster that share a label,
and each such group of near neighbours, are then checked as a whole: when a model
that never saw any of them predicts another label (the argmax of their mean held-out
probabilities) and gives their own label a mean probability of at most
:data:`MAX_GROUP_SCORE`, the group is flagged, with that mean as its score. A group whose label the model saw in fewer than two other groups, or on
fewer images than the group holds, is not checked: the evidence outside must outweigh
it (with one cluster per label there is none). Flagged
groups are checked once more with all flagged groups left out of training, so that two
groups that contradict each other (a wrong group being its label's only other example)
are not both, or the wrong one, reported.

``benchmarks/bench_review.py`` measures both on ELPV: single flips and planted wrong
groups (a cluster's labels, or 5-20 neighbours' labels, flipped).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import BadInputError
from .project import Project

#: Cosine similarity of near-duplicates held out together in the single-image pass.
DUPLICATE_THRESHOLD = 0.99
#: Cosine similarity joining near neighbours of one label into a group (the group check).
NEIGHBOUR_THRESHOLD = 0.85
#: Neighbours searched per image for those groups.
NEIGHBOUR_K = 10
#: Fewest labelled members of a group that is checked as a group.
MIN_GROUP = 3
#: A group is flagged when the model trained without it predicts another label and gives
#: the group's own label at most this mean probability. At 0.5 (any disagreement) correct
#: groups of 50-90 ELPV cells that the model finds ambiguous without them were flagged
#: too (3 in 5 seeds with clusters, 7 without); wrong groups score 0.02-0.3
#: (``benchmarks/bench_review.py --max-group-score``).
MAX_GROUP_SCORE = 0.3


@dataclass
class LabelIssue:
    """One image whose label is probably wrong.

    Attributes
    ----------
    image_id : int
    path : str
    label : str
        The current label.
    suggested_label : str
        The probe's most probable class.
    score : float
        Label quality in [0, 1]: out-of-fold probability of the given label; lower
        is more likely wrong.
    source, annotator : str
        Who gave the label and how.
    """

    image_id: int
    path: str
    label: str
    suggested_label: str
    score: float
    source: str = ""
    annotator: str = ""


@dataclass
class GroupIssue:
    """A group of labelled images that share a label a model trained without them disagrees with.

    Attributes
    ----------
    group_id : str
        ``cluster C`` (the members of cluster C with that label) or ``neighbours N``
        (a group of near neighbours; N is its number in this report).
    kind : str
        ``cluster`` or ``neighbours``.
    image_ids : list of int
        The members, ascending.
    label : str
        Their shared current label.
    suggested_label : str
        The most probable label under the held-out model (mean over the members).
    score : float
        Mean held-out probability of ``label`` over the members; lower is more likely wrong.
    annotators : dict
        {annotator: members labelled by them}.
    """

    group_id: str
    kind: str
    image_ids: list[int]
    label: str
    suggested_label: str
    score: float
    annotators: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.image_ids)


@dataclass
class ReviewReport:
    """Result of :func:`review_labels`.

    Attributes
    ----------
    issues : list of LabelIssue
        Flagged images, most likely wrong first.
    groups : list of GroupIssue
        Flagged groups, most likely wrong first.
    n_labelled : int
        Labelled embedded images examined.
    classes : list of str
        Labels the probe learned (labels with fewer than 2 images are left out).
    left_out : int
        Labelled images of those rare labels (not examined).
    probe_accuracy : float
        Out-of-fold accuracy of the probe against the current labels.
    group_accuracy : float
        The same with whole groups held out (clusters, when there is a clustering).
    groups_checked : int
        Groups (of at least :data:`MIN_GROUP` members) checked as a whole.
    group_folds : str
        What the group passes held out: ``clusters and neighbours``, or ``neighbours``
        (no clustering).
    folds : int
    """

    issues: list[LabelIssue] = field(default_factory=list)
    groups: list[GroupIssue] = field(default_factory=list)
    n_labelled: int = 0
    classes: list[str] = field(default_factory=list)
    left_out: int = 0
    probe_accuracy: float = float("nan")
    group_accuracy: float = float("nan")
    groups_checked: int = 0
    group_folds: str = ""
    folds: int = 0

    def text(self, limit: int = 30) -> list[str]:
        """The report as lines for a terminal: a summary, then up to ``limit`` flagged images
        and up to ``limit`` flagged groups, most likely wrong first."""
        out = [f"{len(self.issues)} likely label error(s) among {self.n_labelled} labelled image(s); probe "
               f"accuracy {self.probe_accuracy:.1%} ({self.folds}-fold, classes: {', '.join(self.classes)})"]
        if self.left_out:
            out.append(f"  {self.left_out} image(s) of labels with a single image were not examined")
        out += [f"  {it.score:.3f}  id {it.image_id:>6}  {it.label!r} -> suggested {it.suggested_label!r}  "
                f"({it.source} by {it.annotator})  {it.path}" for it in self.issues[:limit]]
        if len(self.issues) > limit:
            out.append(f"  ... {len(self.issues) - limit} more (--limit, --json)")
        out.append(f"{len(self.groups)} group(s) labelled wrong as a whole, of {self.groups_checked} checked "
                   f"(whole {self.group_folds} held out; accuracy then {self.group_accuracy:.1%})")
        for g in self.groups[:limit]:
            ids = " ".join(str(i) for i in g.image_ids[:12]) + (" ..." if g.size > 12 else "")
            out.append(f"  {g.score:.3f}  {g.group_id}: {g.size} image(s) {g.label!r} -> suggested "
                       f"{g.suggested_label!r}  ids {ids}")
        if len(self.groups) > limit:
            out.append(f"  ... {len(self.groups) - limit} more (--limit, --json)")
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["n_issues"] = len(self.issues)
        d["n_groups"] = len(self.groups)
        for g in d["groups"]:
            g["size"] = len(g["image_ids"])
        return d


def held_out_probabilities(x: np.ndarray, y: np.ndarray, fold: np.ndarray, n_classes: int,
                           exclude: np.ndarray | None = None) -> np.ndarray:
    """Class probabilities of every row from the suggestion model's linear probe trained on the other folds.

    Parameters
    ----------
    x : ndarray (n, d) float32, L2-normalised features
    y : ndarray (n,) int64, class indices 0..n_classes-1
    fold : ndarray (n,) int64, fold of each row (-1: always trained on; its row stays
        uniform)
    n_classes : int
    exclude : ndarray (n,) bool or None
        Rows that train no model (they are still scored).

    Returns
    -------
    ndarray (n, n_classes) float64
        A class absent from a fold's training rows gets probability 0 there.
    """
    from .probe import fit_probe, log_softmax, probe_logits
    from .index import one_blas_thread

    out = np.full((len(y), n_classes), 1.0 / n_classes)
    with one_blas_thread():  # small problems: a second BLAS thread only slows L-BFGS down
        for f in np.unique(fold[fold >= 0]):
            held, train = fold == f, fold != f
            if exclude is not None:
                train &= ~exclude
            if len(np.unique(y[train])) < 2:
                continue
            model, present = fit_probe(x[train], y[train], n_classes, c=1.0)
            out[held] = np.exp(log_softmax(probe_logits(model, present, x[held], n_classes)))
    return out


def out_of_fold_probabilities(x: np.ndarray, y: np.ndarray, *, folds: int = 5, keys: np.ndarray | None = None,
                              groups: np.ndarray | None = None) -> np.ndarray:
    """Held-out probabilities of a linear probe, the folds by row or by group.

    Parameters
    ----------
    x : ndarray (n, d) float32
        Features (L2-normalised PCA vectors or embeddings).
    y : ndarray (n,) int64
        Class indices 0..K-1, every class with at least 2 rows.
    folds : int
    keys : ndarray (n,) int64 or None
        Stable key of each row (its array row) that places it in a fold
        (:func:`labeler.assist.model.stable_folds`); default 0..n-1.
    groups : ndarray (n,) int64 or None
        Group of each row (-1: a group of its own); a group is held out whole.

    Returns
    -------
    ndarray (n, K) float64
    """
    from .assist.model import stable_folds

    keys = np.arange(len(y)) if keys is None else np.asarray(keys, dtype=np.int64)
    fold = stable_folds(keys, y, folds, groups)
    return held_out_probabilities(x, y, fold, int(y.max()) + 1)


def rank_label_issues(pred_probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's flagged rows, most likely wrong first, and every row's label quality.

    Parameters
    ----------
    pred_probs : ndarray (n, K) float
        Out-of-fold probabilities.
    y : ndarray (n,) int64
        Given labels.

    Returns
    -------
    flagged : ndarray (m,) int64
        Rows cleanlab's ``find_label_issues`` flags, ranked by self-confidence.
    quality : ndarray (n,) float64
        ``get_label_quality_scores`` (self-confidence) of every row.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    flagged = find_label_issues(labels=y, pred_probs=pred_probs, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(y, pred_probs, method="self_confidence")
    return np.asarray(flagged, dtype=np.int64), np.asarray(quality, dtype=np.float64)


def neighbour_groups(x: np.ndarray, y: np.ndarray, *, threshold: float = NEIGHBOUR_THRESHOLD,
                     k: int = NEIGHBOUR_K) -> np.ndarray:
    """Groups of near neighbours that share a label.

    Connected components of the k-nearest-neighbour graph over the rows of each label
    (edges at cosine similarity >= ``threshold``;
    :func:`labeler.duplicates.duplicate_components`).

    Returns
    -------
    ndarray (n,) int64
        Group number of each row, 0..; -1 for a row alone.
    """
    from .duplicates import duplicate_components

    out = np.full(len(y), -1, np.int64)
    nxt = 0
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        if len(rows) < 2:
            continue
        comp, _ = duplicate_components(x[rows], threshold=threshold, k=min(k, len(rows) - 1))
        size = np.bincount(comp)
        multi = size[comp] > 1
        _, renum = np.unique(comp[multi], return_inverse=True)
        out[rows[multi]] = nxt + renum
        nxt += int(renum.max()) + 1 if len(renum) else 0
    return out


def check_groups(probs: np.ndarray, y: np.ndarray, members: list[np.ndarray],
                 support: tuple[np.ndarray, np.ndarray],
                 *, min_size: int = MIN_GROUP, max_score: float = MAX_GROUP_SCORE) -> list[tuple[int, int, float]]:
    """Which groups' shared label the held-out model disagrees with.

    Parameters
    ----------
    probs : ndarray (n, K), held-out probabilities (the groups held out whole)
    y : ndarray (n,) int64
    members : list of ndarray of int
        Rows of each group; each group's rows share one label.
    support : (ndarray (n,) int64, ndarray (n,) int64)
        For each row, how many groups of its label (other clusters or groups of near
        neighbours), and how many rows of its label, trained the model that scored it.
    min_size : int
    max_score : float
        Flag only a group whose label gets at most this mean held-out probability.

    Returns
    -------
    list of (group index, predicted class, mean held-out probability of the label)
        The flagged groups, lowest mean probability first. Not checked: a group smaller
        than ``min_size``, or whose label the model saw in fewer than 2 other groups or
        on fewer images than the group has: the evidence outside must outweigh it.
    """
    out = []
    for g, rows in enumerate(members):
        if len(rows) < min_size or support[0][rows].min() < 2 or support[1][rows].min() < len(rows):
            continue
        mean = probs[rows].mean(axis=0)
        lab, pred = int(y[rows[0]]), int(mean.argmax())
        if pred != lab and mean[lab] <= max_score:
            out.append((g, pred, float(mean[lab])))
    return sorted(out, key=lambda t: t[2])


def _support(y: np.ndarray, fold: np.ndarray, group: np.ndarray,
             exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each row, among the rows that trained the model scoring it (the other folds,
    less ``exclude``): how many groups (``group``: -1 = a row alone) hold its label, and
    how many rows."""
    gkey = np.where(group >= 0, group, -1 - np.arange(len(y)))
    n_groups, n_rows = np.zeros(len(y), np.int64), np.zeros(len(y), np.int64)
    for f in np.unique(fold):
        train = (fold != f) if exclude is None else (fold != f) & ~exclude
        held = fold == f
        for c in np.unique(y[held]):
            has = train & (y == c)
            n_groups[held & (y == c)] = len(np.unique(gkey[has]))
            n_rows[held & (y == c)] = int(has.sum())
    return n_groups, n_rows


def review_labels(project: Project, *, vectors: str = "pca", folds: int = 5,
                  neighbour_threshold: float = NEIGHBOUR_THRESHOLD, min_group: int = MIN_GROUP,
                  use_clusters: bool = True, max_group_score: float = MAX_GROUP_SCORE) -> ReviewReport:
    """Rank a project's labelled images, and groups of them, by how likely their label is wrong.

    Parameters
    ----------
    project : Project
    vectors : {"pca", "embeddings"}
        Probe features: the L2-normalised PCA vectors (default) or the backbone's
        embeddings (L2-normalised here).
    folds : int
        Cross-validation folds (lowered to the smallest class size, at least 2).
    neighbour_threshold : float
        Cosine similarity that joins near neighbours of one label into a group.
    min_group : int
        Fewest members of a group checked as a whole.
    use_clusters : bool
        Hold out and check the current clustering's clusters (False: groups of near
        neighbours only, as in a project without a clustering).
    max_group_score : float
        Flag a group only when the mean held-out probability of its label is at most this.

    Returns
    -------
    ReviewReport

    Raises
    ------
    BadInputError
        Fewer than two labels with at least two embedded images each, or an
        unknown ``vectors``.
    ProjectError
        The project has no vectors yet.
    """
    from .assist.model import stable_folds
    from .assist.suggest import clusters_by_row
    from .reduce import l2_normalize

    if vectors not in ("pca", "embeddings"):
        raise BadInputError(f"vectors is 'pca' or 'embeddings', not {vectors!r}")
    st = project.store
    table = {r["id"]: r for r in st.image_table() if r["status"] == "embedded"}
    rows = [r for r in st.label_rows() if r["image_id"] in table]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    classes = sorted(k for k, v in counts.items() if v >= 2)
    if len(classes) < 2:
        raise BadInputError("review needs at least two labels with two or more labelled images each")
    kept = [r for r in rows if r["label"] in classes]
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[r["label"]] for r in kept], dtype=np.int64)
    arr = project.load_array(vectors)
    keys = np.array([table[r["image_id"]]["row"] for r in kept], dtype=np.int64)
    x = l2_normalize(np.asarray(arr[keys], dtype=np.float32))
    k = max(2, min(folds, min(counts[c] for c in classes)))

    # single images: folds by image, same-label near-duplicates held out together
    fold = stable_folds(keys, y, k, neighbour_groups(x, y, threshold=DUPLICATE_THRESHOLD))
    probs = held_out_probabilities(x, y, fold, len(classes))
    flagged, quality = rank_label_issues(probs, y)
    rep = ReviewReport(n_labelled=len(rows), classes=classes, left_out=len(rows) - len(kept),
                       probe_accuracy=float((probs.argmax(1) == y).mean()), folds=k)
    for i in flagged:
        r = kept[i]
        rep.issues.append(LabelIssue(image_id=int(r["image_id"]), path=table[r["image_id"]]["path"],
                                     label=r["label"], suggested_label=classes[int(probs[i].argmax())],
                                     score=round(float(quality[i]), 4), source=r["source"],
                                     annotator=r["annotator"]))

    # whole groups: one pass holding out whole clusters, one holding out groups of near neighbours
    by_row = clusters_by_row(project, len(arr)) if use_clusters else None
    passes = []
    if by_row is not None:
        cl = by_row[keys]
        subsets = [((cl == c) & (y == lab)) for c in np.unique(cl[cl >= 0]) for lab in np.unique(y[cl == c])]
        names = [f"cluster {int(c)}" for c in np.unique(cl[cl >= 0]) for _ in np.unique(y[cl == c])]
        passes.append(("cluster", cl, [np.flatnonzero(m) for m in subsets], names))
    near = neighbour_groups(x, y, threshold=neighbour_threshold)
    comps = np.unique(near[near >= 0])
    passes.append(("neighbours", near, [np.flatnonzero(near == g) for g in comps],
                   [f"neighbours {n}" for n in range(len(comps))]))
    rep.group_folds = " and ".join(f"{kind}s" if kind == "cluster" else kind for kind, *_ in passes)
    found = []
    for kind, hold, members, names in passes:
        fold = stable_folds(keys, y, k, hold)
        gprobs = held_out_probabilities(x, y, fold, len(classes))
        if np.isnan(rep.group_accuracy):
            rep.group_accuracy = float((gprobs.argmax(1) == y).mean())
        support = _support(y, fold, hold)
        rep.groups_checked += sum(1 for m in members if len(m) >= min_group and support[0][m].min() >= 2
                                  and support[1][m].min() >= len(m))
        flagged = check_groups(gprobs, y, members, support, min_size=min_group, max_score=max_group_score)
        found.append((kind, hold, fold, [(members[g], names[g]) for g, _, _ in flagged]))
    # Flagged groups may explain each other away (a wrong group that is its label's only
    # other example makes a right cluster look wrong): each must stay flagged, and
    # checkable, with every flagged group left out of training.
    suspect = np.zeros(len(y), bool)
    for *_, flagged in found:
        for m, _ in flagged:
            suspect[m] = True
    kept_groups = []
    for kind, hold, fold, flagged in found:
        if not flagged:
            continue
        again = held_out_probabilities(x, y, fold, len(classes), exclude=suspect)
        for j, pred, p in check_groups(again, y, [m for m, _ in flagged], _support(y, fold, hold, suspect),
                                       min_size=min_group, max_score=max_group_score):
            kept_groups.append((kind, *flagged[j], pred, p))
    covered = {int(i) for kind, m, *_ in kept_groups if kind == "cluster" for i in m}
    for kind, m, name, pred, p in sorted(kept_groups, key=lambda t: t[-1]):
        if kind == "neighbours" and covered.issuperset(m.tolist()):
            continue  # inside a flagged cluster group already
        who: dict[str, int] = {}
        for i in m:
            who[kept[i]["annotator"]] = who.get(kept[i]["annotator"], 0) + 1
        rep.groups.append(GroupIssue(group_id=name, kind=kind, image_ids=sorted(int(kept[i]["image_id"]) for i in m),
                                     label=classes[int(y[m[0]])], suggested_label=classes[pred], score=round(p, 4),
                                     annotators=who))
    return rep
