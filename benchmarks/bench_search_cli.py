"""Shell search speed: `labeler search` as a user runs it, cold, in a fresh process.

Measures, as subprocesses (import + model load + search, what a shell user waits for):

* ``one``: one query photo that is *not* in the collection (a mirrored ELPV
  photo: new bytes, so it must be embedded), the median of ``--repeat`` calls;
* ``hundred``: 100 such photos in one call (``labeler search DIR --json``).

on a copy of an ingested ELPV project (``--project``, default the demo's
``data/projects/elpv``; copied to a temporary folder first, never written). With
``--base DIR`` (a checkout of the code before the change, e.g. ``git worktree add
--detach ../base-search main``; without ``--detach`` git refuses a branch checked out
here) the same command runs from there too, in the same run, so before/after come
from the same machine load. A
base whose ``search`` takes one query per call gets ``hundred`` = 100 x its
single-call median, marked ``extrapolated``.

Goals (issue 11): one cold call <= 5 s, 100 queries in one call <= 20 s on 2 cores.

Run:  python benchmarks/bench_search_cli.py                      (after `labeler demo --no-serve`)
      python benchmarks/bench_search_cli.py --project data/projects/elpv --base ../base-search --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

from labeler.project import Project

from common import add_project_argument, existing

ROOT = Path(__file__).resolve().parents[1]  # the code measured as "after" (its subprocesses' PYTHONPATH)


def _queries(project: Path, dest: Path, n: int) -> list[Path]:
    """``n`` mirrored copies of the project's first photos (new content hashes)."""
    p = Project(project)
    rows = p.store.image_table()[:n]
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for r in rows:
        with Image.open(p.image_root / r["path"]) as im:
            q = dest / f"q{r['id']:05d}.png"
            ImageOps.mirror(im).save(q)
            out.append(q)
    return out


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(code_dir: Path, args: list[str]) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds (user + system: less sensitive to a busy machine), rc, output."""
    t, c = time.perf_counter(), _cpu()
    proc = subprocess.run([sys.executable, "-m", "labeler.cli", "search", *args], cwd=code_dir,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(code_dir)})
    return time.perf_counter() - t, _cpu() - c, proc.returncode, proc.stdout + proc.stderr


def _measure(code_dir: Path, project: Path, one: Path, folder: Path, repeat: int) -> dict:
    singles, cpus = [], []
    for _ in range(repeat):
        s, c, rc, out = _run(code_dir, [str(one), "-p", str(project), "-k", "10", "--json"])
        if rc != 0:
            raise SystemExit(f"{code_dir}: search failed:\n{out[-2000:]}")
        singles.append(s)
        cpus.append(c)
    res = {"one_s": round(statistics.median(singles), 2), "one_runs_s": [round(x, 2) for x in singles],
           "one_cpu_s": round(statistics.median(cpus), 2)}
    s, c, rc, out = _run(code_dir, [str(folder), "-p", str(project), "-k", "10", "--json"])
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if rc == 0 and len(lines) >= 100:
        res.update(hundred_s=round(s, 2), hundred_cpu_s=round(c, 2), hundred_extrapolated=False)
    else:  # the old CLI takes one query per call
        res.update(hundred_s=round(100 * res["one_s"], 1), hundred_cpu_s=round(100 * res["one_cpu_s"], 1),
                   hundred_extrapolated=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_project_argument(ap, "an ingested ELPV project (copied first, never written)")
    ap.add_argument("--base", type=Path, default=None, help="Checkout of the code before the change.")
    ap.add_argument("--repeat", type=int, default=3, help="Single cold calls per code version (median).")
    ap.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-search-cli-") as tmp:
        tmp = Path(tmp)
        project = tmp / "project"
        shutil.copytree(existing(args.project, "project"), project)
        qs = _queries(project, tmp / "queries", 100)
        one_dir = tmp / "one"
        one_dir.mkdir()
        one = Path(shutil.copy(qs[0], one_dir / qs[0].name))
        out = {"n_images": None, "cores": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2)}
        out["n_images"] = len(Project(project).store.image_table())
        out["after"] = _measure(ROOT, project, one, tmp / "queries", args.repeat)
        if args.base:
            out["before"] = _measure(args.base.resolve(), project, one, tmp / "queries", args.repeat)
        out["load_1min_end"] = round(os.getloadavg()[0], 2)

    for name in ("before", "after"):
        if name in out:
            r = out[name]
            extra = " (extrapolated: 100 x one call)" if r["hundred_extrapolated"] else ""
            print(f"{name:>6}: one cold query {r['one_s']:.2f} s wall, {r['one_cpu_s']:.2f} s CPU "
                  f"(runs {r['one_runs_s']}); 100 queries {r['hundred_s']:.1f} s wall, "
                  f"{r['hundred_cpu_s']:.1f} s CPU{extra}")
    print(f"project: {out['n_images']} images; cores {out['cores']}; load {out['load_1min']} -> {out['load_1min_end']}; "
          f"goals: one <= 5 s, 100 <= 20 s")
    print(f"command: python benchmarks/bench_search_cli.py --project {args.project}"
          + (f" --base {args.base}" if args.base else "") + f" --repeat {args.repeat}")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
