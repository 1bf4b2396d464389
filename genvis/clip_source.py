"""The clip source: how stage two reads frame queries and mask features, and its checks.

Stage two (training, :mod:`genvis.train.loop`; inference, :mod:`genvis.infer.inference`)
never opens a cache itself: it reads clips of cached-feature tensors from a
:class:`ClipSource`. Three implementations satisfy it:

* :class:`genvis.cache.reader.CacheReader` -- the Zarr cache written by ``genvis extract``
  (reads ahead in :meth:`~ClipSource.iter_clips`);
* :class:`genvis.infer.detector_source.DetectorClipSource` -- the frozen frame detector run
  on the frames at read time (the "detector in the loop"; ``genvis demo``, benchmarks);
* ``tests/helpers/clip_source.InMemoryClipSource`` -- tensors held in memory (tests).

The functions below are the checks every consumer runs on any source: that it covers an
annotation file (:func:`check_covers`), that a clip is finite (:func:`check_finite`), and
the feature sizes the model must fit (:func:`probe_sizes`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from genvis.errors import InputError

if TYPE_CHECKING:
    from genvis.data.ytvis import VISDataset

#: what stage two reads by default: per frame L x Q_f frame queries and the raw mask features
DEFAULT_FIELDS = ("frame_queries", "mask_features")


@runtime_checkable
class ClipSource(Protocol):
    """Any clip of any video as float32 tensors (the cache contract, docs/ARCHITECTURE.md).

    Fields (per frame; ``n`` frames per clip): ``frame_queries`` float32 [n, L, Q_f, C],
    ``mask_features`` float32 [n, C_m, h, w] (raw, before the 1x1 projection; h, w = the
    padded input size / 4), ``class_logits`` float32 [n, Q_f, K+1], ``mask_embeddings``
    float32 [n, Q_f, C].
    """

    @property
    def path(self) -> str | os.PathLike[str]:
        """Where the features come from (named in error messages)."""
        ...

    @property
    def video_ids(self) -> list[int]:
        """Sorted ids of the videos the source holds."""
        ...

    def length(self, video_id: int) -> int:
        """T, the number of frames of a video. Raises InputError for an unknown video."""
        ...

    def video_attrs(self, video_id: int) -> dict[str, Any]:
        """``video_id``, ``length``, ``original_size`` / ``resized_size`` / ``padded_size``
        ([H, W] pixel pairs), optionally ``file_names``."""
        ...

    def read_clip(self, video_id: int, start: int, stop: int, fields: Sequence[str] = DEFAULT_FIELDS,
                  layers: slice | None = None) -> dict[str, torch.Tensor]:
        """Frames ``[start, stop)`` of ``fields`` as float32 CPU tensors, frame axis first;
        ``layers`` slices the L axis of ``frame_queries``. Raises InputError for an unknown
        video or a range out of ``0 <= start < stop <= length``."""
        ...

    def iter_clips(self, video_id: int, n_f: int, fields: Sequence[str] = DEFAULT_FIELDS, *,
                   layers: slice | None = None) -> Iterator[tuple[int, int, dict[str, torch.Tensor]]]:
        """``(start, stop, clip)`` for the non-overlapping clips of ``n_f`` frames in order (the
        last may be shorter); ``clip`` as from :meth:`read_clip`."""
        ...


def consecutive_clips(source: ClipSource, video_id: int, n_f: int, fields: Sequence[str] = DEFAULT_FIELDS,
                      layers: slice | None = None) -> Iterator[tuple[int, int, dict[str, torch.Tensor]]]:
    """:meth:`ClipSource.iter_clips` by plain ``read_clip`` calls, no read-ahead (for sources
    without a faster way).

    Raises:
        ValueError: ``n_f < 1``. Errors of ``read_clip``.
    """
    if n_f < 1:
        raise ValueError(f"n_f must be >= 1, got {n_f}")
    n = source.length(video_id)
    for s in range(0, n, n_f):
        e = min(s + n_f, n)
        yield s, e, source.read_clip(video_id, s, e, fields=fields, layers=layers)


def source_name(source: ClipSource) -> str:
    """A name for a clip source in error messages (its path, else its class name)."""
    return str(source.path or type(source).__name__)


def check_covers(source: ClipSource, dataset: VISDataset) -> None:
    """Check that a clip source holds every video of an annotation file, at its length.

    Args:
        source: the clip source (cache, detector, in memory).
        dataset: the split (``VISDataset``: ``.videos`` with ``.id`` and ``.length``, ``.path``).

    Raises:
        InputError: naming the source and the dataset's missing video ids (the first 20), or
            the first video whose frame count differs from the annotation file's.
    """
    have = set(int(v) for v in source.video_ids)
    missing = [v.id for v in dataset.videos if v.id not in have]
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise InputError(source_name(source), f"{len(missing)} video(s) of "
                         f"{getattr(dataset, 'path', None) or 'the annotation file'} are missing: {shown}")
    for v in dataset.videos:
        n = source.length(v.id)
        if n != v.length:
            raise InputError(source_name(source), f"video {v.id} has {n} frames but the annotation "
                             f"file lists {v.length}")


def check_finite(source: ClipSource, video_id: int, name: str, tensor: torch.Tensor, start: int, stop: int) -> None:
    """Raise InputError naming the source, video, field and frames if ``tensor`` (any shape,
    float) holds NaN or infinity. CPU tensors are checked with numpy (about 20x faster than
    ``torch.isfinite(...).all()`` on this project's CPUs); others on their device, element-wise
    only when their sum is not finite (the sum of finite values is finite unless it overflows)."""
    if tensor.device.type == "cpu" and tensor.dtype in (torch.float32, torch.float64, torch.float16):
        finite = bool(np.isfinite(tensor.detach().numpy()).all())
    else:
        finite = bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())
    if not finite:
        raise InputError(source_name(source), f"non-finite values (NaN/Inf) in {name} of video "
                         f"{video_id}, frames {start}..{stop - 1}")


def probe_sizes(source: ClipSource, video_id: int) -> dict[str, int]:
    """Feature sizes of a clip source, read from the first frame of one video.

    Returns:
        ``{"layers": L, "num_frame_queries": Q_f, "hidden_dim": C, "mask_feature_dim": C_m}``.
    """
    clip = source.read_clip(video_id, 0, 1, fields=DEFAULT_FIELDS)
    _, layers, q_f, c = clip["frame_queries"].shape
    return {"layers": layers, "num_frame_queries": q_f, "hidden_dim": c,
            "mask_feature_dim": clip["mask_features"].shape[1]}
