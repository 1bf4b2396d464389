"""Transformer building blocks shared by the object encoder and the object decoder.

Post-norm (default) or pre-norm residual blocks as in VITA / Mask2Former: self-attention,
cross-attention, FFN, and a small MLP. Tensors are batch-first: ``[B, S, C]``. Parameter
names (``self_attn``, ``multihead_attn``, ``linear1``, ``linear2``, ``norm``, ``layers``)
mirror the official modules so official weights map one to one
(:mod:`genvis.model.checkpoint`). Dropout is 0 as in the official configuration.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _xavier_(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


def _with_pos(x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    return x if pos is None else x + pos


class SelfAttentionBlock(nn.Module):
    """Residual multi-head self-attention with LayerNorm.

    ``forward(x [B,S,C], attn_mask [S,S] or [B*heads,S,S] float additive | None,
    key_padding_mask [B,S] bool | None, pos [B|1,S,C] | None) -> [B,S,C]``; the position
    embedding is added to queries and keys, not values.
    """

    def __init__(self, dim: int, heads: int, pre_norm: bool = False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.pre_norm = pre_norm
        _xavier_(self)

    def forward(self, x, attn_mask=None, key_padding_mask=None, pos=None):
        if self.pre_norm:
            y = self.norm(x)
            q = k = _with_pos(y, pos)
            y = self.self_attn(q, k, y, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                               need_weights=False)[0]
            return x + y
        q = k = _with_pos(x, pos)
        y = self.self_attn(q, k, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           need_weights=False)[0]
        return self.norm(x + y)


class CrossAttentionBlock(nn.Module):
    """Residual multi-head cross-attention with LayerNorm.

    ``forward(x [B,Nq,C], memory [B,S,C], pos [B|1,S,C] | None, query_pos [B|1,Nq,C] | None)
    -> [B,Nq,C]``.
    """

    def __init__(self, dim: int, heads: int, pre_norm: bool = False):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.pre_norm = pre_norm
        _xavier_(self)

    def forward(self, x, memory, pos=None, query_pos=None):
        if self.pre_norm:
            y = self.norm(x)
            y = self.multihead_attn(_with_pos(y, query_pos), _with_pos(memory, pos), memory,
                                    need_weights=False)[0]
            return x + y
        y = self.multihead_attn(_with_pos(x, query_pos), _with_pos(memory, pos), memory,
                                need_weights=False)[0]
        return self.norm(x + y)


class FFNBlock(nn.Module):
    """Residual two-layer ReLU FFN with LayerNorm: ``[..., C] -> [..., C]``."""

    def __init__(self, dim: int, hidden: int, pre_norm: bool = False):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm = nn.LayerNorm(dim)
        self.pre_norm = pre_norm
        _xavier_(self)

    def forward(self, x):
        if self.pre_norm:
            return x + self.linear2(F.relu(self.linear1(self.norm(x))))
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them: ``[..., in] -> [..., out]``."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x
