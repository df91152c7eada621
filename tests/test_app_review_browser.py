"""End-to-end in headless Chromium: the Review tab labels a near-duplicate group in one
action, reports why the likely-error list cannot be made yet, and relabels a group labelled
wrong as a whole with one click (one undoable action)."""

from __future__ import annotations

import pytest

pytest.importorskip("selenium")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

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
        from labeler.app.tabs.review.callbacks import find_groups

        groups, _ = find_groups(first, 0.9)
        wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#review-dup-view .thumb-btn"))
                   == min(len(groups[0]), 40), what="group thumbnails")
        # Enter in the group's label box submits it (assets/keys.js clicks 'Label group').
        driver.find_element(By.ID, "review-dup-label-input").send_keys("same-module", Keys.ENTER)
        message(driver, f"Labelled {len(groups[0])} image(s) of group 1 as 'same-module'")
        labels = project.store.labels()
        assert {labels.get(i) for i in groups[0]} == {"same-module"} and len(labels) == len(groups[0])
        assert {r["annotator"] for r in project.store.label_rows()} == {"rita"}
        wait_until(lambda: "same-module" in text_of(driver, "#review-dup-view"), what="captions re-rendered")

        driver.find_element(By.ID, "review-issue-find").click()
        wait_until(lambda: "at least two labels" in text_of(driver, "#review-issue-summary"), what="review refused")


def test_relabel_a_group_labelled_wrong_from_the_review_tab(driver, project, elpv_dir):  # noqa: F811
    import csv

    import numpy as np

    from labeler.history import undo
    from labeler.labels import label_images
    from labeler.reduce import l2_normalize

    truth = {r["path"]: r["cell_type"] for r in csv.DictReader(open(elpv_dir / "truth.csv"))}
    ids = {r["path"]: r["id"] for r in project.store.image_table()}
    true = {ids[p]: t for p, t in truth.items()}
    for lab in ("mono", "poly"):
        label_images(project, [i for i, t in true.items() if t == lab], lab, annotator="ana")
    order = sorted(true)
    x = l2_normalize(np.asarray(project.load_array("pca"))[project.store.row_of(np.array(order))])
    seed = next(j for j, i in enumerate(order) if true[i] == "poly")
    members = [order[j] for j in np.argsort(-(x @ x[seed])) if true[order[j]] == "poly"][:6]
    label_images(project, members, "mono", annotator="bob", relabel=True)

    app = create_app(project)
    with ServerThread(app.server) as srv:
        open_dashboard(driver, srv.url, app.labeler.n_points, name="rita")
        driver.find_element(By.XPATH, "//*[contains(@class,'tab') and normalize-space()='Review']").click()
        wait_until(lambda: driver.find_element(By.ID, "review-issue-find"), what="review tab").click()
        wait_until(lambda: "1 group(s) labelled wrong as a whole" in text_of(driver, "#review-issue-summary"),
                   what="review summary")
        wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#review-wgroup-view .thumb-btn"))
                   == len(members), what="the group's thumbnails")
        assert "6 images labelled 'mono'" in text_of(driver, "#review-wgroup-view")
        assert "suggested 'poly'" in text_of(driver, "#review-wgroup-view")
        n_actions = len(project.store.actions(100))
        driver.find_element(By.ID, "review-wgroup-accept").click()
        message(driver, "Labelled 6 image(s) of neighbours")
        labels = project.store.labels()
        assert {labels[i] for i in members} == {"poly"} and len(project.store.actions(100)) == n_actions + 1
        assert {r["annotator"] for r in project.store.label_rows() if r["image_id"] in members} == {"rita"}
        wait_until(lambda: "#{} poly".format(members[0]) in text_of(driver, "#review-wgroup-view"),
                   what="captions re-rendered")
    undo(project, "rita")  # the one action: one undo brings the whole group back
    assert {project.store.labels()[i] for i in members} == {"mono"}
