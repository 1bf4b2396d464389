"""Prediction heads of the video module (VITA / GenVIS).

* class head: Linear C -> K+1 (last = no-object), official ``class_embed``;
* mask-embedding head: 3-layer MLP C -> C -> C -> C, official ``mask_embed``;
* 1x1 conv on the raw mask features (the pixel decoder's stride-4 output before
  Mask2Former's own projection), official ``vita_mask_features``; clip masks are
  ``mask_embed(p) . conv(mask features)``;
* similarity embeddings (``sim_embed_frame``, ``sim_embed_clip``) for the similarity loss.
"""

from __future__ import annotations

import torch
from torch import nn

from genvis.model.layers import MLP


class Heads(nn.Module):
    """Class / mask-embedding / similarity heads and the mask-feature 1x1 conv.

    Args:
        dim: C. num_classes: K. mask_feature_dim: channels of the raw mask features.
        sim_embed: build the two similarity-embedding linears.
    """

    def __init__(self, dim: int, num_classes: int, mask_feature_dim: int, sim_embed: bool = True):
        super().__init__()
        self.class_embed = nn.Linear(dim, num_classes + 1)
        self.mask_embed = MLP(dim, dim, dim, 3)
        self.mask_features = nn.Conv2d(mask_feature_dim, dim, kernel_size=1)
        # detectron2's c2_xavier_fill: kaiming-uniform with a=1, zero bias
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)
        if sim_embed:
            self.sim_embed_frame = nn.Linear(dim, dim)
            self.sim_embed_clip = nn.Linear(dim, dim)
        else:
            self.sim_embed_frame = self.sim_embed_clip = None

    def project_mask_features(self, raw: torch.Tensor) -> torch.Tensor:
        """1x1 conv: raw mask features float [T, C_m, h, w] -> float [T, C, h, w]."""
        return self.mask_features(raw)
