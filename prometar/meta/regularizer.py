"""Feature-consistency regulariser: prompted features are pulled toward the frozen zero-shot ones."""
from __future__ import annotations

from typing import Tuple

import torch.nn.functional as F
from torch import Tensor

__all__ = ["feature_consistency"]


def feature_consistency(text_feats: Tensor, teacher_text: Tensor, image_feats: Tensor, teacher_image: Tensor,
                        text_weight: float = 50.0, image_weight: float = 20.0) -> Tuple[Tensor, Tensor]:
    """(text term, image term) = weighted mean L1 distances between L2-normalised features.

    `text_feats` / `image_feats` are un-normalised student features; the teacher features are already
    normalised (the official weights are 50 and 20).
    """
    text_term = F.l1_loss(F.normalize(text_feats, dim=-1), teacher_text.to(text_feats.dtype)) * text_weight
    image_term = F.l1_loss(F.normalize(image_feats, dim=-1), teacher_image.to(image_feats.dtype)) * image_weight
    return text_term, image_term
