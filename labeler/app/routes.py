"""Flask routes of the dashboard: thumbnails and images by id, the CSV, basic auth.

The browser only ever sends an image id; the file is looked up in the database
and resolved through :meth:`Project.image_path`, which refuses paths that leave
the image root.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from flask import Flask, Response, abort, request, send_file

from ..export import export_csv_text
from ..project import Project, ProjectError
from ..errors import BadInputError, StoreError

THUMB_URL = "/thumb/{}"
IMAGE_URL = "/image/{}"
EXPORT_URL = "/export/labels.csv"


def thumb_url(image_id: int) -> str:
    return THUMB_URL.format(int(image_id))


def image_url(image_id: int) -> str:
    return IMAGE_URL.format(int(image_id))


def _image_row(project: Project, image_id: int):
    try:
        return project.store.get_image(image_id)
    except StoreError:
        abort(404)


def register_routes(server: Flask, project: Project) -> None:
    """Add /thumb/<id>, /image/<id> and the CSV download to ``server``."""

    @server.route("/thumb/<int:image_id>")
    def thumb(image_id: int):
        _image_row(project, image_id)
        path = project.thumb_path(image_id).resolve()
        if not path.is_relative_to(project.thumbs_dir.resolve()) or not path.is_file():
            abort(404)
        # A thumbnail changes only if its file changes (a re-ingest): an hour is safe.
        return send_file(path, mimetype="image/jpeg", max_age=3600)

    @server.route("/image/<int:image_id>")
    def image(image_id: int):
        row = _image_row(project, image_id)
        try:
            path = project.image_path(row["path"])
        except ProjectError:
            abort(403)
        if not path.is_file():
            abort(404)
        return send_file(path, max_age=600)

    @server.route(EXPORT_URL)
    def export_labels():
        text = export_csv_text(project)
        return Response(
            text, mimetype="text/csv",
            headers={"Content-Disposition": "attachment; filename=labels.csv", "Cache-Control": "no-store"},
        )


def check_basic_auth(header: str | None, expected: str) -> bool:
    """Does an ``Authorization`` header carry the credentials ``user:password``?

    Compared in constant time (``hmac.compare_digest``).
    """
    if not header or not header.startswith("Basic "):
        return False
    try:
        given = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def install_basic_auth(server: Flask, auth: str) -> None:
    """Require HTTP basic auth (``auth`` = 'user:password') on every request.

    Raises
    ------
    BadInputError
        ``auth`` is not of the form user:password.
    """
    user, sep, pw = auth.partition(":")
    if not sep or not user or not pw:
        raise BadInputError("auth must be 'user:password' (both non-empty)")

    @server.before_request
    def _require_auth():
        if not check_basic_auth(request.headers.get("Authorization"), auth):
            return Response("authentication required", 401,
                            {"WWW-Authenticate": 'Basic realm="labeler", charset="UTF-8"'})
        return None
