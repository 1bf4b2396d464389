"""Where a video-AP gap comes from: the same models under several inter-clip associations.

A row is one method scored with one association (its own, MinVIS, or the oracle of
:mod:`genvis.infer.oracle`), given as one results json per training seed. For every row the
table gives the seed-mean video AP (YouTube-VIS protocol, :mod:`genvis.evaluate.ytvis_eval`)
and the seed-mean per-frame mask AP with identities ignored (:mod:`genvis.evaluate.frame_ap`),
over all frames and, with a horizon H, on frames 0..H-1 and H onward (H: the frames one
training sample covers, N_v x N_f, so that propagation inside and beyond the training window
can be told apart). Reading it:

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
from genvis.evaluate.ytvis_eval import evaluate


@dataclass
class Row:
    """One table row: a label (e.g. "genvis_semi_online_ft / oracle") and its per-seed results."""

    label: str
    seeds: Sequence[Sequence[VideoResult]]


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def diagnose(gt: VISDataset, rows: Sequence[Row], horizon: int | None = None) -> dict:
    """Score every row.

    Args:
        gt: the annotated split.
        rows: the rows, each with one results list per seed (at least one).
        horizon: H >= 1 frames, or None (no split of the per-frame AP).

    Returns:
        {"horizon": H or None, "rows": [{"label", "video_AP": [per seed], "video_AP_mean",
        "frame_AP": [per seed], "frame_AP_mean", and with a horizon "frame_AP_before",
        "frame_AP_after" (seed means)}]}; APs in percent, None where undefined.

    Raises:
        InputError: ``gt`` has no annotations, or a row has no seeds.
        ValueError: ``horizon`` < 1.
    """
    if not gt.has_annotations:
        raise InputError(getattr(gt, "path", None), "the diagnosis needs ground-truth annotations")
    if horizon is not None and int(horizon) < 1:
        raise ValueError(f"horizon must be >= 1 frame, got {horizon}")
    out_rows = []
    for row in rows:
        if not row.seeds:
            raise InputError(None, f"row {row.label!r}: no results")
        video = [evaluate(gt, res)["AP"] for res in row.seeds]
        frame = [frame_mask_ap(gt, res)["AP"] for res in row.seeds]
        r = {"label": row.label, "video_AP": video, "video_AP_mean": _mean(video),
             "frame_AP": frame, "frame_AP_mean": _mean(frame)}
        if horizon is not None:
            r["frame_AP_before"] = _mean([frame_mask_ap(gt, res, (0, int(horizon)))["AP"] for res in row.seeds])
            r["frame_AP_after"] = _mean([frame_mask_ap(gt, res, (int(horizon), None))["AP"] for res in row.seeds])
        out_rows.append(r)
    return {"horizon": None if horizon is None else int(horizon), "rows": out_rows}


def format_markdown(diagnosis: dict) -> str:
    """The diagnosis as a markdown table (one decimal; "-" where undefined)."""
    def f(x):
        return "-" if x is None else f"{x:.1f}"

    h = diagnosis.get("horizon")
    head = ["method / association", "seeds", "video AP (mean)", "video AP per seed", "frame AP"]
    if h is not None:
        head += [f"frame AP, frames 0-{h - 1}", f"frame AP, frames {h}+"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in diagnosis["rows"]:
        cells = [r["label"], str(len(r["video_AP"])), f(r["video_AP_mean"]),
                 " / ".join(f(v) for v in r["video_AP"]), f(r["frame_AP_mean"])]
        if h is not None:
            cells += [f(r["frame_AP_before"]), f(r["frame_AP_after"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
