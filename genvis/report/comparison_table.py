"""A table of seed-replicated comparisons (Table 4 at the paper's length, ``table4_long``).

Input: a spec (JSON) naming, per row, its labels and a comparison json of ``genvis compare``
(method A = the row, method B = the baseline, the same for every row), optionally the row's
``genvis diagnose`` json. One table: the baseline first, then one row per comparison, with
the seed means of video AP, HOTA and AssA, the seed standard deviation of AP, the difference
to the baseline with its paired video-bootstrap 95% interval, and from the diagnosis the
video AP of the row's models under oracle association and the gap to their own::

    {"title": "...", "label_columns": ["experiment", "N_v", "CL", "UVLA", "IPM"],
     "baseline": {"labels": {"experiment": "minvis_nv1", "N_v": 1, ...}},
     "rows": [{"labels": {...}, "comparison": "reports/comparisons/t4l_cl_nv2.json",
               "diagnosis": "reports/comparisons/t4l_cl_nv2.diagnosis.json"}, ...]}
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from genvis.errors import InputError
from genvis.report.metrics import load_metrics
from genvis.report.tables import Table

#: metric columns, in order (percent / percentage points)
SEED_COLUMNS = ("seeds", "AP", "AP sd", "dAP", "dAP lo", "dAP hi", "HOTA", "dHOTA", "dHOTA lo", "dHOTA hi",
                "AssA", "dAssA", "dAssA lo", "dAssA hi", "oracle AP", "oracle gap")


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _get(record: dict, key: str, path: Path) -> Any:
    if key not in record:
        raise InputError(path, f"comparison record lacks {key!r} (written by an older genvis compare? run it again)")
    return record[key]


def _oracle(diagnosis: dict | None, label: str) -> tuple[float, float]:
    """(oracle video AP, oracle minus own) of the method ``label`` (the comparison's side A)."""
    if diagnosis is None:
        return float("nan"), float("nan")
    rows = {r["label"]: r for r in diagnosis.get("rows", [])}
    own, oracle = rows.get(f"{label} / own"), rows.get(f"{label} / oracle")
    if own is None or oracle is None:
        return float("nan"), float("nan")
    o, w = _num(oracle.get("video_AP_mean")), _num(own.get("video_AP_mean"))
    return o, o - w


def build_seed_table(spec: dict, base_dir: str | os.PathLike | None = None) -> Table:
    """Fill the table of a seed-table spec (see the module docstring).

    Raises:
        InputError: a comparison or diagnosis file is missing or malformed, or the rows
            compare against different baselines.
    """
    base = Path(base_dir or ".")
    label_cols = list(spec.get("label_columns") or ["experiment"])
    rows: list[tuple[Any, ...]] = []
    baseline_files: set[str] = set()
    first_b = None
    for r in spec["rows"]:
        path = base / r["comparison"]
        rec = load_metrics(path)
        b_files = tuple(_get(rec, "b", path))
        baseline_files.add(repr(b_files))
        if len(baseline_files) > 1:
            raise InputError(path, "compares against another baseline than the table's first row")
        assoc = _get(rec, "assoc", path)
        diag = load_metrics(base / r["diagnosis"]) if r.get("diagnosis") else None
        a_ap = [_num(x) for x in _get(rec, "a_ap", path)]
        if first_b is None:
            first_b = (rec, diag)
        cells = [len(a_ap), _num(rec["a_mean"]), float(np.std(a_ap, ddof=1)) if len(a_ap) > 1 else float("nan"),
                 _num(rec["diff"]), *map(_num, rec["ci95"])]
        for k in ("HOTA", "AssA"):
            cells += [_num(assoc[k]["a_mean"]), _num(assoc[k]["diff"]), *map(_num, assoc[k]["ci95"])]
        cells += list(_oracle(diag, str(rec.get("label_a", ""))))
        rows.append(tuple(r["labels"].get(c) for c in label_cols) + tuple(cells))
    if first_b is not None:
        rec, diag = first_b
        b_ap = [_num(x) for x in rec["b_ap"]]
        nan = float("nan")
        cells = [len(b_ap), _num(rec["b_mean"]), float(np.std(b_ap, ddof=1)) if len(b_ap) > 1 else nan, nan, nan, nan,
                 _num(rec["assoc"]["HOTA"]["b_mean"]), nan, nan, nan,
                 _num(rec["assoc"]["AssA"]["b_mean"]), nan, nan, nan]
        label_b = str(rec.get("label_b", ""))
        if diag is not None:
            by = {x["label"]: x for x in diag.get("rows", [])}
            own, orc = by.get(f"{label_b} / own"), by.get(f"{label_b} / oracle")
            cells += [_num(orc["video_AP_mean"]), _num(orc["video_AP_mean"]) - _num(own["video_AP_mean"])] \
                if own and orc else [nan, nan]
        else:
            cells += [nan, nan]
        labels = (spec.get("baseline") or {}).get("labels", {})
        rows.insert(0, tuple(labels.get(c) for c in label_cols) + tuple(cells))
    for row in rows:
        if any(isinstance(v, float) and math.isinf(v) for v in row):
            raise InputError(None, "infinite value in a seed table row")
    return Table(spec.get("title", "seed-replicated comparisons"), label_cols, list(SEED_COLUMNS),
                 [tuple(float(v) if i >= len(label_cols) else v for i, v in enumerate(row)) for row in rows])


def write_seed_table(spec: dict, out_dir: str | os.PathLike, name: str = "table",
                     base_dir: str | os.PathLike | None = None) -> list[Path]:
    """Write ``<name>.md``, ``<name>.csv`` and ``report.md`` (the markdown with a legend) into
    ``out_dir``; every input is read before the first file is written. Returns the paths."""
    from genvis.report.tables import to_csv, to_markdown
    from genvis.utils.io import atomic_write_text

    table = build_seed_table(spec, base_dir)
    out = Path(out_dir)
    md = to_markdown(table)
    legend = ("\nAP, HOTA, AssA: seed means (percent). dX: row minus the baseline (first row), "
              "lo / hi: its 95% interval under a paired bootstrap over the videos. oracle AP: the "
              "row's models with oracle association; oracle gap: oracle minus own association.\n")
    atomic_write_text(out / f"{name}.md", md)
    atomic_write_text(out / f"{name}.csv", to_csv(table))
    atomic_write_text(out / "report.md", f"# {table.title}\n\n" + md + legend)
    return [out / f"{name}.md", out / f"{name}.csv", out / "report.md"]
