"""Training sampler: the frames of N_v clips of N_f frames from randomly drawn videos.

Two ways to choose a sample's ``N_v * N_f`` frames (split in order into N_v clips of N_f):

* consecutive (default, ``frame_range = None``): the window of ``N_v * N_f`` consecutive
  frames starting at a uniformly drawn frame. Videos shorter than the window are skipped.
* sparse (``frame_range = R``, the official code's ``INPUT.SAMPLING_FRAME_RANGE``: 6 for
  online and 12 for semi-online GenVIS on OVIS): a reference frame is drawn uniformly; the
  other ``N_v * N_f - 1`` frames are drawn uniformly *with replacement* from the frames at
  most R away from it (the reference excluded), and all are sorted. A sample then spans up
  to ``2R + 1`` frames, frames may repeat, and every video of 2+ frames is used (the
  official ``YTVISDatasetMapper``; our reading, not its code).
"""

from __future__ import annotations

import warnings
from typing import Mapping

import torch

from genvis.errors import ConfigError, InputError

#: one training sample: (video id, the N_v * N_f frame indices, non-decreasing)
Sample = tuple[int, tuple[int, ...]]


class ClipSampler:
    """Draws training samples ``(video_id, frames)``.

    Args:
        lengths: video id -> number of frames.
        n_v: clips per sample (N_v >= 1). n_f: frames per clip (N_f >= 1).
        source: name of the data (for error messages).
        frame_range: None for consecutive windows, else R >= 1 for sparse sampling (module
            docstring).

    Consecutive windows skip videos shorter than ``n_v * n_f`` frames, sparse sampling
    skips 1-frame videos; both with a warning.

    Raises:
        ConfigError: n_v or n_f < 1, or frame_range < 1.
        InputError: no video is long enough for one sample.
    """

    def __init__(self, lengths: Mapping[int, int], n_v: int, n_f: int, source: str = "clip source",
                 frame_range: int | None = None):
        if int(n_v) < 1:
            raise ConfigError("train.n_v", f"must be >= 1, got {n_v}")
        if int(n_f) < 1:
            raise ConfigError("train.n_f", f"must be >= 1, got {n_f}")
        if frame_range is not None and int(frame_range) < 1:
            raise ConfigError("train.frame_range", f"must be >= 1 or null, got {frame_range}")
        self.n_v, self.n_f = int(n_v), int(n_f)
        self.window = self.n_v * self.n_f
        self.frame_range = None if frame_range is None else int(frame_range)
        self.lengths = {int(k): int(v) for k, v in lengths.items()}
        need = self.window if self.frame_range is None else 2
        self.video_ids = sorted(v for v, n in self.lengths.items() if n >= need)
        short = sorted(v for v, n in self.lengths.items() if n < need)
        if not self.video_ids:
            what = (f"the N_v x N_f = {self.n_v} x {self.n_f} = {self.window} frames a training sample needs"
                    if self.frame_range is None else "the 2 frames sparse sampling needs")
            raise InputError(source, f"no video has {what} (longest: {max(self.lengths.values(), default=0)} frames)")
        if short:
            warnings.warn(f"{source}: {len(short)} video(s) shorter than {need} frames are "
                          f"not sampled (e.g. {short[:5]})", stacklevel=2)

    def sample(self, batch: int, generator: torch.Generator) -> list[Sample]:
        """``batch`` samples (video id, frame indices), videos drawn uniformly with replacement."""
        out = []
        picks = torch.randint(len(self.video_ids), (batch,), generator=generator).tolist()
        for p in picks:
            vid = self.video_ids[p]
            if self.frame_range is None:
                start = int(torch.randint(self.lengths[vid] - self.window + 1, (1,), generator=generator))
                out.append((vid, tuple(range(start, start + self.window))))
            else:
                out.append((vid, self._sparse(self.lengths[vid], generator)))
        return out

    def _sparse(self, length: int, generator: torch.Generator) -> tuple[int, ...]:
        ref = int(torch.randint(length, (1,), generator=generator))
        lo, hi = max(0, ref - self.frame_range), min(length, ref + self.frame_range + 1)
        others = [f for f in range(lo, hi) if f != ref]
        draws = torch.randint(len(others), (self.window - 1,), generator=generator).tolist()
        return tuple(sorted([others[d] for d in draws] + [ref]))
