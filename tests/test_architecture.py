"""The package's shape: no import cycles, small modules, a light errors module, and CLI help
that ends with a runnable example. Static checks (``ast``), plus one subprocess."""

from __future__ import annotations

import ast
import inspect
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

import labeler

PACKAGE = Path(labeler.__file__).resolve().parent
MAX_LINES = 600  # "keep modules small (< ~600 lines)": /work/shared/STYLE.md, issue 8
# Modules allowed over MAX_LINES for now, with their cap and why. A module that shrinks
# under MAX_LINES must leave this list (the test says so).
OVERSIZE: dict[str, tuple[int, str]] = {}  # module -> (temporary cap, why); empty since the store split


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    """{dotted module name: file} for every module of the package."""
    out = {}
    for f in sorted(package.rglob("*.py")):
        rel = f.relative_to(package.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = f
    return out


def _imported(name: str, is_pkg: bool, node: ast.AST, mods: dict) -> set[str]:
    """Package modules that an ``import`` / ``from ... import`` node imports."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in mods}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level:
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        stem = ".".join(base + ([node.module] if node.module else []))
    else:
        stem = node.module or ""
    subs = {f"{stem}.{a.name}" for a in node.names}
    out = subs & set(mods)
    if len(out) < len(subs):  # some names are attributes of the module ``stem`` itself
        out.add(stem)
    return out & set(mods)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Intra-package import graph {module: modules it imports}, counting imports inside
    functions; ``if TYPE_CHECKING:`` blocks and imports of a module's own parent packages
    (``labeler.app.views`` importing ``labeler.app``) do not count. Same rules as
    /work/shared/tools/import_cycles.py."""
    mods = _modules(package)
    graph = {}
    for name, f in mods.items():
        tree = ast.parse(f.read_text(), filename=str(f))
        skip = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip.update(id(n) for n in ast.walk(node))
        deps = set()
        for node in ast.walk(tree):
            if id(node) not in skip:
                deps |= _imported(name, f.name == "__init__.py", node, mods)
        graph[name] = {d for d in deps if d != name and not name.startswith(d + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, 1972), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_the_cycle_finder_finds_cycles(tmp_path):
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from . import b\n",
        "b.py": "def f():\n    from .sub import c\n",  # an import inside a function counts
        "sub/__init__.py": "from .c import X\n",
        "sub/c.py": "import pkg.a\nfrom .. import d\nfrom typing import TYPE_CHECKING\n"
                    "if TYPE_CHECKING:\n    from pkg import e\n",
        "d.py": "import os\n",
        "e.py": "from pkg.sub.c import Y\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    g = import_graph(pkg)
    assert g["pkg.a"] == {"pkg.b"} and g["pkg.b"] == {"pkg.sub.c"} and g["pkg.sub"] == {"pkg.sub.c"}
    assert g["pkg.sub.c"] == {"pkg.a", "pkg.d"}  # not pkg.sub (its parent), not pkg.e (TYPE_CHECKING)
    assert cycles(g) == [["pkg.a", "pkg.b", "pkg.sub.c"]]


def test_no_import_cycles_inside_the_package():
    found = cycles(import_graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_module_over_about_600_lines():
    sizes = {str(f.relative_to(PACKAGE.parent)): len(f.read_text().splitlines()) for f in _modules().values()}
    too_big = {m: n for m, n in sizes.items() if n > OVERSIZE.get(m, (MAX_LINES,))[0]}
    assert not too_big, f"modules over {MAX_LINES} lines (split them by concern): {too_big}"
    healed = [m for m, (cap, _) in OVERSIZE.items() if m not in sizes or sizes[m] <= MAX_LINES]
    assert not healed, f"now at most {MAX_LINES} lines: remove from OVERSIZE: {healed}"


def test_errors_module_imports_neither_torch_nor_dash():
    code = ("import sys, labeler.errors; "
            "print(' '.join(m for m in ('torch', 'torchvision', 'dash', 'flask', 'plotly', 'sklearn', "
            "'umap', 'hdbscan', 'numba') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=PACKAGE.parent)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [], f"import labeler.errors pulled in: {res.stdout.strip()}"


def test_every_command_help_ends_with_a_runnable_example():
    # tests/test_cli.py checks that each help mentions an example; this checks it is the
    # help's last paragraph and uses only the command's own options.
    from labeler.cli import main

    assert main.commands
    for name, cmd in main.commands.items():
        last = inspect.cleandoc(cmd.help or "").strip().split("\n\n")[-1]
        lines = [ln for ln in last.splitlines() if ln.strip() not in ("", "\b")]
        assert lines and lines[0].strip() == "Example:", f"{name}: help does not end with an example"
        argv = shlex.split(" ".join(ln.strip().rstrip("\\") for ln in lines[1:]))
        assert argv[:2] == ["labeler", name], f"{name}: example runs {argv[:2]}"
        known = {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts + p.secondary_opts}
        unknown = [a for a in argv[2:] if a.startswith("-") and a.split("=")[0] not in known]
        assert not unknown, f"{name}: example uses unknown options {unknown}"
