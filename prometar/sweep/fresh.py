"""Whether a job's folder holds a current result: the "never stale" rule of `prometar sweep` and `prometar demo`.

Before anything runs, each job of the list (trainings before the evaluations that load them) gets a verdict:

* ``skip``: the folder is finished and was made with the config the job would run now (the run-folder model's
  "resume" comparison of its saved ``config.yaml`` with :func:`prometar.sweep.jobs.job_config`); for an
  evaluation also: the model it needs is not trained again, and the learner file it loaded (``provenance.json``)
  is, byte for byte, the file it would load now;
* ``run``: no folder yet, or an unfinished one of the same config (a training resumes from its last epoch);
* ``changed``: the folder (finished or not) was made with another config; the message lists the differing keys.
  The sweep refuses to start while there is one, unless asked to re-run them (``--rerun-changed``): then the
  folder is moved aside (renamed ``<folder>.changed-<time>``, never deleted) and the job runs again;
* ``rerun``: a finished evaluation whose model is trained again (its training job runs, resumes or changed), or
  whose loaded learner file is not the one it would load now (a later invocation retrained it), or that has no
  record of the file it loaded: it is moved aside and runs again by itself, saying why.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from .jobs import Job, job_config

__all__ = ["SKIP", "RUN", "CHANGED", "RERUN", "Verdict", "ChangedRuns", "JobConfigError", "plan", "model_changed",
           "refusal", "move_aside"]

SKIP, RUN, CHANGED, RERUN = "skip", "run", "changed", "rerun"


@dataclass
class Verdict:
    """What to do with one job's folder (see the module doc): ``action``, why, and the differing keys."""

    action: str
    why: str = ""
    diff: List[str] = field(default_factory=list)
    accuracy: Optional[float] = None  # a finished folder's result
    log: str = ""


class ChangedRuns(RuntimeError):
    """Folders made with another config than the sweep would run (the message lists them and their keys)."""


def model_changed(job: Job) -> Optional[str]:
    """Why the finished evaluation ``job`` did not evaluate the learner file it would load now, or None."""
    from ..engine.runfolder import RunFolder, sha256_file
    from .state import latest_epoch

    runs = RunFolder(job.output_dir).provenance().get("runs") or []
    loaded = (runs[-1] or {}).get("model") if runs else None
    if not loaded or not loaded.get("sha256"):
        return "it has no record of the model file it evaluated (no provenance.json entry)"
    epoch = job.load_epoch if job.load_epoch is not None else latest_epoch(job.model_dir)
    try:
        now = RunFolder(job.model_dir).learner_file(epoch)
    except FileNotFoundError as exc:
        return f"the model it evaluated is gone ({exc})"
    if sha256_file(now) != loaded["sha256"]:
        return f"the model file it would load now, {now}, is not the one it evaluated"
    return None


class JobConfigError(ValueError):
    """A job's train.py call does not make a config (an unknown key, a bad value, a missing YAML)."""


def _config(job: Job, cwd: str) -> Any:
    try:
        return job_config(job, cwd)
    except (KeyError, ValueError, TypeError, AssertionError, FileNotFoundError) as exc:  # yacs' errors
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise JobConfigError(f"the train.py call of {job.label()} does not make a config: {text}") from None


def _verdict(job: Job, cwd: str, done: Dict[str, Verdict]) -> Verdict:
    from ..engine.runfolder import RunFolder

    cfg = _config(job, cwd)  # also checks the arguments of a job that has no folder yet
    if not os.path.isdir(job.output_dir):
        return Verdict(RUN, "no folder yet")
    folder = RunFolder(job.output_dir)
    st = folder.state()
    diff = folder.diff(cfg, "resume")
    if diff:
        return Verdict(CHANGED, "finished" if st.finished else "unfinished", diff, st.accuracy, st.log)
    if not st.finished:
        return Verdict(RUN, "unfinished: " + ("resumes" if not job.eval_only else "evaluates again"))
    if job.eval_only:
        again = [d for d in job.depends_on if d in done and done[d].action != SKIP]
        why = f"the model it evaluated ({again[0]}) is trained again" if again else model_changed(job)
        if why:
            return Verdict(RERUN, why, accuracy=st.accuracy, log=st.log)
    return Verdict(SKIP, accuracy=st.accuracy, log=st.log)


def plan(jobs: Sequence[Job], cwd: str) -> Dict[str, Verdict]:
    """The verdict of every job (``cwd``: where the launcher runs train.py, for the relative config paths).
    ``jobs`` must list each training before the evaluations that depend on it (as :func:`build_jobs` does)."""
    verdicts: Dict[str, Verdict] = {}
    for job in jobs:
        verdicts[job.id] = _verdict(job, cwd, verdicts)
    return verdicts


def refusal(jobs: Sequence[Job], verdicts: Dict[str, Verdict], flag: str = "--rerun-changed") -> str:
    """The message listing every ``changed`` folder with its differing keys (empty when there is none)."""
    changed = [j for j in jobs if verdicts[j.id].action == CHANGED]
    if not changed:
        return ""
    lines = [f"refusing to run: {len(changed)} run folder(s) were made with another config than this sweep would "
             f"run them with (a result from them would not be the result of this command):"]
    for job in changed:
        v = verdicts[job.id]
        lines.append(f"  {job.output_dir} ({v.why}):")
        lines += [f"      {d}" for d in v.diff]
    lines.append(f"Re-run with {flag} to move them aside (renamed to <folder>.changed-<time>, kept) and run them "
                 f"again, together with the evaluations that depend on them; or choose another --output.")
    return "\n".join(lines)


def move_aside(job: Job) -> str:
    """Rename ``job``'s folder out of the way (never deleted); returns the new path."""
    from ..engine.runfolder import RunFolder

    return RunFolder(job.output_dir).move_aside()
