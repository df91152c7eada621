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

from .. import labels
from ..errors import BadInputError, StoreError
from ..hints import set_hints_shown
from . import ids
from .actions import Outcome, run, write_on_click
from .callbacks_assist import cluster_suggestions, suggestion_text
from .common import annotator_name, authenticated_user, track_ticks, triggered_value
from .components import HINT_TITLE, caption, cluster_card, grid, thumb
from .layout import CARDS_PER_PAGE, PER_PAGE
from .state import AppContext
from .panels import cluster_members_ordered, cluster_rows, image_facts, page_of, progress, sort_clusters

# -- plain functions (tested directly, through actions.attempt) ---------------------------


def _checked_label(actx: AppContext, label, confirmed) -> str:
    """The cleaned label; a new label close to existing ones needs ``confirmed`` == it."""
    text = labels.clean_label(label)
    return labels.check_new_label(actx.project, text, confirmed=confirmed is not None and confirmed == text)


def label_cluster_action(actx: AppContext, cluster, label, annotator, excluded=(), *,
                         clustering_id=None, seen=None, confirmed=None) -> str:
    """Label a whole cluster but the unticked images; returns the message.

    ``clustering_id`` and ``seen`` (the member ids on the annotator's page) make a
    stale page fail instead of labelling images the annotator never saw.
    ``confirmed``: the new label the annotator already confirmed once.

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
    _, done = labels.label_cluster(actx.project, int(cluster), text, annotator=annotator_name(annotator),
                                   exclude=excluded, clustering_id=clustering_id, seen=seen)
    text = f"Labelled {len(done):,} image(s) of cluster {cluster} as '{text}'."
    left = [i for i in excluded if i not in set(done)]
    if left:
        text += f" {len(left)} unticked image(s) stay unlabelled."
    return text


def label_ids_action(actx: AppContext, image_ids, label, annotator, *, source="manual",
                     what="image(s)", confirmed=None) -> str:
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
    labels.label_images(actx.project, image_ids, text, source=source, annotator=annotator_name(annotator),
                        description=f"label {len(image_ids)} {what} {text!r}")
    return f"Labelled {len(image_ids):,} {what} as '{text}'."


def undo_action(actx: AppContext, annotator) -> str | Outcome:
    """Undo the newest action (a bulk label or a cluster edit undoes as one)."""
    return _history_message(labels.undo(actx.project, annotator_name(annotator)), "undo", "Undone")


def redo_action(actx: AppContext, annotator) -> str | Outcome:
    """Re-apply the action the newest undo reverted."""
    return _history_message(labels.redo(actx.project, annotator_name(annotator)), "redo", "Redone")


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


def cluster_detail_view(actx: AppContext, cluster, excluded, page) -> tuple:
    """(title, grid items, 'of N' text, clamped page) for the open cluster."""
    try:
        members = cluster_members_ordered(actx, int(cluster))
    except StoreError:
        return "This cluster no longer exists (the clustering was edited).", [], "", 1
    row = next((r for r in cluster_rows(actx) if r["cluster"] == int(cluster)), None)
    items, page, n_pages = page_of(members, page, PER_PAGE)
    facts = image_facts(actx, items)
    ex = {int(i) for i in excluded or []}
    title = [html.Span("Noise" if int(cluster) < 0 else f"Cluster {cluster}", className="card-title"),
             html.Span(f" {len(members):,} images", className="card-stats")]
    if row is not None:
        title.append(html.Span(f" · {100 * row['share']:.0f}% labelled"
                               + (f" · majority {row['majority']}" if row["majority"] else ""),
                               className="card-stats"))
        if row.get("hint"):
            title.append(html.Div(row["hint"], className="hint", title=HINT_TITLE))
    thumbs = [thumb(ids.GRID_CLUSTER, i, caption(i, facts.get(i)), checked=i not in ex) for i in items]
    return title, grid(thumbs), f" of {n_pages} ({len(members):,} images)", page


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
        Output(ids.MESSAGE, "children", allow_duplicate=True),
        Output(ids.VERSION, "data", allow_duplicate=True),
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
            return None, [], 1, no_update
        return tid["cluster"], [], 1, tid["cluster"] if tid["cluster"] >= 0 else no_update

    @app.callback(
        Output(ids.CLUSTER_DETAIL, "style"),
        Output(ids.CLUSTER_TITLE, "children"),
        Output(ids.CLUSTER_GRID, "children"),
        Output(ids.CLUSTER_PAGES, "children"),
        Output(ids.CLUSTER_SEEN, "data"),
        Input(ids.CLUSTER_OPEN, "data"),
        Input(ids.VERSION, "data"),
        Input(ids.CLUSTER_PAGE, "value"),
        State(ids.CLUSTER_EXCLUDED, "data"),
    )
    def cluster_detail(cluster, _version, page, excluded):
        if cluster is None:
            return {"display": "none"}, [], [], "", None
        seen = cluster_seen(actx, cluster)
        title, items, pages, _ = cluster_detail_view(actx, cluster, excluded, page)
        return {"display": "block"}, title, items, pages, seen

    track_ticks(app, ids.GRID_CLUSTER, ids.CLUSTER_EXCLUDED, note=(ids.CLUSTER_EXCLUDED_NOTE, excluded_note))

    # Labelling the open cluster (button, Enter) is callbacks_viewer.on_key: it also
    # opens the next cluster with unlabelled images.

    @app.callback(
        Output(ids.SELECTION_TITLE, "children"),
        Output(ids.SELECTION_GRID, "children"),
        Output(ids.SELECTION_PAGES, "children"),
        Output(ids.SELECTION_N_PAGES, "data"),
        Input(ids.SELECTION, "data"),
        Input(ids.VERSION, "data"),
        Input(ids.SELECTION_PAGE, "value"),
        State(ids.SELECTION_EXCLUDED, "data"),
    )
    def selection_view(selection, _version, page, excluded):
        selection = selection or []
        if not selection:
            return "Nothing selected: lasso or box-select points on the map.", [], "", 1
        items, page, n_pages = page_of(selection, page, PER_PAGE)
        facts = image_facts(actx, items)
        ex = {int(i) for i in excluded or []}
        n_in = len(selection) - len(ex & set(selection))
        n_lab = len(actx.store.labels_for([int(i) for i in selection]))
        title = (f"{len(selection):,} images selected on the map ({n_in:,} ticked) · "
                 f"{n_lab:,} labelled, {len(selection) - n_lab:,} unlabelled")
        thumbs = [thumb(ids.GRID_SELECTION, i, caption(i, facts.get(i)), checked=i not in ex) for i in items]
        return title, grid(thumbs), f" of {n_pages}", n_pages

    @app.callback(
        Output(ids.SELECTION_EXCLUDED, "data"),
        Output(ids.SELECTION_PAGE, "value"),
        Input(ids.SELECTION, "data"),
        prevent_initial_call=True,
    )
    def new_selection(_selection):
        return [], 1

    track_ticks(app, ids.GRID_SELECTION, ids.SELECTION_EXCLUDED)
    label_on_submit(app, actx, ids.SELECTION_LABEL_BUTTON, ids.SELECTION_LABEL_INPUT, ticked,
                    State(ids.SELECTION, "data"), State(ids.SELECTION_EXCLUDED, "data"),
                    what="selected image(s)")
    write_on_click(app, actx, ids.UNDO, undo_action)
    write_on_click(app, actx, ids.REDO, redo_action)


def ticked(image_ids, excluded) -> tuple[list[int], dict]:
    """The ids of a grid's images that are still ticked (for :func:`label_on_submit`)."""
    ex = {int(i) for i in excluded or []}
    return [int(i) for i in image_ids or [] if int(i) not in ex], {}


def label_on_submit(app: Dash, actx: AppContext, button: str, box: str, choose, *states: State,
                    **label_kwargs) -> None:
    """Register a 'label these images' callback on ``app``: the ``button`` or Enter in
    the label ``box`` labels ``ids`` with the box's label in one action
    (:func:`label_ids_action`), where ``ids, kwargs = choose(*values of states)``
    (``choose`` raises PreventUpdate when there is nothing to label); a new label
    close to existing ones asks for a second click (the label-confirm store).
    ``label_kwargs`` (``what``, ``source``) go to :func:`label_ids_action`.
    """

    @app.callback(
        Output(ids.MESSAGE, "children", allow_duplicate=True),
        Output(ids.VERSION, "data", allow_duplicate=True),
        Output(ids.LABEL_CONFIRM, "data", allow_duplicate=True),
        Input(button, "n_clicks"),
        Input(box, "n_submit"),
        *states,
        State(box, "value"),
        State(ids.ANNOTATOR, "data"),
        State(ids.LABEL_CONFIRM, "data"),
        State(ids.VERSION, "data"),
        prevent_initial_call=True,
    )
    def label_them(_n, _s, *values):
        *values, label, annotator, confirm, version = values
        chosen, kwargs = choose(*values)
        r = run(label_ids_action, actx, chosen, label, annotator, confirmed=confirm, version=version,
                **{**label_kwargs, **kwargs})
        return r.message, r.version, r.confirm


def _trigger_id():
    from dash import ctx

    return ctx.triggered_id
