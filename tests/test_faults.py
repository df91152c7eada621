"""Disk full, I/O errors and kill -9 (issue 25, items 1 and 2).

A write the disk refuses is injected at every write call site an operation reaches,
one site per run (:class:`Faults`): the first write of each site through
:func:`labeler.atomic.atomic_write` (the file's ``write``), every ``os.replace`` made
by labeler (a file another library wrote, renamed into place: joblib models, the HNSW
index, a finished export folder), and the symbolic links or copies of an imagefolder
export. The database gets the real thing: a connection whose ``max_page_count`` is
its current size raises SQLite's own "database or disk is full", and a subprocess
under ``RLIMIT_FSIZE`` (SIGXFSZ ignored) gets ``EFBIG`` from the kernel on every
write past the limit, for label writes, a re-clustering and every export format.

After each fault: ``labeler ...`` exits 1 with one ``error: ...`` line and no
traceback, every label committed before is there, no temporary file is left, and
``labeler check`` (:func:`labeler.check.check_project`) finds nothing, or only the
state of an interrupted run ("interrupted: ...; run `<command>` to finish it", exit
status 2: an ingest's new rows committed before their arrays; a re-mapping that removed
the old clustering model); running the same command again completes and leaves the check
clean. The next run, which is the retry, meets the next write site, so N sites cost
N + 1 runs. Ingest (11 sites), ``cluster --remap`` (10), the four export formats,
``finetune`` (5, marked slow: 1 epoch at 64 px; its ONNX export cache is done
without), label writes and the RLIMIT_FSIZE run.

The kill -9 sweep (``benchmarks/bench_kill.py``) is here in small: a few kill points
in ingest and a re-clustering.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import labeler
from labeler.check import INTERRUPTED, check_project, exit_status
from labeler.cli import main
from labeler.project import Project

PACKAGE = Path(labeler.__file__).resolve().parent
#: Frames that are the write machinery, not a call site.
_MACHINERY = {PACKAGE / "atomic.py", PACKAGE / "integrity.py"}


class Faults:
    """Raises ``OSError(ENOSPC)`` at the first write of the first call site not in ``done``.

    A call site is the two innermost frames of labeler (outside :mod:`labeler.atomic`
    and :mod:`labeler.integrity`) that led to the write, e.g. ``project.py:224 <
    pipeline.py:140`` (the PCA array of a re-mapping).
    """

    def __init__(self, done: set[str]):
        self.done = done
        self.fired: str | None = None

    def hit(self, path) -> None:
        if self.fired is not None:
            return
        site = _site()
        if site is None or site in self.done:
            return
        self.fired = site
        self.done.add(site)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _site() -> str | None:
    f = sys._getframe(2)
    out = []
    while f is not None and len(out) < 2:
        p = Path(f.f_code.co_filename)
        if p.is_relative_to(PACKAGE) and p not in _MACHINERY:
            out.append(f"{p.relative_to(PACKAGE)}:{f.f_lineno}")
        f = f.f_back
    return " < ".join(out) or None


class _FailingFile:
    """A file of atomic_write whose writes first ask :class:`Faults`."""

    def __init__(self, f, faults: Faults, path):
        self._f, self._faults, self._path = f, faults, path

    def write(self, data):
        self._faults.hit(self._path)
        return self._f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._f, name)


def _from_labeler() -> bool:
    p = Path(sys._getframe(2).f_code.co_filename)
    return p.is_relative_to(PACKAGE)


@pytest.fixture()
def faults(monkeypatch):
    """``arm(done)``: install a :class:`Faults` for the next run; returns it."""
    import importlib

    atomic = importlib.import_module("labeler.atomic")
    imagefolder = importlib.import_module("labeler.export.imagefolder")

    box: dict[str, Faults] = {}
    real_open, real_replace, real_symlink, real_copy2 = open, os.replace, os.symlink, shutil.copy2

    def fake_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return _FailingFile(f, box["f"], path) if "w" in mode and "f" in box else f

    def wrap(real):
        def fn(src, dst, *a, **k):
            if "f" in box and _from_labeler():
                box["f"].hit(dst)
            return real(src, dst, *a, **k)
        return fn

    monkeypatch.setattr(atomic, "open", fake_open, raising=False)
    monkeypatch.setattr(os, "replace", wrap(real_replace))
    monkeypatch.setattr(imagefolder.os, "symlink", wrap(real_symlink))
    monkeypatch.setattr(imagefolder.shutil, "copy2", wrap(real_copy2))

    def arm(done: set[str]) -> Faults:
        box["f"] = Faults(done)
        return box["f"]

    yield arm
    box.clear()


# -- what must hold after every fault -------------------------------------------------------

def _labels(root: Path) -> dict[int, tuple[str, str]]:
    con = sqlite3.connect(f"file:{root / 'labeler.db'}?mode=ro", uri=True)
    try:
        return {int(i): (lab, who) for i, lab, who in con.execute("SELECT image_id, label, annotator FROM labels")}
    finally:
        con.close()


def _debris(root: Path) -> list[str]:
    """Temporary files and staging folders left behind (none may be)."""
    return sorted(str(p.relative_to(root.parent)) for p in root.parent.rglob(".*")
                  if p.name.endswith((".tmp", ".new", ".export")) or ".scratch-" in p.name)


def _one_line_error(r) -> str:
    assert r.exit_code == 1, (r.exit_code, r.output, r.exc_info)
    assert isinstance(r.exception, SystemExit), r.exc_info  # not an exception escaping
    lines = r.stderr.strip().splitlines()
    err = [ln for ln in lines if ln.startswith("error: ")]
    assert len(err) == 1 and "Traceback" not in r.output, r.output
    return err[0]


def _sound(root: Path, labels_before: dict, *, resumable: bool = False) -> list[str]:
    """Assert the project opens with every label and passes the check (or, ``resumable``,
    reports only an interrupted run's state, each finding of kind 'interrupted' naming
    the command that finishes it, which ``labeler check`` exits 2 on); returns the
    check's findings."""
    assert _labels(root) == labels_before
    Project(root).store.close()  # opens
    found = check_project(root)
    problems = [str(p) for p in found]
    if resumable:
        assert all(p.kind == INTERRUPTED and p.command and "to finish it" in str(p) for p in found), problems
        assert exit_status(found) in (0, 2)
    else:
        assert problems == []
    return problems


def _shape(problem: str, root: Path) -> str:
    """A finding without the paths of this run (for the printed summary)."""
    return problem.replace(str(root.parent), "<tmp>")


#: What the check reported after a fault, over the whole module: finding -> sites.
FINDINGS: dict[str, list[str]] = {}
#: Faults a command went on without (a cache it could not write).
ABSORBED: list[str] = []


def _sweep(cli_args: list[str], root: Path, arm, *, check_root: Path | None = None,
           after_fault=None, limit: int = 40) -> tuple[list[str], list[str]]:
    """Run ``labeler <cli_args>`` once per write site, failing that site; the last run completes.

    Returns (the sites faulted, their error lines).
    """
    done: set[str] = set()
    sites, errors = [], []
    labels = _labels(root)
    for _ in range(limit):
        f = arm(done)
        r = CliRunner().invoke(main, cli_args)
        if f.fired is None:
            assert r.exit_code == 0, (r.output, r.exc_info)
            break
        if r.exit_code == 0:  # a cache that could not be written: the command went on without it
            ABSORBED.append(f.fired)
            _sound(check_root or root, labels)
            continue
        sites.append(f.fired)
        errors.append(_one_line_error(r))
        assert "No space left on device" in errors[-1]
        for p in _sound(check_root or root, labels, resumable=True):
            FINDINGS.setdefault(_shape(p, root), []).append(f.fired)
        assert _debris(root) == []
        if after_fault:
            after_fault()
    else:
        pytest.fail(f"still failing after {limit} faults")
    _sound(check_root or root, labels)
    return sites, errors


@pytest.fixture()
def labelled(project):
    """The project with labels of two annotators (what must survive every fault)."""
    from labeler import labels

    ids = project.store.row_image_ids()
    labels.label_images(project, ids[:12], "cracked", annotator="ana")
    labels.label_images(project, ids[12:24], "intact", annotator="ben")
    project.store.close()
    return project.root


def _new_photos(project_root: Path, tmp_path: Path, n: int = 3) -> Path:
    """A copy of the project's image folder plus ``n`` new photos (rotated copies); the
    project now catalogues the copy."""
    from PIL import Image

    p = Project(project_root)
    src = Path(p.image_root)
    dest = tmp_path / "images"
    shutil.copytree(src, dest)
    for i, f in enumerate(sorted(src.iterdir())[:n]):
        Image.open(f).rotate(90).save(dest / f"new{i}.png")
    p.store.set_meta(image_root=str(dest.resolve()))
    p.store.close()
    return dest


# -- 1. disk full --------------------------------------------------------------------------------

def test_disk_full_at_every_write_of_an_ingest(labelled, faults, tmp_path):
    FINDINGS.clear()
    images = _new_photos(labelled, tmp_path)
    n0 = Project(labelled).store.next_row()
    sites, errors = _sweep(["ingest", str(images), "--project", str(labelled), "--quiet"], labelled, faults)
    p = Project(labelled)
    assert p.store.next_row() == n0 + 3 and len(p.load_array("map")) == n0 + 3
    p.store.close()
    assert len(sites) >= 5, sites  # parts, arrays, thumbnails, index, settings ...
    print(f"ingest: {len(sites)} write sites faulted: {sites}\n  e.g. {errors[0]}")
    for p, at in FINDINGS.items():
        print(f"  check after a fault at {len(at)} site(s): {p}")


def test_disk_full_at_every_write_of_a_remapping_recluster(labelled, faults):
    FINDINGS.clear()
    sites, _ = _sweep(["cluster", "--project", str(labelled), "--remap", "--method", "kmeans", "--k", "3"],
                      labelled, faults)
    assert len(sites) >= 6, sites  # pca, map, space, 3 models, clusterer ...
    print(f"cluster --remap: {len(sites)} write sites faulted: {sites}")
    for p, at in FINDINGS.items():
        print(f"  check after a fault at {len(at)} site(s): {p}")


@pytest.mark.parametrize("fmt", ["csv", "parquet", "imagefolder", "hf"])
def test_disk_full_in_every_export_format(labelled, faults, tmp_path, fmt):
    if fmt == "hf":
        pytest.importorskip("datasets")
    out = tmp_path / "out" / ("labels." + fmt if fmt in ("csv", "parquet") else "set")
    out.parent.mkdir()
    extra = ["--copy"] if fmt == "imagefolder" else []
    sites, errors = _sweep(["export", "--project", str(labelled), "-o", str(out), "--format", fmt,
                            "--split", "0.5,0.5", *extra], labelled, faults,
                           after_fault=lambda: assert_absent(out))
    assert sites, "no write was faulted"
    assert out.exists()
    print(f"export {fmt}: {len(sites)} write sites faulted: {sites}")


def assert_absent(out: Path) -> None:
    """A failed export leaves nothing at ``out`` (never half a file or folder)."""
    assert not out.exists() or (out.is_dir() and not any(out.iterdir())), sorted(out.rglob("*"))
    assert _debris(out.parent / "x") == []


@pytest.mark.slow
def test_disk_full_at_every_write_of_a_finetune(labelled, faults, monkeypatch):
    """``labeler finetune`` at the smallest settings (1 epoch, no hold-out, cross-entropy,
    64 px): the ONNX export cache it cannot write is done without; the model and the
    feature set fail in one line and leave the previous feature set active."""
    import functools
    import importlib

    from labeler.embedding.feature_sets import active_feature_set

    ft = importlib.import_module("labeler.embedding.finetune")
    monkeypatch.setattr(ft, "finetune_project", functools.partial(ft.finetune_project, input_size=64))
    ABSORBED.clear()
    sites, errors = _sweep(["finetune", "--project", str(labelled), "--epochs", "1", "--holdout", "0",
                            "--loss", "ce", "--device", "cpu", "--quiet"], labelled, faults)
    assert len(sites) >= 2, sites  # the model file and the feature set
    p = Project(labelled)
    assert active_feature_set(p).startswith("finetuned")
    p.store.close()
    print(f"finetune: {len(sites)} write sites faulted: {sites}; went on without: {ABSORBED}")


def test_database_full_on_a_label_write(labelled, monkeypatch):
    """SQLite's own SQLITE_FULL (max_page_count = the database's size): the label write
    fails whole, in one line, and succeeds once there is room."""
    before = _labels(labelled)
    real = sqlite3.connect

    def full(*a, **k):
        con = real(*a, **k)
        con.execute(f"PRAGMA max_page_count = {con.execute('PRAGMA page_count').fetchone()[0]}")
        return con

    ids = [str(i) for i in Project(labelled).store.row_image_ids()[24:]]
    args = ["label", "--project", str(labelled), "dusty", "--annotator", "c" * 100,
            *[x for i in ids for x in ("--image", i)]]
    monkeypatch.setattr(sqlite3, "connect", full)
    err = _one_line_error(CliRunner().invoke(main, args))
    assert "database or disk is full" in err
    monkeypatch.setattr(sqlite3, "connect", real)
    _sound(labelled, before)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert len(_labels(labelled)) == len(before) + len(ids)


_UNDER_LIMIT = r"""
import contextlib, io, json, resource, signal, sys
from labeler.cli import main
from labeler.project import Project
root, out = sys.argv[1], sys.argv[2]
held = Project(root)  # the database's -shm and WAL files exist before the limit
held.store.labels()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
commands = [["label", "--project", root, "fsize", "--image", "30", "--image", "31"],
            ["cluster", "--project", root, "--method", "kmeans", "--k", "4"]]
for fmt in ("csv", "parquet", "imagefolder", "hf"):
    commands.append(["export", "--project", root, "-o", f"{out}/{fmt}.out"]
                    + (["--copy"] if fmt == "imagefolder" else []) + ["--format", fmt])
res = []
for limited in (True, False):
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096 if limited else hard, hard))
    for args in commands:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                main(args, standalone_mode=False)
                code = 0
            except SystemExit as e:
                code = e.code
            except BaseException as e:
                code = repr(e)
        res.append({"args": args[:1] + args[-2:], "limited": limited, "code": code, "stderr": err.getvalue()})
print(json.dumps(res))
"""


def test_file_size_limit_on_labels_recluster_and_exports(labelled, tmp_path):
    """The kernel's own EFBIG (RLIMIT_FSIZE 4 KiB) on label writes, a re-clustering and
    the four export formats, then the same commands without the limit."""
    before = _labels(labelled)
    out = tmp_path / "exports"
    out.mkdir()
    p = subprocess.run([sys.executable, "-c", _UNDER_LIMIT, str(labelled), str(out)], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    half = len(res) // 2
    for r in res[:half]:  # under the limit: one line each
        assert r["code"] == 1, r
        lines = r["stderr"].strip().splitlines()  # progress lines, then the error
        assert [ln for ln in lines if ln.startswith("error: ")] == lines[-1:], r
        assert lines[-1].startswith("error: cannot write") and "Traceback" not in r["stderr"], r
    for r in res[half:]:  # room again: each completes
        assert r["code"] == 0, r
    after = _labels(labelled)
    assert {i: v for i, v in after.items() if i in before} == before
    assert [str(x) for x in check_project(labelled)] == []
    assert _debris(labelled) == [] and _debris(out / "x") == []


# -- 2. kill -9 ----------------------------------------------------------------------------------

_CLI = [sys.executable, "-c", "from labeler.cli import main; main()"]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for p in root.rglob("*"):
        try:
            if p.is_file() and p.name != "labeler.lock":
                st = p.stat()
                out[str(p)] = (st.st_size, st.st_mtime_ns)
        except FileNotFoundError:  # renamed away meanwhile
            pass
    return out


def _kill_at_change(args: list[str], root: Path, nth: int, timeout: float = 600) -> bool:
    """Run ``labeler args`` and SIGKILL its process group at the ``nth`` change seen in the
    project's files (a database commit, an array, a part, a thumbnail ...). True if killed,
    False if it finished first (then it must have succeeded)."""
    snap, seen, t0 = _snapshot(root), 0, time.monotonic()
    p = subprocess.Popen(_CLI + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    while p.poll() is None:
        s = _snapshot(root)
        if s != snap:
            seen, snap = seen + 1, s
            if seen >= nth:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                p.stderr.close()
                return True
        if time.monotonic() - t0 > timeout:
            os.killpg(p.pid, signal.SIGKILL)
            pytest.fail(f"{args[0]} ran past {timeout} s")
        time.sleep(0.01)
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    assert p.returncode == 0, err[-2000:]
    return False


def test_kill_9_during_ingest_and_recluster(labelled, tmp_path):
    """Five kill points: ingest killed at its 1st, 3rd and 6th file change (each run resumes
    the one before), a re-clustering at its 1st and 2nd; after each the project opens,
    keeps every label and passes ``labeler check``; the last run of each completes."""
    images = _new_photos(labelled, tmp_path)
    before = _labels(labelled)
    n0 = Project(labelled).store.next_row()
    killed = 0
    plan = [(["ingest", str(images), "--project", str(labelled), "--quiet"], [1, 3, 6]),
            (["cluster", "--project", str(labelled), "--method", "kmeans", "--k", "3"], [1, 2])]
    for args, points in plan:
        for nth in points:
            killed += _kill_at_change(args, labelled, nth)
            _sound(labelled, before, resumable=True)
        r = CliRunner().invoke(main, args)  # the re-run completes
        assert r.exit_code == 0, r.output
        _sound(labelled, before)
    p = Project(labelled)
    assert p.store.next_row() == n0 + 3 and len(p.load_array("map")) == n0 + 3
    p.store.close()
    assert killed >= 4, killed
