"""Run integrity with real faults: SIGKILL inside the checkpoint save, disk full, a held lock, a changed config."""
import errno
import os
import subprocess
import sys

import pytest
import torch
from fake_data import make_fake_dataset

from prometar.engine.checkpoint import load_checkpoint
from prometar.engine.runfolder import RunFolderBusy, RunLock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(REPO, "configs", "trainers", "ProMetaR", "vit_b16_c2_ep10_batch4_4+4ctx.yaml")
DATA_CFG = os.path.join(REPO, "configs", "datasets", "eurosat.yaml")
NAMES = ("VLPromptLearner", "GradientModulator")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_fake_dataset("EuroSAT", str(root), n_classes=4, n_per_class=12, image_size=40)
    return str(root)


def argv(data_root, clip_path, out, *extra, engine="builtin", opts=()):
    return ["--root", data_root, "--seed", "1", "--trainer", "ProMetaR", "--dataset-config-file", DATA_CFG,
            "--config-file", CFG, "--output-dir", str(out), "--engine", engine, "--device", "cpu", *extra,
            "MODEL.BACKBONE.NAME", str(clip_path), "INPUT.SIZE", "(32, 32)", "TRAINER.PROMETAR.PREC", "fp32",
            "TRAINER.PROMETAR.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMETAR.PROMPT_DEPTH_VISION", "2",
            "OPTIM.MAX_EPOCH", "2", "OPTIM_VNET.MAX_EPOCH", "2", "DATASET.NUM_SHOTS", "4",
            "DATASET.SUBSAMPLE_CLASSES", "base", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "16",
            "TRAIN.PRINT_FREQ", "2", "OPTIM_VNET.LR", "0.01", *opts]


def run_sub(args, fault=None):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    env.pop("PROMETAR_FAULT_SAVE_STEP", None)
    if fault is not None:
        env["PROMETAR_FAULT_SAVE_STEP"] = str(fault)
    return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], env=env,
                          capture_output=True, text=True, timeout=300)


def final_tensors(out):
    return {name: load_checkpoint(os.path.join(out, name, "model.pth.tar-2")) for name in NAMES}


def assert_same(a, b):
    for name in NAMES:
        for key, value in a[name]["state_dict"].items():
            assert torch.equal(value, b[name]["state_dict"][key]), (name, key)


def _dassl_or_skip(engine):
    if engine == "dassl":
        pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (not on PyPI): the Dassl-engine "
                                            "variant needs it installed by hand")


@pytest.mark.parametrize("engine", ["builtin", "dassl"])
def test_sigkill_at_each_save_step_then_resume_equals_uninterrupted(data_root, small_clip_path, tmp_path, engine):
    """With the shipped config (TRAIN.CHECKPOINT_FREQ 0: Dassl itself would save only after the last epoch) both
    engines checkpoint every epoch, so a run killed in epoch 2 resumes from epoch 1."""
    _dassl_or_skip(engine)
    freq = ()  # the shipped config's own checkpoint frequency
    full = tmp_path / "full"
    r = run_sub(argv(data_root, small_clip_path, full, engine=engine, opts=freq))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (full / "manifest-2.json").is_file() and (full / "config.yaml").is_file()
    assert not (full / "manifest-1.json").exists() and not (full / "VLPromptLearner" / "model.pth.tar-1").exists()
    reference = final_tensors(full)
    # save steps: 1 = learner written, 2 = modulator written, 3 = manifest published (then killed in epoch 2)
    for step in (1, 2, 3):
        out = tmp_path / f"kill{step}"
        r = run_sub(argv(data_root, small_clip_path, out, engine=engine, opts=freq), fault=step)
        assert r.returncode == -9, (step, r.returncode, r.stderr[-2000:])
        if step < 3:  # the first epoch's save was cut: nothing is published
            assert not (out / "manifest-1.json").exists()
        r = run_sub(argv(data_root, small_clip_path, out, "--resume", str(out), engine=engine, opts=freq))
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.split("* accuracy:")[1].split("\n")[0] == open(full / "log.txt").read().split(
            "* accuracy:")[1].split("\n")[0]
        if step == 3:
            assert "Previous epoch: 1" in r.stdout
        if step == 1:
            assert "Refusing unfinished checkpoint epoch 1" in r.stdout and "model.pth.tar-1" in r.stdout
        assert_same(reference, final_tensors(out))
        assert not [f for _, _, fs in os.walk(out) for f in fs if ".tmp-" in f]


def test_mixed_epoch_is_refused_with_file_names(data_root, small_clip_path, tmp_path):
    out = tmp_path / "mixed"
    r = run_sub(argv(data_root, small_clip_path, out, opts=("TRAIN.CHECKPOINT_FREQ", "1")))
    assert r.returncode == 0, r.stderr
    # damage epoch 2: the modulator file of epoch 1 put in place of epoch 2's
    mod2 = out / "GradientModulator" / "model.pth.tar-2"
    mod2.write_bytes((out / "GradientModulator" / "model.pth.tar-1").read_bytes())
    (out / "VLPromptLearner" / "model.pth.tar-2").unlink()
    r = run_sub(argv(data_root, small_clip_path, out, opts=("TRAIN.CHECKPOINT_FREQ", "1")))
    assert r.returncode == 0, r.stderr
    assert "checkpoint epoch 2 is incomplete" in r.stdout and str(mod2) in r.stdout
    assert "Previous epoch: 1" in r.stdout


def test_disk_full_during_save_keeps_previous_epoch(data_root, small_clip_path, tmp_path, monkeypatch):
    import prometar.engine.checkpoint as ckpt
    from prometar.cli import train_main

    out = tmp_path / "full_disk"
    calls = {"n": 0}
    original = ckpt._atomic_write

    def failing(path, write, binary=True):
        if "model.pth.tar-2" in str(path) and "GradientModulator" in str(path):
            calls["n"] += 1
            # a real partial temp file, then ENOSPC, through the real helper
            def write_then_fail(f):
                f.write(b"x" * 100)
                raise OSError(errno.ENOSPC, "No space left on device")
            return original(path, write_then_fail, binary)
        return original(path, write, binary)

    monkeypatch.setattr(ckpt, "_atomic_write", failing)
    with pytest.raises(OSError) as info:
        train_main(argv(data_root, small_clip_path, out))
    assert info.value.errno == errno.ENOSPC and calls["n"] == 1
    assert (out / "manifest-1.json").is_file() and not (out / "manifest-2.json").exists()
    assert not [f for _, _, fs in os.walk(out) for f in fs if ".tmp-" in f]
    from prometar.engine.integrity import verify_manifest

    files = verify_manifest(str(out), 1)
    assert sorted(files) == sorted(os.path.join(n, "model.pth.tar-1") for n in NAMES)


@pytest.mark.parametrize("engine", ["builtin", "dassl"])
def test_second_run_into_a_locked_folder_is_refused_with_pid(data_root, small_clip_path, tmp_path, engine):
    _dassl_or_skip(engine)
    out = tmp_path / "locked"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys,time; sys.path.insert(0, sys.argv[1]);"
                               "from prometar.engine.runfolder import RunLock; RunLock(sys.argv[2]).acquire();"
                               "print('held', flush=True); time.sleep(60)", REPO, str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = run_sub(argv(data_root, small_clip_path, out, engine=engine))
        assert r.returncode == 2 and f"in use by process {holder.pid}" in r.stdout
        assert not (out / "VLPromptLearner").exists()
        with pytest.raises(RunFolderBusy, match=str(holder.pid)):
            RunLock(str(out)).acquire()
    finally:
        holder.kill()
        holder.wait()
    RunLock(str(out)).acquire().release()  # a dead holder does not block


def test_changed_config_is_refused_unless_flag(data_root, small_clip_path, tmp_path):
    from prometar.cli import train_main

    out = tmp_path / "cfg"
    assert train_main(argv(data_root, small_clip_path, out)) == 0
    saved = (out / "config.yaml").read_text()
    assert train_main(argv(data_root, small_clip_path, out, opts=("OPTIM.LR", "0.5"))) == 2
    assert (out / "config.yaml").read_text() == saved
    log = [f for f in os.listdir(out) if f.startswith("log.txt")]
    assert len(log) == 1  # refused before a log of its own
    # evaluating the folder's model: a key that changes the model is refused; the data side and training-only
    # keys may differ (new classes, another LR)
    ev = tmp_path / "eval"
    assert train_main(argv(data_root, small_clip_path, ev, "--eval-only", "--model-dir", str(out),
                           "--load-epoch", "2", opts=("TRAINER.PROMETAR.N_CTX_TEXT", "2"))) == 2
    assert train_main(argv(data_root, small_clip_path, ev, "--eval-only", "--model-dir", str(out),
                           "--load-epoch", "2", opts=("DATASET.SUBSAMPLE_CLASSES", "new", "OPTIM.LR", "0.5"))) == 0
    # the flag lets it go on; config.yaml still describes the trained model
    assert train_main(argv(data_root, small_clip_path, out, "--allow-config-change", opts=("OPTIM.LR", "0.5"))) == 0
    assert (out / "config.yaml").read_text() == saved


def test_config_rules_for_resume_and_evaluate(tmp_path, capsys):
    from prometar.config import dump_cfg, load_cfg
    from prometar.engine.runfolder import ConfigChanged, RunFolder, fingerprint

    cfg = load_cfg(DATA_CFG, CFG, ["OPTIM.LR", "0.1"])
    dump_cfg(cfg, str(tmp_path / "config.yaml"))
    folder = RunFolder(str(tmp_path))
    new = load_cfg(DATA_CFG, CFG, ["OPTIM.LR", "0.5", "DATASET.SUBSAMPLE_CLASSES", "new", "OUTPUT_DIR", "elsewhere",
                                   "DATALOADER.NUM_WORKERS", "0"])
    with pytest.raises(ConfigChanged, match=r"OPTIM.LR: 0.1 -> 0.5") as info:
        folder.check(new, "resume")
    assert "DATASET.SUBSAMPLE_CLASSES: 'all' -> 'new'" in str(info.value)  # resuming on other classes: refused
    assert "OUTPUT_DIR" not in str(info.value) and "NUM_WORKERS" not in str(info.value)  # runtime keys
    folder.check(new, "evaluate")  # the data side and training-only keys may differ for an evaluation
    model = load_cfg(DATA_CFG, CFG, ["TRAINER.PROMETAR.PROMPT_DEPTH_TEXT", "2", "MODEL.BACKBONE.NAME", "ViT-B/32"])
    with pytest.raises(ConfigChanged, match="2 keys that change the model") as info:
        folder.check(model, "evaluate")
    assert "MODEL.BACKBONE.NAME: 'ViT-B/16' -> 'ViT-B/32'" in str(info.value)
    assert "PROMPT_DEPTH_TEXT: 9 -> 2" in str(info.value)
    folder.check(new, "resume", allow=True)
    assert "OPTIM.LR" in capsys.readouterr().out
    # fingerprints: equal exactly when nothing compared differs; the seed can be left out to group a row's seeds
    assert fingerprint(cfg) == fingerprint(folder.saved_config()) != fingerprint(new)
    assert fingerprint(new, "evaluate") == fingerprint(cfg, "evaluate") != fingerprint(model, "evaluate")
    seed2 = load_cfg(DATA_CFG, CFG, ["OPTIM.LR", "0.1", "SEED", "2"])
    assert fingerprint(seed2) != fingerprint(cfg) and fingerprint(seed2, exclude=("SEED",)) == fingerprint(
        cfg, exclude=("SEED",))


def test_nonfinite_weights_are_not_published(data_root, small_clip_path, tmp_path, monkeypatch):
    from prometar.cli import train_main
    from prometar.engine.trainer import Trainer

    original = Trainer.run_epoch

    def blow_up(self):
        original(self)
        if self.epoch == 1:
            with torch.no_grad():
                next(p for p in self.model.parameters() if p.requires_grad).fill_(float("inf"))

    monkeypatch.setattr(Trainer, "run_epoch", blow_up)
    out = tmp_path / "inf"
    assert train_main(argv(data_root, small_clip_path, out, opts=("TRAIN.CHECKPOINT_FREQ", "1"))) == 3
    log = open(out / "log.txt").read()
    assert "diverged weights" in log and "epoch 2 not saved" in log
    assert str(out / "VLPromptLearner" / "model.pth.tar-1") in log
    assert not (out / "manifest-2.json").exists() and (out / "manifest-1.json").is_file()


@pytest.mark.parametrize("engine", ["builtin", "dassl"])
def test_divergence_names_last_good_epoch_one_line(data_root, small_clip_path, tmp_path, monkeypatch, engine):
    _dassl_or_skip(engine)
    from prometar.cli import train_main
    from prometar.meta import ProMetaRStep

    calls = {"n": 0}
    original = ProMetaRStep.__call__

    def diverge(self, images, labels):
        calls["n"] += 1
        if calls["n"] == 4:  # 2 batches per epoch: second batch of epoch 2
            raise FloatingPointError("cross-entropy is nan: training diverged")
        return original(self, images, labels)

    monkeypatch.setattr(ProMetaRStep, "__call__", diverge)
    out = tmp_path / engine
    assert train_main(argv(data_root, small_clip_path, out, engine=engine, opts=("TRAIN.CHECKPOINT_FREQ", "1"))) == 3
    log = open(out / "log.txt").read()
    kept = out / "VLPromptLearner" / "model.pth.tar-1"
    assert f"Last good checkpoint: epoch 1, {kept}" in log and "epoch 2, batch 2" in log
    assert "Traceback" not in log and not (out / "manifest-2.json").exists()


def test_real_disk_full_keeps_previous_epoch(data_root, small_clip_path, tmp_path):
    """A real, tiny tmpfs as output folder: epoch 1 fits, epoch 2's save hits ENOSPC."""
    from prometar.cli import train_main

    probe = tmp_path / "probe"
    assert train_main(argv(data_root, small_clip_path, probe, opts=("OPTIM.MAX_EPOCH", "1"))) == 0
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(probe) for f in fs)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    kib = (size + size // 2) // 1024 + 64
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        with pytest.raises(OSError) as info:
            train_main(argv(data_root, small_clip_path, mnt / "run"))
        assert info.value.errno == errno.ENOSPC
        out = mnt / "run"
        assert (out / "manifest-1.json").is_file() and not (out / "manifest-2.json").exists()
        assert not [f for _, _, fs in os.walk(out) for f in fs if ".tmp-" in f]
        from prometar.engine.integrity import verify_manifest

        assert len(verify_manifest(str(out), 1)) == 2
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_folder_without_manifest_resumes_only_when_pointers_agree(tmp_path, capsys):
    from prometar.engine.integrity import newest_complete_epoch

    for name in ("A", "B"):
        (tmp_path / name).mkdir()
        torch.save({}, tmp_path / name / "model.pth.tar-2")
        (tmp_path / name / "checkpoint").write_text("model.pth.tar-2\n")
    assert newest_complete_epoch(str(tmp_path), ["A", "B"])[0] == 2  # a Dassl / older prometar folder
    (tmp_path / "B" / "checkpoint").write_text("model.pth.tar-1\n")
    assert newest_complete_epoch(str(tmp_path), ["A", "B"])[0] is None
    assert "B/checkpoint -> model.pth.tar-1" in capsys.readouterr().out


def test_diverged_state_detection_covers_huge_finite_values():
    """A state can diverge while the loss is still finite (OPTIM.LR 1e6 drove prompts to ~1e15 before any NaN):
    such a state is not 'good' either; normal-sized weights and optimiser-free entries pass."""
    import torch

    from prometar.engine.integrity import MAX_ABS_VALUE, nonfinite_tensors

    ok = {"a": torch.full((3,), 0.23), "b": {"c": torch.zeros(2)}, "n": torch.arange(4)}
    assert nonfinite_tensors(ok) == []
    huge = {"a": torch.tensor([0.1, 2.4e15]), "b": {"c": torch.tensor([float("nan")])}, "d": [torch.tensor([1.0])]}
    assert nonfinite_tensors(huge) == ["a", "b.c"]
    assert nonfinite_tensors({"x": torch.tensor([MAX_ABS_VALUE])}) == []
    assert nonfinite_tensors({"x": torch.tensor([MAX_ABS_VALUE * 2])}) == ["x"]
