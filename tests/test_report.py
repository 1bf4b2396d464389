"""genvis.report: tables, figure data and the Fig. 3 plot from small metrics files."""

from __future__ import annotations

import csv
import json
import math

import pytest
import yaml

from genvis.errors import ConfigError, InputError
from genvis.report.build import write_report
from genvis.report.figures import build_series, series_table
from genvis.report.spec import load_spec, parse_spec
from genvis.report.tables import build_table, to_csv, to_markdown

# Table 4 of the paper (OVIS columns), used as realistic metric values.
TABLE4 = [
    # N_v, CL, UVLA, IPM, AP, AP50, AP75, AR1, AR10
    (1, False, False, False, 24.1, 44.9, 22.6, 13.4, 30.2),
    (2, True, False, False, 27.4, 47.2, 27.4, 13.9, 32.6),
    (5, True, False, False, 29.8, 50.4, 31.3, 15.0, 34.8),
    (5, True, True, False, 32.5, 56.5, 33.2, 16.1, 36.9),
    (5, True, True, True, 33.4, 57.8, 34.5, 15.7, 37.7),
]
KEYS = ("AP", "AP50", "AP75", "AR1", "AR10")


def _metrics(path, **values):
    full = {"APs": 1.0, "APm": 2.0, "APl": 3.0, "per_category_AP": {"a": 5.0}}
    full.update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(full))
    return path


def _table4_spec(tmp_path):
    rows = []
    for i, (nv, cl, uvla, ipm, *vals) in enumerate(TABLE4):
        # add a tiny offset below the display precision to check rounding, not copying
        m = _metrics(tmp_path / f"row{i}" / "metrics.json", **{k: v + 0.0123 for k, v in zip(KEYS, vals)})
        rows.append({"labels": {"N_v": nv, "CL": cl, "UVLA": uvla, "IPM": ipm}, "metrics": str(m)})
    return {"title": "ablations", "tables": [{"name": "table4", "title": "Table 4",
                                              "label_columns": ["N_v", "CL", "UVLA", "IPM"], "rows": rows}]}


def test_table4_markdown_and_csv(tmp_path):
    spec = parse_spec(_table4_spec(tmp_path))
    table = build_table(spec.tables[0])
    assert table.columns == ["N_v", "CL", "UVLA", "IPM", *KEYS]
    assert table.column("AP") == pytest.approx([r[4] + 0.0123 for r in TABLE4])

    md = to_markdown(table).splitlines()
    assert md[0] == "**Table 4**"
    assert md[2] == "| N_v | CL | UVLA | IPM | AP | AP50 | AP75 | AR1 | AR10 |"
    assert md[4] == "| 1 |  |  |  | 24.1 | 44.9 | 22.6 | 13.4 | 30.2 |"
    assert md[8] == "| 5 | ✓ | ✓ | ✓ | 33.4 | 57.8 | 34.5 | 15.7 | 37.7 |"

    rows = list(csv.DictReader(to_csv(table).splitlines()))
    assert len(rows) == 5
    assert rows[3]["UVLA"] == "true" and rows[3]["IPM"] == "false"
    assert float(rows[4]["AP"]) == pytest.approx(33.4123)
    assert rows[0]["AR10"] == "30.2123"


def test_figure_series_sorted_and_missing_point_is_nan(tmp_path):
    online = {1: 30.0, 3: 28.5, 5: 26.25}
    semi = {1: 31.0, 3: 33.5}
    data = {"figures": [{"name": "fig3", "title": "Fig. 3", "x_label": "N_f^eval", "metric": "AP", "series": [
        {"label": "online", "points": [{"x": x, "metrics": str(_metrics(tmp_path / f"on{x}.json", AP=v))}
                                       for x, v in reversed(online.items())]},
        {"label": "semi-online", "points": [{"x": x, "metrics": str(_metrics(tmp_path / f"so{x}.json", AP=v))}
                                            for x, v in semi.items()]},
    ]}]}
    fig = parse_spec(data).figures[0]
    series = build_series(fig)
    assert series[0].x == [1, 3, 5] and series[0].y == [30.0, 28.5, 26.25]
    table = series_table(fig, series)
    assert table.column("N_f^eval") == [1, 3, 5]
    assert table.column("semi-online")[:2] == [31.0, 33.5]
    assert math.isnan(table.column("semi-online")[2])
    assert to_markdown(table).splitlines()[-1] == "| 5 | 26.2 | - |"
    assert to_csv(table).splitlines()[-1] == "5,26.2500,"


def test_null_metric_is_undefined_not_an_error(tmp_path):
    # genvis evaluate writes null where nothing is averaged (no large instance -> APl)
    m = _metrics(tmp_path / "m.json", AP=10.0, APl=None)
    spec = parse_spec({"tables": [{"name": "t", "metrics": ["AP", "APl"], "rows": [{"metrics": str(m)}]}]})
    table = build_table(spec.tables[0])
    assert table.column("AP") == [10.0] and math.isnan(table.column("APl")[0])
    assert to_markdown(table).splitlines()[-1] == "| 10.0 | - |"
    assert to_csv(table).splitlines() == ["AP,APl", "10.0000,"]


def test_write_report_files(tmp_path):
    data = _table4_spec(tmp_path)
    data["figures"] = [{"name": "fig3", "title": "AP vs N_f^eval", "x_label": "N_f^eval", "series": [
        {"label": "online", "points": [{"x": x, "metrics": str(_metrics(tmp_path / f"f{x}.json", AP=20.0 + x))}
                                       for x in (1, 2, 3)]}]}]
    out = tmp_path / "report"
    written = write_report(parse_spec(data), out)
    assert [p.name for p in written] == ["table4.md", "table4.csv", "fig3.png", "fig3.md", "fig3.csv", "report.md"]
    png = (out / "fig3.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # PNG IHDR: width/height big-endian at bytes 16..24; 5 x 3.6 in at 120 dpi
    assert int.from_bytes(png[16:20], "big") == 600 and int.from_bytes(png[20:24], "big") == 432
    fig_rows = list(csv.DictReader((out / "fig3.csv").read_text().splitlines()))
    assert [float(r["online"]) for r in fig_rows] == [21.0, 22.0, 23.0]
    report = (out / "report.md").read_text()
    assert report.startswith("# ablations") and "![AP vs N_f^eval](fig3.png)" in report
    assert "| 5 | ✓ | ✓ |  | 32.5 |" in report


def test_missing_metric_names_file_and_writes_nothing(tmp_path):
    bad = _metrics(tmp_path / "bad.json", AP=1.0, AP50=2.0)  # no AP75 / AR1 / AR10
    spec = parse_spec({"tables": [{"name": "t", "rows": [{"metrics": str(bad)}]}]})
    with pytest.raises(InputError, match=r"bad\.json: metric 'AP75' missing"):
        write_report(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_and_malformed_metrics_files(tmp_path):
    spec = parse_spec({"tables": [{"name": "t", "rows": [{"metrics": str(tmp_path / "nope.json")}]}]})
    with pytest.raises(InputError, match="nope.json: metrics file not found"):
        build_table(spec.tables[0])
    (tmp_path / "nan.json").write_text('{"AP": NaN}')
    spec = parse_spec({"tables": [{"name": "t", "metrics": ["AP"], "rows": [{"metrics": str(tmp_path / "nan.json")}]}]})
    with pytest.raises(InputError, match="'AP' is not finite"):
        build_table(spec.tables[0])


def test_spec_validation_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"tables\.0\.rows\.0: 'metrics' is a required property"):
        parse_spec({"tables": [{"name": "t", "rows": [{"labels": {"a": 1}}]}]})
    with pytest.raises(ConfigError, match=r"tables\.0\.rows\.0\.labels: labels \['x'\]"):
        parse_spec({"tables": [{"name": "t", "label_columns": ["a"], "rows": [{"labels": {"x": 1}, "metrics": "m"}]}]})
    with pytest.raises(ConfigError, match="used twice"):
        parse_spec({"tables": [{"name": "t", "rows": [{"metrics": "m"}]}],
                    "figures": [{"name": "t", "series": [{"label": "s", "points": [{"x": 1, "metrics": "m"}]}]}]})


def test_relative_paths_resolve_against_base_dir(tmp_path):
    _metrics(tmp_path / "runs" / "m.json", AP=12.5, AP50=1, AP75=1, AR1=1, AR10=1)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({"tables": [{"name": "t", "rows": [{"metrics": "runs/m.json"}]}]}))
    spec = load_spec(spec_path, base_dir=tmp_path)
    assert build_table(spec.tables[0]).column("AP") == [12.5]
