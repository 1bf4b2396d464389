"""Split by video into train / held-out parts."""

from __future__ import annotations

import json

import pytest

from genvis.cli import main
from genvis.data.split import split_by_video
from genvis.data.ytvis import load_vis_json, parse_vis_dict
from genvis.errors import InputError


def test_split_partitions_videos_and_annotations(tiny_vis_json):
    ds = load_vis_json(tiny_vis_json)
    train, hold = split_by_video(ds, 0.34, seed=0)
    assert len(hold.videos) == 1 and len(train.videos) == 2
    assert sorted(train.video_ids + hold.video_ids) == [1, 2, 3]
    for part in (train, hold):
        assert {a.video_id for a in part.annotations} == set(part.video_ids)
        assert part.categories == ds.categories
    assert len(train.annotations) + len(hold.annotations) == len(ds.annotations)
    again = split_by_video(ds, 0.34, seed=0)[1]
    assert again.video_ids == hold.video_ids
    held_by_seed = {tuple(split_by_video(ds, 0.34, seed=s)[1].video_ids) for s in range(10)}
    assert len(held_by_seed) > 1  # the seed matters


def test_split_errors(tiny_vis_dict):
    ds = parse_vis_dict(tiny_vis_dict, "a.json")
    with pytest.raises(InputError, match="holdout-fraction"):
        split_by_video(ds, 1.0, 0)
    tiny_vis_dict["annotations"] = None
    with pytest.raises(InputError, match="a.json: has no annotations"):
        split_by_video(parse_vis_dict(tiny_vis_dict, "a.json"), 0.5, 0)


def test_split_cli(tmp_path, tiny_vis_json, capsys):
    t, h = tmp_path / "o" / "t.json", tmp_path / "o" / "h.json"
    args = ["split", "--annotations", str(tiny_vis_json), "--holdout-fraction", "0.5", "--seed", "3",
            "--out-train", str(t), "--out-holdout", str(h)]
    assert main(args) == 0
    tj, hj = json.loads(t.read_text()), json.loads(h.read_text())
    assert len(tj["videos"]) + len(hj["videos"]) == 3 and len(hj["videos"]) == 2
    bad = ["split", "--annotations", str(tmp_path / "missing.json"), "--holdout-fraction", "0.5",
           "--out-train", str(tmp_path / "x.json"), "--out-holdout", str(tmp_path / "y.json")]
    assert main(bad) == 2
    assert "missing.json: file not found" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.json").exists()
