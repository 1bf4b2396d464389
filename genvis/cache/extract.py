"""Stage one extraction: run the frozen detector over every frame and fill the Zarr cache.

For each video of a dataset split (or of one shard of it) the frames are read in batches,
preprocessed (:mod:`genvis.detector.preprocess`), passed through the frozen
:class:`~genvis.detector.model.FrameDetector` (eval mode, no grad) and written with
:class:`~genvis.cache.writer.CacheWriter`, one video atomically at a time.

Resumable: videos already complete in the store are skipped; an interrupted video is
redone from its first frame. Batches never cross videos and always start at frame 0 of
the video, so a resumed run computes exactly the same batches, and thus the same bytes, as
an uninterrupted one. Shards (``i/n``) take every n-th video (sorted by id), so n processes
can fill one store in parallel; two runs of the same command on one store share the work
too: each video is claimed with an OS lock (:meth:`CacheWriter.claim`) before it is
written, a video claimed by another process is put off to the end of the run and then
waited for, and both runs end with a complete store.

The steps, each its own function: :func:`check_settings` (batch size, resolution),
:func:`plan_video` (sizes, array shapes and attrs of one video), :class:`FrameBatches`
(frames read one batch ahead in a thread), :func:`extract_video` (claim one video, run the
detector batch by batch and commit it atomically; the unit a parallel scheduler would run)
and :func:`extract` (the whole split or shard; removes the store again when it created it
and nothing was written).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from genvis.cache import layout
from genvis.cache.writer import CacheWriter
from genvis.detector.config import DetectorConfig
from genvis.detector.model import FrameDetector
from genvis.detector.preprocess import ImageSizes, padded_size, preprocess_frames, resized_size
from genvis.errors import InputError


@dataclass
class ExtractStats:
    """What an extraction run did, with wall-clock seconds per phase.

    Attributes:
        videos_written, videos_skipped: videos extracted now / found complete already
            (or completed meanwhile by another process).
        written_ids: ids of the videos extracted now, in order.
        frames: frames run through the detector.
        read_s: waiting for frames (decode runs one batch ahead in a thread).
        forward_s: preprocessing + detector forward.
        write_s: fp16 conversion, compression and disk writes (incl. the atomic commit).
        total_s: the whole run.
    """

    videos_written: int = 0
    videos_skipped: int = 0
    frames: int = 0
    read_s: float = 0.0
    forward_s: float = 0.0
    write_s: float = 0.0
    total_s: float = 0.0
    written_ids: list[int] = field(default_factory=list)

    def summary(self) -> str:
        """One line: videos, frames, frames/s and the time split."""
        fps = self.frames / self.total_s if self.total_s > 0 else float("nan")
        return (f"extracted {self.videos_written} videos ({self.videos_skipped} already cached), "
                f"{self.frames} frames, {fps:.2f} frames/s; read {self.read_s:.1f}s, "
                f"detector {self.forward_s:.1f}s, cache write {self.write_s:.1f}s")


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0 <= i < n) into ``(i, n)``.

    Raises:
        InputError: malformed text or i out of range (source ``--shard``).
    """
    try:
        i, n = (int(p) for p in str(text).split("/"))
    except ValueError:
        raise InputError("--shard", f"expected i/n like 0/4, got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise InputError("--shard", f"need 0 <= i < n, got {text!r}")
    return i, n


def shard_video_ids(video_ids: Sequence[int], index: int, count: int) -> list[int]:
    """The video ids (list[int]) of shard ``index`` of ``count``: every count-th id in sorted
    order, so ``count`` shards partition the ids."""
    return sorted(int(v) for v in video_ids)[index::count]


def cache_provenance(detector: FrameDetector, min_size: int, max_size: int) -> dict:
    """Provenance of a cache written by ``detector`` at the given resolution.

    Args:
        detector: the frame detector (its fingerprint hashes weights and config).
        min_size, max_size: input resolution in pixels (shortest side, longest-side cap).

    Returns:
        dict of JSON scalars (:func:`genvis.cache.layout.make_provenance` plus ``backbone``,
        ``num_queries`` Q_f, ``hidden_dim`` C, ``num_classes`` K).
    """
    cfg = detector.cfg
    return layout.make_provenance(
        detector.fingerprint(), cfg.name, min_size, max_size, cfg.keep_layers,
        backbone=cfg.backbone, num_queries=cfg.num_queries, hidden_dim=cfg.hidden_dim,
        num_classes=cfg.num_classes,
    )


def check_settings(cfg: DetectorConfig, batch_size: int, min_size: int | None,
                   max_size: int | None) -> tuple[int, int]:
    """Validate the extraction settings; returns ``(min_size, max_size)`` in pixels.

    ``None`` sizes default to the detector config's.

    Raises:
        InputError: ``batch_size < 1`` (source ``--batch-size``); ``max_size < min_size``
            (source ``--max-size``).
    """
    if batch_size < 1:
        raise InputError("--batch-size", f"must be >= 1, got {batch_size}")
    min_size = int(min_size or cfg.min_size)
    max_size = int(max_size or cfg.max_size)
    if max_size < min_size:
        raise InputError("--max-size", f"{max_size} is smaller than --min-size {min_size}")
    return min_size, max_size


@dataclass(frozen=True)
class VideoPlan:
    """What one video's extraction writes, known before any frame is read.

    Attributes:
        video: the ``VideoRecord`` (``id``, ``file_names``, ``length``, ``height``, ``width``).
        sizes: original / resized / padded frame size in pixels.
        shapes: per-frame shapes of the cached arrays (mask features at ``padded / 4``).
        attrs: JSON attrs of the video group (file names, sizes, resolution).
    """

    video: Any
    sizes: ImageSizes
    shapes: layout.FrameShapes
    attrs: dict[str, Any]


def plan_video(video, cfg: DetectorConfig, min_size: int, max_size: int, source: Any = None) -> VideoPlan:
    """Sizes, array shapes and attrs of ``video`` extracted at ``min_size``/``max_size``.

    Args:
        video: a ``VideoRecord``.
        cfg: the detector config (layers kept L, Q_f, C, K, size divisibility).
        min_size, max_size: input resolution in pixels.
        source: the annotations file, named in errors.

    Raises:
        InputError: the video has no frames, or its ``length`` differs from its number of
            ``file_names`` (names ``source`` and the video).
    """
    if video.length < 1 or not video.file_names:
        raise InputError(source, f"video {video.id} has no frames")
    if video.length != len(video.file_names):
        raise InputError(source, f"video {video.id}: length {video.length} != {len(video.file_names)} file names")
    rh, rw = resized_size(video.height, video.width, min_size, max_size)
    sizes = ImageSizes((video.height, video.width), (rh, rw), padded_size(rh, rw, cfg.size_divisibility))
    shapes = layout.FrameShapes(cfg.keep_layers, cfg.num_queries, cfg.hidden_dim, cfg.num_classes,
                                (sizes.padded[0] // 4, sizes.padded[1] // 4))
    attrs = {"file_names": list(video.file_names), **sizes.to_dict(), "min_size": min_size, "max_size": max_size}
    return VideoPlan(video, sizes, shapes, attrs)


class FrameBatches:
    """A video's frames in consecutive batches, the next batch decoded in a thread meanwhile.

    Iterating yields ``(start, stop, frames)`` with ``frames`` uint8 ``[stop - start, H, W, 3]``
    for ``start = 0, batch_size, 2 * batch_size, ...``; ``wait_s`` accumulates the seconds
    spent waiting for frames.

    Args:
        video: a ``VideoRecord``; image_root: the folder its ``file_names`` are relative to.
        batch_size: frames per batch. source: the annotations file, named in errors.

    Raises:
        InputError (while iterating): a frame missing, unreadable, truncated, or of another
            size than the video's ``height`` x ``width`` (names the file).
    """

    def __init__(self, video, image_root: Path, batch_size: int, source: Any = None):
        self.video = video
        self.image_root = Path(image_root)
        self.batch_size = batch_size
        self.source = source
        self.wait_s = 0.0

    def _load(self, start: int, stop: int):
        from genvis.data.frames import read_frames

        video = self.video
        frames = read_frames(self.image_root, video.file_names, range(start, stop))
        if frames.shape[1:3] != (video.height, video.width):
            raise InputError(self.image_root / video.file_names[start],
                             f"frame size {frames.shape[1]}x{frames.shape[2]} differs from the "
                             f"{video.height}x{video.width} given for video {video.id} in "
                             f"{self.source or 'the annotations'}")
        return frames

    def __iter__(self) -> Iterator[tuple[int, int, Any]]:
        length = self.video.length
        starts = list(range(0, length, self.batch_size))
        bounds = [(s, min(s + self.batch_size, length)) for s in starts]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="genvis-frames") as pool:
            pending: Future | None = pool.submit(self._load, *bounds[0]) if bounds else None
            try:
                for k, (start, stop) in enumerate(bounds):
                    t0 = time.perf_counter()
                    frames = pending.result()
                    pending = pool.submit(self._load, *bounds[k + 1]) if k + 1 < len(bounds) else None
                    self.wait_s += time.perf_counter() - t0
                    yield start, stop, frames
            finally:
                if pending is not None:
                    pending.cancel()


def extract_video(
    writer: CacheWriter,
    video,
    image_root: str | os.PathLike,
    detector: FrameDetector,
    min_size: int,
    max_size: int,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    wait: bool = True,
    source: Any = None,
    stats: ExtractStats | None = None,
    on_frames: Callable[[int], None] | None = None,
) -> str:
    """Extract one video into the store of ``writer``, atomically; safe to run concurrently.

    The video is claimed first (:meth:`CacheWriter.claim`); under the claim a video already
    complete is skipped, otherwise its frames are read in batches of ``batch_size`` from
    frame 0 (:class:`FrameBatches`), preprocessed, run through the frozen detector (no
    gradients) and written; the video appears in ``videos/`` only once every frame is
    written. The claim is released on return.

    Args:
        writer: the open store. video: a ``VideoRecord``.
        image_root: folder the ``file_names`` are relative to.
        detector: the frozen detector in eval mode, on ``device``.
        min_size, max_size: input resolution in pixels (as checked by :func:`check_settings`).
        batch_size: frames per detector forward. device: where the detector runs.
        wait: when another process holds the video's claim, wait for it (True) or return
            ``"busy"`` at once (False).
        source: the annotations file, named in errors.
        stats: if given, its frame count and read / forward / write seconds are increased.
        on_frames: called with the number of frames of each batch written (progress bars).

    Returns:
        ``"written"``, ``"skipped"`` (already complete, maybe just written by another
        process) or ``"busy"`` (only with ``wait=False``).

    Raises:
        InputError: as :func:`plan_video` and :class:`FrameBatches`; NaN in the detector
            output; the store cannot be written. The video then leaves nothing behind.
    """
    plan = plan_video(video, detector.cfg, min_size, max_size, source)
    if not writer.claim(video.id, wait=wait):
        return "busy"
    try:
        if writer.has_video(video.id):
            return "skipped"
        stats = stats if stats is not None else ExtractStats()
        batches = FrameBatches(video, Path(image_root), batch_size, source)
        with writer.video(video.id, video.length, plan.shapes, plan.attrs) as vw:
            for start, stop, frames in batches:
                t1 = time.perf_counter()
                pixel_values, got = preprocess_frames(frames, detector.cfg, min_size, max_size)
                if got != plan.sizes:  # guarded by the size check of FrameBatches; keep it explicit
                    raise InputError(Path(image_root) / video.file_names[start], f"unexpected sizes {got}")
                with torch.no_grad():
                    outputs = detector(pixel_values.to(device)).cache_arrays()
                t2 = time.perf_counter()
                vw.write(start, {k: v.float().cpu() for k, v in outputs.items()})
                stats.forward_s += t2 - t1
                stats.write_s += time.perf_counter() - t2
                stats.frames += stop - start
                if on_frames is not None:
                    on_frames(stop - start)
            t_commit = time.perf_counter()
        stats.write_s += time.perf_counter() - t_commit
        stats.read_s += batches.wait_s
        return "written"
    finally:
        writer.release(video.id)


def extract(
    dataset,
    image_root: str | os.PathLike,
    detector: FrameDetector,
    out: str | os.PathLike,
    batch_size: int = 8,
    shard: tuple[int, int] = (0, 1),
    min_size: int | None = None,
    max_size: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    on_video_done: Callable[[int], None] | None = None,
) -> ExtractStats:
    """Extract the detector outputs of every frame of ``dataset`` into the store ``out``.

    Each video is written by :func:`extract_video`: per-frame ``frame_queries`` float16
    [T, L, Q_f, C], ``mask_features`` float16 [T, C, Hp/4, Wp/4] (the pixel decoder's raw
    stride-4 output, before its 1x1 projection), ``class_logits`` [T, Q_f, K+1] and
    ``mask_embeddings`` [T, Q_f, C]. Videos claimed by another process at the moment are put
    off to the end of the run and then waited for.

    Args:
        dataset: a ``VISDataset`` (``.videos`` with ``id``, ``file_names``, ``length``,
            ``height``, ``width``; ``.path`` for messages).
        image_root: directory the ``file_names`` are relative to.
        detector: the frozen detector (put in eval mode here; no gradients).
        out: the Zarr store; created, or reopened if its provenance matches.
        batch_size: frames per detector forward (within one video).
        shard: ``(i, n)``: process every n-th video starting at the i-th (sorted by id).
        min_size, max_size: input resolution in pixels (default: the detector config's).
        device: where the detector runs (``cpu`` / ``cuda``).
        progress: show a tqdm bar over frames.
        on_video_done: called with each video id once committed (progress hooks, tests).

    Returns:
        :class:`ExtractStats`.

    Raises:
        InputError: store of another detector/resolution (lists differing keys); store not
            writable (read-only or full disk); a video without frames; a frame missing,
            unreadable, truncated or of another size than the json says (names the file).
            Completed videos stay valid; the failing video leaves nothing behind, and a store
            this run created is removed again when no video was written into it.
    """
    from tqdm import tqdm

    cfg = detector.cfg
    min_size, max_size = check_settings(cfg, batch_size, min_size, max_size)
    image_root = Path(image_root)
    if not image_root.is_dir():
        raise InputError(image_root, "image root is not a directory")
    source = getattr(dataset, "path", None)
    by_id = {v.id: v for v in dataset.videos}
    ids = shard_video_ids(by_id, *shard)
    for i in ids:  # bad records are refused before the store is created
        plan_video(by_id[i], cfg, min_size, max_size, source)
    detector = detector.to(device).eval()
    writer = CacheWriter(out, cache_provenance(detector, min_size, max_size))

    stats = ExtractStats()
    t_start = time.perf_counter()
    done = writer.completed_video_ids()
    todo = [by_id[i] for i in ids if i not in done]
    stats.videos_skipped = len(ids) - len(todo)
    bar = tqdm(total=sum(v.length for v in todo), unit="frame", desc="extract",
               disable=not progress, dynamic_ncols=True)

    def run(video, wait: bool) -> bool:
        outcome = extract_video(writer, video, image_root, detector, min_size, max_size, batch_size,
                                device, wait=wait, source=source, stats=stats, on_frames=bar.update)
        if outcome == "written":
            stats.videos_written += 1
            stats.written_ids.append(video.id)
            if on_video_done is not None:
                on_video_done(video.id)
        elif outcome == "skipped":
            stats.videos_skipped += 1
            bar.update(video.length)
        return outcome != "busy"

    try:
        deferred = [video for video in todo if not run(video, wait=False)]
        for video in deferred:  # claimed by another process a moment ago: wait for it
            run(video, wait=True)
    except BaseException:
        writer.remove_if_unused()
        raise
    finally:
        bar.close()
        stats.total_s = time.perf_counter() - t_start
    return stats
