"""Small reusable pieces of the page: thumbnails, grids, cluster cards, messages."""

from __future__ import annotations

from dash import dcc, html

from ..labels import MAX_LABEL_LENGTH
from . import ids
from .routes import anomaly_url, image_url, thumb_url


HINT_TITLE = ("the backbone's most frequent ImageNet top-1 class here and its mean probability: "
              "a hint only, shown when confident (hide it with 'ImageNet hints')")


def message(text: str, kind: str = "ok") -> html.Div:
    """A one-line status message ('ok', 'warn' or 'error')."""
    return html.Div(text, className=f"msg msg-{kind}", role="status")


def label_input(id_: str, placeholder: str = "label") -> dcc.Input:
    """A text box that autocompletes from the existing labels (the shared datalist)."""
    return dcc.Input(id=id_, type="text", placeholder=placeholder, list=ids.LABEL_OPTIONS,
                     debounce=False, className="label-input", autoComplete="off",
                     maxLength=MAX_LABEL_LENGTH)


def pager(input_id: str, text_id: str, what: str = "page") -> html.Div:
    """A static '<what> [n] of N' control (the view below it is re-rendered, not the pager):
    ``input_id`` the page box (1-based), ``text_id`` the ' of N' text a callback fills."""
    return html.Div([html.Span(f"{what} ", className="muted"),
                     dcc.Input(id=input_id, type="number", min=1, value=1, className="page-input"),
                     html.Span(id=text_id, className="muted")], className="pager")


def outline_style(box, width: int, height: int) -> dict:
    """CSS position of a pixel box (x, y, w, h of a ``width`` × ``height`` image) over its
    thumbnail shown whole in a square (``object-fit: contain``), in percent of the square."""
    side = float(max(width, height)) or 1.0
    x, y, w, h = (float(v) for v in box)
    return {"left": f"{50 + 100 * (x - width / 2) / side:.2f}%", "top": f"{50 + 100 * (y - height / 2) / side:.2f}%",
            "width": f"{100 * w / side:.2f}%", "height": f"{100 * h / side:.2f}%"}


def thumb(grid: str, image_id: int, caption: str = "", *, checked: bool | None = None,
          title: str | None = None, badge: str | None = None, held: bool = False,
          outline: tuple | None = None) -> html.Div:
    """One thumbnail: clicking it opens the large view (full resolution, neighbours).

    ``checked`` None = no tick box; True/False = ticked/unticked tick box. ``held``: the
    image holds a label (unticked: left as it is; ticked: to be relabelled). ``outline``:
    ``(box, width, height)``, a region (pixels of the image) outlined on the thumbnail,
    which is then shown whole (a region search's match). Thumbnails of the Next tab carry
    the anomaly heat map, shown while the page has the class ``heat-on`` (its ``src`` is
    set then by ``assets/region.js``, so nothing loads while it is off).
    """
    inner = [html.Img(src=thumb_url(image_id), alt=f"image {image_id}")]
    cls = "thumb-btn"
    if outline is not None:
        inner.append(html.Div(className="region-box", style=outline_style(*outline)))
        cls += " thumb-contain"
    if grid == ids.GRID_NEXT:
        inner.append(html.Img(className="heat-overlay", alt="", **{"data-src": anomaly_url(image_id)}))
    children = [
        html.Button(
            inner + [html.Span("view", className="thumb-hint")],
            id=ids.thumb_similar(grid, image_id), className=cls, n_clicks=0,
            title=title or f"image {image_id}: open the large view",
        )
    ]
    if badge:
        children.append(html.Span(badge, className="thumb-badge"))
    if checked is not None:
        children.append(dcc.Checklist(
            id=ids.thumb_check(grid, image_id), options=[{"label": "", "value": int(image_id)}],
            value=[int(image_id)] if checked else [], className="thumb-check",
        ))
    children.append(html.Div(caption, className="thumb-caption"))
    cls = "thumb" + ("" if checked is None or checked else " thumb-excluded") + (" thumb-held" if held else "")
    return html.Div(children, className=cls)


def caption(image_id: int, facts: dict | None, score: float | None = None) -> str:
    """'#12 crack 0.93': id, label (nothing when unlabelled) and an optional similarity."""
    lab = (facts or {}).get("label")
    if lab and (facts or {}).get("stale"):
        lab += " (stale: file changed)"
    s = f"#{image_id} {lab}" if lab else f"#{image_id}"
    return s if score is None else f"{s} {score:.2f}"


def grid(items: list) -> html.Div:
    return html.Div(items, className="thumb-grid")


def cluster_card(row: dict, n_thumbs: int = 6, suggestion: str | None = None) -> html.Div:
    """A cluster in the list: size, labelled share, majority label, the suggestion for its
    unlabelled images (``suggestion``, a line of text), hint and representatives."""
    c = row["cluster"]
    name = "Noise (no cluster)" if c < 0 else f"Cluster {c}"
    stats = f"{row['size']:,} images · {100 * row['share']:.0f}% labelled"
    if row["majority"]:
        stats += f" · majority: {row['majority']} ({100 * row['majority_share']:.0f}%)"
    header = [html.Span(name, className="card-title"), html.Span(stats, className="card-stats")]
    if row["needs_review"]:
        header.append(html.Span("needs review", className="badge badge-warn", title=row["review_reason"]))
    body = [html.Div(header, className="card-header")]
    if suggestion:
        body.append(html.Div(suggestion, className="card-suggestion",
                             title="the suggestion model's leading label for the unlabelled images here "
                                   "(accept them in the Next tab)"))
    if row.get("hint"):
        body.append(html.Div(row["hint"], className="hint", title=HINT_TITLE))
    body.append(html.Div([thumb(ids.GRID_CARDS, i) for i in row["representatives"][:n_thumbs]],
                         className="thumb-strip"))
    body.append(html.Button("Open / label", id=ids.cluster_open_button(c), className="btn btn-small", n_clicks=0))
    return html.Div(body, className="cluster-card", **{"data-cluster": str(c)})


def full_image_link(image_id: int) -> html.A:
    return html.A("full image", href=image_url(image_id), target="_blank", rel="noopener")


def colorbar(title: str, colours: list[str], count: int) -> html.Span:
    """A horizontal colour bar for a sequential scale from 0 to 1 (the map's
    confidence mode): '<title> 0 [gradient] 1 (n points)'."""
    bar = html.Span(className="colorbar-bar", style={"background": f"linear-gradient(to right, {', '.join(colours)})"})
    return html.Span([f"{title} ", html.Span("0", className="muted"), bar, html.Span("1", className="muted"),
                      html.Span(f" {count:,} unlabelled", className="muted")], className="chip colorbar",
                     id="map-colorbar")


def legend(col, mode: str, max_items: int = 16, open_cluster=None) -> list:
    """Colour chips above the map: the largest categories with counts (noise /
    unlabelled first), then how to read the markers."""
    first, rest = col.legend[:1], sorted(col.legend[1:], key=lambda t: -t[2])
    items = []
    for j, (name, colour, count) in enumerate(first + rest[:max_items]):
        cls = "chip" + (" chip-open" if open_cluster is not None and name == f"cluster {open_cluster}" else "")
        items.append(html.Span([html.Span(className="chip-dot", style={"background": colour}),
                                f"{name} {count:,}"], className=cls))
        if j == 0 and getattr(col, "colorbar", None):
            items.append(colorbar(*col.colorbar))
    if len(rest) > max_items:
        items.append(html.Span(f"+{len(rest) - max_items} more", className="muted"))
    note = "solid = labelled, faded = unlabelled"
    if mode == "confidence":
        note = ("an unlabelled point's colour = the confidence of its suggestion; labelled points in "
                "their label's colour")
    if mode == "cluster":
        note += " · numbers are cluster ids (largest clusters)"
    if open_cluster is not None:
        note += f" · outlined: {'noise' if int(open_cluster) < 0 else f'cluster {open_cluster}'} (open), others dimmed"
    items.append(html.Span(note, className="muted legend-note"))
    return items


#: (keys, what they do): the dashboard's help overlay ('?') and the README table.
KEYS = [
    ("n  j  →", "open the next cluster (in the list's sort order)"),
    ("p  k  ←", "open the previous cluster"),
    ("1 … 9", "put the annotator's 1st … 9th label (existing labels, by name) in the label box"),
    ("l", "focus the label box (type a new label; Enter there = label and next)"),
    ("Enter", "label the open cluster (ticked images) and open the next cluster with unlabelled images; "
              "the label box is emptied, so a second Enter labels nothing"),
    ("Enter (in a label box)", "submit it (label the cluster, the selection, the search results, a Next "
                               "card, a Review group) and leave the box"),
    ("Esc (in a text box)", "leave the box: the keys are shortcuts again"),
    ("PageDown  PageUp", "next / previous page of the image grid (open cluster, Selection, Search)"),
    ("click a thumbnail", "large view: wheel = zoom, drag = pan, double-click = reset"),
    ("←  →  (large view)", "previous / next image of the same cluster (of the label-next queue "
                           "when opened from the Next tab)"),
    ("Esc", "close the large view (or this help)"),
    ("u  Ctrl+Z", "undo your last action"),
    ("r  Ctrl+Shift+Z", "redo what you last undid"),
    ("?", "show / hide this table"),
]


def help_table() -> html.Table:
    """The keyboard table (:data:`KEYS`) of the '?' overlay."""
    return html.Table([html.Tr([html.Td(html.Kbd(k)), html.Td(what)]) for k, what in KEYS])
