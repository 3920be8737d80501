"""Engine utilities: optimiser, LR law, stdout tee, meters, evaluator, checkpoints."""
import math
import os
import re
import sys
import warnings

import pytest
import torch

from prometar.config import extend_cfg, get_cfg_default
from prometar.engine import checkpoint as ckpt
from prometar.engine.evaluator import Classification, build_evaluator, confusion_matrix, macro_f1
from prometar.engine.logging import setup_logger
from prometar.engine.lr import WarmupLRScheduler, build_lr_scheduler, lr_table
from prometar.engine.meters import AverageMeter, MetricMeter, format_duration, format_progress, should_print
from prometar.engine.optim import build_optimizer


def _optim_cfg(**kw):
    cfg = extend_cfg(get_cfg_default())
    node = cfg.OPTIM
    for k, v in kw.items():
        node[k] = v
    return node


PROMETAR = dict(NAME="sgd", LR=0.0025, MAX_EPOCH=10, LR_SCHEDULER="cosine", WARMUP_EPOCH=1,
                WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5)


# ---------------------------------------------------------------- optimiser
@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                       ("amsgrad", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                       ("rmsprop", torch.optim.RMSprop), ("radam", torch.optim.RAdam)])
def test_build_optimizer_names(name, cls):
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model, _optim_cfg(NAME=name, LR=0.01))
    assert type(opt) is cls and opt.param_groups[0]["lr"] == 0.01
    assert opt.param_groups[0]["weight_decay"] == 5e-4
    if name == "sgd":
        g = opt.param_groups[0]
        assert (g["momentum"], g["dampening"], g["nesterov"]) == (0.9, 0, False)
    if name == "amsgrad":
        assert opt.param_groups[0]["amsgrad"] is True
    if name in ("adam", "adamw", "radam"):
        assert opt.param_groups[0]["betas"] == (0.9, 0.999)


def test_build_optimizer_errors_and_params():
    with pytest.raises(ValueError, match="sgd"):
        build_optimizer(torch.nn.Linear(2, 2), _optim_cfg(NAME="lion"))
    p = torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer([p], _optim_cfg(NAME="sgd"))
    assert opt.param_groups[0]["params"][0] is p
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    staged = build_optimizer(model, _optim_cfg(NAME="sgd", LR=0.1, STAGED_LR=True, NEW_LAYERS=("1",)))
    assert [g["lr"] for g in staged.param_groups] == pytest.approx([0.01, 0.1])
    with pytest.raises(TypeError):
        build_optimizer([p], _optim_cfg(STAGED_LR=True))


# ---------------------------------------------------------------- LR law
def _reference_lrs(base, epochs, sched="cosine", max_epoch=10, warmup=1, wtype="constant", cons=1e-5,
                   min_lr=1e-5, recount=True, stepsize=(-1,), gamma=0.1):
    """Dassl's construction re-enacted with real torch schedulers (warm-up emulated step by step)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    if sched == "cosine":
        succ = torch.optim.lr_scheduler.CosineAnnealingLR(opt, float(max_epoch))
    elif sched == "single_step":
        size = stepsize[-1] if stepsize[-1] > 0 else max_epoch
        succ = torch.optim.lr_scheduler.StepLR(opt, step_size=size, gamma=gamma)
    else:
        succ = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(stepsize), gamma=gamma)

    def warm(e):
        if wtype == "constant":
            return cons
        return min_lr if e == 0 else base * e / warmup

    if warmup > 0 and not recount:
        succ.last_epoch = warmup
    wrapper_epoch = 0
    if warmup > 0:
        opt.param_groups[0]["lr"] = warm(0)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(epochs):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            if warmup > 0 and wrapper_epoch < warmup:
                wrapper_epoch += 1
                opt.param_groups[0]["lr"] = warm(wrapper_epoch) if wrapper_epoch < warmup else succ.get_last_lr()[0]
            else:
                succ.step()
    return out


def _run(optim_cfg, epochs=None, base=None):
    """LR the optimiser holds during each epoch when stepping once per epoch."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base if base is not None else optim_cfg.LR)
    sched = build_lr_scheduler(opt, optim_cfg)
    out = []
    for _ in range(epochs or optim_cfg.MAX_EPOCH):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _close(a, b, rel=1e-9):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert math.isclose(x, y, rel_tol=rel, abs_tol=0.0), (a, b)


def test_lr_table_prometar_optim_and_vnet():
    table = [1e-5, 2.5e-3, 2.43882e-3, 2.26127e-3, 1.98473e-3, 1.63627e-3, 1.25e-3, 8.63729e-4, 5.15268e-4,
             2.38729e-4]
    got = _run(_optim_cfg(**PROMETAR))
    exact = [1e-5] + [2.5e-3 * (1 + math.cos(math.pi * (e - 1) / 10)) / 2 for e in range(1, 10)]
    _close(got, exact)
    _close(got, table, rel=5e-6)  # the protocol table is printed with 6 significant digits
    _close(got, _reference_lrs(2.5e-3, 10))
    vnet = _optim_cfg(**{**PROMETAR, "LR": 0.00025, "WARMUP_CONS_LR": 1e-6})
    got_v = _run(vnet)
    _close(got_v, [1e-6] + [2.5e-4 * (1 + math.cos(math.pi * (e - 1) / 10)) / 2 for e in range(1, 10)])
    _close([got_v[1], got_v[2], got_v[-1]], [2.5e-4, 2.43882e-4, 2.38729e-5], rel=5e-6)
    _close(lr_table(vnet), got_v)


def test_lr_table_maple():
    cfg = _optim_cfg(**{**PROMETAR, "LR": 0.0035, "MAX_EPOCH": 5})
    _close(_run(cfg), [1e-5, 3.5e-3, 3.16578e-3, 2.29078e-3, 1.20922e-3], rel=5e-6)
    _close(_run(cfg), _reference_lrs(3.5e-3, 5, max_epoch=5))


def test_lr_no_warmup_and_construction_writes_warmup_lr():
    cfg = _optim_cfg(**{**PROMETAR, "WARMUP_EPOCH": -1})
    got = _run(cfg)
    _close(got, [2.5e-3 * (1 + math.cos(math.pi * e / 10)) / 2 for e in range(10)])
    _close(got, _reference_lrs(2.5e-3, 10, warmup=0))
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.0025)
    build_lr_scheduler(opt, _optim_cfg(**PROMETAR))
    assert opt.param_groups[0]["lr"] == 1e-5
    assert opt.param_groups[0]["initial_lr"] == 0.0025


@pytest.mark.parametrize("kw", [
    dict(sched="cosine", recount=False),
    dict(sched="cosine", wtype="linear", warmup=3, min_lr=1e-4),
    dict(sched="cosine", wtype="linear", warmup=3, recount=False),
    dict(sched="single_step", stepsize=(4,)),
    dict(sched="single_step", stepsize=(-1,), warmup=0),
    dict(sched="single_step", stepsize=(3,), recount=False, warmup=2),
    dict(sched="multi_step", stepsize=(2, 5, 5), warmup=0),
    dict(sched="multi_step", stepsize=(2, 5), warmup=2, recount=False),
])
def test_lr_matches_torch_driven_dassl_semantics(kw):
    base, epochs = 0.01, 14
    ref = _reference_lrs(base, epochs, **kw)
    cfg = _optim_cfg(LR=base, LR_SCHEDULER=kw["sched"], MAX_EPOCH=10, STEPSIZE=tuple(kw.get("stepsize", (-1,))),
                     WARMUP_EPOCH=kw.get("warmup", 1), WARMUP_TYPE=kw.get("wtype", "constant"),
                     WARMUP_MIN_LR=kw.get("min_lr", 1e-5), WARMUP_RECOUNT=kw.get("recount", True))
    _close(_run(cfg, epochs), ref)


def test_scheduler_state_dict_round_trip_mid_run(tmp_path):
    cfg = _optim_cfg(**PROMETAR)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=cfg.LR, momentum=0.9)
    sched = build_lr_scheduler(opt, cfg)
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    for _ in range(4):
        opt.step()
        sched.step()
    path = tmp_path / "s.pth"
    torch.save({"scheduler": sched.state_dict(), "optimizer": opt.state_dict()}, path)
    state = torch.load(path, weights_only=True)
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.LR, momentum=0.9)
    sched2 = build_lr_scheduler(opt2, cfg)
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    rest = []
    for _ in range(6):
        rest.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    _close(rest, _run(cfg)[4:])
    with pytest.raises(KeyError):
        sched2.load_state_dict({"foo": 1})


def test_scheduler_config_errors():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="cosine"):
        build_lr_scheduler(opt, _optim_cfg(LR_SCHEDULER="poly"))
    with pytest.raises(ValueError, match="constant"):
        build_lr_scheduler(opt, _optim_cfg(LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="exp"))
    with pytest.raises(TypeError):
        WarmupLRScheduler(opt, scheduler="multi_step", stepsize=3)


# ---------------------------------------------------------------- logging
def test_setup_logger_tee_and_timestamped_second_file(tmp_path):
    out = tmp_path / "run"
    original = sys.stdout
    tee = setup_logger(str(out))
    try:
        print("hello")
        # flushed to disk at once (a crash would not lose it)
        assert (out / "log.txt").read_text() == "hello\n"
    finally:
        tee.close()
    assert sys.stdout is original
    tee2 = setup_logger(str(out))
    print("second")
    tee3 = setup_logger(str(out))  # same second: still a new file
    print("third")
    tee3.close()
    tee2.close()
    assert sys.stdout is original
    names = sorted(os.listdir(out))
    assert names[0] == "log.txt" and len(names) == 3
    assert all(re.fullmatch(r"log\.txt-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d(-\d+)?", n) for n in names[1:])
    assert (out / "log.txt").read_text() == "hello\n"
    assert setup_logger(None) is None
    with setup_logger(str(tmp_path / "x.log")):
        print("file target")
    assert (tmp_path / "x.log").read_text() == "file target\n"


# ---------------------------------------------------------------- meters
def test_meters_and_progress_line():
    bt, dt, losses = AverageMeter(), AverageMeter(), MetricMeter()
    bt.update(0.45)
    bt.update(torch.tensor(0.41))
    dt.update(0.029)
    dt.update(0.001)
    losses.update({"loss": torch.tensor(0.0789), "acc": 50})
    losses.update({"loss": 0.0123, "acc": 100})
    line = format_progress(1, 10, 19, 20, bt, dt, losses, 2.43882e-3)
    assert line == ("epoch [2/10] batch [20/20] time 0.410 (0.430) data 0.001 (0.015) "
                    "loss 0.0123 (0.0456) acc 100.0000 (75.0000) lr 2.4388e-03 eta 0:01:08")
    assert should_print(19, 76, 20) and not should_print(18, 76, 20) and should_print(0, 5, 20)
    assert format_duration(3725.9) == "1:02:05"
    ema = AverageMeter(ema=True)
    ema.update(1.0)
    assert ema.avg == pytest.approx(0.1)
    with pytest.raises(TypeError):
        losses.update([1])


# ---------------------------------------------------------------- evaluator
def test_classification_block_and_metrics(capsys, tmp_path):
    ev = Classification(lab2cname={0: "cat", 1: "dog", 2: "eel"}, per_class_result=True, compute_cmat=True,
                        output_dir=str(tmp_path))
    gt = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 3])  # label 3 never in ground truth
    logits = torch.nn.functional.one_hot(pred, 4).float()
    ev.process(logits[:3], gt[:3])
    ev.process(logits[3:], gt[3:])
    res = ev.evaluate()
    # per-class F1 (labels 0,1,2): 2tp/(2tp+fp+fn) = 2/4, 4/5, 0/2
    f1 = 100 * (0.5 + 0.8 + 0.0) / 3
    assert list(res) == ["accuracy", "error_rate", "macro_f1", "perclass_accuracy"]
    assert res["accuracy"] == pytest.approx(50.0) and res["macro_f1"] == pytest.approx(f1)
    out = capsys.readouterr().out
    assert out.startswith("=> result\n* total: 6\n* correct: 3\n* accuracy: 50.0%\n* error: 50.0%\n"
                          f"* macro_f1: {f1:.1f}%\n=> per-class result\n")
    assert "* class: 0 (cat)\ttotal: 2\tcorrect: 1\tacc: 50.0%\n" in out
    assert "* average: 50.0%\n" in out and "Confusion matrix is saved to" in out
    cmat = torch.load(tmp_path / "cmat.pt", weights_only=True)
    assert cmat.shape == (4, 4) and cmat[1, 1] == 1.0
    ev.reset()
    with pytest.raises(RuntimeError):
        ev.evaluate()


def test_evaluator_thousands_and_build(capsys):
    cfg = extend_cfg(get_cfg_default())
    ev = build_evaluator(cfg)
    gt = torch.arange(4200) % 10
    logits = torch.nn.functional.one_hot(gt, 10).float()
    logits[:283] = torch.nn.functional.one_hot((gt[:283] + 1) % 10, 10).float()
    ev.process(logits, gt)
    ev.evaluate()
    out = capsys.readouterr().out
    assert out.startswith("Loading evaluator: Classification\n=> result\n* total: 4,200\n* correct: 3,917\n"
                          "* accuracy: 93.3%\n* error: 6.7%\n")
    assert macro_f1([1, 1], [1, 1]) == 1.0
    assert confusion_matrix([0, 1], [0, 0]).tolist() == [[1.0, 0.0], [1.0, 0.0]]


# ---------------------------------------------------------------- checkpoints
def _state(epoch=10):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.0025, momentum=0.9)
    sched = build_lr_scheduler(opt, _optim_cfg(**PROMETAR))
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    sd = {"module." + k: v for k, v in model.state_dict().items()}
    return ckpt.make_checkpoint(sd, epoch, opt, sched)


def test_save_load_round_trip(tmp_path, capsys):
    d = tmp_path / "VLPromptLearner"
    state = _state()
    path = ckpt.save_checkpoint(state, str(d))
    assert path == str(d / "model.pth.tar-10")
    assert f"Checkpoint saved to {path}" in capsys.readouterr().out
    assert (d / "checkpoint").read_text() == "model.pth.tar-10\n"
    assert list(state["state_dict"])[0].startswith("module.")  # caller's dict untouched
    loaded = ckpt.load_checkpoint(path)  # plain data: weights_only works
    assert set(loaded) == {"state_dict", "epoch", "optimizer", "scheduler", "val_result"}
    assert list(loaded["state_dict"]) == ["weight", "bias"] and loaded["epoch"] == 10
    assert loaded["val_result"] is None and loaded["scheduler"]["last_epoch"] == 0
    assert ckpt.find_resume_file(str(d)) == path
    best = ckpt.save_checkpoint({**_state(3), "val_result": 71.5}, str(d), is_best=True)
    assert (d / "model-best.pth.tar").exists() and ckpt.find_resume_file(str(d)) == best
    assert ckpt.load_checkpoint(str(d / "model-best.pth.tar"))["val_result"] == 71.5
    assert ckpt.checkpoint_path(str(tmp_path), "VLPromptLearner", 10) == path
    assert ckpt.checkpoint_path(str(tmp_path), "VLPromptLearner") == str(d / "model-best.pth.tar")
    assert sorted(os.listdir(d)) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-10", "model.pth.tar-3"]


def test_missing_files(tmp_path):
    missing = str(tmp_path / "nope" / "model.pth.tar-10")
    with pytest.raises(FileNotFoundError) as info:
        ckpt.load_checkpoint(missing)
    assert str(info.value) == f'Model not found at "{missing}"'
    assert ckpt.find_resume_file(str(tmp_path)) is None
    (tmp_path / "checkpoint").write_text("model.pth.tar-4\n")
    with pytest.raises(FileNotFoundError, match="model.pth.tar-4"):
        ckpt.find_resume_file(str(tmp_path))


def test_crash_mid_write_keeps_previous_file(tmp_path, monkeypatch):
    path = ckpt.save_checkpoint(_state(), str(tmp_path))
    before = (tmp_path / "model.pth.tar-10").read_bytes()

    def boom(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", boom)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(_state(), str(tmp_path))
    assert (tmp_path / "model.pth.tar-10").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model.pth.tar-10"]  # no temp file left
    assert ckpt.load_checkpoint(path)["epoch"] == 10
