"""The Selection tab: the images selected on the map, ticked and labelled in one action."""

from . import callbacks, layout

__all__ = ["callbacks", "layout"]
