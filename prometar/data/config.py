"""A minimal yacs config with the keys the data side reads (Dassl v0.6.3 defaults, protocol.md §2.2)."""
from __future__ import annotations

from typing import Any

from yacs.config import CfgNode as CN


def data_cfg_defaults() -> CN:
    """Dassl's defaults for SEED, USE_CUDA, VERBOSE, INPUT, DATASET (+ SUBSAMPLE_CLASSES), DATALOADER."""
    cfg = CN()
    cfg.SEED = -1
    cfg.USE_CUDA = True
    cfg.VERBOSE = True
    cfg.INPUT = CN()
    cfg.INPUT.SIZE = (224, 224)
    cfg.INPUT.INTERPOLATION = "bilinear"
    cfg.INPUT.TRANSFORMS = ()
    cfg.INPUT.NO_TRANSFORM = False
    cfg.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
    cfg.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
    cfg.INPUT.CROP_PADDING = 4
    cfg.INPUT.RRCROP_SCALE = (0.08, 1.0)
    cfg.DATASET = CN()
    cfg.DATASET.ROOT = ""
    cfg.DATASET.NAME = ""
    cfg.DATASET.SOURCE_DOMAINS = ()
    cfg.DATASET.TARGET_DOMAINS = ()
    cfg.DATASET.NUM_SHOTS = -1
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    cfg.DATALOADER = CN()
    cfg.DATALOADER.NUM_WORKERS = 4
    cfg.DATALOADER.K_TRANSFORMS = 1
    cfg.DATALOADER.RETURN_IMG0 = False
    cfg.DATALOADER.TRAIN_X = CN()
    cfg.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 32
    cfg.DATALOADER.TEST = CN()
    cfg.DATALOADER.TEST.SAMPLER = "SequentialSampler"
    cfg.DATALOADER.TEST.BATCH_SIZE = 32
    return cfg


def make_data_cfg(opts: dict[str, Any] | None = None, **dataset: Any) -> CN:
    """Defaults + `DATASET.<KEY>=value` keyword overrides + dotted `opts` ({"INPUT.SIZE": (32, 32)})."""
    cfg = data_cfg_defaults()
    for key, value in dataset.items():
        if key.upper() not in cfg.DATASET:
            raise KeyError(f"DATASET.{key.upper()} is not a data config key; known: {', '.join(cfg.DATASET)}")
        cfg.DATASET[key.upper()] = value
    for dotted, value in (opts or {}).items():
        node = cfg
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        if leaf not in node:
            raise KeyError(f"{dotted} is not a data config key")
        node[leaf] = value
    return cfg
