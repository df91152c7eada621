"""Truth files: a CSV mapping image path -> true class, matched to a project's images."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from ..project import Project


def read_truth(path: Path | str, column: str | None = None) -> tuple[dict[str, str], str]:
    """Read a truth CSV: the first column is the image path, ``column`` the class.

    Returns ({path: class}, name of the class column). Rows with an empty class
    are left out. ``column`` None = the second column.

    Raises
    ------
    BadInputError
        Fewer than two columns, or no column of that name.
    """
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or len(rows[0]) < 2:
        raise BadInputError(f"{path}: needs a header with a path column and a class column")
    header = [h.strip() for h in rows[0]]
    name = column or header[1]
    if name not in header[1:]:
        raise BadInputError(f"{path}: no column {name!r}; columns: {', '.join(header[1:])}")
    j = header.index(name)
    return {r[0].strip(): r[j].strip() for r in rows[1:] if len(r) > j and r[j].strip()}, name


def align_truth(project: Project, truth: dict[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Match truth paths to the project's embedded images.

    A truth path may be relative to the image folder, absolute, or a bare file
    name (used when it is unique in the project).

    Returns
    -------
    rows : ndarray (n,), int64, array rows of the matched images, ascending
    y : ndarray (n,), int64, class codes (index into ``classes``)
    classes : ndarray (C,), str, sorted class names
    unmatched : int
        Truth rows with no embedded image.

    Raises
    ------
    BadInputError
        No truth path matches an embedded image.
    """
    table = [r for r in project.store.image_table() if r["status"] == "embedded"]
    by_path = {r["path"]: int(r["row"]) for r in table}
    names: dict[str, list[int]] = {}
    for r in table:
        names.setdefault(Path(r["path"]).name, []).append(int(r["row"]))
    root = project.image_root
    found: dict[int, str] = {}
    for p, label in truth.items():
        row = by_path.get(p)
        if row is None and root is not None and Path(p).is_absolute():
            try:
                row = by_path.get(Path(p).resolve().relative_to(root).as_posix())
            except ValueError:
                row = None
        if row is None and len(names.get(Path(p).name, [])) == 1:
            row = names[Path(p).name][0]
        if row is not None:
            found[row] = label
    if not found:
        raise BadInputError("no truth path matches an embedded image of the project")
    rows = np.array(sorted(found), dtype=np.int64)
    classes, y = np.unique(np.array([found[int(r)] for r in rows]), return_inverse=True)
    return rows, y.astype(np.int64), classes, len(truth) - len(found)

