"""Ground-truth masks for stage-two training, on the geometry of the cached features.

The official VITA / GenVIS code (``Vita.prepare_targets``) resizes each frame's masks with
the image (shortest-side resize, nearest interpolation for masks), then zero-pads them to
the padded batch size; predictions live on the stride-4 grid of the padded input and both
are compared at the same normalised points. We do the same per video from the cache's
group attrs ``original_size`` (H, W), ``resized_size`` (h, w) and ``padded_size`` (Hp, Wp).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from genvis.errors import InputError


@dataclass
class VideoTargets:
    """All ground-truth instances of one video on the padded input grid.

    Attributes:
        labels: long [N] class indices 0..K-1.
        masks: bool [N, T, Hp, Wp].
    """

    labels: torch.Tensor
    masks: torch.Tensor

    def select(self, frames: Sequence[int], keep_all: bool = False) -> "VideoTargets":
        """The given frames (indices, in order, repeats allowed), keeping only instances
        visible somewhere in them (as the official ``prepare_targets`` keeps instances valid
        in the sampled frames), or every instance of the video with ``keep_all`` (indices
        stable across windows)."""
        m = self.masks[:, list(frames)]
        if keep_all:
            return VideoTargets(self.labels, m)
        keep = m.flatten(1).any(1) if m.numel() else torch.zeros(m.shape[0], dtype=torch.bool)
        return VideoTargets(self.labels[keep], m[keep])

    def to(self, device: str | torch.device) -> "VideoTargets":
        """The same targets on ``device`` (no copy when they are already there)."""
        return VideoTargets(self.labels.to(device), self.masks.to(device))


def resize_pad_masks(masks: torch.Tensor, resized: tuple[int, int], padded: tuple[int, int]) -> torch.Tensor:
    """Nearest-resize bool masks [N, T, H, W] to ``resized`` (h, w), then zero-pad bottom/right
    to ``padded`` (Hp, Wp). Returns bool [N, T, Hp, Wp]."""
    n, t, h0, w0 = masks.shape
    rh, rw = int(resized[0]), int(resized[1])
    ph, pw = int(padded[0]), int(padded[1])
    if (h0, w0) != (rh, rw) and n * t > 0:
        masks = F.interpolate(masks.reshape(n * t, 1, h0, w0).to(torch.uint8), size=(rh, rw),
                              mode="nearest-exact").reshape(n, t, rh, rw).bool()
    out = torch.zeros(n, t, ph, pw, dtype=torch.bool)
    out[:, :, :rh, :rw] = masks[:, :, :rh, :rw]
    return out


class DatasetTargets:
    """Targets of a ``VISDataset`` on a clip source's geometry, decoded lazily and kept in a
    small LRU cache.

    Args:
        dataset: the annotated split (``VISDataset``).
        source: the clip source (``video_attrs(video_id)`` gives the sizes).
        max_videos: videos kept decoded in memory.

    Raises (from :meth:`__call__`):
        InputError: the dataset has no annotations, or the cached sizes disagree with it.
    """

    def __init__(self, dataset: Any, source: Any, max_videos: int = 64):
        if getattr(dataset, "annotations", None) is None:
            raise InputError(getattr(dataset, "path", None), "training needs ground-truth annotations "
                             "(the file has none)")
        self.dataset = dataset
        self.source = source
        self.max_videos = max_videos
        self._cache: OrderedDict[int, VideoTargets] = OrderedDict()

    def __call__(self, video_id: int) -> VideoTargets:
        """The :class:`VideoTargets` of one video."""
        from genvis.data.masks import annotation_masks

        if video_id in self._cache:
            self._cache.move_to_end(video_id)
            return self._cache[video_id]
        video = self.dataset.video(video_id)
        attrs: Mapping[str, Any] = self.source.video_attrs(video_id)
        original = tuple(attrs.get("original_size", (video.height, video.width)))
        if tuple(original) != (video.height, video.width):
            raise InputError(getattr(self.dataset, "path", None),
                             f"video {video_id} is {video.height}x{video.width} but the cache "
                             f"recorded original size {original[0]}x{original[1]}")
        resized = tuple(attrs.get("resized_size", original))
        padded = tuple(attrs.get("padded_size", resized))
        anns = [a for a in self.dataset.annotations_of(video_id) if not getattr(a, "iscrowd", 0)]
        labels = torch.tensor([self.dataset.category_index(a.category_id) for a in anns], dtype=torch.long)
        if anns:
            raw = torch.from_numpy(np.stack([annotation_masks(a, video) for a in anns]))
        else:
            raw = torch.zeros(0, video.length, video.height, video.width, dtype=torch.bool)
        vt = VideoTargets(labels, resize_pad_masks(raw, resized, padded))
        self._cache[video_id] = vt
        while len(self._cache) > self.max_videos:
            self._cache.popitem(last=False)
        return vt
