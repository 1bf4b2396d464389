"""genvis seed-table: mean ± std over seeds, optional association / occlusion columns."""

import json
import math

import pytest

from genvis.cli import main
from genvis.errors import InputError
from genvis.report.seed_table import build, flatten, to_csv, to_markdown


def write(path, **metrics):
    base = {"AP": 10.0, "AP50": 20.0, "AP75": 5.0, "AR1": 8.0, "AR10": 12.0, "APm": None,
            "per_category_AP": {"a": 99.0}}
    base.update(metrics)
    path.write_text(json.dumps(base))
    return path


def test_mean_and_sample_std_with_optional_keys(tmp_path):
    a = [write(tmp_path / "a0.json", AP=10.0), write(tmp_path / "a1.json", AP=14.0)]
    b = [write(tmp_path / "b0.json", AP=30.0, HOTA=40.0, APho=3.0, occlusion_instances={"heavy": 4},
               tracking={"hota_alpha": {"AssA": 2.0}})]
    cols, rows = build([("A", a), ("B", b)])
    assert cols == ["AP", "AP50", "AP75", "AR1", "AR10", "APho", "HOTA", "tracking.hota_alpha.AssA"]
    assert rows[0]["AP"] == pytest.approx((12.0, math.sqrt(8.0)))        # sample std of 10, 14
    assert rows[0]["HOTA"] is None and rows[1]["HOTA"] == (40.0, 0.0)
    md = to_markdown(cols, rows, "T", "snakemake x")
    assert "| A | 2 | 12.00 ± 2.83 |" in md and "```\nsnakemake x\n```" in md
    csv_text = to_csv(cols, rows, "snakemake x").splitlines()
    assert csv_text[0] == "# reproduce: snakemake x"
    assert csv_text[2].startswith("A,2,12.0000,2.8284,20.0000,0.0000") and csv_text[2].endswith(",,,,,,")
    assert "per_category_AP.a" not in flatten(json.loads(a[0].read_text()))


def test_cli_writes_both_files_and_names_bad_input(tmp_path):
    a = write(tmp_path / "a.json")
    assert main(["seed-table", "--row", "A", str(a), "--out-md", str(tmp_path / "t.md"),
                 "--out-csv", str(tmp_path / "t.csv"), "--command", "make t"]) == 0
    assert "make t" in (tmp_path / "t.md").read_text()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"AP": 1.0}))
    with pytest.raises(InputError, match="missing metric"):
        build([("A", [bad])])
    assert main(["seed-table", "--row", "A", str(tmp_path / "nope.json"), "--out-md", str(tmp_path / "u.md"),
                 "--out-csv", str(tmp_path / "u.csv")]) == 2
    assert not (tmp_path / "u.md").exists()


def test_markdown_keeps_the_headline_association_columns_and_the_csv_all(tmp_path):
    """genvis evaluate's nested association block (class- and detection-averaged combinations,
    per-category figures) goes whole into the CSV; the markdown shows the top-level
    (class-averaged) HOTA / DetA / AssA / IDF1 and the detection-averaged HOTA / DetA / AssA."""
    block = {"class_averaged": {"HOTA": 24.0, "DetA": 12.0, "AssA": 50.0, "IDF1": 19.0},
             "det_averaged": {"HOTA": 23.0, "DetA": 11.0, "AssA": 49.0, "IDF1": 18.0},
             "per_category": {"disc": {"HOTA": 30.0, "AssA": 60.0}, "cross": {"HOTA": 20.0, "AssA": 40.0}}}
    files = [write(tmp_path / f"s{i}.json", HOTA=24.0 + i, DetA=12.0, AssA=50.0, IDF1=19.0,
                   association=block) for i in range(2)]
    cols, rows = build([("GenVIS", files)])
    assert "association.per_category.disc.AssA" in cols and "association.class_averaged.HOTA" in cols
    md = to_markdown(cols, rows, "T", None)
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert header == ("| Method | seeds | AP | AP50 | AP75 | AR1 | AR10 | HOTA | DetA | AssA | IDF1 | "
                      "HOTA (det-avg) | DetA (det-avg) | AssA (det-avg) |")
    assert ("| GenVIS | 2 | 10.00 ± 0.00 | 20.00 ± 0.00 | 5.00 ± 0.00 | 8.00 ± 0.00 | 12.00 ± 0.00 | "
            "24.50 ± 0.71 |") in md
    assert f"all {len(cols)} columns" in md
    csv_header = to_csv(cols, rows, None).splitlines()[0].split(",")
    assert "association.per_category.cross.HOTA_mean" in csv_header and len(csv_header) == 2 + 2 * len(cols)
