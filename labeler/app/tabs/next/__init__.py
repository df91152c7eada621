"""The Next tab: suggestions with their two numbers, bulk and single accept, the label-next queue."""

from . import callbacks, layout

__all__ = ["callbacks", "layout"]
