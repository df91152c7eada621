"""Small pieces of the command line: the cluster-id parameter and short, once-only warnings."""

from __future__ import annotations

import re

import click


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

    def warn(message: str) -> None:
        if message not in seen:
            seen.add(message)
            click.secho(message if verbose else short_warning(message), fg="yellow", err=True)

    return warn
