"""The ``ProMetaR`` trainer as a Dassl ``TrainerX`` (CoOp-family conventions), built on ``prometar.build``.

Importing this module does not import Dassl: the class is created on first use by
:func:`get_trainer_class` (also reachable as the module attribute ``ProMetaR``) and registered in
Dassl's ``TRAINER_REGISTRY`` by :func:`register_trainer`.

What is registered with Dassl (decides what Dassl saves, resumes, steps and switches train/eval):

* ``VLPromptLearner``: the prompted CLIP (its ``state_dict`` holds only the learner tensors), the
  prompts' optimiser and scheduler.  Registered first: Dassl prints the LR of the first model.
* ``GradientModulator`` (only with ``TRAINER.PROMETAR.META_REG``): the modulator and its optimiser,
  so Dassl checkpoints and resumes them; its scheduler only with ``STEP_VNET_SCHED`` (see
  ``build_model``).

Schedulers are this project's (:mod:`prometar.engine.lr`): Dassl's warm-up scheduler cannot be built
on current torch, and ours keeps a plain ``state_dict`` so Dassl's ``torch.load`` (``weights_only``
by default on torch >= 2.6) reads the checkpoints back.  While the trainer runs (``train``), Dassl's own
``load_checkpoint`` is replaced by :func:`prometar.engine.safe_load.dassl_load_checkpoint`, so nothing
Dassl loads can run code from a file.
"""
from __future__ import annotations

import os.path as osp
from typing import Any, List, Optional, Tuple

from ..config import PROMETAR_DEFAULTS, ConfigKeyError

__all__ = ["get_trainer_class", "register_trainer", "TRAINER_NAME"]

#: Name in Dassl's TRAINER_REGISTRY (= ``--trainer``); its config node is ``TRAINER.PROMETAR``.
TRAINER_NAME = "ProMetaR"

_CLASS: Optional[type] = None


def _check_cfg(cfg: Any) -> None:
    if "PROMETAR" not in cfg.TRAINER or "OPTIM_VNET" not in cfg:
        raise ConfigKeyError("The config lacks TRAINER.PROMETAR / OPTIM_VNET: call prometar.dassl.extend_cfg(cfg) in "
                       "train.py's extend_cfg (before the YAML files are merged)")
    p = cfg.TRAINER.PROMETAR
    missing = [key for key in PROMETAR_DEFAULTS if key not in p]
    if missing:  # e.g. a host train.py that defines only the official keys
        raise ConfigKeyError(f"TRAINER.PROMETAR lacks {', '.join(missing)}: call prometar.dassl.extend_cfg(cfg) at the end "
                       f"of train.py's extend_cfg (it adds only the keys that are absent)")
    if p.PREC not in ("fp16", "fp32", "amp"):
        raise ValueError(f"TRAINER.PROMETAR.PREC must be fp16, fp32 or amp; got {p.PREC!r}")
    from ..learners import LEARNERS  # the learner registry (imports torch, as building the trainer does anyway)

    if p.LEARNER not in LEARNERS:
        raise ValueError(f"TRAINER.PROMETAR.LEARNER must be one of {', '.join(LEARNERS)}; got {p.LEARNER!r}")


def _build_class() -> type:
    import torch
    from torch import nn
    from dassl.engine import TrainerX

    from ..build import MODEL_NAME, MODULATOR_NAME, build_trainer_parts, load_learner_state, load_trained_weights
    from ..engine.checkpoint import load_checkpoint
    from ..engine.safe_load import dassl_loads_safely

    class ProMetaR(TrainerX):
        """ProMetaR (CVPR 2024): prompt learning with meta-regularisation, in Dassl.

        Losses logged per batch (``forward_backward``): ``ce``, ``reg_text``, ``reg_image``,
        ``meta_loss``, ``gate`` (mean modulator gate) and ``meta`` (1 when the meta step ran).
        """

        def check_cfg(self, cfg):
            _check_cfg(cfg)

        def build_data_loader(self):
            """Dassl's data manager, with a dataset wrapper whose image-reading errors name the file."""
            from dassl.data import DataManager

            from .datasets import get_dataset_wrapper

            dm = DataManager(self.cfg, dataset_wrapper=get_dataset_wrapper())
            self.train_loader_x, self.train_loader_u = dm.train_loader_x, dm.train_loader_u
            self.val_loader, self.test_loader = dm.val_loader, dm.test_loader
            self.num_classes, self.num_source_domains = dm.num_classes, dm.num_source_domains
            self.lab2cname = dm.lab2cname
            self.dm = dm

        def build_model(self):
            cfg = self.cfg
            classnames = self.dm.dataset.classnames
            parts = build_trainer_parts(cfg, classnames, self.device, verbose=cfg.VERBOSE)
            self.parts = parts
            self.model = parts.model
            self.optim = parts.optim
            self.sched = parts.sched
            if cfg.VERBOSE:
                names = [name for name, p in self.model.named_parameters() if p.requires_grad]
                print(f"Trainable tensors ({len(names)}): {', '.join(names)}")
            # The prompted model first: Dassl's progress line prints the LR of the first registered model.
            self.register_model(MODEL_NAME, self.model, self.optim, self.sched)
            self.modulator = parts.modulator
            self.optim_mod = parts.optim_mod
            self.sched_mod = parts.sched_mod
            if parts.modulator is not None:
                # The modulator is registered (so Dassl saves and resumes it with its optimiser), but its
                # scheduler only when TRAINER.PROMETAR.STEP_VNET_SCHED is True: Dassl's update_lr() steps
                # every registered scheduler, so leaving it out reproduces the official code by default,
                # where the modulator's scheduler is built but never stepped (LR stays at OPTIM_VNET's
                # warm-up constant all run).  With STEP_VNET_SCHED it is stepped once per epoch like the
                # prompts' scheduler, and checkpointed.
                self.register_model(MODULATOR_NAME, parts.modulator, parts.optim_mod,
                                    parts.sched_mod if parts.step_mod_sched else None)
            device_count = torch.cuda.device_count() if self.device.type == "cuda" else 0
            if device_count > 1:
                # Registered modules stay unwrapped (checkpoint keys without "module."); inference goes
                # through the wrapper.  The training step works on the unwrapped model.
                print(f"Using nn.DataParallel over {device_count} GPUs")
                self.model = nn.DataParallel(self.model)

        def _prompted_model(self):
            return self._models[MODEL_NAME]

        def parse_batch_train(self, batch):
            images = batch["img"]
            if isinstance(images, (list, tuple)):  # DATALOADER.K_TRANSFORMS > 1: use the first view
                images = images[0]
            return images.to(self.device), batch["label"].to(self.device)

        def forward_backward(self, batch):
            images, labels = self.parse_batch_train(batch)
            metrics = self.parts.step(images, labels)
            summary = {key: float(value) for key, value in metrics.as_dict().items()}
            if (self.batch_idx + 1) == self.num_batches:
                self.update_lr()
            return summary

        def run_epoch(self):
            """Dassl's epoch; a non-finite loss becomes TrainingDiverged naming the last good checkpoint."""
            from ..engine.trainer import TrainingDiverged

            try:
                super().run_epoch()
            except FloatingPointError as exc:
                kept = (f"epoch {self._last_good[0]}, {self._last_good[1]}" if getattr(self, "_last_good", None)
                        else "none (no epoch saved yet)")
                raise TrainingDiverged(f"training stopped at epoch {self.epoch + 1}, batch {self.batch_idx + 1}: "
                                       f"{exc}. Last good checkpoint: {kept}") from exc

        def save_model(self, epoch, directory, is_best=False, val_result=None, model_name=""):
            """Every registered model, then (epoch saves) one manifest publishing them together.

            The prompted model's file also holds the RNG and MetaSampler states, so a resume continues exactly.
            Non-finite weights are never published (TrainingDiverged)."""
            from ..engine.checkpoint import save_checkpoint
            from ..engine.integrity import fault_point, nonfinite_tensors, write_manifest
            from ..engine.trainer import TrainingDiverged, rng_state

            states = {}
            for name in self.get_model_names():
                optim, sched = self._optims[name], self._scheds[name]
                states[name] = {"state_dict": self._models[name].state_dict(), "epoch": epoch + 1,
                                "optimizer": optim.state_dict() if optim is not None else None,
                                "scheduler": sched.state_dict() if sched is not None else None,
                                "val_result": val_result}
            bad = [f"{n}:{k}" for n, st in states.items() for k in nonfinite_tensors(st["state_dict"])]
            if bad:
                kept = (f"epoch {self._last_good[0]}, {self._last_good[1]}" if getattr(self, "_last_good", None)
                        else "none (no epoch saved yet)")
                raise TrainingDiverged(f"training stopped after epoch {epoch + 1}: diverged weights "
                                       f"(NaN/Inf or |value| > 65504: {', '.join(bad[:3])}); "
                                       f"epoch {epoch + 1} not saved. Last good checkpoint: {kept}")
            states[MODEL_NAME].update(sampler=self.parts.step.sampler.state_dict(), rng=rng_state())
            paths = {}
            for step, (name, state) in enumerate(states.items(), 1):
                paths[name] = save_checkpoint(state, osp.join(directory, name), is_best=is_best,
                                              model_name=model_name)
                fault_point(step)
            if not model_name:
                write_manifest(directory, epoch + 1, paths.values())
                fault_point(len(paths) + 1)
                self._last_good = (epoch + 1, paths[MODEL_NAME])

        def resume_model_if_exist(self, directory):
            """Resume from the newest epoch whose manifest verifies (all parts of one epoch), RNG included."""
            from ..engine.integrity import newest_complete_epoch, remove_temp_files
            from ..engine.trainer import set_rng_state

            names = self.get_model_names()
            remove_temp_files(directory)
            epoch, _ = newest_complete_epoch(directory, names)
            if epoch is None:
                print("No checkpoint found, train from scratch")
                return 0
            print(f"Found checkpoint at {directory} (will resume training)")
            main = None
            for name in names:
                path = osp.join(directory, name, f"model.pth.tar-{epoch}")
                checkpoint = load_checkpoint(path, map_location=self.device)
                print(f'Loading checkpoint from "{path}"')
                if name == MODEL_NAME:
                    load_learner_state(self._prompted_model(), checkpoint, strict=True)
                else:
                    self._models[name].load_state_dict(checkpoint["state_dict"])
                print("Loaded model weights")
                if self._optims[name] is not None and checkpoint.get("optimizer") is not None:
                    self._optims[name].load_state_dict(checkpoint["optimizer"])
                    print("Loaded optimizer")
                if self._scheds[name] is not None and checkpoint.get("scheduler") is not None:
                    self._scheds[name].load_state_dict(checkpoint["scheduler"])
                    print("Loaded scheduler")
                if name == MODEL_NAME:
                    main = checkpoint
            if "sampler" in main:
                self.parts.step.sampler.load_state_dict(main["sampler"])
            if "rng" in main:  # restored before the first epoch builds its loader iterator (shuffle order)
                set_rng_state(main["rng"])
            self._last_good = (epoch, osp.join(directory, MODEL_NAME, f"model.pth.tar-{epoch}"))
            print(f"Previous epoch: {epoch}")
            return epoch

        def model_inference(self, input):
            return self.model(input)

        def write_scalar(self, tag, scalar_value, global_step=None):
            """Dassl's TensorBoard write; also keeps the epoch's last value of each tag for history.jsonl
            (``train/<meter>`` at the last batch is the epoch average; ``val/accuracy`` the epoch's val)."""
            super().write_scalar(tag, scalar_value, global_step)
            self.__dict__.setdefault("_epoch_scalars", {})[tag] = scalar_value

        def after_epoch(self):
            super().after_epoch()
            from ..engine.history import record_epoch

            scalars = self.__dict__.pop("_epoch_scalars", {})
            meters = {t[6:]: v for t, v in scalars.items() if t.startswith("train/") and t != "train/lr"}
            accs = {f"{t.split('/')[0]}_acc": v for t, v in scalars.items() if t.endswith("/accuracy")}
            record_epoch(self, meters, "dassl", **accs)

        def load_model(self, directory, epoch=None):
            """CoOp-family loading of ``<directory>/<name>/model-best.pth.tar`` or ``model.pth.tar-<epoch>``, strict
            and without running code from the files (``prometar.build.load_trained_weights``).

            The prompted model's file may be ours (learner tensors) or an official IVLP / PromptSRC / ProMetaR
            full-model checkpoint (the learner tensors are extracted; frozen CLIP weights and class-dependent
            buffers are ignored); it must hold exactly this run's prompt tensors.  The modulator's file must match
            the modulator; an official checkpoint without a modulator folder loads and the modulator starts fresh.
            """
            load_trained_weights(self._prompted_model(), self.modulator, directory, epoch)

        def train(self, *args, **kwargs):
            """Dassl's loop, with Dassl's own ``load_checkpoint`` (``resume_model_if_exist``,
            ``load_pretrained_weights``) routed through the safe loader while it runs."""
            with dassl_loads_safely():
                return super().train(*args, **kwargs)

    ProMetaR.__module__ = __name__
    ProMetaR.__qualname__ = "ProMetaR"
    return ProMetaR


def get_trainer_class() -> type:
    """The ``ProMetaR(TrainerX)`` class (created once; imports Dassl)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _build_class()
    return _CLASS


def register_trainer(force: bool = False, _report: Optional[Tuple[List[str], List[str]]] = None) -> type:
    """Register ``ProMetaR`` in Dassl's TRAINER_REGISTRY unless the name is taken; returns our class.

    A ``ProMetaR`` registered by someone else (e.g. the official repository's trainer) is kept and a
    note is printed, unless ``force``.
    """
    from . import _require_dassl

    _require_dassl()
    from dassl.engine import TRAINER_REGISTRY

    cls = get_trainer_class()
    if TRAINER_NAME in TRAINER_REGISTRY.registered_names():
        if TRAINER_REGISTRY.get(TRAINER_NAME) is cls:
            return cls
        if not force:
            print(f"prometar: a trainer named {TRAINER_NAME} is already registered in Dassl "
                  f"({getattr(TRAINER_REGISTRY.get(TRAINER_NAME), '__module__', '?')}); kept it and skipped ours. "
                  f"To use this package's trainer instead, call "
                  f"prometar.dassl.register(datasets=False, force=True) after the host's trainer imports")
            if _report is not None:
                _report[1].append(TRAINER_NAME)
            return cls
    TRAINER_REGISTRY.register(cls, force=force)
    if _report is not None:
        _report[0].append(TRAINER_NAME)
    return cls


def __getattr__(name: str) -> Any:
    if name == "ProMetaR":
        return get_trainer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
