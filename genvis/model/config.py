"""GenVISConfig: the sizes and switches of the stage-two video modules.

Defaults follow the official GenVIS / VITA configuration (``MODEL.VITA.*`` in the public
code): hidden 256, 8 heads, FFN 2048, 6 encoder layers with global
attention (window 0), 3 decoder layers, N_q = 100 instance queries, a 3-layer mask-embedding
MLP and a K+1-way class head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from genvis.errors import ConfigError

MEMORY_MODES = ("index", "global", "none")


@dataclass
class GenVISConfig:
    """Architecture of the GenVIS video modules (E, D, IPM, heads).

    Attributes:
        num_classes: K, object classes (the class head has K + 1 outputs, last = no-object).
        hidden_dim: C, width of every module; must equal the cache's frame-query size.
        num_frame_queries: Q_f, frame queries per frame (size of the frame-query position
            embedding ``fq_pos``).
        mask_feature_dim: channels of the raw mask features fed to the 1x1 conv
            (the detector's pixel-decoder width; equal to C for the caches genvis writes).
        num_queries: N_q, instance queries.
        num_heads: attention heads of every attention layer.
        dim_feedforward: hidden width of the FFN layers.
        enc_layers: object encoder layers (self-attention over a clip's frame queries).
        dec_layers: object decoder layers (cross-attention, self-attention, FFN).
        enc_window: 0 = global attention over the clip (GenVIS); W > 0 = VITA's windowed
            (shifted-window) attention over W frames.
        pre_norm: pre-LayerNorm transformer blocks (official default False).
        memory: instance prototype memory read: "index" (IPM, query j reads only past
            prototypes of index j), "global" (Table 5: reads every past prototype) or
            "none" (q^i = p^{i-1}, Table 4 rows without IPM).
        sim_embed: build the similarity-embedding heads (used by the similarity loss).

    Raises (from :meth:`validate`):
        ConfigError: a size is not positive, hidden_dim not divisible by num_heads, unknown
            memory mode.
    """

    num_classes: int = 25
    hidden_dim: int = 256
    num_frame_queries: int = 100
    mask_feature_dim: int | None = None
    num_queries: int = 100
    num_heads: int = 8
    dim_feedforward: int = 2048
    enc_layers: int = 6
    dec_layers: int = 3
    enc_window: int = 0
    pre_norm: bool = False
    memory: str = "index"
    sim_embed: bool = True

    def __post_init__(self) -> None:
        if self.mask_feature_dim is None:
            self.mask_feature_dim = self.hidden_dim

    def validate(self, source: str = "model") -> "GenVISConfig":
        """Check every field; return self. Raises ConfigError naming ``source.field``."""
        for name in ("num_classes", "hidden_dim", "num_frame_queries", "mask_feature_dim",
                     "num_queries", "num_heads", "dim_feedforward", "dec_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{source}.{name}", f"must be a positive integer, got {value!r}")
        for name in ("enc_layers", "enc_window"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{source}.{name}", f"must be a non-negative integer, got {value!r}")
        if self.hidden_dim % self.num_heads:
            raise ConfigError(f"{source}.hidden_dim",
                              f"{self.hidden_dim} is not divisible by num_heads={self.num_heads}")
        if self.memory not in MEMORY_MODES:
            raise ConfigError(f"{source}.memory", f"must be one of {MEMORY_MODES}, got {self.memory!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for YAML / checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "model") -> "GenVISConfig":
        """Build from a mapping; unknown keys raise ConfigError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(source, f"unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(data)).validate(source)
