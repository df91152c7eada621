"""Learning from the unlabelled images during a fine-tune press: FixMatch on the cached prefix maps.

FixMatch (Sohn et al. 2020, NeurIPS, "FixMatch: Simplifying Semi-Supervised Learning with
Consistency and Confidence"): for each unlabelled image the network's prediction on a
*weak* view becomes a hard pseudo-label when it is confident (max probability >= 0.95),
and the network is trained to give that label to a *strong* view of the same image. The
pseudo-labels are recomputed at every step from the current network, so none is fixed
once given.

Here the images are not re-read: the press trains the stages after a frozen prefix on the
prefix's cached maps (:mod:`labeler.embedding.prefix_cache`), which hold one map per image.
So the views are made on those maps:

* weak view: the image's own cached map (no change): the pseudo-label comes from what
  the re-embedding will see;
* strong view (:func:`strong_view`): channel dropout (whole feature maps zeroed, Tompson
  et al. 2015, p = :data:`CHANNEL_DROP`) and a cutout of a quarter of the map's side
  (DeVries & Taylor 2017; FixMatch's strong augmentation always ends with a cutout). A
  quarter, not the paper's half: a defect is often a small region, and a cutout that
  removes it would train the wrong label. The map is not rotated or mirrored: a rotated
  map is not the map of the rotated image (the channels do not turn with it), and
  transforming cached maps trained worse than the true symmetries' maps on the hand
  labels (docs/features.md); with it FixMatch measured no better on ELPV.

Guards, so that a wrong early pseudo-label cannot lock itself in:

* **ramp-up**: the unlabelled term's weight grows linearly from 0 over the first
  :data:`RAMP_SHARE` of the epochs (Laine & Aila 2017; Tarvainen & Valpola 2017), so the
  first pseudo-labels come from a network that has learned from the hand labels;
* **threshold** :data:`THRESHOLD` (the paper's 0.95) on the confidence divided by the
  largest confidence the label-smoothed loss trains towards (``1 - eps + eps / K``; with
  smoothing 0.1 and two classes the raw probability hardly ever passes 0.95);
* **class balance**: distribution alignment (Berthelot et al. 2020, ReMixMatch): the
  predicted class probabilities are scaled by the hand labels' class shares over the
  running mean of the predictions on unlabelled images, so that the majority class cannot
  take over the pseudo-labels;
* **held-out check**: after each epoch the same rule is applied to the hand labels held
  out of training; when at least :data:`MIN_CONFIDENT` of them pass the threshold and fewer
  than :data:`PRECISION_FLOOR` of those are right, the unlabelled term is switched off for
  the rest of the press (reported). The hand labels stay the only ground truth: they are
  what is checked against, and the held-out images are never in the unlabelled pool.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BadInputError

__all__ = ["CHANNEL_DROP", "MIN_CONFIDENT", "MU", "PRECISION_FLOOR", "RAMP_SHARE", "THRESHOLD", "WEIGHT",
           "DistributionAlignment", "EMA_DECAY", "FixMatch", "MeanTeacher", "describe", "pseudo_labels", "strong_view"]

#: Confidence a prediction needs to become a pseudo-label (FixMatch's tau, Sohn et al. 2020).
THRESHOLD = 0.95
#: Unlabelled images per labelled image in a step (FixMatch's mu is 7; 2 keeps a CPU press
#: within about 2x the supervised one's training time).
MU = 2
#: Weight of the unlabelled term once ramped up (FixMatch's lambda_u).
WEIGHT = 1.0
#: Share of the epochs over which the unlabelled term's weight ramps up from 0.
RAMP_SHARE = 0.3
#: Share of channels the strong view zeroes (channel dropout on the prefix map).
CHANNEL_DROP = 0.2
#: The held-out check switches the unlabelled term off below this precision of the confident
#: predictions on held-out hand labels (the threshold aims at pseudo-labels right about 95 %
#: of the time; below 90 % they teach more mistakes than they fix).
PRECISION_FLOOR = 0.9
#: Confident held-out predictions needed before the check judges.
MIN_CONFIDENT = 10


def strong_view(h: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """FixMatch's strong augmentation, on prefix maps.

    Parameters
    ----------
    h : torch.Tensor (B, C, H, W), float
        Cached prefix maps (one per image).
    gen : torch.Generator
        CPU generator of the random choices (seeded by the press).

    Returns
    -------
    torch.Tensor (B, C, H, W), same dtype and device, a new tensor
        Each map with a random :data:`CHANNEL_DROP` of its channels zeroed (the others
        scaled by ``1 / (1 - CHANNEL_DROP)``) and a random square of side ``ceil(H / 4)``
        zeroed.
    """
    b, c, hh, ww = h.shape
    keep = (torch.rand((b, c, 1, 1), generator=gen) >= CHANNEL_DROP).to(h.device, h.dtype)
    out = h * keep / (1 - CHANNEL_DROP)
    side = max(1, -(-hh // 4))
    ys = torch.randint(0, hh - side + 1, (b,), generator=gen)
    xs = torch.randint(0, ww - side + 1, (b,), generator=gen)
    for i in range(b):
        out[i, :, ys[i]:ys[i] + side, xs[i]:xs[i] + side] = 0
    return out


class DistributionAlignment:
    """Distribution alignment (Berthelot et al. 2020, ReMixMatch, section 3.2).

    ``align(p)`` scales class probabilities ``p`` (B, K) by ``prior / running`` and
    renormalises each row, where ``prior`` is the hand labels' class shares and ``running``
    the mean predicted distribution over the last ``window`` unlabelled batches (``p``
    included). So the pseudo-labels' classes follow the hand labels' shares rather than
    drifting to whichever class the network first favours.

    Parameters
    ----------
    prior : torch.Tensor (K,), float
        Class counts or shares of the hand labels (normalised here; each must be > 0).
    window : int, default 32
        Batches in the running mean (ReMixMatch uses 128 on much longer runs).

    Raises
    ------
    BadInputError
        ``prior`` has a class with no share.
    """

    def __init__(self, prior: torch.Tensor, window: int = 32):
        prior = prior.float()
        if not bool((prior > 0).all()):
            raise BadInputError("distribution alignment needs hand labels of every class")
        self.prior = prior / prior.sum()
        self.history: deque = deque(maxlen=window)

    def align(self, p: torch.Tensor) -> torch.Tensor:
        self.history.append(p.mean(dim=0).detach())
        running = torch.stack(list(self.history)).mean(dim=0)
        q = p * (self.prior.to(p.device) / running.clamp_min(1e-6))
        return q / q.sum(dim=1, keepdim=True)


def pseudo_labels(p: torch.Tensor, threshold: float, ceiling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard pseudo-labels and the mask of those confident enough (FixMatch eq. 4).

    Parameters
    ----------
    p : torch.Tensor (B, K), float
        Class probabilities (after distribution alignment).
    threshold : float
        Relative confidence needed, in (0, 1].
    ceiling : float
        The largest probability training aims at (``1 - eps + eps / K`` with label
        smoothing ``eps``); the confidence compared is ``max(p) / ceiling``.

    Returns
    -------
    (labels, mask) : torch.Tensor (B,) int64, torch.Tensor (B,) bool
    """
    conf, labels = p.max(dim=1)
    return labels, conf / ceiling >= threshold


class FixMatch:
    """The unlabelled term of a press (see the module docstring), step by step.

    Parameters
    ----------
    maps : ndarray (n, C, H, W), float16
        The prefix cache's maps of every image (usually memory-mapped).
    pool : ndarray (m,), int
        Rows of ``maps`` that may be drawn: readable images with no hand label (the held-out
        ones included in "hand label").
    prior : torch.Tensor (K,)
        Class counts of the hand labels trained on.
    smoothing : float
        The label smoothing of the supervised loss (sets the confidence ceiling).
    epochs : int
        Epochs of the press (for the ramp-up).
    dev : torch.device
    seed : int

    Raises
    ------
    BadInputError
        An empty pool, or a class with no hand label.
    """

    def __init__(self, maps: np.ndarray, pool: np.ndarray, prior: torch.Tensor, smoothing: float, epochs: int,
                 dev: torch.device, seed: int = 0):
        if not len(pool):
            raise BadInputError("learning from unlabelled images needs unlabelled images; every image is labelled")
        self.maps, self.pool, self.dev, self.epochs = maps, np.sort(np.asarray(pool, np.int64)), dev, int(epochs)
        k = len(prior)
        self.ceiling = 1 - smoothing + smoothing / k
        self.align = DistributionAlignment(prior)
        self.rng = np.random.default_rng(seed + 1)
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.active = True
        self.stopped_epoch: int | None = None
        self.drawn = self.confident = 0
        self.class_counts = np.zeros(k, np.int64)
        self.heldout_precision: float | None = None
        self.heldout_confident = 0

    def after_step(self, tail) -> None:
        """Nothing (Mean Teacher's hook; FixMatch keeps no second network)."""

    def weight(self, epoch: int) -> float:
        """The unlabelled term's weight at ``epoch`` (0-based): ramped, 0 once switched off."""
        if not self.active:
            return 0.0
        ramp = max(1.0, RAMP_SHARE * self.epochs)
        return WEIGHT * min(1.0, epoch / ramp)

    def loss(self, tail, n: int, epoch: int) -> torch.Tensor | None:
        """The unlabelled term of one step: ``n`` images drawn from the pool, or None when
        its weight is 0 (nothing computed).

        ``tail`` is the trained part (:class:`labeler.embedding.finetuned_net.Tail`); the
        pseudo-labels come from it without gradient and without dropout."""
        w = self.weight(epoch)
        if w <= 0:
            return None
        rows = np.sort(self.rng.choice(self.pool, size=min(n, len(self.pool)), replace=False))
        h = torch.from_numpy(np.asarray(self.maps[rows])).to(self.dev).float()
        with torch.no_grad():
            p = self.align.align(F.softmax(tail.fc(tail.embed(h)).float(), dim=1))
            target, mask = pseudo_labels(p, THRESHOLD, self.ceiling)
        self.drawn += len(rows)
        self.confident += int(mask.sum())
        self.class_counts += np.bincount(target[mask].cpu().numpy(), minlength=len(self.class_counts))
        if not bool(mask.any()):
            return None
        logits = tail(strong_view(h[mask], self.gen))
        return w * F.cross_entropy(logits, target[mask], reduction="sum") / len(rows)

    def check(self, tail, held_maps: torch.Tensor | None, held_y: np.ndarray, epoch: int) -> None:
        """The held-out check after ``epoch``: the pseudo-label rule on the held-out hand labels.

        ``held_maps`` (h, C, H, W) are their cached maps, ``held_y`` (h,) their classes. Switches
        the unlabelled term off when at least :data:`MIN_CONFIDENT` pass the threshold and
        fewer than :data:`PRECISION_FLOOR` of those are right."""
        if held_maps is None or not len(held_y) or not self.active:
            return
        with torch.no_grad():
            p = F.softmax(torch.cat([tail.fc(tail.embed(held_maps[i:i + 64].to(self.dev).float()))
                                     for i in range(0, len(held_maps), 64)]).float(), dim=1)
            running = torch.stack(list(self.align.history)).mean(dim=0) if self.align.history else None
            if running is not None:  # the same alignment as the pseudo-labels (no history update)
                p = p * (self.align.prior.to(p.device) / running.clamp_min(1e-6))
                p = p / p.sum(dim=1, keepdim=True)
            pred, mask = pseudo_labels(p, THRESHOLD, self.ceiling)
        mask = mask.cpu().numpy()
        self.heldout_confident = int(mask.sum())
        if self.heldout_confident:
            self.heldout_precision = float(np.mean(pred.cpu().numpy()[mask] == held_y[mask]))
        if self.heldout_confident >= MIN_CONFIDENT and self.heldout_precision < PRECISION_FLOOR \
                and self.weight(epoch + 1) > 0:
            self.active, self.stopped_epoch = False, epoch + 1

    def summary(self) -> dict:
        """Figures for the report: share of drawn images that became pseudo-labels, their
        classes' counts, the last held-out precision and where the check stopped the term."""
        return {"unlabelled_drawn": int(self.drawn),
                "pseudo_share": round(self.confident / self.drawn, 4) if self.drawn else 0.0,
                "pseudo_class_counts": [int(c) for c in self.class_counts],
                "pseudo_heldout_precision": self.heldout_precision,
                "pseudo_heldout_confident": self.heldout_confident,
                "semi_stopped_epoch": self.stopped_epoch}


#: Mean Teacher's EMA decay of the teacher's weights (Tarvainen & Valpola 2017 use 0.99 while
#: ramping up, 0.999 after, over tens of thousands of steps; a press takes a few hundred).
EMA_DECAY = 0.99


class MeanTeacher:
    """Mean Teacher (Tarvainen & Valpola 2017, NeurIPS, "Mean teachers are better role
    models"): the trained tail (the student) is asked to give, on a strong view of each
    unlabelled image's map (:func:`strong_view`), the class probabilities that an
    exponential moving average of its own weights (the teacher) gives on the image's own
    map; the term is the mean squared difference of the two probability vectors, ramped up
    as FixMatch's (:meth:`FixMatch.weight`). No hard pseudo-label is ever made, so none can
    lock itself in; every unlabelled image counts, the uncertain ones with soft targets.

    Same parameters and interface as :class:`FixMatch` (``loss``, ``after_step``,
    ``check``, ``summary``); the press calls :meth:`after_step` after each optimiser step.
    The student's weights are what the press stores.
    """

    def __init__(self, maps: np.ndarray, pool: np.ndarray, prior: torch.Tensor, smoothing: float, epochs: int,
                 dev: torch.device, seed: int = 0):
        if not len(pool):
            raise BadInputError("learning from unlabelled images needs unlabelled images; every image is labelled")
        self.maps, self.pool, self.dev, self.epochs = maps, np.sort(np.asarray(pool, np.int64)), dev, int(epochs)
        self.rng = np.random.default_rng(seed + 1)
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.teacher = None
        self.drawn = 0
        self.heldout_accuracy: float | None = None

    def weight(self, epoch: int) -> float:
        ramp = max(1.0, RAMP_SHARE * self.epochs)
        return WEIGHT * min(1.0, epoch / ramp)

    def after_step(self, tail) -> None:
        """Move the teacher's weights towards the student's (EMA, :data:`EMA_DECAY`)."""
        import copy

        if self.teacher is None:
            self.teacher = copy.deepcopy(tail).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
            return
        with torch.no_grad():
            for t, s in zip(self.teacher.parameters(), tail.parameters()):
                t.mul_(EMA_DECAY).add_(s.detach(), alpha=1 - EMA_DECAY)

    def loss(self, tail, n: int, epoch: int) -> torch.Tensor | None:
        w = self.weight(epoch)
        if w <= 0 or self.teacher is None:
            return None
        rows = np.sort(self.rng.choice(self.pool, size=min(n, len(self.pool)), replace=False))
        h = torch.from_numpy(np.asarray(self.maps[rows])).to(self.dev).float()
        with torch.no_grad():
            target = F.softmax(self.teacher.fc(self.teacher.embed(h)).float(), dim=1)
        self.drawn += len(rows)
        p = F.softmax(tail(strong_view(h, self.gen)).float(), dim=1)
        return w * F.mse_loss(p, target, reduction="sum") / len(rows)

    def check(self, tail, held_maps: torch.Tensor | None, held_y: np.ndarray, epoch: int) -> None:
        """Records the teacher's accuracy on the held-out hand labels (reported, not acted on:
        soft targets cannot lock a wrong label in)."""
        if held_maps is None or not len(held_y) or self.teacher is None:
            return
        with torch.no_grad():
            pred = torch.cat([self.teacher.fc(self.teacher.embed(held_maps[i:i + 64].to(self.dev).float())).argmax(1)
                              for i in range(0, len(held_maps), 64)]).cpu().numpy()
        self.heldout_accuracy = float(np.mean(pred == held_y))

    def summary(self) -> dict:
        return {"unlabelled_drawn": int(self.drawn), "teacher_heldout_accuracy": self.heldout_accuracy}


def describe(stats: dict | None, classes: list[str]) -> str | None:
    """One line for the annotator on what the unlabelled images gave a press, from its
    ``semi_stats`` (:meth:`FixMatch.summary` or :meth:`MeanTeacher.summary`); None without
    them. ``classes``: the press's classes, in the order of ``pseudo_class_counts``."""
    if not stats:
        return None
    if "pseudo_share" not in stats:  # Mean Teacher
        acc = stats.get("teacher_heldout_accuracy")
        return (f"unlabelled images: {stats['unlabelled_drawn']} drawn"
                + ("" if acc is None else f"; the teacher's held-out accuracy {acc:.3f}"))
    counts = ", ".join(f"{c} {k}" for c, k in zip(classes, stats["pseudo_class_counts"]))
    precision = stats["pseudo_heldout_precision"]
    check = ("no held-out check (no held-out labels)" if precision is None else
             f"held-out precision of confident predictions {precision:.3f} ({stats['pseudo_heldout_confident']} "
             "confident)")
    stopped = (f"; switched off after epoch {stats['semi_stopped_epoch']} (pseudo-labels wrong too often)"
               if stats["semi_stopped_epoch"] else "")
    return (f"unlabelled images: {stats['pseudo_share']:.1%} of {stats['unlabelled_drawn']} drawn became "
            f"pseudo-labels ({counts}); {check}{stopped}")
