"""CacheWriter: writes the stage-one feature cache, atomically per video and resumably.

A video is written into ``STORE.zarr/.partial/<video_id>.<token>/`` (a Zarr group of its
own, ``token`` unique per writer) and, once every frame is written and its ``complete`` attr
set, renamed into ``STORE.zarr/videos/<video_id>`` with one ``os.rename`` (atomic on POSIX
local disks). A reader therefore never sees a half-written video.

Several processes may fill one store at once (shards, or two runs of the same command):

* The store root is built beside the target and renamed into place, so two processes
  creating the same new store both end with the one that won.
* A writer claims a video before writing it: an exclusive OS lock (``flock``) on
  ``STORE.zarr/.locks/<video_id>.lock``, held until the video is committed or abandoned.
  The kernel drops the lock when its process dies, however it dies. Under the claim a
  writer first re-checks that the video is still missing, then removes the ``.partial``
  debris of that video (a live writer of it would hold the claim, so the debris is from a
  dead process) and writes. No process ever deletes another live process's partial folder.

Layout and provenance: :mod:`genvis.cache.layout`. Locks need a file system with working
``flock`` (local disks; NFS v4 emulates it with POSIX locks).
"""

from __future__ import annotations

import fcntl
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
#: one-frame chunks encoded per batch by Zarr's codec pipeline (``codec_pipeline.batch_size``)
BATCH_CHUNKS = 64


def _is_store(path: Path) -> bool:
    return (path / "zarr.json").is_file()


def read_store_attrs(path: str | os.PathLike) -> dict[str, Any]:
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


def store_layout_version(path: str | os.PathLike, attrs: Mapping[str, Any]) -> int:
    """The format version of a store from its root ``attrs`` (1 when unrecorded).

    Raises:
        InputError: a version this code cannot read (a newer genvis wrote the store).
    """
    version = attrs.get("layout_version", (attrs.get("provenance") or {}).get("layout_version", 1))
    if version not in layout.READABLE_LAYOUT_VERSIONS:
        raise InputError(path, f"cache format version {version!r} is not one this genvis reads "
                         f"({sorted(layout.READABLE_LAYOUT_VERSIONS)}); written by a newer genvis?")
    return int(version)


def check_provenance(path: str | os.PathLike, stored: Mapping[str, Any], expected: Mapping[str, Any],
                     ignore: frozenset[str] = frozenset()) -> None:
    """Raise InputError naming the store and each differing key unless provenances match.

    Args:
        path: the store (named in the message).
        stored: the store's recorded provenance; expected: the one asked for.
        ignore: further keys not compared (e.g. :data:`layout.STORAGE_KEYS`).

    See :func:`genvis.cache.layout.provenance_differences` for what counts as a difference.
    """
    diffs = layout.provenance_differences(stored, expected, ignore=ignore)
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
            exists its stored provenance must match (informational keys aside). An existing
            store of an older readable format version (:data:`layout.READABLE_LAYOUT_VERSIONS`)
            is resumed in its own version, so its videos stay alike.

    Attributes:
        created: True when this writer created the store (see :meth:`remove_if_unused`).
        layout_version: format version the videos are written in.

    Raises:
        InputError: the path exists but is not a cache; the store's provenance differs
            (message lists the differing keys) or its format version is unknown; the path
            cannot be written (read-only or full disk, parent is a file, ...).
    """

    def __init__(self, path: str | os.PathLike, provenance: Mapping[str, Any]):
        self.path = Path(path)
        self.provenance = dict(provenance)
        self.created = False
        self._made_parents: list[Path] = []
        try:
            if not _is_store(self.path):
                self._create_root()
        except OSError as exc:
            raise InputError(self.path, f"cannot create the cache store: {exc}") from exc
        attrs = read_store_attrs(self.path)
        check_provenance(self.path, attrs.get("provenance", {}), self.provenance, ignore=layout.STORAGE_KEYS)
        self.layout_version = store_layout_version(self.path, attrs)
        self._videos = self.path / layout.VIDEOS_GROUP
        self._partial = self.path / layout.PARTIAL_DIR
        self._locks = self.path / layout.LOCKS_DIR
        self._held: dict[int, int] = {}  # video id -> fd of its lock file, while claimed

    def _create_root(self) -> None:
        import zarr

        if self.path.exists() and not _is_store(self.path) and (
                not self.path.is_dir() or any(self.path.iterdir())):
            raise InputError(self.path, "exists but is not a genvis Zarr cache (no zarr.json)")
        missing = [p for p in [self.path.parent, *self.path.parent.parents] if not p.exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._made_parents = missing  # innermost first
        tmp = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex}.tmp"
        try:
            root = zarr.open_group(store=str(tmp), mode="w-", zarr_format=3)
            version = self.provenance.get("layout_version", layout.LAYOUT_VERSION)
            root.attrs.update({"provenance": self.provenance, "layout_version": version})
            root.create_group(layout.VIDEOS_GROUP)
            (tmp / layout.PARTIAL_DIR).mkdir()
            (tmp / layout.LOCKS_DIR).mkdir()
            if self.path.is_dir():  # an empty directory we may replace
                try:
                    self.path.rmdir()
                except OSError:
                    pass  # another shard created the store meanwhile
            try:
                os.rename(tmp, self.path)
                self.created = True
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

    # ------------------------------------------------------------------ claims
    def claim(self, video_id: int, wait: bool = True) -> bool:
        """Take the exclusive OS lock of one video (``.locks/<id>.lock``, ``flock``).

        Only one writer (process, or CacheWriter within a process) holds a video's claim at
        a time; the kernel releases it when the holder dies. Re-claiming a video this writer
        already holds is a no-op.

        Args:
            video_id: the video to claim.
            wait: block until the claim is free (True) or return at once (False).

        Returns:
            True when this writer now holds the claim; False only with ``wait=False`` when
            another writer holds it.

        Raises:
            InputError: the lock file cannot be created (read-only store, ...).
        """
        video_id = int(video_id)
        if video_id in self._held:
            return True
        try:
            self._locks.mkdir(exist_ok=True)  # stores of format version 1 have no .locks/
            fd = os.open(self._locks / f"{layout.video_key(video_id)}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(self.path, f"cannot claim video {video_id}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._held[video_id] = fd
        return True

    def release(self, video_id: int) -> None:
        """Give up the claim of ``video_id`` (no-op when not held). The lock file stays."""
        fd = self._held.pop(int(video_id), None)
        if fd is not None:
            os.close(fd)  # closing the only descriptor of the open file drops its flock

    def discard_partial(self, video_id: int) -> None:
        """Remove leftovers of an interrupted write of ``video_id`` (``.partial/<id>.*``).

        Raises:
            RuntimeError: this writer does not hold the video's claim (the leftovers could
                be another live process's work in progress).
        """
        if int(video_id) not in self._held:
            raise RuntimeError(f"discard_partial({video_id}) without holding the video's claim")
        if self._partial.is_dir():
            for child in self._partial.glob(f"{layout.video_key(video_id)}.*"):
                shutil.rmtree(child, ignore_errors=True)

    def remove_if_unused(self) -> bool:
        """Delete the store again if this writer created it and nothing was put in it.

        For a run that failed before committing any video (a bad first frame, an absurd
        frame size): no empty ``.zarr`` skeleton is left behind. The store stays when a
        video is complete or any writer (this process or another) holds a claim in it. The
        parent folders this writer created are removed too when empty.

        Returns:
            True when the store was removed.
        """
        if not self.created or self._held or not _is_store(self.path) or self.completed_video_ids():
            return False
        for lock in self._locks.glob("*.lock") if self._locks.is_dir() else ():
            try:
                fd = os.open(lock, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # another writer is at work in this store
            finally:
                os.close(fd)
        if self.completed_video_ids():
            return False
        doomed = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex}.removed"
        try:
            os.rename(self.path, doomed)  # one step: nobody sees a half-deleted store
        except OSError:
            return False
        shutil.rmtree(doomed, ignore_errors=True)
        for parent in self._made_parents:  # innermost first
            try:
                parent.rmdir()
            except OSError:
                break
        self.created = False
        return True

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

        The video's claim (:meth:`claim`) is taken here unless already held, waiting for
        another writer of the same video, and released when the writer exits.

        Raises:
            InputError: the video is already complete in the store (perhaps just written by
                another process); the store cannot be written.
        """
        video_id = int(video_id)
        owned = video_id not in self._held
        self.claim(video_id)
        try:
            if self.has_video(video_id):
                raise InputError(self.path, f"video {video_id} is already in the cache")
            self.discard_partial(video_id)
        except BaseException:
            if owned:
                self.release(video_id)
            raise
        return VideoWriter(self, video_id, int(length), shapes, dict(attrs or {}), release=owned)

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
    frames; arrays are stored float16 [T, *frame_shape] (:meth:`layout.FrameShapes.shape`),
    one frame per chunk. On a clean exit every frame must have been written; the group is marked
    complete and renamed into ``videos/``. On an exception the partial group is deleted.
    Arrays are created in the parent store's format version (checksummed from version 2).
    With ``release=True`` the video's claim is given up on exit.
    """

    def __init__(self, parent: CacheWriter, video_id: int, length: int,
                 shapes: layout.FrameShapes, attrs: dict[str, Any], release: bool = False):
        self.parent = parent
        self._release = release
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
            # Zarr's codec pipeline encodes BATCH_CHUNKS one-frame chunks per batch (its default
            # is 1: a task hop per chunk cost ~2.5 CPU ms a frame against ~1.6, measured)
            with zarr.config.set({"codec_pipeline.batch_size": BATCH_CHUNKS}):
                for field in layout.FIELDS:
                    frame_shape = self.shapes.shape(field)
                    self._arrays[field] = group.create_array(
                        field,
                        shape=(self.length, *frame_shape),
                        chunks=(1, *frame_shape),
                        dtype=layout.CACHE_DTYPE,
                        compressors=layout.compressors(self.parent.layout_version),
                        fill_value=0.0,
                    )
            self._group = group
        except OSError as exc:
            self._abandon()
            raise InputError(self.parent.path, f"cannot write video {self.video_id}: {exc}") from exc
        except BaseException:
            self._abandon()
            raise
        return self

    def _abandon(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
        if self._release:
            self.parent.release(self.video_id)

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
            self._abandon()
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
            self._abandon()  # nothing left after a commit; the debris of a failed one
        return False
