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


def train_attention(mha: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``mha(query, key, value, attn_mask=attn_mask, need_weights=False)[0]`` computed with
    plain batched matrix products, for training.

    The same function as :class:`torch.nn.MultiheadAttention` (batch-first, no dropout, no
    key padding) with its parameters; equal to it up to float rounding (about 1e-7). At the
    sizes of stage two (8 heads of width 8, tens of tokens) the explicit softmax(QK^T/sqrt(d))V
    forward and backward take about two thirds of the time of the fused CPU kernel that
    ``nn.MultiheadAttention`` dispatches to, with fewer copies (one projection of the shared
    query/key input when ``query is key``). Used in training mode only, so that inference
    keeps the numerics of ``nn.MultiheadAttention`` bit for bit.

    Args:
        mha: the module holding the parameters (``in_proj_weight`` [3C, C], ``in_proj_bias``,
            ``out_proj``).
        query: float [B, S_q, C]. key: float [B, S_k, C]. value: float [B, S_k, C].
        attn_mask: None, or an additive float mask [S_q, S_k] or [B * heads, S_q, S_k].

    Returns:
        float [B, S_q, C].
    """
    c, h = mha.embed_dim, mha.num_heads
    d = c // h
    w, b = mha.in_proj_weight, mha.in_proj_bias
    if query is key:
        q, k = F.linear(query, w[:2 * c], b[:2 * c]).split(c, dim=-1)
    else:
        q, k = F.linear(query, w[:c], b[:c]), F.linear(key, w[c:2 * c], b[c:2 * c])
    v = F.linear(value, w[2 * c:], b[2 * c:])
    n, s_q, s_k = query.shape[0], query.shape[1], key.shape[1]
    q = q.reshape(n, s_q, h, d).transpose(1, 2).reshape(n * h, s_q, d)
    k = k.reshape(n, s_k, h, d).transpose(1, 2).reshape(n * h, s_k, d)
    v = v.reshape(n, s_k, h, d).transpose(1, 2).reshape(n * h, s_k, d)
    if attn_mask is None:
        logits = torch.bmm(q * d ** -0.5, k.transpose(1, 2))                      # [B*h, S_q, S_k]
    else:
        logits = torch.baddbmm(attn_mask.expand(n * h, s_q, s_k), q * d ** -0.5, k.transpose(1, 2))
    out = torch.bmm(logits.softmax(-1), v).reshape(n, h, s_q, d).transpose(1, 2).reshape(n, s_q, c)
    return F.linear(out, mha.out_proj.weight, mha.out_proj.bias)


class SelfAttentionBlock(nn.Module):
    """Residual multi-head self-attention with LayerNorm.

    ``forward(x [B,S,C], attn_mask [S,S] or [B*heads,S,S] float additive | None,
    key_padding_mask [B,S] bool | None, pos [B|1,S,C] | None) -> [B,S,C]``; the position
    embedding is added to queries and keys, not values. In training mode the attention is
    :func:`train_attention` (same function, plain matrix products).
    """

    def __init__(self, dim: int, heads: int, pre_norm: bool = False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.pre_norm = pre_norm
        _xavier_(self)

    def forward(self, x, attn_mask=None, key_padding_mask=None, pos=None):
        y = self.norm(x) if self.pre_norm else x
        q = k = _with_pos(y, pos)
        if self.training and key_padding_mask is None:
            y = train_attention(self.self_attn, q, k, y, attn_mask)
        else:
            y = self.self_attn(q, k, y, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                               need_weights=False)[0]
        return x + y if self.pre_norm else self.norm(x + y)


class CrossAttentionBlock(nn.Module):
    """Residual multi-head cross-attention with LayerNorm.

    ``forward(x [B,Nq,C], memory [B,S,C], pos [B|1,S,C] | None, query_pos [B|1,Nq,C] | None)
    -> [B,Nq,C]``. In training mode the attention is :func:`train_attention`.
    """

    def __init__(self, dim: int, heads: int, pre_norm: bool = False):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.pre_norm = pre_norm
        _xavier_(self)

    def forward(self, x, memory, pos=None, query_pos=None):
        y = self.norm(x) if self.pre_norm else x
        if self.training:
            y = train_attention(self.multihead_attn, _with_pos(y, query_pos), _with_pos(memory, pos), memory)
        else:
            y = self.multihead_attn(_with_pos(y, query_pos), _with_pos(memory, pos), memory, need_weights=False)[0]
        return x + y if self.pre_norm else self.norm(x + y)


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
