"""FrameDetector: transformers' Mask2Former as the frozen frame-level detector of GenVIS.

For each frame it yields what the cache stores (GenVIS / VITA: frame queries and mask features):

* frame queries: decoder-normed output of the last L masked-attention decoder layers
  (``transformer_decoder_intermediate_states``), ``[B, L, Q_f, C]``;
* raw mask features: the pixel decoder's stride-4 output *before* Mask2Former's 1x1 mask
  projection (last FPN conv + GroupNorm + ReLU, non-negative), ``[B, C, Hp/4, Wp/4]``; the
  projected tensor (transformers' ``pixel_decoder_last_hidden_state``) is used only for the
  detector's own masks. It is captured with a forward pre-hook on ``mask_projection``;
* frame class logits ``[B, Q_f, K+1]`` (last entry = no-object) and frame mask embeddings
  ``[B, Q_f, C]`` (mask-embedding MLP of the last layer).

No detectron2 and no custom CUDA op: the deformable attention of the pixel decoder runs on
transformers' PyTorch path.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genvis.detector.backbones import swin_relative_position_keys
from genvis.detector.config import DetectorConfig
from genvis.errors import InputError

CHECKPOINT_FORMAT = "genvis-detector"
CHECKPOINT_VERSION = 1


@dataclass
class FrameDetectorOutput:
    """Per-frame detector outputs for a batch of B frames (float32).

    Attributes:
        frame_queries: ``[B, L, Q_f, C]``, decoder-normed, last L decoder layers (oldest first).
        mask_features: ``[B, C, Hp/4, Wp/4]``, raw (pre-projection, non-negative).
        class_logits: ``[B, Q_f, K+1]``.
        mask_embeddings: ``[B, Q_f, C]``.
        mask_logits: ``[B, Q_f, Hp/4, Wp/4]``, the detector's own frame masks (mask embeddings
            against projected mask features); not cached.
    """

    frame_queries: torch.Tensor
    mask_features: torch.Tensor
    class_logits: torch.Tensor
    mask_embeddings: torch.Tensor
    mask_logits: torch.Tensor

    def cache_arrays(self) -> dict[str, torch.Tensor]:
        """The four cached fields (see :mod:`genvis.cache.layout`)."""
        return {"frame_queries": self.frame_queries, "mask_features": self.mask_features,
                "class_logits": self.class_logits, "mask_embeddings": self.mask_embeddings}


def _backbone_config(cfg: DetectorConfig):
    from transformers import ResNetConfig, SwinConfig

    stages = ["stage1", "stage2", "stage3", "stage4"]
    opts = dict(cfg.backbone_options)
    if cfg.backbone == "resnet":  # ResNet-50 as in the official R50 checkpoints
        base = dict(embedding_size=64, hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3],
                    layer_type="bottleneck", downsample_in_bottleneck=False)
        return ResNetConfig(**{**base, **opts}, out_features=stages)
    if cfg.backbone == "tiny_resnet":  # 4 basic blocks, for tests and the synthetic benchmark
        base = dict(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                    layer_type="basic")
        return ResNetConfig(**{**base, **opts}, out_features=stages)
    if cfg.backbone == "swin":  # Swin-T by default; Swin-L: embed_dim 192, depths 2,2,18,2
        base = dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                    drop_path_rate=0.0)
        return SwinConfig(**{**base, **opts}, out_features=stages)
    if cfg.backbone == "efficientnet_lite0":
        # Placeholder with the EfficientNet-Lite0 stage channels so the pixel decoder is
        # built for them; the encoder module itself is replaced in FrameDetector.__init__.
        from genvis.detector.backbones import FEATURE_CHANNELS

        return ResNetConfig(embedding_size=8, hidden_sizes=list(FEATURE_CHANNELS), depths=[1, 1, 1, 1],
                            layer_type="basic", out_features=stages)
    raise InputError("backbone", f"unknown backbone {cfg.backbone!r}")  # validated earlier


def mask2former_config(cfg: DetectorConfig):
    """transformers ``Mask2FormerConfig`` for a :class:`DetectorConfig` (all widths = C)."""
    from transformers import Mask2FormerConfig

    return Mask2FormerConfig(
        backbone_config=_backbone_config(cfg),
        feature_size=cfg.hidden_dim,
        mask_feature_size=cfg.hidden_dim,
        hidden_dim=cfg.hidden_dim,
        num_queries=cfg.num_queries,
        decoder_layers=cfg.decoder_layers,
        encoder_layers=cfg.encoder_layers,
        num_attention_heads=cfg.num_heads,
        dim_feedforward=cfg.dim_feedforward,
        encoder_feedforward_dim=cfg.encoder_feedforward_dim,
        num_labels=cfg.num_classes,
        dropout=0.0,
    )


class FrameDetector(nn.Module):
    """Mask2Former frame detector with GenVIS's outputs (see module doc).

    Args:
        cfg: the detector configuration. ``pretrained_backbone`` loads the packaged
            EfficientNet-Lite0 ImageNet weights; otherwise weights are random until
            trained (``genvis train-detector``) or imported (``genvis import-checkpoint``).

    Attributes:
        cfg: the DetectorConfig.
        m2f: the ``transformers.Mask2FormerForUniversalSegmentation`` (its loss,
            Hungarian matcher and point sampling are used for training).
    """

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        import transformers
        from transformers import Mask2FormerForUniversalSegmentation

        self.cfg = cfg
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # "resnet is not a supported backbone" note
        try:
            self.m2f = Mask2FormerForUniversalSegmentation(mask2former_config(cfg))
        finally:
            transformers.logging.set_verbosity(verbosity)
        if cfg.backbone == "efficientnet_lite0":
            from genvis.detector.backbones import EfficientNetLite0Backbone

            encoder = EfficientNetLite0Backbone()
            if cfg.pretrained_backbone:
                encoder.load_imagenet_weights()
            self.m2f.model.pixel_level_module.encoder = encoder
        if cfg.backbone == "swin":  # the official detection Swin's windows and stored index
            from genvis.detector.backbones import make_official_swin

            make_official_swin(self.m2f.model.pixel_level_module.encoder)
        self._captured: list[torch.Tensor] = []
        self.m2f.model.pixel_level_module.decoder.mask_projection.register_forward_pre_hook(self._capture)

    def _capture(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self._captured.append(inputs[0])

    @property
    def pixel_decoder(self) -> nn.Module:
        return self.m2f.model.pixel_level_module.decoder

    def run(self, pixel_values: torch.Tensor, mask_labels=None, class_labels=None):
        """Run Mask2Former; returns ``(transformers output, raw mask features)``.

        With ``mask_labels`` (list of float ``[n_i, Hp, Wp]``) and ``class_labels`` (list of
        long ``[n_i]``) the output carries Mask2Former's training loss (Hungarian matching,
        CE + BCE + Dice on sampled points, deep supervision).
        """
        self._captured.clear()
        out = self.m2f(pixel_values=pixel_values, mask_labels=mask_labels, class_labels=class_labels,
                       output_hidden_states=False, return_dict=True)
        if len(self._captured) != 1:
            raise RuntimeError("mask-feature hook did not fire exactly once")
        raw = self._captured.pop()
        return out, raw

    def forward(self, pixel_values: torch.Tensor) -> FrameDetectorOutput:
        """Detector outputs for a batch of preprocessed frames.

        Args:
            pixel_values: float32 ``[B, 3, Hp, Wp]`` from
                :func:`genvis.detector.preprocess.preprocess_frames` (Hp, Wp multiples of 32).

        Returns:
            :class:`FrameDetectorOutput` (float32 tensors on the input's device).

        Raises:
            ValueError: input not ``[B, 3, Hp, Wp]`` with Hp, Wp multiples of 32.
        """
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values must be [B, 3, Hp, Wp], got {tuple(pixel_values.shape)}")
        if pixel_values.shape[-1] % 32 or pixel_values.shape[-2] % 32:
            raise ValueError(f"pixel_values height/width must be multiples of 32, got {tuple(pixel_values.shape)}")
        # The transformers model returns only the last layer's class logits; the per-layer
        # decoder-normed queries come from the inner model.
        self._captured.clear()
        inner = self.m2f.model(pixel_values=pixel_values, output_hidden_states=True, return_dict=True)
        raw = self._captured.pop()
        self._captured.clear()
        states = inner.transformer_decoder_intermediate_states  # tuple of [Q_f, B, C], normed
        L = self.cfg.keep_layers
        frame_queries = torch.stack([s.transpose(0, 1) for s in states[-L:]], dim=1)
        last = frame_queries[:, -1]
        class_logits = self.m2f.class_predictor(last)
        mask_embed = self.m2f.model.transformer_module.decoder.mask_predictor.mask_embedder(last)
        return FrameDetectorOutput(
            frame_queries=frame_queries,
            mask_features=raw,
            class_logits=class_logits,
            mask_embeddings=mask_embed,
            mask_logits=inner.masks_queries_logits[-1],
        )

    # ------------------------------------------------------------------ persistence
    def fingerprint(self) -> str:
        """SHA-256 (hex, first 16 chars) of the config and every weight's bytes.

        Two detectors with the same fingerprint produce the same cache; used as the cache's
        provenance key.
        """
        h = hashlib.sha256()
        h.update(json.dumps(self.cfg.to_dict(), sort_keys=True).encode())
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            t = t.detach().cpu().contiguous().reshape(-1)
            h.update(str(t.dtype).encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()[:16]

    def save(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
        """Write ``{format, version, config, state_dict}`` to ``path`` atomically (torch.save)."""
        from genvis.utils.io import atomic_path

        payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                   "config": self.cfg.to_dict(), "state_dict": self.state_dict(),
                   **(extra or {})}
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> "FrameDetector":
        """Load a detector written by :meth:`save` (``torch.load(weights_only=True)``).

        Raises:
            InputError: missing/corrupt file, not a genvis detector, or weights that do not
                fit the stored config (lists the keys).
        """
        payload = read_detector_file(path, map_location)
        cfg = DetectorConfig.from_dict(payload["config"], source=f"{path}: config")
        cfg.pretrained_backbone = False  # weights come from the file
        det = cls(cfg)
        missing, unexpected = det.load_state_dict(payload["state_dict"], strict=False)
        # files written before the Swin relative position index was saved: keep the
        # recomputed (standard) index
        legacy = set(swin_relative_position_keys(missing))
        missing = [k for k in missing if k not in legacy]
        if missing or unexpected:
            raise InputError(path, f"weights do not fit the config: missing {missing[:8]}, "
                             f"unexpected {unexpected[:8]}")
        det.cfg = DetectorConfig.from_dict(payload["config"])
        return det.eval()


def read_detector_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a genvis detector file; returns its payload dict.

    Raises:
        InputError: missing, truncated/corrupt, or not a genvis detector checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "detector checkpoint not found")
    from genvis.utils.torch_io import load_weights_only

    payload = load_weights_only(path, "detector checkpoint", map_location)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputError(path, "not a genvis detector checkpoint (train one with `genvis train-detector` "
                         "or convert one with `genvis import-checkpoint`)")
    if "config" not in payload or "state_dict" not in payload:
        raise InputError(path, "detector checkpoint lacks config or state_dict")
    return payload
