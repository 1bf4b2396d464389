"""IDOL's training losses on instance embeddings (IDOL, Wu et al. ECCV 2022, Sec. 3.1).

For one ground-truth instance, ``v`` is the embedding of the key-frame query matched to it,
``k+`` the embeddings of its positive reference-frame queries and ``k-`` those of its
negatives (:mod:`genvis.train.idol_selection`).

* Multi-positive contrastive loss (IDOL Eq. 2-3, the form of the cross-entropy that admits
  several positives):
  ``L_embed = log(1 + sum_{k+} sum_{k-} exp(v.k- - v.k+))``, computed as a log-sum-exp;
* auxiliary cosine loss: ``L_aux = mean over k in (k+ u k-) of (cos(v, k) - c)^2`` with
  ``c = 1`` for positives and 0 for negatives;
* :func:`id_cross_entropy` -- the "ID head" baseline of the supplement's Table 1 (training
  without contrastive learning): a MaskTrack R-CNN style tracking head, where the reference
  query of an instance is classified among the key frame's instances plus a "new instance"
  slot of logit 0, by dot products of embeddings.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def contrastive_loss(key: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Multi-positive contrastive loss of one key embedding.

    Args:
        key: float [D] (``v``). positives: float [P, D] (``k+``). negatives: float [N, D] (``k-``).

    Returns:
        scalar ``log(1 + sum_{i,j} exp(v.k-_j - v.k+_i))`` (0 when P or N is 0; a zero
        that keeps the graph).
    """
    if positives.shape[0] == 0 or negatives.shape[0] == 0:
        return key.sum() * 0.0
    pos = positives @ key                                      # [P]
    neg = negatives @ key                                      # [N]
    diff = (neg[None, :] - pos[:, None]).flatten()             # [P * N]
    return torch.logsumexp(torch.cat([diff.new_zeros(1), diff]), dim=0)


def aux_cosine_loss(key: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Auxiliary loss: mean squared gap between the cosine similarity and 1 (positives) / 0 (negatives).

    Args:
        key: float [D]. positives: float [P, D]. negatives: float [N, D].

    Returns:
        scalar mean over the P + N pairs (0 with no pair).
    """
    others = torch.cat([positives, negatives], dim=0)
    if others.shape[0] == 0:
        return key.sum() * 0.0
    cos = F.normalize(others, dim=-1) @ F.normalize(key, dim=0)
    target = torch.cat([cos.new_ones(positives.shape[0]), cos.new_zeros(negatives.shape[0])])
    return ((cos - target) ** 2).mean()


def id_cross_entropy(reference: torch.Tensor, keys: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MaskTrack R-CNN style tracking-head loss (the supplement's "ID head" row).

    Args:
        reference: float [R, D] embeddings of reference-frame queries matched to instances.
        keys: float [M, D] embeddings of the key frame's matched queries (one per instance).
        target: long [R] index of each reference query's instance among ``keys``, or -1
            for an instance absent from the key frame ("new" slot).

    Returns:
        scalar mean cross-entropy over the R queries of the logits ``[0, ref . key_1, ...,
        ref . key_M]`` with class ``target + 1`` (0 = new). 0 when R is 0.
    """
    if reference.shape[0] == 0:
        return reference.sum() * 0.0
    logits = torch.cat([reference.new_zeros(reference.shape[0], 1), reference @ keys.T], dim=1)
    return F.cross_entropy(logits, target + 1)
