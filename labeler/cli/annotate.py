"""Commands of the annotators: label, undo, redo and the label vocabulary (``labels``)."""

from __future__ import annotations

import click

from .options import ANNOTATOR, PROJECT, ClusterId, open_project, warn


@click.command()
@PROJECT
@click.argument("label")
@click.option("--cluster", "cluster_id", type=ClusterId(), default=None,
              help="Label every unlabelled image of this cluster; -1 or 'noise' = the noise images.")
@click.option("--clustering", "clustering_id", type=int, default=None,
              help="The clustering id the cluster number refers to (see `labeler info`); refused if "
                   "the project was re-clustered since. Default: the current one (its id is printed).")
@click.option("--image", "image_ids", type=int, multiple=True, help="Image id (repeatable).")
@click.option("--relabel", is_flag=True,
              help="Also replace the labels images already have (anyone's). Default: labelled images "
                   "are left unchanged and reported as skipped.")
@ANNOTATOR
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: action id, labelled, new, replaced and skipped counts by label and annotator.")
def label(project_dir, label, cluster_id, clustering_id, image_ids, relabel, annotator, as_json):
    """Give LABEL to a cluster's or the given images' unlabelled images, in one undoable action.

    Images that already hold a label keep it and are reported as skipped, by label and
    annotator; --relabel replaces them too (and says how many, by label and annotator).

    \b
    Example:
      labeler label --project data/projects/elpv --cluster 3 --clustering 1 cracked --annotator ana
    """
    import json

    from .. import labels

    if (cluster_id is None) == (not image_ids):
        raise click.UsageError("give either --cluster N or one or more --image ID")
    if clustering_id is not None and cluster_id is None:
        raise click.UsageError("--clustering goes with --cluster")
    project = open_project(project_dir)
    who = annotator
    existing = project.store.label_counts()
    near = [] if label.strip() in existing else labels.close_labels(label, list(existing))
    if cluster_id is not None:
        if clustering_id is None:
            cur = project.store.current_clustering()
            clustering_id = cur["id"] if cur else None
            click.echo(f"cluster {cluster_id} of the current clustering {clustering_id}", err=True)
        res = labels.label_cluster(project, cluster_id, label, annotator=who, clustering_id=clustering_id,
                                   relabel=relabel)
    else:
        res = labels.label_images(project, image_ids, label, annotator=who, source="manual", relabel=relabel)
    if near:
        warn(f"'{label.strip()}' is a new label close to {', '.join(repr(n) for n in near[:3])}: "
              "`labeler labels rename` or `merge` if it is a typo")
    if as_json:
        click.echo(json.dumps(res.to_dict()))
    else:
        click.echo(res.message(relabel_hint="add --relabel to replace them"))


def _history_command(verb: str, done_word: str, whose: str, doc: str) -> click.Command:
    """``labeler undo`` / ``labeler redo``: the same command around :func:`labeler.history.undo` / ``redo``."""

    @click.command(verb, help=doc)
    @PROJECT
    @ANNOTATOR
    def command(project_dir, annotator):
        from .. import history

        done = getattr(history, verb)(open_project(project_dir), annotator)
        click.echo(f"nothing to {verb}" if done is None else f"{done_word}: {done.description}")
        if done is not None and done.note:
            warn(done.note)

    return command


undo = _history_command("undo", "undone", "Whose last action to undo", """
    Undo the last label or cluster action (a bulk action undoes as one).

    \b
    Example:
      labeler undo --project data/projects/elpv --annotator ana
    """)
redo = _history_command("redo", "redone", "Whose undone action to re-apply", """
    Re-apply the action the last undo reverted.

    \b
    Example:
      labeler redo --project data/projects/elpv --annotator ana
    """)


@click.group("labels", invoke_without_command=True)
@PROJECT
@click.pass_context
def labels_cmd(ctx, project_dir):
    """List the labels in use (images, stale ones, who gave them); rename, merge, confirm.

    \b
    Example:
      labeler labels --project data/projects/elpv
      labeler labels --project data/projects/elpv rename monomono mono
    """
    ctx.obj = project_dir
    if ctx.invoked_subcommand is not None:
        return
    from .. import labels

    summary = labels.label_summary(open_project(project_dir))
    if not summary:
        click.echo("no labels yet")
    for d in summary:
        who = ", ".join(f"{a} {n}" for a, n in d["annotators"].items())
        stale = f", {d['stale']} stale" if d["stale"] else ""
        click.echo(f"{d['label']}\t{d['count']} image(s){stale}\tby {who}")


@labels_cmd.command("rename")
@click.argument("old")
@click.argument("new")
@ANNOTATOR
@click.pass_obj
def labels_rename(project_dir, old, new, annotator):
    """Rename label OLD to NEW on every image, as one undoable action.

    \b
    Example:
      labeler labels --project data/projects/elpv rename monomono mono
    """
    from .. import labels

    _, n = labels.rename_label(open_project(project_dir), old, new, annotator=annotator)
    click.echo(f"renamed '{old}' to '{labels.clean_label(new)}' on {n} image(s)")


@labels_cmd.command("merge")
@click.argument("labels_", metavar="LABEL...", nargs=-1, required=True)
@click.option("--into", required=True, help="The label they all become.")
@ANNOTATOR
@click.pass_obj
def labels_merge(project_dir, labels_, into, annotator):
    """Give every image labelled with one of LABEL... the label --into, as one undoable action.

    \b
    Example:
      labeler labels --project data/projects/elpv merge mono Mono --into mono
    """
    from .. import labels

    _, n = labels.merge_labels(open_project(project_dir), labels_, into, annotator=annotator)
    click.echo(f"merged {', '.join(labels_)} into '{labels.clean_label(into)}' ({n} image(s))")


@labels_cmd.command("confirm")
@click.option("--image", "image_ids", type=int, multiple=True, help="Image id (repeatable; default: all stale).")
@click.pass_obj
def labels_confirm(project_dir, image_ids):
    """Confirm stale labels (their file changed since they were given) after checking them.

    \b
    Example:
      labeler labels --project data/projects/elpv confirm --image 12
    """
    from .. import labels

    n = labels.confirm_stale(open_project(project_dir), list(image_ids) or None)
    click.echo(f"confirmed {n} stale label(s)")


COMMANDS = (label, undo, redo, labels_cmd)
