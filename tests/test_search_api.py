"""POST /api/search: reverse image search over HTTP with the dashboard's warm Searcher."""

import io

from PIL import Image, ImageOps

from labeler.app import create_app
from labeler.app.routes import SEARCH_API_URL


def _post(client, data: bytes | None, name="photo.png", **form):
    files = {} if data is None else {"image": (io.BytesIO(data), name)}
    return client.post(SEARCH_API_URL, data={**form, **files}, content_type="multipart/form-data")


def test_search_api_new_photo_collection_photo_and_errors(project):
    app = create_app(project)
    client = app.server.test_client()
    image_id = int(project.store.row_image_ids()[4])
    path = project.image_path(project.store.get_image(image_id)["path"])
    original = path.read_bytes()
    buf = io.BytesIO()
    with Image.open(path) as im:
        ImageOps.mirror(im).save(buf, format="PNG")

    r = _post(client, buf.getvalue(), "mirrored.png", k="5")
    assert r.status_code == 200, r.get_json()
    d = r.get_json()
    assert d["query"] == "mirrored.png" and d["query_image_id"] is None and len(d["neighbours"]) == 5
    sims = [n["similarity"] for n in d["neighbours"]]
    assert sims == sorted(sims, reverse=True) and d["vote_summary"] == "0 of 5 labelled"
    assert app.labeler.searcher()._backbone is not None  # the warm model stays loaded

    r = client.post(SEARCH_API_URL + "?k=3", data={"image": (io.BytesIO(original), "same.png")},
                    content_type="multipart/form-data")
    d = r.get_json()
    assert r.status_code == 200 and d["query_image_id"] == image_id and len(d["neighbours"]) == 3
    assert image_id not in [n["image_id"] for n in d["neighbours"]]

    for resp, words in [
        (_post(client, None), "field 'image'"),
        (_post(client, b"not an image at all"), "not a readable image"),
        (_post(client, original, k="0"), "between 1 and 1000"),
        (_post(client, original, k="many"), "integer"),
    ]:
        assert resp.status_code == 400 and resp.is_json and words in resp.get_json()["error"], resp.data


def test_search_api_size_cap(project, monkeypatch):
    import labeler.app.uploads as uploads

    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 1024)
    client = create_app(project).server.test_client()
    r = _post(client, b"x" * 4096)
    assert r.status_code == 400 and "larger than" in r.get_json()["error"]
