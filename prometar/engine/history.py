"""Per-epoch training records: ``<output>/history.jsonl`` (both engines) and TensorBoard events (built-in engine).

One JSON object per finished epoch, e.g.::

    {"epoch": 3, "max_epoch": 10, "iter": 60, "meters": {"ce": 0.41, "reg_text": 0.02, ...},
     "lr": {"VLPromptLearner": 0.0019, "GradientModulator": 1e-05}, "val_acc": 81.2,
     "epoch_s": 12.3, "time": 1764757200.0, "engine": "builtin"}

``epoch`` is 1-based (as in ``epoch [3/10]`` and ``model.pth.tar-3``); ``meters`` are the epoch averages of
the per-batch values the progress line prints (``ce``, ``reg_text``, ``reg_image``, ``meta_loss``, ``gate``,
``meta`` = share of steps that ran the meta step); ``lr`` is the LR each optimiser used during the epoch;
``train_acc`` / ``val_acc`` / ``test_acc`` appear only when measured.  The file is rewritten atomically at
every epoch end and keeps only the records of earlier epochs, so a run killed after writing epoch k+1 but
before its checkpoint, then resumed from epoch k, never holds the same epoch twice.

TensorBoard (optional: only when ``torch.utils.tensorboard`` imports) uses Dassl's tags and folder:
``<output>/tensorboard``, ``train/<meter>`` and ``train/lr`` at the epoch's last iteration,
``val/accuracy`` at the epoch.  Dassl runs write their own events through Dassl.
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Dict, List, Mapping, Optional

__all__ = ["HISTORY_FILE", "TENSORBOARD_DIR", "EpochHistory", "read_history", "optimizer_lrs", "record_epoch"]

HISTORY_FILE = "history.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _num(value: Any) -> Optional[float]:
    """A JSON-safe float (None for NaN / inf / non-numbers)."""
    try:
        value = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_history(path: str) -> List[Dict[str, Any]]:
    """Records of a ``history.jsonl`` (a folder is taken as ``<folder>/history.jsonl``), sorted by epoch,
    one per epoch (the last one wins); unreadable lines are skipped; [] when the file is absent."""
    if os.path.isdir(path):
        path = os.path.join(path, HISTORY_FILE)
    by_epoch: Dict[int, Dict[str, Any]] = {}
    try:
        with open(path, "r", encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                    by_epoch[int(rec["epoch"])] = rec
                except (ValueError, KeyError, TypeError):
                    continue
    except OSError:
        return []
    return [by_epoch[e] for e in sorted(by_epoch)]


def optimizer_lrs(parts: Any, epoch: int) -> Dict[str, float]:
    """LR each optimiser of a :class:`prometar.build.TrainerParts` used during 0-based ``epoch``.

    Read from the schedule (the optimiser already holds the next epoch's LR at epoch end); the modulator's
    optimiser keeps its LR when its scheduler is not stepped (the official default).
    """
    from .parts import MODEL_NAME, MODULATOR_NAME

    def used(optim: Any, sched: Any, stepped: bool) -> Optional[float]:
        group = optim.param_groups[0]
        if stepped and hasattr(sched, "lr_at") and getattr(sched, "base_lrs", None):
            return _num(sched.lr_at(epoch, sched.base_lrs[0]))
        return _num(group["lr"])

    out = {MODEL_NAME: used(parts.optim, parts.sched, True)}
    if getattr(parts, "optim_mod", None) is not None:
        out[MODULATOR_NAME] = used(parts.optim_mod, parts.sched_mod, bool(parts.step_mod_sched))
    return {k: v for k, v in out.items() if v is not None}


class EpochHistory:
    """Writes ``history.jsonl`` (and optionally TensorBoard events) for one output folder."""

    def __init__(self, output_dir: str, engine: str, tensorboard: bool = False,
                 start_time: Optional[float] = None, purge_step: Optional[int] = None) -> None:
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, HISTORY_FILE)
        self.engine = engine
        self._last_time = time.time() if start_time is None else start_time
        self._writer: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except Exception:  # tensorboard is optional: no events, no error
                SummaryWriter = None
            if SummaryWriter is not None:
                log_dir = os.path.join(output_dir, TENSORBOARD_DIR)
                os.makedirs(log_dir, exist_ok=True)
                # purge_step: on resume, TensorBoard hides the events a killed run wrote from this step on
                self._writer = SummaryWriter(log_dir=log_dir, purge_step=purge_step)

    @property
    def tensorboard(self) -> bool:
        """True when TensorBoard events are being written."""
        return self._writer is not None

    def record(self, epoch: int, max_epoch: int, meters: Mapping[str, Any], lrs: Mapping[str, Any],
               iteration: Optional[int] = None, **accuracies: Any) -> Dict[str, Any]:
        """Add the record of 1-based ``epoch``: the file is rewritten atomically with the records of epochs
        before it followed by this one (later epochs, left by a killed run, are dropped).  ``accuracies``:
        ``train_acc=``, ``val_acc=``, ... (None values are left out).  Returns the record."""
        from ..io import atomic_write_text

        now = time.time()
        rec: Dict[str, Any] = {"epoch": int(epoch), "max_epoch": int(max_epoch)}
        if iteration is not None:
            rec["iter"] = int(iteration)
        rec["meters"] = {k: v for k, v in ((str(k), _num(v)) for k, v in meters.items()) if v is not None}
        rec["lr"] = {k: v for k, v in ((str(k), _num(v)) for k, v in lrs.items()) if v is not None}
        for key, value in accuracies.items():
            if _num(value) is not None:
                rec[key] = _num(value)
        rec["epoch_s"] = round(now - self._last_time, 3)
        rec["time"] = round(now, 3)
        rec["engine"] = self.engine
        self._last_time = now
        kept = [r for r in read_history(self.path) if r["epoch"] < epoch] + [rec]
        os.makedirs(self.output_dir, exist_ok=True)
        atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=False) + "\n" for r in kept))
        if self._writer is not None:
            step = rec["iter"] - 1 if "iter" in rec else epoch  # Dassl's n_iter of the epoch's last batch
            for name, value in rec["meters"].items():
                self._writer.add_scalar(f"train/{name}", value, step)
            if rec["lr"]:
                self._writer.add_scalar("train/lr", next(iter(rec["lr"].values())), step)
            for key in accuracies:
                if key in rec:
                    split = key[:-4] if key.endswith("_acc") else key
                    self._writer.add_scalar(f"{split}/accuracy", rec[key], epoch - 1)
            self._writer.flush()
        return rec

    def close(self) -> None:
        """Close the TensorBoard writer (if any)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def record_epoch(trainer: Any, meters: Mapping[str, Any], engine: str, tensorboard: bool = False,
                 **accuracies: Any) -> Dict[str, Any]:
    """The engines' after-epoch hook: record ``trainer.epoch`` (0-based) of a trainer that has ``output_dir``,
    ``max_epoch``, ``parts`` (TrainerParts), ``time_start`` and optionally ``num_batches``; the
    :class:`EpochHistory` lives on the trainer as ``_epoch_history`` and is closed after the last epoch."""
    epoch = int(trainer.epoch)
    n = getattr(trainer, "num_batches", None)
    history = trainer.__dict__.get("_epoch_history")
    if history is None:
        history = EpochHistory(trainer.output_dir, engine, tensorboard, getattr(trainer, "time_start", None),
                               purge_step=epoch * n if n and epoch else None)
        trainer._epoch_history = history
    meter_values = {k: getattr(m, "avg", m) for k, m in meters.items()}
    if "acc" in meter_values and "train_acc" not in accuracies:
        accuracies["train_acc"] = meter_values["acc"]
    rec = history.record(epoch + 1, int(trainer.max_epoch), meter_values, optimizer_lrs(trainer.parts, epoch),
                         iteration=(epoch + 1) * n if n else None, **accuracies)
    if epoch + 1 >= int(trainer.max_epoch):
        history.close()
        trainer._epoch_history = None
    return rec
