"""The dashboard's tabs, one package each: ``layout.py`` (the tab's part of the page) and
``callbacks.py`` (``register(app, actx)``).

A tab's ``layout`` has ``tab(actx) -> dcc.Tab`` (the map panel, ``explore``, has
``panel(actx)``) and, where the tab keeps browser state of its own, ``stores()``. A tab
imports the core modules of :mod:`labeler.app` (ids, state, components, common, actions,
panels, views, labelling, ...) and never another tab; only the app factory
(:mod:`labeler.app`) imports the tabs (``tests/test_architecture.py`` checks both). A
piece two tabs need moves into a core module.

Adding a tab: a package here with those two modules, and its name in
:data:`labeler.app.TABS`.
"""
