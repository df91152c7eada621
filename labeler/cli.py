"""Command line: each command parses its options and calls the library.

Run ``labeler COMMAND --help`` for the options and an example of each.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .config import Settings
from .embedding.registry import BACKBONES, FEATURE_TYPES, PRECISIONS, VIEWS

PROJECT = click.option(
    "--project", "-p", "project_dir", type=click.Path(file_okay=False, path_type=Path),
    required=True, envvar="LABELER_PROJECT", help="Project directory (env LABELER_PROJECT).",
)


def _open(project_dir: Path):
    from .project import Project

    return Project(project_dir)


def _fail(msg: str, code: int = 1):
    click.secho(f"error: {msg}", fg="red", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Turns a :class:`~labeler.errors.LabelerError` (a user's mistake) into one red
    line and exit status 1; anything else is a bug and keeps its traceback.

    Set LABELER_DEBUG=1 to get the traceback of a LabelerError too.
    """

    def invoke(self, ctx):
        import os

        from .errors import LabelerError

        try:
            return super().invoke(ctx)
        except LabelerError as e:
            if os.environ.get("LABELER_DEBUG"):
                raise
            _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)


@click.group(cls=_Group)
@click.version_option(package_name="labeler")
def main():
    """labeler: turn a folder of unlabelled images into a labelled training set.

    \b
    Example:
      labeler ingest photos/ --project my-project
      labeler serve --project my-project
    """


def _warn(message: str) -> None:
    click.secho(message, fg="yellow", err=True)


def _say(quiet: bool):
    return (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))


def _print_ingest(rep) -> None:
    c = rep.catalogue
    click.echo(
        f"catalogue: {c.found} image file(s): {c.new} new, {c.changed} changed, "
        f"{c.unchanged} unchanged, {c.missing} missing"
    )
    click.echo(f"backbone: {rep.backbone}; embedded {rep.embedded} image(s); ingest took {rep.seconds:.1f} s")
    if rep.skipped:
        click.secho(f"skipped {len(rep.skipped)} file(s):", fg="yellow")
        for path, reason in rep.skipped[:50]:
            click.echo(f"  {path}: {reason}")
        if len(rep.skipped) > 50:
            click.echo(f"  ... and {len(rep.skipped) - 50} more (`labeler info` lists them)")
    click.echo(f"{rep.n_images} image(s) in {rep.n_clusters} cluster(s), {rep.n_noise} noise")


def _settings_from(project_dir: Path, **flags) -> Settings:
    from .config import load_settings

    return load_settings(project_dir / "labeler.toml", **flags)


@main.command()
@click.argument("image_dir", type=click.Path(path_type=Path))
@PROJECT
@click.option("--backbone", type=click.Choice(["auto", *BACKBONES]), default=None,
              help="CNN for embeddings (default auto: resnet50 when its weights can be had).")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None, envvar="LABELER_WEIGHTS",
              help="ResNet50 state_dict file (env LABELER_WEIGHTS).")
@click.option("--view", type=click.Choice(VIEWS), default=None,
              help="whole: resize the full frame (default); crop: ImageNet resize + centre crop.")
@click.option("--features", type=click.Choice(["auto", *FEATURE_TYPES]), default=None,
              help="Feature type: multistage (default for a new project: pooled mid-level stages, keeps "
                   "small defects), global (last layer only), multiscale (also at 2x size, ~5x slower).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when present).")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=None)
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="fp32 (default) or bf16: opt-in, ~2x faster on CPUs with AVX-512 BF16.")
@click.option("--force", is_flag=True, help="Re-embed everything when the backbone changes.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: decode and embed on a Ray cluster (pip install 'labeler[ray]').")
@click.option("--address", default=None, help="Ray cluster address for --engine ray (default: a local instance).")
def ingest(image_dir, project_dir, backbone, weights, view, features, device, batch_size, precision, force, quiet,
           engine, address):
    """Catalogue, embed, reduce and cluster IMAGE_DIR into a project.

    Re-running embeds only new or changed files; an interrupted run resumes.

    \b
    Example:
      labeler ingest data/elpv/images --project data/projects/elpv
    """
    from .errors import BackboneMismatchError
    from .pipeline import ingest as run_ingest

    settings = _settings_from(project_dir, backbone=backbone, weights=str(weights) if weights else None,
                              view=view, features=features, device=device, batch_size=batch_size,
                              precision=precision)
    run = dict(progress=not quiet, warn=_warn, say=_say(quiet), engine=engine, address=address)
    try:
        rep = run_ingest(image_dir, project_dir, settings, force=force, **run)
    except BackboneMismatchError as e:
        # The mismatch is found before anything is embedded: asking and re-running is safe.
        if not sys.stdin.isatty() or not click.confirm(f"{e}. Re-embed everything now?"):
            _fail(str(e))
        rep = run_ingest(image_dir, project_dir, settings, force=True, **run)
    _print_ingest(rep)


@main.command("cluster")
@PROJECT
@click.option("--method", type=click.Choice(["hdbscan", "kmeans"]), default=None)
@click.option("--k", type=click.IntRange(0), default=None, help="KMeans k (0: choose by silhouette).")
@click.option("--min-cluster-size", type=click.IntRange(2), default=None, help="HDBSCAN min_cluster_size.")
@click.option("--min-samples", type=click.IntRange(0), default=None, help="HDBSCAN min_samples.")
def cluster_cmd(project_dir, method, k, min_cluster_size, min_samples):
    """Re-cluster the project; the new clustering becomes current.

    \b
    Example:
      labeler cluster --project data/projects/elpv --method kmeans --k 8
    """
    from .clustering import cluster_project

    project = _open(project_dir)
    s = project.settings(method=method, k=k, min_cluster_size=min_cluster_size, min_samples=min_samples)
    cid = cluster_project(project, s)
    project.save_settings(s)
    _print_clusters(project, cid)


def _print_clusters(project, clustering_id=None, limit: int = 30) -> None:
    sums = project.store.cluster_summaries(clustering_id)
    real = [s for s in sums if s["cluster"] >= 0]
    noise = sum(s["size"] for s in sums if s["cluster"] < 0)
    click.echo(f"{len(real)} cluster(s), {noise} noise image(s)")
    for s in real[:limit]:
        coh = f"{s['cohesion']:.2f}" if s["cohesion"] is not None else "-"
        click.echo(f"  cluster {s['cluster']:>3}: {s['size']:>5} images, cohesion {coh}, "
                   f"medoid {s['medoid_id']}, hint: {s['suggested_name'] or '-'}")
    if len(real) > limit:
        click.echo(f"  ... {len(real) - limit} more")


@main.command("search")
@click.argument("query")
@PROJECT
@click.option("-k", type=click.IntRange(1, 1000), default=10, show_default=True, help="Neighbours to return.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def search_cmd(query, project_dir, k, as_json):
    """Reverse image search: nearest neighbours of QUERY (an image file or an image id).

    \b
    Example:
      labeler search data/elpv/images/cell0001.png --project data/projects/elpv -k 10
    """
    from .search import search

    res = search(_open(project_dir), query, k)
    if as_json:
        click.echo(json.dumps(res.to_dict(), indent=2))
        return
    _print_search(res)


def _print_search(res) -> None:
    click.echo(f"query {res.query}: map position ({res.map_xy[0]:.2f}, {res.map_xy[1]:.2f}), "
               f"likely cluster {res.likely_cluster}")
    if res.is_novel:
        click.secho(f"novel: best similarity {res.best_similarity:.3f} < threshold "
                    f"{res.novelty_threshold:.3f}: unlike anything in the collection", fg="yellow")
    for n in res.neighbours:
        click.echo(f"  {n.similarity:.3f}  id {n.image_id:>6}  cluster {n.cluster:>3}  "
                   f"label {n.label or '-':<12} {n.path}")
    if res.vote:
        click.echo("vote: " + ", ".join(f"{lab} {share:.0%}" for lab, share in res.vote.items()))


@main.command()
@PROJECT
@click.argument("label")
@click.option("--cluster", "cluster_id", type=int, default=None, help="Label every image of this cluster.")
@click.option("--clustering", "clustering_id", type=int, default=None,
              help="The clustering id the cluster number refers to (see `labeler info`); refused if "
                   "the project was re-clustered since. Default: the current one (its id is printed).")
@click.option("--image", "image_ids", type=int, multiple=True, help="Image id (repeatable).")
@click.option("--annotator", default=None, envvar="LABELER_ANNOTATOR", help="Your name (env LABELER_ANNOTATOR).")
def label(project_dir, label, cluster_id, clustering_id, image_ids, annotator):
    """Give LABEL to a whole cluster or to images, in one undoable action.

    \b
    Example:
      labeler label --project data/projects/elpv --cluster 3 --clustering 1 cracked --annotator ana
    """
    from . import labels

    if (cluster_id is None) == (not image_ids):
        raise click.UsageError("give either --cluster N or one or more --image ID")
    if clustering_id is not None and cluster_id is None:
        raise click.UsageError("--clustering goes with --cluster")
    project = _open(project_dir)
    who = annotator or "cli"
    if cluster_id is not None:
        if clustering_id is None:
            cur = project.store.current_clustering()
            clustering_id = cur["id"] if cur else None
            click.echo(f"cluster {cluster_id} of the current clustering {clustering_id}", err=True)
        _, ids = labels.label_cluster(project, cluster_id, label, annotator=who, clustering_id=clustering_id)
    else:
        labels.label_images(project, image_ids, label, annotator=who, source="manual")
        ids = list(image_ids)
    click.echo(f"labelled {len(ids)} image(s) {labels.clean_label(label)!r}")


@main.command()
@PROJECT
@click.option("--annotator", default="cli", envvar="LABELER_ANNOTATOR", show_default=True,
              help="Whose last action to undo (env LABELER_ANNOTATOR).")
def undo(project_dir, annotator):
    """Undo the last label or cluster action (a bulk action undoes as one).

    \b
    Example:
      labeler undo --project data/projects/elpv --annotator ana
    """
    from . import labels

    done = labels.undo(_open(project_dir), annotator)
    click.echo("nothing to undo" if done is None else f"undone: {done.description}")


@main.command()
@PROJECT
@click.option("--annotator", default="cli", envvar="LABELER_ANNOTATOR", show_default=True,
              help="Whose undone action to re-apply (env LABELER_ANNOTATOR).")
def redo(project_dir, annotator):
    """Re-apply the action the last undo reverted.

    \b
    Example:
      labeler redo --project data/projects/elpv --annotator ana
    """
    from . import labels

    done = labels.redo(_open(project_dir), annotator)
    click.echo("nothing to redo" if done is None else f"redone: {done.description}")


@main.command()
@PROJECT
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="A file (csv, parquet) or a new folder (imagefolder, hf).")
@click.option("--format", "fmt", type=click.Choice(["csv", "imagefolder", "parquet", "hf"]), default="csv",
              show_default=True, help="csv; imagefolder: split/label/file; parquet (pyarrow); hf: datasets on disk.")
@click.option("--split", default=None, help="Fractions train[,validation[,test]], e.g. 0.8,0.1,0.1: stratified "
              "by label, near-duplicate groups kept in one split.")
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
    from .export import export as run_export

    rep = run_export(_open(project_dir), output, format=fmt, split=split, seed=seed, groups_csv=groups_csv,
                     group_column=group_column, duplicate_threshold=duplicate_threshold, consensus=consensus,
                     include_unlabelled=include_unlabelled, excel_safe=excel_safe, copy=copy,
                     with_embeddings=with_embeddings)
    for line in rep.lines():
        click.echo(line)


@main.command("duplicates")
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
    from .duplicates import DEFAULT_K, find_duplicates, remember_counts

    project = _open(project_dir)
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


@main.command()
@PROJECT
def info(project_dir):
    """Counts, backbone, clusters, labels and skipped files of a project.

    \b
    Example:
      labeler info --project data/projects/elpv
    """
    project = _open(project_dir)
    st = project.store
    c = st.counts()
    bb = st.get_meta("backbone") or {}
    click.echo(f"project: {project.root}")
    click.echo(f"images: {project.image_root}")
    click.echo(f"  {c['embedded']} embedded, {c['pending']} pending, {c['missing']} missing, "
               f"{c['skipped_files']} skipped file(s)")
    click.echo(f"backbone: {bb.get('name', '-')} ({bb.get('weights_id', '-')}); {bb.get('preprocessing', '')}")
    if bb.get("note"):
        click.echo(f"  (asked for {bb.get('requested')}: {bb['note']})")
    if st.get_meta("pca_components"):
        click.echo(f"PCA: {st.get_meta('pca_components')} components, "
                   f"{st.get_meta('pca_explained_variance'):.1%} of variance")
    cur = st.current_clustering()
    if cur:
        click.echo(f"clustering {cur['id']}: {cur['method']} {json.dumps(cur['params'])}")
        _print_clusters(project, limit=15)
    _print_duplicate_counts(project)
    counts = st.label_counts()
    click.echo(f"labels: {c['labelled']} labelled image(s)" + (": " + ", ".join(f"{k} {v}" for k, v in counts.items()) if counts else ""))
    for r in st.skipped()[:50]:
        click.echo(f"  skipped {r['path']}: {r['reason']}")


@main.command("review")
@PROJECT
@click.option("--vectors", type=click.Choice(["pca", "embeddings"]), default="pca", show_default=True,
              help="Features of the linear probe.")
@click.option("--folds", type=click.IntRange(2, 50), default=5, show_default=True, help="Cross-validation folds.")
@click.option("--limit", type=click.IntRange(0), default=30, show_default=True, help="Images to list (text output).")
@click.option("--json", "as_json", is_flag=True, help="Print every flagged image as JSON.")
def review_cmd(project_dir, vectors, folds, limit, as_json):
    """Likely label errors: labelled images whose label the evidence disagrees with.

    A linear probe on the embeddings gives out-of-fold probabilities; cleanlab
    flags and ranks the unlikely labels, each with a suggested label.

    \b
    Example:
      labeler review --project data/projects/elpv --limit 20
    """
    from .review import review_labels

    rep = review_labels(_open(project_dir), vectors=vectors, folds=folds)
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=2))
        return
    click.echo(f"{len(rep.issues)} likely label error(s) among {rep.n_labelled} labelled image(s); "
               f"probe accuracy {rep.probe_accuracy:.1%} ({rep.folds}-fold, classes: {', '.join(rep.classes)})")
    if rep.left_out:
        click.echo(f"  {rep.left_out} image(s) of labels with a single image were not examined")
    for it in rep.issues[:limit]:
        click.echo(f"  {it.score:.3f}  id {it.image_id:>6}  {it.label!r} -> suggested {it.suggested_label!r}  "
                   f"({it.source} by {it.annotator})  {it.path}")
    if len(rep.issues) > limit:
        click.echo(f"  ... {len(rep.issues) - limit} more (--limit, --json)")


@main.command("agreement")
@PROJECT
@click.option("--limit", type=click.IntRange(0), default=30, show_default=True, help="Conflicts to list (text output).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures and every conflict as JSON.")
def agreement_cmd(project_dir, limit, as_json):
    """Agreement between annotators (Krippendorff's alpha, Cohen's kappa) and their conflicts.

    \b
    Example:
      labeler agreement --project data/projects/elpv
    """
    from .agreement import agreement

    rep = agreement(_open(project_dir))
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


def _print_duplicate_counts(project) -> None:
    from .duplicates import duplicate_counts
    from .errors import ProjectError

    try:
        c = duplicate_counts(project)
    except ProjectError:
        return  # not ingested yet
    if c is None:
        click.echo("duplicates: not counted yet for this many images; run `labeler duplicates`")
        return
    click.echo(f"duplicates (cosine >= {c['threshold']}{', last run' if c['stored'] else ''}): "
               f"{c['exact_groups']} exact-copy set(s) ({c['exact_images']} images), "
               f"{c['near_groups']} near-duplicate group(s) ({c['near_images']} images)")


@main.command()
@PROJECT
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (127.0.0.1 = this machine only).")
@click.option("--port", default=8050, show_default=True, type=int)
@click.option("--auth", default=None, envvar="LABELER_AUTH", help="user:password for HTTP basic auth (env LABELER_AUTH).")
@click.option("--debug", is_flag=True)
def serve(project_dir, host, port, auth, debug):
    """Serve the annotator dashboard.

    \b
    Example:
      labeler serve --project data/projects/elpv --port 8050
    """
    from .app import create_app

    app = create_app(_open(project_dir), auth=auth)
    click.echo(f"labeler dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
    app.run(host=host, port=port, debug=debug)


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data/elpv"),
              show_default=True, help="Where the ELPV photos are written.")
@click.option("--project", "project_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("data/projects/elpv"), show_default=True)
@click.option("--limit", type=click.IntRange(10), default=None, help="Use only the first N photos.")
@click.option("--no-serve", is_flag=True, help="Print clusters and a search example; do not start the dashboard.")
@click.option("--port", default=8050, show_default=True, type=int)
@click.option("--backbone", type=click.Choice(["auto", *BACKBONES]), default=None)
def demo(data_dir, project_dir, limit, no_serve, port, backbone):
    """The main job on real data: 2,624 ELPV solar-cell photos -> clusters -> dashboard.

    \b
    Example:
      labeler demo
    """
    from .demo import prepare_elpv
    from .pipeline import ingest as run_ingest

    img_dir, truth = prepare_elpv(data_dir, limit=limit)
    click.echo(f"ELPV photos in {img_dir} (ground truth: {truth})")
    settings = _settings_from(project_dir, backbone=backbone)
    rep = run_ingest(img_dir, project_dir, settings, warn=_warn, say=_say(False))
    _print_ingest(rep)
    project = _open(project_dir)
    _print_clusters(project, limit=15)
    medoid = project.store.cluster_summaries()[0]["medoid_id"]
    from .search import search

    click.echo("\nreverse image search example:")
    _print_search(search(project, medoid, 10))
    if no_serve:
        return
    from .app import create_app

    click.echo(f"\nlabeler dashboard on http://127.0.0.1:{port}/ (Ctrl-C to stop)")
    create_app(project).run(host="127.0.0.1", port=port)


@main.command()
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
def evaluate(project_dir, truth_path, columns, out_dir, markdown, no_plots):
    """Measure clustering, search and labeling cost against known true classes.

    \b
    Example:
      labeler evaluate --project data/projects/elpv --truth data/elpv/truth.csv \\
        --column cell_type --column defect_level --column defective
    """
    from .evaluate import evaluate_project, markdown_table, write_outputs

    project = _open(project_dir)
    out_dir = out_dir or project.root / "evaluation"
    results = evaluate_project(project, truth_path, list(columns) or None,
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


# Feature sets, fine-tuning and heat maps live in their own module (cli.py stays small).
from .cli_features import features_cmd, finetune, heatmap  # noqa: E402

for _cmd in (features_cmd, finetune, heatmap):
    main.add_command(_cmd)


if __name__ == "__main__":
    main()
