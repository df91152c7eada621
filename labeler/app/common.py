"""Helpers shared by the callback modules (no Dash app state here)."""

from __future__ import annotations

from dash import ALL, Input, Output, State
from dash import ctx as dash_ctx

from . import ids
from .components import message


def triggered_value():
    """The value of the input that fired the running callback.

    None or 0 when the callback ran because components were (re-)rendered rather
    than clicked: pattern-matching inputs fire when new items appear.
    """
    t = dash_ctx.triggered
    return t[0]["value"] if t else None


def authenticated_user() -> str | None:
    """The user HTTP basic auth authenticated for the running request (None without auth)."""
    from flask import g, has_request_context

    return g.get("labeler_user") if has_request_context() else None


def annotator_name(stored) -> str:
    """Who acts: the authenticated user when auth is on (the browser cannot claim
    another name), else the name typed in this browser ('anonymous' when none)."""
    user = authenticated_user()
    if user:
        return user
    return (str(stored).strip() if stored else "") or "anonymous"


def update_exclusions(excluded, visible_ids, ticked_values) -> list[int]:
    """Excluded ids after the tick boxes of the visible grid page changed.

    Parameters
    ----------
    excluded : list of int
        Ids excluded so far (on any page).
    visible_ids : list of int
        Ids whose tick box is on the page.
    ticked_values : list of list
        The value of each visible tick box ([id] when ticked, [] when not).
    """
    visible = {int(i) for i in visible_ids}
    out = {int(i) for i in (excluded or []) if int(i) not in visible}
    out |= {int(i) for i, v in zip(visible_ids, ticked_values) if not v}
    return sorted(out)


def result(text: str, kind: str = "ok"):
    """The message component for the page's message bar."""
    return message(text, kind)


def track_ticks(app, grid: str, store: str, note: tuple[str, object] | None = None) -> None:
    """Register the callback that keeps ``store`` (the ids unticked in ``grid``, on any
    page) in step with the tick boxes of the grid's visible page
    (:func:`update_exclusions`). ``note``: (component id, function of the excluded
    ids) for a line that lists them."""
    outputs = [Output(store, "data", allow_duplicate=True)] + ([Output(note[0], "children")] if note else [])

    @app.callback(
        *outputs,
        Input({"type": ids.THUMB_CHECK, "grid": grid, "id": ALL}, "value"),
        State({"type": ids.THUMB_CHECK, "grid": grid, "id": ALL}, "id"),
        State(store, "data"),
        prevent_initial_call=True,
    )
    def track(values, comp_ids, excluded):
        out = update_exclusions(excluded, [c["id"] for c in comp_ids], values)
        return (out, note[1](out)) if note else out
