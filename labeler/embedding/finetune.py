"""Fine-tune the backbone's last stages on the annotator's labels, then re-embed the project.

Frozen ImageNet features set the limit on ELPV's *defective* question (about 0.80
accuracy from 200 labels, docs/features.md). Training the stages after the last
stride-16 stage of an EfficientNet-Lite (for Lite0: blocks 11-15 and the 1x1 head
convolution) plus a new linear
classifier on the labels given so far moves that to ~0.84 (measured with truth-blind
label sets, evaluated on the images not labelled; ``benchmarks/bench_finetune.py``).

Recipe (chosen by measurement on ELPV, see docs/features.md):

* the frozen prefix (stem .. last stride-16 block) runs once per image, and once per
  labelled image for each of the 7 other symmetries of the square (rotations by 90
  degrees and mirror images); those maps are kept on disk across presses
  (:mod:`labeler.embedding.prefix_cache`), so the epochs and the re-embedding of every
  image only run the trained stages, and a later press runs the prefix only on the
  images and labels new since. The symmetries
  are label-preserving for inspection photos of square parts seen from above (a crack
  or a dark cell is one whatever the orientation; solar cells, wafers, tiles); they
  were measured better than no augmentation and than transforming the cached maps.
* AdamW (weight decay 1e-4), one-cycle schedule (Smith & Topin 2019), learning rate
  3e-4 for the stages and 3e-3 for the new classifier; 1e-3 sometimes collapsed to
  the majority class on 200 labels. BatchNorm statistics stay frozen (tiny label sets),
  dropout 0.2 before the classifier, label smoothing 0.1 (Szegedy et al. 2016), class
  weights = sqrt of inverse class frequency.
* the loss: that cross-entropy plus the supervised contrastive loss (Khosla et al.
  2020, :func:`supcon_loss`) on the L2-normalised vectors the search compares, over
  two different symmetries of each image (``loss='ce+supcon'``). In the product's own
  labelling flow on ELPV (one press at 150 actions, five seeds) it took *defective*
  accuracy @400 actions from 0.904 to 0.916 (higher in 5 of 5 seeds; 90 % reached in
  325 actions on average, in every seed, against 4 of 5 seeds without it), with
  defect-level macro-F1 @300 equal (0.599 vs 0.596) and search P@1 equal, for 2x the
  training time. ``loss='ce'`` trains in half the time.
* the new vectors are the average-pooled last layer of the fine-tuned network
  (1280-d for Lite0), stored as a new feature set; earlier sets are kept.

Opt-in variants, each measured on ELPV with the product's own 300-label queue
(``benchmarks/bench_finetune.py``, docs/features.md) and none better than the recipe
above on defective accuracy and search together (defective macro P@1 0.83-0.84 for all):
a cosine classifier (``head='cosine'``, :class:`CosineClassifier`), averaging each
vector over the 8 symmetries (``tta=True``), training from the stride-8 stages
(``train_from='s8'``) and a larger input (``input_size``, e.g. the images' own 300 px).
Learning from the unlabelled images too (``semi='fixmatch'`` or ``'meanteacher'``,
:mod:`labeler.embedding.semi`) was not better than the hand labels alone at 300 labels
(ELPV about 0.01 lower search P@1, DeepPCB level; docs/features.md).

On the CPU the frozen prefix (the stage maps) runs on ONNX Runtime (exported and checked
against torch like any backbone, :mod:`labeler.embedding.runtime`; torch when that
fails); training and the trained stages' re-embedding run on torch. Without the cache
(``prefix_cache=False``, and with ``tta``) the re-embedding runs the whole fine-tuned
network on ONNX Runtime.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import images
from ..errors import BadInputError, LabelerError, ProjectError
from .finetune_losses import LOSSES, SUPCON_TEMPERATURE, SUPCON_WEIGHT, CosineClassifier, supcon_loss
from .networks import EfficientNetFeatures
from .finetuned_net import (TRAIN_FROM, FinetunedFeatures, Tail, embed_cached_maps, load_finetuned, load_tail,
                            save_finetuned, train_start)
from .prefix_cache import d4, open_prefix_cache, prefix_engine as _prefix_engine
from .prefix_cache import run_prefix as _prefix
from .registry import SEMI

__all__ = ["CLASS_WEIGHTS", "CosineClassifier", "FinetuneReport", "FinetunedFeatures", "HEADS", "LABEL_SMOOTHING",
           "LOSSES", "SEMI", "SUPCON_TEMPERATURE", "SUPCON_WEIGHT", "TRAIN_FROM", "d4", "embed_cached_maps",
           "finetune_project", "load_finetuned", "load_tail", "prepare_prefix_cache", "save_finetuned", "supcon_loss",
           "train_start"]


#: Label smoothing of the cross-entropy (Szegedy et al. 2016's 0.1).
LABEL_SMOOTHING = 0.1
#: Class weights of the loss: square root of inverse frequency, inverse frequency, none.
CLASS_WEIGHTS = ("sqrt", "balanced", "none")
#: The new classifier: a linear layer, or a cosine classifier (:class:`CosineClassifier`).
HEADS = ("linear", "cosine")


def _at_size(bb, input_size: int):
    """``bb`` reading images at ``input_size`` square (the network is fully convolutional)."""
    if input_size == bb.input_size:
        return bb
    crop = round(bb.spec.crop_short_side * input_size / bb.spec.input_size)
    spec = dataclasses.replace(bb.spec, input_size=input_size, crop_short_side=crop)
    return dataclasses.replace(bb, input_size=input_size, spec=spec)


@dataclass
class FinetuneReport:
    """What :func:`finetune_project` did.

    Attributes
    ----------
    name : str
        The new feature set (``features/<name>.npy``), now active if asked.
    previous : str
        The feature set that was active before.
    classes : list of str
        Labels trained on (classifier order).
    n_labelled, n_train, n_heldout : int
        Images labelled by a person (accepted suggestions are not counted); those
        trained on; those held out for the check.
    epochs : int
    device : str
    train_seconds, embed_seconds : float
        Wall time of training (the labelled images' symmetry maps included) and of
        re-embedding every image.
    cache_seconds : float
        Wall time of bringing the prefix cache up to date (:mod:`.prefix_cache`): the
        prefix over every image on the first press, over new images only later.
    prefix_images : int
        Images the frozen prefix ran on in this press (0 when everything was cached;
        with ``prefix_cache=False``, the labelled images and every image re-embedded).
    heldout_accuracy : float or None
        Accuracy of the fine-tuned classifier on the held-out labels.
    heldout_frozen_accuracy : float or None
        Accuracy of a logistic regression on the previous active features, trained on the
        same labels, on the same held-out images: the figure to beat.
    failures : list of (int, str)
        Images that could not be read while re-embedding (their rows are zero).
    semi : str
        What the press learned from besides the hand labels (:data:`SEMI`).
    semi_stats : dict or None
        With ``semi``: the method's ``summary()`` (:mod:`labeler.embedding.semi`; for
        FixMatch the share of the unlabelled images drawn that became pseudo-labels, their
        classes, the held-out check's precision and the epoch it switched the term off at,
        if it did).
    """

    name: str
    previous: str
    classes: list[str]
    n_labelled: int
    n_train: int
    n_heldout: int
    epochs: int
    device: str
    train_seconds: float
    embed_seconds: float
    heldout_accuracy: float | None
    heldout_frozen_accuracy: float | None
    failures: list = dataclasses.field(default_factory=list)
    cache_seconds: float = 0.0
    prefix_images: int = 0
    semi: str = "none"
    semi_stats: dict | None = None


def _split(y: np.ndarray, holdout: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified: ``holdout`` of each class with at least 5 labels goes to the check set."""
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = int(np.floor(holdout * len(idx))) if len(idx) >= 5 else 0
        held += list(rng.choice(idx, k, replace=False)) if k else []
    held = np.array(sorted(held), dtype=np.int64)
    train = np.setdiff1d(np.arange(len(y)), held)
    return train, held


def _inputs(project, backbone, rows, view: str) -> tuple[torch.Tensor | None, list[int]]:
    """Network inputs of the readable images among ``rows`` and their positions."""
    xs, ok = [], []
    for i, r in enumerate(rows):
        try:
            img = images.load_image(project.image_path(r["path"]))
        except Exception:  # a file removed or damaged since ingest: train without it
            continue
        xs.append(backbone.preprocess(img, view))
        ok.append(i)
    return (torch.stack(xs) if xs else None), ok


def _symmetry_maps(project, bb, net, end, rows, view, dev, say) -> tuple[torch.Tensor, list[int]]:
    """Without the prefix cache: the prefix on the 8 symmetries of each readable image of
    ``rows``, (8, b, C, h, w) float16 on ``dev``, and the positions of those b images."""
    say(f"stage maps of {len(rows)} labelled images x 8 symmetries ...")
    chunks, kept, engine = [], [], None
    for c in range(0, len(rows), 64):
        x, ok = _inputs(project, bb, rows[c:c + 64], view)
        kept += [c + j for j in ok]
        if x is None:
            continue
        if engine is None:
            engine, shape = _prefix_engine(bb, net, end, x[:8], dev, say)
        with torch.inference_mode():  # (8, b, C, h, w) float16
            chunks.append(torch.stack([engine(d4(x, k).contiguous())[0].to(dev).view(-1, *shape).half()
                                       for k in range(8)]))
    return (torch.cat(chunks, dim=1).clone() if chunks else None), kept  # clone: out of inference mode


def _frozen_check(project, feature_set: str, row_train, y_train, row_held, y_held) -> float | None:
    from ..probe import fit_probe, probe_logits
    from .feature_sets import load_feature_set

    try:
        x = np.asarray(load_feature_set(project, feature_set), dtype=np.float64)
    except LabelerError:
        return None
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    codes, y_codes = np.unique(np.concatenate([y_train, y_held]), return_inverse=True)
    tr, he = y_codes[: len(y_train)], y_codes[len(y_train):]
    clf, present = fit_probe(x[row_train], tr, len(codes), max_iter=2000)
    return float(np.mean(probe_logits(clf, present, x[row_held], len(codes)).argmax(axis=1) == he))


def _drop_export(backbone) -> None:
    """Remove the fine-tuned network's ONNX export from the user cache.

    Exports are cached under the weights' digest (:func:`labeler.embedding.runtime.onnx_path`);
    a fine-tuned network's weights are new on every run and its export serves only the
    re-embedding just done (the tail is kept in ``models/<name>.pt``), so each run would
    otherwise leave ~13.5 MB (Lite0) in the cache for good. The frozen prefix's export
    is kept: its weights are the backbone's, the same on every run.
    """
    from .runtime import onnx_path

    try:
        onnx_path(backbone).unlink(missing_ok=True)
    except OSError:  # read-only cache or removed meanwhile: nothing to bound
        pass


def _press_backbone(project, meta: dict, dev: torch.device, input_size: int | None):
    """The backbone a press trains (the project's, at ``input_size`` or its own) and the view
    its images are read with: what keys the prefix cache (:func:`prepare_prefix_cache` too)."""
    from .backbones import load_backbone

    bb = load_backbone(meta["name"], weights=project.settings().weights or None, device=str(dev))
    if not isinstance(bb.model, EfficientNetFeatures):
        raise BadInputError(f"fine-tuning supports the efficientnet-lite backbones, not {meta['name']}")
    return _at_size(bb, input_size or bb.input_size), meta.get("view", "whole")


def prepare_prefix_cache(project, *, train_from: str = "s16", device: str = "auto", budget_gb: float | None = None,
                         progress: bool = False, say=lambda m: None) -> dict:
    """Compute, before any press, the prefix cache's stage maps that a press from
    ``train_from`` (at the backbone's own input size) will read, for every image not cached
    yet: what ``labeler ingest --prefix-cache`` runs, so that the first press only trains
    and re-embeds (at 100k photos the prefix over every image is most of a first press).

    Returns
    -------
    dict
        ``computed`` (int, images whose maps were computed now), ``failures`` (list of
        ``(image id, reason)``: unreadable images, retried at the next fill), ``seconds``
        (float), ``bytes`` (int, the cache file's size).

    Raises
    ------
    ProjectError
        The project has no embeddings yet.
    BadInputError
        A backbone other than EfficientNet-Lite, an unknown ``train_from``, or a cache
        over its budget or the free disk (the message says which; nothing is written).
    """
    from .device import pick_device

    if train_from not in TRAIN_FROM:
        raise BadInputError(f"train_from must be one of {TRAIN_FROM}, got {train_from!r}")
    meta = project.store.get_meta("backbone")
    if not meta:
        raise ProjectError("the project has no embeddings yet: run `labeler ingest` first")
    dev = torch.device(pick_device(device))
    bb, view = _press_backbone(project, meta, dev, None)
    net = bb.model.net
    t0 = time.perf_counter()
    cache = open_prefix_cache(project, bb, net, train_start(net, train_from), view, dev, budget_gb=budget_gb, say=say)
    failures = cache.fill(progress=progress)
    return {"computed": int(cache.computed), "failures": failures, "seconds": time.perf_counter() - t0,
            "bytes": int(cache.path.stat().st_size) if cache.path.is_file() else 0}


def finetune_project(project, *, epochs: int = 30, device: str = "auto", holdout: float = 0.2,
                     batch_size: int = 32, lr: float = 3e-4, train_from: str = "s16", class_weight: str = "sqrt",
                     head: str = "linear", tta: bool = False, input_size: int | None = None, loss: str = LOSSES[0],
                     seed: int = 0, semi: str = "none", prefix_cache: bool = True, cache_budget_gb: float | None = None,
                     name: str | None = None, activate: bool = True, progress: bool = True,
                     say=lambda s: None, step=None) -> FinetuneReport:
    """Fine-tune the project's backbone on its current labels and store the new vectors.

    It learns from the labels a person decided (by hand, by cluster, from search or by
    propagation), not from accepted suggestions, as the suggestion model
    (:func:`labeler.assist.suggest.suggest`); the simulated flow that measured it
    (``benchmarks/bench_labeling.py --finetune-at``) trains on the same.

    Parameters
    ----------
    project : labeler.project.Project
    epochs : int, default 30
        Passes over the training labels (each image in one random symmetry per pass).
    device : str, default 'auto'
        CUDA when available.
    holdout : float, default 0.2
        Share of each class (with >= 5 labels) held out to report an honest accuracy;
        those images are not trained on. 0 trains on every label and reports none.
    batch_size : int, default 32
    lr : float, default 3e-4
        Learning rate of the fine-tuned stages (the new classifier gets 10x).
    train_from : {'s16', 's8', 'last', 'head'}, default 's16'
        Train the blocks after the last stride-16 block (and the head), also the
        stride-16 stages (after the last stride-8 block), only the last block and the
        head, or only the head convolution. See :data:`TRAIN_FROM`.
    class_weight : {'sqrt', 'balanced', 'none'}, default 'sqrt'
        Loss weight of each class: sqrt of inverse frequency, inverse frequency
        (each class weighs the same in total), or 1.
    head : {'linear', 'cosine'}, default 'linear'
        The new classifier: a linear layer, or a cosine classifier that trains the
        vectors for cosine search (:class:`CosineClassifier`).
    tta : bool, default False
        Test-time augmentation: each image's new vector is the mean over its 8
        symmetries (:class:`FinetunedFeatures`); re-embedding costs 8x.
    input_size : int, optional
        Side (pixels) images are resized to for training and re-embedding; default the
        backbone's (224 for Lite0). The network is fully convolutional; a larger side
        keeps finer detail at (side / 224)^2 the cost.
    loss : {'ce+supcon', 'ce'}, default 'ce+supcon'
        Cross-entropy (label smoothing 0.1, class weights) plus
        :data:`SUPCON_WEIGHT` x the supervised contrastive loss (:func:`supcon_loss`,
        temperature :data:`SUPCON_TEMPERATURE`) on the L2-normalised pooled vectors the
        search uses, over two different symmetries of each image in the batch; or the
        cross-entropy alone, at half the training cost (see the module docstring for
        what each measured).
    seed : int, default 0
    semi : {'none', 'fixmatch', 'meanteacher'}, default 'none'
        Also learn from the images without a hand label, on their cached prefix maps
        (:mod:`labeler.embedding.semi`): FixMatch (Sohn et al. 2020; ramp-up, a confidence
        threshold, distribution alignment and a held-out check that switches it off when
        its pseudo-labels are wrong too often) or Mean Teacher (Tarvainen & Valpola 2017;
        soft targets from an average of the network's own weights). Needs the prefix cache
        (not with ``prefix_cache=False`` or ``tta``); about 1.5-2x the training time.
    prefix_cache : bool, default True
        Keep the frozen prefix's maps of every image (and the symmetries of the labelled
        ones) in ``cache/`` of the project (:mod:`labeler.embedding.prefix_cache`): the
        first press fills it, later presses compute only new images and labels, and the
        re-embedding runs only the trained stages. False runs the whole network over
        every image, as before (``tta`` does that anyway).
    cache_budget_gb : float, optional
        Disk the prefix caches may take (default ``$LABELER_PREFIX_CACHE_GB`` or
        :data:`labeler.embedding.prefix_cache.DEFAULT_BUDGET_GB`); a press whose cache
        would not fit stops with a one-line :class:`BadInputError` before computing.
    name : str, optional
        Name of the new feature set (default ``finetuned-<k>``, k = 1, 2, ...).
    activate : bool, default True
        Make the new feature set the active one (the previous stays stored).
    progress : bool
        Progress bar while re-embedding.
    say : callable
        Receives one-line progress messages.
    step : callable(stage: str, done: int, total: int), optional
        Called when the stage maps start (``'stage maps'``, 0, 1), before each training
        epoch (``'training'``, epochs done, epochs) and, with the prefix cache, before each
        re-embedded chunk (``'re-embedding'``, rows done, rows; the whole-network path
        without the cache reports no chunks); it may raise to stop the press there (a
        background job's cancel, :mod:`labeler.jobs`): nothing is written to the project
        before the new feature set is saved.

    Returns
    -------
    FinetuneReport

    Raises
    ------
    ProjectError
        The project has not been ingested.
    BadInputError
        Fewer than 10 images labelled by a person or fewer than 2 labels, a backbone other than
        EfficientNet-Lite, ``epochs < 1``, ``holdout`` outside [0, 0.5], or an unknown
        ``train_from`` / ``class_weight`` / ``head`` / ``loss`` / ``semi``, ``input_size`` outside
        [64, 1024], or ``semi`` other than 'none' without the prefix cache.
    """
    from .device import pick_device
    from .feature_sets import active_feature_set, new_feature_set_name, save_feature_set, set_active_feature_set
    from .local_features import embed_project

    if epochs < 1:
        raise BadInputError(f"epochs must be >= 1, got {epochs}")
    if not 0 <= holdout <= 0.5:
        raise BadInputError(f"holdout must be in [0, 0.5], got {holdout}")
    if train_from not in TRAIN_FROM:
        raise BadInputError(f"train_from must be one of {TRAIN_FROM}, got {train_from!r}")
    if class_weight not in CLASS_WEIGHTS:
        raise BadInputError(f"class_weight must be one of {CLASS_WEIGHTS}, got {class_weight!r}")
    if head not in HEADS:
        raise BadInputError(f"head must be one of {HEADS}, got {head!r}")
    if loss not in LOSSES:
        raise BadInputError(f"loss must be one of {LOSSES}, got {loss!r}")
    supcon = loss == "ce+supcon"
    if semi not in SEMI:
        raise BadInputError(f"semi must be one of {SEMI}, got {semi!r}")
    if semi != "none" and (not prefix_cache or tta):
        raise BadInputError(f"semi={semi!r} learns from the prefix cache's maps of the unlabelled images: "
                            "it needs the prefix cache (prefix_cache=True, no tta)")
    if input_size is not None and not 64 <= input_size <= 1024:
        raise BadInputError(f"input_size must be in [64, 1024] pixels, got {input_size}")
    store = project.store
    meta = store.get_meta("backbone")
    if not meta:
        raise ProjectError("the project has no embeddings yet: run `labeler ingest` first")
    # Labels a person decided only: an accepted suggestion that is wrong would teach the
    # network the suggestion model's own mistake (the suggestion model leaves them out too).
    labels = store.decided_labels()
    table = {int(r["id"]): r for r in store.image_table()}
    labelled = [(table[i], lab) for i, lab in sorted(labels.items()) if i in table]
    classes = sorted({lab for _, lab in labelled})
    if len(labelled) < 10 or len(classes) < 2:
        n_accepted = len(store.labels()) - len(labels)
        raise BadInputError(f"fine-tuning needs at least 10 images labelled by a person in at least 2 labels; "
                            f"this project has {len(labelled)} in {len(classes)}"
                            + (f" (and {n_accepted} accepted suggestions, which it does not learn from)"
                               if n_accepted else ""))
    dev = torch.device(pick_device(device))
    bb, view = _press_backbone(project, meta, dev, input_size)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    y_all = np.array([classes.index(lab) for _, lab in labelled])
    train, held = _split(y_all, holdout, rng)
    net, end = bb.model.net, train_start(bb.model.net, train_from)

    t0 = time.perf_counter()
    if step is not None:
        step("stage maps", 0, 1)
    cache, cache_seconds, fill_failures = None, 0.0, []
    if prefix_cache and not tta:  # tta re-embeds 8 symmetries of every image: the full network
        cache = open_prefix_cache(project, bb, net, end, view, dev, budget_gb=cache_budget_gb, say=say)
        fill_failures = cache.fill(progress=progress)
        cache_seconds = time.perf_counter() - t0
        maps, kept = cache.symmetries([labelled[i][0] for i in train],
                                      lambda rows: _inputs(project, bb, rows, view))
        maps = maps.to(dev)
    else:
        maps, kept = _symmetry_maps(project, bb, net, end, [labelled[i][0] for i in train], view, dev, say)
    if not kept:
        raise BadInputError("none of the labelled images could be read")
    train = train[kept]
    y = torch.as_tensor(y_all[train], device=dev)
    tail = Tail(net, end, len(classes), head).to(dev)
    for p in tail.parameters():
        p.requires_grad_(True)
    tail.train()
    for m in tail.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    fc_params = list(tail.fc.parameters())
    body = [p for n, p in tail.named_parameters() if not n.startswith("fc.")]
    opt = torch.optim.AdamW([{"params": fc_params, "lr": 10 * lr}, {"params": body, "lr": lr}], weight_decay=1e-4)
    n = len(train)
    steps = epochs * int(np.ceil(n / batch_size))
    # Warm-up over 10 % of the steps, and at least 2: torch's OneCycleLR divides by zero when
    # pct_start * steps is exactly 1 (e.g. 10 epochs of one batch, or 1 epoch of 10 batches).
    warm = max(0.1, 2 / steps) if steps > 2 else 0.25
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[10 * lr, lr], total_steps=steps, pct_start=warm)
    counts = torch.bincount(y, minlength=len(classes)).float().clamp(min=1)
    weight = {"sqrt": (counts.sum() / counts / len(classes)).sqrt(), "balanced": counts.sum() / counts / len(classes),
              "none": torch.ones_like(counts)}[class_weight]
    g = torch.Generator().manual_seed(seed)
    semi_term, held_maps = None, None
    if semi != "none":
        from .semi import MU, FixMatch, MeanTeacher

        hand = np.zeros(len(cache.valid), bool)
        hand[[r["row"] for r, _ in labelled]] = True  # held-out images are never unlabelled
        method = {"fixmatch": FixMatch, "meanteacher": MeanTeacher}[semi]
        semi_term = method(cache.maps, np.flatnonzero(cache.valid & ~hand), counts.cpu(), LABEL_SMOOTHING, epochs,
                           dev, seed)
        held_ok = [i for i in held if cache.valid[labelled[i][0]["row"]]]
        if held_ok:
            held_maps = torch.from_numpy(np.asarray(cache.maps[[labelled[i][0]["row"] for i in held_ok]]))
            held_y = y_all[held_ok]
    maps_seconds = time.perf_counter() - t0
    say(f"stage maps: {maps_seconds:.1f} s; training {len(classes)} classes on {n} images"
        + (f" and {len(semi_term.pool)} unlabelled ({semi})" if semi_term is not None else "")
        + f", {epochs} epochs on {dev} ...")
    for epoch in range(epochs):
        if step is not None:
            step("training", epoch, epochs)
        perm = torch.randperm(n, generator=g)
        sym = torch.randint(0, 8, (n,), generator=g)
        # ce+supcon: a second, different symmetry of each image (the paper's two views)
        sym2 = (sym + torch.randint(1, 8, (n,), generator=g)) % 8
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            yb = y[idx.to(dev)]
            h = maps[sym[idx].to(dev), idx.to(dev)].float()
            if supcon:
                h = torch.cat([h, maps[sym2[idx].to(dev), idx.to(dev)].float()])
                yb = torch.cat([yb, yb])
            e = tail.embed(h)
            batch_loss = F.cross_entropy(tail.fc(tail.drop(e)), yb, weight=weight, label_smoothing=LABEL_SMOOTHING)
            if supcon:
                batch_loss = batch_loss + SUPCON_WEIGHT * supcon_loss(e, yb, SUPCON_TEMPERATURE)
            if semi_term is not None:
                unlabelled = semi_term.loss(tail, MU * len(idx), epoch)
                if unlabelled is not None:
                    batch_loss = batch_loss + unlabelled
            opt.zero_grad()
            batch_loss.backward()
            opt.step()
            sched.step()
            if semi_term is not None:
                semi_term.after_step(tail)
        if semi_term is not None and held_maps is not None:
            semi_term.check(tail, held_maps, held_y, epoch)
    tail.eval()
    train_seconds = time.perf_counter() - t0 - cache_seconds
    del maps

    acc = frozen_acc = None
    previous = active_feature_set(project)
    if len(held) and cache is not None:
        held = held[[bool(cache.valid[labelled[i][0]["row"]]) for i in held]]
        if len(held):
            with torch.inference_mode():
                h = torch.from_numpy(cache.maps[[labelled[i][0]["row"] for i in held]])
                pred = torch.cat([tail(h[i:i + 64].to(dev).float()).argmax(1).cpu()
                                  for i in range(0, len(h), 64)]).numpy()
    elif len(held):
        x_held, ok_h = _inputs(project, bb, [labelled[i][0] for i in held], view)
        held = held[ok_h]
        if len(held):
            with torch.inference_mode():
                pred = torch.cat([tail(_prefix(net, x_held[i:i + 64].to(dev), end)).argmax(1).cpu()
                                  for i in range(0, len(x_held), 64)]).numpy()
    if len(held):
        acc = float(np.mean(pred == y_all[held]))
        rows_t = np.array([labelled[i][0]["row"] for i in train])
        rows_h = np.array([labelled[i][0]["row"] for i in held])
        frozen_acc = _frozen_check(project, previous, rows_t, y_all[train], rows_h, y_all[held])

    say("re-embedding every image with the fine-tuned network ...")
    t1 = time.perf_counter()
    if cache is not None:  # only the tail, on the cached maps
        feats, failures = embed_cached_maps(cache.maps, cache.valid, tail, dev, step=step), fill_failures
    else:
        model = FinetunedFeatures(bb.model, tail, end, symmetries=8 if tta else 1).eval()
        ft_bb = dataclasses.replace(bb, model=model, dim=tail.conv_head.out_channels, categories=list(classes),
                                    features="finetuned")
        feats, failures = embed_project(project, ft_bb, view=view, device=str(dev), batch_size=8 if tta else 64,
                                        progress=progress)
        _drop_export(ft_bb)
    embed_seconds = time.perf_counter() - t1

    if name is None:
        name = new_feature_set_name(project, "finetuned")
    semi_stats = semi_term.summary() if semi_term is not None else None
    save_finetuned(project, name, {"tail": tail.state_dict(), "classes": classes, "prefix_end": end, "head": head,
                                   "loss": loss, "backbone": meta["name"]})
    save_feature_set(project, name, feats, {
        "kind": "finetuned", "backbone": meta["name"], "classes": classes, "epochs": epochs, "lr": lr,
        "train_from": train_from, "class_weight": class_weight, "head": head,
        "loss": loss, "semi": semi, **({"semi_stats": semi_stats} if semi_stats is not None else {}),
        "tta": bool(tta), "input_size": bb.input_size, "n_train": int(len(train)),
        "n_heldout": int(len(held)),
        "heldout_accuracy": acc,
        # The images the network saw with their labels: the suggestion model must not
        # calibrate on them (labeler.assist.model.predict's ``fitted``).
        "train_image_ids": sorted(int(labelled[i][0]["id"]) for i in train),
        "heldout_frozen_accuracy": frozen_acc, "trained_from": previous,
        "train_seconds": round(train_seconds, 1), "device": str(dev),
        "prefix_cache": cache.key if cache is not None else None})
    if activate:
        set_active_feature_set(project, name)
    return FinetuneReport(name=name, previous=previous, classes=classes, n_labelled=len(labelled),
                          n_train=int(len(train)), n_heldout=int(len(held)), epochs=epochs, device=str(dev),
                          train_seconds=train_seconds, embed_seconds=embed_seconds, heldout_accuracy=acc,
                          heldout_frozen_accuracy=frozen_acc, failures=failures, cache_seconds=cache_seconds,
                          prefix_images=cache.computed if cache is not None else 8 * len(train) + len(feats),
                          semi=semi, semi_stats=semi_stats)
