"""Hand-computed cases of the YouTube-VIS video AP / AR, and the `genvis evaluate` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genvis.cli import main
from genvis.data import masks as mask_ops
from genvis.data.results import VideoResult, parse_results
from genvis.data.ytvis import parse_vis_dict
from genvis.evaluate.ytvis_eval import evaluate, format_table, video_ious


def box_masks(t_len, h, w, boxes):
    """Masks [T, H, W]; ``boxes[t]`` = (y0, y1, x0, x1) or None (absent)."""
    m = np.zeros((t_len, h, w), bool)
    for t, b in enumerate(boxes):
        if b is not None:
            y0, y1, x0, x1 = b
            m[t, y0:y1, x0:x1] = True
    return m


def make_gt(videos, instances, cats=((1, "a"),)):
    """videos: {vid: (T, H, W)}; instances: list of (vid, cat, masks[T,H,W] | segs, iscrowd)."""
    vids = [{"id": v, "file_names": [f"v{v}/{t}.jpg" for t in range(s[0])], "length": s[0],
             "width": s[2], "height": s[1]} for v, s in videos.items()]
    anns = []
    for i, (vid, cat, m, crowd) in enumerate(instances):
        segs = mask_ops.encode_masks_or_none(m)
        anns.append({"id": i + 1, "video_id": vid, "category_id": cat, "segmentations": segs,
                     "areas": mask_ops.rle_areas(segs), "iscrowd": crowd})
    return parse_vis_dict({"videos": vids, "annotations": anns,
                           "categories": [{"id": c, "name": n} for c, n in cats]}, "gt.json")


def res(vid, cat, score, m):
    return VideoResult(vid, cat, score, mask_ops.encode_masks(m))


def test_video_iou_sums_over_frames_not_mean_of_frames():
    # GT 10x10 on frames 0..2; prediction exact on 0 and 1, absent on 2, 5x10 extra on frame 3
    gt_m = box_masks(4, 20, 20, [(0, 10, 0, 10)] * 3 + [None])
    pr_m = box_masks(4, 20, 20, [(0, 10, 0, 10), (0, 10, 0, 10), None, (10, 15, 0, 10)])
    gt = make_gt({1: (4, 20, 20)}, [(1, 1, gt_m, 0)])
    # I = 200, U = 250 + 300 - 200 = 350 -> 0.5714 (mean of per-frame IoUs would be 0.5)
    from genvis.evaluate.ytvis_eval import _prepare
    gts, dts = _prepare(gt, [res(1, 1, 0.9, pr_m)])
    iou = video_ious(dts[1, 1], gts[1, 1], 4)
    assert iou.shape == (1, 1) and iou[0, 0] == pytest.approx(200 / 350, abs=1e-12)
    m = evaluate(gt, [res(1, 1, 0.9, pr_m)])
    # matched at IoU thresholds .50 and .55 only: AP = 2/10
    assert m["AP"] == pytest.approx(20.0)
    assert m["AP50"] == pytest.approx(100.0) and m["AP75"] == pytest.approx(0.0)
    assert m["AR1"] == pytest.approx(20.0) and m["AR10"] == pytest.approx(20.0)


def test_partial_overlap_across_frames():
    # frame 0 exact (I=100), frame 1 shifted by 2 px (I=80): IoU = 180 / 220 = 0.818
    gt_m = box_masks(2, 20, 20, [(0, 10, 0, 10), (0, 10, 0, 10)])
    pr_m = box_masks(2, 20, 20, [(0, 10, 0, 10), (0, 10, 2, 12)])
    gt = make_gt({1: (2, 20, 20)}, [(1, 1, gt_m, 0)])
    m = evaluate(gt, [res(1, 1, 0.5, pr_m)])
    assert m["AP"] == pytest.approx(70.0)  # thresholds .50 ... .80 pass
    assert m["AP75"] == pytest.approx(100.0)
    assert m["APs"] == pytest.approx(70.0) and m["APm"] is None and m["APl"] is None


def test_area_ranges_use_mean_area_over_present_frames():
    h = w = 320
    small = box_masks(3, h, w, [(0, 50, 0, 50)] * 3)  # 2500 px
    # present on one frame only with 200x100 = 20000 px: medium (mean over all frames would be small)
    medium = box_masks(3, h, w, [None, (60, 260, 60, 160), None])
    large = box_masks(3, h, w, [(0, 300, 0, 250)] * 3)  # 75000 px > 256^2
    gt = make_gt({1: (3, h, w)}, [(1, 1, small, 0), (1, 1, medium, 0), (1, 1, large, 0)])
    m = evaluate(gt, [res(1, 1, 0.9, small), res(1, 1, 0.8, medium)])
    assert m["APs"] == pytest.approx(100.0)
    assert m["APm"] == pytest.approx(100.0)
    assert m["APl"] == pytest.approx(0.0)
    # all areas: 2 of 3 found with precision 1 -> recall points 0..0.66 -> 67/101
    assert m["AP"] == pytest.approx(100 * 67 / 101)
    assert m["AR10"] == pytest.approx(100 * 2 / 3)
    assert m["AR1"] == pytest.approx(100 * 1 / 3)


def test_max_detection_limits():
    gt_m = box_masks(2, 30, 30, [(0, 10, 0, 10)] * 2)
    fp_m = box_masks(2, 30, 30, [(20, 30, 20, 30)] * 2)
    gt = make_gt({1: (2, 30, 30)}, [(1, 1, gt_m, 0)])
    one_fp = [res(1, 1, 0.9, fp_m), res(1, 1, 0.8, gt_m)]
    m = evaluate(gt, one_fp)
    assert m["AR1"] == pytest.approx(0.0) and m["AR10"] == pytest.approx(100.0)
    assert m["AP"] == pytest.approx(50.0)  # precision 1/2 at recall 1
    eleven_fp = [res(1, 1, 0.9 - 0.01 * i, fp_m) for i in range(11)] + [res(1, 1, 0.5, gt_m)]
    m = evaluate(gt, eleven_fp)
    assert m["AR10"] == pytest.approx(0.0)
    assert m["AP"] == pytest.approx(100 / 12, abs=1e-4)  # 12th detection still counts (max 100)


def test_wrong_category_and_crowd_are_handled():
    a = box_masks(2, 30, 30, [(0, 10, 0, 10)] * 2)
    b = box_masks(2, 30, 30, [(15, 30, 15, 30)] * 2)
    gt = make_gt({1: (2, 30, 30)}, [(1, 1, a, 0), (1, 2, b, 1)], cats=((1, "a"), (2, "b")))
    # right class on a; a detection on the crowd region of class b is ignored (no false positive)
    m = evaluate(gt, [res(1, 1, 0.7, a), res(1, 2, 0.9, b), res(1, 2, 0.8, b)])
    assert m["AP"] == pytest.approx(100.0)
    assert m["per_category_AP"] == {"a": pytest.approx(100.0), "b": None}
    # predicting a as class b finds nothing
    m = evaluate(gt, [res(1, 2, 0.7, a)])
    assert m["AP"] == pytest.approx(0.0)


def test_ground_truth_against_itself_gives_100(tiny_vis_dict):
    gt = parse_vis_dict(tiny_vis_dict, "gt.json")
    results = parse_results([{"video_id": a.video_id, "category_id": a.category_id, "score": 1.0,
                              "segmentations": a.segmentations} for a in gt.annotations], "r.json", gt)
    m = evaluate(gt, results)
    assert m["AP"] == pytest.approx(100.0) and m["AR10"] == pytest.approx(100.0)
    assert m["AP50"] == m["AP75"] == pytest.approx(100.0)
    assert set(m["per_category_AP"]) == {"disc", "box"}
    assert "AP" in format_table(m) and "disc" in format_table(m)


def test_no_results_gives_zero(tiny_vis_dict):
    gt = parse_vis_dict(tiny_vis_dict, "gt.json")
    m = evaluate(gt, [])
    assert m["AP"] == 0.0 and m["AR10"] == 0.0


def test_evaluate_command_writes_metrics(tmp_path, tiny_vis_json, capsys):
    gt = json.loads(tiny_vis_json.read_text())
    results = [{"video_id": a["video_id"], "category_id": a["category_id"], "score": 0.9,
                "segmentations": a["segmentations"]} for a in gt["annotations"]][:-1]
    res_path = tmp_path / "res.json"
    res_path.write_text(json.dumps(results))
    out = tmp_path / "m" / "metrics.json"
    assert main(["evaluate", "--gt", str(tiny_vis_json), "--results", str(res_path), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    # 5 of 6 instances found, all with IoU 1: category "box" loses one of 3
    assert metrics["per_category_AP"]["disc"] == pytest.approx(100.0)
    assert metrics["per_category_AP"]["box"] == pytest.approx(100 * 67 / 101)
    assert metrics["AR10"] == pytest.approx((100 + 200 / 3) / 2)
    assert "AP50" in capsys.readouterr().out


def test_evaluate_command_bad_results_writes_nothing(tmp_path, tiny_vis_json, capsys):
    bad = [{"video_id": 99, "category_id": 1, "score": 0.5, "segmentations": []}]
    res_path = tmp_path / "res.json"
    res_path.write_text(json.dumps(bad))
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--gt", str(tiny_vis_json), "--results", str(res_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "res.json" in err and "video_id 99" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.json", "tiny_vis.json"]


def test_frame_ap_ignores_identity_that_video_ap_punishes():
    """One instance over 4 frames, predicted exactly but as two tracks (an identity switch
    after frame 1): per frame every mask is perfect (AP 100); as videos, each track covers
    half the instance (video IoU 0.5, a match at the 0.50 threshold only)."""
    from genvis.evaluate.frame_ap import frame_mask_ap

    gt_m = box_masks(4, 20, 20, [(2, 12, 2, 12)] * 4)
    gt = make_gt({1: (4, 20, 20)}, [(1, 1, gt_m, 0)])
    first = box_masks(4, 20, 20, [(2, 12, 2, 12)] * 2 + [None] * 2)
    second = box_masks(4, 20, 20, [None] * 2 + [(2, 12, 2, 12)] * 2)
    results = [res(1, 1, 0.9, first), res(1, 1, 0.8, second)]
    per_frame = frame_mask_ap(gt, results)
    assert per_frame["AP"] == pytest.approx(100.0) and per_frame["AR100"] == pytest.approx(100.0)
    assert per_frame["frames"] == 4 and per_frame["detections"] == 4
    assert evaluate(gt, results)["AP"] == pytest.approx(10.0)


def test_frame_ap_frame_range_and_empty_range():
    from genvis.evaluate.frame_ap import frame_mask_ap

    gt_m = box_masks(4, 20, 20, [(2, 12, 2, 12)] * 3 + [None])
    gt = make_gt({1: (4, 20, 20)}, [(1, 1, gt_m, 0)])
    # exact on frames 0-1, disjoint from the instance on frame 2
    pr = box_masks(4, 20, 20, [(2, 12, 2, 12)] * 2 + [(14, 20, 14, 20), None])
    results = [res(1, 1, 0.9, pr)]
    assert frame_mask_ap(gt, results, (0, 2))["AP"] == pytest.approx(100.0)
    late = frame_mask_ap(gt, results, (2, None))
    assert late["AP"] == pytest.approx(0.0) and late["frames"] == 2 and late["detections"] == 1
    # frame 3 has no ground truth at all: undefined, not 0 or 100
    assert frame_mask_ap(gt, results, (3, None))["AP"] is None
    with pytest.raises(ValueError, match="frame range"):
        frame_mask_ap(gt, results, (2, 2))


def test_cli_per_frame(tmp_path, capsys):
    gt_m = box_masks(3, 20, 20, [(2, 12, 2, 12)] * 3)
    gt = make_gt({1: (3, 20, 20)}, [(1, 1, gt_m, 0)])
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    from genvis.data.results import write_results
    from genvis.data.ytvis import save_vis_json

    save_vis_json(gt, gt_path)
    write_results([res(1, 1, 0.9, gt_m)], res_path)
    out = tmp_path / "m.json"
    assert main(["evaluate", "--gt", str(gt_path), "--results", str(res_path), "--out", str(out),
                 "--per-frame", "1:"]) == 0
    pf = json.loads(out.read_text())["per_frame"]
    assert pf["AP"] == pytest.approx(100.0) and pf["frames"] == 2 and pf["frames_from"] == 1
    assert "per frame (frames 1..end" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    assert main(["evaluate", "--gt", str(gt_path), "--results", str(res_path), "--out", str(bad),
                 "--per-frame", "x"]) == 2
    assert "--per-frame: expected START:STOP" in capsys.readouterr().err and not bad.exists()
