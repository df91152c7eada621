"""Backups of a project while people keep labelling (``labeler backup`` / ``labeler restore``).

A backup is a project directory: it opens as a project as it is (``labeler serve
--project BACKUP``), or is copied back under another name with :func:`restore_project`.

- ``labeler.db`` is copied with SQLite's online backup API
  (:meth:`sqlite3.Connection.backup`) in one step: one read transaction, so the copy is
  the database as it was at one instant, with every label action either fully in or
  fully out, while annotators go on writing (in WAL mode a reader never blocks a
  writer). Labels live only in the database, so they need nothing more.
- The arrays, index, models, settings and thumbnails are copied file by file while the
  backup holds the project lock (:func:`labeler.project.project_lock`): the operations
  that rewrite them (ingest, re-clustering, fine-tuning) wait for it or are refused,
  labelling is not. Each file is hashed as it is copied and checked against the
  manifest in the database copy (:mod:`labeler.integrity`); a file without an entry (a
  project older than the manifest) gets one in the backup, so that ``labeler check``
  can verify every byte of it.
- The copy is made in a hidden folder beside ``DEST`` and renamed to ``DEST`` at the end:
  an interrupted backup never looks like a complete one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInputError, CorruptFileError, ProjectError
from .check import DAMAGE, check_project
from .integrity import _CHUNK, is_tracked, sample_digest
from .locks import file_lock
from .project import DB_NAME, LOCK_NAME, Project, project_lock
from .store import Store

__all__ = ["BackupReport", "backup_project", "restore_project"]

#: Never copied: the database (copied through the backup API), its journal files, locks.
_SKIP = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal", LOCK_NAME, "models/index.lock"}
#: Top-level folders never copied: caches rebuilt on demand (the fine-tune's prefix maps,
#: labeler.embedding.prefix_cache: 115 MB for ELPV, ~4.4 GB at 100k images).
_SKIP_DIRS = {"cache"}


@dataclass
class BackupReport:
    """What a backup copied."""

    dest: Path
    files: int
    bytes: int
    labels: int
    actions: int
    seconds: float


def _copy_hashed(src: Path, dst: Path, *, durable: bool) -> tuple[int, str]:
    """Copy a file, returning ``(size, full BLAKE2b checksum)`` of the bytes written."""
    h = hashlib.blake2b(digest_size=32)
    size = 0
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while chunk := fi.read(_CHUNK):
            fo.write(chunk)
            h.update(chunk)
            size += len(chunk)
        if durable:
            fo.flush()
            os.fsync(fo.fileno())
    shutil.copystat(src, dst)
    return size, h.hexdigest()


def _files(root: Path, *, thumbs: bool) -> list[str]:
    """Project files to copy, as '/'-separated paths relative to ``root``."""
    out = []
    for d, dirs, names in os.walk(root):
        rel_dir = Path(d).relative_to(root)
        dirs[:] = sorted(x for x in dirs if not x.startswith(".") and (thumbs or rel_dir.parts or x != "thumbs")
                         and (rel_dir.parts or x not in _SKIP_DIRS))
        for n in sorted(names):
            rel = (rel_dir / n).as_posix()
            if rel in _SKIP or n.startswith(".") or n.endswith(".tmp"):
                continue  # temporaries of writes in progress (labeler.atomic)
            out.append(rel)
    return out


def _snapshot_db(store: Store, dest: Path) -> None:
    """The database as of one instant, through SQLite's online backup API (one step)."""
    dst = sqlite3.connect(dest)
    try:
        store.con.backup(dst)  # pages=-1: all pages in one read transaction
    finally:
        dst.close()


def _new_folder(dest: Path) -> Path:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BadInputError(f"{dest} exists and is not an empty folder: a backup goes to a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.with_name(f".{dest.name}.partial-{os.getpid()}")


def backup_project(project_dir: Path | str, dest: Path | str, *, thumbs: bool = True,
                   say: Callable[[str], None] = lambda m: None) -> BackupReport:
    """Copy a project to a new folder ``dest``, consistent while annotators keep labelling.

    Parameters
    ----------
    project_dir : path
        The project.
    dest : path
        A folder that does not exist yet (or is empty).
    thumbs : bool
        Also copy ``thumbs/`` (they can be made again by ingest, but the dashboard
        shows them).
    say : callable(str)
        Receives one line per copied file.

    Raises
    ------
    BadInputError
        ``dest`` is not empty, or lies inside the project.
    ProjectLockedError
        An ingest or re-clustering is writing the arrays: try again when it is done.
    CorruptFileError
        A file of the project does not match its manifest (``labeler check`` tells
        more); no backup is left behind.
    """
    t0 = time.time()
    project = Project(project_dir)
    dest = Path(dest).expanduser().resolve()
    if dest.is_relative_to(project.root):
        raise BadInputError(f"{dest} is inside the project: put the backup somewhere else")
    tmp = _new_folder(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        # The project lock keeps ingests and re-clusterings out; the index lock the
        # dashboard workers that build or extend the search index.
        with project_lock(project.root, "backup"), file_lock(project.models_dir / "index.lock"):
            _snapshot_db(project.store, tmp / DB_NAME)
            copy = Store(tmp / DB_NAME)
            try:
                files, total = _copy_files(project.root, tmp, copy, thumbs=thumbs, say=say)
                c = copy.counts()
                actions = copy.con.execute("SELECT COUNT(*) FROM actions").fetchone()[0]
            finally:
                copy.close()
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BackupReport(dest=dest, files=files + 1, bytes=total + (dest / DB_NAME).stat().st_size,
                        labels=int(c["labelled"]), actions=int(actions), seconds=time.time() - t0)


def _copy_files(root: Path, dest: Path, copy: Store, *, thumbs: bool, say) -> tuple[int, int]:
    n = total = 0
    for rel in _files(root, thumbs=thumbs):
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        entry = copy.manifest_entry(rel)
        size, digest = _copy_hashed(root / rel, out, durable=not rel.startswith("thumbs/"))
        if entry is not None and entry["digest"] is not None:
            if digest not in (entry["digest"], entry["next_digest"]):
                raise CorruptFileError(f"{rel} of {root} does not match its recorded checksum: no backup made; "
                                       f"`labeler check --project {root}` tells how to rebuild it")
        if entry is not None or is_tracked(rel):
            copy.manifest_record(rel, size, sample_digest(out, size), digest)
        n += 1
        total += size
        say(f"copied {rel} ({size:,} bytes)")
    return n, total


def restore_project(backup_dir: Path | str, project_dir: Path | str, *,
                    say: Callable[[str], None] = lambda m: None) -> BackupReport:
    """Make ``project_dir`` (new or empty) a copy of a backup, after checking the backup whole.

    A backup also opens as a project where it is; restoring copies it, so the backup
    stays untouched.

    Raises
    ------
    ProjectError
        The backup fails ``labeler check`` with damage (its first problem is named; an
        interrupted run is restored as it is, for the same command to finish).
    BadInputError
        ``project_dir`` is not empty.
    """
    # An interrupted ingest or re-clustering in the backup is restored as it is (the same
    # command finishes it in the restored project); damage is refused.
    problems = [p for p in check_project(backup_dir) if p.kind == DAMAGE]
    if problems:
        raise ProjectError(f"the backup at {backup_dir} is damaged: {problems[0]} "
                           f"({len(problems)} problem(s); `labeler check --project {backup_dir}` lists them)")
    return backup_project(backup_dir, project_dir, say=say)
