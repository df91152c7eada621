"""A Hugging Face ``datasets`` dataset saved to disk.

``datasets.load_from_disk(OUT)`` gives a ``DatasetDict`` with one ``Dataset``
per split; features: ``image`` (``datasets.Image``, the file's bytes embedded so
the folder is self-contained), ``label`` (``datasets.ClassLabel``, names sorted),
``path``, ``label_source``, ``annotator``, ``cluster`` and, with a split,
``group``. Optional dependency: ``pip install labeler[hf]``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BadInputError
from .imagefolder import exportable, staged_output_dir


def _datasets():
    try:
        import datasets
    except ImportError:
        raise BadInputError("the hf export needs the `datasets` package: pip install 'labeler[hf]'") from None
    return datasets


def _examples(rows: list[dict], index: dict[str, int], grouped: bool):
    """One example per row, each image's bytes read only when the writer asks for it."""
    for r in rows:
        ex = {
            "image": {"bytes": Path(r["absolute_path"]).read_bytes(), "path": Path(r["path"]).name},
            "label": index[r["label"]],
            "path": r["path"],
            "label_source": r["label_source"],
            "annotator": r["annotator"],
            "cluster": None if r["cluster"] == "" else int(r["cluster"]),
        }
        if grouped:
            ex["group"] = r["group"]
        yield ex


#: Target bytes of images per Arrow shard and write batch of the hf export (peak memory
#: is a small multiple of it, whatever the number of images).
SHARD_BYTES = 64 * 2**20


def export_hf(rows: list[dict], out: Path | str, *,
              shard_bytes: int = SHARD_BYTES) -> tuple[dict[str, int], list[dict]]:
    """Save labelled rows as a ``datasets.DatasetDict`` (one entry per split).

    The images are streamed, never all in memory. ``Dataset.from_generator``
    reads one file at a time and writes record batches of about ``shard_bytes``
    of images to a scratch folder inside the staging folder of ``out``; ``save_to_disk`` copies them
    into shards of the same size (``data-0000i-of-0000k.arrow``), one at a time,
    and the scratch folder is removed. Left to itself, ``save_to_disk`` copies up
    to 1,000 rows or 100 MB at once (``datasets.config.DEFAULT_MAX_BATCH_SIZE``,
    ``MAX_ROW_GROUP_SIZE``), and the old ``Dataset.from_dict`` held every image.
    The disk briefly holds the images twice.

    Parameters
    ----------
    rows, out
        As for :func:`labeler.export.imagefolder.export_imagefolder`.
    shard_bytes : int
        Image bytes per batch and shard (rows per shard = ``shard_bytes`` / the mean
        file size, 1 to 1,000).

    Returns
    -------
    sizes : dict
        {split: rows}.
    missing : list of dict
        Labelled rows skipped because their file is gone.

    Raises
    ------
    BadInputError
        ``datasets`` is not installed, or ``out`` is not empty.
    """
    import math
    import os
    import shutil
    import tempfile
    import uuid

    ds = _datasets()
    out = Path(out)
    ok, missing = exportable(rows)
    names = sorted({r["label"] for r in ok})
    feats = {
        "image": ds.Image(),
        "label": ds.ClassLabel(names=names),
        "path": ds.Value("string"),
        "label_source": ds.Value("string"),
        "annotator": ds.Value("string"),
        "cluster": ds.Value("int64"),
    }
    grouped = bool(ok) and "group" in ok[0]
    if grouped:
        feats["group"] = ds.Value("string")
    features = ds.Features(feats)
    splits: dict[str, list[dict]] = {}
    for r in ok:
        splits.setdefault(r["split"], []).append(r)
    index = {n: i for i, n in enumerate(names)}
    mean_bytes = sum(os.path.getsize(r["absolute_path"]) for r in ok) / max(len(ok), 1)
    per_shard = int(min(1000, max(1, shard_bytes // max(mean_bytes, 1))))
    # Written into a staging folder renamed to out when complete: a full disk or a kill
    # leaves no half dataset at out, and the export runs again as it is.
    with staged_output_dir(out) as stage:
        scratch = Path(tempfile.mkdtemp(prefix=".scratch-", dir=stage))
        try:
            dd = {}
            for split, rs in splits.items():
                # A fresh scratch cache and a given fingerprint: nothing is reused from, or
                # written to, the user's Hugging Face cache, and the rows are not hashed.
                dd[split] = ds.Dataset.from_generator(
                    _examples, features=features, cache_dir=str(scratch / split),
                    gen_kwargs={"rows": rs, "index": index, "grouped": grouped},
                    fingerprint=uuid.uuid4().hex, split=split, writer_batch_size=per_shard)
            ds.DatasetDict(dd).save_to_disk(str(stage), num_shards={k: math.ceil(len(v) / per_shard)
                                                                    for k, v in splits.items()})
            del dd
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return {k: len(v) for k, v in splits.items()}, missing
