"""Training sampler: N_v consecutive clips of N_f frames from randomly drawn videos.

A sample of a video is the window of ``N_v * N_f`` consecutive frames starting at a
uniformly drawn frame; it is split into N_v non-overlapping clips of N_f frames.
"""

from __future__ import annotations

import warnings
from typing import Mapping

import torch

from genvis.errors import ConfigError, InputError


class ClipSampler:
    """Draws ``(video_id, start)`` pairs.

    Args:
        lengths: video id -> number of frames.
        n_v: clips per sample (N_v >= 1). n_f: frames per clip (N_f >= 1).
        source: name of the data (for error messages).

    Videos shorter than ``n_v * n_f`` frames are skipped with a warning.

    Raises:
        ConfigError: n_v or n_f < 1.
        InputError: no video is long enough for one sample.
    """

    def __init__(self, lengths: Mapping[int, int], n_v: int, n_f: int, source: str = "clip source"):
        if int(n_v) < 1:
            raise ConfigError("train.n_v", f"must be >= 1, got {n_v}")
        if int(n_f) < 1:
            raise ConfigError("train.n_f", f"must be >= 1, got {n_f}")
        self.n_v, self.n_f = int(n_v), int(n_f)
        self.window = self.n_v * self.n_f
        self.lengths = {int(k): int(v) for k, v in lengths.items()}
        self.video_ids = sorted(v for v, n in self.lengths.items() if n >= self.window)
        short = sorted(v for v, n in self.lengths.items() if n < self.window)
        if not self.video_ids:
            raise InputError(source, f"no video has the N_v x N_f = {self.n_v} x {self.n_f} = "
                             f"{self.window} frames a training sample needs (longest: "
                             f"{max(self.lengths.values(), default=0)} frames)")
        if short:
            warnings.warn(f"{source}: {len(short)} video(s) shorter than {self.window} frames are "
                          f"not sampled (e.g. {short[:5]})", stacklevel=2)

    def sample(self, batch: int, generator: torch.Generator) -> list[tuple[int, int]]:
        """``batch`` pairs (video id, first frame), videos drawn uniformly with replacement."""
        out = []
        picks = torch.randint(len(self.video_ids), (batch,), generator=generator).tolist()
        for p in picks:
            vid = self.video_ids[p]
            start = int(torch.randint(self.lengths[vid] - self.window + 1, (1,), generator=generator))
            out.append((vid, start))
        return out
