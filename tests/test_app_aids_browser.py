"""End-to-end (real headless Chromium): ImageNet hints and their toggle, PageDown/PageUp in
the Selection and Search grids, ← / → through the label-next queue in the large view,
suggestions on the cluster cards and the map's suggestion-confidence colouring, and a
real `labeler ingest` of new photos while the page is open. Fixtures and helpers as in
test_app_browser.py."""

from __future__ import annotations

import tomllib

import pytest

pytest.importorskip("selenium")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from labeler.app import panels, views  # noqa: E402
from labeler.config import save_setting  # noqa: E402
from test_app_annotator_aids import _label_some, _reroot, add_photos  # noqa: E402
from test_app_annotator_browser import press  # noqa: E402
from test_app_browser import (GRAPH_JS, callbacks_idle, driver, download_dir, message,  # noqa: E402,F401
                              open_dashboard, served, text_of, thumb_ids, wait_until)

pytestmark = [pytest.mark.browser,
              pytest.mark.filterwarnings("ignore::DeprecationWarning:selenium.*")]

T = 60


def tab(driver, name):
    driver.find_element(By.XPATH, f"//*[contains(@class,'tab') and normalize-space()='{name}']").click()


def value_of(driver, element_id):
    return driver.find_element(By.ID, element_id).get_attribute("value")


def test_hints_are_shown_when_confident_and_the_toggle_hides_them(driver, project):
    from browser_helpers import ServerThread
    from labeler.app import create_app

    save_setting(project.settings_path, "imagenet_hint_min_prob", 0.0)  # every hint passes: then hide them
    app = create_app(project)
    with ServerThread(app.server) as srv:
        open_dashboard(driver, srv.url, app.labeler.n_points)
        hint = wait_until(lambda: text_of(driver, ".cluster-card .hint"), T, "a hint on the cards")
        assert hint.startswith("ImageNet hint: ") and "(p=" in hint
        driver.find_element(By.CSS_SELECTOR, "#hints-toggle input").click()
        message(driver, "ImageNet hints hidden")
        wait_until(lambda: not driver.find_elements(By.CSS_SELECTOR, ".cluster-card .hint"), T, "hints gone")
        assert tomllib.loads(project.settings_path.read_text())["imagenet_hints"] is False
        driver.get(srv.url)  # a new page load keeps them hidden and the box unticked
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, ".cluster-card"), T, "cards")
        assert not driver.find_element(By.CSS_SELECTOR, "#hints-toggle input").is_selected()
        assert not driver.find_elements(By.CSS_SELECTOR, ".cluster-card .hint")


def test_page_keys_turn_the_selection_and_search_grids(driver, served, project):
    srv, app = served
    open_dashboard(driver, srv.url, app.labeler.n_points)
    driver.execute_script(f"""
        const pts = Array.from({{length: 75}}, (_, i) => ({{curveNumber: 0, pointNumber: i, pointIndex: i}}));
        {GRAPH_JS}.emit('plotly_selected', {{points: pts}});
    """)
    wait_until(lambda: "75 images selected" in text_of(driver, "#selection-title"), T, "selection")
    first = thumb_ids(driver, "#selection-grid .thumb-btn")
    assert len(first) == 40
    driver.execute_script("document.activeElement.blur()")
    press(driver, Keys.PAGE_DOWN)
    wait_until(lambda: len(thumb_ids(driver, "#selection-grid .thumb-btn")) == 35, T, "page 2 of the selection")
    assert value_of(driver, "selection-page") == "2"
    assert not set(thumb_ids(driver, "#selection-grid .thumb-btn")) & set(first)
    press(driver, Keys.PAGE_DOWN)  # the last page: stays
    callbacks_idle(driver)
    assert value_of(driver, "selection-page") == "2"
    press(driver, Keys.PAGE_UP)
    wait_until(lambda: thumb_ids(driver, "#selection-grid .thumb-btn") == first, T, "page 1 again")

    # Search: 60 neighbours are two pages.
    tab(driver, "Search")
    k = driver.find_element(By.ID, "search-k")
    k.clear()
    k.send_keys("60")
    callbacks_idle(driver)
    driver.execute_script(f"{GRAPH_JS}.emit('plotly_click', {{points: [{{curveNumber: 0, pointNumber: 3}}]}})")
    wait_until(lambda: len(thumb_ids(driver, "#search-grid .thumb-btn")) == 40, T, "search page 1")
    assert "of 2 (60 neighbours)" in text_of(driver, "#search-pages")
    driver.execute_script("document.activeElement.blur()")
    press(driver, Keys.PAGE_DOWN)
    wait_until(lambda: len(thumb_ids(driver, "#search-grid .thumb-btn")) == 20, T, "search page 2")
    assert value_of(driver, "search-page") == "2"
    press(driver, Keys.PAGE_UP)
    wait_until(lambda: len(thumb_ids(driver, "#search-grid .thumb-btn")) == 40, T, "search page 1 again")
    press(driver, "?")
    wait_until(lambda: "Selection, Search" in text_of(driver, "#help-overlay"), T, "help names the grids")


def test_arrows_in_the_large_view_walk_the_label_next_queue(driver, served, project):
    srv, app = served
    open_dashboard(driver, srv.url, app.labeler.n_points)
    tab(driver, "Next")
    queue = wait_until(lambda: thumb_ids(driver, "#next-list .thumb-btn"), T, "the label-next queue")
    assert len(queue) >= 3
    driver.find_elements(By.CSS_SELECTOR, "#next-list .thumb-btn")[1].click()
    img = wait_until(lambda: driver.find_element(By.ID, "lv-img"), T, "large view")
    wait_until(lambda: (img.get_attribute("src") or "").endswith(f"/view/{queue[1]}"), T, "second of the queue")
    wait_until(lambda: f"label-next queue: image 2 of {len(queue)}" in text_of(driver, "#lv-facts"), T, "where")
    driver.execute_script("document.activeElement.blur()")
    press(driver, Keys.ARROW_RIGHT)
    wait_until(lambda: (img.get_attribute("src") or "").endswith(f"/view/{queue[2]}"), T, "→: the next of the queue")
    press(driver, Keys.ARROW_LEFT)
    wait_until(lambda: (img.get_attribute("src") or "").endswith(f"/view/{queue[1]}"), T, "←")
    press(driver, Keys.ARROW_LEFT)
    wait_until(lambda: (img.get_attribute("src") or "").endswith(f"/view/{queue[0]}"), T, "the first")
    press(driver, Keys.ARROW_LEFT)  # wraps around to the end of the queue
    wait_until(lambda: (img.get_attribute("src") or "").endswith(f"/view/{queue[-1]}"), T, "wrapped to the last")
    press(driver, Keys.ESCAPE)
    wait_until(lambda: not driver.find_element(By.ID, "lv-overlay").is_displayed(), T, "closed")


def test_cards_show_suggestions_and_the_map_colours_by_confidence(driver, served, project):
    srv, app = served
    done = _label_some(project, app.labeler)
    open_dashboard(driver, srv.url, app.labeler.n_points)
    text = wait_until(lambda: text_of(driver, ".cluster-card .card-suggestion"), T, "a suggestion on a card")
    assert text.startswith("suggested: ") and ("mono" in text or "poly" in text) and "probability" in text
    for c in done:  # a fully labelled cluster has nothing to suggest
        assert not driver.find_elements(By.CSS_SELECTOR, f".cluster-card[data-cluster='{c}'] .card-suggestion")
    driver.find_element(By.CSS_SELECTOR, "#color-mode input[value='confidence']").click()
    wait_until(lambda: driver.find_elements(By.ID, "map-colorbar"), T, "colour bar")
    legend = text_of(driver, "#map-legend")
    assert "suggestion confidence" in legend and "mono (labelled)" in legend and "no suggestion" in legend
    col = views.coloring(app.labeler, views.COLOR_BY_CONFIDENCE)
    want = views.map_marker(app.labeler, views.COLOR_BY_CONFIDENCE, col)["colorscale"]
    wait_until(lambda: driver.execute_script(f"return {GRAPH_JS}._fullData[0].marker.colorscale") == want, T,
               "confidence colour scale")
    # Each point's colour as plotly hands it to WebGL: labelled points in their label's colour,
    # unlabelled ones on the confidence steps (or grey: no suggestion), all opaque enough to read.
    rgba = driver.execute_script(f"return {GRAPH_JS}._fullLayout._plots.xy._scene.markerOptions[0].colors"
                                 ".map(c => Array.from(c))")
    labelled = app.labeler.point_labels() != ""

    def rgb(c):
        return tuple(int(c[i:i + 2], 16) for i in (1, 3, 5))

    steps = {rgb(c) for c in views.sequential_steps(views.CONFIDENCE_STEPS)} | {rgb(views.UNLABELLED_COLOR)}
    got = [tuple(round(v * 255) for v in c[:3]) for c in rgba]
    assert all(g in steps for g, lab in zip(got, labelled) if not lab)
    assert any(g in steps - {rgb(views.UNLABELLED_COLOR)} for g, lab in zip(got, labelled) if not lab)
    colours = {name: rgb(colour) for name, colour, _ in views.color_by_label(app.labeler.point_labels()).legend}
    assert all(g == colours[name] for g, name in zip(got, app.labeler.point_labels()) if name)
    assert all(abs(c[3] - views.CONFIDENCE_OPACITY) < 0.01 for c, lab in zip(rgba, labelled) if not lab)


def test_an_ingest_while_the_page_is_open_is_picked_up(driver, served, project, elpv_dir, tmp_path, monkeypatch):
    from labeler.app import layout

    monkeypatch.setattr(layout, "POLL_MS", 10 * 60 * 1000)  # the key finds the change, not the poll
    srv, app = served
    photos = _reroot(project, elpv_dir, tmp_path)
    n0 = app.labeler.n_points
    open_dashboard(driver, srv.url, n0)
    big = max(panels.cluster_rows(app.labeler), key=lambda r: r["size"] if r["cluster"] >= 0 else -1)["cluster"]
    before = project.store.cluster_members(big)
    driver.find_element(By.CSS_SELECTOR, f".cluster-card[data-cluster='{big}'] .btn").click()
    wait_until(lambda: len(thumb_ids(driver, "#cluster-grid .thumb-btn")) == min(len(before), 40), T, "grid")
    callbacks_idle(driver)

    add_photos(project, photos)  # a real ingest: 4 new photos placed into the clustering
    after = project.store.cluster_members(big)
    box = driver.find_element(By.ID, "cluster-label-input")
    box.send_keys("mono", Keys.ENTER)
    # Enter on the clustering from before the ingest: the page reloads and says so; nothing is labelled.
    text = message(driver, "4 new photo(s) added by `labeler ingest`): the map and clusters were reloaded")
    assert "Nothing was done" in text and not project.store.labels()
    if after == before:  # the open cluster got none of them: it stays open, Enter again labels it
        callbacks_idle(driver)
        press(driver, Keys.ENTER)
    else:  # it got some: closed; the annotator opens it again and looks before labelling
        assert "was closed: its images changed" in text
        wait_until(lambda: not driver.find_element(By.ID, "cluster-detail").is_displayed(), T, "closed")
        driver.find_element(By.CSS_SELECTOR, f".cluster-card[data-cluster='{big}'] .btn").click()
        wait_until(lambda: f"{len(after):,} images" in text_of(driver, "#cluster-title"), T, "cluster reloaded")
        callbacks_idle(driver)
        driver.find_element(By.ID, "cluster-label-button").click()
    text = message(driver, "Labelled")
    assert "Conflict" not in text and f"Labelled {len(after):,} image(s) of cluster {big}" in text
    assert all(project.store.labels().get(i) == "mono" for i in after)
    # The map was redrawn with the new photos on it.
    wait_until(lambda: driver.execute_script(f"return {GRAPH_JS}._fullData[0]._length") == n0 + 4, T, "map")
