"""Configuration: Dassl v0.6.3-compatible defaults, ProMetaR extensions and loading.

The config is a plain yacs ``CfgNode``, so YAML files and ``opts`` lists written for Dassl merge
identically (unknown key -> error, strict int/float typing, list->tuple coercion, literal
evaluation of strings such as ``1e-5``).  Nothing here imports Dassl.

Public API:
    get_cfg_default() -> CfgNode          fresh tree with every Dassl v0.6.3 default key
    extend_cfg(cfg) -> CfgNode            add ProMetaR keys (only those absent; safe on a Dassl cfg)
    reset_cfg(cfg, args) -> CfgNode       apply train.py's CLI flags (Dassl quirks included)
    load_cfg(dataset_config_file, config_file, opts, args=None) -> frozen CfgNode
    dump_cfg(cfg, path) -> str            write the resolved config as YAML
    build_arg_parser() -> ArgumentParser  the CLI flags of CoOp-family train.py
"""
from __future__ import annotations

import argparse
import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from yacs.config import CfgNode as CN

from .io import atomic_write_text

__all__ = [
    "CN",
    "ConfigKeyError",
    "ConfigFileError",
    "PROMETAR_DEFAULTS",
    "IVLP_DEFAULTS",
    "get_cfg_default",
    "get_optim_default",
    "extend_cfg",
    "reset_cfg",
    "merge_file",
    "merge_opts",
    "load_cfg",
    "dump_cfg",
    "build_arg_parser",
]


def __getattr__(name: str) -> Any:
    """``LEARNERS``: the allowed values of TRAINER.PROMETAR.LEARNER, the names of the learner registry
    ``prometar.learners.LEARNERS`` (read on use: importing the config must not import torch)."""
    if name == "LEARNERS":
        from .learners import LEARNERS

        return tuple(LEARNERS)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: ``TRAINER.PROMETAR`` keys: the official ones (train.py of the ProMetaR repo) then this project's.
PROMETAR_DEFAULTS: dict[str, Any] = {
    "N_CTX_VISION": 4,
    "N_CTX_TEXT": 4,
    "CTX_INIT": "a photo of a",
    "PREC": "fp16",  # fp16, fp32, amp
    "PROMPT_DEPTH_VISION": 9,
    "PROMPT_DEPTH_TEXT": 9,
    "ADAPT_LR": 0.0005,
    "LR_RATIO": 0.0005,
    "FAST_ADAPTATION": False,
    "MIXUP_ALPHA": 0.5,
    "MIXUP_BETA": 0.5,
    "DIM_RATE": 8,
    # --- this project's keys ---
    "TEXT_LOSS_WEIGHT": 50.0,
    "IMAGE_LOSS_WEIGHT": 20.0,
    "STEP_VNET_SCHED": False,  # True: step the modulator's scheduler every epoch; False: official
    "LEARNER": "IVLP",  # a name of the learner registry, prometar.learners.LEARNERS
    "META_REG": True,  # False: plain cross-entropy training of the learner (baseline)
    "AMP_DTYPE": "bf16",  # autocast dtype when PREC == "amp": bf16 or fp16
    "TEXT_CHUNK": -1,  # classes encoded at a time on the text side: -1 automatic, 0 all at once, N > 0
    "TEXT_CHUNK_MB": 0.0,  # budget of the automatic TEXT_CHUNK (0: from the device's free memory)
}

#: The leftover ``TRAINER.IVLP`` block that ProMetaR's train.py also defines.
IVLP_DEFAULTS: dict[str, Any] = {
    "N_CTX_VISION": 2,
    "N_CTX_TEXT": 2,
    "CTX_INIT": "a photo of a",
    "PREC": "fp16",
    "PROMPT_DEPTH_VISION": 9,
    "PROMPT_DEPTH_TEXT": 9,
}


class ConfigError(Exception):
    """Base of the errors in a config the user gave (files, KEY VALUE options): train.py reports them as one
    ``ERROR:`` line (exit 2). Each is also an instance of the built-in type it replaces."""


class ConfigKeyError(ConfigError, KeyError):
    """A KeyError whose message prints without KeyError's extra quotes."""

    def __str__(self) -> str:  # pragma: no cover - trivial
        return str(self.args[0]) if self.args else ""


class ConfigFileError(ConfigError, ValueError):
    """A config file that is not valid YAML; the message names the file, line and column."""


class ConfigValueError(ConfigError, ValueError):
    """A bad value or option in the config the user gave."""


class ConfigAssertionError(ConfigError, AssertionError):
    """yacs' AssertionError (unknown key, wrong type) with the file or option named."""


class ConfigTypeError(ConfigError, TypeError):
    """yacs' TypeError with the file or option named."""


class ConfigFileNotFound(ConfigError, FileNotFoundError):
    """A config file that does not exist."""


_CONTEXT_TYPES = ((KeyError, ConfigKeyError), (AssertionError, ConfigAssertionError), (TypeError, ConfigTypeError))


def _yaml_error(exc: Exception, path: str, what: str) -> ConfigFileError:
    """A ConfigFileError for a YAML syntax error in ``path``, naming the file, line and column.

    PyYAML reports positions in ``"<unicode string>"`` because yacs parses the file's text; the marks'
    line/column numbers are those of the file.
    """
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f'{what} "{path}"'
    if mark is not None:
        where += f", line {mark.line + 1}, column {mark.column + 1}"
    problem = getattr(exc, "problem", None) or str(exc).split("\n")[0]
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        problem += f" ({context} started at line {context_mark.line + 1})"
    snippet = ""
    if mark is not None and getattr(mark, "buffer", None) is not None:
        lines = mark.buffer.splitlines()
        if 0 <= mark.line < len(lines) and lines[mark.line].strip():
            snippet = f"\n    {lines[mark.line]}\n    {' ' * mark.column}^"
    return ConfigFileError(f"{where}: YAML syntax error: {problem}{snippet}\nFix the YAML syntax of that file.")


def _node(values: Mapping[str, Any]) -> CN:
    """Build a CfgNode from a (possibly nested) mapping, keeping insertion order."""
    node = CN()
    for key, value in values.items():
        node[key] = _node(value) if isinstance(value, Mapping) else value
    return node


def get_optim_default() -> CN:
    """Return a fresh ``OPTIM`` block with Dassl v0.6.3 defaults (also used for ``OPTIM_VNET``)."""
    return _node(
        {
            "NAME": "adam",  # adam, amsgrad, sgd, rmsprop, radam, adamw
            "LR": 0.0003,
            "WEIGHT_DECAY": 5e-4,
            "MOMENTUM": 0.9,
            "SGD_DAMPNING": 0,  # (sic) an int in Dassl
            "SGD_NESTEROV": False,
            "RMSPROP_ALPHA": 0.99,
            "ADAM_BETA1": 0.9,
            "ADAM_BETA2": 0.999,
            "STAGED_LR": False,
            "NEW_LAYERS": (),
            "BASE_LR_MULT": 0.1,
            "LR_SCHEDULER": "single_step",  # single_step, multi_step, cosine
            "STEPSIZE": (-1,),  # -1 or 0: step size = MAX_EPOCH
            "GAMMA": 0.1,
            "MAX_EPOCH": 10,
            "WARMUP_EPOCH": -1,  # > 0 activates warm-up
            "WARMUP_TYPE": "linear",  # linear, constant
            "WARMUP_CONS_LR": 1e-5,
            "WARMUP_MIN_LR": 1e-5,
            "WARMUP_RECOUNT": True,
        }
    )


def _dassl_trainer_blocks() -> dict[str, dict[str, Any]]:
    """Dassl's own (unused here) trainer blocks, present so printed configs match Dassl's."""
    return {
        "MCD": {"N_STEP_F": 4},
        "MME": {"LMDA": 0.1},
        "CDAC": {
            "CLASS_LR_MULTI": 10,
            "RAMPUP_COEF": 30,
            "RAMPUP_ITRS": 1000,
            "TOPK_MATCH": 5,
            "P_THRESH": 0.95,
            "STRONG_TRANSFORMS": (),
        },
        "SE": {"EMA_ALPHA": 0.999, "CONF_THRE": 0.95, "RAMPUP": 300},
        "M3SDA": {"LMDA": 0.5, "N_STEP_F": 4},
        "DAEL": {"WEIGHT_U": 0.5, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()},
        "CROSSGRAD": {"EPS_F": 1.0, "EPS_D": 1.0, "ALPHA_F": 0.5, "ALPHA_D": 0.5},
        "DDAIG": {
            "G_ARCH": "",
            "LMDA": 0.3,
            "CLAMP": False,
            "CLAMP_MIN": -1.0,
            "CLAMP_MAX": 1.0,
            "WARMUP": 0,
            "ALPHA": 0.5,
        },
        "DAELDG": {"WEIGHT_U": 0.5, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()},
        "DOMAINMIX": {"TYPE": "crossdomain", "ALPHA": 1.0, "BETA": 1.0},
        "ENTMIN": {"LMDA": 1e-3},
        "MEANTEACHER": {"WEIGHT_U": 1.0, "EMA_ALPHA": 0.999, "RAMPUP": 5},
        "MIXMATCH": {"WEIGHT_U": 100.0, "TEMP": 2.0, "MIXUP_BETA": 0.75, "RAMPUP": 20000},
        "FIXMATCH": {"WEIGHT_U": 1.0, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()},
    }


#: Dassl v0.6.3's top-level defaults (its ``get_cfg_default()``), except ``OPTIM`` and ``TRAINER`` (below).
DASSL_DEFAULTS: dict[str, Any] = {
    "VERSION": 1,
    "OUTPUT_DIR": "./output",
    "RESUME": "",
    "SEED": -1,
    "USE_CUDA": True,
    "VERBOSE": True,
    "INPUT": {
        "SIZE": (224, 224),
        "INTERPOLATION": "bilinear",
        "TRANSFORMS": (),
        "NO_TRANSFORM": False,
        "PIXEL_MEAN": [0.485, 0.456, 0.406],
        "PIXEL_STD": [0.229, 0.224, 0.225],
        "CROP_PADDING": 4,
        "RRCROP_SCALE": (0.08, 1.0),
        "CUTOUT_N": 1,
        "CUTOUT_LEN": 16,
        "GN_MEAN": 0.0,
        "GN_STD": 0.15,
        "RANDAUGMENT_N": 2,
        "RANDAUGMENT_M": 10,
        "COLORJITTER_B": 0.4,
        "COLORJITTER_C": 0.4,
        "COLORJITTER_S": 0.4,
        "COLORJITTER_H": 0.1,
        "RGS_P": 0.2,
        "GB_P": 0.5,
        "GB_K": 21,
    },
    "DATASET": {
        "ROOT": "",
        "NAME": "",
        "SOURCE_DOMAINS": (),
        "TARGET_DOMAINS": (),
        "NUM_LABELED": -1,
        "NUM_SHOTS": -1,
        "VAL_PERCENT": 0.1,
        "STL10_FOLD": -1,
        "CIFAR_C_TYPE": "",
        "CIFAR_C_LEVEL": 1,
        "ALL_AS_UNLABELED": False,
    },
    "DATALOADER": {
        "NUM_WORKERS": 4,
        "K_TRANSFORMS": 1,
        "RETURN_IMG0": False,
        "TRAIN_X": {
            "SAMPLER": "RandomSampler",
            "BATCH_SIZE": 32,
            "N_DOMAIN": 0,
            "N_INS": 16,
        },
        "TRAIN_U": {
            "SAME_AS_X": True,
            "SAMPLER": "RandomSampler",
            "BATCH_SIZE": 32,
            "N_DOMAIN": 0,
            "N_INS": 16,
        },
        "TEST": {"SAMPLER": "SequentialSampler", "BATCH_SIZE": 32},
    },
    "MODEL": {
        "INIT_WEIGHTS": "",
        "BACKBONE": {"NAME": "", "PRETRAINED": True},
        "HEAD": {
            "NAME": "",
            "HIDDEN_LAYERS": (),
            "ACTIVATION": "relu",
            "BN": True,
            "DROPOUT": 0.0,
        },
    },
    "TRAIN": {"CHECKPOINT_FREQ": 0, "PRINT_FREQ": 10, "COUNT_ITER": "train_x"},
    "TEST": {
        "EVALUATOR": "Classification",
        "PER_CLASS_RESULT": False,
        "COMPUTE_CMAT": False,
        "NO_TEST": False,
        "SPLIT": "test",
        "FINAL_MODEL": "last_step",  # or best_val
    },
}


def get_cfg_default() -> CN:
    """Return a fresh config tree holding every key of Dassl v0.6.3's ``get_cfg_default()``."""
    cfg = _node(copy.deepcopy(DASSL_DEFAULTS))
    cfg.OPTIM = get_optim_default()
    cfg.TRAINER = CN()
    cfg.TRAINER.NAME = ""
    for name, block in _dassl_trainer_blocks().items():
        cfg.TRAINER[name] = _node(block)
    return cfg


def _add_missing(node: CN, values: Mapping[str, Any]) -> None:
    """Add every key of ``values`` that ``node`` lacks (recursing into sub-mappings)."""
    for key, value in values.items():
        if isinstance(value, Mapping):
            if key not in node:
                node[key] = type(node)()
            _add_missing(node[key], value)
        elif key not in node:
            node[key] = value


#: DATASET.IMAGEFOLDER: the `ImageFolder` dataset (a user's class folders): folder name under DATASET.ROOT,
#: seed and train/val ratios of the split drawn once and saved in that folder (see prometar.data.imagefolder).
IMAGEFOLDER_DEFAULTS: dict[str, Any] = {"DIR": "imagefolder", "SPLIT_SEED": 1, "P_TRAIN": 0.5, "P_VAL": 0.2}


def extend_cfg(cfg: CN) -> CN:
    """Add ProMetaR's keys to ``cfg`` in place (only those absent) and return it.

    Adds ``DATASET.SUBSAMPLE_CLASSES`` ("all"), ``DATASET.IMAGEFOLDER`` (the ``ImageFolder`` dataset's
    folder name ``DIR`` "imagefolder", ``SPLIT_SEED`` 1, ``P_TRAIN`` 0.5, ``P_VAL`` 0.2), a complete ``OPTIM_VNET`` block (Dassl ``OPTIM``
    defaults), ``TRAINER.PROMETAR`` (official keys + this project's) and the leftover
    ``TRAINER.IVLP`` block of the official train.py.  Existing keys and values are never touched,
    so calling it on a Dassl cfg that another method (or the official train.py) already extended
    is safe.  ``cfg`` must not be frozen.
    """
    if cfg.is_frozen():
        raise RuntimeError("extend_cfg() needs an unfrozen config; call it before cfg.freeze()")
    _add_missing(cfg, {"DATASET": {"SUBSAMPLE_CLASSES": "all", "IMAGEFOLDER": IMAGEFOLDER_DEFAULTS}})
    _add_missing(cfg, {"OPTIM_VNET": dict(get_optim_default())})
    _add_missing(cfg, {"TRAINER": {"PROMETAR": PROMETAR_DEFAULTS, "IVLP": IVLP_DEFAULTS}})
    return cfg


def _arg(args: Any, name: str, default: Any = None) -> Any:
    if args is None:
        return default
    if isinstance(args, Mapping):
        return args.get(name, default)
    return getattr(args, name, default)


def reset_cfg(cfg: CN, args: Any) -> CN:
    """Apply the CLI flags of CoOp-family ``train.py`` (``--root``, ``--seed``, ``--output-dir``, the config files, trailing ``KEY VALUE`` opts) to ``cfg``, in place.

    ``args`` is an argparse Namespace or a mapping; absent attributes count as not given.  Quirks
    kept on purpose: a flag is applied only when truthy, so ``--seed 0`` is ignored and the parser's
    default ``-1`` overwrites a ``SEED`` written in a YAML file.  Values are assigned as given (no
    type coercion), exactly like Dassl's scripts.
    """
    mapping = [
        ("root", ("DATASET", "ROOT")),
        ("output_dir", ("OUTPUT_DIR",)),
        ("resume", ("RESUME",)),
        ("seed", ("SEED",)),
        ("source_domains", ("DATASET", "SOURCE_DOMAINS")),
        ("target_domains", ("DATASET", "TARGET_DOMAINS")),
        ("transforms", ("INPUT", "TRANSFORMS")),
        ("trainer", ("TRAINER", "NAME")),
        ("backbone", ("MODEL", "BACKBONE", "NAME")),
        ("head", ("MODEL", "HEAD", "NAME")),
    ]
    for attr, path in mapping:
        value = _arg(args, attr)
        if value:
            node = cfg
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = value
    return cfg


def _with_context(exc: BaseException, where: str) -> BaseException:
    """Return an exception of a compatible type whose message starts with ``where``."""
    msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = f"{where}: {msg}"
    for base, wrapped in _CONTEXT_TYPES:
        if isinstance(exc, base):
            return wrapped(text)
    return ConfigValueError(text)


def merge_file(cfg: CN, path: str, what: str = "config file") -> CN:
    """Merge the YAML file ``path`` into ``cfg`` with yacs semantics; errors name the file."""
    if not os.path.isfile(path):
        raise ConfigFileNotFound(f'{what} not found: "{path}"')
    import yaml

    try:
        cfg.merge_from_file(path)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, path, what) from None
    except (KeyError, ValueError, AssertionError, TypeError) as exc:
        raise _with_context(exc, f'while merging {what} "{path}"') from exc
    return cfg


def merge_opts(cfg: CN, opts: Optional[Sequence[Any]]) -> CN:
    """Merge a flat ``KEY VALUE ...`` list (train.py's trailing ``opts``); errors name the key."""
    if not opts:
        return cfg
    opts = list(opts)
    flags = [str(o) for o in opts if str(o).startswith("--")]
    if flags:  # argparse hands everything after the first KEY to opts
        raise ConfigValueError(f"{' '.join(flags)} after the KEY VALUE options: train.py flags must come before the "
                               f"first KEY VALUE option (e.g. --eval-only --model-dir DIR KEY VALUE ...)")
    if len(opts) % 2:
        raise ConfigValueError(
            f"command-line opts must be KEY VALUE pairs, got an odd number ({len(opts)}): {opts}"
        )
    try:
        cfg.merge_from_list(opts)
    except (KeyError, ValueError, AssertionError, TypeError) as exc:
        raise _with_context(exc, "while merging command-line opts") from exc
    return cfg


def load_cfg(
    dataset_config_file: Optional[str],
    config_file: Optional[str],
    opts: Optional[Sequence[Any]] = None,
    args: Any = None,
    freeze: bool = True,
) -> CN:
    """Build the run config in train.py's order: Dassl defaults, ``extend_cfg``, dataset YAML, method YAML, CLI flags, trailing opts, freeze.

    defaults -> :func:`extend_cfg` -> dataset YAML -> method YAML -> CLI flags (:func:`reset_cfg`,
    skipped when ``args`` is None) -> ``opts`` -> freeze.  Empty/None file names are skipped.
    """
    cfg = extend_cfg(get_cfg_default())
    if dataset_config_file:
        merge_file(cfg, dataset_config_file, "dataset config file")
    if config_file:
        merge_file(cfg, config_file, "config file")
    if args is not None:
        reset_cfg(cfg, args)
    merge_opts(cfg, opts)
    if freeze:
        cfg.freeze()
    return cfg


def dump_cfg(cfg: CN, path: str) -> str:
    """Write ``cfg`` as YAML (keys sorted, yacs' dump) to ``path`` atomically; return the path.

    The file merges back into ``extend_cfg(get_cfg_default())`` unchanged.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, cfg.dump())
    return path


def build_arg_parser() -> argparse.ArgumentParser:
    """Return a parser with the flags of CoOp-family ``train.py``."""
    p = argparse.ArgumentParser(description="Train / evaluate ProMetaR (Dassl-compatible flags)")
    p.add_argument("--root", type=str, default="", help="path to dataset")
    p.add_argument("--output-dir", type=str, default="", help="output directory")
    p.add_argument("--resume", type=str, default="", help="checkpoint directory (from which training resumes)")
    p.add_argument("--seed", type=int, default=-1, help="only positive value enables a fixed seed")
    p.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    p.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    p.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    p.add_argument("--config-file", type=str, default="", help="path to config file")
    p.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    p.add_argument("--trainer", type=str, default="", help="name of trainer")
    p.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    p.add_argument("--head", type=str, default="", help="name of head")
    p.add_argument("--eval-only", action="store_true", help="evaluation only")
    p.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    p.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    p.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="modify config options using the command-line")
    return p
