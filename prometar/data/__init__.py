"""Data side of prometar: CoOp-compatible dataset readers, few-shot sampling, base/new subsampling,
Dassl-compatible caches, transforms and loaders. Never imports Dassl.

Typical use (standalone): `dm = build_data(cfg)` -> `dm.train_loader_x`, `dm.test_loader`,
`dm.dataset.classnames`. A Dassl `DatasetBase` wrapper can reuse `build_lists` / `read_dataset_lists`
and convert the `Datum` records.
"""
from .config import data_cfg_defaults, make_data_cfg
from .datasets import DATASETS, BenchmarkDataset, DatasetBase, DatasetLists, build_dataset, build_lists
from .readers import ListsInfo, read_dataset_lists, read_imagenet_classnames
from .records import Datum, dump_records, dumps_records, load_records, loads_records
from .sampling import (
    fewshot_cache_path,
    fewshot_with_cache,
    generate_fewshot,
    make_rng,
    split_by_label,
    subsample_classes,
)
from .specs import SPECS, DatasetLayoutError, DatasetSpec, get_spec, resolve_name, resolve_root
from .splits import read_split, write_split

# Torch-dependent parts load on first use, so `prometar data --check` and the readers stay light.
_LAZY = {
    "DataManager": "loaders", "DatasetWrapper": "loaders", "build_data": "loaders",
    "build_data_loader": "loaders", "read_image": "loaders",
    "INTERPOLATION_MODES": "transforms", "SUPPORTED_TRANSFORMS": "transforms", "build_transform": "transforms",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "DATASETS", "SPECS", "INTERPOLATION_MODES", "SUPPORTED_TRANSFORMS",
    "BenchmarkDataset", "DataManager", "DatasetBase", "DatasetLayoutError", "DatasetLists", "DatasetSpec",
    "DatasetWrapper", "Datum", "ListsInfo",
    "build_data", "build_data_loader", "build_dataset", "build_lists", "build_transform",
    "data_cfg_defaults", "dump_records", "dumps_records", "fewshot_cache_path", "fewshot_with_cache",
    "generate_fewshot", "get_spec", "load_records", "loads_records", "make_data_cfg", "make_rng",
    "read_dataset_lists", "read_image", "read_imagenet_classnames", "read_split", "resolve_name",
    "resolve_root", "split_by_label", "subsample_classes", "write_split",
]
