"""kill -9 anywhere (issue 25, item 2): ingest, re-clustering, export and fine-tuning
are killed with SIGKILL at random moments, then the project must hold.

A small real project is built from ELPV photos (``--images``, efficientnet-lite0) and
labelled by two annotators. For each operation, a completed run on a fresh copy
measures its wall time T; then each kill point runs the operation (``labeler ...`` in
its own process group) on a fresh copy of the project and kills the group at a time
drawn uniformly from [0, T) (seeded). After each kill:

- *opened*: the project opens (:class:`labeler.project.Project`) and its labels read;
- *check passed*: :func:`labeler.check.check_project` (``labeler check``) finds nothing;
  else whether it reported only an interrupted run's state, each finding "interrupted:
  ...; run `<command>` to finish it" (``labeler check`` exit status 2: images catalogued
  but not embedded, rows embedded but not yet in the arrays or on the map, the clustering
  model removed by a re-mapping), which the re-run then does;
- *labels lost*: labels committed before the run that are gone or changed (must be 0);
- *re-run ok*: the same command run again completes (exit 0), and the project then
  passes the check with the new state in place (the new images embedded and on the
  map; a new current clustering; a complete export; a new active feature set).

An export killed after its file or folder was renamed into place is complete; one
killed before must leave nothing at the output path (*partial outputs*, must be 0).

Operations (``--ops``):

- ``ingest``: the image folder gained ``--new`` photos since the last ingest, so it
  catalogues, embeds them (parts, then ``embeddings.npy``), places them on the map
  and in the clusters, writes their thumbnails;
- ``cluster``: ``labeler cluster`` with kmeans and hdbscan in turn; every 4th point
  (``--remap-every``) refits PCA and UMAP too (``--remap``, ~1 min per run on 2 cores);
- ``export``: csv, parquet, imagefolder (``--copy``) and hf in turn;
- ``finetune``: ``labeler finetune --epochs 1 --holdout 0 --loss ce``.

Usage (from the repository root; ~25 min on the shared 2-core machine)::

    python benchmarks/bench_kill.py --json
    python benchmarks/bench_kill.py --ops cluster,export --points 8 --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-c", "from labeler.cli import main; main()"]
FORMATS = ("csv", "parquet", "imagefolder", "hf")


def build(work: Path, n_images: int, n_new: int) -> tuple[Path, Path]:
    """The labelled base project (from ``n_images`` photos) and a folder with ``n_new`` more."""
    from labeler import labels
    from labeler.config import Settings
    from labeler.demo import prepare_elpv
    from labeler.pipeline import ingest
    from labeler.project import Project

    src, _ = prepare_elpv(work / "elpv", limit=n_images + n_new)
    files = sorted(src.iterdir())
    base_dir, full_dir = work / "images-base", work / "images-full"
    for d, fs in ((base_dir, files[:n_images]), (full_dir, files)):
        d.mkdir()
        for f in fs:
            shutil.copy2(f, d / f.name)
    root = work / "base"
    s = Settings(backbone="efficientnet-lite0", pca_components=16, min_cluster_size=4, min_samples=2,
                 batch_size=16, num_workers=0)
    ingest(base_dir, root, s, progress=False)
    p = Project(root)
    ids = p.store.row_image_ids()
    third = len(ids) // 3
    labels.label_images(p, ids[:third], "cracked", annotator="ana")
    labels.label_images(p, ids[third:2 * third], "intact", annotator="ben")
    p.store.close()
    return root, full_dir


def label_rows(root: Path) -> dict[int, tuple[str, str]]:
    con = sqlite3.connect(f"file:{root / 'labeler.db'}?mode=ro", uri=True, timeout=30)
    try:
        return {int(i): (lab, who) for i, lab, who in con.execute("SELECT image_id, label, annotator FROM labels")}
    finally:
        con.close()


def command(op: str, root: Path, i: int, trial: Path, full_dir: Path,
            remap_every: int) -> tuple[list[str], Path | None]:
    """The CLI arguments of kill point ``i`` of ``op`` and its output path (exports)."""
    if op == "ingest":
        return ["ingest", str(full_dir), "--project", str(root), "--quiet"], None
    if op == "cluster":
        remap = ["--remap"] if remap_every and i % remap_every == remap_every - 1 else []
        method = ["--method", "kmeans", "--k", "4"] if i % 2 == 0 else ["--method", "hdbscan"]
        return ["cluster", "--project", str(root), *method, *remap], None
    if op == "export":
        fmt = FORMATS[i % len(FORMATS)]
        out = trial / ("labels." + fmt if fmt in ("csv", "parquet") else f"set-{fmt}")
        return (["export", "--project", str(root), "-o", str(out), "--format", fmt, "--split", "0.5,0.5"]
                + (["--copy"] if fmt == "imagefolder" else [])), out
    if op == "finetune":
        return ["finetune", "--project", str(root), "--epochs", "1", "--holdout", "0", "--loss", "ce",
                "--quiet"], None
    raise SystemExit(f"unknown operation {op}")


def fresh_copy(base: Path, trial: Path, full_dir: Path, op: str) -> Path:
    from labeler.project import Project

    if trial.exists():
        shutil.rmtree(trial)
    trial.mkdir(parents=True)
    root = trial / "project"
    shutil.copytree(base, root)
    if op == "ingest":  # the folder now has new photos
        p = Project(root)
        p.store.set_meta(image_root=str(full_dir.resolve()))
        p.store.close()
    return root


def run(args: list[str], kill_after: float | None, timeout: float = 900) -> tuple[str, float, str]:
    """('killed' | 'finished' | 'failed', seconds, stderr tail)."""
    t0 = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(CLI + args, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True, env=env)
        try:
            p.wait(timeout=kill_after if kill_after is not None else timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return "killed", time.perf_counter() - t0, ""
        err.seek(0)
        tail = err.read().decode(errors="replace")[-2000:]
    return ("finished" if p.returncode == 0 else "failed"), time.perf_counter() - t0, tail


def export_complete(out: Path, fmt: str, expected: int) -> bool:
    """Whether ``out`` is a whole export of ``expected`` labelled images."""
    try:
        if fmt == "csv":
            import csv

            with open(out, newline="", encoding="utf-8") as f:
                return len(list(csv.DictReader(f))) == expected
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(out).num_rows == expected
        if fmt == "imagefolder":
            return sum(1 for p in out.rglob("*") if p.is_file()) == expected
        import datasets

        return sum(len(d) for d in datasets.load_from_disk(str(out)).values()) == expected
    except Exception:
        return False


def verify_after_rerun(op: str, root: Path, out: Path | None, args: list[str], state: dict) -> str | None:
    """What is wrong once the re-run completed (None: the operation's result is in place)."""
    from labeler.project import Project

    p = Project(root)
    try:
        if op == "ingest":
            n = p.store.next_row()
            if n != state["rows_after_ingest"] or len(p.load_array("map")) != n:
                return f"{n} rows, map {len(p.load_array('map'))}, expected {state['rows_after_ingest']}"
        elif op == "cluster":
            cur = p.store.current_clustering()
            if cur is None or cur["id"] <= state["clustering"]:
                return f"no new current clustering ({cur and cur['id']})"
        elif op == "export":
            fmt = args[args.index("--format") + 1]
            if not export_complete(out, fmt, state["labelled"]):
                return f"export {fmt} incomplete at {out.name}"
        elif op == "finetune":
            from labeler.embedding.feature_sets import active_feature_set

            if not active_feature_set(p).startswith("finetuned"):
                return f"active feature set {active_feature_set(p)}"
    finally:
        p.store.close()
    return None


def variant(args: list[str]) -> str:
    """The kind of run (its duration differs): the command, --remap, the export format."""
    out = args[0] + (" --remap" if "--remap" in args else "")
    return out + (f" {args[args.index('--format') + 1]}" if "--format" in args else "")


def reference_time(op: str, i: int, base: Path, work: Path, full_dir: Path, a, times: dict) -> float:
    """The wall time T of a completed run of kill point ``i``'s kind (measured once per kind,
    on a fresh copy): its kill falls uniformly in [0, T)."""
    trial = work / "trial"
    root = fresh_copy(base, trial, full_dir, op)
    args, _ = command(op, root, i, trial, full_dir, a.remap_every)
    kind = variant(args)
    if kind not in times:
        outcome, t, tail = run(args, None)
        if outcome != "finished":
            raise SystemExit(f"{kind}: the reference run failed: {tail[-1500:]}")
        print(f"  {kind}: a full run takes {t:.1f} s", file=sys.stderr)
        times[kind] = t
    return times[kind]


def kill_point(op: str, i: int, t_kill: float, base: Path, work: Path, full_dir: Path, before: dict,
               state: dict, a) -> dict:
    from labeler.check import check_project, exit_status
    from labeler.project import Project

    trial = work / "trial"
    root = fresh_copy(base, trial, full_dir, op)
    args, out = command(op, root, i, trial, full_dir, a.remap_every)
    outcome, secs, tail = run(args, t_kill)
    rec = {"op": op, "point": i, "t": round(t_kill, 2), "outcome": outcome, "command": args[0],
           "kind": variant(args), "seconds": round(secs, 2)}
    if outcome == "failed":
        rec["error"] = tail.strip().splitlines()[-1:] if tail.strip() else ""
    try:
        Project(root).store.labels()
        rec["opened"] = True
    except Exception as e:
        rec["opened"] = False
        rec["open_error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
    after = label_rows(root)
    rec["labels_lost"] = sum(1 for k, v in before.items() if after.get(k) != v)
    found = check_project(root)
    problems = [str(x) for x in found]
    rec["check_passed"] = not problems
    # Only an interrupted run's state ("interrupted: ...; run `<command>` to finish it",
    # `labeler check` exit status 2), which the re-run finishes.
    rec["check_resumable"] = exit_status(found) == 2
    if problems:
        rec["problems"] = [p.replace(str(work), "<work>") for p in problems[:5]]
    if out is not None:
        fmt = args[args.index("--format") + 1]
        present = out.exists() and (out.is_file() or any(out.iterdir()))
        rec["partial_output"] = present and not export_complete(out, fmt, state["labelled"])
        if present and not rec["partial_output"]:
            # Killed after the output was renamed into place: it is whole; the re-run
            # writes a new one beside it.
            out2 = out.with_name("again-" + out.name)
            args = [out2.as_posix() if x == str(out) else x for x in args]
            out = out2
    outcome2, secs2, tail2 = run(args, None)
    rec["rerun_seconds"] = round(secs2, 1)
    why = None if outcome2 == "finished" else (tail2.strip().splitlines() or ["?"])[-1]
    if why is None:
        why = verify_after_rerun(op, root, out, args, state)
        problems2 = [str(x) for x in check_project(root)]
        if problems2 and why is None:
            why = "; ".join(problems2[:3])
        if label_rows(root) != {**label_rows(root), **before} and why is None:
            why = "labels changed by the re-run"
    rec["rerun_ok"] = why is None
    if why:
        rec["rerun_error"] = why
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", default="ingest,cluster,export,finetune",
                    help="comma-separated: ingest, cluster, export, finetune")
    ap.add_argument("--points", default="16,16,16,4",
                    help="kill points per operation, in --ops order (default 16,16,16,4: 52)")
    ap.add_argument("--images", type=int, default=36, help="photos of the base project")
    ap.add_argument("--new", type=int, default=6, help="photos the ingest adds")
    ap.add_argument("--remap-every", type=int, default=4,
                    help="every Nth cluster point also refits the maps (--remap; default 4); 0: never")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--verbose", action="store_true", help="print every kill point")
    a = ap.parse_args()
    ops = [o.strip() for o in a.ops.split(",") if o.strip()]
    points = [int(x) for x in a.points.split(",")]
    if len(points) == 1:
        points *= len(ops)
    if len(points) != len(ops):
        raise SystemExit("--points: one count, or one per operation")
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    rng = random.Random(a.seed)
    t_start = time.time()
    work = a.work or Path(tempfile.mkdtemp(prefix="bench-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        from labeler.project import Project

        print(f"building a {a.images}-image project in {work} ...", file=sys.stderr)
        base, full_dir = build(work, a.images, a.new)
        before = label_rows(base)
        p = Project(base)
        state = {"labelled": len(before), "clustering": p.store.current_clustering()["id"],
                 "rows_after_ingest": p.store.next_row() + a.new}
        p.store.close()
        results, per_op, records, full_times = {}, {}, [], {}
        for op, n_points in zip(ops, points):
            print(f"{op}: {n_points} kill points", file=sys.stderr)
            recs = []
            i = 0
            while sum(r["outcome"] == "killed" for r in recs) < n_points and i < 3 * n_points:
                t_full = reference_time(op, i, base, work, full_dir, a, full_times)
                t_kill = rng.uniform(0, t_full)
                rec = kill_point(op, i, t_kill, base, work, full_dir, before, state, a)
                recs.append(rec)
                if rec["outcome"] == "finished":  # the machine got faster: later kills fall in the shorter run
                    full_times[rec["kind"]] = min(full_times[rec["kind"]], rec["seconds"])
                if a.verbose or not (rec["check_passed"] and rec["rerun_ok"] and not rec["labels_lost"]):
                    print(json.dumps(rec), file=sys.stderr)
                i += 1
            killed = [r for r in recs if r["outcome"] == "killed"]
            per_op[op] = {
                "full_run_seconds": {k: round(v, 1) for k, v in full_times.items() if k.startswith(op)},
                "points_killed": len(killed),
                "finished_before_kill": sum(r["outcome"] == "finished" for r in recs),
                "failed_before_kill": sum(r["outcome"] == "failed" for r in recs),
                "project_opened": sum(r["opened"] for r in killed),
                "check_passed": sum(r["check_passed"] for r in killed),
                "check_reported_interrupted_run": sum(r["check_resumable"] for r in killed),
                "labels_lost": sum(r["labels_lost"] for r in recs),
                "rerun_ok": sum(r["rerun_ok"] for r in killed),
            }
            if op == "export":
                per_op[op]["partial_outputs"] = sum(bool(r.get("partial_output")) for r in killed)
            problems = sorted({p for r in killed for p in r.get("problems", [])})
            if problems:
                per_op[op]["check_problems"] = problems[:10]
            records += recs
            print(f"{op}: " + ", ".join(f"{k} {v}" for k, v in per_op[op].items() if k != "check_problems"),
                  file=sys.stderr)
        totals = {k: sum(v.get(k, 0) for v in per_op.values())
                  for k in ("points_killed", "project_opened", "check_passed", "labels_lost", "rerun_ok")}
        results = {"benchmark": "kill", "seed": a.seed, "images": a.images, "new_images": a.new,
                   "labels_before": len(before), "operations": per_op, "total": totals,
                   "seconds": round(time.time() - t_start, 1)}
        for op, v in per_op.items():
            print(f"{op:9s} killed {v['points_killed']:3d}  opened {v['project_opened']:3d}  "
                  f"check passed {v['check_passed']:3d}  labels lost {v['labels_lost']}  "
                  f"re-run ok {v['rerun_ok']:3d}")
        print("check: passed, or reported an interrupted run with the command that finishes it: "
              + ", ".join(f"{op} {v['check_passed']} + {v['check_reported_interrupted_run']}"
                          for op, v in per_op.items()))
        print(f"{'total':9s} killed {totals['points_killed']:3d}  opened {totals['project_opened']:3d}  "
              f"check passed {totals['check_passed']:3d}  labels lost {totals['labels_lost']}  "
              f"re-run ok {totals['rerun_ok']:3d}")
        if a.json:
            print(json.dumps(results))
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
