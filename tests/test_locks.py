"""labeler.locks.file_lock, the one file lock, and `import labeler` where fcntl is missing."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path

import pytest

from labeler import locks
from labeler.errors import LabelerError
from labeler.locks import file_lock

ROOT = Path(__file__).parents[1]


def test_a_held_lock_refuses_a_non_blocking_taker_and_holds_up_a_blocking_one(tmp_path):
    path = tmp_path / "x.lock"
    order = []

    def wait_for_it():
        with file_lock(path):
            order.append("waiter")

    with file_lock(path) as f:
        f.write("holder")
        f.flush()
        with pytest.raises(BlockingIOError):
            with file_lock(path, blocking=False):
                pass
        t = threading.Thread(target=wait_for_it)
        t.start()
        time.sleep(0.3)
        order.append("holder")
    t.join(10)
    assert order == ["holder", "waiter"]
    assert path.read_text() == "holder"  # the lock leaves the file's text alone
    with file_lock(path, blocking=False):  # released
        pass


def test_windows_locks_one_byte_past_the_text_and_unlocks_it(tmp_path, monkeypatch):
    """The msvcrt branch, with a stand-in msvcrt that records where it locks."""
    calls, held = [], set()

    def locking(fd, mode, nbytes):
        import os

        pos = os.lseek(fd, 0, os.SEEK_CUR)
        calls.append((mode, pos, nbytes))
        if mode == fake.LK_NBLCK:
            if pos in held:
                raise PermissionError(13, "Permission denied")
            held.add(pos)
        elif mode == fake.LK_UNLCK:
            held.discard(pos)

    fake = types.SimpleNamespace(LK_NBLCK=2, LK_UNLCK=0, locking=locking)
    monkeypatch.setattr(locks, "_module", lambda name: None if name == "fcntl" else fake)
    path = tmp_path / "x.lock"
    with file_lock(path, blocking=False) as f:
        f.write("ingest (pid 1)")
        f.flush()
        with pytest.raises(BlockingIOError):
            with file_lock(path, blocking=False):
                pass
        assert path.read_text() == "ingest (pid 1)"
    assert held == set()
    assert calls[0] == (fake.LK_NBLCK, locks._MSVCRT_OFFSET, 1) and calls[-1] == (fake.LK_UNLCK, locks._MSVCRT_OFFSET, 1)


def test_import_labeler_works_without_fcntl_and_a_lock_then_says_why_it_cannot(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        sys.modules["fcntl"] = None  # import fcntl now raises ImportError, as on Windows
        sys.modules["msvcrt"] = None
        import labeler, labeler.index, labeler.project, labeler.cli
        from labeler.project import project_lock
        try:
            with project_lock({str(tmp_path)!r}):
                pass
        except labeler.errors.LabelerError as e:
            print(e)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "file locks need fcntl (POSIX) or msvcrt (Windows); this Python has neither"


def test_no_module_imports_fcntl_but_the_lock_helper():
    imports = re.compile(r"^\s*(import|from)\s+(fcntl|msvcrt)\b", re.M)
    hits = [str(p.relative_to(ROOT)) for p in (ROOT / "labeler").rglob("*.py")
            if p.name != "locks.py" and imports.search(p.read_text())]
    assert hits == []


def test_a_platform_without_either_lock_is_told_so_at_use_time(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "_module", lambda name: None)
    with pytest.raises(LabelerError, match="need fcntl"):
        with file_lock(tmp_path / "x.lock"):
            pass
    assert not (tmp_path / "x.lock").exists()
