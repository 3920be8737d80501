"""The sweep driver: refuses folders made with another config (unless asked to re-run them), skips finished
jobs, re-runs the evaluations whose model changes, runs the rest on a backend in dependency order, retries
failures, shows progress, keeps a summary JSON up to date, and ends with the report."""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any, Dict, Iterator, List, Optional, Sequence

from ..io import atomic_write_text
from .backends import Launch
from .fresh import CHANGED, RERUN, SKIP, ChangedRuns, move_aside, plan, refusal
from .jobs import Job, Launcher
from .state import checkpoint_file, latest_epoch, run_state

__all__ = ["JobRecord", "Progress", "Sweep", "sweep_name", "format_duration"]

QUEUED, RUNNING, DONE, SKIPPED, FAILED, BLOCKED, INTERRUPTED = (
    "queued", "running", "done", "skipped", "failed", "blocked", "interrupted")


def format_duration(seconds: Optional[float]) -> str:
    """``H:MM:SS`` (or ``--`` when unknown)."""
    if seconds is None or seconds != seconds:
        return "--"
    s = int(round(max(0.0, seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def sweep_name(protocol: str, jobs: Sequence[Job]) -> str:
    """``<protocol>-<hash of the job folders>``: the same command always gets the same summary file."""
    digest = hashlib.sha1("\n".join(sorted(j.id for j in jobs)).encode()).hexdigest()[:8]
    return f"{protocol}-{digest}"


@dataclass
class JobRecord:
    """What the sweep knows about one job."""

    job: Job
    state: str = QUEUED
    attempts: int = 0
    wall_s: Optional[float] = None  # last attempt
    total_s: float = 0.0  # all attempts of this sweep
    accuracy: Optional[float] = None
    backend_id: str = ""
    command: List[str] = field(default_factory=list)
    error: str = ""
    log: str = ""
    stdout: str = ""
    launch: Optional[Launch] = None
    ran: bool = False  # finished by this sweep (not skipped)

    def as_dict(self) -> Dict[str, Any]:
        j = self.job
        return {
            "id": j.id, "phase": j.phase, "kind": j.kind, "dataset": j.dataset, "seed": j.seed,
            "trainer": j.trainer, "config": j.config, "output_dir": j.output_dir, "depends_on": list(j.depends_on),
            "state": self.state, "attempts": self.attempts, "backend_id": self.backend_id,
            "wall_s": None if self.wall_s is None else round(self.wall_s, 3), "total_s": round(self.total_s, 3),
            "accuracy": self.accuracy, "command": shlex.join(self.command) if self.command else "",
            "argv": list(self.command), "log": self.log, "stdout": self.stdout, "error": self.error,
        }


class Progress:
    """The live progress line: one updating line on a TTY, a plain line every ``interval`` s (and after each
    job end) otherwise. Event lines (job started / ended) are printed above it."""

    def __init__(self, stream: IO[str], interval: float = 30.0, tty: Optional[bool] = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.interval = interval
        self._last = 0.0
        self._shown = False

    def event(self, text: str) -> None:
        if self.tty and self._shown:
            self.stream.write("\r\x1b[K")
            self._shown = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def update(self, line: str, force: bool = False) -> None:
        now = time.time()
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
            self._shown = True
        elif force or now - self._last >= self.interval:
            self.stream.write(line + "\n")
            self._last = now
        else:
            return
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False


class _Interrupted(Exception):
    pass


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM / SIGHUP end the sweep like Ctrl-C (so running jobs are stopped and the summary is written)."""
    def handler(signum: int, frame: Any) -> None:
        raise _Interrupted(signal.Signals(signum).name)

    old = {}
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is None:
            continue
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


@contextlib.contextmanager
def _lock(sweep_dir: str) -> Iterator[None]:
    """An exclusive lock on the sweep's folder for the driver's lifetime (two drivers never run the same sweep):
    the run folders' lock, so it works where ``flock`` is unsupported too (a lock file created exclusively)."""
    from ..engine.runfolder import LockError, RunFolderBusy, RunLock

    lock = RunLock(sweep_dir)
    try:
        lock.acquire()
    except (RunFolderBusy, LockError) as exc:
        raise RuntimeError(f"another `prometar sweep` runs this sweep: {exc}") from None
    try:
        yield
    finally:
        lock.release()


class Sweep:
    """Run ``jobs`` on ``backend``: see :meth:`run`."""

    def __init__(self, jobs: Sequence[Job], backend: Any, launcher: Launcher, sweep_dir: str, *,
                 retries: int = 1, protocol: str = "", argv: Sequence[str] = (), output: str = "",
                 stream: Optional[IO[str]] = None, progress_interval: float = 30.0, poll_s: Optional[float] = None,
                 tty: Optional[bool] = None, summary_path: Optional[str] = None, rerun_changed: bool = False) -> None:
        self.records: Dict[str, JobRecord] = {j.id: JobRecord(j) for j in jobs}
        self.order = [j.id for j in jobs]
        self.backend = backend
        self.launcher = launcher
        self.sweep_dir = sweep_dir
        self.summary_path = summary_path or os.path.join(sweep_dir, "summary.json")
        self.retries = max(0, int(retries))
        self.rerun_changed = rerun_changed
        self.protocol = protocol
        self.argv = list(argv)
        self.output = output
        self.stream = stream or sys.stdout
        self.progress = Progress(self.stream, progress_interval, tty)
        self.poll_s = poll_s if poll_s is not None else (0.2 if backend.name == "local" else 1.0)
        self.started = time.time()
        self.started_iso = _now_iso()
        self.state = "running"
        for rid, rec in self.records.items():
            missing = [d for d in rec.job.depends_on if d not in self.records]
            if missing:
                raise ValueError(f"job {rid} depends on {missing}, which are not in the job list")

    # ------------------------------------------------------------------ helpers
    def _say(self, text: str) -> None:
        self.progress.event(f"[sweep] {text}")

    def _stdout_path(self, job: Job) -> str:
        slug = re.sub(r"[^A-Za-z0-9._+-]+", "__", job.id)
        return os.path.join(self.sweep_dir, "logs", f"{slug}.txt")

    def counts(self) -> Dict[str, int]:
        out = {s: 0 for s in (DONE, SKIPPED, RUNNING, QUEUED, FAILED, BLOCKED, INTERRUPTED)}
        for rec in self.records.values():
            out[rec.state] += 1
        return out

    def eta(self) -> Optional[float]:
        """Seconds left, from the wall times of the jobs this sweep finished (per kind: train / eval)."""
        times: Dict[str, List[float]] = {}
        for rec in self.records.values():
            if rec.ran and rec.wall_s is not None:
                times.setdefault(rec.job.kind, []).append(rec.wall_s)
        if not times:
            return None
        every = [t for ts in times.values() for t in ts]
        mean = {k: sum(v) / len(v) for k, v in times.items()}
        fallback = sum(every) / len(every)
        now = time.time()
        left, n = 0.0, 0
        for rec in self.records.values():
            est = mean.get(rec.job.kind, fallback)
            if rec.state == QUEUED:
                left += est
                n += 1
            elif rec.state == RUNNING and rec.launch is not None:
                left += max(0.0, est - (now - rec.launch.started))
                n += 1
        return left / max(1, min(self.backend.parallelism, n)) if n else 0.0

    def progress_line(self) -> str:
        c = self.counts()
        total = len(self.records)
        done = c[DONE] + c[SKIPPED]
        skipped = f" ({c[SKIPPED]} skipped)" if c[SKIPPED] else ""
        failed = c[FAILED] + c[BLOCKED]
        return (f"[sweep] {done}/{total} done{skipped} | {c[RUNNING]} running | {failed} failed | "
                f"{c[QUEUED]} queued | elapsed {format_duration(time.time() - self.started)} | "
                f"ETA {format_duration(self.eta())}")

    def summary(self) -> Dict[str, Any]:
        return {
            "sweep": {
                "protocol": self.protocol, "argv": self.argv, "output": self.output, "sweep_dir": self.sweep_dir,
                "backend": self.backend.name, "backend_detail": self.backend.describe(),
                "parallelism": self.backend.parallelism, "threads_per_job": self.backend.threads,
                "retries": self.retries,
                "state": self.state, "started": self.started_iso, "updated": _now_iso(),
                "elapsed_s": round(time.time() - self.started, 3),
            },
            "counts": self.counts(),
            "jobs": [self.records[i].as_dict() for i in self.order],
        }

    def write_summary(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.summary_path)), exist_ok=True)
        atomic_write_text(self.summary_path, json.dumps(self.summary(), indent=1) + "\n")

    # ------------------------------------------------------------------ job life cycle
    def _previous(self) -> Dict[str, Dict[str, Any]]:
        try:
            with open(self.summary_path, encoding="utf-8") as f:
                return {j["id"]: j for j in json.load(f).get("jobs", [])}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def _refuse_if_earlier_tasks_run(self, previous: Dict[str, Dict[str, Any]]) -> None:
        """A driver that was killed cannot cancel its Slurm tasks: do not start a second copy of a job that
        still runs (both would write the same folder)."""
        check = getattr(self.backend, "still_active", None)
        if check is None:
            return
        ids = {j.get("backend_id"): rid for rid, j in previous.items()
               if j.get("state") == RUNNING and j.get("backend_id") and self.records.get(rid)
               and self.records[rid].state == QUEUED}
        active = check(list(ids))
        if active:
            raise RuntimeError(f"{len(active)} job(s) of an earlier run of this sweep are still queued or running "
                               f"({', '.join(active)}: {', '.join(ids[a] for a in active[:3])}"
                               f"{' ...' if len(active) > 3 else ''}); wait for them or scancel them, then re-run")

    def _apply_plan(self) -> None:
        """Before anything runs: refuse folders made with another config (:class:`ChangedRuns`) unless
        ``rerun_changed``; skip the finished, current ones; move aside (rename) the folders that run again."""
        jobs = [self.records[rid].job for rid in self.order]
        verdicts = plan(jobs, self.launcher.cwd)
        message = refusal(jobs, verdicts)
        if message and not self.rerun_changed:
            raise ChangedRuns(message)
        previous = self._previous()
        for rid in self.order:
            rec, verdict = self.records[rid], verdicts[rid]
            if verdict.action != SKIP:
                continue
            rec.state, rec.accuracy, rec.log = SKIPPED, verdict.accuracy, verdict.log
            old = previous.get(rid, {})
            rec.wall_s = old.get("wall_s")
            rec.backend_id = old.get("backend_id", "")
            rec.command = list(old.get("argv") or [])
            rec.stdout = old.get("stdout", "")
            self._say(f"Skip {rec.job.label()}: finished run in {rec.job.output_dir}")
        self._refuse_if_earlier_tasks_run(previous)
        for rid in self.order:
            job, verdict = self.records[rid].job, verdicts[rid]
            if verdict.action in (CHANGED, RERUN):
                why = (f"made with another config ({'; '.join(verdict.diff)})" if verdict.action == CHANGED
                       else verdict.why)
                self._say(f"Re-run {job.label()}: {why}; the old folder is kept as {move_aside(job)}")

    def _prepare(self, rec: JobRecord) -> Optional[Launch]:
        """The launch of ``rec``'s next attempt, or None (job failed: no model to load)."""
        job = rec.job
        epoch = None
        if job.eval_only:
            epoch = job.load_epoch if job.load_epoch is not None else latest_epoch(job.model_dir)
            problem = ""
            if epoch is None:
                problem = f"no checkpoint pointer in {job.model_dir}/*/checkpoint"
            elif checkpoint_file(job.model_dir, epoch) is None:
                problem = f"no {job.model_dir}/*/model.pth.tar-{epoch}"
            if problem:
                rec.state, rec.error = FAILED, (f"{problem}: train that model first (its training job, e.g. "
                                                f"--phase train), or pass --load-epoch with a saved epoch")
                self._say(f"FAILED {job.label()}: {rec.error}")
                return None
        argv = [*self.launcher.python, *self.launcher.entry, *job.train_args(epoch)]
        rec.command = argv
        rec.stdout = self._stdout_path(job)
        return Launch(job.id, job.level, argv, self.launcher.cwd, {}, rec.stdout)

    def _ready(self) -> List[JobRecord]:
        ready = []
        for rid in self.order:
            rec = self.records[rid]
            if rec.state != QUEUED:
                continue
            deps = [self.records[d] for d in rec.job.depends_on]
            bad = [d for d in deps if d.state in (FAILED, BLOCKED)]
            if bad:
                rec.state = BLOCKED
                rec.error = "not run: " + ", ".join(f"{d.job.label()} {d.state}" for d in bad)
                self._say(f"Blocked {rec.job.label()}: {rec.error}")
                continue
            if all(d.state in (DONE, SKIPPED) for d in deps):
                ready.append(rec)
        return ready

    def _ended(self, launch: Launch, code: Optional[int], err: str) -> None:
        rec = self.records[launch.job_id]
        rec.launch = None
        rec.wall_s = time.time() - launch.started
        rec.total_s += rec.wall_s
        st = run_state(rec.job.output_dir)
        rec.log = st.log
        if code == 0 and st.finished:
            rec.state, rec.accuracy, rec.error, rec.ran = DONE, st.accuracy, "", True
            self._say(f"Done {rec.job.label()}: accuracy {st.accuracy:.2f}% in {format_duration(rec.wall_s)} "
                      f"(attempt {rec.attempts})")
            return
        if err:
            why = err
        elif code is None:
            why = "ended without an exit code"
        elif code < 0:
            why = f"killed by signal {-code}"
        elif code != 0:
            why = f"exit code {code}"
        else:
            why = f"exit code 0 but no final accuracy in {st.log or rec.job.output_dir} ({st.status})"
        rec.error = why
        if rec.attempts <= self.retries:
            rec.state = QUEUED
            self._say(f"Retry {rec.job.label()} ({why}; attempt {rec.attempts + 1} of {self.retries + 1}; a "
                      f"training run resumes from its last saved epoch)")
        else:
            rec.state = FAILED
            self._say(f"FAILED {rec.job.label()}: {why} after {rec.attempts} attempt(s); log {st.log or '-'}, "
                      f"output {rec.stdout}")

    # ------------------------------------------------------------------ main loop
    def run(self) -> int:
        """Run the sweep; returns 0 when every job finished, 1 when some failed, 130 when interrupted. Raises
        :class:`~prometar.sweep.fresh.ChangedRuns` (nothing run) for folders made with another config unless
        ``rerun_changed``, RuntimeError when another driver runs the same sweep."""
        os.makedirs(self.sweep_dir, exist_ok=True)
        with _lock(self.sweep_dir):
            self._say(f"{len(self.records)} jobs; backend {self.backend.describe()}; summary {self.summary_path}")
            self._apply_plan()
            self.write_summary()
            try:
                with _signals_interrupt():
                    self._loop()
                self.state = "done" if not any(r.state in (FAILED, BLOCKED) for r in self.records.values()) \
                    else "failed"
            except (KeyboardInterrupt, _Interrupted) as exc:
                self.progress.close()
                self._say(f"interrupted ({exc or 'SIGINT'}): stopping running jobs; re-run the same command to "
                          f"resume")
                self.backend.cancel()
                for rec in self.records.values():
                    if rec.state == RUNNING:
                        rec.state, rec.launch = INTERRUPTED, None
                self.state = "interrupted"
            finally:
                self.progress.close()
                self.write_summary()
        return self._final_message()

    def _loop(self) -> None:
        while True:
            changed = False
            for launch, code, err in self.backend.poll():
                self._ended(launch, code, err)
                changed = True
            ready = self._ready()
            room = self.backend.capacity()
            launches = []
            for rec in ready[:max(0, room)]:
                launch = self._prepare(rec)
                changed = True
                if launch is None:
                    continue
                rec.attempts += 1
                rec.state, rec.launch, rec.error = RUNNING, launch, ""
                launches.append(launch)
            if launches:
                self.backend.submit(launches)
                for launch in launches:
                    rec = self.records[launch.job_id]
                    rec.backend_id = launch.backend_id
                    self._say(f"Start {rec.job.label()} [{self.backend.name} {launch.backend_id}]")
            if changed:
                self.write_summary()
            c = self.counts()
            self.progress.update(self.progress_line(), force=changed)
            if not c[QUEUED] and not c[RUNNING]:
                return
            time.sleep(self.poll_s)

    def _final_message(self) -> int:
        c = self.counts()
        failed = [r for r in self.records.values() if r.state == FAILED]
        blocked = [r for r in self.records.values() if r.state == BLOCKED]
        self._say(f"{c[DONE] + c[SKIPPED]}/{len(self.records)} done ({c[SKIPPED]} skipped as finished), "
                  f"{len(failed)} failed, {len(blocked)} not run, in "
                  f"{format_duration(time.time() - self.started)}; summary {self.summary_path}")
        if failed:
            self.progress.event(f"Failed jobs ({len(failed)}):")
            for r in failed:
                self.progress.event(f"  {r.job.label()}: {r.error}\n    log: {r.log or '(none)'}\n"
                                    f"    output: {r.stdout or '(none)'}")
        if blocked:
            self.progress.event(f"Not run because a job they need failed ({len(blocked)}):")
            for r in blocked:
                self.progress.event(f"  {r.job.label()}")
        if self.state == "interrupted":
            return 130
        return 1 if failed or blocked else 0
