"""``labeler check``: verify a whole project, like fsck (one :class:`Problem` per finding).

The file checks use the manifest of :mod:`labeler.integrity` (full checksums here,
sampled ones on every open); the database checks are SQLite's own.

Each finding has a kind:

- ``"damage"``: a file or the database is not what labeler wrote (truncated, altered,
  deleted, rows that disagree with what the database recorded); named with the
  command that rebuilds it;
- ``"interrupted"``: the state an ingest or re-clustering leaves when it is stopped
  part-way (images catalogued but not embedded, rows embedded but not yet in the
  arrays or on the map, the clustering model removed by a re-mapping), which the
  same command run again finishes: ``interrupted: ...; run `<command>` to finish it``;
- ``"busy"``: another labeler command holds the project lock (only the database was
  checked).

``labeler check`` exits 1 when any finding is damage, 2 when every finding is an
interrupted run (or a busy project), 0 when there is none (:func:`exit_status`).
"""

from __future__ import annotations

import sqlite3
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .clustering import CLUSTER_MODEL
from .integrity import ROW_ARRAYS, rebuild_command, verify_full
from .errors import ProjectLockedError
from .project import LOCK_NAME, Project, project_lock

__all__ = ["DAMAGE", "INTERRUPTED", "BUSY", "Problem", "check_project", "exit_status"]

#: The kinds of finding (see the module docstring).
DAMAGE, INTERRUPTED, BUSY = "damage", "interrupted", "busy"


@dataclass
class Problem:
    """One thing ``labeler check`` found: the file (or ``labeler.db``), what, its kind
    (:data:`DAMAGE`, :data:`INTERRUPTED` or :data:`BUSY`) and, for an interrupted run,
    the command that finishes it."""

    file: str
    problem: str
    kind: str = DAMAGE
    command: str | None = None

    def __str__(self) -> str:
        text = self.problem
        if self.kind == INTERRUPTED:
            text = f"interrupted: {text}; run `{self.command}` to finish it"
        return text if text.startswith(self.file) else f"{self.file}: {text}"

    def to_dict(self) -> dict:
        return asdict(self)


def exit_status(problems: list[Problem]) -> int:
    """``labeler check``'s exit status: 0 sound, 1 damage, 2 only an interrupted run
    (or a busy project) to finish."""
    if not problems:
        return 0
    return 1 if any(p.kind == DAMAGE for p in problems) else 2


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
                busy = Problem(LOCK_NAME, f"{str(e).split(';')[0]}; run `labeler check` again when it is done", BUSY)
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
    ingest = f"labeler ingest {project.image_root or 'IMAGE_DIR'} --project {project.root}"
    stale = bool(store.get_meta("clustering_stale"))
    for entry in store.manifest_entries():
        name = entry["name"]
        problem = verify_full(project, name)
        if problem and stale and name == f"models/{CLUSTER_MODEL}" and not (project.root / name).exists():
            # A re-mapping removes the clustering model of the old space first.
            out.append(Problem(name, "the clustering model was removed by a re-mapping that did not finish",
                               INTERRUPTED, f"labeler cluster --project {project.root}"))
        elif problem:
            out.append(Problem(name, problem))
    if stale and (project.root / f"models/{CLUSTER_MODEL}").exists():
        out.append(Problem("labeler.db", "the clusters are from before a re-mapping that did not finish",
                           INTERRUPTED, f"labeler cluster --project {project.root}"))
    n_rows = store.next_row()
    pending = len(store.pending_images())
    if pending:
        out.append(Problem("labeler.db", f"{pending:,} image(s) catalogued but not embedded", INTERRUPTED, ingest))
    maps_rows = store.get_meta("maps_rows")
    to_place = store.get_meta("rows_to_place") or []
    if to_place:
        out.append(Problem("labeler.db", f"{len(to_place):,} embedded image(s) not yet placed on the map",
                           INTERRUPTED, ingest))
    for name in ROW_ARRAYS:
        path = project.array_path(name)
        if any(p.file == path.name for p in out):
            continue  # damaged: its row count says nothing more
        if not path.is_file():
            if n_rows and maps_rows is not None:
                if pending:  # `ingest --force` on damaged embeddings drops the arrays first
                    out.append(Problem(path.name, "missing while images wait to be embedded", INTERRUPTED, ingest))
                else:
                    out.append(Problem(path.name, f"missing; rebuild it with `{ingest}`"))
            continue
        try:
            rows = len(np.load(path, mmap_mode="r"))
        except (ValueError, OSError) as e:
            out.append(Problem(path.name, f"unreadable ({e}); rebuild it with `{rebuild_command(project, path.name)}`"))
            continue
        if rows == n_rows:
            continue
        # Rows a run committed to the images table but did not yet write: the embeddings
        # catch up from the committed parts, the maps from ``maps_rows`` on.
        done = int(maps_rows or 0)
        behind = rows < n_rows and (rows >= done if name == "embeddings" else rows == done)
        what = f"{rows:,} rows, the images table gives {n_rows:,} rows"
        if behind:
            out.append(Problem(path.name, what, INTERRUPTED, ingest))
        else:
            out.append(Problem(path.name, f"{what} (the database recorded {done:,} on the map); "
                                          f"rebuild it with `{rebuild_command(project, path.name)}`"))
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
