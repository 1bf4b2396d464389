"""Object decoder D: N_q instance queries cross-attend to the encoded frame queries.

p = D(q, E(f)) (GenVIS Sec. 3.1, Eq. 1). Each layer is cross-attention (queries carry the
learnable query position embedding, keys the learnable frame-query position embedding
shared by all frames of the clip), then self-attention among the instance queries, then an
FFN, as in VITA. The instance prototypes of a layer are the LayerNorm'ed layer output.
"""

from __future__ import annotations

import torch
from torch import nn

from genvis.model.layers import CrossAttentionBlock, FFNBlock, SelfAttentionBlock


class ObjectDecoder(nn.Module):
    """D with ``num_layers`` x (cross-attention, self-attention, FFN).

    Parameters: ``query_feat`` [N_q, C] (initial instance queries q^1), ``query_embed``
    [N_q, C] (query position embedding), ``fq_pos`` [Q_f, C] (frame-query position
    embedding), ``norm`` (official ``decoder_norm``).
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, num_layers: int, num_queries: int,
                 num_frame_queries: int, pre_norm: bool = False):
        super().__init__()
        self.num_queries = num_queries
        self.query_feat = nn.Embedding(num_queries, dim)
        self.query_embed = nn.Embedding(num_queries, dim)
        self.fq_pos = nn.Embedding(num_frame_queries, dim)
        self.cross_attn = nn.ModuleList(CrossAttentionBlock(dim, heads, pre_norm) for _ in range(num_layers))
        self.self_attn = nn.ModuleList(SelfAttentionBlock(dim, heads, pre_norm) for _ in range(num_layers))
        self.ffn = nn.ModuleList(FFNBlock(dim, ffn_dim, pre_norm) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)

    def initial_queries(self, batch: int) -> torch.Tensor:
        """q^1: the learnable instance queries, float [batch, N_q, C]."""
        return self.query_feat.weight.unsqueeze(0).expand(batch, -1, -1)

    def forward(self, queries: torch.Tensor, encoded: torch.Tensor, all_layers: bool = True):
        """Decode instance prototypes.

        Args:
            queries: float [B, N_q, C], instance queries of this clip (q^i).
            encoded: float [B, T, Q_f, C], E(f) of the clip.
            all_layers: return the prototypes of every layer (deep supervision) or only the
                last.

        Returns:
            (prototypes float [D', B, N_q, C] with D' = num_layers or 1, the normalised layer
            outputs; output float [B, N_q, C], the last layer's output before the final
            LayerNorm, which is propagated to the next clip as in the official code).
        """
        b, t, q_f, c = encoded.shape
        src = encoded.reshape(b, t * q_f, c)
        pos = self.fq_pos.weight.repeat(t, 1).unsqueeze(0)  # [1, T*Q_f, C]
        query_pos = self.query_embed.weight.unsqueeze(0)    # [1, N_q, C]
        out = queries
        protos = []
        n = len(self.cross_attn)
        for i in range(n):
            out = self.cross_attn[i](out, src, pos=pos, query_pos=query_pos)
            out = self.self_attn[i](out, pos=query_pos)
            out = self.ffn[i](out)
            if all_layers or i == n - 1:
                protos.append(self.norm(out))
        return torch.stack(protos), out
