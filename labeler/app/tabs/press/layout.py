"""The Fine-tune tab's layout: epochs, start and cancel, the job's progress, the re-cluster offer."""

from __future__ import annotations

from dash import dcc, html

from ... import ids
from ...state import AppContext

#: What the "learn from unlabelled images" tick box does and what it measured (docs/features.md).
UNLABELLED_TITLE = ("FixMatch: the network also trains on its own confident predictions for the images nobody "
                    "labelled, checked against held-out labels (switched off when they are wrong too often); "
                    "about 2x the training time. At 300 labels it measured no better than the labels alone "
                    "(ELPV search P@1 0.01 lower, DeepPCB level; docs/features.md).")
#: How often the page reads the running press's record (ms); only while one runs.
POLL_MS = 2000


def stores() -> list:
    """The poll and what it last saw, at the page's top level: they keep running while the
    annotator labels in another tab, so the end of a press shows in the message bar."""
    return [dcc.Interval(id=ids.PRESS_POLL, interval=POLL_MS, disabled=True),
            dcc.Store(id=ids.PRESS_SEEN, data=None)]


def tab(ctx: AppContext) -> dcc.Tab:
    """The tab's static part; the status is filled by the callbacks."""
    return dcc.Tab(label="Fine-tune", value=ids.TAB_PRESS, children=[
        html.H4("Fine-tune the network on your labels"),
        html.P("Trains the backbone's last stages on the labels given so far (not on accepted suggestions) "
               "and stores the new vectors as a feature set. It runs in the background: keep labelling "
               "meanwhile. The new vectors become active only when complete; suggestions and the "
               "label-next queue then use them. Cancel leaves everything as it was.", className="muted small"),
        html.Div([
            html.Span("epochs ", className="muted"),
            dcc.Input(id=ids.PRESS_EPOCHS, type="number", min=1, max=1000, step=1, value=30,
                      className="page-input"),
            dcc.Checklist(id=ids.PRESS_OPTIONS, value=[], inline=True, options=[
                {"label": html.Span(" quick: the last block only",
                                    title="Trains the last block and the head instead of the last stages: 4-7x "
                                          "faster (ELPV, 300 labels, 2 CPU cores: 58-65 s against 238-467 s); same "
                                          "probe accuracy there, but in the labelling flow with a press at 150 "
                                          "labels it gained a third of what the default press gains on defective "
                                          "and nothing on defect level (one seed; docs/features.md)"),
                 "value": "quick"},
                {"label": html.Span(" learn from unlabelled images too",
                                    title=UNLABELLED_TITLE),
                 "value": "unlabelled"}]),
            html.Button("Fine-tune on my labels", id=ids.PRESS_START, className="btn btn-primary", n_clicks=0),
            html.Button("Cancel", id=ids.PRESS_CANCEL, className="btn", n_clicks=0, disabled=True),
        ], className="action-row wrap"),
        html.Button("Re-cluster in the learned space", id=ids.PRESS_RECLUSTER, className="btn", n_clicks=0,
                    style={"display": "none"},
                    title="re-map and re-cluster on the new feature set (the current clustering stays stored: "
                          "`labeler cluster --use ID` goes back)"),
        html.Progress(id=ids.PRESS_BAR, value="0", max="1", style={"width": "100%", "display": "none"}),
        html.Div(id=ids.PRESS_STATUS, className="small"),
        html.H5("Vectors the suggestions and the label-next queue use"),
        html.P("Choosing another set takes effect at once for every annotator; labels never change. "
               "`labeler features --drop NAME` deletes one you no longer need.", className="muted small"),
        dcc.RadioItems(id=ids.PRESS_FEATURES, options=[], value=None, className="small",
                       labelStyle={"display": "block"}),
    ])
