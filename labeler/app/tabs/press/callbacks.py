"""The Fine-tune tab's callbacks: start the press as a background job, poll its record,
cancel it, say in the message bar when its feature set became active, offer to
re-cluster in that set (another job, :func:`labeler.pipeline.recluster`), and list the
stored feature sets to choose the active one (going back after a press).

Every worker reads the jobs' records from the project directory (:mod:`labeler.jobs`),
so a page served by another gunicorn worker than the one that started the press sees
it too, as does a press started with ``labeler finetune --background``. The poll
(:data:`~labeler.app.tabs.press.layout.POLL_MS`) runs only while a job runs; when one
ends with a new active feature set or clustering, the version store is bumped, so the
suggestions and the queue re-render on the new vectors (:mod:`labeler.assist.memo` keys
them by the active set); the clustering poll (:mod:`labeler.app.follow`) reloads the map
after a re-clustering.
"""

from __future__ import annotations

from dash import Dash, Input, Output, State, ctx, no_update
from dash.exceptions import PreventUpdate

from .... import jobs
from ....embedding.feature_sets import (EMBEDDINGS, active_feature_set, describe_feature_set, heldout_text,
                                        list_feature_sets, set_active_feature_set)
from ... import ids
from ...actions import attempt, run, write_callback
from ...common import annotator_name
from ...components import message
from ...state import AppContext


# -- plain functions (tested directly) ------------------------------------------------------
def snapshot(actx: AppContext) -> dict | None:
    """The project's newest job as the page keeps it: ``{id, kind, state, stage, fraction,
    line, cancel, result}``, or None when none ever ran."""
    listed = jobs.list_jobs(actx.project)
    if not listed:
        return None
    j = listed[0]
    return {"id": j.id, "kind": j.kind, "state": j.state, "stage": j.stage,
            "fraction": round(float(j.fraction), 3), "line": j.line(), "cancel": j.cancel_requested,
            "result": j.result}


def start_press(actx: AppContext, epochs, annotator, options=None) -> str:
    """Start the press in the background (raises the one-line LabelerError of a refusal,
    e.g. another job running, naming it). ``options`` (the tick boxes' value, a list):
    ``'quick'`` trains the last block only (``train_from='last'``,
    :data:`labeler.embedding.finetune.TRAIN_FROM`); ``'unlabelled'`` also learns from the
    images nobody labelled (``semi='fixmatch'``, :mod:`labeler.embedding.semi`)."""
    try:
        n = int(epochs)
    except (TypeError, ValueError):
        n = 30
    options = options or []
    params = {"epochs": max(1, n), **({"train_from": "last"} if "quick" in options else {}),
              **({"semi": "fixmatch"} if "unlabelled" in options else {})}
    job = jobs.start_job(actx.project, "press", params, by=annotator_name(annotator))
    return f"Fine-tune started (job {job.id}); keep labelling, it runs in the background."


def start_recluster(actx: AppContext, annotator) -> str:
    """Re-map and re-cluster in the active feature set (a job), the set the suggestions use:
    after going back to the ingest embeddings there is nothing learned to re-cluster on."""
    name = active_feature_set(actx.project)
    if name == EMBEDDINGS:
        return ("The active feature set is the ingest's embeddings, which the clusters came from: "
                "choose a fine-tuned set below first.")
    job = jobs.start_job(actx.project, "recluster", {"feature_set": name}, by=annotator_name(annotator))
    return f"Re-clustering in {name} started (job {job.id}); keep labelling, the map reloads when it is done."


def cancel_job(actx: AppContext) -> str:
    """Ask the running press to stop at its next safe point."""
    running = next((j for j in jobs.list_jobs(actx.project) if j.running), None)
    if running is None:
        return "No fine-tune is running."
    jobs.cancel_job(actx.project, running.id)
    return f"Cancelling fine-tune job {running.id}: it stops at its next safe point; nothing changes."


def ended_message(snap: dict) -> tuple[str, str, bool]:
    """(text, kind, whether the project's vectors or clusters changed) for a job that just ended."""
    what = "Fine-tune" if snap["kind"] == "press" else "Re-clustering"
    r = snap.get("result") or {}
    if snap["state"] == "finished" and snap["kind"] == "recluster":
        return f"Re-clustered: {r.get('summary', '')}.", "ok", True
    if snap["state"] == "finished":
        if r.get("active"):
            acc = heldout_text(r.get("heldout_accuracy"), r.get("heldout_frozen_accuracy"))
            acc = acc and f"; {acc}"
            return (f"Fine-tune finished: feature set {r.get('name')} is now active, suggestions and the label-next "
                    f"queue use it{acc}. The map and clusters stay as they were: 'Re-cluster in the learned "
                    f"space' (Fine-tune tab) re-clusters on it.", "ok", True)
        return f"Fine-tune finished: {r.get('summary', '')}.", "ok", False
    tail = snap["line"].split(": ", 1)[-1]
    return (f"{what} cancelled: {tail}", "warn", False) if snap["state"] == "cancelled" else \
        (f"{what} failed: {tail}", "error", False)


def feature_set_choices(actx: AppContext) -> tuple[list[dict], str]:
    """The radio items of the stored feature sets (``{label, value}``, the ingest embeddings
    first, then by creation) and the active set's name."""
    options = [{"label": f" {name}: {describe_feature_set(info)}", "value": name}
               for name, info in list_feature_sets(actx.project).items()]
    return options, active_feature_set(actx.project)


def use_feature_set_action(actx: AppContext, name, annotator) -> str:
    """Make stored feature set ``name`` the one suggestions and the queue use (every page:
    :mod:`labeler.assist.memo` keys them by the active set). Raises NotFoundError when it
    was deleted meanwhile."""
    set_active_feature_set(actx.project, str(name))
    return f"Suggestions and the label-next queue now use feature set {name}; labels did not change."


def status_view(snap: dict | None, active: str | None = None) -> tuple:
    """(status text, bar value, bar style, start disabled, cancel disabled, re-cluster style).
    The re-clustering is offered after a finished press while its feature set is still the
    ``active`` one (not after going back to another set)."""
    hidden = {"display": "none"}
    if snap is None:
        return "No fine-tune has run on this project yet.", "0", {"width": "100%", **hidden}, False, True, hidden
    running = snap["state"] == "running"
    bar = {"width": "100%", "display": "block" if running else "none"}
    # A re-clustering has no steps to count: the bar runs without a value (indeterminate).
    value = str(snap["fraction"]) if snap["kind"] == "press" else None
    result = snap.get("result") or {}
    offer = (snap["kind"] == "press" and snap["state"] == "finished" and result.get("active")
             and (active is None or result.get("name") == active))
    return (snap["line"], value, bar, running, not running or snap["cancel"] or snap["kind"] != "press",
            {"display": "inline-block"} if offer else hidden)


def register(app: Dash, actx: AppContext) -> None:
    """Register the Fine-tune tab's callbacks on ``app``."""

    @app.callback(Output(ids.MESSAGE, "children", allow_duplicate=True),
                  Output(ids.PRESS_SEEN, "data", allow_duplicate=True),
                  Output(ids.PRESS_POLL, "disabled", allow_duplicate=True),
                  Input(ids.PRESS_START, "n_clicks"), Input(ids.PRESS_RECLUSTER, "n_clicks"),
                  State(ids.PRESS_EPOCHS, "value"), State(ids.PRESS_OPTIONS, "value"), State(ids.ANNOTATOR, "data"),
                  prevent_initial_call=True)
    def start(n_press, n_recluster, epochs, options, annotator):
        if not (n_press or n_recluster):
            raise PreventUpdate
        if ctx.triggered_id == ids.PRESS_RECLUSTER:
            out = attempt(start_recluster, actx, annotator)
        else:
            out = attempt(start_press, actx, epochs, annotator, options)
        return message(out.text, out.kind), snapshot(actx), False

    @app.callback(Output(ids.MESSAGE, "children", allow_duplicate=True),
                  Input(ids.PRESS_CANCEL, "n_clicks"), prevent_initial_call=True)
    def cancel(n):
        if not n:
            raise PreventUpdate
        out = attempt(cancel_job, actx)
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
            text, kind, changed = ended_message(snap)
            msg = message(text, kind)
            bump = (version or 0) + 1 if changed else no_update  # the views re-render on the new set
        return snap, not running, msg, bump

    @app.callback(Output(ids.PRESS_FEATURES, "options"), Output(ids.PRESS_FEATURES, "value"),
                  Input(ids.VERSION, "data"), Input(ids.PRESS_SEEN, "data"), Input(ids.TABS, "value"))
    def show_feature_sets(_version, _seen, tab):
        if tab != ids.TAB_PRESS:
            raise PreventUpdate
        return feature_set_choices(actx)

    @write_callback(app, Input(ids.PRESS_FEATURES, "value"))
    def use_feature_set(name, annotator, version):
        if not name or name == active_feature_set(actx.project):
            raise PreventUpdate  # the list was redrawn, or the chosen set is active already
        r = run(use_feature_set_action, actx, name, annotator, version=version)
        return r.message, r.version

    @app.callback(Output(ids.PRESS_STATUS, "children"), Output(ids.PRESS_BAR, "value"),
                  Output(ids.PRESS_BAR, "style"), Output(ids.PRESS_START, "disabled"),
                  Output(ids.PRESS_CANCEL, "disabled"), Output(ids.PRESS_RECLUSTER, "style"),
                  Input(ids.PRESS_SEEN, "data"), Input(ids.TABS, "value"), Input(ids.VERSION, "data"))
    def show(_seen, tab, _version):
        if tab != ids.TAB_PRESS:
            raise PreventUpdate
        return status_view(snapshot(actx), active_feature_set(actx.project))
