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

Computation (batched): one clip is handled for all decoder layers, sequences and videos at
once -- videos of one geometry (mask-feature and target sizes) are stacked, their matching
costs built in one batched computation (:func:`~genvis.train.matcher.batched_matching_cost`;
only for videos whose assignment reads them: under UVLA, those with an instance new in the
clip) and moved to the CPU once for the Hungarian matchings, the mask logits at the points
computed as mask embeddings times mask features sampled at the points, and the losses
reduced per decoder layer with tensor ops. Only the assignment bookkeeping (small dicts) is
Python. It equals the per-video computation it replaced on the same points
(tests/test_criterion_batched.py).

Points of the mask losses (since 2026-11-30): the importance-sampling candidates and the
uniform fill points are drawn once per (video, frame) and shared by every mask supervised
in that frame (all decoder layers, detector layers and instances), as the matching points
are; Mask2Former / 961377e drew them per mask. Each mask still keeps its own most uncertain
candidates. The candidate selection is exact (:func:`~genvis.train.points.smallest_k`, ties
to the earlier candidate). So a run's random points, and its losses, differ from 961377e's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from genvis.model.genvis import ClipOutput
from genvis.train.config import TrainConfig
from genvis.train.matcher import batched_matching_cost
from genvis.train.points import point_sample, smallest_k
from genvis.train.uvla import assign, needs_cost, supervised_pairs


@dataclass
class ClipTargets:
    """Ground truth of one video for one clip.

    Attributes:
        labels: long [N] class indices 0..K-1 of the sample's instances.
        masks: bool (or float 0/1) [N, N_f, H, W] target masks at the padded input resolution
            (empty where the instance is absent).
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
        candidates: float [V, N_f, S, 2] importance-sampling candidates per video and frame,
            shared by all its supervised masks (S = P * oversample_ratio).
        extra: float [V, N_f, P - U, 2] uniform fill points per video and frame
            (U = P * importance ratio).
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
                 generator: torch.Generator | None = None, points: FixedPoints | None = None,
                 projection: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Losses of one clip.

        Args:
            out: the model's :class:`ClipOutput` for E sequences (``out.logits`` [D', E, N_q, K+1]).
            mask_features: per video, projected mask features float [N_f, C, h, w]; with
                ``projection``, the raw ones [N_f, C_m, h, w].
            elem_video: for each of the E sequences, its video index into ``targets`` /
                ``mask_features``.
            targets: per video, :class:`ClipTargets`.
            clip_index: index of the clip in the sample (0 = first).
            states: per decoder layer of ``out`` (D' entries), per sequence, the assignment
                after the previous clip (empty dicts before the first clip).
            generator: RNG of the point sampling (CPU; the same points on any device).
            points: fixed points instead of drawing them (tests).
            projection: (weight float [C, C_m], bias float [C]) of the model's 1x1 mask-feature
                projection, to apply it to the mask embeddings instead of the features: mask
                logits are ``emb . (W f + b)``, so ``(emb W) . f + (emb b) . 1`` gives the
                same values (the ones channel keeps zero padding outside the map exact) for
                N_q embeddings instead of N_f x h x w feature vectors per video.

        Returns:
            (dict of weighted scalar losses, the updated states).

        Raises:
            AssignmentError: more instances than (free) instance queries.
        """
        cfg = self.cfg
        n_layers, n_elem, n_q = out.logits.shape[:3]
        device = out.logits.device
        valid = [[bool(x) for x in t.valid.tolist()] for t in targets]
        embed = out.mask_embed
        if projection is not None:
            weight, bias = projection
            embed = embed @ torch.cat([weight, bias[:, None]], dim=1)               # [D', E, N_q, C_m + 1]
            mask_features = [torch.cat([m, m.new_ones(m.shape[0], 1, *m.shape[2:])], dim=1)
                             for m in mask_features]
        num_masks = max(float(sum(sum(valid[v]) for v in elem_video)), 1.0)
        new_states: list[list[dict[int, int]]] = [[{} for _ in range(n_elem)] for _ in range(n_layers)]
        # supervised (decoder layer, sequence, query) -> class, over all groups
        cls_d, cls_e, cls_q, cls_label = [], [], [], []
        sim_e, sim_q = [], []
        loss_mask = torch.zeros(n_layers, device=device)
        loss_dice = torch.zeros(n_layers, device=device)
        for videos, elems in self._groups(mask_features, targets, elem_video):
            found = self._match_group(out, embed, mask_features, targets, valid, videos, elems, clip_index,
                                      states, new_states, generator, points)
            if found is None:
                continue
            sup, counts, mf, tmasks = found
            d_idx, r_idx, j_idx, q_idx, k_idx, labels = sup
            e_of = torch.as_tensor(elems).reshape(-1)
            cls_d.append(d_idx)
            cls_e.append(e_of[r_idx * len(videos) + j_idx])
            cls_q.append(q_idx)
            cls_label.append(labels)
            last = d_idx == n_layers - 1
            sim_e.append(cls_e[-1][last])
            sim_q.append(q_idx[last])
            bce, dice = self._mask_losses(embed, cls_e[-1], sup, counts, mf, tmasks, videos, generator, points)
            d_dev = d_idx.to(device)
            loss_mask = loss_mask.index_add(0, d_dev, bce)
            loss_dice = loss_dice.index_add(0, d_dev, dice)
        class_targets = torch.full((n_layers, n_elem, n_q), self.num_classes, dtype=torch.long, device=device)
        if cls_d:
            where = tuple(torch.cat(x).to(device) for x in (cls_d, cls_e, cls_q))
            class_targets[where] = torch.cat(cls_label).to(device)
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

    def _match_group(self, out, embed, mask_features, targets, valid, videos, elems, clip_index, states, new_states,
                     generator, points):
        """Matching of one group: batched costs, one CPU transfer, Hungarian per sequence and
        decoder layer. Writes ``new_states``; returns None when nothing is supervised, else
        (the supervised (decoder layer, sequence row r, video column j, query, instance)
        index tensors (CPU, long, ordered by video) with the instances' classes, the number
        of supervised entries per video, the group's stacked mask features float
        [B, T, C, h, w] and target masks [B, N, T, H, W])."""
        cfg = self.cfg
        n_layers, _, n_q = out.logits.shape[:3]
        r = len(elems)
        n_inst = [int(targets[v].labels.shape[0]) for v in videos]
        n_max = max(n_inst)
        if n_max == 0:  # no instance in any of these videos: the assignment rules on an empty cost
            empty = torch.zeros(n_q, 0)
            for d in range(n_layers):
                for row in elems:
                    for j, e in enumerate(row):
                        new_states[d][e] = assign(cfg.assignment, clip_index, empty, valid[videos[j]],
                                                  states[d][e])
            return None
        labels, tmasks = self._stack_targets([targets[v] for v in videos], n_max)
        mf = torch.stack([mask_features[v] for v in videos])                        # [B, T, C, h, w]
        # matching only for the videos whose assignment reads the cost (UVLA: a new instance)
        need = [j for j, v in enumerate(videos)
                if any(needs_cost(cfg.assignment, clip_index, valid[v], states[d][row[j]])
                       for d in range(n_layers) for row in elems)]
        costs: dict[int, torch.Tensor] = {}
        if need:
            cols = torch.as_tensor(need)
            e_index = torch.as_tensor(elems)[:, cols].to(out.logits.device)         # [R, B']
            if points is None:
                coords = torch.rand(n_layers, len(need), cfg.num_points, 2, generator=generator)
            else:
                coords = points.matching[:, [videos[j] for j in need]]
            cost = batched_matching_cost(out.logits[:, e_index].detach(), embed[:, e_index].detach(),
                                         mf[cols.to(mf.device)].detach(), labels[cols.to(labels.device)],
                                         tmasks[cols.to(tmasks.device)], coords.to(mf.device), cfg.class_weight,
                                         cfg.mask_weight, cfg.dice_weight).cpu()   # [D', R, B', N_q, N]
            costs = {j: cost[:, :, i] for i, j in enumerate(need)}
        unused = torch.zeros(n_q, n_max)
        sup: list[tuple[int, int, int, int, int]] = []
        counts = []
        for j, v in enumerate(videos):
            before = len(sup)
            for d in range(n_layers):
                for ri in range(r):
                    e = elems[ri][j]
                    c = costs[j][d, ri] if j in costs else unused
                    state = assign(cfg.assignment, clip_index, c[:, :n_inst[j]], valid[v], states[d][e])
                    new_states[d][e] = state
                    q_idx, k_idx = supervised_pairs(state, valid[v])
                    sup.extend((d, ri, j, q, k) for q, k in zip(q_idx, k_idx))
            counts.append(len(sup) - before)
        if not sup:
            return None
        d_idx, r_idx, j_idx, q_idx, k_idx = torch.tensor(sup, dtype=torch.long).T
        classes = labels[j_idx.to(labels.device), k_idx.to(labels.device)]        # on the device: no sync
        return (d_idx, r_idx, j_idx, q_idx, k_idx, classes), counts, mf, tmasks

    @staticmethod
    def _stack_targets(targets: list[ClipTargets], n_max: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels long [B, N] and masks [B, N, T, H, W] (their dtype), padded with empty instances."""
        if all(t.labels.shape[0] == n_max for t in targets):
            return torch.stack([t.labels for t in targets]), torch.stack([t.masks for t in targets])
        first = targets[0].masks
        labels = first.new_zeros((len(targets), n_max), dtype=torch.long)
        masks = first.new_zeros((len(targets), n_max, *first.shape[1:]))
        for j, t in enumerate(targets):
            n = t.labels.shape[0]
            labels[j, :n] = t.labels
            masks[j, :n] = t.masks
        return labels, masks

    def _mask_losses(self, embed, e_flat, sup, counts, mf, tmasks, videos, generator, points):
        """BCE and Dice (not yet divided by num_masks) per supervised (instance query, sequence):
        float [M] each, with graph.

        The points of a clip are drawn once per (video, frame), for all its supervised masks:
        S = ``num_points * oversample_ratio`` candidates and P - U uniform fill points
        (U = ``importance_sample_ratio * num_points``). Bilinear sampling is linear, so the mask
        logits at those points are the mask embeddings times the mask features sampled there
        (one grid sample of the features per video and frame, one product per video; no
        full-resolution mask logits, no grid-sample backward). Every mask keeps its U
        candidates of smallest |logit| (:func:`~genvis.train.points.smallest_k`) and the P - U
        fill points; the targets are sampled once per (instance, frame) at the same points and
        read at the kept ones."""
        cfg = self.cfg
        d_idx, r_idx, j_idx, q_idx, k_idx, _ = sup
        device = mf.device
        b, t, c, h, w = mf.shape
        n = tmasks.shape[1]
        p = cfg.num_points
        s = int(p * cfg.oversample_ratio)
        u = int(cfg.importance_sample_ratio * p)
        if points is None:
            coords = torch.rand(b, t, s + p - u, 2, generator=generator)            # CPU RNG: any device
        else:
            coords = torch.cat([points.candidates[videos], points.extra[videos]], dim=2)
        coords = coords.to(device)
        n_pts = coords.shape[2]                                                     # S + P - U
        grid = (2.0 * coords - 1.0).reshape(b * t, n_pts, 1, 2)
        feats = F.grid_sample(mf.reshape(b * t, c, h, w), grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False)                                 # [B*T, C, S+P-U, 1]
        feats = feats.reshape(b, t, c, n_pts).transpose(1, 2).reshape(b, c, t * n_pts)
        emb = embed[d_idx.to(device), e_flat.to(device), q_idx.to(device)]         # [M, C]
        parts, start = [], 0
        for j, count in enumerate(counts):
            if count:
                parts.append(emb[start:start + count] @ feats[j])
                start += count
        values = (parts[0] if len(parts) == 1 else torch.cat(parts)).reshape(-1, t, n_pts)   # [M, T, S+P-U]
        m = values.shape[0]
        with torch.no_grad():
            keep = smallest_k(values[:, :, :s].detach().abs().reshape(m * t, s), u).reshape(m, t, u)
            fill = torch.arange(s, n_pts, device=device).expand(m, t, p - u)
            keep = torch.cat([keep, fill], dim=2)                                   # [M, T, P]
            tpts = point_sample(tmasks.reshape(b * n * t, 1, *tmasks.shape[-2:]).float(),
                                coords[:, None].expand(b, n, t, n_pts, 2).reshape(b * n * t, n_pts, 2))
            first = (((j_idx * n + k_idx)[:, None] * t).to(device) + torch.arange(t, device=device)) * n_pts
            labels = tpts.reshape(-1).take(first[..., None] + keep).reshape(m, t * p)
        logits = values.gather(2, keep).reshape(m, t * p)
        bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1)
        sig = logits.sigmoid()
        dice = 1 - (2 * (sig * labels).sum(-1) + 1) / (sig.sum(-1) + labels.sum(-1) + 1)
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
