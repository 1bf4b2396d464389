"""Drawing instance masks on frames, and writing frames as an H.264 mp4 (PyAV).

Used by ``genvis demo`` (:mod:`genvis.infer.demo`) and ``genvis visualize``
(:mod:`genvis.report.video_figure`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: distinct colours (RGB) by instance query index
PALETTE = np.array([
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
    [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255],
    [170, 110, 40], [255, 250, 200], [128, 0, 0], [170, 255, 195], [128, 128, 0], [255, 215, 180],
    [0, 0, 128], [128, 128, 128]], dtype=np.float32)


def colour_of(query: int) -> np.ndarray:
    """RGB float [3] of an instance query (stable for the whole video)."""
    return PALETTE[int(query) % len(PALETTE)]


def overlay(frame: np.ndarray, masks: list[np.ndarray], colours: list[np.ndarray], alpha: float = 0.5) -> np.ndarray:
    """Blend masks (bool [H, W]) onto an RGB uint8 frame [H, W, 3]; returns uint8 [H, W, 3]."""
    out = frame.astype(np.float32)
    for m, c in zip(masks, colours):
        out[m] = (1 - alpha) * out[m] + alpha * c
        edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
        out[edge] = c
    return out.clip(0, 255).astype(np.uint8)


class Mp4Writer:
    """H.264 mp4 writer (PyAV) for RGB frames of one size; odd sizes are padded to even."""

    def __init__(self, path: Path, fps: float):
        import av

        self.path = path
        self._container = av.open(str(path), mode="w", format="mp4")
        self._fps = fps
        self._stream = None

    def add(self, frame: np.ndarray) -> None:
        import av
        from fractions import Fraction

        h, w = frame.shape[:2]
        ph, pw = h + h % 2, w + w % 2
        if (ph, pw) != (h, w):
            frame = np.pad(frame, ((0, ph - h), (0, pw - w), (0, 0)))
        if self._stream is None:
            rate = Fraction(self._fps).limit_denominator(1000)
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width, self._stream.height = pw, ph
            self._stream.pix_fmt = "yuv420p"
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            self._container.mux(packet)

    def close(self) -> None:
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()
