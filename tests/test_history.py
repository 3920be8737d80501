"""Per-epoch history (history.jsonl, TensorBoard events) from both engines; resume never duplicates an epoch."""
import json
import os

import pytest
from fake_data import make_fake_dataset

from prometar.cli import train_main
from prometar.engine.history import EpochHistory, read_history
from prometar.meta import ProMetaRStep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(REPO, "configs", "trainers", "ProMetaR", "vit_b16_c2_ep10_batch4_4+4ctx.yaml")
DATA_CFG = os.path.join(REPO, "configs", "datasets", "eurosat.yaml")
METERS = {"ce", "reg_text", "reg_image", "meta_loss", "gate", "meta"}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_fake_dataset("EuroSAT", str(root), n_classes=4, n_per_class=6, seed=0, image_size=32)
    return str(root)


def _opts(clip_path, epochs):
    return ["MODEL.BACKBONE.NAME", str(clip_path), "INPUT.SIZE", "(32, 32)", "TRAINER.PROMETAR.PREC", "fp32",
            "TRAINER.PROMETAR.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMETAR.PROMPT_DEPTH_VISION", "2",
            "OPTIM.MAX_EPOCH", str(epochs), "OPTIM_VNET.MAX_EPOCH", str(epochs), "DATASET.NUM_SHOTS", "2",
            "DATASET.SUBSAMPLE_CLASSES", "base", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "2",
            "DATALOADER.TEST.BATCH_SIZE", "16", "TRAIN.PRINT_FREQ", "2", "TRAIN.CHECKPOINT_FREQ", "1"]


def _argv(data_root, out, clip_path, epochs, *opts, builtin=True):
    flags = ["--engine", "builtin", "--device", "cpu"] if builtin else []
    return ["--root", data_root, "--seed", "1", "--trainer", "ProMetaR", "--dataset-config-file", DATA_CFG,
            "--config-file", CFG, "--output-dir", str(out), *flags, *_opts(clip_path, epochs), *opts]


def _lines(out):
    return [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]


def _check_records(records, epochs, engine):
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))
    for r in records:
        assert r["engine"] == engine and r["max_epoch"] == epochs
        assert METERS <= set(r["meters"]), r["meters"]
        assert r["lr"]["VLPromptLearner"] > 0 and r["lr"]["GradientModulator"] > 0
        assert r["epoch_s"] >= 0 and r["iter"] == r["epoch"] * 2  # 4 images, batch 2


def test_history_file_rewrites_later_epochs(tmp_path):
    h = EpochHistory(str(tmp_path), "builtin")
    for e in (1, 2, 3):
        h.record(e, 3, {"ce": 1.0 / e, "bad": float("nan")}, {"opt": 0.1}, val_acc=None)
    h2 = EpochHistory(str(tmp_path), "builtin")  # a resumed run redoes epoch 2
    rec = h2.record(2, 3, {"ce": 9.0}, {"opt": 0.2}, val_acc=50.0)
    lines = _lines(tmp_path)
    assert [r["epoch"] for r in lines] == [1, 2] and lines[1] == rec
    assert lines[1]["meters"] == {"ce": 9.0} and lines[1]["val_acc"] == 50.0 and "val_acc" not in lines[0]
    assert [r["epoch"] for r in read_history(str(tmp_path))] == [1, 2]
    assert read_history(str(tmp_path / "absent")) == []
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_builtin_engine_history_and_resume(data_root, small_clip_path, tmp_path, monkeypatch):
    """A crash in epoch 3 after a stale record of epochs 3-4 was left: the resumed run keeps one record each."""
    out = tmp_path / "run"
    calls = {"n": 0}
    original = ProMetaRStep.__call__

    def crash_in_epoch_3(self, images, labels):
        calls["n"] += 1
        if calls["n"] == 5:  # 2 batches per epoch: the first batch of epoch 3
            raise KeyboardInterrupt("simulated crash")
        return original(self, images, labels)

    monkeypatch.setattr(ProMetaRStep, "__call__", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_main(_argv(data_root, out, small_clip_path, 3))
    monkeypatch.setattr(ProMetaRStep, "__call__", original)
    first = _lines(out)
    assert [r["epoch"] for r in first] == [1, 2]
    # a run killed after writing a record but before its checkpoint leaves records past the checkpoint
    stale = dict(first[-1], epoch=3, engine="stale")
    with open(out / "history.jsonl", "a") as f:
        f.write(json.dumps(stale) + "\n" + json.dumps(dict(stale, epoch=4)) + "\n")
    assert train_main(_argv(data_root, out, small_clip_path, 3)) == 0
    records = _lines(out)
    _check_records(records, 3, "builtin")
    assert records[:2] == first  # epochs before the checkpoint are kept as written
    lr = [r["lr"]["VLPromptLearner"] for r in records]
    # the LR each epoch used: 1 constant warm-up epoch, then cosine over 3 epochs from 0.0025
    assert lr == pytest.approx([1e-5, 0.0025, 0.0025 * 0.75])
    events = os.listdir(out / "tensorboard") if (out / "tensorboard").is_dir() else []
    try:
        import torch.utils.tensorboard  # noqa: F401
    except Exception:  # tensorboard absent: no events, no error
        assert events == []
    else:
        assert any(n.startswith("events.out.tfevents") for n in events)


def test_builtin_engine_records_val_accuracy(data_root, small_clip_path, tmp_path):
    out = tmp_path / "bestval"
    assert train_main(_argv(data_root, out, small_clip_path, 1,
                            "TEST.FINAL_MODEL", "best_val")) == 0
    (rec,) = _lines(out)
    assert 0 <= rec["val_acc"] <= 100


def test_dassl_engine_history_and_resume(data_root, small_clip_path, tmp_path, monkeypatch):
    pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (not on PyPI): install it by hand to run "
                                        "the Dassl history test")
    from prometar.config import build_arg_parser
    from prometar.dassl.runner import main

    out = tmp_path / "dassl"
    calls = {"n": 0}
    original = ProMetaRStep.__call__

    def crash_in_epoch_3(self, images, labels):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("simulated crash")
        return original(self, images, labels)

    args = build_arg_parser().parse_args(_argv(data_root, out, small_clip_path, 3, "USE_CUDA", "False", builtin=False))
    monkeypatch.setattr(ProMetaRStep, "__call__", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    monkeypatch.setattr(ProMetaRStep, "__call__", original)
    first = _lines(out)
    assert [r["epoch"] for r in first] == [1, 2]
    with open(out / "history.jsonl", "a") as f:
        f.write(json.dumps(dict(first[-1], epoch=3, engine="stale")) + "\n")
    args = build_arg_parser().parse_args(_argv(data_root, out, small_clip_path, 3, "USE_CUDA", "False", builtin=False))
    assert main(args) == 0
    records = _lines(out)
    _check_records(records, 3, "dassl")
    assert records[:2] == first
    # the meters are the epoch averages Dassl also sends to TensorBoard
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(out / "tensorboard"))


def test_tensorboard_is_optional(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    h = EpochHistory(str(tmp_path), "builtin", tensorboard=True)
    assert not h.tensorboard
    h.record(1, 1, {"ce": 0.5}, {"opt": 0.1})
    assert [r["epoch"] for r in read_history(str(tmp_path))] == [1] and not (tmp_path / "tensorboard").exists()
