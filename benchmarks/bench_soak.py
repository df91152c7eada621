"""Soak: eight simulated annotators for ten minutes against the dashboard's server.

Builds (once, cached under ``--workdir``) a synthetic project of ``--n`` tiny
generated photos (24x24 JPEGs, a shade per cluster plus noise, so every file and
its hash differ) ingested by ``labeler ingest --embeddings`` with clustered
synthetic vectors of 1,280 dimensions (KMeans, ``--clusters`` clusters): thumbnails,
``/view/<id>``, PCA, the map, the clusters and the search index are the product's
own. The project's backbone record is then set to efficientnet-lite0 (global
features, 1,280 dimensions, bundled weights) so that a search by a new photo runs
the real CNN forward pass, PCA and index search (its neighbours are meaningless on
synthetic vectors; the cost is the real one).

Then it starts the server in a subprocess (``labeler serve``, or gunicorn with
``--workers``), and ``--annotators`` threads act for ``--minutes`` on loopback only.
Each annotator is a small Dash client that calls ``/_dash-update-component``
exactly as the browser does: it loads ``/_dash-layout`` and ``/_dash-dependencies``,
fires the page's initial callbacks, and after each change of a component property
fires every server callback with that property as an input (clientside callbacks
are not run), sending the current values of the inputs and states it holds. An
annotator acts only on what the server showed it: it opens a cluster from the
cards the cluster list returned (turning the list's pages), loads the grid's
thumbnails, then labels the whole cluster (the cluster's members the page
returned), labels one image of the grid alone (thumbnail -> large view -> search
by it -> 'label this image'), undoes its newest action, or searches by upload
(``POST /api/search`` with the large view's copy of a shown image, or with a new
generated photo the model must embed). ``--think`` seconds (mean, uniform 0.5x-1.5x)
pass between actions; the page's 3 s clustering poll runs as in the browser.

Reported: p50/p99 latency of each action (the whole chain of requests the click
causes) and of the write request alone (``label_cluster_request``...: the
acknowledgement), HTTP >= 500 responses, tracebacks (server log and response
bodies), server RSS (the server process and its workers, sampled every
``--rss-every`` s from ``/proc``: start/max/end), and after the run, from the
project's database (:mod:`labeler.store`): every acknowledged label, image label
and undo in the annotators' own logs must be an action of that annotator in the
database, in the same order, writing that label to the images the page showed
(lost / misapplied counts); no action or label event in the database that no log
asked for (unrequested); and the labels table equals the replay of the label
events (the label in force of every image is its newest event's).

Goal (issue 25): p99 of a label action <= 1 s at 100k images with 8 annotators on
2 cores, 0 lost, 0 misapplied, 0 server errors. Run::

    python benchmarks/bench_soak.py --minutes 1 --n 10000
    python benchmarks/bench_soak.py --minutes 10 --n 100000 --json
    python benchmarks/bench_soak.py --minutes 10 --n 100000 --server gunicorn --workers 4 --json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import psutil
import requests

from labeler.app import ids
from labeler.app.routes import THUMB_URL, VIEW_URL

LABELS = ("crack", "clean", "blurred")  # far apart: no "close to an existing label" question
DIM = 1280  # efficientnet-lite0's global feature dimension
BACKBONE = "efficientnet-lite0"
ACTIONS = {"label_cluster": 0.40, "label_image": 0.25, "undo": 0.15, "search_upload": 0.20}

# The dashboard's component ids, as the page holds them (labeler/app/ids.py).
VERSION, MESSAGE, ANNOTATOR = ids.VERSION, ids.MESSAGE, ids.ANNOTATOR
CLUSTER_LIST_PAGE, CLUSTER_OPEN_BUTTON = ids.CLUSTER_LIST_PAGE, ids.CLUSTER_OPEN_BUTTON
CLUSTER_SEEN, CLUSTER_LABEL_INPUT, CLUSTER_LABEL_BUTTON = ids.CLUSTER_SEEN, ids.CLUSTER_LABEL_INPUT, ids.CLUSTER_LABEL_BUTTON
THUMB_SIMILAR, LV_SEARCH, LV_IMAGE, GRID_CLUSTER = ids.THUMB_SIMILAR, ids.LV_SEARCH, ids.LV_IMAGE, ids.GRID_CLUSTER
SEARCH_RESULT, IMAGE_LABEL_INPUT, IMAGE_LABEL_BUTTON = ids.SEARCH_RESULT, ids.IMAGE_LABEL_INPUT, ids.IMAGE_LABEL_BUTTON
UNDO, CLUSTERING_POLL = ids.UNDO, ids.CLUSTERING_POLL


# -- the synthetic project --------------------------------------------------------------


def build_project(workdir: Path, n: int, clusters: int, seed: int = 0) -> Path:
    """The soak project of ``n`` photos under ``workdir`` (built once, then reused).

    Returns
    -------
    Path
        The project folder ``workdir/soak-n<n>-c<clusters>/project``; its
        ``labeler.db`` is copied from ``labeler.db.pristine`` (no labels) on every
        run by :func:`fresh_copy`.
    """
    from PIL import Image

    root = workdir / f"soak-n{n}-c{clusters}"
    done = root / "built.json"
    project = root / "project"
    if done.is_file():
        return project
    if root.exists():
        shutil.rmtree(root)
    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, clusters, n)
    shade = rng.integers(30, 226, size=(clusters, 3))
    t = time.perf_counter()
    paths = []
    for i in range(n):
        rel = f"{i // 1000:03d}/{i:07d}.jpg"
        if i % 1000 == 0:
            (images / rel).parent.mkdir(exist_ok=True)
        px = np.clip(shade[y[i]] + rng.integers(-25, 26, size=(24, 24, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(px).save(images / rel, quality=90)
        paths.append(rel)
    print(f"[build] {n:,} photos written in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    centres = rng.normal(size=(clusters, DIM)).astype(np.float32)
    vec = np.empty((n, DIM), np.float32)
    for i in range(0, n, 20_000):
        j = slice(i, min(n, i + 20_000))
        vec[j] = centres[y[j]] + 0.7 * rng.standard_normal((len(y[j]), DIM), dtype=np.float32)
    np.maximum(vec, 0, out=vec)
    np.save(root / "vectors.npy", vec)
    (root / "vectors.txt").write_text("\n".join(paths) + "\n")
    del vec
    project.mkdir()
    (project / "labeler.toml").write_text(f'method = "kmeans"\nk = {clusters}\n')
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "labeler.cli", "ingest", str(images), "--project", str(project),
                    "--embeddings", str(root / "vectors.npy"), "--quiet"], check=True, env=_env())
    print(f"[build] ingested in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    (root / "vectors.npy").unlink()  # 0.5 GB at 100k; the project holds its own copy
    _record_backbone(project)
    _warm_search(project)
    _sqlite_copy(project / "labeler.db", project / "labeler.db.pristine")
    done.write_text(json.dumps({"n": n, "clusters": clusters, "seed": seed}))
    return project


def _record_backbone(project: Path) -> None:
    """Record efficientnet-lite0 (global features) as the project's backbone, so that
    a search by a new photo embeds it (see the module docstring)."""
    from labeler.embedding.backbones import load_backbone
    from labeler.project import Project

    p = Project(project)
    bb = load_backbone(BACKBONE, device="cpu")
    p.store.set_meta(backbone={"name": BACKBONE, "dim": DIM, "weights_id": bb.weights_id, "view": "whole",
                               "features": "global", "precision": "fp32", "runtime": "torch",
                               "runtime_used": "torch", "requested": BACKBONE,
                               "note": "synthetic vectors (bench_soak.py); the backbone embeds search queries"})


def _warm_search(project: Path) -> None:
    """One search by a new photo, so the saved index exists before the servers start."""
    from labeler.project import Project
    from labeler.search import Searcher

    path = project.parent / "query.jpg"
    _new_photo(random.Random(0)).save(path)
    Searcher(Project(project)).by_file(path, 5)


def _new_photo(rnd: random.Random):
    from PIL import Image

    px = np.random.default_rng(rnd.randrange(1 << 30)).integers(0, 256, size=(24, 24, 3)).astype(np.uint8)
    return Image.fromarray(px)


def _sqlite_copy(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite database, its write-ahead log included (SQLite's backup API)."""
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()


def fresh_copy(project: Path) -> None:
    """Start every run from the unlabelled database (the arrays are read-only)."""
    _sqlite_copy(project / "labeler.db.pristine", project / "labeler.db")


def _env() -> dict:
    import labeler

    env = dict(os.environ)
    here = str(Path(labeler.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# -- the server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(project: Path, kind: str, workers: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    """Start ``labeler serve`` or gunicorn on a free loopback port; (process, base URL)."""
    port = free_port()
    env = _env()
    if kind == "serve":
        cmd = [sys.executable, "-m", "labeler.cli", "serve", "--project", str(project), "--port", str(port)]
    else:
        env.update(LABELER_PROJECT=str(project), LABELER_INSECURE_NO_AUTH="1")
        cmd = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}", "--timeout", "300",
               "labeler.app.wsgi:server"]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}): see {log_path}")
        try:
            if requests.get(url + "/_dash-layout", timeout=60).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(1)
    raise SystemExit(f"the server did not answer in 600 s: see {log_path}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class RssSampler(threading.Thread):
    """Samples the resident memory (VmRSS, MiB) of the server and its child processes.

    On a shared machine the run must not push others out of memory: when the machine's
    available memory falls below ``guard_mib``, ``low_memory`` is set (the annotators
    stop) and ``stopped_at`` records when.
    """

    def __init__(self, pid: int, every: float, guard_mib: float = 2048):
        super().__init__(daemon=True)
        self.pid, self.every, self.guard_mib = pid, every, guard_mib
        self.samples: list[tuple[float, float, int]] = []  # (seconds, MiB total, processes)
        self.stop = threading.Event()
        self.low_memory = threading.Event()
        self.stopped_at: float | None = None
        self.t0 = time.time()

    def sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            return
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        self.samples.append((round(time.time() - self.t0, 1), round(total / 2**20, 1), len(procs)))
        if psutil.virtual_memory().available < self.guard_mib * 2**20 and not self.low_memory.is_set():
            self.stopped_at = round(time.time() - self.t0, 1)
            self.low_memory.set()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.every)


# -- a Dash client ------------------------------------------------------------------------


def id_key(cid) -> str:
    """A component id as Dash writes it in prop ids and responses."""
    return cid if isinstance(cid, str) else json.dumps(cid, sort_keys=True, separators=(",", ":"))


def _spec_id(s: str):
    return json.loads(s) if s.startswith("{") else s


def _matches(pattern: dict, cid) -> bool:
    if not isinstance(cid, dict) or set(cid) != set(pattern):
        return False
    return all(isinstance(v, list) or cid[k] == v for k, v in pattern.items())


def _texts(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        return [str(node)]
    if isinstance(node, dict):
        return _texts(node.get("props", {}).get("children"))
    if isinstance(node, list):
        return [t for x in node for t in _texts(x)]
    return []


class Page:
    """One browser tab: the components' properties and the server callbacks they fire."""

    TIMEOUT = 120.0  # seconds a request may take before the client gives up on it

    def __init__(self, url: str, name: str, stats, errors, timeout: float = TIMEOUT):
        self.url, self.name, self.stats, self.errors = url, name, stats, errors
        self.http = requests.Session()
        self.timeout = timeout
        self.props: dict[str, dict] = {}
        self.ids: dict[str, object] = {}
        self.owner: dict[str, str] = {}
        self.deps: list[dict] = []

    # HTTP with bookkeeping
    def request(self, what: str, method: str, path: str, **kw) -> requests.Response | None:
        t = time.perf_counter()
        try:
            r = self.http.request(method, self.url + path, timeout=self.timeout, **kw)
        except requests.Timeout:  # no answer in ``timeout`` s (a browser would go on waiting)
            self.errors["timeout"].append(what)
            self.stats[what].append(1000 * (time.perf_counter() - t))
            return None
        except requests.RequestException as e:
            self.errors["connection"].append(f"{what}: {type(e).__name__}")
            self.stats[what].append(1000 * (time.perf_counter() - t))
            return None
        self.stats[what].append(1000 * (time.perf_counter() - t))
        if r.status_code >= 500:
            self.errors["http_5xx"].append(f"{what}: {r.status_code}")
        if b"Traceback (most recent call last)" in r.content:
            self.errors["traceback_in_response"].append(what)
        return r

    def load(self) -> None:
        self.request("page", "GET", "/")
        layout = self.request("layout", "GET", "/_dash-layout").json()
        self.deps = [d for d in self.request("dependencies", "GET", "/_dash-dependencies").json()
                     if not d.get("clientside_function")]
        self.props.clear()
        self.owner.clear()
        self._walk(layout, None)
        self.props.setdefault(id_key(ANNOTATOR), {})["data"] = self.name  # the name asked once per browser
        for d in self.deps:
            if d.get("prevent_initial_call"):
                continue
            ins = d["inputs"] + d.get("state", [])
            if any(i["id"].startswith("{") for i in d["inputs"]) or any(
                    not i["id"].startswith("{") and i["id"] not in self.props for i in ins):
                continue
            self.fire(d, [], "load")

    def _walk(self, node, owner: str | None) -> None:
        if isinstance(node, dict):
            props = node.get("props")
            if isinstance(props, dict) and "id" in props:
                k = id_key(props["id"])
                self.props[k], self.ids[k] = props, props["id"]
                if owner is not None:
                    self.owner[k] = owner
            for v in node.values():
                self._walk(v, owner)
        elif isinstance(node, list):
            for v in node:
                self._walk(v, owner)

    def matching(self, pattern: dict) -> list[str]:
        return [k for k, cid in self.ids.items() if k in self.props and _matches(pattern, cid)]

    def value(self, key: str, prop: str):
        return self.props.get(key, {}).get(prop)

    def _entries(self, specs: list[dict], with_value: bool) -> list | None:
        out = []
        for s in specs:
            cid = _spec_id(s["id"])
            if isinstance(cid, dict):
                if any(v == ["MATCH"] or v == ["ALLSMALLER"] for v in cid.values()):
                    return None
                keys = self.matching(cid)
                out.append([{"id": self.ids[k], "property": s["property"],
                             **({"value": self.value(k, s["property"])} if with_value else {})} for k in keys])
            else:
                if cid not in self.props:
                    return None
                out.append({"id": cid, "property": s["property"],
                            **({"value": self.value(cid, s["property"])} if with_value else {})})
        return out

    def fire(self, dep: dict, changed: list[str], what: str) -> dict | None:
        """POST one callback; apply its outputs; returns the response's outputs or None."""
        outs = []
        for o in dep["output"].strip(".").split("..."):
            cid, prop = o.rsplit(".", 1)
            outs.append({"id": cid, "property": prop.split("@")[0]})
        outputs = self._entries(outs, False)
        inputs, state = self._entries(dep["inputs"], True), self._entries(dep.get("state", []), True)
        if outputs is None or inputs is None or state is None:
            return None
        body = {"output": dep["output"], "outputs": outputs if dep["output"].startswith("..") else outputs[0],
                "inputs": inputs, "state": state, "changedPropIds": changed}
        t = time.perf_counter()
        r = self.request(what, "POST", "/_dash-update-component", json=body)
        # Every callback also under its first output, to see which ones take the time.
        self.stats["callback " + outs[0]["id"] + "." + outs[0]["property"]].append(1000 * (time.perf_counter() - t))
        if r is None or r.status_code != 200:
            return None
        resp = r.json().get("response", {})
        for k, props in resp.items():
            self.set(k, props)
        return resp

    def set(self, key: str, props: dict) -> None:
        """Apply new property values (children replace the components they held)."""
        if key not in self.props:
            self.props[key] = {}
            self.ids[key] = json.loads(key) if key.startswith("{") else key
        for prop, v in props.items():
            if prop == "children":
                gone = [k for k, o in self.owner.items() if o == key]
                while gone:
                    k = gone.pop()
                    self.props.pop(k, None)
                    self.owner.pop(k, None)
                    gone.extend(c for c, o in self.owner.items() if o == k)
                self._walk(v, key)
            self.props[key][prop] = v

    def change(self, key: str, prop: str, value, what: str, rounds: int = 5) -> dict:
        """Set a property as the user would and run every callback that follows;
        returns {prop id: value} of everything the server changed."""
        self.props.setdefault(key, {})[prop] = value
        self.ids.setdefault(key, json.loads(key) if key.startswith("{") else key)
        changed, seen = [f"{key}.{prop}"], {}
        for depth in range(rounds):
            fired, nxt = set(), []
            for d in self.deps:
                trig = [c for c in changed if self._is_input(d, c)]
                if not trig or id(d) in fired:
                    continue
                fired.add(id(d))
                resp = self.fire(d, trig, what if depth == 0 else f"{what}:follow")
                for k, props in (resp or {}).items():
                    for p, v in props.items():
                        seen[f"{k}.{p}"] = v
                        nxt.append(f"{k}.{p}")
            changed = nxt
            if not changed:
                break
        return seen

    def _is_input(self, dep: dict, changed: str) -> bool:
        key, prop = changed.rsplit(".", 1)
        for i in dep["inputs"]:
            if i["property"] != prop:
                continue
            if i["id"] == key:
                return True
            if i["id"].startswith("{") and key.startswith("{") and _matches(json.loads(i["id"]), json.loads(key)):
                return True
        return False

    def click(self, key: str, what: str) -> dict:
        n = (self.value(key, "n_clicks") or 0) + 1
        return self.change(key, "n_clicks", n, what)


# -- an annotator -------------------------------------------------------------------------


class Annotator(threading.Thread):
    def __init__(self, url: str, name: str, end: float, think: float, seed: int, stats, errors,
                 stop: threading.Event | None = None):
        super().__init__(daemon=True)
        self.stop = stop or threading.Event()
        self.page = Page(url, name, stats, errors)
        self.name, self.end, self.think = name, end, think
        self.rnd = random.Random(seed)
        self.stats = stats
        self.log: list[dict] = []
        self.members: list[int] = []
        self.grid: list[int] = []
        self.last_poll = time.time()
        self.failure: str | None = None

    def timed(self, what: str, fn):
        t = time.perf_counter()
        out = fn()
        self.stats[what].append(1000 * (time.perf_counter() - t))
        return out

    def run(self) -> None:
        try:
            self.timed("open_page", self.page.load)
            while time.time() < self.end and not self.stop.is_set():
                self.poll()
                if not self.grid or self.rnd.random() < 0.5:
                    self.timed("open_cluster", self.open_cluster)
                else:
                    action = self.rnd.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
                    self.timed(action, getattr(self, action))
                time.sleep(self.think * self.rnd.uniform(0.5, 1.5))
        except Exception as e:  # a client bug must not pass for a quiet run
            import traceback

            self.failure = "".join(traceback.format_exception(e))

    def poll(self) -> None:
        if time.time() - self.last_poll >= 3:
            self.last_poll = time.time()
            key = id_key(CLUSTERING_POLL)
            self.page.change(key, "n_intervals", (self.page.value(key, "n_intervals") or 0) + 1, "poll")

    def open_cluster(self) -> None:
        pages = self.rnd.randint(1, 13)  # the list shows 8 cards a page
        self.page.change(CLUSTER_LIST_PAGE, "value", pages, "cluster_list_page")
        cards = [self.page.ids[k] for k in self.page.matching({"type": CLUSTER_OPEN_BUTTON, "cluster": ["ALL"]})]
        if not cards:
            return
        cid = self.rnd.choice(cards)
        self.page.click(id_key(cid), "open_cluster_request")
        seen = self.page.value(CLUSTER_SEEN, "data") or {}
        self.members = [int(i) for i in seen.get("members") or []]
        self.grid = [int(self.page.ids[k]["id"]) for k in self.page.matching(
            {"type": THUMB_SIMILAR, "grid": GRID_CLUSTER, "id": ["ALL"]})]
        for i in self.grid:  # the browser loads every thumbnail of the grid
            self.page.request("thumbnail", "GET", THUMB_URL.format(i))
        self.open = seen.get("cluster")

    def _label_reply(self, seen: dict) -> tuple[bool, str]:
        msg = " ".join(_texts(seen.get(f"{MESSAGE}.children")))
        return f"{VERSION}.data" in seen, msg

    def _type_and_click(self, field: str, button: str, label: str, action: str) -> tuple[bool, str]:
        """Type ``label`` into ``field`` and click ``button``; click once more when the page
        asks to confirm ("Click again"), as a person would. Returns (acknowledged, message)."""
        for _ in range(2):
            self.page.props.setdefault(field, {})["value"] = label
            ack, msg = self._label_reply(self.page.click(button, action))
            if ack or "Click again" not in msg:
                break
        return ack, msg

    def label_cluster(self) -> None:
        label = self.rnd.choice(LABELS)
        members = list(self.members)
        ack, msg = self._type_and_click(CLUSTER_LABEL_INPUT, CLUSTER_LABEL_BUTTON, label, "label_cluster_request")
        self.log.append({"kind": "label", "what": "cluster", "label": label, "targets": members, "ack": ack,
                         "written": _written(msg) if ack else 0, "message": msg[:300], "at": time.time()})

    def label_image(self) -> None:
        image = self.rnd.choice(self.grid)
        self.page.click(id_key({"type": THUMB_SIMILAR, "grid": GRID_CLUSTER, "id": image}), "large_view")
        if self.page.value(LV_IMAGE, "data") != image:
            return
        self.page.click(LV_SEARCH, "search_by_id")
        stored = self.page.value(SEARCH_RESULT, "data") or {}
        if stored.get("query_image_id") != image:
            return
        label = self.rnd.choice(LABELS)
        ack, msg = self._type_and_click(IMAGE_LABEL_INPUT, IMAGE_LABEL_BUTTON, label, "label_image_request")
        self.log.append({"kind": "label", "what": "image", "label": label, "targets": [image], "ack": ack,
                         "written": _written(msg) if ack else 0, "message": msg[:300], "at": time.time()})

    def undo(self) -> None:
        seen = self.page.click(UNDO, "undo_request")
        ack, msg = self._label_reply(seen)
        self.log.append({"kind": "undo", "ack": ack and msg.startswith("Undone"), "message": msg[:300],
                         "at": time.time()})

    def search_upload(self) -> None:
        if self.rnd.random() < 0.5:  # a photo it was shown, as the large view serves it
            r = self.page.request("view", "GET", VIEW_URL.format(self.rnd.choice(self.grid)))
            data = r.content if r is not None and r.status_code == 200 else None
        else:
            buf = io.BytesIO()
            _new_photo(self.rnd).save(buf, format="JPEG")
            data = buf.getvalue()
        if data is None:
            return
        r = self.page.request("search_upload_request", "POST", "/api/search",
                              files={"image": ("photo.jpg", data, "image/jpeg")}, data={"k": "10"})
        if r is not None and r.status_code != 200:
            self.page.errors["search_not_200"].append(f"{r.status_code}: {r.text[:200]}")


def _written(msg: str) -> int:
    m = re.match(r"Labelled ([\d,]+) ", msg)
    return int(m.group(1).replace(",", "")) if m else 0


# -- the check against the database -------------------------------------------------------


def check_labels(db: Path, logs: dict[str, list[dict]]) -> dict:
    """Lost, misapplied and unrequested writes: the annotators' logs against the database.

    Returns
    -------
    dict
        ``acknowledged`` (label and undo actions the logs say were done),
        ``lost`` (acknowledged, absent from the database), ``misapplied`` (present
        with another label, annotator or images, or an undo of another action),
        ``unrequested`` (database actions no log asked for), ``labels_mismatch``
        (images whose row in the labels table differs from their newest label event),
        and ``problems`` (the first few, in words).
    """
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    actions = con.execute("SELECT * FROM actions ORDER BY id").fetchall()
    events = defaultdict(list)
    for ev in con.execute("SELECT * FROM label_events ORDER BY id"):
        events[ev["action_id"]].append(ev)
    out = {"acknowledged": 0, "lost": 0, "misapplied": 0, "unrequested": 0, "labels_mismatch": 0,
           "unacknowledged": 0, "problems": []}

    def problem(kind: str, text: str) -> None:
        out[kind] += 1
        if len(out["problems"]) < 20:
            out["problems"].append(f"{kind}: {text}")

    by_who = defaultdict(list)
    for a in actions:
        by_who[a["annotator"]].append(a)
    for who in set(by_who) - set(logs):
        for a in by_who[who]:
            problem("unrequested", f"action {a['id']} by {who!r}, no such annotator")
    for who, log in logs.items():
        db_actions = list(by_who.get(who, []))
        # A request without an answer (a client timeout, an error page) may have been applied
        # after the client gave up, even after the annotator's next action: it may be in the
        # database anywhere, writing that label to images that page showed, or not at all.
        claimed, spare_undos = set(), 0
        for e in log:
            if e["ack"]:
                continue
            out["unacknowledged"] += 1
            if e["kind"] == "undo":
                spare_undos += 1
                continue
            for a in db_actions:
                if a["id"] not in claimed and _same_label(a, events, e, exact=False):
                    claimed.add(a["id"])
                    break
        remaining = [a for a in db_actions if a["id"] not in claimed]
        pos = 0
        for e in log:
            if not e["ack"] or not (e["kind"] == "undo" or e["written"] > 0):
                continue
            out["acknowledged"] += 1
            if pos >= len(remaining):
                problem("lost", f"{who}: {e['kind']} {e.get('label', '')} acknowledged ({e['message'][:80]}) "
                                "not in the database")
                continue
            a = remaining[pos]
            pos += 1
            if e["kind"] == "undo" and a["kind"] != "undo":
                problem("misapplied", f"{who}: undo acknowledged, database action {a['id']} is {a['kind']} "
                                      f"{a['description'][:60]!r}")
            elif e["kind"] == "label" and not _same_label(a, events, e):
                problem("misapplied", f"{who}: label {e['label']!r} of {e['what']} ({e['written']} written) vs "
                                      f"database action {a['id']} {a['kind']} {a['description'][:60]!r}")
        for a in remaining[pos:]:
            if a["kind"] == "undo" and spare_undos:
                spare_undos -= 1  # an undo the client got no answer for
                continue
            problem("unrequested", f"{who}: database action {a['id']} {a['kind']} {a['description'][:60]!r}")
        # Each undo undid this annotator's newest label action still in force (docs/undo.md).
        stack: list[int] = []
        for a in db_actions:
            if a["kind"] == "undo":
                if not stack or a["undoes"] != stack[-1]:
                    problem("misapplied", f"{who}: undo {a['id']} undid {a['undoes']}, the newest action in "
                                          f"force was {stack[-1:]}")
                elif stack:
                    stack.pop()
            elif a["redoes"] is None:
                stack.append(a["id"])
    kind_of = {a["id"]: ("label" if a["kind"] == "label" and a["redoes"] is None else "undo/redo")
               for a in actions}
    last = {}
    for aid in sorted(events):
        for ev in events[aid]:
            last[ev["image_id"]] = ev
    rows = {r["image_id"]: r for r in con.execute("SELECT * FROM labels")}
    for i, ev in last.items():
        r = rows.get(i)
        if ev["new_label"] is None:
            if r is not None:
                problem("labels_mismatch", f"image {i} labelled {r['label']!r} after its newest event removed it")
        # An undo's or redo's event is written by whoever undid; the row keeps the author of
        # the write now in force (docs/undo.md), so only a label action's author must match.
        elif r is None or r["label"] != ev["new_label"] or (
                kind_of.get(ev["action_id"]) == "label" and r["annotator"] != ev["annotator"]):
            problem("labels_mismatch", f"image {i}: newest event {ev['new_label']!r} by {ev['annotator']}, "
                                       f"labels table {dict(r) if r else None}")
    for i in set(rows) - set(last):
        problem("labels_mismatch", f"image {i} labelled without a label event")
    out["labels_in_db"] = len(rows)
    con.close()
    return out


def _same_label(a, events, e: dict, exact: bool = True) -> bool:
    """Whether database action ``a`` is the label action of log entry ``e``: that label on
    images the page showed (and, ``exact``, as many as the answer said were written)."""
    evs = events.get(a["id"], [])
    targets = set(e["targets"])
    return (a["kind"] != "undo" and a["redoes"] is None and bool(evs) and (len(evs) == e["written"] or not exact)
            and all(ev["new_label"] == e["label"] and ev["image_id"] in targets for ev in evs))


# -- the run ------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict:
    v = np.asarray(values, dtype=float)
    return {"n": int(len(v)), "p50_ms": round(float(np.percentile(v, 50)), 1),
            "p99_ms": round(float(np.percentile(v, 99)), 1), "max_ms": round(float(v.max()), 1)}


def soak(project: Path, *, server: str, workers: int, annotators: int, minutes: float, think: float,
         rss_every: float, seed: int, logdir: Path, memory_guard_mib: float = 2048) -> dict:
    """One soak run against a fresh copy of the project's database; the figures as a dict."""
    fresh_copy(project)
    logdir.mkdir(parents=True, exist_ok=True)
    server_log = logdir / f"server-{server}.log"
    t = time.perf_counter()
    proc, url = start_server(project, server, workers, server_log)
    start_s = time.perf_counter() - t
    rss = RssSampler(proc.pid, rss_every, memory_guard_mib)
    rss.start()
    stats, errors = defaultdict(list), defaultdict(list)
    end = time.time() + 60 * minutes
    team = [Annotator(url, f"soak{i + 1}", end, think, seed * 100 + i, stats, errors, rss.low_memory)
            for i in range(annotators)]
    for a in team:
        a.start()
    for a in team:
        a.join()
    rss.sample()
    rss.stop.set()
    stop_server(proc)
    failures = [a.failure for a in team if a.failure]
    logs = {a.name: a.log for a in team}
    (logdir / f"annotators-{server}.json").write_text(json.dumps(logs))
    text = server_log.read_text(errors="replace")
    tracebacks = text.count("Traceback (most recent call last)")
    check = check_labels(project / "labeler.db", logs)
    mib = [s[1] for s in rss.samples]
    return {
        "server": server, "workers": workers if server == "gunicorn" else 1, "annotators": annotators,
        "minutes": minutes, "think_s": think, "server_start_s": round(start_s, 1),
        "stopped_low_memory_at_s": rss.stopped_at,
        "latency": {k: percentiles(v) for k, v in sorted(stats.items()) if v},
        "errors": {"http_5xx": len(errors["http_5xx"]), "tracebacks_in_server_log": tracebacks,
                   "tracebacks_in_responses": len(errors["traceback_in_response"]),
                   "connection_errors": len(errors["connection"]), "search_not_200": len(errors["search_not_200"]),
                   "client_timeouts": len(errors["timeout"]), "client_timeout_s": Page.TIMEOUT,
                   "timeouts_by_request": dict(Counter(errors["timeout"])),
                   "client_failures": len(failures), "examples": (errors["http_5xx"] + errors["connection"]
                                                                  + errors["search_not_200"])[:5] + failures[:2]},
        "rss_mib": {"start": mib[0] if mib else None, "max": max(mib) if mib else None,
                    "end": mib[-1] if mib else None, "processes": rss.samples[-1][2] if rss.samples else None,
                    "samples": rss.samples},
        "actions_logged": {k: sum(1 for a in team for e in a.log if e["kind"] == k and (k != "label" or True))
                           for k in ("label", "undo")},
        "labels": check,
    }


def _print(res: dict, n: int) -> None:
    print(f"\n== {res['server']} ({res['workers']} worker(s)), {res['annotators']} annotators, "
          f"{res['minutes']:g} min, n={n:,}, think {res['think_s']:g} s ==")
    print(f"{'action':52s} {'n':>6s} {'p50 ms':>9s} {'p99 ms':>9s} {'max ms':>9s}")
    for k, v in res["latency"].items():
        print(f"{k:52s} {v['n']:6d} {v['p50_ms']:9.1f} {v['p99_ms']:9.1f} {v['max_ms']:9.1f}")
    e = res["errors"]
    print(f"errors: HTTP>=500 {e['http_5xx']}, tracebacks (log/responses) {e['tracebacks_in_server_log']}/"
          f"{e['tracebacks_in_responses']}, connection {e['connection_errors']}, no answer in "
          f"{e['client_timeout_s']:g} s {e['client_timeouts']} {e['timeouts_by_request']}, search not 200 "
          f"{e['search_not_200']}, client failures {e['client_failures']}")
    for x in e["examples"]:
        print("   ", str(x)[:300])
    if res["stopped_low_memory_at_s"] is not None:
        print(f"STOPPED EARLY at {res['stopped_low_memory_at_s']:.0f} s: the machine's available memory fell "
              f"below the guard (--memory-guard-mib)")
    r = res["rss_mib"]
    print(f"server RSS (MiB, {r['processes']} process(es)): start {r['start']}, max {r['max']}, end {r['end']}")
    c = res["labels"]
    print(f"labels: {c['acknowledged']} acknowledged writes, {c['unacknowledged']} not acknowledged, "
          f"{c['labels_in_db']} labelled images; lost {c['lost']}, misapplied {c['misapplied']}, "
          f"unrequested {c['unrequested']}, labels table vs events {c['labels_mismatch']}")
    for p in c["problems"][:10]:
        print("   ", p)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="images in the synthetic project")
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--annotators", type=int, default=8)
    ap.add_argument("--server", choices=("serve", "gunicorn"), default="serve")
    ap.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    ap.add_argument("--think", type=float, default=1.0, help="mean seconds between an annotator's actions")
    ap.add_argument("--rss-every", type=float, default=5.0, help="seconds between RSS samples")
    ap.add_argument("--workdir", type=Path, default=Path("data/projects/bench-soak"),
                    help="where the synthetic project is built once and reused (default: data/projects/bench-soak)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--memory-guard-mib", type=float, default=2048,
                    help="stop the annotators when the machine's available memory falls below this")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
    args = ap.parse_args(argv)
    t = time.perf_counter()
    project = build_project(args.workdir, args.n, args.clusters)
    build_s = time.perf_counter() - t
    res = soak(project, server=args.server, workers=args.workers, annotators=args.annotators, minutes=args.minutes,
               think=args.think, rss_every=args.rss_every, seed=args.seed, logdir=args.workdir / "logs",
               memory_guard_mib=args.memory_guard_mib)
    res.update(n=args.n, clusters=args.clusters, build_or_load_s=round(build_s, 1), cpus=os.cpu_count(),
               command="python benchmarks/bench_soak.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    _print(res, args.n)
    label_p99 = max((res["latency"].get(k, {}).get("p99_ms", 0) for k in
                     ("label_cluster_request", "label_image_request")), default=0)
    ok = (label_p99 <= 1000 and res["labels"]["lost"] == 0 and res["labels"]["misapplied"] == 0
          and res["labels"]["unrequested"] == 0 and res["labels"]["labels_mismatch"] == 0
          and res["errors"]["http_5xx"] == 0 and res["errors"]["tracebacks_in_server_log"] == 0
          and res["errors"]["tracebacks_in_responses"] == 0 and res["errors"]["client_failures"] == 0
          and res["stopped_low_memory_at_s"] is None)
    res["goal_met"] = ok
    print(f"goal (label p99 <= 1 s, 0 lost/misapplied, 0 server errors): {'met' if ok else 'NOT met'} "
          f"(label request p99 {label_p99:.0f} ms)")
    print(f"reproduce: {res['command']}")
    (args.workdir / "logs" / f"result-{args.server}-n{args.n}.json").write_text(json.dumps(res, indent=1))
    if args.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
