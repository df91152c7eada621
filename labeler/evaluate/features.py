"""The features an evaluation compares: raw pixels (baseline), backbone embedding, PCA vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..project import Project

FEATURES = ("raw", "embedding", "pca")
FEATURE_NAMES = {"raw": "raw pixels 32x32", "embedding": "backbone embedding", "pca": "PCA vectors"}


def raw_pixels(paths: list[Path], size: int = 32) -> tuple[np.ndarray, int]:
    """Images decoded safely (:func:`labeler.images.load_image`: RGB, EXIF
    orientation), resized to size x size (bilinear) and flattened.

    Returns (features (n, size*size*3) float32 in [0, 1], number of files that
    could not be decoded: their rows are zeros).
    """
    from PIL import Image

    from ..images import BadImageError, load_image

    out = np.zeros((len(paths), size * size * 3), dtype=np.float32)
    failed = 0
    for i, p in enumerate(paths):
        try:
            im = load_image(p, draft_size=(size * 4, size * 4)).resize((size, size), Image.BILINEAR, reducing_gap=2.0)
            out[i] = np.asarray(im, dtype=np.float32).reshape(-1) / 255.0
        except BadImageError:
            failed += 1
    return out, failed


def load_features(project: Project, rows: np.ndarray, which=FEATURES) -> dict[str, np.ndarray]:
    """The evaluated features of the given array rows: {name: (n, d) float32}."""
    out = {}
    if "raw" in which:
        path_of = {int(r["row"]): r["path"] for r in project.store.image_table()}
        out["raw"], _ = raw_pixels([project.image_path(path_of[int(r)]) for r in rows])
    if "embedding" in which:
        out["embedding"] = np.asarray(project.load_array("embeddings")[rows], dtype=np.float32)
    if "pca" in which:
        out["pca"] = np.asarray(project.load_array("pca")[rows], dtype=np.float32)
    return out

