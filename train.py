#!/usr/bin/env python
"""CoOp-compatible entry point: `python train.py --trainer ProMetaR --config-file ... [KEY VALUE ...]`.

Runs on Dassl when it is importable (registering the ProMetaR trainer and the datasets into Dassl's registries),
else on prometar's built-in engine; `--engine builtin` forces the latter. The first log line says which engine ran.
"""
import sys

from prometar.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
