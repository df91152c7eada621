"""What the command modules share, defined once: the --project and --annotator options,
the cluster-id parameter, opening a project, and the one-line messages (warnings, errors,
progress)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

PROJECT = click.option(
    "--project", "-p", "project_dir", type=click.Path(file_okay=False, path_type=Path),
    required=True, envvar="LABELER_PROJECT", help="Project directory (env LABELER_PROJECT).",
)

#: The annotator's name, the same option (and default) for every command that writes labels.
ANNOTATOR = click.option("--annotator", default="cli", envvar="LABELER_ANNOTATOR", show_default=True,
                         help="Your name (env LABELER_ANNOTATOR).")


class ClusterId(click.ParamType):
    """A cluster number as shown (-1 = noise) or the word 'noise'."""

    name = "cluster"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text == "noise":
            return -1
        try:
            return int(text)
        except ValueError:
            self.fail(f"{value!r} is not a cluster number (or 'noise' / -1)", param, ctx)


def open_project(project_dir: Path):
    """The :class:`~labeler.project.Project` in ``project_dir``."""
    from ..project import Project

    return Project(project_dir)


def warn(message: str) -> None:
    """A warning: one yellow line on stderr."""
    click.secho(message, fg="yellow", err=True)


def fail(msg: str, code: int = 1):
    """An error: one red line on stderr, then exit with ``code``."""
    click.secho(f"error: {msg}", fg="red", err=True)
    sys.exit(code)


def say(quiet: bool):
    """A progress printer (to stderr), silent when ``quiet``."""
    return (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))


def short_warning(message: str, limit: int = 120) -> str:
    """One line of at most ``limit`` characters: the message without its parenthesised
    details, pointing to where the whole text is (`labeler info`, ``--verbose``)."""
    text = " ".join(message.split())
    if len(text) <= limit:
        return text
    while True:  # drop innermost (...) groups: the looked-in paths and URLs
        shorter = re.sub(r" ?\([^()]*\)", "", text)
        if shorter == text:
            break
        text = shorter
    text = text.split(". ")[0].rstrip(".")
    tail = " (details: `labeler info`, or --verbose)"
    if len(text) + len(tail) > limit:
        text = text[: limit - len(tail) - 3].rstrip() + "..."
    return text + tail


def warner(verbose: bool):
    """Print each distinct warning once: short unless ``verbose``."""
    seen: set[str] = set()

    def emit(message: str) -> None:
        if message not in seen:
            seen.add(message)
            click.secho(message if verbose else short_warning(message), fg="yellow", err=True)

    return emit
