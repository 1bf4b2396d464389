"""Video AP / AR by the YouTube-VIS protocol (the official ``ytvoseval`` of youtubevos/cocoapi).

The official evaluation is COCO's ``COCOeval`` with the image replaced by a video:

* **video IoU** of a prediction ``d`` and a ground-truth instance ``g``:
  ``sum_t |d_t ∩ g_t| / sum_t |d_t ∪ g_t|`` over the video's frames (a frame where one of
  them is absent adds the other's area to the union only).
* per (video, category), predictions sorted by score (stable), at most 100 kept; greedy
  matching per IoU threshold in 0.50:0.05:0.95 exactly as ``COCOeval.evaluateImg``
  (a prediction takes the still-unmatched ground truth of highest IoU >= threshold,
  preferring non-ignored ones; crowd instances are ignored and may be matched repeatedly).
* size ranges use the instance's mean area over the frames where it exists: the mean of
  the json ``areas`` that are non-null and non-zero for ground truth, and of the non-zero
  RLE areas for predictions (0 when there are none); ranges all / small ``[0, 128²]`` /
  medium ``[128², 256²]`` / large ``[256², 1e10]`` (bounds inclusive, as COCOeval).
* AP = mean precision over 10 IoU thresholds x 101 recall points (COCO interpolation),
  over categories with ground truth; AR_k = mean recall with at most k predictions per
  video and category.

Our implementation computes the same numbers (integer pixel counts, so identical up to
float rounding) but fast: all per-frame areas of a video in one ``pycocotools.mask.area``
call, and one ``pycocotools.mask.iou`` call per (frame, category) for all (prediction,
ground truth) pairs present on it, instead of the official per-pair, per-frame
``merge``/``area`` loop; no loop over pixels.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from genvis.data import masks as mask_ops
from genvis.data.results import VideoResult
from genvis.data.ytvis import VISDataset
from genvis.errors import InputError

AREA_LABELS = ("all", "small", "medium", "large")


@dataclass
class EvalParams:
    """Protocol constants of the official YouTube-VIS evaluation (``ytvoseval.Params``, segm).

    Attributes:
        iou_thresholds: float64 [10], 0.50:0.05:0.95 (``np.linspace`` as COCOeval).
        recall_thresholds: float64 [101], 0:0.01:1.
        max_dets: (1, 10, 100) predictions per video and category.
        area_ranges: [[0, 1e10], [0, 128²], [128², 256²], [256², 1e10]] in pixels (mean area
            over the frames where the instance exists).
    """

    iou_thresholds: np.ndarray = field(default_factory=lambda: np.linspace(
        .5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True))
    recall_thresholds: np.ndarray = field(default_factory=lambda: np.linspace(
        .0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True))
    max_dets: tuple[int, ...] = (1, 10, 100)
    area_ranges: tuple[tuple[float, float], ...] = (
        (0.0, 1e5 ** 2), (0.0, 128.0 ** 2), (128.0 ** 2, 256.0 ** 2), (256.0 ** 2, 1e5 ** 2))


@dataclass
class EvalArrays:
    """Raw accumulation (COCOeval layout).

    Attributes:
        precision: float64 [T_iou, R, K, A, M]; -1 where undefined (no ground truth).
        recall: float64 [T_iou, K, A, M]; -1 where undefined.
        stats: float64 [12] as ``COCOeval.summarize`` (AP, AP50, AP75, APs, APm, APl,
            AR1, AR10, AR100, ARs, ARm, ARl), fractions 0-1, -1 where undefined.
        category_ids: the K json category ids (sorted).
    """

    precision: np.ndarray
    recall: np.ndarray
    stats: np.ndarray
    category_ids: list[int]


@dataclass
class _Inst:
    id: int
    score: float
    iscrowd: int
    avg_area: float
    rles: list  # per frame, compressed RLE or None


def _mean_nonzero(areas: Sequence[float | None]) -> float:
    vals = [a for a in areas if a]  # official: keeps entries that are truthy (non-null, non-zero)
    return float(np.array(vals).mean()) if vals else 0.0


def video_ious(dts: Sequence[_Inst], gts: Sequence[_Inst], length: int,
               dt_groups: Sequence[int] | None = None, gt_groups: Sequence[int] | None = None) -> np.ndarray:
    """Video IoU matrix ``[len(dts), len(gts)]`` (float64): sum over frames of intersection /
    sum over frames of union (ytvoseval's ``computeIoU``).

    Per-frame areas of every instance come from one ``pycocotools.mask.area`` call; the
    intersections from one ``pycocotools.mask.iou`` call per (frame, group) covering every
    pair present on that frame, recovered exactly as ``rint(iou * (a_d + a_g) / (1 + iou))``
    (integers), summed over frames; union = sum(a_d) + sum(a_g) - sum(intersection).
    Frames where no pair of a group is present cost nothing.

    Args:
        dts, gts: instances of one video with per-frame RLEs (None where absent).
        length: the video's frame count T.
        dt_groups, gt_groups: optional labels (category ids); only pairs with equal labels
            are computed, the others are 0.
    """
    nd, ng = len(dts), len(gts)
    out = np.zeros((nd, ng))
    if nd == 0 or ng == 0:
        return out
    area_d = np.zeros((nd, length))
    area_g = np.zeros((ng, length))
    for arr, insts in ((area_d, dts), (area_g, gts)):
        flat = [(i, t, r) for i, inst in enumerate(insts) for t, r in enumerate(inst.rles) if r is not None]
        if flat:
            ii = np.fromiter((f[0] for f in flat), dtype=np.int64, count=len(flat))
            tt = np.fromiter((f[1] for f in flat), dtype=np.int64, count=len(flat))
            arr[ii, tt] = mask_ops.area_array([f[2] for f in flat])
    dg = np.zeros(nd, np.int64) if dt_groups is None else np.asarray(dt_groups)
    gg = np.zeros(ng, np.int64) if gt_groups is None else np.asarray(gt_groups)
    on_d, on_g = area_d > 0, area_g > 0
    inter = np.zeros((nd, ng))
    for group in np.unique(dg):
        d_all, g_all = np.flatnonzero(dg == group), np.flatnonzero(gg == group)
        if len(g_all) == 0:
            continue
        for t in np.flatnonzero(on_d[d_all].any(0) & on_g[g_all].any(0)).tolist():
            di, gi = d_all[on_d[d_all, t]], g_all[on_g[g_all, t]]
            iou = np.asarray(mask_utils.iou([dts[i].rles[t] for i in di], [gts[j].rles[t] for j in gi],
                                            [0] * len(gi)), dtype=np.float64).reshape(len(di), len(gi))
            if (iou < 0).any():
                raise InputError(None, f"mask sizes of predictions and ground truth differ on frame {t}")
            s = area_d[di, t][:, None] + area_g[gi, t][None, :]
            inter[di[:, None], gi[None, :]] += np.rint(iou * s / (1.0 + iou))
    union = area_d.sum(1)[:, None] + area_g.sum(1)[None, :] - inter
    ok = (dg[:, None] == gg[None, :]) & (union > 0)
    out[ok] = inter[ok] / union[ok]
    return out


def track_ious(predicted: Sequence[Sequence[Any]], ground_truth: Sequence[Sequence[Any]], length: int) -> np.ndarray:
    """Class-agnostic video IoU ``[len(predicted), len(ground_truth)]`` (float64, in [0, 1]).

    Each track is one compressed RLE (or None where absent) per frame of a video of
    ``length`` frames; the IoU is :func:`video_ious`'s (sum of intersections over sum of
    unions over the frames), with classes ignored.

    Raises:
        InputError: masks of predictions and ground truth differ in size.
    """
    dts = [_Inst(i, 0.0, 0, 0.0, list(r)) for i, r in enumerate(predicted)]
    gts = [_Inst(i, 0.0, 0, 0.0, list(r)) for i, r in enumerate(ground_truth)]
    return video_ious(dts, gts, length)


def _match(ious: np.ndarray, gt_ignore: list[int], gt_crowd: list[int], gt_ids: list[int],
           dt_ids: list[int], thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of ``COCOeval.evaluateImg`` for one (video, category, area range).

    ``ious`` is [D, G] with predictions sorted by score and ground truth sorted with
    ignored ones last. Returns ``dtm`` [T, D] (matched gt id, 0 if none) and ``dt_ig`` [T, D].
    """
    n_t, nd, ng = len(thresholds), ious.shape[0], ious.shape[1]
    dtm = np.zeros((n_t, nd))
    dt_ig = np.zeros((n_t, nd))
    if nd == 0 or ng == 0:
        return dtm, dt_ig
    rows = ious.tolist()
    for ti, thr in enumerate(thresholds.tolist()):
        gtm = [0] * ng
        for di in range(nd):
            best = min(thr, 1 - 1e-10)
            m = -1
            row = rows[di]
            for gi in range(ng):
                if gtm[gi] > 0 and not gt_crowd[gi]:
                    continue
                if m > -1 and gt_ignore[m] == 0 and gt_ignore[gi] == 1:
                    break
                if row[gi] < best:
                    continue
                best = row[gi]
                m = gi
            if m == -1:
                continue
            dt_ig[ti, di] = gt_ignore[m]
            dtm[ti, di] = gt_ids[m]
            gtm[m] = dt_ids[di]
    return dtm, dt_ig


def _prepare(gt: VISDataset, results: Sequence[VideoResult]):
    if gt.annotations is None:
        raise InputError(gt.path, "has no ground-truth annotations (\"annotations\": null); cannot evaluate")
    gts: dict[tuple[int, int], list[_Inst]] = defaultdict(list)
    for a in gt.annotations:
        v = gt.video(a.video_id)
        rles = [mask_ops.to_rle(s, v.height, v.width) for s in a.segmentations]
        gts[a.video_id, a.category_id].append(_Inst(a.id, 0.0, int(a.iscrowd), _mean_nonzero(a.areas), rles))
    dts: dict[tuple[int, int], list[_Inst]] = defaultdict(list)
    flat = [(k, t, s) for k, r in enumerate(results) for t, s in enumerate(r.segmentations) if s is not None]
    areas = mask_ops.area_array([s for _, _, s in flat])
    per_res: list[list[float]] = [[] for _ in results]
    for (k, _, _), ar in zip(flat, areas.tolist()):
        per_res[k].append(ar)
    for k, r in enumerate(results):
        if r.video_id not in gt._videos:
            raise InputError(None, f"result {k}: video_id {r.video_id} is not in the ground truth")
        dts[r.video_id, r.category_id].append(
            _Inst(k + 1, float(r.score), 0, _mean_nonzero(per_res[k]), list(r.segmentations)))
    return gts, dts


def video_evaluations(gt: VISDataset, results: Sequence[VideoResult], params: EvalParams | None = None,
                      progress: bool = False) -> dict[int, dict[tuple[int, int], tuple]]:
    """The per-video half of the protocol: each video's detections matched to its ground truth.

    Videos are independent until the precision/recall accumulation, so a video bootstrap
    (:mod:`genvis.evaluate.compare`) matches once and re-accumulates resampled video lists.

    Args: as :func:`evaluate_arrays`.

    Returns:
        video id -> {(category id, area-range index): (scores float64 [D], matched gt ids
        float [n_iou, D] (0 = unmatched), ignored detections bool [n_iou, D], ignored gt
        int64 [G])}, detections sorted by score and cut to the largest max_dets; videos
        without ground truth or detections of any category map to {}.

    Raises:
        InputError: ``gt`` has no annotations, or a result names a video not in ``gt``.
    """
    from tqdm import tqdm

    p = params or EvalParams()
    gts, dts = _prepare(gt, results)
    cat_ids = sorted(c.id for c in gt.categories)
    max_det = p.max_dets[-1]
    out: dict[int, dict[tuple[int, int], tuple]] = {}
    for vid in tqdm(sorted(gt.video_ids), desc="evaluate", unit="video", disable=not progress):
        video = gt.video(vid)
        out[vid] = evals = {}
        cats_here = [c for c in cat_ids if gts.get((vid, c)) or dts.get((vid, c))]
        if not cats_here:
            continue
        sorted_dts = {}
        for c in cats_here:
            dl = dts.get((vid, c), [])
            order = np.argsort([-d.score for d in dl], kind="mergesort")[:max_det]
            sorted_dts[c] = [dl[i] for i in order]
        all_d = [d for c in cats_here for d in sorted_dts[c]]
        all_g = [g for c in cats_here for g in gts.get((vid, c), [])]
        d_cat = [c for c in cats_here for _ in sorted_dts[c]]
        g_cat = [c for c in cats_here for _ in gts.get((vid, c), [])]
        iou_all = video_ious(all_d, all_g, video.length, d_cat, g_cat)
        d0 = g0 = 0
        for c in cats_here:
            dl, gl = sorted_dts[c], gts.get((vid, c), [])
            ious = iou_all[d0:d0 + len(dl), g0:g0 + len(gl)]
            d0 += len(dl)
            g0 += len(gl)
            scores = np.array([d.score for d in dl], dtype=np.float64)
            dt_area = np.array([d.avg_area for d in dl], dtype=np.float64)
            dt_ids = [d.id for d in dl]
            for ai, (lo, hi) in enumerate(p.area_ranges):
                ign = [1 if (g.iscrowd or g.avg_area < lo or g.avg_area > hi) else 0 for g in gl]
                gind = np.argsort(ign, kind="mergesort")
                g_ign = [ign[i] for i in gind]
                dtm, dt_ig = _match(ious[:, gind] if len(gl) else ious, g_ign,
                                    [gl[i].iscrowd for i in gind], [gl[i].id for i in gind], dt_ids,
                                    p.iou_thresholds)
                out_of_range = (dt_area < lo) | (dt_area > hi)
                dt_ig = np.logical_or(dt_ig, np.logical_and(dtm == 0, out_of_range[None, :]))
                evals[c, ai] = (scores, dtm, dt_ig, np.array(g_ign, dtype=np.int64))
    return out


def accumulate(per_video: Sequence[dict[tuple[int, int], tuple]], category_ids: Sequence[int],
               params: EvalParams | None = None) -> EvalArrays:
    """The accumulation half: precision / recall over a list of per-video evaluations (from
    :func:`video_evaluations`; a video may appear several times, as in a bootstrap sample)
    and the 12 summary stats. COCOeval layout, as :func:`evaluate_arrays`."""
    p = params or EvalParams()
    n_t, n_r, n_k, n_a, n_m = len(p.iou_thresholds), len(p.recall_thresholds), len(category_ids), \
        len(p.area_ranges), len(p.max_dets)
    precision = -np.ones((n_t, n_r, n_k, n_a, n_m))
    recall = -np.ones((n_t, n_k, n_a, n_m))
    for ki, c in enumerate(category_ids):
        for ai in range(n_a):
            evals = [v[c, ai] for v in per_video if (c, ai) in v]
            if not evals:
                continue
            gt_ig = np.concatenate([e[3] for e in evals])
            npig = int(np.count_nonzero(gt_ig == 0))
            if npig == 0:
                continue
            for mi, md in enumerate(p.max_dets):
                sc = np.concatenate([e[0][:md] for e in evals])
                order = np.argsort(-sc, kind="mergesort")
                dtm = np.concatenate([e[1][:, :md] for e in evals], axis=1)[:, order]
                dt_ig = np.concatenate([e[2][:, :md] for e in evals], axis=1)[:, order]
                tps = np.logical_and(dtm, np.logical_not(dt_ig))
                fps = np.logical_and(np.logical_not(dtm), np.logical_not(dt_ig))
                tp_sum = np.cumsum(tps, axis=1).astype(float)
                fp_sum = np.cumsum(fps, axis=1).astype(float)
                nd = tp_sum.shape[1]
                for ti in range(n_t):
                    tp, fp = tp_sum[ti], fp_sum[ti]
                    rc = tp / npig
                    pr = tp / (fp + tp + np.spacing(1))
                    recall[ti, ki, ai, mi] = rc[-1] if nd else 0
                    # precision envelope: pr[i] = max(pr[i:]) (COCO interpolation)
                    pr = np.maximum.accumulate(pr[::-1])[::-1] if nd else pr
                    inds = np.searchsorted(rc, p.recall_thresholds, side="left")
                    q = np.zeros(n_r)
                    valid = inds < nd
                    q[valid] = pr[inds[valid]]
                    precision[ti, :, ki, ai, mi] = q
    return EvalArrays(precision, recall, _summarize(precision, recall, p), list(category_ids))


def evaluate_arrays(gt: VISDataset, results: Sequence[VideoResult],
                    params: EvalParams | None = None, progress: bool = False) -> EvalArrays:
    """Run the protocol and return COCOeval-layout precision / recall arrays and the 12 stats.

    Args:
        gt: ground truth with annotations (``results`` should be validated against it, e.g.
            by :func:`genvis.data.results.read_results` with ``gt``).
        results: predicted instances; file order breaks score ties as in the official code.
        params: protocol constants (default: the official ones).
        progress: show a tqdm progress bar over videos.

    Raises:
        InputError: ``gt`` has no annotations, or a result names a video not in ``gt``.
    """
    per_video = video_evaluations(gt, results, params, progress)
    return accumulate([per_video[v] for v in sorted(per_video)], sorted(c.id for c in gt.categories), params)


def _summarize(precision: np.ndarray, recall: np.ndarray, p: EvalParams) -> np.ndarray:
    def one(ap: bool, iou_thr: float | None = None, area: str = "all", max_dets: int = 100) -> float:
        a = AREA_LABELS.index(area)
        m = list(p.max_dets).index(max_dets)
        if ap:
            s = precision
            if iou_thr is not None:
                s = s[np.where(iou_thr == p.iou_thresholds)[0]]
            s = s[:, :, :, a, m]
        else:
            s = recall
            if iou_thr is not None:
                s = s[np.where(iou_thr == p.iou_thresholds)[0]]
            s = s[:, :, a, m]
        v = s[s > -1]
        return float(np.mean(v)) if v.size else -1.0

    md = p.max_dets
    return np.array([
        one(True, None, "all", md[2]), one(True, .5, "all", md[2]), one(True, .75, "all", md[2]),
        one(True, None, "small", md[2]), one(True, None, "medium", md[2]), one(True, None, "large", md[2]),
        one(False, None, "all", md[0]), one(False, None, "all", md[1]), one(False, None, "all", md[2]),
        one(False, None, "small", md[2]), one(False, None, "medium", md[2]), one(False, None, "large", md[2]),
    ])


METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10")


def _pct(x: float) -> float | None:
    return None if x < 0 else round(100.0 * float(x), 6)


def evaluate(gt: VISDataset, results: Sequence[VideoResult], params: EvalParams | None = None,
             progress: bool = False) -> dict:
    """Score results against ground truth by the YouTube-VIS protocol.

    Args:
        gt: ground truth (a VIS json with annotations).
        results: predicted instances (validate with ``read_results(path, gt)`` first).
        params: protocol constants (default: official).
        progress: show a tqdm progress bar over videos.

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10"}`` in percent (0-100),
        ``None`` where undefined (e.g. APl when no instance is large; the official code
        reports -1 there), plus ``"per_category_AP": {category name: AP percent or None}``
        (AP over IoU thresholds at 100 detections, all areas; None if the category has
        no ground truth) and ``"num_videos"``, ``"num_results"``.

    Raises:
        InputError: ``gt`` has no annotations.
    """
    arr = evaluate_arrays(gt, results, params, progress)
    out: dict = {k: _pct(v) for k, v in zip(METRIC_KEYS, arr.stats[[0, 1, 2, 3, 4, 5, 6, 7]])}
    per_cat = {}
    for ki, cid in enumerate(arr.category_ids):
        s = arr.precision[:, :, ki, 0, -1]
        v = s[s > -1]
        per_cat[gt.category_name(cid)] = _pct(float(np.mean(v))) if v.size else None
    out["per_category_AP"] = per_cat
    out["num_videos"] = len(gt.videos)
    out["num_results"] = len(results)
    return out


def format_table(metrics: dict) -> str:
    """A plain-text table of the metrics (percent, 2 decimals; '-' where undefined)."""

    def fmt(v) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"

    head = " | ".join(f"{k:>6}" for k in METRIC_KEYS)
    row = " | ".join(f"{fmt(metrics.get(k)):>6}" for k in METRIC_KEYS)
    lines = [head, "-" * len(head), row]
    per = metrics.get("per_category_AP") or {}
    if per:
        width = max(8, *(len(n) for n in per))
        lines += ["", f"{'category':<{width}} | AP", "-" * (width + 9)]
        lines += [f"{n:<{width}} | {fmt(v):>6}" for n, v in per.items()]
    return "\n".join(lines)
