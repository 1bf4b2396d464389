"""Hand-computed cases of the association metrics (HOTA / DetA / AssA / LocA, IDF1, IDSW)."""

from __future__ import annotations

import numpy as np
import pytest

from genvis.data import masks as mask_ops
from genvis.data.results import VideoResult
from genvis.evaluate.hota import ALPHAS, association_metrics, combine, sequence_counts, video_counts
from tests.test_evaluate import box_masks, make_gt


def track(vid, cat, score, m):
    """A prediction that is absent (null) where its mask is empty."""
    return VideoResult(vid, cat, score, mask_ops.encode_masks_or_none(m))


def two_walkers(t_len=10):
    """Two non-overlapping 10x10 squares present on every frame."""
    a = box_masks(t_len, 40, 40, [(0, 10, 0, 10)] * t_len)
    b = box_masks(t_len, 40, 40, [(20, 30, 20, 30)] * t_len)
    return a, b


def test_alphas_are_trackevals():
    assert len(ALPHAS) == 19 and ALPHAS[0] == pytest.approx(0.05) and ALPHAS[-1] == pytest.approx(0.95)


def test_perfect_tracks_give_100():
    a, b = two_walkers()
    gt = make_gt({1: (10, 40, 40)}, [(1, 1, a, 0), (1, 1, b, 0)])
    m = association_metrics(gt, [track(1, 1, 0.9, a), track(1, 1, 0.1, b)])
    for av in ("class_averaged", "det_averaged"):
        r = m[av]
        for k in ("HOTA", "DetA", "AssA", "LocA", "IDF1", "IDP", "IDR", "MOTA"):
            assert r[k] == pytest.approx(100.0), (av, k)
        assert r["IDSW"] == 0


def test_identity_swap_mid_video_lowers_assa_and_idf1_not_deta():
    a, b = two_walkers()
    p1 = np.concatenate([a[:5], b[5:]])  # follows A, then jumps to B
    p2 = np.concatenate([b[:5], a[5:]])
    gt = make_gt({1: (10, 40, 40)}, [(1, 1, a, 0), (1, 1, b, 0)])
    r = association_metrics(gt, [track(1, 1, 0.9, p1), track(1, 1, 0.8, p2)])["class_averaged"]
    # every frame matched exactly: DetA 100, LocA 100
    assert r["DetA"] == pytest.approx(100.0) and r["LocA"] == pytest.approx(100.0)
    # each (gt, prediction) pair shares 5 of 10 + 10 frames: TPA / (TPA + FNA + FPA) = 5 / 15
    assert r["AssA"] == pytest.approx(100.0 / 3)
    assert r["HOTA"] == pytest.approx(100.0 * np.sqrt(1.0 / 3.0))
    # best bijection keeps 5 + 5 of 20 frames: IDF1 = 10 / (10 + (10 + 10) / 2)
    assert r["IDF1"] == pytest.approx(50.0)
    assert r["IDSW"] == 2  # both ground-truth instances switch once
    assert r["MOTA"] == pytest.approx(100.0 * (20 - 0 - 2) / 20)


def test_hand_computed_sequence():
    # one gt (3 frames); prediction 1 on frames 0 (IoU .62) and 1 (IoU 1); frame 2 missed;
    # prediction 2 alone on frame 3 (a false positive)
    c = sequence_counts([[7], [7], [7], []], [[1], [1], [], [2]],
                        [np.array([[0.62]]), np.array([[1.0]]), np.zeros((1, 0)), np.zeros((0, 1))])
    low = ALPHAS <= 0.62
    assert low.sum() == 12
    np.testing.assert_allclose(c.tp, np.where(low, 2, 1))
    np.testing.assert_allclose(c.fn, np.where(low, 1, 2))
    np.testing.assert_allclose(c.fp, np.where(low, 1, 2))
    r = combine([{1: c}], [1])["class_averaged"]
    # alpha <= .62: DetA 2/4, AssA 2/3, LocA .81; alpha > .62: DetA 1/5, AssA 1/(3+2-1), LocA 1
    assert r["DetA"] == pytest.approx(100 * (12 * 0.5 + 7 * 0.2) / 19)
    assert r["AssA"] == pytest.approx(100 * (12 * 2 / 3 + 7 * 0.25) / 19)
    assert r["LocA"] == pytest.approx(100 * (12 * 0.81 + 7 * 1.0) / 19)
    assert r["HOTA"] == pytest.approx(100 * (12 * np.sqrt(1 / 3) + 7 * np.sqrt(0.05)) / 19)
    assert r["HOTA(0)"] == pytest.approx(100 * np.sqrt(1 / 3))
    # identity: gt <-> prediction 1 shares 2 frames; IDFN 1, IDFP 1 (prediction 2's frame)
    assert (c.idtp, c.idfn, c.idfp) == (2, 1, 1)
    assert r["IDF1"] == pytest.approx(100 * 2 / 3)
    assert r["IDSW"] == 0 and r["MOTA"] == pytest.approx(100 * (2 - 1) / 3)


def test_masks_end_to_end_partial_iou():
    # frame 0 exact, frame 1 shifted 2 px: IoU 80/120 = .667 -> TP for alpha <= .65 (13 alphas)
    g = box_masks(2, 20, 20, [(0, 10, 0, 10)] * 2)
    p = box_masks(2, 20, 20, [(0, 10, 0, 10), (0, 10, 2, 12)])
    gt = make_gt({1: (2, 20, 20)}, [(1, 1, g, 0)])
    r = association_metrics(gt, [track(1, 1, 0.5, p)])["class_averaged"]
    assert r["DetA"] == pytest.approx(100 * (13 * 1.0 + 6 * 1 / 3) / 19)
    # alpha > .65: one TP, TPA 1, FNA 1, FPA 1 -> AssA 1/3
    assert r["AssA"] == pytest.approx(100 * (13 * 1.0 + 6 / 3) / 19)
    assert r["LocA"] == pytest.approx(100 * (13 * (1 + 2 / 3) / 2 + 6 * 1.0) / 19)


def test_low_score_and_empty_masks_still_count():
    # TrackEval counts every prediction, whatever its score, on every frame its segmentation is
    # non-null (an empty RLE included): a duplicate with an empty mask is a false positive
    a, _ = two_walkers(4)
    gt = make_gt({1: (4, 40, 40)}, [(1, 1, a, 0)])
    empty = VideoResult(1, 1, 0.001, mask_ops.encode_masks(np.zeros_like(a)))
    r = association_metrics(gt, [track(1, 1, 0.9, a), empty])["class_averaged"]
    assert r["DetA"] == pytest.approx(100 * 4 / (4 + 4))  # 4 TP, 4 FP
    assert r["AssA"] == pytest.approx(100.0)
    absent = VideoResult(1, 1, 0.001, [None] * 4)
    r = association_metrics(gt, [track(1, 1, 0.9, a), absent])["class_averaged"]
    assert r["DetA"] == pytest.approx(100.0)


def test_class_average_skips_empty_categories_and_det_average_pools():
    a, b = two_walkers()
    gt = make_gt({1: (10, 40, 40)}, [(1, 1, a, 0), (1, 2, b, 0)], cats=((1, "x"), (2, "y"), (3, "z")))
    m = association_metrics(gt, [track(1, 1, 0.9, a)])  # category y missed, z has nothing
    assert m["per_category"]["x"]["HOTA"] == pytest.approx(100.0)
    assert m["per_category"]["y"]["HOTA"] == pytest.approx(0.0)
    assert m["class_averaged"]["HOTA"] == pytest.approx(50.0)  # z is not averaged in
    assert m["class_averaged"]["IDF1"] == pytest.approx(50.0)
    # pooled: DetA 10/20, AssA 1 -> HOTA sqrt(.5)
    assert m["det_averaged"]["DetA"] == pytest.approx(50.0)
    assert m["det_averaged"]["HOTA"] == pytest.approx(100 * np.sqrt(0.5))
    assert m["det_averaged"]["IDF1"] == pytest.approx(100 * 10 / (10 + 5))
    # wrong category: a perfect mask labelled y where the gt is x is a miss and a false positive
    r = association_metrics(gt, [track(1, 2, 0.9, a), track(1, 2, 0.9, b)])
    assert r["per_category"]["x"]["DetA"] == pytest.approx(0.0)
    assert r["per_category"]["y"]["DetA"] == pytest.approx(50.0)


def test_video_counts_combine_like_a_bootstrap_draw():
    a, b = two_walkers()
    gt = make_gt({1: (10, 40, 40), 2: (10, 40, 40)}, [(1, 1, a, 0), (2, 1, b, 0)])
    per = video_counts(gt, [track(1, 1, 0.9, a)])
    assert set(per) == {1, 2}
    # video 2 drawn twice, video 1 once: DetA = 10 / (10 + 20)
    r = combine([per[1], per[2], per[2]], [1])["class_averaged"]
    assert r["DetA"] == pytest.approx(100 / 3)


def test_sequence_counts_rejects_repeated_ids():
    with pytest.raises(ValueError, match="repeats"):
        sequence_counts([[1, 1]], [[2]], [np.zeros((2, 1))])


def test_evaluate_command_writes_association_metrics(tmp_path, tiny_vis_json, capsys):
    import json

    from genvis.cli import main

    gt = json.loads(tiny_vis_json.read_text())
    kept = gt["annotations"][:-1]  # the last instance (a "box") is missed
    results = [{"video_id": a["video_id"], "category_id": a["category_id"], "score": 0.9,
                "segmentations": a["segmentations"]} for a in kept]
    res_path = tmp_path / "res.json"
    res_path.write_text(json.dumps(results))
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--gt", str(tiny_vis_json), "--results", str(res_path), "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    per = m["association"]["per_category"]
    assert per["disc"]["HOTA"] == pytest.approx(100.0)
    box = gt["annotations"][-1]["category_id"]
    n_frames = [sum(s is not None for s in a["segmentations"]) for a in gt["annotations"] if a["category_id"] == box]
    assert per["box"]["DetA"] == pytest.approx(100 * sum(n_frames[:-1]) / sum(n_frames))
    assert per["box"]["AssA"] == pytest.approx(100.0) and per["box"]["IDSW"] == 0
    assert m["HOTA"] == pytest.approx((per["disc"]["HOTA"] + per["box"]["HOTA"]) / 2)
    assert m["AssA"] == m["association"]["class_averaged"]["AssA"]
    printed = capsys.readouterr().out
    assert "HOTA" in printed and "det-averaged" in printed
    # --no-hota: the same AP, no association keys or table
    out2 = tmp_path / "metrics2.json"
    assert main(["evaluate", "--gt", str(tiny_vis_json), "--results", str(res_path), "--out", str(out2),
                 "--no-hota"]) == 0
    m2 = json.loads(out2.read_text())
    assert m2["AP"] == m["AP"] and m2["APho"] == m["APho"]
    assert "association" not in m2 and "HOTA" not in m2 and "IDF1" not in m2
    assert "det-averaged" not in capsys.readouterr().out


def test_packed_scores_equal_combine():
    from genvis.evaluate.hota import pack, packed_scores

    a, b = two_walkers()
    p1 = np.concatenate([a[:5], b[5:]])
    gt = make_gt({1: (10, 40, 40), 2: (10, 40, 40)}, [(1, 1, a, 0), (1, 1, b, 0), (2, 2, b, 0)],
                 cats=((1, "x"), (2, "y"), (3, "z")))
    b_early = np.concatenate([b[:7], np.zeros_like(b[7:])])
    per = video_counts(gt, [track(1, 1, 0.9, p1), track(1, 1, 0.5, b_early), track(2, 2, 0.4, a),
                            track(2, 3, 0.3, b)])
    draw = [per[1], per[2], per[2]]
    ref = combine(draw, [1, 2, 3])["class_averaged"]
    got = packed_scores(pack(draw, [1, 2, 3]).sum(0))
    for k in ("HOTA", "DetA", "AssA", "IDF1"):
        assert got[k] == pytest.approx(ref[k], abs=1e-5), k  # combine rounds to 1e-6
    assert 0 < got["AssA"] < 100 and 0 < got["HOTA"] < 100


def _frame_by_frame(gt, results, vid):
    """Per-category Counts of one video the plain way: per frame, the ids present and their
    IoU matrix (one pycocotools call per frame and category), through sequence_counts."""
    from pycocotools import mask as mask_utils

    video = gt.video(vid)
    anns = gt.annotations_of(vid)
    dts = [r for r in results if r.video_id == vid]
    out = {}
    for c in sorted({a.category_id for a in anns} | {r.category_id for r in dts}):
        ga = [(k, a) for k, a in enumerate(anns) if a.category_id == c]
        da = [(k, r) for k, r in enumerate(dts) if r.category_id == c]
        g_ids, d_ids, sims = [], [], []
        for t in range(video.length):
            gp = [(k, a.segmentations[t]) for k, a in ga if a.segmentations[t]]
            dp = [(k, r.segmentations[t]) for k, r in da if r.segmentations[t]]
            g_ids.append([k for k, _ in gp])
            d_ids.append([k for k, _ in dp])
            sims.append(np.asarray(mask_utils.iou([s for _, s in gp], [s for _, s in dp], [0] * len(dp)),
                                   dtype=np.float64).reshape(len(gp), len(dp)) if gp and dp
                        else np.zeros((len(gp), len(dp))))
        out[c] = sequence_counts(g_ids, d_ids, sims)
    return out


def test_video_counts_equal_frame_by_frame_sequence_counts():
    """video_counts (vectorised over frames; Hungarian only where positive pairs compete)
    gives sequence_counts' numbers: overlapping and duplicated predictions (frames whose
    matching must be solved, for HOTA and for CLEAR with the previous frame's pairs kept),
    absent frames, empty masks, two categories."""
    rng = np.random.default_rng(3)
    t_len, h, w = 12, 32, 32
    insts, preds = [], []
    for k in range(4):
        y, x = rng.integers(0, 20, size=2)
        dy, dx = rng.integers(-1, 2, size=2)
        boxes = [None if rng.random() < 0.15 else (int(np.clip(y + dy * t, 0, 22)), int(np.clip(y + dy * t, 0, 22)) + 10,
                                                  int(np.clip(x + dx * t, 0, 22)), int(np.clip(x + dx * t, 0, 22)) + 10)
                 for t in range(t_len)]
        insts.append((1, 1 + k % 2, box_masks(t_len, h, w, boxes), 0))
        for j in range(3):  # shifted guesses that overlap each other and the instance
            s = rng.integers(-1, 2, size=2)
            pb = [None if b is None or rng.random() < 0.4 else
                  (max(0, b[0] + s[0]), max(1, b[1] + s[0]), max(0, b[2] + s[1]), max(1, b[3] + s[1])) for b in boxes]
            preds.append(track(1, 1 + (k + (j == 2)) % 2, float(rng.random()), box_masks(t_len, h, w, pb)))
    preds.append(preds[0])  # an exact duplicate: ties in the assignments
    empty = VideoResult(1, 1, 0.3, mask_ops.encode_masks(np.zeros((t_len, h, w), bool)))  # empty, not null
    gt = make_gt({1: (t_len, h, w)}, insts, cats=((1, "x"), (2, "y")))
    results = preds + [empty]
    got = video_counts(gt, results)[1]
    want = _frame_by_frame(gt, results, 1)
    assert got.keys() == want.keys() == {1, 2}
    for c in want:
        for f in ("tp", "fn", "fp", "ass", "ass_re", "ass_pr", "loc"):
            np.testing.assert_allclose(getattr(got[c], f), getattr(want[c], f), rtol=0, atol=1e-12, err_msg=f)
        for f in ("idtp", "idfn", "idfp", "clr_tp", "clr_fn", "clr_fp", "idsw"):
            assert getattr(got[c], f) == getattr(want[c], f), f
    assert want[1].tp[0] > 0 and want[1].idsw + want[2].idsw > 0  # the case is not trivial
