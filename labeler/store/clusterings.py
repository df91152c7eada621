"""Store methods for clusterings: runs, assignments, per-cluster summaries."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import numpy as np

from ..errors import NotFoundError, StaleStateError, StoreError


class ClusteringsMixin:
    """Methods of :class:`~labeler.store.Store` about clusterings (see there)."""

    # -- clusterings -----------------------------------------------------------------
    def add_clustering(
        self,
        method: str,
        params: dict,
        image_ids: np.ndarray,
        clusters: np.ndarray,
        strengths: np.ndarray | None,
        summaries: Sequence[dict],
        *,
        parent_id: int | None = None,
        annotator: str | None = None,
        description: str | None = None,
    ) -> int:
        """Store a clustering run; it becomes current. Returns its id.

        Parameters
        ----------
        image_ids, clusters : ndarray of shape (n,), int
            Cluster id of each image; -1 is noise.
        strengths : ndarray of shape (n,), float, or None
            Membership strength in [0, 1] where the method gives one.
        summaries : list of dict
            Per cluster: cluster, size, medoid_id, representatives (list of ids),
            cohesion.
        parent_id, annotator, description
            For an edit of an existing clustering (split, merge, move): the edit is
            recorded as an undoable action by ``annotator``.

        Raises
        ------
        StaleStateError
            ``parent_id`` is given and is no longer the current clustering (another
            edit or re-clustering came first): nothing is written.
        """
        now = time.time()
        with self.transaction() as con:
            if parent_id is not None:
                cur = con.execute(
                    "SELECT id FROM clusterings WHERE undone=0 ORDER BY id DESC LIMIT 1").fetchone()
                if cur is None or int(cur[0]) != int(parent_id):
                    raise StaleStateError(
                        f"the clustering changed while this edit was computed (it was {parent_id}, "
                        f"it is now {cur[0] if cur else None}): reload and try again; nothing was changed")
            action_id = None
            if annotator is not None:
                action_id = con.execute(
                    "INSERT INTO actions(kind, annotator, at, description) "
                    "VALUES ('cluster', ?, ?, ?)",
                    (annotator, now, description or method),
                ).lastrowid
            cid = con.execute(
                "INSERT INTO clusterings(method, params, parent_id, action_id, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (method, json.dumps(params), parent_id, action_id, now),
            ).lastrowid
            st = strengths if strengths is not None else [None] * len(image_ids)
            con.executemany(
                "INSERT INTO assignments(clustering_id, image_id, cluster, strength) "
                "VALUES (?, ?, ?, ?)",
                (
                    (cid, int(i), int(c), None if s is None else float(s))
                    for i, c, s in zip(image_ids, clusters, st)
                ),
            )
            order = np.argsort(np.asarray(image_ids, dtype=np.int64), kind="stable")
            con.execute("INSERT INTO assignment_arrays(clustering_id, image_ids, clusters) VALUES (?, ?, ?)",
                        (cid, np.asarray(image_ids, dtype="<i8")[order].tobytes(),
                         np.asarray(clusters, dtype="<i4")[order].tobytes()))
            con.executemany(
                "INSERT INTO clusters(clustering_id, cluster, size, medoid_id, "
                "representatives, cohesion) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        cid,
                        int(s["cluster"]),
                        int(s["size"]),
                        None if s.get("medoid_id") is None else int(s["medoid_id"]),
                        json.dumps([int(x) for x in s.get("representatives", [])]),
                        None if s.get("cohesion") is None else float(s["cohesion"]),
                    )
                    for s in summaries
                ],
            )
        self.row_table()  # the dashboard's start reads it: packed now if rows were added since
        return int(cid)

    def current_clustering(self) -> dict | None:
        """The newest clustering not undone: dict(id, method, params, parent_id, created_at)."""
        r = self.con.execute(
            "SELECT * FROM clusterings WHERE undone=0 ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if r is None:
            return None
        return {**dict(r), "params": json.loads(r["params"])}

    def checked_clustering(self, seen_id: int | None, *, advice: str) -> dict:
        """The current clustering (as :meth:`current_clustering`), checked against the one
        the annotator's page showed: the one check of every write that acts on clusters.

        Parameters
        ----------
        seen_id : int or None
            The clustering the page showed; None: not checked.
        advice : str
            The end of the message of a stale page: what to do, and that nothing was
            written (e.g. "reload and check before editing it; nothing was changed").

        Raises
        ------
        StoreError
            The project has no clustering yet.
        StaleStateError
            ``seen_id`` is no longer the current clustering.
        """
        current = self.current_clustering()
        if current is None:
            raise StoreError("the project has no clustering yet: run `labeler ingest` first")
        if seen_id is not None and int(seen_id) != int(current["id"]):
            raise StaleStateError(f"the clustering changed (you saw {seen_id}, it is now {current['id']}): {advice}")
        return current

    def get_clustering(self, clustering_id: int) -> dict | None:
        """One clustering: dict(id, method, params, parent_id, created_at, undone), or None."""
        r = self.con.execute("SELECT * FROM clusterings WHERE id=?", (int(clustering_id),)).fetchone()
        return None if r is None else {**dict(r), "params": json.loads(r["params"])}

    def _clustering_id(self, clustering_id: int | None) -> int:
        if clustering_id is not None:
            return int(clustering_id)
        cur = self.current_clustering()
        if cur is None:
            raise StoreError("the project has no clustering yet: run `labeler ingest` first")
        return int(cur["id"])

    def assignments(self, clustering_id: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cluster of every image in a clustering (default: current).

        Returns
        -------
        image_ids : ndarray (n,), int64
        clusters : ndarray (n,), int64 (-1 = noise)
        strengths : ndarray (n,), float32 (NaN where the method gives none)
        """
        cid = self._clustering_id(clustering_id)
        cur = self.con.cursor()
        cur.row_factory = None  # plain tuples, converted in one C-level pass (NULL -> NaN)
        rows = cur.execute(
            "SELECT image_id, cluster, strength FROM assignments WHERE clustering_id=? "
            "ORDER BY image_id",
            (cid,),
        ).fetchall()
        table = np.array(rows, dtype=np.float64).reshape(-1, 3)
        return table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2].astype(np.float32)

    def assignment_arrays(self, clustering_id: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(image_ids, clusters)`` of a clustering (default: current), as :meth:`assignments`
        without the strengths: both ndarray (n,) int64, in image-id order.

        Read from the packed copy add_clustering stores beside the rows (one row: ~10 ms
        at 1M images against ~1.3 s for 1M rows); a clustering without one is read
        row by row.
        """
        cid = self._clustering_id(clustering_id)
        r = self.con.execute("SELECT image_ids, clusters FROM assignment_arrays WHERE clustering_id=?",
                             (cid,)).fetchone()
        if r is None:
            ids, clusters, _ = self.assignments(cid)
            return ids, clusters
        return (np.frombuffer(r[0], dtype="<i8").astype(np.int64),
                np.frombuffer(r[1], dtype="<i4").astype(np.int64))

    def cluster_members(self, cluster: int, clustering_id: int | None = None) -> list[int]:
        """Image ids in ``cluster``. Raises StoreError for an unknown cluster id."""
        cid = self._clustering_id(clustering_id)
        ids = [
            r[0]
            for r in self.con.execute(
                "SELECT image_id FROM assignments WHERE clustering_id=? AND cluster=? "
                "ORDER BY image_id",
                (cid, int(cluster)),
            )
        ]
        if not ids:
            if int(cluster) == -1:
                raise StoreError(f"clustering {cid} has no noise images (cluster -1 is empty)")
            raise StoreError(f"unknown cluster {cluster} in clustering {cid}")
        return ids

    def cluster_summaries(self, clustering_id: int | None = None) -> list[dict]:
        """Per-cluster summaries of a clustering (default: current), largest first: dicts of
        clustering_id, cluster, size, medoid_id, representatives (list of ids), cohesion."""
        cid = self._clustering_id(clustering_id)
        out = []
        for r in self.con.execute(
            "SELECT clustering_id, cluster, size, medoid_id, representatives, cohesion "
            "FROM clusters WHERE clustering_id=? ORDER BY size DESC, cluster",
            (cid,),
        ):
            d = dict(r)
            d["representatives"] = json.loads(d["representatives"])
            out.append(d)
        return out

    def copy_clustering(self, clustering_id: int, params: dict) -> int:
        """Store a copy of clustering ``clustering_id`` (its assignments and cluster
        summaries, read in SQL) under ``params``; the copy becomes current. Returns its id.

        How an earlier clustering is made current again
        (:func:`labeler.map_versions.use_clustering`): the clusterings made since stay
        stored, so going forward again is another copy. Not an annotator action (no undo).

        Raises
        ------
        NotFoundError
            No clustering has that id: nothing is written.
        """
        with self.transaction() as con:
            src = con.execute("SELECT method FROM clusterings WHERE id=?", (int(clustering_id),)).fetchone()
            if src is None:
                raise NotFoundError(f"no clustering {clustering_id} in this project (`labeler cluster --list`)")
            cid = con.execute(
                "INSERT INTO clusterings(method, params, parent_id, action_id, created_at) VALUES (?, ?, NULL, NULL, ?)",
                (src["method"], json.dumps(params), time.time())).lastrowid
            con.execute("INSERT INTO assignments(clustering_id, image_id, cluster, strength) "
                        "SELECT ?, image_id, cluster, strength FROM assignments WHERE clustering_id=?",
                        (cid, int(clustering_id)))
            con.execute("INSERT INTO assignment_arrays(clustering_id, image_ids, clusters) "
                        "SELECT ?, image_ids, clusters FROM assignment_arrays WHERE clustering_id=?",
                        (cid, int(clustering_id)))
            con.execute("INSERT INTO clusters(clustering_id, cluster, size, medoid_id, representatives, cohesion) "
                        "SELECT ?, cluster, size, medoid_id, representatives, cohesion FROM clusters "
                        "WHERE clustering_id=?", (cid, int(clustering_id)))
        return int(cid)

    def clustering_overview(self) -> list[dict]:
        """Every clustering, oldest first: dicts of id, method, params (dict), parent_id,
        created_at, undone, n_clusters (clusters other than noise), n_noise, n_images.
        Counted from the per-cluster summaries (the ``clusters`` table's primary key), not
        from the assignments."""
        out = []
        for r in self.con.execute(
            "SELECT c.id, c.method, c.params, c.parent_id, c.created_at, c.undone, "
            "COALESCE(SUM(k.cluster >= 0), 0) AS n_clusters, "
            "COALESCE(SUM(CASE WHEN k.cluster < 0 THEN k.size END), 0) AS n_noise, "
            "COALESCE(SUM(k.size), 0) AS n_images "
            "FROM clusterings c LEFT JOIN clusters k ON k.clustering_id = c.id GROUP BY c.id ORDER BY c.id"
        ):
            out.append({**dict(r), "params": json.loads(r["params"])})
        return out
