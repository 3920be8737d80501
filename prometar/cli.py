"""`prometar` command line: train, data, report, sweep, world, demo."""
from __future__ import annotations

import sys
from typing import List, Optional

from .launch import train_main, train_parser

__all__ = ["main", "train_main", "train_parser"]

USAGE = """usage: prometar COMMAND [ARGS]

commands:
  train    train / evaluate (CoOp train.py flags; Dassl when importable, else the built-in engine)
  demo     base-to-new on the bundled procedural benchmark with the bundled small CLIP (CPU, minutes)
  data     download a benchmark dataset (`prometar data NAME --root DATA`) or check layouts (`--check`)
  report   the paper-style tables (base-to-new, cross-dataset / DG, few-shot), CSV and charts of an output folder
  sweep    a protocol's grid of runs on local workers / GPUs or Slurm, resumable, then the report
  world    generate the bundled benchmark / pretrain its CLIP / zero-shot accuracy
  configs  print the folder of the shipped YAMLs; `--copy DIR` copies the ProMetaR trainer YAMLs into DIR
  export   write a run's prompts for the official code (`prometar export --to official SRC_DIR DST_DIR`)
"""


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        return train_main(rest)
    if command == "data":
        from .data.download import data_main

        return data_main(rest)
    if command == "report":
        from .report import report_main

        return report_main(rest)
    if command == "sweep":
        from .sweep.cli import sweep_main

        return sweep_main(rest)
    if command == "world":
        from .world import main as world_main

        return world_main(rest)
    if command == "configs":
        from .shipped import configs_main

        return configs_main(rest)
    if command == "export":
        from .export import export_main

        return export_main(rest)
    if command == "demo":
        from .demo import main as demo_main

        return demo_main(rest)
    print(f"unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
