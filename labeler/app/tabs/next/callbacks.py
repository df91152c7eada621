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

from dash import ALL, Dash, Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from .... import labels
from ....assist.evidence import VOUCH_LEVEL
from ....assist.next import next_to_label
from ....assist.suggest import LOW_PROBABILITY, LowProbabilityError, accept, low_probability, plan_accept, suggest
from ....errors import BadInputError, LabelerError
from ... import ids
from ...actions import run, write_callback
from ...common import annotator_name
from ...components import message, thumb
from ...state import AppContext
from .layout import NEXT_ACCEPT_BUDGET, NEXT_ACCEPT_PENDING, NEXT_ACCEPT_WARN

NEXT_N = 8


# -- plain functions (tested directly) ------------------------------------------------------
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
