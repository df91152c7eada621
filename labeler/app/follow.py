"""The page follows the project's clustering.

The page keeps the id of the clustering its map, legend and cluster list show
(:data:`~labeler.app.ids.CLUSTERING_SHOWN`). When the project's current clustering
is another one (a re-clustering by the CLI, a split or merge by someone else, an
undo of one, photos placed by ``labeler ingest``), the page reloads those views
(a version bump), closes the open cluster when its members changed, and says what
happened. It finds out two ways:

- :func:`follow`, polled every few seconds (:data:`~labeler.app.layout.POLL_MS`)
  and after every write of this page (the version store);
- :func:`labeler.app.viewer.keyboard_step`, on every n / p / Enter before it
  acts: a key pressed on a page that shows an older clustering is refused
  (:func:`reload_step`), so no key acts on a clustering the annotator has not seen.

A core module, not a tab's: the keyboard asks it before acting, and what it reloads
(the map, the cluster list, the open cluster) belongs to several tabs.
"""

from __future__ import annotations

from dash import Dash, Input, Output, State, ctx, no_update
from dash.exceptions import PreventUpdate

from ..errors import StoreError
from ..map_versions import INGEST
from . import ids
from .actions import WRITE_OUTPUTS, placed_since
from .common import annotator_name
from .components import message
from .state import AppContext


def clustering_change(actx: AppContext, shown_id) -> tuple[int, str, str | None] | None:
    """How the project's clustering differs from clustering ``shown_id`` (the page's):
    None when it is the same (or ``shown_id`` is None), else (current clustering id,
    what happened in words, who did it: an annotator, or None for the CLI / an ingest)."""
    store = actx.store
    cur = store.current_clustering()
    cid = int(cur["id"])
    if shown_id is None or int(shown_id) == cid:
        return None
    placed = placed_since(store, shown_id)
    if placed is not None:
        return cid, f"{placed:,} new photo(s) added by `labeler ingest`", None
    if cid > int(shown_id):  # a newer clustering: a re-clustering or an edit
        if cur.get("action_id") is not None:
            a = store.get_action(int(cur["action_id"]))
            return cid, f"{a['description']} by {a['annotator']}", a["annotator"]
        params = cur.get("params") or {}
        how = ", ".join(f"{k}={params[k]}" for k in ("k", "min_cluster_size") if params.get(k) is not None)
        fs = params.get("feature_set")
        where = f" in feature set {fs}" if fs and fs != INGEST else ""
        return cid, (f"re-clustered: {cur['method']}{', ' + how if how else ''}{where}; "
                     f"`labeler cluster --use {int(shown_id)}` goes back"), None
    # An older clustering is current again: the one shown was undone.
    shown = store.get_clustering(int(shown_id)) or {}
    if shown.get("action_id") is not None:
        a = store.get_action(int(shown["action_id"]))
        undo = next((r for r in store.actions(200) if r["undoes"] == a["id"]), None)
        who = undo["annotator"] if undo is not None else a["annotator"]
        return cid, f"undo of '{a['description']}' by {who}", who
    return cid, "an earlier clustering is current again", None


def _members_changed(actx: AppContext, seen: dict | None) -> bool:
    """Whether the open cluster (``seen``: cluster, members the page showed) now has other members."""
    if not seen or seen.get("cluster") is None:
        return False
    try:
        now = actx.store.cluster_members(int(seen["cluster"]))
    except StoreError:
        return True
    return set(now) != {int(i) for i in seen.get("members") or []}


def reload_step(actx: AppContext, change: tuple, state: dict, *, refused: str | None = None) -> dict:
    """What the page does when the clustering changed (``change`` from
    :func:`clustering_change`): the keyboard_step keys (clustering, version, message,
    and cluster=None when the open cluster's members changed). ``refused``: the key
    refused because of it, named in the message."""
    cid, what, _ = change
    actx.refresh()  # an ingest's new photos: the map points
    out = {"clustering": cid, "version": (state.get("version") or 0) + 1}
    text = f"The clustering changed ({what}): the map and clusters were reloaded."
    if state.get("cluster") is not None and _members_changed(actx, state.get("seen")):
        out.update(cluster=None, excluded=[], relabel={})
        text += f" Cluster {state['cluster']} was closed: its images changed."
    if refused:
        text += f" Nothing was done: look, then press {refused} again."
    out["message"] = message(text, "warn")
    return out


#: What :func:`reload_step` changes, by its key (the follow callback's outputs, in order;
#: the keyboard's callback writes them too, with the open cluster's ticks and page).
RELOAD_OUTPUTS = {
    "clustering": Output(ids.CLUSTERING_SHOWN, "data", allow_duplicate=True),
    "version": WRITE_OUTPUTS[1],
    "message": WRITE_OUTPUTS[0],
    "cluster": Output(ids.CLUSTER_OPEN, "data", allow_duplicate=True),
}


def register(app: Dash, actx: AppContext) -> None:
    """Register the clustering poll on ``app``."""

    @app.callback(
        *RELOAD_OUTPUTS.values(),
        Input(ids.CLUSTERING_POLL, "n_intervals"),
        Input(ids.VERSION, "data"),
        State(ids.CLUSTERING_SHOWN, "data"),
        State(ids.ANNOTATOR, "data"),
        State(ids.CLUSTER_OPEN, "data"),
        State(ids.CLUSTER_SEEN, "data"),
        prevent_initial_call=True,
    )
    def follow(_n, version, shown, annotator, cluster, seen):
        change = clustering_change(actx, shown)
        if change is None:
            raise PreventUpdate
        after_write = ctx.triggered_id == ids.VERSION  # every view is re-rendering from the store already
        own = change[2] == annotator_name(annotator)  # this annotator's edit: their own message said it
        if after_write and (own or change[2] is None and "ingest" in change[1]):
            return (change[0],) + (no_update,) * 3
        out = reload_step(actx, change, {"version": version, "cluster": cluster, "seen": seen})
        if after_write:
            del out["version"]
        if own:
            del out["message"]
        return tuple(out.get(name, no_update) for name in RELOAD_OUTPUTS)
