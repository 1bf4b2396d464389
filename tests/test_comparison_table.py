"""The seed-replicated comparison table (table4_long): numbers taken from genvis compare /
diagnose records, the baseline first, rejected when rows use different baselines."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from genvis.cli import main
from genvis.errors import InputError
from genvis.evaluate.compare import paired_bootstrap
from genvis.evaluate.diagnosis import Row, diagnose
from genvis.report.comparison_table import SEED_COLUMNS, build_seed_table
from tests.test_compare import problem


def _record(gt, a, b, label_a, label_b, files_b):
    out = paired_bootstrap(gt, a, b, n_boot=30)
    return {**out, "label_a": label_a, "label_b": label_b, "a": ["a"] * len(a), "b": files_b}


def test_seed_table_rows_and_cli(tmp_path, capsys):
    gt, method = problem(n_videos=6)
    good = [method(1, s) for s in range(2)]
    bad = [method(0, s) for s in range(2)]
    rec = _record(gt, good, bad, "good", "bad", ["b0", "b1"])
    (tmp_path / "c.json").write_text(json.dumps(rec))
    diag = diagnose(gt, [Row("good / own", good), Row("good / oracle", good), Row("bad / own", bad),
                         Row("bad / oracle", good)])
    (tmp_path / "d.json").write_text(json.dumps(diag))
    spec = {"title": "T4", "label_columns": ["experiment", "N_v"],
            "baseline": {"labels": {"experiment": "bad", "N_v": 1}},
            "rows": [{"labels": {"experiment": "good", "N_v": 5}, "comparison": "c.json", "diagnosis": "d.json"}]}
    table = build_seed_table(spec, tmp_path)
    assert table.column("experiment") == ["bad", "good"]
    assert table.column("AP") == pytest.approx([rec["b_mean"], rec["a_mean"]])
    assert table.column("AP sd")[1] == pytest.approx(float(np.std(rec["a_ap"], ddof=1)))
    assert table.column("dAP")[1] == pytest.approx(rec["diff"]) and np.isnan(table.column("dAP")[0])
    assert [table.column("dHOTA lo")[1], table.column("dHOTA hi")[1]] == pytest.approx(rec["assoc"]["HOTA"]["ci95"])
    assert table.column("AssA") == pytest.approx([rec["assoc"]["AssA"]["b_mean"], rec["assoc"]["AssA"]["a_mean"]])
    # the bad method's oracle row uses the good results: its oracle gap is the AP difference
    assert table.column("oracle gap")[0] == pytest.approx(rec["a_mean"] - rec["b_mean"], abs=1e-6)
    assert table.column("oracle gap")[1] == pytest.approx(0.0)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    assert main(["report", "--comparison-table", str(tmp_path / "spec.json"), "--out-dir", str(out),
                 "--base-dir", str(tmp_path)]) == 0
    rows = list(csv.DictReader((out / "table.csv").read_text().splitlines()))
    assert list(rows[0]) == ["experiment", "N_v", *SEED_COLUMNS]
    assert float(rows[1]["dAP"]) == pytest.approx(rec["diff"], abs=1e-4)
    assert "oracle gap" in (out / "report.md").read_text()
    # a second row judged against another baseline is refused
    (tmp_path / "c2.json").write_text(json.dumps({**rec, "b": ["other"]}))
    spec["rows"].append({"labels": {"experiment": "x"}, "comparison": "c2.json"})
    with pytest.raises(InputError, match="another baseline"):
        build_seed_table(spec, tmp_path)
