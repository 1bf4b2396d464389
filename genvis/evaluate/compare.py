"""Seed-replicated comparison of two methods with a paired video bootstrap.

On a valid split of a few dozen videos one training run is not a measurement: on the
synthetic benchmark five seeds of one method spread over 3.6 video AP. This module scores
method A (one results file per training seed) against method B (the same) on the same
ground truth and asks how much of the difference of their seed-mean AP survives
resampling the videos:

* per-seed video AP of every results file (the YouTube-VIS protocol of
  :mod:`genvis.evaluate.ytvis_eval`);
* ``diff = mean_s AP(A_s) - mean_s AP(B_s)``;
* a paired bootstrap over videos: draw the valid videos with replacement (the same draw
  for every file), re-accumulate each file's AP over the drawn videos, and record the
  difference of the seed means. The per-video matching is done once
  (:func:`~genvis.evaluate.ytvis_eval.video_evaluations`); each draw only re-accumulates.

The same draws also give the association metrics (:mod:`genvis.evaluate.hota`): per-seed
class-averaged HOTA and AssA, their seed-mean difference and its interval (``assoc``).

The interval covers the uncertainty from which videos are in the split, for these seeds;
the seed-to-seed spread is reported next to it, not folded into it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from genvis.data.results import VideoResult
from genvis.data.ytvis import VISDataset
from genvis.errors import ConfigError
from genvis.evaluate.hota import pack, packed_scores, video_counts
from genvis.evaluate.ytvis_eval import EvalParams, accumulate, video_evaluations

#: association metrics compared beside AP
ASSOC_COMPARED = ("HOTA", "AssA")


def _ap(per_video: list[dict], category_ids: list[int], params: EvalParams) -> float:
    ap = float(accumulate(per_video, category_ids, params).stats[0])
    return float("nan") if ap < 0 else 100.0 * ap


def paired_bootstrap(gt: VISDataset, a: Sequence[Sequence[VideoResult]], b: Sequence[Sequence[VideoResult]],
                     n_boot: int = 1000, seed: int = 0, params: EvalParams | None = None,
                     progress: bool = False) -> dict:
    """Compare methods A and B, each given as one results list per training seed.

    Args:
        gt: ground truth with annotations.
        a, b: results of method A and of method B, one list of :class:`VideoResult` per
            seed (validated against ``gt``, e.g. by ``read_results(path, gt)``). Seeds need
            not be paired; the videos are.
        n_boot: bootstrap draws (>= 1; 1,000 gives the 2.5/97.5 percentiles to about
            +-0.1 AP on 32 videos).
        seed: seed of the video draws.
        params: protocol constants (default: official).
        progress: tqdm bars over the files and the draws.

    Returns:
        ``{"a_ap": [per-seed video AP, percent], "b_ap": [...], "a_mean", "b_mean",
        "diff": a_mean - b_mean, "ci95": [2.5th, 97.5th percentile of the bootstrap
        diff], "p_a_better": fraction of draws with diff > 0, "n_boot", "num_videos",
        "seed", "draws": [the n_boot bootstrap differences, AP points], "assoc": {metric:
        {"a", "b" (per seed), "a_mean", "b_mean", "diff", "ci95", "p_a_better"}} for HOTA and
        AssA over the same draws}``. AP is NaN (null in json) for a draw without any unignored
        ground truth.

    Raises:
        ConfigError: A or B has no results file, or n_boot < 1.
        InputError: ``gt`` has no annotations, or a result names a video not in ``gt``.
    """
    from tqdm import tqdm

    if not a or not b:
        raise ConfigError("compare", "each method needs at least one results file (one per seed)")
    if int(n_boot) < 1:
        raise ConfigError("--bootstrap", f"must be >= 1, got {n_boot}")
    p = params or EvalParams()
    cats = sorted(c.id for c in gt.categories)
    vids = sorted(gt.video_ids)
    files = [*a, *b]
    matched = [video_evaluations(gt, r, p) for r in tqdm(files, desc="match", unit="file", disable=not progress)]
    full = [_ap([m[v] for v in vids], cats, p) for m in matched]
    counts = [pack([c[v] for v in vids], cats) for c in (video_counts(gt, r) for r in files)]  # [V, K, F] each
    full_assoc = [packed_scores(c.sum(0)) for c in counts]
    na = len(a)
    a_ap, b_ap = full[:na], full[na:]
    rng = np.random.default_rng(seed)
    diffs = np.empty(int(n_boot))
    assoc_diffs = {k: np.empty(int(n_boot)) for k in ASSOC_COMPARED}
    for i in tqdm(range(int(n_boot)), desc="bootstrap", unit="draw", disable=not progress):
        idx = rng.integers(len(vids), size=len(vids))
        draw = [vids[j] for j in idx]
        aps = [_ap([m[v] for v in draw], cats, p) for m in matched]
        diffs[i] = np.mean(aps[:na]) - np.mean(aps[na:])
        weights = np.bincount(idx, minlength=len(vids)).astype(np.float64)
        scores = [packed_scores(np.tensordot(weights, c, axes=1)) for c in counts]
        for k in ASSOC_COMPARED:
            vals = [s_[k] for s_ in scores]
            assoc_diffs[k][i] = np.mean(vals[:na]) - np.mean(vals[na:])
    finite = diffs[~np.isnan(diffs)]
    lo, hi = np.percentile(finite, [2.5, 97.5]) if finite.size else (float("nan"), float("nan"))
    p_a_better = float(np.mean(finite > 0)) if finite.size else float("nan")
    assoc = {}
    for k in ASSOC_COMPARED:
        fa, fb = [s_[k] for s_ in full_assoc[:na]], [s_[k] for s_ in full_assoc[na:]]
        d = assoc_diffs[k][~np.isnan(assoc_diffs[k])]
        ci = [float(x) for x in np.percentile(d, [2.5, 97.5])] if d.size else [float("nan")] * 2
        assoc[k] = {"a": fa, "b": fb, "a_mean": float(np.mean(fa)), "b_mean": float(np.mean(fb)),
                    "diff": float(np.mean(fa) - np.mean(fb)), "ci95": ci,
                    "p_a_better": float(np.mean(d > 0)) if d.size else float("nan")}
    return {"a_ap": a_ap, "b_ap": b_ap, "a_mean": float(np.mean(a_ap)), "b_mean": float(np.mean(b_ap)),
            "diff": float(np.mean(a_ap) - np.mean(b_ap)), "ci95": [float(lo), float(hi)],
            "p_a_better": p_a_better, "n_boot": int(n_boot),
            "num_videos": len(vids), "seed": int(seed), "draws": [float(d) for d in diffs],
            "assoc": assoc}
