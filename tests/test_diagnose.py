"""Association diagnosis (genvis.evaluate.diagnosis, `genvis diagnose`) on hand-built results."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genvis.cli import main
from genvis.data import masks as mask_ops
from genvis.data.results import VideoResult
from genvis.data.ytvis import parse_vis_dict, save_vis_json
from genvis.errors import InputError
from genvis.evaluate.diagnosis import Row, diagnose, format_markdown, frame_bins

T, H, W = 8, 16, 16


def box(y, x):
    m = np.zeros((T, H, W), bool)
    m[:, y:y + 6, x:x + 6] = True
    return m


LEFT, RIGHT = box(2, 1), box(8, 9)


def ground_truth():
    anns = [{"id": i + 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
             "segmentations": mask_ops.encode_masks_or_none(m)} for i, m in enumerate((LEFT, RIGHT))]
    return parse_vis_dict({"videos": [{"id": 1, "length": T, "height": H, "width": W,
                                       "file_names": [f"v/{t}.jpg" for t in range(T)]}],
                           "categories": [{"id": 1, "name": "thing"}], "annotations": anns}, "gt.json")


def tracks(swap_at=None):
    """Two predicted tracks with the ground-truth masks; from frame ``swap_at`` on they swap
    identities (every frame still holds both masks, so frame AP stays 100)."""
    a, b = LEFT.copy(), RIGHT.copy()
    if swap_at is not None:
        a[swap_at:], b[swap_at:] = RIGHT[swap_at:], LEFT[swap_at:]
    return [VideoResult(1, 1, 0.9, mask_ops.encode_masks(a)), VideoResult(1, 1, 0.8, mask_ops.encode_masks(b))]


def drop_after(results, start):
    """The same tracks with no mask from frame ``start`` on (all frames missed there)."""
    empty = mask_ops.encode_masks(np.zeros((T - start, H, W), bool))
    return [VideoResult(r.video_id, r.category_id, r.score, list(r.segmentations[:start]) + empty) for r in results]


def test_identity_swaps_cost_video_ap_only_and_the_horizon_locates_dropped_frames():
    gt = ground_truth()
    out = diagnose(gt, [Row("perfect", [tracks()]), Row("swapped", [tracks(swap_at=7), tracks(swap_at=4)]),
                        Row("dropped", [drop_after(tracks(), 4)])], horizon=4)
    perfect, swapped, dropped = out["rows"]
    assert perfect["video_AP"] == [pytest.approx(100.0)] and perfect["frame_AP_mean"] == pytest.approx(100.0)
    # swap at frame 7 of 8: video IoU with its instance 7/9 = 0.78 -> matched at IoU 0.50-0.75 (6 of 10)
    assert swapped["video_AP"][0] == pytest.approx(60.0, abs=0.5)
    assert swapped["video_AP"][1] == pytest.approx(0.0, abs=0.5)        # swap at 4: IoU 1/3 < 0.5
    assert swapped["video_AP_mean"] == pytest.approx(np.mean(swapped["video_AP"]))
    assert swapped["frame_AP_mean"] == pytest.approx(100.0)              # identities ignored
    assert swapped["frame_AP_before"] == swapped["frame_AP_after"] == pytest.approx(100.0)
    assert dropped["frame_AP_before"] == pytest.approx(100.0) and dropped["frame_AP_after"] == pytest.approx(0.0)
    md = format_markdown(out)
    assert "| swapped | 2 | 30.0 | 60.0 / 0.0 | 100.0 | 100.0 | 100.0 |" in md
    # association metrics: perfect tracks 100; the swaps cost AssA (and HOTA), not detection
    assert perfect["HOTA_mean"] == pytest.approx(100.0) and perfect["AssA_mean"] == pytest.approx(100.0)
    assert swapped["AssA_mean"] < 90 and swapped["HOTA_mean"] < 95
    assert "frames 0-3" in md and "frames 4+" in md


def test_video_ap_is_split_by_videos_with_two_instances_of_a_category():
    """Video 1 holds two instances of category 1 (swapped from frame 4: video AP 0 there);
    video 2 one instance of each of two categories (perfect): AP 0 and 100 by kind."""
    anns = [{"id": i + 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
             "segmentations": mask_ops.encode_masks_or_none(m)} for i, m in enumerate((LEFT, RIGHT))]
    anns += [{"id": 3 + i, "video_id": 2, "category_id": 1 + i, "iscrowd": 0,
              "segmentations": mask_ops.encode_masks_or_none(m)} for i, m in enumerate((LEFT, RIGHT))]
    videos = [{"id": v, "length": T, "height": H, "width": W, "file_names": [f"v{v}/{t}.jpg" for t in range(T)]}
              for v in (1, 2)]
    gt = parse_vis_dict({"videos": videos, "annotations": anns,
                         "categories": [{"id": 1, "name": "thing"}, {"id": 2, "name": "other"}]}, "gt.json")
    results = tracks(swap_at=4) + [VideoResult(2, 1, 0.9, mask_ops.encode_masks(LEFT)),
                                   VideoResult(2, 2, 0.9, mask_ops.encode_masks(RIGHT))]
    out = diagnose(gt, [Row("mixed", [results, results])])
    row = out["rows"][0]
    assert out["kind_videos"] == {"multi": 1, "single": 1}
    assert row["video_AP_multi"] == pytest.approx(0.0, abs=0.5)
    assert row["video_AP_single"] == pytest.approx(100.0)
    assert 0.5 < row["video_AP_mean"] < 99.5            # both kinds pooled
    assert "| mixed | 0.0 | 100.0 |" in format_markdown(out)
    assert "2+ instances of a category (1 videos)" in format_markdown(out)
    # one kind only (the single-video ground truth above): no split table, the keys say None
    only = diagnose(ground_truth(), [Row("perfect", [tracks()])])
    assert only["kind_videos"] == {"multi": 1, "single": 0} and only["rows"][0]["video_AP_single"] is None
    assert "by kind of video" not in format_markdown(only)


def test_frame_bins_cover_the_longest_video_with_an_open_last_range():
    assert frame_bins(15, 50) == [(0, 15), (15, 30), (30, 45), (45, None)]
    assert frame_bins(15, 45) == [(0, 15), (15, 30), (30, None)]
    assert frame_bins(15, 46) == [(0, 15), (15, 30), (30, 45), (45, None)]
    assert frame_bins(15, 10) == [(0, None)]
    five = frame_bins(5, 110)                       # 22 ranges of 5 frames, capped at 8
    assert len(five) == 8 and five[0] == (0, 5) and five[-1] == (35, None)
    assert frame_bins(5, 110, max_bins=2) == [(0, 5), (5, None)]
    for bad in ((0, 10), (3, 0), (3, 10, 0)):
        with pytest.raises(ValueError, match=">= 1"):
            frame_bins(*bad)


def test_frame_ranges_show_where_along_the_video_frames_are_lost():
    gt = ground_truth()
    out = diagnose(gt, [Row("perfect", [tracks()]), Row("dropped", [drop_after(tracks(), 4)])], horizon=3)
    assert out["bins"] == [[0, 3], [3, 6], [6, None]] and out["bin_videos"] == [1, 1, 1]
    perfect, dropped = out["rows"]
    assert perfect["frame_AP_bins"] == [pytest.approx(100.0)] * 3
    # frames 3-5: both instances found in frame 3 only, 2 of 6 ground-truth masks, all at
    # precision 1 -> 34 of COCO's 101 recall points (0.00 .. 0.33) -> AP 100 * 34 / 101
    assert dropped["frame_AP_bins"] == [pytest.approx(100.0), pytest.approx(100.0 * 34 / 101), pytest.approx(0.0)]
    md = format_markdown(out)
    assert "videos reaching each range: 1 / 1 / 1" in md
    assert "| method / association | 0-2 | 3-5 | 6+ |" in md and "| dropped | 100.0 | 33.7 | 0.0 |" in md
    # a horizon longer than every video: one open range (= all frames), nothing after it
    whole = diagnose(gt, [Row("dropped", [drop_after(tracks(), 4)])], horizon=10)["rows"][0]
    assert whole["frame_AP_bins"] == [pytest.approx(whole["frame_AP_mean"])]
    assert whole["frame_AP_before"] == pytest.approx(whole["frame_AP_mean"]) and whole["frame_AP_after"] is None
    assert 0 < whole["frame_AP_mean"] < 100
    # no horizon: no ranges, no second table
    plain = diagnose(gt, [Row("perfect", [tracks()])])
    assert plain["bins"] == [] and "frame_AP_bins" not in plain["rows"][0]
    assert "frame range" not in format_markdown(plain)


def test_diagnosis_figure_is_written_whole_or_not_at_all(tmp_path):
    from genvis.report.diagnosis_figure import plot_diagnosis

    gt = ground_truth()
    out = diagnose(gt, [Row("m / own", [drop_after(tracks(), 4)]), Row("m / oracle", [tracks()]),
                        Row("baseline", [tracks(swap_at=4)]), Row("baseline / oracle", [tracks()])], horizon=3)
    png = tmp_path / "d.png"
    legend = plot_diagnosis(out, png)
    # frame AP ignores identities, so the swapped tracks and the last row repeat "m / oracle"
    # range by range: marked as such, not hidden under its line
    assert legend == ["m / own", "m / oracle", "baseline (= m / oracle)", "baseline / oracle (= m / oracle)"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    plot_diagnosis(diagnose(gt, [Row("m", [tracks()])]), tmp_path / "no_ranges.png")   # no horizon: one panel says so
    assert (tmp_path / "no_ranges.png").exists()
    with pytest.raises(KeyError):
        plot_diagnosis({"rows": [{"label": "m / own"}]}, tmp_path / "bad.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.png", "no_ranges.png"]


def test_diagnose_errors():
    gt = ground_truth()
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        diagnose(gt, [Row("x", [tracks()])], horizon=0)
    with pytest.raises(InputError, match="row 'x': no results"):
        diagnose(gt, [Row("x", [])])


def test_cli_writes_json_and_table_and_refuses_bad_rows(tmp_path, capsys):
    from genvis.data.results import write_results

    gt = ground_truth()
    save_vis_json(gt, tmp_path / "gt.json")
    write_results(tracks(), tmp_path / "good.json")
    write_results(tracks(swap_at=7), tmp_path / "swap.json")
    out, md = tmp_path / "d.json", tmp_path / "d.md"
    assert main(["diagnose", "--gt", str(tmp_path / "gt.json"), "--row", "good", str(tmp_path / "good.json"),
                 "--row", "swap", str(tmp_path / "swap.json"), "--horizon", "4", "--out", str(out),
                 "--table", str(md), "--plot", str(tmp_path / "d.png")]) == 0
    rec = json.loads(out.read_text())
    assert [r["label"] for r in rec["rows"]] == ["good", "swap"]
    assert rec["rows"][1]["video_AP"][0] == pytest.approx(60.0, abs=0.5)
    assert md.read_text() in capsys.readouterr().out
    assert rec["bins"] == [[0, 4], [4, None]] and (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
    # a row without results: exit 2, nothing written
    bad = tmp_path / "bad.json"
    assert main(["diagnose", "--gt", str(tmp_path / "gt.json"), "--row", "lonely", "--out", str(bad)]) == 2
    assert not bad.exists()
