"""Embeddings brought from a file instead of a backbone (``labeler ingest DIR --embeddings FILE``).

The file gives one vector per image:

- ``.npy``: an (n, d) array aligned with a paths list, one path per line: the file named
  by ``paths`` or, by default, ``<FILE without .npy>.txt`` (``vectors.npy`` + ``vectors.txt``);
- ``.parquet``: a path column (``path``, ``file``, ...) and a vector column
  (``embedding``, ``vector``, ...: a list of floats per row); a ``labeler export --format
  parquet --with-embeddings`` file works.

Paths are relative to the image root, or absolute inside it. Every pending image gets
its vector (an image the file lacks, or whose vector is not finite, is skipped with
the reason); its thumbnail and size come from decoding the file, as with a backbone.
Then PCA, the map, clustering, search by image id, the queue and suggestions run as
usual. The project records backbone ``{"name": "file", ...}``: a query photo outside the
collection cannot be embedded (:data:`NEEDS_A_MODEL`), and a later ingest of new photos
needs ``--embeddings`` with their vectors too.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import BackboneMismatchError, BadInputError

#: The backbone name a project with embeddings from a file records.
GIVEN = "file"
#: What a search by a photo outside the collection says on such a project.
NEEDS_A_MODEL = ("this project's embeddings came from a file: search by image id, or ingest with a backbone "
                 "(`labeler ingest DIR --backbone NAME --force`) to search by new photos")

_PATH_COLUMNS = ("path", "file", "filename", "image", "image_path", "relative_path")
_VECTOR_COLUMNS = ("embedding", "embeddings", "vector", "vectors", "features", "feature")


def is_given(meta: dict | None) -> bool:
    """Whether a project's recorded backbone metadata says its embeddings came from a file."""
    return bool(meta) and meta.get("name") == GIVEN


def read_embeddings(path: Path | str, paths: Path | str | None = None) -> tuple[list[str], np.ndarray]:
    """(paths, vectors (n, d) float32) from a ``.npy`` (+ paths list) or a Parquet file.

    Raises
    ------
    BadInputError
        A missing or unreadable file, no paths list, lengths that differ, no path or
        vector column, vectors of different lengths, or not a 2-D numeric array.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadInputError(f"embeddings file not found: {path}")
    if path.suffix.lower() == ".npy":
        plist = Path(paths).expanduser() if paths else path.with_suffix(".txt")
        if not plist.is_file():
            raise BadInputError(f"{path} needs a paths list (one image path per line, in the array's order): "
                                f"{plist} not found")
        try:
            vectors = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise BadInputError(f"cannot read {path} as a NumPy array: {e}") from e
        keys = [ln.strip() for ln in plist.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    elif path.suffix.lower() == ".parquet":
        keys, vectors = _read_parquet(path)
    else:
        raise BadInputError(f"{path}: embeddings come as .npy (with a paths list) or .parquet")
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.number):
        raise BadInputError(f"{path}: expected a 2-D numeric array (images x dimensions), got shape "
                            f"{vectors.shape} of {vectors.dtype}")
    if len(keys) != len(vectors):
        raise BadInputError(f"{path} has {len(vectors)} vectors but its paths list has {len(keys)} paths")
    if vectors.shape[1] < 2:
        raise BadInputError(f"{path}: vectors need at least 2 dimensions (got {vectors.shape[1]})")
    return keys, np.ascontiguousarray(vectors, dtype=np.float32)


def _read_parquet(path: Path) -> tuple[list[str], np.ndarray]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises its own error types for a bad file
        raise BadInputError(f"cannot read {path} as Parquet: {e}") from e
    lower = {n.lower(): n for n in table.column_names}
    pcol = next((lower[c] for c in _PATH_COLUMNS if c in lower), None)
    vcol = next((lower[c] for c in _VECTOR_COLUMNS if c in lower), None)
    if pcol is None or vcol is None:
        raise BadInputError(f"{path} needs a path column ({', '.join(_PATH_COLUMNS[:3])}, ...) and a vector "
                            f"column ({', '.join(_VECTOR_COLUMNS[:3])}, ...); it has {table.column_names}")
    keys = [str(p) if p is not None else "" for p in table.column(pcol).to_pylist()]
    rows = table.column(vcol).to_pylist()
    lengths = {len(r) for r in rows if r is not None}
    if len(lengths) > 1:
        raise BadInputError(f"{path}: the vectors in {vcol!r} have different lengths {sorted(lengths)[:5]}")
    d = lengths.pop() if lengths else 0
    vectors = np.full((len(rows), d), np.nan, dtype=np.float32)
    for i, r in enumerate(rows):
        if r is not None:
            vectors[i] = np.asarray(r, dtype=np.float32)
    return keys, vectors


def _relative(key: str, roots: list[Path]) -> str:
    key = key.strip().replace("\\", "/") if "/" not in key else key.strip()
    while key.startswith("./"):
        key = key[2:]
    if os.path.isabs(key):
        for root in roots:
            for candidate in (os.path.normpath(key), os.path.realpath(key)):
                try:
                    return Path(candidate).relative_to(root).as_posix()
                except ValueError:
                    continue
    return key


def embed_given(project, source: Path | str | None, *, paths: Path | str | None = None, force: bool = False,
                say: Callable[[str], None] = lambda m: None) -> tuple[int, list[tuple[str, str]]]:
    """Give every pending image its vector from ``source``; returns (embedded, skipped).

    Records backbone ``{"name": "file", ...}``. A project embedded by a backbone changes to
    given embeddings only with ``force`` (every image then takes its vector from the file).

    Raises
    ------
    BackboneMismatchError
        The project's embeddings came from a backbone, or from vectors of another length,
        and not ``force``.
    BadInputError
        The file cannot be read (:func:`read_embeddings`); or ``source`` is None while images
        are pending (new photos need vectors).
    """
    from ..images import BadImageError, load_image, make_thumbnail

    store = project.store
    meta = store.get_meta("backbone")
    if source is None:
        if store.pending_images():
            raise BadInputError(f"{NEEDS_A_MODEL.split(':')[0]}: new or changed photos need their vectors: "
                                "run `labeler ingest DIR --embeddings FILE` with them")
        return 0, []
    keys, vectors = read_embeddings(source, paths)
    if meta and not is_given(meta) and not force:
        raise BackboneMismatchError(f"the project's embeddings were made with {meta['name']}; taking them from "
                                    f"{source} instead needs --force")
    if is_given(meta) and meta.get("dim") != vectors.shape[1] and not force:
        raise BackboneMismatchError(f"the project's vectors have {meta.get('dim')} dimensions, {source} has "
                                    f"{vectors.shape[1]}; replacing them all needs --force")
    if meta and (not is_given(meta) or meta.get("dim") != vectors.shape[1]):
        store.mark_all_pending()
        for name in ("embeddings", "pca", "map", "cluster_space"):
            project.array_path(name).unlink(missing_ok=True)
    root = project.image_root
    roots = [] if root is None else list(dict.fromkeys([Path(root), Path(root).resolve()]))
    row_of = {}
    for j, k in enumerate(keys):
        row_of.setdefault(_relative(k, roots), j)
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()[:16]
    store.set_meta(backbone={
        "name": GIVEN, "dim": int(vectors.shape[1]), "weights_id": f"sha256:{digest}",
        "weights_source": str(Path(source).resolve()), "preprocessing": f"vectors read from {Path(source).name}",
        "view": "whole", "precision": "fp32", "runtime": GIVEN, "features": GIVEN, "requested": GIVEN,
        "note": None}, categories=[])
    pending = store.pending_images()
    say(f"taking {len(pending)} vector(s) from {source} ({vectors.shape[1]}-d) ...")
    next_row = store.next_row()
    records, feats, skipped = [], [], []
    for r in pending:
        j = row_of.get(r["path"])
        if j is None:
            skipped.append((r["path"], f"no vector for it in {Path(source).name}"))
            continue
        if not np.isfinite(vectors[j]).all():
            skipped.append((r["path"], f"its vector in {Path(source).name} is not finite"))
            continue
        try:
            img = load_image(project.image_path(r["path"]), draft_size=(320, 320))
        except BadImageError as e:
            skipped.append((r["path"], str(e)))
            continue
        from ..images import ORIGINAL_SIZE_KEY

        w, h = img.info.get(ORIGINAL_SIZE_KEY, img.size)
        make_thumbnail(img, project.thumb_path(r["id"]))
        row = r["row"]
        if row is None:
            row, next_row = next_row, next_row + 1
        records.append({"id": int(r["id"]), "row": int(row), "width": int(w), "height": int(h),
                        "top1": -1, "top1_prob": None})
        feats.append(vectors[j])
    if records:  # chunk file first, then the database (as embed_pending)
        project.write_part(np.array([x["row"] for x in records]), np.stack(feats))
        store.commit_embedded(records)
    if skipped:
        store.mark_skipped(skipped)
    project.consolidate_parts()
    return len(records), skipped
