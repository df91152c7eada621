"""What a project takes on disk, by part, and what frees each part.

A project grows with use: every fine-tune press stores a feature set (n × D float32: a
fine-tuned set of 1M photos is 4.8 GiB), every re-mapping keeps the map it replaced under
``maps/<id>/``, and the fine-tune's prefix cache holds stage maps of every image
(:mod:`labeler.embedding.prefix_cache`). :func:`disk_usage` sums them so that
``labeler info`` can say where the space went and which command gives it back.

Files are counted once per inode: a kept map of the current map is a set of hard links to
the top-level files (:mod:`labeler.map_versions`) and costs nothing more.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .project import Project

__all__ = ["PARTS", "THUMBS_EXACT", "THUMBS_SAMPLE", "disk_usage", "size_text"]


def size_text(n: int) -> str:
    """A size in bytes for a person: '14.3 MiB', or '4.80 GiB' from 1 GiB (binary units)."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


#: Parts of a project folder, in the order ``labeler info`` prints them: name -> (what it
#: is, how to free it or None when it is not to be deleted by hand).
PARTS = {
    "features": ("feature sets (features/)", "`labeler features --drop NAME` (not the active one)"),
    "maps": ("kept earlier maps (maps/)", "`labeler cluster --keep-maps N`"),
    "cache": ("fine-tune prefix cache (cache/)", "`labeler features --drop-cache` (the next press computes it again)"),
    "patches": ("patch maps (patches/)", None),
    "thumbs": ("thumbnails (thumbs/)", None),
    "database": ("database (labeler.db*)", None),
    "arrays": ("embeddings, PCA, map (*.npy)", None),
    "models": ("models (models/)", None),
    "other": ("other files", None),
}


def _part(rel: Path) -> str:
    top = rel.parts[0]
    if len(rel.parts) > 1 and top in ("features", "maps", "cache", "patches", "thumbs", "models"):
        return top
    if top.startswith("labeler.db"):
        return "database"
    if len(rel.parts) == 1 and top.endswith(".npy"):
        return "arrays"
    return "other"


#: Thumbnails in a folder beyond which their size is estimated from a sample (one file per
#: image: a million ``stat`` calls would make ``labeler info`` take seconds).
THUMBS_EXACT = 2000
#: Thumbnails whose size is read when estimating.
THUMBS_SAMPLE = 1000


def _thumbs(d: Path) -> tuple[int, bool]:
    """(bytes, estimated) of the thumbnail folder: exact up to :data:`THUMBS_EXACT` files,
    else the mean size of an evenly spaced sample of :data:`THUMBS_SAMPLE` times the count."""
    try:
        with os.scandir(d) as it:
            files = [e for e in it if e.is_file(follow_symlinks=False)]
    except OSError:
        return 0, False
    sample = files if len(files) <= THUMBS_EXACT else files[::max(1, len(files) // THUMBS_SAMPLE)]
    sizes = []
    for e in sample:
        try:
            sizes.append(e.stat(follow_symlinks=False).st_size)
        except OSError:
            continue
    if len(sample) == len(files):
        return sum(sizes), False
    return (round(sum(sizes) / len(sizes) * len(files)) if sizes else 0), True


def disk_usage(project: "Project") -> dict:
    """Bytes on disk of each part of the project folder (:data:`PARTS`).

    Walks the folder once (symbolic links are not followed; a file that vanishes during
    the walk is skipped). A file with several hard links inside the folder is counted
    once, in the part met first: ``maps/`` is walked last, so the current map's kept links
    to the top-level arrays and ``models/`` are free. The thumbnails (one file per image)
    are estimated from a sample beyond :data:`THUMBS_EXACT` files.

    Returns
    -------
    dict
        ``total`` (int bytes), ``parts`` (name -> int bytes, every name of :data:`PARTS`),
        ``feature_sets`` (name -> int bytes, stored sets other than the ingest embeddings,
        with a fine-tuned set's network ``models/<name>.pt``: what dropping it frees),
        ``kept_maps`` (map id -> int bytes newly counted under ``maps/<id>/``),
        ``estimated`` (list of the parts given from a sample: ``['thumbs']`` or []).
    """
    root = project.root
    parts = dict.fromkeys(PARTS, 0)
    sets: dict[str, int] = {}
    kept: dict[int, int] = {}
    seen: set[tuple[int, int]] = set()
    paths = []
    for d, dirs, files in os.walk(root):
        if Path(d) == root:
            dirs[:] = [x for x in dirs if x != "thumbs"]
        dirs.sort()
        paths += [Path(d) / f for f in files]
    for p in sorted(paths, key=lambda q: (q.relative_to(root).parts[0] == "maps", q.relative_to(root).parts)):
        try:
            st = p.stat(follow_symlinks=False)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        rel = p.relative_to(root)
        part = _part(rel)
        parts[part] += st.st_size
        if part == "features" and len(rel.parts) == 2 and rel.suffix == ".npy":
            sets[rel.stem] = sets.get(rel.stem, 0) + st.st_size
        elif part == "maps" and len(rel.parts) == 3 and rel.parts[1].isdigit():
            kept[int(rel.parts[1])] = kept.get(int(rel.parts[1]), 0) + st.st_size
    parts["thumbs"], estimated = _thumbs(root / "thumbs")
    for name in sets:
        net = root / "models" / f"{name}.pt"
        sets[name] += net.stat().st_size if net.is_file() else 0
    return {"total": sum(parts.values()), "parts": parts, "feature_sets": sets, "kept_maps": kept,
            "estimated": ["thumbs"] if estimated else []}
