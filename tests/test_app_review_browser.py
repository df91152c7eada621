"""End-to-end in headless Chromium: the Review tab labels a near-duplicate group in one
action and reports why the likely-error list cannot be made yet."""

from __future__ import annotations

import pytest

pytest.importorskip("selenium")
from selenium.webdriver.common.by import By  # noqa: E402

from browser_helpers import ServerThread  # noqa: E402
from labeler.app import create_app  # noqa: E402
from test_app_browser import download_dir, driver, message, open_dashboard, text_of, wait_until  # noqa: E402,F401

pytestmark = [pytest.mark.browser,
              pytest.mark.filterwarnings("ignore::DeprecationWarning:selenium.*")]


def test_label_a_duplicate_group_from_the_review_tab(driver, project):  # noqa: F811
    app = create_app(project)
    with ServerThread(app.server) as srv:
        open_dashboard(driver, srv.url, app.labeler.n_points, name="rita")
        driver.find_element(By.XPATH, "//*[contains(@class,'tab') and normalize-space()='Review']").click()
        box = wait_until(lambda: driver.find_element(By.ID, "review-dup-threshold"), what="review tab")
        box.send_keys("0.9")
        driver.find_element(By.ID, "review-dup-find").click()
        wait_until(lambda: "group(s)" in text_of(driver, "#review-dup-summary"), what="duplicate summary")
        first = app.labeler  # the groups the page shows come from the same library call
        from labeler.app.callbacks_review import find_groups

        groups, _ = find_groups(first, 0.9)
        wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#review-dup-view .thumb-btn"))
                   == min(len(groups[0]), 40), what="group thumbnails")
        driver.find_element(By.ID, "review-dup-label-input").send_keys("same-module")
        driver.find_element(By.ID, "review-dup-label-button").click()
        message(driver, f"Labelled the {len(groups[0])} images of group 1")
        labels = project.store.labels()
        assert {labels.get(i) for i in groups[0]} == {"same-module"} and len(labels) == len(groups[0])
        assert {r["annotator"] for r in project.store.label_rows()} == {"rita"}
        wait_until(lambda: "same-module" in text_of(driver, "#review-dup-view"), what="captions re-rendered")

        driver.find_element(By.ID, "review-issue-find").click()
        wait_until(lambda: "at least two labels" in text_of(driver, "#review-issue-summary"), what="review refused")
