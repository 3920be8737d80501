"""Built-in engine end to end through train.py's entry point: files, log lines, eval-only, resume, divergence."""
import os

import pytest
import torch
from fake_data import make_fake_dataset

from prometar.cli import train_main
from prometar.engine.checkpoint import load_checkpoint
from prometar.meta import ProMetaRStep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(REPO, "configs", "trainers", "ProMetaR", "vit_b16_c2_ep10_batch4_4+4ctx.yaml")
DATA_CFG = os.path.join(REPO, "configs", "datasets", "eurosat.yaml")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_fake_dataset("EuroSAT", str(root), n_classes=4, n_per_class=12, image_size=40)
    return str(root)


def run(data_root, clip_path, out, *extra_args, epochs=1, sub="base", opts=()):
    argv = ["--root", data_root, "--seed", "1", "--trainer", "ProMetaR", "--dataset-config-file", DATA_CFG,
            "--config-file", CFG, "--output-dir", str(out), "--engine", "builtin", "--device", "cpu", *extra_args,
            "MODEL.BACKBONE.NAME", str(clip_path), "INPUT.SIZE", "(32, 32)", "TRAINER.PROMETAR.PREC", "fp32",
            "TRAINER.PROMETAR.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMETAR.PROMPT_DEPTH_VISION", "2",
            "OPTIM.MAX_EPOCH", str(epochs), "OPTIM_VNET.MAX_EPOCH", str(epochs), "DATASET.NUM_SHOTS", "4",
            "DATASET.SUBSAMPLE_CLASSES", sub, "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "16",
            "TRAIN.PRINT_FREQ", "2", *opts]
    return train_main(argv)


def read_log(out):
    with open(os.path.join(out, "log.txt")) as f:
        return f.read()


def test_train_then_eval_new_classes(data_root, small_clip_path, tmp_path):
    train_dir = tmp_path / "train_base"
    assert run(data_root, small_clip_path, train_dir) == 0
    for rel in ("log.txt", "config.yaml", "VLPromptLearner/model.pth.tar-1", "VLPromptLearner/checkpoint",
                "GradientModulator/model.pth.tar-1"):
        assert (train_dir / rel).is_file(), rel
    log = read_log(train_dir)
    assert log.startswith("Engine: built-in")
    assert log.count("Text side: all 2 classes at once (automatic") == 1  # TRAINER.PROMETAR.TEXT_CHUNK, logged once
    for line in ("SUBSAMPLE BASE CLASSES!", "epoch [1/1] batch [2/2]", "ce ", "reg_text ", "meta_loss ",
                 "Checkpoint saved to", "Finish training", "Deploy the last-epoch model",
                 "Evaluate on the *test* set", "=> result", "* accuracy:", "* macro_f1:"):
        assert line in log, line
    ckpt = load_checkpoint(str(train_dir / "VLPromptLearner/model.pth.tar-1"))
    assert {"state_dict", "epoch", "optimizer", "scheduler", "val_result"} <= set(ckpt)
    assert ckpt["epoch"] == 1 and all(k.startswith("prompt_learner.") for k in ckpt["state_dict"])
    assert (train_dir / "VLPromptLearner/checkpoint").read_text() == "model.pth.tar-1\n"

    test_dir = tmp_path / "test_new"
    assert run(data_root, small_clip_path, test_dir, "--eval-only", "--model-dir", str(train_dir),
               "--load-epoch", "1", sub="new") == 0
    log = read_log(test_dir)
    assert "SUBSAMPLE NEW CLASSES!" in log and "Loading weights to VLPromptLearner" in log and "=> result" in log
    assert "Finish training" not in log

    # a missing epoch, or no model-best without --load-epoch: one ERROR line naming what exists, exit 2
    assert run(data_root, small_clip_path, tmp_path / "x", "--eval-only", "--model-dir", str(train_dir),
               "--load-epoch", "7", sub="new") == 2
    assert "model.pth.tar-7\": epochs saved there: 1" in read_log(tmp_path / "x")
    assert run(data_root, small_clip_path, tmp_path / "y", "--eval-only", "--model-dir", str(train_dir),
               sub="new") == 2
    assert "written only by a run with TEST.FINAL_MODEL best_val; pass --load-epoch N" in read_log(tmp_path / "y")


def test_resume_after_a_crash_equals_an_uninterrupted_run(data_root, small_clip_path, tmp_path, monkeypatch):
    full = tmp_path / "full"
    assert run(data_root, small_clip_path, full, epochs=2) == 0

    calls = {"n": 0}
    original = ProMetaRStep.__call__

    def crash_in_epoch_2(self, images, labels):
        calls["n"] += 1
        if calls["n"] == 3:  # 2 batches per epoch: the first batch of epoch 2
            raise KeyboardInterrupt("simulated crash")
        return original(self, images, labels)

    crashed = tmp_path / "crashed"
    monkeypatch.setattr(ProMetaRStep, "__call__", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run(data_root, small_clip_path, crashed, epochs=2)
    monkeypatch.setattr(ProMetaRStep, "__call__", original)
    assert (crashed / "VLPromptLearner/model.pth.tar-1").is_file()
    assert run(data_root, small_clip_path, crashed, epochs=2) == 0  # same command: resumes
    assert not (crashed / "VLPromptLearner/model.pth.tar-1").exists()  # final layout as Dassl's
    for name in ("VLPromptLearner", "GradientModulator"):
        a = load_checkpoint(str(full / name / "model.pth.tar-2"))
        b = load_checkpoint(str(crashed / name / "model.pth.tar-2"))
        for key in a["state_dict"]:
            assert torch.equal(a["state_dict"][key], b["state_dict"][key]), (name, key)
    logs = [f for f in os.listdir(crashed) if f.startswith("log.txt")]
    assert len(logs) == 2  # Dassl's rule: the second run writes log.txt-<timestamp>
    resumed = open(crashed / sorted(logs)[-1]).read()
    assert "Found checkpoint at" in resumed and "Previous epoch: 1" in resumed


def test_divergence_stops_with_step_and_keeps_last_checkpoint(data_root, small_clip_path, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = ProMetaRStep.__call__

    def diverge(self, images, labels):
        calls["n"] += 1
        if calls["n"] == 4:
            raise FloatingPointError("cross-entropy is nan: training diverged")
        return original(self, images, labels)

    monkeypatch.setattr(ProMetaRStep, "__call__", diverge)
    out = tmp_path / "nan"
    assert run(data_root, small_clip_path, out, epochs=2) == 3
    log = read_log(out)
    kept = out / "VLPromptLearner" / "model.pth.tar-1"
    assert "epoch 2, batch 2 (step 4)" in log and str(kept) in log and kept.is_file()


def test_unknown_config_key_is_named(data_root, small_clip_path, tmp_path, capsys):
    assert run(data_root, small_clip_path, tmp_path / "bad", opts=("TRAINER.PROMETAR.NOT_A_KEY", "1")) == 2
    assert "ERROR: while merging command-line opts: Non-existent key: TRAINER.PROMETAR.NOT_A_KEY" in \
        capsys.readouterr().out


def test_plain_learner_baseline_trains_without_modulator(data_root, small_clip_path, tmp_path):
    out = tmp_path / "ivlp"
    assert run(data_root, small_clip_path, out, opts=("TRAINER.PROMETAR.META_REG", "False")) == 0
    assert (out / "VLPromptLearner/model.pth.tar-1").is_file()
    assert not (out / "GradientModulator").exists()


@pytest.mark.parametrize("config", ["vit_b16_c2_ep10_batch4_4ctx_coop", "vit_b16_c2_ep10_batch4_4ctx_vpt_metareg",
                                    "vit_b16_c2_ep5_batch4_2ctx_maple_metareg"])
def test_every_learner_trains_one_epoch_through_train_py(data_root, small_clip_path, tmp_path, config, monkeypatch):
    monkeypatch.setattr(f"{__name__}.CFG", os.path.join(REPO, "configs", "trainers", "ProMetaR", config + ".yaml"))
    out = tmp_path / config
    assert run(data_root, small_clip_path, out) == 0
    log = read_log(out)
    names = {"_coop": "CoOpLearner", "_vpt": "VPTLearner", "_maple": "MaPLeLearner"}
    learner = next(v for k, v in names.items() if k in config)
    assert learner in log and "=> result" in log
    assert (out / "GradientModulator").exists() == config.endswith("metareg")
