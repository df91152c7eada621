"""Commands of the suggestions (labeler.assist): ``labeler suggest``, ``labeler accept``,
``labeler next``; each parses its options and calls the library."""

from __future__ import annotations

import json

import click

from ..project import Project
from .options import ANNOTATOR, PROJECT

#: A feature *set* (the vectors suggestions are computed on); ``labeler ingest --feature-type``
#: names a feature *type* (how a backbone's activations are pooled) instead.
FEATURE_SET = click.option("--feature-set", "features", default="active", show_default=True,
                        help="Feature set: active (the one `labeler features --use` chose, e.g. a fine-tuned set; "
                             "else pca), pca, embeddings, a stored feature set's name, or an N x D .npy path.")


@click.command("suggest")
@PROJECT
@FEATURE_SET
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.option("--per-image", is_flag=True, help="With --json: every unlabelled image's suggestion as well.")
def suggest_cmd(project_dir, features, as_json, per_image):
    """Suggest a label for every unlabelled image, with two numbers.

    Each suggestion has a calibrated *probability* that it is right, and the
    held-out *evidence* for it: whether held-out labels vouch for it ("vouched
    >= 0.95 by 60 held-out labels") or how many more it would take. The
    *vouched confidence* (the probability capped by that evidence) is what
    `labeler accept --min-confidence` compares with. Prints, per label, how many
    unlabelled images fall in each band of both. Suggestions are not labels:
    accept them with `labeler accept`.

    \b
    Example:
      labeler suggest --project data/projects/elpv
    """
    from ..assist.evidence import VOUCH_LEVEL
    from ..assist.suggest import suggest

    sug = suggest(Project(project_dir), features=features)
    if as_json:
        click.echo(json.dumps(sug.to_dict(per_image=per_image)))
        return
    if not sug.classes:
        click.echo("no labels yet: label a few images first (`labeler next` says which)")
        return
    click.echo(f"{int(sug.unlabelled.sum())} unlabelled image(s); probabilities calibrated on "
               f"{sug.n_calibration} held-out label(s) (temperature {sug.temperature:.2f})")
    for by, title in (("probability", "probability that the suggestion is right"),
                      ("confidence", "vouched confidence (probability capped by the held-out evidence; "
                                     "what --min-confidence compares with)")):
        bands = sug.bands(by)
        names = list(next(iter(bands.values())))
        click.echo(f"\n{title}:")
        click.echo(f"{'label':<20}" + "".join(f"{n:>10}" for n in names))
        for lab, counts in bands.items():
            click.echo(f"{lab:<20}" + "".join(f"{counts[n]:>10}" for n in names))
    click.echo(f"\nevidence (vouched: held-out labels back the probability, up to {VOUCH_LEVEL:g}):")
    for lab, e in sug.evidence_summary().items():
        line = f"{lab:<20}{e['vouched']:,} of {e['suggested']:,} vouched"
        if e["fewest_more_to_vouch"] is not None:
            line += f"; not enough labels yet to vouch for the rest: {e['fewest_more_to_vouch']:,} more at the least"
        click.echo(line)


@click.command("accept")
@PROJECT
@click.option("--label", required=True, help="The suggested label to accept.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=None,
              help="Accept suggestions whose vouched confidence (probability capped by the held-out evidence, "
                   "see `labeler suggest`) is at least this.")
@click.option("--max-expected-error", type=click.FloatRange(0, 1), default=None,
              help="Expected-error budget: accept the largest set, most probable first, whose expected wrong "
                   "count sum(1 - probability) is at most this share of it (e.g. 0.05). With --min-confidence "
                   "both hold.")
@click.option("--image", "image_ids", type=int, multiple=True, help="Only these image ids (repeatable).")
@click.option("--yes", "allow_low", is_flag=True,
              help="Accept even below probability 0.5 (a threshold, or a suggestion, more likely wrong than right).")
@ANNOTATOR
@FEATURE_SET
@click.option("--json", "as_json", is_flag=True, help="Print what was accepted as JSON.")
def accept_cmd(project_dir, label, min_confidence, max_expected_error, image_ids, allow_low, annotator, features,
               as_json):
    """Accept suggestions of one label as labels, in one undoable action.

    Choose them by a threshold (--min-confidence), an expected-error budget
    (--max-expected-error) or both. Prints the expected wrong count and an upper
    bound of it from the held-out evidence. Below probability 0.5 it asks for
    --yes. Only unlabelled images are touched; the audit log records the threshold
    and each image's vouched confidence (source 'suggestion'). By threshold:
    `--min-confidence 0.95`; by budget, as below.

    \b
    Example:
      labeler accept --project data/projects/elpv --label mono --max-expected-error 0.05
    """
    from ..assist.suggest import LowProbabilityError, accept
    from ..errors import BadInputError

    try:
        res = accept(Project(project_dir), label, min_confidence, max_expected_error=max_expected_error,
                     allow_low=allow_low, annotator=annotator, image_ids=list(image_ids) or None,
                     features=features)
    except LowProbabilityError as e:
        raise BadInputError(f"{e.what}; add --yes to accept anyway; nothing changed") from None
    if as_json:
        click.echo(json.dumps(res.to_dict()))
        return
    click.echo(f"{res.message()} (`labeler undo` reverts them)")


@click.command("next")
@PROJECT
@click.option("-n", "n", type=click.IntRange(1, 1000), default=10, show_default=True, help="Images to return.")
@FEATURE_SET
@click.option("--json", "as_json", is_flag=True, help="Print image ids, paths and reasons as JSON.")
def next_cmd(project_dir, n, features, as_json):
    """The images to label next: those whose labels should teach the model most.

    \b
    Example:
      labeler next --project data/projects/elpv -n 10
    """
    from ..assist.next import next_to_label

    items = next_to_label(Project(project_dir), n, features=features)
    if as_json:
        click.echo(json.dumps([it.to_dict() for it in items]))
        return
    if not items:
        click.echo("every image is labelled")
    for it in items:
        sug = f" (suggested {it.suggestion!r}: {it.evidence_text})" if it.suggestion else ""
        click.echo(f"id {it.image_id:>6}  {it.path}{sug}: {it.reason}")


COMMANDS = (suggest_cmd, accept_cmd, next_cmd)
