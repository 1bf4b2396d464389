"""Seed-replicated comparison with a paired video bootstrap (genvis.evaluate.compare, `genvis compare`)."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from genvis.cli import main
from genvis.data import masks as mask_ops
from genvis.data.results import VideoResult
from genvis.data.ytvis import parse_vis_dict
from genvis.errors import ConfigError
from genvis.evaluate.compare import paired_bootstrap
from genvis.evaluate.ytvis_eval import EvalParams, accumulate, evaluate, video_evaluations

T, H, W = 3, 24, 24


def box(t_len, y, x, size, shift=0):
    m = np.zeros((t_len, H, W), bool)
    for t in range(t_len):
        m[t, y + shift:y + shift + size, x + t:x + t + size] = True
    return m


def problem(n_videos=8, seed=0):
    """GT: n_videos videos with 1-2 boxes of 2 classes; results of a 'good' and a 'bad' method
    as functions of a method seed (the bad one shifts its boxes further and mixes in false
    positives), so that A (good) is clearly ahead of B (bad)."""
    rng = np.random.default_rng(seed)
    videos, anns, inst = [], [], []
    for v in range(1, n_videos + 1):
        videos.append({"id": v, "file_names": [f"v{v}/{t}.jpg" for t in range(T)], "length": T,
                       "width": W, "height": H})
        for _ in range(int(rng.integers(1, 3))):
            y, x, s, c = int(rng.integers(0, 12)), int(rng.integers(0, 8)), int(rng.integers(6, 10)), int(rng.integers(1, 3))
            segs = mask_ops.encode_masks_or_none(box(T, y, x, s))
            anns.append({"id": len(anns) + 1, "video_id": v, "category_id": c, "segmentations": segs,
                         "areas": mask_ops.rle_areas(segs), "iscrowd": 0})
            inst.append((v, c, y, x, s))
    gt = parse_vis_dict({"videos": videos, "annotations": anns,
                         "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}, "gt.json")

    def method(quality, mseed):
        r = np.random.default_rng(1000 * quality + mseed)
        out = []
        for v, c, y, x, s in inst:
            shift = int(r.integers(0, 2)) if quality else int(r.integers(1, 5))
            out.append(VideoResult(v, c, float(r.uniform(0.5, 1.0)), mask_ops.encode_masks(box(T, y, x, s, shift))))
            if not quality:
                out.append(VideoResult(v, 3 - c, float(r.uniform(0.5, 1.0)), mask_ops.encode_masks(box(T, y, x, s))))
        return out
    return gt, method


def test_accumulating_per_video_evaluations_equals_evaluate_also_with_repeated_videos():
    gt, method = problem()
    results = method(0, 0)
    p = EvalParams()
    per_video = video_evaluations(gt, results, p)
    cats = sorted(c.id for c in gt.categories)
    full = accumulate([per_video[v] for v in sorted(per_video)], cats, p).stats[0]
    assert 100 * full == pytest.approx(evaluate(gt, results)["AP"], abs=1e-5)
    # a bootstrap draw (videos 1, 3, 3, 5) equals evaluating a split where video 3 is copied
    draw = [1, 3, 3, 5]
    drawn = accumulate([per_video[v] for v in draw], cats, p).stats[0]
    raw = json.loads(json.dumps({"videos": [], "annotations": [], "categories": [{"id": 1, "name": "a"},
                                                                                 {"id": 2, "name": "b"}]}))
    copied, rs = [], []
    for new, old in enumerate(draw, start=1):
        vrec = gt.video(old)
        raw["videos"].append({"id": new, "file_names": list(vrec.file_names), "length": vrec.length,
                              "width": vrec.width, "height": vrec.height})
        for a in gt.annotations_of(old):
            raw["annotations"].append({"id": len(raw["annotations"]) + 1, "video_id": new,
                                       "category_id": a.category_id, "segmentations": list(a.segmentations),
                                       "areas": list(a.areas), "iscrowd": 0})
        rs += [VideoResult(new, r.category_id, r.score, r.segmentations) for r in results if r.video_id == old]
    copied = parse_vis_dict(raw, "copied.json")
    assert 100 * drawn == pytest.approx(evaluate(copied, rs)["AP"], abs=1e-5)
    assert drawn != pytest.approx(full)


def test_identical_methods_tie_and_a_better_method_wins_every_draw():
    gt, method = problem()
    same = paired_bootstrap(gt, [method(0, 0)], [method(0, 0)], n_boot=50)
    assert same["diff"] == 0 and same["ci95"] == [0.0, 0.0] and same["p_a_better"] == 0.0
    out = paired_bootstrap(gt, [method(1, s) for s in range(2)], [method(0, s) for s in range(3)], n_boot=100)
    assert len(out["a_ap"]) == 2 and len(out["b_ap"]) == 3
    assert out["a_mean"] == pytest.approx(np.mean([evaluate(gt, method(1, s))["AP"] for s in range(2)]), abs=1e-5)
    assert out["b_mean"] == pytest.approx(np.mean([evaluate(gt, method(0, s))["AP"] for s in range(3)]), abs=1e-5)
    assert out["diff"] > 20 and 0 < out["ci95"][0] < out["diff"] < out["ci95"][1]
    assert out["p_a_better"] == 1.0 and out["num_videos"] == 8
    again = paired_bootstrap(gt, [method(1, s) for s in range(2)], [method(0, s) for s in range(3)], n_boot=100)
    assert again["ci95"] == out["ci95"]                     # seeded draws
    # HOTA / AssA over the same draws: per-seed values are association_metrics' class average
    from genvis.evaluate.hota import association_metrics

    for k in ("HOTA", "AssA"):
        r = out["assoc"][k]
        assert r["a"][1] == pytest.approx(association_metrics(gt, method(1, 1))["class_averaged"][k], abs=1e-5)
        assert r["b_mean"] == pytest.approx(np.mean([association_metrics(gt, method(0, s))["class_averaged"][k]
                                                     for s in range(3)]), abs=1e-5)
        assert r["ci95"][0] <= r["diff"] <= r["ci95"][1]
    assert same["assoc"]["HOTA"]["diff"] == 0 and same["assoc"]["HOTA"]["ci95"] == [0.0, 0.0]


def test_compare_errors():
    gt, method = problem(n_videos=2)
    with pytest.raises(ConfigError, match="at least one results file"):
        paired_bootstrap(gt, [], [method(0, 0)])
    with pytest.raises(ConfigError, match="--bootstrap"):
        paired_bootstrap(gt, [method(0, 0)], [method(0, 0)], n_boot=0)


def test_compare_cli_writes_the_comparison(tmp_path, capsys):
    gt, method = problem(n_videos=4)
    gt_path = tmp_path / "gt.json"
    raw = {"videos": [{"id": v.id, "file_names": list(v.file_names), "length": v.length, "width": v.width,
                       "height": v.height} for v in gt.videos],
           "annotations": [{"id": a.id, "video_id": a.video_id, "category_id": a.category_id,
                            "segmentations": list(a.segmentations), "areas": list(a.areas), "iscrowd": 0}
                           for a in gt.annotations],
           "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    gt_path.write_text(json.dumps(raw))
    paths = {}
    for name, (q, s) in {"a0": (1, 0), "a1": (1, 1), "b0": (0, 0)}.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps([{"video_id": r.video_id, "category_id": r.category_id, "score": r.score,
                                            "segmentations": r.segmentations} for r in method(q, s)]))
    out = tmp_path / "cmp.json"
    png = tmp_path / "cmp.png"
    rc = main(["compare", "--gt", str(gt_path), "--a", str(paths["a0"]), str(paths["a1"]), "--b", str(paths["b0"]),
               "--bootstrap", "30", "--out", str(out), "--plot", str(png), "--label-a", "good",
               "--label-b", "bad", "--no-progress"])
    assert rc == 0
    rec = json.loads(out.read_text())
    assert rec["n_boot"] == 30 and len(rec["a_ap"]) == 2 and rec["b"] == [str(paths["b0"])]
    assert rec["diff"] == pytest.approx(rec["a_mean"] - rec["b_mean"])
    assert len(rec["draws"]) == 30 and rec["label_a"] == "good"
    assert rec["ci95"] == pytest.approx(list(np.percentile(rec["draws"], [2.5, 97.5])))
    assert np.mean(np.array(rec["draws"]) > 0) == pytest.approx(rec["p_a_better"])
    assert "good - bad: +" in capsys.readouterr().out
    image = plt.imread(png)
    assert image.shape[1] > image.shape[0] > 300               # two panels side by side
    no_ann = tmp_path / "noann.json"
    no_ann.write_text(json.dumps({**raw, "annotations": None}))
    assert main(["compare", "--gt", str(no_ann), "--a", str(paths["a0"]), "--b", str(paths["b0"]),
                 "--out", str(tmp_path / "x.json"), "--no-progress"]) == 2
    assert not (tmp_path / "x.json").exists()


def test_compare_cli_writes_undefined_ap_as_null(tmp_path):
    """Only crowd ground truth: every AP is undefined (NaN); the json gets nulls, not a crash."""
    gt, method = problem(n_videos=3)
    raw = {"videos": [{"id": v.id, "file_names": list(v.file_names), "length": v.length, "width": v.width,
                       "height": v.height} for v in gt.videos],
           "annotations": [{"id": a.id, "video_id": a.video_id, "category_id": a.category_id,
                            "segmentations": list(a.segmentations), "areas": list(a.areas), "iscrowd": 1}
                           for a in gt.annotations],
           "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(raw))
    res = tmp_path / "r.json"
    res.write_text(json.dumps([{"video_id": r.video_id, "category_id": r.category_id, "score": r.score,
                                "segmentations": r.segmentations} for r in method(1, 0)]))
    out = tmp_path / "cmp.json"
    assert main(["compare", "--gt", str(gt_path), "--a", str(res), "--b", str(res), "--bootstrap", "5",
                 "--out", str(out), "--no-progress"]) == 0
    rec = json.loads(out.read_text())
    assert rec["a_ap"] == [None] and rec["b_ap"] == [None] and rec["diff"] is None
    assert rec["ci95"] == [None, None]
    png = tmp_path / "undefined.png"                            # the plot copes with nothing to draw
    assert main(["compare", "--gt", str(gt_path), "--a", str(res), "--b", str(res), "--bootstrap", "5",
                 "--out", str(out), "--plot", str(png), "--no-progress"]) == 0
    assert plt.imread(png).ndim == 3
