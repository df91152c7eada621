"""``labeler import-labels``: labels from a CSV or a folder tree (:mod:`labeler.export.importing`).
Registered on :func:`labeler.cli.main`; ``labeler ingest --labels-from-folders`` uses
:func:`print_import` too."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .cli_common import PROJECT, _open


def print_import(rep, as_json: bool = False, limit: int = 10) -> None:
    """The import report: one JSON object, or text lines."""
    if as_json:
        click.echo(json.dumps(rep.to_dict()))
        return
    for line in rep.lines(limit=limit):
        click.echo(line)


@click.command("import-labels")
@PROJECT
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--relabel", is_flag=True,
              help="Replace the labels images already hold (anyone's). Default: they are left unchanged and "
                   "reported as skipped.")
@click.option("--annotator", default=None, envvar="LABELER_ANNOTATOR",
              help="Who imports (env LABELER_ANNOTATOR; default cli): `labeler undo` with this name takes the "
                   "import back. A CSV's annotator column, where present, names each label's annotator.")
@click.option("--dry-run", is_flag=True, help="Match and report; write nothing.")
@click.option("--limit", type=click.IntRange(0), default=10, show_default=True,
              help="Unmatched, blank and conflicting rows listed (text output).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: counts, and every unmatched, blank, refused and conflicting row.")
def import_labels_cmd(project_dir, source, relabel, annotator, dry_run, limit, as_json):
    """Import labels from a CSV (path,label[,annotator]) or a folder tree of class subfolders.

    SOURCE is a CSV file (a path column relative to the image root or absolute, a label
    column, optionally annotator; a `labeler export` CSV or Parquet works) or a folder whose
    subfolder names are the labels (an ImageFolder tree, e.g. from `labeler export
    --format imagefolder`, links or copies). Rows are matched by path, then by file
    content. The import is one undoable action with label source 'import'; images that
    already hold another label are skipped unless --relabel. Unknown paths, blank
    labels and rows that disagree are reported and not written.

    \b
    Example:
      labeler import-labels --project data/projects/elpv labels.csv --dry-run
    """
    from .export.importing import import_labels

    rep = import_labels(_open(project_dir), source, annotator=annotator or "cli", relabel=relabel,
                        dry_run=dry_run)
    print_import(rep, as_json, limit)
