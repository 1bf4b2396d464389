"""Frame reading: images, frame folders, video files; clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from genvis.data.frames import open_frames, read_frame, read_frames
from genvis.errors import InputError


def _img(path, h=12, w=16, value=0, fmt=None):
    arr = np.full((h, w, 3), value, np.uint8)
    arr[:, : w // 2, 0] = 200
    Image.fromarray(arr).save(path, format=fmt)
    return arr


def test_read_png_exact_and_jpeg_close(tmp_path):
    arr = _img(tmp_path / "a.png")
    got = read_frame(tmp_path / "a.png")
    assert got.dtype == np.uint8 and got.shape == (12, 16, 3) and (got == arr).all()
    _img(tmp_path / "b.jpg")
    j = read_frame(tmp_path / "b.jpg")
    assert j.shape == (12, 16, 3) and np.abs(j.astype(int) - arr).mean() < 8
    Image.fromarray(arr[:, :, 0]).save(tmp_path / "grey.png")
    assert read_frame(tmp_path / "grey.png").shape == (12, 16, 3)


def test_truncated_and_missing_frames_raise(tmp_path):
    _img(tmp_path / "full.jpg", 64, 64)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as exc:
        read_frame(tmp_path / "cut.jpg")
    assert "cut.jpg" in str(exc.value) and "truncated" in str(exc.value)
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(InputError, match="text.png"):
        read_frame(tmp_path / "text.png")
    with pytest.raises(InputError, match="not found"):
        read_frame(tmp_path / "nope.jpg")


def test_frame_folder_is_lazy_sorted_and_sized(tmp_path):
    for i in (2, 0, 1):
        _img(tmp_path / f"{i:05d}.png", value=10 * i)
    (tmp_path / "notes.txt").write_text("ignored")
    src = open_frames(tmp_path)
    assert len(src) == 3
    frames = list(src)
    assert [int(f[0, -1, 1]) for f in frames] == [0, 10, 20]
    stacked = read_frames(tmp_path, ["00001.png", "00002.png"])
    assert stacked.shape == (2, 12, 16, 3)
    _img(tmp_path / "odd.png", 10, 10)
    with pytest.raises(InputError, match="differs"):
        read_frames(tmp_path, ["00000.png", "odd.png"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no image files"):
        open_frames(empty)


def test_video_file_frames(tmp_path):
    import av

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for i in range(7):
            arr = np.full((24, 32, 3), 30 * i, np.uint8)
            for pkt in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    src = open_frames(path)
    assert (src.height, src.width) == (24, 32)
    frames = list(src)
    assert len(frames) == 7 and frames[0].shape == (24, 32, 3) and frames[0].dtype == np.uint8
    assert abs(float(frames[3].mean()) - 90) < 10
    (tmp_path / "bad.mp4").write_bytes(b"garbage" * 10)
    with pytest.raises(InputError, match="bad.mp4"):
        open_frames(tmp_path / "bad.mp4")
    with pytest.raises(InputError, match="no such"):
        open_frames(tmp_path / "missing.avi")


def test_real_video_file_reads_lazily(shared_data):
    src = open_frames(shared_data / "videos" / "vtest.avi")
    assert len(src) == 795
    it = iter(src)
    first = next(it)
    assert first.shape == (576, 768, 3) and first.dtype == np.uint8
