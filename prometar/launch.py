"""`train.py` / `prometar train`: the command-line flags, the engine registry and the dispatch to one engine.

`ENGINES` maps each `--engine` name to the function that runs a parsed command line on that engine (returning a
process exit code); `--engine auto` picks `dassl` when Dassl imports, else `builtin`. The built-in engine gets
`prometar.build` as its parts builder here, so the engine package never imports `prometar.build`.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, List, Optional

from .registry import Registry

__all__ = ["ENGINES", "train_parser", "train_main"]

#: Training engines by `--engine` name: the runner (`args -> exit code`) and a help line.
ENGINES = Registry("engine", "--engine")


@ENGINES.register("builtin", help="the built-in engine (no Dassl needed)")
def run_builtin(args: Any, note: str = "Dassl not used (--engine builtin)") -> int:
    """Train / evaluate on the built-in engine."""
    from . import build
    from .engine.runner import main

    return main(args, engine_note=note, builder=build)


@ENGINES.register("dassl", help="Dassl.pytorch's trainer loop (Dassl must be importable)")
def run_dassl(args: Any) -> int:
    """Train / evaluate with Dassl's `build_trainer`; exit code 2 with a hint when Dassl cannot be imported."""
    from .dassl import dassl_available, dassl_import_error

    if not dassl_available():
        print(f"error: --engine dassl but Dassl is not importable ({dassl_import_error()}). It is not on PyPI: "
              f"clone KaiyangZhou/Dassl.pytorch, then `pip install --no-deps --no-build-isolation -e <clone>` and "
              f"its requirements (see README, 'Running on Dassl')", file=sys.stderr)
        return 2
    from .dassl.runner import main

    return main(args)


def train_parser() -> argparse.ArgumentParser:
    """CoOp-family train.py flags plus `--engine` (choices from `ENGINES`) and `--device`."""
    from .config import build_arg_parser

    parser = build_arg_parser()
    # Added flags must come before the trailing KEY VALUE opts.
    parser.add_argument("--engine", choices=["auto", *ENGINES], default="auto",
                        help="auto: Dassl when importable, else the built-in engine; "
                             + "; ".join(f"{e.name}: {e.help}" for e in ENGINES.values()))
    parser.add_argument("--device", default="", help="cpu, cuda, cuda:1, mps (default: CUDA, then MPS, then CPU)")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="resume / re-evaluate a folder whose config.yaml differs from the requested config")
    return parser


def train_main(argv: Optional[List[str]] = None) -> int:
    """Entry point of `train.py` / `prometar train`."""
    from .config import ConfigError

    args = train_parser().parse_args(argv)
    try:
        if args.engine == "auto":
            from .dassl import dassl_available

            if dassl_available():
                return run_dassl(args)
            return run_builtin(args, note="Dassl is not installed")
        return ENGINES[args.engine].target(args)
    except ConfigError as exc:  # a bad config file or KEY VALUE option: the message names it
        print(f"ERROR: {exc}")
        return 2
