"""Per-frame mask IoU of the co-present (ground truth, prediction) pairs of one video.

Both protocols of ``genvis evaluate`` start from the same numbers: the YouTube-VIS video IoU
(:mod:`genvis.evaluate.ytvis_eval`: per pair, intersections summed over frames) and the
association metrics (:mod:`genvis.evaluate.hota`: per frame, the IoU matrix of each
category). :func:`video_pairs` computes them once per video, one ``pycocotools.mask.iou``
call per frame for every instance that has a partner of its category on that frame, so a
video scored by both protocols (``evaluate(..., hota=True)``) pays for the IoUs once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from genvis.data import masks as mask_ops
from genvis.errors import InputError


@dataclass
class VideoPairs:
    """Per-frame IoU of every same-category (ground truth, prediction) pair present together
    on a frame of one video (pairs of different categories are left out).

    Attributes:
        g_cat, d_cat: int64 [G] / [D] category ids of the ground-truth and predicted tracks.
        on_g, on_d: bool [G, T] / [D, T], the track is present (segmentation not null) on frame t.
        frame, gt, pred: int64 [E] frame, ground-truth index and prediction index of each pair,
            sorted by frame, then ground truth, then prediction.
        iou: float64 [E] mask IoU of the pair on that frame (``pycocotools.mask.iou``, 0 when
            the masks do not overlap).
    """

    g_cat: np.ndarray
    d_cat: np.ndarray
    on_g: np.ndarray
    on_d: np.ndarray
    frame: np.ndarray
    gt: np.ndarray
    pred: np.ndarray
    iou: np.ndarray


def track_rles(segs: Sequence[Any], n_t: int, h: int, w: int) -> list:
    """One compressed RLE or None per frame (``n_t`` of them) of a track: None where the
    segmentation is falsy (absent; TrackEval's test), the dict itself when it already is a
    compressed RLE, else :func:`genvis.data.masks.to_rle` (polygons, uncompressed RLE)."""
    out = [None if not s else s if type(s) is dict and len(s) == 2 and type(s.get("counts")) is str
           else mask_ops.to_rle(s, h, w) for s in list(segs)[:n_t]]
    return out + [None] * (n_t - len(out))


def video_pairs(video: Any, anns: Sequence[Any], dts: Sequence[Any]) -> VideoPairs:
    """:class:`VideoPairs` of one video.

    Args:
        video: the video record (``length``, ``height``, ``width``, ``id``).
        anns: its ground-truth tracks (``category_id``, ``segmentations``: one per frame).
        dts: its predicted tracks (same attributes), e.g. :class:`~genvis.data.results.VideoResult`.

    Raises:
        InputError: a prediction's and a ground truth's mask sizes differ on a frame.
    """
    n_t, h, w = video.length, video.height, video.width
    g_cat = np.array([a.category_id for a in anns], dtype=np.int64)
    d_cat = np.array([r.category_id for r in dts], dtype=np.int64)
    ng, nd = len(anns), len(dts)
    g_rle = [track_rles(a.segmentations, n_t, h, w) for a in anns]
    d_rle = [track_rles(r.segmentations, n_t, h, w) for r in dts]
    on_g = np.array([[x is not None for x in r] for r in g_rle], dtype=bool).reshape(ng, n_t)
    on_d = np.array([[x is not None for x in r] for r in d_rle], dtype=bool).reshape(nd, n_t)
    cats = np.unique(np.concatenate([g_cat, d_cat]))
    gk, dk = np.searchsorted(cats, g_cat), np.searchsorted(cats, d_cat)
    cnt_g = np.zeros((len(cats), n_t), np.int64)  # present tracks per (category, frame)
    cnt_d = np.zeros((len(cats), n_t), np.int64)
    np.add.at(cnt_g, gk, on_g.astype(np.int64))
    np.add.at(cnt_d, dk, on_d.astype(np.int64))
    # tracks on frames where a partner of their category is present take part in the call
    et, eg, ed, es = _frame_ious(video, g_rle, d_rle, on_g & (cnt_d[gk] > 0), on_d & (cnt_g[dk] > 0))
    same = g_cat[eg] == d_cat[ed]
    return VideoPairs(g_cat, d_cat, on_g, on_d, et[same], eg[same], ed[same], es[same])


def _frame_ious(video: Any, g_rle: list, d_rle: list, on_g: np.ndarray, on_d: np.ndarray):
    """All (gt, prediction) pairs present together (per ``on_g`` / ``on_d``) on each frame,
    one ``pycocotools.mask.iou`` call per frame; the loop only makes the calls, the indices
    come from two nonzero() calls. Returns frame, gt, prediction (int64 [E]), IoU (float64 [E])."""
    t_g, i_g = np.nonzero(on_g.T)  # (frame, track), sorted by frame
    t_d, i_d = np.nonzero(on_d.T)
    frames = np.intersect1d(t_g, t_d)
    empty = np.zeros(0, np.int64)
    if not frames.size:
        return empty, empty, empty, np.zeros(0)
    lo_g, hi_g = np.searchsorted(t_g, frames, "left"), np.searchsorted(t_g, frames, "right")
    lo_d, hi_d = np.searchsorted(t_d, frames, "left"), np.searchsorted(t_d, frames, "right")
    il_g, il_d = i_g.tolist(), i_d.tolist()
    iou_fn = mask_utils.iou
    blocks = []
    for t, a, b, c, d in zip(frames.tolist(), lo_g.tolist(), hi_g.tolist(), lo_d.tolist(), hi_d.tolist()):
        di = il_d[c:d]
        blocks.append(np.asarray(iou_fn([g_rle[i][t] for i in il_g[a:b]], [d_rle[j][t] for j in di],
                                        [0] * len(di)), dtype=np.float64).ravel())
    n_g, n_d = hi_g - lo_g, hi_d - lo_d
    per = n_g * n_d  # pairs per frame, row-major (gt, then prediction)
    iou = np.concatenate(blocks)
    tts = np.repeat(frames, per)
    if iou.size != int(per.sum()) or (iou < 0).any():
        bad = int(frames[0]) if iou.size != int(per.sum()) else int(tts[np.argmax(iou < 0)])
        raise InputError(None, f"video {video.id}: mask sizes of predictions and ground truth differ "
                         f"on frame {bad}")
    local = np.arange(iou.size) - np.repeat(np.cumsum(per) - per, per)
    nd_rep = np.repeat(n_d, per)
    rows = i_g[np.repeat(lo_g, per) + local // nd_rep]
    cols = i_d[np.repeat(lo_d, per) + local % nd_rep]
    return tts, rows, cols, iou


def pair_video_ious(pairs: VideoPairs, d_idx: Sequence[int], g_idx: Sequence[int], area_d: np.ndarray,
                    area_g: np.ndarray) -> np.ndarray:
    """YouTube-VIS video IoU ``[len(d_idx), len(g_idx)]`` (float64) from the per-frame IoUs:
    the intersection on a frame is recovered exactly as ``rint(iou * (a_d + a_g) / (1 + iou))``
    (integers), summed over frames; union = sum(a_d) + sum(a_g) - intersection; 0 for pairs of
    different categories or with an empty union (as :func:`genvis.evaluate.ytvis_eval.video_ious`).

    Args:
        pairs: the video's pairs.
        d_idx, g_idx: prediction / ground-truth indices (into the lists ``pairs`` was made
            from) of the matrix's rows / columns.
        area_d, area_g: float64 [len(d_idx), T] / [len(g_idx), T] per-frame pixel areas.
    """
    nd, ng = len(d_idx), len(g_idx)
    row_of = np.full(len(pairs.d_cat), -1)
    row_of[np.asarray(d_idx, dtype=np.int64)] = np.arange(nd)
    col_of = np.full(len(pairs.g_cat), -1)
    col_of[np.asarray(g_idx, dtype=np.int64)] = np.arange(ng)
    r, c = row_of[pairs.pred], col_of[pairs.gt]
    keep = (r >= 0) & (c >= 0)
    r, c, t, iou = r[keep], c[keep], pairs.frame[keep], pairs.iou[keep]
    s = area_d[r, t] + area_g[c, t]
    inter = np.bincount(r * ng + c, weights=np.rint(iou * s / (1.0 + iou)), minlength=nd * ng).reshape(nd, ng)
    union = area_d.sum(1)[:, None] + area_g.sum(1)[None, :] - inter
    out = np.zeros((nd, ng))
    ok = union > 0
    out[ok] = inter[ok] / union[ok]
    return out
