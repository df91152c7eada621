"""CLI commands for feature sets, fine-tuning on labels and anomaly heat maps.

Each command parses its options and calls :mod:`labeler.embedding` (feature_sets, local_features, finetune,
patchcore).
"""

from __future__ import annotations

from pathlib import Path

import click

from .options import ANNOTATOR, PROJECT, open_project, say
from .models import TEXT_MODEL, add_text_model
from ..embedding.registry import FEATURE_TYPES, LOSSES, SEMI, TRAIN_FROM


@click.command("features")
@PROJECT
@click.option("--compute", "feature_type", type=click.Choice(FEATURE_TYPES + ("defect",)), default=None,
              help="Compute this feature type from the stored images and store it as a feature set "
                   "('defect': defect-aware vectors from the stored patch maps and a bank of normal patches).")
@click.option("--normal-label", default=None,
              help="With --compute defect: the label meaning 'nothing wrong' (e.g. ok); without it the "
                   "bank of normal patches is a random sample of all images.")
@click.option("--normalise", type=click.Choice(["none", "position"]), default=None,
              help="With --compute defect: divide each patch's anomaly by the median at its grid position "
                   "('position') or not ('none', the default: docs/defects.md).")
@click.option("--patch-maps", "patch_maps", is_flag=True,
              help="(Re)compute the stored patch maps (patches/maps.npy) that defect features and region "
                   "search read.")
@click.option("--name", default=None, help="Name of the computed set (default: the feature type).")
@click.option("--use", "use", default=None, help="Make this stored feature set the active one.")
@click.option("--drop", "drop", default=None, metavar="NAME",
              help="Delete stored feature set NAME (and a fine-tuned set's network) to free the disk; "
                   "not 'embeddings' nor the active set.")
@click.option("--drop-cache", "drop_cache", is_flag=True,
              help="Delete the fine-tune's prefix cache (cache/) to free the disk; the next press computes it "
                   "again.")
@click.option("--device", default="auto", help="cpu, cuda ... (default: cuda when present).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@TEXT_MODEL
def features_cmd(project_dir, feature_type, normal_label, normalise, patch_maps, name, use, drop, drop_cache, device,
                 quiet, text_model):
    """List, compute, choose or delete the project's feature sets (features/<name>.npy).

    Suggestions and the "label next" queue read the active set; the ingest
    embeddings are the set 'embeddings'. Nothing is deleted unless you --drop it:
    switch back any time. The list shows each set's size on disk.

    \b
    Example:
      labeler features --project data/projects/elpv --compute multiscale --use multiscale
      labeler features --project data/projects/elpv --text-model ViT-B-32:laion2b_s34b_b79k
      labeler features --project data/projects/elpv --compute defect --normal-label no
      labeler features --project data/projects/elpv --drop finetuned-1
      labeler features --project data/projects/elpv --drop-cache
    """
    from ..disk import size_text
    from ..embedding.feature_sets import describe_feature_set, drop_feature_set, list_feature_sets, set_active_feature_set

    project = open_project(project_dir)
    if (normal_label is not None or normalise is not None) and feature_type != "defect":
        raise click.UsageError("--normal-label and --normalise go with --compute defect")
    if patch_maps:
        _patch_maps(project, device, quiet)
    if feature_type == "defect":
        _defect(project, normal_label, normalise, name, device, quiet)
    elif feature_type:
        from ..embedding.local_features import compute_feature_set
        from ..project import project_lock

        with project_lock(project.root, "feature set computation"):
            rep = compute_feature_set(project, feature_type, name=name, device=device, progress=not quiet)
        click.echo(f"stored feature set {rep['name']}: {rep['rows']} x {rep['dim']} in {rep['seconds']:.1f} s"
                   + (f"; {len(rep['failures'])} unreadable images (zero rows)" if rep["failures"] else ""))
    if text_model:
        add_text_model(project, text_model, quiet=quiet, device=device)
    if use:
        set_active_feature_set(project, use)
        click.echo(f"active feature set: {use}")
    if drop:
        rep = drop_feature_set(project, drop)
        click.echo(f"deleted feature set {drop} ({size_text(rep['freed_bytes'])} freed)")
    if drop_cache:
        from ..embedding.prefix_cache import drop_prefix_caches

        click.echo(f"deleted the fine-tune's prefix cache ({size_text(drop_prefix_caches(project))} freed)")
    for n, info in list_feature_sets(project).items():
        click.echo(f"{'*' if info['active'] else ' '} {n:20s} {describe_feature_set(info)}")


def _device(device: str) -> str:
    from ..embedding.device import pick_device

    return pick_device(device)


def _patch_maps(project, device: str, quiet: bool) -> None:
    from ..embedding.patch_maps import compute_patch_maps
    from ..project import project_lock

    with project_lock(project.root, "patch map computation"):
        info = compute_patch_maps(project, device=_device(device), progress=not quiet)
    click.echo(f"stored patch maps: {info['rows']} images x {info['grid']}x{info['grid']} cells x {info['dim']} "
               f"({info['bytes'] / 2**20:.1f} MiB) in {info['seconds']:.1f} s"
               + (f"; {len(info['failures'])} unreadable images (zero rows)" if info["failures"] else ""))
    from ..patch_index import RERANK_ALL, project_patch_index

    if info["rows"] > RERANK_ALL:  # build the region-search index now, not inside the first query
        project_patch_index(project, say=lambda m: None if quiet else click.echo(m))
        click.echo("built the patch index for search by a region (patches/index.faiss)")


def _defect(project, normal_label, normalise, name, device: str, quiet: bool) -> None:
    from ..embedding.defect_features import NAME, compute_defect_features
    from ..project import project_lock

    with project_lock(project.root, "defect feature computation"):
        rep = compute_defect_features(project, normal_label, name=name or NAME, normalise=normalise,
                                      device=_device(device), progress=not quiet)
    bank = (f"{rep['bank_images']} images labelled {normal_label!r}" if normal_label is not None
            else f"a random sample of {rep['bank_images']} images (no --normal-label)")
    click.echo(f"stored feature set {rep['name']}: {rep['rows']} x {rep['dim']} in {rep['seconds']:.1f} s; "
               f"bank of {rep['bank_patches']} normal patches from {bank}"
               + (f"; {rep['failures']} images without a patch map (zero rows)" if rep["failures"] else ""))


@click.command()
@PROJECT
@click.option("--epochs", type=click.IntRange(1, 1000), default=30, show_default=True)
@click.option("--holdout", type=click.FloatRange(0, 0.5), default=0.2, show_default=True,
              help="Share of each label held out (not trained on) to report an honest accuracy.")
@click.option("--device", default="auto", help="cpu, cuda ... (default: cuda when present).")
@click.option("--loss", type=click.Choice(LOSSES), default=LOSSES[0], show_default=True,
              help="Cross-entropy plus a supervised contrastive loss on the search vectors, or "
                   "cross-entropy alone (half the training time).")
@click.option("--train-from", type=click.Choice(TRAIN_FROM), default="s16", show_default=True,
              help="Where training starts: s16 the last stages; 'last' the last block only, 4-7x faster "
                   "(ELPV, 300 labels: same probe accuracy; in the labelling flow with a press at 150 labels "
                   "it gained a third of the default's gain; docs/features.md).")
@click.option("--semi", type=click.Choice(SEMI), default="none", show_default=True,
              help="Also learn from the images nobody labelled: 'fixmatch' trains on confident predictions "
                   "(checked against held-out labels) of the unlabelled images, 'meanteacher' on the soft "
                   "predictions of an average of the network; about 1.5-2x the training time.")
@click.option("--name", default=None, help="Name of the new feature set (default finetuned-<k>).")
@click.option("--no-use", is_flag=True, help="Store the new feature set without making it active.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--background", is_flag=True,
              help="Run as a background job: print its id and return (`labeler jobs` follows or cancels it).")
@ANNOTATOR
def finetune(project_dir, epochs, holdout, device, loss, train_from, semi, name, no_use, quiet, background,
             annotator):
    """Fine-tune the backbone's last stages on the labels so far, then re-embed.

    Opt-in. Trains on the labels a person gave (with the 8 rotations/mirrors of
    each image; accepted suggestions are left out, as the suggestion model leaves
    them out), stores the new vectors as a feature set and makes it active; the
    previous sets stay, so `labeler features --use NAME` goes back.

    \b
    Example:
      labeler finetune --project data/projects/elpv --epochs 30
      labeler finetune --project data/projects/elpv --background
      labeler finetune --project data/projects/elpv --train-from last   # the quick press
      labeler finetune --project data/projects/elpv --semi fixmatch     # learn from unlabelled images too
    """
    from ..embedding.finetune import finetune_project
    from ..project import project_lock

    project = open_project(project_dir)
    if background:
        from ..jobs import start_job

        job = start_job(project, "press", {"epochs": epochs, "holdout": holdout, "device": device, "loss": loss,
                                           "train_from": train_from, "semi": semi, "name": name,
                                           "activate": not no_use},
                        by=annotator)
        click.echo(f"started fine-tune job {job.id} (pid {job.pid}); follow it with `labeler jobs --project "
                   f"{project.root} --wait {job.id}`, stop it with `--cancel {job.id}`")
        return
    with project_lock(project.root, "fine-tuning"):
        rep = finetune_project(project, epochs=epochs, holdout=holdout, device=device, loss=loss,
                               train_from=train_from, semi=semi, name=name, activate=not no_use, progress=not quiet,
                               say=say(quiet))
    click.echo(f"trained on {rep.n_train} labelled images ({', '.join(rep.classes)}), {rep.epochs} epochs on "
               f"{rep.device}: {rep.train_seconds:.1f} s; re-embedded in {rep.embed_seconds:.1f} s")
    if rep.heldout_accuracy is not None:
        frozen = "" if rep.heldout_frozen_accuracy is None else \
            f" (logistic regression on {rep.previous}: {rep.heldout_frozen_accuracy:.3f})"
        click.echo(f"held-out check on {rep.n_heldout} labels: accuracy {rep.heldout_accuracy:.3f}{frozen}")
    if rep.semi_stats:
        from ..embedding.semi import describe

        click.echo(describe(rep.semi_stats, rep.classes))
    state = "active" if not no_use else "stored, not active"
    click.echo(f"feature set {rep.name} {state}; previous: {rep.previous}")
    click.echo(f"the map and clusters stay as they were: `labeler cluster --project {project.root} --feature-set "
               f"{rep.name}` re-maps and re-clusters in the learned space (`labeler cluster --use ID` goes back)")


@click.command()
@click.argument("image_id", type=int)
@PROJECT
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="PNG to write: the image with its anomaly heat map over it.")
@click.option("--normal-label", default=None,
              help="Label meaning 'nothing wrong': (re)build the memory bank from those images first.")
@click.option("--device", default="cpu", help="cpu, cuda ...")
def heatmap(image_id, project_dir, output, normal_label, device):
    """Show where IMAGE_ID differs from the images labelled normal (PatchCore).

    The first call needs --normal-label to build the memory bank of normal patches;
    later calls reuse it (as does `labeler features --compute defect`, which builds the same
    bank). Prints the image's anomaly score: its largest patch distance to the bank over the
    median distance at that position (1 = typical).

    \b
    Example:
      labeler heatmap 17 --project data/projects/elpv --normal-label no -o heat.png
    """
    from ..embedding.patchcore import anomaly_map, fit_patchcore, heatmap_png

    project = open_project(project_dir)
    if normal_label is not None:
        info = fit_patchcore(project, normal_label, device=device)
        click.echo(f"memory bank: {info['patches']} patches from {info['images']} images labelled {normal_label!r}"
                   " (position-normalised)")
    heat, score = anomaly_map(project, image_id, device=device)
    output.write_bytes(heatmap_png(project, image_id, device=device, heat=heat))
    click.echo(f"image {image_id}: anomaly score {score:.3f}; wrote {output}")


@click.command("jobs")
@PROJECT
@click.option("--cancel", "cancel", default=None, metavar="ID",
              help="Ask job ID to stop at its next safe point (the project stays as before).")
@click.option("--wait", "wait", default=None, metavar="ID", help="Print job ID's progress until it ends.")
def jobs_cmd(project_dir, cancel, wait):
    """List the project's background jobs (fine-tune presses), cancel or follow one.

    A job whose process died (killed, machine restarted) is shown as failed; it
    leaves nothing locked.

    \b
    Example:
      labeler jobs --project data/projects/elpv
      labeler jobs --project data/projects/elpv --cancel 3
    """
    from .. import jobs

    project = open_project(project_dir)
    if cancel is not None:
        click.echo(jobs.cancel_job(project, cancel).line())
        return
    if wait is not None:
        seen = None
        while True:
            job = jobs.wait_job(project, wait, timeout=2.0)
            if job.line() != seen:
                seen = job.line()
                click.echo(seen)
            if not job.running:
                break
        if job.state != "finished":
            raise SystemExit(1)
        return
    listed = jobs.list_jobs(project)
    for job in listed:
        click.echo(job.line())
    if not listed:
        click.echo("no jobs")


COMMANDS = (features_cmd, finetune, heatmap, jobs_cmd)
