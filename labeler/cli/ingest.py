"""Commands that build a project: ingest a folder, re-cluster, the ELPV demo."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..config import Settings
from ..embedding.registry import BACKBONES, FEATURE_TYPES, PRECISIONS, RUNTIMES, VIEWS
from .importing import BRING_YOUR_OWN, import_after_ingest
from .models import BACKBONE, BACKBONE_HELP, TEXT_MODEL, add_text_model
from .search import print_clusters, print_search
from .options import PROJECT, fail, open_project, say, warner


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
    from ..config import load_settings

    return load_settings(project_dir / "labeler.toml", **flags)


@click.command()
@click.argument("image_dir", type=click.Path(path_type=Path))
@PROJECT
@click.option("--backbone", type=BACKBONE, default=None, help=BACKBONE_HELP)
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path, resolve_path=True), default=None,
              envvar="LABELER_WEIGHTS", help="State dict file for the chosen backbone (env LABELER_WEIGHTS).")
@click.option("--view", type=click.Choice(VIEWS), default=None,
              help="whole: resize the full frame (default); crop: ImageNet resize + centre crop.")
@click.option("--feature-type", "features", type=click.Choice(["auto", *FEATURE_TYPES]), default=None,
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
@click.option("--prefix-cache", "prefix_cache", type=click.Choice(["s16", "last", "off"]), default=None,
              help="Also compute the stage maps a fine-tune press from s16 (the default press) or last (the quick "
                   "press) reads, now and for photos added later, so the first press only trains and re-embeds "
                   "(Lite0: about 9 ms and 43 KB (s16) or 19 KB (last) an image); off stops. Saved in labeler.toml.")
@BRING_YOUR_OWN  # --labels-from-folders, --embeddings, --embedding-paths (labeler.cli_import)
@TEXT_MODEL
def ingest(image_dir, project_dir, backbone, weights, view, features, device, batch_size, precision, runtime, force,
           remap, quiet, engine, address, verbose, prefix_cache, labels_from_folders, embeddings, embedding_paths,
           text_model):
    """Catalogue, embed, reduce and cluster IMAGE_DIR into a project.

    Re-running embeds only new or changed files and places them into the
    existing map and clusters (nothing else moves; --remap refits all);
    an interrupted run resumes.

    \b
    Example:
      labeler ingest data/elpv/images --project data/projects/elpv
      labeler ingest data/elpv/images --project data/projects/elpv --prefix-cache s16
    """
    from ..errors import BackboneMismatchError
    from ..pipeline import check_ingest_input
    from ..pipeline import ingest as run_ingest
    from ..project import project_lock

    check_ingest_input(image_dir, project_dir)  # before the lock makes the project folder
    settings = _settings_from(project_dir, backbone=backbone, weights=str(weights) if weights else None,
                              view=view, features=features, device=device, batch_size=batch_size, precision=precision,
                              runtime=runtime, prefix_cache={"off": ""}.get(prefix_cache, prefix_cache))
    run = dict(progress=not quiet, warn=warner(verbose), say=say(quiet), remap=remap, engine=engine, address=address,
               embeddings=embeddings, embedding_paths=embedding_paths)
    with project_lock(project_dir, "ingest"):
        try:
            rep = run_ingest(image_dir, project_dir, settings, force=force, **run)
        except BackboneMismatchError as e:
            # The mismatch is found before anything is embedded: asking and re-running is safe.
            if not sys.stdin.isatty() or not click.confirm(f"{e}. Re-embed everything now?"):
                fail(str(e))
            rep = run_ingest(image_dir, project_dir, settings, force=True, **run)
    _print_ingest(rep)
    if labels_from_folders:
        import_after_ingest(project_dir, image_dir)
    if text_model:
        add_text_model(open_project(project_dir), text_model, quiet=quiet, device=device or "auto")


@click.command("cluster")
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
@click.option("--feature-set", "feature_set", default=None,
              help="Re-map and cluster in this stored feature set (e.g. finetuned-1 after `labeler finetune`; "
                   "'active': the active one). The current clustering and map stay stored (--use goes back).")
@click.option("--use", "use", type=click.IntRange(1), default=None,
              help="Make clustering ID current again, with the map it was made on (ids: --list).")
@click.option("--list", "list_", is_flag=True, help="List the clusterings with their maps; change nothing.")
@click.option("--keep-maps", "keep_maps", type=click.IntRange(0), default=None, metavar="N",
              help="Delete the kept earlier maps (maps/<id>/) but the current one and the N newest, to free the "
                   "disk; their clusterings can no longer be made current. Nothing else changes.")
def cluster_cmd(project_dir, method, k, min_cluster_size, min_samples, remap, feature_set, use, list_, keep_maps):
    """Re-cluster the project; the new clustering becomes current.

    Options not given keep the project's settings (labeler.toml: what the last ingest
    or cluster used); the settings used are printed first and saved. Labels never change;
    earlier clusterings and maps stay stored (--list shows them, --use ID brings one back).

    \b
    Example:
      labeler cluster --project data/projects/elpv --method kmeans --k 8
      labeler cluster --project data/projects/elpv --remap
      labeler cluster --project data/projects/elpv --feature-set finetuned-1
      labeler cluster --project data/projects/elpv --list
      labeler cluster --project data/projects/elpv --keep-maps 2
    """
    from ..pipeline import recluster

    project = open_project(project_dir)
    given = {"method": method, "k": k, "min_cluster_size": min_cluster_size, "min_samples": min_samples}
    if list_ or use is not None or keep_maps is not None:
        alone = "use" if use is not None else ("list" if list_ else "keep-maps")
        fitting = {**given, "remap": remap or None, "feature_set": feature_set,
                   "list": (alone != "list" and list_) or None, "use": use if alone != "use" else None,
                   "keep_maps": keep_maps if alone != "keep-maps" else None}
        clash = [f"--{n.replace('_', '-')}" for n, v in fitting.items() if v is not None]
        if clash:
            raise click.UsageError(f"--{alone} goes with none of {', '.join(clash)}")
        if keep_maps is not None:
            from ..disk import size_text
            from ..map_versions import forget_maps

            rep = forget_maps(project, keep_maps)
            click.echo(f"deleted {len(rep['forgotten'])} kept map(s)"
                       + (f" (ids {', '.join(map(str, rep['forgotten']))})" if rep["forgotten"] else "")
                       + f", {size_text(rep['freed_bytes'])} freed; kept: "
                       + (", ".join(map(str, rep["kept"])) or "none") + " (and the current map)")
            return
        if list_:
            _print_clusterings(project)
            return
        from ..map_versions import use_clustering

        cid = use_clustering(project, use, say=say(False))
        click.echo(f"clustering {cid} is now current (clustering {use} as it was, with its map)")
        print_clusters(project, cid)
        return
    s = project.settings(method=method, k=k, min_cluster_size=min_cluster_size, min_samples=min_samples)
    used = ({"method": s.method, "k": s.k} if s.method == "kmeans" else
            {"method": s.method, "min_cluster_size": s.min_cluster_size, "min_samples": s.min_samples})
    kept = [f"{name} {value}" for name, value in used.items() if given.get(name) is None]
    click.echo(f"clustering with {', '.join(f'{n} {v}' for n, v in used.items())}"
               + (f" ({', '.join(kept)} from the project's labeler.toml)" if kept else ""), err=True)
    before = project.store.current_clustering()
    cid = recluster(project, s, remap=remap, feature_set=feature_set, say=say(False))
    click.echo(f"clustering {cid} is now current"
               + (f"; `labeler cluster --use {before['id']}` goes back" if before and (remap or feature_set) else ""))
    print_clusters(project, cid)


def _print_clusterings(project) -> None:
    import time

    from ..map_versions import list_clusterings

    click.echo(f"  {'id':>5}  {'kind':11s} {'method':8s} {'clusters':>8} {'noise':>6}  {'map':>14}  "
               f"{'space':20s} created")
    for c in list_clusterings(project):
        mark = "*" if c["current"] else ("u" if c["undone"] else " ")
        m = "?" if c["map"] is None else str(c["map"]) + ("" if c["available"] else " (not kept)")
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c["created_at"]))
        kind = c["kind"] + (f" {c['restored_from']}" if c["restored_from"] is not None else "")
        click.echo(f"{mark} {c['id']:>5}  {kind:11s} {c['method']:8s} {c['n_clusters']:>8} {c['n_noise']:>6}  "
                   f"{m:>14}  {c['feature_set'] or '?':20s} {when}")
    click.echo("* current, u undone; `labeler cluster --use ID` makes one current again with its map")


@click.command()
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
    from ..demo import prepare_elpv
    from ..pipeline import ingest as run_ingest

    img_dir, truth = prepare_elpv(data_dir, limit=limit)
    click.echo(f"ELPV photos in {img_dir} (ground truth: {truth})")
    settings = _settings_from(project_dir, backbone=backbone)
    rep = run_ingest(img_dir, project_dir, settings, warn=warner(False), say=say(False))
    _print_ingest(rep)  # says how many clusters: print_clusters does not repeat it
    project = open_project(project_dir)
    print_clusters(project, limit=15, count=False)
    medoid = project.store.cluster_summaries()[0]["medoid_id"]
    from ..search import search

    click.echo("\nreverse image search example:")
    print_search(search(project, medoid, 10), project.settings())
    if no_serve:
        return
    from ..app import create_app

    click.echo(f"\ndashboard server started at http://127.0.0.1:{port}/ : open it in a browser (Ctrl-C to stop)")
    create_app(project).run(host="127.0.0.1", port=port)


COMMANDS = (ingest, cluster_cmd, demo)
