"""The public Python API: README's "Python API" blocks run as written, names documented and typed, light import,
config vs plain-argument steps, save / load of the trainable state, evaluate."""
import importlib
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import prometar

REPO = Path(__file__).resolve().parent.parent


def api_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]


def test_readme_python_api_blocks_run_as_written(tmp_path, monkeypatch, capsys):
    section = api_section()
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) >= 4
    used = set(re.findall(r"\bprometar\.(\w+)", section))
    for name in used:  # every name the section uses exists (a submodule, or a public name of the package)
        if (REPO / "prometar" / name).is_dir() or (REPO / "prometar" / f"{name}.py").is_file():
            importlib.import_module(f"prometar.{name}")
        else:
            assert name in prometar.__all__ and getattr(prometar, name) is not None, name
    assert {"create_model", "create_step", "evaluate", "save_state", "MetaRegularizer", "module_forward"} <= used
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README Python API block {i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert out.count("'accuracy'") == 3 and "'reg_text'" in out and "'reg_adapter'" in out
    assert (tmp_path / "ivlp_world.pt").is_file()
    model, step = namespace["model"], namespace["step"]  # the config-built pair of the second block
    assert type(model.prompt_learner).__name__ == "IVLPLearner" and step.settings.adapt_lr == 5e-4


def test_import_is_light_and_names_load_on_use():
    code = textwrap.dedent("""
        import sys
        import prometar, prometar.config, prometar.data, prometar.dassl
        assert "torch" not in sys.modules, "import prometar imported torch"
        assert "create_model" in dir(prometar) and prometar.__version__
        print("OK")
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr
    from prometar import MetaRegularizer, create_model
    from prometar.api import create_model as defined
    from prometar.meta.regularizer import MetaRegularizer as generic

    assert create_model is defined and MetaRegularizer is generic and prometar.create_model is defined
    with pytest.raises(AttributeError, match="no_such_name"):
        prometar.no_such_name


def _public_callables(obj):
    if inspect.isclass(obj):
        yield obj.__name__, obj.__init__ if "__init__" in vars(obj) else None
        fields = getattr(obj, "__dataclass_fields__", {})
        for name, member in vars(obj).items():
            public = not name.startswith("_") and name not in fields
            if public and (inspect.isfunction(member) or isinstance(member, (classmethod, property))):
                yield f"{obj.__name__}.{name}", member
    elif callable(obj):
        yield obj.__name__, obj


def test_every_public_name_has_a_docstring_and_type_hints():
    missing = []
    for name in prometar.__all__:
        obj = getattr(prometar, name)
        if name.startswith("__") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(f"{name}: no docstring")
        for label, member in _public_callables(obj):
            if member is None:
                continue
            func = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
            if label != name and not func.__doc__:
                missing.append(f"{label}: no docstring")
            sig = inspect.signature(func)
            unannotated = [p for p in list(sig.parameters)[1 if label != name or inspect.isclass(obj) else 0:]
                           if sig.parameters[p].annotation is inspect.Parameter.empty]
            if unannotated or (sig.return_annotation is inspect.Signature.empty and func.__name__ != "__init__"):
                missing.append(f"{label}: parameters {unannotated} or the return value without a type hint")
    assert not missing, "\n".join(missing)


NAMES = ["cat", "dog", "red car", "tree"]


def tiny_model(seed=0, **options):
    torch.manual_seed(seed)
    from prometar.clip_loader import build_clip

    options = {**dict(n_ctx_text=2, n_ctx_vision=2, depth_text=2, depth_vision=2), **options}
    return prometar.create_model(build_clip("tiny", seed=0), NAMES, learner="IVLP", **options)


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(6, 3, 32, 32, generator=g), torch.tensor([0, 1, 1, 2, 3, 3])


def test_config_step_equals_plain_argument_step():
    cfg = prometar.load_config("world_ep10_batch4_4+4ctx", ["SEED", 3, "TRAINER.PROMETAR.DIM_RATE", 4])
    images, labels = batch()
    results = []
    for kind in ("cfg", "plain"):
        model = tiny_model()
        torch.manual_seed(1)  # modulator init
        step = prometar.create_step(model, cfg) if kind == "cfg" else prometar.create_step(
            model, lr=0.05, seed=3, dim_rate=4)
        for _ in range(2):
            metrics = step(images, labels)
        trained = list(model.prompt_learner.parameters()) + list(step.modulator.parameters())
        results.append([metrics.as_dict()] + [p.detach().clone() for p in trained])
    assert results[0][0] == results[1][0] and results[0][0]["meta"] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(results[0][1:], results[1][1:]))
    with pytest.raises(ValueError, match=r"arguments \['lr'\]"):
        prometar.create_step(tiny_model(), cfg, lr=0.1)
    with pytest.raises(ValueError, match=r"arguments \['learner'\]"):
        prometar.create_model(classnames=NAMES, learner="CoOp", cfg=cfg)
    with pytest.raises(FileNotFoundError, match="world_ep10_batch4_4"):
        prometar.load_config("no_such_config")


def test_save_and_load_state_resume_exactly(tmp_path):
    images, labels = batch()
    model, step = tiny_model(), None
    step = prometar.create_step(model, lr=0.05, seed=2, dim_rate=4)
    step(images, labels)
    path = prometar.save_state(tmp_path / "state.pt", model, step)
    saved = torch.load(path, weights_only=True)
    assert all(k.startswith("prompt_learner.") for k in saved["model"])  # trainable state only, never CLIP
    step(images, labels)
    expected = [p.detach().clone() for p in list(model.prompt_learner.parameters()) + list(step.modulator.parameters())]

    other = tiny_model(seed=9)
    other_step = prometar.create_step(other, lr=0.05, seed=5, dim_rate=4)
    prometar.load_state(path, other, other_step)
    other_step(images, labels)  # same momentum buffers, modulator, sampler draws => the same second step
    got = list(other.prompt_learner.parameters()) + list(other_step.modulator.parameters())
    assert all(torch.equal(a, b) for a, b in zip(expected, got))

    with pytest.raises(ValueError, match=r"missing .*text\.2"):
        prometar.load_state(path, tiny_model(depth_text=3))
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a file written by prometar.save_state"):
        prometar.load_state(tmp_path / "other.pt", model)
    prometar.save_state(tmp_path / "model_only.pt", model)
    with pytest.raises(ValueError, match="saved without `step`"):
        prometar.load_state(tmp_path / "model_only.pt", model, step)


def test_evaluate_counts_dict_and_tuple_batches_and_restores_the_mode():
    model = tiny_model().train()
    images, labels = batch()
    with torch.no_grad():
        pred = model.eval()(images).argmax(-1)
    model.train()
    expected = 100.0 * (pred == labels).float().mean().item()
    for data in ([(images[:4], labels[:4]), (images[4:], labels[4:])], [{"img": images, "label": labels}]):
        result = prometar.evaluate(model, data)
        assert result["accuracy"] == pytest.approx(expected) and result["total"] == 6
        assert result["error_rate"] == pytest.approx(100 - expected)
    assert model.training
    with pytest.raises(ValueError, match="no batches"):
        prometar.evaluate(model, [])
