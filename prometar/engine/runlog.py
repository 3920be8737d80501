"""Reading a run's log: the one rule that says whether a run folder is finished and what its result is.

A log's result is read like CoOp's ``parse_test_res.py --test-log``: the last ``* accuracy: x%`` after a
``=> result`` line.  In a training log (one with progress lines or a ``Finish training`` / ``Finished
training`` line) only a result printed after the end-of-training line counts, so a crashed run never reports
a validation accuracy.  :class:`prometar.engine.runfolder.RunFolder` asks this module; the sweep, the demo and
the report ask the run folder.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional

__all__ = ["LogResult", "END_SIGNALS", "RESULT_SIGNAL", "parse_log", "read_run"]

END_SIGNALS = ("Finish training", "Finished training")
RESULT_SIGNAL = "=> result"


@dataclass
class LogResult:
    """What one run folder gave: ``accuracy`` (None if unusable), a status and the log read.

    status: "ok", "no-log", "no-result" (no final accuracy) or "unfinished" (training stopped early)."""

    accuracy: Optional[float]
    status: str
    path: str = ""

    @property
    def ok(self) -> bool:
        return self.accuracy is not None


def parse_log(path: str, keyword: str = "accuracy") -> LogResult:
    """Parse one Dassl-style ``log.txt`` (see the module doc for the rules)."""
    if not os.path.isfile(path):
        return LogResult(None, "no-log", path)
    regex = re.compile(rf"\* {re.escape(keyword)}: ([\.\deE+-]+)%")
    armed = training = False
    end_line = value_line = -1
    value: Optional[float] = None
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for i, raw in enumerate(f):
            line = raw.strip()
            if line in END_SIGNALS:
                training, end_line = True, i
            elif line.startswith("epoch [") and " batch [" in line:
                training = True
            if line == RESULT_SIGNAL:
                armed = True
            match = regex.search(line) if armed else None
            if match:
                try:
                    value, value_line = float(match.group(1)), i
                except ValueError:
                    pass
    if training and (end_line < 0 or value_line < end_line):
        return LogResult(None, "unfinished", path)
    if value is None:
        return LogResult(None, "no-result", path)
    return LogResult(value, "ok", path)


def read_run(run_dir: str, keyword: str = "accuracy") -> LogResult:
    """Result of one run folder: ``log.txt``; if it has none, the newest ``log.txt-<time>`` that has one
    (Dassl writes a re-run's log there when ``log.txt`` exists)."""
    main = parse_log(os.path.join(run_dir, "log.txt"), keyword)
    if main.ok:
        return main
    try:
        extra = sorted((n for n in os.listdir(run_dir) if n.startswith("log.txt-")), reverse=True)
    except OSError:
        extra = []
    for name in extra:
        res = parse_log(os.path.join(run_dir, name), keyword)
        if res.ok:
            return res
    return main
