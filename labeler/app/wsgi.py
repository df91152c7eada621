"""The dashboard as a WSGI module for gunicorn.

::

    LABELER_PROJECT=data/projects/elpv LABELER_AUTH=anna:secret \\
        gunicorn -w 4 -b 0.0.0.0:8050 'labeler.app.wsgi:server'

Each worker process builds its own app; labels live in the project's SQLite
database (WAL), so workers see each other's writes.
"""

from __future__ import annotations

import os

from . import create_app

_project = os.environ.get("LABELER_PROJECT")
if not _project:
    raise RuntimeError("set LABELER_PROJECT to the project directory (and optionally LABELER_AUTH=user:password)")

app = create_app(_project, auth=os.environ.get("LABELER_AUTH") or None)
server = app.server
