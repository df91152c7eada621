"""labeler: turn a folder of unlabelled images into a labelled training set.

The public API (imported lazily so ``import labeler`` stays fast and torch is
only loaded when embeddings are made)::

    from labeler import Project, ingest, search, export_csv
    report = ingest("photos/", "my-project")
    result = search(Project("my-project"), "new_photo.jpg", k=10)
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "Project": "labeler.project",
    "Settings": "labeler.config",
    "load_settings": "labeler.config",
    "ingest": "labeler.pipeline",
    "cluster_project": "labeler.pipeline",
    "search": "labeler.search",
    "Searcher": "labeler.search",
    "export_csv": "labeler.export",
    "label_cluster": "labeler.refine",
    "split_preview": "labeler.refine",
    "apply_split": "labeler.refine",
    "merge_clusters": "labeler.refine",
    "move_images": "labeler.refine",
    "load_backbone": "labeler.backbones",
    "create_app": "labeler.app",
}

__all__ = sorted(_API)


def __getattr__(name):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'labeler' has no attribute {name!r}")
