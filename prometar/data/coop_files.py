"""The CoOp-convention files of each dataset, derived from the dataset table (`prometar.data.specs.SPECS`).

For every entry with config name `<config>` a repository holds

* `configs/datasets/<config>.yaml`: `DATASET.NAME`, what `--dataset-config-file` reads;
* `datasets/<config>.py`: importing it registers the dataset with Dassl (CoOp's `train.py` imports these).

Both are written from the table, never by hand: after adding an entry, run from the repository root

    python -m prometar.data.coop_files            # writes missing or outdated files, lists stray ones
    python -m prometar.data.coop_files --check    # exit 1 if any file differs (what the test suite checks)
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List

from ..io import atomic_write_text
from .specs import SPECS, DatasetSpec

__all__ = ["dataset_files", "sync", "main"]

GENERATED = "Generated from the dataset table by `python -m prometar.data.coop_files`; do not edit."


def _yaml(spec: DatasetSpec) -> str:
    return f'# {GENERATED}\nDATASET:\n  NAME: "{spec.name}"\n'


def _shim(spec: DatasetSpec) -> str:
    return (f'"""{spec.name} for Dassl: importing this module registers it (reader: prometar.data; see '
            f'prometar.dassl).\n\n{GENERATED}\n"""\n'
            f"from prometar.dassl.datasets import register_dataset\n\n"
            f'{spec.name} = register_dataset("{spec.name}")\n')


def dataset_files() -> Dict[str, str]:
    """Repository-relative path -> expected text, for every dataset of the table."""
    files: Dict[str, str] = {}
    for spec in SPECS.values():
        files[os.path.join("configs", "datasets", f"{spec.config}.yaml")] = _yaml(spec)
        files[os.path.join("datasets", f"{spec.config}.py")] = _shim(spec)
    return files


def _stray(repo: str, expected: Dict[str, str]) -> List[str]:
    """Dataset YAMLs and shim modules in `repo` that no table entry produces."""
    found = []
    for folder, ext in ((os.path.join("configs", "datasets"), ".yaml"), ("datasets", ".py")):
        path = os.path.join(repo, folder)
        if os.path.isdir(path):
            found += [os.path.join(folder, f) for f in sorted(os.listdir(path))
                      if f.endswith(ext) and f != "__init__.py"]
    return [f for f in found if f not in expected]


def sync(repo: str, check: bool = False) -> tuple[List[str], List[str]]:
    """Compare (and unless `check`, write) the files of `dataset_files()` under `repo`.

    Returns (paths that differ or are missing, stray paths no entry produces). Stray files are never deleted.
    """
    expected = dataset_files()
    differ = []
    for rel, text in expected.items():
        path = os.path.join(repo, rel)
        try:
            with open(path, encoding="utf-8") as f:
                same = f.read() == text
        except FileNotFoundError:
            same = False
        if same:
            continue
        differ.append(rel)
        if not check:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_write_text(path, text)
    return differ, _stray(repo, expected)


def main(argv: List[str] | None = None) -> int:
    """`python -m prometar.data.coop_files [--check] [REPO]`; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m prometar.data.coop_files", description=__doc__.split("\n\n")[0])
    p.add_argument("repo", nargs="?", default=".", help="repository root (default: the current folder)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs or is stray")
    args = p.parse_args(argv)
    if not os.path.isdir(os.path.join(args.repo, "configs")):
        print(f"{os.path.abspath(args.repo)} has no configs/ folder: run from the repository root or name it",
              file=sys.stderr)
        return 2
    differ, stray = sync(args.repo, check=args.check)
    verb = "differs from the dataset table" if args.check else "written"
    for rel in differ:
        print(f"{rel}: {verb}")
    for rel in stray:
        print(f"{rel}: no entry of the dataset table produces this file (remove it, or add the entry)")
    if not differ and not stray:
        print(f"{len(dataset_files())} dataset files match the dataset table")
    return 1 if (args.check and differ) or stray else 0


if __name__ == "__main__":
    sys.exit(main())
