"""Figure of an association diagnosis (`genvis diagnose --plot`).

Two panels, one colour per method and one line style per association (rows are labelled
"method / association"; a label without " / " is its own method):

* left: video AP of every row, the seed mean as a bar (value at its start), every training
  seed as a dot;
* right: seed-mean per-frame AP (identities ignored) in consecutive frame ranges of H frames
  along the videos, with the end of the training window (frame H) marked: propagated
  queries that drift beyond the frames one training sample covers show as a falling line
  where fresh queries per clip (MinVIS, oracle association) stay level.

Input is the record of :func:`genvis.evaluate.diagnosis.diagnose`.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from genvis.evaluate.diagnosis import bin_label
from genvis.utils.io import atomic_path

_STYLES = {"own": "-", "minvis": "--", "oracle": ":"}
_OTHER_STYLES = ("-.", (0, (5, 1)), (0, (1, 3)))


def _method_and_association(label: str) -> tuple[str, str]:
    method, sep, association = label.rpartition(" / ")
    return (method, association) if sep else (label, "")


def plot_diagnosis(diagnosis: Mapping[str, Any], path: str | os.PathLike, title: str | None = None) -> list[str]:
    """Draw the two panels and save a PNG atomically (matplotlib, Agg backend).

    Args:
        diagnosis: ``rows`` (each with ``label``, ``video_AP`` per seed and ``video_AP_mean``;
            with frame ranges also ``frame_AP_bins``), ``bins`` ([start, stop or None] per
            range, may be empty: then the right panel says so), optionally ``bin_videos``
            (videos reaching each range, shown under its tick) and ``horizon`` (H or None),
            as returned by :func:`~genvis.evaluate.diagnosis.diagnose`. APs in percent,
            None where undefined (not drawn).
        path: PNG to write; nothing is written if drawing fails.
        title: figure title (default: "association diagnosis").

    Returns:
        the right panel's legend labels, in drawing order; a row whose frame-range APs
        equal an earlier row's is drawn as hollow rings over that line and labelled
        ``"<label> (= <earlier label>)"`` (otherwise its line would hide exactly under it).

    Raises:
        KeyError: ``diagnosis`` lacks ``rows`` or a row lacks one of the keys above.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(diagnosis["rows"])
    bins = [tuple(b) for b in diagnosis.get("bins") or []]
    horizon = diagnosis.get("horizon")
    methods = list(dict.fromkeys(_method_and_association(r["label"])[0] for r in rows))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    other = {}

    def style(association: str):
        if association in _STYLES:
            return _STYLES[association]
        return other.setdefault(association, _OTHER_STYLES[len(other) % len(_OTHER_STYLES)])

    fig, (left, right) = plt.subplots(1, 2, figsize=(13.0, 0.9 + 0.45 * max(len(rows), 6)), dpi=120,
                                      gridspec_kw={"width_ratios": [1, 1.5]})
    try:
        for y, r in enumerate(rows):
            method, association = _method_and_association(r["label"])
            colour = colours[method]
            mean = r["video_AP_mean"]
            if mean is not None:
                left.barh(y, mean, color=colour, alpha=0.35, height=0.6, hatch=None if style(association) == "-" else "//")
                left.annotate(f"{mean:.1f}", (0, y), xytext=(3, 0), textcoords="offset points",
                              va="center", fontsize=8, fontweight="bold",
                              bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
            seeds = [v for v in r["video_AP"] if v is not None]
            left.scatter(seeds, [y] * len(seeds), color=colour, s=14, zorder=3)
        left.set_yticks(range(len(rows)))
        left.set_yticklabels([r["label"] for r in rows], fontsize=8)
        left.invert_yaxis()
        left.set_xlabel("video AP (%)")
        left.set_title("video AP per row (bar: seed mean, dots: seeds)", fontsize=9)
        left.grid(True, axis="x", alpha=0.3)

        if bins:
            xs = list(range(len(bins)))
            drawn: dict[tuple, str] = {}   # a series already drawn -> its label
            for r in rows:
                method, association = _method_and_association(r["label"])
                pts = [(x, v) for x, v in zip(xs, r.get("frame_AP_bins") or []) if v is not None]
                if not pts:
                    continue
                same = drawn.setdefault(tuple(pts), r["label"])
                if same == r["label"]:
                    right.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3,
                               color=colours[method], linestyle=style(association), label=r["label"])
                else:  # identical numbers (e.g. a baseline's own and MinVIS association): hollow
                    # rings over the hidden line, and the legend says so
                    right.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=7, mfc="none",
                               color=colours[method], linestyle="none", label=f"{r['label']} (= {same})")
            right.set_xticks(xs)
            counts = diagnosis.get("bin_videos") or [None] * len(bins)
            right.set_xticklabels([bin_label(*b) + ("" if n is None else f"\n{n} video{'' if n == 1 else 's'}") for b, n in zip(bins, counts)],
                                  fontsize=7)
            if len(bins) > 1:
                right.axvline(0.5, color="k", lw=1, alpha=0.6)
                right.annotate(f" end of the training window (frame {horizon})", (0.5, 1.0),
                               xycoords=("data", "axes fraction"), va="top", fontsize=8)
            right.set_xlabel("frames of the videos")
            right.set_ylabel("frame AP (%), identities ignored")
            right.set_title(f"per-frame AP along the videos ({horizon}-frame ranges, seed means)", fontsize=9)
            right.grid(True, alpha=0.3)
            legend = right.get_legend_handles_labels()[1]
            if legend:
                right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        else:
            legend = []
            right.axis("off")
            right.text(0.5, 0.5, "no frame ranges (run with --horizon)", ha="center", va="center", fontsize=9)
        fig.suptitle(title or "association diagnosis", fontsize=10)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return legend
