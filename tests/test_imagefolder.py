"""ImageFolder: a user's own class folders as a dataset (split drawn once and reused, class names, errors, engines)."""
import importlib.util
import json
import os
import random
import shutil

import pytest
from fake_data import make_fake_dataset

from prometar.cli import train_main
from prometar.config import extend_cfg, get_cfg_default
from prometar.data import (
    DatasetLayoutError,
    build_dataset,
    build_lists,
    read_dataset_lists,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHOD_CFG = os.path.join(REPO, "configs", "trainers", "ProMetaR", "vit_b16_c2_ep10_batch4_4+4ctx.yaml")
DATA_CFG = os.path.join(REPO, "configs", "datasets", "imagefolder.yaml")
SPLIT = "split_prometar_ImageFolder.json"
FOLDERS = ["Red_Fox", "barn_owl", "golden_retriever", "koi", "sea_turtle", "tabby_cat"]  # sorted = labels


def make(root, n_per_class=6, image_size=8, **kw):
    return make_fake_dataset("ImageFolder", str(root), n_classes=6, n_per_class=n_per_class, image_size=image_size,
                             **kw)


def names_by_label(records):
    return dict(sorted({(d.label, d.classname) for d in records}))


def test_split_written_once_then_reused(tmp_path, capsys):
    ddir = make(tmp_path)
    random.seed(123)
    before = random.random()
    random.seed(123)
    train, val, test, info = read_dataset_lists("ImageFolder", str(tmp_path), {"SPLIT_SEED": 1})
    assert random.random() == before  # the split's own seed leaves the run's global stream alone
    split_path = os.path.join(ddir, SPLIT)
    assert f"Saved split to {split_path}" in capsys.readouterr().out
    assert (len(train), len(val), len(test)) == (18, 6, 12)  # 6 per class -> 3/1/2
    assert all(d.impath.lower().endswith((".png", ".jpg", ".jpeg")) for d in train + val + test)  # notes.txt skipped
    assert len({d.impath for d in train + val + test}) == 36
    first = open(split_path, "rb").read()
    split = json.loads(first)
    assert set(split) == {"train", "val", "test"} and not split["train"][0][0].startswith("/")
    assert split["train"][0][0].split("/")[0] in FOLDERS  # paths relative to the dataset folder

    # second run: the file is read, not rewritten
    again = read_dataset_lists("ImageFolder", str(tmp_path), {"SPLIT_SEED": 1})
    out = capsys.readouterr().out
    assert f"Reading split from {split_path}" in out and "Saved split" not in out
    assert open(split_path, "rb").read() == first and again[0] == train and again[2] == test
    # the saved file wins over the keys: another seed does not redraw while the file exists
    assert read_dataset_lists("ImageFolder", str(tmp_path), {"SPLIT_SEED": 7})[0] == train
    # deleted and drawn again with the same seed: byte-identical (sorted listing, own seed)
    os.remove(split_path)
    read_dataset_lists("ImageFolder", str(tmp_path), {"SPLIT_SEED": 1})
    assert open(split_path, "rb").read() == first
    os.remove(split_path)
    read_dataset_lists("ImageFolder", str(tmp_path), {"SPLIT_SEED": 2})
    assert open(split_path, "rb").read() != first


def test_class_names_from_folders_and_from_classnames_txt(tmp_path):
    ddir = make(tmp_path)
    train, val, test, _ = read_dataset_lists("ImageFolder", str(tmp_path))
    want = {i: f.replace("_", " ") for i, f in enumerate(FOLDERS)}
    assert names_by_label(train) == names_by_label(test) == want
    assert want[0] == "Red Fox" and want[2] == "golden retriever"

    os.remove(os.path.join(ddir, SPLIT))
    with open(os.path.join(ddir, "classnames.txt"), "w") as f:  # any line order; labels stay the folder order
        for folder in reversed(FOLDERS):
            f.write(f"{folder} a {folder.lower().replace('_', '-')}\n\n")
    train = read_dataset_lists("ImageFolder", str(tmp_path))[0]
    assert names_by_label(train) == {i: f"a {f.lower().replace('_', '-')}" for i, f in enumerate(FOLDERS)}


def test_base_new_halves_and_fewshot_cache_from_config(tmp_path):
    ddir = make(tmp_path)
    os.rename(ddir, os.path.join(str(tmp_path), "my_pets"))
    cfg = extend_cfg(get_cfg_default())
    cfg.DATASET.NAME = "ImageFolder"
    cfg.DATASET.ROOT = str(tmp_path)
    cfg.DATASET.IMAGEFOLDER.DIR = "my_pets"
    cfg.DATASET.NUM_SHOTS = 2
    cfg.SEED = 1
    seen = {}
    for sub in ("base", "new", "all"):
        cfg.DATASET.SUBSAMPLE_CLASSES = sub
        ds = build_dataset(cfg)
        seen[sub] = ds.classnames
        assert all(os.path.dirname(os.path.dirname(d.impath)) == os.path.join(str(tmp_path), "my_pets")
                   for d in ds.train_x)
    all_names = [f.replace("_", " ") for f in FOLDERS]
    assert seen["all"] == all_names and seen["base"] == all_names[:3] and seen["new"] == all_names[3:]
    assert os.path.isfile(os.path.join(str(tmp_path), "my_pets", "split_fewshot", "shot_2-seed_1.pkl"))
    assert os.path.isfile(os.path.join(str(tmp_path), "my_pets", SPLIT))
    lists = build_lists("ImageFolder", str(tmp_path), num_shots=2, seed=1, options={"DIR": "my_pets"})
    assert len(lists.train) == 12 and len(lists.val) == 6  # 2 shots x 6 classes; val min(2, 4) per class


def test_errors_name_the_folder_or_line(tmp_path):
    ddir = make(tmp_path)
    empty = os.path.join(ddir, "zebra")
    os.makedirs(empty)
    with open(os.path.join(empty, "readme.txt"), "w") as f:
        f.write("no images here\n")
    with pytest.raises(DatasetLayoutError, match=f"no image file.*{empty}"):
        read_dataset_lists("ImageFolder", str(tmp_path))
    shutil.rmtree(empty)

    names = os.path.join(ddir, "classnames.txt")
    lines = [f"{f} {f}" for f in FOLDERS]
    with open(names, "w") as f:
        f.write("\n".join(lines[:2] + ["koi"] + lines[2:]) + "\n")
    with pytest.raises(DatasetLayoutError, match=f"{names}, line 3: 'koi' does not parse"):
        read_dataset_lists("ImageFolder", str(tmp_path))
    with open(names, "w") as f:
        f.write("\n".join(lines + ["walrus a walrus"]) + "\n")
    with pytest.raises(DatasetLayoutError, match=f"line 7: class folder {os.path.join(ddir, 'walrus')} does not exist"):
        read_dataset_lists("ImageFolder", str(tmp_path))
    with open(names, "w") as f:
        f.write("\n".join(lines[1:]) + "\n")
    with pytest.raises(DatasetLayoutError, match=f"{names} has no line for the class folder.*{FOLDERS[0]}"):
        read_dataset_lists("ImageFolder", str(tmp_path))
    os.remove(names)

    small = os.path.join(ddir, "koi")
    for f in sorted(os.listdir(small))[3:]:
        os.remove(os.path.join(small, f))
    with pytest.raises(DatasetLayoutError, match=f"{small}: 3 images cannot be split 50%/20%/30%"):
        read_dataset_lists("ImageFolder", str(tmp_path))
    assert not os.path.exists(os.path.join(ddir, SPLIT))  # nothing saved from a failed split
    with pytest.raises(DatasetLayoutError, match="dataset folder not found.*elsewhere"):
        read_dataset_lists("ImageFolder", str(tmp_path), {"DIR": "elsewhere"})
    with pytest.raises(ValueError, match="DATASET.IMAGEFOLDER.DIR must be a folder name"):
        read_dataset_lists("ImageFolder", str(tmp_path), {"DIR": "../x"})


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    ddir = make(root, n_per_class=8, image_size=32)
    shutil.copytree(ddir, os.path.join(str(root), "my_pets"))  # read through a user's YAML naming this folder
    return str(root)


def _argv(root, clip_path, out, engine, *extra, sub="base", data_cfg=DATA_CFG):
    return ["--root", root, "--seed", "1", "--trainer", "ProMetaR", "--dataset-config-file", str(data_cfg),
            "--config-file", METHOD_CFG, "--output-dir", str(out), "--engine", engine, *extra,
            "MODEL.BACKBONE.NAME", str(clip_path), "INPUT.SIZE", "(32, 32)", "TRAINER.PROMETAR.PREC", "fp32",
            "TRAINER.PROMETAR.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMETAR.PROMPT_DEPTH_VISION", "2",
            "OPTIM.MAX_EPOCH", "1", "OPTIM_VNET.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "2",
            "DATASET.SUBSAMPLE_CLASSES", sub, "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "2",
            "DATALOADER.TEST.BATCH_SIZE", "16", "DATASET.IMAGEFOLDER.SPLIT_SEED", "3"]


@pytest.mark.parametrize("engine", ["builtin", "dassl"])
def test_train_then_eval_through_train_py(engine, image_root, small_clip_path, tmp_path):
    if engine == "dassl" and importlib.util.find_spec("dassl") is None:
        pytest.skip("Dassl.pytorch is not installed (not on PyPI): install it by hand to run the Dassl engine")
    extra = ("--device", "cpu") if engine == "builtin" else ()
    opts = () if engine == "builtin" else ("USE_CUDA", "False")
    folder, data_cfg = "imagefolder", DATA_CFG  # built-in: the shipped YAML; Dassl: a user's YAML with its folder
    if engine == "dassl":
        folder, data_cfg = "my_pets", tmp_path / "my_pets.yaml"
        data_cfg.write_text('DATASET:\n  NAME: "ImageFolder"\n  IMAGEFOLDER:\n    DIR: "my_pets"\n')
    out = tmp_path / "base"
    assert train_main(_argv(image_root, small_clip_path, out, engine, *extra, data_cfg=data_cfg) + list(opts)) == 0
    log = (out / "log.txt").read_text()
    assert log.startswith("Engine: built-in" if engine == "builtin" else "Engine: Dassl")
    assert "Loading dataset: ImageFolder" in log and "SUBSAMPLE BASE CLASSES!" in log
    assert "Finish training" in log and "* accuracy:" in log
    assert (out / "VLPromptLearner" / "model.pth.tar-1").is_file()
    assert os.path.isfile(os.path.join(image_root, folder, SPLIT))
    assert os.path.isfile(os.path.join(image_root, folder, "split_fewshot", "shot_2-seed_1.pkl"))
    new = tmp_path / "new"
    assert train_main(_argv(image_root, small_clip_path, new, engine, *extra, "--eval-only", "--model-dir", str(out),
                            "--load-epoch", "1", sub="new", data_cfg=data_cfg) + list(opts)) == 0
    log = (new / "log.txt").read_text()
    assert "SUBSAMPLE NEW CLASSES!" in log and "* accuracy:" in log
