"""Readers: full train/val/test lists of every dataset, before few-shot and base/new subsampling.

`read_dataset_lists(name, root)` is shared by the standalone datasets (`prometar.data.datasets`)
and by a Dassl `DatasetBase` wrapper, which converts the records to Dassl's `Datum`.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from . import inputs
from .imagefolder import imagefolder_spec, read_imagefolder
from .names import sun397_classname, ucf101_classname, pets_classname
from .records import Datum, dump_records, load_records
from .reroot import CacheMismatchError, reroot, same_folder, under
from .sources import DRIVE_VIEW
from .specs import (
    DatasetLayoutError,
    DatasetSpec,
    get_spec,
    layout_hint,
    missing_path_error,
    resolve_root,
    split_file_source,
)
from .splits import listdir_nohidden, make_records, read_split, split_by_folder, split_trainval, write_split

Lists = tuple[list[Datum], list[Datum], list[Datum]]
Options = Mapping[str, Any] | None  # dataset-specific config keys (only ImageFolder has any)


@dataclass(frozen=True)
class ListsInfo:
    """What the caller needs to finish a dataset the CoOp way.

    fewshot_val: few-shot also samples val with min(N, 4) (False for ImageNet).
    val_is_test: the dataset's val list is its test list (ImageNet), applied after subsampling.
    test_only: ImageNet variants: no few-shot, no subsampling, train_x = test, no val.
    """

    name: str
    root: str
    dataset_dir: str
    split_fewshot_dir: str | None
    fewshot_val: bool = True
    val_is_test: bool = False
    test_only: bool = False


def read_dataset_lists(
    name: str, root: str, options: Mapping[str, Any] | None = None
) -> tuple[list[Datum], list[Datum] | None, list[Datum], ListsInfo]:
    """Read the full (train, val, test) lists of dataset `name` under `root`, plus a `ListsInfo`.

    Creates `DIR/split_fewshot/` like Dassl (not for the test-only ImageNet variants). val is None for
    ImageNet (its val is its test list) and for the test-only variants (whose train list is the test list).
    options: dataset-specific config keys (`ImageFolder`: the DATASET.IMAGEFOLDER keys, see
    `prometar.data.imagefolder.dataset_options`); ignored by the other datasets.
    """
    spec = get_spec(name)
    if spec.kind == "imagefolder":
        spec = imagefolder_spec(spec, options)
    root = resolve_root(root)
    ddir = os.path.join(root, spec.dataset_dir)
    if not os.path.isdir(ddir):
        raise missing_path_error("dataset folder", ddir, spec, root)
    fewshot_dir = None if spec.test_only else _make_fewshot_dir(ddir)
    train, val, test = READERS[spec.kind](spec, ddir, root, options)
    if not spec.test_only:
        check_train_classes(train, {"val": val or [], "test": test}, spec.name, _train_source(spec, ddir))
    info = ListsInfo(
        name=spec.name,
        root=root,
        dataset_dir=ddir,
        split_fewshot_dir=fewshot_dir,
        fewshot_val=spec.kind != "imagenet",
        val_is_test=spec.kind == "imagenet",
        test_only=spec.test_only,
    )
    return train, val, test, info


class MissingTrainClassError(DatasetLayoutError):
    """A class of the dataset has no training image (the message names it and the split file or folder)."""


def _train_source(spec: DatasetSpec, ddir: str) -> str:
    """Where the train list of `spec` comes from (split file, list file or folder), for messages."""
    if spec.kind in ("json", "imagefolder"):
        return os.path.join(ddir, spec.split_file or "")
    if spec.kind == "fgvc":
        return os.path.join(ddir, "images_variant_train.txt")
    if spec.kind == "imagenet":
        return f"{os.path.join(ddir, 'images', 'train')} (listed in {os.path.join(ddir, 'preprocessed.pkl')})"
    return ddir


def check_train_classes(train: list[Datum], others: dict[str, list[Datum]], dataset: str, source: str) -> None:
    """Refuse a dataset where some class has no training image.

    Classes are the labels 0..max over all lists. A class present in val/test (or a label skipped in the
    numbering) but absent from train would otherwise be dropped silently by base/new subsampling (which
    splits the labels of train) and crash evaluation with `all` (Dassl derives the classes from train).
    """
    train_labels = {d.label for d in train}
    train_names = {d.classname for d in train}
    if not train:
        raise MissingTrainClassError(f"{dataset}: the train list of {source} is empty")
    absent: dict[int, tuple[str, str]] = {}  # label -> (class name, list)
    for key, data in others.items():
        for d in data:
            if d.label not in train_labels or d.classname not in train_names:
                absent.setdefault(d.label, (d.classname, key))
    n_labels = max([d.label for d in train] + [lab for lab in absent]) + 1
    gaps = [lab for lab in range(n_labels) if lab not in train_labels and lab not in absent]
    if not absent and not gaps:
        return
    parts = [f'"{name}" (label {lab}, in {key})' for lab, (name, key) in sorted(absent.items())]
    parts += [f"label {lab} (no image in any list)" for lab in gaps]
    shown = ", ".join(parts[:10]) + (f", ... and {len(parts) - 10} more" if len(parts) > 10 else "")
    raise MissingTrainClassError(
        f"{dataset}: {len(parts)} of {n_labels} classes have no training image in {source}: {shown}. "
        f"A class without training images cannot be learned, and dropping it would change the base/new "
        f"split and shift every label after it. Add training images for these classes (or remove them from "
        f"every list and number the labels 0..N-1), then delete the few-shot caches in split_fewshot/."
    )


def _make_fewshot_dir(ddir: str) -> str:
    path = os.path.join(ddir, "split_fewshot")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        print(f"Warning: cannot create {path} ({exc}); few-shot caches will not be saved")
    return path


def _require_dir(path: str, what: str, spec: DatasetSpec, root: str) -> str:
    if not os.path.isdir(path):
        raise missing_path_error(what, path, spec, root)
    return path


def _require_file(path: str, what: str, spec: DatasetSpec, root: str) -> str:
    if not os.path.isfile(path):
        raise missing_path_error(what, path, spec, root)
    return path


def _lines(path: str) -> list[str]:
    """Non-blank lines of a text file, stripped."""
    inputs.note(path)
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


# --------------------------------------------------------------------------------------------
# JSON split + prefix folder (Caltech101, OxfordPets, StanfordCars, OxfordFlowers, Food101, SUN397,
# DescribableTextures, EuroSAT, UCF101, PrometarWorld)


def _read_json(spec: DatasetSpec, ddir: str, root: str, _options: Options = None) -> Lists:
    split_path = os.path.join(ddir, spec.split_file)
    prefix = os.path.join(ddir, spec.prefix) if spec.prefix else ddir
    if os.path.isfile(split_path):
        _require_dir(os.path.join(ddir, spec.image_dir), "image folder", spec, root)
        return read_split(split_path, prefix)
    fallback = FALLBACKS.get(spec.fallback or "")
    if fallback is None:
        raise _missing_split_error(spec, split_path, root)
    try:
        train, val, test = fallback(spec, ddir, root)
    except DatasetLayoutError as exc:
        raise DatasetLayoutError(
            f"{spec.name}: split file not found: {split_path}, and a new split cannot be generated "
            f"from the raw files either:\n{exc}\n{_split_download_hint(spec, split_path, root)}"
        ) from exc
    write_split(train, val, test, split_path, prefix)
    return train, val, test


def _split_download_hint(spec: DatasetSpec, split_path: str, root: str) -> str:
    fetch = split_file_source(spec)
    if fetch is None:
        return f"{spec.split_file} is not distributed by CoOp; create it at {split_path}."
    return (
        f"Download {spec.split_file} (CoOp, Google Drive {DRIVE_VIEW.format(id=fetch.drive_id)}) and save it "
        f"as {split_path}, or run `prometar data {spec.name} --root {root}`."
    )


def _missing_split_error(spec: DatasetSpec, split_path: str, root: str) -> DatasetLayoutError:
    return DatasetLayoutError(
        f"{spec.name}: split file not found: {split_path}\n{_split_download_hint(spec, split_path, root)}\n"
        f"(This project does not regenerate this split: a regenerated split would not match the "
        f"published one.)\n{layout_hint(spec, root)}"
    )


def _fallback_folder(spec: DatasetSpec, ddir: str, root: str) -> Lists:
    image_dir = _require_dir(os.path.join(ddir, spec.image_dir), "image folder", spec, root)
    return split_by_folder(image_dir, ignored=spec.ignored, renames=spec.renames)


def _fallback_pets(spec: DatasetSpec, ddir: str, root: str) -> Lists:
    image_dir = _require_dir(os.path.join(ddir, "images"), "image folder", spec, root)

    def read(fname: str) -> list[Datum]:
        path = _require_file(os.path.join(ddir, "annotations", fname), "annotation file", spec, root)
        triples = []
        for line in _lines(path):
            imname, label, _species, _breed = line.split(" ")
            triples.append((os.path.join(image_dir, imname + ".jpg"), int(label) - 1, pets_classname(imname)))
        return make_records(triples, path)

    trainval, test = read("trainval.txt"), read("test.txt")
    train, val = split_trainval(trainval)
    return train, val, test


def _fallback_sun397(spec: DatasetSpec, ddir: str, root: str) -> Lists:
    image_dir = _require_dir(os.path.join(ddir, "SUN397"), "image folder", spec, root)
    names_file = _require_file(os.path.join(ddir, "ClassName.txt"), "class list", spec, root)
    cname2lab = {line[1:]: i for i, line in enumerate(_lines(names_file))}

    def read(fname: str) -> list[Datum]:
        path = _require_file(os.path.join(ddir, fname), "partition file", spec, root)
        triples = []
        for line in _lines(path):
            imname = line[1:]  # drop the leading "/"
            classpath = os.path.dirname(imname)
            if classpath not in cname2lab:
                raise DatasetLayoutError(f"{path}: class {classpath!r} of {line!r} is not listed in {names_file}")
            triples.append((os.path.join(image_dir, imname), cname2lab[classpath], sun397_classname(classpath)))
        return make_records(triples, path)

    trainval, test = read("Training_01.txt"), read("Testing_01.txt")
    train, val = split_trainval(trainval)
    return train, val, test


def _fallback_ucf101(spec: DatasetSpec, ddir: str, root: str) -> Lists:
    image_dir = _require_dir(os.path.join(ddir, "UCF-101-midframes"), "image folder", spec, root)
    list_dir = os.path.join(ddir, "ucfTrainTestlist")
    class_file = _require_file(os.path.join(list_dir, "classInd.txt"), "class list", spec, root)
    cname2lab = {}
    for line in _lines(class_file):
        label, action = line.split(" ")
        cname2lab[action] = int(label) - 1

    def read(fname: str) -> list[Datum]:
        path = _require_file(os.path.join(list_dir, fname), "split list", spec, root)
        triples = []
        for line in _lines(path):
            action, filename = line.split(" ")[0].split("/")
            if action not in cname2lab:
                raise DatasetLayoutError(f"{path}: action {action!r} is not listed in {class_file}")
            name = ucf101_classname(action)
            impath = os.path.join(image_dir, name, filename.replace(".avi", ".jpg"))
            triples.append((impath, cname2lab[action], name))
        return make_records(triples, path)

    trainval, test = read("trainlist01.txt"), read("testlist01.txt")
    train, val = split_trainval(trainval)
    return train, val, test


#: Splitters for a missing split file (`DatasetSpec.fallback`), from the raw files.
FALLBACKS: dict[str, Callable[[DatasetSpec, str, str], Lists]] = {
    "folder": _fallback_folder,
    "pets": _fallback_pets,
    "sun397": _fallback_sun397,
    "ucf101": _fallback_ucf101,
}


# --------------------------------------------------------------------------------------------
# FGVCAircraft (txt files, read every time)


def _read_fgvc(spec: DatasetSpec, ddir: str, root: str, _options: Options = None) -> Lists:
    image_dir = _require_dir(os.path.join(ddir, "images"), "image folder", spec, root)
    variants = _require_file(os.path.join(ddir, "variants.txt"), "class list", spec, root)
    inputs.note(variants)
    with open(variants, encoding="utf-8") as f:
        cname2lab = {line.strip(): i for i, line in enumerate(f)}

    def read(fname: str) -> list[Datum]:
        path = _require_file(os.path.join(ddir, fname), "split list", spec, root)
        triples = []
        for line in _lines(path):
            parts = line.split(" ")
            classname = " ".join(parts[1:])
            if classname not in cname2lab:
                raise DatasetLayoutError(f"{path}: variant {classname!r} of line {line!r} is not listed in {variants}")
            triples.append((os.path.join(image_dir, parts[0] + ".jpg"), cname2lab[classname], classname))
        return make_records(triples, path)

    return read("images_variant_train.txt"), read("images_variant_val.txt"), read("images_variant_test.txt")


# --------------------------------------------------------------------------------------------
# ImageNet and its variants


def read_imagenet_classnames(path: str) -> "OrderedDict[str, str]":
    """`classnames.txt`: `<wnid> <class name>` per line -> ordered mapping wnid -> name."""
    classnames: OrderedDict[str, str] = OrderedDict()
    for line in _lines(path):
        parts = line.split(" ")
        classnames[parts[0]] = " ".join(parts[1:])
    return classnames


def _read_classnames(spec: DatasetSpec, ddir: str, root: str) -> "OrderedDict[str, str]":
    return read_imagenet_classnames(_require_file(os.path.join(ddir, "classnames.txt"), "class-name file", spec, root))


def _lookup(classnames: "OrderedDict[str, str]", wnid: str, ddir: str, folder: str) -> str:
    if wnid not in classnames:
        raise DatasetLayoutError(
            f"Class folder {os.path.join(folder, wnid)} has no entry in {os.path.join(ddir, 'classnames.txt')} "
            f"(expected a line `{wnid} <class name>`)"
        )
    return classnames[wnid]


def _read_imagenet(spec: DatasetSpec, ddir: str, root: str, _options: Options = None) -> tuple[list[Datum], None, list[Datum]]:
    cache = os.path.join(ddir, "preprocessed.pkl")
    if os.path.isfile(cache):
        data = load_records(cache)
        if not isinstance(data, dict) or "train" not in data or "test" not in data:
            raise DatasetLayoutError(f'{cache}: expected a dict with "train" and "test" lists; delete it to rebuild')
        return _reroot_preprocessed(data, cache, ddir, spec.dataset_dir)
    classnames = _read_classnames(spec, ddir, root)
    image_dir = os.path.join(ddir, "images")
    lists = []
    for split in ("train", "val"):
        split_dir = _require_dir(os.path.join(image_dir, split), f"{split} image folder", spec, root)
        folders = sorted(f.name for f in os.scandir(split_dir) if f.is_dir())
        records = []
        for label, folder in enumerate(folders):
            name = _lookup(classnames, folder, ddir, split_dir)
            folder_dir = os.path.join(split_dir, folder)
            triples = ((os.path.join(folder_dir, im), label, name) for im in listdir_nohidden(folder_dir))
            records.extend(make_records(triples, folder_dir))
        lists.append(records)
    train, test = lists
    try:
        dump_records({"train": train, "test": test}, cache)
    except OSError as exc:
        print(f"Warning: cannot write {cache} ({exc}); the folders will be scanned again next time")
    return train, None, test


def _reroot_preprocessed(data: dict, cache: str, ddir: str, folder_name: str) -> tuple[list[Datum], None, list[Datum]]:
    """ImageNet's `preprocessed.pkl` after the data folder moved: map its absolute paths onto `ddir`.

    The old folder must be named like the dataset folder, the first record's dataset-relative path must
    exist under `ddir`, and so must a sample of the others; else the cache is refused (delete it to
    rebuild it from the image folders). The cache is rewritten with the current paths.
    """
    lists, old_dirs = {}, set()
    for key in ("train", "test"):
        found: list[str] = []

        def is_known(rel: str) -> bool:  # stat until the old folder is found; then a sample is checked below
            if not found and os.path.isfile(os.path.join(ddir, rel)):
                found.append(rel)
            return bool(found)

        records, old, unmapped = reroot(list(data[key]), ddir, is_known)
        bad = unmapped[:1]
        if old is not None and not bad:
            if os.path.basename(old) != folder_name:
                bad = [next(r for r in data[key] if not under(r.impath, ddir))]
            else:  # the first record's image exists under ddir; check a sample of the others
                bad = [r for r in records[:: max(1, len(records) // 20)] + records[-1:] if not os.path.isfile(r.impath)]
        if bad:
            bad = bad[0]
            raise CacheMismatchError(
                f'{cache} lists images that are not in {ddir} (e.g. "{bad.impath}"): it was written for another '
                f"ImageNet folder or the images changed. Delete {cache}; the next run rebuilds it from "
                f"{os.path.join(ddir, 'images')}."
            )
        lists[key] = records
        if old is not None and not same_folder(old, ddir):
            old_dirs.add(old)
    if old_dirs:
        print(f"Note: {cache} lists images under {', '.join(sorted(old_dirs))}; the data folder was moved or "
              f"copied to {ddir}, so its paths were mapped onto the current folder")
        try:
            dump_records({"train": lists["train"], "test": lists["test"]}, cache)
            print(f"Rewrote {cache} with the current paths")
        except OSError as exc:
            print(f"Warning: cannot rewrite {cache} ({exc}); its paths are mapped again next time")
    return lists["train"], None, lists["test"]


def _read_imagenetv2(spec: DatasetSpec, ddir: str, root: str, _options: Options = None) -> tuple[list[Datum], None, list[Datum]]:
    image_dir = _require_dir(os.path.join(ddir, spec.image_dir), "image folder", spec, root)
    names = list(_read_classnames(spec, ddir, root).values())
    data = []
    for label, name in enumerate(names):  # Dassl iterates 0..999; classnames.txt has 1000 lines
        class_dir = _require_dir(os.path.join(image_dir, str(label)), f"class folder of label {label}", spec, root)
        data.extend(make_records(((os.path.join(class_dir, im), label, name) for im in listdir_nohidden(class_dir)),
                                 class_dir))
    return data, None, data


def _read_wnid_folders(spec: DatasetSpec, ddir: str, root: str, _options: Options = None) -> tuple[list[Datum], None, list[Datum]]:
    image_dir = _require_dir(os.path.join(ddir, spec.image_dir), "image folder", spec, root)
    classnames = _read_classnames(spec, ddir, root)
    folders = [f for f in listdir_nohidden(image_dir, sort=True) if f not in spec.ignored]
    data = []
    for label, folder in enumerate(folders):
        class_dir = os.path.join(image_dir, folder)
        if not os.path.isdir(class_dir):
            raise DatasetLayoutError(f"{class_dir} is not a class folder; {image_dir} must hold only <wnid>/ folders")
        name = _lookup(classnames, folder, ddir, image_dir)
        data.extend(make_records(((os.path.join(class_dir, im), label, name) for im in listdir_nohidden(class_dir)),
                                 class_dir))
    return data, None, data


def _read_imagefolder(spec: DatasetSpec, ddir: str, root: str, options: Options = None) -> Lists:
    return read_imagefolder(spec, ddir, options)


#: One reader per on-disk layout (`DatasetSpec.kind`): (spec, dataset folder, ROOT, options) -> lists.
READERS: dict[str, Callable[[DatasetSpec, str, str, Options], tuple]] = {
    "json": _read_json,
    "fgvc": _read_fgvc,
    "imagenet": _read_imagenet,
    "imagenetv2": _read_imagenetv2,
    "wnid_folders": _read_wnid_folders,
    "imagefolder": _read_imagefolder,
}
