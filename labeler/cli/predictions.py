"""``labeler import-predictions``: a classifier's predictions as one more suggestion expert
(:mod:`labeler.assist.predictions`, :mod:`labeler.assist.experts`). Registered on
:func:`labeler.cli.main`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .options import PROJECT, open_project


@click.command("import-predictions")
@PROJECT
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", required=True,
              help="Name of the model that made the predictions; suggestions it decides say 'model: NAME'. "
                   "Importing the same name again replaces its predictions.")
@click.option("--dry-run", is_flag=True, help="Match and report; store nothing.")
@click.option("--limit", type=click.IntRange(0), default=10, show_default=True,
              help="Unmatched, blank and refused rows listed (text output).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: counts, and every unmatched, blank, refused and duplicate row.")
def import_predictions_cmd(project_dir, file, source, dry_run, limit, as_json):
    """Import a model's predictions (path,label,score) as a suggestion expert.

    FILE is a CSV (comma, TAB or semicolon separated) or Parquet file with a path
    column (relative to the image root, or absolute), a label column and a score
    column (a number in [0, 1]); several rows for one image give it several labels.
    Paths are matched as `labeler import-labels` matches them. Predictions are not
    labels: the suggestions weigh the source by how often it agrees with the
    held-out hand labels, and a suggestion it decides shows its name. A file with
    no usable row removes the source.

    \b
    Example:
      labeler import-predictions --project data/projects/elpv preds.csv --source my-classifier
    """
    from ..assist.predictions import import_predictions

    rep = import_predictions(open_project(project_dir), file, source, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(rep.to_dict()))
        return
    for line in rep.lines(limit=limit):
        click.echo(line)


COMMANDS = (import_predictions_cmd,)
