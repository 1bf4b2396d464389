"""Result tables (Table 4, Table 5, Table 6, per-experiment summaries) as markdown and CSV.

A table has label columns (e.g. N_v, CL, UVLA, IPM for Table 4) followed by metric columns
(AP, AP50, AP75, AR1, AR10 by default; percent, 0-100). Markdown shows one decimal, as the
paper does, with booleans as a check mark or an empty cell; CSV keeps four decimals and
writes booleans as ``true`` / ``false``. An undefined metric (NaN: null in metrics.json, or
no point of a figure series at that x) is "-" in markdown and an empty CSV cell.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

from genvis.report.metrics import load_metrics, metric_value
from genvis.report.spec import TableSpec


@dataclass(frozen=True)
class Table:
    """A filled table.

    Attributes:
        title: caption.
        label_columns: names of the label columns.
        metric_columns: names of the metric columns.
        rows: one tuple per row: the label values, then the metric values (float, percent).
    """

    title: str
    label_columns: list[str]
    metric_columns: list[str]
    rows: list[tuple[Any, ...]]

    @property
    def columns(self) -> list[str]:
        """All column names, labels first."""
        return [*self.label_columns, *self.metric_columns]

    def column(self, name: str) -> list[Any]:
        """The values of one column, top to bottom. Raises KeyError for an unknown name."""
        try:
            i = self.columns.index(name)
        except ValueError:
            raise KeyError(f"no column {name!r} (columns: {self.columns})") from None
        return [r[i] for r in self.rows]


def build_table(spec: TableSpec) -> Table:
    """Fill a table from its metrics files.

    Raises:
        InputError: a metrics file is missing or malformed, or lacks a requested metric
            (the message names the file and the metric).
    """
    cache: dict = {}
    rows = []
    for row in spec.rows:
        if row.metrics not in cache:
            cache[row.metrics] = load_metrics(row.metrics)
        m = cache[row.metrics]
        labels = tuple(row.labels.get(c) for c in spec.label_columns)
        rows.append(labels + tuple(metric_value(m, k, row.metrics) for k in spec.metrics))
    return Table(spec.title, list(spec.label_columns), list(spec.metrics), rows)


def _md_label(value: Any) -> str:
    if value is True:
        return "✓"
    if value is False or value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).replace("|", "\\|")


def _csv_label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(value: float, decimals: int, missing: str) -> str:
    return missing if math.isnan(value) else f"{value:.{decimals}f}"


def to_markdown(table: Table, decimals: int = 1) -> str:
    """Render as a GitHub markdown table under a bold caption; metrics to ``decimals`` places.

    The best value of each metric column is not highlighted: the reader compares rows.
    """
    n_labels = len(table.label_columns)
    head = "| " + " | ".join(table.columns) + " |"
    align = "|" + "|".join([":---"] * n_labels + ["---:"] * len(table.metric_columns)) + "|"
    lines = [f"**{table.title}**", "", head, align]
    for r in table.rows:
        cells = [_md_label(v) for v in r[:n_labels]] + [_number(v, decimals, "-") for v in r[n_labels:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(table: Table, decimals: int = 4) -> str:
    """Render as CSV with a header row; metrics rounded to ``decimals`` places."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(table.columns)
    n_labels = len(table.label_columns)
    for r in table.rows:
        w.writerow([_csv_label(v) for v in r[:n_labels]] + [_number(v, decimals, "") for v in r[n_labels:]])
    return buf.getvalue()
