"""Segmentations of YouTube-VIS / OVIS json <-> COCO RLE <-> boolean masks (pycocotools).

A per-frame segmentation in a VIS json is one of:

* a compressed RLE ``{"size": [H, W], "counts": "<str>"}``,
* an uncompressed RLE ``{"size": [H, W], "counts": [int, ...]}``,
* polygons ``[[x0, y0, x1, y1, ...], ...]`` (pixel coordinates),
* ``None`` (JSON ``null``) where the instance is absent from the frame.

Every RLE this module returns is *compressed* with ``counts`` as a ``str``, which is both
valid JSON and accepted by every ``pycocotools.mask`` function.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

if TYPE_CHECKING:  # pragma: no cover
    from genvis.data.ytvis import AnnotationRecord, VideoRecord

RLE = dict  # {"size": [H, W], "counts": str}


def _decode(rles):
    """``pycocotools.mask.decode`` without its numpy-2 DeprecationWarning about ``copy``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rles)


def _compressed(rle: dict) -> dict:
    """Return ``rle`` with ``counts`` as ``str`` (pycocotools returns bytes)."""
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def to_rle(seg: Any, height: int, width: int) -> RLE | None:
    """Convert one frame's segmentation to a compressed RLE.

    Args:
        seg: compressed or uncompressed RLE dict, polygon list, or ``None``.
        height, width: the video's frame size in pixels (used for polygons; RLEs carry
            their own ``size``, which callers validate against the video).

    Returns:
        ``{"size": [H, W], "counts": str}``, or ``None`` when ``seg`` is ``None``.

    Raises:
        ValueError: ``seg`` is not one of the supported forms.
    """
    if seg is None or (isinstance(seg, list) and not seg):
        return None
    if type(seg) is dict and type(seg.get("counts")) is str and len(seg) == 2:  # fast path: already ours
        size = seg["size"]
        if type(size) is list and len(size) == 2 and type(size[0]) is int and type(size[1]) is int:
            return seg
    if isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            raise ValueError("RLE segmentation needs 'size' and 'counts'")
        counts = seg["counts"]
        if isinstance(counts, list):
            h, w = int(seg["size"][0]), int(seg["size"][1])
            return _compressed(mask_utils.frPyObjects(seg, h, w))
        if isinstance(counts, (str, bytes)):
            return _compressed(seg)
        raise ValueError(f"RLE 'counts' must be a string or a list of ints, got {type(counts).__name__}")
    if isinstance(seg, list):
        polys = [p for p in seg if isinstance(p, list) and len(p) >= 6]
        if len(polys) != len(seg) or any(len(p) % 2 for p in polys):
            raise ValueError("polygon segmentation must be a list of [x0, y0, x1, y1, ...] lists of >= 3 points")
        rles = mask_utils.frPyObjects(polys, int(height), int(width))
        return _compressed(mask_utils.merge(rles))
    raise ValueError(f"unsupported segmentation type {type(seg).__name__}")


def segmentation_size(seg: Any) -> tuple[int, int] | None:
    """Return the ``(H, W)`` an RLE segmentation declares, or ``None`` for polygons/``None``."""
    if isinstance(seg, dict) and "size" in seg:
        size = seg["size"]
        return int(size[0]), int(size[1])
    return None


def decode_rle(rle: RLE | None, height: int, width: int) -> np.ndarray:
    """Decode one RLE to a bool mask ``[H, W]`` (all False for ``None``)."""
    if rle is None:
        return np.zeros((height, width), dtype=bool)
    return _decode(rle).astype(bool)


def annotation_masks(ann: "AnnotationRecord", video: "VideoRecord") -> np.ndarray:
    """Decode an annotation to per-frame masks.

    Args:
        ann: the annotation (one instance over the whole video).
        video: its video (gives ``length``, ``height`` and ``width``).

    Returns:
        ``np.ndarray`` of dtype bool, shape ``[T, H, W]`` with ``T = video.length``;
        all False on frames where the instance is absent (``None`` segmentation).
    """
    out = np.zeros((video.length, video.height, video.width), dtype=bool)
    present = [(t, to_rle(s, video.height, video.width)) for t, s in enumerate(ann.segmentations) if s is not None]
    if present:
        decoded = _decode([r for _, r in present])  # [H, W, n] uint8, one C call
        for j, (t, _) in enumerate(present):
            out[t] = decoded[:, :, j].astype(bool)
    return out


def encode_masks(masks: np.ndarray) -> list[RLE]:
    """Encode masks ``[T, H, W]`` (bool or 0/1 integers) as one compressed RLE per frame.

    Empty frames get an RLE of an empty mask (never ``None``), as the results format
    expects an RLE for every frame. Vectorised: one pycocotools call for all frames.

    Raises:
        ValueError: ``masks`` is not 3-D.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"expected masks [T, H, W], got shape {masks.shape}")
    if masks.shape[0] == 0:
        return []
    fortran = np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))
    return [_compressed(r) for r in mask_utils.encode(fortran)]


def encode_masks_or_none(masks: np.ndarray) -> list[RLE | None]:
    """Like :func:`encode_masks` but ``None`` for empty frames (the ground-truth convention)."""
    masks = np.asarray(masks)
    rles = encode_masks(masks)
    present = masks.reshape(masks.shape[0], -1).any(axis=1)
    return [r if p else None for r, p in zip(rles, present)]


_AREA_CHUNK = 255  # pycocotools 2.0.11 + numpy 2: area() of > 255 RLEs at once overflows a uint8


def area_array(rles: Sequence[RLE]) -> np.ndarray:
    """Pixel areas (float64 ``[n]``) of a list of RLEs (no ``None``), in C, chunked."""
    out = np.zeros(len(rles), dtype=np.float64)
    for s in range(0, len(rles), _AREA_CHUNK):
        out[s:s + _AREA_CHUNK] = np.atleast_1d(mask_utils.area(list(rles[s:s + _AREA_CHUNK])))
    return out


def rle_areas(rles: Sequence[RLE | None]) -> list[float | None]:
    """Pixel areas of RLEs (``None`` stays ``None``)."""
    idx = [i for i, r in enumerate(rles) if r is not None]
    out: list[float | None] = [None] * len(rles)
    if idx:
        for i, a in zip(idx, area_array([rles[i] for i in idx]).tolist()):
            out[i] = a
    return out


def rle_bboxes(rles: Sequence[RLE | None]) -> list[list[float] | None]:
    """COCO boxes ``[x, y, w, h]`` (pixels) of RLEs (``None`` stays ``None``)."""
    idx = [i for i, r in enumerate(rles) if r is not None]
    out: list[list[float] | None] = [None] * len(rles)
    if idx:
        boxes = np.atleast_2d(mask_utils.toBbox([rles[i] for i in idx]))
        for i, b in zip(idx, boxes):
            out[i] = [float(v) for v in b]
    return out

