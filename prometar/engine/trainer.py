"""The built-in (Dassl-free) training engine: Dassl's loop, prints, LR stepping and file layout.

Differences from Dassl, all on purpose: a checkpoint is written after every epoch (the previous one is removed
unless TRAIN.CHECKPOINT_FREQ keeps it, so the final layout is Dassl's) and carries the RNG and sampler states, so
`--resume` after a crash continues exactly as an uninterrupted run; checkpoints hold trainable state only.  An epoch's files become visible together: they are published by
``<OUTPUT_DIR>/manifest-<epoch>.json`` (see :mod:`prometar.engine.integrity`), and resume uses the newest epoch whose
manifest verifies.  Non-finite weights are never published.
"""
from __future__ import annotations

import math
import os
import random
import sys
import time
from typing import Any, Dict, Optional

import numpy as np
import torch
from tqdm import tqdm

from .parts import MODEL_NAME, MODULATOR_NAME, PartsBuilder, pick_device
from .checkpoint import checkpoint_path, load_checkpoint, make_checkpoint, save_checkpoint
from .evaluator import build_evaluator
from .history import record_epoch
from .integrity import fault_point, newest_complete_epoch, nonfinite_tensors, remove_temp_files, write_manifest
from .meters import AverageMeter, MetricMeter, format_duration, format_progress, should_print

__all__ = ["Trainer", "TrainingDiverged", "rng_state", "set_rng_state"]


class TrainingDiverged(RuntimeError):
    """A non-finite loss stopped training; the message names the step and the last good checkpoint."""


def rng_state() -> Dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states as plain data (loadable with weights_only)."""
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
        self.best_result = -math.inf
        self.last_checkpoint: Optional[str] = None
        self.global_step = 0

    # ------------------------------------------------------------------ checkpoints
    def _states(self, epoch: int, val_result: Optional[float] = None) -> Dict[str, dict]:
        p = self.parts
        main = make_checkpoint(self.model.state_dict(), epoch + 1, p.optim, p.sched, val_result)
        main.update(sampler=p.step.sampler.state_dict(), rng=rng_state(), classnames=list(self.model.classnames),
                    learner=self.cfg.TRAINER.PROMETAR.LEARNER, global_step=self.global_step)
        states = {MODEL_NAME: main}
        if p.modulator is not None:
            states[MODULATOR_NAME] = make_checkpoint(p.modulator.state_dict(), epoch + 1, p.optim_mod, p.sched_mod,
                                                     val_result)
        return states

    def save_model(self, epoch: int, val_result: Optional[float] = None, model_name: str = "") -> str:
        """Write every part of epoch ``epoch + 1``, then publish them together with one manifest (epoch saves).

        Raises TrainingDiverged (nothing published) if any tensor is not finite."""
        states = self._states(epoch, val_result)
        bad = [f"{n}:{k}" for n, st in states.items() for k in nonfinite_tensors(st.get("state_dict", {}))]
        if bad:
            kept = self.last_checkpoint or "none (no epoch finished yet)"
            raise TrainingDiverged(f"training stopped after epoch {epoch + 1}: diverged weights (NaN/Inf or "
                                   f"|value| > 65504: {', '.join(bad[:3])}); epoch {epoch + 1} not saved. "
                                   f"Last good checkpoint: {kept}")
        paths = {}
        for step, (name, state) in enumerate(states.items(), 1):
            paths[name] = save_checkpoint(state, os.path.join(self.output_dir, name), model_name=model_name)
            fault_point(step)
        if not model_name:
            write_manifest(self.output_dir, epoch + 1, paths.values())
            fault_point(len(paths) + 1)
        return paths[MODEL_NAME]

    def _prune(self, epoch: int) -> None:
        """Remove the previous epoch's files and manifest unless Dassl would have kept it (CHECKPOINT_FREQ)."""
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        if epoch < 1 or (freq > 0 and epoch % freq == 0):
            return
        manifest = os.path.join(self.output_dir, f"manifest-{epoch}.json")
        if os.path.isfile(manifest):
            os.remove(manifest)  # unpublish first, then remove the parts
        for name in (MODEL_NAME, MODULATOR_NAME):
            old = checkpoint_path(self.output_dir, name, epoch)
            if os.path.isfile(old):
                os.remove(old)

    def resume_if_exist(self, directory: str) -> int:
        """Resume from `<directory>/<name>/checkpoint` when present for every saved part; returns the start epoch."""
        names = [MODEL_NAME] + ([MODULATOR_NAME] if self.parts.modulator is not None else [])
        remove_temp_files(directory)
        epoch, parts = newest_complete_epoch(directory, names)
        if epoch is None:
            print("No checkpoint found, train from scratch")
            return 0
        files = {n: os.path.join(directory, n, f"model.pth.tar-{epoch}") for n in names}
        print(f"Found checkpoint at {directory} (will resume training)")
        main = load_checkpoint(files[MODEL_NAME], map_location=self.device)
        saved = main.get("classnames")
        if saved is not None and list(saved) != list(self.model.classnames):
            raise ValueError(f"cannot resume from {files[MODEL_NAME]}: it was trained on {len(saved)} classes "
                             f"({saved[:3]}...) but this run has {self.model.n_cls} ({self.model.classnames[:3]}...)")
        print(f'Loading checkpoint from "{files[MODEL_NAME]}"')
        self.builder.load_learner_state(self.model, main, strict=True)
        print("Loaded model weights")
        self.parts.optim.load_state_dict(main["optimizer"])
        print("Loaded optimizer")
        self.parts.sched.load_state_dict(main["scheduler"])
        print("Loaded scheduler")
        if "sampler" in main:
            self.parts.step.sampler.load_state_dict(main["sampler"])
        if self.parts.modulator is not None:
            mod = load_checkpoint(files[MODULATOR_NAME], map_location=self.device)
            self.parts.modulator.load_state_dict(mod["state_dict"])
            self.parts.optim_mod.load_state_dict(mod["optimizer"])
            if mod.get("scheduler") is not None:
                self.parts.sched_mod.load_state_dict(mod["scheduler"])
        if "rng" in main:
            set_rng_state(main["rng"])
        self.global_step = int(main.get("global_step", 0))
        self.last_checkpoint = files[MODEL_NAME]
        print(f"Previous epoch: {main['epoch']}")
        return int(main["epoch"])

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
                kept = (f"epoch {self.epoch}, {self.last_checkpoint}" if self.last_checkpoint
                        else "none (no epoch finished yet)")
                raise TrainingDiverged(f"training stopped at epoch {self.epoch + 1}, batch {self.batch_idx + 1} "
                                       f"(step {self.global_step + 1}): {exc}. Last good checkpoint: {kept}") from exc
            self.global_step += 1
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
            if result > self.best_result:
                self.best_result = result
                self.save_model(self.epoch, val_result=result, model_name="model-best.pth.tar")
        # history.jsonl (+ TensorBoard events) before the checkpoint: a crash in between redoes this epoch
        record_epoch(self, self.epoch_meters.meters, "builtin", tensorboard=True, val_acc=result)
        self.last_checkpoint = self.save_model(self.epoch)
        self._prune(self.epoch)

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
