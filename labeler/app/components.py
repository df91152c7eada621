"""Small reusable pieces of the page: thumbnails, grids, cluster cards, messages."""

from __future__ import annotations

from dash import dcc, html

from ..labels import MAX_LABEL_LENGTH
from . import ids
from .routes import image_url, thumb_url


def message(text: str, kind: str = "ok") -> html.Div:
    """A one-line status message ('ok', 'warn' or 'error')."""
    return html.Div(text, className=f"msg msg-{kind}", role="status")


def label_input(id_: str, placeholder: str = "label") -> dcc.Input:
    """A text box that autocompletes from the existing labels (the shared datalist)."""
    return dcc.Input(id=id_, type="text", placeholder=placeholder, list=ids.LABEL_OPTIONS,
                     debounce=False, className="label-input", autoComplete="off",
                     maxLength=MAX_LABEL_LENGTH)


def thumb(grid: str, image_id: int, caption: str = "", *, checked: bool | None = None,
          title: str | None = None, badge: str | None = None) -> html.Div:
    """One thumbnail: clicking it opens the image with its nearest neighbours ('similar').

    ``checked`` None = no tick box; True/False = ticked/unticked tick box.
    """
    children = [
        html.Button(
            [html.Img(src=thumb_url(image_id), alt=f"image {image_id}"),
             html.Span("similar", className="thumb-hint")],
            id=ids.thumb_similar(grid, image_id), className="thumb-btn", n_clicks=0,
            title=title or f"image {image_id}: open with its nearest neighbours",
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
    cls = "thumb" + ("" if checked is None or checked else " thumb-excluded")
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


def cluster_card(row: dict, n_thumbs: int = 6) -> html.Div:
    """A cluster in the list: size, labelled share, majority label, hint and representatives."""
    c = row["cluster"]
    name = "Noise (no cluster)" if c < 0 else f"Cluster {c}"
    stats = f"{row['size']:,} images · {100 * row['share']:.0f}% labelled"
    if row["majority"]:
        stats += f" · majority: {row['majority']} ({100 * row['majority_share']:.0f}%)"
    header = [html.Span(name, className="card-title"), html.Span(stats, className="card-stats")]
    if row["needs_review"]:
        header.append(html.Span("needs review", className="badge badge-warn", title=row["review_reason"]))
    body = [html.Div(header, className="card-header")]
    if row.get("suggested_name"):
        body.append(html.Div(f"ImageNet hint: {row['suggested_name']}", className="hint",
                             title="the backbone's ImageNet top-1 classes in this cluster: a hint only"))
    body.append(html.Div([thumb(ids.GRID_CARDS, i) for i in row["representatives"][:n_thumbs]],
                         className="thumb-strip"))
    body.append(html.Button("Open / label", id=ids.cluster_open_button(c), className="btn btn-small", n_clicks=0))
    return html.Div(body, className="cluster-card", **{"data-cluster": str(c)})


def full_image_link(image_id: int) -> html.A:
    return html.A("full image", href=image_url(image_id), target="_blank", rel="noopener")


def legend(col, mode: str, max_items: int = 24) -> list:
    """Colour chips under the map toggle: labels with counts, or a note for clusters."""
    if mode == "cluster":
        n = sum(1 for name, _, _ in col.legend if name != "noise")
        noise = next((c for name, _, c in col.legend if name == "noise"), 0)
        return [html.Span(f"{n} clusters (numbers on the map are cluster ids) · ", className="muted"),
                html.Span(className="chip-dot", style={"background": col.colors[0]}),
                html.Span(f"noise {noise:,}", className="muted")]
    items = []
    for name, colour, count in col.legend[:max_items]:
        items.append(html.Span([html.Span(className="chip-dot", style={"background": colour}),
                                f"{name} {count:,}"], className="chip"))
    return items
