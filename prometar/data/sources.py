"""Where each dataset's files come from (as CoOp's `DATASETS.md` lists them). Data only, no network.

Every `Fetch` is one file: a Google-Drive id or an HTTP URL, the path (relative to ROOT) the file is
saved to, and, for archives, which archive members go where (relative to ROOT). `creates` names the
path whose existence means the step is done (resumability). Some hosts of the original archives
have moved since CoOp listed them; a dead link makes `prometar data` print the manual steps.
"""
from __future__ import annotations

from dataclasses import dataclass

DRIVE_VIEW = "https://drive.google.com/file/d/{id}/view"
DRIVE_DOWNLOAD = "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t"
IMAGENET_CLASSNAMES_ID = "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"


@dataclass(frozen=True)
class Fetch:
    """One downloadable file (set exactly one of `url` / `drive_id`)."""

    what: str
    save_as: str
    creates: str
    url: str | None = None
    drive_id: str | None = None
    members: tuple[tuple[str, str], ...] = ()  # archive: (member path, destination); "" = all
    optional: bool = False  # only needed by the fallback splitters

    @property
    def is_archive(self) -> bool:
        return bool(self.members)

    @property
    def link(self) -> str:
        return self.url if self.url else DRIVE_VIEW.format(id=self.drive_id)


def _split(dataset_dir: str, name: str, drive_id: str) -> Fetch:
    path = f"{dataset_dir}/split_zhou_{name}.json"
    return Fetch(f"CoOp split file split_zhou_{name}.json", path, path, drive_id=drive_id)


def _classnames(dataset_dir: str) -> Fetch:
    path = f"{dataset_dir}/classnames.txt"
    return Fetch("ImageNet class names (CoOp classnames.txt)", path, path, drive_id=IMAGENET_CLASSNAMES_ID)


def _archive(what: str, url: str, save_as: str, creates: str, *members: tuple[str, str],
             drive_id: str | None = None, optional: bool = False) -> Fetch:
    return Fetch(what, save_as, creates, url=url, drive_id=drive_id, members=members, optional=optional)


_OX = "https://www.robots.ox.ac.uk/~vgg/data"
_CARS = "http://ai.stanford.edu/~jkrause"
_DL = "_downloads"  # archives are saved under ROOT/_downloads/ and removed after unpacking

SOURCES: dict[str, list[Fetch]] = {
    "ImageNet": [_classnames("imagenet")],
    "Caltech101": [
        _archive("Caltech101 images", "http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz",
                 f"{_DL}/101_ObjectCategories.tar.gz", "caltech-101/101_ObjectCategories",
                 ("101_ObjectCategories", "caltech-101/101_ObjectCategories")),
        _split("caltech-101", "Caltech101", "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"),
    ],
    "OxfordPets": [
        _archive("Oxford-IIIT Pets images", f"{_OX}/pets/data/images.tar.gz", f"{_DL}/pets_images.tar.gz",
                 "oxford_pets/images", ("images", "oxford_pets/images")),
        _archive("Oxford-IIIT Pets annotations", f"{_OX}/pets/data/annotations.tar.gz",
                 f"{_DL}/pets_annotations.tar.gz", "oxford_pets/annotations",
                 ("annotations", "oxford_pets/annotations"), optional=True),
        _split("oxford_pets", "OxfordPets", "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"),
    ],
    "StanfordCars": [
        _archive("Stanford Cars train images", f"{_CARS}/car196/cars_train.tgz", f"{_DL}/cars_train.tgz",
                 "stanford_cars/cars_train", ("cars_train", "stanford_cars/cars_train")),
        _archive("Stanford Cars test images", f"{_CARS}/car196/cars_test.tgz", f"{_DL}/cars_test.tgz",
                 "stanford_cars/cars_test", ("cars_test", "stanford_cars/cars_test")),
        _archive("Stanford Cars devkit", "https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz",
                 f"{_DL}/car_devkit.tgz", "stanford_cars/devkit", ("devkit", "stanford_cars/devkit"),
                 optional=True),
        Fetch("Stanford Cars test labels", "stanford_cars/cars_test_annos_withlabels.mat",
              "stanford_cars/cars_test_annos_withlabels.mat",
              url=f"{_CARS}/car196/cars_test_annos_withlabels.mat", optional=True),
        _split("stanford_cars", "StanfordCars", "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"),
    ],
    "OxfordFlowers": [
        _archive("Flowers102 images", f"{_OX}/flowers/102/102flowers.tgz", f"{_DL}/102flowers.tgz",
                 "oxford_flowers/jpg", ("jpg", "oxford_flowers/jpg")),
        Fetch("Flowers102 labels", "oxford_flowers/imagelabels.mat", "oxford_flowers/imagelabels.mat",
              url=f"{_OX}/flowers/102/imagelabels.mat", optional=True),
        Fetch("Flowers102 class names (CoOp cat_to_name.json)", "oxford_flowers/cat_to_name.json",
              "oxford_flowers/cat_to_name.json", drive_id="1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0", optional=True),
        _split("oxford_flowers", "OxfordFlowers", "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"),
    ],
    "Food101": [
        _archive("Food-101", "http://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/food-101.tar.gz",
                 f"{_DL}/food-101.tar.gz", "food-101/images", ("food-101", "food-101")),
        _split("food-101", "Food101", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"),
    ],
    "FGVCAircraft": [
        _archive("FGVC-Aircraft 2013b", f"{_OX}/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
                 f"{_DL}/fgvc-aircraft-2013b.tar.gz", "fgvc_aircraft/images",
                 ("fgvc-aircraft-2013b/data", "fgvc_aircraft")),
    ],
    "SUN397": [
        _archive("SUN397 images", "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
                 f"{_DL}/SUN397.tar.gz", "sun397/SUN397", ("SUN397", "sun397/SUN397")),
        _archive("SUN397 partitions", "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip",
                 f"{_DL}/Partitions.zip", "sun397/ClassName.txt", ("", "sun397"), optional=True),
        _split("sun397", "SUN397", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"),
    ],
    "DescribableTextures": [
        _archive("DTD", f"{_OX}/dtd/download/dtd-r1.0.1.tar.gz", f"{_DL}/dtd-r1.0.1.tar.gz",
                 "dtd/images", ("dtd", "dtd")),
        _split("dtd", "DescribableTextures", "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"),
    ],
    "EuroSAT": [
        _archive("EuroSAT (RGB)", "http://madm.dfki.de/files/sentinel/EuroSAT.zip", f"{_DL}/EuroSAT.zip",
                 "eurosat/2750", ("2750", "eurosat/2750")),
        _split("eurosat", "EuroSAT", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"),
    ],
    "UCF101": [
        _archive("UCF101 middle frames (CoOp)", None, f"{_DL}/UCF-101-midframes.zip",
                 "ucf101/UCF-101-midframes", ("UCF-101-midframes", "ucf101/UCF-101-midframes"),
                 drive_id="10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O"),
        _split("ucf101", "UCF101", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"),
    ],
    "ImageNetV2": [
        _archive("ImageNetV2 matched-frequency",
                 "https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz",
                 f"{_DL}/imagenetv2-matched-frequency.tar.gz", "imagenetv2/imagenetv2-matched-frequency-format-val",
                 ("imagenetv2-matched-frequency-format-val", "imagenetv2/imagenetv2-matched-frequency-format-val")),
        _classnames("imagenetv2"),
    ],
    "ImageNetSketch": [_classnames("imagenet-sketch")],
    "ImageNetA": [
        _archive("ImageNet-A", "https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",
                 f"{_DL}/imagenet-a.tar", "imagenet-adversarial/imagenet-a",
                 ("imagenet-a", "imagenet-adversarial/imagenet-a")),
        _classnames("imagenet-adversarial"),
    ],
    "ImageNetR": [
        _archive("ImageNet-R", "https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",
                 f"{_DL}/imagenet-r.tar", "imagenet-rendition/imagenet-r",
                 ("imagenet-r", "imagenet-rendition/imagenet-r")),
        _classnames("imagenet-rendition"),
    ],
    "PrometarWorld": [],
    "ImageFolder": [],
}

# Steps that cannot be automated: printed by `prometar data NAME` (paths relative to ROOT).
MANUAL: dict[str, str] = {
    "ImageNet": (
        "Download ILSVRC2012 train and val from https://image-net.org (an account is needed) and unpack\n"
        "them into imagenet/images/train/<wnid>/ and imagenet/images/val/<wnid>/ (the val images must be\n"
        "sorted into the same 1000 wnid folders as train)."
    ),
    "ImageNetSketch": (
        "Download ImageNet-Sketch (see https://github.com/HaohanWang/ImageNet-Sketch), unpack it and\n"
        "rename its sketch/ folder to imagenet-sketch/images/ (1000 wnid folders)."
    ),
    "PrometarWorld": (
        "PrometarWorld is a synthetic dataset generated locally, not downloaded: run\n"
        "`python -c \"from prometar.world import generate_world; generate_world('<ROOT>')\"`, which writes\n"
        "prometar_world/ (images/ + split_zhou_PrometarWorld.json)."
    ),
    "ImageFolder": (
        "ImageFolder is your own images, not downloaded: put one folder per class under\n"
        "<ROOT>/imagefolder/<class>/ (*.jpg, *.jpeg, *.png; the folder name is DATASET.IMAGEFOLDER.DIR) and\n"
        "train with DATASET.NAME ImageFolder; the first run writes split_prometar_ImageFolder.json there."
    ),
}


def split_file_source(name: str) -> Fetch | None:
    """The `Fetch` of a dataset's CoOp split JSON, if CoOp distributes one."""
    for fetch in SOURCES.get(name, []):
        if fetch.save_as.endswith(f"split_zhou_{name}.json"):
            return fetch
    return None
