"""The Refine tab: split (preview, apply), merge, move."""

from . import callbacks, layout

__all__ = ["callbacks", "layout"]
