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


def test_spool_spills_long_lists_to_a_file_and_reads_them_back_in_order(tmp_path, monkeypatch):
    import genvis.infer.spool as spool_mod

    monkeypatch.setattr(spool_mod, "MEMORY_CHARS", 100)
    rng = np.random.default_rng(1)
    masks = rng.random((2, 12, 6, 5)) > 0.5
    rles = [encode_masks(masks[j]) for j in range(2)]
    with SegmentationSpool(2, dir=str(tmp_path)) as spool:
        spool.extend(1, rles[1][:1])
        for s in range(0, 12, 3):                   # clip by clip; each clip's text passes the limit
            spool.extend(0, rles[0][s:s + 3])
            assert len(os.listdir(tmp_path)) <= 1  # anonymous: unlinked at once on POSIX
        assert list(spool.read(0)) == rles[0] and list(spool.read(0)) == rles[0]
        spool.extend(0, [None])                     # appending after a read keeps the order
        assert spool.lists() == [rles[0] + [None], rles[1][:1]]
        assert spool._files[0] is not None and spool._files[1] is None   # only the long list spilled
    assert os.listdir(tmp_path) == []
