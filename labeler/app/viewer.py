"""The large image view, its anomaly heat map, and the keyboard shortcuts.

A core module rather than a tab's: the large view opens from every grid (any tab's
thumbnails, the map's neighbours), and the keys act on the Clusters, Selection and Search
tabs alike (n / p / Enter open and label clusters, PageDown / PageUp turn the open
tab's page).

Large view: clicking any thumbnail opens the image at full resolution (the
``/view/<id>`` route caps it at 2048 px) with zoom (wheel) and pan (drag) done in
``assets/keys.js``; beside it the image's id, file name, cluster, label, its
nearest neighbours (clickable) and :func:`large_view_extras` (the hook for a
suggestion line or a heat map). ← / → move through the image's cluster; Esc closes.

Keyboard: ``assets/keys.js`` turns a key press (outside text boxes) into
``{key, n}`` in the :data:`~labeler.app.ids.KB_EVENT` store; :func:`keyboard_step`
decides what it does (plain function, tested directly). The table of keys is
:data:`labeler.app.components.KEYS`, shown by ``?`` and copied in the README.

Heat map: one state, two tick boxes (the top bar's, over the Next tab's cards, and the
large view's); without anomaly scores they say in one line which command makes them.
"""

from __future__ import annotations

from dash import ALL, Dash, Input, Output, State, ctx, html, no_update
from dash.exceptions import PreventUpdate

from ..errors import LabelerError, StoreError
from ..hints import hint_text
from . import ids
from .actions import run
from .common import relabel_map, result
from .components import caption, message
from .follow import RELOAD_OUTPUTS, clustering_change, reload_step
from .labelling import label_cluster_action
from .panels import PER_PAGE, cluster_members_ordered, cluster_rows, image_facts, sort_clusters
from .routes import anomaly_url, thumb_url, view_url
from .state import AppContext

N_NEIGHBOURS = 9


def label_choices(actx: AppContext) -> list[str]:
    """The labels keys 1-9 apply: existing labels sorted by name (stable while labelling)."""
    return sorted(actx.store.label_counts())


# -- large view -----------------------------------------------------------------------


def large_view_extras(actx: AppContext, image_id: int) -> list:
    """Extra rows of the large view for one image (a suggestion, a heat map link).

    Empty for now: the hook other panels fill (one function, one placeholder div).
    """
    return []


def image_hint(actx: AppContext, image_id: int) -> str | None:
    """'ImageNet hint: X (p=0.62)' for one image where the backbone is confident and
    the project shows hints, else None (:func:`labeler.hints.hint_text`)."""
    min_prob = actx.hint_threshold()
    pos = actx.positions([image_id])
    if min_prob is None or not len(pos):
        return None
    top1, prob, cats = actx.imagenet()
    t = int(top1[pos[0]])
    return hint_text(cats[t] if 0 <= t < len(cats) else None, float(prob[pos[0]]), min_prob)


def step_in_cluster(actx: AppContext, image_id: int, step: int) -> int:
    """The image ``step`` places away from ``image_id`` within its cluster (ordered as the
    cluster grid: representatives first), wrapping around.

    Raises
    ------
    StoreError
        Unknown image id.
    """
    cluster = image_facts(actx, [int(image_id)]).get(int(image_id))
    if cluster is None:
        raise StoreError(f"unknown image id {image_id}")
    members = cluster_members_ordered(actx, cluster["cluster"])
    if int(image_id) not in members:
        return int(image_id)
    return int(members[(members.index(int(image_id)) + step) % len(members)])


def step_in_view(actx: AppContext, image_id: int, step: int, queue=None) -> int:
    """The image ← / → move to: within ``queue`` (the label-next queue the view was
    opened from) when it holds ``image_id``, else within its cluster
    (:func:`step_in_cluster`), wrapping around.

    Raises
    ------
    StoreError
        Unknown image id (outside a queue).
    """
    queue = [int(i) for i in queue or []]
    if int(image_id) in queue:
        return queue[(queue.index(int(image_id)) + step) % len(queue)]
    return step_in_cluster(actx, image_id, step)


def large_view(actx: AppContext, image_id: int, queue=None) -> dict:
    """Content of the large view: src, facts, neighbours, extras. ``queue``: the ids
    ← / → move through when the view was opened from the label-next queue.

    Raises
    ------
    StoreError
        Unknown image id.
    """
    image_id = int(image_id)
    f = image_facts(actx, [image_id]).get(image_id)
    if f is None:
        raise StoreError(f"unknown image id {image_id}")
    members = cluster_members_ordered(actx, f["cluster"])
    pos = members.index(image_id) + 1 if image_id in members else 0
    cl = "noise" if f["cluster"] < 0 else f"cluster {f['cluster']}"
    where = f"{cl} · image {pos} of {len(members)} (← →)"
    queue = [int(i) for i in queue or []]
    if image_id in queue:
        where = f"{cl} · label-next queue: image {queue.index(image_id) + 1} of {len(queue)} (← →)"
    facts = [
        html.Div(f"#{image_id} · {f['path'].rsplit('/', 1)[-1]}", className="lv-title", title=f["path"]),
        html.Div(where, id="lv-where"),
        html.Div(["label: ", html.B(f["label"] or "—")], id="lv-label"),
    ]
    hint = image_hint(actx, image_id)
    if hint:
        facts.append(html.Div(hint, className="hint", id="lv-hint"))
    try:
        res = actx.searcher().by_id(image_id, N_NEIGHBOURS)
        nb = [(n.image_id, n.similarity) for n in res.neighbours]
    except StoreError:
        nb = []
    nfacts = image_facts(actx, [i for i, _ in nb])
    neighbours = [html.Div([
        html.Button(html.Img(src=thumb_url(i), alt=f"image {i}"), className="thumb-btn", n_clicks=0,
                    id={"type": ids.LV_NEIGHBOUR, "id": int(i)}, title=f"image {i}: show it here"),
        html.Div(caption(i, nfacts.get(i), s), className="thumb-caption")], className="thumb") for i, s in nb]
    return {"src": view_url(image_id), "facts": facts, "neighbours": neighbours,
            "extras": large_view_extras(actx, image_id)}


def heat_available(actx: AppContext) -> str | None:
    """None when anomaly heat maps can be drawn, else the one line saying which command makes them."""
    try:
        from ..embedding.defect_features import anomaly_scores

        anomaly_scores(actx.project)
    except ImportError:
        return "anomaly heat maps are not available in this version of labeler"
    except LabelerError as e:
        return f"No heat map: {e}"
    return None


# -- keyboard -------------------------------------------------------------------------


def next_cluster(actx: AppContext, current, step: int = 1, sort: str = "size", *,
                 unlabelled_only: bool = False):
    """The cluster after (step=1) or before (-1) ``current`` in the panel's sort order.

    ``unlabelled_only``: skip clusters without unlabelled images (wrapping around once).
    Returns None when there is none.
    """
    rows = sort_clusters(cluster_rows(actx), sort or "size")
    order = [r["cluster"] for r in rows]
    if not order:
        return None
    if unlabelled_only:
        todo = {r["cluster"] for r in rows if r["unlabelled"] > 0}
        start = order.index(current) if current in order else -1
        for j in range(1, len(order) + 1):
            c = order[(start + j) % len(order)]
            if c in todo and c != current:
                return c
        return None
    if current not in order:
        return order[0] if step > 0 else order[-1]
    return order[min(max(order.index(current) + step, 0), len(order) - 1)]


#: Keys that act on the clustering: refused while the page shows an older one.
CLUSTERING_KEYS = {"next": "n", "prev": "p", "enter": "Enter", "label": "Label cluster"}


def keyboard_step(actx: AppContext, key: str, state: dict) -> dict:
    """What one shortcut does: the changed values among cluster, page, label, excluded,
    relabel, message, version, clustering, selection_page, search_page (absent = unchanged).

    ``state``: cluster (open or None), label (the label box), excluded, relabel (the
    labelled images ticked to relabel, {str(id): label shown}), annotator,
    version, sort, page, seen ({cluster, clustering_id, members} the page showed:
    a stale page is refused), clustering (the clustering id the page's map and
    cluster list show: n / p / Enter on an older one reload the page instead of
    acting), confirm (a new label confirmed once), tab (the
    open tab: PageDown / PageUp turn the page of its image grid), selection_page,
    selection_pages, search_page and search_pages (the Selection and Search
    grids' page and number of pages).

    Enter that labels the cluster clears the label box (``label`` = ''), so a second
    Enter cannot give the same label to the next cluster unseen. Enter that writes nothing
    (every member already labelled) stays on the cluster and keeps the box.
    """
    cluster = state.get("cluster")
    out: dict = {}
    if key in CLUSTERING_KEYS and state.get("clustering") is not None:
        change = clustering_change(actx, state["clustering"])
        if change is not None:
            return reload_step(actx, change, state, refused=CLUSTERING_KEYS[key])
    if key in ("next", "prev"):
        c = next_cluster(actx, cluster, 1 if key == "next" else -1, state.get("sort"))
        if c is not None and c != cluster:
            out.update(cluster=c, page=1, excluded=[], relabel={})
    elif key.startswith("label:"):
        n = int(key.split(":", 1)[1])
        choices = label_choices(actx)
        if 1 <= n <= len(choices):
            out["label"] = choices[n - 1]
        else:
            out["message"] = message(f"No label {n}: {len(choices)} label(s) exist so far "
                                     "(press l and type a new one).", "warn")
    elif key in ("enter", "label"):  # 'label' (the button): stay on the cluster
        seen = state.get("seen")
        seen = seen if seen and cluster is not None and seen.get("cluster") == int(cluster) else None
        if cluster is not None and seen is None:  # the page never showed this cluster's members
            seen = {"clustering_id": None, "members": []}
        r = run(label_cluster_action, actx, cluster, state.get("label"), state.get("annotator"),
                state.get("excluded"), clustering_id=seen["clustering_id"] if seen else None,
                seen=seen["members"] if seen else None, confirmed=state.get("confirm"),
                relabel=relabel_map(state.get("relabel")), version=state.get("version"))
        out.update(message=r.message, version=r.version, confirm=r.confirm)
        # Nothing written (every image already labelled, e.g. by someone else since the page
        # showed them): stay on the cluster with the label typed, so the annotator sees those
        # labels and can tick the ones to relabel, as the message says.
        if r.ok and r.changed:
            out.update(label="", relabel={})
        if r.ok and r.changed and key == "enter":
            c = next_cluster(actx, cluster, sort=state.get("sort"), unlabelled_only=True)
            out.update(cluster=c, page=1, excluded=[])
            if c is None:
                out["message"] = message(f"{_text(r.message)} Every cluster is labelled now.")
    elif key in ("pgdn", "pgup"):
        step = 1 if key == "pgdn" else -1
        tab = state.get("tab") or ids.TAB_CLUSTERS
        if tab in (ids.TAB_SELECTION, ids.TAB_SEARCH):
            name = "selection" if tab == ids.TAB_SELECTION else "search"
            out[f"{name}_page"] = _turn(state.get(f"{name}_page"), step, state.get(f"{name}_pages"))
        elif tab == ids.TAB_CLUSTERS and cluster is not None:
            try:
                n = len(actx.store.cluster_members(int(cluster)))
            except StoreError:
                n = 0
            out["page"] = _turn(state.get("page"), step, -(-n // PER_PAGE))
    return out


def _turn(page, step: int, n_pages) -> int:
    """The page ``step`` pages from ``page`` (1-based), kept within 1 .. ``n_pages``."""
    try:
        page = int(page or 1)
    except (TypeError, ValueError):
        page = 1
    return int(min(max(page + step, 1), max(int(n_pages or 1), 1)))


def _text(msg) -> str:
    return getattr(msg, "children", "") or ""


#: What :func:`keyboard_step` reads, by its name in ``state`` (the keyboard callback's
#: States, in order).
KEY_STATE = {
    "cluster": State(ids.CLUSTER_OPEN, "data"),
    "label": State(ids.CLUSTER_LABEL_INPUT, "value"),
    "excluded": State(ids.CLUSTER_EXCLUDED, "data"),
    "annotator": State(ids.ANNOTATOR, "data"),
    "version": State(ids.VERSION, "data"),
    "sort": State(ids.CLUSTER_SORT, "value"),
    "page": State(ids.CLUSTER_PAGE, "value"),
    "seen": State(ids.CLUSTER_SEEN, "data"),
    "confirm": State(ids.LABEL_CONFIRM, "data"),
    "tab": State(ids.TABS, "value"),
    "selection_page": State(ids.SELECTION_PAGE, "value"),
    "selection_pages": State(ids.SELECTION_N_PAGES, "data"),
    "search_page": State(ids.SEARCH_PAGE, "value"),
    "search_pages": State(ids.SEARCH_N_PAGES, "data"),
    "relabel": State(ids.CLUSTER_RELABEL, "data"),
    "clustering": State(ids.CLUSTERING_SHOWN, "data"),
}
#: What a key changes, by its name in :func:`keyboard_step`'s answer (the keyboard callback's
#: Outputs, in order): what a clustering reload changes (:data:`~labeler.app.follow.RELOAD_OUTPUTS`),
#: the open cluster's ticks, page and label box, the confirmation, the grids' pages; ``tab``
#: (the Clusters tab when another cluster opened) and ``ack`` (keys.js's answer) from the callback.
KEY_OUTPUTS = {
    **RELOAD_OUTPUTS,
    "excluded": Output(ids.CLUSTER_EXCLUDED, "data", allow_duplicate=True),
    "relabel": Output(ids.CLUSTER_RELABEL, "data", allow_duplicate=True),
    "page": Output(ids.CLUSTER_PAGE, "value", allow_duplicate=True),
    "label": Output(ids.CLUSTER_LABEL_INPUT, "value"),
    "confirm": Output(ids.LABEL_CONFIRM, "data", allow_duplicate=True),
    "tab": Output(ids.TABS, "value", allow_duplicate=True),
    "selection_page": Output(ids.SELECTION_PAGE, "value", allow_duplicate=True),
    "search_page": Output(ids.SEARCH_PAGE, "value", allow_duplicate=True),
    "ack": Output(ids.KB_ACK, "children"),
}


def register(app: Dash, actx: AppContext) -> None:
    """Register the large view, heat map and keyboard callbacks on ``app``."""

    @app.callback(
        Output(ids.LV_IMAGE, "data"),
        Output(ids.LV_QUEUE, "data"),
        Input({"type": ids.THUMB_SIMILAR, "grid": ALL, "id": ALL}, "n_clicks"),
        Input({"type": ids.LV_NEIGHBOUR, "id": ALL}, "n_clicks"),
        Input(ids.LV_PREV, "n_clicks"),
        Input(ids.LV_NEXT, "n_clicks"),
        Input(ids.LV_CLOSE, "n_clicks"),
        Input(ids.LV_SEARCH, "n_clicks"),
        State({"type": ids.THUMB_SIMILAR, "grid": ALL, "id": ALL}, "id"),
        State(ids.LV_IMAGE, "data"),
        State(ids.LV_QUEUE, "data"),
        prevent_initial_call=True,
    )
    def open_large_view(_thumbs, _nb, _prev, _next, _close, _search, thumb_ids, current, queue):
        t = ctx.triggered[0] if ctx.triggered else None
        if not t or not t["value"]:  # re-rendered thumbnails fire with n_clicks 0
            raise PreventUpdate
        tid = ctx.triggered_id
        if isinstance(tid, dict) and tid.get("type") == ids.THUMB_SIMILAR:
            # Opened from the Next tab: ← / → walk its queue as shown (in its order).
            shown = [int(c["id"]) for c in thumb_ids or [] if c.get("grid") == ids.GRID_NEXT]
            return int(tid["id"]), shown if tid.get("grid") == ids.GRID_NEXT else None
        if isinstance(tid, dict):  # a neighbour: the queue stays for when it is stepped back to
            return int(tid["id"]), no_update
        if tid in (ids.LV_CLOSE, ids.LV_SEARCH) or current is None:
            return None, None
        try:
            return step_in_view(actx, current, -1 if tid == ids.LV_PREV else 1, queue), no_update
        except StoreError:
            return None, None

    @app.callback(
        Output(ids.LV_OVERLAY, "style"),
        Output(ids.LV_IMG, "src"),
        Output(ids.LV_FACTS, "children"),
        Output(ids.LV_NEIGHBOURS, "children"),
        Output(ids.LV_EXTRA, "children"),
        Input(ids.LV_IMAGE, "data"),
        Input(ids.VERSION, "data"),
        State(ids.LV_QUEUE, "data"),
    )
    def show_large_view(image_id, _version, queue):
        if image_id is None:
            return {"display": "none"}, no_update, no_update, no_update, no_update
        try:
            v = large_view(actx, image_id, queue)
        except StoreError:
            return {"display": "none"}, no_update, no_update, no_update, no_update
        return {"display": "flex"}, v["src"], v["facts"], v["neighbours"], v["extras"]

    @app.callback(
        *KEY_OUTPUTS.values(),
        Input(ids.KB_EVENT, "data"),
        Input(ids.CLUSTER_LABEL_BUTTON, "n_clicks"),
        *KEY_STATE.values(),
        prevent_initial_call=True,
    )
    def on_key(event, _click, *values):
        # Enter (in the label box too: assets/keys.js sends it here) labels and goes to the
        # next cluster; the button labels and stays (e.g. to relabel after a confirmation
        # question). keys.js sends no key before the server answered the last (the ack).
        state = dict(zip(KEY_STATE, values))
        tid = ctx.triggered_id
        ack = str((event or {}).get("n", 0)) if tid == ids.KB_EVENT else no_update
        if tid == ids.KB_EVENT:
            key = (event or {}).get("key")
        else:
            key = "label" if ctx.triggered and ctx.triggered[0]["value"] else None
        out = keyboard_step(actx, key, state) if key else {}
        if not out and ack is no_update:
            raise PreventUpdate
        if out.get("cluster") is not None and out["cluster"] != state["cluster"]:
            out["tab"] = ids.TAB_CLUSTERS  # another cluster opened: show it
        out["ack"] = ack
        return tuple(out.get(name, no_update) for name in KEY_OUTPUTS)

    @app.callback(
        Output(ids.HEAT_TOGGLE, "value"),
        Output(ids.LV_HEAT, "value"),
        Output(ids.APP_ROOT, "className"),
        Output(ids.LV_HEAT_IMG, "src"),
        Output(ids.LV_HEAT_IMG, "style"),
        Output(ids.LV_HEAT_NOTE, "children"),
        Output(ids.MESSAGE, "children", allow_duplicate=True),
        Input(ids.HEAT_TOGGLE, "value"),
        Input(ids.LV_HEAT, "value"),
        Input(ids.LV_IMAGE, "data"),
        prevent_initial_call=True,
    )
    def heat(top, lv, image_id):
        # One state, two tick boxes (the top bar's for the Next cards, the large view's).
        tid = ctx.triggered_id
        on = bool(top if tid == ids.HEAT_TOGGLE else lv)
        if tid == ids.LV_IMAGE and not on:
            raise PreventUpdate
        why = heat_available(actx) if on else None
        if why is not None:
            return ([], [], "app", "", {"display": "none"}, result(why, "warn"),
                    result(why, "warn") if tid == ids.HEAT_TOGGLE else no_update)
        value = ["on"] if on else []
        if not on or image_id is None:
            return value, value, "app heat-on" if on else "app", "", {"display": "none"}, [], no_update
        return (value, value, "app heat-on", anomaly_url(int(image_id)), {"display": "block"},
                "red = least like the normal patches at that place", no_update)
