"""Pair-wise matching cost between predictions and ground-truth instances (VITA / GenVIS).

cost[q, k] = w_class * (-p_q(c_k)) + w_mask * BCE(m_q, y_k) + w_dice * Dice(m_q, y_k), with
the mask terms evaluated on ``num_points`` uniformly drawn points shared by all frames of
the clip, all predictions and all targets (official ``GenvisHungarianMatcher``).
The assignment itself is :func:`genvis.utils.matching.hungarian`.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from genvis.train.points import point_sample


def batch_sigmoid_ce(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of every prediction with every target.

    Args:
        inputs: float [N, P] logits. targets: float [M, P] in [0, 1].

    Returns:
        float [N, M].
    """
    pos = F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")
    neg = F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / inputs.shape[1]


def batch_dice(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss (with +1 smoothing) of every prediction with every target.

    Args:
        inputs: float [N, P] logits. targets: float [M, P] in [0, 1].

    Returns:
        float [N, M], ``1 - (2 sum(s t) + 1) / (sum(s) + sum(t) + 1)`` with s = sigmoid(inputs).
    """
    s = inputs.sigmoid()
    numerator = 2 * s @ targets.T
    denominator = s.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


@torch.no_grad()
def matching_cost(logits: torch.Tensor, mask_logits: torch.Tensor, labels: torch.Tensor,
                  target_masks: torch.Tensor, num_points: int, class_weight: float = 2.0,
                  mask_weight: float = 5.0, dice_weight: float = 5.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Matching cost of N_q clip predictions against N target instances.

    Args:
        logits: float [N_q, K+1] class logits, or [S, N_q, K+1] for S sequences that share
            the targets (e.g. the detector layers of one video).
        mask_logits: float [N_q, T, h, w] (or [S, N_q, T, h, w]) clip mask logits on the
            mask-feature grid.
        labels: long [N] contiguous class indices 0..K-1.
        target_masks: float/bool [N, T, H, W] target masks (padded input resolution; may
            differ from h, w: both are sampled at the same normalised points).
        num_points: points drawn uniformly, shared by all frames, predictions and targets.

    Returns:
        float [N_q, N] (or [S, N_q, N]) cost on the CPU.
    """
    single = logits.dim() == 2
    if single:
        logits, mask_logits = logits[None], mask_logits[None]
    s, n_q, t = mask_logits.shape[:3]
    n = labels.shape[0]
    if n == 0:
        cost = torch.zeros(s, n_q, 0)
        return cost[0] if single else cost
    prob = logits.float().softmax(-1)
    cost_class = -prob[:, :, labels]                                                        # [S, N_q, N]
    coords = torch.rand(1, num_points, 2, generator=generator).to(mask_logits.device)  # CPU RNG, any device
    flat = mask_logits.float().reshape(s * n_q, t, *mask_logits.shape[-2:])
    pred = point_sample(flat, coords.expand(s * n_q, -1, -1)).flatten(1)                   # [S*N_q, T*P]
    tgt = point_sample(target_masks.float(), coords.expand(n, -1, -1)).flatten(1)          # [N, T*P]
    cost_mask = (mask_weight * batch_sigmoid_ce(pred, tgt) + dice_weight * batch_dice(pred, tgt))
    cost = class_weight * cost_class + cost_mask.reshape(s, n_q, n)
    cost = cost.cpu()
    return cost[0] if single else cost

