"""An in-memory :class:`genvis.clip_source.ClipSource`: tensors held in memory stand in for
the Zarr cache in the tests (with :mod:`tests.helpers.toy`)."""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import torch

from genvis.clip_source import DEFAULT_FIELDS, consecutive_clips
from genvis.errors import InputError


class InMemoryClipSource:
    """Clip source over tensors held in memory.

    Args:
        videos: video id -> {"frame_queries": float [T, L, Q_f, C], "mask_features": float
            [T, C, h, w], optional "class_logits" / "mask_embeddings", optional "attrs":
            dict with original_size / resized_size / padded_size (defaults: the mask grid x 4)}.
        name: used in error messages.
    """

    def __init__(self, videos: Mapping[int, Mapping[str, Any]], name: str = "in-memory clip source"):
        self.path = name
        self._videos = {int(k): dict(v) for k, v in videos.items()}
        for vid, v in self._videos.items():
            t = v["frame_queries"].shape[0]
            if v["mask_features"].shape[0] != t:
                raise InputError(name, f"video {vid}: frame_queries and mask_features differ in length")
            h, w = v["mask_features"].shape[-2:]
            attrs = {"video_id": vid, "length": t, "original_size": [4 * h, 4 * w],
                     "resized_size": [4 * h, 4 * w], "padded_size": [4 * h, 4 * w]}
            attrs.update(v.get("attrs", {}))
            v["attrs"] = attrs
        first = next(iter(self._videos.values()), None)
        self.provenance: dict[str, Any] = {"source": name}
        self.num_layers = None if first is None else first["frame_queries"].shape[1]
        self.num_queries = None if first is None else first["frame_queries"].shape[2]
        self.hidden_dim = None if first is None else first["frame_queries"].shape[3]

    @property
    def video_ids(self) -> list[int]:
        """Sorted video ids."""
        return sorted(self._videos)

    def _video(self, video_id: int) -> dict[str, Any]:
        try:
            return self._videos[int(video_id)]
        except KeyError:
            raise InputError(self.path, f"video {video_id} is not in the clip source") from None

    def length(self, video_id: int) -> int:
        """Number of frames of a video."""
        return int(self._video(video_id)["frame_queries"].shape[0])

    def video_attrs(self, video_id: int) -> dict[str, Any]:
        """original_size, resized_size, padded_size, length, video_id."""
        return dict(self._video(video_id)["attrs"])

    def read_clip(self, video_id: int, start: int, stop: int,
                  fields: Sequence[str] = ("frame_queries", "mask_features"),
                  layers: slice | None = None) -> dict[str, torch.Tensor]:
        """Frames [start, stop) of the requested fields (float32); ``layers`` slices the L axis
        of frame_queries. Raises InputError for an unknown video or a range out of bounds."""
        v = self._video(video_id)
        n = self.length(video_id)
        if not 0 <= start < stop <= n:
            raise InputError(self.path, f"clip [{start}, {stop}) is out of range for video "
                             f"{video_id} with {n} frames")
        out = {}
        for f in fields:
            if f not in v:
                raise InputError(self.path, f"video {video_id} has no field {f!r}")
            x = v[f][start:stop]
            if f == "frame_queries" and layers is not None:
                x = x[:, layers]
            out[f] = x.float().clone()
        return out

    def iter_clips(self, video_id: int, n_f: int, fields: Sequence[str] = DEFAULT_FIELDS, *,
                   layers: slice | None = None) -> Iterator[tuple[int, int, dict[str, torch.Tensor]]]:
        """``(start, stop, clip)`` for consecutive clips of ``n_f`` frames (the last may be
        shorter), each as from :meth:`read_clip`; ValueError for ``n_f < 1``."""
        return consecutive_clips(self, video_id, n_f, fields, layers)
