"""labeler: turn a folder of unlabelled images into a labelled training set.

The public API::

    from labeler import Project, ingest, search, export_csv
    report = ingest("photos/", "my-project")
    result = search(Project("my-project"), "new_photo.jpg", k=10)

and, for the labelling aids and the training set: ``suggest`` (labels the model
proposes), ``next_to_label`` (which images to label next), ``review_labels``
(labels that look wrong), ``find_duplicates`` (near-copies) and ``export`` (csv,
imagefolder, parquet or hf, with leakage-safe splits).

Everything but the settings, ``Project`` and ``search`` loads when first used, so
that ``import labeler`` stays light: torch (``load_backbone``) and Dash
(``create_app``) among them.
"""

import sys
import types
from importlib import import_module

from .compat import serialise_literal_eval

serialise_literal_eval()  # before any thread loads a .npy (labeler.compat: CPython gh-106905)

from .config import Settings, load_settings  # noqa: E402
from .project import Project  # noqa: E402
from .search import Searcher, search  # noqa: E402  binds ``labeler.search`` to the function, not the module

__version__ = "0.1.0"

# Imported on first use (PEP 562), so that `labeler search` and other light commands
# do not pay for scikit-learn, HDBSCAN and pandas at start-up.
_LAZY = {
    "load_backbone": "labeler.embedding.backbones", "create_app": "labeler.app",
    "cluster_project": "labeler.clustering", "export_csv": "labeler.export", "ingest": "labeler.pipeline",
    "recluster": "labeler.pipeline", "use_clustering": "labeler.map_versions",
    "finetune_project": "labeler.embedding.finetune", "start_job": "labeler.jobs",
    "label_cluster": "labeler.labels", "label_images": "labeler.labels", "redo": "labeler.history",
    "undo": "labeler.history", "apply_split": "labeler.refine", "merge_clusters": "labeler.refine",
    "move_images": "labeler.refine", "split_preview": "labeler.refine",
    "export": "labeler.export", "suggest": "labeler.assist.suggest", "next_to_label": "labeler.assist.next",
    "find_duplicates": "labeler.duplicates", "review_labels": "labeler.review",
}

__all__ = sorted(["Project", "Settings", "load_settings", "search", "Searcher", *_LAZY])


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'labeler' has no attribute {name!r}")


#: Façade functions named like a subpackage of labeler.
_FUNCTIONS_NAMED_LIKE_MODULES = frozenset({"export", "search"})


class _Facade(types.ModuleType):
    """``labeler`` itself. Importing a subpackage binds it on its parent (``import
    labeler.export`` sets ``labeler.export`` to the package), which would hide the
    function of the same name, or not, depending on what was imported first. The
    function wins: ``labeler.export`` is always :func:`labeler.export.export`;
    import the package's contents with ``from labeler.export import ...``."""

    def __setattr__(self, name, value):
        if name in _FUNCTIONS_NAMED_LIKE_MODULES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Facade
