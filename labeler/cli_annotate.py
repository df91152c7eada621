"""Commands of the annotators: label, undo, redo, the label vocabulary (``labels``)
and the dashboard server (``serve``). Registered on :func:`labeler.cli.main`."""

from __future__ import annotations

from pathlib import Path

import click

from .cli_helpers import ClusterId
from .cli_common import PROJECT, _open, _warn


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
@click.option("--annotator", default=None, envvar="LABELER_ANNOTATOR", help="Your name (env LABELER_ANNOTATOR).")
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

    from . import labels

    if (cluster_id is None) == (not image_ids):
        raise click.UsageError("give either --cluster N or one or more --image ID")
    if clustering_id is not None and cluster_id is None:
        raise click.UsageError("--clustering goes with --cluster")
    project = _open(project_dir)
    who = annotator or "cli"
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
        _warn(f"'{label.strip()}' is a new label close to {', '.join(repr(n) for n in near[:3])}: "
              "`labeler labels rename` or `merge` if it is a typo")
    if as_json:
        click.echo(json.dumps(res.to_dict()))
    else:
        click.echo(res.message(relabel_hint="add --relabel to replace them"))


def _history_command(verb: str, done_word: str, whose: str, doc: str) -> click.Command:
    """``labeler undo`` / ``labeler redo``: the same command around :func:`labeler.history.undo` / ``redo``."""

    @click.command(verb, help=doc)
    @PROJECT
    @click.option("--annotator", default="cli", envvar="LABELER_ANNOTATOR", show_default=True,
                  help=f"{whose} (env LABELER_ANNOTATOR).")
    def command(project_dir, annotator):
        from . import history

        done = getattr(history, verb)(_open(project_dir), annotator)
        click.echo(f"nothing to {verb}" if done is None else f"{done_word}: {done.description}")
        if done is not None and done.note:
            _warn(done.note)

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
    from . import labels

    summary = labels.label_summary(_open(project_dir))
    if not summary:
        click.echo("no labels yet")
    for d in summary:
        who = ", ".join(f"{a} {n}" for a, n in d["annotators"].items())
        stale = f", {d['stale']} stale" if d["stale"] else ""
        click.echo(f"{d['label']}\t{d['count']} image(s){stale}\tby {who}")


ANNOTATOR = click.option("--annotator", default="cli", envvar="LABELER_ANNOTATOR", show_default=True,
                         help="Your name (env LABELER_ANNOTATOR).")


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
    from . import labels

    _, n = labels.rename_label(_open(project_dir), old, new, annotator=annotator)
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
    from . import labels

    _, n = labels.merge_labels(_open(project_dir), labels_, into, annotator=annotator)
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
    from . import labels

    n = labels.confirm_stale(_open(project_dir), list(image_ids) or None)
    click.echo(f"confirmed {n} stale label(s)")


def _is_loopback(host: str) -> bool:
    import ipaddress

    h = host.strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


@click.command()
@PROJECT
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (127.0.0.1 = this machine only).")
@click.option("--port", default=8050, show_default=True, type=click.IntRange(1, 65535))
@click.option("--auth", default=None, envvar="LABELER_AUTH",
              help="user:password for HTTP basic auth, one user (env LABELER_AUTH).")
@click.option("--auth-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              envvar="LABELER_AUTH_FILE",
              help="File of user:hash lines, hashes from werkzeug.security.generate_password_hash "
                   "(env LABELER_AUTH_FILE). The logged-in user is the annotator.")
@click.option("--allowed-host", "allowed_hosts", multiple=True,
              help="Host name the dashboard answers to besides localhost/127.0.0.1/::1 (repeatable); "
                   "other Host headers get 400 (DNS-rebinding guard).")
@click.option("--max-request-mb", type=click.FloatRange(0.1, 10_000), default=50, show_default=True,
              help="Largest request body accepted (413 above it).")
@click.option("--insecure-no-auth", is_flag=True,
              help="Allow a non-loopback --host without auth (anyone who can reach it can label).")
@click.option("--debug", is_flag=True, help="Dash/Werkzeug debug mode (loopback only: it runs code on request).")
def serve(project_dir, host, port, auth, auth_file, allowed_hosts, max_request_mb, insecure_no_auth, debug):
    """Serve the annotator dashboard.

    Binding beyond this machine needs --auth or --auth-file (or --insecure-no-auth).
    Make an auth file line with:
    python -c "from werkzeug.security import generate_password_hash as h; print('ana:' + h('secret'))"

    \b
    Example:
      labeler serve --project data/projects/elpv --port 8050
      labeler serve --project data/projects/elpv --host 0.0.0.0 --auth-file users.txt --allowed-host labels.example.org
    """
    from .app import create_app

    loopback = _is_loopback(host)
    if debug and not loopback:
        raise click.UsageError("--debug exposes the Werkzeug debugger: only with a loopback --host")
    if not loopback and not (auth or auth_file) and not insecure_no_auth:
        raise click.UsageError(
            f"--host {host} is reachable from other machines: give --auth-file or --auth "
            "(or --insecure-no-auth if the network is trusted)")
    hosts = list(allowed_hosts)
    if not loopback:
        import socket

        if host not in ("0.0.0.0", "::", "[::]"):
            hosts.append(host)
        else:
            hosts += [socket.gethostname(), socket.getfqdn()]
    app = create_app(_open(project_dir), auth=auth, auth_file=auth_file, allowed_hosts=hosts,
                     max_content_length=int(max_request_mb * 1024 * 1024))
    click.echo(f"labeler dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
    if not loopback:
        click.echo(f"answering Host names: localhost, 127.0.0.1, ::1, {', '.join(hosts)} "
                   "(add more with --allowed-host)")
    if not (auth or auth_file) and not loopback:
        _warn("no authentication: anyone who can reach this address can label")
    app.run(host=host, port=port, debug=debug)


COMMANDS = (label, undo, redo, labels_cmd, serve)
