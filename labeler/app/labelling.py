"""Labelling, shared by every tab: the label actions (a cluster, a list of images, undo,
redo), the 'label these images' and 'N already labelled' callbacks every grid registers,
and the top bar's labelling controls (the annotator's name, progress, undo, redo).

Each write is a plain function (``label_cluster_action`` ...) that calls
:mod:`labeler.labels` and returns a message; the Dash callbacks unpack inputs
and hand the function to :func:`labeler.app.actions.run`, which reports the
outcome and bumps the version store so that the views showing labels re-render.
A core module (not a tab's): the Clusters tab and the keyboard (:mod:`labeler.app.viewer`)
label a cluster with :func:`label_cluster_action`; the Selection, Search and other grids
label with :func:`label_on_submit`.
"""

from __future__ import annotations

from dash import Dash, Input, Output, State, html, no_update
from dash.exceptions import PreventUpdate

from .. import history, labels
from ..errors import BadInputError
from . import ids
from .actions import Outcome, Unchanged, run, write_callback, write_on_click
from .common import annotator_name, authenticated_user, relabel_map
from .panels import progress
from .state import AppContext

# -- plain functions (tested directly, through actions.attempt) ---------------------------


def _checked_label(actx: AppContext, label, confirmed) -> str:
    """The cleaned label; a new label close to existing ones needs ``confirmed`` == it."""
    text = labels.clean_label(label)
    return labels.check_new_label(actx.project, text, confirmed=confirmed is not None and confirmed == text)


def label_cluster_action(actx: AppContext, cluster, label, annotator, excluded=(), *,
                         clustering_id=None, seen=None, confirmed=None, relabel=False) -> str | Outcome:
    """Label a whole cluster but the unticked images; returns the message.

    ``clustering_id`` and ``seen`` (the member ids on the annotator's page) make a
    stale page fail instead of labelling images the annotator never saw.
    ``confirmed``: the new label the annotator already confirmed once.
    ``relabel``: the labelled images the annotator ticked to relabel (see
    :func:`labeler.labels.label_images`); other labelled members are skipped and reported.

    Raises
    ------
    LabelerError
        No cluster open, a bad label, an unknown cluster, a stale page
        (:class:`~labeler.errors.StaleStateError`), or a new label close to an
        existing one (:class:`~labeler.labels.NeedsConfirmation`).
    """
    if cluster is None:
        raise BadInputError("Open a cluster first.")
    text = _checked_label(actx, label, confirmed)
    excluded = [int(i) for i in excluded or []]
    res = labels.label_cluster(actx.project, int(cluster), text, annotator=annotator_name(annotator),
                               exclude=excluded, clustering_id=clustering_id, seen=seen, relabel=relabel)
    if res.action_id is None:
        return Unchanged(res.message(f"image(s) of cluster {cluster}"), "warn")
    msg = res.message(f"image(s) of cluster {cluster}")
    left = [i for i in excluded if i not in set(res.written)]
    if left:
        msg += f" {len(left)} unticked image(s) left as they are."
    return msg


def label_ids_action(actx: AppContext, image_ids, label, annotator, *, source="manual",
                     what="image(s)", confirmed=None, relabel=False) -> str | Outcome:
    """Label the given images in one action; returns the message.

    Raises
    ------
    LabelerError
        No image, a bad label, an unknown image id, or a new label close to an
        existing one that is not ``confirmed`` yet.
    """
    image_ids = [int(i) for i in image_ids or []]
    if not image_ids:
        raise BadInputError(f"No {what} to label.")
    text = _checked_label(actx, label, confirmed)
    res = labels.label_images(actx.project, image_ids, text, source=source, annotator=annotator_name(annotator),
                              description=f"label {len(image_ids)} {what} {text!r}", relabel=relabel)
    if res.action_id is None:
        return Unchanged(res.message(what), "warn")
    return res.message(what)


def undo_action(actx: AppContext, annotator) -> str | Outcome:
    """Undo the newest action (a bulk label or a cluster edit undoes as one)."""
    return _history_message(history.undo(actx.project, annotator_name(annotator)), "undo", "Undone")


def redo_action(actx: AppContext, annotator) -> str | Outcome:
    """Re-apply the action the newest undo reverted."""
    return _history_message(history.redo(actx.project, annotator_name(annotator)), "redo", "Redone")


def _history_message(done, verb: str, past: str) -> str | Outcome:
    """The message of an undo or redo (``done``: what it did, None = nothing)."""
    if done is None:
        return Unchanged(f"Nothing of yours to {verb}.", "warn")
    if done.note:
        return Outcome(f"{past}: {done.description}; {done.note}.", "warn")
    return f"{past}: {done.description}."


def progress_view(actx: AppContext) -> tuple[str, dict, list, list]:
    """(progress text, bar style, per-label count chips, datalist options)."""
    p = progress(actx)
    text = f"{p['labelled']:,} / {p['total']:,} labelled ({p['percent']:.1f}%)"
    chips = [html.Span(f"{lab} {n:,}", className="count-chip") for lab, n in list(p["counts"].items())[:12]]
    if len(p["counts"]) > 12:
        chips.append(html.Span(f"+{len(p['counts']) - 12} more", className="muted"))
    if p["stale"]:
        chips.append(html.Span(f"{p['stale']:,} stale (file changed: check, then `labeler labels confirm`)",
                               className="count-chip stale", title="their file changed since they were labelled"))
    options = [html.Option(value=lab) for lab in p["counts"]]
    return text, {"width": f"{p['percent']:.2f}%"}, chips, options


def labelled_note(actx: AppContext, image_ids, relabel=None) -> str:
    """'50 already labelled (mono 30 by ana, poly 12 by bob): tick to relabel' for the
    labelled images among ``image_ids`` not ticked to relabel ('' when none), and how
    many are ticked to relabel."""
    rows = actx.store.current_label_rows([int(i) for i in image_ids or []])
    rel = relabel_map(relabel)
    held = [labels.Held(i, r["label"], r["annotator"]) for i, r in rows.items() if rel.get(i) != r["label"]]
    chosen = len(rows) - len(held)
    parts = []
    if held:
        parts.append(f"{len(held):,} already labelled ({labels.held_summary(held)}): tick to relabel")
    if chosen:
        parts.append(f"{chosen:,} labelled image(s) ticked: they will be relabelled")
    return " · ".join(parts)


# -- callbacks ----------------------------------------------------------------------------


def register(app: Dash, actx: AppContext) -> None:
    """Register the top bar's labelling callbacks on ``app`` (annotator, progress, undo, redo)."""

    @app.callback(
        Output(ids.NAME_DIALOG, "style"),
        Output(ids.ANNOTATOR_NAME, "children"),
        Input(ids.ANNOTATOR, "data"),
        Input(ids.ANNOTATOR_CHANGE, "n_clicks"),
    )
    def name_dialog(name, change):
        user = authenticated_user()
        if user:  # behind auth the annotator is the logged-in user, not a typed name
            return {"display": "none"}, user
        show = not name or bool(_trigger_id() == ids.ANNOTATOR_CHANGE and change)
        return {"display": "flex" if show else "none"}, name or "—"

    @app.callback(
        Output(ids.ANNOTATOR, "data"),
        Input(ids.NAME_SAVE, "n_clicks"),
        Input(ids.NAME_INPUT, "n_submit"),
        State(ids.NAME_INPUT, "value"),
        prevent_initial_call=True,
    )
    def save_name(_n, _s, value):
        if not (value or "").strip():
            raise PreventUpdate
        try:
            return labels.clean_annotator(value)
        except BadInputError:
            raise PreventUpdate from None

    @app.callback(
        Output(ids.PROGRESS_TEXT, "children"),
        Output(ids.PROGRESS_BAR, "style"),
        Output(ids.LABEL_COUNTS, "children"),
        Output(ids.LABEL_OPTIONS, "children"),
        Input(ids.VERSION, "data"),
    )
    def show_progress(_version):
        return progress_view(actx)

    write_on_click(app, actx, ids.UNDO, undo_action)
    write_on_click(app, actx, ids.REDO, redo_action)


def ticked(image_ids, excluded, relabel=None) -> tuple[list[int], dict]:
    """The ids of a grid's images but the unticked unlabelled ones, and ``relabel``: the
    labelled ones ticked, with the label shown (for :func:`label_on_submit`; labelled
    images not ticked are skipped and reported by the action)."""
    ex = {int(i) for i in excluded or []}
    return [int(i) for i in image_ids or [] if int(i) not in ex], {"relabel": relabel_map(relabel)}


def labelled_note_on(app: Dash, actx: AppContext, grid: ids.TickedGrid, image_ids, content: Input) -> None:
    """Register the callback of ``grid``'s 'N already labelled (...): tick to relabel' line
    (:func:`labelled_note`): ``image_ids(value of content)`` are the grid's images."""

    @app.callback(Output(grid.note, "children"), content, Input(ids.VERSION, "data"), Input(grid.relabel, "data"))
    def show_note(value, _version, rel):
        return labelled_note(actx, image_ids(value), rel)


def label_on_submit(app: Dash, actx: AppContext, button: str, box: str, choose, *states: State,
                    relabel_store: str | None = None, **label_kwargs) -> None:
    """Register a 'label these images' callback on ``app``: the ``button`` (Enter in
    the label ``box`` clicks it: assets/keys.js) labels ``ids`` with the box's label in
    one action (:func:`label_ids_action`), where ``ids, kwargs = choose(*values of
    states)`` (``choose`` raises PreventUpdate when there is nothing to label); a new
    label close to existing ones asks for a second click (the label-confirm store).
    On success the box is cleared and ``relabel_store`` (the grid's ticked labelled
    images) emptied; when nothing was written (every image already labelled) both stay.
    ``label_kwargs`` (``what``, ``source``) go to :func:`label_ids_action`.
    """
    extra = [Output(relabel_store, "data", allow_duplicate=True)] if relabel_store else []

    @write_callback(app, Input(button, "n_clicks"), *states, State(box, "value"), State(ids.LABEL_CONFIRM, "data"),
                    outputs=[Output(ids.LABEL_CONFIRM, "data", allow_duplicate=True),
                             Output(box, "value", allow_duplicate=True), *extra])
    def label_them(n, *values):
        if not n:
            raise PreventUpdate
        *values, label, confirm, annotator, version = values
        chosen, kwargs = choose(*values)
        r = run(label_ids_action, actx, chosen, label, annotator, confirmed=confirm, version=version,
                **{**label_kwargs, **kwargs})
        done = r.ok and r.changed and r.version is not no_update  # nothing written: keep the box for a retick
        out = (r.message, r.version, r.confirm, "" if done else no_update)
        return out + ((({} if done else no_update),) if relabel_store else ())


def _trigger_id():
    from dash import ctx

    return ctx.triggered_id
