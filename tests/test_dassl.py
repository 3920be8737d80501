"""The Dassl plugin (prometar.dassl) run through Dassl.pytorch itself.

Everything is tiny: a 'tiny' random CLIP at 32x32, fake datasets of a few 32-pixel images, 1 epoch.
"""
import math
import os
import pickle
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (not on PyPI): install it by hand to run "
                                    "the Dassl plugin tests")

import torch  # noqa: E402

from prometar.config import build_arg_parser  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
METHOD_YAML = REPO / "configs" / "trainers" / "ProMetaR" / "vit_b16_c2_ep10_batch4_4+4ctx.yaml"
EUROSAT_YAML = REPO / "configs" / "datasets" / "eurosat.yaml"


def _small_opts(clip_path, epochs=1):
    return ["MODEL.BACKBONE.NAME", str(clip_path), "INPUT.SIZE", "(32, 32)", "TRAINER.PROMETAR.PREC", "fp32",
            "TRAINER.PROMETAR.PROMPT_DEPTH_VISION", "2", "TRAINER.PROMETAR.PROMPT_DEPTH_TEXT", "2",
            "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "2", "DATALOADER.TEST.BATCH_SIZE", "8",
            "OPTIM.MAX_EPOCH", str(epochs), "OPTIM_VNET.MAX_EPOCH", str(epochs), "DATASET.NUM_SHOTS", "2",
            "USE_CUDA", "False"]


def _args(root, out, clip_path, subsample, *flags, epochs=1):
    argv = ["--root", str(root), "--seed", "1", "--trainer", "ProMetaR", "--output-dir", str(out),
            "--dataset-config-file", str(EUROSAT_YAML), "--config-file", str(METHOD_YAML), *flags,
            *_small_opts(clip_path, epochs), "DATASET.SUBSAMPLE_CLASSES", subsample]
    return build_arg_parser().parse_args(argv)


def _log(out):
    return (Path(out) / "log.txt").read_text()


@pytest.fixture(scope="module")
def tiny_clip_path(tmp_path_factory):
    from prometar.clip_loader import build_clip, save_clip

    return save_clip(build_clip("tiny", seed=0), tmp_path_factory.mktemp("clip") / "tiny.pt")


@pytest.fixture(scope="module")
def eurosat_root(tmp_path_factory):
    from fake_data import make_fake_dataset

    root = tmp_path_factory.mktemp("data")
    make_fake_dataset("EuroSAT", str(root), n_classes=4, n_per_class=6, seed=0, image_size=32)
    return root


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, eurosat_root, tiny_clip_path):
    """One 1-epoch base-class training run through prometar.dassl.runner.main (Dassl's build_trainer)."""
    from prometar.dassl.runner import main

    out = tmp_path_factory.mktemp("runs") / "base"
    assert main(_args(eurosat_root, out, tiny_clip_path, "base")) == 0
    return out


def test_package_imports_without_dassl():
    """prometar.dassl and its modules import with Dassl hidden; register() then explains how to install it."""
    code = textwrap.dedent("""
        import sys
        sys.modules["dassl"] = None  # as if Dassl were not installed: find_spec -> None, import -> error
        import prometar.dassl as pd, prometar.dassl.trainer, prometar.dassl.datasets, prometar.dassl.runner
        assert pd.dassl_available() is False
        assert callable(pd.extend_cfg) and len(pd.DATASET_NAMES) == 17
        try:
            pd.register()
        except ImportError as exc:
            assert "Dassl.pytorch" in str(exc) and "pip install" in str(exc), exc
        else:
            raise AssertionError("register() without Dassl must raise ImportError")
        assert not [m for m, v in sys.modules.items() if m.split(".")[0] == "dassl" and v is not None]
        assert "torch" not in sys.modules  # importing the plugin is light
        print("OK")
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr


def test_register_idempotent_and_skips_taken_names(monkeypatch):
    from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
    from dassl.engine import TRAINER_REGISTRY

    import prometar.dassl as pd

    pd.register()
    assert pd.register() == {"registered": [], "skipped": []}
    assert TRAINER_REGISTRY.get("ProMetaR") is pd.get_trainer_class()
    assert TRAINER_REGISTRY.get("ProMetaR").__name__ == "ProMetaR"
    for name in ("ImageNet", "OxfordFlowers", "DescribableTextures", "ImageNetSketch", "PrometarWorld"):
        cls = DATASET_REGISTRY.get(name)
        assert cls is pd.get_dataset_class(name) and issubclass(cls, DatasetBase) and cls.__name__ == name

    # A host (CoOp/MaPLe/PromptSRC checkout) registered its own OxfordPets first: ours is skipped.
    host_map = {k: v for k, v in DATASET_REGISTRY._obj_map.items() if k != "OxfordPets"}
    host_pets = type("OxfordPets", (DatasetBase,), {})
    host_map["OxfordPets"] = host_pets
    monkeypatch.setattr(DATASET_REGISTRY, "_obj_map", host_map)
    assert pd.register(trainer=False)["skipped"] == ["OxfordPets"]
    assert DATASET_REGISTRY.get("OxfordPets") is host_pets
    assert pd.register(trainer=False, force=True)["registered"] == ["OxfordPets"]
    assert DATASET_REGISTRY.get("OxfordPets") is pd.get_dataset_class("OxfordPets")


def test_base_to_new_train_then_eval_only(base_run, eurosat_root, tiny_clip_path, tmp_path):
    from prometar.dassl.runner import main

    log = _log(base_run)
    assert log.splitlines()[0].startswith("Engine: Dassl 0.6.3")
    assert "** Arguments **" in log and "** Config **" in log and "Collecting env info ..." in log
    assert "Loading trainer: ProMetaR" in log and "Loading dataset: EuroSAT" in log
    assert "SUBSAMPLE BASE CLASSES!" in log and "No checkpoint found, train from scratch" in log
    assert log.count("Text side: all 2 classes at once (automatic") == 1  # TRAINER.PROMETAR.TEXT_CHUNK, logged once
    assert "epoch [1/1] batch [2/2]" in log and " ce " in log and " meta_loss " in log and " lr " in log
    assert "Finish training" in log and "=> result" in log and "* accuracy:" in log
    ckpt = base_run / "VLPromptLearner" / "model.pth.tar-1"
    assert ckpt.is_file() and (base_run / "VLPromptLearner" / "checkpoint").read_text() == "model.pth.tar-1\n"
    assert (base_run / "GradientModulator" / "model.pth.tar-1").is_file()
    state = torch.load(ckpt)  # torch's default (weights_only=True on torch >= 2.6) accepts our checkpoints
    assert state["epoch"] == 1 and state["val_result"] is None
    assert set(state["state_dict"]) == {f"prompt_learner.{s}.{i}" for s in ("text", "vision") for i in (0, 1)}
    mod_sched = torch.load(base_run / "GradientModulator" / "model.pth.tar-1")["scheduler"]
    assert mod_sched["last_epoch"] == 0  # official default: the modulator's scheduler is never stepped

    out = tmp_path / "new"
    args = _args(eurosat_root, out, tiny_clip_path, "new", "--eval-only", "--model-dir", str(base_run),
                 "--load-epoch", "1")
    assert main(args) == 0
    log = _log(out)
    assert "SUBSAMPLE NEW CLASSES!" in log
    assert f'Loading weights to VLPromptLearner from "{ckpt}" (epoch = 1)' in log
    assert "Evaluate on the *test* set" in log and "=> result" in log
    assert "Finish training" not in log and not (out / "tensorboard").exists()


def test_load_model_semantics(base_run, eurosat_root, tiny_clip_path, tmp_path):
    from dassl.engine import build_trainer

    from prometar.dassl import register
    from prometar.dassl.runner import setup_cfg

    register()
    cfg = setup_cfg(_args(eurosat_root, tmp_path / "x", tiny_clip_path, "new"))
    trainer = build_trainer(cfg)
    learner = trainer._models["VLPromptLearner"].prompt_learner
    missing = base_run / "VLPromptLearner" / "model.pth.tar-7"
    with pytest.raises(FileNotFoundError, match=f'Model not found at "{missing}"'):
        trainer.load_model(str(base_run), epoch=7)
    trainer.load_model("")  # no directory: a note, nothing loaded
    trainer.load_model(str(base_run), epoch=1)
    saved = torch.load(base_run / "VLPromptLearner" / "model.pth.tar-1")["state_dict"]
    for key, value in learner.state_dict().items():
        assert torch.equal(value, saved[f"prompt_learner.{key}"])

    # An official full-model checkpoint (whole CustomCLIP, val_result None) in model-best.pth.tar.
    official = {"prompt_learner.ctx": torch.full_like(learner.text[0], 0.5),
                "prompt_learner.token_prefix": torch.zeros(3, 1, 64),
                "image_encoder.VPT": torch.full_like(learner.vision[0], 0.25),
                "image_encoder.conv1.weight": torch.zeros(2, 2),
                "image_encoder.transformer.resblocks.1.VPT_shallow": torch.full_like(learner.vision[1], 0.125),
                "text_encoder.transformer.resblocks.1.VPT_shallow": torch.full_like(learner.text[1], 2.0)}
    folder = tmp_path / "official" / "VLPromptLearner"
    folder.mkdir(parents=True)
    torch.save({"state_dict": official, "epoch": 10, "optimizer": None, "scheduler": None, "val_result": None},
               folder / "model-best.pth.tar")
    trainer.load_model(str(tmp_path / "official"))  # no GradientModulator folder: skipped with a note
    assert torch.all(learner.text[0] == 0.5) and torch.all(learner.text[1] == 2.0)
    assert torch.all(learner.vision[0] == 0.25) and torch.all(learner.vision[1] == 0.125)
    assert trainer.test() >= 0.0


def test_dassl_resume(base_run, eurosat_root, tiny_clip_path, tmp_path, capsys):
    """Dassl's --resume reloads our checkpoints (model, optimiser, scheduler) and continues training."""
    from prometar.dassl.runner import main

    out = tmp_path / "resumed"
    args = _args(eurosat_root, out, tiny_clip_path, "base", "--resume", str(base_run), epochs=2)
    assert main(args) == 2  # MAX_EPOCH 1 -> 2 changes the LR schedule: refused without the flag
    assert "OPTIM.MAX_EPOCH: 1 -> 2" in capsys.readouterr().out
    args.allow_config_change = True
    assert main(args) == 0
    log = _log(out)
    assert f"Found checkpoint at {base_run} (will resume training)" in log
    assert log.count("Loaded optimizer") == 2 and log.count("Loaded scheduler") == 2
    assert "Previous epoch: 1" in log and "epoch [2/2] batch [2/2]" in log and "epoch [1/2]" not in log
    assert (out / "VLPromptLearner" / "model.pth.tar-2").is_file() and "=> result" in log
    assert torch.load(out / "VLPromptLearner" / "model.pth.tar-2")["scheduler"]["last_epoch"] == 2
    assert torch.load(out / "GradientModulator" / "model.pth.tar-2")["scheduler"]["last_epoch"] == 0  # never stepped


def _reference_subsample(lists, mode):
    """The base/new rule, written out independently: lower ceil(n/2) labels of the first list are base."""
    labels = sorted({d.label for d in lists[0]})
    m = math.ceil(len(labels) / 2)
    chosen = labels[:m] if mode == "base" else labels[m:]
    relabel = {y: i for i, y in enumerate(chosen)}
    return [[(d.impath, relabel[d.label], d.classname) for d in data if d.label in relabel] for data in lists]


def _tuples(records):
    return [(d.impath, d.label, d.classname) for d in records]


def test_fewshot_and_base_new_match_dassl(tmp_path):
    from dassl.config import get_cfg_default
    from dassl.data.datasets import DatasetBase, Datum
    from dassl.utils import set_random_seed
    from fake_data import make_fake_dataset

    from prometar.config import extend_cfg
    from prometar.dassl.datasets import get_dataset_class, to_dassl_records
    from prometar.data import build_lists, read_dataset_lists

    name, shots, seed = "DescribableTextures", 4, 2
    root = tmp_path / "data"
    # train/val per class: 10/4, 6/2, 2/1, 12/5, 8/3 -> whole groups, exact-size groups and sampled ones
    make_fake_dataset(name, str(root), n_classes=5, n_per_class=[20, 12, 5, 25, 16], seed=3)
    train, val, test, info = read_dataset_lists(name, str(root))
    d_train, d_val, d_test = (to_dassl_records(x) for x in (train, val, test))

    set_random_seed(seed)  # Dassl's train.py seeds Python's global `random` (and numpy, torch) like this
    dassl_ds = DatasetBase(train_x=d_train, val=d_val, test=d_test)
    fs_train = dassl_ds.generate_fewshot_dataset(d_train, num_shots=shots)
    fs_val = dassl_ds.generate_fewshot_dataset(d_val, num_shots=min(shots, 4))
    random.seed()

    ours = build_lists(name, str(root), num_shots=shots, seed=seed, subsample="all")
    assert _tuples(ours.train) == _tuples(fs_train) and _tuples(ours.val) == _tuples(fs_val)
    assert len(fs_train) == 4 * 4 + 2 and _tuples(fs_train) != _tuples(d_train)

    cache = Path(info.split_fewshot_dir) / f"shot_{shots}-seed_{seed}.pkl"
    with open(cache, "rb") as f:
        content = pickle.load(f)  # Dassl reads our cache with its own Datum class
    assert type(content["train"][0]) is Datum and _tuples(content["train"]) == _tuples(fs_train)

    cfg = extend_cfg(get_cfg_default())
    cfg.DATASET.ROOT, cfg.DATASET.NUM_SHOTS, cfg.SEED = str(root), shots, seed
    for mode in ("base", "new"):
        ref_train, ref_val, ref_test = _reference_subsample([fs_train, fs_val, d_test], mode)
        lists = build_lists(name, str(root), num_shots=shots, seed=seed, subsample=mode)
        assert (_tuples(lists.train), _tuples(lists.val), _tuples(lists.test)) == (ref_train, ref_val, ref_test)
        cfg.DATASET.SUBSAMPLE_CLASSES = mode
        ds = get_dataset_class(name)(cfg)  # the registered Dassl dataset class
        assert isinstance(ds.train_x[0], Datum) and isinstance(ds, DatasetBase)
        assert (_tuples(ds.train_x), _tuples(ds.val), _tuples(ds.test)) == (ref_train, ref_val, ref_test)
        assert ds.classnames == [n for _, n in sorted({(lab, c) for _, lab, c in ref_train})]
        assert ds.num_classes == (3 if mode == "base" else 2)


HOST_DATASET = '''
import os
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum


@DATASET_REGISTRY.register()
class OxfordPets(DatasetBase):
    """The host checkout's own dataset (a stand-in for CoOp's datasets/oxford_pets.py)."""

    def __init__(self, cfg):
        folder = os.path.join(cfg.DATASET.ROOT, "host_pets")
        items = []
        for label, cname in enumerate(sorted(os.listdir(folder))):
            for f in sorted(os.listdir(os.path.join(folder, cname))):
                items.append(Datum(impath=os.path.join(folder, cname, f), label=label, classname=cname))
        print("host OxfordPets reader used")
        super().__init__(train_x=items, val=items, test=items)
'''

HOST_TRAIN = '''
import argparse

import torch
from dassl.config import get_cfg_default
from dassl.engine import build_trainer
from dassl.data.datasets import DATASET_REGISTRY
from dassl.utils import set_random_seed, setup_logger

import datasets.oxford_pets  # the host's own datasets register first

import prometar.dassl                        # drop-in line 1
prometar.dassl.register(datasets=False)      # drop-in line 2


def extend_cfg(cfg):
    from yacs.config import CfgNode as CN

    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    prometar.dassl.extend_cfg(cfg)           # drop-in line 3 (last line of the host's extend_cfg)


def main(args):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.DATASET.ROOT = args.root
    cfg.OUTPUT_DIR = args.output_dir
    cfg.TRAINER.NAME = args.trainer
    cfg.SEED = args.seed
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    print("prometar datasets registered:", "EuroSAT" in DATASET_REGISTRY.registered_names())
    trainer = build_trainer(cfg)
    trainer.train()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    for flag in ("--root", "--output-dir", "--trainer", "--config-file"):
        p.add_argument(flag, type=str, default="")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER)
    main(p.parse_args())
'''


def test_drop_in_host_train_py(tmp_path, tiny_clip_path):
    """A miniature CoOp-style checkout gains the ProMetaR trainer through the three drop-in lines."""
    from PIL import Image

    host = tmp_path / "host"
    (host / "datasets").mkdir(parents=True)
    (host / "datasets" / "__init__.py").write_text("")
    (host / "datasets" / "oxford_pets.py").write_text(HOST_DATASET)
    (host / "train.py").write_text(HOST_TRAIN)
    for c, cname in enumerate(("abyssinian", "beagle", "birman")):
        folder = tmp_path / "data" / "host_pets" / cname
        folder.mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (32, 32), (40 * c + 10 * i, 90, 200 - 50 * c)).save(folder / f"{i}.png")
    site = tmp_path / "site"  # only the installed package is importable, as after `pip install`
    site.mkdir()
    (site / "prometar").symlink_to(REPO / "prometar", target_is_directory=True)

    out = tmp_path / "out"
    cmd = [sys.executable, "train.py", "--root", str(tmp_path / "data"), "--output-dir", str(out),
           "--trainer", "ProMetaR", "--config-file", str(METHOD_YAML), "DATASET.NAME", "OxfordPets",
           *_small_opts(tiny_clip_path), "DATASET.NUM_SHOTS", "-1"]
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, cwd=host, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = _log(out)
    assert "prometar datasets registered: False" in log and "host OxfordPets reader used" in log
    assert "Loading trainer: ProMetaR" in log and "Loading dataset: OxfordPets" in log
    assert "epoch [1/1] batch [3/3]" in log and "=> result" in log
    assert (out / "VLPromptLearner" / "model.pth.tar-1").is_file()


def test_best_val_deploys_model_best(eurosat_root, tiny_clip_path, tmp_path):
    """TEST.FINAL_MODEL best_val: Dassl saves model-best.pth.tar (val_result set) and reloads it via our load_model."""
    from prometar.dassl.runner import main

    out = tmp_path / "bestval"
    assert main(_args(eurosat_root, out, tiny_clip_path, "base", "TEST.FINAL_MODEL", "best_val")) == 0
    log = _log(out)
    best = out / "VLPromptLearner" / "model-best.pth.tar"
    assert "Evaluate on the *val* set" in log and "Deploy the model with the best val performance" in log
    assert f'Loading weights to VLPromptLearner from "{best}" (epoch = 1)' in log
    assert isinstance(torch.load(best)["val_result"], float) and "=> result" in log


def test_check_cfg_errors():
    from dassl.config import get_cfg_default

    from prometar.config import extend_cfg
    from prometar.dassl import get_trainer_class

    check = get_trainer_class().check_cfg
    with pytest.raises(KeyError, match="prometar.dassl.extend_cfg"):
        check(None, get_cfg_default())
    cfg = get_cfg_default()
    cfg.OPTIM_VNET = cfg.OPTIM.clone()
    cfg.TRAINER.PROMETAR = type(cfg)({"PREC": "fp16", "N_CTX_TEXT": 4})  # official-style partial block
    with pytest.raises(KeyError, match="LEARNER"):
        check(None, cfg)
    cfg = extend_cfg(get_cfg_default())
    check(None, cfg)
    cfg.TRAINER.PROMETAR.PREC = "bf16"
    with pytest.raises(ValueError, match="PREC"):
        check(None, cfg)
    cfg.TRAINER.PROMETAR.PREC, cfg.TRAINER.PROMETAR.LEARNER = "fp32", "CoCoOp"
    with pytest.raises(ValueError, match="LEARNER"):
        check(None, cfg)


def test_repo_root_thin_modules(monkeypatch):
    """trainers/prometar.py and datasets/<name>.py register prometar's classes when imported."""
    import importlib

    from dassl.data.datasets import DATASET_REGISTRY
    from dassl.engine import TRAINER_REGISTRY

    import prometar.dassl as pd
    from prometar.data.specs import SPECS

    loaded = sys.modules.get("datasets")
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").parent != REPO / "datasets":
        pytest.skip("another package named `datasets` is already imported")
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(REPO))
    try:
        assert importlib.import_module("trainers.prometar").ProMetaR is TRAINER_REGISTRY.get("ProMetaR")
        for name, spec in SPECS.items():
            module = importlib.import_module(f"datasets.{spec.config}")
            assert getattr(module, name) is pd.get_dataset_class(name) is DATASET_REGISTRY.get(name)
    finally:  # do not leave the repo-root `datasets` / `trainers` packages imported for other tests
        for key in set(sys.modules) - before:
            if key.split(".")[0] in ("datasets", "trainers"):
                del sys.modules[key]
