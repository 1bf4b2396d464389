"""Frame preprocessing for the detector and the exact inverse mapping of its masks.

As in the official Mask2Former / VITA / GenVIS inference: RGB frames, resized so that the
shortest side is ``min_size`` unless the longest side would exceed ``max_size`` (detectron2
``ResizeShortestEdge``), normalised with the pixel mean/std, and zero-padded at the bottom and
right to a multiple of 32. :class:`ImageSizes` records the three sizes so that mask logits at
stride 4 map back onto the original frame (:func:`masks_to_original`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from genvis.detector.config import DetectorConfig


@dataclass(frozen=True)
class ImageSizes:
    """Sizes of one frame through preprocessing, all ``(height, width)`` in pixels.

    Attributes:
        original: the decoded frame.
        resized: after the shortest-side resize (the valid region of the padded input).
        padded: the network input, a multiple of ``size_divisibility``; mask features have
            ``padded / 4``.
    """

    original: tuple[int, int]
    resized: tuple[int, int]
    padded: tuple[int, int]

    def to_dict(self) -> dict[str, list[int]]:
        """JSON form used in cache attrs: ``original_size``, ``resized_size``, ``padded_size``."""
        return {"original_size": list(self.original), "resized_size": list(self.resized),
                "padded_size": list(self.padded)}


def resized_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """Output size of detectron2's ``ResizeShortestEdge`` (shortest side ``min_size``, longest
    at most ``max_size``), rounding half up. Returns ``(h, w)``."""
    scale = min_size / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def padded_size(height: int, width: int, divisibility: int = 32) -> tuple[int, int]:
    """Smallest ``(Hp, Wp) >= (height, width)`` that are multiples of ``divisibility``."""
    return (-(-height // divisibility) * divisibility, -(-width // divisibility) * divisibility)


def preprocess_frames(
    frames: np.ndarray | torch.Tensor,
    cfg: DetectorConfig,
    min_size: int | None = None,
    max_size: int | None = None,
) -> tuple[torch.Tensor, ImageSizes]:
    """Resize, normalise and pad frames of one video (all the same size).

    Args:
        frames: uint8 RGB ``[T, H, W, 3]`` (or one frame ``[H, W, 3]``).
        cfg: detector config (pixel mean/std, default sizes, divisibility).
        min_size, max_size: override ``cfg.min_size`` / ``cfg.max_size`` (pixels).

    Returns:
        ``(pixel_values float32 [T, 3, Hp, Wp], ImageSizes)``; the padding is 0 (after
        normalisation), bottom and right.

    Raises:
        ValueError: not uint8 RGB with 3 channels, or an empty frame.
    """
    x = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 RGB [T, H, W, 3], got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8, got {x.dtype}")
    t, h, w, _ = x.shape
    if h == 0 or w == 0 or t == 0:
        raise ValueError(f"empty frames: shape {tuple(x.shape)}")
    rh, rw = resized_size(h, w, min_size or cfg.min_size, max_size or cfg.max_size)
    ph, pw = padded_size(rh, rw, cfg.size_divisibility)
    img = x.permute(0, 3, 1, 2).float()
    if (rh, rw) != (h, w):
        img = F.interpolate(img, size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(cfg.pixel_mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.pixel_std).view(1, 3, 1, 1)
    img = (img - mean) / std
    out = img.new_zeros((t, 3, ph, pw))
    out[:, :, :rh, :rw] = img
    return out, ImageSizes(original=(h, w), resized=(rh, rw), padded=(ph, pw))


def masks_to_original(mask_logits: torch.Tensor, sizes: ImageSizes) -> torch.Tensor:
    """Map mask logits predicted on the padded input back to the original frame.

    Upsamples to the padded size (bilinear), crops the valid ``resized`` region, and resizes
    to the ``original`` size (bilinear), as Mask2Former's ``sem_seg_postprocess``.

    Args:
        mask_logits: float ``[..., h, w]`` at any stride of the padded input (e.g. stride 4:
            ``padded / 4``).
        sizes: the frame's :class:`ImageSizes`.

    Returns:
        float logits ``[..., H, W]`` with ``(H, W) = sizes.original``.
    """
    lead = mask_logits.shape[:-2]
    x = mask_logits.reshape(-1, 1, *mask_logits.shape[-2:]).float()
    if tuple(x.shape[-2:]) != sizes.padded:
        x = F.interpolate(x, size=sizes.padded, mode="bilinear", align_corners=False)
    x = x[..., : sizes.resized[0], : sizes.resized[1]]
    if tuple(x.shape[-2:]) != sizes.original:
        x = F.interpolate(x, size=sizes.original, mode="bilinear", align_corners=False)
    return x.reshape(*lead, *sizes.original)
