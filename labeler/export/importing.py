"""Labels brought in from outside: a CSV (path, label, optional annotator; or a Parquet file
with those columns) or a folder tree whose subfolder names are the labels (an ImageFolder layout, e.g. what
``labeler export --format imagefolder`` writes).

Each row (a CSV line, a file of the tree) is matched to a catalogued image:

1. by its path relative to the image root (a CSV's ``path``; a file of a tree inside the
   image root, as ``labeler ingest DIR --labels-from-folders`` reads it);
2. by an absolute path inside the image root (a CSV's ``path`` or ``absolute_path``, or
   the target of a symbolic link: an ImageFolder export without ``--copy``);
3. by content: the CSV's ``hash`` column (a labeler CSV export has one), or the SHA-256
   of the file when it is on disk (an exported copy named ``<id>_<name>``; see
   :func:`labeler.images.content_hash`). Identical files get the same label.

A folder tree's label is the name of each file's own folder, percent-decoded
(:func:`labeler.export.imagefolder.label_folder` encodes characters a file system
refuses), so ``OUT/train/cracked/12_a.png`` is labelled ``cracked``.

The whole import is **one undoable action** (``labeler undo``) whose description names
the file; each label row has the source ``'import'``. Like every bulk action in
:mod:`labeler.labels`, an import never replaces a label unasked: images that already hold
another label are reported as skipped, by label and annotator, unless ``relabel``.
Nothing is written for rows that name no catalogued image (unmatched), have an empty or
invalid label, or disagree with another row about the same image (conflicts): the report
lists them.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from ..errors import BadInputError, LabelerError
from ..labels import Held, clean_annotator, clean_label, held_summary, write_action

#: Column names accepted for the image path and the label (first found wins, case-insensitive).
PATH_COLUMNS = ("path", "image", "file", "filename", "image_path", "filepath", "relative_path")
LABEL_COLUMNS = ("label", "class", "category", "target")


@dataclass
class ImportRow:
    """One label to import: where it came from and the image it names."""

    where: str          # the path as given (CSV) or the file's path (tree)
    label: str          # as read, not yet checked
    annotator: str | None = None
    absolute: str = ""  # a CSV's absolute_path, or the tree file's absolute path
    hash: str = ""      # a CSV's hash column
    file: str = ""      # a file on disk to hash when nothing else matches
    relative: bool = True  # ``where`` is relative to the image root (a CSV), not to a tree read
    score: str = ""     # a CSV's score column (predictions: labeler.assist.predictions)


@dataclass
class ImportReport:
    """What an import did (or, with ``dry_run``, would do).

    Attributes
    ----------
    source : str
        The CSV file or folder read.
    rows : int
        Rows (CSV lines, image files of the tree) read.
    matched : int
        Distinct catalogued images named by a row with a usable label.
    by_content : int
        Of those, images matched by content hash (the path did not match).
    action_id : int or None
        The action written (None: nothing written, or a dry run).
    new : list of int
        Images that had no label and got the imported one.
    replaced : list of Held
        Labelled images relabelled (``relabel``), with the label they held.
    skipped : list of Held
        Images holding another label, left as they are.
    unchanged : int
        Images that already held the imported label.
    unmatched : list of str
        Rows naming no catalogued image (their paths).
    blank : list of str
        Rows with an empty label (or, in a tree, files with no label folder).
    bad : list of (str, str)
        Rows with a label or annotator refused by :func:`labeler.labels.clean_label`, and why.
    conflicts : list of (str, list of str)
        Images named by several rows that disagree (path, the labels): not written.
    """

    source: str
    rows: int = 0
    matched: int = 0
    by_content: int = 0
    action_id: int | None = None
    new: list[int] = field(default_factory=list)
    replaced: list[Held] = field(default_factory=list)
    skipped: list[Held] = field(default_factory=list)
    unchanged: int = 0
    unmatched: list[str] = field(default_factory=list)
    blank: list[str] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)
    conflicts: list[tuple[str, list[str]]] = field(default_factory=list)
    dry_run: bool = False

    @property
    def written(self) -> list[int]:
        """Image ids written (or, in a dry run, that would be), ascending."""
        return sorted(self.new + [h.image_id for h in self.replaced])

    def lines(self, limit: int = 10) -> list[str]:
        """The report as text lines: counts first, then up to ``limit`` examples of each problem."""
        verb = "would label" if self.dry_run else "labelled"
        out = [f"read {self.rows:,} row(s) from {self.source}: {self.matched:,} image(s) matched"
               + (f" ({self.by_content:,} by content)" if self.by_content else ""),
               f"{verb} {len(self.written):,} image(s): {len(self.new):,} new, {len(self.replaced):,} replaced"
               + (f" ({held_summary(self.replaced)})" if self.replaced else "")
               + (f"; action {self.action_id} (`labeler undo` takes it back)" if self.action_id else "")]
        if self.unchanged:
            out.append(f"{self.unchanged:,} image(s) already held the imported label")
        if self.skipped:
            out.append(f"skipped {len(self.skipped):,} image(s) that hold another label "
                       f"({held_summary(self.skipped)}): add --relabel to replace them")

        def some(title, items, fmt=str):
            out.extend(listing(title, items, limit, fmt))
        some("unmatched (no catalogued image with that path or content)", self.unmatched)
        some("blank label (not written)", self.blank)
        some("refused label (not written)", self.bad, lambda b: f"{b[0]}: {b[1]}")
        some("rows that disagree about one image (not written)", self.conflicts,
             lambda c: f"{c[0]}: {', '.join(repr(x) for x in c[1])}")
        return out

    def to_dict(self) -> dict:
        """JSON-ready: every count, and every unmatched, blank, refused and conflicting row."""
        def by(rows):
            return [{"label": lab, "annotator": who, "images": n}
                    for (lab, who), n in Counter((h.label, h.annotator) for h in rows).most_common()]
        return {"source": self.source, "dry_run": self.dry_run, "rows": self.rows, "matched": self.matched,
                "by_content": self.by_content, "action_id": self.action_id, "labelled": len(self.written),
                "new": len(self.new), "replaced": len(self.replaced), "skipped": len(self.skipped),
                "unchanged": self.unchanged, "replaced_by": by(self.replaced), "skipped_by": by(self.skipped),
                "unmatched": self.unmatched, "blank": self.blank,
                "bad": [{"path": p, "reason": r} for p, r in self.bad],
                "conflicts": [{"path": p, "labels": labs} for p, labs in self.conflicts],
                "image_ids": self.written}


# -- reading ---------------------------------------------------------------------------------

def listing(title: str, items, limit: int, fmt=str) -> list[str]:
    """Report lines for one kind of problem: 'title: N', up to ``limit`` examples, then how many more."""
    if not items:
        return []
    out = [f"{title}: {len(items):,}"] + [f"  {fmt(x)}" for x in items[:limit]]
    if len(items) > limit:
        out.append(f"  ... and {len(items) - limit:,} more (--json lists all)")
    return out


def _column(fields: list[str], names: tuple[str, ...]) -> str | None:
    lower = {f.strip().lower(): f for f in fields}
    return next((lower[n] for n in names if n in lower), None)


def _table_rows(path: Path, fields: list[str], records) -> list[ImportRow]:
    """ImportRows from dict records of a table with a path and a label column."""
    pcol, lcol = _column(fields, PATH_COLUMNS), _column(fields, LABEL_COLUMNS)
    if pcol is None or lcol is None:
        raise BadInputError(f"{path} needs a 'path' and a 'label' column (optional: 'annotator'); it has {fields}")
    acol, abscol, hcol, scol = (_column(fields, (n,)) for n in ("annotator", "absolute_path", "hash", "score"))

    def cell(r, col) -> str:
        v = r.get(col) if col else None
        return "" if v is None else str(v)

    base = path.resolve().parent
    rows = []
    for r in records:
        where, label = cell(r, pcol).strip(), cell(r, lcol)
        if not where and not label.strip():
            continue  # an empty line
        absolute = cell(r, abscol).strip()
        on_disk = absolute or (where if os.path.isabs(where) else str(base / where) if where else "")
        rows.append(ImportRow(where, label, cell(r, acol).strip() or None, absolute,
                              cell(r, hcol).strip().lower(), on_disk, score=cell(r, scol).strip()))
    return rows


def read_label_csv(path: Path | str) -> list[ImportRow]:
    """Rows of a label CSV: a path column (``path``, ``file``, ``filename``, ...), a label
    column (``label``, ``class``, ...), optionally ``annotator``, ``absolute_path`` and ``hash``
    (a ``labeler export`` CSV has them all). Comma, TAB or semicolon separated; UTF-8, with or
    without a byte-order mark. A ``.parquet`` file with the same columns is read too
    (a ``labeler export --format parquet`` file).

    Raises
    ------
    BadInputError
        The file cannot be read as CSV (or Parquet), or has no path or no label column.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises its own error types for a bad file
            raise BadInputError(f"cannot read {path} as Parquet: {e}") from e
        return _table_rows(path, table.column_names, table.to_pylist())
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = f.readline()
            f.seek(0)
            # The header's separator: a comma (default), else a TAB or a semicolon (spreadsheets).
            delimiter = next((d for d in ",\t;" if d in header), ",")
            reader = csv.DictReader(f, delimiter=delimiter)
            return _table_rows(path, list(reader.fieldnames or []), reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise BadInputError(f"{path} is not a UTF-8 CSV file: {e}") from e
    except OSError as e:
        raise BadInputError(f"cannot read {path}: {e.strerror or e}") from e


def read_label_folders(root: Path | str) -> list[ImportRow]:
    """One row per image file under ``root`` (recursively; hidden files and folders left out),
    labelled with the percent-decoded name of the file's own folder; files directly in
    ``root`` have no label (blank). Symbolic links to files are read (their target is matched).

    Raises
    ------
    BadInputError
        ``root`` is not a folder.
    """
    from ..images import IMAGE_EXTENSIONS

    root = Path(root).expanduser()
    if not root.is_dir():
        raise BadInputError(f"not a folder: {root}")
    top = root.resolve()
    rows = []
    for d, dirs, files in os.walk(top):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        here = Path(d)
        label = "" if here == top else unquote(here.name)
        for name in sorted(files):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            full = here / name
            rows.append(ImportRow(full.relative_to(top).as_posix(), label, None, str(full), "", str(full),
                                  relative=False))
    return rows


# -- matching --------------------------------------------------------------------------------

class _Matcher:
    """Finds the catalogued image(s) a row names: by path, absolute path, then content."""

    def __init__(self, project, base: Path):
        catalogue = project.store.images_by_path()
        self.by_path = {p: r["id"] for p, r in catalogue.items()}
        self.hashes: dict[str, list[int]] = {}
        for r in catalogue.values():
            self.hashes.setdefault(r["hash"], []).append(r["id"])
        root = project.image_root
        self.roots = [] if root is None else list(dict.fromkeys([Path(root), Path(root).resolve()]))
        self.base = base  # the tree read, or the CSV's folder: its relative paths are tried from there

    def _inside(self, absolute: str) -> int | None:
        for candidate in (os.path.normpath(absolute), os.path.realpath(absolute)):
            for root in self.roots:
                try:
                    rel = Path(candidate).relative_to(root).as_posix()
                except ValueError:
                    continue
                if rel in self.by_path:
                    return self.by_path[rel]
        return None

    def match(self, row: ImportRow) -> tuple[list[int], bool]:
        """(image ids, matched by content); ([], False) when nothing matches."""
        # A file of a tree (or a CSV's absolute path) first: a tree in a subfolder of the image
        # root must not match another file by its path relative to the tree.
        for absolute in (row.absolute, row.where if os.path.isabs(row.where) else ""):
            if absolute and (i := self._inside(absolute)) is not None:
                return [i], False
        p = row.where.replace("\\", "/") if "\\" in row.where and "/" not in row.where else row.where
        while p.startswith("./"):
            p = p[2:]
        if row.relative and p in self.by_path:
            return [self.by_path[p]], False
        if row.relative and p and (i := self._inside(str(self.base / p))) is not None:  # from the CSV's folder
            return [i], False
        h = row.hash
        if not h and row.file and os.path.isfile(row.file):
            from ..images import content_hash

            try:
                h = content_hash(Path(row.file))
            except OSError:
                h = ""
        return (sorted(self.hashes[h]), True) if h in self.hashes else ([], False)


def matched_rows(project, rows: list[ImportRow], base: Path, report, parse):
    """The rows of a label file that name catalogued images, with what ``parse`` read
    from them: the one row loop of ``labeler import-labels`` and ``import-predictions``.

    A row with an empty label goes to ``report.blank``, one ``parse`` refuses to
    ``report.bad`` (with the reason) and one that names no catalogued image to
    ``report.unmatched``; each is skipped.

    Parameters
    ----------
    project : Project
    rows : list of ImportRow
        From :func:`read_label_csv` or :func:`read_label_folders`.
    base : Path
        The tree read, or the CSV's folder: relative paths are also tried from there.
    report : ImportReport or PredictionReport
        Has the lists ``blank``, ``bad`` and ``unmatched``.
    parse : callable
        ``parse(row)`` -> the row's cleaned values; raises LabelerError for a bad value.

    Yields
    ------
    (ImportRow, object, list of int, bool)
        The row, ``parse(row)``, the ids of the images it names and whether they were
        matched by content (the path matched none).
    """
    matcher = _Matcher(project, base)
    for row in rows:
        if not row.label.strip():
            report.blank.append(row.where)
            continue
        try:
            parsed = parse(row)
        except LabelerError as e:
            report.bad.append((row.where, str(e)))
            continue
        ids, by_content = matcher.match(row)
        if not ids:
            report.unmatched.append(row.where)
            continue
        yield row, parsed, ids, by_content


# -- the import ------------------------------------------------------------------------------

def import_labels(project, source: Path | str, *, annotator: str | None = None, relabel: bool = False,
                  dry_run: bool = False, rows: list[ImportRow] | None = None) -> ImportReport:
    """Import the labels of a CSV file or a folder tree as one undoable action.

    Parameters
    ----------
    project : Project
    source : path
        A CSV or Parquet file (:func:`read_label_csv`) or a folder (:func:`read_label_folders`).
    annotator : str or None
        Who imports (the action's author: ``labeler undo --annotator`` takes it back); each
        label's annotator is the CSV's ``annotator`` column where it has one, else this.
    relabel : bool
        Replace the labels images already hold (default: skip them and report them).
    dry_run : bool
        Match and report, write nothing.
    rows : list of ImportRow or None
        Rows already read (default: read ``source``).

    Returns
    -------
    ImportReport

    Raises
    ------
    BadInputError
        ``source`` is missing, unreadable or lacks the columns; a bad annotator name.
    """
    source = Path(source).expanduser()
    who = clean_annotator(annotator)
    if not source.exists():
        raise BadInputError(f"not found: {source}")
    is_tree = source.is_dir()
    if rows is None:
        rows = read_label_folders(source) if is_tree else read_label_csv(source)
    rep = ImportReport(str(source), rows=len(rows), dry_run=dry_run)
    wanted: dict[int, tuple[str, str | None]] = {}
    named_by: dict[int, str] = {}
    disagree: dict[int, set[str]] = {}
    content: set[int] = set()
    for row, (label, row_who), ids, by_content in matched_rows(
            project, rows, source.resolve() if is_tree else source.resolve().parent, rep,
            lambda r: (clean_label(r.label), clean_annotator(r.annotator) if r.annotator else None)):
        for i in ids:
            if by_content:
                content.add(i)
            if i in wanted and wanted[i][0] != label:
                disagree.setdefault(i, {wanted[i][0]}).add(label)
            wanted.setdefault(i, (label, row_who))
            named_by.setdefault(i, row.where)
    for i, labs in sorted(disagree.items()):
        rep.conflicts.append((named_by[i], sorted(labs)))
        del wanted[i]
    rep.matched = len(wanted)
    rep.by_content = len(content & set(wanted))
    _write(project.store, wanted, rep, who=who, relabel=relabel, dry_run=dry_run,
           description=f"import {{n}} label(s) from {source.resolve()}")
    return rep


def _write(store, wanted: dict[int, tuple[str, str | None]], rep: ImportReport, *, who: str, relabel: bool,
           dry_run: bool, description: str) -> None:
    """One transaction: sort ``wanted`` into new / replaced / skipped / unchanged, write one action."""
    ids = sorted(wanted)
    if not ids:
        return
    with store.transaction():
        store.check_images_exist(ids)
        res = write_action(store, {i: wanted[i][0] for i in ids}, who=who, source="import", relabel=relabel,
                           description=lambda n: description.format(n=n), keep_same=True, dry_run=dry_run,
                           annotators={i: wanted[i][1] for i in ids if wanted[i][1]})
    rep.new, rep.replaced, rep.skipped = res.new, res.replaced, res.skipped
    rep.unchanged, rep.action_id = len(res.unchanged), res.action_id
