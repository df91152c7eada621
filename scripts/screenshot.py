"""Take the README screenshot of the dashboard with headless Chromium.

Serves the app for a project in a thread, opens it, enters an annotator name,
waits for the map, optionally opens the largest cluster, and saves a PNG.

Run::

    python scripts/screenshot.py --project data/projects/elpv --out docs/dashboard.png
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the browser helpers

from browser_helpers import ServerThread, chrome_driver  # noqa: E402
from labeler.app import create_app  # noqa: E402


def take_screenshot(project: Path, out: Path, *, width: int = 1600, height: int = 950,
                    open_cluster: bool = True, timeout: float = 60.0) -> Path:
    """Save a PNG of the dashboard of ``project`` to ``out``; returns ``out``.

    Raises
    ------
    TimeoutError
        The map did not draw within ``timeout`` seconds.
    """
    from selenium.webdriver.common.by import By

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = create_app(project)
    n = app.labeler.n_points
    with ServerThread(app.server) as srv:
        driver = chrome_driver(width, height)
        try:
            driver.get(srv.url)
            _wait(lambda: driver.find_element(By.ID, "name-input").is_displayed(), timeout)
            driver.find_element(By.ID, "name-input").send_keys("annotator")
            driver.find_element(By.ID, "name-save").click()
            _wait(lambda: driver.execute_script(
                "const g = document.querySelector('#map .js-plotly-plot');"
                "return g && g._fullData && g._fullData[0]._length") == n, timeout)
            _wait(lambda: driver.find_elements(By.CSS_SELECTOR, ".cluster-card"), timeout)
            if open_cluster:
                driver.find_element(By.CSS_SELECTOR, ".cluster-card .btn").click()
                _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#cluster-grid .thumb"), timeout)
            # Park the pointer on the top bar so no thumbnail shows its hover state.
            from selenium.webdriver.common.actions.action_builder import ActionBuilder

            park = ActionBuilder(driver)
            park.pointer_action.move_to_location(5, 5)
            park.perform()
            time.sleep(1.5)  # thumbnails and WebGL finish drawing
            out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(out))
        finally:
            driver.quit()
    return out


def _wait(fn, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            if fn():
                return
        except Exception:  # the element is not there yet
            pass
        time.sleep(0.2)
    raise TimeoutError("the dashboard did not finish loading")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, required=True, help="an ingested project directory")
    ap.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--height", type=int, default=950)
    ap.add_argument("--no-open-cluster", action="store_true", help="do not open the largest cluster")
    args = ap.parse_args(argv)
    path = take_screenshot(args.project, args.out, width=args.width, height=args.height,
                           open_cluster=not args.no_open_cluster)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
