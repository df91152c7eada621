"""Disk use by part (``labeler.disk``; ``labeler info``): exact where few files, the
thumbnails estimated from a sample, hard links counted once."""

from __future__ import annotations

import os

import numpy as np

from labeler import disk


def test_thumbnails_are_estimated_from_a_sample_beyond_the_exact_limit(project, monkeypatch):
    thumbs = project.root / "thumbs"
    exact = disk.disk_usage(project)
    n = len(list(thumbs.iterdir()))
    assert exact["estimated"] == [] or n > disk.THUMBS_EXACT
    monkeypatch.setattr(disk, "THUMBS_EXACT", n + 1)  # every file read
    truth = sum(p.stat().st_size for p in thumbs.iterdir())
    assert disk.disk_usage(project)["parts"]["thumbs"] == truth
    monkeypatch.setattr(disk, "THUMBS_EXACT", 10)
    monkeypatch.setattr(disk, "THUMBS_SAMPLE", 20)
    est = disk.disk_usage(project)
    assert est["estimated"] == ["thumbs"] and abs(est["parts"]["thumbs"] - truth) < 0.2 * truth
    assert est["total"] == sum(est["parts"].values())


def test_a_hard_linked_file_is_counted_once_and_every_byte_has_a_part(project):
    before = disk.disk_usage(project)
    (project.root / "maps" / "7").mkdir(parents=True)
    os.link(project.root / "map.npy", project.root / "maps" / "7" / "map.npy")  # as a kept current map
    (project.root / "features").mkdir(exist_ok=True)
    np.save(project.root / "features" / "x.npy", np.zeros((4, 4)))
    after = disk.disk_usage(project)
    assert after["parts"]["maps"] == 0 and after["kept_maps"] == {}
    size = (project.root / "features" / "x.npy").stat().st_size
    assert after["feature_sets"] == {"x": size} and after["total"] == before["total"] + size
