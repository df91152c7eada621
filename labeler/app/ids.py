"""Component ids of the dashboard, in one place (layout and callbacks share them).

Pattern-matching ids (dicts) are built by the helpers at the bottom: a thumbnail
grid item is ``{"type": THUMB_*, "grid": <grid name>, "id": <image id>}``.
"""

from typing import NamedTuple

# -- stores (browser state: ids and small values only) --------------------------------
ANNOTATOR = "annotator-store"  # local storage: the annotator's name, asked once per browser
VERSION = "version-store"  # bumped after every write; views that show labels re-render
SELECTION = "selection-store"  # image ids of the lasso / box selection on the map
SELECTION_EXCLUDED = "selection-excluded-store"
CLUSTER_OPEN = "cluster-open-store"  # the cluster shown in the Clusters tab detail
CLUSTER_EXCLUDED = "cluster-excluded-store"  # unticked members of the open cluster
SEARCH_RESULT = "search-result-store"  # the last search: ids, similarities, vote, ...
SEARCH_EXCLUDED = "search-excluded-store"
SPLIT_PREVIEW = "split-preview-store"  # {cluster, groups: {sub: [ids]}} awaiting apply
# What the annotator saw, sent with every action that names a cluster, so that a
# re-clustering by someone else in between makes the action fail instead of
# labelling images nobody looked at.
CLUSTER_SEEN = "cluster-seen-store"  # {cluster, clustering_id, members} of the open cluster
CLUSTERING_SEEN = "clustering-seen-store"  # clustering id the Refine tab's choices come from
LABEL_CONFIRM = "label-confirm-store"  # a new label close to existing ones, awaiting a second click
KB_EVENT = "kb-event-store"  # {key, n}: a keyboard shortcut, written by assets/keys.js
KB_ACK = "kb-ack"  # hidden div: the n of the last kb event the server answered (keys.js waits for it)
# The clustering the page's map, legend and cluster list show; polled (CLUSTERING_POLL) and
# checked on every n / p / Enter against the project's current one (follow.py).
CLUSTERING_SHOWN = "clustering-shown-store"
CLUSTERING_POLL = "clustering-poll"
# Ticks of labelled images: a labelled image starts unticked; ticking it chooses to relabel it.
# {str(image id): label shown} per grid; the *_SHOWN stores hold the labels of the grid page shown.
CLUSTER_RELABEL = "cluster-relabel-store"
CLUSTER_SHOWN = "cluster-shown-store"
SELECTION_RELABEL = "selection-relabel-store"
SELECTION_SHOWN = "selection-shown-store"
SEARCH_RELABEL = "search-relabel-store"
SEARCH_SHOWN = "search-shown-store"
LV_IMAGE = "large-view-store"  # the image id shown in the large view (None = closed)
LV_QUEUE = "large-view-queue-store"  # ids ← / → step through (the Next tab's queue), None = the cluster

# -- top bar --------------------------------------------------------------------------
PROGRESS_TEXT = "progress-text"
PROGRESS_BAR = "progress-bar"
LABEL_COUNTS = "label-counts"
ANNOTATOR_NAME = "annotator-name"
ANNOTATOR_CHANGE = "annotator-change"
UNDO = "undo-button"
REDO = "redo-button"
EXPORT_LINK = "export-link"
MESSAGE = "message"
LABEL_OPTIONS = "label-options"  # <datalist> of existing labels for autocompletion

# -- annotator dialog -----------------------------------------------------------------
NAME_DIALOG = "name-dialog"
NAME_INPUT = "name-input"
NAME_SAVE = "name-save"

# -- map ------------------------------------------------------------------------------
MAP = "map"
COLOR_MODE = "color-mode"
MAP_TOOLTIP = "map-tooltip"
MAP_LEGEND = "map-legend"
MAP_FIT = "map-fit"  # 'fit all' button: show every point, outliers included
MAP_POINTS = "map-points-store"  # AppContext.map_token the page's map was drawn from (redrawn when it changes)
MAP_VIEW = "map-view-store"  # a raster-drawn map's visible range and plot size, as the page reports it
MAP_SHAPE = "map-shape-store"  # a raster-drawn map's lasso or box, selected on the server over every point

# -- large view (viewer.py) -------------------------------------------------------------
LV_OVERLAY = "lv-overlay"
LV_IMG = "lv-img"
LV_IMG_WRAP = "lv-img-wrap"  # zoom / pan target of assets/keys.js
LV_FACTS = "lv-facts"
LV_EXTRA = "lv-extra"  # suggestion line, heat map: filled by viewer.large_view_extras
LV_NEIGHBOURS = "lv-neighbours"
LV_PREV = "lv-prev"
LV_NEXT = "lv-next"
LV_CLOSE = "lv-close"
LV_SEARCH = "lv-search"  # open this image's neighbours in the Search tab
LV_NEIGHBOUR = "lv-neighbour"  # pattern type: a neighbour thumbnail in the large view
# Search by a region and the anomaly overlay (tabs/search/region.py, assets/region.js)
LV_BOX = "lv-box-store"  # {src, fx, fy, fw, fh}: the box drawn on the large image, fractions of the image (region.js)
LV_BOX_RECT = "lv-box"  # the drawn box's outline over the large image (positioned by region.js)
LV_BOX_MODE = "lv-box-mode"  # button: drag draws a box instead of panning (Shift+drag always draws)
LV_REGION_SEARCH = "lv-region-search"  # button: 'Search this region' -> the Search tab
LV_REGION_NOTE = "lv-region-note"  # one line: the box drawn, or what command is missing
LV_HEAT = "lv-heat"  # checklist: show the anomaly heat map over the large image
LV_HEAT_IMG = "lv-heat-img"  # the heat map image over the large image
LV_HEAT_NOTE = "lv-heat-note"
HEAT_TOGGLE = "heat-toggle"  # top bar checklist: the heat map on the Next cards (and the large view)
APP_ROOT = "app-root"  # the page's root div: class 'heat-on' shows the heat overlays
HELP_OVERLAY = "help-overlay"  # the keyboard table, toggled by '?'
HELP_BUTTON = "help-button"

# -- tabs -----------------------------------------------------------------------------
TABS = "tabs"
TAB_CLUSTERS = "tab-clusters"
TAB_SELECTION = "tab-selection"
TAB_SEARCH = "tab-search"
TAB_REFINE = "tab-refine"
TAB_REVIEW = "tab-review"  # near-duplicate groups, likely label errors (tabs/review)

# Clusters tab
CLUSTER_SORT = "cluster-sort"
CLUSTER_LIST = "cluster-list"
CLUSTER_LIST_PAGE = "cluster-list-page"
CLUSTER_LIST_PAGES = "cluster-list-pages"
CLUSTER_DETAIL = "cluster-detail"
CLUSTER_TITLE = "cluster-title"
CLUSTER_GRID = "cluster-grid"
CLUSTER_PAGE = "cluster-page"
CLUSTER_PAGES = "cluster-pages"  # 'of N' next to the page box
CLUSTER_LABEL_INPUT = "cluster-label-input"
CLUSTER_LABEL_BUTTON = "cluster-label-button"
CLUSTER_CLOSE = "cluster-close"
CLUSTER_EXCLUDED_NOTE = "cluster-excluded-note"
CLUSTER_LABELLED_NOTE = "cluster-labelled-note"  # 'N already labelled (mono 30 by ana): tick to relabel'
HINTS_TOGGLE = "hints-toggle"  # show / hide ImageNet hints (project setting imagenet_hints)

# Selection tab
SELECTION_TITLE = "selection-title"
SELECTION_GRID = "selection-grid"
SELECTION_PAGE = "selection-page"
SELECTION_PAGES = "selection-pages"
SELECTION_N_PAGES = "selection-n-pages-store"  # number of grid pages (for PageDown / PageUp)
SELECTION_LABEL_INPUT = "selection-label-input"
SELECTION_LABEL_BUTTON = "selection-label-button"
SELECTION_CLEAR = "selection-clear"
SELECTION_LABELLED_NOTE = "selection-labelled-note"

# Search tab
UPLOAD = "upload"
SEARCH_K = "search-k"
SEARCH_TEXT = "search-text"  # a sentence to search by (CLIP feature set: labeler features --text-model)
SEARCH_TEXT_BUTTON = "search-text-button"
SEARCH_ANOMALOUS = "search-anomalous"  # button: the unlabelled images, most anomalous first
SEARCH_FOR_LABEL = "search-for-label"  # optional: "more like this, for LABEL" (labeler.assist)
SEARCH_ERROR = "search-error"
SEARCH_QUERY = "search-query"  # the query image and its facts
SEARCH_PREVIEW = "search-preview"  # an uploaded image, shown by the browser itself
SEARCH_NOVEL = "search-novel"
SEARCH_VOTE = "search-vote"
SEARCH_GRID = "search-grid"
SEARCH_PAGE = "search-page"
SEARCH_PAGES = "search-pages"
SEARCH_N_PAGES = "search-n-pages-store"
SEARCH_LABELLED_NOTE = "search-labelled-note"
SEARCH_LABEL_INPUT = "search-label-input"
SEARCH_LABEL_BUTTON = "search-label-button"
IMAGE_LABEL_INPUT = "image-label-input"  # relabel the single query image
IMAGE_LABEL_BUTTON = "image-label-button"
IMAGE_LABEL_ROW = "image-label-row"

# Refine tab
SPLIT_CLUSTER = "split-cluster"
SPLIT_METHOD = "split-method"
SPLIT_K = "split-k"
SPLIT_MIN_SIZE = "split-min-size"
SPLIT_PREVIEW_BUTTON = "split-preview-button"
SPLIT_PREVIEW_VIEW = "split-preview-view"
SPLIT_APPLY = "split-apply"
MERGE_CLUSTERS = "merge-clusters"
MERGE_BUTTON = "merge-button"
MOVE_TARGET = "move-target"
MOVE_BUTTON = "move-button"
MOVE_NOTE = "move-note"

# -- pattern-matching ids -------------------------------------------------------------
THUMB_SIMILAR = "thumb-similar"  # the thumbnail itself: click = the large view (viewer.py)
THUMB_CHECK = "thumb-check"  # tick box of a selectable grid item
CLUSTER_OPEN_BUTTON = "cluster-open-button"

GRID_CLUSTER = "cluster"
GRID_SELECTION = "selection"
GRID_SEARCH = "search"
GRID_CARDS = "cards"  # representatives strips of the cluster cards (no tick boxes)
GRID_SPLIT = "split"  # split preview strips (no tick boxes)
GRID_DUPLICATES = "duplicates"  # a near-duplicate group (Review tab)
GRID_REVIEW = "review"  # the likely label error shown (Review tab)


class TickedGrid(NamedTuple):
    """The components of a grid with tick boxes (the Clusters, Selection and Search grids)."""

    name: str  # the grid's name in its tick boxes' pattern ids
    excluded: str  # store: unlabelled images unticked (left out), on any page
    relabel: str  # store: labelled images ticked to relabel, {str(id): label shown}
    shown: str  # store: the labels of the visible page's labelled images
    page: str  # the page box
    pages: str  # the ' of N' text beside it
    view: str  # the div the visible page's thumbnails go in
    note: str  # the 'N already labelled (...): tick to relabel' line


CLUSTER_TICKS = TickedGrid(GRID_CLUSTER, CLUSTER_EXCLUDED, CLUSTER_RELABEL, CLUSTER_SHOWN, CLUSTER_PAGE,
                           CLUSTER_PAGES, CLUSTER_GRID, CLUSTER_LABELLED_NOTE)
SELECTION_TICKS = TickedGrid(GRID_SELECTION, SELECTION_EXCLUDED, SELECTION_RELABEL, SELECTION_SHOWN, SELECTION_PAGE,
                             SELECTION_PAGES, SELECTION_GRID, SELECTION_LABELLED_NOTE)
SEARCH_TICKS = TickedGrid(GRID_SEARCH, SEARCH_EXCLUDED, SEARCH_RELABEL, SEARCH_SHOWN, SEARCH_PAGE,
                          SEARCH_PAGES, SEARCH_GRID, SEARCH_LABELLED_NOTE)


def thumb_similar(grid: str, image_id: int) -> dict:
    return {"type": THUMB_SIMILAR, "grid": grid, "id": int(image_id)}


def thumb_check(grid: str, image_id: int) -> dict:
    return {"type": THUMB_CHECK, "grid": grid, "id": int(image_id)}


def cluster_open_button(cluster: int) -> dict:
    return {"type": CLUSTER_OPEN_BUTTON, "cluster": int(cluster)}

# -- Next tab: suggestions and the label-next queue (labeler.assist) ---------------------
TAB_NEXT = "tab-next"
NEXT_BANDS = "next-bands"  # per label: suggestions in each confidence band
NEXT_ACCEPT_LABEL = "next-accept-label"
NEXT_ACCEPT_MIN = "next-accept-min"
NEXT_ACCEPT_BUTTON = "next-accept-button"
NEXT_LIST = "next-list"
NEXT_ACCEPT_ONE = "next-accept-one"  # pattern: {"type": NEXT_ACCEPT_ONE, "id": image id}
NEXT_LABEL_ONE = "next-label-one"  # pattern: {"type": NEXT_LABEL_ONE, "id": image id}
NEXT_LABEL_INPUT = "next-label-input"  # pattern: {"type": NEXT_LABEL_INPUT, "id": image id}
GRID_NEXT = "next"


def next_button(kind: str, image_id: int) -> dict:
    return {"type": kind, "id": int(image_id)}

# -- Fine-tune tab: the press as a background job (labeler.jobs) ------------------------
TAB_PRESS = "tab-press"
PRESS_EPOCHS = "press-epochs"
PRESS_OPTIONS = "press-options"  # tick boxes: 'quick' (train_from="last"), 'unlabelled' (semi="fixmatch")
PRESS_START = "press-start"
PRESS_CANCEL = "press-cancel"
PRESS_STATUS = "press-status"  # the job's line (stage, message, result or error)
PRESS_BAR = "press-bar"  # <progress>: the job's fraction done
PRESS_POLL = "press-poll"  # dcc.Interval, enabled while a press runs
PRESS_SEEN = "press-seen-store"  # {id, state} of the press the page last showed
PRESS_RECLUSTER = "press-recluster"  # after a press: re-map and re-cluster in its feature set
PRESS_FEATURES = "press-features"  # radio items: the stored feature sets, the active one chosen
