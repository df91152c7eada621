"""benchmarks/bench_soak.py's core loop for a few seconds: two simulated annotators call
the dashboard's server (in this process, on loopback) as the browser does, opening
clusters, labelling clusters and single images, undoing and searching by upload; then
every acknowledged write of their logs must be in the database as asked, and nothing
else (the bench's own check)."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections import defaultdict
from pathlib import Path

from werkzeug.serving import make_server

from labeler.app import create_app


def _bench():
    """The benchmark script as a module (benchmarks/ is not a package)."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_soak.py"
    spec = importlib.util.spec_from_file_location("bench_soak", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_simulated_annotators_lose_and_misapply_nothing(project):
    bench = _bench()
    server = make_server("127.0.0.1", 0, create_app(project.root).server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    stats, errors = defaultdict(list), defaultdict(list)
    end = time.time() + 8
    team = [bench.Annotator(url, f"smoke{i}", end, 0.05, i, stats, errors) for i in range(2)]
    try:
        for a in team:
            a.start()
        for a in team:
            a.join(120)
    finally:
        server.shutdown()
    assert [a.failure for a in team if a.failure] == []
    assert not errors, dict(errors)
    logs = {a.name: a.log for a in team}
    assert sum(1 for log in logs.values() for e in log if e["kind"] == "label" and e["written"]) >= 1
    assert stats["open_cluster_request"] and stats["label_cluster_request"] or stats["label_image_request"]
    found = bench.check_labels(project.root / "labeler.db", logs)
    assert found["problems"] == [], found
    assert found["acknowledged"] >= 1 and found["labels_in_db"] >= 1
