"""The Review tab: near-duplicate groups and likely label errors."""

from . import callbacks, layout

__all__ = ["callbacks", "layout"]
