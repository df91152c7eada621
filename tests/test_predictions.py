"""Imported model predictions (`labeler import-predictions`, labeler.assist.predictions) and
their use as one more suggestion expert whose weight the held-out labels decide
(labeler.assist.experts), on the small real project (80 ELPV photos)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from labeler import labels
from labeler.assist.experts import Expert, fit_pool
from labeler.assist.predictions import import_predictions
from labeler.assist.suggest import accept, suggest
from labeler.cli import main
from labeler.errors import BadInputError
from labeler.store import SCHEMA_VERSION, Store


def truth_of(project, elpv_dir, column="cell_type") -> dict[str, str]:
    """{relative path: truth} of the project's images."""
    with open(elpv_dir / "truth.csv", newline="") as f:
        by_path = {r["path"]: r[column] for r in csv.DictReader(f)}
    return {p: by_path[p] for p in project.store.images_by_path() if p in by_path}


def label_some(project, truth: dict[str, str], n_per_class: int, seed: int = 0) -> set[str]:
    ids = {p: r["id"] for p, r in project.store.images_by_path().items()}
    rng = np.random.default_rng(seed)
    done = set()
    for lab in sorted(set(truth.values())):
        paths = sorted(p for p, v in truth.items() if v == lab)
        chosen = [paths[i] for i in rng.permutation(len(paths))[:n_per_class]]
        labels.label_images(project, [ids[p] for p in chosen], lab, annotator="ana")
        done |= set(chosen)
    return done


def write_csv(path, rows, header=("path", "label", "score")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def run(*args):
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def test_import_reports_unknown_paths_and_bad_scores_and_replaces_a_source(project, elpv_dir, tmp_path):
    truth = truth_of(project, elpv_dir)
    paths = sorted(truth)
    rows = [(p, truth[p], 0.9) for p in paths[:10]]
    rows += [(paths[0], "other", 0.1),          # a second label for one image: allowed
             ("no/such/file.png", "mono", 0.5),  # unknown path
             (paths[11], "mono", "1.5"),         # outside [0, 1]
             (paths[12], "mono", "high"),        # not a number
             (paths[13], "mono", ""),            # no score
             (paths[14], "", 0.5),               # blank label
             (paths[1], truth[paths[1]], 0.2)]   # the same image and label again: first kept
    f = write_csv(tmp_path / "preds.csv", rows)
    dry = import_predictions(project, f, "clf", dry_run=True)
    assert dry.written == 11 and project.store.prediction_sources() == []
    rep = import_predictions(project, f, "clf")
    assert (rep.rows, rep.written, rep.images) == (17, 11, 10)
    assert rep.unmatched == ["no/such/file.png"] and rep.blank == [paths[14]]
    assert [p for p, _ in rep.bad] == [paths[11], paths[12], paths[13]]
    assert "outside [0, 1]" in rep.bad[0][1] and "not a number" in rep.bad[1][1]
    assert rep.duplicates == [(paths[1], truth[paths[1]])]
    ids = {p: r["id"] for p, r in project.store.images_by_path().items()}
    assert (ids[paths[1]], truth[paths[1]], pytest.approx(0.9)) in project.store.predictions("clf")
    # Again, from Parquet with absolute paths, through the CLI: the source is replaced.
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = project.image_root
    pq.write_table(pa.table({"path": [str(root / p) for p in paths[:3]], "label": ["mono"] * 3,
                             "score": [0.7] * 3}), tmp_path / "p.parquet")
    out = json.loads(run("import-predictions", "--project", project.root, tmp_path / "p.parquet",
                         "--source", "clf", "--json").output)
    assert (out["written"], out["replaced"], out["unmatched"]) == (3, 11, [])
    assert project.store.prediction_sources()[0]["rows"] == 3
    text = run("import-predictions", "--project", project.root, f, "--source", "other").output
    assert "unmatched" in text and "no/such/file.png" in text and "outside [0, 1]" in text
    with pytest.raises(BadInputError, match="score"):
        import_predictions(project, write_csv(tmp_path / "x.csv", [(paths[0], "mono")], ("path", "label")), "x")


def test_predictions_show_in_suggest_with_their_source_and_can_be_accepted(project, elpv_dir, tmp_path):
    truth = truth_of(project, elpv_dir, "cell_type")
    label_some(project, truth, n_per_class=4)
    f = write_csv(tmp_path / "preds.csv", [(p, v, 0.95) for p, v in truth.items()])
    import_predictions(project, f, "my-classifier")
    sug = suggest(project)
    d = sug.to_dict(per_image=True)
    (e,) = d["experts"]
    assert e["source"] == "model: my-classifier" and e["accuracy"] == 1.0 and e["checked"] == 8
    assert e["weight"] > 0  # measured right on every held-out label: it gets a say
    # A suggestion the predictions decide names them; with a perfect source, it is right.
    ids = {r["id"]: p for p, r in project.store.images_by_path().items()}
    decided = [s for s in d["suggestions"] if s["source"]]
    if decided:
        assert all(s["source"] == "model: my-classifier" and s["text"].startswith("model: my-classifier; ")
                   for s in decided)
        assert all(s["label"] == truth[ids[s["image_id"]]] for s in decided)
    # The CLI shows the same, and the expert's summary.
    out = json.loads(run("suggest", "--project", project.root, "--json", "--per-image").output)
    assert out["experts"][0]["source"] == "model: my-classifier"
    assert all("source" in s for s in out["suggestions"])
    # Accepted like any suggestion.
    one = d["suggestions"][0]
    res = accept(project, one["label"], image_ids=[one["image_id"]])
    assert res.result.written == [one["image_id"]]


def test_a_source_that_decides_is_named_on_the_suggestion(project, elpv_dir, tmp_path):
    # On defect presence the model alone is unsure; a perfect source decides suggestions.
    truth = truth_of(project, elpv_dir, "defective")
    label_some(project, truth, n_per_class=8)
    un_before = suggest(project)
    f = write_csv(tmp_path / "preds.csv", [(p, v, 0.99) for p, v in truth.items()])
    import_predictions(project, f, "oracle")
    sug = suggest(project)
    ids = {r["id"]: p for p, r in project.store.images_by_path().items()}
    right = lambda s: np.mean([s.classes[c] == truth[ids[int(i)]]  # noqa: E731
                               for i, c, u in zip(s.image_ids, s.label, s.unlabelled) if u])
    assert right(sug) >= right(un_before)
    named = [i for i in np.flatnonzero(sug.unlabelled) if sug.source[i]]
    assert named and all(sug.source[i] == "model: oracle" for i in named)
    assert all(sug.text(i).startswith("model: oracle; ") for i in named)
    # The dashboard says it on the Next cards and the cluster cards.
    from labeler.app import create_app
    from labeler.app.suggestions import cluster_suggestions, suggestion_text
    from labeler.app.tabs.next import callbacks as ca

    actx = create_app(project).labeler
    for card in ca.next_view(actx, 5):
        text = str(card)
        assert "model: oracle; " not in text  # the source is said once, beside the label
    by_cluster = cluster_suggestions(actx)
    assert {v["source"] for v in by_cluster.values()} <= {None, "model: oracle"}
    s = {"label": "yes", "share": 1.0, "n": 3, "probability": 0.9, "evidence": "vouched", "source": "model: oracle"}
    assert suggestion_text(s).startswith("suggested: yes for 100% of 3 unlabelled (model: oracle): ")


def test_an_always_wrong_source_gets_no_say_and_flips_nothing(project, elpv_dir, tmp_path):
    truth = truth_of(project, elpv_dir, "cell_type")
    label_some(project, truth, n_per_class=6)
    before = suggest(project, use_cache=False)  # no warm start: both fits from scratch
    other = {"mono": "poly", "poly": "mono"}
    f = write_csv(tmp_path / "wrong.csv", [(p, other[v], 0.99) for p, v in truth.items()])
    import_predictions(project, f, "liar")
    after = suggest(project, use_cache=False)
    (e,) = after.to_dict()["experts"]
    assert e["accuracy"] == 0.0 and e["weight"] == 0.0 and e["decides"] == 0
    assert np.array_equal(before.label, after.label)
    assert np.allclose(before.probability, after.probability, atol=1e-5)
    assert not any(after.source)


def test_fit_pool_weighs_experts_by_held_out_agreement():
    rng = np.random.default_rng(0)
    m, k = 200, 3
    y = rng.integers(0, k, m)
    model = rng.normal(size=(m, k))  # an uninformative model
    good = np.log(np.full((m, k), 0.05))
    good[np.arange(m), y] = np.log(0.9)
    bad = np.roll(good, 1, axis=1)  # always the wrong class
    t, w = fit_pool(model, [good - good.mean(1, keepdims=True), bad - bad.mean(1, keepdims=True)], y)
    assert w[0] > 0.5 and w[1] == 0.0 and t > 0


def test_expert_scores_become_probabilities_over_the_labels_in_use():
    s = np.array([[0.8, np.nan], [np.nan, np.nan], [0.9, 0.9]], np.float32)  # labels a, z (z not in use)
    lp = Expert("model: x", ("a", "z"), s).log_proba(["a", "b", "c"])
    p = np.exp(lp) / np.exp(lp).sum(1, keepdims=True)
    assert np.allclose(p[0], [0.8, 0.1, 0.1], atol=1e-6)  # what 'a' leaves, spread over b and c
    assert np.all(lp[1] == 0)  # no score: no opinion
    assert p[2, 0] > p[2, 1] and np.isclose(p[2, 1], p[2, 2])


def test_a_version_3_project_gets_the_predictions_table(tmp_path):
    s = Store(tmp_path / "labeler.db")
    with s.transaction() as con:
        con.execute("DROP TABLE predictions")
        con.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    s.close()
    s = Store(tmp_path / "labeler.db")
    assert s.get_meta("schema_version") == SCHEMA_VERSION == 4 and s.prediction_sources() == []
