"""labeler: turn a folder of unlabelled images into a labelled training set.

The public API::

    from labeler import Project, ingest, search, export_csv
    report = ingest("photos/", "my-project")
    result = search(Project("my-project"), "new_photo.jpg", k=10)

torch (``load_backbone``) and Dash (``create_app``) load only when first used.
"""

from importlib import import_module

from .config import Settings, load_settings
from .project import Project
from .search import Searcher, search  # binds ``labeler.search`` to the function, not the module

__version__ = "0.1.0"

# Imported on first use (PEP 562), so that `labeler search` and other light commands
# do not pay for scikit-learn, HDBSCAN and pandas at start-up.
_LAZY = {
    "load_backbone": "labeler.embedding.backbones", "create_app": "labeler.app",
    "cluster_project": "labeler.clustering", "export_csv": "labeler.export", "ingest": "labeler.pipeline",
    "recluster": "labeler.pipeline",
    "label_cluster": "labeler.labels", "label_images": "labeler.labels", "redo": "labeler.history",
    "undo": "labeler.history", "apply_split": "labeler.refine", "merge_clusters": "labeler.refine",
    "move_images": "labeler.refine", "split_preview": "labeler.refine",
}

__all__ = sorted(["Project", "Settings", "load_settings", "search", "Searcher", *_LAZY])


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'labeler' has no attribute {name!r}")
