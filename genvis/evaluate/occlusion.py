"""Occlusion level of each ground-truth instance: mean Bounding-box Occlusion Rate (mBOR).

Source: Qi et al., "Occluded Video Instance Segmentation: A Benchmark" (IJCV 2022,
arXiv:2102.01558), Sec. 3 (dataset statistics) defines the Bounding-box Occlusion Rate of a
frame with boxes ``B_1..B_N`` as ``|U_{i<j} (B_i ∩ B_j)| / |U_i B_i|`` and its mean over frames
(mBOR) as the occlusion degree. We apply it per instance, so that AP can be split by
occlusion level as OVIS reports it (APso / APmo / APho):

    BOR_i(t) = |B_i(t) ∩ U_{j != i} B_j(t)| / |B_i(t)|     (boxes of the annotated masks)
    mBOR_i   = mean of BOR_i(t) over the frames where instance i is annotated (non-empty mask)

i.e. the share of the instance's box covered by the boxes of the other annotated instances
(crowd regions included) on that frame. Areas are exact pixel counts of the box union
(coordinate compression; boxes from ``pycocotools.mask.toBbox``, ``[x, x+w) x [y, y+h)``).

Levels use the ranges of the official OVIS evaluation (``oviseval.Params.occRng`` of
qjy981010/cocoapi): slight ``[0, 0.25]``, moderate ``[0.25, 0.5]``, heavy ``[0.5, 1]``, bounds
inclusive as COCOeval's area ranges (an instance at exactly 0.25 or 0.5 counts in both
neighbours). The official OVIS server splits instances by per-frame *human* occlusion
labels (none / slight / severe scored 0 / 0.25 / 0.75, mean of the top half of the frames)
instead, which public OVIS annotations do not carry; mBOR is the box-based measure of the
OVIS paper that needs only the masks, so it works for any dataset.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from genvis.data import masks as mask_ops
from genvis.data.ytvis import VISDataset

#: (name, low, high) of the OVIS occlusion levels (bounds inclusive, as the official API)
OCCLUSION_LEVELS: tuple[tuple[str, float, float], ...] = (
    ("slight", 0.0, 0.25), ("moderate", 0.25, 0.5), ("heavy", 0.5, 1.0))


def box_occlusion_rates(boxes: np.ndarray) -> np.ndarray:
    """BOR of every box among the others on one frame.

    Args:
        boxes: float [N, 4] boxes ``x, y, w, h`` in pixels (w or h 0 for an absent instance).

    Returns:
        float64 [N]: ``|B_i ∩ U_{j != i} B_j| / |B_i|`` in [0, 1]; NaN for an empty box.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    out = np.full(n, np.nan)
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    real = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    out[real] = 0.0
    if real.sum() < 2:
        return out
    xs = np.unique(np.concatenate([x0[real], x1[real]]))
    ys = np.unique(np.concatenate([y0[real], y1[real]]))
    cx = (xs[:-1] + xs[1:]) / 2  # cell centres of the compressed grid
    cy = (ys[:-1] + ys[1:]) / 2
    cell = np.diff(xs)[:, None] * np.diff(ys)[None, :]
    inside = ((cx[None, :, None] > x0[real, None, None]) & (cx[None, :, None] < x1[real, None, None])
              & (cy[None, None, :] > y0[real, None, None]) & (cy[None, None, :] < y1[real, None, None]))
    count = inside.sum(0)
    covered = inside & (count[None] >= 2)  # inside box i and at least one other box
    own = (inside * cell[None]).sum((1, 2))
    out[real] = (covered * cell[None]).sum((1, 2)) / own
    return out


def track_mbor(tracks: Sequence[Sequence[dict | None]], length: int) -> np.ndarray:
    """mBOR of each of the ``N`` instances of one video.

    Args:
        tracks: per instance, one compressed RLE (or None where absent) per frame.
        length: frame count T.

    Returns:
        float64 [N], NaN for an instance annotated on no frame.
    """
    n = len(tracks)
    boxes = np.zeros((n, length, 4))
    flat = [(i, t, r) for i, tr in enumerate(tracks) for t, r in enumerate(tr) if r is not None]
    for s in range(0, len(flat), 255):
        chunk = flat[s:s + 255]
        b = np.asarray(mask_utils.toBbox([r for _, _, r in chunk]), dtype=np.float64).reshape(-1, 4)
        for (i, t, _), bb in zip(chunk, b):
            boxes[i, t] = bb
    present = (boxes[:, :, 2] > 0) & (boxes[:, :, 3] > 0)
    rates = frame_rates(boxes.transpose(1, 0, 2))  # [T, N]
    with np.errstate(invalid="ignore"):
        cnt = present.sum(1)
        tot = np.where(present, rates.T, 0.0).sum(1)
        return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def frame_rates(boxes: np.ndarray, max_elements: int = 4_000_000) -> np.ndarray:
    """:func:`box_occlusion_rates` of many frames at once (same numbers, vectorised).

    Args:
        boxes: float [T, N, 4] boxes ``x, y, w, h`` per frame (zero size where absent).
        max_elements: frames are processed in chunks of at most this many grid cells.

    Returns:
        float64 [T, N], NaN for absent boxes.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    t_len, n = boxes.shape[:2]
    out = np.full((t_len, n), np.nan)
    if n == 0 or t_len == 0:
        return out
    real = (boxes[..., 2] > 0) & (boxes[..., 3] > 0)
    b = np.where(real[..., None], boxes, 0.0)  # absent: empty box at the origin (never contains a cell)
    x0, y0 = b[..., 0], b[..., 1]
    x1, y1 = x0 + b[..., 2], y0 + b[..., 3]
    step = max(1, max_elements // max(1, n * (2 * n) ** 2))
    for s in range(0, t_len, step):
        sl = slice(s, s + step)
        xs = np.sort(np.concatenate([x0[sl], x1[sl]], 1), 1)  # [t, 2N] (repeats: zero-width cells)
        ys = np.sort(np.concatenate([y0[sl], y1[sl]], 1), 1)
        cx, cy = (xs[:, :-1] + xs[:, 1:]) / 2, (ys[:, :-1] + ys[:, 1:]) / 2
        cell = np.diff(xs, axis=1)[:, :, None] * np.diff(ys, axis=1)[:, None, :]  # [t, X, Y]
        in_x = (cx[:, None, :] > x0[sl][:, :, None]) & (cx[:, None, :] < x1[sl][:, :, None])  # [t, N, X]
        in_y = (cy[:, None, :] > y0[sl][:, :, None]) & (cy[:, None, :] < y1[sl][:, :, None])  # [t, N, Y]
        inside = in_x[:, :, :, None] & in_y[:, :, None, :]  # [t, N, X, Y]
        count = inside.sum(1)
        own = np.einsum("tnxy,txy->tn", inside.astype(np.float64), cell)
        cov = np.einsum("tnxy,txy->tn", (inside & (count[:, None] >= 2)).astype(np.float64), cell)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[sl] = np.where(real[sl], cov / own, np.nan)
    return out


def instance_mbor(gt: VISDataset, video_ids: Iterable[int] | None = None) -> dict[int, float]:
    """mBOR of every ground-truth annotation of ``gt`` (annotation id -> value in [0, 1], NaN
    when the instance has no non-empty mask); only of the videos ``video_ids`` when given.

    Raises:
        ValueError: a segmentation is malformed (callers validate the json first).
    """
    keep = None if video_ids is None else set(video_ids)
    by_video: dict[int, list] = {}
    for a in gt.annotations or []:
        if keep is not None and a.video_id not in keep:
            continue
        by_video.setdefault(a.video_id, []).append(a)
    out: dict[int, float] = {}
    for vid, anns in by_video.items():
        v = gt.video(vid)
        tracks = [[mask_ops.to_rle(s, v.height, v.width) for s in a.segmentations] for a in anns]
        for a, m in zip(anns, track_mbor(tracks, v.length).tolist()):
            out[a.id] = m
    return out


def occlusion_level(mbor: float) -> list[str]:
    """Names of the OVIS levels whose (inclusive) range holds ``mbor`` (two at exactly 0.25 or
    0.5; none for NaN)."""
    return [name for name, lo, hi in OCCLUSION_LEVELS if lo <= mbor <= hi]
