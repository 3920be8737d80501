"""The per-epoch checkpoint transaction of a training run, shared by both engines.

Every epoch (not only Dassl's ``CHECKPOINT_FREQ`` epochs) the trainable state is written in Dassl's layout,
``<out>/VLPromptLearner/model.pth.tar-N`` and ``<out>/GradientModulator/model.pth.tar-N``, then published
together by ``<out>/manifest-N.json`` (written last). The previous epoch's files are removed unless
``TRAIN.CHECKPOINT_FREQ`` keeps them, so a finished folder has exactly Dassl's files, and a run killed at any
instant resumes from its last complete epoch. The learner file also holds the RNG and meta-sampler states,
the best validation result so far and the step count, so a resumed run continues exactly like an
uninterrupted one (``TEST.FINAL_MODEL best_val`` included: the best result is restored, never reset to -inf).
The best-val model (``model-best.pth.tar`` of each part) is published by ``manifest-best.json``.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from .checkpoint import BEST_NAME, checkpoint_path, load_checkpoint, make_checkpoint, save_checkpoint
from .integrity import (BEST_KEY, fault_point, newest_complete_epoch, nonfinite_tensors, remove_temp_files,
                        write_manifest)
from .parts import MODEL_NAME, MODULATOR_NAME, TrainerParts
from .rng import rng_state, set_rng_state

__all__ = ["EpochCheckpoints", "TrainingDiverged"]


class TrainingDiverged(RuntimeError):
    """Training stopped on a non-finite loss or diverged weights; the message names the last good checkpoint."""


class EpochCheckpoints:
    """Save, prune and resume the epochs of one run (``output_dir``) of ``parts``.

    ``load_learner(model, checkpoint, strict)`` loads learner tensors (``prometar.build.load_learner_state``:
    the engine never imports ``build``). ``best_result`` is the best validation accuracy so far."""

    def __init__(self, output_dir: str, parts: TrainerParts, cfg: Any,
                 load_learner: Callable[..., Any]):
        self.output_dir = output_dir
        self.parts = parts
        self.cfg = cfg
        self.load_learner = load_learner
        self.best_result = -math.inf
        self.global_step = 0
        self.last_good: Optional[Tuple[int, str]] = None

    @property
    def names(self) -> list:
        return [MODEL_NAME] + ([MODULATOR_NAME] if self.parts.modulator is not None else [])

    def describe_last_good(self) -> str:
        return f"epoch {self.last_good[0]}, {self.last_good[1]}" if self.last_good else "none (no epoch saved yet)"

    # ---------------------------------------------------------------- save
    def states(self, epoch: int, val_result: Optional[float] = None) -> Dict[str, dict]:
        """The checkpoint dicts of epoch ``epoch + 1`` (0-based ``epoch`` as the engines count)."""
        p = self.parts
        main = make_checkpoint(p.model.state_dict(), epoch + 1, p.optim, p.sched, val_result)
        best = self.best_result if math.isfinite(self.best_result) else None
        main.update(sampler=p.step.sampler.state_dict(), rng=rng_state(), classnames=list(p.model.classnames),
                    learner=self.cfg.TRAINER.PROMETAR.LEARNER, global_step=self.global_step, best_result=best)
        states = {MODEL_NAME: main}
        if p.modulator is not None:
            states[MODULATOR_NAME] = make_checkpoint(p.modulator.state_dict(), epoch + 1, p.optim_mod, p.sched_mod,
                                                     val_result)
        return states

    def save(self, epoch: int, val_result: Optional[float] = None, best: bool = False) -> str:
        """Write every part of epoch ``epoch + 1`` and publish them with one manifest (``best``: the parts'
        ``model-best.pth.tar`` and ``manifest-best.json``). Returns the learner file's path.

        Raises TrainingDiverged (nothing published) when a weight is NaN/Inf or above fp16's largest value."""
        states = self.states(epoch, val_result)
        bad = [f"{n}:{k}" for n, st in states.items() for k in nonfinite_tensors(st["state_dict"])]
        if bad:
            raise TrainingDiverged(f"training stopped after epoch {epoch + 1}: diverged weights (NaN/Inf or "
                                   f"|value| > 65504: {', '.join(bad[:3])}); epoch {epoch + 1} not saved. "
                                   f"Last good checkpoint: {self.describe_last_good()}")
        paths = {}
        for step, (name, state) in enumerate(states.items(), 1):
            paths[name] = save_checkpoint(state, os.path.join(self.output_dir, name),
                                          model_name=BEST_NAME if best else "")
            fault_point(step)
        write_manifest(self.output_dir, BEST_KEY if best else epoch + 1, paths.values(), epoch=epoch + 1)
        fault_point(len(paths) + 1)
        if not best:
            self.last_good = (epoch + 1, paths[MODEL_NAME])
        return paths[MODEL_NAME]

    def prune(self, epoch: int) -> None:
        """Remove epoch ``epoch``'s files (1-based; the one before the epoch just saved) unless Dassl's rule
        would have kept them (``TRAIN.CHECKPOINT_FREQ`` divides it)."""
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

    def end_epoch(self, epoch: int, val_result: Optional[float] = None) -> str:
        """After epoch ``epoch`` (0-based): the best-val save when ``val_result`` beats the best so far, then the
        epoch's checkpoint, then the previous epoch pruned. Returns the learner file."""
        if val_result is not None and val_result > self.best_result:
            self.best_result = val_result
            self.save(epoch, val_result=val_result, best=True)
        path = self.save(epoch)
        self.prune(epoch)
        return path

    # ---------------------------------------------------------------- resume
    def resume(self, directory: str, device: torch.device) -> int:
        """Load the newest complete epoch of ``directory`` (everything: prompts, modulator, optimisers,
        schedulers, sampler, RNG, best result, step count); returns the epoch to start from (0 when none)."""
        remove_temp_files(directory)
        epoch, _ = newest_complete_epoch(directory, self.names)
        if epoch is None:
            print("No checkpoint found, train from scratch")
            return 0
        files = {n: os.path.join(directory, n, f"model.pth.tar-{epoch}") for n in self.names}
        print(f"Found checkpoint at {directory} (will resume training)")
        main = load_checkpoint(files[MODEL_NAME], map_location=device)
        self._check_classes(main, files[MODEL_NAME])
        p = self.parts
        self._load_part(files[MODEL_NAME], main, p.optim, p.sched,
                        lambda ckpt: self.load_learner(p.model, ckpt, strict=True))
        if p.modulator is not None:
            mod = load_checkpoint(files[MODULATOR_NAME], map_location=device)
            self._load_part(files[MODULATOR_NAME], mod, p.optim_mod, p.sched_mod,
                            lambda ckpt: p.modulator.load_state_dict(ckpt["state_dict"]))
        if "sampler" in main:
            p.step.sampler.load_state_dict(main["sampler"])
        if "rng" in main:  # restored before the first resumed epoch builds its loader iterator (shuffle order)
            set_rng_state(main["rng"])
        if main.get("best_result") is not None:
            self.best_result = float(main["best_result"])
            print(f"Best validation result so far: {self.best_result:.2f} (restored)")
        self.global_step = int(main.get("global_step", 0))
        self.last_good = (epoch, files[MODEL_NAME])
        print(f"Previous epoch: {epoch}")
        return epoch

    @staticmethod
    def _load_part(path: str, checkpoint: dict, optim: Any, sched: Any, load_weights: Callable[[dict], Any]) -> None:
        """One part's weights, optimiser and scheduler, with Dassl's log lines."""
        print(f'Loading checkpoint from "{path}"')
        load_weights(checkpoint)
        print("Loaded model weights")
        if optim is not None and checkpoint.get("optimizer") is not None:
            optim.load_state_dict(checkpoint["optimizer"])
            print("Loaded optimizer")
        if sched is not None and checkpoint.get("scheduler") is not None:
            sched.load_state_dict(checkpoint["scheduler"])
            print("Loaded scheduler")

    def _check_classes(self, main: dict, path: str) -> None:
        saved, model = main.get("classnames"), self.parts.model
        if saved is not None and list(saved) != list(model.classnames):
            raise ValueError(f"cannot resume from {path}: it was trained on {len(saved)} classes ({saved[:3]}...) "
                             f"but this run has {model.n_cls} ({model.classnames[:3]}...)")
