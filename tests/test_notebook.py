"""The walkthrough notebook executes (on 120 photos, so CI stays fast); its outputs are not kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


@pytest.mark.slow
def test_walkthrough_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # The kernel inherits this process's environment.
    monkeypatch.setenv("LABELER_NOTEBOOK_LIMIT", os.environ.get("LABELER_NOTEBOOK_LIMIT", "120"))
    monkeypatch.setenv("LABELER_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.setenv("LABELER_NOTEBOOK_BACKBONE", "efficientnet-lite0")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "120 images embedded" in text
    assert (tmp_path / "project" / "evaluation" / "evaluation-cell_type.json").is_file()
