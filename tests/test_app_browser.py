"""End-to-end: the dashboard in a real headless Chromium (selenium), served by a
werkzeug thread on 127.0.0.1. Each test acts in the page, then checks both the
project database and what the page shows.

Needs chromium + chromedriver (/usr/bin or $CHROME_BIN / $CHROMEDRIVER); skipped
when they are missing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("selenium")
from selenium.common.exceptions import TimeoutException, WebDriverException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

from labeler.app import create_app  # noqa: E402
from labeler.app.panels import PER_PAGE  # noqa: E402
from browser_helpers import ServerThread, chrome_driver  # noqa: E402
from labeler.export import export_csv_text  # noqa: E402

pytestmark = [pytest.mark.browser,
              pytest.mark.filterwarnings("ignore::DeprecationWarning:selenium.*")]

GRAPH_JS = "document.querySelector('#map .js-plotly-plot')"

# Every wait is for a condition, with a limit generous enough for a busy 2-core CI machine
# (Chromium, the werkzeug server and the test share the cores). A wait ends as soon as its
# condition holds, so a large limit costs nothing when all is well.
TIMEOUT = float(os.environ.get("LABELER_BROWSER_TIMEOUT", "90"))

# Dash's own test helper waits the same way (dash.testing.dash_page._wait_for_callbacks):
# no callback requested, prioritized, blocked, executing or watched in the renderer's store.
CALLBACKS_IDLE_JS = """
    if (!window.store) { return false; }
    const cbs = Object.assign({}, window.store.getState().callbacks);
    delete cbs.stored; delete cbs.completed;
    return Object.values(cbs).every(q => q.length === 0);
"""


@pytest.fixture(scope="module")
def download_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def driver(download_dir):
    if not (shutil.which("chromedriver") or Path("/usr/bin/chromedriver").exists()):
        pytest.skip("chromedriver not installed")
    try:
        d = chrome_driver(download_dir=str(download_dir))
    except WebDriverException as e:
        pytest.skip(f"no headless Chromium: {e.msg}")
    d.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    yield d
    d.quit()


@pytest.fixture()
def served(project):
    app = create_app(project)
    with ServerThread(app.server) as srv:
        yield srv, app


def wait_until(fn, timeout=TIMEOUT, what="condition"):
    """Poll ``fn`` until it returns something truthy (selenium's WebDriverWait); return that."""
    try:
        return WebDriverWait(None, timeout, poll_frequency=0.1, ignored_exceptions=(WebDriverException,)).until(
            lambda _: fn())
    except TimeoutException:
        try:
            last = fn()
        except WebDriverException as e:
            last = e.msg
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})") from None


def callbacks_idle(driver) -> None:
    """Wait until the Dash renderer has no callback in flight (so State read next is current)."""
    wait_until(lambda: driver.execute_script(CALLBACKS_IDLE_JS), what="Dash callbacks to finish")


def text_of(driver, css) -> str:
    return driver.execute_script(f"const e = document.querySelector({css!r}); return e ? e.innerText : ''")


def open_dashboard(driver, url, n_points, name="tester"):
    driver.get(url)
    box = wait_until(lambda: driver.find_element(By.ID, "name-input"), what="name dialog")
    wait_until(lambda: box.is_displayed(), what="name dialog shown")
    box.send_keys(name)
    driver.find_element(By.ID, "name-save").click()
    wait_until(lambda: not driver.find_element(By.ID, "name-dialog").is_displayed(), what="dialog closed")
    wait_until(lambda: driver.execute_script(
        f"const g = {GRAPH_JS}; return g && g._fullData && g._fullData[0]._length") == n_points,
        what="map points drawn")
    assert driver.find_element(By.ID, "annotator-name").text == name


def thumb_ids(driver, css) -> list[int]:
    return [json.loads(b.get_attribute("id"))["id"] for b in driver.find_elements(By.CSS_SELECTOR, css)]


def message(driver, contains) -> str:
    """The message bar's text once it contains ``contains`` (read once: a later message may
    replace it between two reads)."""
    def shown():
        text = text_of(driver, "#message")
        return text if contains in text else None

    return wait_until(shown, what=f"message {contains!r}")


def test_label_a_cluster_with_unticked_images(driver, served, project):
    srv, app = served
    open_dashboard(driver, srv.url, app.labeler.n_points)
    # The map is drawn by plotly.js's gl2d partial bundle in assets/; the full bundle is never fetched.
    scripts = driver.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")
    assert any(s.split("?")[0].endswith("/assets/plotly-gl2d.min.js") for s in scripts), scripts
    assert not any(s.split("?")[0].endswith("/plotly.min.js") for s in scripts), scripts
    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, ".cluster-card"), what="cluster cards")
    assert "needs review" in driver.page_source or "Cluster 0" in text_of(driver, "#cluster-list")
    driver.find_element(By.CSS_SELECTOR, ".cluster-card[data-cluster='0'] .btn").click()
    members = project.store.cluster_members(0)
    # The grid shows one page: how many images cluster 0 holds depends on the clustering.
    on_page = min(len(members), PER_PAGE)
    wait_until(lambda: len(thumb_ids(driver, "#cluster-grid .thumb-btn")) == on_page, what="cluster grid")
    shown = thumb_ids(driver, "#cluster-grid .thumb-btn")
    assert set(shown) <= set(members)
    reps = next(s for s in project.store.cluster_summaries() if s["cluster"] == 0)["representatives"]
    assert shown[:3] == reps[:3]
    # One tick at a time: each one's callback reads the exclusions the previous one stored.
    driver.find_elements(By.CSS_SELECTOR, "#cluster-grid .thumb-check input")[0].click()
    wait_until(lambda: "1 unticked" in text_of(driver, "#cluster-excluded-note"), what="excluded note (1)")
    driver.find_elements(By.CSS_SELECTOR, "#cluster-grid .thumb-check input")[1].click()
    wait_until(lambda: "2 unticked" in text_of(driver, "#cluster-excluded-note"), what="excluded note (2)")
    callbacks_idle(driver)
    driver.find_element(By.ID, "cluster-label-input").send_keys("mono")
    callbacks_idle(driver)
    driver.find_element(By.ID, "cluster-label-button").click()
    message(driver, "Labelled")

    labels = project.store.labels()
    assert {labels.get(i) for i in shown[2:]} == {"mono"} and shown[0] not in labels and shown[1] not in labels
    assert {r["annotator"] for r in project.store.label_rows()} == {"tester"}
    n = len(members) - 2
    wait_until(lambda: text_of(driver, "#progress-text").startswith(f"{n} / {app.labeler.n_points}"),
               what="progress")
    assert f"mono {n}" in text_of(driver, "#label-counts")
    assert "2 unticked image(s) left as they are" in text_of(driver, "#message")


def test_lasso_selection_label_and_undo_with_ctrl_z(driver, served, project):
    srv, app = served
    open_dashboard(driver, srv.url, app.labeler.n_points)
    # A real mouse lasso on a WebGL canvas is flaky headless: emit Plotly's own
    # 'plotly_selected' event with the points a lasso would report, which is what
    # dcc.Graph listens to (it copies customdata = image id into selectedData).
    chosen = [int(i) for i in app.labeler.point_ids[:6]]
    driver.execute_script(f"""
        const g = {GRAPH_JS};
        const pts = [0, 1, 2, 3, 4, 5].map(i => ({{curveNumber: 0, pointNumber: i, pointIndex: i,
            x: g._fullData[0].x[i], y: g._fullData[0].y[i]}}));
        g.emit('plotly_selected', {{points: pts}});
    """)
    wait_until(lambda: len(thumb_ids(driver, "#selection-grid .thumb-btn")) == 6, what="selection grid")
    assert sorted(thumb_ids(driver, "#selection-grid .thumb-btn")) == sorted(chosen)
    assert "6 images selected" in text_of(driver, "#selection-title")
    driver.find_element(By.ID, "selection-label-input").send_keys("poly", Keys.ENTER)  # Enter submits the box
    message(driver, "Labelled 6")
    assert driver.execute_script("return document.activeElement.id") != "selection-label-input"  # and leaves it
    assert project.store.labels() == {i: "poly" for i in chosen}

    driver.find_element(By.CSS_SELECTOR, "#color-mode input[value='label']").click()
    wait_until(lambda: "poly 6" in text_of(driver, "#map-legend"), what="legend by label")
    codes = driver.execute_script(f"return Array.from({GRAPH_JS}._fullData[0].marker.color)")
    assert sorted(codes)[-6:] == [1] * 6 and codes.count(0) == app.labeler.n_points - 6

    driver.execute_script("document.activeElement.blur()")
    ActionChains(driver).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()
    message(driver, "Undone")
    assert project.store.labels() == {}
    wait_until(lambda: text_of(driver, "#progress-text").startswith("0 /"), what="progress after undo")


def test_upload_a_photo_see_neighbours_and_label_them(driver, served, project, tmp_path):
    srv, app = served
    open_dashboard(driver, srv.url, app.labeler.n_points)
    driver.find_element(By.XPATH, "//*[contains(@class,'tab') and normalize-space()='Search']").click()
    preview = driver.find_element(By.ID, "search-preview")
    assert not preview.is_displayed()  # no broken image before there is a photo
    image_id = int(app.labeler.point_ids[10])
    photo = project.image_path(project.store.get_image(image_id)["path"])
    upload = driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]")
    upload.send_keys(str(photo))
    wait_until(lambda: len(thumb_ids(driver, "#search-grid .thumb-btn")) == 12, timeout=2 * TIMEOUT, what="neighbours")
    shown = thumb_ids(driver, "#search-grid .thumb-btn")
    assert image_id not in shown  # the photo is in the collection: recognised, not its own neighbour
    assert f"#{image_id} · {photo.name}" in text_of(driver, "#search-query")  # shown as that image
    assert driver.execute_script(f"return {GRAPH_JS}.data[1].x.length") == 1  # the query star
    # A photo of the collection is shown by its thumbnail: no preview, and never a broken image.
    assert not driver.find_element(By.ID, "search-preview").is_displayed()
    assert driver.execute_script("return Array.from(document.querySelectorAll('#search-query img'))"
                                 ".every(i => i.complete && i.naturalWidth > 0)")

    driver.find_elements(By.CSS_SELECTOR, "#search-grid .thumb-check input")[0].click()
    callbacks_idle(driver)  # the untick is stored before the label button reads it
    driver.find_element(By.ID, "search-label-input").send_keys("mono")
    callbacks_idle(driver)
    driver.find_element(By.ID, "search-label-button").click()
    message(driver, "Labelled 11 neighbour(s)")
    labels = project.store.labels()
    assert set(labels) == set(shown[1:]) and {r["source"] for r in project.store.label_rows()} == {"search"}

    # A file that is not an image (whatever its name says) shows an error and changes nothing.
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    upload = driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]")
    upload.send_keys(str(fake))
    wait_until(lambda: "not a readable image" in text_of(driver, "#search-error"), what="upload error")
    assert thumb_ids(driver, "#search-grid .thumb-btn") == shown
    assert project.store.labels() == labels


def test_click_point_similar_relabel_and_download_csv(driver, served, project, download_dir):
    srv, app = served
    open_dashboard(driver, srv.url, app.labeler.n_points)
    # A click on a WebGL point, emitted as Plotly's 'plotly_click' (see the lasso test).
    first = int(app.labeler.point_ids[3])
    driver.execute_script(f"{GRAPH_JS}.emit('plotly_click', {{points: [{{curveNumber: 0, pointNumber: 3}}]}})")
    wait_until(lambda: f"#{first} ·" in text_of(driver, "#search-query"), what="clicked image opened")
    wait_until(lambda: len(thumb_ids(driver, "#search-grid .thumb-btn")) == 12, what="neighbours of the click")
    assert first not in thumb_ids(driver, "#search-grid .thumb-btn")

    # A thumbnail of a cluster card opens the large view; 'similar' there searches.
    driver.find_element(By.XPATH, "//*[contains(@class,'tab') and normalize-space()='Clusters']").click()
    btn = wait_until(lambda: driver.find_element(By.CSS_SELECTOR, ".cluster-card .thumb-btn"), what="card thumb")
    target = json.loads(btn.get_attribute("id"))["id"]
    btn.click()  # the large view; its 'similar' button opens the Search tab
    wait_until(lambda: driver.find_element(By.ID, "lv-overlay").is_displayed(), what="large view")
    driver.find_element(By.ID, "lv-search").click()
    wait_until(lambda: f"#{target} ·" in text_of(driver, "#search-query"), what="similar opened")
    assert not driver.find_element(By.ID, "lv-overlay").is_displayed()
    driver.find_element(By.ID, "image-label-input").send_keys("crack")
    callbacks_idle(driver)
    driver.find_element(By.ID, "image-label-button").click()
    message(driver, "Labelled 1")
    assert project.store.labels() == {target: "crack"}
    assert project.store.label_rows()[0]["source"] == "manual"
    wait_until(lambda: "label: crack" in text_of(driver, "#search-query"), what="query label shown")

    for f in download_dir.glob("labels*.csv"):
        f.unlink()
    driver.find_element(By.ID, "export-link").click()
    csv_file = wait_until(lambda: next(iter(download_dir.glob("labels*.csv")), None), what="download")
    wait_until(lambda: csv_file.stat().st_size > 0 and not list(download_dir.glob("*.crdownload")), what="done")
    assert csv_file.read_bytes().decode() == export_csv_text(project)  # RFC 4180 CRLF rows kept
    assert "crack" in csv_file.read_text()
