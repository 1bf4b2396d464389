"""SegmentationSpool: per-prediction RLEs kept in temporary files during inference."""

import os

import numpy as np
import pytest

from genvis.data.masks import decode_rle, encode_masks
from genvis.infer.spool import SegmentationSpool


def test_spool_round_trip_in_frame_order_and_files_removed(tmp_path):
    rng = np.random.default_rng(0)
    masks = rng.random((3, 5, 7, 9)) > 0.6          # k=3 predictions, 5 frames of 7x9
    with SegmentationSpool(3, dir=str(tmp_path)) as spool:
        for s, e in ((0, 2), (2, 3), (3, 5)):       # three clips, appended clip by clip
            for j in range(3):
                spool.extend(j, encode_masks(masks[j, s:e]))
        spool.extend(2, [None])
        assert len(spool) == 3 and [spool.length(j) for j in range(3)] == [5, 5, 6]
        back = spool.lists()
        again = list(spool.read(0))                 # re-readable
    assert again == back[0]
    for j in range(3):
        got = np.stack([decode_rle(r, 7, 9) for r in back[j][:5]])
        assert (got == masks[j]).all()
    assert back[2][5] is None
    assert os.listdir(tmp_path) == []               # anonymous files: nothing left behind
    spool.close()                                   # idempotent


def test_spool_after_close_cannot_be_read():
    spool = SegmentationSpool(1)
    spool.extend(0, [None])
    spool.close()
    with pytest.raises(IndexError):
        list(spool.read(0))
