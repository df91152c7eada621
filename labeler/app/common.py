"""Helpers shared by the callback modules (no Dash app state here)."""

from __future__ import annotations

from dash import ALL, Input, Output, State
from dash import ctx as dash_ctx

from . import ids
from .components import caption, grid, message, thumb


def triggered_value():
    """The value of the input that fired the running callback.

    None or 0 when the callback ran because components were (re-)rendered rather
    than clicked: pattern-matching inputs fire when new items appear.
    """
    t = dash_ctx.triggered
    return t[0]["value"] if t else None


def authenticated_user() -> str | None:
    """The user HTTP basic auth authenticated for the running request (None without auth)."""
    from flask import g, has_request_context

    return g.get("labeler_user") if has_request_context() else None


def annotator_name(stored) -> str:
    """Who acts: the authenticated user when auth is on (the browser cannot claim
    another name), else the name typed in this browser ('anonymous' when none)."""
    user = authenticated_user()
    if user:
        return user
    return (str(stored).strip() if stored else "") or "anonymous"


def update_exclusions(excluded, visible_ids, ticked_values) -> list[int]:
    """Excluded ids after the tick boxes of the visible grid page changed.

    Parameters
    ----------
    excluded : list of int
        Ids excluded so far (on any page).
    visible_ids : list of int
        Ids whose tick box is on the page.
    ticked_values : list of list
        The value of each visible tick box ([id] when ticked, [] when not).
    """
    visible = {int(i) for i in visible_ids}
    out = {int(i) for i in (excluded or []) if int(i) not in visible}
    out |= {int(i) for i, v in zip(visible_ids, ticked_values) if not v}
    return sorted(out)


def result(text: str, kind: str = "ok"):
    """The message component for the page's message bar."""
    return message(text, kind)


def update_ticks(excluded, relabel, visible_ids, ticked_values, shown) -> tuple[list[int], dict]:
    """(excluded, relabel) after the tick boxes of the visible grid page changed.

    An unlabelled image is ticked unless the annotator unticked it (``excluded``); a
    labelled one is unticked unless the annotator ticked it to relabel it (``relabel``,
    {str(image id): the label the page showed}, what :func:`labeler.labels.label_images`
    takes as ``relabel``: a label someone changed since is then left alone).

    Parameters
    ----------
    shown : dict
        {str(image id): label} of the labelled images on the visible page, as rendered.
    """
    shown = shown or {}
    visible = {int(i) for i in visible_ids}
    ex = {int(i) for i in excluded or [] if int(i) not in visible}
    rel = {str(k): v for k, v in (relabel or {}).items() if int(k) not in visible}
    for i, v in zip(visible_ids, ticked_values):
        lab = shown.get(str(int(i)))
        if lab is None:
            if not v:
                ex.add(int(i))
        elif v:
            rel[str(int(i))] = lab
    return sorted(ex), rel


def is_ticked(image_id: int, label: str | None, excluded, relabel) -> bool:
    """Whether a grid shows ``image_id`` (holding ``label``, None = unlabelled) ticked."""
    if label:
        return (relabel or {}).get(str(int(image_id))) == label
    return int(image_id) not in {int(i) for i in excluded or []}


def ticked_ids(store, image_ids, excluded, relabel) -> list[int]:
    """The ids among ``image_ids`` a grid shows ticked, by their labels now (:func:`is_ticked`)."""
    ids_ = [int(i) for i in image_ids or []]
    held = store.labels_for(ids_)
    return [i for i in ids_ if is_ticked(i, held.get(i), excluded, relabel)]


def relabel_map(relabel) -> dict[int, str]:
    """The page's relabel store as :func:`labeler.labels.label_images` takes it."""
    return {int(k): v for k, v in (relabel or {}).items()}


def shown_labels(image_ids, facts: dict) -> dict[str, str]:
    """{str(id): label} of the labelled images among ``image_ids`` (``facts``: image_facts)."""
    return {str(int(i)): facts[i]["label"] for i in image_ids if (facts.get(i) or {}).get("label")}


def ticked_grid(grid_id: str, image_ids, facts: dict, excluded, relabel) -> tuple[object, dict[str, str]]:
    """(grid component, shown labels) of the visible page of a grid with tick boxes.

    An unlabelled image is ticked unless ``excluded`` holds it, a labelled one only when
    ``relabel`` holds it with its label (:func:`is_ticked`); shown labels: {str(id):
    label} of the page's labelled images (:func:`shown_labels`, for :func:`update_ticks`).

    Parameters
    ----------
    grid_id : str
        The grid's name in the tick boxes' ids (``ids.GRID_*``).
    image_ids : list of int
        The images of the visible page.
    facts : dict
        :func:`labeler.app.panels.image_facts` of those images.
    """
    shown = shown_labels(image_ids, facts)
    ex = {int(i) for i in excluded or []}
    thumbs = [thumb(grid_id, i, caption(i, facts.get(i)), held=str(i) in shown,
                    checked=is_ticked(i, shown.get(str(i)), ex, relabel)) for i in image_ids]
    return grid(thumbs), shown


#: The tick and page state of a grid shown anew (a cluster opened, a new selection, a new
#: search result): nothing unticked, nothing ticked to relabel, page 1. The values of
#: :func:`anew_outputs`, in their order.
ANEW = ([], {}, 1)


def anew_outputs(grid: ids.TickedGrid, allow_duplicate: bool = False) -> list[Output]:
    """The outputs that show ``grid`` anew: its excluded and relabel stores and its page box
    (values :data:`ANEW`)."""
    return [Output(grid.excluded, "data", allow_duplicate=allow_duplicate),
            Output(grid.relabel, "data", allow_duplicate=allow_duplicate),
            Output(grid.page, "value", allow_duplicate=allow_duplicate)]


def page_dependencies(grid: ids.TickedGrid, content: Input) -> list:
    """What a page of ``grid`` is rendered from, in this order: ``content`` (the Input of
    what the grid shows), the version store (labels changed), the page box, then the
    excluded and relabel stores (States: a tick re-renders nothing)."""
    return [content, Input(ids.VERSION, "data"), Input(grid.page, "value"),
            State(grid.excluded, "data"), State(grid.relabel, "data")]


def page_callback(app, grid: ids.TickedGrid, content: Input, *outputs: Output):
    """``app.callback`` for the callback that renders the visible page of ``grid``, the one
    way to declare one: it writes ``outputs`` (the tab's own: a title, ...), then the page's
    thumbnails, the ' of N' text and the shown labels (:func:`ticked_grid`), and is called
    with the values of :func:`page_dependencies` (``content`` first)."""
    return app.callback(*outputs, Output(grid.view, "children"), Output(grid.pages, "children"),
                        Output(grid.shown, "data"), *page_dependencies(grid, content))


def track_ticks(app, grid: ids.TickedGrid, note: tuple[str, object] | None = None) -> None:
    """Register the callback that keeps the excluded and relabel stores of ``grid`` (on any
    page) in step with the tick boxes of its visible page (:func:`update_ticks`): labelled
    images start unticked and a tick chooses to relabel one. ``note``: (component id,
    function of the excluded ids) for a line that lists them."""
    outputs = [Output(grid.excluded, "data", allow_duplicate=True), Output(grid.relabel, "data", allow_duplicate=True)]
    if note:
        outputs.append(Output(note[0], "children"))

    @app.callback(
        *outputs,
        Input({"type": ids.THUMB_CHECK, "grid": grid.name, "id": ALL}, "value"),
        State({"type": ids.THUMB_CHECK, "grid": grid.name, "id": ALL}, "id"),
        State(grid.excluded, "data"),
        State(grid.relabel, "data"),
        State(grid.shown, "data"),
        prevent_initial_call=True,
    )
    def track(values, comp_ids, excluded, relabel, shown):
        out, rel = update_ticks(excluded, relabel, [c["id"] for c in comp_ids], values, shown)
        return (out, rel, note[1](out)) if note else (out, rel)
