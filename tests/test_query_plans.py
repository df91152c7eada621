"""Every SQL query on the search and label paths, checked with EXPLAIN QUERY PLAN: none walks a
whole clustering or the whole label log (issue 23: one cluster lookup of a search scanned the
clustering through a covering index, 3.9 ms at 50k images instead of 0.013 ms).

The statements are the ones the product really runs: the connection's trace callback
records them, with their bound values, while a search, labels, an undo and a redo run.
"""

from __future__ import annotations

import re

from labeler import history, labels
from labeler.search import Searcher

#: Tables whose full scan (or a walk over one clustering) grows with the collection.
BIG = ("assignments", "label_events", "labels", "images")


def _traced(store, work) -> list[str]:
    seen: list[str] = []
    con = store.con
    con.set_trace_callback(seen.append)
    try:
        work()
    finally:
        con.set_trace_callback(None)
    return [s for s in seen if s.lstrip().upper().startswith(("SELECT", "WITH"))]


def _bad_steps(store, sql: str) -> list[str]:
    plan = [r[3] for r in store.con.execute("EXPLAIN QUERY PLAN " + sql)]
    bad = []
    for step in plan:
        table = re.search(r"(?:SCAN|SEARCH) (\w+)", step)
        if table is None or table.group(1) not in BIG:
            continue
        if step.startswith("SCAN"):
            bad.append(step)
        # a search of assignments on clustering_id alone walks a whole clustering
        elif table.group(1) == "assignments" and re.search(r"\(clustering_id=\?\)$", step):
            bad.append(step)
    return bad


def test_search_and_label_paths_use_indexes(project):
    store = project.store
    members = store.cluster_members(0)

    def work():
        s = Searcher(project)
        s.by_id(members[0], k=5)
        s.by_id(members[1], k=5, exact=True)
        labels.label_cluster(project, 0, "a", annotator="ana", clustering_id=store.current_clustering()["id"],
                             seen=members)
        labels.label_images(project, members[:2], "b", annotator="bob", relabel=True)
        history.undo(project, "ana")
        history.redo(project, "ana")

    statements = _traced(store, work)
    assert any("assignments" in s for s in statements)  # the trace did see the cluster lookups
    assert any("label_events" in s for s in statements)
    problems = {s: b for s in statements if (b := _bad_steps(store, s))}
    assert not problems, "\n".join(f"{s[:200]}\n  -> {b}" for s, b in problems.items())


def test_the_check_catches_a_scan(project):
    """The checker itself: a query that walks the clustering is reported."""
    cid = project.store.current_clustering()["id"]
    sql = f"SELECT image_id, cluster FROM assignments WHERE clustering_id={cid} AND image_id IN (1, 2)"
    assert _bad_steps(project.store, sql)  # SQLite's own choice: the covering index, whole clustering
    assert _bad_steps(project.store, "SELECT * FROM label_events WHERE annotator='x'")
