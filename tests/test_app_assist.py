"""The dashboard's Next tab as plain functions: suggestion bands, the label-next cards, bulk
and one-by-one accept, labelling a queue image (real 80-photo ELPV project, no browser)."""

from __future__ import annotations

import pytest

from labeler import history
from labeler import labels
from labeler.app import create_app
from labeler.app.suggestions import cluster_suggestions, suggestion_text
from labeler.app.tabs.next import callbacks as ca
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
    from labeler.app import serve_layout

    assert "Label next" in _texts(serve_layout(actx).children)


def test_map_colours_by_suggestion_and_search_for_label(actx, elpv_dir):
    from labeler.app.tabs.search.callbacks import search_by_id
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


# -- the two numbers on cards, the budget and the confirmation below 0.5 (issue 20, part 6) --
def _three_clusters_two_labels(actx):
    """Re-cluster into 10 (the fixture has 2 clusters), then label the 3 largest with 2 labels."""
    from labeler.app import panels
    from labeler.config import Settings
    from labeler.pipeline import recluster

    recluster(actx.project, Settings(method="kmeans", k=10))
    actx.refresh()
    real = sorted((r["size"], r["cluster"]) for r in panels.cluster_rows(actx) if r["cluster"] >= 0)
    for (_, c), lab in zip(real[-3:], ("mono", "mono", "poly")):
        labels.label_cluster(actx.project, c, lab, annotator="ana")


def test_cluster_cards_say_what_each_number_means(actx):
    """The issue's case: after three clusters with two labels every card read
    'suggested … (mean confidence 0.02)'. Now: the probability, and the evidence in words."""
    _three_clusters_two_labels(actx)
    per = cluster_suggestions(actx)
    assert per
    for s in per.values():
        assert 0 <= s["probability"] <= 1 and 0 <= s["vouched"] <= 1 and 0 <= s["confidence"] <= s["probability"] + 1e-6
        text = suggestion_text(s)
        assert text.startswith("suggested: ") and "probability " in text and "it is right" in text
        assert "mean confidence" not in text
        assert "vouched ≥" in text or "not enough" in text
    # Unlabelled clusters with three labelled ones: held-out clusters are too few to vouch.
    assert any("not enough labelled clusters yet to vouch" in suggestion_text(s) for s in per.values())


def test_next_cards_and_bands_show_both_numbers(actx, elpv_dir):
    label_some(actx.project, truth_by_id(actx.project, elpv_dir), n_per_class=6)
    text = _texts(ca.next_view(actx, 3))
    assert "probability" in text and ("vouched" in text or "not enough" in text)
    bands, _ = ca.bands_view(actx)
    assert "vouched confidence" in _texts(bands) and "probability" in _texts(bands)


def test_bulk_accept_below_one_half_asks_first_and_takes_a_budget(actx, elpv_dir):
    project = actx.project
    label_some(project, truth_by_id(project, elpv_dir), n_per_class=6)
    lab = suggest(project).classes[0]
    assert ca.threshold_warning(0.3) and not ca.threshold_warning(0.95) and not ca.threshold_warning(None, 5)
    warning = ca.bulk_accept_warning(actx, lab, 0.3)
    assert warning and "Click Accept again" in warning
    assert ca.bulk_accept_warning(actx, lab, None, 5) is None  # the budget keeps to probable suggestions
    before = project.store.labels()
    out = attempt(ca.accept_bulk_action, actx, lab, 0.3, "ana")  # not confirmed: refused
    assert not out.ok and "Click Accept again" in out.text and project.store.labels() == before
    out = attempt(ca.accept_bulk_action, actx, lab, None, "ana", budget_percent=5)
    assert out.ok and "expected wrong" in out.text and "at most" in out.text
    assert len(project.store.labels()) > len(before)
    out = attempt(ca.accept_bulk_action, actx, suggest(project).classes[-1], 0.3, "ana", confirmed=True)
    assert out.ok, out.text
    assert not attempt(ca.accept_bulk_action, actx, lab, None, "ana").ok  # neither criterion
    assert not attempt(ca.accept_bulk_action, actx, lab, None, "ana", budget_percent=120).ok


def test_the_accept_button_warns_first_and_accepts_on_a_second_click(project, elpv_dir):
    """The registered callback: below 0.5 the first click only warns (nothing written, the
    page's version unchanged), a second click on the same request accepts."""
    from dash import no_update

    app = create_app(project)
    label_some(project, truth_by_id(project, elpv_dir), n_per_class=6)
    key = next(k for k in app.callback_map if f"{ca.NEXT_ACCEPT_PENDING}.data" in k)
    click = app.callback_map[key]["callback"].__wrapped__
    lab = suggest(project).classes[0]
    before = project.store.labels()
    msg, version, pending = click(1, lab, 0.3, None, None, "ana", 5)
    assert "Click Accept again" in _texts(msg) and version is no_update and pending
    assert project.store.labels() == before
    msg, version, pending = click(2, lab, 0.3, None, pending, "ana", 5)
    assert "Accepted" in _texts(msg) and version == 6 and pending is None
    assert len(project.store.labels()) > len(before)
