"""Where a video-AP gap comes from: the same models under several inter-clip associations.

A row is one method scored with one association (its own, MinVIS, or the oracle of
:mod:`genvis.infer.oracle`), given as one results json per training seed. For every row the
table gives the seed-mean video AP (YouTube-VIS protocol, :mod:`genvis.evaluate.ytvis_eval`)
and the seed-mean per-frame mask AP with identities ignored (:mod:`genvis.evaluate.frame_ap`),
over all frames and, with a horizon H, on frames 0..H-1 and H onward (H: the frames one
training sample covers, N_v x N_f, so that propagation inside and beyond the training window
can be told apart) and in consecutive frame ranges of H frames (:func:`frame_bins`: how the
per-frame AP evolves along the videos, e.g. drift of propagated queries). The video AP is
also split by kind of video (:func:`video_kinds`): videos where some category has two or
more instances -- the ones where telling instances of a category apart decides the track;
on the synthetic benchmark's distinct style all instances of a category look alike -- and
videos with at most one instance per category. Reading it:

* oracle minus own association: what association could still add to these clips;
* two methods under the oracle: how their clips (segmentation and scores) differ;
* own vs MinVIS association of one model: what its propagation does compared with
  prototype matching of the same model's clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from genvis.data.results import VideoResult
from genvis.data.ytvis import VISDataset
from genvis.errors import InputError
from genvis.evaluate.frame_ap import frame_mask_ap
from genvis.evaluate.hota import association_metrics
from genvis.evaluate.ytvis_eval import evaluate


@dataclass
class Row:
    """One table row: a label (e.g. "genvis_semi_online_ft / oracle") and its per-seed results."""

    label: str
    seeds: Sequence[Sequence[VideoResult]]


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


#: at most this many frame ranges per diagnosis (the last one runs to the end of the videos)
MAX_BINS = 8


def frame_bins(horizon: int, longest: int, max_bins: int = MAX_BINS) -> list[tuple[int, int | None]]:
    """Consecutive frame ranges of ``horizon`` frames covering videos of up to ``longest`` frames.

    Args:
        horizon: H >= 1, frames per range. longest: frames of the longest video (>= 1).
        max_bins: at most this many ranges (>= 1); the last range is open (stop None) and
            takes every frame from its start on.

    Returns:
        [(start, stop)] with stop exclusive, e.g. H = 15, longest = 45:
        [(0, 15), (15, 30), (30, None)]; longest = 46: [(0, 15), (15, 30), (30, 45), (45, None)].

    Raises:
        ValueError: horizon, longest or max_bins < 1.
    """
    if int(horizon) < 1 or int(longest) < 1 or int(max_bins) < 1:
        raise ValueError(f"need horizon, longest and max_bins >= 1, got {horizon}, {longest}, {max_bins}")
    h = int(horizon)
    n = min(-(-int(longest) // h), int(max_bins))
    return [(k * h, (k + 1) * h) for k in range(n - 1)] + [((n - 1) * h, None)]


def video_kinds(gt: VISDataset) -> dict[str, list[int]]:
    """Video ids by kind: ``"multi"``, videos whose ground truth holds two or more instances of
    one category; ``"single"``, the others (file order kept)."""
    out: dict[str, list[int]] = {"multi": [], "single": []}
    for v in gt.videos:
        cats = [a.category_id for a in gt.annotations_of(v.id)]
        out["multi" if len(cats) != len(set(cats)) else "single"].append(v.id)
    return out


def _kind_ap(gt: VISDataset, results: Sequence[VideoResult], video_ids: Sequence[int]) -> float | None:
    """Video AP (percent) on a subset of the videos and their results; None without videos."""
    if not video_ids:
        return None
    keep = set(video_ids)
    return evaluate(gt.subset(keep), [r for r in results if r.video_id in keep])["AP"]


def diagnose(gt: VISDataset, rows: Sequence[Row], horizon: int | None = None) -> dict:
    """Score every row.

    Args:
        gt: the annotated split.
        rows: the rows, each with one results list per seed (at least one).
        horizon: H >= 1 frames, or None (no split of the per-frame AP).

    Returns:
        {"horizon": H or None, "bins": [[start, stop], ...] (with a horizon: :func:`frame_bins`
        of H and the longest video, else []), "bin_videos": [videos reaching each bin],
        "rows": [{"label", "video_AP": [per seed],
        "video_AP_mean", "frame_AP": [per seed], "frame_AP_mean", "HOTA" / "AssA": [per seed,
        class-averaged, :mod:`genvis.evaluate.hota`], "HOTA_mean", "AssA_mean", and with a horizon
        "frame_AP_before", "frame_AP_after" (seed means) and "frame_AP_bins" (seed mean per
        bin), "video_AP_multi" / "video_AP_single" (seed means on the videos of
        :func:`video_kinds`)}], "kind_videos": {"multi": n, "single": n}}; APs in percent,
        None where undefined (e.g. a range without ground truth, a kind without videos).

    Raises:
        InputError: ``gt`` has no annotations, or a row has no seeds.
        ValueError: ``horizon`` < 1.
    """
    if not gt.has_annotations:
        raise InputError(getattr(gt, "path", None), "the diagnosis needs ground-truth annotations")
    if horizon is not None and int(horizon) < 1:
        raise ValueError(f"horizon must be >= 1 frame, got {horizon}")
    bins = [] if horizon is None else frame_bins(int(horizon), max(v.length for v in gt.videos))
    kinds = video_kinds(gt)
    out_rows = []
    for row in rows:
        if not row.seeds:
            raise InputError(None, f"row {row.label!r}: no results")
        video = [evaluate(gt, res)["AP"] for res in row.seeds]
        frame = [frame_mask_ap(gt, res)["AP"] for res in row.seeds]
        assoc = [association_metrics(gt, res)["class_averaged"] for res in row.seeds]
        r = {"label": row.label, "video_AP": video, "video_AP_mean": _mean(video),
             "frame_AP": frame, "frame_AP_mean": _mean(frame)}
        for k in ("HOTA", "AssA"):
            r[k] = [a[k] for a in assoc]
            r[f"{k}_mean"] = _mean(r[k])
        for kind, vids in kinds.items():
            r[f"video_AP_{kind}"] = _mean([_kind_ap(gt, res, vids) for res in row.seeds])
        if horizon is not None:
            h = int(horizon)
            per_bin = [[frame_mask_ap(gt, res, b)["AP"] for res in row.seeds] for b in bins]
            # the first range is frames 0..H-1 unless the longest video fits in H frames
            before = per_bin[0] if bins[0] == (0, h) else [frame_mask_ap(gt, res, (0, h))["AP"] for res in row.seeds]
            r["frame_AP_before"] = _mean(before)
            r["frame_AP_after"] = _mean([frame_mask_ap(gt, res, (h, None))["AP"] for res in row.seeds])
            r["frame_AP_bins"] = [_mean(v) for v in per_bin]
        out_rows.append(r)
    return {"horizon": None if horizon is None else int(horizon), "bins": [list(b) for b in bins],
            "bin_videos": [sum(v.length > start for v in gt.videos) for start, _ in bins], "rows": out_rows,
            "kind_videos": {k: len(v) for k, v in kinds.items()}}


def bin_label(start: int, stop: int | None) -> str:
    """"0-14" for frames [0, 15), "105+" for frames 105 to the end."""
    return f"{start}+" if stop is None else f"{start}-{stop - 1}"


def format_markdown(diagnosis: dict) -> str:
    """The diagnosis as markdown (one decimal; "-" where undefined): the table of rows; when it
    has frame ranges, a table of the seed-mean frame AP per range; when both kinds of video
    occur, a table of the video AP per kind."""
    def f(x):
        return "-" if x is None else f"{x:.1f}"

    h = diagnosis.get("horizon")
    head = ["method / association", "seeds", "video AP (mean)", "video AP per seed", "frame AP"]
    if h is not None:
        head += [f"frame AP, frames 0-{h - 1}", f"frame AP, frames {h}+"]
    head += ["HOTA", "AssA"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in diagnosis["rows"]:
        cells = [r["label"], str(len(r["video_AP"])), f(r["video_AP_mean"]),
                 " / ".join(f(v) for v in r["video_AP"]), f(r["frame_AP_mean"])]
        if h is not None:
            cells += [f(r["frame_AP_before"]), f(r["frame_AP_after"])]
        cells += [f(r.get("HOTA_mean")), f(r.get("AssA_mean"))]
        lines.append("| " + " | ".join(cells) + " |")
    bins = diagnosis.get("bins") or []
    if bins:
        counts = diagnosis.get("bin_videos")
        reach = "" if not counts else " (videos reaching each range: " + " / ".join(map(str, counts)) + ")"
        lines += ["", f"Frame AP by frame range, seed means{reach}:", "",
                  "| method / association | " + " | ".join(bin_label(*b) for b in bins) + " |",
                  "|" + "---|" * (len(bins) + 1)]
        lines += ["| " + " | ".join([r["label"]] + [f(v) for v in r["frame_AP_bins"]]) + " |"
                  for r in diagnosis["rows"]]
    n = diagnosis.get("kind_videos") or {}
    if n.get("multi") and n.get("single"):
        lines += ["", "Video AP by kind of video, seed means (two or more instances of one category: "
                  "telling them apart decides the tracks):", "",
                  f"| method / association | 2+ instances of a category ({n['multi']} videos) "
                  f"| one instance per category ({n['single']} videos) |", "|---|---|---|"]
        lines += [f"| {r['label']} | {f(r.get('video_AP_multi'))} | {f(r.get('video_AP_single'))} |"
                  for r in diagnosis["rows"]]
    return "\n".join(lines) + "\n"
