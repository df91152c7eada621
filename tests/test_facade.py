"""The public façade, ``labeler/__init__``: every name it lists resolves, and it stays lazy."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import labeler

ROOT = Path(__file__).parents[1]

#: The user-facing functions issue 21 found missing from the façade.
USER_FACING = ("export", "suggest", "next_to_label", "find_duplicates", "review_labels")


def test_every_listed_name_resolves_to_the_function_of_its_module():
    assert set(USER_FACING) <= set(labeler.__all__)
    assert set(labeler._LAZY) <= set(labeler.__all__)
    for name in labeler.__all__:
        obj = getattr(labeler, name)
        assert obj is not None and not inspect.ismodule(obj), name
        if name in labeler._LAZY:
            module = labeler._LAZY[name]  # where the façade finds it; it may be defined in a submodule
            assert (obj.__module__ == module or obj.__module__.startswith(module + ".")) and obj.__name__ == name, name


def test_import_labeler_stays_light_and_a_subpackage_never_hides_its_function():
    code = textwrap.dedent("""
        import sys
        import labeler
        heavy = [m for m in ("torch", "dash", "sklearn", "hdbscan", "umap", "pandas") if m in sys.modules]
        print("heavy:", heavy)
        import labeler.export.csv  # binds the package on labeler, but the function wins
        from labeler.export import export_csv
        print(callable(labeler.export), labeler.export.__module__, labeler.search.__module__)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["heavy: []", "True labeler.export labeler.search"]
