"""Feature types that keep local evidence: pooled mid-level stages and a second, larger scale.

Global average pooling of the last layer (the ``'global'`` feature type, what a backbone
returns by itself) averages a hair-line crack away. Two other types are offered, each a
wrapper around the same pretrained network, so the batched extraction loop
(:func:`labeler.embedding.extract.embed_files`) runs them unchanged:

``'multistage'``
    Average-pooled outputs of the last stride-8 stage, the last stride-16 stage and the
    final layer, each L2-normalised, concatenated (EfficientNet-Lite0: 40 + 112 + 1280 =
    1432-d; ResNet-50: layer2 + layer3 + layer4 = 3584-d). Same network cost as global.
``'multiscale'``
    GeM pooling (Radenović, Tolias & Chum 2018, TPAMI, p = 3) of the final layer at the
    backbone's input size and at twice that size, each L2-normalised, concatenated
    (2 x 1280-d). About 5x the cost of global (1 + 4 pixels).

Measured on the 2,624 ELPV cells with a research script no longer in the repository (docs/features.md
records it; ``labeler evaluate`` re-checks a project's feature set): both
beat global on every truth column; multiscale is best on most figures at 5x the cost.

The ImageNet logits every wrapper returns come from the average-pooled final layer at
the base input size, as for ``'global'``.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadInputError
from .networks import EfficientNetFeatures, ResNetFeatures
from .registry import FEATURE_TYPES

__all__ = ["FEATURE_TYPES", "MultiScaleFeatures", "MultiStageFeatures", "feature_backbone", "gem", "halve",
           "stage_maps"]

#: GeM exponent (Radenović et al. 2018 learn p ~ 3 for retrieval; 3 is their fixed default).
GEM_P = 3.0


def gem(x: torch.Tensor, p: float = GEM_P, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling over the spatial axes (Radenović et al. 2018).

    ``(mean over H, W of max(x, eps)^p)^(1/p)``: p = 1 is average pooling, p -> inf
    max pooling.

    Parameters
    ----------
    x : torch.Tensor
        (B, C, H, W) float.
    p : float, default 3
    eps : float, default 1e-6
        Lower clamp; GeM needs non-negative activations.

    Returns
    -------
    torch.Tensor
        (B, C), same dtype as ``x``.
    """
    return x.clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


#: 1-D weights of antialiased bilinear downsampling by exactly 2: the triangle filter
#: stretched by the scale factor, sampled at the input pixel centres (what
#: ``F.interpolate(..., mode='bilinear', antialias=True)`` computes, PIL's convention).
_HALVE_TAPS = (1.0, 3.0, 3.0, 1.0)


def halve(x: torch.Tensor) -> torch.Tensor:
    """Antialiased bilinear downsampling by 2, as a depthwise convolution.

    Equal (to float rounding) to ``F.interpolate(x, scale_factor=0.5, mode='bilinear',
    antialias=True)``: separable taps 1, 3, 3, 1 at stride 2, renormalised where they
    fall outside the image (at the borders). Written as convolutions so that the ONNX
    exporter can export it (it has no ``_upsample_bilinear2d_aa``).

    Parameters
    ----------
    x : torch.Tensor
        (B, C, H, W) float, H and W even.

    Returns
    -------
    torch.Tensor
        (B, C, H/2, W/2), same dtype.
    """
    c = int(x.shape[1])  # a constant when traced: ONNX Conv needs a kernel of known shape
    k = torch.tensor(_HALVE_TAPS, dtype=x.dtype, device=x.device)
    k2 = (k[:, None] * k[None, :])[None, None]
    num = F.conv2d(x, k2.expand(c, 1, 4, 4), stride=2, padding=1, groups=c)
    den = F.conv2d(x.new_ones(1, 1, x.shape[2], x.shape[3]), k2, stride=2, padding=1)
    return num / den


def _l2(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=1)


def _lite_stage_ends(net: nn.Module) -> tuple[int, int]:
    """Indices of the last EfficientNet block at stride 8 and at stride 16 (stem has stride 2)."""
    stride, ends = 2, {}
    for i, block in enumerate(net._blocks):
        s = block._block_args.stride
        stride *= int(s[0] if isinstance(s, (list, tuple)) else s)
        ends[stride] = i
    return ends[8], ends[16]


def stage_maps(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Feature maps of one forward pass of a wrapped backbone.

    Parameters
    ----------
    model : EfficientNetFeatures or ResNetFeatures
        A wrapper from :mod:`labeler.embedding.networks`.
    x : torch.Tensor
        (B, 3, S, S) float32 network input.

    Returns
    -------
    dict of str to torch.Tensor
        ``'s8'``: output of the last stride-8 stage, (B, C8, S/8, S/8); ``'s16'``: the last
        stride-16 stage, (B, C16, S/16, S/16); ``'head'``: the final layer before pooling,
        (B, dim, S/32, S/32).

    Raises
    ------
    BadInputError
        ``model`` is not a wrapper this module knows.
    """
    n = model.net
    x = x.contiguous(memory_format=torch.channels_last)
    if isinstance(model, EfficientNetFeatures):
        i8, i16 = _lite_stage_ends(n)
        out = {}
        h = n._swish(n._bn0(n._conv_stem(x)))
        for i, block in enumerate(n._blocks):
            h = block(h)
            if i == i8:
                out["s8"] = h
            elif i == i16:
                out["s16"] = h
        out["head"] = n._swish(n._bn1(n._conv_head(h)))
        return out
    if isinstance(model, ResNetFeatures):
        h = n.layer1(n.maxpool(n.relu(n.bn1(n.conv1(x)))))
        s8 = n.layer2(h)
        s16 = n.layer3(s8)
        return {"s8": s8, "s16": s16, "head": n.layer4(s16)}
    raise BadInputError(f"local feature types need an EfficientNet-Lite or ResNet backbone, not {type(model).__name__}")


def _classifier(model: nn.Module) -> nn.Module:
    return model.net._fc if isinstance(model, EfficientNetFeatures) else model.net.fc


def _stage_channels(model: nn.Module) -> tuple[int, int, int]:
    n = model.net
    if isinstance(model, EfficientNetFeatures):
        i8, i16 = _lite_stage_ends(n)
        return (n._blocks[i8]._block_args.output_filters, n._blocks[i16]._block_args.output_filters,
                n._conv_head.out_channels)
    return (n.layer2[-1].conv3.out_channels, n.layer3[-1].conv3.out_channels, n.layer4[-1].conv3.out_channels)


class MultiStageFeatures(nn.Module):
    """``forward(x) -> (features, logits)``: L2(GAP s8) ‖ L2(GAP s16) ‖ L2(GAP head).

    ``features`` is (B, C8 + C16 + dim) float32; ``logits`` (B, 1000) from the usual
    average-pooled final layer. The wrapped backbone wrapper is ``.base``.
    """

    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base
        self.dim = sum(_stage_channels(base))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = stage_maps(self.base, x)
        pooled = [m[k].mean(dim=(2, 3)) for k in ("s8", "s16", "head")]
        logits = _classifier(self.base)(pooled[-1])
        return torch.cat([_l2(p) for p in pooled], dim=1), logits


class MultiScaleFeatures(nn.Module):
    """``forward(x) -> (features, logits)`` for an input at twice the base size.

    ``x`` is (B, 3, 2S, 2S); the base-size view is ``x`` resized to S (bilinear,
    antialiased: :func:`halve`). ``features`` = L2(GeM head at S) ‖ L2(GeM head at 2S), (B, 2 dim)
    float32; ``logits`` from the average-pooled final layer at S.
    """

    def __init__(self, base: nn.Module, base_size: int):
        super().__init__()
        self.base = base
        self.base_size = base_size
        self.dim = 2 * _stage_channels(base)[2]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        small = halve(x)  # = F.interpolate(antialias=True) to x/2, but exportable to ONNX
        h_small = stage_maps(self.base, small)["head"]
        h_big = stage_maps(self.base, x)["head"]
        logits = _classifier(self.base)(h_small.mean(dim=(2, 3)))
        return torch.cat([_l2(gem(h_small)), _l2(gem(h_big))], dim=1), logits


def feature_backbone(backbone, feature_type: str):
    """The backbone to extract ``feature_type`` with, for :func:`~labeler.embedding.extract.embed_files`.

    Parameters
    ----------
    backbone : labeler.embedding.backbones.Backbone
        A loaded backbone (its model is shared, not copied).
    feature_type : {'global', 'multistage', 'multiscale'}

    Returns
    -------
    Backbone
        ``backbone`` itself for ``'global'``; otherwise a copy whose ``model`` returns the
        chosen features, ``features`` set to ``feature_type``, ``dim`` to their width and,
        for ``'multiscale'``, ``input_size`` and the spec's sizes doubled (images are decoded
        at the larger size).

    Raises
    ------
    BadInputError
        Unknown ``feature_type``, or a backbone without known stages.
    """
    if feature_type not in FEATURE_TYPES:
        raise BadInputError(f"unknown feature type {feature_type!r}; expected one of {FEATURE_TYPES}")
    if feature_type == "global":
        return backbone
    if not isinstance(backbone.model, (EfficientNetFeatures, ResNetFeatures)):
        raise BadInputError(f"feature type {feature_type!r} is not available for backbone {backbone.name}")
    if feature_type == "multistage":
        model = MultiStageFeatures(backbone.model)
        return dataclasses.replace(backbone, model=model.eval(), dim=model.dim, features=feature_type)
    model = MultiScaleFeatures(backbone.model, backbone.input_size)
    # The decoders size images by the spec: without a doubled spec both scales would
    # see the base-size image (two copies of the same vector).
    spec = dataclasses.replace(backbone.spec, input_size=2 * backbone.spec.input_size,
                               crop_short_side=2 * backbone.spec.crop_short_side)
    return dataclasses.replace(backbone, model=model.eval(), dim=model.dim, input_size=spec.input_size, spec=spec,
                               features=feature_type)


def embed_project(project, backbone, *, view: str = "whole", device: str = "auto", batch_size: int = 32,
                  num_workers: int | None = None, progress: bool = True,
                  runtime: str = "auto") -> tuple["np.ndarray", list[tuple[int, str]]]:
    """Run ``backbone`` over every embedded image of a project, rows aligned with ``images.row``.

    Parameters
    ----------
    project : labeler.project.Project
    backbone : Backbone
        E.g. from :func:`feature_backbone`; ``backbone.dim`` columns.
    view, device, batch_size, num_workers, progress
        As for :func:`labeler.embedding.extract.embed_files` (no thumbnails written).
    runtime : {'auto', 'torch', 'onnxruntime'}, default 'auto'
        'auto': ONNX Runtime on the CPU (the model exported and checked against torch
        first; torch when that fails, said in one logged line), torch on GPUs.

    Returns
    -------
    features : ndarray (n_rows, backbone.dim), float32
        Zero rows for images that could not be read now.
    failures : list of (int, str)
        ``(image id, reason)`` of those images.
    """
    import numpy as np

    from .extract import embed_files

    table = project.store.image_table()
    row_of = {int(r["id"]): int(r["row"]) for r in table}
    items = [(int(r["id"]), project.image_path(r["path"])) for r in table]
    out = np.zeros((project.store.next_row(), backbone.dim), np.float32)
    failures: list[tuple[int, str]] = []
    for b in embed_files(items, backbone, view=view, batch_size=batch_size, num_workers=num_workers,
                         device=device, progress=progress, runtime=runtime):
        for j, i in enumerate(b.ids):
            out[row_of[int(i)]] = b.features[j]
        failures += b.failures
    return out, failures


def compute_feature_set(project, feature_type: str, *, name: str | None = None, device: str = "auto",
                        batch_size: int = 32, num_workers: int | None = None, progress: bool = True) -> dict:
    """Compute another feature type from a project's stored images and save it as a feature set.

    The project's backbone (its ImageNet weights, as recorded at ingest) is run again;
    ingest's embeddings are not touched. The new set is stored but not activated.

    Parameters
    ----------
    project : labeler.project.Project
    feature_type : {'global', 'multistage', 'multiscale'}
    name : str, optional
        Feature set name (default: ``feature_type``).
    device, batch_size, num_workers, progress
        See :func:`embed_project`.

    Returns
    -------
    dict
        ``name``, ``dim``, ``rows``, ``seconds`` and ``failures`` (list of (id, reason)).

    Raises
    ------
    ProjectError
        The project has not been ingested.
    BadInputError
        Unknown feature type, or a backbone without known stages.
    """
    import time

    from ..errors import ProjectError
    from .backbones import load_backbone
    from .feature_sets import save_feature_set

    meta = project.store.get_meta("backbone")
    if not meta:
        raise ProjectError("the project has no embeddings yet: run `labeler ingest` first")
    settings = project.settings()
    bb = feature_backbone(load_backbone(meta["name"], weights=settings.weights or None, device=device),
                          feature_type)
    t = time.perf_counter()
    feats, failures = embed_project(project, bb, view=meta.get("view", "whole"), device=device,
                                    batch_size=batch_size, num_workers=num_workers, progress=progress)
    seconds = time.perf_counter() - t
    name = save_feature_set(project, name or feature_type, feats, {
        "kind": "frozen", "feature_type": feature_type, "backbone": meta["name"], "seconds": round(seconds, 1)})
    return {"name": name, "dim": int(feats.shape[1]), "rows": int(feats.shape[0]), "seconds": seconds,
            "failures": failures}
