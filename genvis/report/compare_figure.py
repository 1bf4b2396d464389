"""Figure of a seed-replicated comparison (`genvis compare --plot`).

Two panels, so that a reader sees at once whether a difference of seed means is larger
than the seed-to-seed spread and than the uncertainty from the choice of valid videos:

* left: video AP of every training seed of method A and of method B (dots; a line joins
  seed i of A to seed i of B when both have it), with each method's seed mean as a bar;
* right: histogram of the paired video-bootstrap differences (A - B), with 0, the
  observed difference and the 95% interval marked.

Input is the record of :func:`genvis.evaluate.compare.paired_bootstrap`.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

from genvis.utils.io import atomic_path


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(float(v))]


def plot_comparison(record: Mapping[str, Any], path: str | os.PathLike, label_a: str = "A",
                    label_b: str = "B", title: str | None = None) -> None:
    """Draw the two panels and save a PNG atomically (matplotlib, Agg backend).

    Args:
        record: ``a_ap``, ``b_ap`` (per-seed video AP, percent; None/NaN = undefined),
            ``a_mean``, ``b_mean``, ``diff``, ``ci95``, ``p_a_better``, ``num_videos`` and
            ``draws`` (bootstrap differences, AP points), as returned by
            :func:`~genvis.evaluate.compare.paired_bootstrap`.
        path: PNG to write; nothing is written if drawing fails.
        label_a, label_b: method names for the axis and the title.
        title: figure title (default: "<label_a> vs <label_b>").

    Raises:
        KeyError: ``record`` lacks one of the keys above.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a_ap, b_ap = list(record["a_ap"]), list(record["b_ap"])
    draws = _finite(record["draws"])
    lo, hi = record["ci95"]
    diff = record["diff"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.8), dpi=120,
                                      gridspec_kw={"width_ratios": [1, 1.4]})
    try:
        for i in range(min(len(a_ap), len(b_ap))):
            if a_ap[i] is not None and b_ap[i] is not None:
                left.plot([0, 1], [b_ap[i], a_ap[i]], color="0.75", lw=1, zorder=1)
        for x, values, mean, colour in ((0, b_ap, record["b_mean"], "tab:gray"),
                                        (1, a_ap, record["a_mean"], "tab:blue")):
            ys = _finite(values)
            left.scatter([x] * len(ys), ys, color=colour, zorder=2, s=22)
            if mean is not None and not math.isnan(float(mean)):
                left.plot([x - 0.18, x + 0.18], [mean, mean], color=colour, lw=3, zorder=3)
                left.annotate(f"{mean:.2f}", (x + 0.2, mean), va="center", fontsize=8)
        left.set_xticks([0, 1])
        left.set_xticklabels([f"B: {label_b}\n({len(_finite(b_ap))} seeds)", f"A: {label_a}\n({len(_finite(a_ap))} seeds)"],
                             fontsize=8)
        left.set_xlim(-0.5, 1.6)
        left.set_ylabel("video AP (%)")
        left.set_title("per training seed (bar: mean)", fontsize=9)
        left.grid(True, axis="y", alpha=0.3)

        if draws:
            right.hist(draws, bins=min(40, max(5, len(draws) // 20)), color="tab:blue", alpha=0.6)
        if lo is not None and hi is not None:
            right.axvspan(lo, hi, color="tab:orange", alpha=0.15, label=f"95% interval [{lo:+.2f}, {hi:+.2f}]")
        right.axvline(0.0, color="k", lw=1)
        if diff is not None and not math.isnan(float(diff)):
            right.axvline(diff, color="tab:red", lw=2, label=f"observed {diff:+.2f}")
        p = record.get("p_a_better")
        ahead = "" if p is None else f"\nA ahead in {100 * p:.0f}% of draws"
        right.set_title(f"paired bootstrap over the {record['num_videos']} videos{ahead}", fontsize=9)
        right.set_xlabel("A - B: difference of seed-mean video AP (points)")
        right.set_ylabel("draws")
        if right.get_legend_handles_labels()[0]:
            right.legend(fontsize=8, loc="upper left")
        fig.suptitle(title or f"A = {label_a}  vs  B = {label_b}", fontsize=10)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
