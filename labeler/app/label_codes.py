"""The current label of every map point as an integer code, kept in step with SQLite.

Recolouring a map of a million points by label rebuilt a million-element
object array from ``store.labels()`` on every label action (1.8 s at 1M).
:class:`PointLabelCodes` keeps one ``int32`` code per point instead and, on
each use, applies only the label events written since it last looked
(``label_events`` is append-only and every label change writes one, in the
same transaction as the ``labels`` row). Each dashboard worker process keeps
its own copy and catches up from the database, so workers stay consistent
with each other and with the CLI; SQLite stays the only source of truth.
"""

from __future__ import annotations

import threading

import numpy as np

from .point_index import IdIndex


class PointLabelCodes:
    """Label code per map point: 0 = unlabelled, i >= 1 = ``names[i - 1]``.

    Parameters
    ----------
    point_ids : ndarray (n_points,), int64
        Image id of each map point.
    id_index : IdIndex, optional
        The app's lookup of those ids (built here when not given).

    Attributes
    ----------
    names : list of str
        Label names in the order they were first seen (codes never change
        meaning; a label no image carries any more keeps its code).
    """

    def __init__(self, point_ids: np.ndarray, id_index: IdIndex | None = None):
        self.point_ids = point_ids
        self._index = id_index or IdIndex(point_ids)
        self._codes = np.zeros(len(point_ids), dtype=np.int32)
        self.names: list[str] = []
        self._code_of: dict[str, int] = {}
        self._cursor: int | None = None  # the newest label event applied
        self._lock = threading.Lock()

    def _code(self, name: str) -> int:
        code = self._code_of.get(name)
        if code is None:
            self.names.append(name)
            code = self._code_of[name] = len(self.names)
        return code

    def _assign(self, image_ids, labels) -> None:
        ids = np.fromiter((int(i) for i in image_ids), dtype=np.int64, count=len(image_ids))
        codes = np.fromiter((self._code(v) if v else 0 for v in labels), dtype=np.int32, count=len(labels))
        pos, ok = self._index.locate(ids)
        self._codes[pos] = codes[ok]  # numpy assigns in order: the last event of an image wins

    def codes(self, store) -> np.ndarray:
        """The current code of every point, (n_points,) int32 (read-only view).

        The first call reads the ``labels`` table; later ones only the label
        events newer than the last one applied.
        """
        with self._lock:
            if self._cursor is None:
                # Cursor first: an event committed between the two reads is applied
                # again next time, which leaves the same final state.
                cursor = store.last_label_event()
                current = store.labels()
                self._assign(list(current), list(current.values()))
                self._cursor = cursor
            else:
                events = store.label_events_after(self._cursor)
                if events:
                    self._assign([e[1] for e in events], [e[2] for e in events])
                    self._cursor = int(events[-1][0])
            view = self._codes.view()
            view.flags.writeable = False
            return view

    def labelled(self, store) -> np.ndarray:
        """Which points carry a label, (n_points,) bool."""
        return self.codes(store) != 0

    def names_of(self, store) -> np.ndarray:
        """Current label of every point as an object array ('' = unlabelled), for
        callers that want strings (what ``AppContext.point_labels`` returns)."""
        codes = self.codes(store)
        table = np.array(["", *self.names], dtype=object)
        return table[codes]


def point_label_codes(ctx) -> PointLabelCodes:
    """The app's :class:`PointLabelCodes` for its current map points (made on first use,
    and again when the app reloads its points, e.g. after an ingest added photos)."""
    codes = getattr(ctx, "_point_label_codes", None)
    if codes is None or codes.point_ids is not ctx.point_ids:
        codes = PointLabelCodes(ctx.point_ids, getattr(ctx, "id_index", None))
        ctx._point_label_codes = codes
    return codes
