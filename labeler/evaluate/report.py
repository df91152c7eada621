"""An evaluation as Markdown tables and files (JSON, Markdown, plots)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .features import FEATURE_NAMES


def _f(v, pct=False) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{100 * v:.0f}%" if pct else f"{v:.2f}"


def markdown_table(res: dict) -> str:
    """The evaluation of one truth column as Markdown (clustering, search, cost tables)."""
    cls = ", ".join(f"{c} {k}" for c, k in res["classes"].items())
    mb = res["majority_baseline"]
    out = [f"### Truth `{res['column']}`: {len(res['classes'])} classes ({cls}); {res['n']} images",
           "",
           f"Majority class alone ('{mb['class']}'): accuracy {_f(mb['accuracy'], True)}, "
           f"macro-F1 {_f(mb['macro_f1'])}. Backbone: {res['backbone']}.", "",
           "**Clustering** (scores over clustered images; noise share beside; bal. purity = macro twin of purity)", "",
           "| feature | method | clusters | noise | ARI | NMI | homog. | compl. | purity | bal. purity |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["clustering"]:
        m = "HDBSCAN mcs={min_cluster_size} ms={min_samples}".format(**r["params"]) if r["method"] == "hdbscan" \
            else f"KMeans k={r['params']['k']}"
        out.append(f"| {FEATURE_NAMES[r['feature']]} | {m} | {r['clusters']} | {_f(r['noise'], True)} | {_f(r['ari'])} | "
                   f"{_f(r['nmi'])} | {_f(r['homogeneity'])} | {_f(r['completeness'])} | {_f(r['purity'], True)} | "
                   f"{_f(r['balanced_purity'], True)} |")
    out += ["", "**Reverse image search** (leave-one-out; macro = mean over classes)", "",
            "| feature | P@1 | P@1 macro | P@10 | P@10 macro | mAP | mAP macro |", "|---|---:|---:|---:|---:|---:|---:|"]
    rows = [(f, "", s) for f, s in res["search"].items()]
    if "search_cross_group" in res:
        out[-4] = (f"**Reverse image search** (leave-one-out; macro = mean over classes; 'other {res['group_column']}' "
                   f"= neighbours of the query's own {res['group_column']} left out, {res['groups']} groups)")
        rows = [r for f, s in res["search"].items()
                for r in ((f, "", s), (f, f", other {res['group_column']}", res["search_cross_group"][f]))]
    for f, note, s in rows:
        out.append(f"| {FEATURE_NAMES[f]}{note} | {_f(s['p1'])} | {_f(s['p1_macro'])} | {_f(s['p10'])} | "
                   f"{_f(s['p10_macro'])} | {_f(s['map'])} | {_f(s['map_macro'])} |")
    if "pca" in res["search"]:
        out += ["", "Per class, PCA vectors:", "", "| class | images | P@1 | P@10 | AP |", "|---|---:|---:|---:|---:|"]
        for c, v in res["search"]["pca"]["per_class"].items():
            out.append(f"| {c} | {v['n']} | {_f(v['p1'])} | {_f(v['p10'])} | {_f(v['ap'])} |")
    if "cost" in res:
        n = res["n"]
        b1, b2 = max(1, round(0.01 * n)), max(2, round(0.05 * n))
        out += ["", f"**Labeling cost** (simulated annotator; one action = one click that sets labels; "
                f"{n} images; unlabelled = wrong)", "",
                f"| strategy | actions to 90% acc. | to 95% acc. | to macro-F1 0.9 | acc. / macro-F1 after {b1} actions "
                f"| after {b2} actions |", "|---|---:|---:|---:|---:|---:|"]
        for name, c in res["_curves"].items():
            a1, f1, _ = c.at(b1)
            a2, f2, _ = c.at(b2)
            mf = c.actions_to_macro_f1(0.9)
            out.append(f"| {name.replace('_', ' ')} | {c.actions_to_accuracy(0.9)} | {c.actions_to_accuracy(0.95)} | "
                       f"{'-' if mf is None else mf} | {_f(a1, True)} / {_f(f1)} | {_f(a2, True)} / {_f(f2)} |")
    return "\n".join(out) + "\n"


def write_outputs(res: dict, out_dir: Path | str, *, plots: bool = True) -> list[Path]:
    """Write ``evaluation-<column>.json`` (+ .md, and PNG/HTML plots) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    col = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in res["column"])
    written = [out_dir / f"evaluation-{col}.json", out_dir / f"evaluation-{col}.md"]
    written[0].write_text(json.dumps({k: v for k, v in res.items() if not k.startswith("_")}, indent=1))
    written[1].write_text(markdown_table(res))
    if plots:
        from .plots import write_plots

        written += write_plots(res, out_dir, col)
    return written
