"""FrameChunkWriter (genvis.cache.chunks) writes the very chunk files Zarr writes, and Zarr
reads them back."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from genvis.cache import layout
from genvis.cache.chunks import FrameChunkWriter


def _files(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _array(root, name, shape, version=layout.LAYOUT_VERSION, chunks=None, compressors=None):
    group = zarr.open_group(store=str(root), mode="a", zarr_format=3)
    return group.create_array(name, shape=shape, chunks=chunks or (1, *shape[1:]), dtype="float16",
                              compressors=compressors or layout.compressors(version), fill_value=0.0)


@pytest.mark.parametrize("version", sorted(layout.READABLE_LAYOUT_VERSIONS))
@pytest.mark.parametrize("frame_shape", [(3, 16, 64), (64, 6, 8), (16, 7)])
def test_chunk_files_are_zarrs_bytes(tmp_path, version, frame_shape):
    rng = np.random.default_rng(sum(frame_shape) + version)
    data = (rng.standard_normal((7, *frame_shape)) * 3).astype(np.float16)
    data[2] = 0.0            # an empty chunk: no file
    data[4] = -0.0           # not the fill value bit for bit: written
    data[5, ..., 0] = 65504  # the fp16 range's end
    a = _array(tmp_path / "zarr", "x", data.shape, version)
    b = _array(tmp_path / "mine", "x", data.shape, version)
    a[0:4] = data[0:4]
    a[4:7] = data[4:7]
    w = FrameChunkWriter(b, tmp_path / "mine" / "x")
    w.write(0, data[0:4])
    w.write(4, data[4:7])
    mine, theirs = _files(tmp_path / "mine" / "x"), _files(tmp_path / "zarr" / "x")
    assert mine == theirs
    assert "c/2/" + "/".join("0" * len(frame_shape)) not in mine      # the empty frame
    assert len([k for k in mine if k.startswith("c/")]) == 6
    back = zarr.open_array(str(tmp_path / "mine" / "x"), mode="r")[:]
    np.testing.assert_array_equal(back.view(np.uint16), data.view(np.uint16))   # -0.0 kept


def test_empty_frame_over_a_written_one_removes_its_file(tmp_path):
    b = _array(tmp_path, "x", (2, 4, 5))
    w = FrameChunkWriter(b, tmp_path / "x")
    w.write(0, np.ones((2, 4, 5), np.float16))
    assert (tmp_path / "x" / "c" / "1" / "0" / "0").is_file()
    w.write(1, np.zeros((1, 4, 5), np.float16))
    assert not (tmp_path / "x" / "c" / "1" / "0" / "0").exists()
    back = zarr.open_array(str(tmp_path / "x"), mode="r")[:]
    assert back[0].sum() == 20 and back[1].sum() == 0


def test_other_chunking_or_codecs_are_refused(tmp_path):
    from zarr.codecs import ZstdCodec

    two_frames = _array(tmp_path, "a", (4, 3, 5), chunks=(2, 3, 5))
    zstd = _array(tmp_path, "b", (4, 3, 5), compressors=(ZstdCodec(level=1),))
    for arr, why in [(two_frames, "not one frame"), (zstd, "not bytes \\+ blosc")]:
        assert not FrameChunkWriter.supports(arr)
        with pytest.raises(ValueError, match=why):
            FrameChunkWriter(arr, tmp_path / arr.path)
    ok = _array(tmp_path, "c", (4, 3, 5))
    with pytest.raises(ValueError, match=r"frames of shape \(3, 4\)"):
        FrameChunkWriter(ok, tmp_path / "c").write(0, np.zeros((1, 3, 4), np.float16))
