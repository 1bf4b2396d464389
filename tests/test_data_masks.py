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


def test_compressed_rle_check_areas_equal_pycocotools():
    """The validation pass returns each RLE's foreground area, equal to pycocotools' area
    (random masks; an empty and a full mask), and no areas when an RLE is invalid."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(3)
    m = (rng.random((9, 17, 13)) < 0.4).astype(np.uint8)
    m[0] = 0
    m[1] = 1
    rles = mask_ops.encode_masks(m)
    problem, areas = mask_ops.compressed_rle_check([r["counts"] for r in rles], [17 * 13] * len(rles))
    assert problem is None
    np.testing.assert_array_equal(areas, mask_utils.area(rles))
    assert areas[0] == 0 and areas[1] == 17 * 13 and areas[2] == m[2].sum()
    problem, areas = mask_ops.compressed_rle_check([rles[2]["counts"], "5"], [17 * 13, 4])
    assert problem == (1, "compressed RLE 'counts' covers 5 pixels, not 4") and areas is None


def test_compressed_rle_check_split_between_processes(monkeypatch):
    """With workers=2 (forked; the size threshold and the chunk size lowered so that a small
    input spans many chunks) the areas are the same, and of two bad strings in different
    chunks the first is reported, whichever process checked it."""
    import genvis.data.masks as masks_mod

    monkeypatch.setattr(masks_mod, "_RLE_FORK_CHARS", 0)
    monkeypatch.setattr(masks_mod, "_RLE_CHECK_CHUNK", 40)
    rng = np.random.default_rng(4)
    m = (rng.random((200, 11, 7)) < rng.random((200, 1, 1))).astype(np.uint8)
    counts = [r["counts"] for r in mask_ops.encode_masks(m)]
    pixels = [11 * 7] * len(counts)
    one = mask_ops.compressed_rle_check(counts, pixels, workers=1)
    two = mask_ops.compressed_rle_check(counts, pixels, workers=2)
    assert one[0] is None and two[0] is None
    np.testing.assert_array_equal(two[1], m.reshape(200, -1).sum(1))
    bad = list(counts)
    bad[150] = "5"
    bad[37] = "zz"
    for workers in (1, 2, 3):
        assert mask_ops.compressed_rle_check(bad, pixels, workers=workers) == (
            (37, "compressed RLE 'counts' has characters outside pycocotools' alphabet '0'..'o'"), None)
