"""Miniature datasets in the real on-disk layouts, for the tests (tiny images, real split-file schemas).

Test-only: the package never needs it at run time (`prometar demo` generates its benchmark with
`prometar.world`), so it lives here and is imported by the tests as `fake_data`.

`make_fake_dataset(name, root)` writes `root/<dataset_dir>/` for any dataset of the table, with
class names that exercise each reader's rules (Caltech renames and ignored folders, EuroSAT renames,
SUN397 reversal, UCF101 CamelCase, FGVCAircraft names with spaces and '/', ...). List order in split
files is shuffled (seeded) so that first-appearance order differs from label order.
"""
from __future__ import annotations

import json
import os
import random
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from prometar.data.names import (
    CALTECH_IGNORED,
    CALTECH_RENAMES,
    EUROSAT_RENAMES,
    pets_classname,
    sun397_classname,
    ucf101_classname,
)
from prometar.data.specs import get_spec

def cars_classname(devkit_name: str) -> str:
    """StanfordCars: CoOp's split file has the devkit's names with the trailing year moved to the front
    (`AM General Hummer SUV 2000` -> `2000 AM General Hummer SUV`)."""
    parts = devkit_name.split(" ")
    return " ".join([parts[-1]] + parts[:-1])


POOLS: dict[str, list[str]] = {
    "Caltech101": ["Faces", "Leopards", "Motorbikes", "accordion", "airplanes", "anchor", "yin_yang", "ant",
                   "barrel", "bass"],
    "OxfordPets": ["Abyssinian", "american_bulldog", "american_pit_bull_terrier", "Bengal", "great_pyrenees",
                   "Siamese", "yorkshire_terrier", "Birman"],
    "StanfordCars": ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Aston Martin V8 Vantage Convertible 2012",
                     "BMW M3 Coupe 2012", "Chevrolet Corvette ZR1 2012", "Ford F-150 Regular Cab 2007"],
    "OxfordFlowers": ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea",
                      "english marigold", "tiger lily"],
    "Food101": ["apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "bibimbap", "cheesecake"],
    "FGVCAircraft": ["707-320", "A300B4", "Boeing 717", "Cessna 172", "F-16A/B", "DHC-1", "MD-11", "Tu-154"],
    "SUN397": ["a/abbey", "a/apartment_building/outdoor", "b/bakery/shop", "b/bamboo_forest", "c/campus",
               "d/dining_room", "f/forest/broadleaf"],
    "DescribableTextures": ["banded", "blotchy", "braided", "bubbly", "polka-dotted", "zigzagged"],
    "EuroSAT": sorted(EUROSAT_RENAMES),
    "UCF101": ["ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling", "YoYo", "JumpingJack"],
    "PrometarWorld": ["circle", "square", "triangle", "star", "cross", "ring"],
    "ImageFolder": ["golden_retriever", "tabby_cat", "Red_Fox", "barn_owl", "sea_turtle", "koi"],
    "ImageNet": ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark", "electric ray"],
}


def _pool(name: str, n: int) -> list[str]:
    base = POOLS.get(name, POOLS["ImageNet"])
    extra = []
    for i in range(len(base), n):  # beyond the pool: synthetic names in the dataset's style
        extra.append({"SUN397": f"z/zone_{i}", "UCF101": f"ActionNumber{chr(65 + i % 26)}{i}",
                      "StanfordCars": f"Make Model{i} Sedan 2010", "EuroSAT": f"Zone{i}",
                      "Caltech101": f"category_{i}", "OxfordPets": f"breed_{i}"}.get(name, f"class_{i}"))
    return (list(base) + extra)[:n]


def _counts(n_classes: int, n_per_class: int | Sequence[int]) -> list[int]:
    counts = [n_per_class] * n_classes if isinstance(n_per_class, int) else list(n_per_class)
    if len(counts) != n_classes or min(counts) < 3:
        raise ValueError(f"n_per_class must be >= 3 per class (one list of {n_classes} counts or an int), got {n_per_class}")
    return counts


def _parts(n: int) -> list[str]:
    n_val, n_test = max(1, round(0.2 * n)), max(1, round(0.3 * n))
    return ["train"] * (n - n_val - n_test) + ["val"] * n_val + ["test"] * n_test


class _Writer:
    """Writes tiny random images (format from the extension) and text files."""

    def __init__(self, seed: int, image_size: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.size = image_size

    def image(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        h = self.size + int(self.rng.integers(0, 3))  # slightly non-square images
        arr = self.rng.integers(0, 256, size=(h, self.size, 3), dtype=np.uint8)
        ext = os.path.splitext(path)[1].lower()
        Image.fromarray(arr).save(path, format="PNG" if ext == ".png" else "JPEG")

    @staticmethod
    def text(path: str, lines: Sequence[str]) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))


def make_fake_dataset(
    name: str,
    root: str,
    n_classes: int = 4,
    n_per_class: int | Sequence[int] = 5,
    seed: int = 0,
    image_size: int = 8,
) -> str:
    """Write a tiny complete dataset `name` under `root`; returns the dataset folder.

    n_per_class: images per class (>= 3 so each split part is non-empty), an int or one count per class.
    For ImageNet it is the train count (val gets max(1, n // 2)); for the test-only variants, the count.
    """
    spec = get_spec(name)
    ddir = os.path.join(os.path.abspath(root), spec.dataset_dir)
    os.makedirs(ddir, exist_ok=True)
    writer = _Writer(seed, image_size)
    rng = random.Random(seed)
    counts = _counts(n_classes, n_per_class)
    if spec.kind == "json":  # a JSON-split dataset with no maker of its own gets class folders under its prefix
        make = _JSON_MAKERS.get(spec.name) or _make_folder_json(spec.name, spec.prefix or "", lambda f: f,
                                                                lambda f, j: f"{f}_{j:04d}.jpg")
        make(ddir, writer, rng, counts)
    else:
        _OTHER_MAKERS[spec.kind](spec.name, ddir, writer, rng, counts)
    return ddir


# --------------------------------------------------------------------------------------------
# JSON-split datasets: each maker yields per class (label, stored classname, [(relpath, part), ...])


def _write_json_split(ddir: str, split_file: str, prefix: str, writer: _Writer, rng: random.Random,
                      classes: list[tuple[int, str, list[tuple[str, str]]]]) -> dict[str, list]:
    split: dict[str, list] = {"train": [], "val": [], "test": []}
    for label, cname, files in classes:
        for rel, part in files:
            writer.image(os.path.join(prefix, rel))
            split[part].append([rel, label, cname])
    for part in split.values():
        rng.shuffle(part)
    with open(os.path.join(ddir, split_file), "w", encoding="utf-8") as f:
        json.dump(split, f, indent=4, separators=(",", ": "))
    return split


def _folder_classes(names: list[str], counts: list[int], rename: Callable[[str], str],
                    filename: Callable[[str, int], str]) -> list:
    order = sorted(names)  # the folder splitter's label order (code points: upper case first)
    classes = []
    for label, folder in enumerate(order):
        n = counts[label]
        classes.append((label, rename(folder), [(f"{folder}/{filename(folder, j)}", p) for j, p in enumerate(_parts(n))]))
    return classes


def _make_folder_json(dataset: str, prefix_dir: str, rename: Callable[[str], str],
                      filename: Callable[[str, int], str]) -> Callable:
    def make(ddir: str, writer: _Writer, rng: random.Random, counts: list[int]) -> None:
        spec = get_spec(dataset)
        names = _pool(dataset, len(counts))
        classes = _folder_classes(names, counts, rename, filename)
        prefix = os.path.join(ddir, prefix_dir)
        _write_json_split(ddir, spec.split_file, prefix, writer, rng, classes)
        if dataset == "Caltech101":  # ignored folders exist on disk but are never classes
            for folder in CALTECH_IGNORED:
                for j in range(2):
                    writer.image(os.path.join(prefix, folder, f"image_{j + 1:04d}.jpg"))
    return make


def _make_pets(ddir: str, writer: _Writer, rng: random.Random, counts: list[int]) -> None:
    breeds = sorted(_pool("OxfordPets", len(counts)), key=str.lower)
    classes, trainval, test = [], [], []
    for label, breed in enumerate(breeds):
        files = []
        for j, part in enumerate(_parts(counts[label])):
            stem = f"{breed}_{j + 100}"
            files.append((f"{stem}.jpg", part))
            species = 1 if breed[0].isupper() else 2  # cats are capitalised in Oxford-IIIT Pets
            (test if part == "test" else trainval).append(f"{stem} {label + 1} {species} {label + 1}")
        classes.append((label, pets_classname(f"{breed}_1"), files))
    _write_json_split(ddir, "split_zhou_OxfordPets.json", os.path.join(ddir, "images"), writer, rng, classes)
    writer.text(os.path.join(ddir, "annotations", "trainval.txt"), trainval)
    writer.text(os.path.join(ddir, "annotations", "test.txt"), test)


def _make_cars(ddir: str, writer: _Writer, rng: random.Random, counts: list[int]) -> None:
    names = _pool("StanfordCars", len(counts))
    classes, k = [], {"cars_train": 0, "cars_test": 0}
    for label, raw in enumerate(names):
        files = []
        for part in _parts(counts[label]):
            folder = "cars_test" if part == "test" else "cars_train"
            k[folder] += 1
            files.append((f"{folder}/{k[folder]:05d}.jpg", part))  # relative to DIR itself
        classes.append((label, cars_classname(raw), files))
    _write_json_split(ddir, "split_zhou_StanfordCars.json", ddir, writer, rng, classes)
    os.makedirs(os.path.join(ddir, "devkit"), exist_ok=True)


def _make_flowers(ddir: str, writer: _Writer, rng: random.Random, counts: list[int]) -> None:
    names = _pool("OxfordFlowers", len(counts))
    classes, k = [], 0
    for label, cname in enumerate(names):
        files = []
        for part in _parts(counts[label]):
            k += 1
            files.append((f"image_{k:05d}.jpg", part))
        classes.append((label, cname, files))
    _write_json_split(ddir, "split_zhou_OxfordFlowers.json", os.path.join(ddir, "jpg"), writer, rng, classes)
    with open(os.path.join(ddir, "cat_to_name.json"), "w", encoding="utf-8") as f:
        json.dump({str(i + 1): n for i, n in enumerate(names)}, f)


def _make_sun397(ddir: str, writer: _Writer, rng: random.Random, counts: list[int]) -> None:
    paths = sorted(_pool("SUN397", len(counts)))
    classes, training, testing = [], [], []
    for label, cpath in enumerate(paths):
        files = []
        for j, part in enumerate(_parts(counts[label])):
            rel = f"{cpath}/sun_{label:03d}{j:04d}abc.jpg"
            files.append((rel, part))
            (testing if part == "test" else training).append("/" + rel)
        classes.append((label, sun397_classname(cpath), files))
    _write_json_split(ddir, "split_zhou_SUN397.json", os.path.join(ddir, "SUN397"), writer, rng, classes)
    writer.text(os.path.join(ddir, "ClassName.txt"), ["/" + p for p in paths])
    writer.text(os.path.join(ddir, "Training_01.txt"), training)
    writer.text(os.path.join(ddir, "Testing_01.txt"), testing)


def _make_ucf101(ddir: str, writer: _Writer, rng: random.Random, counts: list[int]) -> None:
    actions = sorted(_pool("UCF101", len(counts)))
    classes, trainlist, testlist = [], [], []
    for label, action in enumerate(actions):
        folder, files = ucf101_classname(action), []
        for j, part in enumerate(_parts(counts[label])):
            video = f"v_{action}_g{j + 8:02d}_c01"
            files.append((f"{folder}/{video}.jpg", part))
            if part == "test":
                testlist.append(f"{action}/{video}.avi")
            else:
                trainlist.append(f"{action}/{video}.avi {label + 1}")
        classes.append((label, folder, files))
    _write_json_split(ddir, "split_zhou_UCF101.json", os.path.join(ddir, "UCF-101-midframes"), writer, rng, classes)
    lists = os.path.join(ddir, "ucfTrainTestlist")
    writer.text(os.path.join(lists, "classInd.txt"), [f"{i + 1} {a}" for i, a in enumerate(actions)])
    writer.text(os.path.join(lists, "trainlist01.txt"), trainlist)
    writer.text(os.path.join(lists, "testlist01.txt"), testlist)


_JSON_MAKERS: dict[str, Callable] = {
    "Caltech101": _make_folder_json("Caltech101", "101_ObjectCategories", lambda f: CALTECH_RENAMES.get(f, f),
                                    lambda f, j: f"image_{j + 1:04d}.jpg"),
    "Food101": _make_folder_json("Food101", "images", lambda f: f, lambda f, j: f"{100000 + 37 * j}.jpg"),
    "DescribableTextures": _make_folder_json("DescribableTextures", "images", lambda f: f,
                                             lambda f, j: f"{f}_{j + 1:04d}.jpg"),
    "EuroSAT": _make_folder_json("EuroSAT", "2750", lambda f: EUROSAT_RENAMES.get(f, f), lambda f, j: f"{f}_{j + 1}.jpg"),
    "PrometarWorld": _make_folder_json("PrometarWorld", "images", lambda f: f, lambda f, j: f"{f}_{j:03d}.png"),
    "OxfordPets": _make_pets,
    "StanfordCars": _make_cars,
    "OxfordFlowers": _make_flowers,
    "SUN397": _make_sun397,
    "UCF101": _make_ucf101,
}


# --------------------------------------------------------------------------------------------
# FGVCAircraft and the ImageNet family


def _make_fgvc(name: str, ddir: str, writer: _Writer, rng: random.Random, counts: list[int]) -> None:
    variants = _pool("FGVCAircraft", len(counts))
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    k = 1000000
    for label, variant in enumerate(variants):
        for part in _parts(counts[label]):
            k += 7
            writer.image(os.path.join(ddir, "images", f"{k:07d}.jpg"))
            lines[part].append(f"{k:07d} {variant}")
    writer.text(os.path.join(ddir, "variants.txt"), variants)
    for part, part_lines in lines.items():
        rng.shuffle(part_lines)
        writer.text(os.path.join(ddir, f"images_variant_{part}.txt"), part_lines)


def _wnids(n: int) -> list[tuple[str, str]]:
    names = _pool("ImageNet", n)
    return [(f"n{1440764 + 1013 * i:08d}", names[i]) for i in range(n)]


def _make_imagenet(name: str, ddir: str, writer: _Writer, rng: random.Random, counts: list[int]) -> None:
    classes = _wnids(len(counts) + 1)  # one line more than folders, as in the variants' copies
    writer.text(os.path.join(ddir, "classnames.txt"), [f"{w} {c}" for w, c in classes])
    k = 0
    for (wnid, _), n in zip(classes, counts):
        for j in range(n):
            writer.image(os.path.join(ddir, "images", "train", wnid, f"{wnid}_{j + 1}.JPEG"))
        for _ in range(max(1, n // 2)):
            k += 1
            writer.image(os.path.join(ddir, "images", "val", wnid, f"ILSVRC2012_val_{k:08d}.JPEG"))


def _make_imagenetv2(name: str, ddir: str, writer: _Writer, rng: random.Random, counts: list[int]) -> None:
    classes = _wnids(len(counts))
    writer.text(os.path.join(ddir, "classnames.txt"), [f"{w} {c}" for w, c in classes])
    image_dir = os.path.join(ddir, get_spec(name).image_dir)
    for label, n in enumerate(counts):
        for j in range(n):
            writer.image(os.path.join(image_dir, str(label), f"{rng.getrandbits(64):016x}.jpeg"))


def _make_wnid_folders(name: str, ddir: str, writer: _Writer, rng: random.Random, counts: list[int]) -> None:
    spec = get_spec(name)
    classes = _wnids(2 * len(counts))
    writer.text(os.path.join(ddir, "classnames.txt"), [f"{w} {c}" for w, c in classes])
    image_dir = os.path.join(ddir, spec.image_dir)
    used = classes[1::2] if spec.ignored else classes[: len(counts)]  # A/R: a subset of the 1000 classes
    for (wnid, _), n in zip(used, counts):
        for j in range(n):
            writer.image(os.path.join(image_dir, wnid, f"{j:04d}.jpg"))
    for entry in spec.ignored:  # README.txt inside imagenet-a/ and imagenet-r/
        writer.text(os.path.join(image_dir, entry), [f"{name} README"])


def _make_imagefolder(name: str, ddir: str, writer: _Writer, rng: random.Random, counts: list[int]) -> None:
    """Class folders only (the reader draws and saves the split); .png/.jpg/.jpeg mixed, plus one non-image file."""
    exts = (".png", ".jpg", ".jpeg", ".PNG")
    for label, (folder, n) in enumerate(zip(_pool(name, len(counts)), counts)):
        for j in range(n):
            writer.image(os.path.join(ddir, folder, f"img_{j:03d}{exts[(label + j) % len(exts)]}"))
    writer.text(os.path.join(ddir, _pool(name, 1)[0], "notes.txt"), ["not an image"])


_OTHER_MAKERS: dict[str, Callable] = {
    "imagefolder": _make_imagefolder,
    "fgvc": _make_fgvc,
    "imagenet": _make_imagenet,
    "imagenetv2": _make_imagenetv2,
    "wnid_folders": _make_wnid_folders,
}
