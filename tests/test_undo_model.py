"""Undo and redo for several annotators against a reference model (labeler.history).

The model is docs/undo.md written as plain Python: every fresh label action writes a label
to each image it labelled; an action is active until its author undoes it (and again once
redone); the label in force for an image is the write of the newest active action that
wrote it. Random interleavings of label, relabel, bulk, undo and redo by three annotators
over a few images must leave the store's labels (with their authors) and its label events
equal to the model's. Two sequences found by hand are kept as fixed examples.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labeler import history, labels
from labeler.store import Store

IMAGES = 4
WHO = ("ana", "bob", "cy")
LABELS = ("a", "b", "c")


# -- the reference model -------------------------------------------------------------------

@dataclass
class Act:
    id: int
    who: str
    kind: str  # 'label', 'undo' or 'redo'
    writes: dict[int, str] = field(default_factory=dict)  # fresh label actions only
    root: int | None = None  # redo: the action it redoes; undo: the action it undid
    undone: bool = False
    redone: bool = False  # undo actions: redone since


class Model:
    """What the store must do, in as few lines as the rules take."""

    def __init__(self):
        self.acts: list[Act] = []
        self.rows: dict[int, tuple[str, str]] = {}  # image -> (label, author of the write in force)
        self.events: list[tuple] = []  # (image, old, new, annotator, source)

    def _new(self, who, kind, **kw) -> Act:
        a = Act(len(self.acts) + 1, who, kind, **kw)
        self.acts.append(a)
        return a

    def in_force(self, image: int) -> Act | None:
        live = [a for a in self.acts if a.kind == "label" and not a.undone and image in a.writes]
        return live[-1] if live else None

    def _put(self, image: int, step: Act, source: str) -> None:
        force = self.in_force(image)
        old = self.rows.get(image, (None,))[0]
        new = None if force is None else force.writes[image]
        self.events.append((image, old, new, step.who, source))
        if force is None:
            self.rows.pop(image, None)
        else:
            self.rows[image] = (new, force.who)

    def label(self, who, images, label, relabel) -> None:
        chosen = [i for i in sorted(set(images))
                  if i not in self.rows or relabel is True or (relabel and i in relabel)]
        if not chosen:
            return
        a = self._new(who, "label", writes={i: label for i in chosen})
        for i in chosen:
            self.events.append((i, self.rows.get(i, (None,))[0], label, who, "manual"))
            self.rows[i] = (label, who)

    def _root(self, a: Act) -> Act:
        return self.acts[a.root - 1] if a.kind == "redo" else a

    def undo(self, who) -> None:
        mine = [a for a in self.acts if a.who == who and a.kind != "undo" and not a.undone]
        if not mine:
            return
        target = mine[-1]
        root = self._root(target)
        before = {i: self.in_force(i) for i in root.writes}
        target.undone = root.undone = True
        step = self._new(who, "undo", root=target.id)
        for i in sorted(root.writes):
            if before[i] is root and not (before[i].writes[i] is None and self.in_force(i) is None):
                self._put(i, step, "undo")

    def redo(self, who) -> None:
        fresh = max((a.id for a in self.acts if a.who == who and a.kind == "label"), default=0)
        undos = [a for a in self.acts if a.who == who and a.kind == "undo" and not a.redone and a.id > fresh]
        if not undos:
            return
        u = undos[-1]
        root = self._root(self.acts[u.root - 1])
        u.redone = True
        root.undone = False
        step = self._new(who, "redo", root=root.id)
        for i in sorted(root.writes):
            if self.in_force(i) is root:
                self._put(i, step, "redo")


# -- the store under test ------------------------------------------------------------------

_TEMPLATE: dict[str, Path] = {}


def _fresh_store(tmp: Path) -> Store:
    """A store with IMAGES catalogued images (copied from a template made once)."""
    if "db" not in _TEMPLATE:
        d = Path(tempfile.mkdtemp(prefix="labeler-undo-model-"))
        s = Store(d / "labeler.db")
        s.add_or_update_images([{"path": f"img{i}.png", "size": 10 + i, "mtime": 1.0, "hash": f"h{i}"}
                                for i in range(IMAGES)])
        s.commit_embedded([{"id": r["id"], "row": n, "width": 4, "height": 4, "top1": 1, "top1_prob": 0.5}
                           for n, r in enumerate(s.pending_images())])
        s.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        s.close()
        _TEMPLATE["db"] = d / "labeler.db"
    shutil.copy(_TEMPLATE["db"], tmp / "labeler.db")
    return Store(tmp / "labeler.db")


def _apply(store: Store, model: Model, step) -> None:
    op, who, *rest = step
    if op == "label":
        images, label, relabel = rest
        ids = [i + 1 for i in images]  # image ids are 1..IMAGES
        rel = relabel if isinstance(relabel, bool) else [i + 1 for i in relabel]
        labels.label_images(store, ids, label, annotator=who, relabel=rel)
        model.label(who, ids, label, relabel if isinstance(relabel, bool) else set(rel))
    elif op == "undo":
        history.undo(store, who)
        model.undo(who)
    else:
        history.redo(store, who)
        model.redo(who)


def _observed(store: Store):
    rows = {r["image_id"]: (r["label"], r["annotator"]) for r in store.label_rows()}
    events = [(e["image_id"], e["old_label"], e["new_label"], e["annotator"], e["source"])
              for e in store.label_events()]
    return rows, events


_image_sets = st.lists(st.integers(0, IMAGES - 1), min_size=1, max_size=IMAGES, unique=True)
_steps = st.one_of(
    st.tuples(st.just("label"), st.sampled_from(WHO), _image_sets, st.sampled_from(LABELS),
              st.one_of(st.booleans(), st.lists(st.integers(0, IMAGES - 1), unique=True))),
    st.tuples(st.sampled_from(["undo", "redo"]), st.sampled_from(WHO)),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_steps, min_size=1, max_size=25))
def test_undo_redo_follow_the_reference_model(steps):
    with tempfile.TemporaryDirectory() as tmp:
        store = _fresh_store(Path(tmp))
        model = Model()
        try:
            for step in steps:
                _apply(store, model, step)
                rows, events = _observed(store)
                assert rows == model.rows, step
                assert events == model.events, step
        finally:
            store.close()


def test_the_model_is_not_trivially_satisfied():
    """The checks above would fail on the old rule (an undo restores the event's old label)."""
    model = Model()
    model.label("ana", [1, 2], "ana-z", False)
    model.label("bob", [2], "defect", True)
    model.undo("ana")
    model.undo("bob")
    assert model.rows == {}  # the old rule gave {2: ('ana-z', 'ana')}


# -- the sequences of issue 20, fixed --------------------------------------------------------

def test_an_undo_after_someone_elses_undo_never_resurrects_a_label(store):
    """ana labels images "ana-z"; bob relabels some; ana undoes; bob undoes: bob's images end
    unlabelled, not back to "ana-z" by ana."""
    ids = [r["id"] for r in store.image_table()]
    labels.label_images(store, ids, "ana-z", annotator="ana")
    bobs = ids[:2]
    labels.label_images(store, bobs, "defect", annotator="bob", relabel=True)
    done = history.undo(store, "ana")
    assert sorted(done.skipped) == bobs and store.labels() == {i: "defect" for i in bobs}
    history.undo(store, "bob")
    assert store.labels() == {}
    assert "ana-z" not in {e["new_label"] for e in store.label_events() if e["source"] == "undo"}


def test_an_undo_after_a_redo_and_someone_elses_label(store):
    """The label_events trace of issue 20: ana-z (ana) → undo (ana) → ana-z (redo, ana) →
    defect (bob) → ana undoes → bob undoes: the image ends unlabelled."""
    i = store.image_table()[0]["id"]
    labels.label_images(store, [i], "ana-z", annotator="ana")
    history.undo(store, "ana")
    history.redo(store, "ana")
    labels.label_images(store, [i], "defect", annotator="bob", relabel=True)
    assert history.undo(store, "ana").skipped == [i]
    assert store.labels() == {i: "defect"}
    history.undo(store, "bob")
    assert store.labels() == {}
    # ... and redo by bob brings back bob's label, by bob
    history.redo(store, "bob")
    assert [(r["label"], r["annotator"]) for r in store.label_rows()] == [("defect", "bob")]


def test_the_same_sequence_through_the_cli(project):
    from labeler.cli import main

    runner = CliRunner()
    p = str(project.root)
    cur = project.store.current_clustering()["id"]
    clusters = np.unique(project.store.assignments()[1])
    big = max((c for c in clusters if c >= 0), key=lambda c: len(project.store.cluster_members(c)))
    members = project.store.cluster_members(int(big))

    def run(*args):
        r = runner.invoke(main, list(args), catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r.output

    out = run("label", "--project", p, "--cluster", str(big), "--clustering", str(cur), "ana-z",
              "--annotator", "ana")
    assert f"Labelled {len(members)} image(s)" in out
    bobs = [str(i) for i in members[:3]]
    out = run("label", "--project", p, "defect", "--annotator", "bob", *sum((["--image", i] for i in bobs), []))
    assert "Nothing labelled" in out and "ana-z 3 by ana" in out and "--relabel" in out
    out = run("label", "--project", p, "defect", "--annotator", "bob", "--relabel",
              *sum((["--image", i] for i in bobs), []))
    assert "replaced 3 earlier label(s) (ana-z 3 by ana)" in out
    run("undo", "--project", p, "--annotator", "ana")
    run("undo", "--project", p, "--annotator", "bob")
    project.store.close()
    from labeler.project import Project

    assert Project(project.root).store.labels() == {}


def test_label_cluster_skips_and_reports_other_annotators_labels(store):
    members = store.cluster_members(0)
    labels.label_images(store, members[:1], "mono", annotator="bob")
    res = labels.label_cluster(store, 0, "poly", annotator="ana")
    assert res.new == members[1:] and [h.image_id for h in res.skipped] == members[:1]
    assert store.labels()[members[0]] == "mono"
    assert "1 already labelled left unchanged (mono 1 by bob)" in res.message()
    d = res.to_dict()
    assert d["skipped_by"] == [{"label": "mono", "annotator": "bob", "images": 1}] and d["new"] == len(members) - 1
    # explicit: the image the annotator saw as 'mono' is relabelled; one that changed since is not
    labels.label_images(store, members[1:2], "other", annotator="bob", relabel=True)
    res = labels.label_cluster(store, 0, "poly", annotator="ana",
                               relabel={members[0]: "mono", members[1]: "poly"})
    assert [h.image_id for h in res.replaced] == [members[0]]
    assert [h.image_id for h in res.skipped] == members[1:]  # changed since seen; not chosen
    assert store.labels()[members[1]] == "other"


@pytest.mark.parametrize("bad", ["a\tb", "cracked\tcell 2"])
def test_a_label_with_a_tab_is_refused(store, bad):
    from labeler.errors import BadInputError

    with pytest.raises(BadInputError, match="TAB"):
        labels.label_images(store, [1], bad)


def test_a_version_2_redo_is_migrated_to_an_active_action(store, tmp_path):
    """Before schema 3 a redo left the action it redid marked undone; the migration makes
    it active again so that later undos see it in force (and an undone redo stays undone)."""
    labels.label_images(store, [1], "a", annotator="ana")
    labels.label_images(store, [2], "b", annotator="ana")
    con = store.con
    with store.transaction():  # what a version-2 labeler left: 2 undone + redone, 3 undone + redo undone
        con.execute("UPDATE actions SET undone_at=1 WHERE id IN (1, 2)")
        con.execute("INSERT INTO actions(id, kind, annotator, at, description, redoes) "
                    "VALUES (3, 'label', 'ana', 2, 'redo: 1', 1)")
        con.execute("INSERT INTO actions(id, kind, annotator, at, description, redoes, undone_at) "
                    "VALUES (4, 'label', 'ana', 3, 'redo: 2', 2, 4)")
        con.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    path = store.path
    store.close()
    again = Store(path)
    undone = {r["id"]: r["undone_at"] for r in again.con.execute("SELECT id, undone_at FROM actions")}
    assert undone[1] is None and undone[2] is not None
    assert again.con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "4"
    again.close()
