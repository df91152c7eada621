"""The Clusters tab: the list of cluster cards (sorted, paged, with the leading suggestion),
the open cluster's grid with its tick boxes, and the ImageNet hints switch.

Labelling the open cluster is :func:`labeler.app.labelling.label_cluster_action`, run by
the keyboard callback (:mod:`labeler.app.viewer`): Enter and the button both go there.
"""

from __future__ import annotations

from dash import ALL, Dash, Input, Output, State, ctx, html, no_update
from dash.exceptions import PreventUpdate

from ....errors import StoreError
from ....hints import set_hints_shown
from ... import ids
from ...actions import WRITE_OUTPUTS, run
from ...common import ANEW, anew_outputs, page_callback, ticked_grid, track_ticks, triggered_value
from ...components import HINT_TITLE, cluster_card
from ...labelling import labelled_note_on
from ...panels import (CARDS_PER_PAGE, PER_PAGE, cluster_members_ordered, cluster_rows, image_facts, page_of,
                       sort_clusters)
from ...state import AppContext
from ...suggestions import cluster_suggestions, suggestion_text

# -- plain functions (tested directly, through actions.attempt) ---------------------------


def set_hints_action(actx: AppContext, shown: bool) -> str:
    """Show or hide the ImageNet hints (the project setting ``imagenet_hints``)."""
    set_hints_shown(actx.project, shown)
    if shown:
        return (f"ImageNet hints shown where the backbone is confident "
                f"(p ≥ {actx.project.settings().imagenet_hint_min_prob:g}).")
    return "ImageNet hints hidden (project setting imagenet_hints = false)."


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
    view, shown = ticked_grid(ids.CLUSTER_TICKS.name, items, image_facts(actx, items), excluded, relabel)
    return title, view, f" of {n_pages} ({len(members):,} images)", page, shown


def excluded_note(excluded) -> str:
    ex = [int(i) for i in excluded or []]
    if not ex:
        return ""
    shown = ", ".join(f"#{i}" for i in ex[:20]) + (" ..." if len(ex) > 20 else "")
    return f"{len(ex)} unticked (will stay unlabelled): {shown}"


# -- callbacks ----------------------------------------------------------------------------


def register(app: Dash, actx: AppContext) -> None:
    """Register the Clusters tab's callbacks on ``app``."""

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
        *anew_outputs(ids.CLUSTER_TICKS),
        Output(ids.SPLIT_CLUSTER, "value"),
        Input({"type": ids.CLUSTER_OPEN_BUTTON, "cluster": ALL}, "n_clicks"),
        Input(ids.CLUSTER_CLOSE, "n_clicks"),
        prevent_initial_call=True,
    )
    def open_cluster(_opens, _close):
        if not triggered_value():
            raise PreventUpdate
        tid = ctx.triggered_id
        if tid == ids.CLUSTER_CLOSE:
            return None, *ANEW, no_update
        return tid["cluster"], *ANEW, tid["cluster"] if tid["cluster"] >= 0 else no_update

    @page_callback(app, ids.CLUSTER_TICKS, Input(ids.CLUSTER_OPEN, "data"),
                   Output(ids.CLUSTER_DETAIL, "style"), Output(ids.CLUSTER_TITLE, "children"),
                   Output(ids.CLUSTER_SEEN, "data"))
    def cluster_detail(cluster, _version, page, excluded, relabel):
        if cluster is None:
            return {"display": "none"}, [], None, [], "", {}
        seen = cluster_seen(actx, cluster)
        title, items, pages, _, shown = cluster_detail_view(actx, cluster, excluded, page, relabel)
        return {"display": "block"}, title, seen, items, pages, shown

    track_ticks(app, ids.CLUSTER_TICKS, note=(ids.CLUSTER_EXCLUDED_NOTE, excluded_note))

    labelled_note_on(app, actx, ids.CLUSTER_TICKS, lambda seen: (seen or {}).get("members") or [],
                     Input(ids.CLUSTER_SEEN, "data"))

    # Labelling the open cluster (button, Enter) is viewer.on_key: it also opens the
    # next cluster with unlabelled images.
