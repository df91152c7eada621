"""Per-app read-only data: the project, its map and a cached :class:`Searcher`.

One :class:`AppContext` is built by ``create_app`` and stored on the Dash app
(``app.labeler``); callbacks close over it. It holds nothing that changes with
labelling: labels are read from SQLite on every request, arrays are read-only
memory maps, and assignments are cached per clustering id (a stored clustering
never changes; an edit makes a new one), so several worker processes stay
consistent with each other.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..map_versions import current_map_id
from ..project import Project, ProjectError
from ..search import Searcher
from .label_codes import point_label_codes
from .point_index import IdIndex


def cluster_centres(xy: np.ndarray, clusters: np.ndarray) -> tuple[list[float], list[float], list[str]]:
    """Median map position of each cluster (noise left out), for the cluster-id text."""
    keep = np.flatnonzero(np.asarray(clusters) >= 0)
    order = keep[np.argsort(clusters[keep], kind="stable")]
    uniq, starts = np.unique(clusters[order], return_index=True)
    xs, ys, text = [], [], []
    for c, group in zip(uniq, np.split(order, starts[1:])):
        xs.append(float(np.median(xy[group, 0])))
        ys.append(float(np.median(xy[group, 1])))
        text.append(str(int(c)))
    return xs, ys, text



@dataclass
class Assignment:
    """Cluster of every map point in one clustering.

    Attributes
    ----------
    clustering_id : int
    clusters : ndarray (n_points,), int64
        Cluster id per map point (-1 = noise, also for a point the clustering lacks).
    """

    clustering_id: int
    clusters: np.ndarray
    _centres: tuple | None = field(default=None, repr=False)

    def centres(self, xy: np.ndarray) -> tuple[list[float], list[float], list[str]]:
        """Median map position and id text of each cluster (computed once)."""
        if self._centres is None:
            self._centres = cluster_centres(xy, self.clusters)
        return self._centres


class AppContext:
    """What the callbacks of one app share.

    Parameters
    ----------
    project : Project
        An ingested project (it has ``pca.npy``, ``map.npy`` and a clustering).

    Attributes
    ----------
    point_ids : ndarray (n_points,), int64
        Image id of each map point, in array-row order (rows without an image left out).
    xy : ndarray (n_points, 2), float32
        Map position of each point.

    Raises
    ------
    ProjectError
        The project has not been ingested yet.
    """

    def __init__(self, project: Project, users=None):
        self.project = project
        self.users = users  # routes.Users when basic auth is on: the user is the annotator
        if project.store.current_clustering() is None:
            raise ProjectError(f"{project.root} has no clustering yet: run `labeler ingest` first")
        self._lock = threading.Lock()
        self._load_points()

    def _load_points(self) -> None:
        # The ImageNet top-1 of every point comes with the ids when hints are shown: one
        # read of the images table instead of two (about 1 s each at 1M images).
        hints = self.hint_threshold() is not None
        map_id = current_map_id(self.project)
        row_ids, top1, prob = self.project.store.row_table(top1=hints)
        xy = self.project.load_array("map")
        valid = np.flatnonzero(row_ids >= 0)
        valid = valid[valid < len(xy)]
        point_ids = row_ids[valid]
        imagenet = (top1[valid], prob[valid], list(self.store.get_meta("categories") or [])) if hints else None
        with self._lock:
            self._map_rows, self._map_id = len(xy), map_id
            self.point_ids, self.xy = point_ids, np.asarray(xy[valid], dtype=np.float32)
            self.id_index = IdIndex(point_ids)
            self._searcher: Searcher | None = None
            self._assignments: OrderedDict[int, Assignment] = OrderedDict()
            self._imagenet: tuple | None = imagenet
            for cached in ("_map_grid_frame", "_map_grid_xy", "_map_grid_range", "_map_view_cache",
                           "_map_image_cache"):  # views
                self.__dict__.pop(cached, None)

    def refresh(self) -> bool:
        """Reload the map points when the project's map gained rows (``labeler ingest``
        placed new photos on it while the app was running) or was replaced (``labeler
        cluster --remap``, ``--feature-set``, ``--use``: a new ``map_id``,
        :mod:`labeler.map_versions`). Returns whether it did.

        Old points keep their index (new rows are appended), so an event from a page
        drawn before still names the right image; the page redraws the map when its
        :attr:`map_token` differs (tabs/explore/callbacks.recolor).
        """
        if current_map_id(self.project) == self._map_id and len(self.project.load_array("map")) == self._map_rows:
            return False
        self._load_points()
        return True

    @property
    def map_token(self) -> str:
        """``'<points>:<map id>'``: what the page's map was drawn from; another token means redraw it whole."""
        return f"{self.n_points}:{self._map_id}"

    @property
    def store(self):
        return self.project.store

    @property
    def n_points(self) -> int:
        return len(self.point_ids)

    def positions(self, image_ids) -> np.ndarray:
        """Map point index of each image id (ids not on the map are dropped)."""
        return self.id_index.locate(image_ids)[0]

    def searcher(self) -> Searcher:
        """The app's one Searcher (built on first use; its arrays are memory maps)."""
        with self._lock:
            if self._searcher is None:
                self._searcher = Searcher(self.project)
            return self._searcher

    def warm(self) -> None:
        """Read what the first page needs before the server takes requests: the current
        clustering's assignment and, when hints are shown, every point's ImageNet top-1.
        At 1M points these are seconds of SQLite reads (``bench_dashboard.py``: 1.3 s and
        2.2 s) that otherwise run while the browser draws the first page, on the same cores."""
        self.assignment()
        if self.hint_threshold() is not None:
            self.imagenet()

    def assignment(self) -> Assignment:
        """Cluster of every map point in the current clustering (cached by clustering id)."""
        cid = int(self.store.current_clustering()["id"])
        with self._lock:
            hit = self._assignments.get(cid)
            if hit is not None:
                self._assignments.move_to_end(cid)
                return hit
        self.refresh()  # a clustering not seen yet: an ingest may have added photos with it
        ids, clusters = self.store.assignment_arrays(cid)  # one packed row, not n rows
        out = np.full(self.n_points, -1, dtype=np.int64)
        pos, ok = self.id_index.locate(ids)
        out[pos] = clusters[ok]
        a = Assignment(cid, out)
        with self._lock:
            self._assignments[cid] = a
            while len(self._assignments) > 4:
                self._assignments.popitem(last=False)
        return a

    def imagenet(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The backbone's ImageNet top-1 class and its softmax probability for every map
        point, shapes (n_points,) int64 (-1 = unknown) and float64 (NaN = unknown), and
        the class names (computed once per set of map points)."""
        with self._lock:
            hit = self._imagenet
        if hit is not None and len(hit[0]) == self.n_points:
            return hit
        top1, prob = self.store.imagenet_top1(self.point_ids)
        out = (top1, prob, list(self.store.get_meta("categories") or []))
        with self._lock:
            self._imagenet = out
        return out

    def hint_threshold(self) -> float | None:
        """The top-1 probability from which an ImageNet hint is shown; None when the
        project hides hints (settings ``imagenet_hints``, ``imagenet_hint_min_prob``)."""
        s = self.project.settings()
        return float(s.imagenet_hint_min_prob) if s.imagenet_hints else None

    def point_labels(self) -> np.ndarray:
        """Current label of every map point, shape (n_points,), object ('' = unlabelled);
        a fresh array, from the kept label codes (:mod:`labeler.app.label_codes`)."""
        return point_label_codes(self).names_of(self.store)
