"""Long project jobs (the fine-tune press, a re-clustering in its space) run in the background.

A job runs in its own process (``python -m labeler.jobs``), not in a thread of the
dashboard: it survives a dashboard restart, a gunicorn worker being recycled and a
Ctrl-C in the terminal that started it (its own session), and it can be stopped
without taking a request thread with it. Its state lives in the project directory,
where every dashboard worker and the CLI read it::

    jobs/<id>.json     the record: kind, state, stage, fraction, message, pid, result or error
                       (written only by the job, atomically: :func:`labeler.atomic.atomic_write`)
    jobs/<id>.lock     held by the job's process for its whole life (:func:`labeler.locks.file_lock`)
    jobs/<id>.cancel   present once a cancel was asked for
    jobs/<id>.log      the job's stdout and stderr

Liveness is the lock, not the pid: the kernel releases it when the process ends, even
by ``kill -9``, so a record that says ``running`` while nobody holds its lock belongs to
a job that died; the first reader then marks it ``failed`` (a pid can be reused by
another process; a lock cannot be inherited by it). The job also holds the project
lock (:func:`labeler.project.project_lock`) while it writes, which the kernel frees the
same way, so a second press (or an ingest) is refused while one runs, and a killed one
leaves nothing locked. The record's ``heartbeat`` (every :data:`HEARTBEAT_S` s) tells a
live but stuck job apart from one that is working.

Cancel is cooperative: the job stops at its next safe point, before anything is
written to the project, and leaves it as before. The press writes its new feature set
with ``activate=False`` and makes it active as its very last step
(:func:`labeler.embedding.feature_sets.set_active_feature_set`, one database write), so
the new vectors become active only when complete; a cancel that arrives after the
vectors were stored leaves them stored but not active (the active set unchanged).

A re-clustering in a learned space (``'recluster'``, :func:`labeler.pipeline.recluster`
with ``feature_set``) runs the same way but cannot be cancelled: stopped half-way it would
leave a new map beside the old clusters (``labeler cluster --use ID`` goes back after).

Suggestions follow the active set by name and file (:mod:`labeler.assist.memo`'s key),
so the first request after activation recomputes them on the new vectors; an accept
recomputes the suggestions it accepts (:func:`labeler.assist.suggest.accept`) and
refuses an image whose suggestion changed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .atomic import atomic_write
from .errors import BadInputError, LabelerError, NotFoundError, ProjectLockedError
from .locks import file_lock

__all__ = ["HEARTBEAT_S", "JOB_KINDS", "PRESS_OPTIONS", "RECLUSTER_OPTIONS", "Job", "JobCancelled", "cancel_job", "job_status",
           "list_jobs", "run_job", "running_job", "start_job", "wait_job"]

#: Seconds between two heartbeats of a running job.
HEARTBEAT_S = 5.0
#: Keyword arguments of :func:`labeler.embedding.finetune.finetune_project` a press job passes on
#: (``activate``: make the new set active at the end, default True).
PRESS_OPTIONS = ("epochs", "holdout", "device", "loss", "name", "activate", "input_size", "seed", "batch_size",
                 "lr", "train_from", "class_weight", "head", "tta", "semi", "prefix_cache", "cache_budget_gb")
#: Keyword arguments of :func:`labeler.pipeline.recluster` a recluster job passes on
#: (``feature_set``: re-map and re-cluster in that stored set, default the active one).
RECLUSTER_OPTIONS = ("feature_set",)
#: States of a job record; the first is the only live one.
STATES = ("running", "finished", "failed", "cancelled")

#: The press's stages as its ``step`` hook reports them (:func:`labeler.embedding.finetune.finetune_project`),
#: with the share of the work done when each starts and ends (coarse: set by the ELPV press's timings).
_PRESS_STAGES = {"stage maps": (0.05, 0.3), "training": (0.3, 0.8), "re-embedding": (0.8, 0.99)}


class JobCancelled(LabelerError):
    """Raised inside a job at a safe point once its cancel was asked for."""


@dataclass
class Job:
    """One job's record (``jobs/<id>.json``).

    Attributes
    ----------
    id : str
        ``'1'``, ``'2'`` ... per project.
    kind : str
        One of :data:`JOB_KINDS` (``'press'``, ``'recluster'``).
    state : str
        ``'running'``, ``'finished'``, ``'failed'`` or ``'cancelled'``.
    stage : str
        What it is doing (``'training'``, ``'re-embedding'``, ``'activating'`` ...).
    fraction : float
        Share of the work done, in [0, 1] (coarse).
    message : str
        The job's latest progress line.
    pid : int
    by : str or None
        Who started it (annotator name), if given.
    params : dict
        The options it runs with.
    started, heartbeat, ended : float
        Unix times (s); ``ended`` None while running.
    error : str or None
        The one-line error of a failed job, or why a cancelled one stopped.
    result : dict or None
        A finished press: ``name``, ``previous``, ``active``, training figures.
    cancel_requested : bool
        A cancel was asked for (read from ``jobs/<id>.cancel``, not stored).
    """

    id: str
    kind: str
    state: str = "running"
    stage: str = "starting"
    fraction: float = 0.0
    message: str = ""
    pid: int = 0
    by: str | None = None
    params: dict = field(default_factory=dict)
    started: float = 0.0
    heartbeat: float = 0.0
    ended: float | None = None
    error: str | None = None
    result: dict | None = None
    cancel_requested: bool = False

    @property
    def running(self) -> bool:
        return self.state == "running"

    def line(self) -> str:
        """One line for a person: ``job 3 (press) running: training, 30 % (...)``."""
        head = f"job {self.id} ({self.kind}) {self.state}"
        if self.running:
            stop = "; cancel asked" if self.cancel_requested else ""
            quiet = time.time() - self.heartbeat
            if quiet > 6 * HEARTBEAT_S:  # alive (it holds its lock) but not heard from: stuck?
                stop += f"; no heartbeat for {quiet:.0f} s"
            return f"{head}: {self.stage}, {self.fraction:.0%}{stop}" + (f" ({self.message})" if self.message else "")
        if self.state == "finished" and self.result:
            return f"{head}: {self.result.get('summary', '')}".rstrip(": ")
        return f"{head}" + (f": {self.error}" if self.error else "")


def _root(project) -> Path:
    """The project directory of a Project or a path (a Path's own ``.root`` is '/')."""
    return Path(project.root if hasattr(project, "store") else project).expanduser().resolve()


def _dir(project) -> Path:
    return _root(project) / "jobs"


def _paths(project, job_id: str) -> dict[str, Path]:
    d = _dir(project)
    return {k: d / f"{job_id}.{k}" for k in ("json", "lock", "cancel", "log")}


def _read(path: Path) -> Job | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # not there (yet), or a foreign file
        return None
    data.pop("cancel_requested", None)
    return Job(**data)


def _write(path: Path, job: Job, durable: bool = False) -> None:
    data = asdict(job)
    data.pop("cancel_requested")
    with atomic_write(path, durable=durable) as f:
        f.write(json.dumps(data).encode())


def _alive(lock: Path) -> bool:
    """Whether a process holds the job's lock (refused at once when it does)."""
    try:
        with file_lock(lock, blocking=False):
            return False
    except BlockingIOError:
        return True


def job_status(project, job_id: str) -> Job:
    """The record of job ``job_id``; a ``running`` job whose process is gone is marked failed.

    Raises
    ------
    NotFoundError
        No such job in this project.
    """
    p = _paths(project, str(job_id))
    job = _read(p["json"])
    if job is None:
        raise NotFoundError(f"no job {job_id} in this project (`labeler jobs` lists them)")
    if job.running and not _alive(p["lock"]):
        job = _read(p["json"]) or job  # it may have written its last state just before ending
        if job.running:
            job.state, job.ended = "failed", time.time()
            job.error = (f"the job's process (pid {job.pid}) ended without finishing (killed or crashed; "
                         f"see {p['log'].relative_to(p['log'].parents[1])}); the project is as before it")
            try:
                _write(p["json"], job, durable=True)
            except OSError:  # another reader (same temporary name) or a full disk: the next read retries
                pass
    job.cancel_requested = p["cancel"].exists()
    return job


def list_jobs(project, kind: str | None = None) -> list[Job]:
    """Every job of the project (of ``kind`` only, if given), newest first."""
    d = _dir(project)
    ids = sorted((int(p.stem) for p in d.glob("*.json") if p.stem.isdigit()), reverse=True) if d.is_dir() else []
    jobs = []
    for i in ids:
        try:
            job = job_status(project, str(i))
        except NotFoundError:  # removed meanwhile
            continue
        if kind is None or job.kind == kind:
            jobs.append(job)
    return jobs


def running_job(project, kind: str) -> Job | None:
    """The running job of ``kind`` in the project, or None."""
    return next((j for j in list_jobs(project, kind) if j.running), None)


def cancel_job(project, job_id: str) -> Job:
    """Ask job ``job_id`` to stop at its next safe point; returns its record.

    The job leaves the project as before: no new feature set active, the active set
    unchanged. Asking twice is harmless.

    Raises
    ------
    NotFoundError
        No such job.
    BadInputError
        The job is no longer running (its state is in the message), or it is a
        re-clustering (it cannot stop half-way).
    """
    job = job_status(project, job_id)
    if not job.running:
        raise BadInputError(f"job {job.id} is not running ({job.state}); nothing to cancel")
    if job.kind == "recluster":
        raise BadInputError(f"job {job.id} re-clusters the project and cannot stop half-way (the map would not "
                            "match the clusters); let it finish, then `labeler cluster --use ID` goes back")
    _paths(project, job.id)["cancel"].touch()
    job.cancel_requested = True
    return job


def wait_job(project, job_id: str, timeout: float | None = None, poll: float = 0.2) -> Job:
    """Block until job ``job_id`` is no longer running (or ``timeout`` s passed); its record."""
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        job = job_status(project, job_id)
        if not job.running or (end is not None and time.monotonic() >= end):
            return job
        time.sleep(poll)


def start_job(project, kind: str = "press", params: dict | None = None, *, by: str | None = None) -> Job:
    """Start a job of ``kind`` on the project in a new background process; returns its record.

    Returns once the job holds the project lock and has written its record (about a
    second: the new process's start), so a refusal is raised here, not found later.

    Parameters
    ----------
    project : Project or path
    kind : str
        One of :data:`JOB_KINDS`.
    params : dict, optional
        For ``'press'``: keyword arguments of
        :func:`labeler.embedding.finetune.finetune_project` among :data:`PRESS_OPTIONS`; for
        ``'recluster'``: of :func:`labeler.pipeline.recluster` among :data:`RECLUSTER_OPTIONS`.
    by : str, optional
        Who starts it (shown to others).

    Raises
    ------
    BadInputError
        An unknown kind or option.
    ProjectLockedError
        A job is running (the message names it and how to cancel it), or
        another long write holds the project lock (the message names it).
    """
    params = dict(params or {})
    _check(kind, params)
    root = _root(project)
    other = next((j for j in list_jobs(root) if j.running), None)  # every kind holds the project lock
    if other is not None:
        raise ProjectLockedError(_running_message(other))
    proc = subprocess.Popen([sys.executable, "-m", "labeler.jobs", str(root), kind, json.dumps(params), by or ""],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, text=True, env=_child_env())
    first = proc.stdout.readline().strip()
    if first.startswith("started "):
        proc.stdout.close()
        proc.stderr.close()
        threading.Thread(target=proc.wait, daemon=True).start()  # reap it when it ends (no zombie)
        return job_status(root, first.split()[1])
    err = proc.stderr.read().strip().splitlines()
    proc.wait()
    if first.startswith("refused "):
        raise ProjectLockedError(first[len("refused "):])
    raise LabelerError(f"the {kind} job did not start (exit code {proc.returncode}): "
                       + (err[-1] if err else first or "no output"))


def _child_env() -> dict:
    """The environment of a job's process: this one's, with this labeler package first on
    the path (the job must run the code that started it, whatever the working directory)."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _check(kind: str, params: dict) -> None:
    if kind not in JOB_KINDS:
        raise BadInputError(f"unknown job kind {kind!r}; known: {', '.join(JOB_KINDS)}")
    known = PRESS_OPTIONS if kind == "press" else RECLUSTER_OPTIONS
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise BadInputError(f"unknown option(s) of a {kind} job: {', '.join(unknown)}; known: {', '.join(known)}")


def _running_message(job: Job) -> str:
    who = f" started by {job.by}" if job.by else ""
    when = time.strftime("%H:%M", time.localtime(job.started))
    return (f"a {job.kind} is already running (job {job.id}{who} at {when}, pid {job.pid}: {job.stage}, "
            f"{job.fraction:.0%}); wait for it or cancel it (`labeler jobs --cancel {job.id}`)")


# -- inside the job's process ------------------------------------------------------------------


class _Reporter:
    """The running job's side: writes progress and heartbeats, answers 'stop now?'."""

    def __init__(self, path: Path, cancel: Path, job: Job):
        self.path, self.cancel_path, self.job = path, cancel, job
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.cancellable = True
        self.signalled = False
        self.write()

    def write(self, durable: bool = False, **changes) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(self.job, k, v)
            self.job.heartbeat = time.time()
            _write(self.path, self.job, durable)

    def beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.write()
            except OSError:  # a full disk: the next beat tries again; the job goes on
                pass

    def stop_asked(self) -> bool:
        return self.signalled or self.cancel_path.exists()

    def checkpoint(self) -> None:
        """A safe point: stop here if a cancel was asked for."""
        if self.cancellable and self.stop_asked():
            raise JobCancelled(f"cancelled at the step '{self.job.stage}', before any feature set was written; "
                               "the project is as before")

    def step(self, stage: str, done: int, total: int) -> None:
        """finetune_project's ``step``: at the start of the stage maps, before each epoch and
        each re-embedded chunk. A safe point first (a cancel names the stage it stopped in),
        then the fraction, which grows within the stage's share of :data:`_PRESS_STAGES`."""
        self.checkpoint()
        bounds = _PRESS_STAGES.get(stage)
        if bounds is not None and total:
            lo, hi = bounds
            self.write(stage=stage, fraction=max(self.job.fraction, lo + (hi - lo) * done / total),
                       message=self.job.message if stage == "stage maps" else f"{stage}: {done} of {total}")

    def say(self, line: str) -> None:
        """finetune_project's ``say``: a progress line, shown as the job's message (and a safe point)."""
        print(line, flush=True)
        self.write(message=line)
        self.checkpoint()


def _press(project, params: dict, rep: _Reporter) -> dict:
    """The fine-tune press as a job: train and store with ``activate=False``, then activate."""
    from .embedding.feature_sets import active_feature_set, heldout_text, set_active_feature_set
    from .embedding.finetune import finetune_project

    activate = bool(params.pop("activate", True))
    previous = active_feature_set(project)
    rep.write(stage="loading", fraction=0.01, message="loading the network and the labels")
    r = finetune_project(project, **params, activate=False, progress=False, say=rep.say, step=rep.step)
    summary = (f"feature set {r.name} trained on {r.n_train} images ({', '.join(r.classes)}), "
               f"{r.train_seconds:.0f} s + {r.embed_seconds:.0f} s re-embedding")
    if r.heldout_accuracy is not None:
        summary += "; " + heldout_text(r.heldout_accuracy, r.heldout_frozen_accuracy)
    if r.semi_stats:
        from .embedding.semi import describe

        summary += f"; {describe(r.semi_stats, r.classes)}"
    if rep.stop_asked():  # too late to stop before storing: store it, but do not activate
        raise JobCancelled(f"cancelled after the press stored {r.name}; it was not made active "
                           f"(`labeler features --use {r.name}` does), the active set is still {previous}")
    if activate:
        rep.cancellable = False
        rep.write(stage="activating", fraction=0.99, message=f"making {r.name} active")
        set_active_feature_set(project, r.name)  # one write: the new vectors, complete, in one step
    return {"name": r.name, "previous": previous, "active": activate, "classes": r.classes,
            "n_train": r.n_train, "n_heldout": r.n_heldout, "heldout_accuracy": r.heldout_accuracy,
            "heldout_frozen_accuracy": r.heldout_frozen_accuracy, "train_seconds": r.train_seconds,
            "embed_seconds": r.embed_seconds, "failures": len(r.failures), "semi_stats": r.semi_stats,
            "summary": summary + ("; now active" if activate else "; stored, not active")}


def _recluster(project, params: dict, rep: _Reporter) -> dict:
    """Re-map and re-cluster in a stored feature set (the set a press made active) as a job.
    Not cancellable: it would leave a new map beside the old clusters."""
    from .pipeline import recluster

    rep.cancellable = False
    name = params.get("feature_set") or "active"
    before = project.store.current_clustering()
    rep.write(stage="re-clustering", fraction=0.05, message=f"re-mapping and re-clustering in {name}")
    cid = recluster(project, project.settings(), feature_set=name, say=lambda line: rep.write(message=line))
    back = f"; `labeler cluster --use {before['id']}` goes back" if before else ""
    return {"clustering": int(cid), "previous": before["id"] if before else None, "feature_set": name,
            "summary": f"clustering {cid} in feature set {name} is current{back}"}


#: Job kinds: name -> function(project, params, reporter) returning the result dict.
JOB_KINDS = {"press": _press, "recluster": _recluster}


def _allocate(d: Path, stack) -> str:
    """The next job id, its lock entered on ``stack`` (under the ids lock: no two jobs share an id)."""
    with file_lock(d / "ids.lock"):
        job_id = str(max((int(p.stem) for p in d.iterdir() if p.stem.isdigit()), default=0) + 1)
        stack.enter_context(file_lock(d / f"{job_id}.lock", blocking=False))
    return job_id


def run_job(root, kind: str, params: dict, *, by: str | None = None, announce=print) -> Job:
    """Run a job in this process (what ``python -m labeler.jobs`` does); its final record.

    Takes the job's lock and the project lock, writes the record, calls ``announce``
    with ``'started <id>'`` (or ``'refused <why>'`` and returns None when the project
    is locked), runs the job and writes its end state. Errors of the job end up in the
    record (state ``failed``), not raised.
    """
    from contextlib import ExitStack

    from .project import Project, project_lock

    _check(kind, params)
    project = Project(root)
    d = _dir(project)
    d.mkdir(exist_ok=True)
    with ExitStack() as stack:
        job_id = _allocate(d, stack)
        p = _paths(project, job_id)
        held = ExitStack()  # the project lock: freed before the end state is written (below)
        try:
            held.enter_context(project_lock(project.root, f"{kind} job {job_id}"))
        except ProjectLockedError as e:
            p["lock"].unlink(missing_ok=True)
            announce(f"refused {e}")
            return None
        job = Job(id=job_id, kind=kind, pid=os.getpid(), by=by or None, params=dict(params), started=time.time())
        rep = _Reporter(p["json"], p["cancel"], job)
        announce(f"started {job_id}")
        old = signal.signal(signal.SIGTERM, lambda *_: setattr(rep, "signalled", True)) \
            if threading.current_thread() is threading.main_thread() else None
        threading.Thread(target=rep.beat, daemon=True).start()
        end: dict = {"state": "failed", "error": "ended without an end state"}
        try:
            with held:
                rep.checkpoint()
                result = JOB_KINDS[kind](project, dict(params), rep)
                end = dict(state="finished", stage="done", fraction=1.0, result=result,
                           message=result.get("summary", ""))
        except JobCancelled as e:
            end = dict(state="cancelled", error=str(e))
        except (Exception, KeyboardInterrupt) as e:  # the job's error, one line in the record
            text = str(e).strip().splitlines()
            end = dict(state="failed", error=(text[0] if text else type(e).__name__))
            if not isinstance(e, LabelerError):
                import traceback

                traceback.print_exc()
        finally:
            # The project lock is free before the record says the job ended, so whoever reads
            # the end (`labeler jobs --wait`, the page's poll) can start the next write at once.
            rep.write(True, ended=time.time(), **end)
            rep._stop.set()
            if old is not None:
                signal.signal(signal.SIGTERM, old)
        return rep.job


def _main(argv: list[str]) -> int:
    root, kind, params, by = argv[0], argv[1], json.loads(argv[2]), (argv[3] if len(argv) > 3 else "")
    log = {}

    def announce(line: str) -> None:
        print(line, flush=True)
        if line.startswith("started "):  # from now on the starter no longer reads: output goes to the log
            path = _paths(root, line.split()[1])["log"]
            log["f"] = open(path, "a", buffering=1)
            os.dup2(log["f"].fileno(), 1)
            os.dup2(log["f"].fileno(), 2)

    job = run_job(root, kind, params, by=by or None, announce=announce)
    return 3 if job is None else 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
