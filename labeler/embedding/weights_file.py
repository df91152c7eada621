"""Reading a weights file a user gives (``--weights`` or a checkpoint path): one reader for
the built-in backbones and for your own (timm) models."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..errors import BadInputError


def read_state_dict(path: Path) -> dict:
    """A state dict from a file: a bare state dict, or a checkpoint dict holding one under
    'state_dict', 'model' or 'model_state_dict'; a DataParallel 'module.' prefix is dropped.

    Raises
    ------
    BadInputError
        The file cannot be read by ``torch.load(weights_only=True)`` or holds no state dict.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise BadInputError(
            f"cannot read weights file {path}: {e}. Expected a file written by "
            "torch.save(model.state_dict(), path)."
        ) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise BadInputError(f"weights file {path} does not hold a state dict")
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, 64 hex digits (``hashlib.file_digest``)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
