"""Config defaults, ProMetaR extension, yacs merge semantics, load order, and the shipped YAMLs."""
import argparse
import glob
import os

import pytest
import yaml

from prometar.config import (
    PROMETAR_DEFAULTS,
    build_arg_parser,
    dump_cfg,
    extend_cfg,
    get_cfg_default,
    load_cfg,
    merge_file,
    merge_opts,
)
from prometar.learners import LEARNERS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINER_DIR = os.path.join(REPO, "configs", "trainers", "ProMetaR")
MAIN_YAML = os.path.join(TRAINER_DIR, "vit_b16_c2_ep10_batch4_4+4ctx.yaml")


def _flatten(node, prefix=""):
    out = {}
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------- defaults (Dassl v0.6.3 get_cfg_default)
DASSL_EXPECTED = {
    "VERSION": 1, "OUTPUT_DIR": "./output", "RESUME": "", "SEED": -1, "USE_CUDA": True, "VERBOSE": True,
    "INPUT.SIZE": (224, 224), "INPUT.INTERPOLATION": "bilinear", "INPUT.TRANSFORMS": (),
    "INPUT.NO_TRANSFORM": False, "INPUT.PIXEL_MEAN": [0.485, 0.456, 0.406],
    "INPUT.PIXEL_STD": [0.229, 0.224, 0.225], "INPUT.CROP_PADDING": 4, "INPUT.RRCROP_SCALE": (0.08, 1.0),
    "INPUT.CUTOUT_N": 1, "INPUT.CUTOUT_LEN": 16, "INPUT.GN_MEAN": 0.0, "INPUT.GN_STD": 0.15,
    "INPUT.RANDAUGMENT_N": 2, "INPUT.RANDAUGMENT_M": 10, "INPUT.COLORJITTER_B": 0.4,
    "INPUT.COLORJITTER_C": 0.4, "INPUT.COLORJITTER_S": 0.4, "INPUT.COLORJITTER_H": 0.1, "INPUT.RGS_P": 0.2,
    "INPUT.GB_P": 0.5, "INPUT.GB_K": 21,
    "DATASET.ROOT": "", "DATASET.NAME": "", "DATASET.SOURCE_DOMAINS": (), "DATASET.TARGET_DOMAINS": (),
    "DATASET.NUM_LABELED": -1, "DATASET.NUM_SHOTS": -1, "DATASET.VAL_PERCENT": 0.1, "DATASET.STL10_FOLD": -1,
    "DATASET.CIFAR_C_TYPE": "", "DATASET.CIFAR_C_LEVEL": 1, "DATASET.ALL_AS_UNLABELED": False,
    "DATALOADER.NUM_WORKERS": 4, "DATALOADER.K_TRANSFORMS": 1, "DATALOADER.RETURN_IMG0": False,
    "DATALOADER.TRAIN_X.SAMPLER": "RandomSampler", "DATALOADER.TRAIN_X.BATCH_SIZE": 32,
    "DATALOADER.TRAIN_X.N_DOMAIN": 0, "DATALOADER.TRAIN_X.N_INS": 16, "DATALOADER.TRAIN_U.SAME_AS_X": True,
    "DATALOADER.TRAIN_U.SAMPLER": "RandomSampler", "DATALOADER.TRAIN_U.BATCH_SIZE": 32,
    "DATALOADER.TRAIN_U.N_DOMAIN": 0, "DATALOADER.TRAIN_U.N_INS": 16,
    "DATALOADER.TEST.SAMPLER": "SequentialSampler", "DATALOADER.TEST.BATCH_SIZE": 32,
    "MODEL.INIT_WEIGHTS": "", "MODEL.BACKBONE.NAME": "", "MODEL.BACKBONE.PRETRAINED": True,
    "MODEL.HEAD.NAME": "", "MODEL.HEAD.HIDDEN_LAYERS": (), "MODEL.HEAD.ACTIVATION": "relu",
    "MODEL.HEAD.BN": True, "MODEL.HEAD.DROPOUT": 0.0,
    "OPTIM.NAME": "adam", "OPTIM.LR": 0.0003, "OPTIM.WEIGHT_DECAY": 5e-4, "OPTIM.MOMENTUM": 0.9,
    "OPTIM.SGD_DAMPNING": 0, "OPTIM.SGD_NESTEROV": False, "OPTIM.RMSPROP_ALPHA": 0.99,
    "OPTIM.ADAM_BETA1": 0.9, "OPTIM.ADAM_BETA2": 0.999, "OPTIM.STAGED_LR": False, "OPTIM.NEW_LAYERS": (),
    "OPTIM.BASE_LR_MULT": 0.1, "OPTIM.LR_SCHEDULER": "single_step", "OPTIM.STEPSIZE": (-1,),
    "OPTIM.GAMMA": 0.1, "OPTIM.MAX_EPOCH": 10, "OPTIM.WARMUP_EPOCH": -1, "OPTIM.WARMUP_TYPE": "linear",
    "OPTIM.WARMUP_CONS_LR": 1e-5, "OPTIM.WARMUP_MIN_LR": 1e-5, "OPTIM.WARMUP_RECOUNT": True,
    "TRAIN.CHECKPOINT_FREQ": 0, "TRAIN.PRINT_FREQ": 10, "TRAIN.COUNT_ITER": "train_x",
    "TEST.EVALUATOR": "Classification", "TEST.PER_CLASS_RESULT": False, "TEST.COMPUTE_CMAT": False,
    "TEST.NO_TEST": False, "TEST.SPLIT": "test", "TEST.FINAL_MODEL": "last_step", "TRAINER.NAME": "",
}
DASSL_TRAINER_BLOCKS = {"MCD", "MME", "CDAC", "SE", "M3SDA", "DAEL", "CROSSGRAD", "DDAIG", "DAELDG",
                        "DOMAINMIX", "ENTMIN", "MEANTEACHER", "MIXMATCH", "FIXMATCH"}


def test_defaults_match_dassl_keys_values_and_types():
    flat = _flatten(get_cfg_default())
    non_trainer = {k: v for k, v in flat.items() if not k.startswith("TRAINER.") or k == "TRAINER.NAME"}
    assert set(non_trainer) == set(DASSL_EXPECTED)
    for key, value in DASSL_EXPECTED.items():
        assert non_trainer[key] == value and type(non_trainer[key]) is type(value), key
    cfg = get_cfg_default()
    assert set(cfg.TRAINER) - {"NAME"} == DASSL_TRAINER_BLOCKS
    assert cfg.TRAINER.DDAIG.CLAMP_MIN == -1.0 and cfg.TRAINER.MEANTEACHER.RAMPUP == 5
    assert get_cfg_default() is not get_cfg_default()  # fresh tree each call


def test_extend_cfg_adds_prometar_keys():
    cfg = extend_cfg(get_cfg_default())
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "all"
    assert dict(cfg.OPTIM_VNET) == dict(get_cfg_default().OPTIM)
    assert dict(cfg.TRAINER.PROMETAR) == PROMETAR_DEFAULTS
    official = dict(N_CTX_VISION=4, N_CTX_TEXT=4, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH_VISION=9,
                    PROMPT_DEPTH_TEXT=9, ADAPT_LR=0.0005, LR_RATIO=0.0005, FAST_ADAPTATION=False,
                    MIXUP_ALPHA=0.5, MIXUP_BETA=0.5, DIM_RATE=8)
    ours = dict(TEXT_LOSS_WEIGHT=50.0, IMAGE_LOSS_WEIGHT=20.0, STEP_VNET_SCHED=False, LEARNER="IVLP",
                META_REG=True, AMP_DTYPE="bf16")
    for key, value in {**official, **ours}.items():
        assert cfg.TRAINER.PROMETAR[key] == value and type(cfg.TRAINER.PROMETAR[key]) is type(value), key
    assert cfg.TRAINER.IVLP.N_CTX_TEXT == 2


def test_extend_cfg_keeps_existing_values_and_is_idempotent():
    cfg = get_cfg_default()
    cfg.OPTIM.LR = 0.0025  # a modified OPTIM must not leak into OPTIM_VNET
    from yacs.config import CfgNode as CN
    cfg.TRAINER.PROMETAR = CN()  # as if the official train.py extended it with other values
    cfg.TRAINER.PROMETAR.N_CTX_TEXT = 2
    cfg.DATASET.SUBSAMPLE_CLASSES = "base"
    extend_cfg(cfg)
    assert cfg.TRAINER.PROMETAR.N_CTX_TEXT == 2 and cfg.DATASET.SUBSAMPLE_CLASSES == "base"
    assert cfg.TRAINER.PROMETAR.META_REG is True and cfg.OPTIM_VNET.LR == 0.0003
    before = cfg.dump()
    extend_cfg(cfg)
    assert cfg.dump() == before
    cfg.freeze()
    with pytest.raises(RuntimeError):
        extend_cfg(cfg)


# ---------------------------------------------------------------- yacs semantics
def test_yaml_merge_semantics(tmp_path):
    path = _write(tmp_path, "ok.yaml", "OPTIM:\n  WARMUP_CONS_LR: 1e-6\n  WEIGHT_DECAY: 5e-4\n"
                  "INPUT:\n  SIZE: (224, 224)\n  TRANSFORMS: [\"random_flip\"]\n"
                  "DATASET:\n  SUBSAMPLE_CLASSES: base\n")
    cfg = load_cfg(None, path)
    assert cfg.OPTIM.WARMUP_CONS_LR == 1e-6 and isinstance(cfg.OPTIM.WARMUP_CONS_LR, float)
    assert cfg.OPTIM.WEIGHT_DECAY == 5e-4
    assert cfg.INPUT.SIZE == (224, 224) and cfg.INPUT.TRANSFORMS == ("random_flip",)
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "base"
    assert cfg.is_frozen()


@pytest.mark.parametrize("text, key", [
    ("OPTIM:\n  LR: 1\n", "OPTIM.LR"),                 # int where float expected
    ("DATASET:\n  NUM_SHOTS: 1.5\n", "DATASET.NUM_SHOTS"),  # float where int expected
    ("OPTIM:\n  NOPE: 1\n", "OPTIM.NOPE"),             # unknown key
    ("TRAINER:\n  PROMETAR:\n    TEXT_LOSS_WEIGHT: 50\n", "TRAINER.PROMETAR.TEXT_LOSS_WEIGHT"),
])
def test_yaml_errors_name_file_and_key(tmp_path, text, key):
    path = _write(tmp_path, "bad.yaml", text)
    with pytest.raises((KeyError, ValueError)) as info:
        load_cfg(None, path)
    assert path in str(info.value) and key in str(info.value)


def test_missing_yaml_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_cfg(str(tmp_path / "nope.yaml"), None)


def test_opts_semantics_and_errors():
    cfg = load_cfg(None, None, ["OPTIM.LR", "0.01", "DATASET.NUM_SHOTS", "16", "TEST.FINAL_MODEL", "best_val",
                                "INPUT.TRANSFORMS", "['normalize']", "OPTIM.WARMUP_MIN_LR", "1e-7"])
    assert cfg.OPTIM.LR == 0.01 and cfg.DATASET.NUM_SHOTS == 16 and cfg.TEST.FINAL_MODEL == "best_val"
    assert cfg.INPUT.TRANSFORMS == ("normalize",) and cfg.OPTIM.WARMUP_MIN_LR == 1e-7
    with pytest.raises(ValueError, match="odd"):
        load_cfg(None, None, ["OPTIM.LR"])
    with pytest.raises((KeyError, AssertionError), match="OPTIM.NOPE"):
        load_cfg(None, None, ["OPTIM.NOPE", "1"])
    with pytest.raises(ValueError, match="OPTIM.MAX_EPOCH"):
        merge_opts(extend_cfg(get_cfg_default()), ["OPTIM.MAX_EPOCH", "2.5"])


def test_load_order_and_cli_quirks(tmp_path):
    ds = _write(tmp_path, "ds.yaml", "DATASET:\n  NAME: \"EuroSAT\"\nOPTIM:\n  LR: 0.1\n")
    method = _write(tmp_path, "m.yaml", "OPTIM:\n  LR: 0.2\nSEED: 5\n")
    # no args: YAML SEED kept; method YAML overrides dataset YAML
    cfg = load_cfg(ds, method, [])
    assert (cfg.DATASET.NAME, cfg.OPTIM.LR, cfg.SEED) == ("EuroSAT", 0.2, 5)
    parser = build_arg_parser()
    # parser default --seed -1 is truthy: overwrites the YAML seed (Dassl quirk)
    args = parser.parse_args(["--trainer", "ProMetaR", "--output-dir", "out", "--root", "/d"])
    cfg = load_cfg(ds, method, args.opts, args)
    assert (cfg.SEED, cfg.TRAINER.NAME, cfg.OUTPUT_DIR, cfg.DATASET.ROOT) == (-1, "ProMetaR", "out", "/d")
    # --seed 0 is falsy: ignored
    cfg = load_cfg(ds, method, [], argparse.Namespace(seed=0))
    assert cfg.SEED == 5
    # opts come last and win over flags
    args = parser.parse_args(["--seed", "2", "OPTIM.LR", "0.3", "SEED", "7"])
    cfg = load_cfg(ds, method, args.opts, args)
    assert (cfg.SEED, cfg.OPTIM.LR) == (7, 0.3)
    # mapping args work too; list flags are assigned as given
    cfg = load_cfg(None, None, None, {"transforms": ["normalize"], "seed": 3})
    assert cfg.INPUT.TRANSFORMS == ["normalize"] and cfg.SEED == 3


def test_dump_cfg_round_trip(tmp_path):
    cfg = load_cfg(os.path.join(REPO, "configs", "datasets", "eurosat.yaml"), MAIN_YAML,
                   ["DATASET.SUBSAMPLE_CLASSES", "base", "SEED", "1"])
    path = dump_cfg(cfg, str(tmp_path / "sub" / "config.yaml"))
    assert os.path.isfile(path)
    again = load_cfg(None, path)
    assert again == cfg


# ---------------------------------------------------------------- shipped YAMLs
DATASET_NAMES = {
    "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars", "oxford_flowers": "OxfordFlowers", "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DescribableTextures", "eurosat": "EuroSAT",
    "ucf101": "UCF101", "imagenetv2": "ImageNetV2", "imagenet_sketch": "ImageNetSketch",
    "imagenet_a": "ImageNetA", "imagenet_r": "ImageNetR", "prometar_world": "PrometarWorld",
    "imagefolder": "ImageFolder",
}


def test_dataset_yamls():
    files = sorted(glob.glob(os.path.join(REPO, "configs", "datasets", "*.yaml")))
    assert {os.path.basename(f)[:-5] for f in files} == set(DATASET_NAMES)
    for f in files:
        assert yaml.safe_load(open(f)) == {"DATASET": {"NAME": DATASET_NAMES[os.path.basename(f)[:-5]]}}
        cfg = extend_cfg(get_cfg_default())
        merge_file(cfg, f)


def test_every_trainer_yaml_merges():
    files = sorted(glob.glob(os.path.join(TRAINER_DIR, "*.yaml")))
    assert len(files) == 12  # 8 ViT-B/16 configs (4 learners, plain and + ProMetaR) + 4 for the bundled world
    for f in files:
        cfg = load_cfg(os.path.join(REPO, "configs", "datasets", "dtd.yaml"), f)
        assert cfg.TRAINER.PROMETAR.LEARNER in LEARNERS, f


def test_main_yaml_official_values_and_explicit_keys():
    raw = yaml.safe_load(open(MAIN_YAML))
    assert set(raw["TRAINER"]["PROMETAR"]) == set(PROMETAR_DEFAULTS)
    assert set(raw["OPTIM_VNET"]) == set(get_cfg_default().OPTIM)
    assert set(raw["OPTIM"]) == set(get_cfg_default().OPTIM)
    assert {"FINAL_MODEL"} <= set(raw["TEST"]) and {"CHECKPOINT_FREQ", "PRINT_FREQ"} <= set(raw["TRAIN"])
    cfg = load_cfg(None, MAIN_YAML)
    expected = {
        "DATALOADER.TRAIN_X.BATCH_SIZE": 4, "DATALOADER.TEST.BATCH_SIZE": 100, "DATALOADER.NUM_WORKERS": 8,
        "INPUT.SIZE": (224, 224), "INPUT.INTERPOLATION": "bicubic",
        "INPUT.PIXEL_MEAN": [0.48145466, 0.4578275, 0.40821073],
        "INPUT.PIXEL_STD": [0.26862954, 0.26130258, 0.27577711],
        "INPUT.TRANSFORMS": ("random_resized_crop", "random_flip", "normalize"),
        "OPTIM.NAME": "sgd", "OPTIM.LR": 0.0025, "OPTIM.MAX_EPOCH": 10, "OPTIM.LR_SCHEDULER": "cosine",
        "OPTIM.WARMUP_EPOCH": 1, "OPTIM.WARMUP_TYPE": "constant", "OPTIM.WARMUP_CONS_LR": 1e-5,
        "OPTIM.WEIGHT_DECAY": 5e-4, "OPTIM.MOMENTUM": 0.9,
        "OPTIM_VNET.NAME": "sgd", "OPTIM_VNET.LR": 0.00025, "OPTIM_VNET.MAX_EPOCH": 10,
        "OPTIM_VNET.LR_SCHEDULER": "cosine", "OPTIM_VNET.WARMUP_EPOCH": 1, "OPTIM_VNET.WARMUP_TYPE": "constant",
        "OPTIM_VNET.WARMUP_CONS_LR": 1e-6, "TRAIN.PRINT_FREQ": 20, "MODEL.BACKBONE.NAME": "ViT-B/16",
        "TEST.FINAL_MODEL": "last_step", "SEED": -1,
    }
    flat = _flatten(cfg)
    for key, value in expected.items():
        assert flat[key] == value, key
    assert dict(cfg.TRAINER.PROMETAR) == PROMETAR_DEFAULTS


SIBLINGS = {
    "vit_b16_c2_ep10_batch4_4+4ctx_ivlp.yaml": {"TRAINER.PROMETAR.META_REG": False},
    "vit_b16_c2_ep10_batch4_4ctx_coop_metareg.yaml": {
        "TRAINER.PROMETAR.LEARNER": "CoOp", "TRAINER.PROMETAR.PROMPT_DEPTH_TEXT": 1,
        "TRAINER.PROMETAR.PROMPT_DEPTH_VISION": 0},
    "vit_b16_c2_ep10_batch4_4ctx_vpt_metareg.yaml": {
        "TRAINER.PROMETAR.LEARNER": "VPT", "TRAINER.PROMETAR.PROMPT_DEPTH_TEXT": 0},
    "vit_b16_c2_ep5_batch4_2ctx_maple_metareg.yaml": {
        "TRAINER.PROMETAR.LEARNER": "MaPLe", "TRAINER.PROMETAR.N_CTX_TEXT": 2, "TRAINER.PROMETAR.N_CTX_VISION": 2,
        "OPTIM.LR": 0.0035, "OPTIM.MAX_EPOCH": 5, "OPTIM_VNET.MAX_EPOCH": 5},
}


@pytest.mark.parametrize("name", sorted(SIBLINGS))
def test_sibling_yamls_differ_only_where_intended(name):
    main = _flatten(load_cfg(None, MAIN_YAML))
    diff = SIBLINGS[name]
    for with_meta in (True, False):
        file_name = name if with_meta or name.endswith("_ivlp.yaml") else name.replace("_metareg", "")
        if not with_meta and name.endswith("_ivlp.yaml"):
            continue
        flat = _flatten(load_cfg(None, os.path.join(TRAINER_DIR, file_name)))
        want = dict(diff)
        if not with_meta:
            want["TRAINER.PROMETAR.META_REG"] = False
        changed = {k: v for k, v in flat.items() if main[k] != v}
        assert changed == want, file_name
