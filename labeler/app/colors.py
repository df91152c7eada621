"""Colours of the map: a colouring per mode (cluster, label, suggestion, suggestion
confidence) as category codes and a colour scale, sent as typed arrays.

Pure functions of plain values (and an :class:`~labeler.app.state.AppContext` for
:func:`coloring`); :mod:`labeler.app.views` builds the figure from them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from .label_codes import point_label_codes
from .state import AppContext

# A qualitative palette (Plotly's "Dark24" and "Light24" without the greys): distinct
# hues for neighbouring cluster ids; ids beyond it wrap around.
PALETTE = [
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#B68100", "#750D86", "#EB663B",
    "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16",
    "#A777F1", "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038", "#FD3216",
    "#00FE35", "#6A76FC", "#0DF9FF", "#F6F926", "#FF9616", "#479B55", "#EEA6FB", "#DC587D",
]
NOISE_COLOR = "#c9ccd1"
UNLABELLED_COLOR = "#c9ccd1"

COLOR_BY_CLUSTER = "cluster"
COLOR_BY_LABEL = "label"
COLOR_BY_SUGGESTION = "suggestion"  # labels, plus confident suggestions for unlabelled points
COLOR_BY_CONFIDENCE = "confidence"  # unlabelled points: their suggestion's confidence; labelled: their label
#: Sequential scale of the confidence mode: Viridis (perceptually uniform, readable in grey and by
#: colour-blind readers; van der Walt & Smith 2015, matplotlib), as in plotly.colors.sequential.
SEQUENTIAL = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
              "#b5de2b", "#fde725"]
CONFIDENCE_STEPS = 32  # confidence is drawn in 32 flat steps (each step x point state is one code)
#: Point states of the map, drawn as the alpha of the marker colour: state = unlabelled + 2 * dimmed.
N_STATES = 4

def typed_array(a: np.ndarray) -> dict:
    """A numeric array as Plotly's typed-array spec ``{dtype, bdata}`` (base64).

    plotly.js (>= 2.28) decodes it; it is 3-6x smaller than a JSON list of
    numbers. Used for arrays put in a :class:`dash.Patch`, which, unlike a
    figure, does not encode numpy arrays itself.
    """
    a = np.ascontiguousarray(a)
    kinds = {"u1": np.uint8, "u2": np.uint16, "i4": np.int32, "f4": np.float32}
    for code, dt in kinds.items():
        if a.dtype == dt:
            return {"dtype": code, "bdata": base64.b64encode(a.tobytes()).decode("ascii")}
    raise TypeError(f"no typed-array code for dtype {a.dtype}")


def cluster_color(cluster: int) -> str:
    """The colour of a cluster id (noise grey); stable across refreshes."""
    return NOISE_COLOR if cluster < 0 else PALETTE[cluster % len(PALETTE)]


@dataclass
class Coloring:
    """Marker colours of the map as category codes and a step colour scale.

    Attributes
    ----------
    codes : ndarray (n_points,), uint8 or uint16
        Category of each point (0 = noise / unlabelled).
    colorscale : list of [position, colour]
        Piecewise-constant: code i is drawn in ``colors[i]`` with cmin=-0.5,
        cmax=len(colors)-0.5.
    legend : list of (name, colour, count)
    code_colors : list of str, optional
        The flat ``'#rrggbb'`` colour of each code where ``colors`` does not give it
        (the confidence mode: grey, :data:`CONFIDENCE_STEPS` steps of
        :data:`SEQUENTIAL`, then the labels). :meth:`marker` draws each code in it,
        with the point's state as the alpha.
    """

    codes: np.ndarray
    colors: list[str]
    legend: list[tuple[str, str, int]]
    scale: list[list] | None = None  # a colour scale of its own (else the steps of ``colors``)
    n_codes: int | None = None  # codes 0 .. n_codes - 1 (else len(colors))
    colorbar: tuple[str, list[str], int] | None = None  # (title, colours low -> high, points) for the legend
    code_colors: list[str] | None = None  # the flat colour of each code (else ``colors``)

    @property
    def colorscale(self) -> list[list]:
        if self.scale is not None:
            return self.scale
        return step_scale(self.colors or [NOISE_COLOR])

    def marker(self, state: np.ndarray | None = None, alpha=None) -> dict:
        """The marker properties that change on a recolour.

        Without ``state``: the category codes and :attr:`colorscale`. With it,
        each point's category and state are sent as one code
        (:func:`state_codes`) and the colour scale carries the state as the
        alpha of the colour, so no per-point opacity array goes to the page.

        Parameters
        ----------
        state : ndarray (n_points,), uint8, optional
            State of each point, 0 .. :data:`N_STATES` - 1 (:func:`point_state`).
        alpha : sequence of float, length :data:`N_STATES`
            Opacity of each state in [0, 1] (needed with ``state``).
        """
        if state is None:
            return {
                "color": typed_array(self.codes),
                "colorscale": self.colorscale,
                "cmin": -0.5,
                "cmax": max(self.n_codes or len(self.colors), 1) - 0.5,
            }
        codes, flat = self.state_colors(state, alpha)
        colours = [rgba(c, a) for c, a in flat]
        return {"color": typed_array(codes), "colorscale": step_scale(colours or [rgba(NOISE_COLOR, 1.0)]),
                "cmin": -0.5, "cmax": max(len(colours), 1) - 0.5}

    def state_colors(self, state: np.ndarray, alpha) -> tuple[np.ndarray, list[tuple[str, float]]]:
        """Each point's (category, state) code and the colour of each code: what
        :meth:`marker` sends, and what the server-drawn raster of a large map
        (:mod:`labeler.app.map_raster`) paints, so the two agree.

        Parameters
        ----------
        state : ndarray (n_points,), uint8
            State of each point (:func:`point_state`).
        alpha : sequence of float, length :data:`N_STATES`
            Opacity of each state in [0, 1].

        Returns
        -------
        codes : ndarray (n_points,), uint8 or uint16
            :func:`state_codes` of the points.
        colours : list of (str, float)
            ``('#rrggbb', opacity)`` of each code.
        """
        codes, pairs = state_codes(self.codes, state)
        flat = self.code_colors or self.colors or [NOISE_COLOR]
        return codes, [(flat[min(int(c), len(flat) - 1)], float(alpha[int(s)])) for c, s in pairs]


def hex_rgb(colour: str) -> tuple[int, int, int]:
    """``'#rrggbb'`` as (r, g, b), each 0-255."""
    h = colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def rgba(colour: str, alpha: float) -> str:
    """``'#rrggbb'`` and an opacity as a CSS ``'rgba(r,g,b,a)'`` string."""
    r, g, b = hex_rgb(colour)
    return f"rgba({r},{g},{b},{round(float(alpha), 4)})"


def rgba_array(colours: list[tuple[str, float]]) -> np.ndarray:
    """``[('#rrggbb', opacity), ...]`` as an RGBA array (k, 4), float64 in [0, 1]."""
    out = np.zeros((len(colours), 4), dtype=np.float64)
    for i, (c, a) in enumerate(colours):
        out[i] = [v / 255 for v in hex_rgb(c)] + [float(a)]
    return out


def step_scale(colours: list[str]) -> list[list]:
    """A piecewise-constant Plotly colour scale: with cmin=-0.5 and
    cmax=len(colours)-0.5, integer i is drawn in ``colours[i]``."""
    k = max(len(colours), 1)
    scale = []
    for i, c in enumerate(colours):
        scale += [[i / k, c], [(i + 1) / k, c]]
    scale[-1][0] = 1.0
    return scale


def point_state(labelled: np.ndarray, in_open: np.ndarray | None = None) -> np.ndarray:
    """State of each map point: 0 labelled, 1 unlabelled, 2 / 3 the same outside the
    open cluster (dimmed; only while a cluster with points is open). (n_points,) uint8."""
    state = (~np.asarray(labelled, bool)).astype(np.uint8)
    if in_open is not None and np.any(in_open):
        state += 2 * (~np.asarray(in_open, bool)).astype(np.uint8)
    return state


def state_codes(codes: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One code per point for its (category, state) pair, numbered over the pairs present.

    Parameters
    ----------
    codes : ndarray (n,), unsigned int
        Category codes (:attr:`Coloring.codes`).
    state : ndarray (n,), uint8
        States, 0 .. :data:`N_STATES` - 1 (:func:`point_state`).

    Returns
    -------
    codes : ndarray (n,), uint8 (uint16 beyond 256 pairs present)
        Code of each point, 0 .. m - 1.
    pairs : ndarray (m, 2), int64
        (category, state) of each code, in code order (category-major).
    """
    pair = np.asarray(codes, dtype=np.int32) * N_STATES + np.asarray(state, dtype=np.int32)
    present = np.bincount(pair, minlength=1) > 0 if len(pair) else np.zeros(0, bool)
    rank = np.cumsum(present) - 1
    used = np.flatnonzero(present)
    out = rank[pair] if len(pair) else np.zeros(0, np.int64)
    return _codes(out, len(used)), np.c_[used // N_STATES, used % N_STATES]


def _codes(values: np.ndarray, n: int) -> np.ndarray:
    return values.astype(np.uint8 if n <= 255 else np.uint16)


def color_by_cluster(clusters: np.ndarray) -> Coloring:
    """Colour map points by cluster id; noise (-1) grey."""
    clusters = np.asarray(clusters, dtype=np.int64)
    uniq = [int(c) for c in np.unique(clusters) if c >= 0]
    lookup = np.zeros(len(clusters), dtype=np.int64)
    if uniq:
        pos = np.searchsorted(np.array(uniq), clusters)
        lookup = np.where(clusters >= 0, pos + 1, 0)
    colors = [NOISE_COLOR] + [cluster_color(c) for c in uniq]
    counts = np.bincount(lookup, minlength=len(colors))
    legend = [("noise", NOISE_COLOR, int(counts[0]))] + [
        (f"cluster {c}", colors[j + 1], int(counts[j + 1])) for j, c in enumerate(uniq)
    ]
    return Coloring(_codes(lookup, len(colors)), colors, legend)


def color_by_label(labels: np.ndarray) -> Coloring:
    """Colour map points by current label ('' = unlabelled, grey); labels sorted by name
    so a label keeps its colour while others are added."""
    labels = np.asarray(labels, dtype=object)
    names = sorted({str(v) for v in labels if v})
    index = {name: j + 1 for j, name in enumerate(names)}
    codes = np.fromiter((index.get(v, 0) if v else 0 for v in labels), dtype=np.int64, count=len(labels))
    colors = [UNLABELLED_COLOR] + [PALETTE[j % len(PALETTE)] for j in range(len(names))]
    counts = np.bincount(codes, minlength=len(colors))
    legend = [("unlabelled", UNLABELLED_COLOR, int(counts[0]))] + [
        (name, colors[j + 1], int(counts[j + 1])) for j, name in enumerate(names)
    ]
    return Coloring(_codes(codes, len(colors)), colors, legend)


def color_by_label_codes(codes: np.ndarray, names: list[str]) -> Coloring:
    """:func:`color_by_label` from label codes: the same colouring, without a string per point.

    Parameters
    ----------
    codes : ndarray (n_points,) int
        0 = unlabelled, i >= 1 = ``names[i - 1]`` (:class:`~labeler.app.label_codes.PointLabelCodes`).
    names : list of str
        Names of the codes; a name no point carries is left out of the colours
        and the legend.
    """
    codes = np.asarray(codes)
    counts = np.bincount(codes, minlength=len(names) + 1)
    present = sorted((j for j in range(1, len(names) + 1) if counts[j] > 0), key=lambda j: str(names[j - 1]))
    rank = np.zeros(len(names) + 1, dtype=np.int64)
    rank[present] = np.arange(1, len(present) + 1)
    colors = [UNLABELLED_COLOR] + [PALETTE[r % len(PALETTE)] for r in range(len(present))]
    legend = [("unlabelled", UNLABELLED_COLOR, int(counts[0]))] + [
        (str(names[j - 1]), colors[r + 1], int(counts[j])) for r, j in enumerate(present)
    ]
    return Coloring(_codes(rank[codes], len(colors)), colors, legend)


def _color_by_current_label(ctx: AppContext) -> Coloring:
    codes = point_label_codes(ctx)
    return color_by_label_codes(codes.codes(ctx.store), codes.names)


def point_labelled(ctx: AppContext) -> np.ndarray:
    """Which map points carry a label, (n_points,) bool (from the kept label codes)."""
    return point_label_codes(ctx).labelled(ctx.store)


def color_by_confidence(labels: np.ndarray, confidence: np.ndarray) -> Coloring:
    """Colour unlabelled points by the confidence of their suggestion on a sequential
    scale (:data:`SEQUENTIAL`, 0 to 1); labelled points by their label, as
    :func:`color_by_label` does; unlabelled points without a suggestion grey.

    Parameters
    ----------
    labels : ndarray (n,), object
        Current label per point ('' = unlabelled).
    confidence : ndarray (n,), float
        Calibrated confidence of each point's suggestion in [0, 1] (NaN = none).

    Returns
    -------
    Coloring
        Codes: 0 = no suggestion, 1 .. :data:`CONFIDENCE_STEPS` = confidence 0 .. 1,
        then one code per label; ``colorbar`` describes the scale for the legend.
    """
    by_label = color_by_label(labels)
    conf = np.asarray(confidence, dtype=np.float64)
    unlabelled = by_label.codes == 0
    has = unlabelled & np.isfinite(conf)
    codes = np.where(unlabelled, 0, CONFIDENCE_STEPS + by_label.codes.astype(np.int64))
    codes[has] = 1 + np.rint(np.clip(conf[has], 0, 1) * (CONFIDENCE_STEPS - 1)).astype(np.int64)
    n_labels = len(by_label.colors) - 1
    k = 1 + CONFIDENCE_STEPS + n_labels
    code_colors = [UNLABELLED_COLOR] + sequential_steps(CONFIDENCE_STEPS) + by_label.colors[1:]
    n_none = int(unlabelled.sum() - has.sum())
    legend = [("no suggestion", UNLABELLED_COLOR, n_none)] + [
        (f"{name} (labelled)", colour, count) for name, colour, count in by_label.legend[1:]]
    return Coloring(_codes(codes, k), by_label.colors, legend, scale=step_scale(code_colors), n_codes=k,
                    colorbar=("suggestion confidence", SEQUENTIAL, int(has.sum())), code_colors=code_colors)


def sequential_steps(n: int) -> list[str]:
    """``n`` colours evenly spaced along :data:`SEQUENTIAL` (linear in RGB between its
    stops, as Plotly interpolates a colour scale), low to high, as ``'#rrggbb'``."""
    stops = np.array([hex_rgb(c) for c in SEQUENTIAL], dtype=np.float64)
    t = np.linspace(0, len(SEQUENTIAL) - 1, n) if n > 1 else np.zeros(1)
    lo = np.minimum(np.floor(t).astype(int), len(SEQUENTIAL) - 2)
    rgb = stops[lo] + (t - lo)[:, None] * (stops[lo + 1] - stops[lo])
    return ["#%02x%02x%02x" % tuple(int(round(v)) for v in row) for row in rgb]


# Colour modes of the map: mode -> (radio label, function(ctx) -> Coloring). Another
# mode is one more entry here.
COLOR_MODES: dict = {
    COLOR_BY_CLUSTER: ("cluster", lambda ctx: _color_by_current_cluster(ctx)),
    COLOR_BY_LABEL: ("label", _color_by_current_label),
    COLOR_BY_SUGGESTION: ("suggestion", lambda ctx: _color_by_suggestion(ctx)),
    COLOR_BY_CONFIDENCE: ("suggestion confidence", lambda ctx: _color_by_confidence(ctx)),
}


def _color_by_current_cluster(ctx: AppContext) -> Coloring:
    # One colouring per clustering: the app keeps one Assignment object per clustering id
    # (a new one when clusters are edited or the points reload), so its identity is the key.
    # Saves color_by_cluster's np.unique of every point on each recolour (140 ms at 1M).
    a = ctx.assignment()
    hit = getattr(ctx, "_cluster_coloring", None)
    if hit is None or hit[0] is not a:
        hit = (a, color_by_cluster(a.clusters))
        ctx._cluster_coloring = hit
    return hit[1]


def _color_by_suggestion(ctx: AppContext) -> Coloring:
    from .suggestions import suggested_point_labels  # the assist stage loads only when asked

    return color_by_label(suggested_point_labels(ctx))


def _color_by_confidence(ctx: AppContext) -> Coloring:
    from .suggestions import point_suggestions

    return color_by_confidence(point_label_codes(ctx).names_of(ctx.store), point_suggestions(ctx)[1])

def coloring(ctx: AppContext, mode: str) -> Coloring:
    """The current colouring of the map (a mode of :data:`COLOR_MODES`; cluster otherwise)."""
    _, fn = COLOR_MODES.get(mode, COLOR_MODES[COLOR_BY_CLUSTER])
    return fn(ctx)
