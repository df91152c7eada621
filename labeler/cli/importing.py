"""``labeler import-labels``: labels from a CSV or a folder tree (:mod:`labeler.export.importing`).
Registered on :func:`labeler.cli.main`, which also takes ingest's
--labels-from-folders / --embeddings options (:func:`BRING_YOUR_OWN`) from here."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .options import ANNOTATOR, PROJECT, open_project


def BRING_YOUR_OWN(f):  # noqa: N802  (used as a decorator, like the option constants)
    """``labeler ingest``'s options for what a user brings along: labels in folder names
    (--labels-from-folders) and vectors in a file (--embeddings, --embedding-paths)."""
    f = click.option("--embedding-paths", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     default=None, help="The paths list of an --embeddings .npy: one image path per line, "
                                        "in the array's order.")(f)
    f = click.option("--embeddings", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                     help="Vectors from a file instead of a backbone: .npy with its paths list (v.npy reads "
                          "v.txt) or Parquet (a path and an embedding column). Search by new photos then "
                          "needs a backbone.")(f)
    return click.option("--labels-from-folders", is_flag=True,
                        help="Then label each unlabelled image by its folder's name (one undoable import; "
                             "see import-labels).")(f)


def import_after_ingest(project_dir: Path, image_dir: Path) -> None:
    """``ingest --labels-from-folders``: each image labelled by its folder's name, one action by 'cli'."""
    from ..export.importing import import_labels

    print_import(import_labels(open_project(project_dir), image_dir, annotator="cli"))


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
@ANNOTATOR
@click.option("--dry-run", is_flag=True, help="Match and report; write nothing.")
@click.option("--limit", type=click.IntRange(0), default=10, show_default=True,
              help="Unmatched, blank and conflicting rows listed (text output).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: counts, and every unmatched, blank, refused and conflicting row.")
def import_labels_cmd(project_dir, source, relabel, annotator, dry_run, limit, as_json):
    """Import labels from a CSV (path,label[,annotator]) or a folder tree of class subfolders.

    The import is one action of --annotator: `labeler undo` with that name takes it back.
    A CSV's annotator column, where present, names each label's annotator.

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
    from ..export.importing import import_labels

    rep = import_labels(open_project(project_dir), source, annotator=annotator, relabel=relabel,
                        dry_run=dry_run)
    print_import(rep, as_json, limit)


COMMANDS = (import_labels_cmd,)
