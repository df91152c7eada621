"""The dashboard's Next tab as plain functions: suggestion bands, the label-next cards, bulk
and one-by-one accept, labelling a queue image (real 80-photo ELPV project, no browser)."""

from __future__ import annotations

from labeler import history
import pytest

from labeler import labels
from labeler.app import create_app
from labeler.app import callbacks_assist as ca
from labeler.app.actions import attempt
from labeler.assist.suggest import suggest

from test_assist_project import label_some, truth_by_id


@pytest.fixture()
def actx(project):
    return create_app(project).labeler


def _texts(node) -> str:
    if isinstance(node, (list, tuple)):
        return " ".join(_texts(n) for n in node)
    ch = getattr(node, "children", None)
    return (node if isinstance(node, str) else "") + (" " + _texts(ch) if ch is not None else "")


def test_next_tab_before_and_after_labels(actx, elpv_dir):
    bands, options = ca.bands_view(actx)
    assert options == [] and "No labels yet" in _texts(bands)
    cards = ca.next_view(actx, 4)
    assert len(cards) == 4 and "typical image" in _texts(cards)
    label_some(actx.project, truth_by_id(actx.project, elpv_dir), n_per_class=20)
    bands, options = ca.bands_view(actx)
    assert {o["value"] for o in options} == set(suggest(actx.project).classes)
    assert "held-out" in _texts(bands)


def test_accept_and_label_from_the_next_tab_are_undoable_actions(actx, elpv_dir):
    project = actx.project
    label_some(project, truth_by_id(project, elpv_dir), n_per_class=20)
    before = project.store.labels()
    out = attempt(ca.accept_bulk_action, actx, None, 0.9, "ana")
    assert not out.ok and project.store.labels() == before
    out = attempt(ca.accept_bulk_action, actx, suggest(project).classes[0], 1.0, "ana")
    assert not out.ok and "nothing changed" in out.text and project.store.labels() == before
    sug = suggest(project)
    target = int(sug.image_ids[sug.unlabelled][0])
    out = attempt(ca.accept_one_action, actx, target, "ana")
    assert out.ok and project.store.labels()[target] == sug.for_image(target)[0]
    out = attempt(ca.accept_one_action, actx, target, "ana")  # now labelled: refused
    assert not out.ok
    other = int(sug.image_ids[sug.unlabelled][1])
    assert attempt(ca.label_one_action, actx, other, "odd", "ana").ok
    assert project.store.labels()[other] == "odd"
    history.undo(project, "ana")
    history.undo(project, "ana")
    assert project.store.labels() == before


def test_layout_has_the_next_tab(actx):
    from labeler.app.layout import serve_layout

    assert "Label next" in _texts(serve_layout(actx).children)


def test_map_colours_by_suggestion_and_search_for_label(actx, elpv_dir):
    from labeler.app.callbacks_search import search_by_id
    from labeler.app.views import COLOR_BY_SUGGESTION, coloring
    from labeler.errors import BadInputError

    given = label_some(actx.project, truth_by_id(actx.project, elpv_dir), n_per_class=20)
    col = coloring(actx, COLOR_BY_SUGGESTION)
    names = {name for name, _, n in col.legend if n}
    assert any(name.endswith("(suggested)") for name in names)
    assert set(given.values()) <= names
    lab = next(iter(given.values()))
    stored = search_by_id(actx, next(iter(given)), 5, for_label=lab)
    assert len(stored["neighbours"]) == 5
    with pytest.raises(BadInputError):
        search_by_id(actx, next(iter(given)), 5, for_label="no-such-label")
