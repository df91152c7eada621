"""One way to run a write action from a Dash callback.

Every callback that changes the project (label, undo, redo, split, merge, move)
goes through :func:`run`: it calls a plain action function, and

- on success shows the function's message and bumps the version store, so every
  view that depends on labels or clusters re-renders;
- on a :class:`~labeler.errors.LabelerError` (the annotator's mistake, or state
  that changed under them) shows its message and changes nothing on the page;
- on any other exception (a bug) logs the traceback and shows a generic message.

The action functions themselves return their success message (or an
:class:`Outcome` to choose another kind, e.g. 'warn' for "nothing to undo") and
raise ``LabelerError`` for anything the annotator can fix; tests call them
through :func:`attempt`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

from dash import no_update

from ..errors import LabelerError, StaleStateError
from ..labels import NeedsConfirmation
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


def attempt(action: Callable[..., str | Outcome], *args, **kwargs) -> Outcome:
    """Run ``action(*args, **kwargs)`` and turn its result or error into an :class:`Outcome`.

    A :class:`~labeler.errors.StaleStateError` (the page shows an outdated
    clustering: the app's HTTP 409) says so and asks to reload. A
    :class:`~labeler.labels.NeedsConfirmation` (a new label close to existing
    ones) is a warning asking for a second click.
    """
    return _attempt(action, *args, **kwargs)[0]


def _attempt(action, *args, **kwargs) -> tuple[Outcome, str | None]:
    try:
        out = action(*args, **kwargs)
    except NeedsConfirmation as e:
        return Outcome(f"{e}. Click again to create '{e.label}' anyway.", "warn"), e.label
    except StaleStateError as e:
        return Outcome(f"Conflict: {e}", "error"), None  # the app's HTTP 409
    except LabelerError as e:
        return Outcome(str(e), "error"), None
    except Exception:  # a bug: the annotator gets a generic line, the log the traceback
        log.exception("write action %s failed", getattr(action, "__name__", action))
        return Outcome(BUG_MESSAGE, "error"), None
    return (out if isinstance(out, Outcome) else Outcome(str(out), "ok")), None


class Reply(NamedTuple):
    """What a write callback sends back: the message bar's content, the new version
    (``no_update`` when nothing changed), whether the action succeeded, and the
    label awaiting confirmation (None when none)."""

    message: object
    version: object
    ok: bool
    confirm: str | None = None


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
    out, confirm = _attempt(action, *args, **kwargs)
    changed = out.ok and confirm is None
    return Reply(message(out.text, out.kind), (version or 0) + 1 if changed else no_update,
                 out.ok and confirm is None, confirm)
