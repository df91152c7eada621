"""Several annotators on one project: the two-annotator race (A opens a cluster, B
re-clusters or splits, A labels -> refused, nothing written), through the dashboard's
actions and the CLI; the project lock against a second ingest/cluster run."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager

from click.testing import CliRunner

from labeler.app import create_app
from labeler.app.actions import attempt
from labeler.app.labelling import label_cluster_action
from labeler.app.tabs.clusters.callbacks import cluster_seen
from labeler.app.tabs.refine.callbacks import apply_split_action, split_preview_action
from labeler.cli import main
from labeler.project import Project, project_lock


@contextmanager
def _held_elsewhere(root, what: str):
    """The project lock held by another thread (the lock is re-entrant within one thread,
    so the holder must not be the thread that runs the commands)."""
    got, release = threading.Event(), threading.Event()

    def hold():
        with project_lock(root, what):
            got.set()
            release.wait(120)

    t = threading.Thread(target=hold)
    t.start()
    assert got.wait(30)
    try:
        yield
    finally:
        release.set()
        t.join()


def _two_annotators(project):
    other = Project(project.root)  # B: another worker process opens the project the same way
    return create_app(project).labeler, create_app(other).labeler, other


def test_label_cluster_after_someone_else_split_it_is_refused(project):
    a, b, other = _two_annotators(project)
    seen = cluster_seen(a, 0)  # A opens cluster 0: the page holds its clustering and members
    assert seen["members"] == project.store.cluster_members(0)
    preview = split_preview_action(b, 0, "kmeans", 2)  # B splits cluster 0 meanwhile
    assert attempt(apply_split_action, b, preview, "bob").kind == "ok"
    before = (project.store.labels(), len(project.store.label_events()))
    text, kind = attempt(label_cluster_action, a, 0, "mono", "ana",
                         clustering_id=seen["clustering_id"], seen=seen["members"])
    assert kind == "error" and text.startswith("Conflict:") and "reload" in text
    assert (project.store.labels(), len(project.store.label_events())) == before == ({}, 0)
    # after a reload A sees the current clustering and can label what is now shown
    fresh = cluster_seen(a, next(iter(project.store.clusters_for(seen["members"][:1]).values())))
    text, kind = attempt(label_cluster_action, a, fresh["cluster"], "mono", "ana",
                         clustering_id=fresh["clustering_id"], seen=fresh["members"])
    assert kind == "ok" and set(project.store.labels()) == set(fresh["members"])
    other.store.close()


def test_label_cluster_after_a_recluster_is_refused_even_if_the_number_survives(project):
    from labeler.clustering import cluster_project

    a, b, other = _two_annotators(project)
    seen = cluster_seen(a, 1)
    cluster_project(other, other.settings(method="kmeans", k=4))  # B re-clusters: cluster 1 exists again
    assert project.store.cluster_members(1)
    text, kind = attempt(label_cluster_action, a, 1, "poly", "ana",
                         clustering_id=seen["clustering_id"], seen=seen["members"])
    assert kind == "error" and "clustering changed" in text
    assert project.store.labels() == {}
    other.store.close()


def test_cli_label_cluster_refers_to_the_clustering_it_names(project):
    p = str(project.root)

    def run(*args):
        return CliRunner().invoke(main, [str(x) for x in args])

    info = json.loads(run("info", "--project", p, "--json").output)
    cid = info["clustering_id"]
    assert cid == project.store.current_clustering()["id"] and info["counts"]["labelled"] == 0
    assert run("cluster", "--project", p, "--method", "kmeans", "--k", 4).exit_code == 0  # between info and label
    res = run("label", "--project", p, "--cluster", 0, "--clustering", cid, "mono")
    assert res.exit_code == 1 and "clustering changed" in res.output and "Traceback" not in res.output
    assert project.store.labels() == {}


def test_a_second_ingest_or_cluster_run_fails_fast_while_the_dashboard_reads_and_labels(project, tmp_path):
    app = create_app(project)
    with _held_elsewhere(project.root, "ingest"):
        runner = CliRunner()
        res = runner.invoke(main, ["cluster", "--project", str(project.root), "--method", "kmeans", "--k", "3"])
        assert res.exit_code == 1 and "busy" in res.output and "ingest (pid" in res.output
        res = runner.invoke(main, ["ingest", str(tmp_path), "--project", str(project.root)])
        assert res.exit_code == 1 and "busy" in res.output
        assert app.server.test_client().get("/_dash-layout").status_code == 200
        ids = project.store.cluster_members(0)[:2]
        assert attempt(label_cluster_action, app.labeler, 0, "mono", "ana", excluded=[]).kind == "ok"
        assert set(ids) <= set(project.store.labels())
    # released: the next run proceeds
    res = CliRunner().invoke(main, ["cluster", "--project", str(project.root), "--method", "kmeans", "--k", "3"])
    assert res.exit_code == 0, res.output
