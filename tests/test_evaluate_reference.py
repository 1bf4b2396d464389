"""Our evaluator against an independent reference of the official YouTube-VIS algorithm.

The reference is pycocotools' own ``COCOeval`` (matching, accumulation, summary) with a
video in place of an image, as youtubevos/cocoapi's ``ytvoseval`` does: ``computeIoU`` is
replaced by the official video IoU (per-frame ``merge``/``area`` loops summed over frames),
and each instance's ``area`` is set as the official code sets ``avg_area`` (mean of the
truthy per-frame areas: json ``areas`` for ground truth, RLE areas for predictions).
Inputs are randomized: several videos and categories, frame sizes crossing the size
ranges, missing frames, empty masks, crowd instances, duplicates, score ties, > 100
predictions in one (video, category).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from genvis.data import masks as mask_ops
from genvis.data.results import parse_results
from genvis.data.ytvis import parse_vis_dict
from genvis.evaluate.ytvis_eval import evaluate, evaluate_arrays


class VideoCOCOeval(COCOeval):
    """COCOeval with the official ytvoseval video IoU (written from the protocol, loop form)."""

    def computeIoU(self, imgId, catId):  # noqa: N802 (COCOeval API)
        gt = self._gts[imgId, catId]
        dt = self._dts[imgId, catId]
        if len(gt) == 0 and len(dt) == 0:
            return []
        order = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[i] for i in order][: self.params.maxDets[-1]]
        ious = np.zeros((len(dt), len(gt)))
        for i, d in enumerate(dt):
            for j, g in enumerate(gt):
                inter = union = 0.0
                for ds, gs in zip(d["segs"], g["segs"]):
                    if ds and gs:
                        inter += mask_utils.area(mask_utils.merge([ds, gs], True))
                        union += mask_utils.area(mask_utils.merge([ds, gs], False))
                    elif gs:
                        union += mask_utils.area(gs)
                    elif ds:
                        union += mask_utils.area(ds)
                ious[i, j] = inter / union if union > 0 else 0.0
        return ious


def _mean_truthy(values):
    vals = [v for v in values if v]
    return float(np.mean(vals)) if vals else 0.0


def reference_stats(gt_json: dict, res_json: list) -> tuple[np.ndarray, np.ndarray]:
    """(stats[12], precision) of the reference on the json objects."""
    vids = {v["id"]: v for v in gt_json["videos"]}
    gt_anns = []
    for a in gt_json["annotations"]:
        v = vids[a["video_id"]]
        segs = [mask_ops.to_rle(s, v["height"], v["width"]) if s else None for s in a["segmentations"]]
        gt_anns.append({"id": a["id"], "image_id": a["video_id"], "category_id": a["category_id"],
                        "iscrowd": a.get("iscrowd", 0), "area": _mean_truthy(a["areas"]),
                        "bbox": [0, 0, 1, 1], "segs": segs})
    dt_anns = []
    for k, r in enumerate(res_json):
        areas = [float(mask_utils.area(s)) if s else None for s in r["segmentations"]]
        dt_anns.append({"id": k + 1, "image_id": r["video_id"], "category_id": r["category_id"],
                        "score": r["score"], "iscrowd": 0, "area": _mean_truthy(areas),
                        "bbox": [0, 0, 1, 1], "segs": r["segmentations"]})
    images = [{"id": vid} for vid in vids]
    coco_gt, coco_dt = COCO(), COCO()
    coco_gt.dataset = {"images": images, "annotations": gt_anns, "categories": gt_json["categories"]}
    coco_dt.dataset = {"images": images, "annotations": dt_anns, "categories": gt_json["categories"]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt.createIndex()
        ev = VideoCOCOeval(coco_gt, coco_dt, "bbox")
        ev.params.areaRng = [[0 ** 2, 1e5 ** 2], [0 ** 2, 128 ** 2], [128 ** 2, 256 ** 2], [256 ** 2, 1e5 ** 2]]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats), ev.eval["precision"]


def _random_case(seed: int) -> tuple[dict, list]:
    rng = np.random.default_rng(seed)
    sizes = [(24, 32), (40, 30), (300, 420), (200, 260)]
    cats = [{"id": 3, "name": "cat3"}, {"id": 7, "name": "cat7"}, {"id": 9, "name": "cat9"}]
    videos, anns, results = [], [], []
    aid = 1
    for vid in (5, 2, 11, 8, 4):  # unsorted ids: evaluation order must follow sorted ids
        h, w = sizes[rng.integers(len(sizes))]
        t_len = int(rng.integers(2, 6))
        videos.append({"id": vid, "file_names": [f"v{vid}/{t:05d}.jpg" for t in range(t_len)],
                       "length": t_len, "width": w, "height": h})
        n_inst = int(rng.integers(0, 4))
        for _ in range(n_inst):
            m = np.zeros((t_len, h, w), bool)
            bh, bw = int(rng.integers(2, h)), int(rng.integers(2, w))
            y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
            for t in range(t_len):
                if rng.random() < 0.75:
                    dy, dx = rng.integers(-3, 4, size=2)
                    m[t, max(0, y + dy):y + dy + bh, max(0, x + dx):x + dx + bw] = True
            segs = mask_ops.encode_masks_or_none(m)
            if rng.random() < 0.2 and m.any():  # an empty RLE (area 0) where absent
                t0 = next((t for t in range(t_len) if segs[t] is None), None)
                if t0 is not None:
                    segs[t0] = mask_ops.encode_masks(np.zeros((1, h, w), bool))[0]
            cat = int(rng.choice([3, 7, 9]))
            anns.append({"id": aid, "video_id": vid, "category_id": cat, "segmentations": segs,
                         "areas": mask_ops.rle_areas(segs), "bboxes": mask_ops.rle_bboxes(segs),
                         "iscrowd": int(rng.random() < 0.1)})
            aid += 1
            for _ in range(int(rng.integers(0, 4))):  # perturbed copies, duplicates, wrong class
                pm = m.copy()
                shift = int(rng.integers(-4, 5))
                pm = np.roll(pm, shift, axis=2)
                pm[rng.random(t_len) < 0.2] = False
                if rng.random() < 0.3:
                    extra = int(rng.integers(t_len))
                    pm[extra, : h // 3, : w // 3] = True
                pcat = cat if rng.random() < 0.8 else int(rng.choice([3, 7, 9]))
                segs_p = mask_ops.encode_masks(pm)
                if rng.random() < 0.3:
                    segs_p = [None if not pm[t].any() else s for t, s in enumerate(segs_p)]
                results.append({"video_id": vid, "category_id": pcat,
                                "score": float(np.round(rng.random(), 1)), "segmentations": segs_p})
        for _ in range(int(rng.integers(0, 3))):  # false positives
            pm = np.zeros((t_len, h, w), bool)
            y, x = int(rng.integers(0, h - 1)), int(rng.integers(0, w - 1))
            pm[:, y:, x:] = True
            results.append({"video_id": vid, "category_id": int(rng.choice([3, 7, 9])),
                            "score": float(rng.random()), "segmentations": mask_ops.encode_masks(pm)})
    # > 100 predictions in one (video, category): the max-detection cut must match
    v0 = videos[0]
    for _ in range(105 if seed % 2 == 0 else 0):
        pm = np.zeros((v0["length"], v0["height"], v0["width"]), bool)
        y, x = int(rng.integers(0, v0["height"] - 1)), int(rng.integers(0, v0["width"] - 1))
        pm[:, y: y + 10, x: x + 10] = True
        results.append({"video_id": v0["id"], "category_id": 3, "score": float(np.round(rng.random(), 2)),
                        "segmentations": mask_ops.encode_masks(pm)})
    gt = {"videos": videos, "annotations": anns, "categories": cats}
    return gt, results


@pytest.mark.parametrize("seed", range(6))
def test_matches_official_algorithm_on_random_inputs(seed):
    gt_json, res_json = _random_case(seed)
    ref_stats, ref_precision = reference_stats(gt_json, res_json)
    gt = parse_vis_dict(gt_json, "gt.json")
    results = parse_results(res_json, "res.json", gt)
    arrays = evaluate_arrays(gt, results)
    np.testing.assert_allclose(arrays.stats, ref_stats, atol=1e-6)
    np.testing.assert_allclose(arrays.precision, ref_precision, atol=1e-6)
    metrics = evaluate(gt, results)
    for key, idx in (("AP", 0), ("AP50", 1), ("AP75", 2), ("APs", 3), ("APm", 4), ("APl", 5),
                     ("AR1", 6), ("AR10", 7)):
        if ref_stats[idx] < 0:
            assert metrics[key] is None
        else:
            assert abs(metrics[key] - 100 * ref_stats[idx]) < 1e-2


def test_random_cases_are_not_trivial():
    """The randomized inputs exercise matches, misses and several size ranges."""
    stats = np.array([reference_stats(*_random_case(s))[0] for s in range(6)])
    assert (stats[:, 0] > 0).any() and (stats[:, 0] < 1).all()  # AP strictly between 0 and 1
    assert (stats[:, 3] >= 0).any() and (stats[:, 5] >= 0).any()  # small and large both occur
