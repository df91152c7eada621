"""Property-based fuzzing (hypothesis) of the dashboard's HTTP routes: image ids and path
segments of /view, /thumb and /image, uploads and parameters of /api/search, and bodies
of Dash's /_dash-update-component (bytes, any JSON, and real callbacks' payloads with
mangled fields and values). No answer is a 500, none carries a traceback."""

from __future__ import annotations

import json
import shutil
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labeler.app import create_app
from labeler.project import Project

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: Requests each test sent (reported by the last test, for the issue's counts).
SENT: dict[str, int] = {}


@pytest.fixture(scope="module")
def app(built_project, tmp_path_factory):
    dest = tmp_path_factory.mktemp("fuzz") / "project"
    shutil.copytree(built_project, dest)
    p = Project(dest)
    app = create_app(p, max_content_length=1024 * 1024)
    yield app
    p.store.close()


@pytest.fixture(scope="module")
def client(app):
    return app.server.test_client()


@pytest.fixture(scope="module")
def image_ids(app):
    return [int(i) for i in app.labeler.project.store.row_image_ids()[:10]]


@pytest.fixture(scope="module")
def callbacks(client):
    r = client.get("/_dash-dependencies")
    assert r.status_code == 200
    return r.get_json()


def _sound(r, what: str) -> None:
    SENT[what] = SENT.get(what, 0) + 1
    body = r.get_data()
    assert r.status_code < 500, (what, r.status_code, body[:300])
    assert b"Traceback" not in body and b'File "/' not in body, (what, body[:300])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
segments = st.text(max_size=30).map(lambda s: quote(s, safe=""))
ids = st.integers(-2**70, 2**70).map(str) | segments


@FUZZ
@given(route=st.sampled_from(["view", "thumb", "image"]), seg=ids | st.sampled_from(["0", "1", "-1", "01", "1.5"]))
def test_image_routes_never_fail_on_any_path_segment(client, route, seg):
    _sound(client.get(f"/{route}/{seg}"), "image routes")


@FUZZ
@given(route=st.sampled_from(["view", "thumb", "image"]), pick=st.integers(0, 9),
       query=st.dictionaries(st.text(max_size=6), st.text(max_size=12), max_size=3))
def test_image_routes_serve_real_ids_whatever_the_query(client, image_ids, route, pick, query):
    r = client.get(f"/{route}/{image_ids[pick]}", query_string=query)
    _sound(r, "image routes")
    assert r.status_code == 200


MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"RIFF\0\0\0\0WEBP", b"II*\0", b"%PDF-"]


@FUZZ
@given(head=st.sampled_from(MAGIC), tail=st.binary(max_size=1024), field=st.sampled_from(["image", "file", ""]),
       k=st.none() | st.text(max_size=12) | st.integers(-5, 2000).map(str), filename=st.text(max_size=40),
       k_in_query=st.booleans())
def test_search_api_answers_400_or_200_to_any_upload(client, head, tail, field, k, filename, k_in_query):
    data = {}
    if field:
        import io

        data[field] = (io.BytesIO(head + tail), filename or "x")
    query = {}
    if k is not None:
        (query if k_in_query else data)["k"] = k
    r = client.post("/api/search", data=data, query_string=query, content_type="multipart/form-data")
    _sound(r, "/api/search")
    assert r.status_code in (200, 400, 413), r.status_code
    if r.status_code == 400:
        assert set(r.get_json()) == {"error"}


@FUZZ
@given(body=st.binary(max_size=512), ctype=st.sampled_from(
    ["application/json", "multipart/form-data; boundary=x", "text/plain", "application/x-www-form-urlencoded", ""]))
def test_search_api_and_dash_survive_raw_bodies(client, body, ctype):
    for url in ("/api/search", "/_dash-update-component"):
        _sound(client.post(url, data=body, headers={"Content-Type": ctype} if ctype else {}), "raw bodies")


@FUZZ
@given(payload=json_values)
def test_dash_update_survives_any_json(client, payload):
    r = client.post("/_dash-update-component", data=json.dumps(payload), content_type="application/json")
    _sound(r, "/_dash-update-component")


@FUZZ
@given(data=st.data())
def test_dash_update_survives_real_callbacks_with_mangled_payloads(client, callbacks, data):
    """A callback the page really has, with its inputs and state given random values, and
    now and then a field of the payload replaced or dropped."""
    cb = data.draw(st.sampled_from(callbacks), label="callback")

    def values(props):
        return [{"id": p["id"], "property": p["property"], "value": data.draw(json_values)} for p in props]

    payload = {"output": cb["output"], "outputs": _outputs(cb), "inputs": values(cb["inputs"]),
               "changedPropIds": [f"{json.dumps(p['id']) if isinstance(p['id'], dict) else p['id']}."
                                  f"{p['property']}" for p in cb["inputs"][:1]],
               "state": values(cb.get("state", []))}
    mangle = data.draw(st.sampled_from([None, "drop", "replace"]), label="mangle")
    if mangle:
        key = data.draw(st.sampled_from(sorted(payload)), label="field")
        if mangle == "drop":
            del payload[key]
        else:
            payload[key] = data.draw(json_values, label="value")
    r = client.post("/_dash-update-component", data=json.dumps(payload), content_type="application/json")
    _sound(r, "/_dash-update-component")


def _outputs(cb):
    """The ``outputs`` field of a request as Dash's renderer builds it from ``output``
    ('..a.x...b.y..' for several outputs; '@hash' marks a duplicate output)."""
    multi = cb["output"].startswith("..")
    out = []
    for part in cb["output"].strip(".").split("...") if multi else [cb["output"]]:
        cid, _, prop = part.rpartition(".")
        try:
            cid = json.loads(cid)
        except ValueError:
            pass
        out.append({"id": cid, "property": prop.split("@")[0]})
    return out if multi else out[0]


def test_server_errors_elsewhere_are_one_plain_line(client, monkeypatch):
    from labeler.app import routes

    def broken(project):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(routes, "export_csv_text", broken)
    r = client.get("/export/labels.csv")
    assert r.status_code == 500 and r.get_data() == b"internal error: the server's log has the details"


def test_report_requests_fuzzed():
    print(f"\nrequests fuzzed: {sum(SENT.values())} ({', '.join(f'{k} {v}' for k, v in SENT.items())})")
