"""CLI commands of labeler.assist: ``labeler suggest``, ``labeler accept``, ``labeler next``.

Kept apart from :mod:`labeler.cli` (which adds them to its group) so each file stays small;
each command parses its options and calls the library.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .project import Project

PROJECT = click.option(
    "--project", "-p", "project_dir", type=click.Path(file_okay=False, path_type=Path),
    required=True, envvar="LABELER_PROJECT", help="Project directory (env LABELER_PROJECT).",
)


FEATURES = click.option("--features", default="active", show_default=True,
                        help="Feature set: active (the one `labeler features --use` chose, e.g. a fine-tuned set; "
                             "else pca), pca, embeddings, a stored feature set's name, or an N x D .npy path.")


@click.command("suggest")
@PROJECT
@FEATURES
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def suggest_cmd(project_dir, features, as_json):
    """Suggest a label with a calibrated confidence for every unlabelled image.

    Prints, per label, how many unlabelled images it is suggested for in each
    confidence band. Suggestions are not labels: accept them with `labeler accept`.

    \b
    Example:
      labeler suggest --project data/projects/elpv
    """
    from .assist.suggest import suggest

    sug = suggest(Project(project_dir), features=features)
    bands = sug.bands()
    if as_json:
        click.echo(json.dumps({"labels": bands, "unlabelled": int(sug.unlabelled.sum()),
                               "temperature": round(sug.temperature, 4), "held_out": sug.n_calibration,
                               "features": sug.features}))
        return
    if not sug.classes:
        click.echo("no labels yet: label a few images first (`labeler next` says which)")
        return
    names = list(next(iter(bands.values())))
    click.echo(f"{int(sug.unlabelled.sum())} unlabelled image(s); confidence calibrated on "
               f"{sug.n_calibration} held-out label(s) (temperature {sug.temperature:.2f})")
    click.echo(f"{'label':<20}" + "".join(f"{n:>10}" for n in names))
    for lab, counts in bands.items():
        click.echo(f"{lab:<20}" + "".join(f"{counts[n]:>10}" for n in names))


@click.command("accept")
@PROJECT
@click.option("--label", required=True, help="The suggested label to accept.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), required=True,
              help="Accept suggestions with at least this calibrated confidence.")
@click.option("--image", "image_ids", type=int, multiple=True, help="Only these image ids (repeatable).")
@click.option("--annotator", default=None, envvar="LABELER_ANNOTATOR", help="Your name (env LABELER_ANNOTATOR).")
@FEATURES
def accept_cmd(project_dir, label, min_confidence, image_ids, annotator, features):
    """Accept suggestions of one label as labels, in one undoable action.

    Only unlabelled images are touched; the audit log records the threshold and
    each image's confidence (source 'suggestion').

    \b
    Example:
      labeler accept --project data/projects/elpv --label mono --min-confidence 0.95
    """
    from .assist.suggest import accept

    _, ids = accept(Project(project_dir), label, min_confidence, annotator=annotator or "cli",
                    image_ids=list(image_ids) or None, features=features)
    click.echo(f"accepted {len(ids)} suggestion(s) of {label!r} at confidence >= {min_confidence:g} "
               "(`labeler undo` reverts them)")


@click.command("next")
@PROJECT
@click.option("-n", "n", type=click.IntRange(1, 1000), default=10, show_default=True, help="Images to return.")
@FEATURES
@click.option("--json", "as_json", is_flag=True, help="Print image ids, paths and reasons as JSON.")
def next_cmd(project_dir, n, features, as_json):
    """The images to label next: those whose labels should teach the model most.

    \b
    Example:
      labeler next --project data/projects/elpv -n 10
    """
    from .assist.next import next_to_label

    items = next_to_label(Project(project_dir), n, features=features)
    if as_json:
        click.echo(json.dumps([it.to_dict() for it in items]))
        return
    if not items:
        click.echo("every image is labelled")
    for it in items:
        sug = f" (suggested {it.suggestion!r} {it.confidence:.2f})" if it.suggestion else ""
        click.echo(f"id {it.image_id:>6}  {it.path}{sug}: {it.reason}")
