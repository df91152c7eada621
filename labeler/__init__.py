"""labeler: turn a folder of unlabelled images into a labelled training set.

The public API::

    from labeler import Project, ingest, search, export_csv
    report = ingest("photos/", "my-project")
    result = search(Project("my-project"), "new_photo.jpg", k=10)

torch (``load_backbone``) and Dash (``create_app``) load only when first used.
"""

from importlib import import_module

from .clustering import cluster_project
from .config import Settings, load_settings
from .export import export_csv
from .pipeline import ingest
from .project import Project
from .labels import label_cluster, label_images, redo, undo
from .refine import apply_split, merge_clusters, move_images, split_preview
from .search import Searcher, search  # binds ``labeler.search`` to the function, not the module

__version__ = "0.1.0"

_LAZY = {"load_backbone": "labeler.embedding.backbones", "create_app": "labeler.app"}

__all__ = sorted([
    "Project", "Settings", "load_settings", "ingest", "cluster_project", "search", "Searcher",
    "export_csv", "label_cluster", "label_images", "undo", "redo", "split_preview", "apply_split", "merge_clusters", "move_images",
    *_LAZY,
])


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'labeler' has no attribute {name!r}")
