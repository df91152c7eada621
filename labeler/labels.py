"""Every action that sets or removes labels: label images, label a cluster, accept
suggestions (undo and redo live in :mod:`labeler.history`).

The CLI and the dashboard call these functions, never the store, for labels.
Each action is one row of the store's ``actions`` table plus one label event
per image written, in one transaction: it undoes as one, and a refused action
(bad label, unknown image, stale cluster) writes nothing.

**A bulk action never replaces a label unasked.** Every action writes only the
images that hold no label yet, unless the caller names the labelled images the
annotator saw and chose to relabel (``relabel``). The others are *skipped* and
reported, by their label and annotator, in the :class:`LabelResult`: a person
who labels a cluster, a selection or search results never overwrites a label
(another annotator's, or an earlier one of their own) without having seen it.

Functions take a :class:`~labeler.project.Project` or a bare
:class:`~labeler.store.Store` (anything with a ``store`` attribute, or the store).

None of them takes the project lock (:func:`labeler.project.project_lock`): each
action is one SQLite ``BEGIN IMMEDIATE`` transaction, which already serialises
writers across processes (the dashboard's workers, the CLI), and labelling must
go on while an ingest or re-clustering holds the lock for minutes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from .errors import BadInputError, StaleStateError, StoreError
from .store import Store

#: Longest label accepted, in characters: a class name, not a document.
MAX_LABEL_LENGTH = 200
#: Longest annotator name accepted, in characters.
MAX_ANNOTATOR_LENGTH = 100
#: Characters a label or annotator name may not hold: line breaks (one line each) and
#: the TAB, which would break the tab-separated columns of ``labeler labels`` and CSVs
#: opened as TSV.
_FORBIDDEN = "\t\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029"

@dataclass(frozen=True)
class Held:
    """A label an image held when an action looked at it."""

    image_id: int
    label: str
    annotator: str


@dataclass
class LabelResult:
    """What one labelling action did.

    Attributes
    ----------
    action_id : int or None
        The action written; None when nothing was written (every image skipped).
    label : str or None
        The label given (None: labels removed).
    new : list of int
        Images that had no label and got ``label``.
    replaced : list of Held
        Labelled images the annotator chose to relabel, with the label they held.
    skipped : list of Held
        Labelled images left as they were (not chosen for relabelling, or their label
        changed since the annotator saw it), with the label they hold.
    kind : str
        'label', 'remove' (labels removed) or 'accept' (suggestions, a label each).
    unchanged : list of int
        Images that already held the label they were to get (only where the action asks
        to count them, e.g. an import).
    """

    action_id: int | None
    label: str | None
    new: list[int] = field(default_factory=list)
    replaced: list[Held] = field(default_factory=list)
    skipped: list[Held] = field(default_factory=list)
    kind: str = "label"
    unchanged: list[int] = field(default_factory=list)

    @property
    def written(self) -> list[int]:
        """Every image id the action wrote, ascending (new and replaced)."""
        return sorted(self.new + [h.image_id for h in self.replaced])

    def message(self, what: str = "image(s)", relabel_hint: str = "tick them to relabel") -> str:
        """One sentence for the annotator: labelled, replaced and skipped, by label and annotator.

        ``relabel_hint`` says how to relabel the skipped ones ('tick them to relabel' in the
        dashboard, 'add --relabel to replace them' in the shell)."""
        if not self.written:
            if not self.skipped:
                return f"Nothing to do: no {what}."
            return (f"Nothing labelled: all {len(self.skipped):,} {what} already hold a label "
                    f"({held_summary(self.skipped)}): {relabel_hint}.")
        verb = {"remove": "Removed the labels of", "accept": "Accepted the suggestions for"}.get(
            self.kind, "Labelled")
        target = f" as '{self.label}'" if self.kind == "label" else ""
        out = f"{verb} {len(self.written):,} {what}{target}"
        if self.replaced:
            out += f"; replaced {len(self.replaced):,} earlier label(s) ({held_summary(self.replaced)})"
        if self.skipped:
            out += (f"; {len(self.skipped):,} already labelled left unchanged "
                    f"({held_summary(self.skipped)}): {relabel_hint}")
        return out + "."

    def to_dict(self) -> dict:
        """JSON-ready: action id, label, counts, and per (label, annotator) counts."""
        def by(rows):
            return [{"label": lab, "annotator": who, "images": n}
                    for (lab, who), n in Counter((h.label, h.annotator) for h in rows).most_common()]
        return {"action_id": self.action_id, "kind": self.kind, "label": self.label,
                "labelled": len(self.written),
                "new": len(self.new), "replaced": len(self.replaced), "skipped": len(self.skipped),
                "replaced_by": by(self.replaced), "skipped_by": by(self.skipped),
                "image_ids": self.written}


def held_summary(rows: Sequence[Held], limit: int = 4) -> str:
    """'mono 30 by ana, poly 12 by bob' (largest first; the rest as '+N more')."""
    counts = Counter((h.label, h.annotator) for h in rows).most_common()
    parts = [f"{lab} {n:,} by {who}" for (lab, who), n in counts[:limit]]
    if len(counts) > limit:
        parts.append(f"+{sum(n for _, n in counts[limit:]):,} more")
    return ", ".join(parts)


def store_of(target) -> Store:
    """The store of ``target``: a :class:`~labeler.project.Project` (its ``.store``) or a
    :class:`~labeler.store.Store` itself (the first argument the label functions take)."""
    return getattr(target, "store", target)


def clean_label(label) -> str:
    """The label as stored: stripped, one line without TABs, 1..MAX_LABEL_LENGTH characters.

    Raises
    ------
    BadInputError
        Empty, more than one line, a TAB, or longer than :data:`MAX_LABEL_LENGTH`.
    """
    text = "" if label is None else str(label).strip()
    if not text:
        raise BadInputError("the label is empty: type a label first")
    if "\t" in text:
        raise BadInputError("a label may not contain a TAB")
    if any(c in text for c in _FORBIDDEN):
        raise BadInputError("a label must be a single line")
    if len(text) > MAX_LABEL_LENGTH:
        raise BadInputError(f"a label has at most {MAX_LABEL_LENGTH} characters (got {len(text)})")
    return text


def clean_annotator(name) -> str:
    """The annotator's name as stored: stripped, one line without TABs, at most
    MAX_ANNOTATOR_LENGTH characters; 'anonymous' when empty.

    Raises
    ------
    BadInputError
        More than one line, a TAB, or longer than :data:`MAX_ANNOTATOR_LENGTH`.
    """
    text = "" if name is None else str(name).strip()
    if not text:
        return "anonymous"
    if any(c in text for c in _FORBIDDEN):
        raise BadInputError("an annotator name must be a single line without TABs")
    if len(text) > MAX_ANNOTATOR_LENGTH:
        raise BadInputError(f"an annotator name has at most {MAX_ANNOTATOR_LENGTH} characters (got {len(text)})")
    return text


def _chosen(relabel, image_id: int, held: str) -> bool:
    """Whether the annotator chose to relabel ``image_id``, which holds ``held`` now."""
    if relabel is True:
        return True
    if relabel is False or relabel is None:
        return False
    if isinstance(relabel, Mapping):
        return image_id in relabel and relabel[image_id] == held
    return image_id in relabel


def _write_bulk(store: Store, ids: Sequence[int], label: str | None, *, who: str, source: str,
                description, relabel, confidences: Mapping[int, float] | None = None,
                labels: Mapping[int, str] | None = None, kind: str = "label") -> LabelResult:
    """:func:`write_action` for one label (or per-image ``labels``) over ``ids``."""
    wanted = {int(i): (labels[i] if labels is not None else label) for i in ids}
    return write_action(store, wanted, who=who, source=source, description=description, relabel=relabel,
                        confidences=confidences, label=label, kind=kind)


def write_action(store: Store, wanted: Mapping[int, str | None], *, who: str, source: str, description,
                 relabel=False, confidences: Mapping[int, float] | None = None,
                 annotators: Mapping[int, str] | None = None, keep_same: bool = False, dry_run: bool = False,
                 label: str | None = None, kind: str = "label") -> LabelResult:
    """The one rule every labelling action writes by, inside the caller's transaction: sort the
    images into new / replaced / skipped (/ unchanged) and write one action.

    Parameters
    ----------
    store : Store
    wanted : mapping {image id: label (None removes it)}
    who : str, the action's author (already cleaned)
    source : str, the label rows' source (one of :data:`labeler.store.LABEL_SOURCES`)
    description : callable(int) -> str, the action's description for n written images
    relabel : bool, collection of int, or mapping {int: str or None}
        Which labelled images to replace (see :func:`label_images`); the rest are skipped.
    confidences : mapping {image id: float} or None, recorded in the label events
    annotators : mapping {image id: str} or None
        Each label's own annotator where it differs from ``who`` (labels imported with theirs).
    keep_same : bool
        An image that already holds its wanted label is left as it is and counted as
        ``unchanged`` instead of being skipped or rewritten.
    dry_run : bool
        Sort, report, write nothing.

    Returns
    -------
    LabelResult
    """
    ids = sorted(int(i) for i in wanted)
    rows = store.current_label_rows(ids)
    new, replaced, skipped, unchanged = [], [], [], []
    for i in ids:
        r = rows.get(i)
        if r is None:
            new.append(i)
        elif keep_same and r["label"] == wanted[i]:
            unchanged.append(i)
        elif _chosen(relabel, i, r["label"]):
            replaced.append(Held(i, r["label"], r["annotator"]))
        else:
            skipped.append(Held(i, r["label"], r["annotator"]))
    res = LabelResult(None, label, new, replaced, skipped, kind, unchanged)
    if not res.written or dry_run:
        return res
    now = time.time()
    res.action_id = store.add_action("label", who, description(len(res.written)), at=now)
    store.write_labels(res.action_id, [
        {"image_id": i, "label": wanted[i], "source": source,
         **({"confidence": confidences[i]} if confidences is not None else {}),
         **({"label_annotator": annotators[i]} if annotators and annotators.get(i) else {})}
        for i in res.written], who, now)
    return res


def label_images(target, image_ids: Sequence[int], label: str, *, annotator: str | None = None,
                 source: str = "manual", description: str | None = None,
                 relabel: bool | Collection[int] | Mapping[int, str | None] = False) -> LabelResult:
    """Give ``label`` to the images in one undoable action; labelled images only if chosen.

    Parameters
    ----------
    target : Project or Store
    image_ids : sequence of int
        Image ids (duplicates are ignored).
    label : str
        Checked by :func:`clean_label` (:func:`remove_labels` removes labels).
    annotator : str or None
        Checked by :func:`clean_annotator`.
    source : str
        One of :data:`labeler.store.LABEL_SOURCES` ('manual', 'cluster', 'search', ...).
    relabel : bool, collection of int, or mapping {int: str or None}
        Which labelled images to replace. False (default): none, only unlabelled images
        are written and the labelled ones are reported as skipped. True: all of them
        (the annotator chose each image, e.g. one image in the large view). A collection:
        those ids (the ones the annotator ticked). A mapping {image id: label the
        annotator saw}: those ids, and only while they still hold that label (a label
        someone changed since the page showed it is skipped).

    Returns
    -------
    LabelResult
        ``action_id`` is None when every image was skipped (nothing written).

    Raises
    ------
    BadInputError
        A bad label or annotator name.
    StoreError
        No image, an unknown image id or an unknown source.
    """
    return _label_or_remove(target, image_ids, clean_label(label), annotator, source, description, relabel)


def _label_or_remove(target, image_ids, text: str | None, annotator, source, description, relabel) -> LabelResult:
    who = clean_annotator(annotator)
    ids = sorted({int(i) for i in image_ids})
    if not ids:
        raise StoreError("no images given to label")
    store = store_of(target)
    if text is None:
        what = lambda n: description or f"remove the labels of {n} image(s)"  # noqa: E731
    else:
        what = lambda n: description or f"label {n} image(s) {text!r}"  # noqa: E731
    with store.transaction():
        store.check_images_exist(ids)
        return _write_bulk(store, ids, text, who=who, source=source, description=what,
                           relabel=True if text is None else relabel,
                           kind="remove" if text is None else "label")


def remove_labels(target, image_ids: Sequence[int], *, annotator: str | None = None) -> LabelResult:
    """Remove the labels of the given images in one undoable action.

    Raises
    ------
    BadInputError
        A bad annotator name.
    StoreError
        No image or an unknown image id.
    """
    return _label_or_remove(target, image_ids, None, annotator, "manual", None, True)


def label_cluster(target, cluster: int, label: str, *, annotator: str | None = None,
                  exclude: Sequence[int] = (), clustering_id: int | None = None,
                  seen: Sequence[int] | None = None,
                  relabel: bool | Collection[int] | Mapping[int, str | None] = False) -> LabelResult:
    """Label the images of ``cluster`` except ``exclude`` in one action; labelled
    members only where ``relabel`` chooses them (see :func:`label_images`).

    Parameters
    ----------
    cluster : int
        Cluster id in the clustering ``clustering_id`` (-1 = noise).
    clustering_id : int or None
        The clustering the caller looked at; None = the current one.
    seen : sequence of int or None
        The cluster's members as the caller saw them (the dashboard sends them).
    relabel : bool, collection of int, or mapping {int: str or None}
        As in :func:`label_images`; default False: labelled members are skipped.

    Returns
    -------
    LabelResult

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
    store = store_of(target)
    with store.transaction():  # the check and the write see the same clustering
        current = store.checked_clustering(
            clustering_id, advice="reload and check the cluster before labelling it; nothing was labelled")
        members = store.cluster_members(cluster, current["id"])
        if seen is not None and set(int(i) for i in seen) != set(members):
            raise StaleStateError(
                f"cluster {cluster} changed since you opened it: reload and check it "
                "before labelling; nothing was labelled")
        skip = {int(i) for i in exclude}
        ids = [i for i in members if i not in skip]
        if not ids:
            raise StoreError(f"every image of cluster {cluster} was excluded: nothing to label")
        return _write_bulk(store, ids, text, who=who, source="cluster", relabel=relabel,
                           description=lambda n: f"label cluster {cluster} ({n} images) {text!r}")


def accept_suggestions(target, image_ids: Sequence[int], labels: Sequence[str],
                       confidences: Sequence[float], threshold: float, *,
                       source: str = "suggestion", annotator: str | None = None,
                       relabel: bool | Collection[int] | Mapping[int, str | None] = False) -> LabelResult:
    """Accept the suggested labels whose confidence is at least ``threshold``, as one action.

    Each accepted image's label event records ``source`` and its confidence, so an
    audit can tell a suggestion accepted in bulk from a label a person chose. An image
    labelled since the suggestion was made is skipped (unless ``relabel`` chooses it).

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
    relabel : bool, collection of int, or mapping {int: str or None}
        As in :func:`label_images`; default False.

    Returns
    -------
    LabelResult
        ``action_id`` None when no suggestion reaches the threshold or every one was skipped;
        ``label`` is None (each image has its own).

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
        return LabelResult(None, None, kind="accept")
    store = store_of(target)
    ids = sorted(chosen)
    with store.transaction():
        store.check_images_exist(ids)
        res = _write_bulk(store, ids, None, who=who, source=source, relabel=relabel,
                          description=lambda n: f"accept {n} suggestion(s) at confidence >= {threshold:g}",
                          confidences={i: c for i, (_, c) in chosen.items()},
                          labels={i: lab for i, (lab, _) in chosen.items()}, kind="accept")
    return res


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
    counts = store_of(target).label_counts()
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
    store = store_of(target)
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
    store = store_of(target)
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
    for r in store_of(target).label_usage():
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
    store = store_of(target)
    ids = store.stale_image_ids() if image_ids is None else [int(i) for i in image_ids]
    return store.clear_stale(ids)
