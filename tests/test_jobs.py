"""labeler.jobs: the fine-tune press as a background job (start, progress, cancel, a second
start refused, a killed job seen as dead with its lock freed, activation in one step), on
the real 80-image ELPV project with a real press (1-2 epochs at 64 px)."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from labeler import jobs
from labeler.errors import BadInputError, NotFoundError, ProjectLockedError
from test_finetune import _label_cell_types

#: A press small enough for a test: cross-entropy, 64 px, every label trained on.
SMALL = {"epochs": 2, "holdout": 0.0, "loss": "ce", "input_size": 64, "device": "cpu"}


@pytest.fixture()
def labelled(project):
    """The project with 8 images of each cell type labelled (the press needs 10 in 2 labels)."""
    _label_cell_types(project, per_class=8)
    return project


def _sets(project):
    from labeler.embedding import feature_sets as fs

    return fs.active_feature_set(project), list(fs.list_feature_sets(project))


def _lock_is_free(project) -> bool:
    from labeler.project import project_lock

    try:
        with project_lock(project.root, "test"):
            return True
    except ProjectLockedError:
        return False


def _wait_for(project, job_id, stage: str, limit: float = 300.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        job = jobs.job_status(project, job_id)
        if job.stage == stage or not job.running:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {stage}")


def test_bad_requests_are_refused_before_anything_starts(labelled):
    with pytest.raises(BadInputError, match="unknown option"):
        jobs.start_job(labelled, "press", {"epoch": 3})
    with pytest.raises(BadInputError, match="unknown job kind"):
        jobs.start_job(labelled, "recolour")
    with pytest.raises(NotFoundError):
        jobs.job_status(labelled, "7")
    assert jobs.list_jobs(labelled) == [] and jobs.running_job(labelled, "press") is None


def test_a_start_while_another_writer_holds_the_project_is_refused_with_its_name(labelled):
    from labeler.project import project_lock

    with project_lock(labelled.root, "ingest"):
        with pytest.raises(ProjectLockedError, match=r"busy: ingest \(pid \d+\)"):
            jobs.start_job(labelled, "press", SMALL)
    assert jobs.list_jobs(labelled) == [] and _sets(labelled) == ("embeddings", ["embeddings"])


def test_a_killed_job_is_seen_as_dead_and_leaves_nothing_locked(labelled):
    job = jobs.start_job(labelled, "press", SMALL)
    assert job.running and not _lock_is_free(labelled)
    os.kill(job.pid, signal.SIGKILL)
    end = time.monotonic() + 30
    while jobs.job_status(labelled, job.id).running and time.monotonic() < end:
        time.sleep(0.05)
    dead = jobs.job_status(labelled, job.id)
    assert dead.state == "failed" and "ended without finishing" in dead.error and dead.ended
    assert _lock_is_free(labelled)
    assert _sets(labelled) == ("embeddings", ["embeddings"])
    assert jobs.running_job(labelled, "press") is None


@pytest.mark.slow
def test_a_press_job_reports_progress_lets_labelling_go_on_and_activates_in_one_step(labelled):
    """While the job runs: its progress is readable, a second start is refused naming it,
    labels can be written, and the active set stays the old one; at the end the new set
    is active and the suggestions come from it, not from a memo of the old ones."""
    from labeler.assist import memo
    from labeler.assist.suggest import accept, suggest
    from labeler.labels import label_images

    before = suggest(labelled)
    key_before = memo.state_key(labelled, "active", "combined")
    job = jobs.start_job(labelled, "press", SMALL, by="ann")
    with pytest.raises(ProjectLockedError, match=rf"job {job.id} started by ann.*--cancel {job.id}"):
        jobs.start_job(labelled, "press", SMALL)
    seen = []
    unlabelled = [int(i) for i, g in zip(before.image_ids, before.given) if g is None]
    label_images(labelled, [unlabelled[0]], "mono", annotator="ann")  # labelling goes on meanwhile
    while True:
        # The active set first, the record after: a new set seen active must then be in a
        # record at 'activating' or later (reading them the other way round races the job).
        active = _sets(labelled)[0]
        j = jobs.job_status(labelled, job.id)
        if not j.running:
            break
        seen.append((j.stage, j.fraction, active))
        time.sleep(0.05)
    assert j.state == "finished" and j.fraction == 1.0 and j.ended >= j.started, j
    name = j.result["name"]
    stages = [s for s, _, _ in seen]
    assert {"training", "re-embedding"} <= set(stages), stages
    fractions = [f for _, f, _ in seen]
    assert fractions == sorted(fractions) and 0 < fractions[-1] < 1
    assert {a for s, _, a in seen if s != "activating"} == {"embeddings"}  # never active before complete
    assert _sets(labelled) == (name, ["embeddings", name]) and j.result["previous"] == "embeddings"
    assert _lock_is_free(labelled) and jobs.running_job(labelled, "press") is None
    assert labelled.store.labels()[unlabelled[0]] == "mono"

    after = suggest(labelled)
    assert memo.state_key(labelled, "active", "combined") != key_before
    direct = suggest(labelled, features=name, use_cache=False)
    assert after.features == name
    np.testing.assert_array_equal(after.image_ids, direct.image_ids)
    np.testing.assert_allclose(after.probability, direct.probability)
    # An accept planned on the old suggestions: each image is accepted as the new set
    # suggests it, or refused when its suggestion changed; never the old plan.
    i = int(unlabelled[1])
    old_label = before.classes[int(before.label[list(before.image_ids).index(i)])]
    new_pos = list(after.image_ids).index(i)
    new_label = after.classes[int(after.label[new_pos])]
    if new_label == old_label:
        res = accept(labelled, old_label, None, image_ids=[i], allow_low=True)
        assert np.isclose(float(res.probability[0]), float(after.probability[new_pos]), atol=1e-6)
    else:
        with pytest.raises(BadInputError, match="carry no suggestion"):
            accept(labelled, old_label, None, image_ids=[i], allow_low=True)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["cancel", "sigterm"])
def test_a_cancelled_press_leaves_the_project_as_before(labelled, how):
    """Cancelled while the stage maps are computed (by the cancel file or SIGTERM): it stops
    at the next safe point (the next progress line), nothing new is stored or active, and
    the lock is free. The press has no safe point inside training yet: a cancel there lands
    when re-embedding starts, and a 2-epoch training can end before the test's cancel, so
    the test cancels an earlier stage."""
    before = _sets(labelled)
    job = jobs.start_job(labelled, "press", SMALL)
    assert _wait_for(labelled, job.id, "stage maps").running
    if how == "cancel":
        assert jobs.cancel_job(labelled, job.id).cancel_requested
    else:
        os.kill(job.pid, signal.SIGTERM)
    done = jobs.wait_job(labelled, job.id, timeout=300)
    assert done.state == "cancelled" and "as before" in done.error, done
    assert _sets(labelled) == before and not list(labelled.models_dir.glob("finetuned*"))
    assert _lock_is_free(labelled)
    with pytest.raises(BadInputError, match="not running"):
        jobs.cancel_job(labelled, job.id)
    assert [j.state for j in jobs.list_jobs(labelled, "press")] == ["cancelled"]


@pytest.mark.slow
def test_cli_background_press_jobs_list_cancel_and_wait(labelled):
    """`labeler finetune --background` prints the job id and returns; `labeler jobs`
    lists it, `--cancel` stops it, `--wait` follows it to its end (exit 1 unless finished)."""
    from click.testing import CliRunner

    from labeler.cli import main

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    assert run("jobs", "-p", labelled.root).output.strip() == "no jobs"
    res = run("finetune", "-p", labelled.root, "--background", "--epochs", 1, "--holdout", 0, "--loss", "ce",
              "--device", "cpu", "--annotator", "ann", "--train-from", "last")
    assert res.exit_code == 0 and res.output.startswith("started fine-tune job 1 (pid "), res.output
    assert jobs.job_status(labelled, "1").params["train_from"] == "last"
    assert run("jobs", "-p", labelled.root).output.startswith("job 1 (press) running")
    assert "cancel asked" in run("jobs", "-p", labelled.root, "--cancel", 1).output
    res = run("jobs", "-p", labelled.root, "--wait", 1)
    assert res.exit_code == 1 and res.output.strip().splitlines()[-1].startswith("job 1 (press) cancelled: ")
    assert _sets(labelled) == ("embeddings", ["embeddings"]) and _lock_is_free(labelled)
    res = run("jobs", "-p", labelled.root, "--cancel", 1)
    assert res.exit_code == 1 and "not running (cancelled)" in res.output


@pytest.mark.slow
def test_a_recluster_job_re_clusters_in_a_stored_set_and_cannot_be_cancelled_half_way(labelled):
    """The re-clustering a press offers, as a job: a new current clustering in the stored set,
    the previous one named for going back; a cancel is refused (a map without its clusters)."""
    from labeler.embedding.feature_sets import load_feature_set, save_feature_set

    with pytest.raises(BadInputError, match="unknown option"):
        jobs.start_job(labelled, "recluster", {"epochs": 3})
    x = np.asarray(load_feature_set(labelled, "embeddings"))
    save_feature_set(labelled, "learned", x[:, ::-1].copy(), {"kind": "finetuned"})  # a stored set of its own
    before = labelled.store.current_clustering()["id"]
    job = jobs.start_job(labelled, "recluster", {"feature_set": "learned"})
    with pytest.raises(BadInputError, match="cannot stop half-way"):
        jobs.cancel_job(labelled, job.id)
    with pytest.raises(ProjectLockedError, match=rf"recluster is already running \(job {job.id}"):
        jobs.start_job(labelled, "press", SMALL)
    done = jobs.wait_job(labelled, job.id, timeout=600)
    assert done.state == "finished", done
    now = labelled.store.current_clustering()["id"]
    assert now != before and done.result["clustering"] == now and done.result["previous"] == before
    assert f"labeler cluster --use {before}" in done.result["summary"] and _lock_is_free(labelled)


@pytest.mark.slow
def test_the_fine_tune_tabs_functions_on_a_real_job(labelled):
    """What the Fine-tune tab shows, without a browser: a started press is running with a bar
    and a Cancel button, a second start is refused with its name, the cancel ends it with a
    warning and no version bump, and no re-cluster is offered."""
    from labeler.app import create_app
    from labeler.app.actions import attempt
    from labeler.app.tabs.press import callbacks as tab

    actx = create_app(labelled).labeler
    assert tab.snapshot(actx) is None and tab.status_view(None)[0].startswith("No fine-tune has run")
    assert "started (job 1)" in tab.start_press(actx, "2", "rita", ["quick"])
    assert jobs.job_status(labelled, "1").params == {"epochs": 2, "train_from": "last"}  # the quick tick box
    out = attempt(tab.start_press, actx, 2, "bob")
    assert out.kind == "error" and "job 1 started by rita" in out.text
    snap = tab.snapshot(actx)
    text, _, bar, start_off, cancel_off, offer = tab.status_view(snap)
    assert text.startswith("job 1 (press) running") and bar["display"] == "block" and start_off and not cancel_off
    assert offer == {"display": "none"}
    assert "Cancelling fine-tune job 1" in tab.cancel_job(actx)
    done = jobs.wait_job(labelled, "1", timeout=300)
    text, kind, changed = tab.ended_message(tab.snapshot(actx))
    assert done.state == "cancelled" and kind == "warn" and not changed and text.startswith("Fine-tune cancelled")
    assert tab.status_view(tab.snapshot(actx))[2]["display"] == "none" and tab.cancel_job(actx).startswith("No ")
    assert _sets(labelled) == ("embeddings", ["embeddings"])
    # Nothing learned to re-cluster on: the ingest embeddings are active (refused, no job).
    assert tab.start_recluster(actx, "rita").startswith("The active feature set is the ingest's embeddings")
    assert len(jobs.list_jobs(labelled)) == 1
    pressed = {"kind": "press", "state": "finished", "fraction": 1.0, "line": "job 2 (press) finished",
               "cancel": False, "result": {"active": True, "name": "finetuned-1"}}
    assert tab.status_view(pressed, "finetuned-1")[5] == {"display": "inline-block"}
    assert tab.status_view(pressed, "embeddings")[5] == {"display": "none"}  # gone back: no offer
