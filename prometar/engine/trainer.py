"""The built-in (Dassl-free) training engine: Dassl's loop, prints, LR stepping and file layout.

Checkpoints are the per-epoch transaction of :mod:`prometar.engine.epochs`, shared with the Dassl trainer: every
epoch is saved and published by a manifest (the previous one pruned unless TRAIN.CHECKPOINT_FREQ keeps it), with
the RNG, sampler and best-val states, so a resumed run continues exactly as an uninterrupted one.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Optional

import torch
from tqdm import tqdm

from .parts import PartsBuilder, pick_device
from .epochs import EpochCheckpoints, TrainingDiverged
from .evaluator import build_evaluator
from .history import record_epoch
from .meters import AverageMeter, MetricMeter, format_duration, format_progress, should_print

__all__ = ["Trainer", "TrainingDiverged"]


class Trainer:
    """Builds data, model and evaluator from a frozen config and runs Dassl's TrainerX lifecycle."""

    def __init__(self, cfg: Any, device: Optional[torch.device] = None, *, builder: PartsBuilder):
        from ..data import build_data

        self.cfg = cfg
        self.builder = builder
        self.device = device or pick_device(cfg.USE_CUDA)
        self.output_dir = cfg.OUTPUT_DIR
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.start_epoch = self.epoch = 0
        self.dm = build_data(cfg)
        self.parts = builder.build_trainer_parts(cfg, self.dm.dataset.classnames, self.device)
        self.model = self.parts.model
        self.evaluator = build_evaluator(cfg, lab2cname=self.dm.lab2cname)
        self.checkpoints = EpochCheckpoints(self.output_dir, self.parts, cfg, builder.load_learner_state)

    # ------------------------------------------------------------------ checkpoints
    def resume_if_exist(self, directory: str) -> int:
        """Resume from the newest complete epoch of `directory` (:class:`EpochCheckpoints`); returns the start epoch."""
        return self.checkpoints.resume(directory, self.device)

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """Eval-time weights: `<directory>/VLPromptLearner/model.pth.tar-<epoch>` (or `model-best.pth.tar`) and the
        modulator's, strictly (`build.load_trained_weights`); class-dependent state is rebuilt from this run's
        class names."""
        self.builder.load_trained_weights(self.model, self.parts.modulator, directory, epoch, map_location=self.device)

    # ------------------------------------------------------------------ loop
    def train(self) -> float:
        """Resume if possible, train the remaining epochs, then test (unless TEST.NO_TEST); returns the test result."""
        self.start_epoch = self.resume_if_exist(self.cfg.RESUME or self.output_dir)
        self.time_start = time.time()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.run_epoch()
            self.after_epoch()
        return self.after_train()

    def run_epoch(self) -> None:
        self.model.train()
        loader = self.dm.train_loader_x
        self.num_batches = len(loader)
        batch_time, data_time, losses = AverageMeter(), AverageMeter(), MetricMeter()
        bar = tqdm(total=self.num_batches, desc=f"epoch {self.epoch + 1}/{self.max_epoch}", leave=False,
                   disable=not sys.stderr.isatty(), file=sys.stderr)
        end = time.time()
        for self.batch_idx, batch in enumerate(loader):
            data_time.update(time.time() - end)
            images = batch["img"].to(self.device, non_blocking=True)
            labels = batch["label"].to(self.device, non_blocking=True)
            try:
                metrics = self.parts.step(images, labels)
            except FloatingPointError as exc:
                raise TrainingDiverged(f"training stopped at epoch {self.epoch + 1}, batch {self.batch_idx + 1} "
                                       f"(step {self.checkpoints.global_step + 1}): {exc}. Last good checkpoint: "
                                       f"{self.checkpoints.describe_last_good()}") from exc
            self.checkpoints.global_step += 1
            if self.batch_idx + 1 == self.num_batches:
                self.parts.update_lr()
            losses.update(metrics.as_dict())
            batch_time.update(time.time() - end)
            bar.update(1)
            if should_print(self.batch_idx, self.num_batches, self.cfg.TRAIN.PRINT_FREQ):
                lr = self.parts.optim.param_groups[0]["lr"]
                print(format_progress(self.epoch, self.max_epoch, self.batch_idx, self.num_batches, batch_time,
                                      data_time, losses, lr))
            end = time.time()
        bar.close()
        self.epoch_meters = losses  # read by after_epoch's history record

    def after_epoch(self) -> None:
        result = None
        if not self.cfg.TEST.NO_TEST and self.cfg.TEST.FINAL_MODEL == "best_val":
            result = self.test(split="val")
        # history.jsonl (+ TensorBoard events) before the checkpoint: a crash in between redoes this epoch
        record_epoch(self, self.epoch_meters.meters, "builtin", tensorboard=True, val_acc=result)
        self.checkpoints.end_epoch(self.epoch, val_result=result)

    def after_train(self) -> float:
        print("Finish training")
        result = float("nan")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            result = self.test()
        print(f"Elapsed: {format_duration(time.time() - self.time_start)}")
        return result

    @torch.no_grad()
    def test(self, split: Optional[str] = None) -> float:
        """Evaluate on `split` (TEST.SPLIT by default), print Dassl's result block, return accuracy."""
        self.model.eval()
        self.evaluator.reset()
        split = split or self.cfg.TEST.SPLIT
        loader = self.dm.val_loader if split == "val" and self.dm.val_loader is not None else self.dm.test_loader
        print(f"Evaluate on the *{split}* set")
        for batch in tqdm(loader, file=sys.stderr, disable=not sys.stderr.isatty(), leave=False):
            images = batch["img"].to(self.device, non_blocking=True)
            self.evaluator.process(self.model(images), batch["label"].to(self.device))
        results = self.evaluator.evaluate()
        return float(next(iter(results.values())))
