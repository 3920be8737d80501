"""Split files (`split_zhou_<Name>.json`) and the fallback splitters (CoOp's JSON layout; folder-based splitting where a dataset ships no split file).

The fallback splitters use Python's *global* `random` exactly like Dassl (seeded by the entry
point with `cfg.SEED`); their output depends on directory-listing order, so generated splits are
not reproducible across machines. Always prefer the distributed JSON files.
"""
from __future__ import annotations

import json
import os
import random
from collections import OrderedDict
from typing import Iterable, Mapping, Sequence

from . import inputs
from .records import Datum, write_bytes_atomic

Triple = tuple[str, int, str]  # (absolute image path, label, classname)


def listdir_nohidden(path: str, sort: bool = False) -> list[str]:
    """Entries of `path` not starting with `.` (OS order unless `sort`)."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


def make_records(triples: Iterable[Triple], source: str) -> list[Datum]:
    """Build `Datum`s, checking every image exists; the error names the missing files and `source`."""
    records, missing, total = [], [], 0
    for impath, label, classname in triples:
        total += 1
        if not os.path.isfile(impath):
            missing.append(impath)
            continue
        records.append(Datum(impath, int(label), 0, classname, check_file=False))
    if missing:
        shown = "\n  ".join(missing[:5])
        more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        from .specs import DatasetLayoutError

        raise DatasetLayoutError(
            f'No file found at "{missing[0]}" ({len(missing)} of {total} images listed by {source} '
            f"are missing):\n  {shown}{more}"
        )
    return records


def read_split(path: str, prefix: str) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Read a CoOp split JSON; each entry `[relative path, label, classname]` is joined to `prefix`."""
    print(f"Reading split from {path}")
    inputs.note(path)
    with open(path, encoding="utf-8") as f:
        try:
            split = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"Split file {path} is not valid JSON ({exc}); delete it and fetch it again") from exc
    out = []
    for key in ("train", "val", "test"):
        if not isinstance(split, dict) or key not in split:
            raise ValueError(f'Split file {path} has no "{key}" list; expected keys "train", "val", "test"')
        try:
            triples = [(os.path.join(prefix, p), int(y), c) for p, y, c in split[key]]
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f'Split file {path}, list "{key}": entries must be [relative_path, label, classname] ({exc})'
            ) from exc
        out.append(make_records(triples, f'{path} ("{key}")'))
    return out[0], out[1], out[2]


def write_split(train: Sequence[Datum], val: Sequence[Datum], test: Sequence[Datum], path: str, prefix: str) -> None:
    """Write a CoOp split JSON (Dassl's format: indent 4), paths made relative to `prefix`."""

    def extract(items: Sequence[Datum]) -> list:
        out = []
        for item in items:
            impath = item.impath.replace(prefix, "")
            if impath.startswith("/"):
                impath = impath[1:]
            out.append((impath, item.label, item.classname))
        return out

    split = {"train": extract(train), "val": extract(val), "test": extract(test)}
    text = json.dumps(split, indent=4, separators=(",", ": "))
    write_bytes_atomic(path, text.encode("utf-8"))
    inputs.note(path)
    print(f"Saved split to {path}")


def split_by_folder(
    image_dir: str,
    p_trn: float = 0.5,
    p_val: float = 0.2,
    ignored: Sequence[str] = (),
    renames: Mapping[str, str] | None = None,
    extensions: Sequence[str] | None = None,
    sort_files: bool = False,
) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Folder splitter (Dassl's DTD one): per sorted category, shuffle files, 50/20/30 (global `random`).

    extensions: keep only files ending in one of these (lower-cased, e.g. `(".jpg", ".png")`); None = all.
    sort_files: sort each category's files before shuffling (the split then depends only on the seed,
    not on the file system's listing order; Dassl does not sort).
    """
    categories = sorted(c for c in listdir_nohidden(image_dir) if c not in ignored)
    p_tst = 1 - p_trn - p_val
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {p_tst:.0%} test")
    train, val, test = [], [], []
    for label, category in enumerate(categories):
        category_dir = os.path.join(image_dir, category)
        files = listdir_nohidden(category_dir, sort=sort_files)
        if extensions is not None:
            files = [f for f in files if f.lower().endswith(tuple(extensions))]
        images = [os.path.join(category_dir, im) for im in files]
        random.shuffle(images)
        n_total = len(images)
        n_train = round(n_total * p_trn)
        n_val = round(n_total * p_val)
        n_test = n_total - n_train - n_val
        if not (n_train > 0 and n_val > 0 and n_test > 0):
            raise ValueError(
                f"{category_dir}: {n_total} images cannot be split {p_trn:.0%}/{p_val:.0%}/{p_tst:.0%} with "
                f"every part non-empty (got {n_train}/{n_val}/{n_test}); add images to this class (with the default "
                f"50/20/30 split each class needs >= 4 images)"
            )
        name = (renames or {}).get(category, category)
        for part, ims in ((train, images[:n_train]), (val, images[n_train : n_train + n_val]),
                          (test, images[n_train + n_val :])):
            part.extend(make_records(((im, label, name) for im in ims), image_dir))
    return train, val, test


def split_trainval(trainval: Sequence[Datum], p_val: float = 0.2) -> tuple[list[Datum], list[Datum]]:
    """Trainval splitter (Dassl's OxfordPets one): per label (first-appearance order), shuffle, 20% to val."""
    p_trn = 1 - p_val
    print(f"Splitting trainval into {p_trn:.0%} train and {p_val:.0%} val")
    tracker: OrderedDict[int, list[int]] = OrderedDict()
    for idx, item in enumerate(trainval):
        tracker.setdefault(item.label, []).append(idx)
    train, val = [], []
    for label, idxs in tracker.items():
        n_val = round(len(idxs) * p_val)
        if n_val <= 0:
            raise ValueError(f"label {label}: {len(idxs)} trainval images give an empty val part (need >= 3)")
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            item = trainval[idx]
            (val if n < n_val else train).append(Datum(item.impath, item.label, 0, item.classname, check_file=False))
    return train, val
