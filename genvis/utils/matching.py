"""Hungarian matching: the one minimum-cost one-to-one assignment used across genvis, and
the mask IoU matrix that IDOL's sample selection and tracker match on (:func:`mask_iou`).

Training (UVLA label assignment, :mod:`genvis.train.uvla`), inference (MinVIS and oracle
association, :mod:`genvis.infer.minvis`, :mod:`genvis.infer.oracle`) and the track figures
(:mod:`genvis.report.video_figure`) all assign with this function; the matching *costs*
are their own (e.g. :func:`genvis.train.matcher.matching_cost`).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def hungarian(cost: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one assignment (scipy ``linear_sum_assignment``).

    Args:
        cost: float [N, M] cost matrix (tensor on any device, or array); rectangular allowed.

    Returns:
        (rows int64 [min(N, M)], cols int64 [min(N, M)]): row ``rows[i]`` is assigned to
        column ``cols[i]``; rows ascending.
    """
    c = cost.detach().cpu().numpy() if isinstance(cost, torch.Tensor) else np.asarray(cost)
    rows, cols = linear_sum_assignment(c)
    return rows, cols


def mask_iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mask IoU of every prediction with every ground truth.

    Args:
        pred: bool [Q, ...] hard masks. gt: bool [G, ...] masks of the same grid.

    Returns:
        float [Q, G] in [0, 1] (0 where the union is empty).
    """
    p = pred.flatten(1).float()
    g = gt.flatten(1).float()
    inter = p @ g.T
    union = p.sum(1, keepdim=True) + g.sum(1)[None] - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-6), torch.zeros_like(inter))
