"""Losses and classifier heads of the fine-tuning (:mod:`labeler.embedding.finetune`).

The cosine classifier (NormFace) and the supervised contrastive loss (Khosla et al.
2020) both shape the direction of the pooled vectors that cosine search compares.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadInputError
from .registry import LOSSES  # noqa: F401 (re-exported; torch-free there, so the CLI lists them)

__all__ = ["LOSSES", "SUPCON_TEMPERATURE", "SUPCON_WEIGHT", "CosineClassifier", "supcon_loss"]

#: Temperature of the supervised contrastive loss: Khosla et al. 2020's default (0.1).
SUPCON_TEMPERATURE = 0.1
#: Weight of the supervised contrastive term beside the cross-entropy: 1, the two terms
#: added unweighted (not tuned: issue 9 asks for principled defaults, not ELPV's knobs).
SUPCON_WEIGHT = 1.0


def supcon_loss(z: torch.Tensor, y: torch.Tensor, temperature: float = SUPCON_TEMPERATURE) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, NeurIPS, "Supervised Contrastive
    Learning", eq. 2, the ``L_out`` form) of a batch of embeddings.

    For each anchor ``i``, the positives are the other batch members of its class
    (e.g. the other augmented view of the same image, and other images of that label)::

        L_i = -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p / t) / sum_{a != i} exp(z_i.z_a / t) )

    averaged over the anchors that have at least one positive (0 when none has).

    Parameters
    ----------
    z : torch.Tensor (B, D), float
        Embeddings; L2-normalised here, so only their directions count (what cosine
        search compares).
    y : torch.Tensor (B,), int
        Class of each row.
    temperature : float, default :data:`SUPCON_TEMPERATURE`
        Must be > 0.

    Returns
    -------
    torch.Tensor
        A scalar (float, differentiable with respect to ``z``).

    Raises
    ------
    BadInputError
        ``temperature <= 0``, ``z`` not 2-D, or ``y`` not of length B.
    """
    if not temperature > 0:
        raise BadInputError(f"the supervised contrastive temperature must be > 0, got {temperature}")
    if z.dim() != 2 or y.shape != (z.shape[0],):
        raise BadInputError(f"supcon_loss wants z (B, D) and y (B,), got {tuple(z.shape)} and {tuple(y.shape)}")
    z = F.normalize(z.float(), dim=1)
    b = z.shape[0]
    self_mask = torch.eye(b, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (y[:, None] == y[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        return z.sum() * 0.0
    mean_log_prob_pos = log_prob.masked_fill(~pos, 0.0).sum(1)[has] / n_pos[has]
    return -mean_log_prob_pos.mean()


class CosineClassifier(nn.Module):
    """Normalised-softmax classifier: ``logits = scale * cos(features, class weight)``.

    Both the features and each class's weight vector are L2-normalised, so the loss
    only depends on angles: training pulls each image's vector towards its class's
    direction, which is what cosine nearest-neighbour search compares (NormFace, Wang
    et al. 2017; "Classification is a strong baseline for deep metric learning", Zhai &
    Wu 2019, BMVC: temperature 0.05, i.e. ``scale`` 20).

    Parameters
    ----------
    in_features, n_classes : int
    scale : float, default 20
        Inverse temperature of the softmax.

    Notes
    -----
    ``forward(x)``: ``x`` (B, in_features) float -> (B, n_classes) float, each logit in
    ``[-scale, scale]``.
    """

    def __init__(self, in_features: int, n_classes: int, scale: float = 20.0):
        super().__init__()
        self.scale = float(scale)
        self.weight = nn.Parameter(torch.randn(n_classes, in_features) / in_features ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))
