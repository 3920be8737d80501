"""Whether a run folder is finished, for the shell scripts: a thin command line over
:class:`prometar.engine.runfolder.RunFolder`, which owns the one rule (shared by `prometar sweep`, `prometar
report` and the demo).

A run folder (a train.py ``--output-dir``) is *finished* when its ``log.txt`` (or, for a re-run, one of its
``log.txt-<time>`` files) has a final accuracy: the last ``* accuracy: x%`` after a ``=> result`` line, and in a
training log only one printed after ``Finish training`` (:mod:`prometar.engine.runlog`). A training run that
stopped early therefore is not finished; re-running the same train.py command resumes it from its last
complete epoch (both engines checkpoint every epoch).

Command line (used by the shell scripts; no torch import, so it is quick)::

    python -m prometar.sweep.state DIR [DIR ...]      # exit 0 if every DIR is finished, else 1
    python -m prometar.sweep.state --epoch MODEL_DIR  # print the epoch of MODEL_DIR's latest checkpoint
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence

from ..engine.runfolder import RunFolder, RunState

__all__ = ["RunState", "run_state", "is_finished", "latest_epoch", "checkpoint_file", "main"]

#: Folder of the prompt learner's checkpoints (both engines); preferred when several parts saved checkpoints.
PREFERRED_PART = "VLPromptLearner"
CHECKPOINT_PREFIX = "model.pth.tar-"


def run_state(output_dir: str, keyword: str = "accuracy") -> RunState:
    """``RunFolder(output_dir).state()``: finished, accuracy, status and the log read."""
    return RunFolder(os.fspath(output_dir)).state(keyword)


def is_finished(output_dir: str) -> bool:
    """True when ``output_dir`` holds a final accuracy (see the module doc)."""
    return run_state(output_dir).finished


def latest_epoch(model_dir: str) -> Optional[int]:
    """Epoch named by ``model_dir/<part>/checkpoint`` (the prompt learner's part first), or None if no pointer
    names a ``model.pth.tar-<N>`` file. Does not check that the file exists (see :func:`checkpoint_file`)."""
    try:
        parts = sorted(os.listdir(model_dir))
    except OSError:
        return None
    parts.sort(key=lambda p: p != PREFERRED_PART)
    for part in parts:
        pointer = os.path.join(model_dir, part, "checkpoint")
        try:
            with open(pointer, encoding="utf-8") as f:
                name = f.readline().strip()
        except OSError:
            continue
        if name.startswith(CHECKPOINT_PREFIX):
            try:
                return int(name[len(CHECKPOINT_PREFIX):])
            except ValueError:
                continue
    return None


def checkpoint_file(model_dir: str, epoch: int) -> Optional[str]:
    """Path of ``model_dir/<part>/model.pth.tar-<epoch>`` (prompt learner's part first), or None."""
    try:
        parts = sorted(os.listdir(model_dir))
    except OSError:
        return None
    parts.sort(key=lambda p: p != PREFERRED_PART)
    for part in parts:
        path = os.path.join(model_dir, part, f"{CHECKPOINT_PREFIX}{epoch}")
        if os.path.isfile(path):
            return path
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI: see the module doc."""
    parser = argparse.ArgumentParser(prog="python -m prometar.sweep.state",
                                     description="exit 0 if every run folder is finished (has a final accuracy)")
    parser.add_argument("dirs", nargs="*", help="run folders (train.py --output-dir)")
    parser.add_argument("--epoch", metavar="MODEL_DIR", help="print the epoch of the latest checkpoint instead")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each folder's status")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.epoch:
        epoch = latest_epoch(args.epoch)
        if epoch is None:
            print(f"no {args.epoch}/*/checkpoint pointer naming a {CHECKPOINT_PREFIX}<N> file", file=sys.stderr)
            return 1
        print(epoch)
        return 0
    if not args.dirs:
        parser.error("give at least one run folder (or --epoch MODEL_DIR)")
    done: List[bool] = []
    for d in args.dirs:
        st = run_state(d)
        done.append(st.finished)
        if args.verbose:
            acc = f" accuracy {st.accuracy:.2f}%" if st.accuracy is not None else ""
            print(f"{d}: {st.status}{acc}")
    return 0 if all(done) else 1


if __name__ == "__main__":
    sys.exit(main())
