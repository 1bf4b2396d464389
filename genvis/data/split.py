"""Split a VIS split by video into a train part and a held-out part (for local scoring).

OVIS and YouTube-VIS keep their validation ground truth private, so local scores come from
training videos held out of training. The split is by video (never by frame or instance),
deterministic for a seed, and keeps video ids, annotation ids and categories unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from genvis.data.ytvis import VISDataset, save_vis_json
from genvis.errors import InputError


def split_by_video(ds: VISDataset, holdout_fraction: float, seed: int) -> tuple[VISDataset, VISDataset]:
    """Split ``ds`` into (train, held-out) by video.

    The held-out part has ``round(holdout_fraction * n)`` videos (at least 1, at most n - 1),
    drawn by a permutation of the sorted video ids with ``seed``; both parts keep the file
    order of ``ds``.

    Raises:
        InputError: fraction outside (0, 1), fewer than 2 videos, or no annotations.
    """
    src = ds.path or "annotations"
    if not 0.0 < holdout_fraction < 1.0:
        raise InputError("--holdout-fraction", f"must be in (0, 1), got {holdout_fraction}")
    if ds.annotations is None:
        raise InputError(src, "has no annotations (\"annotations\": null); a held-out split needs ground truth")
    ids = sorted(ds.video_ids)
    if len(ids) < 2:
        raise InputError(src, f"needs at least 2 videos to split, has {len(ids)}")
    n_hold = min(len(ids) - 1, max(1, round(holdout_fraction * len(ids))))
    order = np.random.default_rng(seed).permutation(len(ids))
    held = {ids[i] for i in order[:n_hold]}
    return ds.subset([i for i in ds.video_ids if i not in held]), ds.subset([i for i in ds.video_ids if i in held])


def write_split(ds: VISDataset, holdout_fraction: float, seed: int, out_train: str | os.PathLike,
                out_holdout: str | os.PathLike) -> tuple[VISDataset, VISDataset]:
    """Split and write both parts atomically (nothing is written if the split fails)."""
    if Path(out_train).resolve() == Path(out_holdout).resolve():
        raise InputError(out_train, "train and held-out outputs are the same file")
    train, hold = split_by_video(ds, holdout_fraction, seed)
    save_vis_json(train, out_train)
    save_vis_json(hold, out_holdout)
    return train, hold
