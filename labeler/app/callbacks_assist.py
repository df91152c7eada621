"""The Next tab: suggestions with their two numbers (the calibrated probability, and what
held-out labels vouch for), bulk and one-by-one accept, and the "label next" queue
(:mod:`labeler.assist`).

A bulk accept below probability 0.5 (a threshold, or a suggestion the budget takes)
shows a warning and runs only on a second click of the same request.

Writes go through :func:`labeler.app.actions.run` like every other write: accepting
calls :func:`labeler.assist.suggest.accept` (which calls
:func:`labeler.labels.accept_suggestions`), labelling a queue image calls
:func:`labeler.labels.label_images`. Suggestions are recomputed only after a label
action (they are cached by the newest action id).
"""

from __future__ import annotations

import numpy as np
from dash import ALL, Dash, Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from .. import labels
from ..assist.next import next_to_label
from ..assist.evidence import VOUCH_LEVEL, probability_text, vouch_text
from ..assist.suggest import LOW_PROBABILITY, LowProbabilityError, accept, low_probability, plan_accept, suggest
from ..errors import BadInputError, LabelerError
from . import ids
from .actions import run, write_callback
from .common import annotator_name
from .components import message, thumb
from .state import AppContext

NEXT_N = 8
#: Suggestions at least this confident colour the map in the "suggestion" mode.
MAP_MIN_CONFIDENCE = 0.8
# Component ids of the bulk accept's budget and confirmation (this tab's own).
NEXT_ACCEPT_BUDGET = "next-accept-budget"  # expected-error budget, in %
NEXT_ACCEPT_WARN = "next-accept-warn"  # live warning below 0.5
NEXT_ACCEPT_PENDING = "next-accept-pending"  # the low accept awaiting a second click


def next_tab() -> dcc.Tab:
    """The tab's static part; the lists are filled by the callbacks."""
    return dcc.Tab(label="Next", value=ids.TAB_NEXT, children=[
        html.H4("Suggestions: probability, and what held-out labels vouch for"),
        html.Div(id=ids.NEXT_BANDS),
        html.Div([
            html.Span("accept suggestions of ", className="muted"),
            dcc.Dropdown(id=ids.NEXT_ACCEPT_LABEL, placeholder="label", className="dropdown"),
            html.Span(" with vouched confidence ≥ ", className="muted",
                      title="the probability capped by what held-out labels back; leave empty to use the budget alone"),
            dcc.Input(id=ids.NEXT_ACCEPT_MIN, type="number", min=0, max=1, step=0.01, value=0.95,
                      className="page-input"),
            html.Span(" and/or the largest set expected ≤ ", className="muted",
                      title="expected wrong count sum(1 - probability), as a share of the set"),
            dcc.Input(id=NEXT_ACCEPT_BUDGET, type="number", min=0, max=100, step=0.5, value=None,
                      placeholder="%", className="page-input"),
            html.Span("% wrong ", className="muted"),
            html.Button("Accept", id=ids.NEXT_ACCEPT_BUTTON, className="btn btn-primary", n_clicks=0),
            html.Span(id=NEXT_ACCEPT_WARN, className="small", style={"color": "var(--warn)"}),
            dcc.Store(id=NEXT_ACCEPT_PENDING, data=None),
        ], className="action-row wrap"),
        html.H4("Label next: the images that teach the model most"),
        html.Div(id=ids.NEXT_LIST),
        html.P("Suggestions are never labels until accepted; each accept is one undoable action. "
               "Probability: how likely a suggestion is right. Vouched: whether enough held-out labels "
               "back it (else how many more it takes).", className="muted small"),
    ])


# -- plain functions (tested directly) ------------------------------------------------------
def _point_arrays(actx: AppContext) -> dict:
    """Per map point: code (int64, -1 = labelled or none), confidence (vouched), probability,
    evidence, to_vouch, by_cluster (NaN / 0 / False where code is -1); and classes."""
    n = actx.n_points
    out = {"code": np.full(n, -1, np.int64), "confidence": np.full(n, np.nan, np.float32),
           "probability": np.full(n, np.nan, np.float32), "evidence": np.zeros(n, np.float32),
           "to_vouch": np.zeros(n, np.int64), "by_cluster": np.zeros(n, bool), "classes": (),
           "source": np.full(n, None, object)}
    if not actx.store.label_counts():  # nothing to learn from: no suggestion model to fit
        return out
    sug = suggest(actx.project)
    out["classes"] = tuple(sug.classes)
    if not sug.classes or not n:
        return out
    ok = sug.unlabelled
    pos, hit = actx.id_index.locate(sug.image_ids[ok])
    out["code"][pos] = sug.label[ok][hit]
    for key in ("confidence", "probability", "evidence", "to_vouch", "by_cluster", "source"):
        out[key][pos] = getattr(sug, key)[ok][hit]
    return out


def point_suggestions(actx: AppContext) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The suggestion of every map point.

    Returns
    -------
    code : ndarray (n_points,), int64
        Suggested class (index into ``classes``); -1 for a labelled point, or when
        there is no suggestion (no labels yet).
    confidence : ndarray (n_points,), float32
        Its vouched confidence in [0, 1]: the calibrated probability capped by what
        held-out labels back (NaN where ``code`` is -1).
    classes : tuple of str
    """
    a = _point_arrays(actx)
    return a["code"], a["confidence"], a["classes"]


def suggested_point_labels(actx: AppContext, min_confidence: float = MAP_MIN_CONFIDENCE):
    """Per map point: its label, else '<suggestion> (suggested)' when at least
    ``min_confidence`` confident, else '' (shape (n_points,), object)."""
    code, conf, classes = point_suggestions(actx)
    out = actx.point_labels()
    for p in np.flatnonzero((code >= 0) & (conf >= min_confidence)):
        out[p] = f"{classes[int(code[p])]} (suggested)"
    return out


def cluster_suggestions(actx: AppContext) -> dict[int, dict]:
    """Per cluster with suggestions: its unlabelled members' leading suggested label.

    Returns
    -------
    dict
        cluster -> {label, share (of the cluster's suggested unlabelled images that
        lead with it), n (suggested unlabelled images), confidence (their mean vouched
        confidence), probability (their median calibrated probability), vouched (share
        of them the held-out evidence vouches for), evidence (the evidence of the
        median member, in words: 'vouched ≥ 0.95 by 60 held-out labels' or 'not enough
        labels yet to vouch: 12 more')}; empty when there are no suggestions.
    """
    a = _point_arrays(actx)
    code, classes = a["code"], a["classes"]
    if not classes:
        return {}
    clusters = actx.assignment().clusters
    has = np.flatnonzero(code >= 0)
    order = has[np.argsort(clusters[has], kind="stable")]
    uniq, starts = np.unique(clusters[order], return_index=True)
    out = {}
    for c, group in zip(uniq, np.split(order, starts[1:])):
        counts = np.bincount(code[group], minlength=len(classes))
        best = int(counts.argmax())
        lead = group[code[group] == best]
        mid = lead[np.argsort(a["probability"][lead], kind="stable")[len(lead) // 2]]
        vouched = (a["to_vouch"][lead] == 0) & (a["evidence"][lead] > 0)
        srcs = [v for v in a["source"][lead] if v is not None]  # an expert decided most of them
        source = max(set(srcs), key=srcs.count) if 2 * len(srcs) > len(lead) else None
        out[int(c)] = {"label": classes[best], "share": float(counts[best] / len(group)), "n": int(len(group)),
                       "confidence": float(a["confidence"][lead].mean()),
                       "probability": float(a["probability"][mid]), "vouched": float(vouched.mean()),
                       "source": source,
                       "evidence": vouch_text(a["probability"][mid], a["confidence"][mid], a["evidence"][mid],
                                              a["to_vouch"][mid], a["by_cluster"][mid])}
    return out


def suggestion_text(s: dict | None) -> str | None:
    """'suggested: mono for 85% of 120 unlabelled: probability 0.97 it is right (median);
    vouched ≥ 0.95 by 60 held-out labels' (None when none). Both numbers, in words."""
    if not s:
        return None
    head = f"suggested: {s['label']} for {100 * s['share']:.0f}% of {s['n']:,} unlabelled" \
        + (f" ({s['source']})" if s.get("source") else "")
    if "probability" not in s:  # an older dict: say what the number is
        return f"{head} (mean vouched confidence {s['confidence']:.2f})"
    return f"{head}: {probability_text(s['probability'])} (median); {s['evidence']}"


def bands_view(actx: AppContext) -> tuple[list, list]:
    """(the band tables, the accept dropdown's options) for the current labels: per label,
    suggestions by probability and by vouched confidence, and how many are vouched."""
    sug = suggest(actx.project)
    if not sug.classes:
        return [html.P("No labels yet: label the images below first.", className="muted")], []
    names = list(next(iter(sug.bands().values())))
    head = html.Tr([html.Th("label"), html.Th("number")] + [html.Th(n) for n in names] + [html.Th("vouched")])
    rows = []
    by_p, by_v, ev = sug.bands("probability"), sug.bands("confidence"), sug.evidence_summary()
    for lab in sug.classes:
        e = ev[lab]
        more = "" if e["fewest_more_to_vouch"] is None else \
            f" (not enough labels yet for the rest: {e['fewest_more_to_vouch']:,} more at the least)"
        rows.append(html.Tr([html.Td(lab), html.Td("probability", title="how likely the suggestion is right")]
                            + [html.Td(f"{by_p[lab][n]:,}") for n in names]
                            + [html.Td(f"{e['vouched']:,} of {e['suggested']:,}{more}", rowSpan=2)]))
        rows.append(html.Tr([html.Td(""), html.Td("vouched confidence",
                                                  title="the probability capped by what held-out labels back")]
                            + [html.Td(f"{by_v[lab][n]:,}") for n in names]))
    note = html.P(f"{int(sug.unlabelled.sum()):,} unlabelled; probabilities calibrated on {sug.n_calibration} "
                  f"held-out label(s). Vouched: held-out labels back the probability (up to {VOUCH_LEVEL:g}).",
                  className="muted small")
    return [html.Table([head, *rows], className="bands"), note], [{"label": c, "value": c} for c in sug.classes]


def next_view(actx: AppContext, n: int = NEXT_N) -> list:
    """Cards of the next images: thumbnail, suggestion with both numbers in words, why
    chosen, accept / label controls."""
    items = next_to_label(actx.project, n)
    if not items:
        return [html.P("Every image is labelled.", className="muted")]
    cards = []
    for it in items:
        badge = f"suggested {it.suggestion}" if it.suggestion else None
        controls = [dcc.Input(id=ids.next_button(ids.NEXT_LABEL_INPUT, it.image_id), type="text",
                              placeholder="label", list=ids.LABEL_OPTIONS, className="label-input"),
                    html.Button("Label", id=ids.next_button(ids.NEXT_LABEL_ONE, it.image_id), className="btn",
                                n_clicks=0)]
        if it.suggestion:
            low = it.probability is not None and it.probability < LOW_PROBABILITY
            controls.append(html.Button(
                f"✓ {it.suggestion}" + (" (unlikely)" if low else ""),
                id=ids.next_button(ids.NEXT_ACCEPT_ONE, it.image_id), className="btn", n_clicks=0,
                title=("More likely wrong than right: accept only if the image shows it. " if low else "")
                + "Accept the suggestion for this image"))
        body = [thumb(ids.GRID_NEXT, it.image_id, f"#{it.image_id}", badge=badge, title=it.path)]
        if it.suggestion:  # 'mono (model: my-classifier): probability ...' when an expert decided it
            text = it.evidence_text or ""
            head = f"{it.suggestion} ({it.source})" if it.source else it.suggestion
            text = text[len(it.source) + 2:] if it.source and text.startswith(f"{it.source}; ") else text
            body.append(html.Div(f"{head}: {text}", className="small"))
        cards.append(html.Div(body + [
            html.Div(it.reason, className="muted small"),
            html.Div(controls, className="action-row wrap"),
        ], className="next-card"))
    return cards


def _budget(percent) -> float | None:
    """The dashboard's budget (a percentage, None = not given) as a share in [0, 1]."""
    if percent in (None, ""):
        return None
    v = float(percent)
    if not 0 <= v <= 100:
        raise BadInputError("The expected-error budget is a percentage from 0 to 100.")
    return v / 100.0


def threshold_warning(min_confidence, budget_percent=None) -> str:
    """The live warning beside the accept controls ('' when none)."""
    if min_confidence not in (None, "") and float(min_confidence) < LOW_PROBABILITY:
        return (f"Below {LOW_PROBABILITY:g}: this may accept suggestions more likely wrong than right "
                "(you will be asked to confirm).")
    if budget_percent not in (None, "") and float(budget_percent) > 50:
        return "A budget above 50 % may accept suggestions more likely wrong than right (you will be asked to confirm)."
    return ""


def bulk_accept_warning(actx: AppContext, label, min_confidence, budget_percent=None) -> str | None:
    """The confirmation a bulk accept needs before it runs (a threshold below 0.5, or a
    suggestion it would take below probability 0.5), or None; None too when the request
    is invalid (the accept itself then says why)."""
    if not label:
        return None
    try:
        thr = None if min_confidence in (None, "") else float(min_confidence)
        sug = suggest(actx.project)
        pos = plan_accept(sug, label, thr, max_expected_error=_budget(budget_percent))
    except LabelerError:
        return None
    err = low_probability(sug, pos, label, thr)
    return None if err is None else f"{err.what}: {len(pos):,} image(s). Click Accept again to accept anyway."


def accept_bulk_action(actx: AppContext, label, min_confidence, annotator, *, budget_percent=None,
                       confirmed: bool = False) -> str:
    """Accept suggestions of ``label`` at vouched confidence ``min_confidence`` or more and/or
    the largest set within ``budget_percent`` % expected wrong (one action). Below
    probability 0.5 it needs ``confirmed``."""
    if not label:
        raise BadInputError("Choose the label whose suggestions to accept.")
    thr = None if min_confidence in (None, "") else float(min_confidence)
    budget = _budget(budget_percent)
    if thr is None and budget is None:
        raise BadInputError("Give the minimum confidence (0 to 1) or an expected-error budget (%).")
    try:
        res = accept(actx.project, label, thr, max_expected_error=budget, allow_low=confirmed,
                     annotator=annotator_name(annotator))
    except LowProbabilityError as e:
        raise BadInputError(f"{e.what}; nothing changed. Click Accept again to accept anyway.") from None
    text = res.message()
    return text[0].upper() + text[1:] + "."


def accept_one_action(actx: AppContext, image_id, annotator) -> str:
    """Accept the suggestion of one image (one action): the annotator saw the image and the
    card's numbers, so a suggestion below probability 0.5 is accepted too."""
    d = suggest(actx.project).detail(int(image_id))
    if d is None:
        raise BadInputError(f"Image {image_id} has no suggestion (it is labelled, or no longer exists).")
    accept(actx.project, d["label"], None, annotator=annotator_name(annotator), image_ids=[int(image_id)],
           allow_low=True)
    return f"Accepted '{d['label']}' for image {image_id} ({d['text']})."


def label_one_action(actx: AppContext, image_id, label, annotator) -> str:
    """Label one queue image by hand (one action)."""
    text = labels.clean_label(label)
    # One image the annotator looked at and chose: relabelling it is what they asked for.
    labels.label_images(actx.project, [int(image_id)], text, annotator=annotator_name(annotator), relabel=True)
    return f"Labelled image {image_id} as '{text}'."


def register(app: Dash, actx: AppContext) -> None:
    """Register the Next tab's callbacks on ``app``."""

    @app.callback(
        Output(ids.NEXT_BANDS, "children"),
        Output(ids.NEXT_ACCEPT_LABEL, "options"),
        Output(ids.NEXT_LIST, "children"),
        Input(ids.VERSION, "data"),
        Input(ids.TABS, "value"),
    )
    def show(_version, tab):
        if tab != ids.TAB_NEXT:
            raise PreventUpdate
        bands, options = bands_view(actx)
        return bands, options, next_view(actx)

    @app.callback(Output(NEXT_ACCEPT_WARN, "children"), Input(ids.NEXT_ACCEPT_MIN, "value"),
                  Input(NEXT_ACCEPT_BUDGET, "value"))
    def warn(min_confidence, budget):
        try:
            return threshold_warning(min_confidence, budget)
        except (TypeError, ValueError):
            return ""

    @write_callback(app, Input(ids.NEXT_ACCEPT_BUTTON, "n_clicks"), State(ids.NEXT_ACCEPT_LABEL, "value"),
                    State(ids.NEXT_ACCEPT_MIN, "value"), State(NEXT_ACCEPT_BUDGET, "value"),
                    State(NEXT_ACCEPT_PENDING, "data"), outputs=[Output(NEXT_ACCEPT_PENDING, "data")])
    def accept_bulk(n, label, min_confidence, budget, pending, annotator, version):
        if not n:
            raise PreventUpdate
        request = {"label": label, "min": min_confidence, "budget": budget, "version": version}
        confirmed = pending == request  # the second click on the same request, nothing changed between
        if not confirmed:
            warning = bulk_accept_warning(actx, label, min_confidence, budget)
            if warning:
                return message(warning, "warn"), no_update, request
        r = run(accept_bulk_action, actx, label, min_confidence, annotator, budget_percent=budget,
                confirmed=confirmed, version=version)
        return r.message, r.version, None

    @write_callback(app, Input({"type": ids.NEXT_ACCEPT_ONE, "id": ALL}, "n_clicks"),
                    Input({"type": ids.NEXT_LABEL_ONE, "id": ALL}, "n_clicks"),
                    State({"type": ids.NEXT_LABEL_INPUT, "id": ALL}, "value"),
                    State({"type": ids.NEXT_LABEL_INPUT, "id": ALL}, "id"))
    def act_on_one(_acc, _lab, values, input_ids, annotator, version):
        from dash import ctx

        trig = ctx.triggered_id
        if not trig or not any((t.get("value") or 0) > 0 for t in ctx.triggered):
            raise PreventUpdate  # the cards were re-rendered, nothing was clicked
        image_id = int(trig["id"])
        if trig["type"] == ids.NEXT_ACCEPT_ONE:
            r = run(accept_one_action, actx, image_id, annotator, version=version)
        else:
            label = dict(zip([i["id"] for i in input_ids], values)).get(image_id)
            r = run(label_one_action, actx, image_id, label, annotator, version=version)
        return r.message, r.version
