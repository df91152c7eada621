"""Choosing and validating the torch device the embedding stage runs on."""

from __future__ import annotations

import torch

from ..errors import BadInputError

__all__ = ["pick_device"]


def pick_device(device: str | None = None) -> str:
    """Choose the torch device: ``'cuda'`` when available, else ``'cpu'``.

    Parameters
    ----------
    device : str, optional
        ``None`` or ``'auto'`` to choose; otherwise validated and returned
        (``'cpu'``, ``'cuda'``, ``'cuda:1'``, ``'mps'``).

    Returns
    -------
    str
        A device string torch accepts.

    Raises
    ------
    BadInputError
        The device string is malformed or that device is not available.
    """
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise BadInputError(f"invalid device {device!r}: {e}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BadInputError(f"device {device!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BadInputError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise BadInputError("device 'mps' requested but it is not available")
    elif dev.type != "cpu":
        raise BadInputError(f"unsupported device {device!r}; use 'cpu', 'cuda' or 'mps'")
    return str(device)
