"""Read-only layout check of dataset folders (`prometar data --check`); writes nothing."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .readers import read_imagenet_classnames
from .specs import SPECS, DatasetSpec, resolve_root


@dataclass
class CheckResult:
    """status: `ok`, `missing` (no dataset folder) or `incomplete`; `missing` lists absent paths."""

    name: str
    dataset_dir: str
    status: str = "ok"
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lack(self, path: str, what: str) -> None:
        self.missing.append(f"{path} ({what})")
        self.status = "incomplete"


def _missing_images(paths: list[str]) -> list[str]:
    return [p for p in paths if not os.path.isfile(p)]


def _check_listed(res: CheckResult, source: str, paths: list[str]) -> None:
    absent = _missing_images(paths)
    for p in absent[:5]:
        res.lack(p, f"image listed in {os.path.basename(source)}")
    if len(absent) > 5:
        res.missing.append(f"... and {len(absent) - 5} more images listed in {source}")
    if not absent:
        res.notes.append(f"{len(paths):,} images listed in {os.path.basename(source)}, all present")


def _check_json(spec: DatasetSpec, ddir: str, res: CheckResult) -> None:
    image_dir = os.path.join(ddir, spec.image_dir)
    if not os.path.isdir(image_dir):
        res.lack(image_dir, "image folder")
    split_path = os.path.join(ddir, spec.split_file)
    if not os.path.isfile(split_path):
        extra = "; a fallback split would be generated (not the published one)" if spec.fallback else ""
        res.lack(split_path, f"CoOp split file{extra}")
        return
    prefix = os.path.join(ddir, spec.prefix) if spec.prefix else ddir
    try:
        with open(split_path, encoding="utf-8") as f:
            split = json.load(f)
        paths = [os.path.join(prefix, item[0]) for key in ("train", "val", "test") for item in split[key]]
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        res.lack(split_path, f"unreadable split file: {exc}")
        return
    _check_listed(res, split_path, paths)


def _check_fgvc(spec: DatasetSpec, ddir: str, res: CheckResult) -> None:
    image_dir = os.path.join(ddir, "images")
    if not os.path.isdir(image_dir):
        res.lack(image_dir, "image folder")
    paths = []
    for fname in ("variants.txt", "images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt"):
        path = os.path.join(ddir, fname)
        if not os.path.isfile(path):
            res.lack(path, "FGVC-Aircraft list file")
        elif fname != "variants.txt":
            with open(path, encoding="utf-8") as f:
                paths += [os.path.join(image_dir, line.split(" ")[0] + ".jpg") for line in f if line.strip()]
    if paths:
        _check_listed(res, os.path.join(ddir, "images_variant_*.txt"), paths)


def _classnames(ddir: str, res: CheckResult) -> dict[str, str] | None:
    path = os.path.join(ddir, "classnames.txt")
    if not os.path.isfile(path):
        res.lack(path, "class-name file, a copy of imagenet/classnames.txt")
        return None
    return read_imagenet_classnames(path)


def _check_class_folders(folder: str, names: dict[str, str] | None, res: CheckResult, ignored=()) -> set[str]:
    if not os.path.isdir(folder):
        res.lack(folder, "image folder")
        return set()
    found = {f for f in os.listdir(folder) if not f.startswith(".") and f not in ignored}
    unknown = sorted(found - set(names)) if names is not None else []
    for wnid in unknown[:5]:
        res.lack(os.path.join(folder, wnid), "class folder without a line in classnames.txt")
    res.notes.append(f"{len(found):,} class folders in {os.path.basename(folder)}/")
    return found


def _check_imagenet(spec: DatasetSpec, ddir: str, res: CheckResult) -> None:
    if os.path.isfile(os.path.join(ddir, "preprocessed.pkl")):
        res.notes.append("preprocessed.pkl present (folders are not read)")
        return
    names = _classnames(ddir, res)
    train = _check_class_folders(os.path.join(ddir, "images", "train"), names, res)
    val = _check_class_folders(os.path.join(ddir, "images", "val"), names, res)
    if train and val and train != val:
        res.lack(os.path.join(ddir, "images", "val"), f"{len(train ^ val)} class folders differ between train/ and val/")


def _check_imagenetv2(spec: DatasetSpec, ddir: str, res: CheckResult) -> None:
    names = _classnames(ddir, res)
    image_dir = os.path.join(ddir, spec.image_dir)
    if not os.path.isdir(image_dir):
        res.lack(image_dir, "image folder")
        return
    if names is not None:
        absent = [str(i) for i in range(len(names)) if not os.path.isdir(os.path.join(image_dir, str(i)))]
        for label in absent[:5]:
            res.lack(os.path.join(image_dir, label), "class folder")


def _check_wnid(spec: DatasetSpec, ddir: str, res: CheckResult) -> None:
    names = _classnames(ddir, res)
    _check_class_folders(os.path.join(ddir, spec.image_dir), names, res, ignored=spec.ignored)


def _check_imagefolder(spec: DatasetSpec, ddir: str, res: CheckResult) -> None:
    from .imagefolder import CLASSNAMES_FILE, class_folders
    from .specs import DatasetLayoutError

    try:
        folders = class_folders(ddir)
    except DatasetLayoutError as exc:
        res.lack(ddir, str(exc))
        return
    res.notes.append(f"{len(folders):,} class folders")
    if os.path.isfile(os.path.join(ddir, CLASSNAMES_FILE)):
        res.notes.append(f"{CLASSNAMES_FILE} present")
    split_path = os.path.join(ddir, spec.split_file)
    if os.path.isfile(split_path):
        _check_json(spec, ddir, res)
    else:
        res.notes.append(f"no {spec.split_file} yet (the first run draws and saves the split)")


#: One layout check per on-disk layout (`DatasetSpec.kind`); they only read, never write.
CHECKS = {
    "json": _check_json,
    "fgvc": _check_fgvc,
    "imagenet": _check_imagenet,
    "imagenetv2": _check_imagenetv2,
    "wnid_folders": _check_wnid,
    "imagefolder": _check_imagefolder,
}


def check_dataset(name: str, root: str) -> CheckResult:
    """Check one dataset's layout under `root` without writing anything."""
    spec = SPECS[name]
    ddir = os.path.join(resolve_root(root), spec.dataset_dir)
    res = CheckResult(name, ddir)
    if not os.path.isdir(ddir):
        res.status = "missing"
        res.missing.append(f"{ddir} (dataset folder)")
        return res
    CHECKS[spec.kind](spec, ddir, res)
    return res
