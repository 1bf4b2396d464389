"""MinVIS-style inter-clip association (baseline of GenVIS Table 4, N_v = 1).

Each clip is decoded independently from the learnable instance queries; the instance
prototypes of the current clip are matched to those of the previous clip by Hungarian
matching on cosine similarity, and the current clip's outputs are permuted so that index j
keeps tracking the same instance (MinVIS, Huang et al. 2022).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from genvis.utils.matching import hungarian


def associate(previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """Permutation aligning the current clip's prototypes to the previous clip's.

    Args:
        previous: float [N_q, C] prototypes of the previous clip (already aligned).
        current: float [N_q, C] prototypes of the current clip.

    Returns:
        long [N_q] ``perm`` (on ``current``'s device) such that ``current[perm][j]`` is the
        prototype matched to ``previous[j]`` (maximum total cosine similarity).
    """
    sim = F.normalize(previous, dim=-1) @ F.normalize(current, dim=-1).T  # [prev, cur]
    rows, cols = hungarian(-sim)
    perm = torch.empty(previous.shape[0], dtype=torch.long)
    perm[torch.as_tensor(rows, dtype=torch.long)] = torch.as_tensor(cols, dtype=torch.long)
    return perm.to(current.device)
