"""Labelling: the annotator's name, progress, the Clusters panel, labelling a
cluster or the map selection, and undo.

Each write is a plain function (``label_cluster_action`` ...) that calls
:mod:`labeler.labels` and returns a message; the Dash callbacks unpack inputs
and hand the function to :func:`labeler.app.actions.run`, which reports the
outcome and bumps the version store so that the views showing labels re-render.
"""

from __future__ import annotations

from dash import ALL, Dash, Input, Output, State, html, no_update
from dash.exceptions import PreventUpdate

from .. import history, labels
from ..errors import BadInputError, StoreError
from ..hints import set_hints_shown
from . import ids
from .actions import WRITE_OUTPUTS, Outcome, run, write_callback, write_on_click
from .callbacks_assist import cluster_suggestions, suggestion_text
from .common import (annotator_name, authenticated_user, is_ticked, relabel_map, ticked_grid,
                     track_ticks, triggered_value)
from .components import HINT_TITLE, cluster_card
from .layout import CARDS_PER_PAGE, PER_PAGE
from .state import AppContext
from .panels import cluster_members_ordered, cluster_rows, image_facts, page_of, progress, sort_clusters

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
        return Outcome(res.message(f"image(s) of cluster {cluster}"), "warn")
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
        return Outcome(res.message(what), "warn")
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
        return Outcome(f"Nothing of yours to {verb}.", "warn")
    if done.note:
        return Outcome(f"{past}: {done.description}; {done.note}.", "warn")
    return f"{past}: {done.description}."


def set_hints_action(actx: AppContext, shown: bool) -> str:
    """Show or hide the ImageNet hints (the project setting ``imagenet_hints``)."""
    set_hints_shown(actx.project, shown)
    if shown:
        return (f"ImageNet hints shown where the backbone is confident "
                f"(p ≥ {actx.project.settings().imagenet_hint_min_prob:g}).")
    return "ImageNet hints hidden (project setting imagenet_hints = false)."


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


def cluster_seen(actx: AppContext, cluster) -> dict:
    """What the annotator is shown of a cluster: its clustering and member ids (sent
    back with 'Label cluster', so a re-clustering in between makes it fail)."""
    cid = int(actx.store.current_clustering()["id"])
    try:
        members = actx.store.cluster_members(int(cluster), cid)
    except StoreError:
        members = []
    return {"cluster": int(cluster), "clustering_id": cid, "members": members}


def cluster_detail_view(actx: AppContext, cluster, excluded, page, relabel=None) -> tuple:
    """(title, grid items, 'of N' text, clamped page, shown labels) for the open cluster.

    Labelled images are unticked unless ``relabel`` (the page's relabel store) holds
    them with the label they hold; shown labels: {str(id): label} of the page's
    labelled images (for :func:`~labeler.app.common.update_ticks`)."""
    try:
        members = cluster_members_ordered(actx, int(cluster))
    except StoreError:
        return "This cluster no longer exists (the clustering was edited).", [], "", 1, {}
    row = next((r for r in cluster_rows(actx) if r["cluster"] == int(cluster)), None)
    items, page, n_pages = page_of(members, page, PER_PAGE)
    title = [html.Span("Noise" if int(cluster) < 0 else f"Cluster {cluster}", className="card-title"),
             html.Span(f" {len(members):,} images", className="card-stats")]
    if row is not None:
        title.append(html.Span(f" · {100 * row['share']:.0f}% labelled"
                               + (f" · majority {row['majority']}" if row["majority"] else ""),
                               className="card-stats"))
        if row.get("hint"):
            title.append(html.Div(row["hint"], className="hint", title=HINT_TITLE))
    view, shown = ticked_grid(ids.GRID_CLUSTER, items, image_facts(actx, items), excluded, relabel)
    return title, view, f" of {n_pages} ({len(members):,} images)", page, shown


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


def excluded_note(excluded) -> str:
    ex = [int(i) for i in excluded or []]
    if not ex:
        return ""
    shown = ", ".join(f"#{i}" for i in ex[:20]) + (" ..." if len(ex) > 20 else "")
    return f"{len(ex)} unticked (will stay unlabelled): {shown}"


# -- callbacks ----------------------------------------------------------------------------


def register(app: Dash, actx: AppContext) -> None:
    """Register the labelling callbacks on ``app``."""

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

    @app.callback(
        *WRITE_OUTPUTS,
        Input(ids.HINTS_TOGGLE, "value"),
        State(ids.VERSION, "data"),
        prevent_initial_call=True,
    )
    def toggle_hints(value, version):
        r = run(set_hints_action, actx, bool(value), version=version)
        return r.message, r.version

    @app.callback(
        Output(ids.CLUSTER_LIST, "children"),
        Output(ids.CLUSTER_LIST_PAGES, "children"),
        Input(ids.VERSION, "data"),
        Input(ids.CLUSTER_SORT, "value"),
        Input(ids.CLUSTER_LIST_PAGE, "value"),
    )
    def cluster_list(_version, sort, page):
        rows = sort_clusters(cluster_rows(actx), sort or "size")
        items, page, n_pages = page_of(rows, page, CARDS_PER_PAGE)
        n_real = sum(1 for r in rows if r["cluster"] >= 0)
        noise = " + noise" if n_real < len(rows) else ""
        sug = cluster_suggestions(actx)
        cards = [cluster_card(r, suggestion=suggestion_text(sug.get(r["cluster"]))) for r in items]
        return cards, f" of {n_pages} ({n_real} clusters{noise})"

    @app.callback(
        Output(ids.CLUSTER_OPEN, "data"),
        Output(ids.CLUSTER_EXCLUDED, "data"),
        Output(ids.CLUSTER_RELABEL, "data"),
        Output(ids.CLUSTER_PAGE, "value"),
        Output(ids.SPLIT_CLUSTER, "value"),
        Input({"type": ids.CLUSTER_OPEN_BUTTON, "cluster": ALL}, "n_clicks"),
        Input(ids.CLUSTER_CLOSE, "n_clicks"),
        prevent_initial_call=True,
    )
    def open_cluster(_opens, _close):
        if not triggered_value():
            raise PreventUpdate
        tid = _trigger_id()
        if tid == ids.CLUSTER_CLOSE:
            return None, [], {}, 1, no_update
        return tid["cluster"], [], {}, 1, tid["cluster"] if tid["cluster"] >= 0 else no_update

    @app.callback(
        Output(ids.CLUSTER_DETAIL, "style"),
        Output(ids.CLUSTER_TITLE, "children"),
        Output(ids.CLUSTER_GRID, "children"),
        Output(ids.CLUSTER_PAGES, "children"),
        Output(ids.CLUSTER_SEEN, "data"),
        Output(ids.CLUSTER_SHOWN, "data"),
        Input(ids.CLUSTER_OPEN, "data"),
        Input(ids.VERSION, "data"),
        Input(ids.CLUSTER_PAGE, "value"),
        State(ids.CLUSTER_EXCLUDED, "data"),
        State(ids.CLUSTER_RELABEL, "data"),
    )
    def cluster_detail(cluster, _version, page, excluded, relabel):
        if cluster is None:
            return {"display": "none"}, [], [], "", None, {}
        seen = cluster_seen(actx, cluster)
        title, items, pages, _, shown = cluster_detail_view(actx, cluster, excluded, page, relabel)
        return {"display": "block"}, title, items, pages, seen, shown

    track_ticks(app, ids.GRID_CLUSTER, ids.CLUSTER_EXCLUDED, note=(ids.CLUSTER_EXCLUDED_NOTE, excluded_note),
                relabel=(ids.CLUSTER_RELABEL, ids.CLUSTER_SHOWN))

    labelled_note_on(app, actx, ids.CLUSTER_LABELLED_NOTE, lambda seen: (seen or {}).get("members") or [],
                     Input(ids.CLUSTER_SEEN, "data"), relabel=ids.CLUSTER_RELABEL)

    # Labelling the open cluster (button, Enter) is callbacks_viewer.on_key: it also
    # opens the next cluster with unlabelled images.

    @app.callback(
        Output(ids.SELECTION_TITLE, "children"),
        Output(ids.SELECTION_GRID, "children"),
        Output(ids.SELECTION_PAGES, "children"),
        Output(ids.SELECTION_N_PAGES, "data"),
        Output(ids.SELECTION_SHOWN, "data"),
        Input(ids.SELECTION, "data"),
        Input(ids.VERSION, "data"),
        Input(ids.SELECTION_PAGE, "value"),
        State(ids.SELECTION_EXCLUDED, "data"),
        State(ids.SELECTION_RELABEL, "data"),
    )
    def selection_view(selection, _version, page, excluded, relabel):
        selection = selection or []
        if not selection:
            return "Nothing selected: lasso or box-select points on the map.", [], "", 1, {}
        items, page, n_pages = page_of(selection, page, PER_PAGE)
        held = actx.store.labels_for([int(i) for i in selection])
        ex = {int(i) for i in excluded or []}
        n_in = sum(1 for i in selection if is_ticked(int(i), held.get(int(i)), ex, relabel))
        title = (f"{len(selection):,} images selected on the map ({n_in:,} ticked) · "
                 f"{len(held):,} labelled, {len(selection) - len(held):,} unlabelled")
        view, shown = ticked_grid(ids.GRID_SELECTION, items, image_facts(actx, items), excluded, relabel)
        return title, view, f" of {n_pages}", n_pages, shown

    @app.callback(
        Output(ids.SELECTION_EXCLUDED, "data"),
        Output(ids.SELECTION_RELABEL, "data"),
        Output(ids.SELECTION_PAGE, "value"),
        Input(ids.SELECTION, "data"),
        prevent_initial_call=True,
    )
    def new_selection(_selection):
        return [], {}, 1

    track_ticks(app, ids.GRID_SELECTION, ids.SELECTION_EXCLUDED, relabel=(ids.SELECTION_RELABEL, ids.SELECTION_SHOWN))
    labelled_note_on(app, actx, ids.SELECTION_LABELLED_NOTE, lambda selection: selection or [],
                     Input(ids.SELECTION, "data"), relabel=ids.SELECTION_RELABEL)
    label_on_submit(app, actx, ids.SELECTION_LABEL_BUTTON, ids.SELECTION_LABEL_INPUT, ticked,
                    State(ids.SELECTION, "data"), State(ids.SELECTION_EXCLUDED, "data"),
                    State(ids.SELECTION_RELABEL, "data"), relabel_store=ids.SELECTION_RELABEL,
                    what="selected image(s)")
    write_on_click(app, actx, ids.UNDO, undo_action)
    write_on_click(app, actx, ids.REDO, redo_action)


def ticked(image_ids, excluded, relabel=None) -> tuple[list[int], dict]:
    """The ids of a grid's images but the unticked unlabelled ones, and ``relabel``: the
    labelled ones ticked, with the label shown (for :func:`label_on_submit`; labelled
    images not ticked are skipped and reported by the action)."""
    ex = {int(i) for i in excluded or []}
    return [int(i) for i in image_ids or [] if int(i) not in ex], {"relabel": relabel_map(relabel)}


def labelled_note_on(app: Dash, actx: AppContext, note: str, image_ids, *inputs: Input, relabel: str) -> None:
    """Register the callback of a grid's 'N already labelled (...): tick to relabel' line
    (:func:`labelled_note`): ``image_ids(*values of inputs)`` are the grid's images."""

    @app.callback(Output(note, "children"), *inputs, Input(ids.VERSION, "data"), Input(relabel, "data"))
    def show_note(*values):
        *values, _version, rel = values
        return labelled_note(actx, image_ids(*values), rel)


def label_on_submit(app: Dash, actx: AppContext, button: str, box: str, choose, *states: State,
                    relabel_store: str | None = None, **label_kwargs) -> None:
    """Register a 'label these images' callback on ``app``: the ``button`` (Enter in
    the label ``box`` clicks it: assets/keys.js) labels ``ids`` with the box's label in
    one action (:func:`label_ids_action`), where ``ids, kwargs = choose(*values of
    states)`` (``choose`` raises PreventUpdate when there is nothing to label); a new
    label close to existing ones asks for a second click (the label-confirm store).
    On success the box is cleared and ``relabel_store`` (the grid's ticked labelled
    images) emptied. ``label_kwargs`` (``what``, ``source``) go to :func:`label_ids_action`.
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
        done = r.ok and r.version is not no_update
        out = (r.message, r.version, r.confirm, "" if done else no_update)
        return out + ((({} if done else no_update),) if relabel_store else ())


def _trigger_id():
    from dash import ctx

    return ctx.triggered_id
