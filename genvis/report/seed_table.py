"""Seed-replicated results table: rows of methods, each scored by several metrics.json files.

Used by ``genvis seed-table`` (the workflow's ``idol_table1`` target, IDOL supplement Table 1
analogue): per row and metric the mean and the sample standard deviation over the row's
files (one per training seed), in markdown and CSV, each headed by the command that
reproduces it.

Columns: the fixed video metrics ``AP, AP50, AP75, AR1, AR10`` of ``genvis evaluate``, then
the occlusion-level metrics of ``genvis evaluate`` (``APso, APmo, APho, ARso, ARmo, ARho``: slight,
moderate, heavy occlusion as OVIS reports them) and the tracking metrics ``HOTA, DetA, AssA, IDF1``
where present, then every other numeric metric whose (dot-joined, for nested dicts) key contains
``hota``, ``assa``, ``deta`` or ``idf1`` (case ignored), in the order first seen. These optional
columns are written when present in any row's files; a row whose files lack one shows an empty
cell. ``per_category_AP``, ``occlusion_instances`` and the per-frame diagnosis are never columns.

The CSV has every column. The markdown table keeps the ones a reader compares
(:func:`markdown_columns`): of ``genvis evaluate``'s nested ``association`` block (TrackEval's
combinations and per-category figures, about 45 keys on six categories) only the
detection-averaged HOTA / DetA / AssA, beside the class-averaged ones at the top level.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

from genvis.errors import InputError

FIXED = ("AP", "AP50", "AP75", "AR1", "AR10")
OPTIONAL = ("APso", "APmo", "APho", "ARso", "ARmo", "ARho", "HOTA", "DetA", "AssA", "IDF1")
OPTIONAL_MARKERS = ("hota", "assa", "deta", "idf1")
SKIP = ("per_category_AP", "per_frame", "occlusion_instances")


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a metrics dict as {dot.joined.key: float} (booleans and None skipped)."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if not prefix and k in SKIP:
            continue
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
            out[key] = float(v)
    return out


def read_metrics(path: str | os.PathLike) -> dict[str, float]:
    """Flattened numeric metrics of one metrics.json. Raises InputError if unreadable or not an object."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read metrics json: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(path, "metrics json must be an object")
    return flatten(data)


def columns(rows: Sequence[Sequence[dict[str, float]]]) -> list[str]:
    """The fixed metrics, then the optional occlusion / association keys present anywhere."""
    cols = list(FIXED)
    present = {k for files in rows for m in files for k in m}
    cols += [k for k in OPTIONAL if k in present]
    for files in rows:
        for m in files:
            for k in m:
                if k not in cols and any(marker in k.lower() for marker in OPTIONAL_MARKERS):
                    cols.append(k)
    return cols


#: of the nested ``association`` block, the keys the markdown table shows, and their headers
MARKDOWN_ASSOCIATION = {"association.det_averaged.HOTA": "HOTA (det-avg)",
                        "association.det_averaged.DetA": "DetA (det-avg)",
                        "association.det_averaged.AssA": "AssA (det-avg)"}


def markdown_columns(cols: Sequence[str]) -> list[str]:
    """The columns of ``cols`` that the markdown table shows: all but the nested
    ``association.*`` keys, of which only :data:`MARKDOWN_ASSOCIATION`'s (the class-averaged
    figures are the top-level HOTA / DetA / AssA / IDF1; the per-category ones stay in the CSV)."""
    return [c for c in cols if not c.startswith("association.") or c in MARKDOWN_ASSOCIATION]


def summarise(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation; 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def build(rows: Sequence[tuple[str, Sequence[str | os.PathLike]]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Summaries of labelled rows of metrics files.

    Args:
        rows: [(label, [metrics.json, ...])], one file per seed.

    Returns:
        (metric columns, [{"label", "seeds": n, metric: (mean, std) or None}]).

    Raises:
        InputError: a row without files; an unreadable file; a fixed metric missing from a file.
    """
    if not rows:
        raise InputError("--row", "no rows given")
    loaded = []
    for label, files in rows:
        if not files:
            raise InputError("--row", f"row {label!r} has no metrics files")
        ms = [read_metrics(f) for f in files]
        for f, m in zip(files, ms):
            missing = [k for k in FIXED if k not in m]
            if missing:
                raise InputError(f, f"missing metric(s) {missing}")
        loaded.append(ms)
    cols = columns(loaded)
    out = []
    for (label, _), ms in zip(rows, loaded):
        row: dict[str, Any] = {"label": label, "seeds": len(ms)}
        for c in cols:
            vals = [m[c] for m in ms if c in m]
            row[c] = summarise(vals) if len(vals) == len(ms) else None
        out.append(row)
    return cols, out


def to_markdown(cols: list[str], rows: list[dict[str, Any]], title: str, command: str | None) -> str:
    """Markdown: title, the reproducing command, a table of ``mean ± std`` (n seeds) over
    :func:`markdown_columns` of ``cols``."""
    shown = markdown_columns(cols)
    lines = [f"# {title}", ""]
    if command:
        lines += ["Reproduce with:", "", "```", command, "```", ""]
    lines.append("Mean ± standard deviation over training seeds (video metrics in percent).")
    if len(shown) < len(cols):
        lines.append(f"HOTA / DetA / AssA / IDF1 averaged over categories (TrackEval's class average), "
                     f"then over detections (det-avg); the CSV beside this file has all {len(cols)} "
                     f"columns (per-category association figures too).")
    lines.append("")
    lines.append("| Method | seeds | " + " | ".join(MARKDOWN_ASSOCIATION.get(c, c) for c in shown) + " |")
    lines.append("|---|---:|" + "---:|" * len(shown))
    for r in rows:
        cells = ["" if r[c] is None else f"{r[c][0]:.2f} ± {r[c][1]:.2f}" for c in shown]
        lines.append(f"| {r['label']} | {r['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(cols: list[str], rows: list[dict[str, Any]], command: str | None) -> str:
    """CSV: a ``# command`` line, then method, seeds, and <metric>_mean / <metric>_std columns."""
    buf = io.StringIO()
    if command:
        buf.write(f"# reproduce: {command}\n")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "seeds"] + [f"{c}_{s}" for c in cols for s in ("mean", "std")])
    for r in rows:
        cells = []
        for c in cols:
            cells += ["", ""] if r[c] is None else [f"{r[c][0]:.4f}", f"{r[c][1]:.4f}"]
        w.writerow([r["label"], r["seeds"]] + cells)
    return buf.getvalue()
