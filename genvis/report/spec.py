"""The report specification: which metrics file feeds which table row and plot point.

A spec is a YAML (or JSON) file such as::

    title: "synth / valid: ablations"
    tables:
      - name: table4                      # file stem of table4.md / table4.csv
        title: "Table 4: inter-clip association and memory"
        label_columns: [N_v, CL, UVLA, IPM]
        metrics: [AP, AP50, AP75, AR1, AR10]
        rows:
          - labels: {N_v: 1, CL: false, UVLA: false, IPM: false}
            metrics: runs/synth/t4_nv1/valid/metrics.json
    figures:
      - name: fig3                        # fig3.png, fig3.md, fig3.csv
        title: "Fig. 3: AP against N_f^eval"
        x_label: "N_f^eval"
        metric: AP
        series:
          - label: "online (N_f^train = 1)"
            points:
              - {x: 1, metrics: runs/synth/genvis_online/valid/nf1/metrics.json}

Relative ``metrics`` paths are resolved against ``base_dir`` (the working directory by
default; the workflow runs from the project root).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from genvis.errors import ConfigError, InputError
from genvis.report.metrics import PAPER_METRICS

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"}
_LABEL_VALUE = {"type": ["string", "number", "boolean", "null"]}

#: JSON schema of a report spec (draft 2020-12).
SPEC_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "title": {"type": "string"},
        "tables": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "rows"],
                "properties": {
                    "name": _NAME,
                    "title": {"type": "string"},
                    "label_columns": {"type": "array", "items": {"type": "string"}},
                    "metrics": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    "rows": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["metrics"],
                            "properties": {
                                "labels": {"type": "object", "additionalProperties": _LABEL_VALUE},
                                "metrics": {"type": "string", "minLength": 1},
                            },
                        },
                    },
                },
            },
        },
        "figures": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "series"],
                "properties": {
                    "name": _NAME,
                    "title": {"type": "string"},
                    "x_label": {"type": "string"},
                    "metric": {"type": "string"},
                    "series": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["label", "points"],
                            "properties": {
                                "label": {"type": "string"},
                                "points": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "required": ["x", "metrics"],
                                        "properties": {
                                            "x": {"type": "number"},
                                            "metrics": {"type": "string", "minLength": 1},
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


@dataclass(frozen=True)
class TableRow:
    """One table row: its label cells and the metrics file that fills its metric cells."""

    labels: dict[str, Any]
    metrics: Path


@dataclass(frozen=True)
class TableSpec:
    """One table: label columns first, then one column per metric (percent, 0-100)."""

    name: str
    title: str
    label_columns: list[str]
    metrics: list[str]
    rows: list[TableRow]


@dataclass(frozen=True)
class SeriesSpec:
    """One plotted line: ``(x, metrics file)`` points, plotted in increasing x."""

    label: str
    points: list[tuple[float, Path]]


@dataclass(frozen=True)
class FigureSpec:
    """One figure: ``metric`` of each series against x (e.g. AP against N_f^eval)."""

    name: str
    title: str
    x_label: str
    metric: str
    series: list[SeriesSpec]


@dataclass(frozen=True)
class ReportSpec:
    """A whole report: tables and figures written into one folder."""

    title: str
    tables: list[TableSpec] = field(default_factory=list)
    figures: list[FigureSpec] = field(default_factory=list)


def parse_spec(data: Any, source: str | os.PathLike = "report spec",
               base_dir: str | os.PathLike | None = None) -> ReportSpec:
    """Validate a decoded spec object and build a :class:`ReportSpec`.

    Args:
        data: the decoded YAML/JSON object.
        source: where it came from (named in errors).
        base_dir: folder that relative metrics paths are resolved against (default: the
            current working directory).

    Raises:
        ConfigError: the object does not follow :data:`SPEC_SCHEMA` (the message names the
            offending key path), two tables/figures share a name, or a table row has labels
            that are not among its ``label_columns``.
    """
    validator = jsonschema.Draft202012Validator(SPEC_SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        raise ConfigError(f"{source}: {where}", err.message)
    base = Path(base_dir) if base_dir is not None else Path.cwd()

    def resolve(p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else base / path

    names: set[str] = set()

    def claim(name: str, key: str) -> None:
        if name in names:
            raise ConfigError(f"{source}: {key}", f"name {name!r} used twice (output files would clash)")
        names.add(name)

    tables = []
    for i, t in enumerate(data.get("tables", [])):
        claim(t["name"], f"tables.{i}.name")
        label_columns = list(t.get("label_columns", []))
        for j, r in enumerate(t["rows"]):
            extra = set(r.get("labels", {})) - set(label_columns)
            if extra:
                raise ConfigError(f"{source}: tables.{i}.rows.{j}.labels",
                                  f"labels {sorted(extra)} are not in label_columns {label_columns}")
        tables.append(TableSpec(
            name=t["name"], title=t.get("title", t["name"]), label_columns=label_columns,
            metrics=list(t.get("metrics", PAPER_METRICS)),
            rows=[TableRow(dict(r.get("labels", {})), resolve(r["metrics"])) for r in t["rows"]],
        ))
    figures = []
    for i, f in enumerate(data.get("figures", [])):
        claim(f["name"], f"figures.{i}.name")
        figures.append(FigureSpec(
            name=f["name"], title=f.get("title", f["name"]), x_label=f.get("x_label", "x"),
            metric=f.get("metric", "AP"),
            series=[SeriesSpec(s["label"], sorted((float(p["x"]), resolve(p["metrics"])) for p in s["points"]))
                    for s in f["series"]],
        ))
    return ReportSpec(title=data.get("title", "genvis report"), tables=tables, figures=figures)


def load_spec(path: str | os.PathLike, base_dir: str | os.PathLike | None = None) -> ReportSpec:
    """Read a spec file (YAML or JSON) and validate it (see :func:`parse_spec`).

    Raises:
        InputError: the file is missing, unreadable or not YAML/JSON.
        ConfigError: the content does not follow the schema.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(p, "report spec not found") from None
    except OSError as exc:
        raise InputError(p, f"cannot read report spec ({exc.strerror or exc})") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputError(p, f"not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}") from None
    return parse_spec(data, source=p, base_dir=base_dir)
