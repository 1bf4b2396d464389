"""Occlusion-level AP (OVIS mBOR), Tube-Boundary AP (VMT) and DAVIS J&F on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genvis.data import masks as mask_ops
from genvis.data.results import VideoResult
from genvis.data.ytvis import parse_vis_dict
from genvis.evaluate.boundary import boundary_rles, boundary_width, mask_boundaries
from genvis.evaluate.davis_jf import davis_jf, db_statistics
from genvis.evaluate.occlusion import box_occlusion_rates, frame_rates, instance_mbor
from genvis.evaluate.ytvis_eval import evaluate, track_ious


def _square(t_len, h, w, y0, y1, x0, x1):
    m = np.zeros((t_len, h, w), bool)
    m[:, y0:y1, x0:x1] = True
    return m


def _gt(masks_by_instance, h, w, t_len, cats=None, name="seq"):
    anns = []
    for k, m in enumerate(masks_by_instance):
        segs = mask_ops.encode_masks_or_none(m)
        anns.append({"id": k + 1, "video_id": 1, "category_id": (cats or [1] * len(masks_by_instance))[k],
                     "segmentations": segs, "areas": mask_ops.rle_areas(segs), "iscrowd": 0})
    return parse_vis_dict({"videos": [{"id": 1, "file_names": [f"{name}/{t:05d}.jpg" for t in range(t_len)],
                                       "length": t_len, "width": w, "height": h}],
                           "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}, "gt.json")


def _pred(m, score=0.9, cat=1):
    return VideoResult(1, cat, score, mask_ops.encode_masks_or_none(m))


# ---- Tube-Boundary AP --------------------------------------------------------------------

def test_boundary_of_a_square_and_the_image_border():
    # 20 x 20 image: d = max(1, round(0.02 * 28.3)) = 1 -> the boundary is the outer ring
    assert boundary_width(20, 20) == 1 and boundary_width(240, 432) == 10
    sq = _square(1, 20, 20, 5, 15, 5, 15)
    assert mask_boundaries(sq, 1).sum() == 36  # 10 x 10 ring: 100 - 64
    edge = _square(1, 20, 20, 5, 15, 0, 10)  # touching the left border: the border column is boundary
    b = mask_boundaries(edge, 1)[0]
    assert b.sum() == 36 and b[5:15, 0].all()
    # d = 2 (ring of width 2) equals the 3x3 erosion repeated twice
    assert mask_boundaries(sq, 2).sum() == 100 - 36


def test_one_pixel_shift_tube_boundary_iou_and_ap():
    h = w = 20
    g = _square(2, h, w, 5, 15, 5, 15)
    p = _square(2, h, w, 5, 15, 6, 16)  # one pixel to the right
    # boundary rings (36 px each) share the top and bottom rows minus one pixel: 9 + 9 = 18
    gb = boundary_rles(mask_ops.encode_masks_or_none(g), h, w)
    pb = boundary_rles(mask_ops.encode_masks_or_none(p), h, w)
    assert track_ious([pb], [gb], 2)[0, 0] == pytest.approx(36 / 108)  # (2 * 18) / (2 * 54)
    gt = _gt([g], h, w, 2)
    m = evaluate(gt, [_pred(p)], boundary=True)
    # mask IoU 90/110 = 0.818: matched at thresholds 0.50..0.80 (7 of 10); boundary IoU 1/3: none
    assert m["AP"] == pytest.approx(70.0) and m["AP50"] == 100.0 and m["AP75"] == 100.0
    assert m["AP_B"] == 0.0 and m["AP_B50"] == 0.0 and m["AR_B10"] == 0.0
    perfect = evaluate(gt, [_pred(g)], boundary=True)
    assert perfect["AP_B"] == 100.0 and perfect["AR_B1"] == 100.0


# ---- occlusion levels --------------------------------------------------------------------

def test_box_occlusion_rates_by_hand():
    # A 20x20 box; B 10x8 inside A; C elsewhere; an absent box (w = 0)
    boxes = np.array([[0, 0, 20, 20], [10, 12, 10, 8], [30, 30, 5, 5], [0, 0, 0, 0]], float)
    r = box_occlusion_rates(boxes)
    assert r[:3] == pytest.approx([80 / 400, 1.0, 0.0]) and math.isnan(r[3])
    # union of two others over one box: D 10x10 half covered by E and by F, overlapping each other
    r2 = box_occlusion_rates(np.array([[0, 0, 10, 10], [5, 0, 10, 5], [5, 3, 10, 10]], float))
    # within D: E covers x in [5, 10), y in [0, 5) (25 px), F x in [5, 10), y in [3, 10) (35 px);
    # their union is 5 x 10 = 50 px (the 10 px both cover count once), not 60
    assert r2[0] == pytest.approx(50 / 100)
    assert np.allclose(frame_rates(np.stack([boxes, boxes[[2, 1, 0, 3]]])),
                       np.stack([r, r[[2, 1, 0, 3]]]), equal_nan=True)


def _occlusion_video():
    """A (20x20, front) and B (10x8 visible inside A's box) for two frames; B then moves away.
    mBOR A = (0.2 + 0.2 + 0) / 3 (slight), B = (1 + 1 + 0) / 3 (heavy)."""
    h = w = 40
    a = np.zeros((3, h, w), bool)
    b = np.zeros((3, h, w), bool)
    a[:, 0:20, 0:20] = True
    a[:2, 12:20, 10:20] = False  # B is visible there
    b[:2, 12:20, 10:20] = True
    b[2, 30:38, 30:40] = True
    return a, b, _gt([a, b], h, w, 3)


def test_instance_heavily_occluded_in_some_frames():
    a, b, gt = _occlusion_video()
    occ = instance_mbor(gt)
    assert occ[1] == pytest.approx(0.4 / 3) and occ[2] == pytest.approx(2 / 3)
    both = evaluate(gt, [_pred(a, 0.9), _pred(b, 0.8)])
    assert both["APso"] == 100.0 and both["APho"] == 100.0 and both["APmo"] is None
    assert both["occlusion_instances"] == {"slight": 1, "moderate": 0, "heavy": 1}
    only_b = evaluate(gt, [_pred(b, 0.8)])  # the heavily occluded one found, the other missed
    assert only_b["APho"] == 100.0 and only_b["ARho"] == 100.0
    assert only_b["APso"] == 0.0 and only_b["ARso"] == 0.0
    # all levels: recall 1/2 at precision 1 -> 51 of the 101 recall points
    assert only_b["AP"] == pytest.approx(100 * 51 / 101, abs=1e-4)


# ---- DAVIS J&F ---------------------------------------------------------------------------

def test_db_statistics_decay_and_recall():
    v = np.array([1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.2, 0.0])
    m, r, d = db_statistics(v)
    # bin edges round(linspace(1, 8, 5)) - 1 = [0, 2, 4, 5, 7]: first bin v[0:3], last v[5:8]
    assert m == pytest.approx(0.525) and r == pytest.approx(4 / 8)
    assert d == pytest.approx(np.mean([1.0, 1.0, 0.8]) - np.mean([0.2, 0.2, 0.0]))


def test_davis_sequence_perfect_and_shifted():
    h = w = 20
    obj1 = _square(4, h, w, 5, 15, 2, 8)
    obj2 = _square(4, h, w, 3, 9, 11, 18)
    gt = _gt([obj1, obj2], h, w, 4, name="bear")
    # perfect, listed with the second object first and higher scored: the Hungarian match fixes it
    perfect = davis_jf(gt, [_pred(obj2, 0.9), _pred(obj1, 0.5), _pred(_square(4, h, w, 16, 19, 0, 3), 0.1)])
    assert perfect["J&F"] == 100.0 and perfect["J_recall"] == 100.0 and perfect["F_decay"] == 0.0
    assert perfect["num_objects"] == 2 and list(perfect["per_sequence"]) == ["bear"]
    # object 1 shifted right by one pixel: J = 50 / 70 per frame (10 x 5 of 10 x 7); the tolerance ceil(0.008 * 28.3) = 1
    # pixel covers the shifted boundary, so F = 1; object 2 perfect
    shifted = davis_jf(gt, [_pred(np.roll(obj1, 1, axis=2), 0.9), _pred(obj2, 0.5)])
    o1 = shifted["per_sequence"]["bear"]["objects"][1]
    assert o1["J_mean"] == pytest.approx(100 * 50 / 70) and o1["F_mean"] == pytest.approx(100.0)
    assert shifted["J_mean"] == pytest.approx((100 * 50 / 70 + 100) / 2)
    assert shifted["J&F"] == pytest.approx((shifted["J_mean"] + 100.0) / 2)
    # nothing predicted: J = F = 0 on every frame where the object exists
    empty = davis_jf(gt, [])
    assert empty["J&F"] == 0.0 and empty["J_recall"] == 0.0


def _synth_pairs():
    """(mBOR, generator occlusion) per visible instance of the 12 training videos of a small
    synthetic config, and the per-video lists."""
    from genvis.data.synth import SynthConfig, iter_split, occlusion_rates
    from genvis.evaluate.occlusion import track_mbor

    cfg = SynthConfig(num_videos=16, seed=0, max_length=20)
    per_video = []
    for rec, _, video in iter_split(cfg, "train"):
        occ = occlusion_rates(video)
        ks = [k for k in range(len(video.instances)) if (video.labels == k).any()]
        mb = track_mbor([mask_ops.encode_masks_or_none(video.labels == k) for k in ks], rec.length)
        per_video.append((mb, np.array([np.nanmean(occ[k]) for k in ks])))
    return per_video


def test_mbor_levels_agree_with_the_synthetic_occlusion_ground_truth():
    """The generator knows how much of each shape nearer ones hide (``occlusion_rates``); the
    box-based mBOR needs only the visible masks. On the test video (the 7th) every instance
    gets the same OVIS level from both; over all 12 videos they rank instances alike, and
    the instances the generator hides by half or more have a high mBOR."""
    from scipy.stats import spearmanr

    def level(x):
        return 0 if x <= 0.25 else (1 if x <= 0.5 else 2)

    per_video = _synth_pairs()
    mb, gen = per_video[6]
    assert len(mb) == 4 and [level(x) for x in mb] == [level(x) for x in gen] == [0, 0, 0, 1]
    m = np.concatenate([p[0] for p in per_video])
    g = np.concatenate([p[1] for p in per_video])
    assert spearmanr(m, g).statistic > 0.5
    hidden, free = m[g >= 0.5], m[g <= 0.05]
    assert len(hidden) >= 5 and len(free) >= 10
    assert hidden.mean() > 0.6 and hidden.mean() > 2 * free.mean()


def test_cli_writes_occlusion_boundary_and_davis_keys(tmp_path, capsys):
    import json

    from genvis.cli import main as genvis_main
    from genvis.data.results import write_results
    from genvis.data.ytvis import save_vis_json

    a, b, gt = _occlusion_video()
    gp, rp, mp = tmp_path / "gt.json", tmp_path / "res.json", tmp_path / "metrics.json"
    save_vis_json(gt, gp)
    write_results([_pred(a, 0.9), _pred(np.roll(b, 1, axis=2), 0.8)], rp)
    assert genvis_main(["evaluate", "--gt", str(gp), "--results", str(rp), "--out", str(mp)]) == 0
    m = json.loads(mp.read_text())
    assert m["APso"] == 100.0 and m["APmo"] is None and "AP_B" not in m and "davis" not in m
    assert genvis_main(["evaluate", "--gt", str(gp), "--results", str(rp), "--out", str(mp),
                        "--iou", "boundary", "--protocol", "davis"]) == 0
    m = json.loads(mp.read_text())
    for k in ("AP", "APso", "APho", "AP_B", "AP_B50", "AP_B75", "AR_B1", "AR_B10", "J&F", "J_mean", "F_decay"):
        assert k in m
    assert m["davis"]["num_objects"] == 2 and m["J&F"] == m["davis"]["J&F"]
    assert m["per_category_AP"] and m["AP"] == evaluate(gt, [_pred(a, 0.9), _pred(np.roll(b, 1, axis=2), 0.8)])["AP"]
    out = capsys.readouterr().out
    assert "APho" in out and "AP_B50" in out and "J&F" in out and "seq" in out


def _forked_set():
    """(videos, annotations, predictions) of 34 videos (enough for the worker split):
    predictions shifted by 0..3 pixels and a false positive per video."""
    rng = np.random.default_rng(1)
    videos, anns, preds = [], [], []
    for vid in range(1, 35):
        videos.append({"id": vid, "file_names": [f"v{vid}/{t}.jpg" for t in range(3)], "length": 3,
                       "width": 40, "height": 40})
        a, b, _ = _occlusion_video()
        for k, m in enumerate((a, b)):
            segs = mask_ops.encode_masks_or_none(m)
            anns.append({"id": len(anns) + 1, "video_id": vid, "category_id": 1, "segmentations": segs,
                         "areas": mask_ops.rle_areas(segs), "iscrowd": 0})
            preds.append(VideoResult(vid, 1, float(rng.random()),
                                     mask_ops.encode_masks_or_none(np.roll(m, int(rng.integers(4)), axis=2))))
        preds.append(VideoResult(vid, 1, float(rng.random()), mask_ops.encode_masks_or_none(_square(3, 40, 40, 30, 40, 0, 9))))
        if vid % 5 == 0:  # an empty but non-null mask on every frame: present, area 0
            preds.append(VideoResult(vid, 1, float(rng.random()), mask_ops.encode_masks(np.zeros((3, 40, 40), bool))))
    return videos, anns, preds


def test_forked_workers_give_the_same_numbers():
    """Two processes and one agree to the last digit (AP and the association metrics, apart
    and in one pass)."""
    videos, anns, preds = _forked_set()
    gt = parse_vis_dict({"videos": videos, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}, "gt")
    one = evaluate(gt, preds, workers=1)
    two = evaluate(gt, preds, workers=2)
    assert one == two and 0 < one["AP"] < 100 and one["APho"] is not None
    from genvis.evaluate.hota import association_metrics

    assoc = association_metrics(gt, preds, workers=1)
    assert association_metrics(gt, preds, workers=2) == assoc and 0 < assoc["class_averaged"]["HOTA"] < 100
    # both in one pass over the videos (shared per-frame IoUs), in one process and in two
    for workers in (1, 2):
        joint = evaluate(gt, preds, workers=workers, hota=True)
        assert joint["association"] == assoc and joint["HOTA"] == assoc["class_averaged"]["HOTA"]
        assert {k: v for k, v in joint.items() if k in one} == one


def test_command_checks_ground_truth_beside_results_like_one_process(tmp_path, capsys):
    """`genvis evaluate --workers 2` checks the ground truth's RLEs and computes its mBOR in a
    forked process while it reads the results: the metrics, the warnings and the errors are
    those of `--workers 1` (a ground-truth error first, even when the results are broken too)."""
    import json

    from genvis.cli import main as genvis_main
    from genvis.data.results import write_results

    videos, anns, preds = _forked_set()
    gt_dict = {"videos": videos, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}
    gp, rp = tmp_path / "gt.json", tmp_path / "res.json"
    gp.write_text(json.dumps(gt_dict))
    write_results(preds + [preds[0]], rp)  # an exact repeat: a warning

    def run(workers, results=rp):
        out = tmp_path / f"m{workers}.json"
        rc = genvis_main(["evaluate", "--gt", str(gp), "--results", str(results), "--out", str(out),
                          "--workers", str(workers)])
        return rc, capsys.readouterr().err, out

    (rc1, err1, m1), (rc2, err2, m2) = run(1), run(2)
    assert rc1 == rc2 == 0 and "repeat an earlier one exactly" in err2 and err1 == err2
    one, two = json.loads(m1.read_text()), json.loads(m2.read_text())
    assert one == two and one["APso"] is not None and one["APho"] is not None
    # a garbled ground-truth RLE (one run short) and a results file with a bad score
    seg = gt_dict["annotations"][40]["segmentations"][1]
    seg["counts"] = seg["counts"][:-1]
    gp.write_text(json.dumps(gt_dict))
    bad_res = tmp_path / "bad.json"
    bad_res.write_text(json.dumps([dict(preds[0].to_json(), score=2.0)]))
    for results in (rp, bad_res):
        (rc1, err1, _), (rc2, err2, _) = run(1, results), run(2, results)
        assert rc1 == rc2 == 2 and err1 == err2
        assert f"{gp}: annotation 41 frame 1: compressed RLE 'counts'" in err2 and "warning" not in err2


@pytest.mark.parametrize("cpus, load, expected", [(2, 0.2, 2), (2, 0.9, 2), (2, 1.2, 1), (2, 3.4, 1), (1, 0.0, 1),
                                                  (8, 5.0, 2), (8, 7.5, 1), (8, None, 2)])
def test_default_workers_follow_idle_cores(monkeypatch, cpus, load, expected):
    """`genvis evaluate` forks a second process by default only when about one core is idle
    (a loaded machine pays CPU for no wall time); without a load average it trusts the CPU count."""
    import os

    from genvis.commands import evaluate as evaluate_command

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)

    def loadavg():
        if load is None:
            raise OSError("no load average")
        return (load, load, load)

    monkeypatch.setattr(os, "getloadavg", loadavg)
    assert evaluate_command._default_workers() == expected
