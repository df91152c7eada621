"""A project directory: one image collection, its database, arrays and models.

::

    my-project/
      labeler.toml     settings used
      labeler.db       SQLite (WAL): images, clusterings, labels, label events, skipped
      embeddings.npy   (n_rows, D) float32, row i = images.row i
      pca.npy          (n_rows, P) float32, L2-normalised PCA vectors
      map.npy          (n_rows, 2) float32, UMAP 2-D map
      cluster_space.npy (n_rows, d) float32, low-dimensional UMAP that HDBSCAN runs on
      models/          fitted PCA and UMAP (joblib), for placing query images
      thumbs/          <image id>.jpg thumbnails
      parts/           embedding chunks committed but not yet merged (resume)

Nothing is ever written into the image folder.
"""

from __future__ import annotations

import os
import re
import threading
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import ProjectError, ProjectLockedError
from .integrity import verify, write_tracked
from .locks import file_lock
from .config import Settings, load_settings, save_settings
from .store import Store

DB_NAME = "labeler.db"
SETTINGS_NAME = "labeler.toml"
LOCK_NAME = "labeler.lock"


#: Project directories this thread holds the lock of, with their nesting depth.
_HELD = threading.local()


@contextmanager
def project_lock(project_dir: Path | str, what: str = "ingest"):
    """Hold the project's exclusive write lock for a long write.

    Which operations take it (the policy):

    - **yes**, every operation that rewrites the collection's arrays, models or
      clustering as a whole and runs for seconds to hours: ingest (catalogue,
      embed, re-embed after a backbone change, PCA / UMAP, clustering;
      :func:`labeler.pipeline.ingest`), re-clustering and re-mapping
      (:func:`labeler.pipeline.recluster`), computing or fine-tuning a feature set
      (``labeler features --compute``, ``labeler finetune``). Two of them at once
      would interleave array and database writes, so the second fails at once.
    - **no**, single label writes and cluster edits: label images or a cluster,
      accept suggestions, rename / merge labels, undo / redo
      (:mod:`labeler.labels`), split / merge / move (:mod:`labeler.refine`). Each
      is one SQLite ``BEGIN IMMEDIATE`` transaction that checks what it needs
      (e.g. that the clustering the annotator saw is still current) and writes
      all or nothing; SQLite's WAL serialises them across processes. The
      dashboard (several workers) writes labels this way and must stay usable
      while a long ingest holds the lock.
    - Readers (the dashboard, ``info``, ``search``, ``export``) never take it.

    An advisory lock on ``labeler.lock`` in the project directory (created
    with the directory if missing), taken with :func:`labeler.locks.file_lock`
    (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows) rather than the
    ``filelock`` package: it is the standard library, ``filelock`` uses the same
    call on POSIX, and the kernel releases the lock when the process dies (even
    by kill -9), so there is never a stale lock to clean up. Re-entrant within one
    thread (``labeler ingest`` holds it around :func:`labeler.pipeline.ingest`,
    which takes it too); another thread or process is refused.

    Raises
    ------
    ProjectLockedError
        Another process (or thread) holds the lock (fails at once, never waits).
    """
    root = Path(project_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    key = str(root.resolve())
    held = _HELD.__dict__.setdefault("depth", {})
    if held.get(key):
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    with ExitStack() as stack:
        try:
            f = stack.enter_context(file_lock(root / LOCK_NAME, blocking=False))
        except BlockingIOError:
            holder = _lock_holder(root / LOCK_NAME) or "another process"
            raise ProjectLockedError(
                f"{root} is busy: {holder} is writing to it; wait for it to finish "
                f"before this {what} (the dashboard stays usable meanwhile)") from None
        f.truncate()
        f.write(f"{what} (pid {os.getpid()})")
        f.flush()
        held[key] = 1
        try:
            yield
        finally:
            held.pop(key, None)
            f.seek(0)
            f.truncate()


def _lock_holder(path: Path) -> str:
    """What the holder of a project lock wrote into it ('' when it cannot be read)."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def save_array(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` atomically (temporary file + rename)."""
    with atomic_write(path) as f:
        np.save(f, np.ascontiguousarray(array))


class Project:
    """Opens or creates a project directory.

    Parameters
    ----------
    root : Path
        The project directory.
    create : bool
        Create it (and its database) when missing. Otherwise a directory
        without ``labeler.db`` raises :class:`ProjectError`.
    """

    def __init__(self, root: Path | str, *, create: bool = False):
        self.root = Path(root).expanduser().resolve()
        if not (self.root / DB_NAME).is_file():
            if not create:
                raise ProjectError(
                    f"{self.root} is not a labeler project (no {DB_NAME}); "
                    "create one with `labeler ingest IMAGE_DIR --project DIR`"
                )
            self.root.mkdir(parents=True, exist_ok=True)
        for d in (self.models_dir, self.thumbs_dir):
            d.mkdir(exist_ok=True)
        self.store = Store(self.root / DB_NAME)

    # -- paths -------------------------------------------------------------------------
    @property
    def settings_path(self) -> Path:
        return self.root / SETTINGS_NAME

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def thumbs_dir(self) -> Path:
        return self.root / "thumbs"

    @property
    def parts_dir(self) -> Path:
        return self.root / "parts"

    def array_path(self, name: str) -> Path:
        """Path of a named array: embeddings, pca, map, cluster_space."""
        return self.root / f"{name}.npy"

    def thumb_path(self, image_id: int) -> Path:
        """Thumbnail JPEG of an image (may not exist for skipped images)."""
        return self.thumbs_dir / f"{int(image_id)}.jpg"

    # -- settings and metadata ---------------------------------------------------------
    def settings(self, **overrides) -> Settings:
        """Settings: defaults < labeler.toml < LABELER_* env < ``overrides``."""
        return load_settings(self.settings_path, **overrides)

    def save_settings(self, settings: Settings) -> None:
        save_settings(settings, self.settings_path)

    @property
    def image_root(self) -> Path | None:
        """Absolute image folder this project catalogues (None before the first ingest)."""
        v = self.store.get_meta("image_root")
        return None if v is None else Path(v)

    def image_path(self, rel_path: str) -> Path:
        """Absolute path of a catalogued file; refuses paths that leave the image root."""
        root = self.image_root
        if root is None:
            raise ProjectError("the project has no image root yet")
        p = (root / rel_path).resolve()
        if not p.is_relative_to(root.resolve()):
            raise ProjectError(f"path leaves the image root: {rel_path!r}")
        return p

    # -- arrays ------------------------------------------------------------------------
    def has_array(self, name: str) -> bool:
        return self.array_path(name).is_file()

    def load_array(self, name: str, *, mmap: bool = True) -> np.ndarray:
        """A stored array, memory-mapped read-only by default.

        Raises
        ------
        ProjectError
            The array does not exist yet (run ingest first).
        CorruptFileError
            The file differs from the one labeler wrote (truncated, swapped, altered).
        """
        p = self.array_path(name)
        if not p.is_file():
            raise ProjectError(f"{p.name} does not exist yet: run `labeler ingest` first")
        verify(self, p)  # size + sampled checksum against the manifest (labeler.integrity)
        return np.load(p, mmap_mode="r" if mmap else None)

    def save_array(self, name: str, array: np.ndarray) -> None:
        """Write a named array atomically and record it in the manifest (labeler.integrity)."""
        with write_tracked(self, self.array_path(name)) as f:
            np.save(f, np.ascontiguousarray(array))

    # -- embedding chunks (resume after an interrupted ingest) ---------------------------
    def write_part(self, rows: np.ndarray, features: np.ndarray) -> Path:
        """Persist one chunk of embeddings before its rows are committed to the DB.

        Parameters
        ----------
        rows : ndarray (B,), int64
        features : ndarray (B, D), float32
        """
        self.parts_dir.mkdir(exist_ok=True)
        path = self.parts_dir / f"part-{int(rows.min()):010d}-{len(rows)}.npz"
        with atomic_write(path) as f:
            np.savez(f, rows=rows.astype(np.int64), features=features.astype(np.float32))
        return path

    def consolidate_parts(self) -> int:
        """Merge committed chunks into ``embeddings.npy``; drop uncommitted ones.

        A chunk counts as committed when the database gives each of its rows to an
        image (the DB commit happens after the chunk file is written). Returns the
        number of rows merged.
        """
        if not self.parts_dir.is_dir():
            return 0
        parts = sorted(p for p in self.parts_dir.iterdir() if re.match(r"part-\d+-\d+\.npz$", p.name))
        for leftover in self.parts_dir.glob("*.tmp"):
            leftover.unlink()
        if not parts:
            return 0
        row_ids = self.store.row_image_ids()
        # A changed file keeps its row but is pending until its new chunk commits.
        row_ids[[r["row"] for r in self.store.pending_images() if r["row"] is not None]] = -1
        n_rows = len(row_ids)
        emb = self.load_array("embeddings", mmap=False) if self.has_array("embeddings") else None
        merged = 0
        for p in parts:
            with np.load(p) as z:
                rows, feats = z["rows"], z["features"]
            if len(rows) == 0 or rows.max() >= n_rows or (row_ids[rows] < 0).any():
                continue  # never committed: those images are still pending
            if emb is None:
                emb = np.zeros((n_rows, feats.shape[1]), dtype=np.float32)
            if emb.shape[0] < n_rows:
                grown = np.zeros((n_rows, emb.shape[1]), dtype=np.float32)
                grown[: emb.shape[0]] = emb
                emb = grown
            if emb.shape[1] != feats.shape[1]:
                raise ProjectError(
                    f"embedding chunk {p.name} has {feats.shape[1]} dims, the project "
                    f"{emb.shape[1]}: one project never mixes backbones"
                )
            emb[rows] = feats
            merged += len(rows)
        if emb is not None:
            self.save_array("embeddings", emb)
        for p in parts:
            p.unlink()
        return merged
