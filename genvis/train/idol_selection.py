"""Positive / negative sample selection for IDOL's contrastive training.

For a ground-truth instance seen in the key frame, IDOL (Wu et al. ECCV 2022, Sec. 3.1)
contrasts its key embedding against the reference frame's query embeddings: positives are
reference queries that predict the same instance, negatives the others. Which queries count
is decided here, from the reference frame's frozen detector predictions:

* :func:`ot_select` -- the optimal-transport style dynamic selection of the IDOL
  supplement, Sec. 4 ("+ OT" in its Table 1): per ground truth, the dynamic positive count
  is the sum of its top IoUs (``m1``), the ``m1`` queries of lowest matching cost are
  positives (a query claimed by several instances stays with the one it costs least, the
  transport constraint that one query carries one instance), the number of negatives is
  ``Q_f - m2`` with ``m2`` the sum of a larger number of top IoUs, and the negatives are the
  queries of highest cost;
* :func:`iou_select` -- the hand-crafted IoU thresholds the supplement compares against
  (positive above 0.7, negative below 0.3; the rows without OT);
* :func:`hungarian_select` -- one-to-one matching, for the MaskTrack R-CNN style ID head.

Constants for Q_f queries (:func:`ot_constants`). IDOL has 300 object queries and sums the
top 10 IoUs for ``m1`` and the top 100 for ``m2``. Scaled linearly to Q_f that is
``10 Q_f / 300`` and ``100 Q_f / 300``: a third of the queries for ``m2`` is kept
(``round(Q_f / 3)``), but for the small detectors of this project (Q_f = 16 on the synthetic
benchmark) the linear ``m1`` window would be a single IoU, whose sum never exceeds 1, so
the dynamic count would always be 1 and OT would degenerate into picking the best query.
The ``m1`` window is therefore at least 3 (``max(3, round(10 Q_f / 300))``): up to three
positives when several queries cover the instance well, one when only one does; and the
``m2`` window is never smaller than the ``m1`` window. With Q_f = 300 the constants are the
paper's (10, 100).

Costs (:func:`selection_cost`): IDOL ranks queries by its detection matching cost; our
detector has masks and classes but no boxes, so the cost is ``2 (1 - p_class) + 5 (1 - IoU)``
(the class / mask weights of the stage-two criterion), with ``p_class`` the detector's
softmax probability of the instance's class and IoU the mask IoU on the padded input grid.
"""

from __future__ import annotations

import math

import torch

from genvis.utils.matching import hungarian

#: IDOL's constants for its 300 queries (supplement Sec. 4)
PAPER_QUERIES, PAPER_TOP_POS, PAPER_TOP_NEG = 300, 10, 100
CLASS_COST, MASK_COST = 2.0, 5.0


def ot_constants(num_queries: int) -> tuple[int, int]:
    """(``m1`` window, ``m2`` window): how many top IoUs are summed for the positive and the
    negative counts with ``num_queries`` queries (module docstring). (10, 100) for 300.

    Raises:
        ValueError: ``num_queries`` < 1.
    """
    if num_queries < 1:
        raise ValueError(f"num_queries must be >= 1, got {num_queries}")
    top_pos = min(num_queries, max(3, round(PAPER_TOP_POS * num_queries / PAPER_QUERIES)))
    top_neg = min(num_queries, max(top_pos, round(PAPER_TOP_NEG * num_queries / PAPER_QUERIES)))
    return top_pos, top_neg


def selection_cost(class_prob: torch.Tensor, labels: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
    """Matching cost ``2 (1 - p_class) + 5 (1 - IoU)``.

    Args:
        class_prob: float [Q, K+1] (or [Q, K]) detector class probabilities.
        labels: long [G] class indices of the ground truths. iou: float [Q, G].

    Returns:
        float [Q, G]; lower = better.
    """
    return CLASS_COST * (1.0 - class_prob[:, labels]) + MASK_COST * (1.0 - iou)


def ot_select(cost: torch.Tensor, iou: torch.Tensor, top_pos: int, top_neg: int) -> tuple[torch.Tensor, torch.Tensor]:
    """OT-style dynamic positive / negative selection (IDOL supplement, Sec. 4).

    Per ground truth g: ``m1 = max(1, floor(sum of the top_pos largest IoUs))``, positives =
    the ``m1`` queries of lowest cost among those with IoU > 0 (an instance the detector
    missed entirely, IoU 0 everywhere, gets none); ``m2 = floor(sum of the top_neg largest
    IoUs)``, negatives = the ``Q - m2`` queries of highest cost that are not positives of g.
    A query chosen as positive by several ground truths stays a positive only of the one of
    lowest cost (and becomes a candidate negative of the others).

    Args:
        cost: float [Q, G]. iou: float [Q, G] in [0, 1].
        top_pos, top_neg: the summing windows (:func:`ot_constants`).

    Returns:
        (positive bool [Q, G], negative bool [Q, G]); the two never overlap.

    Raises:
        ValueError: shapes differ.
    """
    if cost.shape != iou.shape:
        raise ValueError(f"cost {tuple(cost.shape)} and iou {tuple(iou.shape)} differ in shape")
    q, g = cost.shape
    pos = torch.zeros(q, g, dtype=torch.bool, device=cost.device)
    neg = torch.zeros_like(pos)
    if q == 0 or g == 0:
        return pos, neg
    top_iou = iou.topk(min(top_pos, q), dim=0).values.sum(0)           # [G]
    m1 = top_iou.floor().clamp_min(1).long()
    for j in range(g):
        cand = torch.nonzero(iou[:, j] > 0, as_tuple=False).squeeze(1)
        if cand.numel() == 0:
            continue
        order = cand[cost[cand, j].argsort()]
        pos[order[: int(m1[j])], j] = True
    shared = pos.sum(1) > 1
    if shared.any():
        masked = torch.where(pos, cost, torch.full_like(cost, math.inf))
        best = masked.argmin(1)
        keep = torch.zeros_like(pos)
        keep[torch.arange(q, device=cost.device), best] = True
        pos = torch.where(shared[:, None], pos & keep, pos)
    m2 = iou.topk(min(top_neg, q), dim=0).values.sum(0).floor().long()  # [G]
    for j in range(g):
        n_neg = max(0, q - int(m2[j]))
        if n_neg == 0:
            continue
        cand = torch.nonzero(~pos[:, j], as_tuple=False).squeeze(1)
        order = cand[cost[cand, j].argsort(descending=True)]
        neg[order[:n_neg], j] = True
    return pos, neg


def iou_select(iou: torch.Tensor, positive_above: float = 0.7,
               negative_below: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Hand-crafted IoU thresholds (the supplement's IoU-based baseline, Sec. 4).

    Args:
        iou: float [Q, G].

    Returns:
        (positive bool [Q, G]: IoU > positive_above, negative bool [Q, G]: IoU < negative_below).
    """
    return iou > positive_above, iou < negative_below


def hungarian_select(cost: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One-to-one assignment (scipy Hungarian on ``cost``); pairs of IoU 0 are dropped.

    Returns:
        (positive bool [Q, G]: the matched pairs, negative bool [Q, G]: every other pair).
    """
    q, g = cost.shape
    pos = torch.zeros(q, g, dtype=torch.bool, device=cost.device)
    if q and g:
        rows, cols = hungarian(cost.detach().cpu())
        for r, c in zip(rows.tolist(), cols.tolist()):
            if float(iou[r, c]) > 0:
                pos[r, c] = True
    return pos, ~pos
