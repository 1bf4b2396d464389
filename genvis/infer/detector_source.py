"""A clip source that runs the frozen frame detector on the frames (no cache in between).

:class:`DetectorClipSource` is a :class:`genvis.clip_source.ClipSource` (like the cache
reader it also has ``provenance``, ``num_layers``, ``num_queries``, ``hidden_dim``,
``num_classes``), so stage two -- the training loop
(:func:`genvis.train.loop.train`, :func:`genvis.train.loop.sample_losses`) and inference
(:func:`genvis.infer.inference.run_inference` / ``infer_video``) -- can read its clips
straight from frames. Each ``read_clip`` reads the frames, preprocesses them exactly as
``genvis extract`` does (:func:`genvis.detector.preprocess.preprocess_frames`, same
min/max size) and runs :class:`~genvis.detector.model.FrameDetector` (eval, no grad).

Uses: the "detector in the loop" side of the benchmarks (what the cache saves), and
end-to-end inference from a frame folder / video file without writing a cache.

Frames come from either

* a dataset split (``VISDataset`` + image root), like ``genvis extract``:
  :meth:`DetectorClipSource.from_dataset`; or
* one video file or frame folder (:func:`genvis.data.frames.open_frames`), optionally
  repeated / truncated to a given length: :meth:`DetectorClipSource.from_video`.
  Video files are decoded sequentially; a read before the decoder's position reopens it.

Inference reads every clip twice (pass 1 frame queries, pass 2 mask features). With
``spill_dir`` set, the detector outputs are appended in frame order as float16 (the
cache's precision) to one small binary file per video and field, and every clip is served
from there: the detector then runs once per frame and resident memory stays flat in the
video length (plain file reads, no memory map). A read past the spilled frames detects
``batch_size`` frames at a time (any clip length), so online (N_f = 1) inference still runs
the detector on batches; a read that skips ahead detects the skipped frames too. Without ``spill_dir``
every read runs the detector (what training with the detector in the loop does).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from genvis.cache import layout
from genvis.clip_source import DEFAULT_FIELDS, consecutive_clips
from genvis.detector.model import FrameDetector
from genvis.detector.preprocess import ImageSizes, padded_size, preprocess_frames, resized_size
from genvis.errors import InputError
from genvis.utils.device import resolve_device


class _FolderFrames:
    """Frames of one dataset video: ``file_names`` relative to ``image_root``."""

    def __init__(self, image_root: Path, file_names: Sequence[str], height: int, width: int):
        self.image_root = Path(image_root)
        self.file_names = list(file_names)
        self.length = len(self.file_names)
        self.size = (int(height), int(width))

    def get(self, start: int, stop: int) -> np.ndarray:
        from genvis.data.frames import read_frames

        frames = read_frames(self.image_root, self.file_names, range(start, stop))
        if tuple(frames.shape[1:3]) != self.size:
            raise InputError(self.image_root / self.file_names[start],
                             f"frame size {frames.shape[1]}x{frames.shape[2]} differs from the "
                             f"{self.size[0]}x{self.size[1]} the annotations give")
        return frames


class _SequentialFrames:
    """Frames of a video file or frame folder, decoded in order; the source is cycled
    (repeated from its start) when ``length`` exceeds its frame count."""

    def __init__(self, path: Path, length: int | None):
        from genvis.data.frames import open_frames

        self.path = Path(path)
        self._opened = open_frames(self.path)
        first = next(iter(self._opened), None)
        if first is None:
            raise InputError(self.path, "no frames could be decoded")
        self.size = (int(first.shape[0]), int(first.shape[1]))
        if length is None:
            try:
                length = len(self._opened)
            except TypeError:
                length = sum(1 for _ in self._opened)
        if int(length) < 1:
            raise InputError(self.path, f"length must be >= 1, got {length}")
        self.length = int(length)
        self._it = None
        self._pos = 0  # index (in the repeated sequence) of the next frame the iterator yields

    def _restart(self) -> None:
        self._it = iter(self._opened)
        self._pos = 0

    def _next(self) -> np.ndarray:
        if self._it is None:
            self._restart()
        frame = next(self._it, None)
        if frame is None:  # end of the file: cycle
            self._it = iter(self._opened)
            frame = next(self._it, None)
            if frame is None:
                raise InputError(self.path, "no frames could be decoded")
        self._pos += 1
        return frame

    def get(self, start: int, stop: int) -> np.ndarray:
        if self._it is None or start < self._pos:
            self._restart()
        while self._pos < start:
            self._next()
        frames = [self._next() for _ in range(start, stop)]
        for f in frames:
            if tuple(f.shape[:2]) != self.size:
                raise InputError(self.path, f"frame size {f.shape[0]}x{f.shape[1]} differs from the "
                                 f"first frame's {self.size[0]}x{self.size[1]}")
        return np.stack(frames)


class DetectorClipSource:
    """Clips of detector outputs computed from frames, with the CacheReader clip interface.

    Args:
        detector: the frozen frame detector (put in eval mode here).
        videos: video id -> frame provider (use :meth:`from_dataset` / :meth:`from_video`).
        min_size, max_size: input resolution in pixels (default: the detector config's),
            as ``genvis extract --min-size/--max-size``.
        device: where the detector runs (``cpu`` / ``cuda``); clips are returned on the CPU.
        batch_size: frames per detector forward within one ``read_clip`` (and the read-ahead
            when spilling).
        spill_dir: directory for the float16 spill files (see module doc); ``True`` makes a
            temporary one (removed by :meth:`close`); None disables spilling.
        name: used in error messages (``path`` attribute, as the cache's path).

    Raises:
        InputError: CUDA requested but not available.
    """

    def __init__(self, detector: FrameDetector, videos: Mapping[int, Any], min_size: int | None = None,
                 max_size: int | None = None, device: str | torch.device = "cpu", batch_size: int = 8,
                 spill_dir: str | os.PathLike | bool | None = None, name: str = "detector clip source"):
        device = resolve_device(device)
        if batch_size < 1:
            raise InputError("batch_size", f"must be >= 1, got {batch_size}")
        self.detector = detector.to(device).eval()
        self.device = torch.device(device)
        cfg = detector.cfg
        self.min_size = int(min_size or cfg.min_size)
        self.max_size = int(max_size or cfg.max_size)
        self.batch_size = int(batch_size)
        self.path = name
        self._videos = {int(k): v for k, v in videos.items()}
        self.num_layers = cfg.keep_layers
        self.num_queries = cfg.num_queries
        self.hidden_dim = cfg.hidden_dim
        self.num_classes = cfg.num_classes
        self._provenance: dict[str, Any] | None = None
        self._own_spill = spill_dir is True
        if spill_dir is True:
            spill_dir = tempfile.mkdtemp(prefix="genvis-spill-")
        self.spill_dir = Path(spill_dir) if spill_dir else None
        if self.spill_dir is not None:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
        self._spilled: dict[int, int] = {}          # video id -> frames spilled (a prefix)
        self.frames_detected = 0                    # frames run through the detector (statistics)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_dataset(cls, detector: FrameDetector, dataset: Any, image_root: str | os.PathLike,
                     **kwargs: Any) -> "DetectorClipSource":
        """Frames of every video of a split (``file_names`` relative to ``image_root``)."""
        root = Path(image_root)
        if not root.is_dir():
            raise InputError(root, "image root is not a directory")
        videos = {}
        for v in dataset.videos:
            if v.length != len(v.file_names):
                raise InputError(getattr(dataset, "path", None),
                                 f"video {v.id}: length {v.length} != {len(v.file_names)} file names")
            videos[v.id] = _FolderFrames(root, v.file_names, v.height, v.width)
        kwargs.setdefault("name", f"detector on {root}")
        return cls(detector, videos, **kwargs)

    @classmethod
    def from_video(cls, detector: FrameDetector, path: str | os.PathLike, length: int | None = None,
                   video_id: int = 1, **kwargs: Any) -> "DetectorClipSource":
        """One video file (or frame folder) as video ``video_id``; ``length`` repeats the
        frames from the start or truncates them (default: the file's frame count)."""
        kwargs.setdefault("name", f"detector on {path}")
        return cls(detector, {video_id: _SequentialFrames(Path(path), length)}, **kwargs)

    # ------------------------------------------------------------------ interface
    @property
    def video_ids(self) -> list[int]:
        """Sorted video ids."""
        return sorted(self._videos)

    def _video(self, video_id: int):
        try:
            return self._videos[int(video_id)]
        except KeyError:
            raise InputError(self.path, f"video {video_id} is not in the clip source") from None

    def length(self, video_id: int) -> int:
        """Number of frames of a video."""
        return self._video(video_id).length

    def sizes(self, video_id: int) -> ImageSizes:
        """Original, resized and padded size of a video's frames (as ``genvis extract``)."""
        h, w = self._video(video_id).size
        rh, rw = resized_size(h, w, self.min_size, self.max_size)
        return ImageSizes((h, w), (rh, rw), padded_size(rh, rw, self.detector.cfg.size_divisibility))

    def video_attrs(self, video_id: int) -> dict[str, Any]:
        """video_id, length, original/resized/padded size, min/max size (as the cache's attrs)."""
        attrs = {"video_id": int(video_id), "length": self.length(video_id),
                 **self.sizes(video_id).to_dict(), "min_size": self.min_size, "max_size": self.max_size}
        names = getattr(self._video(video_id), "file_names", None)
        if names is not None:
            attrs["file_names"] = list(names)
        return attrs

    @property
    def provenance(self) -> dict[str, Any]:
        """The provenance a cache extracted with this detector and resolution would have."""
        if self._provenance is None:
            from genvis.cache.extract import cache_provenance

            self._provenance = cache_provenance(self.detector, self.min_size, self.max_size)
        return self._provenance

    def detect(self, video_id: int, start: int, stop: int) -> dict[str, torch.Tensor]:
        """Run the detector on frames ``[start, stop)``: the four cached fields, float32 CPU."""
        frames = self._video(video_id).get(start, stop)
        outs: dict[str, list[torch.Tensor]] = {f: [] for f in layout.FIELDS}
        for s in range(0, len(frames), self.batch_size):
            pixel_values, _ = preprocess_frames(frames[s:s + self.batch_size], self.detector.cfg,
                                                self.min_size, self.max_size)
            with torch.no_grad():
                arrays = self.detector(pixel_values.to(self.device)).cache_arrays()
            for f, v in arrays.items():
                outs[f].append(v.float().cpu())
        self.frames_detected += stop - start
        return {f: torch.cat(v) for f, v in outs.items()}

    def read_clip(self, video_id: int, start: int, stop: int,
                  fields: Sequence[str] = ("frame_queries", "mask_features"),
                  layers: slice | None = None) -> dict[str, torch.Tensor]:
        """Frames ``[start, stop)`` as float32 CPU tensors, like ``CacheReader.read_clip``.

        Runs the detector on the frames, unless spilling is on and they were spilled
        already. Raises InputError for an unknown video or a range out of bounds."""
        n = self.length(video_id)
        if not 0 <= start < stop <= n:
            raise InputError(self.path, f"clip [{start}, {stop}) is out of range for video "
                             f"{video_id} with {n} frames")
        for f in fields:
            if f not in layout.FIELDS:
                raise ValueError(f"unknown field {f!r}; expected one of {layout.FIELDS}")
        if self.spill_dir is not None:
            # extend the spilled prefix past `stop`, a whole batch at a time (as `genvis
            # extract` batches), then serve the clip from the spill files
            while (done := self._spilled.get(int(video_id), 0)) < stop:
                self._write_spill(video_id, self.detect(video_id, done, min(max(stop, done + self.batch_size), n)))
            data = {f: self._read_spill(video_id, f, start, stop) for f in fields}
        else:
            data = self.detect(video_id, start, stop)
            data = {f: data[f] for f in fields}
        if "frame_queries" in data and layers is not None:
            data["frame_queries"] = data["frame_queries"][:, layers]
        return data

    def iter_clips(self, video_id: int, n_f: int, fields: Sequence[str] = DEFAULT_FIELDS, *,
                   layers: slice | None = None) -> Iterator[tuple[int, int, dict[str, torch.Tensor]]]:
        """``(start, stop, clip)`` for consecutive clips of ``n_f`` frames (the last may be
        shorter), each as from :meth:`read_clip`; ValueError for ``n_f < 1``."""
        return consecutive_clips(self, video_id, n_f, fields, layers)

    # ------------------------------------------------------------------ spilling
    def _spill_path(self, video_id: int, field: str) -> Path:
        return self.spill_dir / f"{int(video_id)}.{field}.f16"

    def _write_spill(self, video_id: int, data: Mapping[str, torch.Tensor]) -> None:
        for f in layout.FIELDS:
            with open(self._spill_path(video_id, f), "ab") as fh:
                fh.write(data[f].to(torch.float16).numpy().tobytes())
        self._spilled[int(video_id)] = self._spilled.get(int(video_id), 0) + data["frame_queries"].shape[0]

    def _frame_shape(self, video_id: int, field: str) -> tuple[int, ...]:
        cfg = self.detector.cfg
        ph, pw = self.sizes(video_id).padded
        shapes = layout.FrameShapes(cfg.keep_layers, cfg.num_queries, cfg.hidden_dim, cfg.num_classes,
                                    (ph // 4, pw // 4))
        return shapes.shape(field)

    def _read_spill(self, video_id: int, field: str, start: int, stop: int) -> torch.Tensor:
        shape = self._frame_shape(video_id, field)
        per = int(np.prod(shape))
        with open(self._spill_path(video_id, field), "rb") as fh:
            fh.seek(start * per * 2)
            arr = np.fromfile(fh, dtype=np.float16, count=(stop - start) * per)
        return torch.from_numpy(arr.astype(np.float32).reshape(stop - start, *shape))

    def release(self, video_id: int) -> None:
        """Delete the spill files of one video (e.g. once its inference is done)."""
        if self.spill_dir is None:
            return
        for f in layout.FIELDS:
            self._spill_path(video_id, f).unlink(missing_ok=True)
        self._spilled.pop(int(video_id), None)

    def close(self) -> None:
        """Delete spill files (and the temporary spill directory if this source made it)."""
        if self.spill_dir is None:
            return
        for vid in list(self._spilled):
            self.release(vid)
        if self._own_spill:
            shutil.rmtree(self.spill_dir, ignore_errors=True)

    def __enter__(self) -> "DetectorClipSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"DetectorClipSource({self.path!r}, videos={len(self._videos)}, "
                f"size={self.min_size}/{self.max_size}, spill={self.spill_dir is not None})")
