"""The dataset table (`prometar.data.specs.SPECS`): every entry has all of its parts, and everything that is
said to be derived from it (dataset classes of both engines, the CoOp-style files, the protocols' dataset lists,
the report's names) is."""
import os
import re

import pytest
from fake_data import make_fake_dataset

from prometar.config import load_cfg
from prometar.data import DATASETS, SPECS, build_dataset, make_data_cfg
from prometar.data.check import CHECKS, check_dataset
from prometar.data.coop_files import dataset_files, main as coop_files_main, sync
from prometar.data.download import data_main
from prometar.data.readers import FALLBACKS, READERS
from prometar.data.specs import PROTOCOLS, protocol_datasets, resolve_name, split_file_source

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name", list(SPECS))
def test_every_entry_has_all_its_parts(name):
    spec = SPECS[name]
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", spec.name), "a Dassl class name"
    assert re.fullmatch(r"[a-z][a-z0-9_]*", spec.config), "a config / module name"
    assert resolve_name(spec.config, aliases=True) == name
    assert spec.kind in READERS and spec.kind in CHECKS, f"layout {spec.kind!r} needs a reader and a check"
    assert spec.fallback is None or spec.fallback in FALLBACKS
    assert spec.layout.strip() and spec.classnames.strip() and spec.dataset_dir
    assert set(spec.protocols) <= set(PROTOCOLS)
    if spec.kind in ("json", "imagefolder"):
        assert spec.split_file and spec.prefix is not None
    # where the data comes from: downloads, or written steps (a local dataset has both or either)
    assert spec.sources or spec.manual
    for step in spec.sources:
        assert bool(step.url) != bool(step.drive_id) or step.is_archive
        assert not os.path.isabs(step.save_as) and not os.path.isabs(step.creates)
    if spec.sources and spec.kind == "json":  # a downloaded JSON-split dataset gets CoOp's split file too
        assert split_file_source(spec) is not None
    # derived: both engines' classes, the dataset YAML and the Dassl shim module
    assert DATASETS[name].spec_name == name and DATASETS[name].__name__ == name
    files = dataset_files()
    assert f'NAME: "{name}"' in files[os.path.join("configs", "datasets", f"{spec.config}.yaml")]
    assert f'register_dataset("{name}")' in files[os.path.join("datasets", f"{spec.config}.py")]


def test_names_and_config_names_are_unique():
    configs = [s.config for s in SPECS.values()]
    folders = [s.dataset_dir for s in SPECS.values()]
    assert len(set(configs)) == len(configs) and len(set(folders)) == len(folders)
    assert set(DATASETS) == set(SPECS)


def test_repository_files_match_the_table(capsys):
    assert sync(REPO, check=True) == ([], []), "run `python -m prometar.data.coop_files` in the repository root"
    for spec in SPECS.values():  # each YAML loads through the config loader and names its dataset
        cfg = load_cfg(os.path.join(REPO, "configs", "datasets", f"{spec.config}.yaml"), None)
        assert cfg.DATASET.NAME == spec.name
    assert coop_files_main(["--check", REPO]) == 0
    assert "34 dataset files match" in capsys.readouterr().out


def test_sync_writes_missing_and_outdated_files_and_names_strays(tmp_path, capsys):
    (tmp_path / "configs" / "datasets").mkdir(parents=True)
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "eurosat.py").write_text("# edited by hand\n")
    (tmp_path / "datasets" / "mine.py").write_text("# not in the table\n")
    assert coop_files_main(["--check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "datasets/eurosat.py: differs from the dataset table" in out
    assert "datasets/mine.py: no entry of the dataset table produces this file" in out
    assert not (tmp_path / "configs" / "datasets" / "dtd.yaml").exists()  # --check writes nothing
    differ, stray = sync(str(tmp_path))
    assert len(differ) == 2 * len(SPECS) and stray == [os.path.join("datasets", "mine.py")]
    assert sync(str(tmp_path), check=True) == ([], stray)
    assert (tmp_path / "datasets" / "mine.py").exists()  # strays are named, never deleted


def test_protocol_lists_come_from_the_table():
    from prometar.report.results import ordered
    from prometar.report.tables import N_PAPER_DATASETS, display
    from prometar.sweep.jobs import BASE2NEW_DATASETS, DG_TARGETS, FEWSHOT_DATASETS, XD_TARGETS

    assert BASE2NEW_DATASETS == ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers",
                                 "food101", "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
    assert DG_TARGETS == ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
    assert XD_TARGETS == BASE2NEW_DATASETS[1:] + DG_TARGETS == protocol_datasets("xd") + protocol_datasets("dg")
    assert FEWSHOT_DATASETS == BASE2NEW_DATASETS  # CoOp's few-shot protocol runs the same 11 datasets
    assert N_PAPER_DATASETS == 11
    assert ordered(["eurosat", "zzz", "imagenet"]) == ["imagenet", "eurosat", "zzz"]
    assert [display(d) for d in ("oxford_flowers", "dtd", "imagenet_a", "mine")] == [
        "Flowers102", "DTD", "ImageNet-A", "mine"]
    with pytest.raises(KeyError, match="unknown protocol 'few_shot'; expected one of base2new, xd, dg, fewshot"):
        protocol_datasets("few_shot")


@pytest.mark.parametrize("name", list(SPECS))
def test_each_entry_builds_checks_and_lists(name, tmp_path, capsys):
    """One entry is enough for the built-in dataset class, `prometar data --check` and `--list`."""
    make_fake_dataset(name, tmp_path, n_classes=3, n_per_class=4)
    assert check_dataset(name, str(tmp_path)).status == "ok"
    cfg = make_data_cfg(ROOT=str(tmp_path), NAME=name)
    dataset = build_dataset(cfg)
    assert type(dataset) is DATASETS[name] and dataset.num_classes == 3
    assert data_main(["--list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(name + " "))
    assert SPECS[name].config in row and SPECS[name].classnames in row


def test_dassl_classes_are_derived_from_the_table():
    pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (not on PyPI); see the README to install it")
    from prometar.dassl.datasets import DATASET_NAMES, get_dataset_class

    assert DATASET_NAMES == tuple(SPECS)
    for name, spec in SPECS.items():
        cls = get_dataset_class(spec.config)
        assert cls.__name__ == name and cls.dataset_dir == spec.dataset_dir
