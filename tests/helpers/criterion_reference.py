"""The per-video criterion of 961377e, kept as the reference of the batched one.

Same computation as ``genvis.train.criterion.SetCriterion`` before it was batched (matching
cost built per video and decoder layer, points sampled per video, losses summed in Python
loops), except that the points can be given (:class:`~genvis.train.criterion.FixedPoints`)
so that both implementations see the same points. Test helper, not used by genvis.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from genvis.model.genvis import ClipOutput, GenVIS
from genvis.train.criterion import ClipTargets, FixedPoints, dice_loss, sigmoid_ce_loss, similarity_loss
from genvis.train.matcher import matching_cost
from genvis.train.points import point_sample, uncertain_point_coords
from genvis.train.uvla import assign, supervised_pairs


def reference_criterion(criterion, out: ClipOutput, mask_features: list[torch.Tensor], elem_video: list[int],
                        targets: list[ClipTargets], clip_index: int, states: list[list[dict[int, int]]],
                        points: FixedPoints):
    """Losses and states of one clip, per video and per decoder layer (the old loops)."""
    cfg = criterion.cfg
    n_layers, n_elem = out.logits.shape[:2]
    num_masks = max(float(sum(int(targets[v].valid.sum()) for v in elem_video)), 1.0)
    groups: dict[int, list[int]] = {}
    for e, v in enumerate(elem_video):
        groups.setdefault(v, []).append(e)
    losses: dict[str, torch.Tensor] = {}
    new_states = []
    for d in range(n_layers):
        suffix = "" if d == n_layers - 1 else f"_d{d}"
        class_targets = torch.full((n_elem, out.logits.shape[2]), criterion.num_classes, dtype=torch.long)
        layer_states: list[dict[int, int]] = [{} for _ in range(n_elem)]
        pairs_last: list[tuple[list[int], list[int]]] = [([], []) for _ in range(n_elem)]
        loss_mask = out.mask_embed[d].sum() * 0.0
        loss_dice = out.mask_embed[d].sum() * 0.0
        for v, elems in groups.items():
            tg = targets[v]
            valid = tg.valid.tolist()
            masks_v = GenVIS.mask_logits(out.mask_embed[d, elems], mask_features[v])
            costs = matching_cost(out.logits[d, elems].detach(), masks_v.detach(), tg.labels, tg.masks,
                                  cfg.num_points, cfg.class_weight, cfg.mask_weight, cfg.dice_weight,
                                  coords=points.matching[d, v][None])
            src, tgt_idx, cand, extra = [], [], [], []
            for i, e in enumerate(elems):
                state = assign(cfg.assignment, clip_index, costs[i], valid, states[d][e])
                layer_states[e] = state
                q_idx, k_idx = supervised_pairs(state, valid)
                pairs_last[e] = (q_idx, k_idx)
                if q_idx:
                    class_targets[e, q_idx] = tg.labels[k_idx]
                    src.append(masks_v[i, q_idx])
                    tgt_idx.extend(k_idx)
                    # the points of the video's frames, the same for every supervised mask
                    cand.append(points.candidates[v][None].expand(len(k_idx), -1, -1, -1))
                    extra.append(points.extra[v][None].expand(len(k_idx), -1, -1, -1))
            if not src:
                continue
            s_masks = torch.cat(src)
            n, t = s_masks.shape[:2]
            s_flat = s_masks.flatten(0, 1)[:, None]
            y = tg.masks[tgt_idx].flatten(0, 1)[:, None].to(s_flat.dtype)
            with torch.no_grad():
                coords = uncertain_point_coords(s_flat.detach(), cfg.num_points, cfg.oversample_ratio,
                                                cfg.importance_sample_ratio, None,
                                                torch.cat(cand).flatten(0, 1), torch.cat(extra).flatten(0, 1))
                labels = point_sample(y, coords)[:, 0].reshape(n, t * cfg.num_points)
            pts = point_sample(s_flat, coords)[:, 0].reshape(n, t * cfg.num_points)
            loss_mask = loss_mask + sigmoid_ce_loss(pts, labels, num_masks)
            loss_dice = loss_dice + dice_loss(pts, labels, num_masks)
        new_states.append(layer_states)
        loss_ce = F.cross_entropy(out.logits[d].transpose(1, 2), class_targets, criterion.empty_weight)
        losses["loss_ce" + suffix] = cfg.class_weight * loss_ce
        losses["loss_mask" + suffix] = cfg.mask_weight * loss_mask
        losses["loss_dice" + suffix] = cfg.dice_weight * loss_dice
        if d == n_layers - 1 and cfg.sim_weight > 0 and out.clip_embed is not None:
            embeds, ids = [], []
            for e, (q_idx, k_idx) in enumerate(pairs_last):
                embeds.append(out.clip_embed[e, q_idx])
                ids.append(torch.as_tensor(k_idx, dtype=torch.long))
            sim = similarity_loss(embeds, ids)
            if sim is not None:
                losses["loss_sim"] = cfg.sim_weight * sim
    return losses, new_states
