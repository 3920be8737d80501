"""ProMetaR's pieces: feature regulariser, gradient modulator, sampler, and the training iteration."""
from .modulator import GradientModulator
from .regularizer import feature_consistency
from .sampler import MetaSampler
from .step import (Batch, MetaSettings, MetaTask, ProMetaRStep, StepMetrics, batch_losses, meta_objective,
                   split_gradients)

__all__ = ["GradientModulator", "feature_consistency", "MetaSampler", "ProMetaRStep", "StepMetrics", "MetaSettings",
           "Batch", "MetaTask", "batch_losses", "meta_objective", "split_gradients"]
