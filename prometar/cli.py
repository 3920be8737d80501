"""`prometar` command line: train, data, report, world, demo."""
from __future__ import annotations

import sys
from typing import List, Optional

__all__ = ["main", "train_main", "train_parser"]

USAGE = """usage: prometar COMMAND [ARGS]

commands:
  train    train / evaluate (CoOp train.py flags; Dassl when importable, else the built-in engine)
  demo     base-to-new on the bundled procedural benchmark with the bundled small CLIP (CPU, minutes)
  data     download a benchmark dataset (`prometar data NAME --root DATA`) or check layouts (`--check`)
  report   paper-style base/new/HM table, CSV and chart from an output folder
  world    generate the bundled benchmark / pretrain its CLIP / zero-shot accuracy
"""


def train_parser():
    from .config import build_arg_parser

    parser = build_arg_parser()
    # Added flags must come before the trailing KEY VALUE opts.
    parser.add_argument("--engine", choices=["auto", "dassl", "builtin"], default="auto",
                        help="auto: Dassl when importable, else the built-in engine")
    parser.add_argument("--device", default="", help="cpu, cuda, cuda:1, mps (default: CUDA, then MPS, then CPU)")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="resume / re-evaluate a folder whose config.yaml differs from the requested config")
    return parser


def train_main(argv: Optional[List[str]] = None) -> int:
    """Entry point of `train.py` / `prometar train`."""
    args = train_parser().parse_args(argv)
    if args.engine == "builtin":
        from .engine.runner import main as builtin_main

        return builtin_main(args, engine_note="Dassl not used (--engine builtin)")
    from .dassl import dassl_available

    use_dassl = args.engine == "dassl" or (args.engine == "auto" and dassl_available())
    if args.engine == "dassl" and not dassl_available():
        from .dassl import dassl_import_error

        print(f"error: --engine dassl but Dassl is not importable ({dassl_import_error()}). It is not on PyPI: "
              f"clone KaiyangZhou/Dassl.pytorch, then `pip install --no-deps --no-build-isolation -e <clone>` and "
              f"its requirements (see README, 'Running on Dassl')", file=sys.stderr)
        return 2
    if use_dassl:
        from .dassl.runner import main as dassl_main

        return dassl_main(args)
    from .engine.runner import main as builtin_main

    return builtin_main(args, engine_note="Dassl is not installed")


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
    if command == "world":
        from .world import main as world_main

        return world_main(rest)
    if command == "demo":
        from .demo import main as demo_main

        return demo_main(rest)
    print(f"unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
