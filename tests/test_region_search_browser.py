"""Search by a region in the dashboard, in headless Chromium, with the mouse (issue 24).

The annotator opens a cat photo in the large view, presses "▭ draw a box" and drags a
box round the cat with real mouse events (selenium ActionChains: press, move, release);
"Search this region" shows the other cat photos first in the Search tab, each with its
matched region outlined on the cat. The heat map tick box and "most anomalous first"
say in one line which command to run while there are no anomaly scores; with them, the
heat map image is drawn over the large view.

The collection is the one of tests/test_region_search.py (cats pasted into gravel).
Set LABELER_SCREENSHOTS=DIR to keep screenshots of the box and the results.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("selenium")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from browser_helpers import ServerThread  # noqa: E402
from labeler.app import create_app  # noqa: E402
from labeler.project import Project  # noqa: E402
from test_app_browser import callbacks_idle, download_dir, driver, open_dashboard, text_of, wait_until  # noqa: E402,F401
from test_region_search import H, N_CAT, SIDE, W, region_project  # noqa: E402,F401

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning:selenium.*")]

T = 60

PICTURE_JS = """
const im = document.getElementById('lv-img'); const r = im.getBoundingClientRect();
const s = Math.min(r.width / im.naturalWidth, r.height / im.naturalHeight);
return {left: r.left + (r.width - im.naturalWidth * s) / 2, top: r.top + (r.height - im.naturalHeight * s) / 2,
        s: s, cx: r.left + r.width / 2, cy: r.top + r.height / 2, nw: im.naturalWidth, complete: im.complete};
"""


def shot(drv, name: str) -> None:
    import os

    where = os.environ.get("LABELER_SCREENSHOTS")
    if where:
        os.makedirs(where, exist_ok=True)
        drv.save_screenshot(os.path.join(where, f"{name}.png"))


def open_large_view(drv, image_id: int) -> None:
    """Open the large view on one image: its thumbnail on a cluster card when one is shown,
    else through the large view's store (what a thumbnail click writes)."""
    buttons = [b for b in drv.find_elements(By.CSS_SELECTOR, "#cluster-list .thumb-btn")
               if json.loads(b.get_attribute("id"))["id"] == image_id and b.is_displayed()]
    if buttons:
        buttons[0].click()
    else:
        drv.execute_script("window.dash_clientside.set_props('large-view-store', {data: arguments[0]})", image_id)
    wait_until(lambda: drv.find_element(By.ID, "lv-overlay").is_displayed(), T, "large view open")
    wait_until(lambda: (drv.find_element(By.ID, "lv-img").get_attribute("src") or "").endswith(f"/view/{image_id}")
               and drv.execute_script(PICTURE_JS)["nw"] > 0, T, "large image loaded")


def drag_box(drv, x: float, y: float, w: float, h: float) -> None:
    """Press, move and release the mouse from (x, y) to (x + w, y + h), pixels of the original image."""
    p = drv.execute_script(PICTURE_JS)
    assert p["nw"] == W  # the /view copy is the original size here
    sx, sy = p["left"] + x * p["s"], p["top"] + y * p["s"]
    ac = ActionChains(drv)  # W3C pointer actions at page coordinates: what a mouse sends
    ptr = ac.w3c_actions.pointer_action
    ptr.move_to_location(int(sx), int(sy))
    ptr.pointer_down()
    ptr.move_to_location(int(sx + w * p["s"] / 2), int(sy + h * p["s"] / 2))
    ptr.move_to_location(int(sx + w * p["s"]), int(sy + h * p["s"]))
    ptr.pointer_up()
    ac.perform()


def test_draw_a_box_with_the_mouse_and_search_that_region(driver, region_project, tmp_path):  # noqa: F811
    root, where = region_project
    p = Project(root)
    ids = {r["path"]: int(r["id"]) for r in p.store.image_table()}
    p.store.close()
    app = create_app(root)
    q = "cat02.png"
    x, y = where[q]
    with ServerThread(app.server) as srv:
        open_dashboard(driver, srv.url, app.labeler.n_points)
        open_large_view(driver, ids[q])
        transform = driver.execute_script("return document.getElementById('lv-img-wrap').style.transform")
        # Without a box the button says how to draw one.
        driver.find_element(By.ID, "lv-region-search").click()
        wait_until(lambda: "Shift+drag" in text_of(driver, "#lv-region-note"), T, "the draw-a-box hint")

        driver.find_element(By.ID, "lv-box-mode").click()
        drag_box(driver, x, y, SIDE, SIDE)
        box = wait_until(lambda: driver.execute_script(
            "const b = document.getElementById('lv-box'); return b.style.display === 'block' && b.getBoundingClientRect()"),
            T, "the box drawn")
        pic = driver.execute_script(PICTURE_JS)
        assert abs(box["left"] - (pic["left"] + x * pic["s"])) < 4 and abs(box["width"] - SIDE * pic["s"]) < 4
        # The drag drew; it did not pan the image.
        assert driver.execute_script("return document.getElementById('lv-img-wrap').style.transform") == transform
        shot(driver, "region-box-drawn")

        driver.find_element(By.ID, "lv-region-search").click()
        wait_until(lambda: not driver.find_element(By.ID, "lv-overlay").is_displayed(), T, "large view closed")
        wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#search-grid .thumb-btn .region-box")) >= N_CAT,
                   T, "results with outlines")
        callbacks_idle(driver)
        buttons = driver.find_elements(By.CSS_SELECTOR, "#search-grid .thumb-btn")
        found = [json.loads(b.get_attribute("id"))["id"] for b in buttons]
        by_id = {v: k for k, v in ids.items()}
        cats = set(where) - {q}
        assert {by_id[i] for i in found[: N_CAT - 1]} == cats, [by_id[i] for i in found]
        assert ids[q] not in found and "Search by a region" in text_of(driver, "#search-query")
        for b in buttons[: N_CAT - 1]:
            # The outline sits on the cat: its centre is within a cell of the cat's centre.
            thumb = b.rect
            o = b.find_element(By.CSS_SELECTOR, ".region-box").rect
            side = thumb["width"] / max(W, H)  # the thumbnail shows the photo whole
            top0 = thumb["y"] + (thumb["height"] - H * side) / 2
            cx = (o["x"] + o["width"] / 2 - thumb["x"]) / side
            cy = (o["y"] + o["height"] / 2 - top0) / side
            px, py = where[by_id[json.loads(b.get_attribute("id"))["id"]]]
            assert abs(cx - (px + SIDE / 2)) < 24 and abs(cy - (py + SIDE / 2)) < 18, (cx, cy, px, py)
        assert driver.find_elements(By.CSS_SELECTOR, "#search-query .query-region .region-box")
        shot(driver, "region-results")

        # No anomaly scores yet: the heat map and the sort say which command to run, in one line.
        driver.find_element(By.ID, "search-anomalous").click()
        wait_until(lambda: "--compute defect" in text_of(driver, "#search-error"), T, "the sort's one-line hint")
        open_large_view(driver, ids[q])
        driver.find_element(By.CSS_SELECTOR, "#lv-heat input").click()
        wait_until(lambda: "--compute defect" in text_of(driver, "#lv-heat-note"), T, "the heat map's hint")
        assert not driver.find_element(By.CSS_SELECTOR, "#lv-heat input").is_selected()

        try:
            from labeler.embedding.defect_features import compute_defect_features
        except ImportError:
            return
        compute_defect_features(app.labeler.project)  # bank from a sample of all images
        driver.find_element(By.CSS_SELECTOR, "#lv-heat input").click()
        wait_until(lambda: driver.execute_script(
            "const h = document.getElementById('lv-heat-img'); "
            "return h.style.display === 'block' && h.complete && h.naturalWidth > 0"), T, "heat map drawn")
        assert "heat-on" in driver.find_element(By.ID, "app-root").get_attribute("class")
        shot(driver, "region-heat-map")
        # The same state on the Next cards: their thumbnails carry the heat map.
        driver.find_element(By.ID, "lv-close").click()
        assert driver.find_element(By.CSS_SELECTOR, "#heat-toggle input").is_selected()
        driver.find_element(By.XPATH, "//*[contains(@class,'tab') and normalize-space()='Next']").click()
        wait_until(lambda: driver.execute_script(
            "const h = [...document.querySelectorAll('.next-card img.heat-overlay')]; "
            "return h.length > 0 && h.every(i => i.complete && i.naturalWidth > 0 && i.offsetWidth > 0)"),
            T, "heat maps on the Next cards")
        shot(driver, "region-next-heat")
