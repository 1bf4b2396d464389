"""Reading video frames: single JPEG/PNG files, frame folders and video files (PyAV).

Every frame comes out as a ``uint8`` RGB array ``[H, W, 3]``. Folders and videos are read
lazily, one frame at a time, so a long video is never held in memory whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from genvis.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def read_frame(path: str | os.PathLike) -> np.ndarray:
    """Read one image file as RGB.

    Args:
        path: a JPEG / PNG (any format Pillow reads); palette and grey images are converted.

    Returns:
        ``np.ndarray`` uint8 ``[H, W, 3]``.

    Raises:
        InputError: the file is missing, not an image, truncated or otherwise unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "frame file not found")
    try:
        with Image.open(path) as im:
            im.load()  # decode fully here: a truncated file fails now, not later
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except UnidentifiedImageError as exc:
        raise InputError(path, "not a readable image (unknown format)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(path, f"unreadable or truncated image ({exc})") from exc


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Return ``(height, width)`` of an image from its header (no full decode).

    Raises:
        InputError: missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "image file not found")
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(path, f"not a readable image ({exc})") from exc
    return h, w


def read_frames(image_root: str | os.PathLike, file_names: Sequence[str],
                indices: Sequence[int] | None = None) -> np.ndarray:
    """Read frames of a VIS video (``file_names`` relative to ``image_root``) into one array.

    Args:
        image_root: the split's image root.
        file_names: the video's ``file_names``.
        indices: which frames (default: all).

    Returns:
        uint8 ``[T, H, W, 3]``.

    Raises:
        InputError: a frame is missing/unreadable, or frames differ in size (names the frame).
    """
    root = Path(image_root)
    idx = range(len(file_names)) if indices is None else indices
    frames = []
    for i in idx:
        f = read_frame(root / file_names[i])
        if frames and f.shape != frames[0].shape:
            raise InputError(root / file_names[i], f"frame size {f.shape[:2]} differs from the video's "
                                                   f"first frame {frames[0].shape[:2]}")
        frames.append(f)
    if not frames:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    return np.stack(frames)


class FrameFolder:
    """The image files of a folder, sorted by name, as a lazy sequence of RGB frames.

    ``len()`` is the number of images; iterating yields uint8 ``[H, W, 3]`` frames;
    ``paths`` lists the files.

    Raises:
        InputError: the folder has no image files.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise InputError(self.folder, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in folder")

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[np.ndarray]:
        for p in self.paths:
            yield read_frame(p)

    def __getitem__(self, i: int) -> np.ndarray:
        return read_frame(self.paths[i])


class VideoFile:
    """A video file decoded lazily with PyAV, as an iterable of RGB frames.

    Attributes:
        path: the file.
        fps: average frame rate (float, frames per second), or None if unknown.
        height, width: frame size in pixels.

    ``len()`` is the frame count from the container; it raises TypeError when the container
    does not say (use ``length`` which is then None).

    Raises:
        InputError: the file is missing, not a video, or has no video stream.
    """

    def __init__(self, path: str | os.PathLike):
        import av  # local: PyAV is only needed for video files

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(self.path, "video file not found")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise InputError(self.path, "file has no video stream")
                stream = container.streams.video[0]
                self.length: int | None = int(stream.frames) or None
                self.fps = float(stream.average_rate) if stream.average_rate else None
                self.width = int(stream.codec_context.width)
                self.height = int(stream.codec_context.height)
        except InputError:
            raise
        except Exception as exc:  # av raises its own error hierarchy (InvalidDataError, ...)
            raise InputError(self.path, f"not a readable video ({exc})") from exc

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError(f"{self.path}: the container does not give a frame count")
        return self.length

    def __iter__(self) -> Iterator[np.ndarray]:
        import av

        try:
            with av.open(str(self.path)) as container:
                for frame in container.decode(video=0):
                    yield frame.to_ndarray(format="rgb24")
        except Exception as exc:  # av's decoding errors
            raise InputError(self.path, f"video decoding failed ({exc})") from exc


def open_frames(path: str | os.PathLike) -> FrameFolder | VideoFile:
    """Open a frame folder or a video file as an iterable of uint8 ``[H, W, 3]`` RGB frames.

    Frames are decoded one at a time (the video is never loaded whole). ``len()`` gives the
    number of frames where known.

    Raises:
        InputError: the path is missing, an empty folder, or not a readable video.
    """
    path = Path(path)
    if path.is_dir():
        return FrameFolder(path)
    if not path.exists():
        raise InputError(path, "no such video file or frame folder")
    return VideoFile(path)
