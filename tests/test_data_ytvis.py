"""VIS json loading: formats, category mapping, round trip and every bad-input case."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genvis.data import masks as mask_ops
from genvis.data.ytvis import load_vis_json, save_vis_json
from genvis.errors import InputError


def write(tmp_path, obj, name="ann.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def test_load_records_and_category_mapping(tiny_vis_json):
    ds = load_vis_json(tiny_vis_json)
    assert [v.id for v in ds.videos] == [1, 2, 3]
    assert ds.video(2).length == 6 and ds.video(2).height == 24 and ds.video(2).width == 32
    assert ds.video(2).name == "vid2"
    assert len(ds.annotations_of(1)) == 2 and ds.num_classes == 2
    ann = ds.annotations_of(1)[0]
    assert ann.segmentations[2] is None and ann.areas[2] is None  # absent frame
    m = mask_ops.annotation_masks(ann, ds.video(1))
    assert m.shape == (4, 24, 32) and m.dtype == bool
    assert not m[2].any() and m[0].sum() == 6 * 8 == ann.areas[0]
    late = ds.annotations_of(2)[1]
    assert late.segmentations[0] is None and late.segmentations[2] is not None  # appears mid-video


def test_category_ids_map_to_contiguous_indices(tmp_path, tiny_vis_dict):
    tiny_vis_dict["categories"] = [{"id": 40, "name": "z"}, {"id": 3, "name": "y"}, {"id": 17, "name": "x"}]
    for a in tiny_vis_dict["annotations"]:
        a["category_id"] = 17
    ds = load_vis_json(write(tmp_path, tiny_vis_dict))
    assert [ds.category_index(c) for c in (3, 17, 40)] == [0, 1, 2]
    assert [ds.category_id(i) for i in range(3)] == [3, 17, 40]
    with pytest.raises(KeyError):
        ds.category_index(5)
    with pytest.raises(IndexError):
        ds.category_id(3)


def test_ovis_valid_with_null_annotations_loads(tmp_path, tiny_vis_dict):
    tiny_vis_dict["annotations"] = None
    ds = load_vis_json(write(tmp_path, tiny_vis_dict))
    assert ds.annotations is None and not ds.has_annotations and ds.annotations_of(1) == []
    del tiny_vis_dict["annotations"]  # YouTube-VIS valid files may omit the key
    assert load_vis_json(write(tmp_path, tiny_vis_dict)).annotations is None


def test_polygon_and_uncompressed_rle_segmentations(tmp_path, tiny_vis_dict):
    ann = tiny_vis_dict["annotations"][0]
    ann["segmentations"][0] = [[2.0, 2.0, 12.0, 2.0, 12.0, 8.0, 2.0, 8.0]]  # polygon
    # uncompressed RLE (column-major runs): 24 zeros (column 0), 5 ones, rest zeros
    ann["segmentations"][1] = {"size": [24, 32], "counts": [24, 5, 24 * 32 - 29]}
    del ann["areas"]  # areas computed from the masks when absent
    ds = load_vis_json(write(tmp_path, tiny_vis_dict))
    a = ds.annotations[0]
    m = mask_ops.annotation_masks(a, ds.video(1))
    assert m[1].sum() == 5 and m[1][:5, 1].all()
    assert m[0].sum() == a.areas[0] and 50 <= a.areas[0] <= 80  # ~10x6 polygon interior
    assert a.areas[1] == 5.0


def test_save_round_trip_keeps_extra_keys(tmp_path, tiny_vis_dict):
    tiny_vis_dict["info"] = {"description": "tiny"}
    tiny_vis_dict["videos"][0]["date_captured"] = "2019"
    ds = load_vis_json(write(tmp_path, tiny_vis_dict))
    out = tmp_path / "out" / "copy.json"
    save_vis_json(ds, out)
    again = json.loads(out.read_text())
    assert again["info"] == {"description": "tiny"} and again["videos"][0]["date_captured"] == "2019"
    ds2 = load_vis_json(out)
    assert [a.segmentations for a in ds2.annotations] == [a.segmentations for a in ds.annotations]
    sub = ds.subset([2])
    assert sub.video_ids == [2] and {a.video_id for a in sub.annotations} == {2}


def _bad_cases():
    def length_mismatch(d):
        d["videos"][0]["length"] = 9

    def seg_count(d):
        d["annotations"][0]["segmentations"].append(None)

    def seg_size(d):
        d["annotations"][1]["segmentations"][0] = mask_ops.encode_masks(np.ones((1, 10, 10), bool))[0]

    def unknown_video(d):
        d["annotations"][0]["video_id"] = 77

    def unknown_cat(d):
        d["annotations"][0]["category_id"] = 77

    def no_videos(d):
        del d["videos"]
        d["images"] = []

    def bad_seg_type(d):
        d["annotations"][0]["segmentations"][0] = "mask"

    def areas_len(d):
        d["annotations"][0]["areas"] = [1.0]

    def short_rle(d):
        d["annotations"][0]["segmentations"][0] = {"size": [24, 32], "counts": [5, 10]}

    return [
        (length_mismatch, "'length' is 9 but 'file_names' lists 4 frames"),
        (seg_count, "5 segmentations but video 1 has 4 frames"),
        (seg_size, "disagrees with video 1 size [24, 32]"),
        (unknown_video, "unknown video_id 77"),
        (unknown_cat, "unknown category_id 77"),
        (no_videos, "COCO image dataset"),
        (bad_seg_type, "segmentation must be an RLE dict"),
        (areas_len, "'areas' must list one value per frame"),
        (short_rle, "uncompressed RLE covers 15 pixels, not 24 x 32"),
    ]


@pytest.mark.parametrize("mutate,message", _bad_cases())
def test_bad_content_names_file_and_problem(tmp_path, tiny_vis_dict, mutate, message):
    mutate(tiny_vis_dict)
    p = write(tmp_path, tiny_vis_dict, "broken.json")
    with pytest.raises(InputError) as exc:
        load_vis_json(p)
    assert str(p) in str(exc.value) and message in str(exc.value)


@pytest.mark.parametrize("content,message", [
    (None, "file not found"),
    ("{not json", "not valid json (line 1"),
    ("[1, 2]", "top level is a list"),
    ('{"videos": []}', "no 'categories' list"),
    (b"\xff\xfe\x00", "not a UTF-8"),
])
def test_unreadable_or_not_vis(tmp_path, content, message):
    p = tmp_path / "x.json"
    if isinstance(content, bytes):
        p.write_bytes(content)
    elif content is not None:
        p.write_text(content)
    with pytest.raises(InputError) as exc:
        load_vis_json(p)
    assert str(p) in str(exc.value) and message in str(exc.value)
