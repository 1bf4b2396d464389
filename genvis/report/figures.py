"""Metric-against-x figures, e.g. Fig. 3: AP against N_f^eval for online and semi-online models.

The data of a figure is also written as a table (one row per x, one column per series) so
the numbers behind the plot are readable in markdown and CSV.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from genvis.report.metrics import load_metrics, metric_value
from genvis.report.spec import FigureSpec
from genvis.report.tables import Table
from genvis.utils.io import atomic_path


@dataclass(frozen=True)
class Series:
    """One line of a figure: x values (increasing) and the metric at each (percent)."""

    label: str
    x: list[float]
    y: list[float]


def build_series(spec: FigureSpec) -> list[Series]:
    """Read the metric of every point of every series.

    Raises:
        InputError: a metrics file is missing or malformed, or lacks ``spec.metric``.
    """
    out = []
    for s in spec.series:
        xs, ys = [], []
        for x, path in s.points:
            xs.append(x)
            ys.append(metric_value(load_metrics(path), spec.metric, path))
        out.append(Series(s.label, xs, ys))
    return out


def series_table(spec: FigureSpec, series: list[Series]) -> Table:
    """The figure's data as a table: column ``x_label`` then one column per series.

    A series without a point at some x gets NaN there (shown as "-" / an empty CSV cell).
    """
    xs = sorted({x for s in series for x in s.x})
    rows = []
    for x in xs:
        vals = []
        for s in series:
            lookup = dict(zip(s.x, s.y))
            vals.append(lookup.get(x, float("nan")))
        rows.append((int(x) if float(x).is_integer() else x, *vals))
    return Table(f"{spec.title} ({spec.metric})", [spec.x_label], [s.label for s in series], rows)


def plot_series(spec: FigureSpec, series: list[Series], path: str | os.PathLike) -> None:
    """Plot ``spec.metric`` against x for each series and save a PNG atomically.

    Uses matplotlib's Agg backend (no display needed). Integer x values get integer ticks.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.6), dpi=120)
    try:
        markers = "osd^v<>"
        for i, s in enumerate(series):
            ax.plot(s.x, s.y, marker=markers[i % len(markers)], label=s.label)
        all_x = sorted({x for s in series for x in s.x})
        if all(float(x).is_integer() for x in all_x):
            ax.set_xticks(all_x)
        ax.set_xlabel(spec.x_label)
        ax.set_ylabel(spec.metric)
        ax.set_title(spec.title)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
