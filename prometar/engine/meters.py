"""Running averages and Dassl's training progress line (``epoch [e/E] batch [b/B] time ... data ... <losses> lr ... eta ...``)."""
from __future__ import annotations

import datetime
from collections import OrderedDict
from typing import Any, Mapping, Optional

__all__ = [
    "AverageMeter",
    "MetricMeter",
    "eta_seconds",
    "format_duration",
    "format_progress",
    "should_print",
]


def _scalar(value: Any) -> float:
    """A Python number from a number, 0-d tensor or NumPy scalar."""
    return value.item() if hasattr(value, "item") else value


class AverageMeter:
    """Current value and running (or exponential moving) average."""

    def __init__(self, ema: bool = False) -> None:
        self.ema = ema
        self.reset()

    def reset(self) -> None:
        self.val: float = 0
        self.avg: float = 0
        self.sum: float = 0
        self.count: int = 0

    def update(self, val: Any, n: int = 1) -> None:
        """Record ``val`` (weight ``n``)."""
        val = _scalar(val)
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.avg * 0.9 + val * 0.1 if self.ema else self.sum / self.count


class MetricMeter:
    """A set of :class:`AverageMeter` keyed by name, printed as ``name val (avg)`` (4 decimals)."""

    def __init__(self, delimiter: str = " ") -> None:
        self.meters: "OrderedDict[str, AverageMeter]" = OrderedDict()
        self.delimiter = delimiter

    def update(self, input_dict: Optional[Mapping[str, Any]]) -> None:
        """Update one meter per key (insertion order kept); None is ignored."""
        if input_dict is None:
            return
        if not isinstance(input_dict, Mapping):
            raise TypeError(f"MetricMeter.update() needs a dict of numbers, got {type(input_dict).__name__}")
        for key, value in input_dict.items():
            self.meters.setdefault(key, AverageMeter()).update(value)

    def __str__(self) -> str:
        return self.delimiter.join(f"{k} {m.val:.4f} ({m.avg:.4f})" for k, m in self.meters.items())


def should_print(batch_idx: int, num_batches: int, print_freq: int) -> bool:
    """Dassl's rule: every ``print_freq`` batches, or every batch if the epoch is shorter."""
    return (batch_idx + 1) % print_freq == 0 or num_batches < print_freq


def eta_seconds(batch_time_avg: float, epoch: int, max_epoch: int, batch_idx: int, num_batches: int) -> int:
    """Remaining seconds of the whole run: average batch time x remaining batches (truncated)."""
    remaining = num_batches - batch_idx - 1 + (max_epoch - epoch - 1) * num_batches
    return int(batch_time_avg * remaining)


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` as ``str(timedelta)`` prints it (``Elapsed: ...``, ``eta ...``)."""
    return str(datetime.timedelta(seconds=int(seconds)))


def format_progress(
    epoch: int,
    max_epoch: int,
    batch_idx: int,
    num_batches: int,
    batch_time: AverageMeter,
    data_time: AverageMeter,
    losses: MetricMeter,
    lr: float,
) -> str:
    """Dassl's progress line; ``epoch`` and ``batch_idx`` are 0-based (as the trainer holds them).

    ``epoch [e/E] batch [b/B] time v (avg) data v (avg) <losses> lr 2.5000e-03 eta H:MM:SS``
    """
    eta = format_duration(eta_seconds(batch_time.avg, epoch, max_epoch, batch_idx, num_batches))
    return " ".join(
        [
            f"epoch [{epoch + 1}/{max_epoch}]",
            f"batch [{batch_idx + 1}/{num_batches}]",
            f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
            f"data {data_time.val:.3f} ({data_time.avg:.3f})",
            f"{losses}",
            f"lr {lr:.4e}",
            f"eta {eta}",
        ]
    )
