"""Several annotators at once: separate worker processes on one project lose no label
and see each other's labels on refresh (gunicorn serves the dashboard that way)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

WORKER = textwrap.dedent("""
    import sys
    from labeler.app import create_app
    from labeler.app.actions import attempt
    from labeler.app.labelling import label_ids_action
    root, name, ids = sys.argv[1], sys.argv[2], [int(i) for i in sys.argv[3].split(",")]
    app = create_app(root)  # each gunicorn worker builds its own app like this
    for i in ids:
        # ids[0] again each time, chosen to relabel: every action rewrites that one row
        text, kind = attempt(label_ids_action, app.labeler, [i, ids[0]], f"by-{name}", name, relabel=[ids[0]])
        assert kind == "ok", text
""")


def test_worker_processes_lose_no_label(project):
    rows = [r["id"] for r in project.store.image_table()]
    chunks = {"ana": rows[0:15], "bob": rows[15:30], "eve": rows[30:45]}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(project.root), name, ",".join(map(str, ids))])
             for name, ids in chunks.items()]
    assert [p.wait(timeout=180) for p in procs] == [0, 0, 0]
    labels = project.store.labels()
    for name, ids in chunks.items():
        assert all(labels[i] == f"by-{name}" for i in ids[1:])
    events = project.store.label_events()
    assert len(events) == 3 * 15 * 2 - 3  # each action labels 2 images, 1 when i == ids[0]
    assert {e["annotator"] for e in events} == set(chunks)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


@pytest.mark.skipif(shutil.which("gunicorn") is None, reason="gunicorn not installed ([test] extra)")
def test_gunicorn_workers_serve_and_see_new_labels(project, tmp_path):
    port = _free_port()
    # Loopback only, so serving without authentication is acceptable here (the wsgi entry
    # refuses it unless told, see test_app_server).
    env = {"LABELER_PROJECT": str(project.root), "PATH": __import__("os").environ["PATH"],
           "LABELER_INSECURE_NO_AUTH": "1"}
    proc = subprocess.Popen(
        [shutil.which("gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "--timeout", "120",
         "labeler.app.wsgi:server"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                _get(base + "/", 5)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise AssertionError(proc.stderr.read().decode()[-2000:] if proc.poll() is not None
                                         else "gunicorn did not start")
                time.sleep(0.5)
        first = project.store.image_table()[0]["id"]
        assert _get(f"{base}/thumb/{first}")[:2] == b"\xff\xd8"  # a JPEG
        project.store.set_labels([first], "seen-by-all", annotator="ana")
        # Many requests: both workers answer some, and every answer has the new label.
        for _ in range(12):
            assert b"seen-by-all" in _get(base + "/export/labels.csv")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
