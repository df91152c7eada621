"""The Review tab: near-duplicate groups labelled in one action, and the likely label
errors: whole groups labelled wrong (relabelled in one undoable action) and single
images, walked one at a time.

The lists are computed on a button press (review takes seconds: cross-validated
probes, :func:`labeler.review.review_labels`) and kept in the browser as ids only.
Each write is a plain function calling :mod:`labeler.labels`, run through
:func:`labeler.app.actions.run`. Accepting a suggestion checks that the image
still has the label the list was made with, so a label another annotator changed
meanwhile is not overwritten (:class:`~labeler.errors.StaleStateError`); relabelling
a group passes each member's shown label (``relabel={id: label}``), so members
relabelled since are skipped and reported.
"""

from __future__ import annotations

from dash import Dash, Input, Output, State, html, no_update
from dash.exceptions import PreventUpdate

from .... import labels
from ....errors import BadInputError, LabelerError, StaleStateError
from ... import ids
from ...actions import run, write_callback, write_on_click
from ...common import annotator_name, result
from ...components import caption, full_image_link, grid, thumb
from ...panels import image_facts, page_of
from ...state import AppContext
from .layout import (DUP_FIND, DUP_LABEL_BUTTON, DUP_LABEL_INPUT, DUP_PAGE, DUP_PAGES, DUP_STORE, DUP_SUMMARY,
                     DUP_THRESHOLD, DUP_VIEW, GRID_WRONG_GROUP, ISSUE_ACCEPT, ISSUE_FIND, ISSUE_LABEL_BUTTON,
                     ISSUE_LABEL_INPUT, ISSUE_PAGE, ISSUE_PAGES, ISSUE_STORE, ISSUE_SUMMARY, ISSUE_VIEW, WGROUP_ACCEPT,
                     WGROUP_LABEL_BUTTON, WGROUP_LABEL_INPUT, WGROUP_PAGE, WGROUP_PAGES, WGROUP_STORE, WGROUP_VIEW)

GROUP_THUMBS = 40


# -- plain functions (tested directly) ------------------------------------------------------


def find_groups(actx: AppContext, threshold=None) -> tuple[list[list[int]], str]:
    """Near-duplicate groups (ids, largest first) and a one-line summary.

    Raises
    ------
    LabelerError
        A threshold outside (0, 1].
    """
    from ....duplicates import find_duplicates

    rep = find_duplicates(actx.project, threshold=None if threshold in (None, "") else float(threshold))
    c = rep.counts()
    text = (f"cosine ≥ {rep.threshold}: {len(rep.groups)} group(s): {c['exact_groups']} exact-copy set(s), "
            f"{c['near_groups']} near-duplicate group(s)")
    return [g.image_ids for g in rep.groups], text


def group_view(actx: AppContext, groups, page) -> tuple[list, str, int]:
    """(content, 'of N' text, clamped page) for one duplicate group."""
    if not groups:
        return [], "", 1
    items, page, n = page_of(groups, page, 1)
    members = [int(i) for i in items[0]]
    facts = image_facts(actx, members[:GROUP_THUMBS])
    labs = sorted({f["label"] for f in facts.values() if f["label"]})
    title = html.Div([html.Span(f"Group {page}: {len(members)} images", className="card-title"),
                      html.Span(" · labels: " + (", ".join(labs) if labs else "none"), className="card-stats")])
    thumbs = [thumb(ids.GRID_DUPLICATES, i, caption(i, facts.get(i))) for i in members[:GROUP_THUMBS]]
    return [title, grid(thumbs)], f" of {n}", page


def label_group_action(actx: AppContext, groups, page, label, annotator) -> str:
    """Label every image of the shown group in one undoable action; returns the message.

    Raises
    ------
    LabelerError
        No group shown or a bad label.
    """
    if not groups:
        raise BadInputError("Find the duplicate groups first.")
    items, page, _ = page_of(groups, page, 1)
    members = [int(i) for i in items[0]]
    text = labels.clean_label(label)
    res = labels.label_images(actx.project, members, text, annotator=annotator_name(annotator),
                              description=f"label near-duplicate group of {len(members)} image(s) {text!r}")
    return res.message(f"image(s) of group {page}", relabel_hint="label them one by one to relabel")


def find_issues(actx: AppContext) -> tuple[list[dict], list[dict], str]:
    """Likely label errors: single images and whole groups (most likely first each), and a
    one-line summary.

    Raises
    ------
    LabelerError
        Fewer than two labels with two images each.
    """
    from ....review import review_labels

    rep = review_labels(actx.project)
    issues = [{"image_id": it.image_id, "label": it.label, "suggested_label": it.suggested_label,
               "score": it.score} for it in rep.issues]
    groups = [{"group_id": g.group_id, "kind": g.kind, "image_ids": g.image_ids, "label": g.label,
               "suggested_label": g.suggested_label, "score": g.score} for g in rep.groups]
    return issues, groups, (f"{len(groups)} group(s) labelled wrong as a whole (of {rep.groups_checked} checked) "
                            f"and {len(issues)} likely label error(s) among {rep.n_labelled} labelled image(s); "
                            f"probe accuracy {rep.probe_accuracy:.1%}")


def wrong_group_view(actx: AppContext, groups, page) -> tuple[list, str, int]:
    """(content, 'of N' text, clamped page) for one group labelled wrong as a whole."""
    if not groups:
        return [], "", 1
    items, page, n = page_of(groups, page, 1)
    g = items[0]
    members = [int(i) for i in g["image_ids"]]
    facts = image_facts(actx, members)
    moved = [i for i in members if facts.get(i, {}).get("label") != g["label"]]
    title = html.Div([html.Span(f"{g['group_id']}: {len(members)} images labelled '{g['label']}'",
                                className="card-title"),
                      html.Span(f" → suggested '{g['suggested_label']}'", className="card-stats")])
    lines = [title, html.Div(f"A model trained without these images gives '{g['label']}' a mean probability of "
                             f"{g['score']:.2f}; it predicts '{g['suggested_label']}'.", className="muted small")]
    if moved:
        lines.append(html.Div(f"{len(moved)} of them now hold another label: relabelling skips them",
                              className="badge badge-warn"))
    thumbs = [thumb(GRID_WRONG_GROUP, i, caption(i, facts.get(i))) for i in members[:GROUP_THUMBS]]
    if len(members) > GROUP_THUMBS:
        thumbs.append(html.Span(f"… {len(members) - GROUP_THUMBS} more", className="muted small"))
    return [*lines, grid(thumbs)], f" of {n}", page


def _shown_item(items, page) -> dict:
    """The item of a review list (one per page) the annotator sees on ``page``, which a
    relabel button acts on. Raises BadInputError when there is no list yet."""
    if not items:
        raise BadInputError("Find the likely label errors first.")
    shown, _, _ = page_of(items, page, 1)
    return shown[0]


def relabel_group_action(actx: AppContext, groups, page, annotator, label=None) -> str:
    """Give every member of the shown group the suggested label (``label`` None) or
    ``label``, in one undoable action. A member whose label changed since the list was
    made is skipped (and counted in the message).

    Raises
    ------
    LabelerError
        No list, or a bad label.
    """
    g = _shown_item(groups, page)
    members = [int(i) for i in g["image_ids"]]
    text = labels.clean_label(g["suggested_label"] if label is None else label)
    res = labels.label_images(actx.project, members, text, annotator=annotator_name(annotator),
                              description=f"review: {g['group_id']}, {len(members)} image(s) "
                                          f"{g['label']!r} -> {text!r}",
                              relabel={i: g["label"] for i in members})
    return res.message(f"image(s) of {g['group_id']}",
                       relabel_hint="their label changed since the list was made; find the likely label errors again")


def issue_view(actx: AppContext, issues, page) -> tuple[list, str, int]:
    """(content, 'of N' text, clamped page) for one likely label error."""
    if not issues:
        return [], "", 1
    items, page, n = page_of(issues, page, 1)
    it = items[0]
    i = int(it["image_id"])
    facts = image_facts(actx, [i]).get(i, {})
    now = facts.get("label")
    lines = [html.Div([html.Span(f"#{i} {facts.get('path', '')}", className="card-title"), " · ",
                       full_image_link(i)]),
             html.Div(f"label '{it['label']}' → suggested '{it['suggested_label']}' "
                      f"(probability of its label {it['score']:.2f})")]
    if now != it["label"]:
        lines.append(html.Div(f"now labelled '{now}'" if now else "now unlabelled", className="badge badge-warn"))
    return [html.Div([thumb(ids.GRID_REVIEW, i, caption(i, facts)), html.Div(lines)],
                     className="query-row")], f" of {n}", page


def relabel_issue_action(actx: AppContext, issues, page, annotator, label=None) -> str:
    """Give the shown image its suggested label (``label`` None) or ``label``.

    Raises
    ------
    StaleStateError
        The image's label changed since the list was made (nothing written).
    LabelerError
        No list, or a bad label.
    """
    it = _shown_item(issues, page)
    i = int(it["image_id"])
    now = actx.store.labels_for([i]).get(i)
    if now != it["label"]:
        raise StaleStateError(f"image {i} is now labelled {now!r}, not {it['label']!r}: "
                              "find the likely label errors again")
    text = labels.clean_label(it["suggested_label"] if label is None else label)
    labels.label_images(actx.project, [i], text, annotator=annotator_name(annotator),
                        description=f"review: image {i} {it['label']!r} -> {text!r}",
                        relabel={i: it["label"]})
    return f"Image #{i}: '{it['label']}' → '{text}'."


# -- callbacks ----------------------------------------------------------------------------


def _paged_list(app: Dash, actx: AppContext, button: str, store: str, summary: str, page: str, view: str,
                pages: str, find, show, *states: State) -> None:
    """Register the two callbacks of a list computed on a button press and shown one
    item per page: ``find(actx, *values of states) -> (items, summary text)`` fills
    ``store`` (its LabelerError goes to ``summary``); ``show`` as in :func:`_show_list`."""

    @app.callback(
        Output(store, "data"), Output(summary, "children"), Output(page, "value"),
        Input(button, "n_clicks"), *states,
        prevent_initial_call=True,
    )
    def find_list(n, *values):
        if not n:
            raise PreventUpdate
        try:
            items, text = find(actx, *values)
        except LabelerError as e:
            return no_update, result(str(e), "error"), no_update
        return items, text, 1

    _show_list(app, actx, store, page, view, pages, show)


def _show_list(app: Dash, actx: AppContext, store: str, page: str, view: str, pages: str, show) -> None:
    """Register the callback that renders one item of the list in ``store``:
    ``show(actx, items, page) -> (content, 'of N' text, page)`` (again after every write)."""

    @app.callback(
        Output(view, "children"), Output(pages, "children"),
        Input(store, "data"), Input(page, "value"), Input(ids.VERSION, "data"),
    )
    def show_page(items, n, _version):
        content, text, _ = show(actx, items, n)
        return content, text


def _relabel_on_click(app: Dash, actx: AppContext, accept: str, set_button: str, store: str, page: str,
                      label_input_id: str, action) -> None:
    """Register the write callback of a list of likely errors: ``accept`` runs
    ``action(actx, items, page, annotator)`` (the suggested label), ``set_button``
    ``action(..., label)`` with the text box's label; on success the list walks on."""

    @write_callback(app, Input(accept, "n_clicks"), Input(set_button, "n_clicks"),
                    State(store, "data"), State(page, "value"), State(label_input_id, "value"),
                    outputs=[Output(page, "value", allow_duplicate=True)])
    def relabel(n_accept, n_set, items, n, label, annotator, version):
        from dash import ctx as dash_ctx

        if not (n_accept or n_set):
            raise PreventUpdate
        chosen = None if dash_ctx.triggered_id == accept else label
        r = run(action, actx, items, n, annotator, chosen, version=version)
        # on success walk on to the next item of the list
        return r.message, r.version, (int(n or 1) + 1 if r.ok and items and int(n or 1) < len(items)
                                      else no_update)


def register(app: Dash, actx: AppContext) -> None:
    """Register the Review tab's callbacks on ``app``."""

    _paged_list(app, actx, DUP_FIND, DUP_STORE, DUP_SUMMARY, DUP_PAGE, DUP_VIEW, DUP_PAGES, find_groups,
                group_view, State(DUP_THRESHOLD, "value"))
    write_on_click(app, actx, DUP_LABEL_BUTTON, label_group_action,
                   State(DUP_STORE, "data"), State(DUP_PAGE, "value"), State(DUP_LABEL_INPUT, "value"))

    @app.callback(
        Output(ISSUE_STORE, "data"), Output(WGROUP_STORE, "data"), Output(ISSUE_SUMMARY, "children"),
        Output(ISSUE_PAGE, "value"), Output(WGROUP_PAGE, "value"),
        Input(ISSUE_FIND, "n_clicks"),
        prevent_initial_call=True,
    )
    def find_errors(n):
        if not n:
            raise PreventUpdate
        try:
            issues, groups, text = find_issues(actx)
        except LabelerError as e:
            return no_update, no_update, result(str(e), "error"), no_update, no_update
        return issues, groups, text, 1, 1

    _show_list(app, actx, ISSUE_STORE, ISSUE_PAGE, ISSUE_VIEW, ISSUE_PAGES, issue_view)
    _show_list(app, actx, WGROUP_STORE, WGROUP_PAGE, WGROUP_VIEW, WGROUP_PAGES, wrong_group_view)
    _relabel_on_click(app, actx, WGROUP_ACCEPT, WGROUP_LABEL_BUTTON, WGROUP_STORE, WGROUP_PAGE, WGROUP_LABEL_INPUT,
                      relabel_group_action)

    _relabel_on_click(app, actx, ISSUE_ACCEPT, ISSUE_LABEL_BUTTON, ISSUE_STORE, ISSUE_PAGE, ISSUE_LABEL_INPUT,
                      relabel_issue_action)
