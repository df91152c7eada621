"""Plots of an evaluation (:func:`labeler.evaluate.evaluate_project` result).

PNG with matplotlib (Agg backend, no display needed) and interactive HTML with
plotly (``plotly.min.js`` is written once beside the HTML files, so they open
offline).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .features import FEATURE_NAMES

STRATEGY_NAMES = {
    "cluster_majority": "(a) label clusters by majority",
    "cluster_split": "(b) + split mixed clusters",
    "propagation": "(c) medoids + kNN propagation",
    "one_by_one": "(d) one by one (baseline)",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def cost_figure(res: dict):
    """Matplotlib figure: accuracy and macro-F1 against actions, one line per strategy."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, title in ((axes[0], "accuracy", "accuracy (unlabelled = wrong)"), (axes[1], "macro_f1", "macro-F1")):
        for name, c in res["cost"].items():
            cv = c["curve"]
            ax.step(np.maximum(cv["actions"], 0.8), cv[key], where="post", label=STRATEGY_NAMES.get(name, name))
        for t in (0.9, 0.95):
            ax.axhline(t, color="grey", lw=0.6, ls=":")
        mb = res["majority_baseline"]["accuracy" if key == "accuracy" else "macro_f1"]
        ax.axhline(mb, color="black", lw=0.8, ls="--", label="majority class alone")
        ax.set_xscale("log")
        ax.set_xlabel("annotator actions (log)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of the collection")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Labeling cost, truth '{res['column']}' ({res['n']} images)")
    fig.tight_layout()
    return fig


def search_figure(res: dict):
    """Matplotlib figure: per-class P@1, P@10 and AP of each feature (+ macro)."""
    plt = _plt()
    feats = list(res["search"])
    classes = list(res["classes"]) + ["macro"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True)
    for ax, key, macro in zip(axes, ("p1", "p10", "ap"), ("p1_macro", "p10_macro", "map_macro")):
        w = 0.8 / len(feats)
        for j, f in enumerate(feats):
            s = res["search"][f]
            vals = [s["per_class"][c][key] for c in classes[:-1]] + [s[macro]]
            ax.bar(np.arange(len(classes)) + j * w, vals, w, label=FEATURE_NAMES[f])
        ax.set_xticks(np.arange(len(classes)) + 0.4 - w / 2, classes, rotation=30)
        ax.set_title({"p1": "precision@1", "p10": "precision@10", "ap": "average precision"}[key])
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Reverse image search per class, truth '{res['column']}'")
    fig.tight_layout()
    return fig


def clustering_figure(res: dict):
    """Matplotlib figure: ARI and balanced purity of every clustering run."""
    plt = _plt()
    runs = res["clustering"]
    names = [f"{r['feature']} " + (f"KM k={r['params']['k']}" if "k" in r["params"] else "HDBSCAN") for r in runs]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(runs)), 3.8))
    x = np.arange(len(runs))
    for j, (key, lab) in enumerate((("ari", "ARI"), ("nmi", "NMI"), ("balanced_purity", "balanced purity"))):
        ax.bar(x + 0.27 * j, [np.nan_to_num(r[key]) for r in runs], 0.27, label=lab)
    ax.set_xticks(x + 0.27, names, fontsize=7, rotation=35, ha="right")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"Clustering against truth '{res['column']}'")
    fig.tight_layout()
    return fig


def write_plots(res: dict, out_dir: Path, stem: str) -> list[Path]:
    """Write cost/search/clustering PNGs and cost/map HTML files. Returns their paths."""
    import plotly.graph_objects as go

    plt = _plt()
    written = []
    figs = {"search": search_figure(res), "clustering": clustering_figure(res)}
    if "cost" in res:
        figs["cost"] = cost_figure(res)
    for name, fig in figs.items():
        p = out_dir / f"{name}-{stem}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    html = []
    if "cost" in res:
        fig = go.Figure()
        for name, c in res["cost"].items():
            cv = c["curve"]
            for key, dash in (("accuracy", None), ("macro_f1", "dot")):
                fig.add_scatter(x=cv["actions"], y=cv[key], mode="lines", line_shape="hv", line_dash=dash,
                                name=f"{STRATEGY_NAMES.get(name, name)}: {key}")
        fig.update_layout(xaxis_type="log", xaxis_title="annotator actions", yaxis_title="share",
                          title=f"Labeling cost, truth '{res['column']}'")
        html.append(("cost", fig))
    if res.get("_map") is not None:
        xy, truth = res["_map"], res["_truth"]
        fig = go.Figure()
        for c in res["classes"]:
            m = truth == c
            fig.add_scattergl(x=xy[m, 0], y=xy[m, 1], mode="markers", marker_size=4, name=str(c))
        fig.update_layout(title=f"2-D map coloured by truth '{res['column']}'")
        html.append(("map", fig))
    for name, fig in html:
        p = out_dir / f"{name}-{stem}.html"
        fig.write_html(p, include_plotlyjs="directory")
        written.append(p)
    return written
