"""Nothing in the repository depends on one development machine (issue 21).

Every git-tracked text file is scanned for absolute paths of a development machine: the
workspace root, root's home and users' home folders (Linux and macOS). A fresh clone
elsewhere has none of them, so a default, a command line or a doc that names one does not
reproduce. Benchmarks additionally must not default to a scratch folder under the
system temporary directory (a benchmark that needs one makes it with ``tempfile``).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# "/" + one of these + "/", not preceded by a name character (so "network/", "image_root/",
# "example.org/home/" and "../shared/" do not count).
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|root|home|Users)/")
# Tracked files allowed to name such a path, with why. None is needed today; keep it short.
ALLOWED: dict[str, str] = {}
# A benchmark argument defaulting to a scratch folder in the system temporary directory.
TMP_DEFAULT = re.compile(r"""default\s*=\s*(?:Path\(\s*)?["']/tmp\b""")
# Benchmarks allowed such a default for now, with why. A file that is fixed must leave this list.
TMP_DEFAULT_PENDING: dict[str, str] = {}


def tracked_files(root: Path = ROOT) -> list[str]:
    """Paths of the git-tracked files, relative to ``root`` (skips the test outside a checkout)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout (or no git): nothing to scan")
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def _text(path: Path) -> str | None:
    """The file's text, or None for a binary file or one missing from the work tree."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def matches(root: Path, files: list[str], pattern: re.Pattern) -> list[str]:
    """``file:line: text`` of every line of ``files`` (relative to ``root``) that matches."""
    found = []
    for rel in files:
        text = _text(root / rel)
        if text is None:
            continue
        for i, line in enumerate(text.splitlines(), 1):
            if pattern.search(line):
                found.append(f"{rel}:{i}: {line.strip()[:160]}")
    return found


def test_the_scan_finds_machine_paths(tmp_path):
    machine = ["/" + d + "/" for d in ("work", "root", "home", "Users")]
    files = {
        "a.py": f'DEFAULT = Path("{machine[0]}wt/elpv-project")\n',
        "b.md": f"python x.py --project {machine[1]}data\n",
        "c.txt": f"see {machine[2]}someone/notes and {machine[3]}someone/notes\n",
        "clean.md": "network/ image_root/ https://example.org/home/x ../shared/STYLE.md ~/.cache/labeler\n",
        "bench_x.py": 'ap.add_argument("--workdir", type=Path, default=Path("/' + 'tmp/scratch"))\n',
        "image.png": "\0PNG /" + "work/ binary\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    found = matches(tmp_path, sorted(files), MACHINE_PATH)
    assert [f.split(":")[0] for f in found] == ["a.py", "b.md", "c.txt"]  # not clean.md, not the binary
    assert [f.split(":")[0] for f in matches(tmp_path, sorted(files), TMP_DEFAULT)] == ["bench_x.py"]


def test_no_tracked_file_names_a_development_machine_path():
    files = tracked_files()
    assert "README.md" in files
    found = [f for f in matches(ROOT, files, MACHINE_PATH) if f.split(":")[0] not in ALLOWED]
    assert not found, ("tracked files name one development machine's absolute paths (take the path "
                       "as an argument with a default relative to the repository, e.g. data/projects/elpv):\n"
                       + "\n".join(found))
    unused = [f for f in ALLOWED if not matches(ROOT, [f], MACHINE_PATH)]
    assert not unused, f"no machine path left: remove from ALLOWED: {unused}"


def test_no_benchmark_defaults_to_a_scratch_folder():
    files = [f for f in tracked_files() if f.startswith("benchmarks/") and f.endswith(".py")]
    found = matches(ROOT, files, TMP_DEFAULT)
    wrong = [f for f in found if f.split(":")[0] not in TMP_DEFAULT_PENDING]
    assert not wrong, ("benchmarks default to a fixed scratch folder (use tempfile, or a path "
                       "argument):\n" + "\n".join(wrong))
    healed = [f for f in TMP_DEFAULT_PENDING if not any(x.startswith(f + ":") for x in found)]
    assert not healed, f"no scratch default left: remove from TMP_DEFAULT_PENDING: {healed}"
