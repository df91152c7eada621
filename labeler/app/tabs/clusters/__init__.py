"""The Clusters tab: cluster cards, the open cluster's grid, the ImageNet hints switch."""

from . import callbacks, layout

__all__ = ["callbacks", "layout"]
