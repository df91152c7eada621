"""Commands that look at a project: search by image or text, and the project's facts (info)."""

from __future__ import annotations

import json
import sys

import click

from ..disk import PARTS, disk_usage, size_text
from .models import TEXT_QUERY, text_search_cli
from .options import PROJECT, open_project


@click.command("search")
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
@click.option("--box", default=None, metavar="X,Y,W,H",
              help="Search by a region: the box (pixels of the original image) of the one QUERY; "
                   "finds the images whose best-matching region is nearest (needs patch maps).")
@click.option("--feature-set", "feature_set", default="pca", show_default=True,
              help="Vectors to compare: pca (the ingest's), active, or a stored feature set such as "
                   "'defect' (`labeler features` lists them); other than pca, queries are image ids.")
@TEXT_QUERY  # --text (labeler.cli.models)
def search_cmd(queries, project_dir, k, as_json, batch_size, for_label, exact, box, texts, feature_set):
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
      labeler search 12 --box 40,30,64,64 --project data/projects/elpv --json
      labeler search 12 --feature-set defect --project data/projects/elpv
    """
    from ..search import QueryFailure, Searcher, expand_queries

    if texts or not queries:  # by a sentence (labeler.embedding.text)
        return text_search_cli(open_project(project_dir), texts, queries, k, as_json)

    if box is not None:  # by a region (labeler.patch_index)
        return region_search_cli(open_project(project_dir), queries, box, k, as_json)

    searcher = Searcher(open_project(project_dir), feature_set)
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
            print_search(res, settings)
    if failed:
        sys.exit(1)


def region_search_cli(project, queries, box: str, k: int, as_json: bool) -> None:
    """Print the images found by a box of the one query (JSON: :meth:`RegionSearchResult.to_dict`)."""
    from ..errors import BadInputError
    from ..search import search_region

    if len(queries) != 1:
        raise BadInputError(f"--box searches one image (an id or a file), not {len(queries)}")
    res = search_region(project, queries[0], box, k)
    if as_json:
        click.echo(json.dumps(res.to_dict()))
        return
    b = ",".join(f"{v:g}" for v in res.query_cells_box)
    click.echo(f"query {res.query}, box {box} (read as the cells {b} of {res.width} x {res.height} px):")
    for h in res.hits:
        click.echo(f"  {h.similarity:.3f}  id {h.image_id:>6}  at {','.join(f'{v:g}' for v in h.box):<24} "
                   f"label {h.label or '-':<12} {h.path}")


def print_clusters(project, clustering_id=None, limit: int = 30, count: bool = True) -> None:
    from ..hints import project_cluster_hints

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


def print_search(res, settings) -> None:
    from ..hints import hint_text

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


@click.command()
@PROJECT
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (counts, clustering_id, labels).")
def info(project_dir, as_json):
    """Counts, backbone, clusters, labels, skipped files and disk use of a project.

    \b
    Example:
      labeler info --project data/projects/elpv
    """
    project = open_project(project_dir)
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
            "disk": disk_usage(project),
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
        print_clusters(project, limit=15)
    _print_duplicate_counts(project)
    click.echo(f"labels: {c['labelled']} labelled image(s)" + (": " + ", ".join(f"{k} {v}" for k, v in counts.items()) if counts else ""))
    if c["stale"]:
        click.secho(f"  {c['stale']} stale label(s): their file changed since; check them, then "
                    "`labeler labels confirm` (or re-label)", fg="yellow")
    for r in st.skipped()[:50]:
        click.echo(f"  skipped {r['path']}: {r['reason']}")
    _print_disk(project)


def _print_disk(project) -> None:
    use = disk_usage(project)
    click.echo(f"disk: {'about ' if use['estimated'] else ''}{size_text(use['total'])}")
    for name, (what, free) in PARTS.items():
        n = use["parts"][name]
        if not n:
            continue
        detail = ""
        if name == "features" and use["feature_sets"]:
            # Per set: what --drop frees, a fine-tuned set's network (models/) included.
            sets = ", ".join(f"{k} {size_text(v)}" for k, v in use["feature_sets"].items())
            detail = f" (dropping frees {sets})"
        elif name == "maps" and use["kept_maps"]:
            detail = f" ({len(use['kept_maps'])} kept)"
        about = "about " if name in use["estimated"] else ""
        click.echo(f"  {about + size_text(n):>16}  {what}{detail}" + (f"; frees: {free}" if free else ""))


def _print_duplicate_counts(project) -> None:
    from ..duplicates import duplicate_counts
    from ..errors import ProjectError

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


COMMANDS = (search_cmd, info)
