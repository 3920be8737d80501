"""ProMetaR: Prompt Learning via Meta-Regularization for CLIP (CVPR 2024), with or without Dassl."""
__version__ = "0.1.0"
