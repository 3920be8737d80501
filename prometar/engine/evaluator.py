"""Classification evaluator printing Dassl's result block (accuracy, error and macro-F1 in Dassl's printed ``=> result`` block); no scikit-learn."""
from __future__ import annotations

import os
from collections import OrderedDict, defaultdict
from typing import Any, Mapping, Optional

import numpy as np
import torch

__all__ = ["Classification", "EVALUATORS", "build_evaluator", "confusion_matrix", "macro_f1"]


def macro_f1(y_true: Any, y_pred: Any) -> float:
    """Macro F1 (0..1) over the labels present in ``y_true`` (scikit-learn's value with
    ``labels=np.unique(y_true)``; a label never predicted correctly scores 0)."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.size == 0:
        raise ValueError("macro_f1 needs at least one sample")
    scores = []
    for label in np.unique(y_true):
        is_true = y_true == label
        is_pred = y_pred == label
        tp = np.sum(is_true & is_pred)
        denom = 2 * tp + np.sum(~is_true & is_pred) + np.sum(is_true & ~is_pred)
        scores.append(2.0 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def confusion_matrix(y_true: Any, y_pred: Any, normalize: bool = True) -> np.ndarray:
    """Confusion matrix over the sorted union of labels (rows: truth); row-normalised if asked."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    labels = np.unique(np.concatenate([y_true, y_pred]))
    index = {int(label): i for i, label in enumerate(labels)}
    cmat = np.zeros((len(labels), len(labels)), dtype=np.float64)
    for t, p in zip(y_true.tolist(), y_pred.tolist()):
        cmat[index[int(t)], index[int(p)]] += 1
    if normalize:
        sums = cmat.sum(axis=1, keepdims=True)
        cmat = np.divide(cmat, sums, out=np.zeros_like(cmat), where=sums > 0)
    return cmat


def _cfg_get(cfg: Any, dotted: str, default: Any) -> Any:
    node = cfg
    for part in dotted.split("."):
        if node is None or part not in node:
            return default
        node = node[part]
    return node


class Classification:
    """Accumulates arg-max predictions; ``evaluate()`` prints and returns Dassl's metrics.

    Args:
        cfg: optional config; reads ``TEST.PER_CLASS_RESULT``, ``TEST.COMPUTE_CMAT``, ``OUTPUT_DIR``.
        lab2cname: label -> class name (needed for per-class results).
        per_class_result / compute_cmat / output_dir: override the cfg values when given.
    """

    def __init__(
        self,
        cfg: Any = None,
        lab2cname: Optional[Mapping[int, str]] = None,
        *,
        per_class_result: Optional[bool] = None,
        compute_cmat: Optional[bool] = None,
        output_dir: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        self.cfg = cfg
        self._lab2cname = dict(lab2cname) if lab2cname is not None else None
        self.per_class_result = bool(
            _cfg_get(cfg, "TEST.PER_CLASS_RESULT", False) if per_class_result is None else per_class_result
        )
        self.compute_cmat = bool(_cfg_get(cfg, "TEST.COMPUTE_CMAT", False) if compute_cmat is None else compute_cmat)
        self.output_dir = _cfg_get(cfg, "OUTPUT_DIR", ".") if output_dir is None else output_dir
        if self.per_class_result and self._lab2cname is None:
            raise ValueError("per-class results (TEST.PER_CLASS_RESULT) need lab2cname (label -> class name)")
        self.reset()

    def reset(self) -> None:
        """Forget everything processed so far."""
        self._correct = 0
        self._total = 0
        self._y_true: list[int] = []
        self._y_pred: list[int] = []
        self._per_class: dict[int, list[int]] = defaultdict(list)

    def process(self, mo: Any, gt: Any) -> None:
        """Add a batch: ``mo`` model output [batch, num_classes], ``gt`` labels [batch]."""
        mo = torch.as_tensor(mo)
        gt = torch.as_tensor(gt)
        if mo.dim() != 2 or gt.dim() != 1 or mo.shape[0] != gt.shape[0]:
            raise ValueError(
                f"process() expects logits [batch, classes] and labels [batch], got {tuple(mo.shape)} "
                f"and {tuple(gt.shape)}"
            )
        pred = mo.max(1)[1]
        matches = pred.eq(gt.to(pred.device)).cpu()
        self._correct += int(matches.sum().item())
        self._total += int(gt.shape[0])
        true_list = gt.detach().cpu().tolist()
        self._y_true.extend(true_list)
        self._y_pred.extend(pred.detach().cpu().tolist())
        if self.per_class_result:
            for label, ok in zip(true_list, matches.tolist()):
                self._per_class[label].append(int(ok))

    def evaluate(self) -> "OrderedDict[str, float]":
        """Print the result block and return accuracy, error_rate, macro_f1 (percentages)."""
        if self._total == 0:
            raise RuntimeError("evaluate() called before any sample was processed")
        acc = 100.0 * self._correct / self._total
        err = 100.0 - acc
        f1 = 100.0 * macro_f1(self._y_true, self._y_pred)
        results: "OrderedDict[str, float]" = OrderedDict(
            [("accuracy", acc), ("error_rate", err), ("macro_f1", f1)]
        )
        print(
            "=> result\n"
            f"* total: {self._total:,}\n"
            f"* correct: {self._correct:,}\n"
            f"* accuracy: {acc:.1f}%\n"
            f"* error: {err:.1f}%\n"
            f"* macro_f1: {f1:.1f}%"
        )
        if self.per_class_result:
            print("=> per-class result")
            accs = []
            for label in sorted(self._per_class):
                res = self._per_class[label]
                correct, total = sum(res), len(res)
                class_acc = 100.0 * correct / total
                accs.append(class_acc)
                name = self._lab2cname.get(label, str(label)) if self._lab2cname else str(label)
                print(
                    f"* class: {label} ({name})\t"
                    f"total: {total:,}\t"
                    f"correct: {correct:,}\t"
                    f"acc: {class_acc:.1f}%"
                )
            mean_acc = float(np.mean(accs))
            print(f"* average: {mean_acc:.1f}%")
            results["perclass_accuracy"] = mean_acc
        if self.compute_cmat:
            cmat = torch.from_numpy(confusion_matrix(self._y_true, self._y_pred))
            os.makedirs(self.output_dir, exist_ok=True)
            path = os.path.join(self.output_dir, "cmat.pt")
            torch.save(cmat, path)
            print(f"Confusion matrix is saved to {path}")
        return results


#: Evaluators by ``TEST.EVALUATOR`` name.
EVALUATORS = {"Classification": Classification}


def build_evaluator(cfg: Any, lab2cname: Optional[Mapping[int, str]] = None, **kwargs: Any) -> Classification:
    """Build ``cfg.TEST.EVALUATOR`` (prints ``Loading evaluator: <name>`` when ``cfg.VERBOSE``)."""
    name = cfg.TEST.EVALUATOR
    if name not in EVALUATORS:
        raise KeyError(f"TEST.EVALUATOR {name!r} is not available; choices: {sorted(EVALUATORS)}")
    if _cfg_get(cfg, "VERBOSE", True):
        print(f"Loading evaluator: {name}")
    return EVALUATORS[name](cfg, lab2cname=lab2cname, **kwargs)
