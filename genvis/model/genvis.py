"""GenVIS: the stage-two video model (object encoder, object decoder, IPM, heads).

One clip step (paper Sec. 3, Eq. 1 and Sec. 3.3; appendix Table 7)::

    q^i  = o^{i-1} + V_q(o^{i-1}) + z^i      (IPM read; "none": q^i = o^{i-1})
    p^i  = D(q^i, E(f^i))                    instance prototypes (normalised)
    class logits = class_embed(p^i), mask logits = mask_embed(p^i) . conv(mask features)

``o^{i-1}`` is the previous clip's decoder output before the final LayerNorm (o^0 = the
learnable ``query_feat``), as in the official ``GenVIS.forward``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from genvis.model.config import GenVISConfig
from genvis.model.heads import Heads
from genvis.model.memory import InstancePrototypeMemory, MemoryState
from genvis.model.object_decoder import ObjectDecoder
from genvis.model.object_encoder import ObjectEncoder


@dataclass
class ClipOutput:
    """Predictions of one clip step for a batch of B sequences.

    Attributes:
        logits: float [D', B, N_q, K+1] class logits per decoder layer (D' = dec_layers
            when all layers were requested, else 1; last entry = last layer).
        mask_embed: float [D', B, N_q, C] mask embeddings per decoder layer.
        prototypes: float [B, N_q, C] instance prototypes of the last layer.
        clip_embed: float [B, N_q, C] similarity embeddings of the last layer, or None.
    """

    logits: torch.Tensor
    mask_embed: torch.Tensor
    prototypes: torch.Tensor
    clip_embed: torch.Tensor | None = None


@dataclass
class VideoState:
    """What GenVIS carries from clip to clip: the decoder output o and the memory."""

    output: torch.Tensor
    memory: MemoryState = field(default_factory=MemoryState)


class GenVIS(nn.Module):
    """The GenVIS video modules.

    Args:
        cfg: :class:`GenVISConfig` (validated here).

    Raises:
        ConfigError: invalid configuration.
    """

    def __init__(self, cfg: GenVISConfig):
        super().__init__()
        self.cfg = cfg.validate()
        c = cfg.hidden_dim
        self.encoder = ObjectEncoder(c, cfg.num_heads, cfg.dim_feedforward, cfg.enc_layers,
                                     cfg.enc_window, cfg.pre_norm)
        self.decoder = ObjectDecoder(c, cfg.num_heads, cfg.dim_feedforward, cfg.dec_layers,
                                     cfg.num_queries, cfg.num_frame_queries, cfg.pre_norm)
        self.memory = None if cfg.memory == "none" else InstancePrototypeMemory(c, cfg.memory)
        self.heads = Heads(c, cfg.num_classes, cfg.mask_feature_dim, cfg.sim_embed)

    @property
    def device(self) -> torch.device:
        """Where the weights are (training and inference move their inputs here)."""
        return next(self.parameters()).device

    # ------------------------------------------------------------------ clip step
    def initial_state(self, batch: int) -> VideoState:
        """State before the first clip: o^0 = query_feat, empty memory."""
        return VideoState(self.decoder.initial_queries(batch), MemoryState())

    def encode_clips(self, frame_queries: torch.Tensor, n_f: int) -> torch.Tensor:
        """E(f) of N_v consecutive clips at once (E does not depend on earlier clips).

        Each clip of ``n_f`` frames is encoded on its own, exactly as :meth:`clip_step` does,
        but as one batch of B x N_v clips: one pass of the encoder's layers instead of N_v
        (used by training; equal to per-clip encoding up to float rounding).

        Args:
            frame_queries: float [B, N_v * n_f, Q_f, C].
            n_f: frames per clip.

        Returns:
            float [B, N_v * n_f, Q_f, C]; ``[:, c * n_f:(c + 1) * n_f]`` is E of clip c, to
            pass to :meth:`clip_step` as ``encoded``.

        Raises:
            ValueError: the frame count is not a multiple of ``n_f``.
        """
        b, w, q, c = frame_queries.shape
        if n_f < 1 or w % n_f:
            raise ValueError(f"{w} frames are not whole clips of n_f={n_f}")
        return self.encoder(frame_queries.reshape(b * (w // n_f), n_f, q, c)).reshape(b, w, q, c)

    def clip_step(self, frame_queries: torch.Tensor, state: VideoState,
                  all_layers: bool = False, encoded: torch.Tensor | None = None,
                  read_per_sequence: bool = False) -> tuple[ClipOutput, VideoState]:
        """Run E, D (with IPM read) and the heads on one clip.

        Args:
            frame_queries: float [B, N_f, Q_f, C], frame queries of the clip (B sequences;
                in training each kept detector layer of each video is its own sequence).
            state: :class:`VideoState` from the previous clip (or :meth:`initial_state`).
            all_layers: predictions for every decoder layer (deep supervision).
            encoded: E(frame_queries) float [B, N_f, Q_f, C] when already computed
                (:meth:`encode_clips`); None: encoded here.
            read_per_sequence: the IPM attends one sequence at a time
                (:meth:`InstancePrototypeMemory.read`), so that a batch gives bit for bit the
                results of one sequence at a time (batched inference).

        Returns:
            (:class:`ClipOutput`, the state for the next clip).

        Raises:
            ValueError: frame-query width or count differs from the model's.
        """
        if frame_queries.dim() != 4:
            raise ValueError(f"frame_queries must be [B, N_f, Q_f, C], got {tuple(frame_queries.shape)}")
        _, _, q_f, c = frame_queries.shape
        if c != self.cfg.hidden_dim or q_f != self.cfg.num_frame_queries:
            raise ValueError(f"frame queries have Q_f={q_f}, C={c}; the model expects "
                             f"Q_f={self.cfg.num_frame_queries}, C={self.cfg.hidden_dim}")
        queries = state.output if self.memory is None else self.memory.read(state.output, state.memory,
                                                                             per_sequence=read_per_sequence)
        if encoded is None:
            encoded = self.encoder(frame_queries)
        protos, out = self.decoder(queries, encoded, all_layers=all_layers)
        logits = self.heads.class_embed(protos)
        mask_embed = self.heads.mask_embed(protos)
        last = protos[-1]
        clip_embed = self.heads.sim_embed_clip(last) if self.heads.sim_embed_clip is not None else None
        memory = state.memory if self.memory is None else self.memory.write(last, state.memory)
        return ClipOutput(logits, mask_embed, last, clip_embed), VideoState(out, memory)

    def project_mask_features(self, raw: torch.Tensor) -> torch.Tensor:
        """The trainable 1x1 conv: raw mask features [T, C_m, h, w] -> [T, C, h, w]."""
        return self.heads.project_mask_features(raw)

    def mask_projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The 1x1 conv of :meth:`project_mask_features` as (weight float [C, C_m], bias
        float [C]) with gradient (training applies it to the mask embeddings instead)."""
        conv = self.heads.mask_features
        return conv.weight[:, :, 0, 0], conv.bias

    @staticmethod
    def mask_logits(mask_embed: torch.Tensor, mask_features: torch.Tensor) -> torch.Tensor:
        """Clip mask logits: mask_embed float [..., N_q, C] . projected mask features
        float [T, C, h, w] -> float [..., N_q, T, h, w]."""
        return torch.einsum("...qc,tchw->...qthw", mask_embed, mask_features)

    # ------------------------------------------------------------------ whole video
    @torch.no_grad()
    def infer_from_tensors(self, frame_queries: torch.Tensor, mask_features: torch.Tensor,
                           n_f: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequential clip-by-clip inference on one video held in memory.

        Args:
            frame_queries: float [T, Q_f, C], the detector's last-layer frame queries
                (official ``frame_queries[-1]`` of ``sem_seg_head``).
            mask_features: float [T, C_m, h, w], raw mask features (before any 1x1 conv).
            n_f: N_f^eval, frames per non-overlapping clip (the last clip may be shorter).

        Returns:
            class_logits: float [n_clips, N_q, K+1] -- the official ``mask_cls``
                (``torch.cat`` of ``vita_outputs["pred_logits"][-1]`` over clips) before softmax.
            mask_logits: float [N_q, T, h, w] -- the official per-clip
                ``einsum("qc,tchw->qthw", mask_embed[i], vita_mask_features(mf_i))``
                concatenated over time, for all N_q queries, before upsampling.

        Raises:
            ValueError: n_f < 1, or mismatched shapes.
        """
        if n_f < 1:
            raise ValueError(f"n_f must be >= 1, got {n_f}")
        t = frame_queries.shape[0]
        if mask_features.shape[0] != t:
            raise ValueError(f"frame_queries have {t} frames but mask_features {mask_features.shape[0]}")
        was_training = self.training
        self.eval()
        try:
            state = self.initial_state(1)
            logits, masks = [], []
            for i in range(math.ceil(t / n_f)):
                s, e = i * n_f, min((i + 1) * n_f, t)
                out, state = self.clip_step(frame_queries[None, s:e], state)
                logits.append(out.logits[-1, 0])
                mf = self.project_mask_features(mask_features[s:e])
                masks.append(self.mask_logits(out.mask_embed[-1, 0], mf))
            return torch.stack(logits), torch.cat(masks, dim=1)
        finally:
            self.train(was_training)
