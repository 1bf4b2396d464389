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
float rounding) but fast: per-frame areas from the RLE check (or one ``pycocotools.mask.area``
pass), and one ``pycocotools.mask.iou`` call per frame for all (prediction, ground truth)
pairs present on it, instead of the official per-pair, per-frame ``merge``/``area`` loop; no
loop over pixels. With ``evaluate(..., hota=True)`` those per-frame IoUs
(:mod:`genvis.evaluate.frame_pairs`) also give the association metrics.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from genvis.data import masks as mask_ops
from genvis.data.results import VideoResult
from genvis.data.ytvis import VISDataset
from genvis.errors import InputError
from genvis.utils.forked import can_fork, map_forked

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
    #: ground-truth occlusion (mBOR) ranges evaluated after the area ranges, as OVIS's
    #: ``occRng`` (area 'all'; range index ``len(area_ranges) + i``); empty: none.
    occlusion_ranges: tuple[tuple[float, float], ...] = ()
    #: "mask" (video mask IoU) or "boundary" (min(mask, boundary) video IoU: Tube-Boundary AP)
    iou_type: str = "mask"
    #: boundary width as a share of the image diagonal (Boundary IoU; iou_type "boundary")
    boundary_dilation_ratio: float = 0.02


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
    #: int64 [K, A]: ground-truth instances not ignored, per category and range
    num_gt: np.ndarray | None = None


@dataclass
class _Inst:
    id: int
    score: float
    iscrowd: int
    avg_area: float
    rles: list  # per frame, compressed RLE or None
    areas: np.ndarray | None = None  # float64 [T] RLE pixel areas (0 where absent), when known
    occlusion: float = float("nan")  # mBOR of a ground-truth instance (genvis.evaluate.occlusion)


def _mean_nonzero(areas: Sequence[float | None]) -> float:
    vals = [a for a in areas if a]  # official: keeps entries that are truthy (non-null, non-zero)
    return float(np.array(vals).mean()) if vals else 0.0


def video_ious(dts: Sequence[_Inst], gts: Sequence[_Inst], length: int,
               dt_groups: Sequence[int] | None = None, gt_groups: Sequence[int] | None = None,
               min_iou: float | None = None) -> np.ndarray:
    """Video IoU matrix ``[len(dts), len(gts)]`` (float64): sum over frames of intersection /
    sum over frames of union (ytvoseval's ``computeIoU``).

    Per-frame areas come from ``pycocotools.mask.area`` (or the instances' cached ones); the
    intersections from one ``pycocotools.mask.iou`` call per frame covering every pair
    present on it, recovered exactly as ``rint(iou * (a_d + a_g) / (1 + iou))`` (integers),
    summed over frames; union = sum(a_d) + sum(a_g) - sum(intersection). Frames where no
    pair is present cost nothing.

    Args:
        dts, gts: instances of one video with per-frame RLEs (None where absent).
        length: the video's frame count T.
        dt_groups, gt_groups: optional labels (category ids); only pairs with equal labels
            are computed, the others are 0.
        min_iou: when set, pairs whose IoU is provably below it are not computed and reported
            as 0: the intersection is at most ``sum_t min(a_d, a_g)``, which bounds the IoU
            from above. The protocol never looks at an IoU below its lowest threshold (0.5),
            so its result is unchanged.
    """
    nd, ng = len(dts), len(gts)
    out = np.zeros((nd, ng))
    if nd == 0 or ng == 0:
        return out
    area_d = frame_areas(dts, length)
    area_g = frame_areas(gts, length)
    dg = np.zeros(nd, np.int64) if dt_groups is None else np.asarray(dt_groups)
    gg = np.zeros(ng, np.int64) if gt_groups is None else np.asarray(gt_groups)
    want = dg[:, None] == gg[None, :]
    if min_iou is not None and want.any():
        ub = np.minimum(area_d[:, None, :], area_g[None, :, :]).sum(-1)  # >= the intersection
        u_lb = area_d.sum(1)[:, None] + area_g.sum(1)[None, :] - ub  # <= the union
        want &= (ub > 0) & (ub >= min_iou * u_lb)
    # an instance takes part on frame t only if a wanted partner is present on t as well
    pres_d, pres_g = area_d > 0, area_g > 0
    both = want[:, :, None] & pres_d[:, None, :] & pres_g[None, :, :]  # [D, G, T] (no BLAS: fork-safe)
    on_d, on_g = both.any(1), both.any(0)
    inter = np.zeros((nd, ng))
    d_rles, g_rles = [d.rles for d in dts], [g.rles for g in gts]
    # one pycocotools call per frame for every wanted pair present on it (other pairs of the
    # same instances are computed too and dropped: a call costs far more than the
    # bounding-box test that rejects most of them inside it). The loop does nothing else:
    # who takes part on which frame comes from two nonzero() calls, and the intersections
    # are recovered and summed in one vectorised pass after it.
    t_d, i_d = np.nonzero(on_d.T)  # (frame, instance), sorted by frame
    t_g, i_g = np.nonzero(on_g.T)
    frames = np.intersect1d(t_d, t_g)
    if frames.size:
        lo_d, hi_d = np.searchsorted(t_d, frames, "left").tolist(), np.searchsorted(t_d, frames, "right").tolist()
        lo_g, hi_g = np.searchsorted(t_g, frames, "left").tolist(), np.searchsorted(t_g, frames, "right").tolist()
        il_d, il_g = i_d.tolist(), i_g.tolist()
        ious = []
        iou_fn = mask_utils.iou
        for k, t in enumerate(frames.tolist()):
            di, gi = il_d[lo_d[k]:hi_d[k]], il_g[lo_g[k]:hi_g[k]]
            ious.append(np.asarray(iou_fn([d_rles[i][t] for i in di], [g_rles[j][t] for j in gi],
                                          [0] * len(gi)), dtype=np.float64).ravel())
        n_d = np.asarray(hi_d) - np.asarray(lo_d)
        n_g = np.asarray(hi_g) - np.asarray(lo_g)
        per = n_d * n_g  # pairs per frame, row-major (detection, then ground truth)
        iou = np.concatenate(ious)
        if iou.size != int(per.sum()) or (iou < 0).any():
            bad = int(frames[0]) if iou.size != int(per.sum()) else int(np.repeat(frames, per)[np.argmax(iou < 0)])
            raise InputError(None, f"mask sizes of predictions and ground truth differ on frame {bad}")
        # position of each pair inside its frame's block -> (detection, ground truth) indices
        start = np.cumsum(per) - per
        local = np.arange(iou.size) - np.repeat(start, per)
        ng_rep = np.repeat(n_g, per)
        rows = i_d[np.repeat(np.asarray(lo_d), per) + local // ng_rep]
        cols = i_g[np.repeat(np.asarray(lo_g), per) + local % ng_rep]
        tts = np.repeat(frames, per)
        s = area_d[rows, tts] + area_g[cols, tts]
        inter = np.bincount(rows * ng + cols, weights=np.rint(iou * s / (1.0 + iou)),
                            minlength=nd * ng).reshape(nd, ng)
    union = area_d.sum(1)[:, None] + area_g.sum(1)[None, :] - inter
    ok = want & (union > 0)
    out[ok] = inter[ok] / union[ok]
    return out


def frame_areas(insts: Sequence[_Inst], length: int) -> np.ndarray:
    """Per-frame RLE pixel areas ``[len(insts), length]`` (float64, 0 where absent): the
    instances' cached ``areas`` where set, else one ``pycocotools.mask.area`` pass."""
    out = np.zeros((len(insts), length))
    todo = []
    for i, inst in enumerate(insts):
        cached = getattr(inst, "areas", None)  # any object with per-frame ``rles`` will do
        if cached is not None:
            out[i] = cached
        else:
            todo.extend((i, t, r) for t, r in enumerate(inst.rles) if r is not None)
    if todo:
        ii = np.fromiter((f[0] for f in todo), dtype=np.int64, count=len(todo))
        tt = np.fromiter((f[1] for f in todo), dtype=np.int64, count=len(todo))
        out[ii, tt] = mask_ops.area_array([f[2] for f in todo])
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
        start = min(thr, 1 - 1e-10)
        for di in range(nd):
            best = start
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


def _per_frame_areas(rle_lists: Sequence[Sequence[Any]]) -> list[np.ndarray]:
    """float64 [T_i] RLE areas (0 where absent) of each per-frame RLE list, one C pass over all."""
    flat = [s for segs in rle_lists for s in segs if s is not None]
    areas = mask_ops.area_array(flat)
    out, pos = [], 0
    for segs in rle_lists:
        present = np.fromiter((s is not None for s in segs), dtype=bool, count=len(segs))
        n = int(present.sum())
        a = np.zeros(len(segs))
        a[present] = areas[pos:pos + n]
        pos += n
        out.append(a)
    return out


def _check_videos(gt: VISDataset, results: Sequence[VideoResult]) -> None:
    """InputError naming the first result whose video is not in ``gt``."""
    for k, r in enumerate(results):
        if r.video_id not in gt._videos:
            raise InputError(None, f"result {k}: video_id {r.video_id} is not in the ground truth")


def _prepare(gt: VISDataset, results: Sequence[VideoResult], occlusion: dict[int, float] | None = None,
             video_ids: Iterable[int] | None = None):
    """Ground truth and predictions as :class:`_Inst` per (video id, category id), with their
    per-frame RLE areas; ``occlusion`` (annotation id -> mBOR) fills ``_Inst.occlusion``;
    only the videos ``video_ids`` when given (prediction ids stay their file positions)."""
    if gt.annotations is None:
        raise InputError(gt.path, "has no ground-truth annotations (\"annotations\": null); cannot evaluate")
    keep = None if video_ids is None else set(video_ids)
    _check_videos(gt, results)
    anns = gt.annotations if keep is None else [a for a in gt.annotations if a.video_id in keep]
    gts: dict[tuple[int, int], list[_Inst]] = defaultdict(list)
    gt_rles = []
    for a in anns:
        v = gt.video(a.video_id)
        gt_rles.append([mask_ops.to_rle(s, v.height, v.width) for s in a.segmentations])
    for a, rles, areas in zip(anns, gt_rles, _per_frame_areas(gt_rles)):
        occ = float("nan") if occlusion is None else float(occlusion.get(a.id, float("nan")))
        gts[a.video_id, a.category_id].append(
            _Inst(a.id, 0.0, int(a.iscrowd), _mean_nonzero(a.areas), rles, areas, occ))
    dts: dict[tuple[int, int], list[_Inst]] = defaultdict(list)
    mine = [(k, r) for k, r in enumerate(results) if keep is None or r.video_id in keep]
    known = [r.areas if r.areas is not None and len(r.areas) == len(r.segmentations) else None for _, r in mine]
    computed = iter(_per_frame_areas([r.segmentations for (_, r), a in zip(mine, known) if a is None]))
    for (k, r), areas in zip(mine, [next(computed) if a is None else a for a in known]):
        nz = areas[areas > 0]  # official avg_area: mean of the truthy (non-zero) areas (np.mean's sum / count)
        dts[r.video_id, r.category_id].append(
            _Inst(k + 1, float(r.score), 0, float(nz.sum() / nz.size) if nz.size else 0.0, list(r.segmentations),
                  areas))
    return gts, dts


def video_evaluations(gt: VISDataset, results: Sequence[VideoResult], params: EvalParams | None = None,
                      progress: bool = False, occlusion: dict[int, float] | None = None,
                      workers: int = 1, client: Any | None = None) -> dict[int, dict[tuple[int, int], tuple]]:
    """The per-video half of the protocol: each video's detections matched to its ground truth.

    Videos are independent until the precision/recall accumulation, so a video bootstrap
    (:mod:`genvis.evaluate.compare`) matches once and re-accumulates resampled video lists.

    Args: as :func:`evaluate_arrays`; ``workers`` > 1 splits the videos between that many
        processes (forked, POSIX only, from 32 videos on; the numbers do not change);
        ``client``: a :class:`distributed.Client` to run chunks of videos as dask tasks
        instead (``genvis evaluate --scheduler``; the numbers do not change either).

    Returns:
        video id -> {(category id, area-range index): (scores float64 [D], matched gt ids
        float [n_iou, D] (0 = unmatched), ignored detections bool [n_iou, D], ignored gt
        int64 [G])}, detections sorted by score and cut to the largest max_dets; videos
        without ground truth or detections of any category map to {}.

    Raises:
        InputError: ``gt`` has no annotations, or a result names a video not in ``gt``.
    """
    return _run_videos(gt, results, params or EvalParams(), progress, occlusion, workers, client, False)


def _run_videos(gt: VISDataset, results: Sequence[VideoResult], p: EvalParams, progress: bool,
                occlusion: dict[int, float] | None, workers: int, client: Any | None, hota: bool) -> dict:
    """:func:`video_evaluations`; with ``hota`` each video maps to (its evaluations, its
    association counts: :func:`genvis.evaluate.hota.video_counts`' value), both from one
    per-frame IoU pass (:mod:`genvis.evaluate.frame_pairs`)."""
    if p.iou_type not in ("mask", "boundary"):
        raise ValueError(f"iou_type must be 'mask' or 'boundary', got {p.iou_type!r}")
    if gt.annotations is None:
        raise InputError(gt.path, "has no ground-truth annotations (\"annotations\": null); cannot evaluate")
    _check_videos(gt, results)
    # (kind, lo, hi): area ranges, then occlusion ranges (area 'all' for those)
    ranges = [("area", lo, hi) for lo, hi in p.area_ranges] + [("occ", lo, hi) for lo, hi in p.occlusion_ranges]
    vids = sorted(gt.video_ids)
    job = (gt, results, occlusion, p, ranges, hota)
    if client is not None:
        return _evaluate_on_cluster(vids, job, client, progress)
    if can_fork(len(vids), workers):
        return map_forked(_evaluate_videos, vids, job, workers, progress)
    return _evaluate_videos(vids, job, progress)


def _evaluate_on_cluster(vids: list[int], job: tuple, client: Any, progress: bool,
                         chunk: int = 16) -> dict:
    """:func:`_evaluate_videos` as dask tasks of ``chunk`` videos each; the job (ground truth,
    results, settings) is sent to every worker once. A task's error is raised here."""
    from distributed import as_completed
    from tqdm import tqdm

    shared = client.scatter(job, broadcast=True)
    futures = [client.submit(_evaluate_videos, vids[i:i + chunk], shared, False, pure=False)
               for i in range(0, len(vids), chunk)]
    out: dict = {}
    try:
        with tqdm(total=len(vids), desc="evaluate", unit="video", disable=not progress) as bar:
            for fut in as_completed(futures):
                part = fut.result()
                out.update(part)
                bar.update(len(part))
    finally:
        client.cancel(futures)
    return dict(sorted(out.items()))


def _evaluate_videos(vids: Sequence[int], job: tuple, progress: bool) -> dict[int, dict[tuple[int, int], tuple]]:
    """Match each video's predictions to its ground truth (see :func:`video_evaluations`)."""
    from tqdm import tqdm

    gt, results, occ, p, ranges, hota = job
    if p.occlusion_ranges and occ is None:
        from genvis.evaluate.occlusion import instance_mbor

        occ = instance_mbor(gt, vids)
    gts, dts = _prepare(gt, results, occ, vids)
    cat_ids = sorted(c.id for c in gt.categories)
    min_iou = float(np.min(p.iou_thresholds))
    all_lo, all_hi = p.area_ranges[0]
    max_det = p.max_dets[-1]
    out: dict[int, dict[tuple[int, int], tuple]] = {}
    if hota:  # each video's results (file positions), as the association metrics see them
        from genvis.evaluate.frame_pairs import pair_video_ious, video_pairs
        from genvis.evaluate.hota import _one_video as video_association

        cat_set = set(cat_ids)
        positions: dict[int, list[int]] = {v: [] for v in vids}
        for k, r in enumerate(results):
            if r.video_id in positions and r.category_id in cat_set:
                positions[r.video_id].append(k)
        counts: dict[int, dict] = {}
    for vid in tqdm(vids, desc="evaluate", unit="video", disable=not progress):
        video = gt.video(vid)
        out[vid] = evals = {}
        if hota:
            anns_v = [a for a in gt.annotations_of(vid) if a.category_id in cat_set]
            dts_v = [results[k] for k in positions[vid]]
            pairs = video_pairs(video, anns_v, dts_v)
            counts[vid] = video_association(video, anns_v, dts_v, pairs)
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
        if hota and p.iou_type == "mask":  # from the association's per-frame IoUs
            row = {k: i for i, k in enumerate(positions[vid])}
            col = {a.id: j for j, a in enumerate(anns_v)}
            iou_all = pair_video_ious(pairs, [row[d.id - 1] for d in all_d], [col[g.id] for g in all_g],
                                      frame_areas(all_d, video.length), frame_areas(all_g, video.length))
        else:
            iou_all = video_ious(all_d, all_g, video.length, d_cat, g_cat, min_iou=min_iou)
        if p.iou_type == "boundary":
            from genvis.evaluate.boundary import tube_boundary_ious

            # the boundary IoU only matters where the mask IoU reaches the lowest threshold
            iou_all = tube_boundary_ious(all_d, all_g, video, iou_all, min_iou, p.boundary_dilation_ratio)
        d0 = g0 = 0
        for c in cats_here:
            dl, gl = sorted_dts[c], gts.get((vid, c), [])
            ious = iou_all[d0:d0 + len(dl), g0:g0 + len(gl)]
            d0 += len(dl)
            g0 += len(gl)
            scores = np.array([d.score for d in dl], dtype=np.float64)
            dt_area = np.array([d.avg_area for d in dl], dtype=np.float64)
            dt_ids = [d.id for d in dl]
            matched: dict[tuple[int, ...], tuple] = {}  # ignore pattern -> matching (ranges often share one)
            for ai, (kind, lo, hi) in enumerate(ranges):
                if kind == "area":
                    ign = tuple(1 if (g.iscrowd or g.avg_area < lo or g.avg_area > hi) else 0 for g in gl)
                else:  # OVIS: occlusion outside [lo, hi] (or unknown) ignores the gt; area 'all'
                    ign = tuple(1 if (g.iscrowd or g.avg_area < all_lo or g.avg_area > all_hi
                                      or not lo <= g.occlusion <= hi) else 0 for g in gl)
                    lo, hi = all_lo, all_hi
                if ign not in matched:
                    gind = np.argsort(ign, kind="mergesort")
                    g_ign = [ign[i] for i in gind]
                    matched[ign] = _match(ious[:, gind] if len(gl) else ious, g_ign,
                                          [gl[i].iscrowd for i in gind], [gl[i].id for i in gind], dt_ids,
                                          p.iou_thresholds) + (np.array(g_ign, dtype=np.int64),)
                dtm, dt_ig, g_ign_arr = matched[ign]
                out_of_range = (dt_area < lo) | (dt_area > hi)
                dt_ig = np.logical_or(dt_ig, np.logical_and(dtm == 0, out_of_range[None, :]))
                evals[c, ai] = (scores, dtm, dt_ig, g_ign_arr)
    if hota:
        return {v: (out[v], counts[v]) for v in out}
    return out


def accumulate(per_video: Sequence[dict[tuple[int, int], tuple]], category_ids: Sequence[int],
               params: EvalParams | None = None) -> EvalArrays:
    """The accumulation half: precision / recall over a list of per-video evaluations (from
    :func:`video_evaluations`; a video may appear several times, as in a bootstrap sample)
    and the 12 summary stats. COCOeval layout, as :func:`evaluate_arrays`."""
    p = params or EvalParams()
    n_t, n_r, n_k, n_a, n_m = len(p.iou_thresholds), len(p.recall_thresholds), len(category_ids), \
        len(p.area_ranges) + len(p.occlusion_ranges), len(p.max_dets)
    precision = -np.ones((n_t, n_r, n_k, n_a, n_m))
    recall = -np.ones((n_t, n_k, n_a, n_m))
    num_gt = np.zeros((n_k, n_a), dtype=np.int64)
    for ki, c in enumerate(category_ids):
        for ai in range(n_a):
            evals = [v[c, ai] for v in per_video if (c, ai) in v]
            if not evals:
                continue
            gt_ig = np.concatenate([e[3] for e in evals])
            npig = int(np.count_nonzero(gt_ig == 0))
            num_gt[ki, ai] = npig
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
    return EvalArrays(precision, recall, _summarize(precision, recall, p), list(category_ids), num_gt)


def evaluate_arrays(gt: VISDataset, results: Sequence[VideoResult],
                    params: EvalParams | None = None, progress: bool = False,
                    occlusion: dict[int, float] | None = None, workers: int = 1,
                    client: Any | None = None) -> EvalArrays:
    """Run the protocol and return COCOeval-layout precision / recall arrays and the 12 stats.

    Args:
        gt: ground truth with annotations (``results`` should be validated against it, e.g.
            by :func:`genvis.data.results.read_results` with ``gt``).
        results: predicted instances; file order breaks score ties as in the official code.
        params: protocol constants (default: the official ones).
        progress: show a tqdm progress bar over videos.
        occlusion: annotation id -> mBOR for ``params.occlusion_ranges`` (default: computed
            by :func:`genvis.evaluate.occlusion.instance_mbor`).
        workers: processes for the per-video matching (see :func:`video_evaluations`).
        client: a dask client to run the per-video matching on (see :func:`video_evaluations`).

    Raises:
        InputError: ``gt`` has no annotations, or a result names a video not in ``gt``.
    """
    per_video = video_evaluations(gt, results, params, progress, occlusion, workers, client)
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
#: occlusion-level keys (OVIS's APso / APmo / APho and the ARs at 100 detections), by mBOR
OCCLUSION_KEYS = ("APso", "APmo", "APho", "ARso", "ARmo", "ARho")
#: Tube-Boundary AP keys (VMT: AP^B, AP^B_50, AP^B_75, AR^B_1, AR^B_10)
BOUNDARY_KEYS = ("AP_B", "AP_B50", "AP_B75", "AR_B1", "AR_B10")


def _pct(x: float) -> float | None:
    return None if x < 0 else round(100.0 * float(x), 6)


def _mean_defined(a: np.ndarray) -> float:
    v = a[a > -1]
    return float(np.mean(v)) if v.size else -1.0


def evaluate(gt: VISDataset, results: Sequence[VideoResult], params: EvalParams | None = None,
             progress: bool = False, occlusion: bool = True, boundary: bool = False,
             workers: int = 1, client: Any | None = None, hota: bool = False,
             mbor: dict[int, float] | None = None) -> dict:
    """Score results against ground truth by the YouTube-VIS protocol.

    Args:
        gt: ground truth (a VIS json with annotations).
        results: predicted instances (validate with ``read_results(path, gt)`` first).
        params: protocol constants (default: official).
        progress: show a tqdm progress bar over videos.
        occlusion: also AP / AR per OVIS occlusion level by ground-truth mBOR
            (:mod:`genvis.evaluate.occlusion`; OVIS API's occRng, area 'all', 100 detections).
        boundary: also Tube-Boundary AP (VMT; :mod:`genvis.evaluate.boundary`), a second
            pass with the min(mask, boundary) video IoU.
        workers: processes for the per-video matching (forked; from 32 videos on).
        client: a :class:`distributed.Client`: the per-video matching as dask tasks instead
            (``genvis evaluate --scheduler``).
        hota: also the association metrics of :mod:`genvis.evaluate.hota` (the same numbers
            as :func:`~genvis.evaluate.hota.association_metrics`), computed in the same pass
            over the videos from the same per-frame IoUs (:mod:`genvis.evaluate.frame_pairs`).
        mbor: annotation id -> mBOR of every ground-truth instance
            (:func:`genvis.evaluate.occlusion.instance_mbor` of ``gt``) when already computed
            (``genvis evaluate`` computes it while reading the results); else computed here.

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10"}`` in percent (0-100),
        ``None`` where undefined (e.g. APl when no instance is large; the official code
        reports -1 there), plus ``"per_category_AP": {category name: AP percent or None}``
        (AP over IoU thresholds at 100 detections, all areas; None if the category has
        no ground truth) and ``"num_videos"``, ``"num_results"``. With ``occlusion``:
        ``APso, APmo, APho, ARso, ARmo, ARho`` (percent, None where a level has no
        instance) and ``"occlusion_instances": {"slight", "moderate", "heavy": count}``
        (non-crowd instances per level). With ``boundary``: ``AP_B, AP_B50, AP_B75, AR_B1,
        AR_B10`` (percent) and ``"boundary_dilation_ratio"``. With ``hota``: ``HOTA, DetA,
        AssA, LocA, IDF1, IDSW`` (class-averaged) and ``"association"`` (the whole
        :func:`~genvis.evaluate.hota.association_metrics` dict), last.

    Raises:
        InputError: ``gt`` has no annotations.
    """
    import dataclasses

    from genvis.evaluate.occlusion import OCCLUSION_LEVELS

    p = params or EvalParams()
    if occlusion and not p.occlusion_ranges:
        p = dataclasses.replace(p, occlusion_ranges=tuple((lo, hi) for _, lo, hi in OCCLUSION_LEVELS))
    cat_ids = sorted(c.id for c in gt.categories)
    if hota:
        per = _run_videos(gt, results, p, progress, mbor, workers, client, True)
        arr = accumulate([per[v][0] for v in sorted(per)], cat_ids, p)
    else:
        arr = evaluate_arrays(gt, results, p, progress, occlusion=mbor, workers=workers, client=client)
    out: dict = {k: _pct(v) for k, v in zip(METRIC_KEYS, arr.stats[[0, 1, 2, 3, 4, 5, 6, 7]])}
    if p.occlusion_ranges:
        n_a, m = len(p.area_ranges), len(p.max_dets) - 1
        levels = range(n_a, n_a + len(p.occlusion_ranges))
        aps = [_pct(_mean_defined(arr.precision[:, :, :, o, m])) for o in levels]
        ars = [_pct(_mean_defined(arr.recall[:, :, o, m])) for o in levels]
        if len(p.occlusion_ranges) == 3:
            out.update(zip(OCCLUSION_KEYS, aps + ars))
            out["occlusion_instances"] = {name: int(arr.num_gt[:, o].sum())
                                          for (name, _, _), o in zip(OCCLUSION_LEVELS, levels)}
    per_cat = {}
    for ki, cid in enumerate(arr.category_ids):
        s = arr.precision[:, :, ki, 0, -1]
        v = s[s > -1]
        per_cat[gt.category_name(cid)] = _pct(float(np.mean(v))) if v.size else None
    out["per_category_AP"] = per_cat
    if boundary:
        pb = dataclasses.replace(p, occlusion_ranges=(), iou_type="boundary")
        barr = evaluate_arrays(gt, results, pb, progress, workers=workers, client=client)
        out.update({k: _pct(v) for k, v in zip(BOUNDARY_KEYS, barr.stats[[0, 1, 2, 6, 7]])})
        out["boundary_dilation_ratio"] = pb.boundary_dilation_ratio
    out["num_videos"] = len(gt.videos)
    out["num_results"] = len(results)
    if hota:
        from genvis.evaluate.hota import ASSOC_KEYS, association_from_counts

        assoc = association_from_counts(gt, {v: per[v][1] for v in per})
        out.update({k: assoc["class_averaged"][k] for k in ASSOC_KEYS})
        out["association"] = assoc
    return out


def format_table(metrics: dict) -> str:
    """A plain-text table of the metrics (percent, 2 decimals; '-' where undefined)."""

    def fmt(v) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"

    lines = []
    for keys, title in ((METRIC_KEYS, None), (OCCLUSION_KEYS, "occlusion level (mBOR): slight [0, 0.25], "
                                                            "moderate [0.25, 0.5], heavy [0.5, 1]"),
                        (BOUNDARY_KEYS, "Tube-Boundary AP (min of mask and boundary video IoU)")):
        if title is not None and not any(k in metrics for k in keys):
            continue
        head = " | ".join(f"{k:>6}" for k in keys)
        if title is not None:
            lines += ["", title]
        lines += [head, "-" * len(head), " | ".join(f"{fmt(metrics.get(k)):>6}" for k in keys)]
    per = metrics.get("per_category_AP") or {}
    if per:
        width = max(8, *(len(n) for n in per))
        lines += ["", f"{'category':<{width}} | AP", "-" * (width + 9)]
        lines += [f"{n:<{width}} | {fmt(v):>6}" for n, v in per.items()]
    return "\n".join(lines)
