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
from .imagefolder import exportable, prepare_output_dir


def _datasets():
    try:
        import datasets
    except ImportError:
        raise BadInputError("the hf export needs the `datasets` package: pip install 'labeler[hf]'") from None
    return datasets


def export_hf(rows: list[dict], out: Path | str) -> tuple[dict[str, int], list[dict]]:
    """Save labelled rows as a ``datasets.DatasetDict`` (one entry per split).

    Parameters
    ----------
    rows : list of dict
        From :func:`labeler.export.table.training_table`.
    out : path
        A new or empty folder.

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
    ds = _datasets()
    out = Path(out)
    ok, missing = exportable(rows)
    prepare_output_dir(out)
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
    dd = {}
    for split, rs in splits.items():
        data = {
            "image": [{"bytes": Path(r["absolute_path"]).read_bytes(), "path": Path(r["path"]).name} for r in rs],
            "label": [index[r["label"]] for r in rs],
            "path": [r["path"] for r in rs],
            "label_source": [r["label_source"] for r in rs],
            "annotator": [r["annotator"] for r in rs],
            "cluster": [None if r["cluster"] == "" else int(r["cluster"]) for r in rs],
        }
        if grouped:
            data["group"] = [r["group"] for r in rs]
        dd[split] = ds.Dataset.from_dict(data, features=features)
    ds.DatasetDict(dd).save_to_disk(str(out))
    return {k: len(v) for k, v in splits.items()}, missing
