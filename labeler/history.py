"""Undo and redo for several annotators: the model, in one place.

The model (docs/undo.md says it for users):

- Every fresh label action (a label, a bulk label, an accept, a rename ...) *writes* one
  label, or no label, to each of its images. An action is *active* until its author
  undoes it, and active again when its author redoes it.
- The label **in force** for an image is the write of the newest active action that
  wrote the image (by the order the actions were first made); no such action: no label.
- ``undo`` deactivates the author's newest action not yet undone; ``redo`` re-activates
  the action the author's newest undo deactivated, until the author makes a fresh action
  (as in every editor). Each image then gets the label in force for it.

So an undo or redo changes an image only where the undone (redone) action's write is
(becomes) the one in force: a later label by someone else always stays, and no undo can
bring back a label whose author undid it, since an undone action is never in force.
This is *selective undo* in the sense of Berlage (1994), "A selective undo mechanism for
graphical user interfaces based on command objects", ACM TOCHI 1(3), restricted to each
author's own actions.

Undo and redo are themselves actions (kind 'undo' / the original kind with ``redoes``),
logged with a label event of source 'undo' / 'redo' for each image they changed; images
the action did not change because a later write is in force are listed in
:attr:`Undone.skipped`. A cluster edit undoes by hiding the clustering it stored.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from .labels import clean_annotator, store_of
from .store import Store


@dataclass
class Undone:
    """What an undo or redo did.

    Attributes
    ----------
    action_id : int
        The action undone (or, for a redo, the action re-applied).
    kind : str
        'label' or 'cluster'.
    description : str
        The description of that action.
    new_action_id : int
        The undo (or redo) action itself.
    changed : list of int
        Image ids whose label the undo (redo) changed.
    skipped : list of int
        Image ids left as they are because a later action of someone else is in force.
    note : str
        What the annotator should know about ``skipped`` ('' when nothing to say).
    """

    action_id: int
    kind: str
    description: str
    new_action_id: int
    changed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {"action_id": self.action_id, "kind": self.kind, "description": self.description,
                "new_action_id": self.new_action_id, "changed": len(self.changed),
                "skipped": len(self.skipped), "note": self.note}


@contextmanager
def _history_step(target, annotator: str | None):
    """(annotator, store, time) inside one write transaction: an undo or redo finds its
    action, checks and writes atomically. Raises BadInputError for a bad annotator name."""
    who = clean_annotator(annotator)
    store = store_of(target)
    with store.transaction():
        yield who, store, time.time()


def _root_and_force(store: Store, act) -> tuple[int, list[int], dict]:
    """(the fresh action ``act`` is or redoes, the images it wrote, their writes in force now)."""
    root = int(act["redoes"] or act["id"])
    ids = [] if act["kind"] == "cluster" else sorted({int(ev["image_id"]) for ev in store.action_events(root)})
    return root, ids, store.labels_in_force(ids)


def _apply(store: Store, root: int, ids: list[int], before: dict, step_id: int, who: str,
           now: float, event_source: str) -> tuple[list[int], list[int]]:
    """After ``root`` was (de)activated: give each of its images the label now in force
    where ``root``'s write was in force before (undo) or is now (redo).

    Returns (changed, skipped) image ids; an image whose label neither was nor becomes
    ``root``'s write is skipped (a later write of someone else is in force)."""
    after = store.labels_in_force(ids)
    changes, changed, skipped = [], [], []
    for i in ids:
        probe = before.get(i) if event_source == "undo" else after.get(i)
        if probe is None or int(probe["action_id"]) != root:
            skipped.append(i)
            continue
        old, new = before.get(i), after.get(i)
        if (old is None or old["label"] is None) and (new is None or new["label"] is None):
            continue  # no label before, none after
        changes.append(_change(i, new, event_source))
        changed.append(i)
    store.write_labels(step_id, changes, who, now)
    return changed, skipped


def _change(image_id: int, force, event_source: str) -> dict:
    """The label-row change that puts the write ``force`` (a label event row, or None) in force."""
    if force is None or force["label"] is None:
        return {"image_id": image_id, "label": None, "source": "manual", "event_source": event_source}
    return {"image_id": image_id, "label": force["label"], "source": force["source"],
            "event_source": event_source, "label_annotator": force["annotator"],
            "label_action_id": int(force["action_id"]), "labelled_at": force["at"],
            "confidence": force["confidence"]}


def undo(target, annotator: str | None = None) -> Undone | None:
    """Undo ``annotator``'s newest action not yet undone (a bulk action undoes as one).

    Only the annotator's own actions are undone, never someone else's. Each image the
    action wrote gets the label in force once the action is removed from its history
    (the module docstring states the model): where the action's write was in force,
    the image returns to the newest earlier write of an active action (whoever made it)
    or to no label; where a later write of someone else is in force, it keeps it and is
    listed in ``Undone.skipped``. A cluster edit makes the previous clustering current
    again (if someone else's edit came later, it stays current and ``Undone.note`` says so).

    Returns
    -------
    Undone or None
        None when the annotator has nothing to undo.

    Raises
    ------
    BadInputError
        A bad annotator name.
    """
    return _switch(target, annotator, on=False)


def redo(target, annotator: str | None = None) -> Undone | None:
    """Re-apply the action ``annotator``'s newest undo reverted, unless the annotator
    made a fresh action since (as in every editor).

    The action becomes active again at its original place in each image's history:
    images where a later write of someone else is in force keep it and are listed in
    ``Undone.skipped``.

    Returns
    -------
    Undone or None
        What was re-applied; None when there is nothing to redo.

    Raises
    ------
    BadInputError
        A bad annotator name.
    """
    return _switch(target, annotator, on=True)


def _switch(target, annotator: str | None, *, on: bool) -> Undone | None:
    """Switch one of ``annotator``'s actions off (``on=False``: undo their newest action not
    yet undone) or back on (``on=True``: redo the action their newest redoable undo switched
    off), then give each image it wrote the label now in force: the one body of
    :func:`undo` and :func:`redo`. None when there is nothing to switch."""
    with _history_step(target, annotator) as (who, store, now):
        if on:
            reverted = store.newest_redoable_undo(who)
            act = None if reverted is None else store.get_action(reverted["undoes"])
        else:
            act = store.newest_undoable_action(who)
        if act is None:
            return None
        root, ids, before = _root_and_force(store, act)
        if on:
            store.mark_undo_redone(reverted["id"], now)
            store.mark_action_active(root)
            step_id = store.add_action(act["kind"], who, f"redo: {store.get_action(root)['description']}",
                                       at=now, redoes=root)
        else:
            store.mark_action_undone(act["id"], now)
            store.mark_action_undone(root, now)
            step_id = store.add_action("undo", who, f"undo: {act['description']}", at=now, undoes=act["id"])
        if act["kind"] == "cluster":
            changed, skipped, note = [], [], _switch_clustering(store, act, root, on)
        else:
            changed, skipped = _apply(store, root, ids, before, step_id, who, now, "redo" if on else "undo")
            note = _skipped_note(skipped, "re-labelled" if on else "restored")
    return Undone(int(act["id"]), act["kind"], act["description"], int(step_id), changed, skipped, note)


def _switch_clustering(store: Store, act, root: int, on: bool) -> str:
    """Make the clustering a cluster edit stored current again (redo) or hide it (undo): the
    note says when a later clustering of someone else is current and stays so ('' else)."""
    current = store.current_clustering()
    store.set_clustering_undone(root, not on)
    if on or current is None or current.get("action_id") in (root, act["id"]):
        return ""
    return (f"a later clustering ({current['id']}) is current and stays so; "
            "your edit is marked undone")


def _skipped_note(skipped: list[int], verb: str) -> str:
    if not skipped:
        return ""
    shown = ", ".join(f"#{i}" for i in skipped[:10]) + (" ..." if len(skipped) > 10 else "")
    return (f"{len(skipped)} image(s) not {verb}: a later label by someone else is in force "
            f"({shown}); they keep it")
