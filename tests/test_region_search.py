"""Search by a region (issue 24, item 3): library, CLI and HTTP on real photos.

The collection is synthesised: 30 crops of a real gravel photo (similar backgrounds),
10 with a cat's face (chelsea) pasted at a different place each, 20 with a coffee cup
instead. A box round the cat in one photo must find the other cat photos first, each
with its matched box on the cat.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from fixtures_images import photo_array

W, H = 320, 240  # not square: the boxes go through the squash to 224 × 224 and back
SIDE = 72  # the pasted patch, pixels
N_CAT, N_CUP = 10, 20


def _patch(name: str, crop: tuple[int, int, int, int]) -> Image.Image:
    return Image.fromarray(photo_array(name)).crop(crop).resize((SIDE, SIDE), Image.Resampling.BILINEAR)


def make_region_photos(directory) -> dict[str, tuple[int, int]]:
    """Write the photos; return {file name: (x, y) of the pasted cat} for the cat photos."""
    import skimage.data

    gravel = np.asarray(skimage.data.gravel())
    cat = _patch("chelsea", (140, 30, 320, 210))
    cup = _patch("coffee", (180, 40, 440, 300))
    rng = np.random.default_rng(0)
    where = {}
    for i in range(N_CAT + N_CUP):
        x0, y0 = rng.integers(0, gravel.shape[1] - W), rng.integers(0, gravel.shape[0] - H)
        img = Image.fromarray(gravel[y0: y0 + H, x0: x0 + W]).convert("RGB")
        px, py = int(rng.integers(8, W - SIDE - 8)), int(rng.integers(8, H - SIDE - 8))
        name = f"{'cat' if i < N_CAT else 'cup'}{i:02d}.png"
        img.paste(cat if i < N_CAT else cup, (px, py))
        img.save(directory / name)
        if i < N_CAT:
            where[name] = (px, py)
    return where


def _iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module")
def region_project(tmp_path_factory):
    """(project root, {cat photo: (x, y)}): the photos ingested, their patch maps computed."""
    from labeler.config import Settings
    from labeler.embedding.patch_maps import compute_patch_maps
    from labeler.pipeline import ingest
    from labeler.project import Project

    base = tmp_path_factory.mktemp("region")
    (base / "images").mkdir()
    where = make_region_photos(base / "images")
    s = Settings(backbone="efficientnet-lite0", pca_components=16, min_cluster_size=3, min_samples=2,
                 batch_size=16, num_workers=0)
    ingest(base / "images", base / "proj", s, progress=False)
    p = Project(base / "proj")
    compute_patch_maps(p, progress=False, num_workers=0)
    p.store.close()
    return base / "proj", where


def _ids(project) -> dict[str, int]:
    return {r["path"]: int(r["id"]) for r in project.store.image_table()}


def _assert_finds_the_cats(res, where, query_name, n=N_CAT - 1):
    """The first ``n`` hits are the other cat photos, each matched on its cat."""
    hits = res["hits"] if isinstance(res, dict) else [h.__dict__ for h in res.hits]
    top = hits[:n]
    assert {h["path"] for h in top} == set(where) - {query_name}, [(h["path"], h["similarity"]) for h in hits]
    for h in top:
        x, y = where[h["path"]]
        bx, by, bw, bh = h["box"]  # whole cells (~23 x 17 px here): the cat's centre is inside
        assert bx <= x + SIDE / 2 <= bx + bw and by <= y + SIDE / 2 <= by + bh, (h["path"], h["box"], (x, y))
        assert _iou(h["box"], (x, y, SIDE, SIDE)) > 0.35, (h["path"], h["box"], (x, y))
        assert h["width"] == W and h["height"] == H
    assert all(a["similarity"] >= b["similarity"] for a, b in zip(hits, hits[1:]))


def test_region_search_library_by_id_by_file_and_the_faiss_index(region_project, tmp_path, monkeypatch):
    from labeler import patch_index
    from labeler.embedding.patch_maps import box_cells, load_patch_maps
    from labeler.project import Project
    from labeler.search import Searcher, search_region

    root, where = region_project
    p = Project(root)
    ids = _ids(p)
    q = "cat00.png"
    x, y = where[q]
    res = search_region(p, ids[q], (x, y, SIDE, SIDE), k=12)
    assert res.query_image_id == ids[q] and ids[q] not in [h.image_id for h in res.hits]
    assert _iou(res.query_cells_box, (x, y, SIDE, SIDE)) > 0.6 and res.index == "all"
    _assert_finds_the_cats(res, where, q)
    d = json.loads(json.dumps(res.to_dict()))  # serialises as the JSON answers do
    assert d["hits"][0]["box"] == res.hits[0].box

    # A photo not in the collection: a new gravel crop with the cat elsewhere (through the backbone).
    new = tmp_path / "new_cat.png"
    make_region_photos(tmp_path)  # same draw: cat00.png there is the collection's; change it
    img = Image.open(tmp_path / "cat05.png").transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    img.save(new)
    fx, fy = where["cat05.png"]
    res = Searcher(p).by_region(new, f"{fx},{H - fy - SIDE},{SIDE},{SIDE}", 10)
    assert res.query_image_id is None and res.query == "new_cat.png"
    assert sum(h.path in where for h in res.hits[:N_CAT]) >= N_CAT - 1

    # Above RERANK_ALL images the candidates come from the FAISS index, saved in the manifest.
    monkeypatch.setattr(patch_index, "RERANK_ALL", 0)
    s = Searcher(p)
    res = s.by_region(ids[q], (x, y, SIDE, SIDE), 12)
    assert res.index == "flat"
    _assert_finds_the_cats(res, where, q)
    saved = root / "patches" / "index.faiss"
    assert saved.is_file() and p.store.manifest_entry("patches/index.faiss") is not None
    mtime = saved.stat().st_mtime_ns
    patch_index.project_patch_index(p)  # current: read back, not rebuilt
    assert saved.stat().st_mtime_ns == mtime
    info = dict(p.store.get_meta("patch_maps"))
    p.store.set_meta(patch_maps={**info, "created": info["created"] + 1})  # the maps changed: rebuilt
    try:
        patch_index.project_patch_index(p)
        assert saved.stat().st_mtime_ns != mtime
    finally:
        p.store.set_meta(patch_maps=info)

    # Product quantisation (forced at this size): the region is still found.
    maps, info = load_patch_maps(p)
    ivf = patch_index.build_patch_index(maps, exact_max=0, nlist=16, pq_bits=4)
    assert ivf.kind == "ivfpq" and len(ivf) == maps.shape[0] * maps.shape[1]
    row = s.id_to_row[ids[q]]
    found = patch_index.region_search(p, np.asarray(maps[row], np.float32),
                                      box_cells((x, y, SIDE, SIDE), W, H, info), 9,
                                      maps=maps, info=info, index=ivf, exclude_row=row)
    rows = {s.id_to_row[ids[n]] for n in where if n != q}
    assert {r for r, _, _ in found} == rows
    p.store.close()


def test_region_search_errors(region_project, tmp_path):
    import shutil

    from labeler.errors import BadInputError, NotFoundError, StoreError
    from labeler.project import Project
    from labeler.search import search_region

    root, _ = region_project
    p = Project(root)
    for box, words in [("1,2,3", "x,y,w,h"), ("a,b,c,d", "x,y,w,h"), ("1,2,0,5", "empty"),
                       ("1,2,nan,5", "finite"), ((900, 900, 10, 10), "outside the image")]:
        with pytest.raises(BadInputError, match=words):
            search_region(p, 1, box)
    with pytest.raises(StoreError, match="unknown image id"):
        search_region(p, 10**6, (1, 1, 10, 10))
    p.store.close()
    bare = tmp_path / "bare"
    shutil.copytree(root, bare)
    shutil.rmtree(bare / "patches")
    with pytest.raises(NotFoundError, match="--patch-maps"):
        search_region(bare, 1, (1, 1, 10, 10))


def test_region_search_cli(region_project, tmp_path):
    import shutil

    from click.testing import CliRunner

    from labeler.cli import main
    from labeler.project import Project

    root, where = region_project
    p = Project(root)
    ids = _ids(p)
    p.store.close()
    q = "cat03.png"
    x, y = where[q]

    def run(*args):
        return CliRunner().invoke(main, ["search", *map(str, args), "--project", str(root)])

    r = run(ids[q], "--box", f"{x},{y},{SIDE},{SIDE}", "-k", 12, "--json")
    assert r.exit_code == 0, r.output
    _assert_finds_the_cats(json.loads(r.output), where, q)
    # A file of the collection is recognised by its bytes; plain text names each hit's box.
    r = run(root.parent / "images" / q, "--box", f"{x},{y},{SIDE},{SIDE}", "-k", 3)
    assert r.exit_code == 0 and r.output.splitlines()[0].startswith(f"query {q}, box"), r.output
    assert len(r.output.splitlines()) == 4 and " at " in r.output.splitlines()[1]
    for args, words in [((ids[q], "--box", "1,2,3"), "x,y,w,h"), ((ids[q], "--box", "900,900,5,5"), "outside"),
                        ((ids[q], 1, "--box", "1,2,3,4"), "one image")]:
        r = run(*args)
        assert r.exit_code == 1 and words in r.output and len(r.output.strip().splitlines()) == 1, r.output
    bare = tmp_path / "bare"
    shutil.copytree(root, bare)
    shutil.rmtree(bare / "patches")
    r = CliRunner().invoke(main, ["search", "1", "--box", "1,1,9,9", "--project", str(bare)])
    assert r.exit_code == 1 and "labeler features --project" in r.output and "--patch-maps" in r.output


def test_region_search_http(region_project, tmp_path):
    import shutil

    from labeler.app import create_app
    from labeler.app.routes import SEARCH_API_URL
    from labeler.project import Project

    root, where = region_project
    p = Project(root)
    ids = _ids(p)
    p.store.close()
    client = create_app(root).server.test_client()
    q = "cat07.png"
    x, y = where[q]
    r = client.post(SEARCH_API_URL, data={"id": str(ids[q]), "box": f"{x},{y},{SIDE},{SIDE}", "k": "12"})
    assert r.status_code == 200, r.data
    _assert_finds_the_cats(r.get_json(), where, q)
    data = (root.parent / "images" / q).read_bytes()
    r = client.post(SEARCH_API_URL, data={"image": (io.BytesIO(data), "mine.png"), "box": f"{x},{y},{SIDE},{SIDE}"},
                    content_type="multipart/form-data")
    d = r.get_json()
    assert r.status_code == 200 and d["query"] == "mine.png" and d["query_image_id"] == ids[q]
    assert len(d["hits"]) == 10 and all(len(h["box"]) == 4 for h in d["hits"])
    for form, words in [({"id": str(ids[q]), "box": "1,2"}, "x,y,w,h"), ({"id": "x", "box": "1,2,3,4"}, "image id"),
                        ({"id": str(ids[q]), "box": "900,900,9,9"}, "outside"),
                        ({"id": "999999", "box": "1,1,9,9"}, "unknown image id"),
                        ({"id": str(ids[q]), "box": "1,1,9,9", "k": "0"}, "between 1 and 1000"),
                        ({"box": "1,1,9,9"}, "field 'image'"),
                        ({"id": "1", "box": "1,1,9,9", "image": (io.BytesIO(data), "a.png")}, "not both")]:
        r = client.post(SEARCH_API_URL, data=form, content_type="multipart/form-data")
        assert r.status_code == 400 and words in r.get_json()["error"], (form, r.data)
    r = client.post(SEARCH_API_URL, data={"id": str(ids[q])})  # an id alone: whole-image search
    assert r.status_code == 200 and r.get_json()["query_image_id"] == ids[q]
    bare = tmp_path / "bare"
    shutil.copytree(root, bare)
    shutil.rmtree(bare / "patches")
    r = create_app(bare).server.test_client().post(SEARCH_API_URL, data={"id": "1", "box": "1,1,9,9"})
    assert r.status_code == 409 and "--patch-maps" in r.get_json()["error"]
