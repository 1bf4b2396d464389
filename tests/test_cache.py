"""Zarr feature cache: layout, atomic per-video writes, provenance refusal, clip reads."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from genvis.cache import layout
from genvis.cache.reader import CacheReader
from genvis.cache.writer import CacheWriter
from genvis.clip_source import ClipSource, check_covers
from genvis.errors import InputError

L, Q, C, K, H, W = 3, 5, 8, 4, 6, 10


def _prov(**over):
    p = layout.make_provenance("abc123", "tiny", 64, 96, L)
    p.update(over)
    return p


def _video_arrays(t: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "frame_queries": rng.normal(size=(t, L, Q, C)).astype(np.float32),
        "mask_features": np.maximum(rng.normal(size=(t, C, H, W)), 0).astype(np.float32),
        "class_logits": rng.normal(size=(t, Q, K + 1)).astype(np.float32),
        "mask_embeddings": rng.normal(size=(t, Q, C)).astype(np.float32),
    }


def _attrs(t):
    return {"file_names": [f"v/{i:05d}.jpg" for i in range(t)], "original_size": [24, 40],
            "resized_size": [24, 40], "padded_size": [H * 4, W * 4]}


@pytest.fixture()
def store(tmp_path):
    path = tmp_path / "cache.zarr"
    w = CacheWriter(path, _prov())
    data = {7: _video_arrays(9, 1), 3: _video_arrays(4, 2)}
    for vid, arrs in data.items():
        w.write_video(vid, arrs, _attrs(len(arrs["frame_queries"])))
    return path, data


def test_roundtrip_shapes_dtypes_and_values(store):
    path, data = store
    r = CacheReader(path, expected_provenance=_prov())
    assert r.video_ids == [3, 7]
    assert (r.num_layers, r.num_queries, r.hidden_dim, r.num_classes) == (L, Q, C, K)
    assert r.length(7) == 9
    clip = r.read_clip(7, 2, 5, fields=layout.FIELDS)
    assert clip["frame_queries"].shape == (3, L, Q, C)
    assert clip["mask_features"].shape == (3, C, H, W)
    assert clip["class_logits"].shape == (3, Q, K + 1)
    assert clip["mask_embeddings"].shape == (3, Q, C)
    for f in layout.FIELDS:
        assert clip[f].dtype == torch.float32
        want = data[7][f][2:5].astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(clip[f].numpy(), want)
    last = r.read_clip(7, 0, 2, fields=("frame_queries",), layers=slice(-1, None))
    assert last["frame_queries"].shape == (2, 1, Q, C)
    np.testing.assert_array_equal(last["frame_queries"][:, 0].numpy(),
                                  data[7]["frame_queries"][:2, -1].astype(np.float16).astype(np.float32))
    a = r.video_attrs(7)
    assert a["video_id"] == 7 and a["length"] == 9 and a["complete"] is True
    assert a["file_names"][3] == "v/00003.jpg" and a["padded_size"] == [H * 4, W * 4]


def test_read_frames_reads_sparse_picks_with_repeats(store):
    path, data = store
    r = CacheReader(path)
    frames = [1, 4, 4, 8]                                   # a sparse training sample
    got = r.read_frames(7, frames, layers=slice(-2, None))
    want_fq = data[7]["frame_queries"][frames][:, -2:].astype(np.float16).astype(np.float32)
    want_mf = data[7]["mask_features"][frames].astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(got["frame_queries"].numpy(), want_fq)
    np.testing.assert_array_equal(got["mask_features"].numpy(), want_mf)
    same = r.read_frames(7, [2, 3, 4])                      # consecutive: the clip read
    np.testing.assert_array_equal(same["mask_features"].numpy(), r.read_clip(7, 2, 5)["mask_features"].numpy())
    with pytest.raises(InputError, match="out of range"):
        r.read_frames(7, [3, 9])


def test_on_disk_layout_fp16_one_frame_per_chunk_compressed(store):
    path, _ = store
    import zarr

    root = zarr.open_group(str(path), mode="r")
    assert root.attrs["provenance"]["detector_fingerprint"] == "abc123"
    arr = root["videos/7/mask_features"]
    assert arr.dtype == np.float16 and arr.chunks == (1, C, H, W)
    assert root["videos/7/frame_queries"].chunks == (1, L, Q, C)
    meta = json.loads((path / "videos/7/mask_features/zarr.json").read_text())
    assert any(c["name"] == "blosc" for c in meta["codecs"])
    # one chunk file per frame
    chunk_files = [p for p in (path / "videos/7/mask_features").rglob("*") if p.is_file()
                   and p.name != "zarr.json"]
    assert len(chunk_files) == 9
    assert not list((path / layout.PARTIAL_DIR).iterdir())


def test_iter_clips_covers_video_with_prefetch(store):
    path, data = store
    r = CacheReader(path)
    for prefetch in (0, 2):
        clips = list(r.iter_clips(7, 4, fields=("mask_features",), prefetch=prefetch))
        assert [(s, e) for s, e, _ in clips] == [(0, 4), (4, 8), (8, 9)]
        got = torch.cat([c["mask_features"] for _, _, c in clips]).numpy()
        np.testing.assert_array_equal(got, data[7]["mask_features"].astype(np.float16).astype(np.float32))


def test_clear_errors(store, tmp_path):
    path, _ = store
    r = CacheReader(path)
    with pytest.raises(InputError, match="video 99 is not in the cache"):
        r.read_clip(99, 0, 1)
    with pytest.raises(InputError, match=r"clip \[5, 12\) is out of range for video 7 with 9 frames"):
        r.read_clip(7, 5, 12)
    with pytest.raises(InputError, match="does not exist"):
        CacheReader(tmp_path / "nope.zarr")


def test_cache_is_a_clip_source_and_coverage_is_checked(store):
    path, _ = store
    r = CacheReader(path)
    assert isinstance(r, ClipSource)
    with pytest.raises(InputError, match=r"2 video\(s\) of x.json are missing: 5, 99"):
        check_covers(r, SimpleNamespace(videos=[SimpleNamespace(id=3, length=4),
                                                SimpleNamespace(id=5, length=2),
                                                SimpleNamespace(id=99, length=2)], path="x.json"))
    with pytest.raises(InputError, match="video 3 has 4 frames but the annotation file lists 5"):
        check_covers(r, SimpleNamespace(videos=[SimpleNamespace(id=3, length=5)], path="x.json"))
    check_covers(r, SimpleNamespace(videos=[SimpleNamespace(id=3, length=4)], path="x.json"))


def test_nan_in_cache_is_reported_with_video_id(store):
    path, _ = store
    import zarr

    g = zarr.open_group(str(path), mode="r+")
    g["videos/3/mask_features"][1, 0, 0, 0] = np.nan
    r = CacheReader(path)
    r.read_clip(3, 2, 4)  # other frames are fine
    with pytest.raises(InputError, match="NaN found in cached mask_features of video 3"):
        r.read_clip(3, 0, 2)


def test_writer_refuses_nan(tmp_path):
    w = CacheWriter(tmp_path / "c.zarr", _prov())
    arrs = _video_arrays(2, 0)
    arrs["frame_queries"][1, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="video 4: detector produced NaN in frame_queries"):
        w.write_video(4, arrs, _attrs(2))
    assert not w.has_video(4)
    assert not list((tmp_path / "c.zarr" / layout.PARTIAL_DIR).iterdir())


def test_provenance_mismatch_is_refused_naming_keys(store):
    path, _ = store
    with pytest.raises(InputError) as ei:
        CacheWriter(path, _prov(detector_fingerprint="other", min_size=360))
    msg = str(ei.value)
    assert str(path) in msg and "detector_fingerprint" in msg and "min_size" in msg
    assert "max_size" not in msg
    with pytest.raises(InputError, match="keep_layers"):
        CacheReader(path, expected_provenance=_prov(keep_layers=1))
    # informational keys do not count
    CacheWriter(path, _prov(genvis_version="9.9.9"))


def test_interrupted_video_is_invisible_and_rewritable(tmp_path):
    path = tmp_path / "c.zarr"
    w = CacheWriter(path, _prov())
    arrs = _video_arrays(6, 3)
    shapes = layout.FrameShapes(L, Q, C, K, (H, W))
    with pytest.raises(RuntimeError, match="killed"):
        with w.video(11, 6, shapes, _attrs(6)) as vw:
            vw.write(0, {f: a[:3] for f, a in arrs.items()})
            # a reader opened mid-write sees no trace of the video
            r = CacheReader(path)
            assert r.video_ids == []
            raise RuntimeError("killed")
    assert not w.has_video(11)
    assert CacheReader(path).video_ids == []
    # leftovers of a hard kill (no cleanup ran) are ignored by the reader and discarded on rewrite
    debris = path / layout.PARTIAL_DIR / "11.deadbeef"
    debris.mkdir()
    (debris / "zarr.json").write_text("{}")
    assert CacheReader(path).video_ids == []
    with w.video(11, 6, shapes, _attrs(6)) as vw:
        vw.write(0, {f: a[:4] for f, a in arrs.items()})
        vw.write(4, {f: a[4:] for f, a in arrs.items()})
    assert not debris.exists()
    got = CacheReader(path).read_clip(11, 0, 6, fields=("class_logits",))["class_logits"].numpy()
    np.testing.assert_array_equal(got, arrs["class_logits"].astype(np.float16).astype(np.float32))
    with pytest.raises(InputError, match="already in the cache"):
        w.video(11, 6, shapes)


def test_incomplete_write_is_refused(tmp_path):
    w = CacheWriter(tmp_path / "c.zarr", _prov())
    arrs = _video_arrays(4, 3)
    with pytest.raises(ValueError, match=r"frames \[2, 3\] were never written"):
        with w.video(2, 4, layout.FrameShapes(L, Q, C, K, (H, W))) as vw:
            vw.write(0, {f: a[:2] for f, a in arrs.items()})
    assert not w.has_video(2)


def test_concurrent_writers_share_one_store(tmp_path):
    path = tmp_path / "c.zarr"
    errors = []

    def work(ids):
        try:
            w = CacheWriter(path, _prov())
            for i in ids:
                w.write_video(i, _video_arrays(2, i), _attrs(2))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(ids,)) for ids in ([1, 3, 5], [2, 4, 6])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert CacheReader(path).video_ids == [1, 2, 3, 4, 5, 6]


def test_unwritable_store_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create the cache store"):
        CacheWriter(blocker / "c.zarr", _prov())
    notastore = tmp_path / "dir.zarr"
    notastore.mkdir()
    (notastore / "something").write_text("x")
    with pytest.raises(InputError, match="not a genvis Zarr cache"):
        CacheWriter(notastore, _prov())


def test_full_disk_leaves_nothing_half_written(tmp_path, monkeypatch):
    path = tmp_path / "c.zarr"
    w = CacheWriter(path, _prov())
    w.write_video(1, _video_arrays(2, 1), _attrs(2))
    import zarr

    real_setitem = zarr.Array.__setitem__
    calls = {"n": 0}

    def failing(self, key, value):
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(28, "No space left on device")
        return real_setitem(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", failing)
    with pytest.raises(InputError, match="cannot write video 2: .*No space left"):
        w.write_video(2, _video_arrays(3, 2), _attrs(3))
    monkeypatch.setattr(zarr.Array, "__setitem__", real_setitem)
    assert CacheReader(path).video_ids == [1]
    assert not list((path / layout.PARTIAL_DIR).iterdir())
