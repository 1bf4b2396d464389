"""Object encoder E: self-attention over the frame queries of one clip (GenVIS Sec. 3.1).

GenVIS replaces VITA's window-based attention with global attention over all
``N_f x Q_f`` frame queries of the clip (paper Sec. 4.2; ``ENC_WINDOW_SIZE: 0``). The
windowed variant is kept for VITA-style configurations: windows of W frames, with every
second layer shifted by ceil(W/2) frames at inference; during training the official code
uses the unshifted windows in every layer, and so do we.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genvis.model.layers import FFNBlock, SelfAttentionBlock

_MASKED = -1.0e4  # additive attention bias for disallowed pairs (finite: no NaN rows)


class ObjectEncoder(nn.Module):
    """E: input projection + ``enc_layers`` x (self-attention, FFN) over a clip's frame queries.

    Args:
        dim: C. heads: attention heads. ffn_dim: FFN width. num_layers: encoder layers.
        window: 0 for global attention, W > 0 for windows of W frames.
        pre_norm: pre-LayerNorm blocks.

    Official names: ``input_proj`` <-> ``input_proj_dec``, ``self_attn.i`` <->
    ``enc_self_attn.i``, ``ffn.i`` <-> ``enc_ffn.i``.
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, num_layers: int, window: int = 0,
                 pre_norm: bool = False):
        super().__init__()
        self.window = window
        self.num_heads = heads
        self.input_proj = nn.Linear(dim, dim)
        self.self_attn = nn.ModuleList(SelfAttentionBlock(dim, heads, pre_norm) for _ in range(num_layers))
        self.ffn = nn.ModuleList(FFNBlock(dim, ffn_dim, pre_norm) for _ in range(num_layers))

    def forward(self, frame_queries: torch.Tensor) -> torch.Tensor:
        """Encode frame queries.

        Args:
            frame_queries: float [B, T, Q_f, C] (B = batch x kept detector layers).

        Returns:
            float [B, T, Q_f, C], E(f).
        """
        b, t, q, c = frame_queries.shape
        x = self.input_proj(frame_queries)
        if self.window == 0:
            x = x.reshape(b, t * q, c)
            for attn, ffn in zip(self.self_attn, self.ffn):
                x = ffn(attn(x))
            return x.reshape(b, t, q, c)

        w = self.window
        t_pad = int(math.ceil(t / w)) * w
        if t_pad > t:
            x = torch.cat([x, x.new_zeros(b, t_pad - t, q, c)], dim=1)
        x = x.reshape(b, t_pad * q, c)
        frames = torch.arange(t_pad, device=x.device)
        padded = frames >= t
        half = int(math.ceil(w / 2))
        plain_group = frames // w
        shifted = frames + half
        shift_group = torch.where(shifted >= t_pad, torch.full_like(frames, -1), shifted // w)
        masks = {}
        for name, group in (("plain", plain_group), ("shift", shift_group)):
            allowed = (group[:, None] == group[None, :]) & ~padded[None, :]
            bias = torch.zeros(t_pad, t_pad, dtype=x.dtype, device=x.device)
            bias.masked_fill_(~allowed, _MASKED)
            masks[name] = bias.repeat_interleave(q, 0).repeat_interleave(q, 1)
        for i, (attn, ffn) in enumerate(zip(self.self_attn, self.ffn)):
            use_plain = self.training or i % 2 == 0
            x = ffn(attn(x, attn_mask=masks["plain" if use_plain else "shift"]))
        return x.reshape(b, t_pad, q, c)[:, :t]
