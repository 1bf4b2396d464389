"""Reading the ``metrics.json`` files written by ``genvis evaluate``.

A metrics file is a JSON object whose scalar entries (``AP``, ``AP50``, ``AP75``, ``APs``,
``APm``, ``APl``, ``AR1``, ``AR10``; the association metrics ``HOTA``, ``DetA``, ``AssA``,
``LocA``, ``IDF1``, class-averaged, of :mod:`genvis.evaluate.hota`) are percentages in 0-100
(``IDSW`` is a count); other entries (such as ``per_category_AP``, ``association``) are kept
but not used by the tables.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from genvis.errors import InputError

#: The metric columns of the paper's tables, in the paper's order.
PAPER_METRICS: tuple[str, ...] = ("AP", "AP50", "AP75", "AR1", "AR10")
#: Every scalar metric ``genvis evaluate`` writes, in display order.
ALL_METRICS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10")
#: The association columns every report shows beside AP (:mod:`genvis.evaluate.hota`).
ASSOC_METRICS: tuple[str, ...] = ("HOTA", "DetA", "AssA", "IDF1")
#: AP / AR per OVIS occlusion level (ground-truth mBOR), written by every ``genvis evaluate``.
OCCLUSION_METRICS: tuple[str, ...] = ("APso", "APmo", "APho", "ARso", "ARmo", "ARho")
#: Tube-Boundary AP (VMT), written by ``genvis evaluate --iou boundary``.
BOUNDARY_METRICS: tuple[str, ...] = ("AP_B", "AP_B50", "AP_B75", "AR_B1", "AR_B10")
#: DAVIS 2017 J&F, written by ``genvis evaluate --protocol davis``.
DAVIS_METRICS: tuple[str, ...] = ("J&F", "J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay")


def load_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """Load one metrics file.

    Args:
        path: a JSON file holding an object (``metrics.json``).

    Returns:
        The decoded JSON object.

    Raises:
        InputError: the file is missing, unreadable, not JSON, or not a JSON object.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(p, "metrics file not found") from None
    except OSError as exc:
        raise InputError(p, f"cannot read metrics file ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(p, f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise InputError(p, f"expected a JSON object of metrics, found {type(data).__name__}")
    return data


def metric_value(metrics: dict[str, Any], key: str, source: str | os.PathLike) -> float:
    """Return ``metrics[key]`` as a float; NaN where the metric is undefined (JSON null).

    ``genvis evaluate`` writes null for a metric with nothing to average over (e.g. APl
    when no ground-truth instance is large, the official API's -1); tables show it as "-".

    Args:
        metrics: a decoded metrics object (see :func:`load_metrics`).
        key: the metric name, e.g. ``"AP"``.
        source: the file the metrics came from (named in errors).

    Raises:
        InputError: the key is absent, not a number or null, or infinite / NaN.
    """
    if key not in metrics:
        have = ", ".join(sorted(k for k, v in metrics.items() if _is_number(v))) or "none"
        hint = " (written before genvis evaluate reported association metrics: evaluate again)" \
            if key in ASSOC_METRICS and "AP" in metrics else ""
        raise InputError(source, f"metric {key!r} missing (numeric metrics present: {have}){hint}")
    value = metrics[key]
    if value is None:
        return float("nan")
    if not _is_number(value):
        raise InputError(source, f"metric {key!r} is not a number: {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(source, f"metric {key!r} is not finite: {value}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
