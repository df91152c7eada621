"""Command line: each command parses its options and calls the library.

Commands live in one module per concern: :mod:`~labeler.cli.ingest` (ingest, cluster, demo),
:mod:`~labeler.cli.annotate` (label, undo, redo, labels), :mod:`~labeler.cli.importing`
(import-labels), :mod:`~labeler.cli.predictions` (import-predictions), :mod:`~labeler.cli.assist`
(suggest, accept, next), :mod:`~labeler.cli.features` (features, finetune, heatmap),
:mod:`~labeler.cli.search` (search, info), :mod:`~labeler.cli.quality` (duplicates, review,
agreement, evaluate), :mod:`~labeler.cli.export` (export), :mod:`~labeler.cli.integrity`
(check, backup, restore) and :mod:`~labeler.cli.serve` (serve); the options they share are
defined once in :mod:`~labeler.cli.options`. Run ``labeler COMMAND --help`` for the options
and an example of each.
"""

from __future__ import annotations

import errno
import os
import sqlite3

import click

from . import annotate, assist, export, features, importing, ingest, integrity, predictions, quality, search, serve
from .options import fail


class _Group(click.Group):
    """Turns a :class:`~labeler.errors.LabelerError` (a user's mistake) into one red
    line and exit status 1, and so a write the disk refused (``ENOSPC``, quota, ``EFBIG``,
    ``EIO``, read-only; SQLite's "database or disk is full" / "disk I/O error"); anything
    else is a bug and keeps its traceback.

    Set LABELER_DEBUG=1 to get the traceback of a LabelerError too.
    """

    def invoke(self, ctx):
        from ..errors import LabelerError

        try:
            return super().invoke(ctx)
        except LabelerError as e:
            if os.environ.get("LABELER_DEBUG"):
                raise
            fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
        except Exception as e:
            # A full disk or a failing one is the machine's state, not a bug: one line. Every
            # write is atomic or a committed transaction, so what was committed is kept.
            msg = _storage_error(e)
            if msg is None or os.environ.get("LABELER_DEBUG"):
                raise
            fail(msg)


#: errno values of a write the machine refused: disk full, quota, file size limit, I/O error,
#: read-only file system.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


def _storage_error(e: BaseException | None, depth: int = 0) -> str | None:
    """The one-line message for a write the disk refused, or None for any other error.

    Follows the exception's cause: a library may wrap the OSError (``datasets`` raises
    DatasetGenerationError from it).
    """
    if e is None or depth > 5:
        return None
    retry = "free some space (or fix the disk) and run the command again; committed labels are kept"
    if isinstance(e, OSError) and e.errno in _STORAGE_ERRNOS:
        where = f": {e.filename}" if e.filename else ""
        return f"cannot write{where}: {e.strerror or os.strerror(e.errno)}; {retry}"
    text = str(e).splitlines()[0] if str(e) else ""
    if isinstance(e, sqlite3.OperationalError) and ("disk is full" in text or "disk I/O error" in text):
        return f"cannot write labeler.db: {text}; {retry}"
    return _storage_error(e.__cause__ or e.__context__, depth + 1)


@click.group(cls=_Group)
@click.version_option(package_name="labeler")
def main():
    """labeler: turn a folder of unlabelled images into a labelled training set.

    \b
    Example:
      labeler ingest photos/ --project my-project
      labeler serve --project my-project
    """


for _module in (ingest, annotate, importing, predictions, assist, features, search, quality, export, integrity, serve):
    for _command in _module.COMMANDS:
        main.add_command(_command)
