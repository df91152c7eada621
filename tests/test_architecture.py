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
MAX_LINES = 600  # "keep modules small (< ~600 lines)": ../shared/STYLE.md, issue 8
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
    ../shared/tools/import_cycles.py (the shared folder beside this checkout)."""
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


# --- labeler/app: one package per tab (labeler/app/tabs/<tab>/: layout.py, callbacks.py). Only the
# app factory (labeler/app/__init__.py) imports a tab; a tab imports the core modules of
# labeler.app and never another tab (a piece two tabs share lives in a core module).
APP = "labeler.app"
TABS = "labeler.app.tabs"


def tab_of(module: str, tabs: str = TABS) -> str | None:
    """The tab package a module belongs to (``labeler.app.tabs.search.region`` -> ``search``),
    None outside the tabs (the ``tabs`` package itself belongs to no tab)."""
    return module[len(tabs) + 1:].split(".")[0] if module.startswith(tabs + ".") else None


def tab_import_violations(graph: dict[str, set[str]], app: str = APP, tabs: str = TABS) -> dict[str, list[str]]:
    """{module: the tab modules it must not import}: a module outside the tabs other than ``app``
    (the factory) that imports one, or a tab module that imports another tab's."""
    out = {}
    for name, deps in graph.items():
        own = tab_of(name, tabs)
        if own is None:
            bad = [] if name == app else [d for d in deps if d == tabs or tab_of(d, tabs) is not None]
        else:
            bad = [d for d in deps if d == tabs or tab_of(d, tabs) not in (None, own)]
        if bad:
            out[name] = sorted(bad)
    return out


def test_the_tab_rule_finds_violations(tmp_path):
    pkg = tmp_path / "pkg"
    files = {
        "__init__.py": "from .tabs import a, b\n",  # the factory: allowed
        "core.py": "import os\nimport pkg.tabs\n",  # the tabs package itself
        "shell.py": "def f():\n    from .tabs.a import layout\n",  # a core module importing a tab
        "tabs/__init__.py": "",
        "tabs/a/__init__.py": "from . import layout, callbacks\n",
        "tabs/a/layout.py": "from ... import core\n",
        "tabs/a/callbacks.py": "from .layout import X\nfrom ..b.callbacks import Y\n",  # another tab
        "tabs/b/__init__.py": "from . import callbacks\n",
        "tabs/b/callbacks.py": "from ...core import Z\nfrom ...tabs.a import layout\n",  # another tab
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    g = import_graph(pkg)
    assert tab_of("pkg.tabs.a.layout", "pkg.tabs") == "a" and tab_of("pkg.tabs", "pkg.tabs") is None
    assert tab_import_violations(g, "pkg", "pkg.tabs") == {
        "pkg.core": ["pkg.tabs"], "pkg.shell": ["pkg.tabs.a.layout"],
        "pkg.tabs.a.callbacks": ["pkg.tabs.b.callbacks"], "pkg.tabs.b.callbacks": ["pkg.tabs.a.layout"]}


def test_only_the_app_factory_imports_a_tab_and_no_tab_imports_another():
    graph = import_graph()
    tabs = sorted({tab_of(m) for m in graph} - {None})
    assert len(tabs) > 3, f"no tab packages found under {TABS}"
    found = tab_import_violations(graph)
    assert not found, (f"tabs imported outside the app factory, or by another tab (move what two tabs "
                       f"share into a core module of {APP}): {found}")
    unused = [t for t in tabs if f"{TABS}.{t}" not in graph[APP]]
    assert not unused, f"tab packages the app factory ({APP}) does not use: {unused}"


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


# --- benchmarks/: scripts, not a package. Each runs as ``python benchmarks/bench_x.py`` (so
# ``benchmarks/`` is first on sys.path) and shares helpers only through ``common.py``.
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
BENCH_SHARED = {"common"}  # the one module the benchmark scripts may import from benchmarks/
# Scripts allowed to edit sys.path for now, with why. A script that stops must leave this list.
SYS_PATH_PENDING: dict[str, str] = {}


def benchmark_graph(folder: Path = BENCHMARKS) -> dict[str, set[str]]:
    """{script stem: stems of the other scripts in ``folder`` it imports}, counting imports
    inside functions and ``importlib.import_module("name")`` / ``__import__("name")``."""
    scripts = {f.stem: f for f in sorted(folder.glob("*.py"))}
    graph = {}
    for name, f in scripts.items():
        deps = set()
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            if isinstance(node, ast.Import):
                deps |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                deps.add(node.module.split(".")[0])
            elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str)
                  and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
                deps.add(node.args[0].value.split(".")[0])
        graph[name] = (deps & set(scripts)) - {name}
    return graph


def sys_path_edits(folder: Path = BENCHMARKS) -> dict[str, list[int]]:
    """{script file name: lines} where a script touches ``sys.path`` (``sys.path.insert``,
    ``from sys import path``, ``site.addsitedir``): a benchmark imports ``labeler`` from the
    installed package and its helpers as ``import common``."""
    out: dict[str, list[int]] = {}
    for f in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            hit = ((isinstance(node, ast.Attribute) and node.attr == "path"
                    and isinstance(node.value, ast.Name) and node.value.id == "sys")
                   or (isinstance(node, ast.ImportFrom) and node.module == "sys"
                       and any(a.name == "path" for a in node.names))
                   or (isinstance(node, ast.Attribute) and node.attr == "addsitedir"))
            if hit:
                out.setdefault(f.name, []).append(node.lineno)
    return out


def test_the_benchmark_checks_find_violations(tmp_path):
    files = {
        "common.py": "import numpy\n",
        "bench_a.py": "import common\ndef f():\n    from bench_b import x\n",
        "bench_b.py": "import sys\nimport bench_a\nsys.path.insert(0, 'x')\n",
        "bench_c.py": "import importlib\nimportlib.import_module('bench_a')\nfrom sys import path\n",
        "bench_d.py": "'''sys.path is only named in this docstring'''\nimport common\nimport sys\nprint(sys.argv)\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    g = benchmark_graph(tmp_path)
    assert g == {"common": set(), "bench_a": {"common", "bench_b"}, "bench_b": {"bench_a"},
                 "bench_c": {"bench_a"}, "bench_d": {"common"}}
    assert cycles(g) == [["bench_a", "bench_b"]]
    assert sys_path_edits(tmp_path) == {"bench_b.py": [3], "bench_c.py": [3]}


def test_no_benchmark_imports_another_benchmark():
    graph = benchmark_graph()
    assert "common" in graph and len(graph) > 5, f"benchmark scripts not found in {BENCHMARKS}"
    wrong = {name: sorted(deps - BENCH_SHARED) for name, deps in graph.items() if deps - BENCH_SHARED}
    assert not wrong, (f"benchmark scripts import other scripts (move the shared helper into "
                       f"benchmarks/common.py): {wrong}")
    assert not graph["common"], f"benchmarks/common.py imports scripts: {sorted(graph['common'])}"


def test_no_import_cycles_between_benchmarks():
    found = cycles(benchmark_graph())
    assert found == [], "import cycles between benchmarks: " + "; ".join(" <-> ".join(c) for c in found)


def test_benchmarks_edit_no_sys_path():
    found = sys_path_edits()
    wrong = {f: lines for f, lines in found.items() if f not in SYS_PATH_PENDING}
    assert not wrong, (f"benchmarks edit sys.path (labeler comes from `pip install -e .`, shared helpers "
                       f"from `import common`): {wrong}")
    healed = [f for f in SYS_PATH_PENDING if f not in found]
    assert not healed, f"no sys.path edit left: remove from SYS_PATH_PENDING: {healed}"
