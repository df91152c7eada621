"""Exports: the label CSV and training-set layouts, with leakage-safe splits.

Formats (``labeler export --format``):

- ``csv``: :mod:`labeler.export.csv`, one row per image, data-faithful or excel-safe;
- ``imagefolder``: :mod:`labeler.export.imagefolder`, ``split/label/file``;
- ``parquet``: :mod:`labeler.export.parquet`, pyarrow, optional embedding column;
- ``hf``: :mod:`labeler.export.hf`, a ``datasets.DatasetDict`` saved to disk.

:func:`export` is the one entry point; every format shares the rows of
:func:`labeler.export.table.training_table` (consensus label, near-duplicate
groups, grouped stratified split from :mod:`labeler.export.splits`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadInputError
from ..project import Project
from .csv import COLUMNS, escape_cell, export_csv, export_csv_text
from .table import SplitSummary, label_table, training_table

FORMATS = ("csv", "imagefolder", "parquet", "hf")

__all__ = ["FORMATS", "COLUMNS", "ExportReport", "escape_cell", "export", "export_csv", "export_csv_text",
           "label_table", "training_table"]


@dataclass
class ExportReport:
    """What an export wrote.

    Attributes
    ----------
    format : str
    dest : Path
    written : int
        Rows (csv, parquet) or images (imagefolder, hf) written.
    summary : SplitSummary
        Split sizes and groups kept whole.
    missing : list of str
        Paths of labelled images left out because their file is gone.
    """

    format: str
    dest: Path
    written: int
    summary: SplitSummary
    missing: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"wrote {self.written} {'row' if self.format in ('csv', 'parquet') else 'image'}(s) "
               f"as {self.format} to {self.dest}", *self.summary.lines()]
        if self.missing:
            out.append(f"left out {len(self.missing)} labelled image(s) whose file is gone, e.g. {self.missing[0]}")
        return out


def export(project: Project, dest: Path | str, *, format: str = "csv", split: str | None = None, seed: int = 0,
           groups_csv: Path | str | None = None, group_column: str | None = None,
           duplicate_threshold: float | None = None, consensus: bool = False, include_unlabelled: bool = False,
           excel_safe: bool = False, copy: bool = False, with_embeddings: bool = False) -> ExportReport:
    """Export a project's labels in one format.

    Parameters
    ----------
    project : Project
    dest : path
        A file (csv, parquet) or a new or empty folder (imagefolder, hf).
    format : {"csv", "imagefolder", "parquet", "hf"}
    split, seed, groups_csv, group_column, duplicate_threshold, consensus, include_unlabelled
        See :func:`labeler.export.table.training_table`.
    excel_safe : bool
        csv only: neutralise formulas for spreadsheets (default: data-faithful).
    copy : bool
        imagefolder only: copy files instead of symbolic links.
    with_embeddings : bool
        parquet only: add the embedding column.

    Returns
    -------
    ExportReport

    Raises
    ------
    BadInputError
        Unknown format, malformed split or groups, non-empty output folder,
        ``datasets`` missing for hf.
    """
    if format not in FORMATS:
        raise BadInputError(f"unknown export format {format!r}; one of {', '.join(FORMATS)}")
    rows, summary = training_table(project, include_unlabelled=include_unlabelled and format in ("csv", "parquet"),
                                   split=split, seed=seed, groups_csv=groups_csv, group_column=group_column,
                                   duplicate_threshold=duplicate_threshold, consensus=consensus)
    dest = Path(dest)
    missing: list[dict] = []
    if format == "csv":
        written = export_csv(project, dest, rows=rows, excel_safe=excel_safe)
    elif format == "parquet":
        from .parquet import export_parquet

        written = export_parquet(project, rows, dest, with_embeddings=with_embeddings)
    elif format == "imagefolder":
        from .imagefolder import export_imagefolder

        written, missing = export_imagefolder(rows, dest, copy=copy)
    else:
        from .hf import export_hf

        sizes, missing = export_hf(rows, dest)
        written = sum(sizes.values())
    if missing:
        gone = {r["image_id"] for r in missing}
        for r in rows:
            if r["image_id"] in gone and r["split"] in summary.sizes:
                summary.sizes[r["split"]] -= 1
    return ExportReport(format=format, dest=dest, written=written, summary=summary,
                        missing=[r["path"] for r in missing])
