"""`genvis extract`: detector over every frame into the cache; resume, shards, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from PIL import Image

from genvis.cache import layout
from genvis.cache.extract import extract, parse_shard, shard_video_ids
from genvis.cache.reader import CacheReader
from genvis.clip_source import check_covers
from genvis.data.ytvis import load_vis_json
from genvis.detector.config import DetectorConfig
from genvis.detector.model import FrameDetector
from genvis.errors import InputError

TINY = dict(backbone="tiny_resnet", num_classes=2, hidden_dim=32, num_queries=5, decoder_layers=4,
            encoder_layers=1, num_heads=4, dim_feedforward=64, encoder_feedforward_dim=64,
            min_size=32, max_size=64)
LENGTHS = {4: 2, 9: 4, 2: 2, 6: 3}


def make_split(root: Path, lengths=LENGTHS, h=20, w=28) -> Path:
    """Tiny split: PNG frames under root/frames/<vid>/<i>.png and root/split.json."""
    rng = np.random.default_rng(0)
    videos = []
    for vid, t in lengths.items():
        names = []
        for i in range(t):
            name = f"v{vid}/{i:03d}.png"
            p = root / "frames" / name
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
            names.append(name)
        videos.append({"id": vid, "file_names": names, "length": t, "width": w, "height": h})
    doc = {"videos": videos, "annotations": None, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    (root / "split.json").write_text(json.dumps(doc))
    return root / "split.json"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    split = make_split(root)
    torch.manual_seed(0)
    det = FrameDetector(DetectorConfig(**TINY)).eval()
    det_path = root / "det.pt"
    det.save(det_path)
    return root, split, det, det_path


def store_contents(path: Path) -> dict:
    """Every array's bytes and every group's attrs of a store."""
    root = zarr.open_group(str(path), mode="r")
    out = {"root": dict(root.attrs)}
    for vid in sorted(root["videos"].group_keys()):
        g = root["videos"][vid]
        out[vid] = {"attrs": dict(g.attrs)}
        for f in layout.FIELDS:
            out[vid][f] = np.asarray(g[f][:]).tobytes()
    return out


def test_extract_writes_every_frame(setup, tmp_path):
    root, split, det, _ = setup
    ds = load_vis_json(split)
    stats = extract(ds, root / "frames", det, tmp_path / "c.zarr", batch_size=2, progress=False)
    assert stats.videos_written == 4 and stats.frames == sum(LENGTHS.values())
    r = CacheReader(tmp_path / "c.zarr")
    assert r.video_ids == [2, 4, 6, 9]
    check_covers(r, ds)
    a = r.video_attrs(9)
    assert a["original_size"] == [20, 28] and a["resized_size"] == [32, 45] and a["padded_size"] == [32, 64]
    assert a["file_names"][3] == "v9/003.png"
    clip = r.read_clip(9, 1, 4, fields=layout.FIELDS)
    assert clip["frame_queries"].shape == (3, 3, 5, 32)
    assert clip["mask_features"].shape == (3, 32, 8, 16)
    # cached values are the detector's outputs in fp16
    from genvis.data.frames import read_frames
    from genvis.detector.preprocess import preprocess_frames

    x, _ = preprocess_frames(read_frames(root / "frames", ds.video(9).file_names, [1, 2, 3]), det.cfg)
    with torch.no_grad():
        ref = det(x)
    torch.testing.assert_close(clip["mask_features"], ref.mask_features.half().float(), atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(clip["class_logits"], ref.class_logits.half().float(), atol=2e-3, rtol=2e-3)
    assert r.provenance["detector_fingerprint"] == det.fingerprint()
    # second run: everything cached, nothing recomputed
    again = extract(ds, root / "frames", det, tmp_path / "c.zarr", batch_size=2, progress=False)
    assert again.videos_written == 0 and again.videos_skipped == 4 and again.frames == 0


def test_interrupted_run_resumes_to_identical_store(setup, tmp_path):
    root, split, det, _ = setup
    ds = load_vis_json(split)
    extract(ds, root / "frames", det, tmp_path / "full.zarr", batch_size=2, progress=False)

    def boom(video_id):
        raise KeyboardInterrupt("killed after one video")

    with pytest.raises(KeyboardInterrupt):
        extract(ds, root / "frames", det, tmp_path / "res.zarr", batch_size=2, progress=False,
                on_video_done=boom)
    assert CacheReader(tmp_path / "res.zarr").video_ids == [2]
    # a crash inside a video's detector batches leaves nothing of that video
    calls = {"n": 0}
    real = det.forward

    def flaky(x):
        calls["n"] += 1
        if calls["n"] == 3:  # second batch of video 6
            raise RuntimeError("out of memory")
        return real(x)

    det.forward = flaky
    try:
        with pytest.raises(RuntimeError, match="out of memory"):
            extract(ds, root / "frames", det, tmp_path / "res.zarr", batch_size=2, progress=False)
    finally:
        del det.forward
    assert CacheReader(tmp_path / "res.zarr").video_ids == [2, 4]
    assert not list((tmp_path / "res.zarr" / layout.PARTIAL_DIR).iterdir())
    stats = extract(ds, root / "frames", det, tmp_path / "res.zarr", batch_size=2, progress=False)
    assert stats.videos_skipped == 2 and stats.videos_written == 2
    assert store_contents(tmp_path / "res.zarr") == store_contents(tmp_path / "full.zarr")


def test_killed_process_resumes_byte_identical(setup, tmp_path):
    """SIGKILL a real extraction mid-video, resume, compare with an uninterrupted run."""
    root, split, _, det_path = setup
    script = textwrap.dedent(f"""
        import time, torch
        torch.set_num_threads(1)
        from genvis.cache.extract import extract
        from genvis.data.ytvis import load_vis_json
        from genvis.detector.model import FrameDetector
        det = FrameDetector.load({str(det_path)!r})
        real = det.forward
        def slow(x):
            time.sleep(0.3)
            return real(x)
        det.forward = slow
        extract(load_vis_json({str(split)!r}), {str(root / 'frames')!r}, det, {str(tmp_path / 'k.zarr')!r},
                batch_size=1, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    videos = tmp_path / "k.zarr" / "videos"
    deadline = time.time() + 180  # generous: a busy CI machine imports torch slowly
    while time.time() < deadline and not (videos.is_dir() and any(c.name.isdigit() for c in videos.iterdir())):
        time.sleep(0.05)
    time.sleep(0.5)  # now inside the second video
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = CacheReader(tmp_path / "k.zarr").video_ids
    assert 1 <= len(done) < 4
    det = FrameDetector.load(det_path)
    ds = load_vis_json(split)
    stats = extract(ds, root / "frames", det, tmp_path / "k.zarr", batch_size=1, progress=False)
    assert stats.videos_skipped == len(done)
    extract(ds, root / "frames", det, tmp_path / "ref.zarr", batch_size=1, progress=False)
    assert store_contents(tmp_path / "k.zarr") == store_contents(tmp_path / "ref.zarr")
    assert not list((tmp_path / "k.zarr" / layout.PARTIAL_DIR).iterdir())


def test_shards_fill_one_store(setup, tmp_path):
    root, split, det, _ = setup
    ds = load_vis_json(split)
    assert parse_shard("1/3") == (1, 3)
    assert shard_video_ids([9, 2, 6, 4], 0, 2) == [2, 6] and shard_video_ids([9, 2, 6, 4], 1, 2) == [4, 9]
    for bad in ("3/3", "a/b", "1"):
        with pytest.raises(InputError, match="--shard"):
            parse_shard(bad)
    s0 = extract(ds, root / "frames", det, tmp_path / "s.zarr", batch_size=3, shard=(0, 2), progress=False)
    assert s0.written_ids == [2, 6]
    extract(ds, root / "frames", det, tmp_path / "s.zarr", batch_size=3, shard=(1, 2), progress=False)
    assert CacheReader(tmp_path / "s.zarr").video_ids == [2, 4, 6, 9]


def test_refuses_other_detector_or_resolution(setup, tmp_path):
    root, split, det, _ = setup
    ds = load_vis_json(split)
    small = ds.subset([2])
    extract(small, root / "frames", det, tmp_path / "p.zarr", progress=False)
    with pytest.raises(InputError, match=r"p.zarr.*min_size: stored=32 expected=40"):
        extract(small, root / "frames", det, tmp_path / "p.zarr", min_size=40, progress=False)
    torch.manual_seed(1)
    other = FrameDetector(DetectorConfig(**TINY))
    with pytest.raises(InputError, match="detector_fingerprint"):
        extract(small, root / "frames", other, tmp_path / "p.zarr", progress=False)


def test_bad_frames_and_unwritable_store(setup, tmp_path):
    root, split, det, _ = setup
    src = load_vis_json(split)
    frames = tmp_path / "frames"
    for v in src.videos:
        for name in v.file_names:
            (frames / name).parent.mkdir(parents=True, exist_ok=True)
            (frames / name).write_bytes((root / "frames" / name).read_bytes())
    bad = frames / "v6/002.png"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    with pytest.raises(InputError, match="v6/002.png.*(truncated|unreadable)"):
        extract(src, frames, det, tmp_path / "b.zarr", batch_size=2, progress=False)
    r = CacheReader(tmp_path / "b.zarr")
    assert r.video_ids == [2, 4]  # videos before the bad one stay valid, v6 left nothing
    assert not list((tmp_path / "b.zarr" / layout.PARTIAL_DIR).iterdir())
    (frames / "v6/002.png").unlink()
    with pytest.raises(InputError, match="v6/002.png: frame file not found"):
        extract(src, frames, det, tmp_path / "b.zarr", progress=False)
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(frames / "v6/002.png")
    with pytest.raises(InputError, match="frame size 30x30 differs from the 20x28"):
        extract(src, frames, det, tmp_path / "b.zarr", batch_size=1, progress=False)
    blocker = tmp_path / "plainfile"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create the cache store"):
        extract(src, root / "frames", det, blocker / "c.zarr", progress=False)


def test_cli_extract(setup, tmp_path, capsys):
    from genvis.cli import main

    root, split, _, det_path = setup
    out = tmp_path / "cli.zarr"
    rc = main(["extract", "--annotations", str(split), "--image-root", str(root / "frames"),
               "--detector", str(det_path), "--out", str(out), "--batch-size", "4", "--no-progress"])
    assert rc == 0
    assert "extracted 4 videos" in capsys.readouterr().out
    assert CacheReader(out).video_ids == [2, 4, 6, 9]
    rc = main(["extract", "--annotations", str(split), "--image-root", str(root / "frames"),
               "--detector", str(det_path), "--out", str(out), "--min-size", "40", "--max-size", "64",
               "--no-progress"])
    assert rc == 2
    assert "provenance" in capsys.readouterr().err
    rc = main(["extract", "--annotations", str(split), "--image-root", str(root / "frames"),
               "--detector", str(tmp_path / "nope.pt"), "--out", str(out)])
    assert rc == 2
