"""labeler.embedding.semi: FixMatch on the cached prefix maps, and its guards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from labeler.errors import BadInputError


def test_the_strong_view_keeps_the_shape_and_cuts_out_a_square_of_every_map():
    from labeler.embedding.semi import strong_view

    h = torch.rand(16, 8, 7, 7) + 0.5  # no zero anywhere before the view
    out = strong_view(h, torch.Generator().manual_seed(0))
    assert out.shape == h.shape and out.dtype == h.dtype
    side = 2  # ceil(7 / 4)
    for m in out:
        zero = (m == 0).all(dim=0)  # positions zero in every channel
        assert any(bool(zero[y:y + side, x:x + side].all()) for y in range(6) for x in range(6))
        assert int(zero.sum()) < 49  # not the whole map
    again = strong_view(h, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # the press's seed decides every random choice


def test_the_strong_view_only_drops_channels_and_cuts_out():
    """What is left of each channel is 0 (dropped or cut out) or the value / (1 - CHANNEL_DROP),
    at its own place (the map is not turned); the input is left as it was."""
    from labeler.embedding.semi import CHANNEL_DROP, strong_view

    h = torch.rand(4, 8, 8, 8) + 0.5
    before = h.clone()
    out = strong_view(h, torch.Generator().manual_seed(1))
    assert torch.equal(h, before)
    scaled = h / (1 - CHANNEL_DROP)
    assert torch.all((out == 0) | torch.isclose(out, scaled))
    dropped = (out == 0).flatten(2).all(dim=2)  # whole channels
    assert 0 < int(dropped.sum()) < 4 * 8


def test_distribution_alignment_moves_predictions_to_the_hand_labels_shares():
    from labeler.embedding.semi import DistributionAlignment

    da = DistributionAlignment(torch.tensor([10.0, 10.0]))
    p = torch.tensor([[0.9, 0.1]] * 4)
    q = da.align(p)  # running mean (0.9, 0.1) against the prior (0.5, 0.5)
    assert torch.allclose(q, torch.full_like(q, 0.5))
    da2 = DistributionAlignment(torch.tensor([3.0, 1.0]))
    assert torch.allclose(da2.align(torch.tensor([[0.75, 0.25], [0.75, 0.25]])), torch.tensor([[0.75, 0.25]] * 2))
    with pytest.raises(BadInputError, match="every class"):
        DistributionAlignment(torch.tensor([4.0, 0.0]))


def test_the_threshold_is_relative_to_what_label_smoothing_trains_towards():
    from labeler.embedding.semi import pseudo_labels

    p = torch.tensor([[0.94, 0.06], [0.5, 0.5], [0.2, 0.8]])
    labels, mask = pseudo_labels(p, 0.95, ceiling=1.0)
    assert labels.tolist() == [0, 0, 1] and mask.tolist() == [False, False, False]
    labels, mask = pseudo_labels(p, 0.95, ceiling=0.95)  # smoothing 0.1, 2 classes: 0.94 / 0.95 passes
    assert mask.tolist() == [True, False, False]


class _Tiny(nn.Module):
    """A tail-shaped network (``embed``, ``fc``, ``forward``) whose class is set by its weights."""

    def __init__(self, w: list[list[float]]):
        super().__init__()
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor(w))

    def embed(self, h):
        return h.mean(dim=(2, 3))

    def forward(self, h):
        return self.fc(self.embed(h))


def _fixmatch(n=40, epochs=10):
    from labeler.embedding.semi import FixMatch

    maps = np.zeros((n, 2, 4, 4), np.float16)
    maps[: n // 2, 0] = 1  # class 0 images: channel 0 on
    maps[n // 2:, 1] = 1
    return FixMatch(maps, np.arange(n), torch.tensor([5.0, 5.0]), 0.1, epochs, torch.device("cpu"), seed=0), maps


def test_the_unlabelled_term_ramps_up_from_zero_and_uses_only_confident_predictions():
    from labeler.embedding.semi import RAMP_SHARE

    fm, _ = _fixmatch(epochs=10)
    right = _Tiny([[20.0, -20.0], [-20.0, 20.0]])
    assert fm.loss(right, 16, epoch=0) is None and fm.drawn == 0  # epoch 0: hand labels only
    assert fm.weight(1) == pytest.approx(1 / (RAMP_SHARE * 10)) and fm.weight(5) == 1.0
    loss = fm.loss(right, 16, epoch=5)
    assert loss is not None and loss.requires_grad and fm.drawn == 16 and fm.confident == 16
    unsure = _Tiny([[0.01, 0.0], [0.0, 0.01]])
    before = fm.confident
    assert fm.loss(unsure, 16, epoch=5) is None and fm.confident == before


def test_the_heldout_check_switches_the_term_off_when_confident_predictions_are_wrong():
    """A network confidently wrong on the held-out hand labels must not go on teaching the
    unlabelled images its mistake; one that is right keeps learning."""
    from labeler.embedding.semi import MIN_CONFIDENT

    fm, maps = _fixmatch(epochs=10)
    held = torch.from_numpy(maps.astype(np.float32))
    truth = np.array([0] * 20 + [1] * 20)
    right, wrong = _Tiny([[20.0, -20.0], [-20.0, 20.0]]), _Tiny([[-20.0, 20.0], [20.0, -20.0]])
    fm.check(right, held, truth, epoch=2)
    assert fm.active and fm.heldout_precision == 1.0 and fm.heldout_confident >= MIN_CONFIDENT
    fm.check(wrong, held, truth, epoch=3)
    assert not fm.active and fm.stopped_epoch == 4 and fm.heldout_precision == 0.0
    assert fm.weight(5) == 0.0 and fm.loss(right, 16, epoch=5) is None
    assert fm.summary()["semi_stopped_epoch"] == 4
    from labeler.embedding.semi import describe

    line = describe(fm.summary(), ["a", "b"])
    assert "held-out precision of confident predictions 0.000" in line and "switched off after epoch 4" in line


def test_bad_semi_options_are_refused_and_change_nothing(project):
    from labeler.embedding import feature_sets as fs
    from labeler.embedding.finetune import finetune_project
    from test_finetune import _label_cell_types

    _label_cell_types(project, per_class=6)
    with pytest.raises(BadInputError, match="semi must be one of"):
        finetune_project(project, device="cpu", progress=False, semi="mixmatch")
    with pytest.raises(BadInputError, match="needs the prefix cache"):
        finetune_project(project, device="cpu", progress=False, semi="fixmatch", prefix_cache=False)
    assert list(fs.list_feature_sets(project)) == ["embeddings"]


def test_a_fixmatch_press_learns_from_the_images_no_person_labelled(project, monkeypatch):
    """The unlabelled pool is every readable image without a hand label: the held-out hand
    labels are not in it (they check the pseudo-labels); the record says what it learned."""
    from labeler.embedding import feature_sets as fs
    from labeler.embedding import semi
    from labeler.embedding.finetune import finetune_project
    from test_finetune import _label_cell_types

    _label_cell_types(project, per_class=6)
    pools = []
    real_init = semi.FixMatch.__init__

    def record(self, maps, pool, *a, **kw):
        pools.append(np.asarray(pool))
        real_init(self, maps, pool, *a, **kw)

    monkeypatch.setattr(semi.FixMatch, "__init__", record)
    said = []
    rep = finetune_project(project, epochs=3, device="cpu", holdout=0.2, train_from="last", semi="fixmatch",
                           progress=False, say=said.append)
    table = project.store.image_table()
    hand_rows = {int(r["row"]) for r in table if int(r["id"]) in project.store.labels()}
    (pool,) = pools
    assert len(pool) == len(table) - len(hand_rows) and not hand_rows & set(pool.tolist())
    assert any(f"and {len(pool)} unlabelled (fixmatch)" in s for s in said)
    assert rep.semi == "fixmatch" and rep.semi_stats["unlabelled_drawn"] > 0 and rep.n_heldout == 2
    info = fs.list_feature_sets(project)[rep.name]
    assert info["semi"] == "fixmatch" and info["semi_stats"] == rep.semi_stats
    x = np.asarray(fs.load_feature_set(project, rep.name))
    assert x.shape == (len(table), 1280) and np.isfinite(x).all()


def test_the_cli_press_with_fixmatch_says_what_the_unlabelled_images_taught(project):
    from click.testing import CliRunner

    from labeler.cli import main
    from labeler.embedding import feature_sets as fs
    from test_finetune import _label_cell_types

    _label_cell_types(project, per_class=6)
    project.store.close()
    r = CliRunner().invoke(main, ["finetune", "--project", str(project.root), "--semi", "fixmatch", "--epochs", "2",
                                  "--train-from", "last", "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    line = next(s for s in r.output.splitlines() if s.startswith("unlabelled images: "))
    assert " drawn became pseudo-labels (" in line and ("held-out precision" in line or "no held-out check" in line)
    assert fs.feature_set_info(project, "finetuned-1")["semi"] == "fixmatch"
    r = CliRunner().invoke(main, ["finetune", "--project", str(project.root), "--semi", "mixmatch"])
    assert r.exit_code == 2 and "'mixmatch' is not one of 'none', 'fixmatch', 'meanteacher'" in r.output


def test_the_mean_teacher_follows_the_student_and_asks_for_its_soft_predictions():
    """The teacher starts as a copy, moves by EMA_DECAY towards the student at each step; the
    term is 0 before the ramp and before any step, then a differentiable consistency."""
    from labeler.embedding.semi import EMA_DECAY, MeanTeacher

    maps = np.random.default_rng(0).random((30, 2, 4, 4)).astype(np.float16)
    mt = MeanTeacher(maps, np.arange(30), torch.tensor([1.0, 1.0]), 0.1, 10, torch.device("cpu"), seed=0)
    student = _Tiny([[1.0, 0.0], [0.0, 1.0]])
    assert mt.loss(student, 8, epoch=5) is None  # no teacher before the first step
    mt.after_step(student)
    with torch.no_grad():
        student.fc.weight.add_(1.0)
    mt.after_step(student)
    eye = torch.eye(2)
    expect = eye * EMA_DECAY + (eye + 1) * (1 - EMA_DECAY)
    assert torch.allclose(mt.teacher.fc.weight, expect)
    assert mt.loss(student, 8, epoch=0) is None
    loss = mt.loss(student, 8, epoch=5)
    assert loss is not None and loss.requires_grad and float(loss) >= 0 and mt.drawn == 8
    held = torch.from_numpy(maps[:10].astype(np.float32))
    mt.check(student, held, np.zeros(10, int), epoch=5)
    assert 0.0 <= mt.summary()["teacher_heldout_accuracy"] <= 1.0
    from labeler.embedding.semi import describe

    assert describe(mt.summary(), ["a", "b"]).startswith("unlabelled images: 8 drawn; the teacher's held-out accuracy")
    assert describe(None, ["a", "b"]) is None


def test_a_mean_teacher_press_stores_its_record(project):
    from labeler.embedding import feature_sets as fs
    from labeler.embedding.finetune import finetune_project
    from test_finetune import _label_cell_types

    _label_cell_types(project, per_class=6)
    rep = finetune_project(project, epochs=2, device="cpu", holdout=0.2, train_from="last", semi="meanteacher",
                           progress=False)
    assert rep.semi_stats["unlabelled_drawn"] > 0 and rep.semi_stats["teacher_heldout_accuracy"] is not None
    assert fs.list_feature_sets(project)[rep.name]["semi"] == "meanteacher"
