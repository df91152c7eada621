"""What the command modules share: the --project option, opening a project, warnings."""

from __future__ import annotations

from pathlib import Path

import click

PROJECT = click.option(
    "--project", "-p", "project_dir", type=click.Path(file_okay=False, path_type=Path),
    required=True, envvar="LABELER_PROJECT", help="Project directory (env LABELER_PROJECT).",
)


def _open(project_dir: Path):
    from .project import Project

    return Project(project_dir)


def _warn(message: str) -> None:
    click.secho(message, fg="yellow", err=True)
