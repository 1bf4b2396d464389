"""Do the cached frame queries tell look-alike instances apart across frames?

An appearance-only ceiling for query-matching association (MinVIS, GenVIS's propagation)
on a stage-one cache: for every pair (A, B) of ground-truth instances of one category in one
video, and every frame t where A, and at t + d both A and B, are found by some frame query
(the detector's own frame mask, from the cached mask embeddings and mask features, at mask
IoU > 0.5 with the ground truth on the stride-4 grid), the probe asks whether A's query at
t is closer (cosine similarity) to A's query at t + d than to B's. Printed per gap d: the
share of such cases decided right (0.5 = chance), for the last decoder layer's frame
queries and for the mask embeddings, and the number of cases.

    python benchmarks/probe_lookalike_queries.py --cache cache/synth/valid/tiny.zarr \\
        --annotations data/synth/synth/valid.json --detector detectors/synth/tiny.pt

Run after the quickstart (its cache, ground truth and frame detector). Needs the detector
file for the mask projection that turns cached mask features into frame masks.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genvis.cache.reader import CacheReader
from genvis.data import masks as mask_ops
from genvis.data.ytvis import load_vis_json
from genvis.model.idol_head import IDOLConfig, IDOLModel, init_mask_projection_from_detector


def matched_queries(frame_masks: torch.Tensor, gt_masks: np.ndarray, min_iou: float = 0.5) -> np.ndarray:
    """Per frame, the frame query whose mask best overlaps one ground-truth instance.

    Args:
        frame_masks: bool [T, Q_f, h, w], the detector's frame masks on the stride-4 grid of
            the padded frame.
        gt_masks: bool [T, H, W], the instance in full resolution (H, W <= 4h, 4w).
        min_iou: smallest mask IoU that counts as found.

    Returns:
        int64 [T]: the query index, -1 where the instance is absent or no query reaches min_iou.
    """
    t, _, h, w = frame_masks.shape
    g = torch.from_numpy(gt_masks).float()[:, None]
    small = F.interpolate(g, size=(g.shape[-2] // 4, g.shape[-1] // 4), mode="area")[:, 0] > 0.5
    grid = torch.zeros(t, h, w, dtype=torch.bool)
    grid[:, : small.shape[1], : small.shape[2]] = small
    inter = (frame_masks & grid[:, None]).sum((-1, -2)).float()
    union = (frame_masks | grid[:, None]).sum((-1, -2)).float()
    best = (inter / union.clamp(min=1)).max(1)
    found = (grid.sum((-1, -2)) > 0) & (best.values > min_iou)
    return torch.where(found, best.indices, torch.full_like(best.indices, -1)).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--annotations", type=Path, required=True)
    ap.add_argument("--detector", type=Path, required=True)
    ap.add_argument("--gaps", type=int, nargs="+", default=[1, 5, 15], help="frame gaps d")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    reader = CacheReader(args.cache)
    ds = load_vis_json(args.annotations)
    first = reader.read_clip(reader.video_ids[0], 0, 1, fields=("mask_features",))["mask_features"]
    head = IDOLModel(IDOLConfig(num_classes=len(ds.categories), hidden_dim=reader.hidden_dim,
                                mask_feature_dim=int(first.shape[1]),
                                num_frame_queries=reader.num_queries).validate())
    init_mask_projection_from_detector(head, args.detector)
    right: dict[int, dict[str, list[bool]]] = {d: {"frame_queries": [], "mask_embeddings": []} for d in args.gaps}
    for video in ds.videos:
        anns = [a for a in ds.annotations if a.video_id == video.id]
        pairs = [(i, j) for i in range(len(anns)) for j in range(len(anns))
                 if i != j and anns[i].category_id == anns[j].category_id]
        if not pairs:
            continue
        clip = reader.read_clip(video.id, 0, video.length, layers=slice(-1, None),
                                fields=("frame_queries", "mask_features", "mask_embeddings"))
        with torch.no_grad():
            masks = head.frame_mask_logits(clip["mask_embeddings"], clip["mask_features"]) > 0
        unit = {"frame_queries": F.normalize(clip["frame_queries"][:, 0], dim=-1),
                "mask_embeddings": F.normalize(clip["mask_embeddings"], dim=-1)}
        match = [matched_queries(masks, mask_ops.annotation_masks(a, video)) for a in anns]
        for i, j in pairs:
            for d in args.gaps:
                for t in range(video.length - d):
                    qa, qa_later, qb_later = match[i][t], match[i][t + d], match[j][t + d]
                    if min(qa, qa_later, qb_later) < 0 or qa_later == qb_later:
                        continue
                    for name, e in unit.items():
                        right[d][name].append(bool(e[t, qa] @ e[t + d, qa_later] > e[t, qa] @ e[t + d, qb_later]))
    figures = {}
    for d in args.gaps:
        n = len(right[d]["frame_queries"])
        fq = float(np.mean(right[d]["frame_queries"])) if n else float("nan")
        me = float(np.mean(right[d]["mask_embeddings"])) if n else float("nan")
        figures[d] = {"cases": n, "frame_queries": fq, "mask_embeddings": me}
        print(f"gap {d:3d} frames: look-alike told apart by frame queries {fq:.3f}, "
              f"by mask embeddings {me:.3f} ({n} cases; 0.5 = chance)")
    print("SUMMARY probe_lookalike_queries: " + ", ".join(
        f"d={d} {f['frame_queries']:.3f} / {f['mask_embeddings']:.3f}" for d, f in figures.items())
        + " (frame queries / mask embeddings right)")
    if args.json:
        args.json.write_text(json.dumps({"cache": str(args.cache), "gaps": figures}, indent=1))


if __name__ == "__main__":
    main()
