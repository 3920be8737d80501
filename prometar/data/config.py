"""The data side's config: the full run config (defaults + ProMetaR keys) with keyword overrides for tests."""
from __future__ import annotations

from typing import Any

from yacs.config import CfgNode as CN


def data_cfg_defaults() -> CN:
    """The full run config (Dassl's defaults + ProMetaR's keys): the data side reads its SEED, INPUT, DATASET and
    DATALOADER sections."""
    from ..config import extend_cfg, get_cfg_default

    return extend_cfg(get_cfg_default())


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
