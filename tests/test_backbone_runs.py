"""One ProMetaR epoch on the base classes and an evaluation on the new classes, for every CLIP family (OpenAI ViT,
OpenAI ResNet, open_clip ViT, open_clip with pooling / attention-mask variants), on both engines, through
train.py's entry point with the models saved in their users' formats (`backbone_files.family_files`)."""
import os

import pytest
from backbone_files import family_files
from fake_data import make_fake_dataset

from prometar.cli import train_main

pytest.importorskip("prometar._open_clip", reason="open_clip_torch is not installed (pip install -e '.[test]')")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs", "trainers", "ProMetaR")
LEARNER_CFG = {"IVLP": "vit_b16_c2_ep10_batch4_4+4ctx.yaml", "CoOp": "vit_b16_c2_ep10_batch4_4ctx_coop_metareg.yaml"}
DATA_CFG = os.path.join(REPO, "configs", "datasets", "eurosat.yaml")
FAMILIES = ["openai-vit", "openai-resnet", "open_clip-vit", "open_clip-variant"]


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    return family_files(tmp_path_factory.mktemp("families"))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_fake_dataset("EuroSAT", str(root), n_classes=4, n_per_class=6, seed=0, image_size=32)
    return str(root)


def _run(engine, spec, data_root, out, sub, *flags):
    depth = ["TRAINER.PROMETAR.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMETAR.PROMPT_DEPTH_VISION", "2"] \
        if spec["learner"] == "IVLP" else []
    argv = ["--root", data_root, "--seed", "1", "--trainer", "ProMetaR", "--dataset-config-file", DATA_CFG,
            "--config-file", os.path.join(CONFIGS, LEARNER_CFG[spec["learner"]]), "--output-dir", str(out),
            "--engine", engine, "--device", "cpu", *flags,
            "MODEL.BACKBONE.NAME", spec["name"], "INPUT.SIZE", "(32, 32)", "TRAINER.PROMETAR.PREC", "fp32", *depth,
            "OPTIM.MAX_EPOCH", "1", "OPTIM_VNET.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "2", "USE_CUDA", "False",
            "DATASET.SUBSAMPLE_CLASSES", sub, "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "2",
            "DATALOADER.TEST.BATCH_SIZE", "8", "TRAIN.PRINT_FREQ", "1", *spec["opts"]]
    assert train_main(argv) == 0
    with open(os.path.join(out, "log.txt")) as f:
        return f.read()


@pytest.mark.parametrize("engine", ["builtin", "dassl"])
@pytest.mark.parametrize("family", FAMILIES)
def test_prometar_epoch_then_new_class_evaluation(family, engine, families, data_root, tmp_path):
    if engine == "dassl":
        pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (not on PyPI; see README)")
    spec = families[family]
    log = _run(engine, spec, data_root, tmp_path / "base", "base")
    assert ("Engine: Dassl" if engine == "dassl" else "Engine: built-in") in log.splitlines()[0]
    assert f"{spec['learner']}Learner" in log and "Gradient modulator" in log
    assert "epoch [1/1] batch [2/2]" in log and "meta_loss" in log and "=> result" in log and "* accuracy:" in log
    assert (tmp_path / "base" / "GradientModulator" / "model.pth.tar-1").is_file()
    log = _run(engine, spec, data_root, tmp_path / "new", "new", "--eval-only", "--model-dir",
               str(tmp_path / "base"), "--load-epoch", "1")
    assert "SUBSAMPLE NEW CLASSES!" in log and "Loading weights to VLPromptLearner" in log
    assert "=> result" in log and "* accuracy:" in log and "Finish training" not in log
