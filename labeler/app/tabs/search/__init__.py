"""The Search tab: search by image, text or region, most anomalous first; labelling from the result."""

from . import callbacks, layout

__all__ = ["callbacks", "layout"]
