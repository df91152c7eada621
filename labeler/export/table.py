"""The rows every export format writes: one per image, with split and group.

:func:`label_table` reads the store; :func:`training_table` adds the consensus
label (several annotators), the group of each image (near-duplicate groups or a
user's group column) and the train/validation/test split.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import BadInputError
from ..project import Project


def label_table(project: Project, *, include_unlabelled: bool = False) -> list[dict]:
    """Rows of the label export (not escaped), ordered by path.

    Returns
    -------
    list of dict
        Keys: image_id, status, path, absolute_path, label, label_source, label_stale
        ('yes' when the file changed since it was labelled, else ''), cluster,
        annotator, labelled_at (ISO 8601 UTC text), labelled_at_unix (float
        seconds or None), hash. Empty strings where an image has no label.
    """
    store = project.store
    labels = {r["image_id"]: r for r in store.label_rows()}
    try:
        clusters = store.clusters_for([r["id"] for r in store.image_table()])
    except ValueError:  # no clustering yet
        clusters = {}
    root = project.image_root
    out = []
    for img in sorted(store.images_by_path().values(), key=lambda r: r["path"]):
        lab = labels.get(img["id"])
        if lab is None and not include_unlabelled:
            continue
        out.append({
            "image_id": img["id"],
            "status": img["status"],
            "path": img["path"],
            "absolute_path": str(root / img["path"]) if root else "",
            "label": lab["label"] if lab else "",
            "label_source": lab["source"] if lab else "",
            "label_stale": "yes" if lab and lab["stale"] else "",
            "cluster": clusters.get(img["id"], ""),
            "annotator": lab["annotator"] if lab else "",
            "labelled_at": datetime.fromtimestamp(lab["labelled_at"], timezone.utc).isoformat(timespec="seconds") if lab else "",
            "labelled_at_unix": lab["labelled_at"] if lab else None,
            "hash": img["hash"],
        })
    return out


@dataclass
class SplitSummary:
    """What :func:`training_table` did, for the export's printout.

    Attributes
    ----------
    sizes : dict
        {split name: images}.
    groups_kept_whole : int
        Groups of two or more images, each written to one split only.
    grouped_images : int
        Images in those groups.
    group_source : str
        ``"near-duplicates (cosine >= T)"``, ``"column COL of FILE"`` or ``"none"``.
    """

    sizes: dict[str, int] = field(default_factory=dict)
    groups_kept_whole: int = 0
    grouped_images: int = 0
    group_source: str = "none"

    def lines(self) -> list[str]:
        out = ["split sizes: " + ", ".join(f"{k} {v}" for k, v in self.sizes.items())]
        if self.group_source != "none":
            out.append(f"{self.groups_kept_whole} group(s) of {self.grouped_images} image(s) kept whole "
                       f"(groups: {self.group_source})")
        return out


def read_group_column(path: Path | str, column: str) -> dict[str, str]:
    """{relative path: group} from a CSV with a ``path`` column and ``column``.

    Raises
    ------
    BadInputError
        The file has no ``path`` column or no ``column``.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        if "path" not in fields or column not in fields:
            raise BadInputError(f"{path} needs a 'path' column and a {column!r} column; it has {fields}")
        return {r["path"]: r[column] for r in reader if r[column] != ""}


def training_table(project: Project, *, include_unlabelled: bool = False, split: str | None = None,
                   seed: int = 0, groups_csv: Path | str | None = None, group_column: str | None = None,
                   duplicate_threshold: float | None = None, consensus: bool = False,
                   ) -> tuple[list[dict], SplitSummary]:
    """Export rows with consensus, group and split columns.

    Parameters
    ----------
    project : Project
    include_unlabelled : bool
        Keep unlabelled images (split "" and no group).
    split : str or None
        Fractions "train[,validation[,test]]", e.g. ``"0.8,0.1,0.1"``; None puts
        every labelled image in "train" and adds no group column.
    seed : int
        Seed of the split.
    groups_csv, group_column : path and str, or None
        Groups from a CSV (``path`` + ``group_column``) instead of near-duplicates.
    duplicate_threshold : float or None
        Cosine threshold of the near-duplicate groups (default
        :data:`labeler.duplicates.DEFAULT_THRESHOLD`).
    consensus : bool
        Replace each label by the majority of the annotators' latest labels and
        add ``support`` (share of annotators who gave it) and ``n_annotators``.

    Returns
    -------
    rows : list of dict
        As :func:`label_table`, plus ``split`` (and ``group`` with a split).
    summary : SplitSummary

    Raises
    ------
    BadInputError
        A malformed split, a groups file without the column, or
        ``--group-column`` without ``--groups``.
    """
    from .splits import grouped_stratified_split, parse_split

    if (groups_csv is None) != (group_column is None):
        raise BadInputError("--groups FILE and --group-column COL go together")
    rows = label_table(project, include_unlabelled=include_unlabelled or consensus)
    if consensus:
        from ..agreement import consensus_labels

        cons = consensus_labels(project)
        for r in rows:
            c = cons.get(r["image_id"])
            if c is not None:
                r["label"] = c.label
            r["support"] = "" if c is None else round(c.support, 4)
            r["n_annotators"] = "" if c is None else c.n_annotators
        if not include_unlabelled:
            rows = [r for r in rows if r["label"] != ""]
    summary = SplitSummary()
    labelled = [r for r in rows if r["label"] != ""]
    for r in rows:
        r["split"] = ""
    if split is None:
        for r in labelled:
            r["split"] = "train"
        summary.sizes = {"train": len(labelled)}
        return rows, summary
    names, ratios = parse_split(split)
    if groups_csv is not None:
        by_path = read_group_column(groups_csv, group_column)
        group_keys = {r["image_id"]: f"g:{by_path[r['path']]}" for r in rows if r["path"] in by_path}
        summary.group_source = f"column {group_column} of {groups_csv}"
    else:
        from ..duplicates import find_duplicates

        rep = find_duplicates(project, threshold=duplicate_threshold)
        group_keys = {i: f"d:{g}" for i, g in rep.group_of().items()}
        summary.group_source = f"near-duplicates (cosine >= {rep.threshold})"
    for r in rows:
        r["group"] = group_keys.get(r["image_id"], "")[2:]
    keys = [group_keys.get(r["image_id"], f"i:{r['image_id']}") for r in labelled]
    assigned = grouped_stratified_split([r["label"] for r in labelled], keys, ratios, seed=seed)
    for r, s in zip(labelled, assigned):
        r["split"] = names[s]
    summary.sizes = {n: int((assigned == i).sum()) for i, n in enumerate(names)}
    members: dict[str, int] = {}
    for k in keys:
        members[k] = members.get(k, 0) + 1
    multi = {k for k, v in members.items() if v > 1}
    summary.groups_kept_whole = len(multi)
    summary.grouped_images = sum(members[k] for k in multi)
    return rows, summary
