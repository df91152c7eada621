"""labeler.embedding.finetune options: which stages are trained, class weights, refusals."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from labeler.errors import BadInputError


def _label_cell_types(project, per_class: int = 20) -> None:
    from labeler.labels import label_images

    with open(project.image_root.parent / "truth.csv") as f:
        truth = {r["path"]: r["cell_type"] for r in csv.DictReader(f)}
    by_class: dict[str, list[int]] = {}
    for r in project.store.image_table():
        by_class.setdefault(truth[r["path"].split("/")[-1]], []).append(int(r["id"]))
    for lab, ids in by_class.items():
        label_images(project, ids[:per_class], lab)


@pytest.mark.parametrize("kw", [{"train_from": "s4"}, {"class_weight": "inverse"}, {"epochs": 0}])
def test_bad_options_are_refused_and_change_nothing(project, kw):
    from labeler.embedding import feature_sets as fs
    from labeler.embedding.finetune import finetune_project

    _label_cell_types(project)
    with pytest.raises(BadInputError):
        finetune_project(project, device="cpu", progress=False, **kw)
    assert list(fs.list_feature_sets(project)) == ["embeddings"] and fs.active_feature_set(project) == "embeddings"


def test_training_from_the_stride_8_stages_with_balanced_weights(project):
    """train_from='s8' also trains the stride-16 stages; the record says what was trained."""
    from labeler.embedding import feature_sets as fs
    from labeler.embedding.finetune import finetune_project

    _label_cell_types(project, per_class=6)
    rep = finetune_project(project, epochs=1, device="cpu", holdout=0.0, train_from="s8", class_weight="balanced",
                           progress=False)
    assert rep.n_train == 12 and rep.n_heldout == 0 and rep.heldout_accuracy is None
    info = fs.list_feature_sets(project)[rep.name]
    assert (info["train_from"], info["class_weight"], info["dim"]) == ("s8", "balanced", 1280)
    assert sorted(info["train_image_ids"]) == sorted(project.store.labels())  # holdout 0: every label seen
    x = np.asarray(fs.load_feature_set(project, rep.name))
    assert np.isfinite(x).all() and np.all(np.linalg.norm(x, axis=1) > 0)
    import torch

    saved = torch.load(project.models_dir / f"{rep.name}.pt", weights_only=False)
    assert saved["prefix_end"] < 10  # Lite0's last stride-8 block is block 4 (s16 would be 10)
