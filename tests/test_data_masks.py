"""RLE / polygon / bool-mask conversions."""

from __future__ import annotations

import numpy as np
import pytest

from genvis.data import masks as mask_ops


def test_encode_decode_round_trip_and_empty_frames():
    rng = np.random.default_rng(0)
    m = rng.random((5, 13, 17)) < 0.3
    m[2] = False
    rles = mask_ops.encode_masks(m)
    assert len(rles) == 5 and all(isinstance(r["counts"], str) and r["size"] == [13, 17] for r in rles)
    back = np.stack([mask_ops.decode_rle(r, 13, 17) for r in rles])
    assert (back == m).all()
    gt_style = mask_ops.encode_masks_or_none(m)
    assert gt_style[2] is None and gt_style[0] == rles[0]
    assert mask_ops.rle_areas(gt_style) == [float(x.sum()) if x.any() else None for x in m]
    boxes = mask_ops.rle_bboxes(gt_style)
    ys, xs = np.nonzero(m[0])
    assert boxes[0] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert boxes[2] is None


def test_to_rle_forms():
    poly = [[0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0]]
    r = mask_ops.to_rle(poly, 20, 20)
    m = mask_ops.decode_rle(r, 20, 20)
    assert 100 <= m.sum() <= 121 and m[5, 5] and not m[15, 15]
    unc = {"size": [4, 3], "counts": [1, 2, 9]}  # column-major: pixels (1,0), (2,0)
    m = mask_ops.decode_rle(mask_ops.to_rle(unc, 4, 3), 4, 3)
    assert m.sum() == 2 and m[1, 0] and m[2, 0]
    assert mask_ops.to_rle(None, 4, 3) is None and mask_ops.to_rle([], 4, 3) is None
    with pytest.raises(ValueError):
        mask_ops.to_rle("nope", 4, 3)
    with pytest.raises(ValueError):
        mask_ops.to_rle([[1.0, 2.0]], 4, 3)


def test_area_array_handles_more_than_255_rles():
    # pycocotools 2.0.11 with numpy 2 overflows on area() of > 255 RLEs at once
    m = np.zeros((300, 6, 6), bool)
    for i in range(300):
        m[i, : 1 + i % 6, :2] = True
    areas = mask_ops.area_array(mask_ops.encode_masks(m))
    assert areas.shape == (300,) and (areas == m.reshape(300, -1).sum(1)).all()
