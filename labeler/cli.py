"""Command line: each command parses its options and calls the library.

Run ``labeler COMMAND --help`` for the options and an example of each.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import sys
from pathlib import Path

import click

from .cli_helpers import warner as _warner
from .config import Settings
from .embedding.registry import BACKBONES, FEATURE_TYPES, PRECISIONS, RUNTIMES, VIEWS

from .cli_common import PROJECT, _open, _warn
from .cli_import import BRING_YOUR_OWN, import_after_ingest, import_labels_cmd
from .cli_models import BACKBONE, BACKBONE_HELP, TEXT_MODEL, TEXT_QUERY, add_text_model, text_search_cli


def _fail(msg: str, code: int = 1):
    click.secho(f"error: {msg}", fg="red", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Turns a :class:`~labeler.errors.LabelerError` (a user's mistake) into one red
    line and exit status 1, and so a write the disk refused (``ENOSPC``, quota, ``EFBIG``,
    ``EIO``, read-only; SQLite's "database or disk is full" / "disk I/O error"); anything
    else is a bug and keeps its traceback.

    Set LABELER_DEBUG=1 to get the traceback of a LabelerError too.
    """

    def invoke(self, ctx):
        from .errors import LabelerError

        try:
            return super().invoke(ctx)
        except LabelerError as e:
            if os.environ.get("LABELER_DEBUG"):
                raise
            _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
        except Exception as e:
            # A full disk or a failing one is the machine's state, not a bug: one line. Every
            # write is atomic or a committed transaction, so what was committed is kept.
            msg = _storage_error(e)
            if msg is None or os.environ.get("LABELER_DEBUG"):
                raise
            _fail(msg)


#: errno values of a write the machine refused: disk full, quota, file size limit, I/O error,
#: read-only file system.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


def _storage_error(e: BaseException | None, depth: int = 0) -> str | None:
    """The one-line message for a write the disk refused, or None for any other error.

    Follows the exception's cause: a library may wrap the OSError (``datasets`` raises
    DatasetGenerationError from it).
    """
    if e is None or depth > 5:
        return None
    retry = "free some space (or fix the disk) and run the command again; committed labels are kept"
    if isinstance(e, OSError) and e.errno in _STORAGE_ERRNOS:
        where = f": {e.filename}" if e.filename else ""
        return f"cannot write{where}: {e.strerror or os.strerror(e.errno)}; {retry}"
    text = str(e).splitlines()[0] if str(e) else ""
    if isinstance(e, sqlite3.OperationalError) and ("disk is full" in text or "disk I/O error" in text):
        return f"cannot write labeler.db: {text}; {retry}"
    return _storage_error(e.__cause__ or e.__context__, depth + 1)


@click.group(cls=_Group)
@click.version_option(package_name="labeler")
def main():
    """labeler: turn a folder of unlabelled images into a labelled training set.

    \b
    Example:
      labeler ingest photos/ --project my-project
      labeler serve --project my-project
    """


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
    if rep.placed:
        click.echo(f"placed {rep.placed} image(s) into the existing map and clusters (--remap refits them)")
    click.echo(f"{rep.n_images} image(s) in {rep.n_clusters} cluster(s), {rep.n_noise} noise")


def _settings_from(project_dir: Path, **flags) -> Settings:
    from .config import load_settings

    return load_settings(project_dir / "labeler.toml", **flags)


@main.command()
@click.argument("image_dir", type=click.Path(path_type=Path))
@PROJECT
@click.option("--backbone", type=BACKBONE, default=None, help=BACKBONE_HELP)
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path, resolve_path=True), default=None,
              envvar="LABELER_WEIGHTS", help="State dict file for the chosen backbone (env LABELER_WEIGHTS).")
@click.option("--view", type=click.Choice(VIEWS), default=None,
              help="whole: resize the full frame (default); crop: ImageNet resize + centre crop.")
@click.option("--features", type=click.Choice(["auto", *FEATURE_TYPES]), default=None,
              help="Feature type: multistage (default for a new project: pooled mid-level stages + last layer, "
                   "keeps small defects), global (last layer only), multiscale (also at 2x size, ~5x slower); "
                   "auto keeps a project's type.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when present).")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=None)
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="fp32 (default); opt-in bf16 (~2x on CPUs with AVX-512 BF16) or int8 "
                   "(ONNX Runtime, calibrated on your images, CPU only).")
@click.option("--runtime", type=click.Choice(RUNTIMES), default=None,
              help="auto (default: ONNX Runtime on the CPU, torch on a GPU), torch or onnxruntime.")
@click.option("--force", is_flag=True, help="Re-embed everything when the backbone changes.")
@click.option("--remap", is_flag=True,
              help="Refit the map and the clusters (default: new photos join the existing ones).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: decode and embed on a Ray cluster (pip install 'labeler[ray]').")
@click.option("--address", default=None, help="Ray cluster address for --engine ray (default: a local instance).")
@click.option("--verbose", is_flag=True, help="Print warnings in full (e.g. where the weights were looked for).")
@BRING_YOUR_OWN  # --labels-from-folders, --embeddings, --embedding-paths (labeler.cli_import)
@TEXT_MODEL
def ingest(image_dir, project_dir, backbone, weights, view, features, device, batch_size, precision, runtime, force,
           remap, quiet, engine, address, verbose, labels_from_folders, embeddings, embedding_paths, text_model):
    """Catalogue, embed, reduce and cluster IMAGE_DIR into a project.

    Re-running embeds only new or changed files and places them into the
    existing map and clusters (nothing else moves; --remap refits all);
    an interrupted run resumes.

    \b
    Example:
      labeler ingest data/elpv/images --project data/projects/elpv
    """
    from .errors import BackboneMismatchError
    from .pipeline import check_ingest_input
    from .pipeline import ingest as run_ingest
    from .project import project_lock

    check_ingest_input(image_dir, project_dir)  # before the lock makes the project folder
    settings = _settings_from(project_dir, backbone=backbone, weights=str(weights) if weights else None,
                              view=view, features=features, device=device, batch_size=batch_size, precision=precision,
                              runtime=runtime)
    run = dict(progress=not quiet, warn=_warner(verbose), say=_say(quiet), remap=remap, engine=engine, address=address,
               embeddings=embeddings, embedding_paths=embedding_paths)
    with project_lock(project_dir, "ingest"):
        try:
            rep = run_ingest(image_dir, project_dir, settings, force=force, **run)
        except BackboneMismatchError as e:
            # The mismatch is found before anything is embedded: asking and re-running is safe.
            if not sys.stdin.isatty() or not click.confirm(f"{e}. Re-embed everything now?"):
                _fail(str(e))
            rep = run_ingest(image_dir, project_dir, settings, force=True, **run)
    _print_ingest(rep)
    if labels_from_folders:
        import_after_ingest(project_dir, image_dir)
    if text_model:
        add_text_model(_open(project_dir), text_model, quiet=quiet, device=device or "auto")


@main.command("cluster")
@PROJECT
@click.option("--method", type=click.Choice(["hdbscan", "kmeans"]), default=None,
              help="Default: the project's setting in labeler.toml (hdbscan in a new project).")
@click.option("--k", type=click.IntRange(0), default=None,
              help="KMeans k (0: choose by silhouette). Default: the project's setting.")
@click.option("--min-cluster-size", type=click.IntRange(2), default=None,
              help="HDBSCAN min_cluster_size. Default: the project's setting.")
@click.option("--min-samples", type=click.IntRange(0), default=None,
              help="HDBSCAN min_samples. Default: the project's setting.")
@click.option("--remap", is_flag=True, help="Refit PCA and the UMAP map and clustering space first (points move).")
def cluster_cmd(project_dir, method, k, min_cluster_size, min_samples, remap):
    """Re-cluster the project; the new clustering becomes current.

    Options not given keep the project's settings (labeler.toml: what the last ingest
    or cluster used); the settings used are printed first and saved.

    \b
    Example:
      labeler cluster --project data/projects/elpv --method kmeans --k 8
      labeler cluster --project data/projects/elpv --remap
    """
    from .pipeline import recluster

    project = _open(project_dir)
    s = project.settings(method=method, k=k, min_cluster_size=min_cluster_size, min_samples=min_samples)
    given = {"method": method, "k": k, "min_cluster_size": min_cluster_size, "min_samples": min_samples}
    used = ({"method": s.method, "k": s.k} if s.method == "kmeans" else
            {"method": s.method, "min_cluster_size": s.min_cluster_size, "min_samples": s.min_samples})
    kept = [f"{name} {value}" for name, value in used.items() if given.get(name) is None]
    click.echo(f"clustering with {', '.join(f'{n} {v}' for n, v in used.items())}"
               + (f" ({', '.join(kept)} from the project's labeler.toml)" if kept else ""), err=True)
    cid = recluster(project, s, remap=remap, say=_say(False))
    click.echo(f"clustering {cid} is now current")
    _print_clusters(project, cid)


def _print_clusters(project, clustering_id=None, limit: int = 30, count: bool = True) -> None:
    from .hints import project_cluster_hints

    sums = project.store.cluster_summaries(clustering_id)
    hints = project_cluster_hints(project, clustering_id)  # only where the backbone is confident
    real = [s for s in sums if s["cluster"] >= 0]  # noise (-1) is not a cluster
    noise = sum(s["size"] for s in sums if s["cluster"] < 0)
    if count:
        click.echo(f"{len(real)} cluster(s), {noise} noise image(s)")
    for s in real[:limit]:
        coh = f"{s['cohesion']:.2f}" if s["cohesion"] is not None else "-"
        hint = f", {hints[s['cluster']]}" if s["cluster"] in hints else ""
        click.echo(f"  cluster {s['cluster']:>3}: {s['size']:>5} images, cohesion {coh}, "
                   f"medoid {s['medoid_id']}{hint}")
    if len(real) > limit:
        click.echo(f"  ... {len(real) - limit} more")


@main.command("search")
@click.argument("queries", nargs=-1)
@PROJECT
@click.option("-k", type=click.IntRange(1, 1000), default=10, show_default=True, help="Neighbours to return.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per query, one per line (failures have an 'error' key).")
@click.option("--batch-size", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Query images embedded per forward pass.")
@click.option("--for-label", default=None,
              help="More like this, for LABEL: re-rank the neighbours by that label's linear probe.")
@click.option("--exact", is_flag=True,
              help="Exact (brute-force) cosine search even where the project has an HNSW index.")
@TEXT_QUERY  # --text (labeler.cli_models)
def search_cmd(queries, project_dir, k, as_json, batch_size, for_label, exact, texts):
    """Reverse image search: nearest neighbours of each QUERY (image files, folders of
    images, or image ids). The model loads once for all queries; a file already in
    the collection is recognised by its content and uses its stored embedding.
    Exit status 1 if any query failed.

    \b
    Example:
      labeler search data/elpv/images/cell0001.png --project data/projects/elpv -k 10
      labeler search new_photos/ 17 --project data/projects/elpv --json > answers.jsonl
      labeler search 12 --project data/projects/elpv --for-label cracked
      labeler search 12 --project data/projects/elpv --exact
      labeler search --text "a cracked cell" --project data/projects/elpv
    """
    from .search import QueryFailure, Searcher, expand_queries

    if texts or not queries:  # by a sentence (labeler.embedding.text)
        return text_search_cli(_open(project_dir), texts, queries, k, as_json)

    searcher = Searcher(_open(project_dir))
    settings = searcher.project.settings()
    failed = False
    for res in searcher.run_queries(expand_queries(queries), k, batch_size=batch_size, exact=exact,
                                       for_label=for_label):
        failed |= isinstance(res, QueryFailure)
        if as_json:
            click.echo(json.dumps(res.to_dict()))
        elif isinstance(res, QueryFailure):
            click.secho(f"query {res.query}: error: {res.error}", fg="red", err=True)
        else:
            _print_search(res, settings)
    if failed:
        sys.exit(1)


def _print_search(res, settings) -> None:
    from .hints import hint_text

    same = f" (image {res.query_image_id} of the collection)" if res.query_image_id is not None else ""
    click.echo(f"query {res.query}{same}: map position ({res.map_xy[0]:.2f}, {res.map_xy[1]:.2f}), "
               f"likely cluster {res.likely_cluster}")
    # Only where the backbone is confident, and when the project shows hints (labeler.hints).
    hint = settings.imagenet_hints and hint_text(res.top1_class, res.top1_prob, settings.imagenet_hint_min_prob)
    if hint:
        click.echo(hint)
    if res.is_novel:
        click.secho(f"novel: best similarity {res.best_similarity:.3f} < threshold "
                    f"{res.novelty_threshold:.3f}: unlike anything in the collection", fg="yellow")
    for n in res.neighbours:
        click.echo(f"  {n.similarity:.3f}  id {n.image_id:>6}  cluster {n.cluster:>3}  "
                   f"label {n.label or '-':<12} {n.path}")
    click.echo(f"vote: {res.vote_summary}")


@main.command()
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
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (counts, clustering_id, labels).")
def info(project_dir, as_json):
    """Counts, backbone, clusters, labels and skipped files of a project.

    \b
    Example:
      labeler info --project data/projects/elpv
    """
    project = _open(project_dir)
    st = project.store
    c = st.counts()
    bb = st.get_meta("backbone") or {}
    cur = st.current_clustering()
    counts = st.label_counts()
    if as_json:
        click.echo(json.dumps({
            "project": str(project.root), "image_root": str(project.image_root), "counts": c,
            "backbone": bb, "clustering_id": cur["id"] if cur else None,
            "clustering": {"method": cur["method"], "params": cur["params"]} if cur else None,
            "labels": counts, "stale_labels": st.stale_image_ids(),
            "skipped": [{"path": r["path"], "reason": r["reason"]} for r in st.skipped()],
        }, indent=2))
        return
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
    if cur:
        click.echo(f"clustering {cur['id']}: {cur['method']} {json.dumps(cur['params'])}")
        _print_clusters(project, limit=15)
    _print_duplicate_counts(project)
    click.echo(f"labels: {c['labelled']} labelled image(s)" + (": " + ", ".join(f"{k} {v}" for k, v in counts.items()) if counts else ""))
    if c["stale"]:
        click.secho(f"  {c['stale']} stale label(s): their file changed since; check them, then "
                    "`labeler labels confirm` (or re-label)", fg="yellow")
    for r in st.skipped()[:50]:
        click.echo(f"  skipped {r['path']}: {r['reason']}")


@main.command("review")
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
    from .review import review_labels

    rep = review_labels(_open(project_dir), vectors=vectors, folds=folds)
    click.echo(json.dumps(rep.to_dict(), indent=2) if as_json else "\n".join(rep.text(limit)))


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
    rep = run_ingest(img_dir, project_dir, settings, warn=_warner(False), say=_say(False))
    _print_ingest(rep)  # says how many clusters: _print_clusters does not repeat it
    project = _open(project_dir)
    _print_clusters(project, limit=15, count=False)
    medoid = project.store.cluster_summaries()[0]["medoid_id"]
    from .search import search

    click.echo("\nreverse image search example:")
    _print_search(search(project, medoid, 10), project.settings())
    if no_serve:
        return
    from .app import create_app

    click.echo(f"\ndashboard server started at http://127.0.0.1:{port}/ : open it in a browser (Ctrl-C to stop)")
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
    from .evaluate import evaluate_project, markdown_table, write_outputs

    project = _open(project_dir)
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


from .cli_annotate import COMMANDS  # noqa: E402  (after main exists; they import nothing from here)

for _command in COMMANDS:
    main.add_command(_command)

from .cli_assist import accept_cmd, next_cmd, suggest_cmd  # noqa: E402  (the labeler.assist commands)

for _command in (suggest_cmd, accept_cmd, next_cmd):
    main.add_command(_command)

# Feature sets, fine-tuning and heat maps live in their own module (cli.py stays small).
from .cli_features import features_cmd, finetune, heatmap  # noqa: E402

for _command in (features_cmd, finetune, heatmap):
    main.add_command(_command)

main.add_command(import_labels_cmd)  # labels from a CSV or a folder tree (labeler.cli_import)
from .cli_predictions import import_predictions_cmd  # noqa: E402
main.add_command(import_predictions_cmd)  # predictions as a suggestion expert (labeler.cli_predictions)

# -- integrity and backups: check, backup, restore (labeler.integrity, labeler.backup) --------
from .cli_integrity import COMMANDS as _INTEGRITY_COMMANDS  # noqa: E402

for _command in _INTEGRITY_COMMANDS:
    main.add_command(_command)


if __name__ == "__main__":
    main()
