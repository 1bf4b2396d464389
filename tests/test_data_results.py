"""Results json and server zip: write/read round trip and validation against ground truth."""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np
import pytest

from genvis.data import masks as mask_ops
from genvis.data.results import VideoResult, read_results, write_results, write_results_zip
from genvis.data.ytvis import load_vis_json
from genvis.errors import InputError


def _results(gt):
    out = []
    for a in gt.annotations:
        v = gt.video(a.video_id)
        m = mask_ops.annotation_masks(a, v)
        out.append(VideoResult(a.video_id, a.category_id, 0.25 + 0.1 * a.id, mask_ops.encode_masks(m)))
    return out


def test_write_read_round_trip_and_zip(tmp_path, tiny_vis_json):
    gt = load_vis_json(tiny_vis_json)
    res = _results(gt)
    p = tmp_path / "res.json"
    write_results(res, p)
    back = read_results(p, gt)
    assert [(r.video_id, r.category_id, r.score) for r in back] == [(r.video_id, r.category_id, r.score) for r in res]
    v = gt.video(1)
    decoded = np.stack([mask_ops.decode_rle(s, v.height, v.width) for s in back[0].segmentations])
    assert (decoded == mask_ops.annotation_masks(gt.annotations[0], v)).all()
    z = tmp_path / "sub" / "results.zip"
    write_results_zip(p, z)
    with zipfile.ZipFile(z) as zf:
        assert zf.namelist() == ["results.json"]
        assert json.loads(zf.read("results.json")) == json.loads(p.read_text())
    assert len(read_results(z, gt)) == len(res)


def test_uncompressed_rle_results_are_accepted(tmp_path, tiny_vis_json):
    gt = load_vis_json(tiny_vis_json)
    segs = [{"size": [24, 32], "counts": [0, 3, 24 * 32 - 3]}] + [None] * 3
    p = tmp_path / "r.json"
    p.write_text(json.dumps([{"video_id": 1, "category_id": 1, "score": 0.5, "segmentations": segs}]))
    r = read_results(p, gt)[0]
    assert isinstance(r.segmentations[0]["counts"], str)
    assert mask_ops.rle_areas(r.segmentations) == [3.0, None, None, None]


def _entry(**kw):
    e = {"video_id": 1, "category_id": 1, "score": 0.5,
         "segmentations": mask_ops.encode_masks(np.zeros((4, 24, 32), bool))}
    e.update(kw)
    return e


@pytest.mark.parametrize("entry,message", [
    (_entry(video_id=42), "video_id 42 is not in the ground truth"),
    (_entry(category_id=9), "category_id 9 is not in the ground truth"),
    (_entry(segmentations=[None] * 3), "3 segmentations but video 1 has 4 frames"),
    (_entry(score=1.5), "not a finite number in [0, 1]"),
    (_entry(score=-0.1), "not a finite number in [0, 1]"),
    (_entry(score="high"), "not a finite number"),
    (_entry(segmentations=mask_ops.encode_masks(np.zeros((4, 10, 10), bool))), "disagrees with video 1 size"),
    (_entry(segmentations=[{"size": [24, 32], "counts": [3, 4]}] + [None] * 3), "covers 7 pixels"),
])
def test_bad_results_name_file_and_problem(tmp_path, tiny_vis_json, entry, message):
    gt = load_vis_json(tiny_vis_json)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps([entry]))
    with pytest.raises(InputError) as exc:
        read_results(p, gt)
    assert str(p) in str(exc.value) and message in str(exc.value)


def test_nan_score_and_not_a_list(tmp_path, tiny_vis_json):
    gt = load_vis_json(tiny_vis_json)
    p = tmp_path / "nan.json"
    p.write_text(json.dumps([_entry()]).replace('"score": 0.5', '"score": NaN'))
    with pytest.raises(InputError, match="not a finite number"):
        read_results(p, gt)
    with pytest.raises(InputError, match="annotation file"):
        read_results(tiny_vis_json, gt)
    with pytest.raises(InputError, match="file not found"):
        read_results(tmp_path / "none.json")
    bad_zip = tmp_path / "r.zip"
    bad_zip.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a valid zip"):
        read_results(bad_zip)


def test_write_refuses_nan_and_writes_nothing(tmp_path):
    p = tmp_path / "out.json"
    with pytest.raises(InputError, match="score"):
        write_results([VideoResult(1, 1, math.nan, [None])], p)
    assert list(tmp_path.iterdir()) == []


def test_results_writer_streams_the_same_bytes_as_json_dumps(tmp_path, tiny_vis_json):
    from genvis.data.results import ResultsWriter

    gt = load_vis_json(tiny_vis_json)
    res = _results(gt)
    res[0].segmentations[1] = None
    p = tmp_path / "stream.json"
    consumed = []

    def lazy(segs):  # segmentations given as a one-shot iterator, as inference's spool does
        for s in segs:
            consumed.append(1)
            yield s

    with ResultsWriter(p) as w:
        for r in res:
            w.add(VideoResult(r.video_id, r.category_id, r.score, lazy(r.segmentations)))
    assert w.count == len(res) and len(consumed) == sum(len(r.segmentations) for r in res)
    assert p.read_text() == json.dumps([r.to_json() for r in res])
    assert [x.score for x in read_results(p, gt)] == [r.score for r in res]
    empty = tmp_path / "empty.json"
    with ResultsWriter(empty):
        pass
    assert json.loads(empty.read_text()) == []


def test_results_writer_leaves_nothing_after_an_error(tmp_path, tiny_vis_json):
    from genvis.data.results import ResultsWriter

    gt = load_vis_json(tiny_vis_json)
    res = _results(gt)
    p = tmp_path / "out" / "res.json"
    with pytest.raises(InputError, match="result 1: score 1.5"):
        with ResultsWriter(p) as w:
            w.add(res[0])
            w.add(VideoResult(1, 1, 1.5, [None]))
    with pytest.raises(RuntimeError, match="detector died"):
        with ResultsWriter(p) as w:
            w.add(res[0])
            raise RuntimeError("detector died")
    assert list(p.parent.iterdir()) == []
    p.write_text("[]")   # an earlier complete file survives a failed rewrite
    with pytest.raises(InputError):
        write_results([res[0], VideoResult(1, 1, math.inf, [None])], p)
    assert p.read_text() == "[]"


def test_results_parts_join_in_order_discard_other_keys_and_refuse_gaps(tmp_path, tiny_vis_json):
    from genvis.data.results import ResultsParts

    gt = load_vis_json(tiny_vis_json)
    res = _results(gt)
    out = tmp_path / "res.json"
    parts = ResultsParts(out, {"model": "a"})
    for vid, rs in ((7, res[:1]), (3, []), (5, res[1:])):
        with parts.writer(vid) as w:
            for r in rs:
                w.add(r)
    with pytest.raises(RuntimeError):
        with parts.writer(9) as w:       # an interrupted video is not finished
            w.add(res[0])
            raise RuntimeError("killed")
    assert parts.finished([3, 5, 7, 9]) == {3, 5, 7}
    with pytest.raises(InputError, match=r"no finished part for video\(s\) \[9\]"):
        parts.join([7, 3, 5, 9])
    assert not out.exists()
    assert ResultsParts(out, {"model": "a"}).finished([3, 5, 7]) == {3, 5, 7}   # same key: kept
    assert parts.join([5, 3, 7]) == len(res)
    assert out.read_text() == json.dumps([r.to_json() for r in res[1:] + res[:1]])
    assert not parts.dir.exists()
    with ResultsParts(out, {"model": "a"}).writer(1) as w:
        w.add(res[0])
    other = ResultsParts(out, {"model": "b"})
    assert other.discarded == 1 and other.finished([1]) == set()


def test_parse_results_areas_from_the_check_and_error_position():
    """parse_results attaches per-frame areas (0 where null) equal to pycocotools' area, none
    for a result with uncompressed counts, and names result and frame of a bad RLE."""
    from pycocotools import mask as mask_utils

    from genvis.data import masks as mask_ops
    from genvis.data.results import parse_results
    from genvis.errors import InputError

    rng = np.random.default_rng(5)
    m = rng.random((3, 6, 7)) < 0.5
    rles = mask_ops.encode_masks(m)
    data = [{"video_id": 1, "category_id": 1, "score": 0.5, "segmentations": [rles[0], None, rles[2]]},
            {"video_id": 1, "category_id": 1, "score": 0.4, "segmentations": list(rles)},
            {"video_id": 1, "category_id": 2, "score": 0.3,
             "segmentations": [{"size": [6, 7], "counts": [42]}, rles[1], None]}]
    out = parse_results(data, "r.json")
    want = mask_utils.area(rles).astype(float)
    np.testing.assert_array_equal(out[0].areas, [want[0], 0.0, want[2]])
    np.testing.assert_array_equal(out[1].areas, want)
    assert out[2].areas is None
    data[1]["segmentations"][2] = {"size": [6, 7], "counts": "5"}
    with pytest.raises(InputError, match=r"result 1 frame 2: compressed RLE 'counts' covers 5 pixels, not 42"):
        parse_results(data, "r.json")
