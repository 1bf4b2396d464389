"""Augmented views of a training split (flip + crop per video), written before stage one."""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genvis.cli import main
from genvis.data.augment import ViewTransform, augment_split, draw_view, transform_frame, transform_masks
from genvis.data.masks import annotation_masks
from genvis.data.ytvis import load_vis_json, parse_vis_dict
from genvis.errors import ConfigError, InputError


def test_transform_masks_by_hand():
    m = np.zeros((1, 10, 10), bool)
    m[0, 1, 3] = True                                   # row 1, col 3
    m[0, 9, 9] = True                                   # outside the crop
    tf = ViewTransform(flip=False, crop=(2, 0, 5, 5))   # x 2..6, y 0..4, scaled 2x
    out = transform_masks(m, tf)[0]
    assert out.shape == (10, 10)
    assert sorted(zip(*np.nonzero(out))) == [(2, 2), (2, 3), (3, 2), (3, 3)]
    flipped = transform_masks(m, ViewTransform(flip=True, crop=(2, 0, 5, 5)))[0]
    assert sorted(zip(*np.nonzero(flipped))) == [(2, 6), (2, 7), (3, 6), (3, 7)]
    whole = transform_masks(m, ViewTransform(flip=True, crop=(0, 0, 10, 10)))[0]
    assert np.array_equal(whole, m[0, :, ::-1])         # identity crop + flip = mirror


def test_transform_frame_follows_the_masks():
    rng = np.random.default_rng(0)
    m = np.zeros((1, 48, 64), bool)
    m[0, 10:30, 20:44] = True
    frame = np.repeat((m[0] * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    for _ in range(5):
        tf = draw_view(48, 64, rng, 0.5)
        img = transform_frame(frame, tf)
        assert img.shape == frame.shape and img.dtype == np.uint8
        agree = ((img[:, :, 0] > 127) == transform_masks(m, tf)[0]).mean()
        assert agree > 0.97, (tf, agree)   # bilinear vs nearest differ only along the edges


def test_draw_view_bounds_aspect_and_flip_rate():
    rng = np.random.default_rng(1)
    views = [draw_view(90, 160, rng, 0.6) for _ in range(400)]
    for v in views:
        x, y, w, h = v.crop
        assert 0 <= x and x + w <= 160 and 0 <= y and y + h <= 90
        assert 0.6 * 160 - 1 <= w <= 160 and abs(w / 160 - h / 90) < 0.02   # aspect kept
    assert 0.42 < np.mean([v.flip for v in views]) < 0.58
    assert min(v.crop[2] for v in views) < 105 and max(v.crop[2] for v in views) > 150  # spans the range
    with pytest.raises(ConfigError, match="min_scale"):
        draw_view(90, 160, rng, 0.0)


def _tiny_split(tmp_path: Path, d: dict) -> tuple[Path, Path]:
    """The conftest tiny split with PNG frames that show the union of the instance masks."""
    d = copy.deepcopy(d)
    for v in d["videos"]:
        v["file_names"] = [f.replace(".jpg", ".png") for f in v["file_names"]]
    ann_path = tmp_path / "train.json"
    ann_path.write_text(json.dumps(d))
    ds = load_vis_json(ann_path)
    root = tmp_path / "frames"
    for v in ds.videos:
        union = np.zeros((v.length, v.height, v.width), bool)
        for a in ds.annotations_of(v.id):
            union |= annotation_masks(a, v)
        for t, name in enumerate(v.file_names):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((union[t] * 255).astype(np.uint8)).convert("RGB").save(root / name)
    return ann_path, root


def test_augment_split_ids_masks_and_frames(tmp_path, tiny_vis_dict):
    ann_path, root = _tiny_split(tmp_path, tiny_vis_dict)
    ds = load_vis_json(ann_path)
    out = augment_split(ds, root, tmp_path / "aug", views=2, seed=3, min_scale=0.5, progress=False)
    again = load_vis_json(tmp_path / "aug" / "annotations.json")
    assert again.video_ids == out.video_ids == [1, 11, 21, 2, 12, 22, 3, 13, 23]   # offset 10
    assert again.categories == ds.categories
    v0, v1 = again.video(2), again.video(12)
    assert v0.file_names == ds.video(2).file_names and "augmentation" not in v0.extra
    aug = v1.extra["augmentation"]
    assert aug["of"] == 2 and aug["view"] == 1 and v1.file_names[0] == "vid2@aug1/00000.png"
    assert (v1.length, v1.height, v1.width) == (6, 24, 32)
    # frame folders are made in a mkdtemp folder (owner-only) and renamed: published with the
    # permissions of any new directory, like the json beside them
    umask = os.umask(0)
    os.umask(umask)
    folder = tmp_path / "aug" / "frames" / "vid2@aug1"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "aug" / "annotations.json").stat().st_mode) == 0o666 & ~umask
    tf = ViewTransform(aug["flip"], tuple(aug["crop"]))
    for a in ds.annotations_of(2):
        want = transform_masks(annotation_masks(a, ds.video(2)), tf)
        got = [b for b in again.annotations_of(12) if b.id == a.id + 10]
        if not want.any():
            assert got == []                                   # cropped out entirely: dropped
            continue
        (b,) = got
        assert b.category_id == a.category_id
        assert np.array_equal(annotation_masks(b, v1), want)
        assert b.areas == [None if not w.any() else float(w.sum()) for w in want]
    # the written frames show the transformed masks (PNG is lossless)
    union = np.zeros((6, 24, 32), bool)
    for b in again.annotations_of(12):
        union |= annotation_masks(b, v1)
    frames = np.stack([np.asarray(Image.open(tmp_path / "aug" / "frames" / f))[:, :, 0] > 127
                       for f in v1.file_names])
    assert (frames == union).mean() > 0.95
    # originals copied byte for byte
    assert (tmp_path / "aug" / "frames" / v0.file_names[0]).read_bytes() == (root / v0.file_names[0]).read_bytes()


def test_augment_split_is_deterministic_and_resumes(tmp_path, tiny_vis_dict):
    ann_path, root = _tiny_split(tmp_path, tiny_vis_dict)
    ds = load_vis_json(ann_path)
    a = augment_split(ds, root, tmp_path / "a", views=3, seed=0, progress=False)
    b = augment_split(ds, root, tmp_path / "b", views=3, seed=0, progress=False)
    c = augment_split(ds, root, tmp_path / "c", views=3, seed=1, progress=False)
    crops = lambda d: [v.extra.get("augmentation") for v in d.videos]  # noqa: E731
    assert crops(a) == crops(b) and crops(a) != crops(c)
    frame = tmp_path / "a" / "frames" / "vid1@aug2" / "00000.png"
    stamp = frame.stat().st_mtime_ns
    (tmp_path / "a" / "annotations.json").unlink()                 # interrupted before the json
    again = augment_split(ds, root, tmp_path / "a", views=3, seed=0, progress=False)
    assert frame.stat().st_mtime_ns == stamp                       # finished folders are kept
    assert again.to_json() == a.to_json()
    with pytest.raises(InputError, match=r"augment.json: the folder holds views made with other settings \(seed 0 -> 1\)"):
        augment_split(ds, root, tmp_path / "a", views=3, seed=1, progress=False)
    with pytest.raises(InputError, match="source_sha256"):
        augment_split(ds.subset([1, 2]), root, tmp_path / "a", views=3, seed=0, progress=False)


def test_augment_split_errors_leave_nothing_half_written(tmp_path, tiny_vis_dict):
    ann_path, root = _tiny_split(tmp_path, tiny_vis_dict)
    ds = load_vis_json(ann_path)
    with pytest.raises(ConfigError, match="views"):
        augment_split(ds, root, tmp_path / "x", views=0, progress=False)
    with pytest.raises(ConfigError, match="min_scale"):
        augment_split(ds, root, tmp_path / "x", views=1, min_scale=1.5, progress=False)
    d = copy.deepcopy(tiny_vis_dict)
    d["annotations"] = None
    with pytest.raises(InputError, match="g.json: has no ground truth"):
        augment_split(parse_vis_dict(d, "g.json"), root, tmp_path / "x", views=1, progress=False)
    (root / "vid2" / "00003.png").unlink()
    with pytest.raises(InputError, match=r"vid2/00003.png"):
        augment_split(ds, root, tmp_path / "x", views=1, progress=False)
    out = tmp_path / "x"
    assert not (out / "annotations.json").exists()
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["vid1", "vid1@aug1"]  # whole folders only


def test_augment_cli(tmp_path, tiny_vis_dict, capsys):
    ann_path, root = _tiny_split(tmp_path, tiny_vis_dict)
    rc = main(["augment", "--annotations", str(ann_path), "--image-root", str(root), "--views", "1",
               "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 0
    assert "3 videos x 2 views = 6 videos" in capsys.readouterr().out
    assert len(load_vis_json(tmp_path / "o" / "annotations.json").videos) == 6
