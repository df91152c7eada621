"""End-to-end, in headless Chromium, acting as a person does: real key presses sent to the
focused element (selenium ActionChains) and real clicks, no emitted or synthetic events.

- The name dialog takes the focus and Tab stays in it.
- Enter twice labels one cluster (the second Enter cannot label the next cluster), and
  `n` right after Enter opens the next cluster instead of being typed into a box; Esc
  leaves a text box.
- Labelled images start unticked; ticking one relabels it (the message says replaced 1).
- A re-clustering in the middle of the keyboard loop: the next `n` reloads the page
  instead of acting; the poll reloads a page nobody touches.
- Two annotators whose actions overlap undo in turn: bob's images end unlabelled.

Fixtures and helpers as in test_app_browser.py (one Chromium for the module, a fresh
copy of the 80-image project per test).
"""

from __future__ import annotations

import pytest

pytest.importorskip("selenium")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from browser_helpers import ServerThread, chrome_driver  # noqa: E402
from labeler import labels as lab  # noqa: E402
from labeler.app import create_app, layout, panels  # noqa: E402
from labeler.app.panels import PER_PAGE  # noqa: E402
from labeler.app.viewer import next_cluster  # noqa: E402
from labeler.project import Project  # noqa: E402
from test_app_browser import (GRAPH_JS, callbacks_idle, driver, download_dir, text_of,  # noqa: E402,F401
                              thumb_ids, wait_until)

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning:selenium.*")]

T = 60


def press(drv, *keys):
    """Key presses to whatever has the focus, as a keyboard sends them."""
    ActionChains(drv).send_keys(*keys).perform()


def shot(drv, name: str) -> None:
    """Save a screenshot to $LABELER_SCREENSHOTS/<name>.png when that is set (to look at)."""
    import os

    where = os.environ.get("LABELER_SCREENSHOTS")
    if where:
        os.makedirs(where, exist_ok=True)
        drv.save_screenshot(os.path.join(where, f"{name}.png"))


def focused(drv) -> str:
    return drv.execute_script("return document.activeElement ? (document.activeElement.id || "
                              "document.activeElement.tagName.toLowerCase()) : ''")


def message(drv, contains: str) -> str:
    """The message bar's text once it contains ``contains`` (read once, see test_app_browser.message)."""
    def shown():
        text = text_of(drv, "#message")
        return text if contains in text else None

    return wait_until(shown, T, f"message {contains!r}")


def open_cluster_id(drv):
    t = text_of(drv, "#cluster-title")
    if not drv.find_element(By.ID, "cluster-detail").is_displayed() or not t:
        return None
    return -1 if t.startswith("Noise") else int(t.split()[1])


def box_value(drv) -> str:
    return drv.find_element(By.ID, "cluster-label-input").get_attribute("value")


def start(drv, url: str, name: str, n_points: int) -> None:
    """Load the page and answer the name dialog with the keyboard only."""
    drv.get(url)
    wait_until(lambda: focused(drv) == "name-input", T, "the name dialog's box has the focus")
    shot(drv, "name-dialog")
    press(drv, Keys.TAB)
    assert focused(drv) == "name-save"  # Tab stays in the dialog ...
    press(drv, Keys.TAB)
    assert focused(drv) == "name-input"  # ... and comes round again
    press(drv, Keys.SHIFT, Keys.TAB)
    assert focused(drv) == "name-save"
    press(drv, Keys.SHIFT, Keys.TAB)
    press(drv, name, Keys.ENTER)
    wait_until(lambda: not drv.find_element(By.ID, "name-dialog").is_displayed(), T, "dialog closed")
    wait_until(lambda: drv.execute_script(
        f"const g = {GRAPH_JS}; return g && g._fullData && g._fullData[0]._length") == n_points, T, "map drawn")
    wait_until(lambda: drv.find_elements(By.CSS_SELECTOR, ".cluster-card"), T, "cluster cards")
    assert drv.find_element(By.ID, "annotator-name").text == name


def wait_grid(drv, project, cluster) -> list[int]:
    n = min(len(project.store.cluster_members(cluster)), PER_PAGE)
    wait_until(lambda: open_cluster_id(drv) == cluster and len(thumb_ids(drv, "#cluster-grid .thumb-btn")) == n,
               T, f"cluster {cluster}'s grid")
    return thumb_ids(drv, "#cluster-grid .thumb-btn")


def ticks(drv) -> dict[int, bool]:
    """{image id: ticked} of the open cluster's grid page."""
    import json

    out = {}
    for el in drv.find_elements(By.CSS_SELECTOR, "#cluster-grid .thumb-check"):
        out[json.loads(el.get_attribute("id"))["id"]] = el.find_element(By.TAG_NAME, "input").is_selected()
    return out


@pytest.fixture()
def app_at(project):
    """The dashboard of the test's project, served; yields (url, app)."""
    app = create_app(project)
    with ServerThread(app.server) as srv:
        yield srv.url, app

@pytest.fixture()
def bob():
    """A second browser for a second annotator (skipped when Chromium cannot start twice)."""
    try:
        drv = chrome_driver()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no second Chromium: {e}")
    yield drv
    drv.quit()


def _two_annotators_ana_labels_a_cluster(driver, bob, url, actx, project, label: str) -> tuple[int, list[int]]:
    """ana and bob open the dashboard; ana presses n, l, the label and Enter. Returns the
    cluster she labelled and its members (every one now hers)."""
    start(driver, url, "ana", actx.n_points)
    start(bob, url, "bob", actx.n_points)
    press(driver, "n")
    wait_until(lambda: open_cluster_id(driver) is not None, T, "ana's cluster")
    c = open_cluster_id(driver)
    wait_grid(driver, project, c)
    press(driver, "l", label, Keys.ENTER)
    message(driver, f"as '{label}'")
    members = project.store.cluster_members(c)
    assert {project.store.labels().get(i) for i in members} == {label}
    return c, members



def test_enter_twice_labels_one_cluster_and_n_after_enter_opens_the_next(driver, app_at, project):
    url, app = app_at
    actx = app.labeler
    start(driver, url, "ana", actx.n_points)
    press(driver, "n")
    wait_until(lambda: open_cluster_id(driver) is not None, T, "first cluster")
    first = open_cluster_id(driver)
    wait_grid(driver, project, first)

    # Esc leaves a text box: the keys after it are shortcuts, not text.
    press(driver, "l")
    wait_until(lambda: focused(driver) == "cluster-label-input", T, "l focuses the label box")
    press(driver, "x", Keys.ESCAPE)
    assert focused(driver) != "cluster-label-input"
    press(driver, Keys.BACK_SPACE)  # not typed into the box either
    assert box_value(driver) == "x"

    # l, mono, Enter, Enter, n: as fast as the keys go.
    press(driver, "l", Keys.BACK_SPACE, "mono", Keys.ENTER, Keys.ENTER, "n")
    members = project.store.cluster_members(first)
    wait_until(lambda: set(project.store.labels()) == set(members), T, "Enter labelled the open cluster")
    second = next_cluster(actx, first, unlabelled_only=True)
    third = next_cluster(actx, second, 1)
    wait_until(lambda: open_cluster_id(driver) == third, T, "n opened the cluster after the one Enter opened")
    callbacks_idle(driver)
    labels = project.store.labels()
    assert set(labels) == set(members) and set(labels.values()) == {"mono"}  # one cluster only
    assert box_value(driver) == "" and focused(driver) != "cluster-label-input"  # cleared, and left
    shot(driver, "enter-enter-n")
    # p goes back: to the cluster Enter opened, or, when that was the last one (n stayed on
    # it: the 80 photos may make only two clusters), to the one before it.
    back = next_cluster(actx, third, -1)
    assert back == second or third == second
    press(driver, "p")  # shortcut keys work at once
    wait_until(lambda: open_cluster_id(driver) == back, T,
               f"p: back to {back} (focus on {focused(driver)!r}, open {open_cluster_id(driver)!r}, "
               f"first {first}, second {second}, third {third}, message {text_of(driver, '#message')!r})")
    assert box_value(driver) == ""
    assert not any(i in project.store.labels() for i in project.store.cluster_members(second))


def test_labelled_images_start_unticked_and_a_tick_relabels_one(driver, app_at, project):
    url, app = app_at
    members = project.store.cluster_members(0)
    held = members[:3]
    lab.label_images(project, held, "poly", annotator="bob")  # another annotator's labels
    start(driver, url, "ana", app.labeler.n_points)
    driver.find_element(By.CSS_SELECTOR, ".cluster-card[data-cluster='0'] .btn").click()
    wait_grid(driver, project, 0)
    t = ticks(driver)
    assert [i for i, on in t.items() if not on] == [i for i in t if i in held]  # exactly bob's, unticked
    wait_until(lambda: "3 already labelled (poly 3 by bob): tick to relabel" in text_of(driver, "#cluster-labelled-note"),
               T, "note on the labelled images")

    driver.find_element(By.CSS_SELECTOR, f"#cluster-grid .thumb-check[id*='\"id\":{held[0]},'] input").click()
    wait_until(lambda: "1 labelled image(s) ticked" in text_of(driver, "#cluster-labelled-note"), T, "tick noted")
    assert "2 already labelled (poly 2 by bob)" in text_of(driver, "#cluster-labelled-note")
    shot(driver, "labelled-unticked")
    driver.find_element(By.ID, "cluster-label-input").click()
    press(driver, "mono")
    driver.find_element(By.ID, "cluster-label-button").click()
    text = message(driver, "Labelled")
    n = len(members) - 2
    assert text.startswith(f"Labelled {n} image(s) of cluster 0 as 'mono'; replaced 1 earlier label(s) "
                           f"(poly 1 by bob); 2 already labelled left unchanged (poly 2 by bob)"), text
    rows = {r["image_id"]: r for r in project.store.label_rows()}
    assert rows[held[0]]["label"] == "mono" and rows[held[0]]["annotator"] == "ana"
    assert all(rows[i]["label"] == "poly" and rows[i]["annotator"] == "bob" for i in held[1:])
    assert all(rows[i]["label"] == "mono" for i in members if i not in held[1:])
    wait_until(lambda: text_of(driver, "#cluster-labelled-note") ==
               f"{len(members)} already labelled (mono {n} by ana, poly 2 by bob): tick to relabel", T, "note after")
    assert not any(ticks(driver).values())  # all labelled now: all unticked, nothing left chosen
    shot(driver, "relabel-message")


def _cluster_list_shows(drv, actx) -> bool:
    """Whether the page's cluster list and legend are those of the current clustering."""
    rows = [r for r in panels.cluster_rows(actx) if r["cluster"] >= 0]
    big = max(rows, key=lambda r: r["size"])
    return (f"({len(rows)} clusters" in text_of(drv, "#cluster-list-pages")
            and f"cluster {big['cluster']} {big['size']:,}" in text_of(drv, "#map-legend"))


def _recluster(project) -> int:
    """`labeler cluster --method kmeans --k N` from another process's point of view."""
    from labeler.pipeline import recluster

    other = Project(project.root)
    try:
        k = len([s for s in other.store.cluster_summaries() if s["cluster"] >= 0]) + 2
        return recluster(other, other.settings(method="kmeans", k=k), say=lambda _: None)
    finally:
        other.store.close()


def test_a_recluster_in_the_middle_of_the_keyboard_loop(driver, project, monkeypatch):
    monkeypatch.setattr(layout, "POLL_MS", 10 * 60 * 1000)  # only the keys find the change out
    app = create_app(project)
    actx = app.labeler
    with ServerThread(app.server) as srv:
        start(driver, srv.url, "ana", actx.n_points)
        press(driver, "n")
        wait_until(lambda: open_cluster_id(driver) is not None, T, "first cluster")
        first = open_cluster_id(driver)
        wait_grid(driver, project, first)
        press(driver, "l", "mono", Keys.ENTER)
        message(driver, "as 'mono'")
        second = next_cluster(actx, first, unlabelled_only=True)
        wait_grid(driver, project, second)
        before = project.store.labels()

        _recluster(project)  # the CLI re-clusters while the page shows the old clustering
        press(driver, "l", "poly", Keys.ENTER)  # Enter on a cluster of the old clustering
        text = message(driver, "The clustering changed (re-clustered: kmeans")
        assert "the map and clusters were reloaded" in text and "Nothing was done" in text
        shot(driver, "recluster-refused")
        assert project.store.labels() == before  # nothing acted on the unseen clustering
        wait_until(lambda: _cluster_list_shows(driver, actx), T, "cluster list and legend reloaded")

        press(driver, "n")  # now n and Enter act on the clustering the page shows
        wait_until(lambda: open_cluster_id(driver) is not None, T, "a cluster of the new clustering")
        c = open_cluster_id(driver)
        grid = wait_grid(driver, project, c)
        assert set(grid) <= set(project.store.cluster_members(c))
        assert box_value(driver) == "poly" and focused(driver) != "cluster-label-input"  # kept: refused
        press(driver, Keys.ENTER)
        text = message(driver, f"of cluster {c}")  # labelled, or all of it held a label already
        now = project.store.labels()
        new = {i for i in now if now[i] != before.get(i)}
        assert new <= set(project.store.cluster_members(c)) and {now[i] for i in new} <= {"poly"}, text
        assert ("as 'poly'" in text) == bool(new), text


def test_the_page_reloads_by_itself_when_the_clustering_changes(driver, app_at, project):
    url, app = app_at
    start(driver, url, "ana", app.labeler.n_points)
    driver.find_element(By.CSS_SELECTOR, ".cluster-card[data-cluster='0'] .btn").click()
    wait_grid(driver, project, 0)
    shown = project.store.current_clustering()["id"]
    _recluster(project)
    text = message(driver, "The clustering changed (re-clustered: kmeans")  # the poll, no key pressed
    assert "Nothing was done" not in text
    assert f"`labeler cluster --use {shown}` goes back" in text  # the way back, named
    wait_until(lambda: _cluster_list_shows(driver, app.labeler), T, "cluster list and legend reloaded")
    if set(project.store.cluster_members(0)) != set(thumb_ids(driver, "#cluster-grid .thumb-btn")):
        wait_until(lambda: open_cluster_id(driver) is None, T, "the changed open cluster closed")


def test_two_annotators_undo_in_turn_and_bobs_images_end_unlabelled(driver, bob, app_at, project):
    url, app = app_at
    c, members = _two_annotators_ana_labels_a_cluster(driver, bob, url, app.labeler, project, "ana-z")

    # bob opens the same cluster: ana's labels start unticked; he ticks two and relabels them
    bob.find_element(By.CSS_SELECTOR, f".cluster-card[data-cluster='{c}'] .btn").click()
    wait_grid(bob, project, c)
    assert not any(ticks(bob).values())
    chosen = members[:2]
    for k, i in enumerate(chosen, 1):
        bob.find_element(By.CSS_SELECTOR, f"#cluster-grid .thumb-check[id*='\"id\":{i},'] input").click()
        wait_until(lambda: f"{k} labelled image(s) ticked" in text_of(bob, "#cluster-labelled-note"), T, "tick")
    bob.find_element(By.ID, "cluster-label-input").click()
    press(bob, "defect")
    bob.find_element(By.ID, "cluster-label-button").click()
    text = message(bob, "replaced 2 earlier label(s) (ana-z 2 by ana)")
    assert text.startswith("Labelled 2 image(s)")

    press(driver, "u")  # ana undoes her cluster label: bob's two keep his label
    message(driver, "Undone")
    now = project.store.labels()
    assert {now.get(i) for i in chosen} == {"defect"} and not any(i in now for i in members[2:])
    press(bob, "u")  # bob undoes his: his images go back to what is in force without it: nothing
    message(bob, "Undone")
    now = project.store.labels()
    assert not any(i in now for i in members), {i: now.get(i) for i in members}


def test_enter_submits_the_next_cards_label_box_and_leaves_it(driver, app_at, project):
    url, app = app_at
    start(driver, url, "ana", app.labeler.n_points)
    driver.find_element(By.XPATH, "//*[contains(@class,'tab') and normalize-space()='Next']").click()
    box = wait_until(lambda: driver.find_element(By.CSS_SELECTOR, "#next-list .next-card input[type=text]"), T,
                     "a Next card's label box")
    import json

    box_id = box.get_attribute("id")
    image_id = json.loads(box_id)["id"]
    box.click()
    press(driver, "crack", Keys.ENTER)
    message(driver, f"Labelled image {image_id} as 'crack'")
    assert project.store.labels() == {image_id: "crack"}
    assert focused(driver) != box_id  # Enter left the box


def test_enter_on_a_cluster_someone_just_labelled_stays_there_until_a_tick_relabels(driver, bob, app_at, project):
    """bob's page opens the cluster ana labelled a moment ago and he presses l poly Enter:
    nothing is labelled (her labels are not his to replace unseen), and the page stays on
    that cluster with 'poly' in the box, so the message's 'tick them to relabel' can be
    done there; a tick and Enter then relabel exactly that image and move on."""
    url, app = app_at
    c, members = _two_annotators_ana_labels_a_cluster(driver, bob, url, app.labeler, project, "mono")
    before = {r["image_id"]: (r["label"], r["annotator"]) for r in project.store.label_rows()}
    assert {before[i] for i in members} == {("mono", "ana")}

    press(bob, "n")  # the first cluster in the list: the one ana just labelled
    wait_until(lambda: open_cluster_id(bob) == c, T, "bob's n opens ana's cluster")
    wait_grid(bob, project, c)
    press(bob, "l", "poly", Keys.ENTER)
    text = message(bob, "Nothing labelled")
    assert f"all {len(members)} image(s) of cluster {c} already hold a label (mono {len(members)} by ana)" in text
    callbacks_idle(bob)
    assert open_cluster_id(bob) == c and box_value(bob) == "poly"  # stayed, the label kept
    assert {r["image_id"]: (r["label"], r["annotator"]) for r in project.store.label_rows()} == before
    wait_until(lambda: not any(ticks(bob).values()), T, "ana's labels shown unticked")
    shot(bob, "nothing-labelled-stays")

    one = members[0]
    bob.find_element(By.CSS_SELECTOR, f"#cluster-grid .thumb-check[id*='\"id\":{one},'] input").click()
    wait_until(lambda: "1 labelled image(s) ticked" in text_of(bob, "#cluster-labelled-note"), T, "tick noted")
    press(bob, "l", Keys.ENTER)
    text = message(bob, "replaced 1 earlier label(s) (mono 1 by ana)")
    assert text.startswith(f"Labelled 1 image(s) of cluster {c} as 'poly'"), text
    rows = {r["image_id"]: (r["label"], r["annotator"]) for r in project.store.label_rows()}
    assert rows[one] == ("poly", "bob") and all(rows[i] == ("mono", "ana") for i in members if i != one)
    wait_until(lambda: open_cluster_id(bob) != c, T, "a relabel that wrote moves on")
