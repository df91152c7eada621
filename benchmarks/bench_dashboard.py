"""Dashboard at scale: page payload, label-action latency and recolour Patch size.

Builds a synthetic project (random clustered vectors written straight into a
Project: image rows through the store, pca.npy, map.npy, a clustering with
summaries; one tiny placeholder thumbnail) and measures the server side with
Flask's test client, no browser:

- the initial page payload: ``/_dash-layout`` (layout + map figure) plus the
  callback responses the page requests on load;
- the server part of a label action: the label callback's function for a
  1,000-image cluster and for a single image (median of N runs), and the
  recolour that follows it;
- the size of the recolour ``Patch`` (marker colours only).

Run::

    python benchmarks/bench_dashboard.py --n 100000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labeler.clustering import summarize  # noqa: E402
from labeler.project import Project  # noqa: E402


def build_synthetic_project(root: Path | str, n: int = 100_000, *, n_clusters: int = 100, dim: int = 64,
                            thumbs: bool = True, seed: int = 0) -> Project:
    """A project of ``n`` fake images in ``n_clusters`` Gaussian blobs (10% noise).

    With ``thumbs`` every image gets a tiny placeholder thumbnail (hard links of
    one grey JPEG, one shade per cluster).
    """
    import os

    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    p = Project(root, create=True)
    img_root = root / "images"
    img_root.mkdir(exist_ok=True)
    p.store.set_meta(image_root=str(img_root), categories=[f"class {i}" for i in range(1000)],
                     novelty_threshold=0.5, backbone={"name": "synthetic", "view": "whole"})
    entries = [{"path": f"img/{i:07d}.jpg", "size": 1000, "mtime": 0.0, "hash": f"{i:016x}"} for i in range(n)]
    p.store.add_or_update_images(entries)
    by_path = p.store.images_by_path()
    ids = np.array([by_path[e["path"]]["id"] for e in entries], dtype=np.int64)
    top1 = rng.integers(0, 1000, n)
    p.store.commit_embedded([{"id": int(i), "row": r, "width": 64, "height": 64, "top1": int(top1[r]),
                              "top1_prob": 0.5} for r, i in enumerate(ids)])
    labels = rng.integers(0, n_clusters, n)
    labels[rng.random(n) < 0.1] = -1
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    vec = rng.normal(scale=0.6, size=(n, dim)).astype(np.float32)
    vec[labels >= 0] += centres[labels[labels >= 0]]
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    xy_c = rng.uniform(-20, 20, size=(n_clusters, 2)).astype(np.float32)
    xy = rng.normal(scale=0.8, size=(n, 2)).astype(np.float32)
    xy[labels >= 0] += xy_c[labels[labels >= 0]]
    xy[labels < 0] *= 12
    p.save_array("pca", vec)
    p.save_array("map", xy)
    summaries = summarize(vec, ids, labels, top1=top1, categories=p.store.get_meta("categories"))
    p.store.add_clustering("kmeans", {"k": n_clusters, "synthetic": True}, ids, labels, None, summaries)
    if thumbs:
        shades = []
        for c in range(n_clusters + 1):
            path = root / f"shade-{c}.jpg"
            g = int(40 + 200 * c / max(n_clusters, 1))
            Image.new("RGB", (32, 32), (g, 255 - g, (g * 7) % 256)).save(path)
            shades.append(path)
        for i, c in zip(ids, labels):
            os.link(shades[int(c) + 1 if c >= 0 else 0], p.thumb_path(int(i)))
        for path in shades:
            path.unlink()
    return p


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="number of images")
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--keep", type=Path, default=None, help="build the project here and keep it")
    args = ap.parse_args(argv)

    from labeler.app import create_app
    from labeler.app.actions import attempt
    from labeler.app.callbacks_label import label_cluster_action, label_ids_action
    from labeler.app.views import COLOR_BY_CLUSTER, COLOR_BY_LABEL, coloring, recolor_patch

    tmp = None
    root = args.keep
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="labeler-bench-")
        root = Path(tmp.name) / "project"
    t = time.perf_counter()
    project = build_synthetic_project(root, args.n, n_clusters=args.clusters)
    print(f"built a synthetic project of {args.n:,} images, {args.clusters} clusters in "
          f"{time.perf_counter() - t:.1f} s")

    t = time.perf_counter()
    app = create_app(project)
    client = app.server.test_client()
    print(f"create_app: {1000 * (time.perf_counter() - t):.0f} ms")

    t = time.perf_counter()
    page = client.get("/")
    layout = client.get("/_dash-layout")
    deps = client.get("/_dash-dependencies")
    t_layout = time.perf_counter() - t
    initial = initial_callback_payloads(client, json.loads(deps.data), json.loads(layout.data))
    total = len(page.data) + len(layout.data) + sum(initial.values())
    print("\ninitial page payload (uncompressed JSON as Dash serves it)")
    print(f"  index.html            {len(page.data) / 1e3:10.1f} kB")
    print(f"  /_dash-layout         {len(layout.data) / 1e6:10.2f} MB   (layout + {args.n:,}-point figure;"
          f" {1000 * t_layout:.0f} ms to serve)")
    for name, size in sorted(initial.items(), key=lambda kv: -kv[1]):
        print(f"  callback {name:<40s} {size / 1e3:8.1f} kB")
    print(f"  total                 {total / 1e6:10.2f} MB")

    actx = app.labeler
    clusters = [s for s in project.store.cluster_summaries() if s["cluster"] >= 0]
    big = min(clusters, key=lambda s: abs(s["size"] - 1000))
    ids_single = [int(actx.point_ids[0])]
    label_n = [0]

    def label_big():
        label_n[0] += 1
        text, kind = attempt(label_cluster_action, actx, big["cluster"], f"class {label_n[0] % 3}", "bench")
        assert kind == "ok", text

    def label_one():
        label_n[0] += 1
        text, kind = attempt(label_ids_action, actx, ids_single, f"class {label_n[0] % 3}", "bench")
        assert kind == "ok", text

    def recolor_label():
        return recolor_patch(actx, COLOR_BY_LABEL)

    print(f"\nlabel action, server part (median of {args.repeat})")
    print(f"  label a {big['size']:,}-image cluster       {median_ms(label_big, args.repeat):8.1f} ms")
    print(f"  label a single image              {median_ms(label_one, args.repeat):8.1f} ms")
    print(f"  recolour by label (Patch)         {median_ms(recolor_label, args.repeat):8.1f} ms")
    print(f"  recolour by cluster (Patch)       "
          f"{median_ms(lambda: recolor_patch(actx, COLOR_BY_CLUSTER), args.repeat):8.1f} ms")
    from dash._utils import to_json

    for mode in (COLOR_BY_CLUSTER, COLOR_BY_LABEL):
        size = len(to_json(recolor_patch(actx, mode, coloring(actx, mode)).to_plotly_json()))
        print(f"  recolour Patch payload ({mode:7s})  {size / 1e3:8.1f} kB")
    print(f"\nreproduce: python benchmarks/bench_dashboard.py --n {args.n} --clusters {args.clusters}")
    project.store.close()
    if tmp is not None:
        tmp.cleanup()


def initial_callback_payloads(client, deps: list[dict], layout: dict) -> dict[str, int]:
    """POST the callbacks a fresh page fires to /_dash-update-component; response sizes.

    Only plain-id callbacks whose inputs all exist in the initial layout and that
    allow an initial call are sent (the ones a browser sends on load).
    """
    values = {}

    def walk(node):
        if isinstance(node, dict):
            props = node.get("props")
            if isinstance(props, dict) and isinstance(props.get("id"), str):
                values[props["id"]] = props
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(layout)
    out = {}
    for d in deps:
        if d.get("prevent_initial_call") or d.get("clientside_function"):
            continue
        ins = d["inputs"] + d.get("state", [])
        if any(i["id"].startswith("{") or i["id"] not in values for i in ins):
            continue
        body = {
            "output": d["output"],
            "outputs": [_parse_output(o) for o in d["output"].strip(".").split("...")],
            "inputs": [{"id": i["id"], "property": i["property"], "value": values[i["id"]].get(i["property"])}
                       for i in d["inputs"]],
            "state": [{"id": i["id"], "property": i["property"], "value": values[i["id"]].get(i["property"])}
                      for i in d.get("state", [])],
            "changedPropIds": [],
        }
        if len(body["outputs"]) == 1 and not d["output"].startswith(".."):
            body["outputs"] = body["outputs"][0]
        r = client.post("/_dash-update-component", json=body)
        if r.status_code == 200:
            out[d["output"][:40]] = len(r.data)
    return out


def _parse_output(o: str) -> dict:
    cid, prop = o.rsplit(".", 1)
    return {"id": cid, "property": prop.split("@")[0]}


if __name__ == "__main__":
    main()
