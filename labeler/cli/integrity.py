"""``labeler check``, ``labeler backup`` and ``labeler restore``: thin wrappers of
:mod:`labeler.integrity` and :mod:`labeler.backup` (registered at the end of cli.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .options import PROJECT


@click.command("check")
@PROJECT
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: ok, status (ok, interrupted or damaged) and the problems.")
def check_cmd(project_dir, as_json):
    """Verify a whole project, like fsck.

    Checks the database (PRAGMA integrity_check, foreign keys), every array, index
    and model file against the size and full checksum recorded when it was written,
    that each array has one row per image, and that every label names an existing
    image. Prints one line per problem with the command that fixes it. An ingest or
    re-clustering that was stopped part-way is not damage: it is reported as
    "interrupted: ...; run `COMMAND` to finish it".

    \b
    Exit status:
      0  no problem
      1  damage (a file or the database is not what labeler wrote)
      2  no damage, but an interrupted run to finish (or another command is running)

    \b
    Example:
      labeler check --project data/projects/elpv
    """
    from ..check import check_project, exit_status

    problems = check_project(project_dir)
    status = exit_status(problems)
    if as_json:
        click.echo(json.dumps({"project": str(project_dir), "ok": not problems,
                               "status": ("ok", "damaged", "interrupted")[status],
                               "problems": [{**p.to_dict(), "text": str(p)} for p in problems]}, indent=2))
    else:
        for p in problems:
            click.echo(str(p))
        if not problems:
            click.echo(f"{project_dir}: ok")
    sys.exit(status)


@click.command("backup")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@PROJECT
@click.option("--no-thumbs", is_flag=True, help="Leave out thumbs/ (ingest makes them again).")
@click.option("--quiet", is_flag=True, help="Do not list the copied files.")
def backup_cmd(dest, project_dir, no_thumbs, quiet):
    """Copy the project to a new folder DEST while annotators keep labelling.

    The database is copied with SQLite's online backup API (labels as of one
    instant), the array files under the project lock, each checked against its
    checksum. DEST opens as a project as it is; `labeler restore` copies it back.

    \b
    Example:
      labeler backup backups/elpv-monday --project data/projects/elpv
    """
    from ..backup import backup_project

    say = (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))
    rep = backup_project(project_dir, dest, thumbs=not no_thumbs, say=say)
    click.echo(f"backed up {rep.labels} labelled image(s), {rep.actions} action(s), {rep.files} file(s), "
               f"{rep.bytes / 2**20:.1f} MiB to {rep.dest} in {rep.seconds:.1f} s")


@click.command("restore")
@click.argument("backup", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("project", type=click.Path(file_okay=False, path_type=Path))
def restore_cmd(backup, project):
    """Check the backup BACKUP whole, then copy it to PROJECT (a new or empty folder).

    \b
    Example:
      labeler restore backups/elpv-monday data/projects/elpv-restored
    """
    from ..backup import restore_project

    rep = restore_project(backup, project)
    click.echo(f"restored {rep.labels} labelled image(s), {rep.files} file(s) to {rep.dest}")


COMMANDS = (check_cmd, backup_cmd, restore_cmd)
