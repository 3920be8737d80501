"""The one source of the meta step's random choices (query class, mixup weights, mix partners)."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["MetaSampler"]


class MetaSampler:
    """Draws the meta step's random choices from its own generator, so a step can be replayed exactly
    (same state => same choices) and a checkpoint can carry the state. Replace it in tests to force choices.

    query_class: uniform over the distinct labels of the batch; mixup: lambda ~ Beta(alpha, beta) per query
    sample and a uniformly drawn support partner per query sample (as the official code).
    """

    def __init__(self, seed: Optional[int] = None, alpha: float = 0.5, beta: float = 0.5):
        if alpha <= 0 or beta <= 0:
            raise ValueError(f"MIXUP_ALPHA and MIXUP_BETA must be > 0, got {alpha}, {beta}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.rng = np.random.default_rng(None if seed is None or seed < 0 else seed)

    def query_class(self, labels: Tensor) -> int:
        """One of the distinct labels, uniformly."""
        classes = torch.unique(labels).tolist()
        return int(classes[int(self.rng.integers(len(classes)))])

    def mixup(self, n_query: int, n_support: int, device: torch.device) -> Tuple[Tensor, Tensor]:
        """Per query sample: lambda ~ Beta(alpha, beta) (float32) and a uniformly drawn support index."""
        lam = torch.from_numpy(self.rng.beta(self.alpha, self.beta, size=n_query).astype(np.float32)).to(device)
        partners = torch.from_numpy(self.rng.integers(0, n_support, size=n_query)).to(device)
        return lam, partners

    def state_dict(self) -> dict:
        """The generator's state and the Beta parameters."""
        return {"bit_generator": self.rng.bit_generator.state, "alpha": self.alpha, "beta": self.beta}

    def load_state_dict(self, state: dict) -> None:
        """Restore the generator's state (the Beta parameters stay this sampler's)."""
        self.rng.bit_generator.state = state["bit_generator"]
