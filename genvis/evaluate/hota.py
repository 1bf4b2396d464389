"""Association metrics of video results: HOTA / DetA / AssA / LocA, IDF1 and ID switches.

Definitions: HOTA (Luiten et al., "HOTA: A Higher Order Metric for Evaluating Multi-Object
Tracking", IJCV 2021, eqs. 1-12), the identity metrics IDF1 / IDP / IDR (Ristani et al.,
ECCV-W 2016) and the CLEAR-MOT ID switches and MOTA (Bernardin & Stiefelhagen, 2008),
computed as the official TrackEval code does for YouTube-VIS results (its ``YouTubeVIS``
dataset class with the ``HOTA``, ``Identity`` and ``CLEAR`` metrics); the GvSEG supplement's
HOTA on BURST comes from the same code. That code is not installable here; this is an
independent numpy / scipy implementation of the same computation:

* **detections**: an instance (ground truth or prediction) is present on frame ``t`` when its
  segmentation there is not null (an empty but non-null mask still counts). Every prediction
  of the results json counts, whatever its score; crowd flags and areas play no part.
* **similarity**: mask IoU of a ground-truth and a predicted mask on the same frame
  (``pycocotools.mask.iou``, one call per frame for all pairs present).
* **sequences**: every (video, category) pair is one sequence holding the ground truth and
  the predictions of that category; every category of the ground-truth json is evaluated.
* **HOTA** per sequence, for each of 19 thresholds ``alpha = 0.05, 0.10, ..., 0.95``:
  global alignment ``A(g, d) = sum_t S_t(g, d) / (n_g + n_d - sum_t S_t(g, d))`` with
  ``S_t(g, d) = IoU / (sum of g's row + sum of d's column - IoU)`` on frame ``t``; each frame
  is matched by the Hungarian algorithm maximising ``A(g, d) * IoU(g, d)``; a matched pair
  is a true positive at ``alpha`` if ``IoU >= alpha``; then
  ``DetA = TP / (TP + FN + FP)``, ``AssA = sum_TP TPA / (TPA + FNA + FPA) / TP``,
  ``LocA = mean IoU of the TPs``, ``HOTA = sqrt(DetA * AssA)``.
* **sequences combined** per category: TP / FN / FP summed, AssA / AssRe / AssPr / LocA
  averaged weighted by TP; HOTA and DetA recomputed from the sums.
* **categories combined** two ways: *class-averaged* (TrackEval's ``cls_comb_cls_av``, the
  headline YouTube-VIS / BURST number): the per-category curves averaged over categories
  with any TP, FN or FP; *detection-averaged* (``cls_comb_det_av``): counts summed over
  categories, then combined as sequences are.
* a reported scalar is the mean over the 19 alphas (TrackEval's summary), ``HOTA(0)`` /
  ``LocA(0)`` are the values at alpha = 0.05.
* **IDF1**: the bijective track matching (Hungarian over ground-truth and predicted tracks,
  a frame pair counts as a match when IoU >= 0.5) that minimises IDFN + IDFP;
  ``IDF1 = IDTP / (IDTP + (IDFN + IDFP) / 2)``.
* **IDSW / MOTA**: per frame, a Hungarian matching at IoU >= 0.5 that keeps last frame's
  pairs first; an ID switch is a ground-truth instance matched to a different prediction
  than the last time it was matched.

Per-video counts are kept apart (:func:`video_counts`) so a video bootstrap re-combines
resampled video lists without matching again (:func:`combine`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from genvis.data.results import VideoResult
from genvis.data.ytvis import VISDataset
from genvis.errors import InputError
from genvis.utils.forked import can_fork, map_forked
from genvis.evaluate.frame_pairs import VideoPairs, video_pairs

ALPHAS = np.arange(0.05, 0.99, 0.05)  # 19 localisation thresholds, as TrackEval
_EPS = np.finfo("float").eps
MATCH_IOU = 0.5  # the Identity / CLEAR matching threshold

#: metrics.json keys (percent, except IDSW: a count), in table order.
ASSOC_KEYS = ("HOTA", "DetA", "AssA", "LocA", "IDF1", "IDSW")


@dataclass
class Counts:
    """Summable raw counts of one sequence (or of several combined).

    Attributes:
        tp, fn, fp: float64 [19] HOTA true positives / misses / false positives per alpha.
        ass, ass_re, ass_pr: float64 [19] sums over true positives of the association
            IoU / recall / precision of their (ground truth, prediction) pair (AssA * TP).
        loc: float64 [19] sum of the true positives' mask IoU (LocA * TP).
        idtp, idfn, idfp: identity true positives / misses / false positives (frames).
        clr_tp, clr_fn, clr_fp, idsw: CLEAR-MOT counts at IoU 0.5 and the ID switches.
    """

    tp: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    fn: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    fp: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    ass: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    ass_re: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    ass_pr: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    loc: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    idtp: int = 0
    idfn: int = 0
    idfp: int = 0
    clr_tp: int = 0
    clr_fn: int = 0
    clr_fp: int = 0
    idsw: int = 0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tp + other.tp, self.fn + other.fn, self.fp + other.fp, self.ass + other.ass,
                      self.ass_re + other.ass_re, self.ass_pr + other.ass_pr, self.loc + other.loc,
                      self.idtp + other.idtp, self.idfn + other.idfn, self.idfp + other.idfp,
                      self.clr_tp + other.clr_tp, self.clr_fn + other.clr_fn, self.clr_fp + other.clr_fp,
                      self.idsw + other.idsw)

    @property
    def empty(self) -> bool:
        """True when the sequence(s) hold no detection at all (no TP, FN or FP at any alpha)."""
        return not bool(((self.tp + self.fn + self.fp) > _EPS).any())


def _sum(items: Iterable[Counts]) -> Counts:
    out = Counts()
    for c in items:
        out = out + c
    return out


def sequence_counts(gt_ids: Sequence[np.ndarray], pred_ids: Sequence[np.ndarray],
                    similarity: Sequence[np.ndarray]) -> Counts:
    """HOTA, identity and CLEAR counts of one sequence (one category of one video).

    Args:
        gt_ids: per frame, int64 [G_t] ids of the ground-truth instances present (any ints,
            unique within a frame).
        pred_ids: per frame, int64 [D_t] ids of the predictions present.
        similarity: per frame, float64 [G_t, D_t] mask IoU (rows in ``gt_ids`` order,
            columns in ``pred_ids`` order).

    Returns:
        :class:`Counts` of the sequence.

    Raises:
        ValueError: the three lists differ in length, a similarity has the wrong shape, or
            an id repeats within a frame.
    """
    if not len(gt_ids) == len(pred_ids) == len(similarity):
        raise ValueError("gt_ids, pred_ids and similarity need one entry per frame")
    g_frames = [np.asarray(g, dtype=np.int64).reshape(-1) for g in gt_ids]
    d_frames = [np.asarray(d, dtype=np.int64).reshape(-1) for d in pred_ids]
    sims = [np.asarray(s, dtype=np.float64).reshape(len(g), len(d)) for g, d, s in zip(g_frames, d_frames, similarity)]
    for t, (g, d) in enumerate(zip(g_frames, d_frames)):
        if len(np.unique(g)) != len(g) or len(np.unique(d)) != len(d):
            raise ValueError(f"frame {t}: an id repeats within the frame")
    # relabel ids to 0..n-1 (sorted original ids, as TrackEval)
    g_uni = np.unique(np.concatenate(g_frames)) if g_frames else np.zeros(0, np.int64)
    d_uni = np.unique(np.concatenate(d_frames)) if d_frames else np.zeros(0, np.int64)
    g_frames = [np.searchsorted(g_uni, g) for g in g_frames]
    d_frames = [np.searchsorted(d_uni, d) for d in d_frames]
    n_gdet = sum(len(g) for g in g_frames)
    n_ddet = sum(len(d) for d in d_frames)
    c = Counts()
    n_a = len(ALPHAS)
    if n_ddet == 0:
        c.fn[:] = n_gdet
        c.idfn = c.clr_fn = n_gdet
        return c
    if n_gdet == 0:
        c.fp[:] = n_ddet
        c.idfp = c.clr_fp = n_ddet
        return c
    ng, nd = len(g_uni), len(d_uni)

    # --- HOTA: global alignment, then per-frame matching ---
    potential = np.zeros((ng, nd))
    g_count = np.zeros((ng, 1))
    d_count = np.zeros((1, nd))
    id_potential = np.zeros((ng, nd))
    for g, d, s in zip(g_frames, d_frames, sims):
        denom = s.sum(0)[None, :] + s.sum(1)[:, None] - s
        sim_iou = np.zeros_like(s)
        ok = denom > 0 + _EPS
        sim_iou[ok] = s[ok] / denom[ok]
        potential[g[:, None], d[None, :]] += sim_iou
        g_count[g] += 1
        d_count[0, d] += 1
        gi, di = np.nonzero(s >= MATCH_IOU)
        id_potential[g[gi], d[di]] += 1
    align = potential / (g_count + d_count - potential)
    matches = np.zeros((n_a, ng, nd))
    a_idx = np.arange(n_a)
    prev_any = np.full(ng, -1)   # CLEAR: last matched prediction of each gt (any earlier frame)
    prev_last = np.full(ng, -1)  # CLEAR: matched prediction on the previous frame
    for g, d, s in zip(g_frames, d_frames, sims):
        if len(g) == 0:
            c.fp += len(d)
            c.clr_fp += len(d)
            continue
        if len(d) == 0:
            c.fn += len(g)
            c.clr_fn += len(g)
            continue
        rows, cols = linear_sum_assignment(-(align[g[:, None], d[None, :]] * s))
        ok = s[rows, cols][None, :] >= ALPHAS[:, None] - _EPS  # [A, M]
        n_match = ok.sum(1)
        c.tp += n_match
        c.fn += len(g) - n_match
        c.fp += len(d) - n_match
        c.loc += (ok * s[rows, cols][None, :]).sum(1)
        ai, mi = np.nonzero(ok)
        np.add.at(matches, (a_idx[ai], g[rows[mi]], d[cols[mi]]), 1)
        # CLEAR: keep last frame's pairs first (weight 1000), then maximise IoU
        score = 1000.0 * (d[None, :] == prev_last[g][:, None]) + s
        score[s < MATCH_IOU - _EPS] = 0
        r2, c2 = linear_sum_assignment(-score)
        keep = score[r2, c2] > 0 + _EPS
        mg, md = g[r2[keep]], d[c2[keep]]
        had = prev_any[mg]
        c.idsw += int(np.count_nonzero((had >= 0) & (had != md)))
        prev_any[mg] = md
        prev_last[:] = -1
        prev_last[mg] = md
        c.clr_tp += len(mg)
        c.clr_fn += len(g) - len(mg)
        c.clr_fp += len(d) - len(mg)
    c.ass, c.ass_re, c.ass_pr = _assoc_sums(matches, g_count[:, 0], d_count[0])
    c.idtp, c.idfn, c.idfp = _identity_counts(g_count[:, 0], d_count[0], id_potential)
    return c


def _assoc_sums(tpa: np.ndarray, gc: np.ndarray, dc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HOTA association sums of one sequence (HOTA paper eqs. 9-11, TrackEval's AssA / AssRe /
    AssPr numerators): ``tpa`` float64 [19, G, D] true-positive frames per alpha and pair,
    ``gc`` [G] / ``dc`` [D] frames each track is present. Returns float64 [19] x 3."""
    ass = (tpa * tpa / np.maximum(1, gc[None, :, None] + dc[None, None, :] - tpa)).sum((1, 2))
    ass_re = (tpa * tpa / np.maximum(1, gc[None, :, None])).sum((1, 2))
    ass_pr = (tpa * tpa / np.maximum(1, dc[None, None, :])).sum((1, 2))
    return ass, ass_re, ass_pr


def _identity_counts(gc: np.ndarray, dc: np.ndarray, id_potential: np.ndarray) -> tuple[int, int, int]:
    """(IDTP, IDFN, IDFP) of one sequence: the bijective track matching minimising IDFN + IDFP
    (Ristani et al. 2016, as TrackEval's Identity metric). ``gc`` [G] / ``dc`` [D] frames each
    track is present, ``id_potential`` [G, D] frames a pair has IoU >= 0.5."""
    ng, nd = len(gc), len(dc)
    n = ng + nd
    fn_mat = np.zeros((n, n))
    fp_mat = np.zeros((n, n))
    fp_mat[ng:, :nd] = 1e10
    fn_mat[:ng, nd:] = 1e10
    fn_mat[:ng, :nd] = gc[:, None]
    fn_mat[np.arange(ng), nd + np.arange(ng)] = gc
    fp_mat[:ng, :nd] = dc[None, :]
    fp_mat[ng + np.arange(nd), np.arange(nd)] = dc
    fn_mat[:ng, :nd] -= id_potential
    fp_mat[:ng, :nd] -= id_potential
    r, k = linear_sum_assignment(fn_mat + fp_mat)
    idfn = int(fn_mat[r, k].sum())
    return int(gc.sum() - idfn), idfn, int(fp_mat[r, k].sum())


def _final(c: Counts) -> dict[str, Any]:
    """Scores of summed counts (per alpha arrays for the HOTA family), fractions 0-1."""
    tp = c.tp
    det_re = tp / np.maximum(1, tp + c.fn)
    det_pr = tp / np.maximum(1, tp + c.fp)
    det_a = tp / np.maximum(1, tp + c.fn + c.fp)
    ass_a = c.ass / np.maximum(1, tp)
    out = {"HOTA": np.sqrt(det_a * ass_a), "DetA": det_a, "AssA": ass_a, "DetRe": det_re, "DetPr": det_pr,
           "AssRe": c.ass_re / np.maximum(1, tp), "AssPr": c.ass_pr / np.maximum(1, tp),
           "LocA": np.maximum(1e-10, c.loc) / np.maximum(1e-10, tp)}
    out["IDR"] = c.idtp / max(1.0, c.idtp + c.idfn)
    out["IDP"] = c.idtp / max(1.0, c.idtp + c.idfp)
    out["IDF1"] = c.idtp / max(1.0, c.idtp + 0.5 * c.idfp + 0.5 * c.idfn)
    out["MOTA"] = (c.clr_tp - c.clr_fp - c.idsw) / max(1.0, c.clr_tp + c.clr_fn)
    out["IDSW"] = c.idsw
    return out


_CURVES = ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA")
_SCALARS = ("IDF1", "IDP", "IDR", "MOTA")


def _summary(curves: dict[str, np.ndarray], scalars: dict[str, float], idsw: int) -> dict[str, Any]:
    out: dict[str, Any] = {k: round(100.0 * float(np.mean(curves[k])), 6) for k in _CURVES}
    out["HOTA(0)"] = round(100.0 * float(curves["HOTA"][0]), 6)
    out["LocA(0)"] = round(100.0 * float(curves["LocA"][0]), 6)
    out.update({k: (None if scalars[k] is None or math.isnan(scalars[k]) else round(100.0 * scalars[k], 6))
                for k in _SCALARS})
    out["IDSW"] = int(idsw)
    return out


def combine(per_video: Sequence[dict[int, Counts]], category_ids: Sequence[int]) -> dict[str, Any]:
    """Combine per-video counts (from :func:`video_counts`; a video may repeat, as in a
    bootstrap draw) over videos, then over categories.

    Returns:
        ``{"class_averaged": {...}, "det_averaged": {...}, "per_category": {category id:
        {...}}}``; each ``{...}`` holds HOTA, DetA, AssA, DetRe, DetPr, AssRe, AssPr, LocA
        (means over the 19 alphas), HOTA(0), LocA(0), IDF1, IDP, IDR, MOTA in percent and
        IDSW (a count). With no non-empty category the class average is NaN.
    """
    per_cat = {cid: _sum(v[cid] for v in per_video if cid in v) for cid in category_ids}
    finals = {cid: _final(c) for cid, c in per_cat.items()}
    cat_out = {cid: _summary(f, f, f["IDSW"]) for cid, f in finals.items()}
    used = [cid for cid in category_ids if not per_cat[cid].empty]
    id_used = [cid for cid in category_ids if per_cat[cid].idtp + per_cat[cid].idfn + per_cat[cid].idfp > 0]
    clr_used = [cid for cid in category_ids if per_cat[cid].clr_tp + per_cat[cid].clr_fn + per_cat[cid].clr_fp > 0]
    nan = np.full(len(ALPHAS), np.nan)
    curves = {k: (np.mean([finals[c][k] for c in used], axis=0) if used else nan) for k in _CURVES}
    scalars = {k: (float(np.mean([finals[c][k] for c in id_used])) if id_used else float("nan"))
               for k in ("IDF1", "IDP", "IDR")}
    scalars["MOTA"] = float(np.mean([finals[c]["MOTA"] for c in clr_used])) if clr_used else float("nan")
    cls_av = _summary(curves, scalars, sum(per_cat[c].idsw for c in clr_used))
    for k in _CURVES + ("HOTA(0)", "LocA(0)"):
        if isinstance(cls_av[k], float) and math.isnan(cls_av[k]):
            cls_av[k] = None
    tot = _final(_sum(per_cat.values()))
    return {"class_averaged": cls_av, "det_averaged": _summary(tot, tot, tot["IDSW"]), "per_category": cat_out}


_N_A = len(ALPHAS)
_INT_FIELDS = ("idtp", "idfn", "idfp", "clr_tp", "clr_fn", "clr_fp", "idsw")
_ARR_FIELDS = ("tp", "fn", "fp", "ass", "ass_re", "ass_pr", "loc")


def pack(per_video: Sequence[dict[int, Counts]], category_ids: Sequence[int]) -> np.ndarray:
    """Per-video counts as one array, for fast re-combination (video bootstrap).

    Returns:
        float64 ``[V, K, 7 * 19 + 7]``: per video (in the given order) and category, the
        per-alpha arrays tp, fn, fp, ass, ass_re, ass_pr, loc, then idtp, idfn, idfp,
        clr_tp, clr_fn, clr_fp, idsw; zeros where the category has no sequence.
    """
    out = np.zeros((len(per_video), len(category_ids), len(_ARR_FIELDS) * _N_A + len(_INT_FIELDS)))
    for vi, v in enumerate(per_video):
        for ki, cid in enumerate(category_ids):
            c = v.get(cid)
            if c is not None:
                out[vi, ki] = np.concatenate([*(getattr(c, f) for f in _ARR_FIELDS),
                                              [getattr(c, f) for f in _INT_FIELDS]])
    return out


def packed_scores(summed: np.ndarray) -> dict[str, float]:
    """Class-averaged HOTA, DetA, AssA, IDF1 (percent; NaN without a non-empty category) of
    packed counts summed over videos (``[K, F]``, e.g. ``weights @ pack(...)`` for a bootstrap
    draw); the same numbers as :func:`combine`'s ``class_averaged``."""
    k = summed.shape[0]
    arr = summed[:, : len(_ARR_FIELDS) * _N_A].reshape(k, len(_ARR_FIELDS), _N_A)
    tp, fn, fp, ass = arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]
    det_a = tp / np.maximum(1, tp + fn + fp)
    ass_a = ass / np.maximum(1, tp)
    used = ((tp + fn + fp) > _EPS).any(1)
    ints = summed[:, len(_ARR_FIELDS) * _N_A:]
    idtp, idfn, idfp = ints[:, 0], ints[:, 1], ints[:, 2]
    id_used = (idtp + idfn + idfp) > 0
    idf1 = idtp / np.maximum(1.0, idtp + 0.5 * idfp + 0.5 * idfn)
    nan = float("nan")
    return {"HOTA": 100.0 * float(np.sqrt(det_a * ass_a)[used].mean(0).mean()) if used.any() else nan,
            "DetA": 100.0 * float(det_a[used].mean(0).mean()) if used.any() else nan,
            "AssA": 100.0 * float(ass_a[used].mean(0).mean()) if used.any() else nan,
            "IDF1": 100.0 * float(idf1[id_used].mean()) if id_used.any() else nan}


def _present(seg: Any) -> bool:
    """TrackEval's test: a frame holds a detection when its segmentation is truthy."""
    return bool(seg)


def video_counts(gt: VISDataset, results: Sequence[VideoResult], workers: int = 1,
                 progress: bool = False) -> dict[int, dict[int, Counts]]:
    """Per video and category, the :class:`Counts` of that sequence.

    Args:
        gt: ground truth with annotations.
        results: predicted instances (every one counts, whatever its score).
        workers: processes for the per-video counts (forked, POSIX only, from 32 videos on;
            :mod:`genvis.utils.forked`); the numbers do not depend on it.
        progress: show a tqdm progress bar over videos.

    Returns:
        video id -> {category id -> Counts}, for every video of ``gt`` and every category
        with ground truth or predictions in that video.

    Raises:
        InputError: ``gt`` has no annotations, a result names a video not in ``gt``, or mask
            sizes of predictions and ground truth differ on a frame.
    """
    if gt.annotations is None:
        raise InputError(gt.path, "has no ground-truth annotations (\"annotations\": null); cannot evaluate")
    preds: dict[int, list[VideoResult]] = {v: [] for v in gt.video_ids}
    for k, r in enumerate(results):
        if r.video_id not in preds:
            raise InputError(None, f"result {k}: video_id {r.video_id} is not in the ground truth")
        preds[r.video_id].append(r)
    vids = sorted(gt.video_ids)
    if can_fork(len(vids), workers):
        return map_forked(_counts_of_videos, vids, (gt, preds), workers, progress)
    return _counts_of_videos(vids, (gt, preds), progress)


def _counts_of_videos(vids: Sequence[int], job: tuple, progress: bool) -> dict[int, dict[int, Counts]]:
    """:func:`video_counts` of the videos ``vids``; ``job`` = (gt, video id -> its results)."""
    from tqdm import tqdm

    gt, preds = job
    cat_ids = {c.id for c in gt.categories}
    out: dict[int, dict[int, Counts]] = {}
    for vid in tqdm(vids, desc="association", unit="video", disable=not progress):
        anns = [a for a in gt.annotations_of(vid) if a.category_id in cat_ids]
        dts = [r for r in preds[vid] if r.category_id in cat_ids]
        out[vid] = _one_video(gt.video(vid), anns, dts)
    return out


def _one_video(video: Any, anns: Sequence[Any], dts: Sequence[VideoResult],
               pairs: VideoPairs | None = None) -> dict[int, Counts]:
    """:class:`Counts` of every sequence (category) of one video: the numbers of
    :func:`sequence_counts` on each category's per-frame ids and IoUs, vectorised over frames.

    Only frames where a frame's matching is not already decided go through
    ``linear_sum_assignment``: on a frame where the pairs of positive score (HOTA: alignment
    x IoU > 0; CLEAR: IoU >= 0.5) share no ground truth and no prediction, every optimal
    assignment takes exactly those pairs (the others score 0), so they are the matching.
    ``pairs``: :func:`genvis.evaluate.frame_pairs.video_pairs` of ``anns`` / ``dts`` when
    already computed.
    """
    n_t = video.length
    p = video_pairs(video, anns, dts) if pairs is None else pairs
    g_cat, d_cat, on_g, on_d = p.g_cat, p.d_cat, p.on_g, p.on_d
    cats = sorted(set(g_cat.tolist()) | set(d_cat.tolist()))
    if not cats:
        return {}
    n_k, ng, nd = len(cats), len(anns), len(dts)
    gk = np.searchsorted(cats, g_cat)
    dk = np.searchsorted(cats, d_cat)
    gc = on_g.sum(1).astype(np.float64)  # frames each track is present
    dc = on_d.sum(1).astype(np.float64)
    cnt_g = np.zeros((n_k, n_t), np.int64)  # present instances per (category, frame)
    cnt_d = np.zeros((n_k, n_t), np.int64)
    np.add.at(cnt_g, gk, on_g.astype(np.int64))
    np.add.at(cnt_d, dk, on_d.astype(np.int64))
    n_gdet, n_ddet = cnt_g.sum(1), cnt_d.sum(1)
    et, eg, ed, es = p.frame, p.gt, p.pred, p.iou
    ek = gk[eg]
    bkey = et * n_k + ek  # one block per (frame, category): that frame's matrix of the sequence
    order = np.argsort(bkey, kind="stable")  # keeps row-major (gt, prediction) order in a block
    et, eg, ed, es, ek, bkey = et[order], eg[order], ed[order], es[order], ek[order], bkey[order]
    b_first = np.flatnonzero(np.r_[True, bkey[1:] != bkey[:-1]]) if bkey.size else np.zeros(0, np.int64)
    b_t, b_k = et[b_first], ek[b_first]
    b_ng, b_nd = cnt_g[b_k, b_t], cnt_d[b_k, b_t]
    e_blk = np.repeat(np.arange(len(b_first)), b_ng * b_nd)
    key_tg, key_td = et * ng + eg, et * nd + ed

    # --- HOTA: global alignment (sum over frames of IoU / (row + column sum - IoU)) ---
    denom = (np.bincount(key_td, weights=es, minlength=n_t * nd)[key_td]
             + np.bincount(key_tg, weights=es, minlength=n_t * ng)[key_tg] - es)
    sim = np.zeros_like(es)
    ok = denom > 0 + _EPS
    sim[ok] = es[ok] / denom[ok]
    potential = np.bincount(eg * nd + ed, weights=sim, minlength=ng * nd).reshape(ng, nd)
    with np.errstate(divide="ignore", invalid="ignore"):
        align = potential / (gc[:, None] + dc[None, :] - potential)
    score = align[eg, ed] * es
    blocks = (key_tg, key_td, b_first, b_ng, b_nd, e_blk)
    hota_m = _hota_matches(score > 0, blocks, -score)

    # --- CLEAR: pairs at IoU >= 0.5, the previous frame's pairs kept first ---
    clr_m = _clear_matches(~(es < MATCH_IOU - _EPS), blocks, b_k, es, eg, ed)
    id_pot = np.bincount((eg * nd + ed)[es >= MATCH_IOU], minlength=ng * nd).reshape(ng, nd).astype(np.float64)

    mt = hota_m
    ok = es[mt][None, :] >= ALPHAS[:, None] - _EPS  # [A, M]
    okf = ok.astype(np.float64)
    onehot = np.zeros((len(mt), n_k))
    onehot[np.arange(len(mt)), ek[mt]] = 1.0
    tp = okf @ onehot  # [A, K]
    loc = (okf * es[mt][None, :]) @ onehot
    # CLEAR matches ordered by (gt, frame): an ID switch is a gt matched to another prediction
    cg, cd, ct = eg[clr_m], ed[clr_m], et[clr_m]
    o = np.lexsort((ct, cg))
    cg, cd = cg[o], cd[o]
    sw = np.flatnonzero((cg[1:] == cg[:-1]) & (cd[1:] != cd[:-1])) + 1
    idsw = np.bincount(gk[cg[sw]], minlength=n_k)
    clr_tp = np.bincount(gk[cg], minlength=n_k)
    out: dict[int, Counts] = {}
    a_idx = np.arange(len(ALPHAS))
    for ki, cid in enumerate(cats):
        c = Counts()
        if n_ddet[ki] == 0:
            c.fn[:] = n_gdet[ki]
            c.idfn = c.clr_fn = int(n_gdet[ki])
        elif n_gdet[ki] == 0:
            c.fp[:] = n_ddet[ki]
            c.idfp = c.clr_fp = int(n_ddet[ki])
        else:
            gl = np.flatnonzero((gk == ki) & (gc > 0))  # the sequence's tracks, in id order
            dl = np.flatnonzero((dk == ki) & (dc > 0))
            c.tp = tp[:, ki].copy()
            c.fn = n_gdet[ki] - c.tp
            c.fp = n_ddet[ki] - c.tp
            c.loc = loc[:, ki].copy()
            g_loc = np.full(ng, -1)
            g_loc[gl] = np.arange(len(gl))
            d_loc = np.full(nd, -1)
            d_loc[dl] = np.arange(len(dl))
            sel = ek[mt] == ki
            ai, mi = np.nonzero(ok[:, sel])
            m_sel = mt[sel]
            matches = np.zeros((len(ALPHAS), len(gl), len(dl)))
            np.add.at(matches, (a_idx[ai], g_loc[eg[m_sel[mi]]], d_loc[ed[m_sel[mi]]]), 1)
            c.ass, c.ass_re, c.ass_pr = _assoc_sums(matches, gc[gl], dc[dl])
            c.idtp, c.idfn, c.idfp = _identity_counts(gc[gl], dc[dl], id_pot[np.ix_(gl, dl)])
            c.clr_tp = int(clr_tp[ki])
            c.clr_fn = int(n_gdet[ki]) - c.clr_tp
            c.clr_fp = int(n_ddet[ki]) - c.clr_tp
            c.idsw = int(idsw[ki])
        out[cid] = c
    return out


def _split_blocks(positive: np.ndarray, blocks: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(easy, hard) of a video's (frame, category) blocks: ``easy`` the sorted indices of the
    positive pairs of every block whose positive pairs share no ground truth on the frame
    (``key_tg``) and no prediction (``key_td``): every optimal assignment takes exactly those
    (the others score 0), so they are its matching; ``hard`` the indices of the other blocks
    (with a gt or a prediction in two positive pairs), which need ``linear_sum_assignment``.

    ``blocks`` = (key_tg, key_td, b_first, b_ng, b_nd, e_blk) as built by :func:`_one_video`.
    """
    key_tg, key_td, b_first, _, _, e_blk = blocks
    pos_idx = np.flatnonzero(positive)
    hard_blk = np.zeros(len(b_first), bool)
    for key in (key_tg, key_td):
        k = key[pos_idx]
        ks = np.sort(k)
        dup = ks[1:][ks[1:] == ks[:-1]]
        if dup.size:
            hard_blk[e_blk[pos_idx[np.isin(k, dup)]]] = True
    return pos_idx[~hard_blk[e_blk[pos_idx]]], np.flatnonzero(hard_blk)


def _hota_matches(positive: np.ndarray, blocks: tuple, cost: np.ndarray) -> np.ndarray:
    """Sorted indices (into the pair arrays) of the HOTA matching of every (frame, category)
    block: the easy blocks' positive pairs (:func:`_split_blocks`), and for each hard block
    ``linear_sum_assignment`` of its row-major [G_t, D_t] slice of ``cost`` (float64 [E], the
    negated score). The blocks are independent, so the loop only makes the calls; the pair
    indices are assembled in one vectorised pass after it."""
    easy, hard = _split_blocks(positive, blocks)
    if not hard.size:
        return easy
    _, _, b_first, b_ng, b_nd, _ = blocks
    starts, ngs, nds = b_first[hard].tolist(), b_ng[hard].tolist(), b_nd[hard].tolist()
    rows, cols = [], []
    for s, g, n in zip(starts, ngs, nds):
        r, c = linear_sum_assignment(cost[s:s + g * n].reshape(g, n))
        rows.append(r)
        cols.append(c)
    cnt = [len(r) for r in rows]
    picked = (np.repeat(np.asarray(starts, np.int64), cnt) + np.concatenate(rows) * np.repeat(np.asarray(nds), cnt)
              + np.concatenate(cols))
    return np.sort(np.concatenate([easy, picked]))


def _clear_matches(positive: np.ndarray, blocks: tuple, b_k: np.ndarray, es: np.ndarray, eg: np.ndarray,
                   ed: np.ndarray) -> np.ndarray:
    """Sorted indices (into the pair arrays) of the CLEAR matching of every (frame, category)
    block, TrackEval's: pairs at IoU >= 0.5, a pair matched on the category's previous block
    (the previous frame with both ground truth and predictions) scored 1000 higher, the
    assignment of highest total score, pairs of score 0 dropped. Easy blocks as in
    :func:`_split_blocks`; the hard ones are solved in frame order, each seeing the matches of
    its category's previous block (easy or hard)."""
    easy, hard = _split_blocks(positive, blocks)
    if not hard.size:
        return easy
    _, _, b_first, b_ng, b_nd, e_blk = blocks
    n_b = len(b_first)
    o = np.lexsort((np.arange(n_b), b_k))  # the same category's previous block
    same = b_k[o][1:] == b_k[o][:-1]
    prev_b = np.full(n_b, -1)
    prev_b[o[1:][same]] = o[:-1][same]
    easy_blk = e_blk[easy]
    eg_l, ed_l, es_l = eg.tolist(), ed.tolist(), es.tolist()
    thr = MATCH_IOU - _EPS
    solved: dict[int, tuple[list, list]] = {}  # hard block -> matched (gt ids, prediction ids)
    picked: list[int] = []
    for b, s, g, n, p in zip(hard.tolist(), b_first[hard].tolist(), b_ng[hard].tolist(), b_nd[hard].tolist(),
                             prev_b[hard].tolist()):
        sim = es[s:s + g * n].reshape(g, n)
        sc = np.where(sim < thr, 0.0, sim)  # TrackEval: 1000 x (matched before) + IoU, 0 below the threshold
        if p >= 0:
            if p in solved:
                pg, pd = solved[p]
            else:
                idx = easy[np.searchsorted(easy_blk, p, "left"):np.searchsorted(easy_blk, p, "right")].tolist()
                pg, pd = [eg_l[i] for i in idx], [ed_l[i] for i in idx]
            if pg:
                last = dict(zip(pg, pd))
                d_ids = ed_l[s:s + n]
                for i, gid in enumerate(eg_l[s:s + g * n:n]):
                    d = last.get(gid)
                    if d is not None and d in d_ids:
                        j = d_ids.index(d)
                        if not es_l[s + i * n + j] < thr:
                            sc[i, j] = 1000.0 + es_l[s + i * n + j]
        r2, c2 = linear_sum_assignment(-sc)
        # a pair scores > 0 exactly when its IoU reaches the threshold
        kept = [(r, c) for r, c in zip(r2.tolist(), c2.tolist()) if not es_l[s + r * n + c] < thr]
        solved[b] = ([eg_l[s + r * n] for r, _ in kept], [ed_l[s + c] for _, c in kept])
        picked.extend(s + r * n + c for r, c in kept)
    return np.sort(np.concatenate([easy, np.asarray(picked, np.int64)]))


def association_metrics(gt: VISDataset, results: Sequence[VideoResult], workers: int = 1,
                        progress: bool = False) -> dict[str, Any]:
    """HOTA / DetA / AssA / LocA, IDF1 and IDSW of ``results`` (TrackEval's YouTube-VIS way).

    ``workers`` / ``progress``: as :func:`video_counts`.

    Returns:
        :func:`combine`'s dict (``class_averaged``, ``det_averaged``, ``per_category`` keyed
        by category *name*), percent except IDSW.

    Raises:
        InputError: as :func:`video_counts`.
    """
    return association_from_counts(gt, video_counts(gt, results, workers, progress))


def association_from_counts(gt: VISDataset, per_video: dict[int, dict[int, Counts]]) -> dict[str, Any]:
    """:func:`association_metrics`' dict from per-video counts (:func:`video_counts`' value)."""
    out = combine([per_video[v] for v in sorted(per_video)], sorted(c.id for c in gt.categories))
    out["per_category"] = {gt.category_name(cid): v for cid, v in out["per_category"].items()}
    return out


def format_assoc_table(metrics: dict[str, Any]) -> str:
    """Plain-text table: HOTA, DetA, AssA, LocA, IDF1 (percent, 2 decimals) and IDSW, one row
    class-averaged and one detection-averaged. ``metrics`` is :func:`association_metrics`'s
    dict (or a metrics.json holding it under ``association``)."""
    assoc = metrics.get("association", metrics)
    head = f"{'':<14} | " + " | ".join(f"{k:>6}" for k in ASSOC_KEYS)
    lines = [head, "-" * len(head)]
    for label, key in (("class-averaged", "class_averaged"), ("det-averaged", "det_averaged")):
        row = assoc.get(key) or {}
        cells = []
        for k in ASSOC_KEYS:
            v = row.get(k)
            cells.append(f"{'-' if v is None else (str(v) if k == 'IDSW' else f'{v:.2f}'):>6}")
        lines.append(f"{label:<14} | " + " | ".join(cells))
    return "\n".join(lines)
