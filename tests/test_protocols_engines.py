"""The README's protocols at the train.py level, on both engines, checking outcomes (the right model evaluated,
the right numbers): base-to-new, cross-dataset and domain-generalisation evaluation of a trained model, the
user's own image folder, best-val resume, locks on file systems without flock, devices.

(SIGKILL + re-run with the shipped config on each engine: tests/test_integrity.py; sweeps, scripts and the
report: tests/test_protocols_sweep.py.)
"""
import errno
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fake_data import make_fake_dataset

from prometar.cli import train_main
from prometar.engine.checkpoint import load_checkpoint
from prometar.engine.runfolder import RunFolder, RunFolderBusy, RunLock, sha256_file

REPO = Path(__file__).resolve().parents[1]
CFG = REPO / "configs" / "trainers" / "ProMetaR" / "vit_b16_c2_ep10_batch4_4+4ctx.yaml"  # the shipped config
ENGINES = ["builtin", "dassl"]


def _need(engine):
    if engine == "dassl":
        pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (not on PyPI): the Dassl-engine "
                                            "variant needs it (CI installs it from the vendored archive)")


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    from prometar.clip_loader import build_clip, save_clip

    return save_clip(build_clip("tiny", seed=0), tmp_path_factory.mktemp("clip") / "tiny.pt")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_fake_dataset("EuroSAT", str(root), n_classes=4, n_per_class=8, image_size=32)
    make_fake_dataset("DescribableTextures", str(root), n_classes=3, n_per_class=4, image_size=32)
    make_fake_dataset("ImageNetA", str(root), n_classes=3, n_per_class=3, image_size=32)
    make_fake_dataset("ImageFolder", str(root), n_classes=4, n_per_class=6, image_size=32)
    return str(root)


def small(clip, epochs=1):
    """Overrides of the shipped config for a tiny, fast run."""
    return ["MODEL.BACKBONE.NAME", str(clip), "INPUT.SIZE", "(32, 32)", "TRAINER.PROMETAR.PREC", "fp32",
            "TRAINER.PROMETAR.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMETAR.PROMPT_DEPTH_VISION", "2",
            "OPTIM.MAX_EPOCH", str(epochs), "OPTIM_VNET.MAX_EPOCH", str(epochs), "DATALOADER.NUM_WORKERS", "0",
            "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "16"]


def dataset_yaml(dataset):
    return str(REPO / "configs" / "datasets" / f"{dataset}.yaml")


def argv(data_root, clip, out, dataset, *flags, engine="builtin", opts=(), epochs=1):
    return ["--root", data_root, "--seed", "1", "--trainer", "ProMetaR", "--dataset-config-file", dataset_yaml(dataset),
            "--config-file", str(CFG), "--output-dir", str(out), "--engine", engine, "--device", "cpu", *flags,
            *small(clip, epochs), *opts]


def accuracy(folder) -> float:
    logs = sorted(p for p in Path(folder).iterdir() if p.name.startswith("log.txt"))
    return float(re.findall(r"\* accuracy: ([\d.]+)%", logs[-1].read_text())[-1])


def log_text(folder) -> str:
    return "".join(p.read_text() for p in sorted(Path(folder).iterdir()) if p.name.startswith("log.txt"))


@pytest.mark.parametrize("engine", ENGINES)
def test_base2new_cross_dataset_and_domain_generalisation(data_root, clip_path, tmp_path, engine, capsys):
    """Train on EuroSAT's base classes, then evaluate that model on its new classes, on another dataset (DTD,
    cross-dataset) and on an ImageNet-variant layout (domain generalisation) with --eval-only --model-dir."""
    _need(engine)
    train = tmp_path / "train_base"
    assert train_main(argv(data_root, clip_path, train, "eurosat", engine=engine,
                           opts=("DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base"))) == 0
    learner_file = train / "VLPromptLearner" / "model.pth.tar-1"
    assert (train / "manifest-1.json").is_file() and learner_file.is_file()
    trained = {k: v for k, v in load_checkpoint(str(learner_file))["state_dict"].items()}

    def evaluate(name, dataset, *opts, flags=("--load-epoch", "1")):
        out = tmp_path / name
        code = train_main(argv(data_root, clip_path, out, dataset, "--eval-only", "--model-dir", str(train), *flags,
                               engine=engine, opts=opts))
        return code, out

    # the evaluated model is the trained one: on the training run's own test set it gives its final accuracy
    code, same = evaluate("same", "eurosat", "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base")
    assert code == 0 and accuracy(same) == accuracy(train)
    code, new = evaluate("test_new", "eurosat", "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "new")
    assert code == 0 and "SUBSAMPLE NEW CLASSES!" in log_text(new)
    for name, dataset, dname in (("xd_dtd", "dtd", "DescribableTextures"), ("dg_imagenet_a", "imagenet_a",
                                                                             "ImageNetA")):
        code, out = evaluate(name, dataset, "DATASET.SUBSAMPLE_CLASSES", "all")
        assert code == 0, log_text(out)[-2000:]
        assert f"Loading dataset: {dname}" in log_text(out) and "=> result" in log_text(out)
        record = RunFolder(str(out)).provenance()["runs"][-1]
        assert record["model"]["sha256"] == sha256_file(str(learner_file)) and record["engine"] == engine
        assert record["model"]["epoch"] == 1 and record["device"] == "cpu" and record["seed"] == 1
        assert any(dname.lower()[:3] in p.lower() or "imagenet" in p for p in record["inputs"])
    # a key that changes the model is refused, naming it
    code, out = evaluate("changed", "dtd", "TRAINER.PROMETAR.N_CTX_VISION", "2")
    assert code == 2 and "TRAINER.PROMETAR.N_CTX_VISION: 4 -> 2" in capsys.readouterr().out
    assert not (out / "log.txt").exists()  # refused before anything ran
    # the loaded prompts are the trained ones, which moved away from their initial values
    from prometar.build import build_prompted_clip
    from prometar.config import load_cfg

    cfg = load_cfg(dataset_yaml("eurosat"), str(CFG), small(clip_path) + ["SEED", "1"])
    torch.manual_seed(1)
    init = build_prompted_clip(cfg, ["a", "b"], torch.device("cpu"), verbose=False).state_dict()
    assert set(init) == set(trained)  # layer-0 text context: initialised from the words "a photo of a", then trained
    assert not torch.equal(init["prompt_learner.text.0"], trained["prompt_learner.text.0"])
    # an altered checkpoint (bytes differ from what the manifest published) is refused for evaluation too
    with open(learner_file, "ab") as f:
        f.write(b"\0")
    code, out = evaluate("altered", "eurosat", "DATASET.SUBSAMPLE_CLASSES", "new")
    assert code == 2 and "not the file epoch 1 saved" in log_text(out)


@pytest.mark.parametrize("engine", ENGINES)
def test_own_image_folder_base_to_new(data_root, clip_path, tmp_path, engine):
    """DATA/imagefolder/<class>/*.png: trained on its base classes, evaluated on the new ones."""
    _need(engine)
    train, new = tmp_path / "base", tmp_path / "new"
    assert train_main(argv(data_root, clip_path, train, "imagefolder", engine=engine,
                           opts=("DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base"))) == 0
    assert train_main(argv(data_root, clip_path, new, "imagefolder", "--eval-only", "--model-dir", str(train),
                           "--load-epoch", "1", engine=engine,
                           opts=("DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "new"))) == 0
    split = Path(data_root) / "imagefolder" / "split_prometar_ImageFolder.json"
    assert split.is_file()
    for folder in (train, new):
        record = RunFolder(str(folder)).provenance()["runs"][-1]
        assert record["inputs"][str(split)] == sha256_file(str(split))  # the split the result came from
    log = log_text(new)
    assert "Loading dataset: ImageFolder" in log and "SUBSAMPLE NEW CLASSES!" in log and "=> result" in log


@pytest.mark.parametrize("engine", ENGINES)
def test_best_val_survives_a_resume(data_root, clip_path, tmp_path, monkeypatch, engine):
    """TEST.FINAL_MODEL best_val: the best result so far is restored on resume, so the first epoch after a resume
    cannot replace model-best with a worse model (scripted validation results: epoch 1 is the best)."""
    _need(engine)
    if engine == "dassl":
        from prometar.dassl.trainerx import ProMetaR as Trainer
    else:
        from prometar.engine.trainer import Trainer
    val = {1: 50.0, 2: 40.0, 3: 30.0}
    original_test = Trainer.test

    def scripted(self, split=None):
        return val[self.epoch + 1] if split == "val" else original_test(self, split)

    monkeypatch.setattr(Trainer, "test", scripted)
    opts = ("DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base", "TEST.FINAL_MODEL", "best_val")
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert train_main(argv(data_root, clip_path, full, "eurosat", engine=engine, opts=opts, epochs=3)) == 0
    original_epoch = Trainer.run_epoch

    def crash_in_epoch_3(self):
        if self.epoch == 2:
            raise KeyboardInterrupt  # killed during epoch 3: epochs 1 and 2 are published
        original_epoch(self)

    monkeypatch.setattr(Trainer, "run_epoch", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_main(argv(data_root, clip_path, cut, "eurosat", engine=engine, opts=opts, epochs=3))
    monkeypatch.setattr(Trainer, "run_epoch", original_epoch)
    assert train_main(argv(data_root, clip_path, cut, "eurosat", engine=engine, opts=opts, epochs=3)) == 0
    assert "Best validation result so far: 50.00 (restored)" in log_text(cut)
    for folder in (full, cut):
        best = load_checkpoint(str(folder / "VLPromptLearner" / "model-best.pth.tar"))
        assert best["epoch"] == 1 and best["val_result"] == 50.0
        RunFolder(str(folder)).verify_epoch("best")  # published by manifest-best.json
    a = load_checkpoint(str(full / "VLPromptLearner" / "model-best.pth.tar"))["state_dict"]
    b = load_checkpoint(str(cut / "VLPromptLearner" / "model-best.pth.tar"))["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert accuracy(full) == accuracy(cut)  # the deployed (best-val) model gives the same final result


def _no_flock(monkeypatch):
    import fcntl

    def unsupported(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")  # as NFS / Lustre mounted without locks answer

    monkeypatch.setattr(fcntl, "flock", unsupported)


def test_lock_without_flock_uses_an_exclusive_file(tmp_path, monkeypatch, capsys):
    _no_flock(monkeypatch)
    folder = str(tmp_path / "run")
    first = RunLock(folder).acquire()
    assert first.mode == "file" and "flock unsupported here" in capsys.readouterr().out
    assert open(os.path.join(folder, ".lock")).read() == f"{socket.gethostname()} {os.getpid()}\n"
    with pytest.raises(RunFolderBusy, match=str(os.getpid())):
        RunLock(folder).acquire()  # a live holder (this process) blocks
    first.release()
    assert not os.path.exists(os.path.join(folder, ".lock"))
    # a lock file left by a process that no longer runs on this host is stale: taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with open(os.path.join(folder, ".lock"), "w") as f:
        f.write(f"{socket.gethostname()} {dead.stdout.strip()}\n")
    RunLock(folder).acquire().release()
    assert f"stale lock of process {dead.stdout.strip()}" in capsys.readouterr().out
    # one held on another host cannot be checked from here: refused, naming the host and the file to delete
    with open(os.path.join(folder, ".lock"), "w") as f:
        f.write("node-17 4242\n")
    with pytest.raises(RunFolderBusy, match="4242 on host node-17"):
        RunLock(folder).acquire()


def test_runs_and_lock_errors_without_flock(data_root, clip_path, tmp_path, monkeypatch, capsys):
    """With flock unsupported a run still trains (and a second run into the folder would be refused); a .lock
    that is a folder ends with one ERROR line, exit 2."""
    _no_flock(monkeypatch)
    out = tmp_path / "run"
    assert train_main(argv(data_root, clip_path, out, "eurosat", opts=("DATASET.NUM_SHOTS", "2"))) == 0
    assert "exclusive lock file instead" in log_text(out) + capsys.readouterr().out
    assert not (out / ".lock").exists()  # released
    (tmp_path / "dir" / ".lock").mkdir(parents=True)
    assert train_main(argv(data_root, clip_path, tmp_path / "dir", "eurosat")) == 2
    assert "is a folder, but a run folder's lock must be a file" in capsys.readouterr().out


@pytest.mark.parametrize("engine", ENGINES)
def test_device_flag_is_honoured(data_root, clip_path, tmp_path, engine, capsys):
    _need(engine)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal of --device cuda cannot be shown here")
    args = argv(data_root, clip_path, tmp_path / "cuda", "eurosat", engine=engine)
    args[args.index("--device") + 1] = "cuda"
    assert train_main(args) == 2
    assert "--device cuda: CUDA is not available on this machine" in capsys.readouterr().out
    assert not (tmp_path / "cuda").exists()  # nothing ran, nothing was written


def test_several_gpus_say_which_one_trains(monkeypatch, capsys):
    from prometar.engine.parts import announce_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: "Fake GPU")
    announce_device(torch.device("cuda", 2))
    out = capsys.readouterr().out
    assert "Using one GPU (cuda:2, Fake GPU) of the 4 visible" in out and "second derivatives" in out
    announce_device(torch.device("cpu"))
    assert capsys.readouterr().out == ""
