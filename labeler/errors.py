"""The errors labeler raises on purpose.

Every error a user can cause (a bad flag value, a missing project, an unreadable
query photo, a stale cluster id) is a :class:`LabelerError`. The CLI catches
``LabelerError`` alone, prints its message as one line and exits 1; anything else
is a bug and keeps its traceback. The Dash app shows the message to the annotator.

This module imports nothing beyond the standard library, so that
``import labeler.errors`` stays cheap (no torch, no Dash).

Each subclass also derives from the built-in exception it used to be
(``ValueError``, ``LookupError``, ``RuntimeError``), so code written against those
keeps working.
"""

from __future__ import annotations

__all__ = [
    "LabelerError",
    "BadInputError",
    "NotFoundError",
    "ProjectError",
    "NotIngestedError",
    "CorruptFileError",
    "BackboneMismatchError",
    "StaleStateError",
    "ProjectLockedError",
    "WeightsNotFoundError",
    "BadImageError",
    "QueryImageError",
    "StoreError",
]


class LabelerError(Exception):
    """Base class: an error the user can act on; ``str(e)`` is one line that says what to do."""


class BadInputError(LabelerError, ValueError):
    """An argument is out of range or malformed (a bad k, an empty label, an unknown method)."""


class NotFoundError(LabelerError, LookupError):
    """An id the request names does not exist (image, cluster, clustering, action, label)."""


class ProjectError(LabelerError, RuntimeError):
    """The project directory is missing, not a project, or inconsistent."""


class NotIngestedError(ProjectError):
    """The project exists but lacks what the request needs (no embeddings, maps or clusters yet)."""


class CorruptFileError(ProjectError):
    """An array, index or model file differs from what labeler wrote (truncated, swapped or
    altered on disk); the message names the file and the command that rebuilds it."""


class BackboneMismatchError(ProjectError):
    """The requested backbone, view or precision differs from the one the project was embedded with."""


class StaleStateError(LabelerError):
    """The request refers to state that changed since the caller saw it (e.g. a re-clustering)."""


class ProjectLockedError(LabelerError):
    """Another process holds the project's write lock (a second ingest or cluster run)."""


class WeightsNotFoundError(LabelerError, RuntimeError):
    """Pretrained weights for a backbone could not be found anywhere we looked."""


class BadImageError(LabelerError):
    """A file that cannot be used as an image; ``str(e)`` is a short human-readable reason."""


class QueryImageError(BadInputError):
    """The query image could not be read (the reason is in the message)."""


class StoreError(BadInputError):
    """A request the database cannot honour (unknown image or cluster id, nothing to label, ...).

    Raised before anything is written: the database is unchanged.
    """
