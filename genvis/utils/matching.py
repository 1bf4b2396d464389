"""Hungarian matching: the one minimum-cost one-to-one assignment used across genvis.

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
