"""Class-name rules of the CoOp dataset readers (underscores are kept, as CoOp's readers keep them)."""
from __future__ import annotations

import re

# Caltech101: folders that are never classes, and folder -> stored class name.
CALTECH_IGNORED = ("BACKGROUND_Google", "Faces_easy")
CALTECH_RENAMES = {
    "airplanes": "airplane",
    "Faces": "face",
    "Leopards": "leopard",
    "Motorbikes": "motorbike",
}

# EuroSAT: folder -> stored class name.
EUROSAT_RENAMES = dict(
    pair.split(" -> ") for pair in (
        "AnnualCrop -> Annual Crop Land", "Forest -> Forest", "HerbaceousVegetation -> Herbaceous Vegetation Land",
        "Highway -> Highway or Road", "Industrial -> Industrial Buildings", "Pasture -> Pasture Land",
        "PermanentCrop -> Permanent Crop Land", "Residential -> Residential Buildings", "River -> River",
        "SeaLake -> Sea or Lake",
    )
)

# ImageNet-A / ImageNet-R: entries of the image folder that are not classes.
IMAGENET_AR_IGNORED = ("README.txt",)


def pets_classname(image_stem: str) -> str:
    """OxfordPets: file stem without its trailing `_<number>`, lower-cased (`Abyssinian_100`)."""
    return "_".join(image_stem.split("_")[:-1]).lower()


def sun397_classname(class_path: str) -> str:
    """SUN397: drop the letter folder, reverse the rest, join with spaces (`a/b/outdoor` -> `outdoor b`)."""
    return " ".join(class_path.split("/")[1:][::-1])


def ucf101_classname(action: str) -> str:
    """UCF101: split CamelCase before capitals and join with `_` (`ApplyEyeMakeup` -> `Apply_Eye_Makeup`)."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))

