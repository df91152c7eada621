"""One advisory file lock, for every lock labeler takes between processes.

:func:`file_lock` is the only place that calls the operating system's lock:
:func:`labeler.project.project_lock` (the project's write lock, refused at once
when held) and :func:`labeler.index.update_project_index` (dashboard workers wait
for the one that builds the search index) both use it.

POSIX: ``fcntl.flock`` on the whole file. Windows: ``msvcrt.locking`` on one byte
far past the end of the file (Windows byte-range locks are mandatory, so locking
the text a holder writes into the file would stop others reading who holds it).
Either way the operating system releases the lock when the process dies, so there
is never a stale lock file to clean up. The modules are imported when a lock is
taken, not when labeler is imported: ``import labeler`` works everywhere, and a
platform with neither says so when it first needs a lock.

This module imports nothing beyond the standard library.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import LabelerError

__all__ = ["file_lock"]

#: Where the Windows lock sits: one byte at this offset (past any text a holder writes).
_MSVCRT_OFFSET = 1 << 20
#: How often a blocking Windows lock retries (msvcrt's own blocking mode gives up after 10 s).
_MSVCRT_POLL_S = 0.05


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


@contextmanager
def file_lock(path: Path | str, *, blocking: bool = True) -> Iterator[IO[str]]:
    """Hold an exclusive advisory lock on ``path`` (created when missing) while inside.

    Parameters
    ----------
    path : Path or str
        The lock file. Its text is left alone; the holder may write into the file
        it is given (e.g. who holds the lock) and others may read it.
    blocking : bool
        True: wait until the lock is free. False: raise :class:`BlockingIOError`
        at once when another open file (this process or another) holds it.

    Yields
    ------
    file
        The lock file, opened ``'a+'`` (text).

    Raises
    ------
    BlockingIOError
        ``blocking=False`` and the lock is held elsewhere.
    LabelerError
        This platform has neither ``fcntl`` nor ``msvcrt``.

    Notes
    -----
    Not re-entrant: a second ``file_lock`` on the same path in the same process
    opens a second file and waits for (or is refused by) the first, also in the
    same thread. Callers that nest keep their own count
    (:func:`labeler.project.project_lock`).
    """
    fcntl = _module("fcntl")
    msvcrt = None if fcntl is not None else _module("msvcrt")
    if fcntl is None and msvcrt is None:
        raise LabelerError("file locks need fcntl (POSIX) or msvcrt (Windows); this Python has neither")
    f = open(path, "a+")
    try:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            try:
                f.seek(0)
                yield f
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        else:
            _msvcrt_lock(msvcrt, f, blocking)
            try:
                f.seek(0)
                yield f
            finally:
                f.flush()
                f.seek(_MSVCRT_OFFSET)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
    finally:
        f.close()


def _msvcrt_lock(msvcrt, f: IO[str], blocking: bool) -> None:
    while True:
        f.seek(_MSVCRT_OFFSET)
        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            return
        except OSError as e:
            if not blocking:
                raise BlockingIOError(*e.args) from None
        time.sleep(_MSVCRT_POLL_S)
