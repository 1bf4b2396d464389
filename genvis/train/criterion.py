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

Computation (issue 19): one clip is handled for all decoder layers, sequences and videos at
once -- videos of one geometry (mask-feature and target sizes) are stacked, their matching
costs built in one batched computation (:func:`~genvis.train.matcher.batched_matching_cost`)
and moved to the CPU once for the Hungarian matchings, the mask points of every supervised
(instance, frame) drawn in one importance sampling, and the losses reduced per decoder layer
with tensor ops. Only the assignment bookkeeping (small dicts) is Python. It equals the
per-video computation it replaced on the same points (tests/test_criterion_batched.py);
the points themselves are drawn in a different order, so a run's random points differ from
the per-video code's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from genvis.model.genvis import ClipOutput
from genvis.train.config import TrainConfig
from genvis.train.matcher import batched_matching_cost
from genvis.train.points import point_sample, uncertain_point_coords
from genvis.train.uvla import assign, supervised_pairs


@dataclass
class ClipTargets:
    """Ground truth of one video for one clip.

    Attributes:
        labels: long [N] class indices 0..K-1 of the sample's instances.
        masks: float [N, N_f, H, W] target masks at the padded input resolution (zero where
            the instance is absent).
        valid: bool [N], instance visible in at least one frame of this clip (read on the
            CPU for the assignment: keep it there to avoid a device sync).
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


@dataclass
class FixedPoints:
    """Points of one clip given instead of drawn (to compare implementations on the same points).

    Attributes:
        matching: float [D', V, P, 2] uniform matching points per decoder layer and video
            (index into the criterion's ``targets``).
        candidates: float [D', E, N, N_f, S, 2] importance-sampling candidates per decoder
            layer, sequence, instance and frame (S = P * oversample_ratio).
        extra: float [D', E, N, N_f, P - U, 2] uniform fill points (U = P * importance ratio).
    """

    matching: torch.Tensor
    candidates: torch.Tensor
    extra: torch.Tensor


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
                 generator: torch.Generator | None = None, points: FixedPoints | None = None):
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
            generator: RNG of the point sampling (CPU; the same points on any device).
            points: fixed points instead of drawing them (tests).

        Returns:
            (dict of weighted scalar losses, the updated states).

        Raises:
            AssignmentError: more instances than (free) instance queries.
        """
        cfg = self.cfg
        n_layers, n_elem, n_q = out.logits.shape[:3]
        device = out.logits.device
        valid = [[bool(x) for x in t.valid.tolist()] for t in targets]
        num_masks = max(float(sum(sum(valid[v]) for v in elem_video)), 1.0)
        new_states: list[list[dict[int, int]]] = [[{} for _ in range(n_elem)] for _ in range(n_layers)]
        # supervised (decoder layer, sequence, query) -> class, over all groups
        cls_d, cls_e, cls_q, cls_label = [], [], [], []
        sim_e, sim_q = [], []
        loss_mask = torch.zeros(n_layers, device=device)
        loss_dice = torch.zeros(n_layers, device=device)
        for videos, elems in self._groups(mask_features, targets, elem_video):
            found = self._match_group(out, mask_features, targets, valid, videos, elems, clip_index, states,
                                      new_states, generator, points)
            if found is None:
                continue
            sup, mask_logits, tmasks = found
            d_idx, r_idx, j_idx, q_idx, k_idx, labels = sup
            e_of = torch.as_tensor(elems).reshape(-1)
            cls_d.append(d_idx)
            cls_e.append(e_of[r_idx * len(videos) + j_idx])
            cls_q.append(q_idx)
            cls_label.append(labels)
            last = d_idx == n_layers - 1
            sim_e.append(cls_e[-1][last])
            sim_q.append(q_idx[last])
            bce, dice = self._mask_losses(mask_logits, tmasks, cls_e[-1], sup, generator, points)
            d_dev = d_idx.to(device)
            loss_mask = loss_mask.index_add(0, d_dev, bce)
            loss_dice = loss_dice.index_add(0, d_dev, dice)
        class_targets = torch.full((n_layers, n_elem, n_q), self.num_classes, dtype=torch.long)
        if cls_d:
            class_targets[torch.cat(cls_d), torch.cat(cls_e), torch.cat(cls_q)] = torch.cat(cls_label)
        class_targets = class_targets.to(device)
        weight = self.empty_weight.to(device)
        nll = F.cross_entropy(out.logits.flatten(0, 1).transpose(1, 2), class_targets.flatten(0, 1), weight,
                              reduction="none")                                    # [D'*E, N_q], weighted
        loss_ce = nll.reshape(n_layers, -1).sum(1) / weight[class_targets].reshape(n_layers, -1).sum(1)
        loss_mask = loss_mask / num_masks
        loss_dice = loss_dice / num_masks
        losses: dict[str, torch.Tensor] = {}
        for d in range(n_layers):
            suffix = "" if d == n_layers - 1 else f"_d{d}"
            losses["loss_ce" + suffix] = cfg.class_weight * loss_ce[d]
            losses["loss_mask" + suffix] = cfg.mask_weight * loss_mask[d]
            losses["loss_dice" + suffix] = cfg.dice_weight * loss_dice[d]
        if cfg.sim_weight > 0 and out.clip_embed is not None and sim_e and sum(len(x) for x in sim_e):
            losses["loss_sim"] = cfg.sim_weight * self._similarity(out.clip_embed, torch.cat(sim_e),
                                                                   torch.cat(sim_q))
        return losses, new_states

    @staticmethod
    def _groups(mask_features: list[torch.Tensor], targets: list[ClipTargets], elem_video: list[int]):
        """Videos that can be stacked: same mask-feature and target sizes and the same number
        of sequences. Yields (video indices [B_g], sequence indices [R][B_g])."""
        per_video: dict[int, list[int]] = {}
        for e, v in enumerate(elem_video):
            per_video.setdefault(v, []).append(e)
        groups: dict[tuple, list[int]] = {}
        for v, elems in per_video.items():
            key = (tuple(mask_features[v].shape), tuple(targets[v].masks.shape[1:]), len(elems))
            groups.setdefault(key, []).append(v)
        for videos in groups.values():
            yield videos, [[per_video[v][r] for v in videos] for r in range(len(per_video[videos[0]]))]

    def _match_group(self, out, mask_features, targets, valid, videos, elems, clip_index, states, new_states,
                     generator, points):
        """Matching of one group: batched costs, one CPU transfer, Hungarian per sequence and
        decoder layer. Writes ``new_states``; returns None when nothing is supervised, else
        (the supervised (decoder layer, sequence row r, video column j, query, instance) index
        tensors (CPU, long) and the instances' classes, the group's mask logits float
        [D', R, B, N_q, T, h, w] with graph, its target masks float [B, N, T, H, W])."""
        cfg = self.cfg
        n_layers = out.logits.shape[0]
        b, r = len(videos), len(elems)
        e_index = torch.as_tensor(elems, device=out.logits.device)                  # [R, B]
        n_inst = [int(targets[v].labels.shape[0]) for v in videos]
        n_max = max(n_inst)
        if n_max == 0:  # no instance in any of these videos: the assignment rules on an empty cost
            empty = torch.zeros(out.logits.shape[2], 0)
            for d in range(n_layers):
                for row in elems:
                    for j, e in enumerate(row):
                        new_states[d][e] = assign(cfg.assignment, clip_index, empty, valid[videos[j]], states[d][e])
            return None
        labels, tmasks = self._stack_targets([targets[v] for v in videos], n_max)
        mf = torch.stack([mask_features[v] for v in videos])                        # [B, T, C, h, w]
        emb = out.mask_embed[:, e_index]                                            # [D', R, B, N_q, C]
        logits = out.logits[:, e_index]
        mask_logits = torch.einsum("drbqc,btchw->drbqthw", emb, mf)
        if points is None:
            coords = torch.rand(n_layers, b, cfg.num_points, 2, generator=generator)
        else:
            coords = points.matching[:, videos]
        cost = batched_matching_cost(logits.detach(), mask_logits.detach(), labels, tmasks, coords.to(mf.device),
                                     cfg.class_weight, cfg.mask_weight, cfg.dice_weight).cpu()
        sup_d, sup_r, sup_j, sup_q, sup_k = [], [], [], [], []
        for d in range(n_layers):
            for ri in range(r):
                for j, v in enumerate(videos):
                    e = elems[ri][j]
                    state = assign(cfg.assignment, clip_index, cost[d, ri, j, :, :n_inst[j]], valid[v],
                                   states[d][e])
                    new_states[d][e] = state
                    q_idx, k_idx = supervised_pairs(state, valid[v])
                    if q_idx:
                        sup_d.extend([d] * len(q_idx))
                        sup_r.extend([ri] * len(q_idx))
                        sup_j.extend([j] * len(q_idx))
                        sup_q.extend(q_idx)
                        sup_k.extend(k_idx)
        if not sup_d:
            return None
        d_idx, r_idx, j_idx, q_idx, k_idx = (torch.tensor(x, dtype=torch.long)
                                             for x in (sup_d, sup_r, sup_j, sup_q, sup_k))
        labels_cpu = labels.cpu()[j_idx, k_idx] if labels.device.type != "cpu" else labels[j_idx, k_idx]
        return (d_idx, r_idx, j_idx, q_idx, k_idx, labels_cpu), mask_logits, tmasks

    @staticmethod
    def _stack_targets(targets: list[ClipTargets], n_max: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels long [B, N] and masks float [B, N, T, H, W], padded with empty instances."""
        if all(t.labels.shape[0] == n_max for t in targets):
            return torch.stack([t.labels for t in targets]), torch.stack([t.masks.float() for t in targets])
        first = targets[0].masks
        labels = first.new_zeros((len(targets), n_max), dtype=torch.long)
        masks = first.new_zeros((len(targets), n_max, *first.shape[1:]), dtype=torch.float)
        for j, t in enumerate(targets):
            n = t.labels.shape[0]
            labels[j, :n] = t.labels
            masks[j, :n] = t.masks
        return labels, masks

    def _mask_losses(self, mask_logits, tmasks, e_flat, sup, generator, points):
        """BCE and Dice (not yet divided by num_masks) per supervised (instance query, sequence):
        float [M] each, with graph. One importance sampling for all M x N_f masks."""
        cfg = self.cfg
        d_idx, r_idx, j_idx, q_idx, k_idx, _ = sup
        device = mask_logits.device
        src = mask_logits[d_idx.to(device), r_idx.to(device), j_idx.to(device), q_idx.to(device)]  # [M, T, h, w]
        y = tmasks[j_idx.to(device), k_idx.to(device)]                               # [M, T, H, W]
        m, t = src.shape[:2]
        s_flat = src.flatten(0, 1)[:, None]
        y_flat = y.flatten(0, 1)[:, None].to(s_flat.dtype)
        cand = extra = None
        if points is not None:
            cand = points.candidates[d_idx, e_flat, k_idx].flatten(0, 1)
            extra = points.extra[d_idx, e_flat, k_idx].flatten(0, 1)
        with torch.no_grad():
            coords = uncertain_point_coords(s_flat.detach(), cfg.num_points, cfg.oversample_ratio,
                                            cfg.importance_sample_ratio, generator, cand, extra)
            labels = point_sample(y_flat, coords)[:, 0].reshape(m, t * cfg.num_points)
        logits = point_sample(s_flat, coords)[:, 0].reshape(m, t * cfg.num_points)
        bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1)
        s = logits.sigmoid()
        dice = 1 - (2 * (s * labels).sum(-1) + 1) / (s.sum(-1) + labels.sum(-1) + 1)
        return bce, dice

    @staticmethod
    def _similarity(clip_embed: torch.Tensor, e_idx: torch.Tensor, q_idx: torch.Tensor) -> torch.Tensor:
        """:func:`similarity_loss` for the supervised queries of every sequence at once:
        pairs of supervised queries of one sequence, target 1 on the diagonal (one instance
        per query), summed BCE over the number of pairs."""
        n_elem, n_q = clip_embed.shape[:2]
        sup = torch.zeros(n_elem, n_q, dtype=torch.bool)
        sup[e_idx, q_idx] = True
        pair = (sup[:, :, None] & sup[:, None, :]).to(clip_embed.device)
        logits = clip_embed @ clip_embed.transpose(1, 2)                             # [E, N_q, N_q]
        target = torch.eye(n_q, device=clip_embed.device).expand_as(logits)
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        pairs = int((sup.sum(1) ** 2).sum())
        return (loss * pair).sum() / max(pairs, 1)
