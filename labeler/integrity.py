"""Integrity of the files on disk: a manifest of sizes and checksums, checked on open.

Every array (``embeddings.npy``, ``pca.npy``, ``map.npy``, ``cluster_space.npy``,
the feature sets ``features/*.npy``), the search index (``models/index.faiss``,
``models/index.json``), the fitted models (``models/*.joblib``), the fine-tuned
networks (``models/<feature set>.pt``) and the int8-quantised model
(``models/*-int8-*.onnx``) are written through :func:`write_tracked` or :func:`replace_tracked`:
the temporary file is hashed, its entry is *staged* in the database's ``manifest``
table, the file is renamed into place and the entry *committed*
(:mod:`labeler.store.manifest`). A process killed between two steps leaves the old
file under its committed entry or the new one under its staged entry; both are
accepted, so a crash never makes a sound project look damaged. The manifest lives in
the database rather than in a ``manifest.json`` so that it is written in the same
transactions, backed up by the same online backup, and seen by every dashboard worker.

Two checksums, both BLAKE2b (standard library; a full pass over a 293 MiB
``embeddings.npy`` took 1.4 s on the shared 2-core machine, the sampled one 2.7 ms):

- on every open (:func:`verify`, called by :meth:`labeler.project.Project.load_array`
  and before a model or the index is read): the size and a *sampled* checksum of the
  first and last 64 KiB and 64 blocks of 4 KiB spread over the file, about 0.4 MiB
  read whatever the file's size (then cached per process until the file changes). A truncated or extended
  file, a file swapped for another (another project's array of the same shape, an
  older copy) or a region overwritten anywhere the samples fall is refused.
- in ``labeler check`` (:func:`labeler.check.check_project`) and ``labeler backup``: the full
  checksum of every byte, which also finds a single flipped bit anywhere.

Files of projects made before the manifest have no entry: they open as before, with
no warning, and get their entry the next time they are written.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .atomic import atomic_write
from .errors import CorruptFileError

__all__ = ["digests", "drop_tracked", "dump_model", "file_digest", "is_tracked", "load_model", "rebuild_command",
           "repair_embeddings", "replace_tracked", "sample_digest", "verify", "verify_full", "write_tracked"]

#: The sampled checksum reads the first and last EDGE bytes and BLOCKS blocks of BLOCK bytes.
EDGE = 64 * 1024
BLOCKS = 64
BLOCK = 4096
_CHUNK = 1 << 20

#: The arrays whose rows are the images' rows.
ROW_ARRAYS = ("embeddings", "pca", "map", "cluster_space")

#: Every file labeler writes through this module (names relative to the project root).
TRACKED = frozenset([f"{a}.npy" for a in ROW_ARRAYS] + [
    f"models/{m}" for m in ("pca.joblib", "umap_map.joblib", "umap_cluster.joblib", "clusterer.joblib",
                            "index.faiss", "index.json")])

#: (stat signature, accepted entry) of files verified in this process.
_VERIFIED: set[tuple] = set()


def sample_digest(path: Path | str, size: int | None = None) -> str:
    """The sampled checksum of a file (see the module docstring)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size if size is None else size
        h.update(str(size).encode())
        if size <= 2 * EDGE + BLOCKS * BLOCK:
            h.update(f.read())
            return h.hexdigest()
        h.update(f.read(EDGE))
        step = (size - 2 * EDGE - BLOCK) // (BLOCKS - 1)
        for i in range(BLOCKS):
            f.seek(EDGE + i * step)
            h.update(f.read(BLOCK))
        f.seek(size - EDGE)
        h.update(f.read(EDGE))
    return h.hexdigest()


def file_digest(path: Path | str) -> tuple[int, str]:
    """``(size, full BLAKE2b checksum)`` of a file, read in 1 MiB chunks."""
    h = hashlib.blake2b(digest_size=32)
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def digests(path: Path | str) -> tuple[int, str, str]:
    """``(size, sampled checksum, full checksum)`` of a file."""
    size, digest = file_digest(path)
    return size, sample_digest(path, size), digest


def _name(project, path: Path | str) -> str:
    """A file's manifest name: its path relative to the project root, with '/'."""
    return Path(path).resolve().relative_to(project.root).as_posix()


def rebuild_command(project, name: str) -> str:
    """The command that writes ``name`` again from what the project still has."""
    root = project.root
    if name.startswith("features/"):
        return _feature_set_command(project, name[len("features/"):].removesuffix(".npy"))
    if name == "embeddings.npy":
        return f"labeler ingest {project.image_root or 'IMAGE_DIR'} --project {root} --force"
    if name == "models/clusterer.joblib":
        return f"labeler cluster --project {root}"
    if name.startswith("models/") and name.endswith(".pt"):  # a fine-tuned network (labeler.embedding.finetune)
        return f"labeler finetune --project {root} --name {name[len('models/'):-len('.pt')]}"
    if name.startswith("models/") and name.endswith(".onnx"):  # the int8 model (labeler.embedding.stage)
        # Ingest quantises it again when the file is missing.
        return f"rm {root / name} && labeler ingest {project.image_root or 'IMAGE_DIR'} --project {root} --precision int8"
    if name.startswith("maps/"):  # an earlier map kept for going back (labeler.map_versions): no source to remake it
        kept = root / name.split("/")[0] / name.split("/")[1]
        return (f"rm -r {kept}  (a kept earlier map; the current map is not affected, but its clustering "
                f"can no longer be made current with `labeler cluster --use`)")
    return f"labeler cluster --project {root} --remap"


def _feature_set_command(project, name: str) -> str:
    info = (project.store.get_meta("feature_sets") or {}).get(name, {})
    root = project.root
    if info.get("kind") == "finetuned":
        return f"labeler finetune --project {root}"
    if info.get("text_model"):
        return f"labeler features --project {root} --text-model {info['text_model']}"
    return f"labeler features --project {root} --compute {info.get('feature_type', name)} --name {name}"


def is_tracked(name: str) -> bool:
    """Whether labeler writes the file ``name`` (relative to the project root) through this module."""
    return (name in TRACKED or (name.startswith("features/") and name.endswith(".npy"))
            or (name.startswith("models/") and name.count("/") == 1 and name.endswith((".pt", ".onnx"))))


# -- writing ---------------------------------------------------------------------------


@contextmanager
def write_tracked(project, path: Path | str, *, durable: bool = True) -> Iterator[BinaryIO]:
    """:func:`labeler.atomic.atomic_write` that records the new file in the manifest."""
    path = Path(path)
    staged = {}

    def stage(tmp: Path) -> None:
        size, sample, digest = digests(tmp)
        project.store.manifest_stage(_name(project, path), size, sample, digest)
        staged["digest"] = digest

    with atomic_write(path, durable=durable, before_replace=stage) as f:
        yield f
    project.store.manifest_commit(_name(project, path), staged["digest"])


def replace_tracked(project, tmp: Path | str, path: Path | str) -> None:
    """Rename a complete file another library wrote (``tmp``) over ``path``, recording it."""
    size, sample, digest = digests(tmp)
    name = _name(project, path)
    project.store.manifest_stage(name, size, sample, digest)
    os.replace(tmp, path)
    project.store.manifest_commit(name, digest)


def drop_tracked(project, path: Path | str) -> None:
    """Delete a file labeler wrote, its manifest entry first (a crash leaves an unrecorded
    file, never a recorded file that is missing). A missing file is not an error."""
    project.store.manifest_forget(_name(project, path))
    Path(path).unlink(missing_ok=True)


def dump_model(project, obj, path: Path | str) -> None:
    """``joblib.dump`` to ``path`` atomically, recorded in the manifest."""
    import joblib

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        joblib.dump(obj, tmp)
        replace_tracked(project, tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_model(project, path: Path | str):
    """``joblib.load`` of a model file after :func:`verify`."""
    import joblib

    verify(project, path)
    return joblib.load(path)


# -- checking --------------------------------------------------------------------------


def _accepted(entry: dict) -> list[tuple[int, str, str]]:
    """(size, sample, digest) of the files the entry accepts: the committed and the staged one."""
    return [(entry[f"{p}size"], entry[f"{p}sample"], entry[f"{p}digest"]) for p in ("", "next_")
            if entry[f"{p}digest"] is not None]


def _damaged(project, name: str, why: str) -> CorruptFileError:
    return CorruptFileError(f"{name} is damaged ({why}): it is not the file labeler wrote; "
                            f"rebuild it with `{rebuild_command(project, name)}`")


def verify(project, path: Path | str) -> None:
    """Check a file's size and sampled checksum against its manifest entry.

    A missing file or one without an entry (written before the manifest existed)
    passes: callers report missing files themselves.

    Raises
    ------
    CorruptFileError
        The file is truncated, extended, swapped or altered; one line naming it and
        the command that rebuilds it.
    """
    path = Path(path)
    if not path.exists():
        return
    name = _name(project, path)
    why = ""
    # Entry first, then the file: a write that lands in between (stage, rename, commit)
    # shows a file the entry read before does not know, so a mismatch is read again while
    # the entry keeps changing (writes in a row); damage is a mismatch under an entry that
    # stood still between two reads.
    last = None
    for _ in range(50):
        entry = project.store.manifest_entry(name)
        if entry is None or entry["digest"] is None:
            return  # never recorded (an older project): recorded on its next write
        state = (entry["digest"], entry["next_digest"])
        if state == last:
            break
        last = state
        try:
            st = path.stat()
        except FileNotFoundError:
            return
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino, entry["digest"], entry["next_digest"])
        if key in _VERIFIED:
            return
        accepted = _accepted(entry)
        if st.st_size not in {a[0] for a in accepted}:
            why = f"{st.st_size:,} bytes, labeler wrote {accepted[0][0]:,}"
        elif sample_digest(path, st.st_size) not in {a[1] for a in accepted if a[0] == st.st_size}:
            why = "its content changed since labeler wrote it"
        else:
            _VERIFIED.add(key)
            return
    raise _damaged(project, name, why)


def verify_full(project, name: str) -> str | None:
    """The problem with file ``name`` against its manifest entry by full checksum, or None."""
    entry = project.store.manifest_entry(name)
    path = project.root / name
    if entry is None or entry["digest"] is None:
        return None
    if not path.is_file():
        return f"{name} is missing; rebuild it with `{rebuild_command(project, name)}`"
    size, digest = file_digest(path)
    accepted = _accepted(entry)
    if size not in {a[0] for a in accepted}:
        return str(_damaged(project, name, f"{size:,} bytes, labeler wrote {accepted[0][0]:,}"))
    if digest not in {a[2] for a in accepted}:
        return str(_damaged(project, name, "its checksum differs from the one recorded when it was written"))
    return None


def repair_embeddings(project) -> bool:
    """Before ``labeler ingest --force``: when ``embeddings.npy`` fails its full checksum (or
    cannot be read), mark every image for embedding again and drop the row arrays (labels
    stay; the maps and clusters are refitted). Returns whether it did."""
    path = project.array_path("embeddings")
    if not path.is_file():
        return False
    damaged = verify_full(project, path.name) is not None
    if not damaged:
        try:
            np.load(path, mmap_mode="r")
        except (ValueError, OSError):
            damaged = True
    if damaged:
        project.store.mark_all_pending()
        for name in ROW_ARRAYS:
            project.array_path(name).unlink(missing_ok=True)
    return damaged
