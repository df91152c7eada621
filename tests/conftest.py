"""Shared fixtures: a small real project built from ELPV photos with the offline backbone."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Keep CPU tests quiet and deterministic on the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Exported ONNX models go to a cache of the tests' own, never the user's (keyed by weights hash,
# so reusing it across runs is safe and saves the export).
os.environ.setdefault("LABELER_CACHE", os.path.join(tempfile.gettempdir(), f"labeler-test-cache-{os.getuid()}"))


@pytest.fixture(scope="session")
def elpv_dir(tmp_path_factory) -> Path:
    """80 real ELPV photos under <tmp>/elpv/images plus truth.csv."""
    from labeler.demo import prepare_elpv

    dest = tmp_path_factory.mktemp("elpv")
    prepare_elpv(dest, limit=80)
    return dest


@pytest.fixture(scope="session")
def built_project(elpv_dir, tmp_path_factory) -> Path:
    """A project ingested from the 80 ELPV photos (efficientnet-lite0). Read-only use:
    tests that write copy it with the ``project`` fixture."""
    from labeler.config import Settings
    from labeler.pipeline import ingest

    root = tmp_path_factory.mktemp("proj") / "elpv"
    s = Settings(backbone="efficientnet-lite0", pca_components=32, min_cluster_size=5, min_samples=3,
                 batch_size=16, num_workers=0)
    ingest(elpv_dir / "images", root, s, progress=False)
    return root


def writable_copy(src: Path, dest: Path):
    """Copy a project folder to ``dest`` and yield it open; closes its store after (fixtures)."""
    import shutil

    from labeler.project import Project

    shutil.copytree(src, dest)
    p = Project(dest)
    yield p
    p.store.close()


@pytest.fixture()
def project(built_project, tmp_path):
    """A writable copy of the built project (the database and arrays are copied)."""
    yield from writable_copy(built_project, tmp_path / "project")


@pytest.fixture()
def store(tmp_path):
    """A bare store with 6 embedded images in 2 clusters and 1 noise image (no arrays)."""
    import numpy as np

    from labeler.store import Store

    s = Store(tmp_path / "labeler.db")
    s.add_or_update_images(
        [{"path": f"img{i}.png", "size": 10 + i, "mtime": 1.0, "hash": f"h{i}"} for i in range(6)]
    )
    recs = [{"id": r["id"], "row": n, "width": 4, "height": 4, "top1": 1, "top1_prob": 0.5}
            for n, r in enumerate(s.pending_images())]
    s.commit_embedded(recs)
    ids = s.row_image_ids()
    s.add_clustering("kmeans", {"k": 2}, ids, np.array([0, 0, 0, 1, 1, -1]), None,
                     [{"cluster": 0, "size": 3, "representatives": list(ids[:3])},
                      {"cluster": 1, "size": 2, "representatives": list(ids[3:5])},
                      {"cluster": -1, "size": 1, "representatives": [ids[5]]}])
    yield s
    s.close()


