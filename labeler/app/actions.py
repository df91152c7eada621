"""One way to run a write action from a Dash callback.

Every callback that changes the project (label, undo, redo, split, merge, move)
goes through :func:`run`: it calls a plain action function, and

- on success shows the function's message and bumps the version store, so every
  view that depends on labels or clusters re-renders;
- on a :class:`~labeler.errors.LabelerError` (the annotator's mistake, or state
  that changed under them) shows its message and changes nothing on the page;
- on any other exception (a bug) logs the traceback and shows a generic message.

An action given the ``clustering_id`` the page showed fails with
:class:`~labeler.errors.StaleStateError` once the clustering changed. When the
only change is ``labeler ingest`` placing new photos into the existing clusters
(:func:`placed_since`), :func:`run` does not fail: it picks up the new clustering
(the app reloads its map points), runs the action again against it (the action's
own checks still refuse to label images the annotator never saw) and says so in
the message bar; the version bump then re-renders every view with the new photos.

The action functions themselves return their success message (or an
:class:`Outcome` to choose another kind, e.g. 'warn' for "nothing to undo") and
raise ``LabelerError`` for anything the annotator can fix; tests call them
through :func:`attempt`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

from dash import Input, Output, State, no_update
from dash.exceptions import PreventUpdate

from ..errors import LabelerError, StaleStateError
from ..labels import NeedsConfirmation
from . import ids
from .components import message

log = logging.getLogger("labeler.app")

BUG_MESSAGE = "Something went wrong on the server (it is logged); nothing was changed. Please reload."


class Outcome(NamedTuple):
    """The result of one action: the message and its kind ('ok', 'warn' or 'error')."""

    text: str
    kind: str = "ok"

    @property
    def ok(self) -> bool:
        return self.kind != "error"

    @property
    def changed(self) -> bool:
        """Whether the action wrote anything (see :class:`Unchanged`)."""
        return True


class Unchanged(Outcome):
    """An action that ran but wrote nothing, e.g. "nothing labelled: they already hold a
    label": the page stays where the annotator is instead of moving on (still a 2-tuple
    ``(text, kind)`` like every :class:`Outcome`)."""

    __slots__ = ()

    @property
    def changed(self) -> bool:
        return False


def attempt(action: Callable[..., str | Outcome], *args, **kwargs) -> Outcome:
    """Run ``action(*args, **kwargs)`` and turn its result or error into an :class:`Outcome`.

    A :class:`~labeler.errors.StaleStateError` (the page shows an outdated
    clustering: the app's HTTP 409) says so and asks to reload. A
    :class:`~labeler.labels.NeedsConfirmation` (a new label close to existing
    ones) is a warning asking for a second click.
    """
    return _attempt(action, *args, **kwargs)[0]


def _attempt(action, *args, **kwargs) -> tuple[Outcome, str | None, bool]:
    """(outcome, label awaiting confirmation, whether the page's state was stale)."""
    try:
        out = action(*args, **kwargs)
    except NeedsConfirmation as e:
        return Outcome(f"{e}. Click again to create '{e.label}' anyway.", "warn"), e.label, False
    except StaleStateError as e:
        return Outcome(f"Conflict: {e}", "error"), None, True  # the app's HTTP 409
    except LabelerError as e:
        return Outcome(str(e), "error"), None, False
    except Exception:  # a bug: the annotator gets a generic line, the log the traceback
        log.exception("write action %s failed", getattr(action, "__name__", action))
        return Outcome(BUG_MESSAGE, "error"), None, False
    return (out if isinstance(out, Outcome) else Outcome(str(out), "ok")), None, False


def placed_since(store, seen_id) -> int | None:
    """How many photos ``labeler ingest`` placed into the clusters since clustering
    ``seen_id``, when that is the only change (every clustering from ``seen_id`` to
    the current one is a placement: :func:`labeler.clustering.place_images`);
    None when anything else changed (a re-clustering, a split, an undo) or
    ``seen_id`` is None."""
    if seen_id is None:
        return None
    cur = store.current_clustering()
    placed = 0
    for _ in range(1000):
        if cur is None or "placed" not in (cur.get("params") or {}) or cur.get("parent_id") is None:
            return None
        placed += int(cur["params"]["placed"])
        if int(cur["parent_id"]) == int(seen_id):
            return placed
        cur = store.get_clustering(int(cur["parent_id"]))
    return None


def _after_ingest(action, args, kwargs) -> tuple[Outcome, str | None, bool] | None:
    """Run ``action`` again against the current clustering when the page's clustering
    only lacks photos an ingest placed since (see the module docstring): (outcome,
    label awaiting confirmation, done); None when that is not the case."""
    actx = args[0] if args else None
    store = getattr(actx, "store", None)
    n = placed_since(store, kwargs.get("clustering_id")) if store is not None else None
    if n is None:
        return None
    actx.refresh()
    cur = int(store.current_clustering()["id"])
    news = f"{n:,} new photo(s) were added by `labeler ingest`; the page now shows them"
    out, confirm, stale = _attempt(action, *args, **{**kwargs, "clustering_id": cur})
    if stale:  # the cluster itself gained photos: the annotator looks at them first
        return Outcome(f"{news}, some in this cluster: check it, then do it again; nothing was changed.",
                       "warn"), None, False
    if out.ok and confirm is None:
        return type(out)(f"{out.text} ({news}.)", out.kind), None, True
    return Outcome(f"{news}: {out.text}", out.kind), confirm, False  # e.g. a split preview that lacks them


class Reply(NamedTuple):
    """What a write callback sends back: the message bar's content, the new version
    (``no_update`` when nothing changed), whether the action succeeded, the label
    awaiting confirmation (None when none), and whether it wrote anything (an action that
    ran but found every image already labelled by someone succeeds without writing: the
    version still moves, so the page shows those labels)."""

    message: object
    version: object
    ok: bool
    confirm: str | None = None
    changed: bool = True


def run(action: Callable[..., str | Outcome], *args, version=None, **kwargs) -> Reply:
    """Run a write action for a callback: see the module docstring.

    Parameters
    ----------
    action : callable
        Returns the success message (str) or an :class:`Outcome`; raises
        LabelerError for the annotator's mistakes.
    version : int or None
        The page's current version-store value.
    """
    out, confirm, stale = _attempt(action, *args, **kwargs)
    done, reloaded = out.ok and confirm is None, False
    if stale:
        again = _after_ingest(action, args, kwargs)
        if again is not None:
            (out, confirm, done), reloaded = again, True
    # After an ingest the views re-render (new photos, new clustering) even when the action waits.
    return Reply(message(out.text, out.kind), (version or 0) + 1 if done or reloaded else no_update, done, confirm,
                 out.changed)


#: The first outputs of every write callback: the message bar and the version store
#: (:class:`Reply`'s ``message`` and ``version``).
WRITE_OUTPUTS = (Output(ids.MESSAGE, "children", allow_duplicate=True),
                 Output(ids.VERSION, "data", allow_duplicate=True))


def write_callback(app, *dependencies, outputs=()):
    """``app.callback`` for a write action, the one way to declare one.

    The callback returns the message and the new version (:data:`WRITE_OUTPUTS`), then
    ``outputs``; it is called with the values of ``dependencies`` (its Inputs, then its
    States), then the annotator's name and the page's version, and never on page load.

    Parameters
    ----------
    app : Dash
    *dependencies : Input or State
        What the callback reads, Inputs first.
    outputs : sequence of Output
        What it writes besides the message and the version.
    """
    return app.callback(*WRITE_OUTPUTS, *outputs, *dependencies, State(ids.ANNOTATOR, "data"),
                        State(ids.VERSION, "data"), prevent_initial_call=True)


def write_on_click(app, actx, button: str, action: Callable[..., str | Outcome], *states: State,
                   prepare: Callable[..., tuple[tuple, dict]] | None = None) -> None:
    """Register the usual write callback on ``app``: a click on ``button`` runs
    ``action(actx, *args, annotator, **kwargs)`` through :func:`run` and shows its
    message (and bumps the version on success).

    ``args, kwargs = prepare(*values of states)``; without ``prepare`` the values of
    ``states`` are the arguments. Undo, redo, merge, move, bulk accept and label a
    duplicate group are such callbacks.
    """

    @write_callback(app, Input(button, "n_clicks"), *states)
    def write(n, *values):
        *values, annotator, version = values
        if not n:
            raise PreventUpdate
        args, kwargs = prepare(*values) if prepare else (tuple(values), {})
        r = run(action, actx, *args, annotator, version=version, **kwargs)
        return r.message, r.version
