"""Flask routes of the dashboard: thumbnails and images by id, the CSV, basic auth,
and the server's hardening (body cap, Host allow-list, security headers).

The browser only ever sends an image id; the file is looked up in the database
and resolved through :meth:`Project.image_path`, which refuses paths that leave
the image root.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from flask import Flask, Response, abort, g, request, send_file

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


# SQLite integers are signed 64-bit: a larger id from a URL cannot name an image.
_MAX_ID = 2**63 - 1


def _image_row(project: Project, image_id: int):
    if not 0 <= image_id <= _MAX_ID:
        abort(404)
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
    creds = _basic_credentials(header)
    if creds is None:
        return False
    given = f"{creds[0]}:{creds[1]}"
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        given = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, pw = given.partition(":")
    return (user, pw) if sep else None


class Users:
    """Who may use the dashboard: user name -> Werkzeug password hash.

    Hashes are made by :func:`werkzeug.security.generate_password_hash` and checked
    with :func:`~werkzeug.security.check_password_hash` (scrypt by default, tens of
    milliseconds on purpose); a successful check is remembered per process, keyed
    by an HMAC of the credentials, so that the dozens of requests of one page do
    not each pay it.
    """

    def __init__(self, hashes: dict[str, str]):
        self.hashes = dict(hashes)
        self._key = os.urandom(32)
        self._ok: set[bytes] = set()

    @classmethod
    def from_pair(cls, auth: str) -> Users:
        """One user from 'user:password'.

        Raises
        ------
        BadInputError
            ``auth`` is not of the form user:password.
        """
        from werkzeug.security import generate_password_hash

        user, sep, pw = auth.partition(":")
        if not sep or not user or not pw:
            raise BadInputError("auth must be 'user:password' (both non-empty)")
        return cls({user: generate_password_hash(pw)})

    @classmethod
    def from_file(cls, path) -> Users:
        """Users from a file of ``user:hash`` lines (blank lines and # comments skipped).

        Raises
        ------
        BadInputError
            The file is missing, unreadable, empty, or has a malformed line.
        """
        from pathlib import Path

        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise BadInputError(f"cannot read the auth file {path}: {e}") from None
        hashes = {}
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, h = line.partition(":")
            if not sep or not user.strip() or "$" not in h:
                raise BadInputError(
                    f"{path}:{n}: expected 'user:hash' with a hash from werkzeug's generate_password_hash")
            hashes[user.strip()] = h.strip()
        if not hashes:
            raise BadInputError(f"the auth file {path} lists no user")
        return cls(hashes)

    def check(self, header: str | None) -> str | None:
        """The user an ``Authorization: Basic`` header authenticates, or None."""
        from werkzeug.security import check_password_hash

        creds = _basic_credentials(header)
        if creds is None or creds[0] not in self.hashes:
            return None
        user, pw = creds
        tag = hmac.new(self._key, f"{user}\0{pw}".encode("utf-8"), hashlib.sha256).digest()
        if tag in self._ok:
            return user
        if not check_password_hash(self.hashes[user], pw):
            return None
        if len(self._ok) > 10_000:
            self._ok.clear()
        self._ok.add(tag)
        return user


def install_basic_auth(server: Flask, auth: str | Users) -> Users:
    """Require HTTP basic auth on every request; the user becomes the annotator.

    Parameters
    ----------
    auth : str or Users
        'user:password' for one user, or :class:`Users` (e.g. from an auth file).

    Raises
    ------
    BadInputError
        ``auth`` is a string not of the form user:password.
    """
    users = auth if isinstance(auth, Users) else Users.from_pair(auth)

    @server.before_request
    def _require_auth():
        user = users.check(request.headers.get("Authorization"))
        if user is None:
            return Response("authentication required", 401,
                            {"WWW-Authenticate": 'Basic realm="labeler", charset="UTF-8"'})
        g.labeler_user = user
        return None

    return users


#: Host names a local dashboard answers to. A DNS-rebinding page reaches 127.0.0.1
#: under its own name, so any other Host header is refused (400).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")

#: Dash renders its page with inline <script>s (allowed by their hashes, computed by
#: ``Dash.csp_hashes``) and sets inline styles on components (hence 'unsafe-inline'
#: for styles only). No 'unsafe-eval': the browser tests draw, select and hover the
#: WebGL map without a CSP violation. Everything else is this origin only; no
#: framing, no plugins, no <base> hijack.
CSP = ("default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def host_name(host: str) -> str:
    """The name part of a Host header, lower-case: 'a.b:8050' -> 'a.b', '[::1]:80' -> '[::1]'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if ":" in host else host


def install_hardening(server: Flask, *, allowed_hosts=(), max_content_length: int = 50 * 1024**2,
                      csp_hashes=()) -> None:
    """Body cap, Host allow-list and security headers on every response.

    Parameters
    ----------
    allowed_hosts : iterable of str
        Host names (without port) answered besides :data:`LOOPBACK_HOSTS`.
    max_content_length : int
        Largest request body in bytes (Flask answers 413 above it).
    csp_hashes : iterable of str
        'sha256-...' sources of the page's inline scripts.
    """
    server.config["MAX_CONTENT_LENGTH"] = int(max_content_length)
    hosts = {h.lower().strip() for h in (*LOOPBACK_HOSTS, *allowed_hosts) if h and h.strip()}
    csp = CSP.format(hashes=" ".join(h if h.startswith("'") else f"'{h}'" for h in csp_hashes))

    @server.before_request
    def _check_host():
        name = host_name(request.host or "")
        if name not in hosts:
            return Response(f"host {name!r} is not served here (start with --allowed-host {name} "
                            "to allow it)", 400, {"Content-Type": "text/plain; charset=utf-8"})
        return None

    @server.after_request
    def _headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("Content-Security-Policy", csp)
        resp.headers.setdefault("X-Frame-Options", "DENY")
        return resp
