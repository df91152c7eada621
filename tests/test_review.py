"""review finds planted label flips; the CLI lists them."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from labeler.cli import main
from labeler.errors import BadInputError
from labeler.review import review_labels


def test_review_finds_planted_flips(project, elpv_dir):
    truth = {r["path"]: r["cell_type"] for r in csv.DictReader(open(elpv_dir / "truth.csv"))}
    ids = {r["path"]: r["id"] for r in project.store.image_table()}
    with pytest.raises(BadInputError):
        review_labels(project)  # nothing labelled yet
    for lab in ("mono", "poly"):
        project.store.set_labels([ids[p] for p, t in truth.items() if t == lab], lab, annotator="ana")
    rng = np.random.default_rng(0)
    flipped = sorted(rng.choice(sorted(ids), size=4, replace=False))
    for p in flipped:
        project.store.set_labels([ids[p]], "poly" if truth[p] == "mono" else "mono", annotator="bob")
    rep = review_labels(project)
    assert rep.n_labelled == 80 and rep.classes == ["mono", "poly"]
    found = {it.path: it for it in rep.issues}
    hits = [p for p in flipped if p in found]
    assert len(hits) >= 3, (flipped, list(found))
    assert all(found[p].suggested_label == truth[p] and found[p].annotator == "bob" for p in hits)
    top = [it.path for it in rep.issues[:4]]
    assert len(set(top) & set(flipped)) >= 3
    assert [it.score for it in rep.issues] == sorted(it.score for it in rep.issues)

    r = CliRunner().invoke(main, ["review", "-p", str(project.root), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["n_issues"] == len(rep.issues)
    r = CliRunner().invoke(main, ["review", "-p", str(project.root), "--limit", "2"])
    assert r.exit_code == 0 and "likely label error(s) among 80 labelled" in r.output
