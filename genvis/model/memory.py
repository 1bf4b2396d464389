"""Instance prototype memory (IPM), GenVIS Sec. 3.3.

Before decoding clip i, the propagated queries read the memory of the instance prototypes
of clips 1..i-1 and become ``q^i = o + V_q(o) + z^i`` where o is the previous clip's decoder
output and ``z^i = sum_k softmax_k(K_q(o)_j . K_m(p^k)_j) V_m(p^k)_j`` -- exactly the
official read (``pre_query_embed_k/v``, ``pre_memory_embed_k/v``; no 1/sqrt(C) scaling).

* index-wise read (the paper's IPM): query j attends only to the past prototypes of index j
  (softmax over the k past clips).
* global read (Table 5): query j attends to every past prototype of every index (softmax
  over k x N_q entries).

The state also keeps the written prototypes and, for batches whose sequences have seen
different numbers of clips (training with ``train.carry_state``, :mod:`genvis.train.carry`),
a per-entry validity mask: invalid (padding) entries get zero attention weight, and a
sequence with no valid entry reads z = 0, as at its first clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class MemoryState:
    """What the memory holds for a batch: written keys and values, one entry per past clip.

    Attributes:
        keys, values: lists of float [B, N_q, C] (K_m(p^k), V_m(p^k)) for k = 1..i-1.
        prototypes: list of float [B, N_q, C], the written prototypes p^k themselves (so a
            detached memory can be re-keyed with the current weights, :meth:`InstancePrototypeMemory.rebuild`).
        valid: None (every entry valid) or a list of bool [B], entry k holds a real
            prototype of sequence b (False: padding).
    """

    keys: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)
    prototypes: list[torch.Tensor] = field(default_factory=list)
    valid: list[torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self, start: int, stop: int) -> "MemoryState":
        """Sequences ``start:stop`` of the batch (views of the same entries)."""
        r = slice(start, stop)
        return MemoryState([x[r] for x in self.keys], [x[r] for x in self.values], [x[r] for x in self.prototypes],
                           None if self.valid is None else [x[r] for x in self.valid])


class InstancePrototypeMemory(nn.Module):
    """IPM read / write.

    Args:
        dim: C. mode: "index" or "global".
    """

    def __init__(self, dim: int, mode: str = "index"):
        super().__init__()
        if mode not in ("index", "global"):
            raise ValueError(f"memory mode must be 'index' or 'global', got {mode!r}")
        self.mode = mode
        self.query_k = nn.Linear(dim, dim)   # official pre_query_embed_k
        self.query_v = nn.Linear(dim, dim)   # official pre_query_embed_v
        self.memory_k = nn.Linear(dim, dim)  # official pre_memory_embed_k
        self.memory_v = nn.Linear(dim, dim)  # official pre_memory_embed_v

    def read(self, output: torch.Tensor, state: MemoryState, per_sequence: bool = False) -> torch.Tensor:
        """Queries for the next clip from the propagated decoder output and the memory.

        Args:
            output: float [B, N_q, C], previous decoder output (or q^1 at the first clip).
            state: the memory (may be empty: then z = 0).
            per_sequence: attend one sequence at a time (the linear maps stay batched). The
                attention einsums round differently for B > 1 than for B = 1 once the memory
                holds >= 7 entries (another matmul layout), so batched inference uses this to
                give bit for bit the numbers of one video at a time.

        Returns:
            float [B, N_q, C]: ``output + V_q(output) + z``.
        """
        qv = self.query_v(output)
        if len(state) == 0:
            return output + qv
        qk = self.query_k(output)
        mk = torch.stack(state.keys, dim=1)    # [B, M, N_q, C]
        mv = torch.stack(state.values, dim=1)  # [B, M, N_q, C]
        mask = None if state.valid is None else torch.stack(state.valid, dim=1)  # [B, M]
        b = mk.shape[0]
        if per_sequence and b > 1:
            z = torch.cat([self._attend(qk[i:i + 1], mk[i:i + 1], mv[i:i + 1],
                                        None if mask is None else mask[i:i + 1]) for i in range(b)])
        else:
            z = self._attend(qk, mk, mv, mask)
        return output + qv + z

    def _attend(self, qk: torch.Tensor, mk: torch.Tensor, mv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """z: qk float [B, N_q, C] attends to the memory keys / values float [B, M, N_q, C]."""
        b, m, n, c = mk.shape
        if self.mode == "index":
            logits = torch.einsum("bqc,bmqc->bqm", qk, mk)
            return torch.einsum("bqm,bmqc->bqc", _masked_softmax(logits, mask), mv)
        logits = torch.einsum("bqc,bkc->bqk", qk, mk.reshape(b, m * n, c))
        if mask is not None:
            mask = mask[:, :, None].expand(b, m, n).reshape(b, m * n)
        return torch.einsum("bqk,bkc->bqc", _masked_softmax(logits, mask), mv.reshape(b, m * n, c))

    def write(self, prototypes: torch.Tensor, state: MemoryState) -> MemoryState:
        """Return a new state with this clip's prototypes (float [B, N_q, C]) appended."""
        valid = None if state.valid is None else state.valid + [
            torch.ones(prototypes.shape[0], dtype=torch.bool, device=prototypes.device)]
        return MemoryState(state.keys + [self.memory_k(prototypes)],
                           state.values + [self.memory_v(prototypes)],
                           state.prototypes + [prototypes], valid)

    def rebuild(self, prototypes: list[torch.Tensor], valid: list[torch.Tensor] | None = None) -> MemoryState:
        """A memory holding the given prototypes, keyed with the current K_m, V_m weights.

        Args:
            prototypes: list of float [B, N_q, C] (oldest first), e.g. detached prototypes
                carried over from an earlier training iteration.
            valid: None, or one bool [B] per entry (False: padding, never attended to).

        Returns:
            a :class:`MemoryState` equal to writing the prototypes one by one (with ``valid``).
        """
        return MemoryState([self.memory_k(p) for p in prototypes], [self.memory_v(p) for p in prototypes],
                           list(prototypes), None if valid is None else list(valid))


def _masked_softmax(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last axis of float [B, Q, M]; ``mask`` bool [B, M] (None: all valid).
    Masked entries get weight 0; a row with no valid entry gets all zeros (no NaN)."""
    if mask is None:
        return logits.softmax(-1)
    keep = mask[:, None, :]
    weights = logits.masked_fill(~keep, torch.finfo(logits.dtype).min).softmax(-1)
    return weights * keep
