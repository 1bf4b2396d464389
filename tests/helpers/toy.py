"""A tiny synthetic stage-two problem: cached-feature-like tensors that encode instances.

Used by the tests and for smoke runs of training and inference without a detector. Each
video has instances moving over a ``grid x grid`` cell board; an instance fills one cell per
frame (a ``cell x cell`` pixel block) and may be absent for some frames. The raw mask
features one-hot encode the cell of each pixel of the mask-feature grid; the frame query
of an instance holds its cell, its class and a per-instance identity code, so the video
modules can learn to segment, classify and track from them.
"""

from __future__ import annotations


import numpy as np
import torch

from tests.helpers.clip_source import InMemoryClipSource


def make_toy_problem(num_videos: int = 4, length: int = 8, num_instances: int = 2, num_classes: int = 2,
                     hidden_dim: int = 32, num_frame_queries: int = 4, layers: int = 2, grid: int = 4,
                     cell: int = 4, absent_prob: float = 0.2, seed: int = 0):
    """Build (clip source, VISDataset) for a toy problem.

    Args:
        num_videos, length (T), num_instances (per video, <= num_frame_queries),
        num_classes (K), hidden_dim (C >= grid*grid + K + 8), num_frame_queries (Q_f),
        layers (L), grid (mask-feature grid size h = w), cell (pixels per grid cell),
        absent_prob: chance an instance is absent in a frame (first frame always present
        for instance 0). seed: RNG seed.

    Returns:
        (:class:`InMemoryClipSource`, ``genvis.data.ytvis.VISDataset`` with annotations).
    """
    from genvis.data.masks import encode_masks_or_none, rle_areas, rle_bboxes
    from genvis.data.ytvis import AnnotationRecord, CategoryRecord, VideoRecord, VISDataset

    g = np.random.default_rng(seed)
    cells = grid * grid
    if hidden_dim < cells + num_classes + 8:
        raise ValueError("hidden_dim too small for the toy encoding")
    size = grid * cell
    videos, anns, sources = [], [], {}
    ann_id = 1
    for v in range(num_videos):
        vid = v + 1
        fq = 0.1 * g.standard_normal((length, layers, num_frame_queries, hidden_dim)).astype(np.float32)
        mf = np.zeros((length, hidden_dim, grid, grid), dtype=np.float32)
        for y in range(grid):
            for x in range(grid):
                mf[:, y * grid + x, y, x] = 1.0
        slots = g.permutation(num_frame_queries)[:num_instances]
        for k in range(num_instances):
            label = int(g.integers(num_classes))
            ident = g.standard_normal(8).astype(np.float32)
            pos = int(g.integers(cells))
            masks = np.zeros((length, size, size), dtype=bool)
            for t in range(length):
                if t > 0 and g.random() < 0.7:
                    y, x = divmod(pos, grid)
                    y = int(np.clip(y + g.integers(-1, 2), 0, grid - 1))
                    x = int(np.clip(x + g.integers(-1, 2), 0, grid - 1))
                    pos = y * grid + x
                present = (k == 0 and t == 0) or g.random() >= absent_prob
                if not present:
                    continue
                y, x = divmod(pos, grid)
                masks[t, y * cell:(y + 1) * cell, x * cell:(x + 1) * cell] = True
                q = np.zeros(hidden_dim, dtype=np.float32)
                q[pos] = 2.0
                q[cells + label] = 2.0
                q[cells + num_classes:cells + num_classes + 8] = ident
                fq[t, :, slots[k]] += q
            if not masks.any():
                continue
            rles = encode_masks_or_none(masks)
            anns.append(AnnotationRecord(id=ann_id, video_id=vid, category_id=label + 1,
                                         segmentations=rles, areas=rle_areas(rles),
                                         bboxes=rle_bboxes(rles), iscrowd=0))
            ann_id += 1
        videos.append(VideoRecord(id=vid, file_names=[f"toy{vid}/{t:05d}.jpg" for t in range(length)],
                                  length=length, width=size, height=size))
        sources[vid] = {"frame_queries": torch.from_numpy(fq), "mask_features": torch.from_numpy(mf),
                        "attrs": {"original_size": [size, size], "resized_size": [size, size],
                                  "padded_size": [size, size]}}
    cats = [CategoryRecord(id=i + 1, name=f"class{i + 1}") for i in range(num_classes)]
    dataset = VISDataset(videos, anns, cats)
    return InMemoryClipSource(sources, name="toy clip source"), dataset
