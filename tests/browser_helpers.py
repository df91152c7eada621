"""Run the dashboard in a background thread and drive it with headless Chromium.

Test helpers (not part of the package): used by the browser tests and
``scripts/screenshot.py``. Needs selenium and a
Chromium + chromedriver (on Debian: ``apt install chromium chromium-driver``).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading

from werkzeug.serving import make_server

CHROME_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-extensions", "--mute-audio",
    "--enable-unsafe-swiftshader",  # software WebGL for the Scattergl map on GPU-less machines
)


def map_drawn_js(n_points: int) -> str:
    """A script for ``driver.execute_script`` that returns whether the dashboard's map is
    drawn: its image trace holds all ``n_points`` points or, on a raster-drawn map
    (``layout.meta.raster``, :mod:`labeler.app.map_raster`), its sampled points are
    drawn and the raster image is in the plot."""
    return f"""
        const g = document.querySelector('#map .js-plotly-plot');
        if (!(g && g._fullData && g._fullData[0] && g.layout)) {{ return false; }}
        const t = g._fullData[0];
        if (!(g.layout.meta && g.layout.meta.raster)) {{ return t._length === {int(n_points)}; }}
        const im = g.querySelector('.imagelayer image');
        const src = im ? (im.getAttribute('href') || im.getAttribute('xlink:href') || '') : '';
        return t._length > 0 && t.customdata && t._length === t.customdata.length
               && src.startsWith('data:image/png');
    """


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """A WSGI app served on 127.0.0.1 by a werkzeug thread server.

    Use as a context manager; ``url`` is the base address.
    """

    def __init__(self, wsgi_app, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = make_server("127.0.0.1", self.port, wsgi_app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)


def chrome_driver(width: int = 1500, height: int = 950, download_dir: str | None = None):
    """A headless Chromium WebDriver (binary and driver from $CHROME_BIN / $CHROMEDRIVER,
    else /usr/bin/chromium and /usr/bin/chromedriver, else the PATH)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    binary = os.environ.get("CHROME_BIN") or shutil.which("chromium") or "/usr/bin/chromium"
    if binary and os.path.exists(binary):
        opts.binary_location = binary
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--window-size={width},{height}")
    if download_dir:
        opts.add_experimental_option("prefs", {"download.default_directory": download_dir,
                                               "download.prompt_for_download": False})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def wait_until(fn, timeout: float = 20.0, what: str = "condition"):
    """Poll ``fn`` every 0.1 s until it returns something truthy (a condition, not a sleep)."""
    import time

    from selenium.common.exceptions import WebDriverException

    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            last = fn()
            if last:
                return last
        except WebDriverException:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def text_of(driver, css: str) -> str:
    """innerText of the first element matching ``css`` ('' when none)."""
    return driver.execute_script(f"const e = document.querySelector({css!r}); return e ? e.innerText : ''")
