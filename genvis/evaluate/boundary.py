"""Tube-Boundary AP (Video Mask Transfiner, Ke et al. CVPR 2022; supplement Sec. "Tube-Boundary AP").

The official code (SysCV/vmt, ``cocoapi_hq/PythonAPI/pycocotools/ytvoseval.py``,
``computeBoundaryIoU``) runs the YouTube-VIS protocol with the video IoU of a prediction and
a non-crowd ground-truth tube replaced by ``min(tube mask IoU, tube boundary IoU)`` (crowd
ground truth keeps the mask IoU). The boundary of a mask is Boundary IoU's (Cheng et al.,
CVPR 2021): the mask minus its erosion by a 3x3 square repeated
``d = max(1, round(0.02 x image diagonal))`` times, the image border counting as boundary
(pixels outside the image are background). The tube boundary IoU sums boundary
intersections and unions over the frames, like the tube mask IoU.

Here the erosion is ``scipy.ndimage.binary_erosion`` with a 3x3 structure (depth 1: frames
independent), ``iterations=d`` and ``border_value=0`` on the stack of an instance's frames
cropped to the bounding box of its masks (exact: outside that box the masks are 0, which is
what the zero border gives); boundary masks are re-encoded as RLE (``pycocotools``) and the
tube IoU is :func:`genvis.evaluate.ytvis_eval.video_ious` on them. No Python loop over pixels.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from pycocotools import mask as mask_utils
from scipy import ndimage

from genvis.data import masks as mask_ops

_STRUCT = np.ones((1, 3, 3), dtype=bool)  # 3x3 in each frame, frames independent


def boundary_width(height: int, width: int, dilation_ratio: float = 0.02) -> int:
    """Erosion iterations ``max(1, round(dilation_ratio * sqrt(H^2 + W^2)))`` (pixels)."""
    return max(1, int(round(dilation_ratio * math.sqrt(height ** 2 + width ** 2))))


def mask_boundaries(masks: np.ndarray, iterations: int) -> np.ndarray:
    """Boundary of each mask of a stack.

    Args:
        masks: bool [T, H, W].
        iterations: erosion repetitions d (>= 1).

    Returns:
        bool [T, H, W]: ``mask & ~erode(mask, 3x3, d times, outside = background)``.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.size == 0 or not masks.any():
        return np.zeros_like(masks)
    eroded = ndimage.binary_erosion(masks, structure=_STRUCT, iterations=int(iterations), border_value=0)
    return masks & ~eroded


def boundary_rles(rles: Sequence[dict | None], height: int, width: int, dilation_ratio: float = 0.02
                  ) -> list[dict | None]:
    """Per-frame boundary RLEs of one tube (None where the tube is absent).

    Args:
        rles: compressed RLE (or None) per frame, frames of ``height`` x ``width`` pixels.
        dilation_ratio: boundary width as a share of the image diagonal (0.02 as VMT).

    Returns:
        compressed RLE (``counts`` str) or None per frame.
    """
    idx = [t for t, r in enumerate(rles) if r is not None]
    out: list[dict | None] = [None] * len(rles)
    if not idx:
        return out
    present = [rles[t] for t in idx]
    boxes = np.asarray(mask_utils.toBbox(present), dtype=np.float64).reshape(-1, 4)
    nonempty = boxes[:, 2] > 0
    empty_rle = None
    if not nonempty.all():
        empty_rle = mask_ops.encode_masks(np.zeros((1, height, width), bool))[0]
    if nonempty.any():
        b = boxes[nonempty]
        x0, y0 = int(b[:, 0].min()), int(b[:, 1].min())
        x1, y1 = int((b[:, 0] + b[:, 2]).max()), int((b[:, 1] + b[:, 3]).max())
        decoded = np.asarray(mask_ops._decode([r for r, ok in zip(present, nonempty) if ok]), dtype=bool)
        crop = np.moveaxis(decoded.reshape(height, width, -1)[y0:y1, x0:x1], -1, 0)  # [n, h', w']
        edge = mask_boundaries(crop, boundary_width(height, width, dilation_ratio))
        full = np.zeros((height, width, len(edge)), dtype=np.uint8, order="F")
        full[y0:y1, x0:x1] = np.moveaxis(edge, 0, -1)
        enc = mask_utils.encode(full)
        enc_iter = iter(enc)
    for t, ok in zip(idx, nonempty.tolist()):
        if ok:
            r = next(enc_iter)
            out[t] = {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}
        else:
            out[t] = empty_rle
    return out


def tube_boundary_ious(dts: Sequence, gts: Sequence, video, mask_ious: np.ndarray, min_iou: float,
                       dilation_ratio: float = 0.02) -> np.ndarray:
    """VMT's video IoU ``min(mask IoU, boundary IoU)`` for non-crowd ground truth.

    Args:
        dts, gts: ``ytvis_eval._Inst`` of one video (predictions, ground truth).
        video: its :class:`genvis.data.ytvis.VideoRecord` (length, height, width).
        mask_ious: float64 [D, G] tube mask IoU (pairs provably below ``min_iou`` may be 0).
        min_iou: the protocol's lowest IoU threshold: only pairs with a mask IoU at least
            this need a boundary IoU (the minimum of the two is below it anyway otherwise).
        dilation_ratio: boundary width share of the image diagonal.

    Returns:
        float64 [D, G]; crowd ground-truth columns keep the mask IoU (as the official code).
    """
    from genvis.evaluate.ytvis_eval import _Inst, video_ious

    out = np.array(mask_ious, dtype=np.float64, copy=True)
    crowd = np.array([bool(g.iscrowd) for g in gts], dtype=bool)
    need = (out >= min_iou) & ~crowd[None, :]
    # pairs below min_iou: min(mask, boundary) <= mask < min_iou; no boundary needed, and a
    # value below the lowest threshold never matches, so they stay as they are
    if not need.any():
        return out
    di, gi = np.flatnonzero(need.any(1)), np.flatnonzero(need.any(0))
    h, w = video.height, video.width
    bd = [_Inst(dts[i].id, 0.0, 0, 0.0, boundary_rles(dts[i].rles, h, w, dilation_ratio)) for i in di]
    bg = [_Inst(gts[j].id, 0.0, 0, 0.0, boundary_rles(gts[j].rles, h, w, dilation_ratio)) for j in gi]
    b = video_ious(bd, bg, video.length)
    sub = out[np.ix_(di, gi)]
    sel = need[np.ix_(di, gi)]
    sub[sel] = np.minimum(sub[sel], b[sel])
    out[np.ix_(di, gi)] = sub
    return out
