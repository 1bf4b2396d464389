"""CacheWriter: writes the stage-one feature cache, atomically per video and resumably.

A video is written into ``STORE.zarr/.partial/<video_id>.<token>/`` (a Zarr group of its
own) and, once every frame is written and its ``complete`` attr set, renamed into
``STORE.zarr/videos/<video_id>`` with one ``os.rename`` (atomic on POSIX local disks). A
reader therefore never sees a half-written video, and a killed extraction leaves only
``.partial`` debris that the next run removes. The store root is created the same way (built
beside the target and renamed), so several processes (shards) may open the same new store at
once. Layout and provenance: :mod:`genvis.cache.layout`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from genvis.cache import layout
from genvis.errors import InputError

_FP16_MAX = float(np.finfo(np.float16).max)


def _is_store(path: Path) -> bool:
    return (path / "zarr.json").is_file()


def read_store_attrs(path: Path) -> dict[str, Any]:
    """Root attributes of the store at ``path`` (parsed from its ``zarr.json``).

    Returns:
        dict of JSON values (``provenance``: dict of JSON scalars, ``layout_version``: int).

    Raises:
        InputError: the store is missing or its root metadata is unreadable.
    """
    meta = Path(path) / "zarr.json"
    if not meta.is_file():
        raise InputError(path, "no Zarr cache here (missing zarr.json); run `genvis extract` first")
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(meta, f"unreadable cache metadata: {exc}") from exc
    return dict(doc.get("attributes") or {})


def check_provenance(path: Path, stored: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """Raise InputError naming the store and each differing key unless provenances match.

    See :func:`genvis.cache.layout.provenance_differences` for what counts as a difference.
    """
    diffs = layout.provenance_differences(stored, expected)
    if diffs:
        raise InputError(
            path,
            "cache was written with a different provenance (other detector or resolution); "
            "refusing to reuse it. Differing keys: " + "; ".join(diffs)
            + ". Write to a new store or delete this one.",
        )


class CacheWriter:
    """Create or reopen a cache store and write videos into it.

    Args:
        path: the store directory (``.../name.zarr``); created if absent.
        provenance: dict of JSON scalars (see :func:`layout.make_provenance`). If the store
            exists its stored provenance must match (informational keys aside).

    Raises:
        InputError: the path exists but is not a cache; the store's provenance differs
            (message lists the differing keys); the path cannot be written (read-only or
            full disk, parent is a file, ...).
    """

    def __init__(self, path: str | os.PathLike, provenance: Mapping[str, Any]):
        self.path = Path(path)
        self.provenance = dict(provenance)
        try:
            if not _is_store(self.path):
                self._create_root()
        except OSError as exc:
            raise InputError(self.path, f"cannot create the cache store: {exc}") from exc
        attrs = read_store_attrs(self.path)
        check_provenance(self.path, attrs.get("provenance", {}), self.provenance)
        self._videos = self.path / layout.VIDEOS_GROUP
        self._partial = self.path / layout.PARTIAL_DIR

    def _create_root(self) -> None:
        import zarr

        if self.path.exists() and not _is_store(self.path) and (
                not self.path.is_dir() or any(self.path.iterdir())):
            raise InputError(self.path, "exists but is not a genvis Zarr cache (no zarr.json)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex}.tmp"
        try:
            root = zarr.open_group(store=str(tmp), mode="w-", zarr_format=3)
            root.attrs.update({"provenance": self.provenance, "layout_version": layout.LAYOUT_VERSION})
            root.create_group(layout.VIDEOS_GROUP)
            (tmp / layout.PARTIAL_DIR).mkdir()
            if self.path.is_dir():  # an empty directory we may replace
                try:
                    self.path.rmdir()
                except OSError:
                    pass  # another shard created the store meanwhile
            try:
                os.rename(tmp, self.path)
            except OSError:
                if not _is_store(self.path):  # not a lost race with another shard
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------------------------------------------ queries
    def completed_video_ids(self) -> set[int]:
        """Ids (int) of the videos fully written in the store (renamed into ``videos/``)."""
        done = set()
        if not self._videos.is_dir():
            return done
        for child in self._videos.iterdir():
            if child.name.isdigit() and _is_store(child):
                done.add(int(child.name))
        return done

    def has_video(self, video_id: int) -> bool:
        """Whether ``video_id`` is fully written (a renamed-in group exists)."""
        return _is_store(self._videos / layout.video_key(video_id))

    def discard_partial(self, video_id: int) -> None:
        """Remove leftovers of an interrupted write of ``video_id`` (``.partial/<id>.*``)."""
        if self._partial.is_dir():
            for child in self._partial.glob(f"{layout.video_key(video_id)}.*"):
                shutil.rmtree(child, ignore_errors=True)

    # ------------------------------------------------------------------ writing
    def video(
        self,
        video_id: int,
        length: int,
        shapes: layout.FrameShapes,
        attrs: Mapping[str, Any] | None = None,
    ) -> "VideoWriter":
        """Open an atomic writer for one video (use as a context manager).

        Args:
            video_id: the dataset's video id.
            length: T, number of frames.
            shapes: per-frame array shapes; the arrays are created float16
                ``[T, *shapes.shape(field)]``, one frame per chunk.
            attrs: JSON attrs of the video group (file_names, original_size, resized_size,
                padded_size, ...); ``video_id`` and ``length`` are added.

        Raises:
            InputError: the video is already complete in the store; the store cannot be written.
        """
        if self.has_video(video_id):
            raise InputError(self.path, f"video {video_id} is already in the cache")
        self.discard_partial(video_id)
        return VideoWriter(self, int(video_id), int(length), shapes, dict(attrs or {}))

    def write_video(
        self,
        video_id: int,
        arrays: Mapping[str, np.ndarray],
        attrs: Mapping[str, Any] | None = None,
        num_classes: int | None = None,
    ) -> None:
        """Write a whole video at once from in-memory arrays (see :class:`VideoWriter`).

        Args:
            video_id: the dataset's video id.
            arrays: every field of :data:`layout.FIELDS`, frame axis first, any float dtype
                (stored float16): ``frame_queries`` [T, L, Q_f, C], ``mask_features``
                [T, C, h, w], ``class_logits`` [T, Q_f, K+1], ``mask_embeddings`` [T, Q_f, C].
            attrs: JSON attrs of the video group (see :meth:`video`).
            num_classes: K (default: ``class_logits.shape[2] - 1``).

        Raises:
            ValueError: a field is missing or has another shape. InputError: as :meth:`video`
                and :meth:`VideoWriter.write`.
        """
        missing = [f for f in layout.FIELDS if f not in arrays]
        if missing:
            raise ValueError(f"write_video: missing arrays {missing}")
        fq, mf, cl = arrays["frame_queries"], arrays["mask_features"], arrays["class_logits"]
        shapes = layout.FrameShapes(
            num_layers=fq.shape[1],
            num_queries=fq.shape[2],
            hidden_dim=fq.shape[3],
            num_classes=cl.shape[2] - 1 if num_classes is None else num_classes,
            feature_size=(mf.shape[2], mf.shape[3]),
        )
        with self.video(video_id, fq.shape[0], shapes, attrs) as vw:
            vw.write(0, arrays)


class VideoWriter:
    """Writes one video's arrays into a private partial group; commits on clean exit.

    Use ``with writer.video(...) as vw: vw.write(start, arrays)`` with batches of consecutive
    frames. On a clean exit every frame must have been written; the group is marked
    complete and renamed into ``videos/``. On an exception the partial group is deleted.
    """

    def __init__(self, parent: CacheWriter, video_id: int, length: int,
                 shapes: layout.FrameShapes, attrs: dict[str, Any]):
        self.parent = parent
        self.video_id = video_id
        self.length = length
        self.shapes = shapes
        self.attrs = attrs
        self._dir = parent._partial / f"{layout.video_key(video_id)}.{uuid.uuid4().hex}"
        self._written = np.zeros(length, dtype=bool)
        self._arrays: dict[str, Any] = {}

    def __enter__(self) -> "VideoWriter":
        import zarr

        try:
            self._dir.parent.mkdir(parents=True, exist_ok=True)
            group = zarr.open_group(store=str(self._dir), mode="w-", zarr_format=3)
            group.attrs.update({**self.attrs, "video_id": self.video_id, "length": self.length,
                                layout.COMPLETE_ATTR: False})
            for field in layout.FIELDS:
                frame_shape = self.shapes.shape(field)
                self._arrays[field] = group.create_array(
                    field,
                    shape=(self.length, *frame_shape),
                    chunks=(1, *frame_shape),
                    dtype=layout.CACHE_DTYPE,
                    compressors=layout.compressors(),
                    fill_value=0.0,
                )
            self._group = group
        except OSError as exc:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise InputError(self.parent.path, f"cannot write video {self.video_id}: {exc}") from exc
        except BaseException:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        return self

    def write(self, start: int, arrays: Mapping[str, Any]) -> None:
        """Write frames ``[start, start + n)`` of every field.

        Args:
            start: first frame index.
            arrays: field -> array or tensor ``[n, *frame_shape]`` (float; cast to float16,
                finite values beyond the fp16 range saturate at +-65504); frame shapes as
                :meth:`genvis.cache.layout.FrameShapes.shape`: ``frame_queries`` [n, L, Q_f, C],
                ``mask_features`` [n, C, h, w], ``class_logits`` [n, Q_f, K+1],
                ``mask_embeddings`` [n, Q_f, C]; the same n for every field.

        Raises:
            ValueError: wrong field set, shape, or a frame range outside the video.
            InputError: NaN in the data (names the video); the disk write failed.
        """
        n = None
        prepared = {}
        for field in layout.FIELDS:
            if field not in arrays:
                raise ValueError(f"video {self.video_id}: missing array {field!r}")
            a = arrays[field]
            if hasattr(a, "detach"):
                a = a.detach().cpu().float().numpy()
            a = np.asarray(a)
            expected = self.shapes.shape(field)
            if a.ndim != len(expected) + 1 or tuple(a.shape[1:]) != expected:
                raise ValueError(f"video {self.video_id}: {field} has shape {a.shape}, "
                                 f"expected [n, {', '.join(map(str, expected))}]")
            if n is None:
                n = a.shape[0]
            elif a.shape[0] != n:
                raise ValueError(f"video {self.video_id}: arrays disagree on the number of frames")
            if np.isnan(a).any():
                raise InputError(self.parent.path, f"video {self.video_id}: detector produced NaN "
                                 f"in {field} (frames {start}..{start + n - 1})")
            prepared[field] = np.clip(a, -_FP16_MAX, _FP16_MAX).astype(layout.CACHE_DTYPE)
        if start < 0 or start + n > self.length:
            raise ValueError(f"video {self.video_id}: frames [{start}, {start + n}) outside [0, {self.length})")
        try:
            for field, a in prepared.items():
                self._arrays[field][start:start + n] = a
        except OSError as exc:
            raise InputError(self.parent.path, f"cannot write video {self.video_id}: {exc}") from exc
        self._written[start:start + n] = True

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            return False
        try:
            if not self._written.all():
                missing = np.flatnonzero(~self._written)
                raise ValueError(f"video {self.video_id}: frames {missing[:10].tolist()} were never written")
            self._group.attrs[layout.COMPLETE_ATTR] = True
            target = self.parent._videos / layout.video_key(self.video_id)
            try:
                os.rename(self._dir, target)
            except OSError:
                if not _is_store(target):
                    raise
                # Another process finished the same video first; its copy stands.
        except OSError as err:  # not `exc`: that name is __exit__'s parameter
            raise InputError(self.parent.path, f"cannot write video {self.video_id}: {err}") from err
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
        return False
