"""DAVIS 2017 J&F (region similarity J and contour accuracy F), unsupervised protocol.

As the official toolkit computes it (davisvideochallenge/davis2017-evaluation,
``davis2017/metrics.py`` and ``evaluation.py``; Pont-Tuset et al. 2017, Perazzi et al. CVPR
2016), written from that description:

* J of a frame: mask IoU of prediction and object; 1 when both are empty.
* F of a frame: boundary F-measure. Boundaries are one-pixel maps (``_seg2bmap``: a pixel
  differing from its right, lower or lower-right neighbour); each boundary is dilated by a
  disc of radius ``ceil(0.008 x image diagonal)`` pixels; precision = share of predicted
  boundary pixels within the dilated object boundary, recall = the converse; F = 2PR/(P+R)
  (P = 1, R = 0 for an empty prediction of a non-empty object; P = 0, R = 1 the other way
  round; both 1 when both are empty).
* Per object and metric over all frames: mean, recall (share of frames > 0.5) and decay
  (mean of the first quarter of the frames minus mean of the last quarter, the toolkit's
  ``round(linspace(1, T, 5) + 1e-10) - 1`` bin edges, bins sharing their edge frames).
* Unsupervised flow (our predictions have no first-frame mask): all frames; the
  predicted tracks of a sequence are painted into one id map, at most 20 by descending
  score (the higher score drawn on top where they overlap), missing proposals count as
  empty; proposals are matched to the objects by the Hungarian method
  (``scipy.optimize.linear_sum_assignment``) maximising (mean J + mean F) / 2.
* Overall: means of the per-object statistics over all objects of all sequences;
  J&F = (J mean + F mean) / 2. Reported in percent.

Differences: void pixels (label 255) do not exist in our YouTube-VIS-format ground truth;
per-object entries are keyed by the ground-truth object (annotation) id rather than by
the toolkit's assignment order.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from genvis.data import masks as mask_ops
from genvis.data.results import VideoResult
from genvis.data.ytvis import VISDataset
from genvis.errors import InputError

MAX_PROPOSALS = 20
BOUND_TH = 0.008
STAT_KEYS = ("J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay")


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel boundary maps of masks ``[..., H, W]`` (bool), the toolkit's ``_seg2bmap``."""
    seg = np.asarray(seg, dtype=bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[..., :, :-1] = seg[..., :, 1:]
    s[..., :-1, :] = seg[..., 1:, :]
    se[..., :-1, :-1] = seg[..., 1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[..., -1, :] = seg[..., -1, :] ^ e[..., -1, :]
    b[..., :, -1] = seg[..., :, -1] ^ s[..., :, -1]
    b[..., -1, -1] = False
    return b


def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return (x * x + y * y) <= r * r


def region_similarity(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """J per frame of bool ``[T, H, W]`` stacks: float64 [T] (1 where both are empty)."""
    inter = np.logical_and(gt, pred).sum((-2, -1))
    union = np.logical_or(gt, pred).sum((-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


class _Boundaries:
    """Boundary maps and their dilations of a mask stack ``[T, H, W]`` (computed once)."""

    def __init__(self, masks: np.ndarray, radius: int):
        self.b = seg2bmap(masks)
        self.n = self.b.sum((-2, -1))
        if self.n.any():
            self.dil = ndimage.binary_dilation(self.b, structure=_disk(radius)[None], border_value=0)
        else:
            self.dil = np.zeros_like(self.b)


def contour_accuracy(gt: "_Boundaries", pred: "_Boundaries") -> np.ndarray:
    """F per frame (float64 [T]) from precomputed boundaries (see the module docstring)."""
    n_fg, n_gt = pred.n.astype(np.float64), gt.n.astype(np.float64)
    fg_match = np.logical_and(pred.b, gt.dil).sum((-2, -1))
    gt_match = np.logical_and(gt.b, pred.dil).sum((-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(n_fg > 0, fg_match / np.maximum(n_fg, 1), np.where(n_gt > 0, 1.0, 1.0))
        recall = np.where(n_gt > 0, gt_match / np.maximum(n_gt, 1), 1.0)
    precision = np.where((n_fg > 0) & (n_gt == 0), 0.0, precision)
    s = precision + recall
    return np.where(s == 0, 0.0, 2 * precision * recall / np.where(s == 0, 1.0, s))


def db_statistics(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, recall = share > 0.5, decay = first-quarter mean - last-quarter mean) of per-frame values."""
    v = np.asarray(values, dtype=np.float64)
    mean = float(np.nanmean(v))
    recall = float(np.nanmean(v > 0.5))
    ids = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(np.int64)
    bins = [v[ids[i]:ids[i + 1] + 1] for i in range(4)]
    decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay


def paint_tracks(tracks: Sequence[VideoResult], length: int, height: int, width: int,
                 max_proposals: int = MAX_PROPOSALS) -> np.ndarray:
    """Id map uint8 ``[T, H, W]`` of the top ``max_proposals`` tracks by descending score
    (stable): id k+1 for the k-th; 0 background; higher scores drawn on top."""
    order = sorted(range(len(tracks)), key=lambda i: -tracks[i].score)[:max_proposals]
    ids = np.zeros((length, height, width), dtype=np.uint8)
    for rank in reversed(range(len(order))):
        r = tracks[order[rank]]
        for t, seg in enumerate(r.segmentations):
            if seg is not None:
                m = mask_ops.decode_rle(seg, height, width)
                ids[t][m] = rank + 1
    return ids


def sequence_jf(gt_masks: np.ndarray, id_map: np.ndarray, n_proposals: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame J and F of each object after the Hungarian assignment.

    Args:
        gt_masks: bool [N, T, H, W] ground-truth objects.
        id_map: uint8 [T, H, W] painted proposals 1..n_proposals (0 background).
        n_proposals: number of painted proposals.

    Returns:
        (J, F) float64 [N, T] for the objects in their order (an object left without a
        proposal gets an empty one).
    """
    n_obj, t_len, h, w = gt_masks.shape
    radius = int(math.ceil(BOUND_TH * math.hypot(h, w))) if BOUND_TH < 1 else int(BOUND_TH)
    n_res = max(n_proposals, n_obj)
    gt_b = [_Boundaries(gt_masks[i], radius) for i in range(n_obj)]
    j = np.zeros((n_res, n_obj, t_len))
    f = np.zeros((n_res, n_obj, t_len))
    for k in range(n_res):
        pred = id_map == (k + 1) if k < n_proposals else np.zeros((t_len, h, w), bool)
        pb = _Boundaries(pred, radius)
        for i in range(n_obj):
            j[k, i] = region_similarity(gt_masks[i], pred)
            f[k, i] = contour_accuracy(gt_b[i], pb)
    score = (j.mean(2) + f.mean(2)) / 2
    rows, cols = linear_sum_assignment(-score)
    out_j, out_f = np.zeros((n_obj, t_len)), np.zeros((n_obj, t_len))
    out_j[cols] = j[rows, cols]
    out_f[cols] = f[rows, cols]
    return out_j, out_f


def davis_jf(gt: VISDataset, results: Sequence[VideoResult], max_proposals: int = MAX_PROPOSALS) -> dict:
    """DAVIS 2017 unsupervised J&F of ``results`` against ``gt`` (every annotation is an object).

    Args:
        gt: ground truth (e.g. from ``genvis import-davis``); category ids are ignored.
        results: predicted tracks (validated against ``gt``).
        max_proposals: tracks painted per sequence (20 as the toolkit).

    Returns:
        ``{"J&F", "J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay"}`` in percent
        over all objects, ``"num_objects"``, ``"num_sequences"`` and ``"per_sequence": {name:
        {"J&F", "J_mean", "F_mean", "objects": {annotation id: {the six statistics}}}}``
        (name: the first folder of the video's file names, else the video id).

    Raises:
        InputError: ``gt`` has no annotations.
    """
    if gt.annotations is None:
        raise InputError(gt.path, "has no ground-truth annotations; cannot compute J&F")
    by_video = defaultdict(list)
    for a in gt.annotations:
        by_video[a.video_id].append(a)
    preds = defaultdict(list)
    for r in results:
        preds[r.video_id].append(r)
    stats_all: list[tuple[float, ...]] = []
    per_seq: dict[str, dict] = {}
    for vid in sorted(by_video):
        v = gt.video(vid)
        anns = sorted(by_video[vid], key=lambda a: a.id)
        gt_masks = np.stack([mask_ops.annotation_masks(a, v) for a in anns]).astype(bool)
        tracks = preds.get(vid, [])
        id_map = paint_tracks(tracks, v.length, v.height, v.width, max_proposals)
        jj, ff = sequence_jf(gt_masks, id_map, min(len(tracks), max_proposals))
        objects = {}
        for a, jo, fo in zip(anns, jj, ff):
            st = db_statistics(jo) + db_statistics(fo)
            stats_all.append(st)
            objects[a.id] = {k: round(100 * x, 6) for k, x in zip(STAT_KEYS, st)}
        name = v.file_names[0].split("/")[0] if v.file_names and "/" in v.file_names[0] else str(vid)
        jm = float(np.mean([o["J_mean"] for o in objects.values()]))
        fm = float(np.mean([o["F_mean"] for o in objects.values()]))
        per_seq[name] = {"J&F": round((jm + fm) / 2, 6), "J_mean": round(jm, 6), "F_mean": round(fm, 6),
                         "objects": objects}
    out: dict = {}
    if stats_all:
        arr = np.array(stats_all) * 100
        out.update({k: round(float(x), 6) for k, x in zip(STAT_KEYS, arr.mean(0))})
        out["J&F"] = round((out["J_mean"] + out["F_mean"]) / 2, 6)
    else:
        out.update({k: None for k in ("J&F",) + STAT_KEYS})
    out["num_objects"] = len(stats_all)
    out["num_sequences"] = len(per_seq)
    out["per_sequence"] = per_seq
    return out


def format_davis_table(d: dict) -> str:
    """Plain-text DAVIS table: the overall row, then J&F / J / F mean per sequence."""

    def fmt(x) -> str:
        return "-" if x is None else f"{x:.2f}"

    keys = ("J&F",) + STAT_KEYS
    head = " | ".join(f"{k:>8}" for k in keys)
    lines = ["DAVIS 2017 (unsupervised) J&F, percent", head, "-" * len(head),
             " | ".join(f"{fmt(d.get(k)):>8}" for k in keys)]
    seqs = d.get("per_sequence") or {}
    if seqs:
        width = max(8, *(len(n) for n in seqs))
        lines += ["", f"{'sequence':<{width}} |      J&F |        J |        F", "-" * (width + 33)]
        lines += [f"{n:<{width}} | {fmt(s['J&F']):>8} | {fmt(s['J_mean']):>8} | {fmt(s['F_mean']):>8}"
                  for n, s in seqs.items()]
    return "\n".join(lines)
