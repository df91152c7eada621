"""The ImageFolder layout: ``OUT/split/label/file``.

Loadable as is by ``torchvision.datasets.ImageFolder(OUT / "train")`` and by
``datasets.load_dataset("imagefolder", data_dir=OUT)`` (split folders named
train / validation / test, as the Hugging Face imagefolder builder expects).
Files are symbolic links to the originals (default: no copy of the photos) or
copies (``copy=True``: a self-contained tree).

A label becomes a folder name: characters a file system refuses or that change
the path (``/``, ``\\``, NUL, control characters, ``<>:"|?*``, ``%``) and a
leading ``.`` are percent-encoded, so ``urllib.parse.unquote(folder)`` gives the
label back. A file is named ``<image id>_<original name>`` (unique even when two
subfolders hold the same name).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import BadInputError

_UNSAFE = set('/\\<>:"|?*%') | {chr(i) for i in range(32)} | {"\x7f"}


def label_folder(label: str) -> str:
    """A folder name for ``label`` (see the module docstring); reversible with ``unquote``."""
    s = "".join("".join(f"%{b:02X}" for b in ch.encode("utf-8")) if ch in _UNSAFE else ch for ch in label)
    if s.startswith("."):
        s = "%2E" + s[1:]
    return s


def prepare_output_dir(out: Path) -> None:
    """Create ``out``; refuse a non-empty existing one (an export never mixes with old files).

    Raises
    ------
    BadInputError
        ``out`` exists and is a file or a non-empty folder.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInputError(f"{out} exists and is not an empty folder; choose a new output folder")
    out.mkdir(parents=True, exist_ok=True)


@contextmanager
def staged_output_dir(out: Path) -> Iterator[Path]:
    """Refuse a non-empty ``out``, yield a hidden sibling folder to write the export
    into, and rename it to ``out`` once complete: ``out`` never holds half an export.

    A failed export (disk full, an unreadable file ...) removes the staging folder,
    leaving ``out`` as it was (absent or empty), so the same command can simply run
    again; the staging folder of a killed export (``.<name>.<pid>.export``) is
    removed by the next export to ``out``.

    Raises
    ------
    BadInputError
        ``out`` exists and is a file or a non-empty folder.
    """
    out = Path(out).absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInputError(f"{out} exists and is not an empty folder; choose a new output folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    for old in out.parent.iterdir():
        pid = old.name[len(out.name) + 2:-len(".export")]
        if old.name.startswith(f".{out.name}.") and old.name.endswith(".export") and pid.isdigit() \
                and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    stage = out.parent / f".{out.name}.{os.getpid()}.export"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        os.replace(stage, out)  # onto an absent or empty folder
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftover: a previous export of this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def exportable(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Labelled rows whose file is on disk, and the labelled rows that are not."""
    ok, missing = [], []
    for r in rows:
        if r["label"] == "" or r["split"] == "":
            continue
        (ok if r["absolute_path"] and os.path.isfile(r["absolute_path"]) else missing).append(r)
    return ok, missing


def export_imagefolder(rows: list[dict], out: Path | str, *, copy: bool = False) -> tuple[int, list[dict]]:
    """Write ``out/split/label/file`` for every labelled row with a split.

    Parameters
    ----------
    rows : list of dict
        From :func:`labeler.export.table.training_table`.
    out : path
        A new or empty folder.
    copy : bool
        Copy the files (default: symbolic links to the originals).

    Returns
    -------
    written : int
        Files written.
    missing : list of dict
        Labelled rows skipped because their file is gone.

    Raises
    ------
    BadInputError
        ``out`` is not empty, or two labels map to folder names that differ only by
        case (they would merge on a case-insensitive file system).
    """
    out = Path(out)
    ok, missing = exportable(rows)
    folders: dict[str, str] = {}
    for r in ok:
        f = label_folder(r["label"])
        other = folders.setdefault(f.casefold(), r["label"])
        if other != r["label"]:
            raise BadInputError(f"labels {other!r} and {r['label']!r} differ only by case; "
                                "rename one (`labeler labels rename`) before an imagefolder export")
    with staged_output_dir(out) as stage:  # out appears whole, or not at all
        for r in ok:
            d = stage / r["split"] / label_folder(r["label"])
            d.mkdir(parents=True, exist_ok=True)
            dest = d / f"{r['image_id']}_{Path(r['path']).name}"
            if copy:
                shutil.copy2(r["absolute_path"], dest)
            else:
                os.symlink(os.path.abspath(r["absolute_path"]), dest)
    return len(ok), missing
