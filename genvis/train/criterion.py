"""Losses of one clip: CE + BCE + Dice on importance-sampled points, deep supervision,
similarity loss (VITA Eq. / GenVIS appendix Eq. 4; official ``GenvisSetCriterion``).

For every decoder layer (deep supervision) and every sequence (video x detector layer) the
clip's predictions are matched with the assignment strategy of :mod:`genvis.train.uvla`,
then:

* ``loss_ce``: cross-entropy over all N_q queries (matched & visible -> their class, every
  other query -> no-object), no-object weight 0.1, weighted mean over queries;
* ``loss_mask``: sigmoid BCE on ``num_points`` points per frame chosen by importance
  sampling on the prediction, mean over the clip's points, summed over instances and
  divided by ``num_masks`` (visible instances over all sequences);
* ``loss_dice``: Dice over the same points, summed and divided by ``num_masks``;
* ``loss_sim`` (last layer only): binary cross-entropy of the dot products of the
  similarity embeddings of matched instance prototypes (target 1 for the same instance,
  0 otherwise), over pairs within one sequence. The official loss also includes frame
  queries matched by the detector's frame-level criterion; the cache does not hold the
  detector's frame-level matching, so only the clip (instance prototype) part is used.

Weights (2, 5, 5, 0.5) are applied here; keys of aux layers get a ``_d{layer}`` suffix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from genvis.model.genvis import ClipOutput, GenVIS
from genvis.train.config import TrainConfig
from genvis.train.matcher import matching_cost
from genvis.train.points import point_sample, uncertain_point_coords
from genvis.train.uvla import assign, supervised_pairs


@dataclass
class ClipTargets:
    """Ground truth of one video for one clip.

    Attributes:
        labels: long [N] class indices 0..K-1 of the sample's instances.
        masks: float [N, N_f, H, W] target masks at the padded input resolution (zero where
            the instance is absent).
        valid: bool [N], instance visible in at least one frame of this clip.
    """

    labels: torch.Tensor
    masks: torch.Tensor
    valid: torch.Tensor


def sigmoid_ce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """BCE: logits, targets float [n, P] -> mean over points, summed, / num_masks."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Dice with +1 smoothing: logits, targets float [n, P] -> summed over n, / num_masks."""
    s = logits.sigmoid()
    numerator = 2 * (s * targets).sum(-1)
    denominator = s.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def similarity_loss(embeds: list[torch.Tensor], ids: list[torch.Tensor]) -> torch.Tensor | None:
    """BCE on dot products of embeddings, pairs within each group only.

    Args:
        embeds: per group, float [n_g, C]. ids: per group, long [n_g] identities.

    Returns:
        scalar: sum of pair losses / number of pairs, or None without any embedding.
    """
    total, pairs = None, 0
    for e, i in zip(embeds, ids):
        if e.shape[0] == 0:
            continue
        logits = e @ e.T
        target = (i[:, None] == i[None, :]).float()
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
        total = loss if total is None else total + loss
        pairs += e.shape[0] ** 2
    return None if total is None else total / max(pairs, 1)


class SetCriterion:
    """Clip losses with label assignment carried across clips.

    Args:
        cfg: :class:`TrainConfig` (weights, points, assignment strategy).
        num_classes: K.
    """

    def __init__(self, cfg: TrainConfig, num_classes: int):
        self.cfg = cfg
        self.num_classes = num_classes
        self.empty_weight = torch.ones(num_classes + 1)
        self.empty_weight[-1] = cfg.no_object_weight

    def __call__(self, out: ClipOutput, mask_features: list[torch.Tensor], elem_video: list[int],
                 targets: list[ClipTargets], clip_index: int, states: list[list[dict[int, int]]],
                 generator: torch.Generator | None = None):
        """Losses of one clip.

        Args:
            out: the model's :class:`ClipOutput` for E sequences (``out.logits`` [D', E, N_q, K+1]).
            mask_features: per video, projected mask features float [N_f, C, h, w].
            elem_video: for each of the E sequences, its video index into ``targets`` /
                ``mask_features``.
            targets: per video, :class:`ClipTargets`.
            clip_index: index of the clip in the sample (0 = first).
            states: per decoder layer of ``out`` (D' entries), per sequence, the assignment
                after the previous clip (empty dicts before the first clip).
            generator: RNG of the point sampling.

        Returns:
            (dict of weighted scalar losses, the updated states).

        Raises:
            AssignmentError: more instances than (free) instance queries.
        """
        cfg = self.cfg
        n_layers, n_elem = out.logits.shape[:2]
        num_masks = max(float(sum(int(targets[v].valid.sum()) for v in elem_video)), 1.0)
        groups: dict[int, list[int]] = {}
        for e, v in enumerate(elem_video):
            groups.setdefault(v, []).append(e)
        losses: dict[str, torch.Tensor] = {}
        new_states = []
        for d in range(n_layers):
            suffix = "" if d == n_layers - 1 else f"_d{d}"
            class_targets = torch.full((n_elem, out.logits.shape[2]), self.num_classes, dtype=torch.long,
                                       device=out.logits.device)
            layer_states: list[dict[int, int]] = [{} for _ in range(n_elem)]
            pairs_last: list[tuple[list[int], list[int]]] = [([], []) for _ in range(n_elem)]
            loss_mask = out.mask_embed[d].sum() * 0.0
            loss_dice = out.mask_embed[d].sum() * 0.0
            # sequences of one video share mask features and targets: match and sample together
            for v, elems in groups.items():
                tg = targets[v]
                valid = tg.valid.tolist()
                masks_v = GenVIS.mask_logits(out.mask_embed[d, elems], mask_features[v])  # [n_e, N_q, T, h, w]
                costs = matching_cost(out.logits[d, elems].detach(), masks_v.detach(), tg.labels, tg.masks,
                                      cfg.num_points, cfg.class_weight, cfg.mask_weight, cfg.dice_weight,
                                      generator)                                            # [n_e, N_q, N]
                src, tgt_idx = [], []
                for i, e in enumerate(elems):
                    state = assign(cfg.assignment, clip_index, costs[i], valid, states[d][e])
                    layer_states[e] = state
                    q_idx, k_idx = supervised_pairs(state, valid)
                    pairs_last[e] = (q_idx, k_idx)
                    if q_idx:
                        class_targets[e, q_idx] = tg.labels[k_idx]
                        src.append(masks_v[i, q_idx])       # [n, T, h, w]
                        tgt_idx.extend(k_idx)
                if not src:
                    continue
                s_masks = torch.cat(src)
                n, t = s_masks.shape[:2]
                s_flat = s_masks.flatten(0, 1)[:, None]
                y = tg.masks[tgt_idx].flatten(0, 1)[:, None].to(s_flat.dtype)
                with torch.no_grad():
                    coords = uncertain_point_coords(s_flat.detach(), cfg.num_points, cfg.oversample_ratio,
                                                    cfg.importance_sample_ratio, generator)
                    labels = point_sample(y, coords)[:, 0].reshape(n, t * cfg.num_points)
                points = point_sample(s_flat, coords)[:, 0].reshape(n, t * cfg.num_points)
                loss_mask = loss_mask + sigmoid_ce_loss(points, labels, num_masks)
                loss_dice = loss_dice + dice_loss(points, labels, num_masks)
            new_states.append(layer_states)
            loss_ce = F.cross_entropy(out.logits[d].transpose(1, 2), class_targets,
                                      self.empty_weight.to(out.logits.device))
            losses["loss_ce" + suffix] = cfg.class_weight * loss_ce
            losses["loss_mask" + suffix] = cfg.mask_weight * loss_mask
            losses["loss_dice" + suffix] = cfg.dice_weight * loss_dice
            if d == n_layers - 1 and cfg.sim_weight > 0 and out.clip_embed is not None:
                embeds, ids = [], []
                for e, (q_idx, k_idx) in enumerate(pairs_last):
                    embeds.append(out.clip_embed[e, q_idx])
                    ids.append(torch.as_tensor(k_idx, dtype=torch.long, device=out.logits.device))
                sim = similarity_loss(embeds, ids)
                if sim is not None:
                    losses["loss_sim"] = cfg.sim_weight * sim
        return losses, new_states
