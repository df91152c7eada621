"""Where each image id sits among the dashboard map's points."""

from __future__ import annotations

import numpy as np


class IdIndex:
    """Where each image id sits among the map's points: a vectorised lookup (a sorted
    copy of the ids and ``np.searchsorted``), built once per set of points.

    Parameters
    ----------
    point_ids : ndarray (n_points,), int64
        Image id of each map point.
    """

    def __init__(self, point_ids: np.ndarray):
        ids = np.asarray(point_ids, dtype=np.int64)
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]

    def locate(self, image_ids) -> tuple[np.ndarray, np.ndarray]:
        """Map position of each image id that is on the map.

        Returns
        -------
        positions : ndarray (m,), int64
            Point index of each id found, in the order of ``image_ids``.
        found : ndarray (len(image_ids),), bool
            Which ids are on the map (``positions`` holds one entry per True).
        """
        ids = np.asarray(image_ids, dtype=np.int64).reshape(-1)
        if not len(self._sorted):
            return np.zeros(0, np.int64), np.zeros(len(ids), bool)
        at = np.clip(np.searchsorted(self._sorted, ids), 0, len(self._sorted) - 1)
        ok = self._sorted[at] == ids
        return self._order[at[ok]], ok
