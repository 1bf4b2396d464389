"""Point sampling for the mask losses (PointRend-style, as used by Mask2Former / VITA).

Masks are compared at a set of points in normalised image coordinates ([0, 1] x [0, 1],
(x, y) order), so predictions on the stride-4 mask-feature grid and targets at the padded
input resolution are sampled at the same image locations without resizing either.
Written for genvis (no detectron2).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def point_sample(masks: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample maps at normalised points.

    Args:
        masks: float [N, C, H, W].
        coords: float [N, P, 2], (x, y) in [0, 1] (0 = left/top edge, 1 = right/bottom edge
            of the map; ``align_corners=False`` convention).

    Returns:
        float [N, C, P]; points outside the map read 0.
    """
    grid = (2.0 * coords - 1.0).unsqueeze(2)  # [N, P, 1, 2]
    return F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False).squeeze(3)


def uncertain_point_coords(logits: torch.Tensor, num_points: int, oversample_ratio: float,
                           importance_sample_ratio: float,
                           generator: torch.Generator | None = None,
                           candidates: torch.Tensor | None = None,
                           extra: torch.Tensor | None = None) -> torch.Tensor:
    """Importance-sampled points: mostly where the prediction is most uncertain (|logit| small).

    Draws ``num_points * oversample_ratio`` uniform candidates, keeps the
    ``importance_sample_ratio * num_points`` candidates with the smallest |logit| and fills
    the rest with fresh uniform points (Mask2Former's training point selection).

    Args:
        logits: float [N, 1, H, W] mask logits (class-agnostic).
        num_points: P, points per mask. oversample_ratio: >= 1. importance_sample_ratio: in [0, 1].
        generator: torch RNG for reproducibility.
        candidates, extra: optional fixed points instead of drawing them: float
            [N, num_points * oversample_ratio, 2] candidates and [N, P - U, 2] random fill
            (U = ``importance_sample_ratio * num_points``), e.g. to compare two
            implementations on the same points.

    Returns:
        float [N, P, 2] coordinates in [0, 1].
    """
    n = logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    # drawn on the generator's device (the CPU) and moved: the same points on any device
    if candidates is None:
        coords = torch.rand(n, num_sampled, 2, generator=generator).to(logits.device)
    else:
        coords = candidates.to(logits.device)
    values = point_sample(logits, coords)                       # [N, 1, S]
    uncertainty = -values.abs()[:, 0]                           # [N, S]
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    idx = uncertainty.topk(num_uncertain, dim=1).indices        # [N, U]
    chosen = torch.gather(coords, 1, idx[..., None].expand(-1, -1, 2))
    if num_random > 0:
        if extra is None:
            extra = torch.rand(n, num_random, 2, generator=generator)
        extra = extra.to(logits.device)
        chosen = torch.cat([chosen, extra], dim=1)
    return chosen
