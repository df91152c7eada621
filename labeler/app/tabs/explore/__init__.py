"""The map (the page's left half): colour modes, legend, hover card, lasso and box
selection, the zoom of a raster-drawn map."""

from . import callbacks, layout

__all__ = ["callbacks", "layout"]
