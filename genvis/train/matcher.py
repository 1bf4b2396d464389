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
                  generator: torch.Generator | None = None,
                  coords: torch.Tensor | None = None) -> torch.Tensor:
    """Matching cost of N_q clip predictions against N target instances (one video).

    The training loop uses :func:`batched_matching_cost` (every video and layer at once);
    this per-video form is its reference.

    Args:
        logits: float [N_q, K+1] class logits, or [S, N_q, K+1] for S sequences that share
            the targets (e.g. the detector layers of one video).
        mask_logits: float [N_q, T, h, w] (or [S, N_q, T, h, w]) clip mask logits on the
            mask-feature grid.
        labels: long [N] contiguous class indices 0..K-1.
        target_masks: float/bool [N, T, H, W] target masks (padded input resolution; may
            differ from h, w: both are sampled at the same normalised points).
        num_points: points drawn uniformly, shared by all frames, predictions and targets.
        coords: optional fixed points float [1, num_points, 2] instead of drawing them.

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
    if coords is None:
        coords = torch.rand(1, num_points, 2, generator=generator)  # CPU RNG, any device
    coords = coords.to(mask_logits.device)
    flat = mask_logits.float().reshape(s * n_q, t, *mask_logits.shape[-2:])
    pred = point_sample(flat, coords.expand(s * n_q, -1, -1)).flatten(1)                   # [S*N_q, T*P]
    tgt = point_sample(target_masks.float(), coords.expand(n, -1, -1)).flatten(1)          # [N, T*P]
    cost_mask = (mask_weight * batch_sigmoid_ce(pred, tgt) + dice_weight * batch_dice(pred, tgt))
    cost = class_weight * cost_class + cost_mask.reshape(s, n_q, n)
    cost = cost.cpu()
    return cost[0] if single else cost


@torch.no_grad()
def batched_matching_cost(logits: torch.Tensor, mask_embed: torch.Tensor, mask_features: torch.Tensor,
                          labels: torch.Tensor, target_masks: torch.Tensor, coords: torch.Tensor,
                          class_weight: float = 2.0, mask_weight: float = 5.0,
                          dice_weight: float = 5.0) -> torch.Tensor:
    """:func:`matching_cost` for every decoder layer, sequence and video of a clip at once.

    B videos of one geometry, R sequences per video (its detector layers), D decoder layers;
    the points are drawn per (decoder layer, video) and shared by the video's sequences,
    frames and targets, as in the per-video computation. Mask logits are only needed at
    the points: bilinear sampling is linear, so the mask features are sampled and then
    multiplied by the mask embeddings (no full-resolution mask logits). The BCE term uses
    ``softplus(-x) - softplus(x) = -x``: one product with the targets instead of two.

    Args:
        logits: float [D, R, B, N_q, K+1] class logits.
        mask_embed: float [D, R, B, N_q, C] mask embeddings.
        mask_features: float [B, T, C, h, w] projected mask features.
        labels: long [B, N] class indices (padding instances: any index).
        target_masks: bool/float [B, N, T, H, W] target masks (padding instances: empty).
        coords: float [D, B, P, 2] normalised (x, y) points.

    Returns:
        float [D, R, B, N_q, N] cost on the device of the inputs (padding columns are
        meaningless; the caller slices them off).
    """
    d, r, b, n_q, _ = logits.shape
    _, t, c, h, w = mask_features.shape
    n = labels.shape[1]
    p = coords.shape[2]
    prob = logits.float().softmax(-1)
    index = labels[None, None, :, None, :].expand(d, r, b, n_q, n)
    cost_class = -prob.gather(-1, index)                                            # [D, R, B, N_q, N]
    grid = (2.0 * coords - 1.0).permute(1, 0, 2, 3).reshape(b, d * p, 1, 2)
    feats = F.grid_sample(mask_features.float().reshape(b, t * c, h, w), grid, mode="bilinear",
                          padding_mode="zeros", align_corners=False)                # [B, T*C, D*P, 1]
    feats = feats.reshape(b, t, c, d, p).permute(3, 0, 2, 1, 4).reshape(d, b, c, t * p)
    emb = mask_embed.float().permute(0, 2, 1, 3, 4).reshape(d, b, r * n_q, c)
    pred = emb @ feats                                                              # [D, B, R*N_q, T*P]
    tpts = point_sample(target_masks.reshape(b * n * t, 1, *target_masks.shape[-2:]).float(),
                        coords.permute(1, 0, 2, 3).reshape(b, 1, 1, d * p, 2)
                        .expand(b, n, t, d * p, 2).reshape(b * n * t, d * p, 2))          # [B*N*T, 1, D*P]
    tgt = tpts.reshape(b, n, t, d, p).permute(3, 0, 2, 4, 1).reshape(d, b, t * p, n)   # [D, B, T*P, N]
    s = pred.sigmoid()
    x_t, s_t = pred @ tgt, s @ tgt                                                  # [D, B, R*N_q, N] each
    cost_ce = (F.softplus(pred).sum(-1, keepdim=True) - x_t) / (t * p)
    cost_dice = 1 - (2 * s_t + 1) / (s.sum(-1, keepdim=True) + tgt.sum(2)[:, :, None, :] + 1)
    cost_mask = (mask_weight * cost_ce + dice_weight * cost_dice).reshape(d, b, r, n_q, n).transpose(1, 2)
    return class_weight * cost_class + cost_mask
