"""End-to-end (real headless Chromium): the large view, keyboard-only labelling, the
map's legend and open-cluster highlight, and screens that stay in step after an
action. Fixtures and helpers as in test_app_browser.py."""

from __future__ import annotations

import json

import pytest
from PIL import Image, ImageOps

pytest.importorskip("selenium")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from labeler.app import views  # noqa: E402
from test_app_browser import (GRAPH_JS, driver, download_dir, message, open_dashboard,  # noqa: E402,F401
                              served, text_of, thumb_ids, wait_until)

pytestmark = [pytest.mark.browser,
              pytest.mark.filterwarnings("ignore::DeprecationWarning:selenium.*")]

T = 60  # generous: the test machine is busy


def press(driver, *keys):
    """Keys to the focused element (the page body after a blur): no mouse."""
    ActionChains(driver).send_keys(*keys).perform()


def open_cluster_id(driver):
    """The cluster number in the open cluster's title (None when closed)."""
    t = text_of(driver, "#cluster-title")
    if not driver.find_element(By.ID, "cluster-detail").is_displayed() or not t:
        return None
    return -1 if t.startswith("Noise") else int(t.split()[1])


def test_large_view_opens_from_a_thumbnail_moves_and_closes_with_esc(driver, served, project):
    srv, app = served
    open_dashboard(driver, srv.url, app.labeler.n_points)
    driver.find_element(By.CSS_SELECTOR, ".cluster-card[data-cluster='0'] .btn").click()
    wait_until(lambda: thumb_ids(driver, "#cluster-grid .thumb-btn"), T, "cluster grid")
    first = thumb_ids(driver, "#cluster-grid .thumb-btn")[0]
    driver.find_element(By.CSS_SELECTOR, "#cluster-grid .thumb-btn").click()
    wait_until(lambda: driver.find_element(By.ID, "lv-overlay").is_displayed(), T, "large view open")
    img = driver.find_element(By.ID, "lv-img")
    assert img.get_attribute("src").endswith(f"/view/{first}")
    wait_until(lambda: driver.execute_script("return document.getElementById('lv-img').naturalWidth") > 0,
               T, "full-size image decoded")
    path = project.store.get_image(first)["path"]
    wait_until(lambda: f"#{first} · {path.rsplit('/', 1)[-1]}" in text_of(driver, "#lv-facts"), T, "facts")
    assert "cluster 0" in text_of(driver, "#lv-facts") and "label: —" in text_of(driver, "#lv-facts")
    wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#lv-neighbours .thumb-btn")) == 9, T,
               "neighbours")
    # The route serves a JPEG capped in size, with a cache header.
    assert driver.execute_script("return document.getElementById('lv-img').naturalWidth") <= 2048

    # Arrow right: the next image of the same cluster; Esc closes.
    driver.execute_script("document.activeElement.blur()")
    second = thumb_ids(driver, "#cluster-grid .thumb-btn")[1]
    press(driver, Keys.ARROW_RIGHT)
    wait_until(lambda: img.get_attribute("src").endswith(f"/view/{second}"), T, "next image in cluster")
    press(driver, Keys.ESCAPE)
    wait_until(lambda: not driver.find_element(By.ID, "lv-overlay").is_displayed(), T, "closed by Esc")

    # A neighbour thumbnail moves the view to it.
    third = thumb_ids(driver, "#cluster-grid .thumb-btn")[2]
    driver.find_elements(By.CSS_SELECTOR, "#cluster-grid .thumb-btn")[2].click()
    wait_until(lambda: f"#{third} ·" in text_of(driver, "#lv-facts"), T, "third image shown")
    nb = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#lv-neighbours .thumb-btn"), T, "nbs")
    target = json.loads(nb[0].get_attribute("id"))["id"]
    nb[0].click()
    wait_until(lambda: img.get_attribute("src").endswith(f"/view/{target}"), T, "moved to neighbour")


def test_label_three_clusters_with_the_keyboard_only(driver, served, project):
    srv, app = served
    driver.get(srv.url)
    box = wait_until(lambda: driver.find_element(By.ID, "name-input"), T, "name dialog")
    wait_until(lambda: box.is_displayed(), T, "name dialog shown")
    box.send_keys("kim", Keys.ENTER)  # the dialog's box has the focus: typing only
    wait_until(lambda: not driver.find_element(By.ID, "name-dialog").is_displayed(), T, "dialog closed")
    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, ".cluster-card"), T, "cluster cards")
    driver.execute_script("document.activeElement.blur()")

    press(driver, "n")  # opens the first cluster of the list
    wait_until(lambda: open_cluster_id(driver) is not None, T, "first cluster opened")
    done = []
    for step, keys in enumerate([("l", "mono", Keys.ENTER), ("l", "poly", Keys.ENTER), ("2", Keys.ENTER)]):
        cluster = open_cluster_id(driver)
        if cluster is None:  # every cluster is labelled: Enter had nowhere to go
            break
        n = len(project.store.cluster_members(cluster))
        wait_until(lambda: len(thumb_ids(driver, "#cluster-grid .thumb-btn")) == min(n, 40), T, "grid")
        if keys[0] == "2":  # the 2nd label by name: 'poly'
            driver.execute_script("document.activeElement.blur()")
            press(driver, "2")
            wait_until(lambda: driver.find_element(By.ID, "cluster-label-input").get_attribute("value") == "poly",
                       T, "label from key 2")
            press(driver, Keys.ENTER)
        else:
            driver.execute_script("document.activeElement.blur()")
            press(driver, *keys)
        wait_until(lambda: open_cluster_id(driver) != cluster, T, f"next cluster after step {step}")
        done.append((cluster, "mono" if step == 0 else "poly"))
    labels = project.store.labels()
    for cluster, lab in done:
        members = project.store.cluster_members(cluster)
        assert members and all(labels.get(i) == lab for i in members), (cluster, lab)
    # Three clusters, or every cluster when the fixture's clustering (a stochastic draw on
    # 80 photos) has fewer: the flow then leaves no cluster open.
    assert len({c for c, _ in done}) == len(done) >= 2
    assert len(done) == 3 or open_cluster_id(driver) is None
    assert {r["annotator"] for r in project.store.label_rows()} == {"kim"}
    n_lab = len(labels)
    wait_until(lambda: text_of(driver, "#progress-text").startswith(f"{n_lab} /"), T, "progress")


def test_legend_and_highlight_follow_the_open_cluster(driver, served, project):
    srv, app = served
    open_dashboard(driver, srv.url, app.labeler.n_points)
    wait_until(lambda: "solid = labelled" in text_of(driver, "#map-legend"), T, "legend")
    n0 = len(project.store.cluster_members(0))
    driver.find_element(By.CSS_SELECTOR, ".cluster-card[data-cluster='0'] .btn").click()
    wait_until(lambda: "outlined: cluster 0" in text_of(driver, "#map-legend"), T, "legend names the open cluster")
    assert "cluster 0" in driver.find_element(By.CSS_SELECTOR, "#map-legend .chip-open").text
    wait_until(lambda: driver.execute_script(f"return {GRAPH_JS}._fullData[2]._length") == n0, T, "rings")
    # The alpha of each point's colour as plotly hands it to WebGL (the state rides in the colour codes).
    op = driver.execute_script(f"return {GRAPH_JS}._fullLayout._plots.xy._scene.markerOptions[0].colors"
                               ".map(c => c[3])")
    clusters = app.labeler.assignment().clusters
    inside = {round(o, 3) for o, c in zip(op, clusters) if c == 0}
    outside = {round(o, 3) for o, c in zip(op, clusters) if c != 0}
    assert max(outside) < min(inside)  # the others are dimmed
    # Robust default view: the axis range leaves out the outer 1 % and 'fit all' shows them.
    xr = driver.execute_script(f"return {GRAPH_JS}._fullLayout.xaxis.range")
    driver.find_element(By.ID, "map-fit").click()
    xs = views.grid_xy(app.labeler)[:, 0]  # the figure's units
    wait_until(lambda: driver.execute_script(f"return {GRAPH_JS}._fullLayout.xaxis.range")[0] <= xs.min()
               and driver.execute_script(f"return {GRAPH_JS}._fullLayout.xaxis.range")[1] >= xs.max(), T, "fit all")
    assert xr is not None


def test_selection_count_and_same_upload_twice_stay_in_step(driver, served, project, tmp_path):
    srv, app = served
    open_dashboard(driver, srv.url, app.labeler.n_points)
    driver.execute_script(f"""
        const g = {GRAPH_JS};
        const pts = [0, 1, 2, 3].map(i => ({{curveNumber: 0, pointNumber: i, pointIndex: i}}));
        g.emit('plotly_selected', {{points: pts}});
    """)
    wait_until(lambda: "0 labelled, 4 unlabelled" in text_of(driver, "#selection-title"), T, "selection count")
    driver.find_element(By.ID, "selection-label-input").send_keys("mono")
    driver.find_element(By.ID, "selection-label-button").click()
    message(driver, "Labelled 4")
    wait_until(lambda: "4 labelled, 0 unlabelled" in text_of(driver, "#selection-title"), T, "count after action")

    # The same file uploaded twice is searched twice: between the two, a click on a map
    # point shows another image's neighbours; the second upload must bring the file back.
    driver.find_element(By.XPATH, "//*[contains(@class,'tab') and normalize-space()='Search']").click()
    # A new photo (mirrored: new bytes), so it is shown as "Query: name"; a photo already in
    # the collection would be recognised and shown as "#id · name" (tested in test_app_browser).
    image_id = int(app.labeler.point_ids[10])
    photo = tmp_path / "new-photo.png"
    with Image.open(project.image_path(project.store.get_image(image_id)["path"])) as im:
        ImageOps.mirror(im).save(photo)
    driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(photo))
    wait_until(lambda: "Query: " + photo.name in text_of(driver, "#search-query"), 90, "first search")
    # A new photo is shown by a small preview (an image that loaded, never a broken one).
    wait_until(lambda: driver.execute_script(
        "const i = document.getElementById('search-preview'); return !!i && i.offsetParent !== null"
        " && i.src.startsWith('data:image/jpeg') && i.complete && i.naturalWidth > 0"), T, "the photo's preview")
    other = int(app.labeler.point_ids[3])
    driver.execute_script(f"{GRAPH_JS}.emit('plotly_click', {{points: [{{curveNumber: 0, pointNumber: 3}}]}})")
    wait_until(lambda: f"#{other} ·" in text_of(driver, "#search-query"), T, "map click search")
    upload = wait_until(lambda: driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]"), T, "upload box")
    upload.send_keys(str(photo))
    wait_until(lambda: "Query: " + photo.name in text_of(driver, "#search-query"), 90, "same file searched again")


def test_after_a_split_the_new_clusters_are_named_without_a_reload(driver, served, project):
    srv, app = served
    open_dashboard(driver, srv.url, app.labeler.n_points)
    before = {r["cluster"] for r in project.store.cluster_summaries()}
    driver.find_element(By.XPATH, "//*[contains(@class,'tab') and normalize-space()='Refine']").click()
    box = wait_until(lambda: driver.find_element(By.ID, "split-cluster"), T, "split box")
    box.send_keys("0")
    driver.find_element(By.ID, "split-preview-button").click()
    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#split-preview-view .split-part"), T, "preview")
    driver.find_element(By.ID, "split-apply").click()
    message(driver, "Split cluster 0")
    new = sorted({r["cluster"] for r in project.store.cluster_summaries()} - before)
    assert len(new) >= 2
    # The map (legend by cluster, cluster-id numbers), the cluster list and the merge
    # options name the new clusters at once.
    wait_until(lambda: all(f"cluster {c} " in text_of(driver, "#map-legend") for c in new), T, "legend")
    driver.find_element(By.XPATH, "//*[contains(@class,'tab') and normalize-space()='Clusters']").click()
    driver.find_element(By.CSS_SELECTOR, "#cluster-sort input[value='unlabelled']").click()
    wait_until(lambda: any(driver.find_elements(By.CSS_SELECTOR, f".cluster-card[data-cluster='{c}']")
                           for c in new), T, "new cluster cards")
    texts = driver.execute_script(f"return {GRAPH_JS}.layout.annotations.map(a => a.text)")
    assert "0" not in texts or 0 in {r["cluster"] for r in project.store.cluster_summaries()}
