"""Every action that sets or removes labels: label images, label a cluster, accept
suggestions, undo, redo.

The CLI and the dashboard call these functions, never the store, for labels.
Each action is one row of the store's ``actions`` table plus one label event
per image, written in one transaction: it undoes as one, and a refused action
(bad label, unknown image, stale cluster) writes nothing.

Functions take a :class:`~labeler.project.Project` or a bare
:class:`~labeler.store.Store` (anything with a ``store`` attribute, or the store).

None of them takes the project lock (:func:`labeler.project.project_lock`): each
action is one SQLite ``BEGIN IMMEDIATE`` transaction, which already serialises
writers across processes (the dashboard's workers, the CLI), and labelling must
go on while an ingest or re-clustering holds the lock for minutes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from .errors import BadInputError, StaleStateError, StoreError
from .store import Store

#: Longest label accepted, in characters: a class name, not a document.
MAX_LABEL_LENGTH = 200
#: Longest annotator name accepted, in characters.
MAX_ANNOTATOR_LENGTH = 100


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
    skipped : list of int
        Image ids left as they are because a later action of someone else changed them.
    note : str
        What the annotator should know about ``skipped`` ('' when nothing to say).
    """

    action_id: int
    kind: str
    description: str
    new_action_id: int
    skipped: list[int] = field(default_factory=list)
    note: str = ""

    def __getitem__(self, key: str):  # dict-style access, as the store's old undo returned
        return {"id": self.action_id, "kind": self.kind, "description": self.description}[key]


def _store(target) -> Store:
    return getattr(target, "store", target)


def clean_label(label) -> str:
    """The label as stored: stripped, one line, 1..MAX_LABEL_LENGTH characters.

    Raises
    ------
    BadInputError
        Empty, more than one line, or longer than :data:`MAX_LABEL_LENGTH`.
    """
    text = "" if label is None else str(label).strip()
    if not text:
        raise BadInputError("the label is empty: type a label first")
    if any(c in text for c in "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029"):
        raise BadInputError("a label must be a single line")
    if len(text) > MAX_LABEL_LENGTH:
        raise BadInputError(f"a label has at most {MAX_LABEL_LENGTH} characters (got {len(text)})")
    return text


def clean_annotator(name) -> str:
    """The annotator's name as stored: stripped, one line, at most MAX_ANNOTATOR_LENGTH
    characters; 'anonymous' when empty.

    Raises
    ------
    BadInputError
        More than one line or longer than :data:`MAX_ANNOTATOR_LENGTH`.
    """
    text = "" if name is None else str(name).strip()
    if not text:
        return "anonymous"
    if any(c in text for c in "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029"):
        raise BadInputError("an annotator name must be a single line")
    if len(text) > MAX_ANNOTATOR_LENGTH:
        raise BadInputError(f"an annotator name has at most {MAX_ANNOTATOR_LENGTH} characters (got {len(text)})")
    return text


def label_images(target, image_ids: Sequence[int], label: str, *, annotator: str | None = None,
                 source: str = "manual", description: str | None = None) -> int:
    """Give ``label`` to every image in one undoable action.

    Parameters
    ----------
    target : Project or Store
    image_ids : sequence of int
        Image ids (duplicates are ignored).
    label : str
        Checked by :func:`clean_label`.
    annotator : str or None
        Checked by :func:`clean_annotator`.
    source : str
        One of :data:`labeler.store.LABEL_SOURCES` ('manual', 'cluster', 'search', ...).

    Returns
    -------
    int
        The action id.

    Raises
    ------
    BadInputError
        A bad label or annotator name.
    StoreError
        No image, an unknown image id or an unknown source.
    """
    text = clean_label(label)
    who = clean_annotator(annotator)
    ids = sorted({int(i) for i in image_ids})
    return _store(target).set_labels(
        ids, text, source=source, annotator=who,
        description=description or f"label {len(ids)} image(s) {text!r}")


def remove_labels(target, image_ids: Sequence[int], *, annotator: str | None = None) -> int:
    """Remove the labels of the given images in one undoable action; returns its id.

    Raises
    ------
    BadInputError
        A bad annotator name.
    StoreError
        No image or an unknown image id.
    """
    who = clean_annotator(annotator)
    ids = sorted({int(i) for i in image_ids})
    return _store(target).set_labels(ids, None, source="manual", annotator=who,
                                     description=f"remove the labels of {len(ids)} image(s)")


def label_cluster(target, cluster: int, label: str, *, annotator: str | None = None,
                  exclude: Sequence[int] = (), clustering_id: int | None = None,
                  seen: Sequence[int] | None = None) -> tuple[int, list[int]]:
    """Label every image of ``cluster`` except ``exclude`` in one action.

    Parameters
    ----------
    cluster : int
        Cluster id in the clustering ``clustering_id`` (-1 = noise).
    clustering_id : int or None
        The clustering the caller looked at; None = the current one.
    seen : sequence of int or None
        The cluster's members as the caller saw them (the dashboard sends them).

    Returns
    -------
    (int, list of int)
        The action id and the labelled image ids.

    Raises
    ------
    StaleStateError
        ``clustering_id`` is no longer the current clustering, or the cluster's
        members differ from ``seen``: nothing is written.
    BadInputError
        A bad label or annotator name.
    StoreError
        An unknown cluster, or every member excluded.
    """
    text = clean_label(label)
    who = clean_annotator(annotator)
    store = _store(target)
    with store.transaction():  # the check and the write see the same clustering
        current = store.current_clustering()
        if current is None:
            raise StoreError("the project has no clustering yet: run `labeler ingest` first")
        if clustering_id is not None and int(clustering_id) != int(current["id"]):
            raise StaleStateError(
                f"the clustering changed (you saw {clustering_id}, it is now {current['id']}): "
                "reload and check the cluster before labelling it; nothing was labelled")
        members = store.cluster_members(cluster, current["id"])
        if seen is not None and set(int(i) for i in seen) != set(members):
            raise StaleStateError(
                f"cluster {cluster} changed since you opened it: reload and check it "
                "before labelling; nothing was labelled")
        skip = {int(i) for i in exclude}
        ids = [i for i in members if i not in skip]
        if not ids:
            raise StoreError(f"every image of cluster {cluster} was excluded: nothing to label")
        action = store.set_labels(ids, text, source="cluster", annotator=who,
                                  description=f"label cluster {cluster} ({len(ids)} images) {text!r}")
    return action, ids


def accept_suggestions(target, image_ids: Sequence[int], labels: Sequence[str],
                       confidences: Sequence[float], threshold: float, *,
                       source: str = "suggestion", annotator: str | None = None) -> tuple[int | None, list[int]]:
    """Accept the suggested labels whose confidence is at least ``threshold``, as one action.

    Each accepted image's label event records ``source`` and its confidence, so an
    audit can tell a suggestion accepted in bulk from a label a person chose.

    Parameters
    ----------
    image_ids : sequence of int, shape (n,)
    labels : sequence of str, shape (n,)
        The suggested label of each image.
    confidences : sequence of float, shape (n,)
        Confidence of each suggestion in [0, 1] (e.g. the neighbours' vote share).
    threshold : float
        Suggestions below it are left out.
    source : str
        Recorded as the label's and the events' source (default 'suggestion').

    Returns
    -------
    (int or None, list of int)
        The action id (None when no suggestion reaches the threshold) and the
        labelled image ids.

    Raises
    ------
    BadInputError
        Lengths differ, a confidence outside [0, 1], a bad label or annotator name.
    StoreError
        An unknown image id or an unknown source.
    """
    if not (len(image_ids) == len(labels) == len(confidences)):
        raise BadInputError("image_ids, labels and confidences must have the same length")
    who = clean_annotator(annotator)
    chosen: dict[int, tuple[str, float]] = {}
    for i, lab, conf in zip(image_ids, labels, confidences):
        conf = float(conf)
        if not 0.0 <= conf <= 1.0:
            raise BadInputError(f"confidence {conf} of image {i} is outside [0, 1]")
        if conf >= threshold:
            chosen[int(i)] = (clean_label(lab), conf)
    if not chosen:
        return None, []
    store = _store(target)
    now = time.time()
    with store.transaction():
        store.check_images_exist(list(chosen))
        action = store.add_action(
            "label", who, f"accept {len(chosen)} suggestion(s) at confidence >= {threshold:g}", at=now)
        store.write_labels(action, [{"image_id": i, "label": lab, "source": source, "confidence": c}
                                    for i, (lab, c) in sorted(chosen.items())], who, now)
    return action, sorted(chosen)


@contextmanager
def _history_step(target, annotator: str | None):
    """(annotator, store, time) inside one write transaction: an undo or redo finds its
    action, checks and writes atomically. Raises BadInputError for a bad annotator name."""
    who = clean_annotator(annotator)
    store = _store(target)
    with store.transaction():
        yield who, store, time.time()


def undo(target, annotator: str | None = None) -> Undone | None:
    """Undo ``annotator``'s newest action not yet undone (a bulk action undoes as one).

    Only the annotator's own actions are undone, never someone else's. A label
    action gives each image back its previous label (with that label's author and
    source), except images a later action of someone else changed: those keep
    their current label and are listed in ``Undone.skipped``. A cluster edit makes
    the previous clustering current again (if someone else's edit came later, it
    stays current and ``Undone.note`` says so). The undo is itself an action,
    logged with events of source 'undo'.

    Returns
    -------
    Undone or None
        None when the annotator has nothing to undo.

    Raises
    ------
    BadInputError
        A bad annotator name.
    """
    with _history_step(target, annotator) as (who, store, now):
        act = store.newest_undoable_action(who)
        if act is None:
            return None
        store.mark_action_undone(act["id"], now)
        undo_id = store.add_action("undo", who, f"undo: {act['description']}", at=now, undoes=act["id"])
        if act["kind"] == "cluster":
            return _undo_cluster_edit(store, act, undo_id)
        events = store.action_events(act["id"])
        skipped = _not_own(store, [ev["image_id"] for ev in events],
                           max((ev["id"] for ev in events), default=0), who, act["id"])
        changes = []
        for ev in events:
            if ev["image_id"] in skipped:
                continue
            change = {"image_id": ev["image_id"], "label": ev["old_label"],
                      "source": ev["old_source"] or "manual", "event_source": "undo"}
            if ev["old_label"] is not None:
                # The previous label's own author, action and time come back too.
                prev = store.label_event_before(ev["image_id"], ev["old_label"], ev["id"])
                if prev is not None:
                    change.update(label_annotator=prev["annotator"], label_action_id=prev["action_id"],
                                  labelled_at=prev["at"])
            changes.append(change)
        store.write_labels(undo_id, changes, who, now)
    return Undone(int(act["id"]), act["kind"], act["description"], int(undo_id), skipped,
                  _skipped_note(skipped, "restored"))


def _not_own(store: Store, image_ids: list[int], after_event: int, who: str, action_id) -> list[int]:
    """Images someone else labelled after ``after_event`` (unless their label is back
    to the one ``action_id`` gave, e.g. the other annotator undid their change)."""
    touched = store.images_touched_by_others(image_ids, after_event, who)
    if action_id is not None and touched:
        rows = store.current_label_rows(sorted(touched))
        touched -= {i for i, r in rows.items() if r["action_id"] == action_id}
    return sorted(touched)


def _undo_cluster_edit(store: Store, act, undo_id: int) -> Undone:
    root = act["redoes"] or act["id"]
    current = store.current_clustering()
    store.set_clustering_undone(root, True)
    note = ""
    if current is not None and current.get("action_id") not in (root, act["id"]):
        note = (f"a later clustering ({current['id']}) is current and stays so; "
                "your edit is marked undone")
    return Undone(int(act["id"]), act["kind"], act["description"], int(undo_id), [], note)


def _skipped_note(skipped: list[int], verb: str) -> str:
    if not skipped:
        return ""
    shown = ", ".join(f"#{i}" for i in skipped[:10]) + (" ..." if len(skipped) > 10 else "")
    return (f"{len(skipped)} image(s) not {verb}: someone else changed them since ({shown}); "
            "they keep their current label")


def redo(target, annotator: str | None = None) -> Undone | None:
    """Re-apply the action ``annotator``'s newest undo reverted, unless the annotator
    did a fresh action since (as in every editor).

    Images someone else changed after the undo keep their current label and are
    listed in ``Undone.skipped``.

    Returns
    -------
    Undone or None
        What was re-applied; None when there is nothing to redo.

    Raises
    ------
    BadInputError
        A bad annotator name.
    """
    with _history_step(target, annotator) as (who, store, now):
        u = store.newest_redoable_undo(who)
        if u is None:
            return None
        orig = store.get_action(u["undoes"])
        root = orig["redoes"] or orig["id"]
        store.mark_undo_redone(u["id"], now)
        redo_id = store.add_action(orig["kind"], who, f"redo: {store.get_action(root)['description']}",
                                   at=now, redoes=root)
        skipped: list[int] = []
        if orig["kind"] == "cluster":
            store.set_clustering_undone(root, False)
        else:
            # Only what the undo reverted comes back (it skipped images others had changed),
            # and not where someone else changed the image after the undo.
            undo_events = store.action_events(u["id"])
            reverted = {ev["image_id"] for ev in undo_events}
            events = [ev for ev in store.action_events(root) if ev["image_id"] in reverted]
            after = max((ev["id"] for ev in undo_events), default=0)
            skipped = _not_own(store, [ev["image_id"] for ev in events], after, who, None)
            changes = [{"image_id": ev["image_id"], "label": ev["new_label"], "source": ev["source"],
                        "event_source": "redo", "confidence": ev["confidence"]}
                       for ev in events if ev["image_id"] not in skipped]
            store.write_labels(redo_id, changes, who, now)
    return Undone(int(orig["id"]), orig["kind"], orig["description"], int(redo_id), skipped,
                  _skipped_note(skipped, "re-labelled"))


# -- the label vocabulary ------------------------------------------------------------------

#: difflib ratio at or above which two labels count as close (a typo, a doubled word).
#: 0.8 flags "mono" ~ "mon0" and "monomono" ~ "mono-mono"; "mono" vs "poly" is 0.5.
CLOSE_RATIO = 0.8


def close_labels(label: str, existing: Sequence[str]) -> list[str]:
    """Existing labels ``label`` is easily confused with, closest first.

    Close means equal ignoring case and surrounding space, one containing the other
    (e.g. "monomono" and "mono"), or a :class:`difflib.SequenceMatcher` ratio of at
    least :data:`CLOSE_RATIO` (case-insensitive). An exact match is not "close":
    it is the same label.
    """
    import difflib

    text = str(label).strip()
    key = text.casefold()
    scored = []
    for other in existing:
        if other == text:
            continue
        o = other.casefold()
        ratio = difflib.SequenceMatcher(None, key, o).ratio()
        contains = len(min(key, o, key=len)) >= 3 and (key in o or o in key)
        if o == key or contains or ratio >= CLOSE_RATIO:
            scored.append((o != key, -ratio, other))
    return [other for *_, other in sorted(scored)]


def check_new_label(target, label: str, confirmed: bool = False) -> str:
    """The cleaned label, after checking a new label is not a near-duplicate of an existing one.

    Raises
    ------
    BadInputError
        A bad label.
    NeedsConfirmation
        ``label`` does not exist yet, is close to an existing label and ``confirmed``
        is False: ask the annotator before creating it.
    """
    text = clean_label(label)
    counts = _store(target).label_counts()
    if text in counts or confirmed:
        return text
    near = close_labels(text, list(counts))
    if near:
        raise NeedsConfirmation(text, near)
    return text


class NeedsConfirmation(BadInputError):
    """A new label close to existing ones: the annotator should confirm it first."""

    def __init__(self, label: str, near: list[str]):
        self.label, self.near = label, near
        shown = ", ".join(f"'{n}'" for n in near[:3])
        super().__init__(f"'{label}' would be a new label close to {shown}: "
                         "use the existing one, or confirm to create it")


def _relabel(store: Store, ids: list[int], new: str, who: str, description: str) -> int:
    now = time.time()
    rows = store.current_label_rows(ids)
    action = store.add_action("label", who, description, at=now)
    store.write_labels(action, [{"image_id": i, "label": new, "source": rows[i]["source"],
                                 "event_source": "rename"} for i in ids], who, now)
    return action


def rename_label(target, old: str, new: str, *, annotator: str | None = None) -> tuple[int, int]:
    """Rename label ``old`` to ``new`` on every image that has it, as one undoable action.

    Returns (action id, number of images). Renaming onto an existing label merges them.

    Raises
    ------
    NotFoundError
        No image has the label ``old``.
    BadInputError
        A bad new label or annotator name, or ``new`` equal to ``old``.
    """
    from .errors import NotFoundError

    text = clean_label(new)
    who = clean_annotator(annotator)
    if text == old:
        raise BadInputError(f"'{old}' is already called that")
    store = _store(target)
    with store.transaction():
        ids = store.images_with_label(old)
        if not ids:
            raise NotFoundError(f"no image has the label '{old}' (see `labeler labels`)")
        action = _relabel(store, ids, text, who, f"rename label '{old}' to '{text}' ({len(ids)} images)")
    return action, len(ids)


def merge_labels(target, labels: Sequence[str], into: str, *, annotator: str | None = None) -> tuple[int, int]:
    """Give every image labelled with one of ``labels`` the label ``into``, as one undoable action.

    Returns (action id, number of images changed).

    Raises
    ------
    NotFoundError
        One of ``labels`` is not in use.
    BadInputError
        Fewer than one label to merge, a bad target label or annotator name.
    """
    from .errors import NotFoundError

    text = clean_label(into)
    who = clean_annotator(annotator)
    sources = [str(lab) for lab in dict.fromkeys(labels) if str(lab) != text]
    if not sources:
        raise BadInputError("give at least one label, other than the target, to merge")
    store = _store(target)
    with store.transaction():
        ids: list[int] = []
        for lab in sources:
            found = store.images_with_label(lab)
            if not found:
                raise NotFoundError(f"no image has the label '{lab}' (see `labeler labels`)")
            ids += found
        action = _relabel(store, sorted(ids), text, who,
                          f"merge labels {', '.join(repr(x) for x in sources)} into '{text}' ({len(ids)} images)")
    return action, len(ids)


def label_summary(target) -> list[dict]:
    """Every label in use: dict(label, count, stale, annotators {name: images}), most used first."""
    out: dict[str, dict] = {}
    for r in _store(target).label_usage():
        d = out.setdefault(r["label"], {"label": r["label"], "count": 0, "stale": 0, "annotators": {}})
        d["count"] += r["n"]
        d["stale"] += r["stale"] or 0
        d["annotators"][r["annotator"]] = r["n"]
    return sorted(out.values(), key=lambda d: (-d["count"], d["label"]))


def confirm_stale(target, image_ids: Sequence[int] | None = None) -> int:
    """Confirm the labels of images whose file changed (all stale ones when ``image_ids`` is None).

    Returns how many labels were stale and are now confirmed. Re-labelling an image
    also confirms it.
    """
    store = _store(target)
    ids = store.stale_image_ids() if image_ids is None else [int(i) for i in image_ids]
    return store.clear_stale(ids)
