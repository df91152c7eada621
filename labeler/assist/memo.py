"""The newest suggestions of each project state, kept in the process and computed once.

A dashboard with eight annotators asks for the suggestions from several callbacks per
action. Reloading them from the disk cache (:mod:`labeler.assist.suggest`'s
``state-*.joblib``, the image table and the features) took 2.1-2.5 s at 100k images,
so pages queued behind identical reloads until the cluster list passed 120 s
(``benchmarks/bench_soak.py``: label p99 4.3 s before, 0.57 s after). Here the result
of each (project, features, method) is kept with the state it was computed for
(:func:`state_key`); a caller whose state matches gets it at once, and callers that
arrive while it is being computed wait for that one computation.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["clear", "once", "state_key"]

T = TypeVar("T")

_MEMO: dict[tuple, tuple[tuple, object]] = {}
_LOCKS: dict[tuple, threading.Lock] = {}
_GUARD = threading.Lock()


def state_key(project, features, method: str, *, active: str = "active") -> tuple | None:
    """What a project's suggestions depend on, read cheaply (a few indexed queries, one stat).

    The features file (path, size, modification time), the newest action and label
    event (any label, accept, undo or redo), the clustering (calibration folds), the
    image rows and the imported prediction sources. The first three items name the
    computation (project, features, method); the rest is the state.

    Returns
    -------
    tuple or None
        None when the state cannot be told cheaply: features given as an array or a file,
        experts registered beyond the built-in predictions expert, a missing features file.
    """
    from ..embedding import feature_sets
    from .experts import prediction_experts, providers

    if not isinstance(features, str) or features.endswith(".npy") or providers() != (prediction_experts,):
        return None
    name = features
    if name == active:
        name = feature_sets.active_feature_set(project)
        name = "pca" if name == feature_sets.EMBEDDINGS else name
    path = project.array_path(name) if project.has_array(name) else feature_sets.feature_set_path(project, name)
    try:
        st = os.stat(path)
    except OSError:
        return None
    store = project.store
    newest = store.actions(limit=1)
    clustering = store.current_clustering()
    sources = tuple(tuple(sorted(s.items())) for s in store.prediction_sources())
    return (str(project.root.resolve()), name, method, str(path), st.st_size, st.st_mtime_ns,
            int(newest[0]["id"]) if newest else 0, store.last_label_event(),
            clustering["id"] if clustering else None, store.next_row(), sources)


def once(key: tuple, compute: Callable[[], T]) -> T:
    """The value kept for ``key``, or ``compute()`` run once and kept (replacing the value of
    an older state of the same computation, ``key[:3]``); concurrent callers wait for it.
    An exception is raised to the caller and nothing is kept."""
    with _GUARD:
        lock = _LOCKS.setdefault(key[:3], threading.Lock())
    with lock:
        hit = _MEMO.get(key[:3])
        if hit is not None and hit[0] == key:
            return hit[1]
        value = compute()
        _MEMO[key[:3]] = (key, value)
        return value


def clear() -> None:
    """Forget every kept value (tests; a process that wants its memory back)."""
    with _GUARD:
        _MEMO.clear()
