"""Absolute image paths in caches (few-shot `shot_N-seed_S.pkl`, ImageNet's `preprocessed.pkl`) after the
data folder moved.

Dassl's caches hold absolute paths, and Dassl must keep reading the caches written here, so the files
keep absolute paths. When a cache is read, records that lie under another folder are mapped onto the
current dataset folder by their dataset-relative part (the part after the old dataset folder), and the
caller rewrites the cache with the new paths. Records that cannot be mapped make the cache refused.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

from .records import Datum


class CacheMismatchError(ValueError):
    """A cache (few-shot or `preprocessed.pkl`) that does not belong to the current dataset folder or split.

    The message names the cache file and says to delete it.
    """


def under(path: str, folder: str) -> bool:
    """True if `path` lies inside `folder` (string test on normalised absolute paths)."""
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def relative_part(path: str, folder: str) -> str:
    """`path` relative to `folder`, for a path that lies inside it."""
    return path[len(folder.rstrip(os.sep)) + 1 :]


def find_old_folder(path: str, is_known: Callable[[str], bool]) -> str | None:
    """The folder F with `path == F/<rel>` and `is_known(rel)`, taking the longest such rel; None if none.

    Example: `/old/data/eurosat/2750/Forest/Forest_1.jpg` with `2750/Forest/Forest_1.jpg` known
    gives `/old/data/eurosat`.
    """
    for i, ch in enumerate(path):
        if ch == os.sep and i > 0 and is_known(path[i + 1 :]):
            return path[:i]
    return None


def reroot(
    records: Sequence[Datum], dataset_dir: str, is_known: Callable[[str], bool]
) -> tuple[list[Datum], str | None, list[Datum]]:
    """Map records lying outside `dataset_dir` onto it.

    Returns (records with current paths, the old folder or None if every record was already inside
    `dataset_dir`, records that cannot be mapped). All outside records must come from one old folder
    (found from the first one with `find_old_folder`) and their relative part must satisfy `is_known`;
    the others are kept unchanged in the first list and also returned in the third.
    """
    out: list[Datum] = []
    unmapped: list[Datum] = []
    old: str | None = None
    for item in records:
        path = item.impath
        if under(path, dataset_dir):
            out.append(item)
            continue
        if old is None:
            old = find_old_folder(path, is_known)
        if old is None or not under(path, old) or not is_known(relative_part(path, old)):
            unmapped.append(item)
            out.append(item)
            continue
        new_path = os.path.join(dataset_dir, relative_part(path, old))
        out.append(Datum(new_path, item.label, item.domain, item.classname, check_file=False))
    return out, old, unmapped


def same_folder(a: str, b: str) -> bool:
    """True if the two folders are the same on disk (symlinks resolved); False if either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
