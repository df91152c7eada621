"""The project lock (labeler.project.project_lock) as the library takes it: ingest and
re-clustering exclude each other across processes; label writes never wait for them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from labeler import history
from labeler import labels
from labeler.errors import ProjectLockedError
from labeler.pipeline import ingest, recluster
from labeler.project import project_lock

# A second process re-clusters through the library; its ``say`` callback (called inside
# the lock, before clustering) reports and then waits until the test lets it go on.
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from labeler.pipeline import recluster
    from labeler.project import Project

    root, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

    def say(line):
        ready.write_text(line)
        deadline = time.time() + 120
        while not go.exists() and time.time() < deadline:
            time.sleep(0.02)

    p = Project(root)
    print(recluster(p, p.settings(method="kmeans", k=3), say=say))
""")


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the child exited early: {proc.communicate()}")
        if time.time() > deadline:
            raise AssertionError(f"the child never reached {path.name}")
        time.sleep(0.02)


def test_ingest_and_recluster_exclude_each_other_across_processes_but_labels_do_not_wait(
        project, elpv_dir, tmp_path):
    store = project.store
    before = (store.current_clustering()["id"], store.counts(), store.get_meta("maps_built_at"))
    ready, go = tmp_path / "ready", tmp_path / "go"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(project.root), str(ready), str(go)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(ready, child)  # the child's recluster now holds the lock
        assert ready.read_text().startswith("clustering (kmeans)")
        with pytest.raises(ProjectLockedError, match=r"busy: cluster run \(pid \d+\)"):
            ingest(elpv_dir / "images", project.root, progress=False)
        with pytest.raises(ProjectLockedError, match="busy"):
            recluster(project, project.settings(method="kmeans", k=4))
        assert (store.current_clustering()["id"], store.counts(), store.get_meta("maps_built_at")) == before
        # Labelling goes on meanwhile: one SQLite transaction each, no lock.
        ids = store.cluster_members(0)[:3]
        t0 = time.perf_counter()
        labels.label_images(project, ids, "mono", annotator="ana")
        assert time.perf_counter() - t0 < 5.0  # did not wait for the child (it waits up to 120 s)
        assert history.undo(project, "ana") is not None and history.redo(project, "ana") is not None
        go.write_text("go")
        out, err = child.communicate(timeout=120)
    finally:
        go.write_text("go")
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert store.current_clustering()["id"] == int(out.strip()) > before[0]
    assert {i: store.labels()[i] for i in ids} == {i: "mono" for i in ids}
    # Released: this process may re-cluster now.
    assert recluster(project, project.settings(method="kmeans", k=3)) > int(out.strip())


def test_the_lock_is_reentrant_in_its_thread_and_refused_to_another(tmp_path):
    refused = []

    def other():
        try:
            with project_lock(tmp_path, "ingest"):
                pass
        except ProjectLockedError as e:
            refused.append(str(e))

    with project_lock(tmp_path, "ingest"):
        with project_lock(tmp_path, "cluster run"):  # labeler ingest's CLI holds it around pipeline.ingest
            t = threading.Thread(target=other)
            t.start()
            t.join()
        assert len(refused) == 1 and "busy: ingest (pid" in refused[0]
    t = threading.Thread(target=other)  # released: the other thread gets it now
    t.start()
    t.join()
    assert len(refused) == 1
