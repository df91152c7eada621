"""``labeler check``: verify a whole project, like fsck (one :class:`Problem` per finding).

The file checks use the manifest of :mod:`labeler.integrity` (full checksums here,
sampled ones on every open); the database checks are SQLite's own.
"""

from __future__ import annotations

import sqlite3
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .integrity import ROW_ARRAYS, rebuild_command, verify_full
from .errors import ProjectLockedError
from .project import LOCK_NAME, Project, project_lock

__all__ = ["Problem", "check_project"]


@dataclass
class Problem:
    """One thing ``labeler check`` found wrong: the file (or ``labeler.db``) and what."""

    file: str
    problem: str

    def __str__(self) -> str:
        return self.problem if self.problem.startswith(self.file) else f"{self.file}: {self.problem}"

    def to_dict(self) -> dict:
        return asdict(self)


def check_project(project_dir: Path | str) -> list[Problem]:
    """Verify a whole project (``labeler check``): empty when sound.

    - the database: ``PRAGMA integrity_check`` and ``PRAGMA foreign_key_check``;
    - every manifest entry by full checksum (:func:`verify_full`);
    - each row array has one row per image row of the ``images`` table, and no row
      number is missing;
    - every label and label event refers to an existing image.
    """
    try:
        project = Project(project_dir)
    except Exception as e:  # a database SQLite cannot open is itself the finding
        return [Problem("labeler.db", f"cannot be opened: {str(e).splitlines()[0] if str(e) else type(e).__name__}")]
    try:
        with ExitStack() as stack:
            try:  # no ingest starts while the files are read
                stack.enter_context(project_lock(project.root, "check"))
            except ProjectLockedError as e:
                # Arrays and manifest change while an ingest runs: check the database alone.
                busy = Problem(LOCK_NAME, f"{str(e).split(';')[0]}; run `labeler check` again when it is done")
                return [busy] + _check(project, files=False)
            except OSError:
                pass  # a read-only copy (a backup on read-only media): nothing writes it either
            return _check(project)
    finally:
        project.store.close()


def _check(project, *, files: bool = True) -> list[Problem]:
    store = project.store
    try:
        out = [Problem("labeler.db", p) for p in store.integrity_problems()]
    except sqlite3.DatabaseError as e:
        return [Problem("labeler.db", f"integrity check failed: {e}")]
    if not files:
        return out + _label_problems(store)
    for entry in store.manifest_entries():
        problem = verify_full(project, entry["name"])
        if problem:
            out.append(Problem(entry["name"], problem))
    n_rows = store.next_row()
    fix = f"`labeler ingest {project.image_root or 'IMAGE_DIR'} --project {project.root}` finishes an interrupted run"
    for name in ROW_ARRAYS:
        path = project.array_path(name)
        if any(p.file == path.name for p in out):
            continue  # damaged: its row count says nothing more
        if not path.is_file():
            if n_rows and store.get_meta("maps_rows") is not None:
                out.append(Problem(path.name, f"missing; {fix}"))
            continue
        try:
            rows = len(np.load(path, mmap_mode="r"))
        except (ValueError, OSError) as e:
            out.append(Problem(path.name, f"unreadable ({e}); rebuild it with `{rebuild_command(project, path.name)}`"))
            continue
        if rows != n_rows:
            out.append(Problem(path.name, f"{rows:,} rows, the images table gives {n_rows:,} rows; {fix}"))
    return out + _label_problems(store)


def _label_problems(store) -> list[Problem]:
    out = []
    holes = store.rows_without_image()
    if holes:
        out.append(Problem("labeler.db", f"{len(holes)} array row(s) held by no image (first {holes[0]})"))
    orphans = store.orphan_labels()
    if orphans:
        out.append(Problem("labeler.db", f"{len(orphans)} label(s) refer to missing images (first id {orphans[0]})"))
    return out
