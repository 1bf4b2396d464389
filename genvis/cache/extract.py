"""Stage one extraction: run the frozen detector over every frame and fill the Zarr cache.

For each video of a dataset split (or of one shard of it) the frames are read in batches,
preprocessed (:mod:`genvis.detector.preprocess`), passed through the frozen
:class:`~genvis.detector.model.FrameDetector` (eval mode, no grad) and written with
:class:`~genvis.cache.writer.CacheWriter`, one video atomically at a time.

Resumable: videos already complete in the store are skipped; an interrupted video is
redone from its first frame. Batches never cross videos and always start at frame 0 of
the video, so a resumed run computes exactly the same batches, and thus the same bytes, as
an uninterrupted one. Shards (``i/n``) take every n-th video (sorted by id), so n processes
can fill one store in parallel.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from genvis.cache import layout
from genvis.cache.writer import CacheWriter
from genvis.detector.model import FrameDetector
from genvis.detector.preprocess import ImageSizes, padded_size, preprocess_frames, resized_size
from genvis.errors import InputError


@dataclass
class ExtractStats:
    """What an extraction run did, with wall-clock seconds per phase.

    Attributes:
        videos_written, videos_skipped: videos extracted now / found complete already.
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
            writable (read-only or full disk); a frame missing, unreadable, truncated or of
            another size than the json says (names the file). Completed videos stay valid;
            the failing video leaves nothing behind.
    """
    from tqdm import tqdm

    if batch_size < 1:
        raise InputError("--batch-size", f"must be >= 1, got {batch_size}")
    cfg = detector.cfg
    min_size = int(min_size or cfg.min_size)
    max_size = int(max_size or cfg.max_size)
    if max_size < min_size:
        raise InputError("--max-size", f"{max_size} is smaller than --min-size {min_size}")
    detector = detector.to(device).eval()
    writer = CacheWriter(out, cache_provenance(detector, min_size, max_size))
    image_root = Path(image_root)
    if not image_root.is_dir():
        raise InputError(image_root, "image root is not a directory")

    stats = ExtractStats()
    t_start = time.perf_counter()
    by_id = {v.id: v for v in dataset.videos}
    ids = shard_video_ids(by_id, *shard)
    done = writer.completed_video_ids()
    todo = [by_id[i] for i in ids if i not in done]
    stats.videos_skipped = len(ids) - len(todo)
    from genvis.data.frames import read_frames

    def load(video, start, stop):
        frames = read_frames(image_root, video.file_names, range(start, stop))
        if frames.shape[1:3] != (video.height, video.width):
            raise InputError(image_root / video.file_names[start],
                             f"frame size {frames.shape[1]}x{frames.shape[2]} differs from the "
                             f"{video.height}x{video.width} given for video {video.id} in "
                             f"{getattr(dataset, 'path', 'the annotations')}")
        return frames

    bar = tqdm(total=sum(v.length for v in todo), unit="frame", desc="extract",
               disable=not progress, dynamic_ncols=True)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genvis-frames")
    try:
        for video in todo:
            if video.length != len(video.file_names):
                raise InputError(getattr(dataset, "path", None),
                                 f"video {video.id}: length {video.length} != {len(video.file_names)} file names")
            rh, rw = resized_size(video.height, video.width, min_size, max_size)
            sizes = ImageSizes((video.height, video.width), (rh, rw), padded_size(rh, rw, cfg.size_divisibility))
            shapes = layout.FrameShapes(cfg.keep_layers, cfg.num_queries, cfg.hidden_dim, cfg.num_classes,
                                        (sizes.padded[0] // 4, sizes.padded[1] // 4))
            attrs = {"file_names": list(video.file_names), **sizes.to_dict(),
                     "min_size": min_size, "max_size": max_size}
            starts = list(range(0, video.length, batch_size))
            t0 = time.perf_counter()
            with writer.video(video.id, video.length, shapes, attrs) as vw:
                pending = pool.submit(load, video, 0, min(batch_size, video.length)) if starts else None
                for k, start in enumerate(starts):
                    stop = min(start + batch_size, video.length)
                    t0 = time.perf_counter()
                    frames = pending.result()
                    if k + 1 < len(starts):
                        nxt = starts[k + 1]
                        pending = pool.submit(load, video, nxt, min(nxt + batch_size, video.length))
                    t1 = time.perf_counter()
                    pixel_values, got = preprocess_frames(frames, cfg, min_size, max_size)
                    if got != sizes:  # guarded by the size check in load(); keep the invariant explicit
                        raise InputError(image_root / video.file_names[start], f"unexpected sizes {got}")
                    with torch.no_grad():
                        outputs = detector(pixel_values.to(device)).cache_arrays()
                    t2 = time.perf_counter()
                    vw.write(start, {k2: v.float().cpu() for k2, v in outputs.items()})
                    t3 = time.perf_counter()
                    stats.read_s += t1 - t0
                    stats.forward_s += t2 - t1
                    stats.write_s += t3 - t2
                    stats.frames += stop - start
                    bar.update(stop - start)
                t_commit = time.perf_counter()
            stats.write_s += time.perf_counter() - t_commit
            stats.videos_written += 1
            stats.written_ids.append(video.id)
            if on_video_done is not None:
                on_video_done(video.id)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        stats.total_s = time.perf_counter() - t_start
    return stats
