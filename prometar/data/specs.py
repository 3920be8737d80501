"""The dataset table: every fact about a dataset in one entry (`SPECS`).

An entry names the dataset (the Dassl class name, `DATASET.NAME`) and its config name (the
`configs/datasets/<config>.yaml` and `datasets/<config>.py` files, both derived from the table by
`python -m prometar.data.coop_files`), where it lies on disk, where its class names come from, its split
file, how to download it and which protocols use it. What is derived from the table: the built-in dataset
classes (`prometar.data.datasets.DATASETS`), the Dassl classes (`prometar.dassl.datasets`), the CoOp-style
files, `prometar data` (download, check, `--list`), the sweep's dataset lists and the report's order.

Adding a dataset: one `DatasetSpec` below, then `python -m prometar.data.coop_files` to write its two
files; a new on-disk layout (`kind`) also needs one reader in `readers.READERS` and one check in
`check.CHECKS`. `tests/test_dataset_table.py` checks that every entry has all of its parts.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field

from .names import CALTECH_IGNORED, CALTECH_RENAMES, EUROSAT_RENAMES, IMAGENET_AR_IGNORED
from .sources import Fetch, archive, coop_split, imagenet_classnames


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder, split file or image is missing or malformed (the message names the path)."""


#: Protocols a dataset can belong to: `base2new` (train on the base classes, test on the new ones), `xd`
#: (cross-dataset: a target of the model trained on ImageNet), `dg` (domain generalisation: an ImageNet variant
#: the ImageNet model is evaluated on; same classes, other images) and `fewshot` (CoOp's few-shot protocol: all
#: classes, K shots, the full test split).
PROTOCOLS = ("base2new", "xd", "dg", "fewshot")


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """One dataset: everything the readers, checks, downloads, Dassl classes and scripts need.

    name: Dassl class name and `DATASET.NAME`. config: config name (`configs/datasets/<config>.yaml`,
    `datasets/<config>.py`, the scripts' and sweep's dataset argument, output folders).
    dataset_dir: folder under DATASET.ROOT. kind: on-disk layout, one reader and one check per kind:
    `json` (split JSON + prefix folder), `fgvc` (txt files), `imagenet` (class folders +
    `preprocessed.pkl`), `imagenetv2` (numbered folders), `wnid_folders` (test-only wnid folders),
    `imagefolder` (a user's class folders; folder name from DATASET.IMAGEFOLDER.DIR, see `imagefolder.py`).
    image_dir: the image folder (relative to dataset_dir). layout: the expected layout, for messages.
    classnames: where the class names come from, in a few words (`prometar data --list`).
    split_file: the split file in dataset_dir. prefix: folder (relative to dataset_dir, "" = itself) that
    the split file's paths are relative to. fallback: splitter used when the split file is missing
    (`folder`, `pets`, `sun397`, `ucf101`) or None. ignored / renames: folders that are not classes,
    folder -> class name. num_classes: classes of the full dataset (None: depends on the data).
    sources: the files `prometar data` downloads; manual: steps that cannot be automated (printed by
    `prometar data`). display: the name tables and plots show. protocols: subset of `PROTOCOLS`.
    """

    name: str
    config: str
    dataset_dir: str
    kind: str
    image_dir: str
    layout: str
    classnames: str
    split_file: str | None = None
    prefix: str | None = None
    fallback: str | None = None
    ignored: tuple[str, ...] = ()
    renames: dict[str, str] = field(default_factory=dict)
    num_classes: int | None = None
    sources: tuple[Fetch, ...] = ()
    manual: str | None = None
    display: str = ""
    protocols: tuple[str, ...] = ()

    @property
    def test_only(self) -> bool:
        return self.kind in ("imagenetv2", "wnid_folders")

    @property
    def label(self) -> str:
        """The name shown in tables (`display`, else `name`)."""
        return self.display or self.name


_JSON_LAYOUT = "  {dir}/\n    {images}\n    {split}"
_OX = "https://www.robots.ox.ac.uk/~vgg/data"
_CARS = "http://ai.stanford.edu/~jkrause"
_HENDRYCKS = "https://people.eecs.berkeley.edu/~hendrycks"
_FROM_SPLIT = "split file"  # the third field of each entry
_FROM_CLASSNAMES = "classnames.txt"  # `<wnid> <class name>` lines, CoOp's copy of ImageNet's
_B2N, _DG, _BOTH = ("base2new", "fewshot"), ("dg",), ("base2new", "xd", "fewshot")

SPECS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec(
            "ImageNet", "imagenet", "imagenet", "imagenet", "images",
            "  imagenet/\n    images/train/<wnid>/<files>   (1000 class folders)\n"
            "    images/val/<wnid>/<files>     (same 1000 folders)\n"
            "    classnames.txt                (`<wnid> <class name>` per line)",
            _FROM_CLASSNAMES, num_classes=1000,
            sources=(imagenet_classnames("imagenet"),),
            manual=(
                "Download ILSVRC2012 train and val from https://image-net.org (an account is needed) and unpack\n"
                "them into imagenet/images/train/<wnid>/ and imagenet/images/val/<wnid>/ (the val images must be\n"
                "sorted into the same 1000 wnid folders as train)."
            ),
            protocols=_B2N,  # and the source of the xd and dg protocols
        ),
        DatasetSpec(
            "Caltech101", "caltech101", "caltech-101", "json", "101_ObjectCategories",
            _JSON_LAYOUT.format(dir="caltech-101", images="101_ObjectCategories/<category>/image_XXXX.jpg",
                                split="split_zhou_Caltech101.json"),
            _FROM_SPLIT + "; else folders (2 skipped, 4 renamed)",
            split_file="split_zhou_Caltech101.json", prefix="101_ObjectCategories", fallback="folder",
            ignored=CALTECH_IGNORED, renames=CALTECH_RENAMES, num_classes=100,
            sources=(
                archive("Caltech101 images",
                        "http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz",
                        "101_ObjectCategories.tar.gz", "caltech-101/101_ObjectCategories",
                        ("101_ObjectCategories", "caltech-101/101_ObjectCategories")),
                coop_split("caltech-101", "Caltech101", "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"),
            ),
            protocols=_BOTH,
        ),
        DatasetSpec(
            "OxfordPets", "oxford_pets", "oxford_pets", "json", "images",
            "  oxford_pets/\n    images/<Breed_Name>_<n>.jpg\n"
            "    annotations/trainval.txt, test.txt   (only used without the split file)\n"
            "    split_zhou_OxfordPets.json",
            _FROM_SPLIT + "; else image file names",
            split_file="split_zhou_OxfordPets.json", prefix="images", fallback="pets", num_classes=37,
            sources=(
                archive("Oxford-IIIT Pets images", f"{_OX}/pets/data/images.tar.gz", "pets_images.tar.gz",
                        "oxford_pets/images", ("images", "oxford_pets/images")),
                archive("Oxford-IIIT Pets annotations", f"{_OX}/pets/data/annotations.tar.gz",
                        "pets_annotations.tar.gz", "oxford_pets/annotations",
                        ("annotations", "oxford_pets/annotations"), optional=True),
                coop_split("oxford_pets", "OxfordPets", "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"),
            ),
            protocols=_BOTH,
        ),
        DatasetSpec(
            "StanfordCars", "stanford_cars", "stanford_cars", "json", "cars_train",
            "  stanford_cars/\n    cars_train/<00001>.jpg\n    cars_test/<00001>.jpg\n"
            "    split_zhou_StanfordCars.json      (paths like cars_train/00001.jpg)",
            _FROM_SPLIT + " (devkit names, year first)",
            split_file="split_zhou_StanfordCars.json", prefix="", num_classes=196,
            sources=(
                archive("Stanford Cars train images", f"{_CARS}/car196/cars_train.tgz", "cars_train.tgz",
                        "stanford_cars/cars_train", ("cars_train", "stanford_cars/cars_train")),
                archive("Stanford Cars test images", f"{_CARS}/car196/cars_test.tgz", "cars_test.tgz",
                        "stanford_cars/cars_test", ("cars_test", "stanford_cars/cars_test")),
                archive("Stanford Cars devkit", "https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz",
                        "car_devkit.tgz", "stanford_cars/devkit", ("devkit", "stanford_cars/devkit"),
                        optional=True),
                Fetch("Stanford Cars test labels", "stanford_cars/cars_test_annos_withlabels.mat",
                      "stanford_cars/cars_test_annos_withlabels.mat",
                      url=f"{_CARS}/car196/cars_test_annos_withlabels.mat", optional=True),
                coop_split("stanford_cars", "StanfordCars", "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"),
            ),
            protocols=_BOTH,
        ),
        DatasetSpec(
            "OxfordFlowers", "oxford_flowers", "oxford_flowers", "json", "jpg",
            _JSON_LAYOUT.format(dir="oxford_flowers", images="jpg/image_00001.jpg ...",
                                split="split_zhou_OxfordFlowers.json"),
            _FROM_SPLIT + " (CoOp's cat_to_name.json)",
            split_file="split_zhou_OxfordFlowers.json", prefix="jpg", num_classes=102,
            sources=(
                archive("Flowers102 images", f"{_OX}/flowers/102/102flowers.tgz", "102flowers.tgz",
                        "oxford_flowers/jpg", ("jpg", "oxford_flowers/jpg")),
                Fetch("Flowers102 labels", "oxford_flowers/imagelabels.mat", "oxford_flowers/imagelabels.mat",
                      url=f"{_OX}/flowers/102/imagelabels.mat", optional=True),
                Fetch("Flowers102 class names (CoOp cat_to_name.json)", "oxford_flowers/cat_to_name.json",
                      "oxford_flowers/cat_to_name.json", drive_id="1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0",
                      optional=True),
                coop_split("oxford_flowers", "OxfordFlowers", "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"),
            ),
            display="Flowers102", protocols=_BOTH,
        ),
        DatasetSpec(
            "Food101", "food101", "food-101", "json", "images",
            _JSON_LAYOUT.format(dir="food-101", images="images/<class_name>/<id>.jpg",
                                split="split_zhou_Food101.json"),
            _FROM_SPLIT + "; else folders",
            split_file="split_zhou_Food101.json", prefix="images", fallback="folder", num_classes=101,
            sources=(
                archive("Food-101", "http://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/food-101.tar.gz",
                        "food-101.tar.gz", "food-101/images", ("food-101", "food-101")),
                coop_split("food-101", "Food101", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"),
            ),
            protocols=_BOTH,
        ),
        DatasetSpec(
            "FGVCAircraft", "fgvc_aircraft", "fgvc_aircraft", "fgvc", "images",
            "  fgvc_aircraft/          (the data/ folder of fgvc-aircraft-2013b, renamed)\n"
            "    images/<7-digit id>.jpg\n    variants.txt\n"
            "    images_variant_train.txt  images_variant_val.txt  images_variant_test.txt",
            "variants.txt (label = line)",
            num_classes=100,
            sources=(
                archive("FGVC-Aircraft 2013b", f"{_OX}/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
                        "fgvc-aircraft-2013b.tar.gz", "fgvc_aircraft/images",
                        ("fgvc-aircraft-2013b/data", "fgvc_aircraft")),
            ),
            protocols=_BOTH,
        ),
        DatasetSpec(
            "SUN397", "sun397", "sun397", "json", "SUN397",
            "  sun397/\n    SUN397/<letter>/<class>[/<subclass>]/sun_*.jpg\n"
            "    ClassName.txt  Training_01.txt  Testing_01.txt   (only used without the split file)\n"
            "    split_zhou_SUN397.json",
            _FROM_SPLIT + "; else ClassName.txt (reversed)",
            split_file="split_zhou_SUN397.json", prefix="SUN397", fallback="sun397", num_classes=397,
            sources=(
                archive("SUN397 images", "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
                        "SUN397.tar.gz", "sun397/SUN397", ("SUN397", "sun397/SUN397")),
                archive("SUN397 partitions", "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip",
                        "Partitions.zip", "sun397/ClassName.txt", ("", "sun397"), optional=True),
                coop_split("sun397", "SUN397", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"),
            ),
            protocols=_BOTH,
        ),
        DatasetSpec(
            "DescribableTextures", "dtd", "dtd", "json", "images",
            _JSON_LAYOUT.format(dir="dtd", images="images/<category>/<category>_XXXX.jpg",
                                split="split_zhou_DescribableTextures.json"),
            _FROM_SPLIT + "; else folders",
            split_file="split_zhou_DescribableTextures.json", prefix="images", fallback="folder",
            num_classes=47,
            sources=(
                archive("DTD", f"{_OX}/dtd/download/dtd-r1.0.1.tar.gz", "dtd-r1.0.1.tar.gz",
                        "dtd/images", ("dtd", "dtd")),
                coop_split("dtd", "DescribableTextures", "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"),
            ),
            display="DTD", protocols=_BOTH,
        ),
        DatasetSpec(
            "EuroSAT", "eurosat", "eurosat", "json", "2750",
            _JSON_LAYOUT.format(dir="eurosat", images="2750/<ClassFolder>/<ClassFolder>_<n>.jpg",
                                split="split_zhou_EuroSAT.json"),
            _FROM_SPLIT + "; else folders (CoOp's renames)",
            split_file="split_zhou_EuroSAT.json", prefix="2750", fallback="folder",
            renames=EUROSAT_RENAMES, num_classes=10,
            sources=(
                archive("EuroSAT (RGB)", "http://madm.dfki.de/files/sentinel/EuroSAT.zip", "EuroSAT.zip",
                        "eurosat/2750", ("2750", "eurosat/2750")),
                coop_split("eurosat", "EuroSAT", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"),
            ),
            protocols=_BOTH,
        ),
        DatasetSpec(
            "UCF101", "ucf101", "ucf101", "json", "UCF-101-midframes",
            "  ucf101/\n    UCF-101-midframes/<Action_Name>/v_<Action>_gXX_cYY.jpg\n"
            "    ucfTrainTestlist/classInd.txt trainlist01.txt testlist01.txt   (only used without the split file)\n"
            "    split_zhou_UCF101.json",
            _FROM_SPLIT + "; else classInd.txt (CamelCase split)",
            split_file="split_zhou_UCF101.json", prefix="UCF-101-midframes", fallback="ucf101",
            num_classes=101,
            sources=(
                archive("UCF101 middle frames (CoOp)", None, "UCF-101-midframes.zip",
                        "ucf101/UCF-101-midframes", ("UCF-101-midframes", "ucf101/UCF-101-midframes"),
                        drive_id="10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O"),
                coop_split("ucf101", "UCF101", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"),
            ),
            protocols=_BOTH,
        ),
        DatasetSpec(
            "ImageNetV2", "imagenetv2", "imagenetv2", "imagenetv2",
            "imagenetv2-matched-frequency-format-val",
            "  imagenetv2/\n    imagenetv2-matched-frequency-format-val/0/ ... /999/\n"
            "    classnames.txt      (copy of imagenet/classnames.txt)",
            _FROM_CLASSNAMES + " (folder i = line i)",
            num_classes=1000,
            sources=(
                archive("ImageNetV2 matched-frequency",
                        "https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz",
                        "imagenetv2-matched-frequency.tar.gz", "imagenetv2/imagenetv2-matched-frequency-format-val",
                        ("imagenetv2-matched-frequency-format-val",
                         "imagenetv2/imagenetv2-matched-frequency-format-val")),
                imagenet_classnames("imagenetv2"),
            ),
            display="ImageNet-V2", protocols=_DG,
        ),
        DatasetSpec(
            "ImageNetSketch", "imagenet_sketch", "imagenet-sketch", "wnid_folders", "images",
            "  imagenet-sketch/\n    images/<wnid>/...   (1000 folders; the download's sketch/ renamed)\n"
            "    classnames.txt      (copy of imagenet/classnames.txt)",
            _FROM_CLASSNAMES, num_classes=1000,
            sources=(imagenet_classnames("imagenet-sketch"),),
            manual=(
                "Download ImageNet-Sketch (see https://github.com/HaohanWang/ImageNet-Sketch), unpack it and\n"
                "rename its sketch/ folder to imagenet-sketch/images/ (1000 wnid folders)."
            ),
            display="ImageNet-Sketch", protocols=_DG,
        ),
        DatasetSpec(
            "ImageNetA", "imagenet_a", "imagenet-adversarial", "wnid_folders", "imagenet-a",
            "  imagenet-adversarial/\n    imagenet-a/<wnid>/...   (200 folders)\n"
            "    classnames.txt      (copy of imagenet/classnames.txt)",
            _FROM_CLASSNAMES + " (200 wnid folders)",
            ignored=IMAGENET_AR_IGNORED, num_classes=200,
            sources=(
                archive("ImageNet-A", f"{_HENDRYCKS}/imagenet-a.tar", "imagenet-a.tar",
                        "imagenet-adversarial/imagenet-a", ("imagenet-a", "imagenet-adversarial/imagenet-a")),
                imagenet_classnames("imagenet-adversarial"),
            ),
            display="ImageNet-A", protocols=_DG,
        ),
        DatasetSpec(
            "ImageNetR", "imagenet_r", "imagenet-rendition", "wnid_folders", "imagenet-r",
            "  imagenet-rendition/\n    imagenet-r/<wnid>/...   (200 folders)\n"
            "    classnames.txt      (copy of imagenet/classnames.txt)",
            _FROM_CLASSNAMES + " (200 wnid folders)",
            ignored=IMAGENET_AR_IGNORED, num_classes=200,
            sources=(
                archive("ImageNet-R", f"{_HENDRYCKS}/imagenet-r.tar", "imagenet-r.tar",
                        "imagenet-rendition/imagenet-r", ("imagenet-r", "imagenet-rendition/imagenet-r")),
                imagenet_classnames("imagenet-rendition"),
            ),
            display="ImageNet-R", protocols=_DG,
        ),
        DatasetSpec(
            "PrometarWorld", "prometar_world", "prometar_world", "json", "images",
            _JSON_LAYOUT.format(dir="prometar_world", images="images/<class>/<file>",
                                split="split_zhou_PrometarWorld.json"),
            _FROM_SPLIT + " (pattern colour shape)",
            split_file="split_zhou_PrometarWorld.json", prefix="images", fallback="folder",
            manual=(
                "PrometarWorld is a synthetic dataset generated locally, not downloaded: run\n"
                "`python -c \"from prometar.world import generate_world; generate_world('<ROOT>')\"`, which writes\n"
                "prometar_world/ (images/ + split_zhou_PrometarWorld.json)."
            ),
        ),
        DatasetSpec(
            "ImageFolder", "imagefolder", "imagefolder", "imagefolder", "",
            "  imagefolder/           (the folder name is DATASET.IMAGEFOLDER.DIR)\n"
            "    <class folder>/*.jpg|*.jpeg|*.png   (one folder per class)\n"
            "    classnames.txt      (optional: `<folder> <class name>` per line)\n"
            "    split_prometar_ImageFolder.json   (written by the first run from DATASET.IMAGEFOLDER.SPLIT_SEED)",
            "classnames.txt, else folder names",
            split_file="split_prometar_ImageFolder.json", prefix="",
            manual=(
                "ImageFolder is your own images, not downloaded: put one folder per class under\n"
                "<ROOT>/imagefolder/<class>/ (*.jpg, *.jpeg, *.png; the folder name is DATASET.IMAGEFOLDER.DIR) and\n"
                "train with DATASET.NAME ImageFolder; the first run writes split_prometar_ImageFolder.json there."
            ),
        ),
    ]
}


def protocol_datasets(protocol: str) -> tuple[str, ...]:
    """Config names of the datasets of `protocol` (one of `PROTOCOLS`), in table order."""
    if protocol not in PROTOCOLS:
        raise KeyError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    return tuple(s.config for s in SPECS.values() if protocol in s.protocols)


def split_file_source(spec: DatasetSpec) -> Fetch | None:
    """The `Fetch` of a dataset's split file among its sources (CoOp distributes most), if any."""
    for fetch in spec.sources:
        if spec.split_file and fetch.save_as.endswith(f"/{spec.split_file}"):
            return fetch
    return None


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
