"""Few-shot sampling with its cache (Dassl's ``split_fewshot/shot_<K>-seed_<S>.pkl``) and base/new class subsampling (sorted labels, base = the lower half rounded up, relabelled from 0)."""
from __future__ import annotations

import math
import os
import random
from collections import OrderedDict
from typing import Sequence

from .records import Datum, dump_records, load_records
from .reroot import CacheMismatchError, relative_part, reroot, same_folder, under


def make_rng(seed: int) -> random.Random:
    """A dedicated CPython generator seeded with `seed` (seed < 0: unseeded, like Dassl's SEED -1)."""
    return random.Random(seed) if seed >= 0 else random.Random()


def split_by_label(data: Sequence[Datum]) -> "OrderedDict[int, list[Datum]]":
    """Group records by label; groups in order of first appearance, records in list order."""
    groups: OrderedDict[int, list[Datum]] = OrderedDict()
    for item in data:
        groups.setdefault(item.label, []).append(item)
    return groups


def generate_fewshot(
    *lists: Sequence[Datum],
    num_shots: int,
    rng: random.Random | None = None,
    seed: int = -1,
    repeat: bool = False,
) -> list[Datum] | list[list[Datum]]:
    """Dassl's `generate_fewshot_dataset`: N samples per label of each list (one RNG stream for all).

    Groups with >= N items get `rng.sample(group, N)`; smaller groups are kept whole without consuming
    the RNG (or drawn with replacement if `repeat`). One list in -> one list out; several -> a list of
    lists. `rng` defaults to `make_rng(seed)`. N < 1 returns the inputs unchanged.
    """
    if num_shots < 1:
        return lists[0] if len(lists) == 1 else list(lists)
    rng = rng if rng is not None else make_rng(seed)
    print(f"Creating a {num_shots}-shot dataset")
    output = []
    for data in lists:
        picked: list[Datum] = []
        for items in split_by_label(data).values():
            if len(items) >= num_shots:
                picked.extend(rng.sample(items, num_shots))
            elif repeat:
                picked.extend(rng.choices(items, k=num_shots))
            else:
                picked.extend(items)
        output.append(picked)
    return output[0] if len(output) == 1 else output


def fewshot_cache_path(split_fewshot_dir: str, num_shots: int, seed: int) -> str:
    """`DIR/split_fewshot/shot_{N}-seed_{S}.pkl`."""
    return os.path.join(split_fewshot_dir, f"shot_{num_shots}-seed_{seed}.pkl")


def fewshot_with_cache(
    train: Sequence[Datum],
    val: Sequence[Datum] | None,
    num_shots: int,
    seed: int,
    split_fewshot_dir: str | None,
) -> tuple[list[Datum], list[Datum] | None]:
    """CoOp's few-shot step: load `shot_{N}-seed_{S}.pkl` if present (no sampling, no RNG), else sample
    train with N then val with min(N, 4) from one generator seeded with `seed`, and save the cache.

    `val=None` (ImageNet) samples and caches train only. The cache holds full-class lists with
    original labels, in Dassl's format, so Dassl and standalone runs share it.
    """
    if num_shots < 1:
        return train, val
    path = fewshot_cache_path(split_fewshot_dir, num_shots, seed) if split_fewshot_dir else None
    if path and os.path.isfile(path):
        print(f"Loading preprocessed few-shot data from {path}")
        data = load_records(path)
        keys = ("train",) if val is None else ("train", "val")
        for key in keys:
            if not isinstance(data, dict) or key not in data:
                raise KeyError(f'Few-shot cache {path} has no "{key}" list; delete it to resample')
        full = {"train": train, "val": val}
        dataset_dir = os.path.dirname(os.path.abspath(split_fewshot_dir))
        checked = {key: _check_cached(data[key], full[key], key, dataset_dir, path) for key in keys}
        moved = {old for _, old in checked.values() if old is not None}
        if moved:
            content = {key: records for key, (records, _) in checked.items()}
            content.update({k: v for k, v in data.items() if k not in content})
            print(f"Note: few-shot cache {path} lists images under {', '.join(sorted(moved))}; the data folder "
                  f"was moved or copied to {dataset_dir}, so its paths were mapped onto the current folder")
            try:
                dump_records(content, path)
                print(f"Rewrote {path} with the current paths")
            except (OSError, TypeError) as exc:
                print(f"Warning: cannot rewrite {path} ({exc}); its paths are mapped again next time")
        train = checked["train"][0]
        return train, None if val is None else checked["val"][0]
    rng = make_rng(seed)
    train = generate_fewshot(train, num_shots=num_shots, rng=rng)
    content = {"train": train}
    if val is not None:
        val = generate_fewshot(val, num_shots=min(num_shots, 4), rng=rng)
        content["val"] = val
    if path:
        print(f"Saving preprocessed few-shot data to {path}")
        try:
            dump_records(content, path)
        except OSError as exc:
            print(f"Warning: cannot write {path} ({exc}); the same samples are drawn again next time")
    return train, val


def _check_cached(
    cached: Sequence[Datum], full: Sequence[Datum], key: str, dataset_dir: str, path: str
) -> tuple[list[Datum], str | None]:
    """Check the cached `key` list against the current full list; map paths of a moved data folder.

    Every cached record must be a record of the current list (same dataset-relative path, label and
    class name), else the cache belongs to another split, dataset or folder and is refused. Returns the
    records with current paths and the old folder (None when nothing was mapped).
    """
    known = {relative_part(d.impath, dataset_dir): (d.label, d.classname) for d in full
             if under(d.impath, dataset_dir)}
    records, old, _ = reroot(list(cached), dataset_dir, known.__contains__)
    wrong = [item for item in records if not under(item.impath, dataset_dir)
             or known.get(relative_part(item.impath, dataset_dir)) != (item.label, item.classname)]
    if wrong:
        first = wrong[0]
        raise CacheMismatchError(
            f'Few-shot cache {path} does not match the dataset in {dataset_dir}: {len(wrong)} of {len(cached)} '
            f'"{key}" records are not images of its current "{key}" list with the same label and class '
            f'(e.g. "{first.impath}", label {first.label}, "{first.classname}"). The cache was written for '
            f"another split file, dataset or data folder. Delete {path}; the next run samples a new one "
            f"(the same images for the same seed and split)."
        )
    if old is not None and same_folder(old, dataset_dir):  # the same folder reached through another path
        old = None
    return records, old


def warn_capped_shots(train: Sequence[Datum], num_shots: int) -> None:
    """Print one warning naming the classes of `train` (the run's final list: after base/new subsampling) that have
    fewer than `num_shots` training images."""
    counts: "OrderedDict[tuple[int, str], int]" = OrderedDict()
    for item in sorted(train, key=lambda d: d.label):
        counts[(item.label, item.classname)] = counts.get((item.label, item.classname), 0) + 1
    short = [(name, n) for (_, name), n in counts.items() if n < num_shots]
    if not short:
        return
    shown = ", ".join(f"{name} ({n})" for name, n in short[:10])
    more = f", ... and {len(short) - 10} more" if len(short) > 10 else ""
    print(f"Warning: DATASET.NUM_SHOTS is {num_shots} but {len(short)} of {len(counts)} classes have fewer "
          f"training images, so they use all they have: {shown}{more}. Shots are capped, not repeated; lower "
          f"DATASET.NUM_SHOTS to run every class with the same number of shots.")


SUBSAMPLE_CHOICES = ("all", "base", "new")


def subsample_classes(*lists: Sequence[Datum], subsample: str = "all") -> tuple[list[Datum], ...]:
    """Base/new split (lower ceil(n/2) sorted labels are base), decided on the labels of the FIRST list.

    all: inputs returned untouched. base: lower ceil(n/2) labels; new: the rest. Selected labels are
    relabelled 0..k-1 in ascending order; records of other labels are dropped from every list.
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(
            f"DATASET.SUBSAMPLE_CLASSES must be one of {', '.join(SUBSAMPLE_CHOICES)}, got {subsample!r}"
        )
    if subsample == "all":
        return lists
    labels = sorted({item.label for item in lists[0]})
    m = math.ceil(len(labels) / 2)
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabel = {y: i for i, y in enumerate(selected)}
    return tuple(
        [Datum(item.impath, relabel[item.label], 0, item.classname) for item in data if item.label in relabel]
        for data in lists
    )
