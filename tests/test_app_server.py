"""The dashboard's server limits: body cap, 404 for any bad id, security headers, Host
allow-list, users from an auth file as annotators, and `labeler serve` refusing unsafe binds."""

from __future__ import annotations

import base64

import pytest
from click.testing import CliRunner
from werkzeug.security import generate_password_hash

from labeler.app import create_app
from labeler.app.actions import attempt
from labeler.app.labelling import label_ids_action, undo_action
from labeler.app.routes import host_name
from labeler.cli import main
from labeler.errors import BadInputError


@pytest.fixture()
def client(project):
    return create_app(project, max_content_length=1024 * 1024).server.test_client()


def _basic(user, pw):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


def test_request_body_cap_answers_413(client, project):
    r = client.post("/_dash-update-component", data=b"x" * (1024 * 1024 + 1),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert project.store.labels() == {}
    app = create_app(project)
    assert app.server.config["MAX_CONTENT_LENGTH"] == 50 * 1024 * 1024  # the default


@pytest.mark.parametrize("image_id", ["999999", str(2**63), str(10**30), "99999999999999999999999999999999"])
def test_out_of_range_image_ids_answer_404(client, image_id):
    assert client.get(f"/thumb/{image_id}").status_code == 404
    assert client.get(f"/image/{image_id}").status_code == 404


def test_security_headers_on_every_response(client, project):
    image_id = int(project.store.row_image_ids()[0])
    for url in ("/", "/_dash-layout", f"/thumb/{image_id}", "/export/labels.csv", "/thumb/999999"):
        r = client.get(url)
        assert r.headers["X-Content-Type-Options"] == "nosniff", url
        assert r.headers["Referrer-Policy"] == "no-referrer", url
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
        assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]  # scripts by hash only


def test_host_allow_list(project):
    app = create_app(project, allowed_hosts=["labels.example.org"])
    c = app.server.test_client()
    for host in ("localhost", "127.0.0.1:8050", "[::1]:8050", "labels.example.org", "LABELS.example.org:443"):
        assert c.get("/_dash-layout", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example.com", "attacker.test:8050", "127.0.0.1.evil.test"):
        r = c.get("/_dash-layout", headers={"Host": host})
        assert r.status_code == 400 and b"--allowed-host" in r.data, host
    assert host_name("[::1]:80") == "[::1]" and host_name("A.b:1") == "a.b"


def test_auth_file_users_are_the_annotators(project, tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("# team\nana:" + generate_password_hash("s3cret") + "\n\nbob:"
                     + generate_password_hash("other") + "\n")
    app = create_app(project, auth_file=users)
    c = app.server.test_client()
    assert c.get("/_dash-layout").status_code == 401
    assert c.get("/_dash-layout", headers=_basic("ana", "wrong")).status_code == 401
    assert c.get("/_dash-layout", headers=_basic("eve", "s3cret")).status_code == 401
    assert c.get("/_dash-layout", headers=_basic("bob", "other")).status_code == 200
    # in a request authenticated as ana, the typed name 'mallory' is ignored
    ids = [int(i) for i in project.store.row_image_ids()[:2]]
    with app.server.test_request_context("/", headers=_basic("ana", "s3cret")):
        app.server.preprocess_request()
        assert attempt(label_ids_action, app.labeler, ids, "mono", "mallory").kind == "ok"
    assert {r["annotator"] for r in project.store.label_rows()} == {"ana"}
    with app.server.test_request_context("/", headers=_basic("bob", "other")):
        app.server.preprocess_request()
        assert attempt(undo_action, app.labeler, "ana").kind == "warn"  # bob cannot undo ana's work
    assert len(project.store.labels()) == 2
    bad = tmp_path / "bad.txt"
    bad.write_text("ana:plaintext-password\n")
    with pytest.raises(BadInputError, match="bad.txt:1"):
        create_app(project, auth_file=bad)
    with pytest.raises(BadInputError, match="not both"):
        create_app(project, auth="a:b", auth_file=users)


def test_serve_refuses_unsafe_binds(project):
    def serve(*args):
        return CliRunner().invoke(main, ["serve", "--project", str(project.root), *args])

    res = serve("--host", "0.0.0.0")
    assert res.exit_code == 2 and "--auth-file" in res.output and "Traceback" not in res.output
    res = serve("--host", "192.168.1.20", "--debug", "--auth", "a:b")
    assert res.exit_code == 2 and "loopback" in res.output
    res = serve("--host", "127.0.0.1", "--auth", "no-colon")
    assert res.exit_code == 1 and "user:password" in res.output


def test_wsgi_refuses_to_serve_without_auth(project):
    from labeler.app.wsgi import app_from_env

    with pytest.raises(BadInputError, match="LABELER_AUTH_FILE"):
        app_from_env({"LABELER_PROJECT": str(project.root)})
    app = app_from_env({"LABELER_PROJECT": str(project.root), "LABELER_AUTH": "ana:pw",
                        "LABELER_ALLOWED_HOSTS": "labels.example.org", "LABELER_MAX_REQUEST_MB": "2"})
    assert app.server.config["MAX_CONTENT_LENGTH"] == 2 * 1024 * 1024
    c = app.server.test_client()
    assert c.get("/_dash-layout", headers={**_basic("ana", "pw"), "Host": "labels.example.org"}).status_code == 200


def test_a_changed_file_shows_its_label_stale_in_info_and_the_dashboard(project):
    from labeler import labels
    from labeler.app.labelling import progress_view
    from labeler.app.components import caption
    from labeler.app.panels import image_facts

    actx = create_app(project).labeler
    image_id = int(project.store.row_image_ids()[0])
    labels.label_images(project, [image_id], "mono", annotator="ana")
    row = project.store.get_image(image_id)
    # the same path with new content, as the catalogue step of a re-ingest records it
    project.store.add_or_update_images([{"path": row["path"], "size": row["size"] + 1, "mtime": 9.0,
                                         "hash": "changed"}])
    assert "stale" in json_dump(progress_view(actx)[2])
    assert "stale" in caption(image_id, image_facts(actx, [image_id])[image_id])
    from labeler.export import export_csv_text

    assert "label_stale" in export_csv_text(project).splitlines()[0]
    assert ",yes," in export_csv_text(project).splitlines()[1]
    runner = CliRunner()
    out = runner.invoke(main, ["info", "--project", str(project.root)]).output
    assert "1 stale label(s)" in out
    assert "confirmed 1" in runner.invoke(main, ["labels", "--project", str(project.root), "confirm"]).output
    assert project.store.stale_image_ids() == [] and project.store.labels() == {image_id: "mono"}
    assert ",yes," not in export_csv_text(project)


def json_dump(components) -> str:
    import json

    return json.dumps([c.to_plotly_json() for c in components], default=str)
