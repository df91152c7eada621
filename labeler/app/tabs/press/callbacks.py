"""The Fine-tune tab's callbacks: start the press as a background job, poll its record,
cancel it, and say in the message bar when its feature set became active.

Every worker reads the job's record from the project directory (:mod:`labeler.jobs`),
so a page served by another gunicorn worker than the one that started the press sees
it too, as does a press started with ``labeler finetune --background``. The poll
(:data:`~labeler.app.tabs.press.layout.POLL_MS`) runs only while a press runs; when it
ends with a new active feature set, the version store is bumped, so the suggestions and
the queue re-render on the new vectors (:mod:`labeler.assist.memo` keys them by the
active set).
"""

from __future__ import annotations

from dash import Dash, Input, Output, State, no_update
from dash.exceptions import PreventUpdate

from .... import jobs
from ... import ids
from ...actions import attempt
from ...common import annotator_name
from ...components import message
from ...state import AppContext


# -- plain functions (tested directly) ------------------------------------------------------
def snapshot(actx: AppContext) -> dict | None:
    """The newest press of the project as the page keeps it: ``{id, state, stage, fraction,
    line, cancel, result}``, or None when none ever ran."""
    listed = jobs.list_jobs(actx.project, "press")
    if not listed:
        return None
    j = listed[0]
    return {"id": j.id, "state": j.state, "stage": j.stage, "fraction": round(float(j.fraction), 3),
            "line": j.line(), "cancel": j.cancel_requested, "result": j.result}


def start_press(actx: AppContext, epochs, annotator) -> str:
    """Start the press in the background (raises the one-line LabelerError of a refusal,
    e.g. another press running, naming it)."""
    try:
        n = int(epochs)
    except (TypeError, ValueError):
        n = 30
    job = jobs.start_job(actx.project, "press", {"epochs": max(1, n)}, by=annotator_name(annotator))
    return f"Fine-tune started (job {job.id}); keep labelling, it runs in the background."


def cancel_press(actx: AppContext, seen) -> str:
    """Ask the running press to stop at its next safe point."""
    running = jobs.running_job(actx.project, "press")
    if running is None:
        return "No fine-tune is running."
    jobs.cancel_job(actx.project, running.id)
    return f"Cancelling fine-tune job {running.id}: it stops at its next safe point; nothing changes."


def ended_message(snap: dict) -> tuple[str, str, bool]:
    """(text, kind, whether a new feature set became active) for a press that just ended."""
    if snap["state"] == "finished":
        r = snap.get("result") or {}
        if r.get("active"):
            return (f"Fine-tune finished: feature set {r.get('name')} is now active; suggestions and the "
                    f"label-next queue use it ({r.get('summary', '')}). The map and clusters stay as they were: "
                    f"`labeler cluster --feature-set {r.get('name')}` re-clusters in the learned space.",
                    "ok", True)
        return f"Fine-tune finished: {r.get('summary', '')}.", "ok", False
    if snap["state"] == "cancelled":
        return f"Fine-tune cancelled: {snap['line'].split(': ', 1)[-1]}", "warn", False
    return f"Fine-tune failed: {snap['line'].split(': ', 1)[-1]}", "error", False


def register(app: Dash, actx: AppContext) -> None:
    """Register the Fine-tune tab's callbacks on ``app``."""

    @app.callback(Output(ids.MESSAGE, "children", allow_duplicate=True),
                  Output(ids.PRESS_SEEN, "data", allow_duplicate=True),
                  Output(ids.PRESS_POLL, "disabled", allow_duplicate=True),
                  Input(ids.PRESS_START, "n_clicks"), State(ids.PRESS_EPOCHS, "value"),
                  State(ids.ANNOTATOR, "data"), prevent_initial_call=True)
    def start(n, epochs, annotator):
        if not n:
            raise PreventUpdate
        out = attempt(start_press, actx, epochs, annotator)
        return message(out.text, out.kind), snapshot(actx), False

    @app.callback(Output(ids.MESSAGE, "children", allow_duplicate=True),
                  Input(ids.PRESS_CANCEL, "n_clicks"), State(ids.PRESS_SEEN, "data"), prevent_initial_call=True)
    def cancel(n, seen):
        if not n:
            raise PreventUpdate
        out = attempt(cancel_press, actx, seen)
        return message(out.text, out.kind)

    @app.callback(Output(ids.PRESS_SEEN, "data"), Output(ids.PRESS_POLL, "disabled"),
                  Output(ids.MESSAGE, "children", allow_duplicate=True),
                  Output(ids.VERSION, "data", allow_duplicate=True),
                  Input(ids.PRESS_POLL, "n_intervals"), Input(ids.TABS, "value"),
                  State(ids.PRESS_SEEN, "data"), State(ids.VERSION, "data"), prevent_initial_call=True)
    def poll(_n, _tab, seen, version):
        snap = snapshot(actx)
        running = bool(snap and snap["state"] == "running")
        if snap == seen:
            return no_update, not running, no_update, no_update
        msg, bump = no_update, no_update
        if seen and snap and seen.get("id") == snap["id"] and seen.get("state") == "running" and not running:
            text, kind, activated = ended_message(snap)
            msg = message(text, kind)
            bump = (version or 0) + 1 if activated else no_update  # the views re-render on the new set
        return snap, not running, msg, bump

    @app.callback(Output(ids.PRESS_STATUS, "children"), Output(ids.PRESS_BAR, "value"),
                  Output(ids.PRESS_BAR, "style"), Output(ids.PRESS_START, "disabled"),
                  Output(ids.PRESS_CANCEL, "disabled"),
                  Input(ids.PRESS_SEEN, "data"), Input(ids.TABS, "value"))
    def show(seen, tab):
        if tab != ids.TAB_PRESS:
            raise PreventUpdate
        snap = snapshot(actx)
        if snap is None:
            return "No fine-tune has run on this project yet.", "0", {"width": "100%", "display": "none"}, False, True
        running = snap["state"] == "running"
        style = {"width": "100%", "display": "block" if running else "none"}
        return snap["line"], str(snap["fraction"]), style, running, not running or snap["cancel"]
