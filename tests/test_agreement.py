"""Agreement between annotators from the label log; consensus export."""

from __future__ import annotations

import json

import krippendorff
import numpy as np
import pandas as pd
from click.testing import CliRunner
from sklearn.metrics import cohen_kappa_score

from labeler.agreement import agreement, consensus_labels
from labeler.cli import main
from labeler.export import export
from labeler.history import undo


def test_agreement_conflicts_and_consensus(project, tmp_path):
    st = project.store
    ids = [r["id"] for r in st.image_table()][:20]
    ana = {i: ("crack" if k % 2 else "clean") for k, i in enumerate(ids)}
    bob = dict(ana)
    for i in ids[:3]:  # bob disagrees on three images
        bob[i] = "clean" if ana[i] == "crack" else "crack"
    for lab in ("crack", "clean"):
        st.set_labels([i for i in ids if ana[i] == lab], lab, annotator="ana")
        st.set_labels([i for i in ids if bob[i] == lab], lab, annotator="bob")
    st.set_labels(ids[:10], "dust", annotator="bob")
    undo(project, "bob")  # bob's last action is undone: his earlier labels count
    st.set_labels(ids[:2], ana[ids[0]], annotator="carl")  # carl sides with ana on ids[0] only

    rep = agreement(project)
    assert rep.annotators == ["ana", "bob", "carl"] and rep.n_images_multi == 20
    conflicts = {c["image_id"]: c for c in rep.conflicts}
    assert set(conflicts) == set(ids[:3])
    assert conflicts[ids[0]]["labels"] == {"ana": ana[ids[0]], "bob": bob[ids[0]], "carl": ana[ids[0]]}
    pair = next(p for p in rep.pairs if (p["annotator_a"], p["annotator_b"]) == ("ana", "bob"))
    assert pair["n_common"] == 20 and pair["agreement"] == 0.85
    assert np.isclose(pair["cohen_kappa"], cohen_kappa_score([ana[i] for i in ids], [bob[i] for i in ids]), atol=1e-4)
    assert 0 < rep.alpha < 1 and set(rep.alpha_per_label) == {"crack", "clean"}
    data = np.array([[{"clean": 0, "crack": 1}[d[i]] if i in d else np.nan for i in ids]
                     for d in (ana, bob, {ids[0]: ana[ids[0]], ids[1]: ana[ids[0]]})])
    assert np.isclose(rep.alpha, krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"),
                      atol=1e-4)

    cons = consensus_labels(project)
    assert cons[ids[0]].label == ana[ids[0]] and np.isclose(cons[ids[0]].support, 2 / 3)
    assert cons[ids[1]].n_annotators == 3
    assert cons[ids[2]].tie and cons[ids[2]].support == 0.5
    assert cons[ids[2]].label == st.labels()[ids[2]]  # a tie goes to the current label
    assert cons[ids[5]].label == ana[ids[5]] and cons[ids[5]].support == 1.0

    out = tmp_path / "consensus.csv"
    export(project, out, format="csv", consensus=True)
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(df) == 20 and {"support", "n_annotators"} <= set(df.columns)

    r = CliRunner().invoke(main, ["agreement", "-p", str(project.root), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["n_conflicts"] == 3
    r = CliRunner().invoke(main, ["agreement", "-p", str(project.root)])
    assert r.exit_code == 0 and "Krippendorff's alpha" in r.output and "3 conflict(s)" in r.output


def test_agreement_single_annotator(project):
    st = project.store
    st.set_labels([r["id"] for r in st.image_table()][:5], "x", annotator="ana")
    rep = agreement(project)
    assert rep.n_images_multi == 0 and rep.alpha is None and rep.conflicts == []
