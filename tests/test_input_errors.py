"""Bad data and config inputs end in a correct result or an error naming the file, key or class at fault.

Each case runs on the built-in engine (prometar.data, prometar.engine) and, when Dassl.pytorch is installed,
on the Dassl engine (our Dassl dataset classes, Dassl's data manager and trainer); the Dassl halves skip,
saying why, without it. Datasets are tiny fake EuroSAT/ImageNet layouts; runs use the 'tiny' CLIP, 1 epoch.
"""
import importlib.util
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
from fake_data import make_fake_dataset

from prometar.config import ConfigFileError, build_arg_parser, load_cfg
from prometar.data import build_lists, load_records
from prometar.data.readers import MissingTrainClassError
from prometar.data.reroot import CacheMismatchError

REPO = Path(__file__).resolve().parents[1]
METHOD_YAML = REPO / "configs" / "trainers" / "ProMetaR" / "vit_b16_c2_ep10_batch4_4+4ctx.yaml"
EUROSAT_YAML = REPO / "configs" / "datasets" / "eurosat.yaml"
HAS_DASSL = importlib.util.find_spec("dassl") is not None
needs_dassl = pytest.mark.skipif(not HAS_DASSL, reason="Dassl.pytorch is not installed (not on PyPI): install it "
                                                       "by hand to run the Dassl-engine half of these tests")
ENGINES = ["builtin", pytest.param("dassl", marks=needs_dassl)]


# ------------------------------------------------------------------ helpers
def _cfg(root, shots=2, subsample="all", seed=1):
    cfg = load_cfg(str(EUROSAT_YAML), None, freeze=False)
    cfg.DATASET.ROOT, cfg.DATASET.NUM_SHOTS, cfg.SEED = str(root), shots, seed
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.VERBOSE = False
    return cfg


def _build_dataset(engine, cfg):
    """The dataset object each engine builds from `cfg` (built-in class, or our registered Dassl class)."""
    if engine == "dassl":
        from prometar.dassl.datasets import get_dataset_class

        return get_dataset_class(cfg.DATASET.NAME)(cfg)
    from prometar.data import build_dataset

    return build_dataset(cfg)


@pytest.fixture(scope="module")
def tiny_clip_path(tmp_path_factory):
    from prometar.clip_loader import build_clip, save_clip

    return save_clip(build_clip("tiny", seed=0), tmp_path_factory.mktemp("clip") / "tiny.pt")


def _train(engine, root, out, clip_path, shots=2, subsample="all", batch=2):
    """One 1-epoch run through train.py's entry point on `engine`; returns the exit code."""
    argv = ["--root", str(root), "--seed", "1", "--trainer", "ProMetaR", "--output-dir", str(out),
            "--dataset-config-file", str(EUROSAT_YAML), "--config-file", str(METHOD_YAML),
            "MODEL.BACKBONE.NAME", str(clip_path), "INPUT.SIZE", "(32, 32)", "TRAINER.PROMETAR.PREC", "fp32",
            "TRAINER.PROMETAR.PROMPT_DEPTH_VISION", "2", "TRAINER.PROMETAR.PROMPT_DEPTH_TEXT", "2",
            "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", str(batch),
            "DATALOADER.TEST.BATCH_SIZE", "8", "OPTIM.MAX_EPOCH", "1", "OPTIM_VNET.MAX_EPOCH", "1",
            "DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", subsample, "USE_CUDA", "False"]
    if engine == "dassl":
        from prometar.dassl.runner import main

        return main(build_arg_parser().parse_args(argv))
    from prometar import build
    from prometar.engine.runner import main

    args = build_arg_parser().parse_args(argv)
    args.device = "cpu"
    return main(args, builder=build)


def _split(ddir):
    path = Path(ddir) / "split_zhou_EuroSAT.json"
    return path, json.loads(path.read_text())


# ------------------------------------------------------------------ 5. YAML syntax errors
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("which", ["dataset", "method"])
def test_yaml_syntax_error_names_file_and_line(engine, which, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("OPTIM:\n  LR: 0.1\n MAX_EPOCH: [1, 2\n")  # line 3: wrong indentation, unclosed list
    files = {"dataset": (str(bad), str(METHOD_YAML)), "method": (str(EUROSAT_YAML), str(bad))}[which]
    with pytest.raises(ConfigFileError) as info:
        if engine == "dassl":
            from prometar.dassl.runner import setup_cfg

            setup_cfg(build_arg_parser().parse_args(["--dataset-config-file", files[0], "--config-file", files[1]]))
        else:
            load_cfg(*files)
    msg = str(info.value)
    assert f'"{bad}", line 3' in msg and "YAML syntax error" in msg and "<unicode string>" not in msg
    assert ("dataset config file" in msg) == (which == "dataset")


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_config_input_is_one_error_line_through_train_py(engine, tmp_path, capsys):
    """train.py flags after the KEY VALUE options (argparse hands them to opts), an unknown key and a missing
    config file each end with one ERROR line naming what is wrong, exit 2, before anything is written."""
    from prometar.launch import train_main

    head = ["--root", str(tmp_path), "--trainer", "ProMetaR", "--engine", engine, "--output-dir", str(tmp_path / "o")]
    cases = [(["--config-file", str(METHOD_YAML), "OPTIM.MAX_EPOCH", "1", "--eval-only", "--load-epoch", "1"],
              "--eval-only --load-epoch after the KEY VALUE options"),
             (["--config-file", str(METHOD_YAML), "OPTIM.NO_SUCH_KEY", "1"], "Non-existent key: OPTIM.NO_SUCH_KEY"),
             (["--config-file", str(tmp_path / "nope.yaml")], f'config file not found: "{tmp_path / "nope.yaml"}"')]
    for extra, expected in cases:
        assert train_main(head + extra) == 2
        out = capsys.readouterr().out
        assert out.startswith("ERROR: ") and expected in out and "Traceback" not in out
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ 2. a class without training images
@pytest.fixture
def no_train_class_root(tmp_path):
    """EuroSAT with 4 classes where class label 1 has val/test images but none in the split's train list."""
    ddir = make_fake_dataset("EuroSAT", str(tmp_path / "data"), n_classes=4, n_per_class=6, seed=0)
    path, split = _split(ddir)
    name = next(c for _, y, c in split["train"] if y == 1)
    split["train"] = [e for e in split["train"] if e[1] != 1]
    path.write_text(json.dumps(split))
    return tmp_path / "data", name, path


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("subsample", ["all", "base", "new"])
def test_class_without_training_images_is_refused(engine, subsample, no_train_class_root):
    root, name, split_path = no_train_class_root
    with pytest.raises(MissingTrainClassError) as info:
        _build_dataset(engine, _cfg(root, shots=2, subsample=subsample))
    msg = str(info.value)
    assert f'"{name}" (label 1' in msg and str(split_path) in msg and "Add training images" in msg


def test_label_gap_is_refused(tmp_path):
    """A label number with no image in any list (labels 0, 2, 3): Dassl would count 4 classes with 3 names."""
    ddir = make_fake_dataset("EuroSAT", str(tmp_path), n_classes=4, n_per_class=6, seed=0)
    path, split = _split(ddir)
    path.write_text(json.dumps({k: [e for e in v if e[1] != 1] for k, v in split.items()}))
    with pytest.raises(MissingTrainClassError, match=r"label 1 \(no image in any list\)"):
        build_lists("EuroSAT", str(tmp_path), num_shots=2, seed=1)


# ------------------------------------------------------------------ 3. few-shot caches after the data folder moves
def _cache(root, shots=2, seed=1):
    return Path(root) / "eurosat" / "split_fewshot" / f"shot_{shots}-seed_{seed}.pkl"


def _rel(records, ddir):
    return sorted((os.path.relpath(d.impath, ddir), d.label, d.classname) for d in records)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("keep_old", [True, False], ids=["copied", "moved"])
def test_moved_data_folder_reads_the_current_images(engine, keep_old, tmp_path, capsys):
    old_root, new_root = tmp_path / "old", tmp_path / "new"
    make_fake_dataset("EuroSAT", str(old_root), n_classes=4, n_per_class=8, seed=0)
    before = build_lists("EuroSAT", str(old_root), num_shots=2, seed=1)  # writes the cache with old paths
    assert _cache(old_root).is_file()
    (shutil.copytree if keep_old else shutil.move)(str(old_root), str(new_root))
    capsys.readouterr()

    ds = _build_dataset(engine, _cfg(new_root, shots=2))
    out = capsys.readouterr().out
    new_dir = str(new_root / "eurosat")
    for records in (ds.train_x, ds.val):
        assert all(d.impath.startswith(new_dir + os.sep) for d in records)  # never the old folder
    assert _rel(ds.train_x, new_dir) == _rel(before.train, str(old_root / "eurosat"))  # the same sample
    assert "was moved or copied to" in out and str(_cache(new_root)) in out
    # The cache now holds the new paths and still loads as Dassl's own Datum records (when Dassl is there).
    with open(_cache(new_root), "rb") as f:
        content = pickle.load(f) if HAS_DASSL else load_records(str(_cache(new_root)))
    assert all(d.impath.startswith(new_dir + os.sep) for d in content["train"] + content["val"])
    capsys.readouterr()
    build_lists("EuroSAT", str(new_root), num_shots=2, seed=1)
    assert "was moved or copied to" not in capsys.readouterr().out  # mapped once


@needs_dassl
def test_dassl_written_cache_of_a_moved_folder(tmp_path):
    """A cache pickled by Dassl itself (its Datum class) at the old place is read with the current paths."""
    from dassl.data.datasets import Datum as DasslDatum

    from prometar.dassl.datasets import to_dassl_records

    old_root, new_root = tmp_path / "old", tmp_path / "new"
    make_fake_dataset("EuroSAT", str(old_root), n_classes=4, n_per_class=8, seed=0)
    lists = build_lists("EuroSAT", str(old_root), num_shots=2, seed=1)
    with open(_cache(old_root), "wb") as f:
        pickle.dump({"train": to_dassl_records(lists.train), "val": to_dassl_records(lists.val)}, f)
    assert type(to_dassl_records(lists.train)[0]) is DasslDatum
    shutil.move(str(old_root), str(new_root))
    moved = build_lists("EuroSAT", str(new_root), num_shots=2, seed=1)
    new_dir = str(new_root / "eurosat")
    assert _rel(moved.train, new_dir) == _rel(lists.train, str(old_root / "eurosat"))
    assert all(os.path.isfile(d.impath) for d in moved.train + moved.val)


@pytest.mark.parametrize("engine", ENGINES)
def test_cache_of_another_split_is_refused(engine, tmp_path):
    """A cache listing an image the current split no longer has (or with another label) names itself."""
    ddir = make_fake_dataset("EuroSAT", str(tmp_path), n_classes=4, n_per_class=8, seed=0)
    lists = build_lists("EuroSAT", str(tmp_path), num_shots=2, seed=1)
    path, split = _split(ddir)
    dropped = os.path.relpath(lists.train[0].impath, os.path.join(ddir, "2750"))
    split["train"] = [e for e in split["train"] if e[0] != dropped]
    path.write_text(json.dumps(split))
    with pytest.raises(CacheMismatchError) as info:
        _build_dataset(engine, _cfg(tmp_path, shots=2))
    msg = str(info.value)
    assert str(_cache(tmp_path)) in msg and "Delete" in msg and dropped in msg


def test_cache_with_unrelated_paths_is_refused(tmp_path):
    make_fake_dataset("EuroSAT", str(tmp_path / "a"), n_classes=4, n_per_class=8, seed=0)
    make_fake_dataset("EuroSAT", str(tmp_path / "b"), n_classes=4, n_per_class=8, seed=5)
    build_lists("EuroSAT", str(tmp_path / "a"), num_shots=2, seed=1)
    content = load_records(str(_cache(tmp_path / "a")))
    content["train"][0]._impath = "/elsewhere/unrelated/picture.jpg"
    from prometar.data import dump_records

    dump_records(content, str(_cache(tmp_path / "a")))
    _cache(tmp_path / "b").parent.mkdir(exist_ok=True)
    shutil.copy(_cache(tmp_path / "a"), _cache(tmp_path / "b"))
    with pytest.raises(CacheMismatchError, match=re.escape(str(_cache(tmp_path / "b")))):
        build_lists("EuroSAT", str(tmp_path / "b"), num_shots=2, seed=1)


def test_imagenet_preprocessed_cache_after_move(tmp_path, capsys):
    old_root, new_root = tmp_path / "old", tmp_path / "new"
    make_fake_dataset("ImageNet", str(old_root), n_classes=3, n_per_class=4, seed=0)
    before = build_lists("ImageNet", str(old_root), num_shots=2, seed=1)  # writes preprocessed.pkl + cache
    shutil.copytree(str(old_root), str(new_root))
    after = build_lists("ImageNet", str(new_root), num_shots=2, seed=1)
    new_dir = str(new_root / "imagenet")
    assert all(d.impath.startswith(new_dir + os.sep) for d in after.train + after.test)
    assert _rel(after.train, new_dir) == _rel(before.train, str(old_root / "imagenet"))
    assert "preprocessed.pkl" in capsys.readouterr().out
    cached = load_records(str(new_root / "imagenet" / "preprocessed.pkl"))
    assert all(d.impath.startswith(new_dir + os.sep) for d in cached["train"] + cached["test"])


def test_imagenet_preprocessed_cache_of_other_images_is_refused(tmp_path):
    make_fake_dataset("ImageNet", str(tmp_path / "a"), n_classes=3, n_per_class=4, seed=0)
    build_lists("ImageNet", str(tmp_path / "a"), num_shots=-1)
    make_fake_dataset("ImageNet", str(tmp_path / "b"), n_classes=3, n_per_class=4, seed=0)
    pkl = tmp_path / "b" / "imagenet" / "preprocessed.pkl"
    shutil.copy(tmp_path / "a" / "imagenet" / "preprocessed.pkl", pkl)
    first = next((tmp_path / "b" / "imagenet" / "images" / "train").iterdir())
    shutil.rmtree(first)  # a class folder the cache lists is gone from the new place
    with pytest.raises(CacheMismatchError, match=re.escape(str(pkl))):
        build_lists("ImageNet", str(tmp_path / "b"), num_shots=-1)


# ------------------------------------------------------------------ 4. capped shots (data level)
@pytest.mark.parametrize("engine", ENGINES)
def test_capped_shots_warn_once_naming_the_classes(engine, tmp_path, capsys):
    make_fake_dataset("EuroSAT", str(tmp_path), n_classes=3, n_per_class=[7, 7, 30], seed=0)  # train 4, 4, 15
    for _ in range(2):  # sampled, then loaded from the cache: the warning comes either way
        capsys.readouterr()
        ds = _build_dataset(engine, _cfg(tmp_path, shots=10))
        out = capsys.readouterr().out
        assert out.count("Warning: DATASET.NUM_SHOTS is 10") == 1
        line = next(x for x in out.splitlines() if "NUM_SHOTS is 10" in x)
        names = sorted({d.classname for d in ds.train_x if d.label in (0, 1)})
        assert "2 of 3 classes" in line and all(f"{n} (4)" in line for n in names)
        assert len(ds.train_x) == 4 + 4 + 10


# ------------------------------------------------------------------ whole runs on both engines
@pytest.mark.parametrize("engine", ENGINES)
def test_one_class_batches_and_capped_shots_warn_once(engine, tmp_path, tiny_clip_path, capsys):
    """1-class base (2 classes) with 100 shots of 4 images: both warnings, once each, and the run finishes."""
    make_fake_dataset("EuroSAT", str(tmp_path / "data"), n_classes=2, n_per_class=7, seed=0, image_size=32)
    out = tmp_path / "run"
    assert _train(engine, tmp_path / "data", out, tiny_clip_path, shots=100, subsample="base") == 0
    log = (out / "log.txt").read_text()
    assert log.count("Warning: DATASET.NUM_SHOTS is 100") == 1 and "(4)" in log
    assert log.count("the meta step is skipped") == 1 and ">= 2 classes per batch" in log


@pytest.mark.parametrize("engine", ENGINES)
def test_truncated_jpeg_names_the_file(engine, tmp_path, tiny_clip_path):
    ddir = make_fake_dataset("EuroSAT", str(tmp_path / "data"), n_classes=2, n_per_class=5, seed=0, image_size=32)
    truncated = set()
    for folder, _, files in os.walk(os.path.join(ddir, "2750")):
        for name in files:
            path = os.path.join(folder, name)
            data = Path(path).read_bytes()
            Path(path).write_bytes(data[: len(data) // 2])
            truncated.add(path)
    with pytest.raises(OSError) as info:
        _train(engine, tmp_path / "data", tmp_path / "run", tiny_clip_path)
    msg = str(info.value)
    named = re.search(r'Cannot read image "([^"]+)"', msg)
    assert named and named.group(1) in truncated and "truncated" in msg, msg
