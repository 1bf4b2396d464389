"""IDOL's instance embedding head on cached frame queries (IDOL, Wu et al. ECCV 2022, Sec. 3.1).

IDOL is an online method: a frame-level detector finds instances in every frame and a
light-weight head maps each object query of the detector's last decoder layer to an
embedding; instances are associated across frames by those embeddings
(:mod:`genvis.infer.idol`). Here the detector is the frozen frame detector of stage one, so
everything the head needs is in the cache: the last layer's frame queries ``[Q_f, C]``, the
detector's frame-level class logits and mask embeddings, and the raw mask features.

:class:`IDOLModel` holds

* ``embed``: the embedding head, an MLP C -> C -> ... -> D (``mlp_layers`` linear layers,
  ReLU between; IDOL: "several MLP layers" on the decoder output);
* ``mask_features``: the detector's own 1x1 mask projection (Mask2Former
  ``mask_projection``), copied from the detector file and frozen, so the detector's
  frame masks ``mask_embeddings . mask_features(raw)`` can be formed from the cache (for the
  sample selection in training and the masks at inference).

The same module serves the "ID head" row of IDOL's supplement Table 1 (trained with a
MaskTrack R-CNN style cross-entropy instead of the contrastive loss): only the loss differs
(:mod:`genvis.train.idol_loss`).

Files: ``MODEL.pt`` of an IDOL experiment is a dict with ``format: "genvis-idol"``,
``idol_config``, ``experiment``, ``state_dict`` and extras (:func:`save_idol_model`,
:func:`load_idol_model`, :func:`is_idol_model`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from genvis.errors import ConfigError, InputError
from genvis.utils.io import atomic_path

FORMAT = "genvis-idol"

#: IDOL model parameter <- transformers Mask2Former parameter of a genvis FrameDetector
_DETECTOR_MASK_PROJECTION = {
    "mask_features.weight": "m2f.model.pixel_level_module.decoder.mask_projection.weight",
    "mask_features.bias": "m2f.model.pixel_level_module.decoder.mask_projection.bias",
}


@dataclass
class IDOLConfig:
    """Sizes of :class:`IDOLModel`.

    Attributes:
        num_classes: K (from the dataset). hidden_dim: C of the frame queries (from the cache).
        mask_feature_dim: C_m of the raw mask features (from the cache).
        num_frame_queries: Q_f (from the cache; recorded for checks at inference).
        embed_dim: D, the embedding size (IDOL: 256 = its hidden size; default: C).
        mlp_layers: linear layers of the embedding head (>= 1).
    """

    num_classes: int
    hidden_dim: int
    mask_feature_dim: int
    num_frame_queries: int
    embed_dim: int | None = None
    mlp_layers: int = 3

    def validate(self, source: str = "idol.model") -> "IDOLConfig":
        """Check the fields (ConfigError naming ``source.field``); fills ``embed_dim``; returns self."""
        if self.embed_dim is None:
            self.embed_dim = self.hidden_dim
        for name in ("num_classes", "hidden_dim", "mask_feature_dim", "num_frame_queries", "embed_dim",
                     "mlp_layers"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{source}.{name}", f"must be an integer >= 1, got {v!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return asdict(self)


class IDOLModel(nn.Module):
    """Embedding head + the detector's frozen mask projection.

    Args:
        cfg: :class:`IDOLConfig`.
    """

    def __init__(self, cfg: IDOLConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        c, d = cfg.hidden_dim, cfg.embed_dim
        layers: list[nn.Module] = []
        for i in range(cfg.mlp_layers):
            last = i == cfg.mlp_layers - 1
            layers.append(nn.Linear(c, d if last else c))
            if not last:
                layers.append(nn.ReLU())
        self.embed = nn.Sequential(*layers)
        self.mask_features = nn.Conv2d(cfg.mask_feature_dim, c, kernel_size=1)
        self.mask_features.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    def forward(self, frame_queries: torch.Tensor) -> torch.Tensor:
        """Embeddings of frame queries.

        Args:
            frame_queries: float [..., Q_f, C] (the detector's last decoder layer).

        Returns:
            float [..., Q_f, D] (not normalised; IDOL matches raw dot products).
        """
        return self.embed(frame_queries)

    def frame_mask_logits(self, mask_embeddings: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """The detector's frame mask logits from the cache.

        Args:
            mask_embeddings: float [T, Q_f, C] (cached ``mask_embeddings``).
            raw: float [T, C_m, h, w] raw mask features (cached ``mask_features``).

        Returns:
            float [T, Q_f, h, w] mask logits on the stride-4 grid of the padded input.
        """
        projected = self.mask_features(raw)
        return torch.einsum("tqc,tchw->tqhw", mask_embeddings, projected)


def init_mask_projection_from_detector(model: IDOLModel, detector_path: str | os.PathLike) -> None:
    """Copy the frame detector's mask projection (1x1 conv) into ``model.mask_features``.

    Raises:
        InputError: unreadable detector file or missing tensors.
        ConfigError: the detector's hidden size or class count differs from the model's.
    """
    from genvis.detector.model import FrameDetector

    det = FrameDetector.load(detector_path)
    if det.cfg.hidden_dim != model.cfg.hidden_dim or det.cfg.num_classes != model.cfg.num_classes:
        raise ConfigError("--init-heads", f"detector {detector_path} has C={det.cfg.hidden_dim}, "
                          f"K={det.cfg.num_classes}; the cache/dataset give C={model.cfg.hidden_dim}, "
                          f"K={model.cfg.num_classes}")
    sd = det.state_dict()
    own = model.state_dict()
    with torch.no_grad():
        for ours, theirs in _DETECTOR_MASK_PROJECTION.items():
            if theirs not in sd or tuple(sd[theirs].shape) != tuple(own[ours].shape):
                raise InputError(detector_path, f"detector tensor {theirs} missing or of another shape")
            own[ours].copy_(sd[theirs])


def save_idol_model(path: str | os.PathLike, model: IDOLModel, experiment: dict[str, Any],
                    extra: dict[str, Any] | None = None) -> None:
    """Write an IDOL ``MODEL.pt`` atomically (CPU tensors)."""
    payload = {"format": FORMAT, "version": 1, "idol_config": model.cfg.to_dict(),
               "experiment": experiment, "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}}
    payload.update(extra or {})
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _read(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "model file not found; run `genvis train` first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise InputError(path, f"cannot read model file: {exc}") from None


def is_idol_model(path: str | os.PathLike) -> bool:
    """True if ``path`` is a readable IDOL ``MODEL.pt`` (False for anything else, also missing files)."""
    try:
        payload = _read(path)
    except InputError:
        return False
    return isinstance(payload, Mapping) and payload.get("format") == FORMAT


def load_idol_model(path: str | os.PathLike) -> tuple[IDOLModel, dict[str, Any]]:
    """Load an IDOL ``MODEL.pt``.

    Returns:
        (model in eval mode, the payload without the weights).

    Raises:
        InputError: missing / unreadable file, or not an IDOL model.
    """
    payload = _read(path)
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        raise InputError(path, f"not an IDOL model (format tag {FORMAT!r} missing); train one with "
                         "an experiment that has an 'idol' section")
    cfg = IDOLConfig(**payload["idol_config"]).validate(f"{path}: idol_config")
    model = IDOLModel(cfg)
    model.load_state_dict(payload["state_dict"])
    return model.eval(), {k: v for k, v in payload.items() if k != "state_dict"}
