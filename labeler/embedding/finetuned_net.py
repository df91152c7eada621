"""The fine-tuned network: where training starts, the trained tail, and its file.

A fine-tune press (:mod:`labeler.embedding.finetune`) freezes an EfficientNet-Lite up to a
cut point (:data:`TRAIN_FROM`, :func:`train_start`) and trains what follows (the *tail*,
:class:`Tail`) on the annotator's labels. The tail is saved in ``models/<name>.pt``
(:func:`save_finetuned`, checked by the integrity manifest on load), runs on cached prefix
maps (:func:`embed_cached_maps`) or, behind the frozen prefix, on images
(:class:`FinetunedFeatures`).
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import BadInputError, ProjectError
from .finetune_losses import CosineClassifier
from .networks import EfficientNetFeatures
from .prefix_cache import d4, prefix_end, run_prefix
from .registry import TRAIN_FROM

__all__ = ["FinetunedFeatures", "TRAIN_FROM", "Tail", "embed_cached_maps", "load_finetuned", "load_tail",
           "save_finetuned", "train_start"]


# TRAIN_FROM (labeler.embedding.registry): 's8' trains blocks 5-15 + the head convolution of
# Lite0 (the stride-16 and -32 stages), 's16' blocks 11-15 + head (the stride-32 stages), 'last'
# block 15 + head, 'head' the head convolution alone. 'last' trains about a third of the
# multiply-adds of 's16' (docs/features.md for what each measured).


def train_start(net: nn.Module, train_from: str) -> int:
    """Index of the last frozen block of EfficientNet ``net`` for ``train_from`` (:data:`TRAIN_FROM`).

    Raises
    ------
    BadInputError
        ``train_from`` is not one of :data:`TRAIN_FROM`.
    """
    if train_from not in TRAIN_FROM:
        raise BadInputError(f"train_from must be one of {TRAIN_FROM}, got {train_from!r}")
    if train_from in ("s16", "s8"):
        return prefix_end(net, int(train_from[1:]))
    return len(net._blocks) - (2 if train_from == "last" else 1)
class Tail(nn.Module):
    """The trained part: blocks after the prefix, head conv + BN, average pool, classifier."""

    def __init__(self, net: nn.Module, end: int, n_classes: int, head: str = "linear"):
        super().__init__()
        self.blocks = nn.ModuleList(copy.deepcopy(list(net._blocks[end + 1:])))
        self.conv_head, self.bn1 = copy.deepcopy(net._conv_head), copy.deepcopy(net._bn1)
        self.act = net._swish
        self.drop = nn.Dropout(0.2)
        d = net._conv_head.out_channels
        self.fc = CosineClassifier(d, n_classes) if head == "cosine" else nn.Linear(d, n_classes)

    def embed(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            h = block(h)
        return self.act(self.bn1(self.conv_head(h))).mean(dim=(2, 3))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.embed(h)))


class FinetunedFeatures(nn.Module):
    """``forward(x) -> (features, logits)``: frozen prefix + fine-tuned tail.

    ``features``: (B, dim) float32, average-pooled last layer of the fine-tuned network;
    ``logits``: (B, n_classes) of its classifier (the annotator's labels, not ImageNet).
    With ``symmetries=8`` the features are the mean over the 8 symmetries of the square
    of the input (:func:`d4`; test-time augmentation, e.g. Simonyan & Zisserman 2015):
    the same symmetries the tail was trained with, so the vector of an image no longer
    depends on which way up the part was photographed. 8x the network cost.
    """

    def __init__(self, base: EfficientNetFeatures, tail: Tail, end: int, symmetries: int = 1):
        super().__init__()
        self.base, self.tail, self.end, self.symmetries = base, tail, end, int(symmetries)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, s = x.shape[0], self.symmetries
        if s > 1:
            x = torch.cat([d4(x, k) for k in range(s)])
        e = self.tail.embed(run_prefix(self.base.net, x.contiguous(memory_format=torch.channels_last), self.end))
        if s > 1:
            e = e.view(s, b, -1).mean(dim=0)
        return e, self.tail.fc(e)


def embed_cached_maps(maps: np.ndarray, valid: np.ndarray, tail: "Tail", dev: torch.device,
                      chunk: int = 256, step=None) -> np.ndarray:
    """The fine-tuned vectors of every image: the trained tail on its cached prefix maps.

    Parameters
    ----------
    maps : ndarray (n, C, h, w), float16
        The prefix maps (:class:`labeler.embedding.prefix_cache.PrefixCache`'s ``maps``,
        usually memory-mapped; read ``chunk`` rows at a time).
    valid : ndarray (n,), bool
        Rows whose map was computed; the others (unreadable images) get zero vectors.
    tail : the trained tail (blocks after the prefix, head convolution, classifier)
    dev : torch.device
    chunk : int
        Rows per forward pass.
    step : callable(stage, done, total), optional
        Called before each chunk with ``('re-embedding', rows done, rows)``; may raise to stop.

    Returns
    -------
    ndarray (n, D), float32
        D = the head convolution's channels (1280 for Lite0).
    """
    out = np.zeros((len(valid), tail.conv_head.out_channels), np.float32)
    with torch.inference_mode():
        for i in range(0, len(out), chunk):
            if step is not None:
                step("re-embedding", i, len(out))
            ok = np.flatnonzero(valid[i:i + chunk])
            if len(ok):
                h = torch.from_numpy(np.asarray(maps[i:i + chunk])[ok]).to(dev).float()
                out[i + ok] = tail.embed(h.contiguous(memory_format=torch.channels_last)).cpu().numpy()
    return out


def save_finetuned(project, name: str, model: dict) -> Path:
    """Write a fine-tuned network's trained part to ``models/<name>.pt``, recorded in the
    integrity manifest (:func:`labeler.integrity.write_tracked`).

    Serialised in memory, then written atomically: a full disk raises the OSError itself
    (torch's own writer would wrap it) and leaves no half model behind.

    Parameters
    ----------
    name : str
        The feature set's name (``finetuned-1`` ...).
    model : dict
        ``tail`` (the trained blocks' state dict of tensors), ``classes`` (list of str),
        ``prefix_end`` (int), ``head``, ``loss``, ``backbone`` (str).

    Returns
    -------
    Path
        The file written.
    """
    from ..integrity import write_tracked

    buf = io.BytesIO()
    torch.save(model, buf)
    path = project.models_dir / f"{name}.pt"
    project.models_dir.mkdir(parents=True, exist_ok=True)
    with write_tracked(project, path) as f:
        f.write(buf.getbuffer())
    return path


def load_finetuned(project, name: str) -> dict:
    """The trained part of fine-tuned feature set ``name`` (what :func:`save_finetuned`
    wrote), after checking the file against the manifest; tensors on the CPU.

    Raises
    ------
    CorruptFileError
        ``models/<name>.pt`` is truncated, altered or swapped: one line naming it and
        ``labeler finetune``, which trains it again.
    ProjectError
        No such file.
    """
    from ..integrity import verify

    path = project.models_dir / f"{name}.pt"
    if not path.is_file():
        raise ProjectError(f"no fine-tuned model {path.name} in {project.models_dir}")
    verify(project, path)
    return torch.load(path, map_location="cpu", weights_only=True)


def load_tail(project, name: str, device: str = "cpu") -> tuple[nn.Module, int]:
    """The trained part of fine-tuned feature set ``name`` as a network, in eval mode.

    Returns
    -------
    (tail, prefix_end)
        ``tail.embed(maps)`` maps (B, C, h, w) float32 prefix maps to (B, D) vectors and
        ``tail(maps)`` to (B, n_classes) logits; ``prefix_end`` is the last frozen block
        (the maps are :func:`labeler.embedding.prefix_cache.run_prefix` up to it).

    Raises
    ------
    CorruptFileError, ProjectError
        As :func:`load_finetuned`.
    """
    from .backbones import load_backbone

    saved = load_finetuned(project, name)
    net = load_backbone(saved["backbone"], device="cpu").model.net
    tail = Tail(net, int(saved["prefix_end"]), len(saved["classes"]), saved.get("head", "linear"))
    tail.load_state_dict(saved["tail"])
    return tail.to(device).eval(), int(saved["prefix_end"])
