"""Refining clusters: split (preview, then apply), merge, move selected images.

Every edit stores a new clustering through :mod:`labeler.refine` and undoes as
one action.
"""

from __future__ import annotations

from dash import Dash, Input, Output, State, html, no_update
from dash.exceptions import PreventUpdate

from .... import refine
from ....errors import BadInputError, LabelerError
from ... import ids
from ...actions import run, write_callback, write_on_click
from ...common import annotator_name, result, ticked_ids
from ...components import thumb
from ...state import AppContext
from ...views import cluster_color

PREVIEW_THUMBS = 8


def split_preview_action(actx: AppContext, cluster, method="kmeans", k=2, min_size=5) -> dict:
    """Sub-clusters of a cluster without storing anything.

    Returns
    -------
    dict
        cluster, method and groups ({sub-cluster id as str: image ids}; '-1' = noise).

    Raises
    ------
    LabelerError
        No or an unknown cluster, fewer than two images, bad method or k.
    """
    if cluster is None:
        raise BadInputError("give the cluster to split")
    cur = actx.store.current_clustering()
    groups = refine.split_preview(actx.project, int(cluster), method=method or "kmeans",
                                  k=int(k or 2), min_cluster_size=int(min_size or 5))
    return {"cluster": int(cluster), "method": method, "clustering_id": int(cur["id"]),
            "groups": {str(s): [int(i) for i in g] for s, g in groups.items()}}


def split_preview_view(preview: dict) -> list:
    """One strip per sub-cluster: its size and the first thumbnails."""
    out = [html.Div(f"Cluster {preview['cluster']} would become {len(preview['groups'])} "
                    f"sub-clusters ({preview['method']}):", className="muted")]
    for sub, members in sorted(preview["groups"].items(), key=lambda kv: int(kv[0])):
        name = "noise" if int(sub) < 0 else f"part {int(sub) + 1}"
        out.append(html.Div([
            html.Div([html.Span(className="chip-dot", style={"background": cluster_color(int(sub))}),
                      f"{name}: {len(members):,} images"], className="card-stats"),
            html.Div([thumb(ids.GRID_SPLIT, i) for i in members[:PREVIEW_THUMBS]], className="thumb-strip"),
        ], className="split-part"))
    return out


def apply_split_action(actx: AppContext, preview: dict | None, annotator, *, clustering_id=None) -> str:
    """Store the previewed split; returns the message.

    Raises
    ------
    LabelerError
        No preview, a stale page or preview, an unknown cluster.
    """
    if not preview:
        raise BadInputError("Preview a split first.")
    groups = {int(s): g for s, g in preview["groups"].items()}
    refine.apply_split(actx.project, preview["cluster"], groups, annotator=annotator_name(annotator),
                       clustering_id=clustering_id if clustering_id is not None else preview.get("clustering_id"))
    return f"Split cluster {preview['cluster']} into {len(groups)}."


def merge_action(actx: AppContext, clusters, annotator, *, clustering_id=None) -> str:
    """Merge the chosen clusters; returns the message.

    Raises
    ------
    LabelerError
        Fewer than two clusters, an unknown one, or a stale page.
    """
    clusters = [int(c) for c in clusters or []]
    refine.merge_clusters(actx.project, clusters, annotator=annotator_name(annotator), clustering_id=clustering_id)
    return f"Merged clusters {', '.join(map(str, sorted(clusters)))}."


def move_action(actx: AppContext, image_ids, target, annotator, *, clustering_id=None) -> str:
    """Move images to cluster ``target`` (-1 = noise; None or 'new' = a new cluster).

    Raises
    ------
    LabelerError
        No image, an unknown image or target, or a stale page.
    """
    image_ids = [int(i) for i in image_ids or []]
    if not image_ids:
        raise BadInputError("Tick images in the Selection tab first.")
    tgt = None if target in (None, "", "new") else int(target)
    refine.move_images(actx.project, image_ids, tgt, annotator=annotator_name(annotator),
                       clustering_id=clustering_id)
    where = "a new cluster" if tgt is None else ("noise" if tgt == -1 else f"cluster {tgt}")
    return f"Moved {len(image_ids):,} image(s) to {where}."


def cluster_options(actx: AppContext, clustering_id: int | None = None) -> tuple[list, list]:
    """Dropdown options: clusters to merge, and move targets (of a clustering, default current)."""
    rows = actx.store.cluster_summaries(clustering_id)
    merge = [{"label": f"cluster {r['cluster']} ({r['size']})", "value": r["cluster"]}
             for r in sorted(rows, key=lambda r: r["cluster"]) if r["cluster"] >= 0]
    move = [{"label": "a new cluster", "value": "new"}, {"label": "noise", "value": -1}] + merge
    return merge, move


def register(app: Dash, actx: AppContext) -> None:
    """Register the refine callbacks on ``app``."""

    @app.callback(
        Output(ids.MERGE_CLUSTERS, "options"),
        Output(ids.MOVE_TARGET, "options"),
        Output(ids.CLUSTERING_SEEN, "data"),
        Input(ids.VERSION, "data"),
    )
    def options(_version):
        cid = int(actx.store.current_clustering()["id"])
        merge_opts, move_opts = cluster_options(actx, cid)
        return merge_opts, move_opts, cid

    @app.callback(
        Output(ids.SPLIT_PREVIEW, "data"),
        Output(ids.SPLIT_PREVIEW_VIEW, "children"),
        Input(ids.SPLIT_PREVIEW_BUTTON, "n_clicks"),
        State(ids.SPLIT_CLUSTER, "value"),
        State(ids.SPLIT_METHOD, "value"),
        State(ids.SPLIT_K, "value"),
        State(ids.SPLIT_MIN_SIZE, "value"),
        prevent_initial_call=True,
    )
    def preview(n, cluster, method, k, min_size):
        if not n:
            raise PreventUpdate
        try:
            p = split_preview_action(actx, cluster, method, k, min_size)
        except LabelerError as e:
            return None, result(f"No preview: {e}", "error")
        return p, split_preview_view(p)

    @write_callback(app, Input(ids.SPLIT_APPLY, "n_clicks"), State(ids.SPLIT_PREVIEW, "data"),
                    outputs=[Output(ids.SPLIT_PREVIEW, "data", allow_duplicate=True),
                             Output(ids.SPLIT_PREVIEW_VIEW, "children", allow_duplicate=True)])
    def apply(n, p, annotator, version):
        if not n:
            raise PreventUpdate
        r = run(apply_split_action, actx, p, annotator, clustering_id=(p or {}).get("clustering_id"),
                version=version)
        if not r.ok:
            return r.message, no_update, no_update, no_update
        return r.message, r.version, None, []

    write_on_click(app, actx, ids.MERGE_BUTTON, merge_action,
                   State(ids.MERGE_CLUSTERS, "value"), State(ids.CLUSTERING_SEEN, "data"),
                   prepare=lambda clusters, seen: ((clusters,), {"clustering_id": seen}))

    @app.callback(
        Output(ids.MOVE_NOTE, "children"),
        Input(ids.SELECTION, "data"),
        Input(ids.SELECTION_EXCLUDED, "data"),
        Input(ids.SELECTION_RELABEL, "data"),
        Input(ids.VERSION, "data"),
    )
    def move_note(selection, excluded, relabel, _version):
        n = len(ticked_ids(actx.store, selection, excluded, relabel))
        return f"{n:,} ticked image(s) in the Selection tab (labelled ones start unticked)."

    def move_args(selection, excluded, relabel, target, seen_clustering):
        # What the Selection tab shows ticked: labelled images only where ticked (as for labelling).
        chosen = ticked_ids(actx.store, selection, excluded, relabel)
        # A move to 'new' or noise names no cluster: only a numbered target depends on the clustering.
        cid = seen_clustering if target not in (None, "", "new", -1) else None
        return (chosen, target), {"clustering_id": cid}

    write_on_click(app, actx, ids.MOVE_BUTTON, move_action,
                   State(ids.SELECTION, "data"), State(ids.SELECTION_EXCLUDED, "data"),
                   State(ids.SELECTION_RELABEL, "data"), State(ids.MOVE_TARGET, "value"),
                   State(ids.CLUSTERING_SEEN, "data"), prepare=move_args)
