"""Drop-in into CoOp-family hosts: OpenAI's CLIP whatever `import clip` gives, the shipped configs, the
README's lines in a host that ships its own `clip/` fork and (like the official code) its own `ProMetaR`.

The miniature host is generated in a temporary folder: a `clip/` package made from OpenAI's files with
`build_model(state_dict, design_details)` (as MaPLe / PromptSRC / the official code have it), its own
dataset, and its own Dassl trainer that builds its CLIP through that fork.
"""
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from prometar.clip_loader import ClipLoadError, build_clip, load_clip, openai_clip, save_clip
from prometar.shipped import configs_dir, configs_main, copy_trainer_configs, trainer_configs

REPO = Path(__file__).resolve().parents[1]
METHOD_YAML = REPO / "configs" / "trainers" / "ProMetaR" / "vit_b16_c2_ep10_batch4_4+4ctx.yaml"


def _clean_env(**extra):
    """Environment of a child process that sees only what is installed (no checkout on PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)
    return env


@pytest.fixture(scope="module")
def tiny_clip_path(tmp_path_factory):
    return save_clip(build_clip("tiny", seed=0), tmp_path_factory.mktemp("clip") / "tiny.pt")


def make_clip_fork(root: Path) -> Path:
    """`root/clip/`: OpenAI's files with the forks' two-argument `build_model` (as the host repositories ship)."""
    folder = root / "clip"
    folder.mkdir(parents=True)
    source = openai_clip().OPENAI_CLIP_DIR
    for name in ("__init__.py", "clip.py", "simple_tokenizer.py", "bpe_simple_vocab_16e6.txt.gz"):
        (folder / name).write_bytes((source / name).read_bytes())
    model = (source / "model.py").read_text()
    assert "def build_model(state_dict: dict):" in model
    model = model.replace("def build_model(state_dict: dict):", "def build_model(state_dict: dict, design_details):")
    model = model.replace("    model.load_state_dict(state_dict)\n",
                          "    model.load_state_dict(state_dict)\n    model.design_details = design_details\n")
    (folder / "model.py").write_text(model + "\nHOST_FORK = True\n")
    return folder


# ------------------------------------------------------------------------------------------ OpenAI's CLIP
def test_openai_clip_is_private_and_not_the_hosts(tmp_path, tiny_clip_path):
    """Inside a checkout whose `clip/` is a fork, `import clip` stays the fork and prometar uses OpenAI's."""
    host = tmp_path / "host"
    make_clip_fork(host)
    script = host / "probe.py"
    script.write_text(textwrap.dedent(f"""
        import inspect, sys
        import clip                                        # the host's fork (the script's folder comes first)
        assert clip.__file__.startswith({str(host)!r}), clip.__file__
        from prometar.clip_loader import load_clip, openai_clip
        model = load_clip({str(tiny_clip_path)!r}, precision="fp32")
        oc = openai_clip()
        assert sys.modules["clip"] is clip and not hasattr(model, "design_details")
        assert "design_details" in inspect.signature(clip.model.build_model).parameters
        assert list(inspect.signature(oc.model.build_model).parameters) == ["state_dict"]
        assert type(model) is oc.model.CLIP and type(model) is not clip.model.CLIP
        assert not str(oc.OPENAI_CLIP_DIR).startswith({str(host)!r})
        print("ok", type(model).__module__, oc.OPENAI_CLIP_DIR)
    """))
    env = _clean_env(PYTHONPATH=str(REPO))  # the checkout under test, after the script's folder
    res = subprocess.run([sys.executable, str(script)], cwd=host, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "ok prometar._openai_clip.model" in res.stdout


def test_missing_openai_clip_says_how_to_install(tmp_path, monkeypatch):
    """With only a fork on the path, the error says OpenAI's package is missing, names the fork and the fix."""
    import prometar._openai_clip as shim

    make_clip_fork(tmp_path / "elsewhere")
    monkeypatch.setattr(shim, "_from_distributions", lambda: [])
    monkeypatch.setattr(sys, "path", [str(tmp_path / "script_dir"), str(tmp_path / "elsewhere")])
    with pytest.raises(ImportError) as err:
        shim.resolve()
    msg = str(err.value)
    assert "openai-clip" in msg and "pip install openai-clip" in msg and "is not installed" in msg
    assert str(tmp_path / "elsewhere" / "clip") in msg and "extra arguments" in msg
    monkeypatch.setattr(sys, "path", [str(tmp_path / "elsewhere")])  # the running script's folder: the host's
    with pytest.raises(ImportError, match="the host checkout's own copy"):
        shim.resolve()
    monkeypatch.setattr(sys, "path", [str(tmp_path / "nothing")])
    with pytest.raises(ImportError, match="pip install openai-clip"):
        shim.resolve()


def test_pickled_clip_round_trips(tmp_path):
    """Classes live in an importable module (`prometar._openai_clip.model`), so whole-model pickles load."""
    model = build_clip("tiny", seed=1)
    torch.save(model, tmp_path / "whole.pt")
    again = torch.load(tmp_path / "whole.pt", weights_only=False)
    assert type(again) is type(model) and torch.equal(again.text_projection, model.text_projection)


@pytest.mark.parametrize("case", ["last text block", "middle text block", "last vision block", "extra key",
                                  "misshapen"])
def test_incomplete_clip_is_refused(tmp_path, tiny_clip_path, case):
    """A state dict that is not a complete OpenAI CLIP is refused, naming the file and the keys."""
    state = torch.load(tiny_clip_path, weights_only=True)  # tiny: 3 text and 3 vision blocks
    drop = {"last text block": "transformer.resblocks.2.", "middle text block": "transformer.resblocks.1.",
            "last vision block": "visual.transformer.resblocks.2."}.get(case)
    if drop:
        state = {k: v for k, v in state.items() if not k.startswith(drop)}
    if case == "extra key":
        state["prompt_learner.ctx"] = torch.zeros(4, 64)
    if case == "misshapen":
        state["ln_final.bias"] = torch.zeros(63)
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(ClipLoadError) as err:
        load_clip(path)
    msg = str(err.value)
    assert str(path) in msg and "not a complete OpenAI CLIP" in msg
    expected = {"last text block": "missing 12 keys: transformer.resblocks.2.*",
                "middle text block": "missing 12 keys: transformer.resblocks.1.*",
                "last vision block": "missing 12 keys: visual.transformer.resblocks.2.*",
                "extra key": "unexpected 1 key: prompt_learner.ctx",
                "misshapen": "ln_final.bias (63,) (expected (64,))"}[case]
    assert expected in msg


def test_complete_clips_still_load(tmp_path):
    """Unequal OpenAI towers (ViT-L/14: 24 vision, 12 text blocks) are complete; equal towers too."""
    from prometar.clip_loader import check_complete_clip

    shape = dict(embed_dim=32, image_resolution=16, vision_layers=24, vision_width=64, vision_patch_size=8,
                 context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                 transformer_layers=12)
    model = build_clip(shape)
    assert check_complete_clip(model.state_dict(), "l14-like")["vision_layers"] == 24
    with pytest.raises(ValueError, match="tower depths"):
        build_clip("tiny", transformer_layers=2)


# ------------------------------------------------------------------------------------------ shipped configs
def test_configs_command_prints_and_copies(tmp_path, capsys):
    assert configs_main([]) == 0
    assert Path(capsys.readouterr().out.strip()) == configs_dir() == REPO / "configs"
    names = [p.name for p in trainer_configs()]
    assert "vit_b16_c2_ep10_batch4_4+4ctx.yaml" in names and len(names) >= 8

    dest = tmp_path / "host" / "configs" / "trainers" / "ProMetaR"
    assert configs_main(["--copy", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == sorted(names)
    assert configs_main(["--copy", str(dest)]) == 0  # identical files: nothing to do, no error
    assert copy_trainer_configs(dest) == []

    changed = dest / names[0]
    changed.write_text("# the host's own edit\n")
    (dest / names[1]).unlink()
    capsys.readouterr()
    assert configs_main(["--copy", str(dest)]) == 1
    err = capsys.readouterr().err
    assert str(changed) in err and "--force" in err
    assert changed.read_text() == "# the host's own edit\n" and not (dest / names[1]).exists()  # nothing copied
    assert configs_main(["--copy", str(dest), "--force"]) == 0
    assert changed.read_bytes() == trainer_configs()[0].read_bytes() and (dest / names[1]).is_file()


def _copy_repo(dst: Path) -> Path:
    """The installable part of the checkout (setup.py, prometar/, configs/) without caches."""
    import shutil

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    dst.mkdir(parents=True)
    shutil.copy2(REPO / "setup.py", dst / "setup.py")
    shutil.copytree(REPO / "prometar", dst / "prometar", ignore=ignore)
    shutil.copytree(REPO / "configs", dst / "configs", ignore=ignore)
    return dst


def _pip(args, **kw):
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
                          capture_output=True, text=True, timeout=180, env=_clean_env(PIP_NO_INDEX="1"), **kw)


def test_configs_in_editable_install(tmp_path):
    """`pip install -e` of a copy of the checkout (offline, into a throwaway venv): `prometar configs` finds
    the checkout's configs/ and `--copy` works."""
    src = _copy_repo(tmp_path / "src")
    venv = tmp_path / "venv"
    res = subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
                         capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        pytest.skip(f"cannot create a venv here: {res.stderr[-500:]}")
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    res = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "install", "--no-deps",
                          "--no-build-isolation", "--no-index", "-e", str(src)], capture_output=True, text=True,
                         timeout=180, env=_clean_env())
    if res.returncode != 0:
        pytest.skip(f"pip cannot install offline here (needs setuptools in the base environment): "
                    f"{res.stderr[-800:]}")
    code = ("import prometar, prometar.shipped as s; print(prometar.__file__); print(s.configs_dir())")
    res = subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env=_clean_env())
    assert res.returncode == 0, res.stderr[-2000:]
    module_file, folder = res.stdout.split()
    assert Path(module_file) == src / "prometar" / "__init__.py"  # the editable copy, not another install
    assert Path(folder) == src / "configs"
    dest = tmp_path / "host_configs"
    res = subprocess.run([str(python), "-m", "prometar", "configs", "--copy", str(dest)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, env=_clean_env())
    assert res.returncode == 0, res.stderr[-2000:]
    assert (dest / "vit_b16_c2_ep10_batch4_4+4ctx.yaml").read_bytes() == \
        (src / "configs" / "trainers" / "ProMetaR" / "vit_b16_c2_ep10_batch4_4+4ctx.yaml").read_bytes()


def test_configs_in_wheel_install(tmp_path):
    """A wheel carries the YAMLs as package data and the private CLIP shim; installed, `configs` finds them."""
    src = _copy_repo(tmp_path / "src")
    res = _pip(["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"), str(src)])
    if res.returncode != 0:
        pytest.skip(f"pip cannot build a wheel offline here: {res.stderr[-800:]}")
    wheel = next((tmp_path / "dist").glob("prometar-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "prometar/configs/trainers/ProMetaR/vit_b16_c2_ep10_batch4_4+4ctx.yaml" in names
    assert "prometar/configs/datasets/eurosat.yaml" in names and "prometar/_openai_clip/__init__.py" in names
    target = tmp_path / "site"
    res = _pip(["install", "--no-deps", "--no-index", "--target", str(target), str(wheel)])
    assert res.returncode == 0, res.stderr[-2000:]
    res = subprocess.run([sys.executable, "-m", "prometar", "configs"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env=_clean_env(PYTHONPATH=str(target)))
    assert res.returncode == 0, res.stderr[-2000:]
    assert Path(res.stdout.strip()) == target / "prometar" / "configs"


# ------------------------------------------------------------------------------------------ miniature host
HOST_DATASET = '''
import os
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum


@DATASET_REGISTRY.register()
class HostPets(DatasetBase):
    def __init__(self, cfg):
        folder = os.path.join(cfg.DATASET.ROOT, "host_pets")
        items = []
        for label, cname in enumerate(sorted(os.listdir(folder))):
            for f in sorted(os.listdir(os.path.join(folder, cname))):
                items.append(Datum(impath=os.path.join(folder, cname, f), label=label, classname=cname))
        super().__init__(train_x=items, val=items, test=items)
'''

HOST_TRAINER = '''
import torch
import torch.nn.functional as F
from torch import nn
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.optim import build_lr_scheduler, build_optimizer

from clip import clip  # the host's fork, as MaPLe's trainers import it


@TRAINER_REGISTRY.register()
class HostVP(TrainerX):
    """The host's own method: a linear probe on its CLIP, built with the fork's two-argument build_model."""

    def build_model(self):
        state = torch.load(self.cfg.MODEL.BACKBONE.NAME, map_location="cpu")
        clip_model = clip.build_model(state, {"trainer": "HostVP", "vision_depth": 0})
        assert clip_model.design_details["trainer"] == "HostVP"
        print("HostVP CLIP from", clip.__file__)
        self.visual = clip_model.visual.float().to(self.device).eval().requires_grad_(False)
        self.model = nn.Linear(self.visual.output_dim, self.num_classes).to(self.device)
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("probe", self.model, self.optim, self.sched)

    def model_inference(self, image):
        return self.model(self.visual(image))

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        loss = F.cross_entropy(self.model_inference(image), label)
        self.model_backward_and_update(loss)
        if self.batch_idx + 1 == self.num_batches:
            self.update_lr()
        return {"loss": loss.item()}
'''

HOST_OFFICIAL_TRAINER = '''
from torch import nn
from dassl.engine import TRAINER_REGISTRY, TrainerX


@TRAINER_REGISTRY.register()
class ProMetaR(TrainerX):
    """Stands in for the official repository's trainer of the same name."""

    def build_model(self):
        print("host's own ProMetaR trainer built")
        self.model = nn.Linear(1, 1)
        self.register_model("model", self.model)
'''

HOST_TRAIN = '''
import argparse
import inspect
import os
import sys

import torch
from dassl.config import get_cfg_default
from dassl.engine import build_trainer
from dassl.utils import set_random_seed, setup_logger

import datasets.host_pets
import trainers.hostvp
{official_import}
import prometar.dassl
prometar.dassl.register(datasets=False{force})


def extend_cfg(cfg):
    from yacs.config import CfgNode as CN

    cfg.TRAINER.HOSTVP = CN()
    cfg.TRAINER.HOSTVP.N_CTX = 2
    prometar.dassl.extend_cfg(cfg)


def main(args):
    for run, name in enumerate(args.trainer.split(",")):
        cfg = get_cfg_default()
        extend_cfg(cfg)
        if name == "ProMetaR":
            cfg.merge_from_file(args.config_file)
        cfg.DATASET.ROOT = args.root
        cfg.OUTPUT_DIR = os.path.join(args.output_dir, f"{{run}}_{{name}}")
        cfg.TRAINER.NAME = name
        cfg.SEED = 1
        cfg.merge_from_list(args.opts)
        cfg.freeze()
        set_random_seed(cfg.SEED)
        setup_logger(cfg.OUTPUT_DIR)
        trainer = build_trainer(cfg)
        print("built", name, "from", type(trainer).__module__)
        clip_classes = sorted({{type(m).__module__ for m in trainer.__dict__.values() if type(m).__name__ == "CLIP"}}
                              | {{type(m).__module__ for v in trainer.__dict__.values() if isinstance(v, torch.nn.Module)
                                  for m in v.modules() if type(m).__name__ == "CLIP"}})
        print("CLIP classes of", name, clip_classes)
        if not args.no_train:
            trainer.train()
    import clip
    print("import clip after both:", clip.__file__,
          "design_details" in inspect.signature(clip.model.build_model).parameters)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    for flag in ("--root", "--output-dir", "--trainer", "--config-file"):
        p.add_argument(flag, type=str, default="")
    p.add_argument("--no-train", action="store_true")
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER)
    main(p.parse_args())
'''


def make_host(root: Path, official: bool = False, force: bool = True) -> Path:
    """A miniature MaPLe-like checkout: its own clip/ fork, dataset, trainer (and optionally its own ProMetaR),
    and a train.py with the README's drop-in lines after its trainer imports."""
    from PIL import Image

    host = root / "host"
    make_clip_fork(host)
    for pkg, files in (("datasets", {"host_pets.py": HOST_DATASET}),
                       ("trainers", {"hostvp.py": HOST_TRAINER, "prometar.py": HOST_OFFICIAL_TRAINER})):
        (host / pkg).mkdir()
        (host / pkg / "__init__.py").write_text("")
        for name, text in files.items():
            (host / pkg / name).write_text(text)
    (host / "train.py").write_text(HOST_TRAIN.format(
        official_import="import trainers.prometar  # the host's own ProMetaR" if official else "",
        force=", force=True" if force else ""))
    for c, cname in enumerate(("abyssinian", "beagle", "birman")):
        folder = root / "data" / "host_pets" / cname
        folder.mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (32, 32), (40 * c + 10 * i, 90, 200 - 50 * c)).save(folder / f"{i}.png")
    return host


def _small_opts(clip_path):
    return ["MODEL.BACKBONE.NAME", str(clip_path), "INPUT.SIZE", "(32, 32)", "TRAINER.PROMETAR.PREC", "fp32",
            "TRAINER.PROMETAR.PROMPT_DEPTH_VISION", "2", "TRAINER.PROMETAR.PROMPT_DEPTH_TEXT", "2",
            "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "2", "DATALOADER.TEST.BATCH_SIZE", "8",
            "OPTIM.MAX_EPOCH", "1", "OPTIM_VNET.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "-1",
            "DATASET.NAME", "HostPets", "USE_CUDA", "False"]


def _run_host(host: Path, trainers: str, clip_path: Path, *flags: str) -> subprocess.CompletedProcess:
    site = host.parent / "site"  # only the installed package is importable, as after `pip install`
    if not site.exists():
        site.mkdir()
        (site / "prometar").symlink_to(REPO / "prometar", target_is_directory=True)
    cmd = [sys.executable, "train.py", "--root", str(host.parent / "data"), "--output-dir", str(host.parent / "out"),
           "--trainer", trainers, "--config-file", str(METHOD_YAML), *flags, *_small_opts(clip_path)]
    return subprocess.run(cmd, cwd=host, env=_clean_env(PYTHONPATH=str(site)), capture_output=True, text=True,
                          timeout=600)


dassl_needed = pytest.mark.skipif(
    not __import__("prometar.dassl", fromlist=["dassl_available"]).dassl_available(),
    reason="Dassl.pytorch is not installed (not on PyPI): install it by hand to run the miniature-host tests")


@dassl_needed
def test_host_with_clip_fork_trains_both_trainers_in_one_process(tmp_path, tiny_clip_path):
    """The host's trainer keeps its fork, ProMetaR gets OpenAI's CLIP; both train an epoch in one process."""
    host = make_host(tmp_path)
    git = ["git", "-C", str(host), "-c", "user.email=host@example.com", "-c", "user.name=host"]
    for step in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "host checkout"]):
        subprocess.run(git + step, check=True, capture_output=True)
    host_commit = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    res = _run_host(host, "HostVP,ProMetaR,HostVP", tiny_clip_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert out.count(f"HostVP CLIP from {host / 'clip' / 'clip.py'}") == 2
    assert "built ProMetaR from prometar.dassl.trainer" in out
    assert "CLIP classes of ProMetaR ['prometar._openai_clip.model']" in out
    assert out.count("epoch [1/1] batch [3/3]") == 3 and out.count("=> result") == 3
    assert f"import clip after both: {host / 'clip' / '__init__.py'} True" in out
    assert (tmp_path / "out" / "1_ProMetaR" / "VLPromptLearner" / "model.pth.tar-1").is_file()
    assert (tmp_path / "out" / "2_HostVP" / "probe" / "model.pth.tar-1").is_file()
    # driven by the host's own train.py, the trainer itself locks, writes config.yaml and records provenance
    run = tmp_path / "out" / "1_ProMetaR"
    assert (run / ".lock").is_file() and (run / "config.yaml").is_file() and (run / "manifest-1.json").is_file()
    record = json.loads((run / "provenance.json").read_text())["runs"][-1]
    assert record["host_git"] == host_commit and record["engine"] == "dassl" and record["model"] is None
    assert record["argv"][0] == "train.py" and record["inputs"] == {}  # the host's own dataset reader


@dassl_needed
@pytest.mark.parametrize("force", [False, True])
def test_host_with_its_own_prometar(tmp_path, tiny_clip_path, force):
    """A host that registers its own `ProMetaR`: kept, with a line saying how to replace it; replaced with force."""
    host = make_host(tmp_path, official=True, force=force)
    res = _run_host(host, "ProMetaR", tiny_clip_path, "--no-train")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    if force:
        assert "built ProMetaR from prometar.dassl.trainer" in out and "host's own ProMetaR" not in out
    else:
        assert "built ProMetaR from trainers.prometar" in out and "host's own ProMetaR trainer built" in out
        assert "already registered" in out and "prometar.dassl.register(datasets=False, force=True)" in out
