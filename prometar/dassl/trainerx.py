"""The ``ProMetaR`` trainer as a Dassl ``TrainerX`` (CoOp-family conventions), built on ``prometar.build``.

This module imports Dassl: :mod:`prometar.dassl.trainer` imports it on first use (``get_trainer_class``), so
``import prometar.dassl`` works without Dassl.

What is registered with Dassl (decides what Dassl steps and switches train/eval):

* ``VLPromptLearner``: the prompted CLIP (its ``state_dict`` holds only the learner tensors), the prompts'
  optimiser and scheduler.  Registered first: Dassl prints the LR of the first model.
* ``GradientModulator`` (only with ``TRAINER.PROMETAR.META_REG``): the modulator and its optimiser; its scheduler
  only with ``STEP_VNET_SCHED``, since Dassl's ``update_lr`` steps every registered scheduler (the official code
  never steps it).

Checkpoints are the built-in engine's per-epoch transaction (:class:`prometar.engine.epochs.EpochCheckpoints`):
every epoch is saved and published by a manifest, pruned unless ``TRAIN.CHECKPOINT_FREQ`` keeps it, with the RNG,
sampler and best-val states, so a run killed at any instant resumes from its last complete epoch with the result
of an uninterrupted run, with the shipped configs (``CHECKPOINT_FREQ 0``) too.  Schedulers are this project's
(:mod:`prometar.engine.lr`: Dassl's warm-up scheduler cannot be built on current torch).  While the trainer
trains, Dassl's own ``load_checkpoint`` goes through :func:`prometar.engine.safe_load.dassl_load_checkpoint`.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator, Optional

import torch
from dassl.engine import TrainerX

from ..build import MODEL_NAME, MODULATOR_NAME, build_trainer_parts, load_learner_state, load_trained_weights
from ..config import PROMETAR_DEFAULTS, ConfigKeyError
from ..data import inputs
from ..engine.epochs import EpochCheckpoints, TrainingDiverged
from ..engine.history import record_epoch
from ..engine.parts import announce_device
from ..engine.runfolder import RunFolder, run_record
from ..engine.runner import model_record, write_config
from ..engine.safe_load import dassl_loads_safely

__all__ = ["ProMetaR", "check_trainer_cfg"]


def check_trainer_cfg(cfg: Any) -> None:
    """Refuse a config without ProMetaR's keys (a host ``train.py`` that never called ``extend_cfg``) or with a
    precision or learner this trainer does not have."""
    if "PROMETAR" not in cfg.TRAINER or "OPTIM_VNET" not in cfg:
        raise ConfigKeyError("The config lacks TRAINER.PROMETAR / OPTIM_VNET: call prometar.dassl.extend_cfg(cfg) in "
                             "train.py's extend_cfg (before the YAML files are merged)")
    p = cfg.TRAINER.PROMETAR
    missing = [key for key in PROMETAR_DEFAULTS if key not in p]
    if missing:  # e.g. a host train.py that defines only the official keys
        raise ConfigKeyError(f"TRAINER.PROMETAR lacks {', '.join(missing)}: call prometar.dassl.extend_cfg(cfg) at "
                             f"the end of train.py's extend_cfg (it adds only the keys that are absent)")
    if p.PREC not in ("fp16", "fp32", "amp"):
        raise ValueError(f"TRAINER.PROMETAR.PREC must be fp16, fp32 or amp; got {p.PREC!r}")
    from ..learners import LEARNERS

    if p.LEARNER not in LEARNERS:
        raise ValueError(f"TRAINER.PROMETAR.LEARNER must be one of {', '.join(LEARNERS)}; got {p.LEARNER!r}")


class ProMetaR(TrainerX):
    """ProMetaR (CVPR 2024): prompt learning with meta-regularisation, in Dassl.

    ``device``: the device to train on (``--device``; default Dassl's rule: CUDA when available and
    ``USE_CUDA``, else CPU).  Losses logged per batch: ``ce``, ``reg_text``, ``reg_image``, ``meta_loss``,
    ``gate`` (mean modulator gate) and ``meta`` (1 when the meta step ran)."""

    #: True when prometar's runner drives this trainer (it locks, checks and records the run folder). A host
    #: repository's own train.py (CoOp, MaPLe, ...) leaves it False, and the trainer does those steps itself.
    run_folder_managed = False

    def __init__(self, cfg: Any, device: Optional[torch.device] = None):
        self._device_request = device
        self._training = False
        super().__init__(cfg)

    def check_cfg(self, cfg: Any) -> None:
        check_trainer_cfg(cfg)

    def build_data_loader(self) -> None:
        """Dassl's data manager, with a dataset wrapper whose image-reading errors name the file."""
        from dassl.data import DataManager

        from .datasets import get_dataset_wrapper

        if self._device_request is not None:  # Dassl's __init__ chose by USE_CUDA just before this call
            self.device = self._device_request
        inputs.reset()  # the split and few-shot files this run reads, for its provenance
        dm = DataManager(self.cfg, dataset_wrapper=get_dataset_wrapper())
        self.train_loader_x, self.train_loader_u = dm.train_loader_x, dm.train_loader_u
        self.val_loader, self.test_loader = dm.val_loader, dm.test_loader
        self.num_classes, self.num_source_domains = dm.num_classes, dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def build_model(self) -> None:
        cfg = self.cfg
        parts = build_trainer_parts(cfg, self.dm.dataset.classnames, self.device, verbose=cfg.VERBOSE)
        self.parts, self.model, self.modulator = parts, parts.model, parts.modulator
        self.optim, self.sched = parts.optim, parts.sched
        if cfg.VERBOSE:
            names = [name for name, p in self.model.named_parameters() if p.requires_grad]
            print(f"Trainable tensors ({len(names)}): {', '.join(names)}")
        self.register_model(MODEL_NAME, self.model, self.optim, self.sched)
        if parts.modulator is not None:
            self.register_model(MODULATOR_NAME, parts.modulator, parts.optim_mod,
                                parts.sched_mod if parts.step_mod_sched else None)
        self.checkpoints = EpochCheckpoints(self.output_dir, parts, cfg, load_learner_state)
        announce_device(self.device)

    def parse_batch_train(self, batch: dict):
        images = batch["img"]
        if isinstance(images, (list, tuple)):  # DATALOADER.K_TRANSFORMS > 1: use the first view
            images = images[0]
        return images.to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch: dict) -> dict:
        images, labels = self.parse_batch_train(batch)
        metrics = self.parts.step(images, labels)
        self.checkpoints.global_step += 1
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {key: float(value) for key, value in metrics.as_dict().items()}

    def run_epoch(self) -> None:
        """Dassl's epoch; a non-finite loss becomes TrainingDiverged naming the last good checkpoint."""
        try:
            super().run_epoch()
        except FloatingPointError as exc:
            raise TrainingDiverged(f"training stopped at epoch {self.epoch + 1}, batch {self.batch_idx + 1}: {exc}. "
                                   f"Last good checkpoint: {self.checkpoints.describe_last_good()}") from exc

    def after_epoch(self) -> None:
        """Validation (``TEST.FINAL_MODEL best_val``), the epoch's history record, then its checkpoint (every epoch;
        the best-val set when the result beats the best so far, restored on resume)."""
        result = None
        if not self.cfg.TEST.NO_TEST and self.cfg.TEST.FINAL_MODEL == "best_val":
            result = self.test(split="val")
        scalars = self.__dict__.pop("_epoch_scalars", {})
        meters = {t[6:]: v for t, v in scalars.items() if t.startswith("train/") and t != "train/lr"}
        accs = {f"{t.split('/')[0]}_acc": v for t, v in scalars.items() if t.endswith("/accuracy")}
        record_epoch(self, meters, "dassl", **accs)
        self.checkpoints.end_epoch(self.epoch, val_result=result)
        self.best_result = self.checkpoints.best_result

    def save_model(self, epoch: int, directory: str, is_best: bool = False, val_result: Optional[float] = None,
                   model_name: str = "") -> None:
        """Dassl's save call (its own ``after_epoch`` is replaced): the epoch's transaction, or the best-val set
        when ``model_name`` is ``model-best.pth.tar``. ``directory`` must be this run's output folder."""
        self.checkpoints.save(epoch, val_result=val_result, best=bool(model_name))

    def resume_model_if_exist(self, directory: str) -> int:
        """Resume from the newest epoch whose manifest verifies (everything, RNG and best result included)."""
        self.checkpoints.output_dir = self.output_dir
        start = self.checkpoints.resume(directory, self.device)
        self.best_result = self.checkpoints.best_result
        return start

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        return self.model(input)

    def write_scalar(self, tag: str, scalar_value: Any, global_step: Optional[int] = None) -> None:
        """Dassl's TensorBoard write; also keeps the epoch's last value of each tag for history.jsonl
        (``train/<meter>`` at the last batch is the epoch average; ``val/accuracy`` the epoch's val)."""
        super().write_scalar(tag, scalar_value, global_step)
        self.__dict__.setdefault("_epoch_scalars", {})[tag] = scalar_value

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """CoOp-family loading of ``<directory>/<name>/model-best.pth.tar`` or ``model.pth.tar-<epoch>``, checked
        against the folder's manifest, strict and without running code from the files
        (``prometar.build.load_trained_weights``; official IVLP / PromptSRC / ProMetaR files load too). Driven by a
        host's train.py (``--eval-only``), the folder's config is checked first and the run's provenance recorded."""
        own_eval = not self.run_folder_managed and not self._training and bool(directory)
        if own_eval:
            RunFolder(directory).check(self.cfg, "evaluate")
        load_trained_weights(self.model, self.modulator, directory, epoch, map_location=self.device)
        if own_eval:
            record = run_record(self.cfg, sys.argv, "dassl", self.device, inputs.digests(),
                                model_record(directory, epoch))
            RunFolder(self.output_dir).add_provenance(record)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """Dassl's loop, with Dassl's own ``load_checkpoint`` routed through the safe loader while it runs. Driven
        by a host's train.py, the trainer also locks the run folder, refuses to resume it under another config,
        writes its ``config.yaml`` and records its provenance (prometar's runner does these steps otherwise)."""
        with dassl_loads_safely(), self._own_run_folder():
            self._training = True
            try:
                return super().train(*args, **kwargs)
            finally:
                self._training = False

    @contextlib.contextmanager
    def _own_run_folder(self) -> Iterator[None]:
        if self.run_folder_managed:
            yield
            return
        lock = RunFolder(self.output_dir).lock().acquire()  # RunFolderBusy / LockError name the holder / file
        try:
            resumed = RunFolder(self.cfg.RESUME or self.output_dir)
            if resumed.has_checkpoints(self.checkpoints.names):
                resumed.check(self.cfg, "resume")  # ConfigChanged lists the keys
            write_config(self.cfg)
            RunFolder(self.output_dir).add_provenance(
                run_record(self.cfg, sys.argv, "dassl", self.device, inputs.digests()))
            yield
        finally:
            lock.release()
