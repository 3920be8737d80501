"""ProMetaR's pieces: the meta-regulariser of any model, gradient modulator, sampler, and the prompted CLIP's
training iteration built on them."""
from .modulator import GradientModulator
from .regularizer import (ForwardContext, ForwardFn, MetaOutput, MetaRegularizer, MetaTask, StepMetrics,
                          feature_consistency, feature_l1, module_forward, select_rows, term_gradients, term_losses)
from .sampler import MetaSampler
from .step import (SIDE_TERMS, Batch, MetaSettings, ProMetaRStep, batch_losses, meta_objective, prompted_forward,
                   prompted_regularizer, split_gradients)

__all__ = ["GradientModulator", "MetaSampler", "MetaRegularizer", "MetaOutput", "ForwardContext", "ForwardFn",
           "MetaTask", "StepMetrics", "module_forward", "feature_l1", "feature_consistency", "term_gradients",
           "term_losses", "select_rows", "ProMetaRStep", "MetaSettings", "Batch", "SIDE_TERMS", "prompted_forward",
           "prompted_regularizer", "batch_losses", "meta_objective", "split_gradients"]
