"""Backups while annotators keep labelling: the database through SQLite's online backup
API, the arrays under the project lock, each file checked against its checksum. The
backup opens as a project, passes `labeler check`, holds a prefix of the label actions
(each fully in or fully out) and gives the same labels and search results."""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from labeler.backup import backup_project, restore_project
from labeler.check import check_project
from labeler.cli import main
from labeler.errors import BadInputError, CorruptFileError, ProjectError, ProjectLockedError
from labeler.labels import label_images
from labeler.project import Project, project_lock
from labeler.search import search


class Annotator(threading.Thread):
    """Labels 4 images per action, relabelling, until stopped; logs each action it got
    acknowledged: (action id, image ids, label)."""

    def __init__(self, project_dir, ids, name="ana"):
        super().__init__(daemon=True)
        self.project_dir, self.ids, self.name = project_dir, ids, name
        self.log: list[tuple[int, list[int], str]] = []
        self.stop = threading.Event()
        self.error = None

    def run(self):
        p = Project(self.project_dir)  # its own connection, as a dashboard worker has
        try:
            i = 0
            while not self.stop.is_set():
                batch = [self.ids[(4 * i + j) % len(self.ids)] for j in range(4)]
                r = label_images(p, batch, f"l{i}", annotator=self.name, relabel=True)
                self.log.append((r.action_id, batch, f"l{i}"))
                i += 1
        except Exception as e:  # pragma: no cover - reported by the test
            self.error = e
        finally:
            p.store.close()


def _assert_prefix(backup_dir, log):
    """The backup holds exactly the first k acknowledged actions, each whole."""
    con = sqlite3.connect(backup_dir / "labeler.db")
    try:
        actions = [r[0] for r in con.execute("SELECT id FROM actions ORDER BY id")]
        events = dict(con.execute("SELECT action_id, COUNT(*) FROM label_events GROUP BY action_id"))
        labels = dict(con.execute("SELECT image_id, label FROM labels"))
    finally:
        con.close()
    logged = [a for a, _, _ in log]
    k = len(actions)
    assert actions == logged[:k], "the backup's actions are not a prefix of the acknowledged ones"
    for a, batch, _ in log[:k]:
        assert events.get(a) == len(batch), f"action {a} is only partly in the backup"
    want = {}
    for _, batch, label in log[:k]:
        want.update(dict.fromkeys(batch, label))
    assert labels == want
    return k


def test_backups_taken_while_an_annotator_labels_hold_a_prefix_of_whole_actions(project, tmp_path):
    ids = [int(i) for i in project.store.row_image_ids()]
    ann = Annotator(project.root, ids)
    ann.start()
    try:
        while len(ann.log) < 5:
            time.sleep(0.01)
        kept, during = [], 0
        for n in range(4):
            before = len(ann.log)
            # a slow copy (one pause per file) so that labelling goes on while it runs
            rep = backup_project(project.root, tmp_path / f"b{n}", say=lambda m: time.sleep(0.002))
            during += len(ann.log) - before
            kept.append(rep)
    finally:
        ann.stop.set()
        ann.join(30)
    assert ann.error is None
    assert during > 0, "no label was written while the backups ran"
    counts = []
    for n, rep in enumerate(kept):
        dest = tmp_path / f"b{n}"
        assert rep.dest == dest.resolve() and rep.files > 80  # thumbnails, arrays, models
        assert check_project(dest) == []
        counts.append(_assert_prefix(dest, ann.log))
        assert counts[-1] == rep.actions
    assert counts == sorted(counts) and counts[-1] > counts[0]
    # every acknowledged label is in the source (nothing lost while the backups ran)
    assert _assert_prefix(project.root, ann.log) == len(ann.log)
    print(f"\n{len(kept)} backups while labelling: {during} actions written during them, "
          f"backups hold {counts} of {len(ann.log)} acknowledged actions, 0 partial, 0 lost")


def test_a_backup_opens_as_a_project_and_restores_with_the_same_labels_and_search(project, tmp_path):
    ids = [int(i) for i in project.store.row_image_ids()[:6]]
    label_images(project, ids[:3], "cracked", annotator="ana")
    label_images(project, ids[3:], "clean", annotator="bob")
    r = CliRunner().invoke(main, ["backup", str(tmp_path / "bk"), "--project", str(project.root), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "backed up 6 labelled image(s), 2 action(s)" in r.output
    r = CliRunner().invoke(main, ["restore", str(tmp_path / "bk"), str(tmp_path / "restored")])
    assert r.exit_code == 0, r.output
    want = search(project, ids[0], k=8)
    for where in ("bk", "restored"):
        p = Project(tmp_path / where)
        assert p.store.labels() == project.store.labels()
        got = search(p, ids[0], k=8)
        assert [n.image_id for n in got.neighbours] == [n.image_id for n in want.neighbours]
        assert [n.label for n in got.neighbours] == [n.label for n in want.neighbours]
        for name in ("embeddings", "pca", "map", "cluster_space"):
            assert np.array_equal(p.load_array(name), project.load_array(name))
        p.store.close()
        assert CliRunner().invoke(main, ["check", "--project", str(tmp_path / where)]).exit_code == 0


def test_a_backup_refuses_a_damaged_source_and_leaves_nothing(project, tmp_path):
    path = project.array_path("pca")
    data = bytearray(path.read_bytes())
    data[-8:] = bytes(8)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="pca.npy"):
        backup_project(project.root, tmp_path / "bk")
    assert not (tmp_path / "bk").exists() and not list(tmp_path.glob(".bk*"))


def test_restore_refuses_a_damaged_backup_and_a_used_folder(project, tmp_path):
    backup_project(project.root, tmp_path / "bk", thumbs=False)
    assert not (tmp_path / "bk" / "thumbs").exists() or not any((tmp_path / "bk" / "thumbs").iterdir())
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(BadInputError, match="not an empty folder"):
        restore_project(tmp_path / "bk", tmp_path / "used")
    with pytest.raises(BadInputError, match="inside the project"):
        backup_project(project.root, project.root / "bk")
    with open(tmp_path / "bk" / "map.npy", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ProjectError, match="map.npy"):
        restore_project(tmp_path / "bk", tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_a_backup_waits_for_no_one_but_refuses_during_an_ingest(project, tmp_path):
    held, release = threading.Event(), threading.Event()

    def ingest_like():
        with project_lock(project.root, "ingest"):
            held.set()
            release.wait(30)

    t = threading.Thread(target=ingest_like)
    t.start()
    try:
        held.wait(30)
        with pytest.raises(ProjectLockedError):
            backup_project(project.root, tmp_path / "bk")
    finally:
        release.set()
        t.join(30)
    assert not (tmp_path / "bk").exists()


def test_a_backup_of_a_project_from_before_the_manifest_records_every_file(project, tmp_path):
    project.store.con.execute("DROP TABLE manifest")
    project.store.close()
    backup_project(project.root, tmp_path / "bk", thumbs=False)
    p = Project(tmp_path / "bk")
    names = {e["name"] for e in p.store.manifest_entries()}
    p.store.close()
    assert {"embeddings.npy", "pca.npy", "map.npy", "cluster_space.npy", "models/pca.joblib"} <= names
    assert check_project(tmp_path / "bk") == []


def test_a_backup_leaves_out_the_rebuildable_caches(project, tmp_path):
    """The fine-tune's prefix-map cache (project/cache/) is rebuilt on demand: not copied."""
    (project.root / "cache").mkdir(exist_ok=True)
    (project.root / "cache" / "prefix-x.npy").write_bytes(b"\0" * 1024)
    backup_project(project.root, tmp_path / "bk", thumbs=False)
    assert not (tmp_path / "bk" / "cache").exists() and (tmp_path / "bk" / "pca.npy").is_file()
