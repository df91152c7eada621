"""The Selection tab: the images lassoed or box-selected on the map, their tick boxes,
and labelling the ticked ones in one action."""

from __future__ import annotations

from dash import Dash, Input, Output, State

from ... import ids
from ...common import ANEW, anew_outputs, is_ticked, page_callback, ticked_grid, track_ticks
from ...labelling import label_on_submit, labelled_note_on, ticked
from ...panels import PER_PAGE, image_facts, page_of
from ...state import AppContext


def register(app: Dash, actx: AppContext) -> None:
    """Register the Selection tab's callbacks on ``app``."""

    @page_callback(app, ids.SELECTION_TICKS, Input(ids.SELECTION, "data"),
                   Output(ids.SELECTION_TITLE, "children"), Output(ids.SELECTION_N_PAGES, "data"))
    def selection_view(selection, _version, page, excluded, relabel):
        selection = selection or []
        if not selection:
            return "Nothing selected: lasso or box-select points on the map.", 1, [], "", {}
        items, page, n_pages = page_of(selection, page, PER_PAGE)
        held = actx.store.labels_for([int(i) for i in selection])
        ex = {int(i) for i in excluded or []}
        n_in = sum(1 for i in selection if is_ticked(int(i), held.get(int(i)), ex, relabel))
        title = (f"{len(selection):,} images selected on the map ({n_in:,} ticked) · "
                 f"{len(held):,} labelled, {len(selection) - len(held):,} unlabelled")
        view, shown = ticked_grid(ids.SELECTION_TICKS.name, items, image_facts(actx, items), excluded, relabel)
        return title, n_pages, view, f" of {n_pages}", shown

    @app.callback(*anew_outputs(ids.SELECTION_TICKS), Input(ids.SELECTION, "data"), prevent_initial_call=True)
    def new_selection(_selection):
        return ANEW

    track_ticks(app, ids.SELECTION_TICKS)
    labelled_note_on(app, actx, ids.SELECTION_TICKS, lambda selection: selection or [], Input(ids.SELECTION, "data"))
    label_on_submit(app, actx, ids.SELECTION_LABEL_BUTTON, ids.SELECTION_LABEL_INPUT, ticked,
                    State(ids.SELECTION, "data"), State(ids.SELECTION_EXCLUDED, "data"),
                    State(ids.SELECTION_RELABEL, "data"), relabel_store=ids.SELECTION_RELABEL,
                    what="selected image(s)")
