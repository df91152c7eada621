"""The dashboard as a WSGI module for gunicorn.

::

    LABELER_PROJECT=data/projects/elpv LABELER_AUTH_FILE=users.txt \\
    LABELER_ALLOWED_HOSTS=labels.example.org \\
        gunicorn -w 4 -b 0.0.0.0:8050 'labeler.app.wsgi:server'

Environment: LABELER_PROJECT (required); LABELER_AUTH_FILE (``user:hash`` lines)
or LABELER_AUTH (``user:password``), one of them required unless
LABELER_INSECURE_NO_AUTH=1, since gunicorn usually serves other machines;
LABELER_ALLOWED_HOSTS (comma-separated Host names besides the loopback ones);
LABELER_MAX_REQUEST_MB (request body cap, default 50).

Each worker process builds its own app; labels live in the project's SQLite
database (WAL), so workers see each other's writes.
"""

from __future__ import annotations

import os

from ..errors import BadInputError
from . import MAX_CONTENT_LENGTH, create_app


def app_from_env(env=os.environ):
    """Build the app from the environment variables above.

    Raises
    ------
    BadInputError
        LABELER_PROJECT is missing, or no auth is configured and
        LABELER_INSECURE_NO_AUTH is not set.
    """
    project = env.get("LABELER_PROJECT")
    if not project:
        raise BadInputError("set LABELER_PROJECT to the project directory (and LABELER_AUTH_FILE)")
    auth, auth_file = env.get("LABELER_AUTH") or None, env.get("LABELER_AUTH_FILE") or None
    if not (auth or auth_file) and env.get("LABELER_INSECURE_NO_AUTH") != "1":
        raise BadInputError("set LABELER_AUTH_FILE (user:hash lines) or LABELER_AUTH (user:password); "
                            "LABELER_INSECURE_NO_AUTH=1 serves without authentication")
    hosts = [h.strip() for h in env.get("LABELER_ALLOWED_HOSTS", "").split(",") if h.strip()]
    mb = env.get("LABELER_MAX_REQUEST_MB")
    cap = int(float(mb) * 1024 * 1024) if mb else MAX_CONTENT_LENGTH
    return create_app(project, auth=auth, auth_file=auth_file, allowed_hosts=hosts, max_content_length=cap)


# importlib.reload keeps a module's old globals: forget an app built before.
globals().pop("app", None)
globals().pop("server", None)


def __getattr__(name):
    # Built on first access (gunicorn reads ``server``), so that importing the module
    # for app_from_env builds nothing.
    if name in ("app", "server"):
        built = app_from_env()
        globals().update(app=built, server=built.server)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
