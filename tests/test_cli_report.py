"""`genvis report` through the CLI dispatcher: outputs, exit codes and error messages."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from genvis.cli import main


def _spec(tmp_path, ap):
    m = tmp_path / "m.json"
    m.write_text(json.dumps({"AP": ap, "AP50": 50.0, "AP75": 20.0, "AR1": 10.0, "AR10": 40.0}))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"title": "t", "tables": [
        {"name": "summary", "label_columns": ["experiment"],
         "rows": [{"labels": {"experiment": "genvis_online"}, "metrics": "m.json"}]}]}))
    return spec


def test_report_cli_writes_tables(tmp_path, capsys):
    spec = _spec(tmp_path, 37.25)
    rc = main(["report", "--spec", str(spec), "--out-dir", str(tmp_path / "out"), "--base-dir", str(tmp_path)])
    assert rc == 0
    assert "| genvis_online | 37.2 | 50.0 | 20.0 | 10.0 | 40.0 |" in capsys.readouterr().out
    assert (tmp_path / "out" / "summary.csv").read_text().splitlines()[1] == "genvis_online,37.2500,50.0000,20.0000,10.0000,40.0000"


def test_report_cli_bad_input_exit_2_names_file(tmp_path):
    spec = _spec(tmp_path, 1.0)
    (tmp_path / "m.json").write_text("{not json")
    proc = subprocess.run([sys.executable, "-m", "genvis.cli", "report", "--spec", str(spec),
                           "--out-dir", str(tmp_path / "out"), "--base-dir", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "genvis report: error:" in proc.stderr and "m.json: not valid JSON" in proc.stderr
    assert not (tmp_path / "out").exists()
