"""One Parquet file, one row per image, written with pyarrow.

Columns: image_id (int64), path, absolute_path, label, label_source (the
provenance: manual, cluster, search, propagated, undo), annotator, labelled_at
(timestamp[us, UTC]), hash, cluster (int64, null when unclustered), split,
group (with a split), support / n_annotators (with the consensus), and with
``with_embeddings`` an ``embedding`` column: fixed-size list<float32> of the
backbone's embedding (or the PCA vector with ``vectors="pca"``).

Read back with ``pyarrow.parquet.read_table(path)`` or ``pandas.read_parquet(path)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..project import Project

_STRING = ["path", "absolute_path", "label", "label_source", "annotator", "hash", "split", "group"]


def export_parquet(project: Project, rows: list[dict], dest: Path | str, *, with_embeddings: bool = False,
                   vectors: str = "embeddings") -> int:
    """Write ``rows`` to a Parquet file.

    Parameters
    ----------
    project : Project
        Source of the vectors when ``with_embeddings``.
    rows : list of dict
        From :func:`labeler.export.table.training_table`.
    dest : path
        The ``.parquet`` file.
    with_embeddings : bool
        Add the ``embedding`` column (null for images never embedded).
    vectors : str
        ``"embeddings"`` (the backbone's features) or ``"pca"`` (L2-normalised PCA).

    Returns
    -------
    int
        Rows written.

    Raises
    ------
    ProjectError
        ``with_embeddings`` and the array does not exist yet.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, pa.Array] = {"image_id": pa.array([r["image_id"] for r in rows], pa.int64())}
    for name in _STRING:
        if name != "group" or (rows and "group" in rows[0]):
            cols[name] = pa.array([str(r.get(name, "")) for r in rows], pa.string())
    cols["labelled_at"] = pa.array(
        [None if r["labelled_at_unix"] is None else int(r["labelled_at_unix"] * 1e6) for r in rows],
        pa.timestamp("us", tz="UTC"))
    cols["cluster"] = pa.array([None if r["cluster"] == "" else int(r["cluster"]) for r in rows], pa.int64())
    if rows and "support" in rows[0]:
        cols["support"] = pa.array([None if r["support"] == "" else float(r["support"]) for r in rows], pa.float64())
        cols["n_annotators"] = pa.array([None if r["n_annotators"] == "" else int(r["n_annotators"]) for r in rows],
                                        pa.int64())
    if with_embeddings:
        arr = project.load_array(vectors)
        at = project.store.row_of([int(r["image_id"]) for r in rows])
        dim = arr.shape[1]
        flat = np.zeros((len(rows), dim), np.float32)
        valid = (at >= 0) & (at < len(arr))
        flat[valid] = arr[at[valid]]
        values = pa.array(flat.ravel(), pa.float32())
        emb = pa.FixedSizeListArray.from_arrays(values, dim, mask=pa.array(~valid))
        cols["embedding"] = emb
    table = pa.table(cols)
    from ..atomic import atomic_write

    # Atomic: a full disk or a kill leaves the previous file (or none), never half a file.
    with atomic_write(dest) as f:
        pq.write_table(table, f)
    return table.num_rows
