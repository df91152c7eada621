"""The export command: labels in training layouts (CSV, ImageFolder, Parquet, Hugging Face)."""

from __future__ import annotations

from pathlib import Path

import click

from .options import PROJECT, open_project


@click.command()
@PROJECT
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="A file (csv, parquet) or a new folder (imagefolder, hf).")
@click.option("--format", "fmt", type=click.Choice(["csv", "imagefolder", "parquet", "hf"]), default="csv",
              show_default=True, help="csv; imagefolder: split/label/file; parquet (pyarrow); hf: datasets on disk.")
@click.option("--split", default=None, help="Fractions: train (1.0), train,test (0.8,0.2) or "
              "train,validation,test (0.8,0.1,0.1); stratified by label, near-duplicate groups kept in one split.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
@click.option("--groups", "groups_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CSV with a path column and --group-column: groups to keep whole instead of near-duplicates.")
@click.option("--group-column", default=None, help="Column of --groups naming each image's group.")
@click.option("--duplicate-threshold", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Cosine similarity joining near-duplicates for the split (default: `labeler duplicates`'s).")
@click.option("--consensus", is_flag=True, help="Label = majority of the annotators' latest labels; adds support.")
@click.option("--include-unlabelled", is_flag=True, help="csv/parquet: also rows for unlabelled images.")
@click.option("--excel-safe/--no-excel-safe", default=False, show_default=True,
              help="csv: quote-prefix cells a spreadsheet would run as formulas (numbers stay). "
              "Default: data-faithful, every cell as stored.")
@click.option("--copy", is_flag=True, help="imagefolder: copy the files (default: symbolic links).")
@click.option("--with-embeddings", is_flag=True, help="parquet: add the embedding column.")
def export(project_dir, output, fmt, split, seed, groups_csv, group_column, duplicate_threshold, consensus,
           include_unlabelled, excel_safe, copy, with_embeddings):
    """Export labels as CSV, an ImageFolder tree, Parquet or a Hugging Face dataset.

    \b
    Example:
      labeler export --project data/projects/elpv -o labels.csv
      labeler export --project data/projects/elpv --format imagefolder --split 0.8,0.1,0.1 -o elpv-set
    """
    from ..export import export as run_export

    rep = run_export(open_project(project_dir), output, format=fmt, split=split, seed=seed, groups_csv=groups_csv,
                     group_column=group_column, duplicate_threshold=duplicate_threshold, consensus=consensus,
                     include_unlabelled=include_unlabelled, excel_safe=excel_safe, copy=copy,
                     with_embeddings=with_embeddings)
    for line in rep.lines():
        click.echo(line)


COMMANDS = (export,)
