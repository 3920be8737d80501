"""`prometar export --to official SRC_DIR DST_DIR`: a run's prompts as a checkpoint of the official ProMetaR code.

The official trainer (an IVLP / PromptSRC fork) registers one model, ``VLPromptLearner`` (its whole CustomCLIP),
and its ``load_model`` reads ``<dir>/VLPromptLearner/model.pth.tar-<epoch>`` (``state_dict`` and ``epoch``), drops
``prompt_learner.token_prefix`` / ``token_suffix`` and loads the rest with ``strict=False``: a key that does not
match exactly is skipped without a word.  The export therefore holds exactly the official model's trainable
tensors under their official names (``prometar.learners.official_key``, the same mapping that reads official
files), as plain data that ``torch.load(weights_only=True)`` accepts.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import torch

from .build import MODEL_NAME, MODULATOR_NAME, _learner_state_from
from .engine.checkpoint import BEST_NAME, POINTER_NAME
from .engine.runfolder import RunFolder
from .engine.safe_load import load_checkpoint
from .io import atomic_write, atomic_write_text
from .learners import official_key

__all__ = ["export_official", "export_main", "find_epochs", "to_official_state_dict"]

_EPOCH_FILE = re.compile(r"^model\.pth\.tar-(\d+)$")


def _model_folder(src: str) -> str:
    """`src/VLPromptLearner` when present, else `src` itself when it holds checkpoint files."""
    folder = os.path.join(src, MODEL_NAME)
    if os.path.isdir(folder):
        return folder
    if os.path.isdir(src) and (find_epochs(src) or os.path.isfile(os.path.join(src, BEST_NAME))):
        return src
    raise FileNotFoundError(f'"{src}" has no {MODEL_NAME} folder (nor model.pth.tar-N files): give the output '
                            f"folder of a training run")


def find_epochs(folder: str) -> List[int]:
    """Epochs N with a `model.pth.tar-N` file in `folder`, ascending."""
    if not os.path.isdir(folder):
        return []
    return sorted(int(m.group(1)) for m in map(_EPOCH_FILE.match, os.listdir(folder)) if m)


def _latest_complete_epoch(src: str, folder: str) -> int:
    """Newest epoch whose learner file exists and, when the run has a modulator folder, whose modulator file too."""
    epochs = find_epochs(folder)
    mod_folder = os.path.join(os.path.dirname(folder), MODULATOR_NAME) if folder != src else ""
    if mod_folder and os.path.isdir(mod_folder):
        complete = set(find_epochs(mod_folder))
        epochs = [e for e in epochs if e in complete]
    if not epochs:
        raise FileNotFoundError(f'"{folder}" has no complete model.pth.tar-N checkpoint to export'
                                + (f" (with its partner in {mod_folder})" if mod_folder and os.path.isdir(mod_folder)
                                   else ""))
    return epochs[-1]


def _order(name: str) -> tuple:
    side, _, index = name.partition(".")
    return (side, int(index) if index.isdigit() else -1, name)


def to_official_state_dict(learner_state: Dict[str, torch.Tensor], where: str = "the checkpoint"
                           ) -> "OrderedDict[str, torch.Tensor]":
    """Learner tensors (`text.<i>`, `vision.<i>` of the IVLP learner) under the official model's names; a
    ValueError names every tensor the official model would lack (it always learns `prompt_learner.ctx` and
    `image_encoder.VPT`, and loads non-strictly, so a missing one would stay untrained there) or has no place for."""
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    unmapped = []
    for name in sorted(learner_state, key=_order):
        try:
            out[official_key(name)] = learner_state[name].detach().float().cpu().clone()
        except KeyError:
            unmapped.append(name)
    problems = [f"no {name} prompt (the official {official_key(name)}, which it would run untrained)"
                for name in ("text.0", "vision.0") if name not in learner_state]
    if unmapped:
        problems.append(f"tensors the official model has no place for: {', '.join(unmapped)}")
    if problems:
        raise ValueError(f'"{where}" cannot be exported completely: ' + "; ".join(problems) +
                         ". The official model loads checkpoints non-strictly; only IVLP-learner runs "
                         "(TRAINER.PROMETAR.LEARNER IVLP) can be exported")
    return out


def _check_exportable(src: str, checkpoint: Any, path: str) -> None:
    """Refuse a run the official trainer could not load completely: it learns IVLP prompts and loads its
    checkpoints non-strictly, so a CoOp / VPT / MaPLe run (or one with a modulator of another learner) would
    run there with untrained tensors and no error."""
    saved = RunFolder(src).saved_config() or {}
    learner = (checkpoint.get("learner") if isinstance(checkpoint, dict) else None) or \
        saved.get("TRAINER.PROMETAR.LEARNER")
    if learner is not None and learner != "IVLP":
        raise ValueError(f'"{path}" was trained with TRAINER.PROMETAR.LEARNER {learner}: the official ProMetaR model '
                         f"is IVLP (text context + deep text and vision prompts) and loads checkpoints non-strictly, "
                         f"so the tensors it lacks would stay untrained there without an error; only IVLP-learner "
                         f"runs can be exported")


def export_official(src: str, dst: str, epoch: Optional[int] = None, force: bool = False) -> str:
    """Write `<dst>/VLPromptLearner/model.pth.tar-<epoch>` (+ its `checkpoint` pointer) for the official trainer
    from the run in `src` (default epoch: the latest complete one; checked against its manifest). Returns the
    written path. Runs that the official trainer cannot load completely are refused (ValueError naming why)."""
    folder = _model_folder(src)
    if epoch is None:
        epoch = _latest_complete_epoch(src, folder)
    path = os.path.join(folder, f"model.pth.tar-{epoch}")
    if not os.path.isfile(path):
        have = find_epochs(folder)
        raise FileNotFoundError(f'Model not found at "{path}"; epochs in "{folder}": '
                                f"{', '.join(map(str, have)) or 'none'}")
    if folder != src:
        RunFolder(src).verify_epoch(epoch)
    checkpoint = load_checkpoint(path, map_location="cpu")
    _check_exportable(src, checkpoint, path)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state, dict):
        raise ValueError(f'"{path}" holds no state dict (found {type(state).__name__})')
    official = to_official_state_dict(_learner_state_from(state), where=path)
    out_dir = os.path.join(dst, MODEL_NAME)
    out_path = os.path.join(out_dir, f"model.pth.tar-{epoch}")
    if os.path.exists(out_path) and not force:
        raise FileExistsError(f'"{out_path}" exists; pass --force to overwrite it')
    os.makedirs(out_dir, exist_ok=True)
    val = checkpoint.get("val_result") if isinstance(checkpoint, dict) else None
    payload = {"state_dict": official, "epoch": int(epoch), "optimizer": None, "scheduler": None,
               "val_result": float(val) if isinstance(val, (int, float)) else None}
    atomic_write(out_path, lambda f: torch.save(payload, f))
    atomic_write_text(os.path.join(out_dir, POINTER_NAME), f"{os.path.basename(out_path)}\n")
    return out_path


def export_main(argv: Optional[List[str]] = None) -> int:
    """Entry point of `prometar export`."""
    parser = argparse.ArgumentParser(
        prog="prometar export",
        description="Write a run's prompts as a checkpoint of another code base. --to official: "
                    "DST_DIR/VLPromptLearner/model.pth.tar-N in the official ProMetaR trainer's key names (IVLP "
                    "learner only); evaluate it there with --model-dir DST_DIR --load-epoch N.")
    parser.add_argument("--to", required=True, choices=["official"], help="target format")
    parser.add_argument("src", metavar="SRC_DIR", help="output folder of a training run (holds VLPromptLearner/)")
    parser.add_argument("dst", metavar="DST_DIR", help="folder to write (DST_DIR/VLPromptLearner/...)")
    parser.add_argument("--epoch", type=int, default=None, help="epoch to export (default: the latest complete one)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing exported file")
    args = parser.parse_args(argv)
    try:
        path = export_official(args.src, args.dst, epoch=args.epoch, force=args.force)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as exc:  # CheckpointIncomplete too
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = len(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
    print(f'Exported {n} prompt tensors to "{path}" (official trainer: --model-dir {args.dst} '
          f"--load-epoch {os.path.basename(path).rsplit('-', 1)[1]})")
    return 0
