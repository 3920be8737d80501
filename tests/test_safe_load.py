"""Checkpoint loading never runs code from a file, and refuses files that do not fit the model, on both engines.

Engines: the built-in `prometar.engine.trainer.Trainer.load_model` and the Dassl trainer's `load_model` (skipped
without Dassl); the payload tests also go through `train.py`'s `--eval-only --model-dir` path (built-in engine in a
subprocess, Dassl engine through its runner) and through Dassl's own `load_checkpoint` / `resume_from_checkpoint`.
"""
import collections
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from prometar.build import MODEL_NAME, MODULATOR_NAME, load_learner_state
from prometar.engine.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from prometar.engine.safe_load import (
    CheckpointLoadError,
    PickledObject,
    _placeholder_class,
    dassl_loads_safely,
)
from prometar.learners import build_learner, official_key

REPO = Path(__file__).resolve().parents[1]
CFG = REPO / "configs" / "trainers" / "ProMetaR" / "vit_b16_c2_ep10_batch4_4+4ctx.yaml"
DATA_CFG = REPO / "configs" / "datasets" / "eurosat.yaml"
PAYLOAD_MODULE = "prometar_test_payload"


# ---------------------------------------------------------------- files that carry code
class _SystemPayload:
    """Pickles as `os.system("touch <marker>")` (GLOBAL posix.system + REDUCE)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _EvalPayload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.fixture
def payload_module(tmp_path, monkeypatch):
    """An importable module whose `touch(path)` writes a file: an unsafe loader would call it while unpickling."""
    folder = tmp_path / "payload_pkg"
    folder.mkdir()
    (folder / f"{PAYLOAD_MODULE}.py").write_text("import pathlib\n\n\ndef touch(path):\n"
                                                 "    pathlib.Path(path).write_text('ran')\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, PAYLOAD_MODULE, raising=False)
    module = __import__(PAYLOAD_MODULE)
    yield module, folder
    sys.modules.pop(PAYLOAD_MODULE, None)


def _function_payload(module, marker):
    class Payload:
        def __reduce__(self):
            return (module.touch, (str(marker),))

    return Payload()


def _learner_state(learner):
    return {f"prompt_learner.{k}": v.detach().clone() for k, v in learner.state_dict().items()}


def _save_run(folder, learner_state, modulator_state=None, epoch=1, extra=None):
    """A run folder as both engines write it (VLPromptLearner/ and, when given, GradientModulator/)."""
    state = make_checkpoint(learner_state, epoch)
    state.update(extra or {})
    path = save_checkpoint(state, os.path.join(folder, MODEL_NAME))
    if modulator_state is not None:
        save_checkpoint(make_checkpoint(modulator_state, epoch), os.path.join(folder, MODULATOR_NAME))
    return Path(path)


def test_plain_files_load_directly_without_a_note(tmp_path, capsys):
    path = tmp_path / "plain.pth"
    torch.save({"state_dict": collections.OrderedDict(w=torch.ones(2)), "epoch": 3, "scheduler": {"last_epoch": 3}},
               path)
    loaded = load_checkpoint(str(path))
    assert loaded["epoch"] == 3 and torch.equal(loaded["state_dict"]["w"], torch.ones(2))
    assert "Note" not in capsys.readouterr().out


@pytest.mark.parametrize("payload", [_SystemPayload, _EvalPayload])
def test_code_running_globals_are_refused_and_never_run(tmp_path, payload):
    marker = tmp_path / "MARKER"
    path = tmp_path / "model.pth.tar-1"
    torch.save({"state_dict": {"prompt_learner.text.0": torch.zeros(2, 4)}, "epoch": 1, "x": payload(marker)}, path)
    with pytest.raises(CheckpointLoadError, match="refused") as info:
        load_checkpoint(str(path))
    assert str(path) in str(info.value) and ("system" in str(info.value) or "eval" in str(info.value))
    assert not marker.exists()


def test_other_callables_become_inert_placeholders(tmp_path, payload_module, capsys):
    module, _ = payload_module
    marker = tmp_path / "MARKER"
    path = tmp_path / "model.pth.tar-1"
    torch.save({"state_dict": {"w": torch.ones(1)}, "epoch": 1, "scheduler": _function_payload(module, marker)}, path)
    loaded = load_checkpoint(str(path))
    assert not marker.exists()  # `touch` is importable here: an unsafe loader would have called it
    obj = loaded["scheduler"]
    assert isinstance(obj, PickledObject) and obj.pickled_name == f"{PAYLOAD_MODULE}.touch"
    assert obj.args == (str(marker),) and not callable(obj)
    assert f"{PAYLOAD_MODULE}.touch" in capsys.readouterr().out  # the one-line note names what was replaced


def test_placeholder_stores_and_never_calls():
    cls = _placeholder_class("posix.system")
    obj = cls("touch /nonexistent/x")  # what REDUCE does: stores the arguments
    obj.__setstate__({"cmd": "rm -rf /"})  # what BUILD does: stores the state
    assert obj.args == ("touch /nonexistent/x",) and obj.state == {"cmd": "rm -rf /"} and obj.cmd == "rm -rf /"
    assert not callable(obj) and "posix.system" in repr(obj)
    with pytest.raises(AttributeError, match="placeholder"):
        obj.system  # noqa: B018


def test_corrupt_file_error_names_it(tmp_path):
    path = tmp_path / "model.pth.tar-1"
    torch.save({"state_dict": {"w": torch.ones(100)}}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointLoadError, match="corrupt") as info:
        load_checkpoint(str(path))
    assert str(path) in str(info.value)


def _legacy_dassl_checkpoint(path, learner, epoch=5):
    """An official-code checkpoint as Dassl writes it: the whole CustomCLIP state dict (frozen weights and token
    buffers included), the optimiser state, and Dassl's warm-up scheduler state with its pickled successor
    (a real `torch.optim.lr_scheduler.CosineAnnealingLR` object), `val_result` as a NumPy scalar."""
    stub = types.ModuleType("dassl_stub_lr_scheduler")

    class ConstantWarmupScheduler:  # stands for dassl.optim.lr_scheduler.ConstantWarmupScheduler
        def __init__(self, successor):
            self.successor, self.warmup_epoch, self.cons_lr, self.last_epoch = successor, 1, 1e-5, epoch

        def state_dict(self):
            return dict(self.__dict__)

    ConstantWarmupScheduler.__module__, ConstantWarmupScheduler.__qualname__ = stub.__name__, "ConstantWarmupScheduler"
    stub.ConstantWarmupScheduler = ConstantWarmupScheduler
    official = collections.OrderedDict()
    for name, value in learner.state_dict().items():
        official[official_key(name)] = torch.randn_like(value).half()  # fp16, as the official PREC fp16 saves
    official["prompt_learner.token_prefix"] = torch.zeros(3, 1, 8)
    official["image_encoder.conv1.weight"] = torch.zeros(4, 3, 2, 2)
    params = [torch.nn.Parameter(v.float().clone()) for v in official.values()]
    optim = torch.optim.SGD(params, lr=0.0025, momentum=0.9)
    for p in params:
        p.grad = torch.ones_like(p)
    optim.step()
    successor = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=5)
    warmup = ConstantWarmupScheduler(successor)
    sys.modules[stub.__name__] = stub
    try:
        torch.save({"state_dict": official, "epoch": epoch, "optimizer": optim.state_dict(),
                    "scheduler": warmup.state_dict(), "warmup_object": warmup, "val_result": np.float64(71.5)}, path)
    finally:
        del sys.modules[stub.__name__]
    return official


def test_realistic_legacy_checkpoint_loads_and_prompts_are_read(tmp_path, small_clip, capsys):
    learner = build_learner("IVLP", small_clip, n_ctx_text=2, n_ctx_vision=2, depth_text=2, depth_vision=2)
    path = tmp_path / "model.pth.tar-5"
    official = _legacy_dassl_checkpoint(path, learner)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # torch alone refuses it
    loaded = load_checkpoint(str(path))
    note = capsys.readouterr().out
    assert "CosineAnnealingLR" in note and "ConstantWarmupScheduler" in note and "placeholder" in note
    assert loaded["epoch"] == 5 and float(loaded["val_result"]) == 71.5
    successor = loaded["scheduler"]["successor"]
    assert isinstance(successor, PickledObject) and successor.T_max == 5
    assert isinstance(loaded["warmup_object"], PickledObject) and loaded["warmup_object"].warmup_epoch == 1
    model = types.SimpleNamespace(prompt_learner=learner)
    load_learner_state(model, str(path), strict=True)
    for name, value in learner.state_dict().items():
        assert torch.equal(value, official[official_key(name)].float()), name


# ---------------------------------------------------------------- both engines' load_model
def _argv(root, out, clip_path, *flags, opts=()):
    return ["--root", str(root), "--seed", "1", "--trainer", "ProMetaR", "--dataset-config-file", str(DATA_CFG),
            "--config-file", str(CFG), "--output-dir", str(out), *flags,
            "MODEL.BACKBONE.NAME", str(clip_path), "INPUT.SIZE", "(32, 32)", "TRAINER.PROMETAR.PREC", "fp32",
            "TRAINER.PROMETAR.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMETAR.PROMPT_DEPTH_VISION", "2",
            "OPTIM.MAX_EPOCH", "1", "OPTIM_VNET.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "2",
            "DATASET.SUBSAMPLE_CLASSES", "new", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "8",
            "USE_CUDA", "False", *opts]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from fake_data import make_fake_dataset

    root = tmp_path_factory.mktemp("data")
    make_fake_dataset("EuroSAT", str(root), n_classes=4, n_per_class=6, seed=0, image_size=32)
    return root


class _Engine:
    """What a test needs from either engine's trainer."""

    def __init__(self, name, trainer, model, modulator):
        self.name, self.trainer, self.model, self.modulator = name, trainer, model, modulator
        self.learner = model.prompt_learner

    def load_model(self, directory, epoch=None):
        return self.trainer.load_model(str(directory), epoch=epoch)

    def snapshot(self):
        tensors = {f"l.{k}": v.clone() for k, v in self.learner.state_dict().items()}
        tensors.update({f"m.{k}": v.clone() for k, v in self.modulator.state_dict().items()})
        return tensors


@pytest.fixture(scope="module", params=["builtin", "dassl"])
def engine(request, data_root, small_clip_path, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"engine_{request.param}")
    if request.param == "builtin":
        from prometar import build
        from prometar.cli import train_parser
        from prometar.config import load_cfg
        from prometar.engine.trainer import Trainer

        args = train_parser().parse_args(_argv(data_root, out, small_clip_path))
        trainer = Trainer(load_cfg(args.dataset_config_file, args.config_file, args.opts, args=args),
                          torch.device("cpu"), builder=build)
        return _Engine("builtin", trainer, trainer.model, trainer.parts.modulator)
    pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (not on PyPI): the Dassl engine's "
                                        "load_model is tested only where it is")
    from dassl.engine import build_trainer

    from prometar.config import build_arg_parser
    from prometar.dassl import register
    from prometar.dassl.runner import setup_cfg

    register()
    trainer = build_trainer(setup_cfg(build_arg_parser().parse_args(_argv(data_root, out, small_clip_path))))
    return _Engine("dassl", trainer, trainer._models[MODEL_NAME], trainer.modulator)


def _shape(t):
    return tuple(t.shape)


def _official_run(folder, learner, depth, n_ctx=None):
    """An official full-model checkpoint (no GradientModulator folder) with prompts at `depth` on both towers."""
    text, vision = learner.text[0], learner.vision[0]
    n_text, n_vision = (n_ctx or text.shape[0]), (n_ctx or vision.shape[0])
    state = collections.OrderedDict()
    for i in range(depth):
        state[official_key(f"text.{i}")] = torch.full((n_text, text.shape[1]), 0.5 + i)
        state[official_key(f"vision.{i}")] = torch.full((n_vision, vision.shape[1]), -0.5 - i)
    state["prompt_learner.token_prefix"] = torch.zeros(4, 1, text.shape[1])
    state["image_encoder.conv1.weight"] = torch.zeros(2, 2)
    return _save_run(folder, state, epoch=10)


def test_official_checkpoint_without_modulator_loads_and_says_so(engine, tmp_path, capsys):
    path = _official_run(tmp_path / "official", engine.learner, depth=2)
    modulator_before = {k: v.clone() for k, v in engine.modulator.state_dict().items()}
    engine.load_model(tmp_path / "official", epoch=10)
    out = capsys.readouterr().out
    assert f'Loading weights to {MODEL_NAME} from "{path}" (epoch = 10)' in out
    assert sum("modulator starts fresh" in line for line in out.splitlines()) == 1
    for i in range(2):
        assert torch.all(engine.learner.text[i] == 0.5 + i) and torch.all(engine.learner.vision[i] == -0.5 - i)
    for k, v in engine.modulator.state_dict().items():
        assert torch.equal(v, modulator_before[k])


def test_own_checkpoint_loads_learner_and_modulator(engine, tmp_path):
    learner_state = {k: torch.randn_like(v) for k, v in _learner_state(engine.learner).items()}
    modulator_state = {k: torch.randn_like(v) for k, v in engine.modulator.state_dict().items()}
    _save_run(tmp_path / "run", learner_state, modulator_state, epoch=1)
    engine.load_model(tmp_path / "run", epoch=1)
    for k, v in engine.learner.state_dict().items():
        assert torch.equal(v, learner_state[f"prompt_learner.{k}"])
    for k, v in engine.modulator.state_dict().items():
        assert torch.equal(v, modulator_state[k])


def test_realistic_legacy_file_through_load_model(engine, tmp_path, capsys):
    folder = tmp_path / "legacy" / MODEL_NAME
    folder.mkdir(parents=True)
    official = _legacy_dassl_checkpoint(folder / "model.pth.tar-5", engine.learner)
    engine.load_model(tmp_path / "legacy", epoch=5)
    assert "modulator starts fresh" in capsys.readouterr().out
    for name, value in engine.learner.state_dict().items():
        assert torch.equal(value, official[official_key(name)].float()), name


def _coop_run(folder, engine, clip):
    coop = build_learner("CoOp", clip, n_ctx_text=engine.learner.text[0].shape[0])
    return _save_run(folder, _learner_state(coop), engine.modulator.state_dict(), epoch=1)


def _depth1_run(folder, engine, clip):
    state = {k: v for k, v in _learner_state(engine.learner).items() if k.endswith(".0")}
    return _save_run(folder, state, engine.modulator.state_dict(), epoch=1)


def _misshapen_run(folder, engine, clip):
    state = _learner_state(engine.learner)
    state["prompt_learner.text.0"] = torch.zeros(engine.learner.text[0].shape[0] + 2, engine.learner.text[0].shape[1])
    return _save_run(folder, state, engine.modulator.state_dict(), epoch=1)


def _depth9_official_run(folder, engine, clip):
    return _official_run(folder, engine.learner, depth=9)


@pytest.mark.parametrize("case", ["coop_into_ivlp", "depth9_official_into_depth2", "depth1_into_depth2",
                                  "misshapen_ctx"])
def test_checkpoints_that_do_not_fit_are_refused(engine, tmp_path, small_clip, case):
    t0, v0 = _shape(engine.learner.text[0]), _shape(engine.learner.vision[0])
    make, epoch, expected = {
        "coop_into_ivlp": (_coop_run, 1, [f"missing (in the model, not in the file): text.1 {t0}, vision.0 {v0}, "
                                          f"vision.1 {v0}"]),
        "depth9_official_into_depth2": (_depth9_official_run, 10, [
            "an official checkpoint", "unexpected (in the file, not in the model): text.2 (official "
            f"text_encoder.transformer.resblocks.2.VPT_shallow) {t0}", "vision.8 (official "
            f"image_encoder.transformer.resblocks.8.VPT_shallow) {v0}"]),
        "depth1_into_depth2": (_depth1_run, 1, [f"missing (in the model, not in the file): text.1 {t0}, "
                                                f"vision.1 {v0}"]),
        "misshapen_ctx": (_misshapen_run, 1, [f"misshapen (expected vs found): text.0 {t0} vs ({t0[0] + 2}, {t0[1]})"]),
    }[case]
    path = make(tmp_path / case, engine, small_clip)
    before = engine.snapshot()
    with pytest.raises(ValueError) as info:
        engine.load_model(tmp_path / case, epoch=epoch)
    message = str(info.value)
    assert f'"{path}"' in message and f"does not fit this run's {type(engine.learner).__name__}" in message
    for part in expected:
        assert part in message, (part, message)
    assert "PROMPT_DEPTH_TEXT" in message  # says what to check
    after = engine.snapshot()
    assert all(torch.equal(before[k], after[k]) for k in before)  # refused before anything was copied


def test_modulator_gaps_are_refused(engine, tmp_path):
    learner_state = _learner_state(engine.learner)
    # Our checkpoint without the modulator folder while this run has one.
    _save_run(tmp_path / "nomod", learner_state, epoch=1)
    with pytest.raises(FileNotFoundError, match=f"no {MODULATOR_NAME} folder.*META_REG False") as info:
        engine.load_model(tmp_path / "nomod", epoch=1)
    assert str(tmp_path / "nomod") in str(info.value)
    # A modulator that does not fit (other DIM_RATE / learner).
    bad = {k: torch.zeros(v.shape[0] + 1, *v.shape[1:]) if v.dim() else v
           for k, v in engine.modulator.state_dict().items()}
    _save_run(tmp_path / "badmod", learner_state, bad, epoch=1)
    with pytest.raises(ValueError, match="misshapen") as info:
        engine.load_model(tmp_path / "badmod", epoch=1)
    assert str(tmp_path / "badmod" / MODULATOR_NAME / "model.pth.tar-1") in str(info.value)
    # Learner and modulator files of different epochs under one name.
    _save_run(tmp_path / "mixed", learner_state, epoch=2)
    save_checkpoint(make_checkpoint(engine.modulator.state_dict(), 1), str(tmp_path / "mixed" / MODULATOR_NAME),
                    model_name="model.pth.tar-2")
    with pytest.raises(ValueError, match="mixed checkpoint set"):
        engine.load_model(tmp_path / "mixed", epoch=2)


def test_payload_through_load_model_does_not_run(engine, tmp_path, payload_module):
    module, _ = payload_module
    marker = tmp_path / "MARKER"
    learner_state = _learner_state(engine.learner)
    path = _save_run(tmp_path / "evil", learner_state, engine.modulator.state_dict(),
                     extra={"scheduler": _SystemPayload(marker)})
    with pytest.raises(CheckpointLoadError, match="refused") as info:
        engine.load_model(tmp_path / "evil", epoch=1)
    assert str(path) in str(info.value) and not marker.exists()
    _save_run(tmp_path / "evil2", learner_state, engine.modulator.state_dict(),
              extra={"scheduler": _function_payload(module, marker)})
    engine.load_model(tmp_path / "evil2", epoch=1)  # fits: loads, the payload stays an inert placeholder
    assert not marker.exists()


# ---------------------------------------------------------------- train.py --eval-only --model-dir
def test_payload_via_train_py_builtin_engine(data_root, small_clip_path, tmp_path, small_clip, payload_module):
    module, payload_dir = payload_module
    learner = build_learner("IVLP", small_clip, n_ctx_text=4, n_ctx_vision=4, depth_text=2, depth_vision=2)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(payload_dir)]), OMP_NUM_THREADS="1")
    for name, payload in (("system", _SystemPayload), ("function", lambda m: _function_payload(module, m))):
        marker = tmp_path / f"MARKER_{name}"
        model_dir = tmp_path / f"evil_{name}"
        path = _save_run(model_dir, _learner_state(learner), extra={"scheduler": payload(marker)})
        flags = ("--engine", "builtin", "--device", "cpu", "--eval-only", "--model-dir", str(model_dir),
                 "--load-epoch", "1")
        cmd = [sys.executable, str(REPO / "train.py"),
               *_argv(data_root, tmp_path / f"out_{name}", small_clip_path, *flags,
                      opts=("TRAINER.PROMETAR.META_REG", "False"))]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
        assert not marker.exists(), name
        if name == "system":
            assert res.returncode == 2 and str(path) in res.stdout and "refused" in res.stdout  # one ERROR line
        else:  # importable in the subprocess too: an unsafe loader would run it; ours evaluates
            assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
            assert "inert placeholders" in res.stdout and "=> result" in res.stdout


def test_payload_via_dassl_runner_and_dassl_loaders(data_root, small_clip_path, tmp_path, small_clip,
                                                    payload_module):
    pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (not on PyPI)")
    import dassl.engine.trainer as dassl_trainer
    import dassl.utils
    import dassl.utils.torchtools as torchtools

    from prometar.config import build_arg_parser
    from prometar.dassl import get_trainer_class
    from prometar.dassl.runner import main

    module, _ = payload_module
    marker = tmp_path / "MARKER"
    learner = build_learner("IVLP", small_clip, n_ctx_text=4, n_ctx_vision=4, depth_text=2, depth_vision=2)
    path = _save_run(tmp_path / "evil", _learner_state(learner), extra={"scheduler": _SystemPayload(marker)})
    args = build_arg_parser().parse_args(_argv(data_root, tmp_path / "out", small_clip_path, "--eval-only",
                                               "--model-dir", str(tmp_path / "evil"), "--load-epoch", "1",
                                               opts=("TRAINER.PROMETAR.META_REG", "False")))
    assert main(args) == 2  # one ERROR line naming the file, no traceback, nothing run
    out = (tmp_path / "out" / "log.txt").read_text()
    assert f'refused to load "{path}"' in out and "Nothing from the file was executed" in out
    assert not marker.exists()

    # Dassl's own loaders (resume_model_if_exist -> resume_from_checkpoint -> load_checkpoint) while ours runs.
    originals = (torchtools.load_checkpoint, dassl.utils.load_checkpoint, dassl_trainer.load_checkpoint)
    with dassl_loads_safely():
        with pytest.raises(CheckpointLoadError, match="refused"):
            dassl.utils.load_checkpoint(str(path))
        with pytest.raises(CheckpointLoadError, match="refused"):
            torchtools.resume_from_checkpoint(str(path.parent), torch.nn.Linear(1, 1))
        torch.save({"state_dict": {}, "epoch": 1, "x": _function_payload(module, marker)}, tmp_path / "f.pth")
        assert isinstance(dassl_trainer.load_checkpoint(str(tmp_path / "f.pth"))["x"], PickledObject)
    assert (torchtools.load_checkpoint, dassl.utils.load_checkpoint, dassl_trainer.load_checkpoint) == originals
    assert not marker.exists()

    # The ProMetaR trainer's train() (Dassl's before_train resumes from there) runs with the safe loaders in place.
    seen = []
    cls = get_trainer_class()
    original_train = dassl_trainer.SimpleTrainer.train
    try:
        dassl_trainer.SimpleTrainer.train = lambda self: seen.append(
            dassl_trainer.load_checkpoint is not originals[2] and torchtools.load_checkpoint is not originals[0])
        bare = cls.__new__(cls)
        bare.run_folder_managed = True  # as prometar's runner builds it (no run folder to lock here)
        cls.train(bare)
    finally:
        dassl_trainer.SimpleTrainer.train = original_train
    assert seen == [True] and torchtools.load_checkpoint is originals[0]


def test_init_weights_loads_the_common_tensors_and_names_the_rest(small_clip, tmp_path, capsys):
    """MODEL.INIT_WEIGHTS (strict=False): a warm start from a shallower file loads what fits and says what not."""
    learner = build_learner("IVLP", small_clip, n_ctx_text=2, n_ctx_vision=2, depth_text=2, depth_vision=2)
    model = types.SimpleNamespace(prompt_learner=learner)
    shallow = {"prompt_learner.text.0": torch.full_like(learner.text[0], 3.0)}
    before = learner.vision[0].detach().clone()
    path = _save_run(tmp_path / "init", shallow)
    load_learner_state(model, str(path), strict=False)
    out = capsys.readouterr().out
    assert str(path) in out and "loaded 1 of 4" in out and "vision.1" in out
    assert torch.all(learner.text[0] == 3.0) and torch.equal(learner.vision[0], before)
    wide = {"prompt_learner.text.0": torch.zeros(5, learner.text[0].shape[1])}
    with pytest.raises(ValueError, match=r"misshapen.*text\.0"):
        load_learner_state(model, str(_save_run(tmp_path / "wide", wide)), strict=False)
