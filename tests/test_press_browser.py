"""End-to-end in headless Chromium: the Fine-tune tab starts the press as a background job,
shows its progress, cancels it (the project stays as it was), and a second press runs to the
end while the annotator labels on the map; the message bar then says the new feature set is
active, and the offered re-clustering in it runs as a job too."""

from __future__ import annotations

import csv

import pytest

pytest.importorskip("selenium")
from selenium.webdriver.common.by import By  # noqa: E402

from browser_helpers import ServerThread  # noqa: E402
from labeler.app import create_app  # noqa: E402
from test_app_browser import download_dir, driver, message, open_dashboard, text_of, wait_until  # noqa: E402,F401

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::DeprecationWarning:selenium.*")]


def _label_cell_types(project, elpv_dir, per_class: int = 8) -> list[int]:
    """8 images of each cell type labelled (the press needs 10 in 2 labels); the rest's ids."""
    from labeler.labels import label_images

    truth = {r["path"]: r["cell_type"] for r in csv.DictReader(open(elpv_dir / "truth.csv"))}
    by_class: dict[str, list[int]] = {}
    for r in project.store.image_table():
        by_class.setdefault(truth[r["path"].split("/")[-1]], []).append(int(r["id"]))
    for lab, ids in by_class.items():
        label_images(project, ids[:per_class], lab, annotator="ana")
    return [i for ids in by_class.values() for i in ids[per_class:]]


def test_fine_tune_from_the_dashboard_with_progress_and_cancel(driver, project, elpv_dir):  # noqa: F811
    from labeler import jobs
    from labeler.embedding.feature_sets import active_feature_set, list_feature_sets
    from labeler.labels import label_images

    rest = _label_cell_types(project, elpv_dir)
    app = create_app(project)
    with ServerThread(app.server) as srv:
        open_dashboard(driver, srv.url, app.labeler.n_points, name="rita")
        driver.find_element(By.XPATH, "//*[contains(@class,'tab') and normalize-space()='Fine-tune']").click()
        wait_until(lambda: "No fine-tune has run" in text_of(driver, "#press-status"), what="the tab")
        epochs = driver.find_element(By.ID, "press-epochs")
        epochs.clear()
        epochs.send_keys("2")
        driver.find_element(By.ID, "press-start").click()
        message(driver, "Fine-tune started (job 1)")
        wait_until(lambda: "job 1 (press) running" in text_of(driver, "#press-status"), what="progress shown")
        assert driver.find_element(By.ID, "press-bar").is_displayed()
        assert not driver.find_element(By.ID, "press-start").is_enabled()
        driver.find_element(By.ID, "press-cancel").click()
        message(driver, "Cancelling fine-tune job 1")
        message(driver, "Fine-tune cancelled")
        wait_until(lambda: "job 1 (press) cancelled" in text_of(driver, "#press-status"), timeout=120,
                   what="cancelled status")
        assert active_feature_set(project) == "embeddings" and list(list_feature_sets(project)) == ["embeddings"]

        # The second press also learns from the unlabelled images: the tick box, clicked.
        driver.find_element(By.XPATH, "//*[@id='press-options']//label[contains(., 'learn from unlabelled')]").click()
        driver.find_element(By.ID, "press-start").click()
        message(driver, "Fine-tune started (job 2)")
        assert jobs.job_status(project, "2").params["semi"] == "fixmatch"
        label_images(project, rest[:1], "mono", annotator="rita")  # labelling goes on meanwhile
        text = message(driver, "is now active")
        job = jobs.job_status(project, "2")
        assert job.state == "finished" and f"feature set {job.result['name']} is now active" in text
        assert list_feature_sets(project)[job.result["name"]]["semi"] == "fixmatch"
        assert active_feature_set(project) == job.result["name"] and project.store.labels()[rest[0]] == "mono"
        wait_until(lambda: "job 2 (press) finished" in text_of(driver, "#press-status"), what="finished status")
        assert not driver.find_element(By.ID, "press-bar").is_displayed()

        # The offer after a press: re-cluster in its feature set (a job too); the page follows.
        before = project.store.current_clustering()["id"]
        wait_until(lambda: driver.find_element(By.ID, "press-recluster").is_displayed(), what="the offer")
        driver.find_element(By.ID, "press-recluster").click()
        message(driver, f"Re-clustering in {job.result['name']} started (job 3)")
        text = message(driver, "Re-clustered: clustering")
        now = project.store.current_clustering()["id"]
        assert now != before and f"`labeler cluster --use {before}` goes back" in text
        assert not driver.find_element(By.ID, "press-recluster").is_displayed()

        # Going back after a press: the list of stored sets, the new one chosen; a click on
        # the ingest vectors makes them active (labels untouched), a click on the set again.
        name = job.result["name"]

        def chosen():
            return [e.get_attribute("value") for e in driver.find_elements(By.CSS_SELECTOR, "#press-features input")
                    if e.is_selected()]

        wait_until(lambda: chosen() == [name], what="the pressed set chosen in the list")
        assert "held-out accuracy" in text_of(driver, "#press-features")
        labels = project.store.labels()
        driver.find_element(By.XPATH, "//*[@id='press-features']//label[contains(., 'embeddings:')]").click()
        message(driver, "now use feature set embeddings")
        assert active_feature_set(project) == "embeddings" and project.store.labels() == labels
        wait_until(lambda: chosen() == ["embeddings"], what="the list follows")
        driver.find_element(By.XPATH, f"//*[@id='press-features']//label[contains(., '{name}:')]").click()
        message(driver, f"now use feature set {name}")
        assert active_feature_set(project) == name
