"""The annotator dashboard (Plotly Dash): ``create_app(project) -> Dash``.

::

    from labeler.app import create_app
    app = create_app(Project("my-project"), auth="anna:secret")
    app.run(host="127.0.0.1", port=8050)

Callbacks are registered on the app itself (never on the global ``dash.callback``
list), so several apps can live in one process (tests do this). Under gunicorn
use :mod:`labeler.app.wsgi`.

This module is the only one that imports the tabs (:mod:`labeler.app.tabs`): it hands
their layouts to the page shell (:mod:`labeler.app.layout`) and registers their
callbacks, beside those of the core modules that serve every tab (labelling and the top
bar, the large view and keyboard, the clustering follow).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dash import Dash

from ..errors import BadInputError
from ..project import Project
from . import follow, labelling, viewer
from .layout import page
from .routes import Users, install_basic_auth, install_hardening, register_routes, register_search_api
from .state import AppContext
from .tabs import clusters, explore, next as next_tab, press, refine, review, search, selection
from .views import warm_map

ASSETS = Path(__file__).with_name("assets")

#: The right panel's tabs, in the order shown (each a package of :mod:`labeler.app.tabs`).
TABS = (clusters, selection, search, refine, review, next_tab, press)
#: Modules whose ``register(app, actx)`` declares callbacks: the map's, the top bar's
#: (labelling), each tab's, then the core ones that act across tabs.
CALLBACKS = (explore.callbacks, labelling, *(t.callbacks for t in TABS), viewer, follow)


def serve_layout(actx: AppContext):
    """The whole page for one page load: the shell with the map panel and :data:`TABS`."""
    return page(actx, explore.layout.panel, [t.layout.tab for t in TABS],
                [s for t in TABS for s in getattr(t.layout, "stores", list)()])


#: Default request body cap (Flask MAX_CONTENT_LENGTH): an upload is at most
#: uploads.MAX_UPLOAD_BYTES, base64-encoded (x 4/3), plus the callback's JSON.
MAX_CONTENT_LENGTH = 50 * 1024 * 1024


def create_app(project: Project | str | Path, *, auth: str | None = None, auth_file: str | Path | None = None,
               allowed_hosts: Iterable[str] = (), max_content_length: int = MAX_CONTENT_LENGTH) -> Dash:
    """Build the dashboard for one project.

    Parameters
    ----------
    project : Project or path
        An ingested project (it has a map and a clustering).
    auth : str or None
        'user:password' to require HTTP basic auth on every request (pages,
        callbacks, thumbnails, the CSV), for serving beyond localhost.
    auth_file : path or None
        A file of ``user:hash`` lines (hashes from Werkzeug's
        ``generate_password_hash``) for several users. With auth on, the
        authenticated user is the annotator of every action.
    allowed_hosts : iterable of str
        Host names answered besides the loopback names (others get 400).
    max_content_length : int
        Request body cap in bytes (413 above it).

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
        ``auth`` is not 'user:password', both ``auth`` and ``auth_file`` are
        given, or the auth file cannot be used.
    """
    if auth and auth_file:
        raise BadInputError("give --auth or --auth-file, not both")
    users = Users.from_file(auth_file) if auth_file else Users.from_pair(auth) if auth else None
    project = project if isinstance(project, Project) else Project(project)
    actx = AppContext(project, users=users)
    actx.warm()
    warm_map(actx)
    app = Dash(
        __name__,
        title=f"labeler · {project.root.name}",
        assets_folder=str(ASSETS),
        suppress_callback_exceptions=True,
        update_title=None,
    )
    if users is not None:
        install_basic_auth(app.server, users)
    register_routes(app.server, project)
    register_search_api(app.server, actx)
    app.layout = lambda: serve_layout(actx)
    for module in CALLBACKS:
        module.register(app, actx)
    # After every clientside callback is registered: their inline scripts are hashed.
    install_hardening(app.server, allowed_hosts=allowed_hosts, max_content_length=max_content_length,
                      csp_hashes=app.csp_hashes())
    app.labeler = actx
    return app


__all__ = ["create_app", "serve_layout", "MAX_CONTENT_LENGTH", "TABS"]
