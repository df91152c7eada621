"""The annotator dashboard (Plotly Dash): ``create_app(project) -> Dash``.

::

    from labeler.app import create_app
    app = create_app(Project("my-project"), auth="anna:secret")
    app.run(host="127.0.0.1", port=8050)

Callbacks are registered on the app itself (never on the global ``dash.callback``
list), so several apps can live in one process (tests do this). Under gunicorn
use :mod:`labeler.app.wsgi`.
"""

from __future__ import annotations

from pathlib import Path

from dash import Dash

from ..project import Project
from . import callbacks_explore, callbacks_label, callbacks_refine, callbacks_review, callbacks_search
from .layout import serve_layout
from .routes import install_basic_auth, register_routes
from .state import AppContext

ASSETS = Path(__file__).with_name("assets")


def create_app(project: Project | str | Path, *, auth: str | None = None) -> Dash:
    """Build the dashboard for one project.

    Parameters
    ----------
    project : Project or path
        An ingested project (it has a map and a clustering).
    auth : str or None
        'user:password' to require HTTP basic auth on every request (pages,
        callbacks, thumbnails, the CSV), for serving beyond localhost.

    Returns
    -------
    dash.Dash
        ``app.labeler`` is its :class:`~labeler.app.state.AppContext`;
        ``app.server`` the Flask server (WSGI).

    Raises
    ------
    ProjectError
        The project has not been ingested yet.
    BadInputError
        ``auth`` is not 'user:password'.
    """
    project = project if isinstance(project, Project) else Project(project)
    actx = AppContext(project)
    app = Dash(
        __name__,
        title=f"labeler · {project.root.name}",
        assets_folder=str(ASSETS),
        suppress_callback_exceptions=True,
        update_title=None,
    )
    if auth:
        install_basic_auth(app.server, auth)
    register_routes(app.server, project)
    app.layout = lambda: serve_layout(actx)
    for module in (callbacks_explore, callbacks_label, callbacks_search, callbacks_refine, callbacks_review):
        module.register(app, actx)
    app.labeler = actx
    return app


__all__ = ["create_app"]
