"""The YAML configs shipped with the package, in wheel and editable / source installs alike.

A wheel installs the repository's top-level ``configs/`` as ``prometar/configs/`` (package data); an editable
install (``pip install -e .``) or a source checkout keeps it at ``configs/`` next to the ``prometar`` folder.
:func:`configs_dir` finds whichever exists; ``prometar configs`` prints it and ``prometar configs --copy DIR``
copies the ProMetaR trainer YAMLs into a host checkout (e.g. its ``configs/trainers/ProMetaR/``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

__all__ = ["configs_dir", "trainer_configs", "copy_trainer_configs", "configs_main"]

#: Where the ProMetaR trainer YAMLs live inside the configs folder.
TRAINER_SUBDIR = Path("trainers") / "ProMetaR"


def _candidates() -> List[Path]:
    here = Path(__file__).resolve().parent
    return [here / "configs", here.parent / "configs"]  # wheel (package data), then source / editable checkout


def configs_dir() -> Path:
    """The folder holding the shipped ``datasets/*.yaml`` and ``trainers/ProMetaR/*.yaml``.

    Raises:
        FileNotFoundError: neither location holds the trainer YAMLs (names both paths tried).
    """
    tried = _candidates()
    for folder in tried:
        if any((folder / TRAINER_SUBDIR).glob("*.yaml")):
            return folder
    raise FileNotFoundError(f"the shipped configs were not found: tried {tried[0]} (wheel install) and {tried[1]} "
                            f"(source / editable install), neither holds {TRAINER_SUBDIR}/*.yaml. Reinstall prometar "
                            f"(`pip install .` or `pip install -e .` from the repository).")


def trainer_configs() -> List[Path]:
    """The shipped ProMetaR trainer YAMLs, sorted by name."""
    return sorted((configs_dir() / TRAINER_SUBDIR).glob("*.yaml"))


def copy_trainer_configs(dest: "str | Path", force: bool = False) -> List[Path]:
    """Copy the ProMetaR trainer YAMLs into ``dest`` (created if needed); return the files written.

    Files already present with the same content are left as they are. When some differ, nothing is copied
    and ``FileExistsError`` names them, unless ``force`` (then they are overwritten).
    """
    from .io import atomic_write_text

    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(f"--copy destination {dest} exists and is not a folder")
    sources = trainer_configs()
    differing = [dest / s.name for s in sources
                 if (dest / s.name).exists() and (dest / s.name).read_bytes() != s.read_bytes()]
    if differing and not force:
        raise FileExistsError(f"{len(differing)} file(s) in {dest} differ from the shipped ones and were not "
                              f"overwritten: {', '.join(str(p) for p in differing)}. Nothing was copied; pass "
                              f"--force to overwrite them.")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sources:
        target = dest / src.name
        if target.exists() and target.read_bytes() == src.read_bytes():
            continue
        atomic_write_text(target, src.read_text(encoding="utf-8"))
        written.append(target)
    return written


def configs_main(argv: Optional[List[str]] = None) -> int:
    """``prometar configs [--copy DIR [--force]]``."""
    parser = argparse.ArgumentParser(
        prog="prometar configs",
        description="Print the folder holding the shipped YAML configs (datasets/, trainers/ProMetaR/), or copy "
                    "the ProMetaR trainer YAMLs into a host checkout.")
    parser.add_argument("--copy", metavar="DIR", default=None,
                        help="copy the ProMetaR trainer YAMLs into DIR, e.g. a host's configs/trainers/ProMetaR")
    parser.add_argument("--force", action="store_true", help="with --copy: overwrite files that differ")
    args = parser.parse_args(argv)
    try:
        if args.copy is None:
            print(configs_dir())
            return 0
        written = copy_trainer_configs(args.copy, force=args.force)
    except (FileNotFoundError, FileExistsError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    total = len(trainer_configs())
    print(f"copied {len(written)} of {total} ProMetaR trainer YAMLs from {configs_dir() / TRAINER_SUBDIR} to "
          f"{Path(args.copy).expanduser()} ({total - len(written)} already identical)")
    for path in written:
        print(f"  {path.name}")
    return 0
