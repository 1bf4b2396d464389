"""CacheReader: any clip of any cached video as float32 tensors, with prefetching.

Reads the store written by :class:`genvis.cache.writer.CacheWriter` (layout in
:mod:`genvis.cache.layout`). Only the chunks of the requested frames are read (one frame per
chunk), so a clip never loads the whole video. Only complete videos (renamed into
``videos/`` with ``complete=True``) are visible. A :class:`genvis.clip_source.ClipSource`;
its coverage of an annotation file is :func:`genvis.clip_source.check_covers`.

Stores of format version 2 carry a CRC-32C checksum per chunk: a damaged chunk (flipped
bits, truncated file) is refused with an :class:`~genvis.errors.InputError` naming the store,
the video, the array and the frames, never returned as wrong numbers. Version 1 stores (no
checksums) still read; there a damaged chunk is only caught when it no longer decompresses.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from genvis.cache import layout
from genvis.cache.writer import check_provenance, read_store_attrs, store_layout_version
from genvis.errors import InputError


class CacheReader:
    """Read-only access to a stage-one feature cache.

    Args:
        path: the store directory (``.../name.zarr``).
        expected_provenance: if given, the stored provenance must match it (keys of
            ``expected_provenance`` only, informational keys aside).

    Attributes:
        provenance: the stored provenance dict.
        layout_version: the store's format version (1: no checksums, 2: CRC-32C per chunk).
        num_layers (L), num_queries (Q_f), hidden_dim (C), num_classes (K): from the arrays of
            the first video (None for an empty store).

    Raises:
        InputError: missing store; not a genvis cache; unknown format version; provenance
            differs (lists the keys).
    """

    def __init__(self, path: str | os.PathLike, expected_provenance: Mapping[str, Any] | None = None):
        import zarr

        self.path = Path(path)
        if not self.path.exists():
            raise InputError(self.path, "cache store does not exist; run `genvis extract` first")
        attrs = read_store_attrs(self.path)
        if "provenance" not in attrs:
            raise InputError(self.path, "not a genvis cache (root attrs have no provenance)")
        self.provenance: dict[str, Any] = dict(attrs["provenance"])
        self.layout_version = store_layout_version(self.path, attrs)
        if expected_provenance is not None:
            check_provenance(self.path, self.provenance, expected_provenance)
        self._root = zarr.open_group(store=str(self.path), mode="r", zarr_format=3)
        self._groups: dict[int, Any] = {}
        self._arrays: dict[tuple[int, str], Any] = {}
        self.refresh()

    # ------------------------------------------------------------------ discovery
    def refresh(self) -> None:
        """Re-list the complete videos (e.g. while an extraction is still running) and re-read
        L, Q_f, C, K from the first one's ``frame_queries`` [T, L, Q_f, C] and ``class_logits``
        [T, Q_f, K+1]."""
        videos_dir = self.path / layout.VIDEOS_GROUP
        ids = []
        if videos_dir.is_dir():
            for child in videos_dir.iterdir():
                if child.name.isdigit() and (child / "zarr.json").is_file():
                    ids.append(int(child.name))
        self._ids = sorted(ids)
        self.num_layers = self.num_queries = self.hidden_dim = self.num_classes = None
        if self._ids:
            first = self._ids[0]
            fq = self._array(first, "frame_queries")
            cl = self._array(first, "class_logits")
            _, self.num_layers, self.num_queries, self.hidden_dim = fq.shape
            self.num_classes = cl.shape[2] - 1

    @property
    def video_ids(self) -> list[int]:
        """Sorted ids (list of int) of the complete videos in the store."""
        return list(self._ids)

    def _group(self, video_id: int):
        video_id = int(video_id)
        if video_id not in self._groups:
            if video_id not in self._ids and not (
                    self.path / layout.VIDEOS_GROUP / layout.video_key(video_id) / "zarr.json").is_file():
                raise InputError(self.path, f"video {video_id} is not in the cache "
                                 f"({len(self._ids)} videos cached)")
            group = self._root[f"{layout.VIDEOS_GROUP}/{layout.video_key(video_id)}"]
            if not group.attrs.get(layout.COMPLETE_ATTR, False):
                raise InputError(self.path, f"video {video_id} is incomplete in the cache")
            self._groups[video_id] = group
        return self._groups[video_id]

    def _array(self, video_id: int, field: str):
        key = (int(video_id), field)
        if key not in self._arrays:
            if field not in layout.FIELDS:
                raise ValueError(f"unknown cache field {field!r}; expected one of {layout.FIELDS}")
            self._arrays[key] = self._group(video_id)[field]
        return self._arrays[key]

    def length(self, video_id: int) -> int:
        """T (int), the number of cached frames of ``video_id``. InputError for an unknown or
        incomplete video."""
        return int(self._group(video_id).attrs["length"])

    def video_attrs(self, video_id: int) -> dict[str, Any]:
        """The video group's attrs (JSON values): ``video_id`` and ``length`` (int),
        ``file_names`` (list[str]), ``original_size`` / ``resized_size`` / ``padded_size``
        ([H, W] in pixels; the mask-feature grid is padded / 4). InputError for an unknown video."""
        return dict(self._group(video_id).attrs)

    # ------------------------------------------------------------------ reading
    def read_clip(
        self,
        video_id: int,
        start: int,
        stop: int,
        fields: Sequence[str] = ("frame_queries", "mask_features"),
        layers: slice | None = None,
    ) -> dict[str, torch.Tensor]:
        """Frames ``[start, stop)`` of a video as float32 tensors.

        Args:
            video_id: id of a cached video.
            start, stop: frame range, ``0 <= start < stop <= length``.
            fields: any of ``frame_queries`` [n, L, Q_f, C], ``mask_features`` [n, C, h, w],
                ``class_logits`` [n, Q_f, K+1], ``mask_embeddings`` [n, Q_f, C].
            layers: slice over the L axis of ``frame_queries`` (e.g. ``slice(-1, None)`` for
                the last decoder layer at inference); None keeps all L.

        Returns:
            dict field -> float32 CPU tensor, frame axis first.

        Raises:
            InputError: unknown video id; clip out of range; a damaged chunk (checksum
                mismatch, undecodable chunk) or NaN in the cached features (names
                the store, the video, the array and the frames).
        """
        length = self.length(video_id)
        if not (0 <= start < stop <= length):
            raise InputError(self.path, f"clip [{start}, {stop}) is out of range for video "
                             f"{video_id} with {length} frames")
        out = {}
        for field in fields:
            arr = self._array(video_id, field)
            sel = (slice(start, stop), layers) if field == "frame_queries" and layers is not None else slice(start, stop)
            out[field] = self._checked(video_id, field, f"{start}..{stop - 1}", lambda: arr[sel])
        return out

    def _checked(self, video_id: int, field: str, frames: str, read: Callable[[], Any]) -> torch.Tensor:
        """``read()`` as a float32 tensor; InputError naming the store, video, array and
        ``frames`` for a damaged chunk (checksum mismatch, undecodable) or a NaN."""
        try:
            data = np.asarray(read())
        except Exception as exc:  # noqa: BLE001 - zarr/numcodecs raise ValueError, RuntimeError, OSError...
            raise InputError(self.path, f"damaged chunk in cached {field} of video {video_id} "
                             f"(frames {frames}): {exc}; re-extract this video "
                             f"(delete {layout.VIDEOS_GROUP}/{layout.video_key(video_id)} and "
                             f"run `genvis extract` again)") from exc
        if not (data.flags.writeable and data.dtype.isnative):
            data = data.astype(np.float32)
        out = torch.from_numpy(data).float()   # torch converts float16 ~20x faster than numpy
        # a NaN makes the sum NaN; only then (or for +inf and -inf together) look element-wise
        if out.numel() and torch.isnan(out.sum()) and torch.isnan(out).any():
            raise InputError(self.path, f"NaN found in cached {field} of video {video_id} "
                             f"(frames {frames}); re-extract this video")
        return out

    def read_frames(
        self,
        video_id: int,
        frames: Sequence[int],
        fields: Sequence[str] = ("frame_queries", "mask_features"),
        layers: slice | None = None,
    ) -> dict[str, torch.Tensor]:
        """The given frames of a video (in order, repeats allowed) as float32 tensors; only
        the chunks of those frames are read (a sparse training sample never loads the frames
        between its picks).

        Args:
            frames: frame indices, each ``0 <= f < length``.
            fields, layers: as for :meth:`read_clip`.

        Returns:
            dict field -> float32 CPU tensor with ``len(frames)`` entries on the frame axis.

        Raises:
            InputError: unknown video id; a frame out of range; a damaged chunk or NaN in
                the cached features (as :meth:`read_clip`).
        """
        frames = [int(f) for f in frames]
        length = self.length(video_id)
        if not frames or min(frames) < 0 or max(frames) >= length:
            raise InputError(self.path, f"frames {frames} are out of range for video {video_id} "
                             f"with {length} frames")
        lo, hi = min(frames), max(frames) + 1
        if frames == list(range(lo, hi)):
            return self.read_clip(video_id, lo, hi, fields, layers)
        unique = sorted(set(frames))
        where = {f: i for i, f in enumerate(unique)}
        index = torch.tensor([where[f] for f in frames])
        picks = np.asarray(unique)
        out = {}
        for field in fields:
            arr = self._array(video_id, field)
            sel = (picks, layers) if field == "frame_queries" and layers is not None else (picks,)
            out[field] = self._checked(video_id, field, str(unique),
                                       lambda: arr.get_orthogonal_selection(sel))[index]
        return out

    def iter_clips(
        self,
        video_id: int,
        n_f: int,
        fields: Sequence[str] = ("frame_queries", "mask_features"),
        prefetch: int = 2,
        layers: slice | None = None,
    ) -> Iterator[tuple[int, int, dict[str, torch.Tensor]]]:
        """Non-overlapping clips of ``n_f`` frames (the last may be shorter), read ahead.

        Yields ``(start, stop, clip)``: ints with ``stop - start <= n_f``, and ``clip`` as from
        :meth:`read_clip` (field -> float32 CPU tensor ``[stop - start, ...]``, e.g.
        ``frame_queries`` [t, L, Q_f, C] or [t, 1, Q_f, C] with ``layers=slice(-1, None)``,
        ``mask_features`` [t, C, h, w]). Up to
        ``prefetch`` further clips are read by a background thread while the caller works
        on the current one (0 disables read-ahead).

        Raises:
            ValueError: ``n_f < 1`` or ``prefetch < 0``. Errors of :meth:`read_clip`.
        """
        if n_f < 1:
            raise ValueError(f"n_f must be >= 1, got {n_f}")
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        length = self.length(video_id)
        ranges = [(s, min(s + n_f, length)) for s in range(0, length, n_f)]
        if prefetch == 0:
            for s, e in ranges:
                yield s, e, self.read_clip(video_id, s, e, fields, layers)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="genvis-cache") as pool:
            pending: deque[tuple[int, int, Future]] = deque()
            it = iter(ranges)

            def top_up(target: int) -> None:
                while len(pending) < target:
                    nxt = next(it, None)
                    if nxt is None:
                        return
                    s, e = nxt
                    pending.append((s, e, pool.submit(self.read_clip, video_id, s, e, fields, layers)))

            try:
                top_up(prefetch + 1)
                while pending:
                    s, e, fut = pending.popleft()
                    top_up(prefetch)  # keep `prefetch` clips in flight beyond this one
                    yield s, e, fut.result()
            finally:
                for _, _, fut in pending:
                    fut.cancel()

    def __repr__(self) -> str:
        return (f"CacheReader({str(self.path)!r}, videos={len(self._ids)}, L={self.num_layers}, "
                f"Q_f={self.num_queries}, C={self.hidden_dim}, K={self.num_classes})")
