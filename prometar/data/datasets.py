"""Standalone dataset objects (Dassl `DatasetBase` look-alikes), the registry and `build_dataset`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .imagefolder import dataset_options
from .readers import read_dataset_lists
from .records import Datum
from .sampling import fewshot_with_cache, subsample_classes, warn_capped_shots
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
        val = test  # ImageNet: val is the test list
    else:
        train, val, test = (list(x) for x in subsample_classes(train, val, test, subsample=subsample))
    if num_shots >= 1:
        warn_capped_shots(train, num_shots)  # counts only the classes this run uses (e.g. the base half)
    return DatasetLists(train, val, test, info.dataset_dir)


def lists_from_cfg(name: str, cfg: Any) -> DatasetLists:
    """`build_lists` with the config's DATASET.ROOT, NUM_SHOTS, SUBSAMPLE_CLASSES (default `all`), SEED and
    dataset options: what a dataset class of either engine is built from."""
    data = cfg.DATASET
    return build_lists(name, data.ROOT, num_shots=data.NUM_SHOTS, seed=cfg.SEED,
                       subsample=data.get("SUBSAMPLE_CLASSES", "all"), options=dataset_options(cfg))


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
        lists = lists_from_cfg(self.spec_name, cfg)
        self.dataset_dir = lists.dataset_dir
        super().__init__(train_x=lists.train, val=lists.val, test=lists.test)


def _dataset_class(name: str) -> type[BenchmarkDataset]:
    spec = SPECS[name]
    doc = (f"{name} (folder `{spec.dataset_dir}` under DATASET.ROOT), read from the dataset table's entry; "
           f"few-shot and base/new subsampling as CoOp.")
    return type(name, (BenchmarkDataset,), {"spec_name": name, "__doc__": doc, "__module__": __name__})


#: DATASET.NAME -> built-in dataset class, one per entry of the dataset table (`prometar.data.specs.SPECS`).
DATASETS: dict[str, type[BenchmarkDataset]] = {name: _dataset_class(name) for name in SPECS}


def __getattr__(name: str) -> type[BenchmarkDataset]:
    if name in DATASETS:  # `prometar.data.datasets.EuroSAT`, as if each class were written out
        return DATASETS[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_dataset(cfg: Any) -> DatasetBase:
    """Build `DATASETS[cfg.DATASET.NAME](cfg)`, printing `Loading dataset: <name>` like Dassl."""
    name = cfg.DATASET.NAME
    if name not in DATASETS:  # DATASETS has every name of the table: the error names the choices and a hint
        try:
            resolve_name(name)
        except KeyError as exc:
            raise KeyError(f"DATASET.NAME: {exc.args[0]}") from None
    if cfg.get("VERBOSE", True):
        print(f"Loading dataset: {name}")
    return DATASETS[name](cfg)
