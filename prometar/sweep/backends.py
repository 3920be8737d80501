"""Where sweep jobs run: a pool of local worker processes, or Slurm / submitit's local executor via submitit.

Every backend runs the same thing for a job: :func:`execute`, which starts the job's train.py call as a child
process with the job's environment, appends its output to the job's capture file and returns its exit code.
"""
from __future__ import annotations

import ctypes
import getpass
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["Launch", "LocalBackend", "SubmititBackend", "execute", "cpu_count", "threads_per_job"]


@dataclass
class Launch:
    """One attempt of one job on a backend."""

    job_id: str
    level: int
    argv: List[str]
    cwd: str
    env: Dict[str, str]  # added to the environment of the job
    stdout: str  # the job's output capture file (appended)
    backend_id: str = ""
    started: float = 0.0
    gone_since: Optional[float] = None  # batch backends: when the task left the queue without a result
    handle: Any = field(default=None, repr=False)


def cpu_count() -> int:
    """CPUs this process may use (affinity mask where available)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads_per_job(concurrent: int, cores: Optional[int] = None) -> int:
    """Threads per job so that ``concurrent`` jobs do not oversubscribe the cores: cores // jobs, at least 1.

    (OpenMP threads spin-wait: two 2-thread jobs on 2 cores made training steps up to ~100x slower.)"""
    return max(1, (cores or cpu_count()) // max(1, concurrent))


def thread_env(threads: int) -> Dict[str, str]:
    """Environment that fixes the intra-op thread count of a torch job."""
    n = str(int(threads))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Linux: the child gets SIGKILL when the process that started it dies (no orphaned train.py writing into
    a folder that a re-run of the sweep resumes)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _start(argv: Sequence[str], cwd: str, env: Dict[str, str], stdout: str) -> Tuple["subprocess.Popen[bytes]", Any]:
    os.makedirs(os.path.dirname(os.path.abspath(stdout)), exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env)
    out = open(stdout, "ab")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    out.write(f"==> {stamp} (cwd {cwd}): {shlex.join(argv)}\n".encode())
    out.flush()
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    proc = subprocess.Popen(list(argv), cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, preexec_fn=preexec)
    return proc, out


def execute(argv: Sequence[str], cwd: str, env: Dict[str, str], stdout: str) -> int:
    """Run one job to its end (the payload of the submitit backends); returns the exit code."""
    proc, out = _start(argv, cwd, env, stdout)
    try:
        return proc.wait()
    finally:
        out.close()


# ---------------------------------------------------------------------------------------------------- local
class LocalBackend:
    """A pool of ``len(slots)`` worker processes on this machine.

    ``slots``: one entry per concurrent job, the GPU id it sees (``CUDA_VISIBLE_DEVICES``) or None for no
    placement. ``threads``: OMP/MKL threads per job.
    """

    name = "local"
    level_sync = False

    def __init__(self, slots: Sequence[Optional[str]], threads: int) -> None:
        if not slots:
            raise ValueError("the local backend needs at least one worker")
        self.slots = list(slots)
        self.threads = threads
        self.running: Dict[int, Tuple[Launch, "subprocess.Popen[bytes]", Any]] = {}  # slot -> (launch, proc, file)

    @property
    def parallelism(self) -> int:
        return len(self.slots)

    def describe(self) -> str:
        gpus = [s for s in self.slots if s is not None]
        place = f" on GPUs {','.join(sorted(set(gpus), key=gpus.index))}" if gpus else ""
        return f"local: {len(self.slots)} worker(s){place}, {self.threads} thread(s) per job"

    def capacity(self) -> int:
        return len(self.slots) - len(self.running)

    def submit(self, launches: Sequence[Launch]) -> None:
        free = [i for i in range(len(self.slots)) if i not in self.running]
        if len(launches) > len(free):
            raise RuntimeError(f"{len(launches)} jobs for {len(free)} free workers")
        for launch, slot in zip(launches, free):
            env = dict(thread_env(self.threads))
            if self.slots[slot] is not None:
                env["CUDA_VISIBLE_DEVICES"] = str(self.slots[slot])
            env.update(launch.env)
            launch.env = env
            proc, out = _start(launch.argv, launch.cwd, env, launch.stdout)
            launch.backend_id = str(proc.pid)
            launch.started = time.time()
            self.running[slot] = (launch, proc, out)

    def poll(self) -> List[Tuple[Launch, Optional[int], str]]:
        ended = []
        for slot, (launch, proc, out) in list(self.running.items()):
            code = proc.poll()
            if code is not None:
                out.close()
                del self.running[slot]
                ended.append((launch, code, ""))
        return ended

    def cancel(self, grace_s: float = 10.0) -> None:
        """Stop every running job (SIGTERM, then SIGKILL after ``grace_s``)."""
        for _, proc, _ in self.running.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.time() + grace_s
        for _, proc, out in self.running.values():
            try:
                proc.wait(timeout=max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            out.close()
        self.running.clear()


# ---------------------------------------------------------------------------------------------------- submitit
#: Slurm job states of a task that has not ended yet.
_SLURM_ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
                 "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}


class SubmititBackend:
    """Jobs through submitit: ``cluster="slurm"`` (one Slurm job array per dependency level, submitted when the
    previous level has ended) or ``cluster="local"`` (submitit's local executor, up to ``parallelism`` at once;
    the test path of the same code on machines without Slurm)."""

    level_sync = True

    def __init__(self, cluster: str, folder: str, parallelism: int, cpus_per_job: int = 1, gpus_per_job: int = 0,
                 timeout_min: int = 24 * 60, partition: str = "", mem_gb: Optional[float] = None,
                 sbatch: Optional[Dict[str, str]] = None, setup: Sequence[str] = (), name: str = "prometar-sweep",
                 lost_grace_s: float = 10.0) -> None:
        try:
            import submitit  # noqa: F401  (checked here, used in _executor)
        except ImportError as exc:
            raise RuntimeError(f"the {cluster} backend needs submitit ({exc}): pip install -e \".[slurm]\" "
                               f"(or pip install submitit)") from exc
        if cluster not in ("slurm", "local"):
            raise ValueError(f"submitit cluster must be slurm or local, got {cluster!r}")
        self.cluster = cluster
        self.name = "slurm" if cluster == "slurm" else "submitit-local"
        self.level_sync = cluster == "slurm"
        self.folder = folder
        self.parallelism = max(1, int(parallelism))
        self.cpus_per_job = max(1, int(cpus_per_job))
        self.threads = self.cpus_per_job
        self.lost_grace_s = lost_grace_s
        params: Dict[str, Any] = {"timeout_min": int(timeout_min), "cpus_per_task": self.cpus_per_job,
                                  "name": name, "nodes": 1, "tasks_per_node": 1}
        if gpus_per_job:
            params["gpus_per_node"] = int(gpus_per_job)
        if mem_gb:
            params["mem_gb"] = mem_gb
        if cluster == "slurm":
            params["slurm_array_parallelism"] = self.parallelism
            if partition:
                params["slurm_partition"] = partition
            if sbatch:
                params["slurm_additional_parameters"] = dict(sbatch)
            if setup:
                params["slurm_setup"] = list(setup)
        self.params = params
        self.running: List[Launch] = []
        self._user = getpass.getuser()

    def describe(self) -> str:
        if self.cluster == "slurm":
            extra = f", partition {self.params['slurm_partition']}" if "slurm_partition" in self.params else ""
            return (f"slurm (submitit): one job array per dependency level, up to {self.parallelism} tasks at once, "
                    f"{self.cpus_per_job} CPU(s) / {self.params.get('gpus_per_node', 0)} GPU(s) per job{extra}")
        return f"submitit-local: up to {self.parallelism} jobs at once, {self.cpus_per_job} thread(s) per job"

    def capacity(self) -> int:
        if self.level_sync:
            return 1 << 30 if not self.running else 0
        return self.parallelism - len(self.running)

    def _executor(self) -> Any:
        import submitit

        executor = submitit.AutoExecutor(folder=os.path.join(self.folder, "%j"), cluster=self.cluster)
        executor.update_parameters(**self.params)
        return executor

    def submit(self, launches: Sequence[Launch]) -> None:
        by_level: Dict[int, List[Launch]] = {}
        for launch in launches:
            env = dict(thread_env(self.cpus_per_job))
            env.update(launch.env)
            launch.env = env
            by_level.setdefault(launch.level, []).append(launch)
        for level in sorted(by_level):
            group = by_level[level]
            executor = self._executor()
            jobs = executor.map_array(execute, [g.argv for g in group], [g.cwd for g in group],
                                      [g.env for g in group], [g.stdout for g in group])
            now = time.time()
            for launch, job in zip(group, jobs):
                launch.handle = job
                launch.backend_id = str(job.job_id)
                launch.started = now
                self.running.append(launch)

    def _slurm_states(self) -> Optional[Dict[str, str]]:
        """Task id -> state of this user's jobs, ended ones included while Slurm keeps them (MinJobAge);
        None when squeue cannot be asked (then nothing is declared lost)."""
        try:
            res = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-u", self._user, "-o", "%i %T"],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if res.returncode != 0:
            return None
        states = {}
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                states[parts[0]] = parts[1]
        return states

    @staticmethod
    def _result(job: Any) -> Tuple[Optional[int], str]:
        try:
            code = job.result()
        except Exception as exc:  # submitit raises FailedJobError / UncompletedJobError with the job's traceback
            return None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
        return (int(code) if code is not None else None), ""

    def poll(self) -> List[Tuple[Launch, Optional[int], str]]:
        ended: List[Tuple[Launch, Optional[int], str]] = []
        states = self._slurm_states() if self.cluster == "slurm" else None
        now = time.time()
        for launch in list(self.running):
            job = launch.handle
            if self.cluster == "local":
                if not job.done():
                    continue
                code, err = self._result(job)
            elif job.paths.result_pickle.exists():
                code, err = self._result(job)
            else:
                state = None if states is None else states.get(launch.backend_id, "GONE")
                if state is None or state in _SLURM_ACTIVE:
                    launch.gone_since = None
                    continue
                # Ended without a result file: at once when Slurm says it failed or was cancelled, else (it
                # completed, or is no longer listed) after a grace period for the file to appear.
                launch.gone_since = launch.gone_since or now
                if state in ("COMPLETED", "GONE") and now - launch.gone_since < self.lost_grace_s:
                    continue
                code, err = None, (f"Slurm task {launch.backend_id} ended {state} without a result (cancelled, "
                                   f"timed out or killed); Slurm log {job.paths.stderr}")
            self.running.remove(launch)
            ended.append((launch, code, err))
        return ended

    def still_active(self, backend_ids: Sequence[str]) -> List[str]:
        """Those of ``backend_ids`` (from an earlier driver of this sweep) that Slurm still runs or queues."""
        if self.cluster != "slurm" or not backend_ids:
            return []
        states = self._slurm_states() or {}
        return [i for i in backend_ids if states.get(i) in _SLURM_ACTIVE]

    def cancel(self, grace_s: float = 10.0) -> None:
        """Cancel every submitted task that has not ended (scancel on Slurm)."""
        if not self.running:
            return
        if self.cluster == "slurm":
            ids = [launch.backend_id for launch in self.running]
            subprocess.run(["scancel", *ids], capture_output=True, timeout=60)
        else:
            for launch in self.running:
                try:
                    launch.handle.cancel(check=False)
                except Exception:  # already gone
                    pass
        self.running.clear()
