"""Take the README screenshot of the dashboard with headless Chromium.

Serves the app for a project in a thread, opens it, enters an annotator name,
waits for the map, optionally opens the largest cluster, and saves a PNG.

Run::

    python scripts/screenshot.py --project data/projects/elpv --out docs/dashboard.png \\
        --large-view docs/large-view.png
    python scripts/screenshot.py --project P --color-mode confidence --out docs/suggestion-confidence.png
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the browser helpers

from browser_helpers import ServerThread, chrome_driver, map_drawn_js  # noqa: E402
from labeler.app import create_app  # noqa: E402


def take_screenshot(project: Path, out: Path, *, width: int = 1600, height: int = 950,
                    open_cluster: bool = True, timeout: float = 60.0,
                    large_view: Path | None = None, color_mode: str | None = None) -> Path:
    """Save a PNG of the dashboard of ``project`` to ``out``; returns ``out``.

    ``large_view``: also save a PNG of the large view of the open cluster's first
    image there. ``color_mode``: colour the map this way first (a value of
    ``labeler.app.views.COLOR_MODES``, e.g. 'confidence').

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
            _wait(lambda: driver.execute_script(map_drawn_js(n)), timeout)
            _wait(lambda: driver.find_elements(By.CSS_SELECTOR, ".cluster-card"), timeout)
            if color_mode:
                cmax_js = "return document.querySelector('#map .js-plotly-plot')._fullData[0].marker.cmax"
                before = driver.execute_script(cmax_js)
                driver.find_element(By.CSS_SELECTOR, f"#color-mode input[value='{color_mode}']").click()
                _wait(lambda: driver.execute_script(cmax_js) != before, timeout)  # the map recoloured
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
            if large_view is not None and open_cluster:
                driver.find_element(By.CSS_SELECTOR, "#cluster-grid .thumb-btn").click()
                _wait(lambda: driver.execute_script(
                    "const i = document.getElementById('lv-img'); return i && i.complete && i.naturalWidth"), timeout)
                _wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#lv-neighbours img")) > 0, timeout)
                park.perform()
                time.sleep(1.0)  # neighbour thumbnails finish drawing
                driver.save_screenshot(str(large_view))
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
    ap.add_argument("--color-mode", default=None, help="colour the map by this mode first (e.g. confidence)")
    ap.add_argument("--large-view", type=Path, default=None,
                    help="also save the large view of the open cluster's first image here")
    args = ap.parse_args(argv)
    path = take_screenshot(args.project, args.out, width=args.width, height=args.height,
                           open_cluster=not args.no_open_cluster, large_view=args.large_view,
                           color_mode=args.color_mode)
    print(f"wrote {path}" + (f" and {args.large_view}" if args.large_view else ""))


if __name__ == "__main__":
    main()
