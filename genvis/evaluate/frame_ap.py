"""Frame-level mask AP of video results: segmentation and classification without identity.

A diagnostic beside the video AP (:mod:`genvis.evaluate.ytvis_eval`): every frame of every
video becomes one COCO image; every predicted instance contributes one detection per frame
where its mask is non-empty, scored with the instance's video score; the ground truth is
each instance's visible mask in that frame. The result is COCO mask AP (pycocotools,
``iouType="segm"``, 100 detections per frame), so it does not care whether the detections
of one instance keep one identity across frames. Comparing the two tells association
errors (video AP low, frame AP high) from segmentation / classification errors (both low);
a frame range shows where in a video a method loses.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Iterator, Sequence

from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from genvis.data.masks import to_rle

FRAME_KEYS = ("AP", "AP50", "AP75", "AR100")


def _kept_frames(video: Any, segmentations: Sequence[Any], image_id: dict) -> Iterator[tuple[int, dict]]:
    """(image id, compressed RLE) of the kept frames where the segmentation is non-empty."""
    for t, seg in enumerate(segmentations):
        if (video.id, t) in image_id:
            rle = to_rle(seg, video.height, video.width)  # compressed, str counts
            if rle is not None and int(mask_utils.area(rle)) > 0:
                yield image_id[(video.id, t)], rle


def coco_mask_ap(images: list[dict], annotations: list[dict], detections: list[dict],
                 categories: Sequence[tuple[int, str]]) -> list[float | None]:
    """COCO mask AP of per-image detections: the one frame-AP builder of the project (the
    video results' frame AP here, the frame detector's in :mod:`genvis.detector.train`).

    Args:
        images: ``{"id", "height", "width"}`` per image (a frame).
        annotations: COCO ground truth (``id``, ``image_id``, ``category_id``, compressed RLE
            ``segmentation``, ``area``, ``bbox``, ``iscrowd``).
        detections: ``{"image_id", "category_id", "segmentation", "score"}`` (may be empty).
        categories: (id, name) pairs.

    Returns:
        The 12 ``COCOeval.summarize`` stats (pycocotools, ``iouType="segm"``, max detections
        1 / 10 / 100): AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl in
        percent, None where COCOeval reports -1 (no ground truth in that range).
    """
    cats = [{"id": int(i), "name": str(n)} for i, n in categories]
    coco_gt = COCO()
    coco_gt.dataset = {"images": images, "annotations": annotations, "categories": cats}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt.createIndex()
        if detections:
            coco_dt = coco_gt.loadRes(detections)
        else:
            coco_dt = COCO()
            coco_dt.dataset = {"images": images, "annotations": [], "categories": cats}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "segm")
        ev.params.maxDets = [1, 10, 100]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [None if s < 0 else 100.0 * float(s) for s in ev.stats]


def frame_mask_ap(gt: Any, results: Sequence[Any], frames: tuple[int, int | None] = (0, None)) -> dict[str, Any]:
    """COCO mask AP over the frames of the videos, identities ignored.

    Args:
        gt: the ground truth (``VISDataset`` with annotations).
        results: ``VideoResult`` list (``video_id``, ``category_id``, ``score``,
            ``segmentations``: one RLE or None per frame).
        frames: ``(start, stop)`` frame indices kept in every video (stop None = to the end),
            e.g. ``(20, None)`` scores only frames 20 onward.

    Returns:
        {"AP", "AP50", "AP75", "AR100"} in percent (None when no kept frame has a ground-truth
        instance), "frames" (frames scored), "detections" (per-frame detections scored).
        Crowd annotations are ignored regions, as in COCO.

    Raises:
        ValueError: ``frames`` with a negative start or stop <= start.
    """
    start, stop = int(frames[0]), frames[1]
    if start < 0 or (stop is not None and int(stop) <= start):
        raise ValueError(f"frame range must satisfy 0 <= start < stop, got {frames}")
    videos = {v.id: v for v in gt.videos}
    image_id: dict[tuple[int, int], int] = {}
    images = []
    for v in gt.videos:
        for t in range(start, v.length if stop is None else min(int(stop), v.length)):
            image_id[(v.id, t)] = len(images) + 1
            images.append({"id": len(images) + 1, "height": v.height, "width": v.width})
    anns = []
    for a in gt.annotations or []:
        for img, rle in _kept_frames(videos[a.video_id], a.segmentations, image_id):
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": a.category_id,
                         "segmentation": rle, "area": float(mask_utils.area(rle)),
                         "bbox": list(mask_utils.toBbox(rle)), "iscrowd": int(a.iscrowd)})
    dets = [{"image_id": img, "category_id": r.category_id, "segmentation": rle, "score": float(r.score)}
            for r in results for img, rle in _kept_frames(videos[r.video_id], r.segmentations, image_id)]
    out: dict[str, Any] = {"frames": len(images), "detections": len(dets)}
    if not any(a["iscrowd"] == 0 for a in anns):
        return {**out, **{k: None for k in FRAME_KEYS}}
    stats = coco_mask_ap(images, anns, dets, [(c.id, c.name) for c in gt.categories])
    return {**out, "AP": stats[0], "AP50": stats[1], "AP75": stats[2], "AR100": stats[8]}
