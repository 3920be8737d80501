"""`ImageFolder`: a user's own images, one folder per class, split once from a seed.

Layout under DATASET.ROOT (the folder name is DATASET.IMAGEFOLDER.DIR, default `imagefolder`):

    <DIR>/<class folder>/*.jpg|*.jpeg|*.png     (one folder per class; other files are skipped)
    <DIR>/classnames.txt                        (optional: `<folder> <class name>` per line)
    <DIR>/split_prometar_ImageFolder.json       (written by the first run, reused afterwards)
    <DIR>/split_fewshot/                        (few-shot caches, as for every dataset)

Labels are the sorted class-folder names (0..N-1). Class names: from classnames.txt when it exists
(it must name every class folder, and only existing ones), else the folder name with `_` replaced by
a space (`golden_retriever` -> "golden retriever"), as CoOp's readers do for DTD/Food101-style folders.

The train/val/test split is drawn once by the shared folder splitter (50/20/30 by default, per class)
with its own seed (DATASET.IMAGEFOLDER.SPLIT_SEED, not SEED, so every run seed sees the same split), on
sorted file lists, and saved in CoOp's split-file JSON format. Later runs read that file, whatever the
seed and ratio keys say: delete it (and `split_fewshot/`) to draw a new split, e.g. after adding images.
"""
from __future__ import annotations

import os
import random
from dataclasses import replace
from typing import Any, Mapping

from ..config import IMAGEFOLDER_DEFAULTS  # keys under DATASET.IMAGEFOLDER (added by extend_cfg)
from . import inputs
from .records import Datum
from .specs import DatasetLayoutError, DatasetSpec
from .splits import listdir_nohidden, read_split, split_by_folder, write_split

#: File endings read as images (lower-cased).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
CLASSNAMES_FILE = "classnames.txt"
_NOT_CLASSES = ("split_fewshot",)


def dataset_options(cfg: Any) -> dict[str, Any]:
    """The DATASET.IMAGEFOLDER keys of a config (defaults for absent ones); {} for other datasets."""
    data = cfg.DATASET
    if str(data.get("NAME", "")).lower() not in ("imagefolder", "image_folder"):
        return {}
    node = data.get("IMAGEFOLDER", None) or {}
    return {key: node.get(key, default) for key, default in IMAGEFOLDER_DEFAULTS.items()}


def imagefolder_spec(spec: DatasetSpec, options: Mapping[str, Any] | None) -> DatasetSpec:
    """`spec` with `dataset_dir` set from options["DIR"] (checked: a plain folder name under ROOT)."""
    folder = str((options or {}).get("DIR", IMAGEFOLDER_DEFAULTS["DIR"]))
    if not folder or os.path.isabs(folder) or ".." in folder.split(os.sep):
        raise ValueError(f"DATASET.IMAGEFOLDER.DIR must be a folder name under DATASET.ROOT, got {folder!r}")
    return replace(spec, dataset_dir=folder)


def read_classnames(path: str, folders: list[str]) -> dict[str, str]:
    """`classnames.txt` (`<folder> <class name>` per line) -> {folder: name}.

    Every line must have both parts and name an existing class folder; every folder must be listed.
    """
    names: dict[str, str] = {}
    inputs.note(path)
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise DatasetLayoutError(
                    f"{path}, line {n}: {line!r} does not parse; expected `<folder> <class name>`")
            folder, name = parts
            if folder not in folders:
                raise DatasetLayoutError(
                    f"{path}, line {n}: class folder {os.path.join(os.path.dirname(path), folder)} does not exist "
                    f"(class folders: {', '.join(folders[:10])}{' ...' if len(folders) > 10 else ''})")
            if folder in names:
                raise DatasetLayoutError(f"{path}, line {n}: folder {folder!r} is listed twice")
            names[folder] = name.strip()
    unlisted = [f for f in folders if f not in names]
    if unlisted:
        raise DatasetLayoutError(
            f"{path} has no line for the class folder(s) {', '.join(unlisted[:10])}; add a line "
            f"`<folder> <class name>` for each (or delete {CLASSNAMES_FILE} to use the folder names)")
    return names


def class_folders(ddir: str) -> list[str]:
    """Sorted class folders of `ddir`; an error names empty folders (no .jpg/.jpeg/.png file)."""
    folders = [e for e in listdir_nohidden(ddir, sort=True)
               if e not in _NOT_CLASSES and os.path.isdir(os.path.join(ddir, e))]
    if not folders:
        raise DatasetLayoutError(
            f"ImageFolder: no class folder in {ddir}; expected {ddir}/<class>/*.jpg|jpeg|png (one folder per class)")
    empty = []
    for folder in folders:
        path = os.path.join(ddir, folder)
        try:
            files = os.listdir(path)
        except OSError as exc:
            raise DatasetLayoutError(f"ImageFolder: cannot read class folder {path} ({exc})") from exc
        if not any(f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".") for f in files):
            empty.append(path)
    if empty:
        raise DatasetLayoutError(
            f"ImageFolder: {len(empty)} class folder(s) have no image file ({'/'.join(IMAGE_EXTENSIONS)}): "
            f"{', '.join(empty[:10])}; add images or remove the folder")
    if len(folders) < 2:
        raise DatasetLayoutError(f"ImageFolder: {ddir} has one class folder ({folders[0]}); at least 2 are needed")
    return folders


def read_imagefolder(spec: DatasetSpec, ddir: str, options: Mapping[str, Any] | None = None
                     ) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Train/val/test lists of an image folder: the saved split file, else a new split (then saved)."""
    opts = {**IMAGEFOLDER_DEFAULTS, **(options or {})}
    split_path = os.path.join(ddir, spec.split_file or "split_prometar_ImageFolder.json")
    if os.path.isfile(split_path):
        return read_split(split_path, ddir)
    folders = class_folders(ddir)
    names_path = os.path.join(ddir, CLASSNAMES_FILE)
    if os.path.isfile(names_path):
        names = read_classnames(names_path, folders)
    else:
        names = {f: f.replace("_", " ") for f in folders}
    ignored = [e for e in listdir_nohidden(ddir) if e not in folders]
    p_trn, p_val = float(opts["P_TRAIN"]), float(opts["P_VAL"])
    if not (0 < p_trn < 1 and 0 < p_val < 1 and p_trn + p_val < 1):
        raise ValueError(f"DATASET.IMAGEFOLDER.P_TRAIN={p_trn} and P_VAL={p_val} must be > 0 with a sum < 1 "
                         f"(the rest is the test part)")
    state = random.getstate()  # a split of its own seed; the run's global random stream is left as it was
    random.seed(int(opts["SPLIT_SEED"]))
    try:
        train, val, test = split_by_folder(ddir, p_trn=p_trn, p_val=p_val, ignored=ignored, renames=names,
                                           extensions=IMAGE_EXTENSIONS, sort_files=True)
    except ValueError as exc:
        raise DatasetLayoutError(f"ImageFolder: {exc}") from exc
    finally:
        random.setstate(state)
    write_split(train, val, test, split_path, ddir)
    return train, val, test
