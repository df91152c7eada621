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
import io
import os
from pathlib import Path

from flask import Flask, Response, abort, current_app, g, jsonify, request, send_file

from ..export import export_csv_text
from ..project import Project, ProjectError
from ..errors import BadImageError, BadInputError, LabelerError, StoreError
from ..images import load_image

THUMB_URL = "/thumb/{}"
IMAGE_URL = "/image/{}"
EXPORT_URL = "/export/labels.csv"
VIEW_URL = "/view/{}"
VIEW_MAX_SIDE = 2048  # px: the large view's long side; bigger photos are downscaled
ANOMALY_URL = "/anomaly/{}.png"
HEAT_SIDE = 512  # px: the heat map image's long side (the image's aspect ratio)


def thumb_url(image_id: int) -> str:
    return THUMB_URL.format(int(image_id))


def image_url(image_id: int) -> str:
    return IMAGE_URL.format(int(image_id))


# SQLite integers are signed 64-bit: a larger id from a URL cannot name an image.
_MAX_ID = 2**63 - 1


def view_url(image_id: int) -> str:
    """The large view's copy of an image: full resolution up to VIEW_MAX_SIDE px."""
    return VIEW_URL.format(int(image_id))


def anomaly_url(image_id: int) -> str:
    """The anomaly heat map of an image: a transparent PNG of the image's aspect ratio."""
    return ANOMALY_URL.format(int(image_id))


def heat_png(grid, width: int, height: int, info: dict, side: int = HEAT_SIDE) -> bytes:
    """A heat map as a transparent PNG laid over an image of ``width`` × ``height`` pixels.

    Parameters
    ----------
    grid : ndarray (g, g) float
        Patch anomaly (:func:`labeler.embedding.defect_features.anomaly_grid`; position-normalised:
        1 = typical at that position). The colour scale starts at the grid's median, so a raw
        (not normalised) distance grid is drawn the same way.
    width, height : int
        The image's size: the PNG has its aspect ratio, ``side`` px on its long side.
    info : dict
        The patch maps' description (where the cells lie: :func:`~labeler.embedding.patch_maps.cell_boxes`).

    Returns
    -------
    bytes
        PNG, RGBA: transparent where the anomaly is at most the grid's median m (1 for a
        normalised grid), from yellow to red and more opaque up to the largest anomaly (or
        2 m, if that is below 2 m).
    """
    import numpy as np
    from PIL import Image

    from ..embedding.patch_maps import cell_boxes

    a = np.asarray(grid, dtype=np.float32)
    m = float(np.nanmedian(a)) if np.isfinite(a).any() else 1.0
    m = m if m > 0 else 1.0
    a = np.nan_to_num(a, nan=m)
    v = np.clip((a - m) / (max(float(a.max()), 2 * m) - m), 0.0, 1.0)
    rgba = np.stack([np.full_like(v, 255), 255 * (1 - v), np.zeros_like(v), 210 * v], axis=-1)
    small = Image.fromarray(rgba.round().astype(np.uint8), "RGBA")
    scale = side / max(width, height)
    pw, ph = max(1, round(width * scale)), max(1, round(height * scale))
    boxes = cell_boxes(width, height, info) * scale
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()
    frame = small.resize((max(1, round(x1 - x0)), max(1, round(y1 - y0))), Image.Resampling.BILINEAR)
    out = Image.new("RGBA", (pw, ph), (0, 0, 0, 0))
    out.paste(frame, (round(x0), round(y0)))
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


def view_jpeg(path, max_side: int = VIEW_MAX_SIDE) -> bytes:
    """An image file as JPEG bytes, downscaled (Lanczos) to at most ``max_side`` px on
    its long side, EXIF orientation applied.

    Raises
    ------
    BadImageError
        The file cannot be decoded.
    """
    img = load_image(path, draft_size=(max_side, max_side))
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _image_row(project: Project, image_id: int):
    if not 0 <= image_id <= _MAX_ID:
        abort(404)
    try:
        return project.store.get_image(image_id)
    except StoreError:
        abort(404)


def _image_file(project: Project, image_id: int) -> Path:
    """The file of an image id, inside the project's image folder (else 403; 404
    when the id or the file does not exist)."""
    row = _image_row(project, image_id)
    try:
        path = project.image_path(row["path"])
    except ProjectError:
        abort(403)
    if not path.is_file():
        abort(404)
    return path


def register_routes(server: Flask, project: Project) -> None:
    """Add /thumb/<id>, /image/<id>, /view/<id> (size-capped), /anomaly/<id>.png (the heat
    map) and the CSV download to ``server``."""

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
        return send_file(_image_file(project, image_id), max_age=600)

    @server.route("/view/<int:image_id>")
    def view(image_id: int):
        try:
            data = view_jpeg(_image_file(project, image_id))
        except BadImageError:
            abort(404)
        # Private: behind basic auth a shared cache must not keep it.
        return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "private, max-age=600"})

    @server.route("/anomaly/<int:image_id>.png")
    def anomaly(image_id: int):
        # 404 (one line) while there is no anomaly bank or patch map for the image.
        from ..embedding.patch_maps import patch_maps_info
        from ..patch_index import stored_image_size

        row = _image_row(project, image_id)
        try:
            from ..embedding.defect_features import anomaly_grid

            grid = anomaly_grid(project, image_id)
            w, h = stored_image_size(project, image_id)
        except (ImportError, LabelerError, OSError) as e:
            return Response(f"no heat map for image {int(row['id'])}: {e}", 404,
                            {"Content-Type": "text/plain; charset=utf-8"})
        return Response(heat_png(grid, w, h, patch_maps_info(project)), mimetype="image/png",
                        headers={"Cache-Control": "private, no-cache"})

    @server.route(EXPORT_URL)
    def export_labels():
        text = export_csv_text(project)
        return Response(
            text, mimetype="text/csv",
            headers={"Content-Disposition": "attachment; filename=labels.csv", "Cache-Control": "no-store"},
        )


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
#: for styles only). 'unsafe-eval' is there for the map: plotly.js draws its Scattergl
#: with regl, which compiles its draw commands with ``new Function``; without it the
#: map shows "WebGL is not supported" (seen in headless Chromium;
#: tests/test_app_browser_annotators.py checks that the map draws under this policy).
#: Inline scripts stay restricted to the hashes Dash computes. Everything else is this
#: origin only; no framing, no plugins, no <base> hijack.
CSP = ("default-src 'self'; script-src 'self' 'unsafe-eval' {hashes}; style-src 'self' 'unsafe-inline'; "
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

    server.register_error_handler(Exception, _unhandled_error)


#: Dash's own code: an error raised there while it parses a callback request means the
#: request was malformed (hand-made, fuzzed), not that the server failed.
_DASH_DIR = None


def _raised_by_dash(e: BaseException) -> bool:
    global _DASH_DIR
    import dash
    import dash.exceptions

    if isinstance(e, dash.exceptions.DashException):
        return True
    if _DASH_DIR is None:
        _DASH_DIR = str(Path(dash.__file__).parent)
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.startswith(_DASH_DIR)


#: Errors a callback raises when a value has the wrong type or shape (a string where the
#: page sends a number, a store's data that is not what the app wrote into it).
_VALUE_ERRORS = (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError, LabelerError)


def _unhandled_error(e: Exception):
    """Any error a view did not handle: the traceback goes to the server's log, never into
    the response (issue 25, part 6).

    On Dash's callback endpoint, a request Dash cannot parse (not a JSON object, an
    unknown callback, outputs or inputs that do not match its definition) and a value
    a callback cannot use (a wrong type or shape: only a hand-made request sends those,
    the page's components do not) are the client's: 400, one plain line. The second
    kind is logged with its traceback at ERROR level, so that a real bug the page
    triggers still shows in the log. Anything else (a disk, the database) is the
    server's: 500, one plain line."""
    from werkzeug.exceptions import HTTPException

    if isinstance(e, HTTPException):
        return e
    text = {"Content-Type": "text/plain; charset=utf-8"}
    if request.path.endswith("/_dash-update-component"):
        if not isinstance(request.get_json(silent=True), dict) or _raised_by_dash(e):
            current_app.logger.info("malformed callback request (%s: %s)", type(e).__name__, str(e)[:200])
            return Response("bad callback request: the body does not match any callback of this page", 400, text)
        if isinstance(e, _VALUE_ERRORS):
            current_app.logger.error("a callback could not use the values sent (a bug if the page sent them)",
                                     exc_info=e)
            return Response("bad callback request: a value has the wrong type or shape", 400, text)
    current_app.logger.error("error on %s %s", request.method, request.path, exc_info=e)
    return Response("internal error: the server's log has the details", 500, text)


# -- search over HTTP ---------------------------------------------------------------------
SEARCH_API_URL = "/api/search"


def register_search_api(server: Flask, actx) -> None:
    """``POST /api/search``: reverse image search for scripts, with the app's warm model.

    The request is ``multipart/form-data`` with the photo in the field ``image``
    and optionally ``k`` (neighbours, 1-1000, default 10) as a form field or query
    parameter. The answer is :meth:`labeler.search.SearchResult.to_dict` as JSON
    plus ``vote_summary``; a bad request (no file, too large — over
    :data:`~labeler.app.uploads.MAX_UPLOAD_BYTES` —, not an accepted image, bad
    ``k``) gets ``{"error": "..."}`` with status 400.

    Search by a region: a ``box`` field ``x,y,w,h`` (pixels of the original image) with
    the photo, or with ``id`` (an image of the collection) instead of the photo, answers
    :meth:`labeler.patch_index.RegionSearchResult.to_dict`: ``hits`` best first, each with
    its matched ``box`` in its own image. ``id`` without a box is a whole-image search of
    that image. A malformed box, one outside the image, an unknown id: 400; no patch maps
    in the project: 409 (the error names the command that computes them).

    Example::

        curl -F image=@photo.jpg -F k=5 http://127.0.0.1:8050/api/search
        curl -F id=12 -F box=40,30,64,64 http://127.0.0.1:8050/api/search
    """
    from ..errors import NotFoundError, QueryImageError
    from .uploads import MAX_UPLOAD_BYTES, UploadError, checked_temp_file

    def bad(msg: str):
        return jsonify({"error": msg}), 400

    @server.route(SEARCH_API_URL, methods=["POST"])
    def api_search():
        if request.content_length is not None and request.content_length > MAX_UPLOAD_BYTES + 65536:
            return bad(f"the file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
        raw_k = request.values.get("k", "10")
        try:
            k = int(raw_k)
        except ValueError:
            return bad(f"k must be an integer, got {raw_k[:20]!r}")
        if not 1 <= k <= 1000:
            return bad("k must be between 1 and 1000")
        upload = request.files.get("image")
        box, raw_id = request.values.get("box"), request.values.get("id")
        image_id = None
        if raw_id is not None:
            if upload is not None:
                return bad("send either the photo ('image') or an image 'id', not both")
            if not raw_id.strip().isdigit() or int(raw_id) > _MAX_ID:
                return bad(f"id must be an image id (a non-negative integer), got {raw_id[:20]!r}")
            image_id = int(raw_id)
        elif upload is None:
            return bad("send the photo as multipart/form-data in the field 'image' (or an image 'id')")
        try:
            if image_id is not None:
                if box is None:
                    res = actx.searcher().by_id(image_id, k)
                    return jsonify({**res.to_dict(), "vote_summary": res.vote_summary})
                return jsonify(actx.searcher().by_region(image_id, box, k).to_dict())
            data = upload.stream.read(MAX_UPLOAD_BYTES + 1)
            if len(data) > MAX_UPLOAD_BYTES:
                return bad(f"the file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
            name = (upload.filename or "uploaded photo").replace("/", "_")[-120:]
            with checked_temp_file(data) as path:
                res = actx.searcher().by_file(path, k) if box is None else actx.searcher().by_region(path, box, k)
        except NotFoundError as e:
            return jsonify({"error": str(e)}), 409
        except (UploadError, QueryImageError, BadInputError, StoreError) as e:
            return bad(str(e))
        res.query = name
        if box is not None:
            return jsonify(res.to_dict())
        return jsonify({**res.to_dict(), "vote_summary": res.vote_summary})
