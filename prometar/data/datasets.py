"""Standalone dataset objects (Dassl `DatasetBase` look-alikes), the registry and `build_dataset`."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .imagefolder import dataset_options
from .readers import read_dataset_lists
from .records import Datum
from .sampling import fewshot_with_cache, subsample_classes
from .specs import SPECS, resolve_name


@dataclass
class DatasetLists:
    """Final lists of a run (after few-shot and subsampling) and the dataset folder."""

    train: list[Datum]
    val: list[Datum] | None
    test: list[Datum]
    dataset_dir: str


def build_lists(
    name: str,
    root: str,
    num_shots: int = -1,
    seed: int = -1,
    subsample: str = "all",
    options: Mapping[str, Any] | None = None,
) -> DatasetLists:
    """Read dataset `name` and apply the CoOp steps: few-shot (cached), base/new subsampling.

    ImageNet samples train only and uses test as val; the test-only ImageNet variants skip both steps
    and return train = test, val = None. Shared by the standalone datasets and a Dassl wrapper.
    options: dataset-specific config keys (see `read_dataset_lists`).
    """
    train, val, test, info = read_dataset_lists(name, root, options)
    if info.test_only:
        return DatasetLists(train, None, test, info.dataset_dir)
    if num_shots >= 1:
        train, val = fewshot_with_cache(
            train, val if info.fewshot_val else None, num_shots, seed, info.split_fewshot_dir
        )
    if info.val_is_test:
        train, test = (list(x) for x in subsample_classes(train, test, subsample=subsample))
        return DatasetLists(train, test, test, info.dataset_dir)  # ImageNet: val is the test list
    train, val, test = (list(x) for x in subsample_classes(train, val, test, subsample=subsample))
    return DatasetLists(train, val, test, info.dataset_dir)


class DatasetBase:
    """Holds train_x / val / test and derives `num_classes`, `lab2cname`, `classnames` from train_x
    exactly like Dassl's `DatasetBase` (num_classes = max label + 1; names ordered by label)."""

    dataset_dir = ""
    domains: list = []

    def __init__(
        self,
        train_x: Sequence[Datum] | None = None,
        train_u: Sequence[Datum] | None = None,
        val: Sequence[Datum] | None = None,
        test: Sequence[Datum] | None = None,
    ) -> None:
        if not train_x:
            raise ValueError(f"{type(self).__name__}: train_x is empty; cannot derive the classes")
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    train_x = property(lambda self: self._train_x)
    train_u = property(lambda self: self._train_u)
    val = property(lambda self: self._val)
    test = property(lambda self: self._test)
    lab2cname = property(lambda self: self._lab2cname)
    classnames = property(lambda self: self._classnames)
    num_classes = property(lambda self: self._num_classes)

    @staticmethod
    def get_num_classes(data: Sequence[Datum]) -> int:
        """Max label + 1."""
        return max(item.label for item in data) + 1

    @staticmethod
    def get_lab2cname(data: Sequence[Datum]) -> tuple[dict[int, str], list[str]]:
        """({label: classname}, [classname ordered by label])."""
        mapping = {label: name for label, name in sorted({(d.label, d.classname) for d in data})}
        return mapping, [mapping[label] for label in sorted(mapping)]


class BenchmarkDataset(DatasetBase):
    """A dataset of the table built from a config (DATASET.ROOT/NUM_SHOTS/SUBSAMPLE_CLASSES, SEED)."""

    spec_name = ""

    def __init__(self, cfg: Any) -> None:
        data = cfg.DATASET
        lists = build_lists(
            self.spec_name,
            data.ROOT,
            num_shots=data.NUM_SHOTS,
            seed=cfg.SEED,
            subsample=data.get("SUBSAMPLE_CLASSES", "all"),
            options=dataset_options(cfg),
        )
        self.dataset_dir = lists.dataset_dir
        super().__init__(train_x=lists.train, val=lists.val, test=lists.test)


class ImageNet(BenchmarkDataset):
    spec_name = "ImageNet"


class Caltech101(BenchmarkDataset):
    spec_name = "Caltech101"


class OxfordPets(BenchmarkDataset):
    spec_name = "OxfordPets"


class StanfordCars(BenchmarkDataset):
    spec_name = "StanfordCars"


class OxfordFlowers(BenchmarkDataset):
    spec_name = "OxfordFlowers"


class Food101(BenchmarkDataset):
    spec_name = "Food101"


class FGVCAircraft(BenchmarkDataset):
    spec_name = "FGVCAircraft"


class SUN397(BenchmarkDataset):
    spec_name = "SUN397"


class DescribableTextures(BenchmarkDataset):
    spec_name = "DescribableTextures"


class EuroSAT(BenchmarkDataset):
    spec_name = "EuroSAT"


class UCF101(BenchmarkDataset):
    spec_name = "UCF101"


class ImageNetV2(BenchmarkDataset):
    spec_name = "ImageNetV2"


class ImageNetSketch(BenchmarkDataset):
    spec_name = "ImageNetSketch"


class ImageNetA(BenchmarkDataset):
    spec_name = "ImageNetA"


class ImageNetR(BenchmarkDataset):
    spec_name = "ImageNetR"


class PrometarWorld(BenchmarkDataset):
    spec_name = "PrometarWorld"


class ImageFolder(BenchmarkDataset):
    """A user's own class folders (DATASET.IMAGEFOLDER.* keys; see `prometar.data.imagefolder`)."""

    spec_name = "ImageFolder"


DATASETS: dict[str, type[BenchmarkDataset]] = {
    cls.spec_name: cls
    for cls in (ImageNet, Caltech101, OxfordPets, StanfordCars, OxfordFlowers, Food101, FGVCAircraft, SUN397,
                DescribableTextures, EuroSAT, UCF101, ImageNetV2, ImageNetSketch, ImageNetA, ImageNetR,
                PrometarWorld, ImageFolder)
}
assert set(DATASETS) == set(SPECS), "every spec needs a dataset class"


def build_dataset(cfg: Any) -> DatasetBase:
    """Build `DATASETS[cfg.DATASET.NAME](cfg)`, printing `Loading dataset: <name>` like Dassl."""
    name = cfg.DATASET.NAME
    if name not in DATASETS:
        try:
            resolve_name(name)  # raises with a hint (config name, close match)
        except KeyError as exc:
            raise KeyError(f"DATASET.NAME: {exc.args[0]}") from None
        close = difflib.get_close_matches(name, list(DATASETS), n=1)
        raise KeyError(f"DATASET.NAME {name!r} is not registered; did you mean {close}?")
    if cfg.get("VERBOSE", True):
        print(f"Loading dataset: {name}")
    return DATASETS[name](cfg)
