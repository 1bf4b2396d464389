"""Label assignment across the clips of a training sample: UVLA, CL and per-clip (VITA).

An assignment is a dict ``{instance index: query index}`` for one sequence (one video and
one detector layer) and one decoder layer; it is carried from clip to clip.

* **UVLA** (GenVIS Eq. 2-3): at clip i only instances *new* in the clip (valid now, never
  matched before) are matched, by Hungarian matching, and only to *unoccupied* queries
  (Omega^{i-1} excluded -- the paper adds alpha = 1e5 to their cost; we drop those rows,
  which gives the same assignment whenever enough queries are free). Occupied queries keep
  their instance for the rest of the video. The official code only excludes the queries of
  instances *present* in the current clip, so it can hand the query of a temporarily
  absent instance to a new one; we follow the paper (every occupied query is excluded).
* **CL** (correspondence learning, appendix B): VITA's assignment on the first clip (all
  instances of the sample; absent ones have empty masks there), then the same queries for
  the same instances on every following clip.
* **per_clip**: VITA's assignment in every clip independently (N_v = 1 baseline).

Supervision of a clip (:func:`supervised_pairs`, as the official criterion): the query of
an instance *valid in the clip* gets its class and masks; every other query -- including
an occupied query whose instance is absent in this clip -- is supervised as no-object and
gets no mask loss.
"""

from __future__ import annotations

from typing import Sequence

import torch

from genvis.errors import GenvisError
from genvis.utils.matching import hungarian


class AssignmentError(GenvisError, ValueError):
    """More instances must be assigned than there are (free) instance queries."""


def uvla_assign(cost: torch.Tensor, valid: Sequence[bool], assigned: dict[int, int]) -> dict[int, int]:
    """UVLA step for one clip (Eq. 2-3).

    Args:
        cost: float [N_q, N] matching cost of this clip's predictions vs. all N instances.
        valid: N flags, instance visible in this clip.
        assigned: the assignment after the previous clip (Omega^{i-1} = its values).

    Returns:
        a new dict: ``assigned`` plus the new instances matched to free queries.

    Raises:
        AssignmentError: more new instances than unoccupied queries.
    """
    n_q = cost.shape[0]
    new = [k for k, v in enumerate(valid) if bool(v) and k not in assigned]
    out = dict(assigned)
    if not new:
        return out
    occupied = set(assigned.values())
    free = [q for q in range(n_q) if q not in occupied]
    if len(new) > len(free):
        raise AssignmentError(
            f"UVLA: {len(new)} new instance(s) but only {len(free)} unoccupied instance queries "
            f"({len(occupied)} of N_q={n_q} occupied); raise model.num_queries")
    sub = cost[free][:, new]
    rows, cols = hungarian(sub)
    for r, c in zip(rows, cols):
        out[new[c]] = free[r]
    return out


def vita_assign(cost: torch.Tensor, instances: Sequence[int]) -> dict[int, int]:
    """Plain Hungarian assignment of the given instances to any queries (VITA).

    Raises:
        AssignmentError: more instances than queries.
    """
    n_q = cost.shape[0]
    instances = list(instances)
    if len(instances) > n_q:
        raise AssignmentError(f"{len(instances)} instances but only N_q={n_q} instance queries; "
                              "raise model.num_queries")
    if not instances:
        return {}
    rows, cols = hungarian(cost[:, instances])
    return {instances[c]: int(r) for r, c in zip(rows, cols)}


def assign(mode: str, clip_index: int, cost: torch.Tensor, valid: Sequence[bool],
           assigned: dict[int, int]) -> dict[int, int]:
    """Dispatch: "uvla", "cl" or "per_clip" (see the module docstring).

    Args:
        mode: assignment strategy. clip_index: i - 1 (0 for the first clip of the sample).
        cost: float [N_q, N]. valid: N flags (visible in this clip). assigned: previous dict.
    """
    if mode == "uvla":
        return uvla_assign(cost, valid, assigned)
    if mode == "cl":
        if clip_index == 0:
            return vita_assign(cost, range(cost.shape[1]))
        return dict(assigned)
    if mode == "per_clip":
        return vita_assign(cost, [k for k, v in enumerate(valid) if bool(v)])
    raise ValueError(f"unknown assignment mode {mode!r}")


def needs_cost(mode: str, clip_index: int, valid: Sequence[bool], assigned: dict[int, int]) -> bool:
    """Whether :func:`assign` reads the cost matrix: UVLA only when an instance is new in
    the clip, CL only on the first clip, per-clip whenever an instance is visible. Other
    clips keep their assignment without a matching, so their costs need not be built."""
    if mode == "uvla":
        return any(bool(v) and k not in assigned for k, v in enumerate(valid))
    if mode == "cl":
        return clip_index == 0 and len(valid) > 0
    if mode == "per_clip":
        return any(bool(v) for v in valid)
    raise ValueError(f"unknown assignment mode {mode!r}")


def supervised_pairs(assigned: dict[int, int], valid: Sequence[bool]) -> tuple[list[int], list[int]]:
    """(query indices, instance indices) supervised in this clip: assigned instances that are
    valid in the clip, sorted by instance. Every other query is no-object."""
    pairs = sorted((k, q) for k, q in assigned.items() if bool(valid[k]))
    return [q for _, q in pairs], [k for k, _ in pairs]
