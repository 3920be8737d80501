"""The dataset table: folder names, split files, prefix folders and expected layouts (one row per dataset as CoOp lays it out on disk)."""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field

from .names import CALTECH_IGNORED, CALTECH_RENAMES, EUROSAT_RENAMES, IMAGENET_AR_IGNORED


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder, split file or image is missing or malformed (the message names the path)."""


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """How one dataset lies on disk.

    kind: `json` (split JSON + prefix folder), `fgvc` (txt files), `imagenet` (class folders +
    `preprocessed.pkl`), `imagenetv2` (numbered folders), `wnid_folders` (test-only wnid folders),
    `imagefolder` (a user's class folders; folder name from DATASET.IMAGEFOLDER.DIR, see `imagefolder.py`).
    prefix: folder (relative to DIR, "" = DIR) that JSON paths are relative to.
    fallback: splitter used when the JSON is missing (`folder`, `pets`, `sun397`, `ucf101`) or None.
    """

    name: str
    config: str
    dataset_dir: str
    kind: str
    image_dir: str
    layout: str
    split_file: str | None = None
    prefix: str | None = None
    fallback: str | None = None
    ignored: tuple[str, ...] = ()
    renames: dict[str, str] = field(default_factory=dict)
    num_classes: int | None = None

    @property
    def test_only(self) -> bool:
        return self.kind in ("imagenetv2", "wnid_folders")


_JSON_LAYOUT = "  {dir}/\n    {images}\n    {split}"

SPECS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec(
            "ImageNet", "imagenet", "imagenet", "imagenet", "images",
            "  imagenet/\n    images/train/<wnid>/<files>   (1000 class folders)\n"
            "    images/val/<wnid>/<files>     (same 1000 folders)\n"
            "    classnames.txt                (`<wnid> <class name>` per line)",
            num_classes=1000,
        ),
        DatasetSpec(
            "Caltech101", "caltech101", "caltech-101", "json", "101_ObjectCategories",
            _JSON_LAYOUT.format(dir="caltech-101", images="101_ObjectCategories/<category>/image_XXXX.jpg",
                                split="split_zhou_Caltech101.json"),
            split_file="split_zhou_Caltech101.json", prefix="101_ObjectCategories", fallback="folder",
            ignored=CALTECH_IGNORED, renames=CALTECH_RENAMES, num_classes=100,
        ),
        DatasetSpec(
            "OxfordPets", "oxford_pets", "oxford_pets", "json", "images",
            "  oxford_pets/\n    images/<Breed_Name>_<n>.jpg\n"
            "    annotations/trainval.txt, test.txt   (only used without the split file)\n"
            "    split_zhou_OxfordPets.json",
            split_file="split_zhou_OxfordPets.json", prefix="images", fallback="pets", num_classes=37,
        ),
        DatasetSpec(
            "StanfordCars", "stanford_cars", "stanford_cars", "json", "cars_train",
            "  stanford_cars/\n    cars_train/<00001>.jpg\n    cars_test/<00001>.jpg\n"
            "    split_zhou_StanfordCars.json      (paths like cars_train/00001.jpg)",
            split_file="split_zhou_StanfordCars.json", prefix="", num_classes=196,
        ),
        DatasetSpec(
            "OxfordFlowers", "oxford_flowers", "oxford_flowers", "json", "jpg",
            _JSON_LAYOUT.format(dir="oxford_flowers", images="jpg/image_00001.jpg ...",
                                split="split_zhou_OxfordFlowers.json"),
            split_file="split_zhou_OxfordFlowers.json", prefix="jpg", num_classes=102,
        ),
        DatasetSpec(
            "Food101", "food101", "food-101", "json", "images",
            _JSON_LAYOUT.format(dir="food-101", images="images/<class_name>/<id>.jpg",
                                split="split_zhou_Food101.json"),
            split_file="split_zhou_Food101.json", prefix="images", fallback="folder", num_classes=101,
        ),
        DatasetSpec(
            "FGVCAircraft", "fgvc_aircraft", "fgvc_aircraft", "fgvc", "images",
            "  fgvc_aircraft/          (the data/ folder of fgvc-aircraft-2013b, renamed)\n"
            "    images/<7-digit id>.jpg\n    variants.txt\n"
            "    images_variant_train.txt  images_variant_val.txt  images_variant_test.txt",
            num_classes=100,
        ),
        DatasetSpec(
            "SUN397", "sun397", "sun397", "json", "SUN397",
            "  sun397/\n    SUN397/<letter>/<class>[/<subclass>]/sun_*.jpg\n"
            "    ClassName.txt  Training_01.txt  Testing_01.txt   (only used without the split file)\n"
            "    split_zhou_SUN397.json",
            split_file="split_zhou_SUN397.json", prefix="SUN397", fallback="sun397", num_classes=397,
        ),
        DatasetSpec(
            "DescribableTextures", "dtd", "dtd", "json", "images",
            _JSON_LAYOUT.format(dir="dtd", images="images/<category>/<category>_XXXX.jpg",
                                split="split_zhou_DescribableTextures.json"),
            split_file="split_zhou_DescribableTextures.json", prefix="images", fallback="folder",
            num_classes=47,
        ),
        DatasetSpec(
            "EuroSAT", "eurosat", "eurosat", "json", "2750",
            _JSON_LAYOUT.format(dir="eurosat", images="2750/<ClassFolder>/<ClassFolder>_<n>.jpg",
                                split="split_zhou_EuroSAT.json"),
            split_file="split_zhou_EuroSAT.json", prefix="2750", fallback="folder",
            renames=EUROSAT_RENAMES, num_classes=10,
        ),
        DatasetSpec(
            "UCF101", "ucf101", "ucf101", "json", "UCF-101-midframes",
            "  ucf101/\n    UCF-101-midframes/<Action_Name>/v_<Action>_gXX_cYY.jpg\n"
            "    ucfTrainTestlist/classInd.txt trainlist01.txt testlist01.txt   (only used without the split file)\n"
            "    split_zhou_UCF101.json",
            split_file="split_zhou_UCF101.json", prefix="UCF-101-midframes", fallback="ucf101",
            num_classes=101,
        ),
        DatasetSpec(
            "ImageNetV2", "imagenetv2", "imagenetv2", "imagenetv2",
            "imagenetv2-matched-frequency-format-val",
            "  imagenetv2/\n    imagenetv2-matched-frequency-format-val/0/ ... /999/\n"
            "    classnames.txt      (copy of imagenet/classnames.txt)",
            num_classes=1000,
        ),
        DatasetSpec(
            "ImageNetSketch", "imagenet_sketch", "imagenet-sketch", "wnid_folders", "images",
            "  imagenet-sketch/\n    images/<wnid>/...   (1000 folders; the download's sketch/ renamed)\n"
            "    classnames.txt      (copy of imagenet/classnames.txt)",
            num_classes=1000,
        ),
        DatasetSpec(
            "ImageNetA", "imagenet_a", "imagenet-adversarial", "wnid_folders", "imagenet-a",
            "  imagenet-adversarial/\n    imagenet-a/<wnid>/...   (200 folders)\n"
            "    classnames.txt      (copy of imagenet/classnames.txt)",
            ignored=IMAGENET_AR_IGNORED, num_classes=200,
        ),
        DatasetSpec(
            "ImageNetR", "imagenet_r", "imagenet-rendition", "wnid_folders", "imagenet-r",
            "  imagenet-rendition/\n    imagenet-r/<wnid>/...   (200 folders)\n"
            "    classnames.txt      (copy of imagenet/classnames.txt)",
            ignored=IMAGENET_AR_IGNORED, num_classes=200,
        ),
        DatasetSpec(
            "PrometarWorld", "prometar_world", "prometar_world", "json", "images",
            _JSON_LAYOUT.format(dir="prometar_world", images="images/<class>/<file>",
                                split="split_zhou_PrometarWorld.json"),
            split_file="split_zhou_PrometarWorld.json", prefix="images", fallback="folder",
        ),
        DatasetSpec(
            "ImageFolder", "imagefolder", "imagefolder", "imagefolder", "",
            "  imagefolder/           (the folder name is DATASET.IMAGEFOLDER.DIR)\n"
            "    <class folder>/*.jpg|*.jpeg|*.png   (one folder per class)\n"
            "    classnames.txt      (optional: `<folder> <class name>` per line)\n"
            "    split_prometar_ImageFolder.json   (written by the first run from DATASET.IMAGEFOLDER.SPLIT_SEED)",
            split_file="split_prometar_ImageFolder.json", prefix="",
        ),
    ]
}

_ALIASES = {s.config: s.name for s in SPECS.values()}


def resolve_name(name: str, *, aliases: bool = False) -> str:
    """Return the registered dataset name; with `aliases`, also accept config names (`eurosat`)."""
    if name in SPECS:
        return name
    if aliases:
        for key in (name, name.lower(), name.lower().replace("-", "_")):
            if key in _ALIASES:
                return _ALIASES[key]
        lowered = {n.lower(): n for n in SPECS}
        if name.lower() in lowered:
            return lowered[name.lower()]
    hint = ""
    if name in _ALIASES:
        hint = f" (the config file {name}.yaml sets DATASET.NAME {_ALIASES[name]})"
    else:
        close = difflib.get_close_matches(name, list(SPECS) + list(_ALIASES), n=1)
        if close:
            hint = f" (did you mean {_ALIASES.get(close[0], close[0])}?)"
    raise KeyError(f"Unknown dataset name {name!r}{hint}; expected one of: {', '.join(SPECS)}")


def get_spec(name: str) -> DatasetSpec:
    """The `DatasetSpec` of a registered dataset name (KeyError naming the choices otherwise)."""
    return SPECS[resolve_name(name)]


def resolve_root(root: str) -> str:
    """Dassl's ROOT resolution: expand `~`, then make absolute ("" = current directory)."""
    return os.path.abspath(os.path.expanduser(root))


def layout_hint(spec: DatasetSpec, root: str) -> str:
    """Multi-line text: the expected layout under ROOT and how to get the data."""
    return (
        f"Expected layout under DATASET.ROOT={root}:\n{spec.layout}\n"
        f"To get it: `prometar data {spec.name} --root {root}` (downloads what can be downloaded and "
        f"prints the rest); `prometar data --check --root {root}` lists what is missing."
    )


def missing_path_error(what: str, path: str, spec: DatasetSpec, root: str) -> DatasetLayoutError:
    """Error for a missing folder/file of a dataset, naming the path and the expected layout."""
    return DatasetLayoutError(f"{spec.name}: {what} not found: {path}\n{layout_hint(spec, root)}")
