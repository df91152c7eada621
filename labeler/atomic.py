"""Atomic file replacement: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable

__all__ = ["atomic_write"]


@contextmanager
def atomic_write(path: Path | str, *, durable: bool = True,
                 before_replace: Callable[[Path], None] | None = None) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; on success, rename it over ``path``.

    The temporary file (``.<name>.<pid>.tmp`` in the same directory, so the rename
    stays on one file system and processes do not collide) is removed if the block
    raises; ``path`` is then unchanged.

    Parameters
    ----------
    path : Path or str
        The destination; its directory must exist.
    durable : bool, default True
        ``fsync`` the data before the rename, so a power cut cannot leave an empty
        file under the final name (costs a disk flush: off for thumbnails).
    before_replace : callable(Path) or None
        Called with the complete temporary file just before the rename (the
        file manifest records its checksum there: :mod:`labeler.integrity`); if it
        raises, nothing is renamed.

    Yields
    ------
    BinaryIO
        The open temporary file.

    Raises
    ------
    OSError
        The directory is not writable, the disk is full, ...
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
