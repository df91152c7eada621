"""Commands that check labels and clusters: near-duplicates, likely label errors, agreement
between annotators, and evaluation against a known truth."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .options import PROJECT, open_project


@click.command("duplicates")
@PROJECT
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Cosine similarity at or above which two images are near-duplicates (default 0.99, measured).")
@click.option("-k", type=click.IntRange(1, 1000), default=10, show_default=True, help="Neighbours examined per image.")
@click.option("--limit", type=click.IntRange(0), default=20, show_default=True, help="Groups to list (text output).")
@click.option("--json", "as_json", is_flag=True, help="Print every group as JSON.")
def duplicates_cmd(project_dir, threshold, k, limit, as_json):
    """Exact copies (same file hash) and near-duplicate groups (cosine >= threshold).

    \b
    Example:
      labeler duplicates --project data/projects/elpv --threshold 0.99
    """
    from ..duplicates import DEFAULT_K, find_duplicates, remember_counts

    project = open_project(project_dir)
    rep = find_duplicates(project, threshold=threshold, k=k)
    if threshold is None and k == DEFAULT_K:
        remember_counts(project, rep)  # `labeler info` shows them on projects too large to count live
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=2))
        return
    c = rep.counts()
    click.echo(f"{rep.n_images} image(s), cosine >= {rep.threshold}: {c['exact_groups']} exact-copy set(s) "
               f"({c['exact_images']} images), {c['near_groups']} near-duplicate group(s) ({c['near_images']} images)")
    paths = {r["id"]: r["path"] for r in project.store.image_table()}
    for g in rep.groups[:limit]:
        click.echo(f"  group {g.group:>4} ({g.kind}, {len(g.image_ids)} images, min cosine {g.min_similarity:.3f}): "
                   + ", ".join(f"{i} {paths.get(i, '?')}" for i in g.image_ids[:6])
                   + (" ..." if len(g.image_ids) > 6 else ""))
    if len(rep.groups) > limit:
        click.echo(f"  ... {len(rep.groups) - limit} more (--limit, --json)")


@click.command("review")
@PROJECT
@click.option("--vectors", type=click.Choice(["pca", "embeddings"]), default="pca", show_default=True,
              help="Features of the linear probe.")
@click.option("--folds", type=click.IntRange(2, 50), default=5, show_default=True, help="Cross-validation folds.")
@click.option("--limit", type=click.IntRange(0), default=30, show_default=True,
              help="Images and groups to list (text output).")
@click.option("--json", "as_json", is_flag=True, help="Print every flagged image and group as JSON.")
def review_cmd(project_dir, vectors, folds, limit, as_json):
    """Likely label errors: labelled images, and whole groups, whose label the evidence disagrees with.

    A linear probe on the embeddings gives out-of-fold probabilities; cleanlab
    flags and ranks the unlikely labels, each with a suggested label. Then whole
    clusters and groups of near neighbours are held out: a group whose shared label
    a model trained without it disagrees with is listed as a group (JSON: `groups`).

    \b
    Example:
      labeler review --project data/projects/elpv --limit 20
    """
    from ..review import review_labels

    rep = review_labels(open_project(project_dir), vectors=vectors, folds=folds)
    click.echo(json.dumps(rep.to_dict(), indent=2) if as_json else "\n".join(rep.text(limit)))


@click.command("agreement")
@PROJECT
@click.option("--limit", type=click.IntRange(0), default=30, show_default=True, help="Conflicts to list (text output).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures and every conflict as JSON.")
def agreement_cmd(project_dir, limit, as_json):
    """Agreement between annotators (Krippendorff's alpha, Cohen's kappa) and their conflicts.

    \b
    Example:
      labeler agreement --project data/projects/elpv
    """
    from ..agreement import agreement

    rep = agreement(open_project(project_dir))
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=2))
        return
    click.echo(f"{len(rep.annotators)} annotator(s); {rep.n_images_multi} image(s) labelled by two or more")
    if not rep.n_images_multi:
        return
    fmt = lambda v: "undefined (one value)" if v is None else f"{v:.3f}"  # noqa: E731
    click.echo(f"Krippendorff's alpha (nominal): {fmt(rep.alpha)}")
    for lab, a in rep.alpha_per_label.items():
        click.echo(f"  {lab!r}: {fmt(a)}")
    for p in rep.pairs:
        click.echo(f"  {p['annotator_a']} / {p['annotator_b']}: {p['n_common']} common, agree {p['agreement']:.1%}, "
                   f"Cohen's kappa {fmt(p['cohen_kappa'])}")
    click.echo(f"{len(rep.conflicts)} conflict(s)")
    for c in rep.conflicts[:limit]:
        click.echo(f"  id {c['image_id']:>6} {c['path']}: " + ", ".join(f"{a} {lab!r}" for a, lab in c["labels"].items()))


@click.command()
@PROJECT
@click.option("--truth", "truth_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="CSV: image path (first column) and true classes.")
@click.option("--column", "columns", multiple=True,
              help="Truth column to evaluate (repeatable; default: the second column).")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the JSON, Markdown and plots go (default: PROJECT/evaluation).")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the tables of all columns to this Markdown file.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG/HTML plots.")
@click.option("--group-column", default=None,
              help="Truth column whose equal values mark one physical part or burst: search is also "
                   "scored with those neighbours left out.")
def evaluate(project_dir, truth_path, columns, out_dir, markdown, no_plots, group_column):
    """Measure clustering, search and labeling cost against known true classes.

    \b
    Example:
      labeler evaluate --project data/projects/elpv --truth data/elpv/truth.csv \\
        --column cell_type --column defect_level --column defective
      labeler evaluate --project my-project --truth truth.csv --column defect --group-column part_id
    """
    from ..evaluate import evaluate_project, markdown_table, write_outputs

    project = open_project(project_dir)
    out_dir = out_dir or project.root / "evaluation"
    results = evaluate_project(project, truth_path, list(columns) or None, group_column=group_column,
                               log=lambda m: click.echo(m, err=True))
    tables = []
    for res in results:
        written = write_outputs(res, out_dir, plots=not no_plots)
        tables.append(markdown_table(res))
        click.echo(tables[-1])
        click.echo(f"wrote {', '.join(p.name for p in written)} to {out_dir}\n")
    if markdown:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text("\n".join(tables))
        click.echo(f"wrote {markdown}")


COMMANDS = (duplicates_cmd, review_cmd, agreement_cmd, evaluate)
