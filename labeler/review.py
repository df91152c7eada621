"""Likely label errors: labelled images whose label disagrees with the evidence.

A linear probe (scikit-learn ``LogisticRegression``) over the images' L2-normalised
PCA vectors gives, for every labelled image, *out-of-fold* predicted
probabilities (``cross_val_predict``: the image's own label never trains the
model that scores it). cleanlab's ``find_label_issues`` (confident learning:
Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 2021) flags the images whose given label is unlikely
under those probabilities, and ``get_label_quality_scores`` (self-confidence:
the probability of the given label) ranks them, lowest first. The suggested
label is the probe's most probable class.

``benchmarks/bench_review.py`` measures it on ELPV with 5 % of the cell-type
labels flipped at random.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import BadInputError
from .project import Project


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
class ReviewReport:
    """Result of :func:`review_labels`.

    Attributes
    ----------
    issues : list of LabelIssue
        Flagged images, most likely wrong first.
    n_labelled : int
        Labelled embedded images examined.
    classes : list of str
        Labels the probe learned (labels with fewer than 2 images are left out).
    left_out : int
        Labelled images of those rare labels (not examined).
    probe_accuracy : float
        Out-of-fold accuracy of the probe against the current labels.
    folds : int
    """

    issues: list[LabelIssue] = field(default_factory=list)
    n_labelled: int = 0
    classes: list[str] = field(default_factory=list)
    left_out: int = 0
    probe_accuracy: float = float("nan")
    folds: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["n_issues"] = len(self.issues)
        return d


def out_of_fold_probabilities(x: np.ndarray, y: np.ndarray, *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Predicted class probabilities of a linear probe, each from a model that never saw that row.

    Parameters
    ----------
    x : ndarray (n, d) float32
        Features (L2-normalised PCA vectors or embeddings).
    y : ndarray (n,) int64
        Class indices 0..K-1, every class with at least ``folds`` rows.
    folds : int
        Stratified folds of ``cross_val_predict``.
    seed : int

    Returns
    -------
    ndarray (n, K) float64
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    probe = LogisticRegression(max_iter=2000, C=1.0)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(probe, x, y, cv=cv, method="predict_proba")


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


def review_labels(project: Project, *, vectors: str = "pca", folds: int = 5, seed: int = 0) -> ReviewReport:
    """Rank a project's labelled images by how likely their label is wrong.

    Parameters
    ----------
    project : Project
    vectors : {"pca", "embeddings"}
        Probe features: the L2-normalised PCA vectors (default) or the backbone's
        embeddings (L2-normalised here).
    folds : int
        Cross-validation folds (lowered to the smallest class size, at least 2).
    seed : int

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
    x = np.asarray(arr[[table[r["image_id"]]["row"] for r in kept]], dtype=np.float32)
    x = l2_normalize(x)
    k = max(2, min(folds, min(counts[c] for c in classes)))
    probs = out_of_fold_probabilities(x, y, folds=k, seed=seed)
    flagged, quality = rank_label_issues(probs, y)
    rep = ReviewReport(n_labelled=len(rows), classes=classes, left_out=len(rows) - len(kept),
                       probe_accuracy=float((probs.argmax(1) == y).mean()), folds=k)
    for i in flagged:
        r = kept[i]
        rep.issues.append(LabelIssue(image_id=int(r["image_id"]), path=table[r["image_id"]]["path"],
                                     label=r["label"], suggested_label=classes[int(probs[i].argmax())],
                                     score=round(float(quality[i]), 4), source=r["source"],
                                     annotator=r["annotator"]))
    return rep
