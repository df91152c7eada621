"""Agreement between annotators, conflicts, and the consensus label.

The labels table holds one current label per image; the append-only label log
holds who gave what. Each annotator's *latest* label of an image (from actions
not undone, :meth:`labeler.store.Store.annotator_labels`) is their rating.
Over the images rated by two or more annotators:

* Krippendorff's alpha, nominal (Krippendorff, "Content Analysis", 2004; the
  ``krippendorff`` package), overall and per label (the label against all
  others, a binary rating); it handles any number of annotators and missing
  ratings. Undefined (None) when every rating is the same value.
* Cohen's kappa for each pair of annotators on the images both rated
  (``sklearn.metrics.cohen_kappa_score``), with their raw agreement.
* Conflicts: images whose annotators disagree, with each one's label.
* Consensus: the majority label with its support (share of the image's
  annotators who gave it); a tie goes to the image's current label when it is
  among the tied ones, else to the label of the annotator first by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import combinations

import numpy as np

from .project import Project


@dataclass
class Consensus:
    """Majority label of one image: label, support in (0, 1], annotators, and whether it was a tie."""

    label: str
    support: float
    n_annotators: int
    tie: bool = False


@dataclass
class AgreementReport:
    """Result of :func:`agreement`.

    Attributes
    ----------
    annotators : list of str
    n_images_multi : int
        Images rated by two or more annotators (the ones agreement is measured on).
    alpha : float or None
        Krippendorff's alpha (nominal) over those images; None when undefined.
    alpha_per_label : dict
        {label: alpha of "this label or not"}; None when undefined.
    pairs : list of dict
        annotator_a, annotator_b, n_common, agreement (share equal), cohen_kappa.
    conflicts : list of dict
        image_id, path, labels {annotator: label}, current label.
    """

    annotators: list[str] = field(default_factory=list)
    n_images_multi: int = 0
    alpha: float | None = None
    alpha_per_label: dict[str, float | None] = field(default_factory=dict)
    pairs: list[dict] = field(default_factory=list)
    conflicts: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**asdict(self), "n_conflicts": len(self.conflicts)}


def ratings(project: Project) -> dict[int, dict[str, str]]:
    """{image_id: {annotator: latest label}} from the label log."""
    out: dict[int, dict[str, str]] = {}
    for r in project.store.annotator_labels():
        out.setdefault(int(r["image_id"]), {})[r["annotator"]] = r["label"]
    return out


def _alpha(data: np.ndarray) -> float | None:
    import krippendorff

    values = data[~np.isnan(data)]
    if len(np.unique(values)) < 2:
        return None  # one value in the domain: alpha is undefined
    return round(float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")), 4)


def agreement(project: Project) -> AgreementReport:
    """Inter-annotator agreement of a project's labels.

    Parameters
    ----------
    project : Project

    Returns
    -------
    AgreementReport
        Empty figures (alpha None, no pairs) when no image has two annotators.
    """
    from sklearn.metrics import cohen_kappa_score

    rated = ratings(project)
    multi = {i: r for i, r in rated.items() if len(r) >= 2}
    rep = AgreementReport(annotators=sorted({a for r in rated.values() for a in r}), n_images_multi=len(multi))
    if not multi:
        return rep
    images = sorted(multi)
    coders = sorted({a for r in multi.values() for a in r})
    labels = sorted({lab for r in multi.values() for lab in r.values()})
    code = {lab: float(i) for i, lab in enumerate(labels)}
    data = np.full((len(coders), len(images)), np.nan)
    for j, i in enumerate(images):
        for a, lab in multi[i].items():
            data[coders.index(a), j] = code[lab]
    rep.alpha = _alpha(data)
    for lab in labels:
        rep.alpha_per_label[lab] = _alpha(np.where(np.isnan(data), np.nan, (data == code[lab]).astype(float)))
    for a, b in combinations(coders, 2):
        common = [i for i in images if a in multi[i] and b in multi[i]]
        if not common:
            continue
        la, lb = [multi[i][a] for i in common], [multi[i][b] for i in common]
        same = float(np.mean([x == y for x, y in zip(la, lb)]))
        kappa = None if len(set(la) | set(lb)) < 2 else round(float(cohen_kappa_score(la, lb)), 4)
        rep.pairs.append({"annotator_a": a, "annotator_b": b, "n_common": len(common),
                          "agreement": round(same, 4), "cohen_kappa": kappa})
    current = project.store.labels_for(images)
    paths = {r["id"]: r["path"] for r in project.store.get_images(images)}
    for i in images:
        if len(set(multi[i].values())) > 1:
            rep.conflicts.append({"image_id": i, "path": paths[i], "labels": multi[i], "current": current.get(i)})
    return rep


def consensus_labels(project: Project) -> dict[int, Consensus]:
    """The majority label of every image some annotator labelled.

    Returns
    -------
    dict
        {image_id: Consensus}; see the module docstring for ties.
    """
    current = project.store.labels()
    out: dict[int, Consensus] = {}
    for i, by in ratings(project).items():
        votes: dict[str, int] = {}
        for lab in by.values():  # annotators in name order
            votes[lab] = votes.get(lab, 0) + 1
        top = max(votes.values())
        tied = [lab for lab, v in votes.items() if v == top]
        label = current.get(i) if current.get(i) in tied else tied[0]
        out[i] = Consensus(label=label, support=top / len(by), n_annotators=len(by), tie=len(tied) > 1)
    return out
