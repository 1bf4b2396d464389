"""DetectorClipSource: the frozen detector on frames behind the CacheReader clip interface."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genvis.cache.extract import extract
from genvis.cache.reader import CacheReader
from genvis.data.ytvis import load_vis_json
from genvis.detector.config import DetectorConfig
from genvis.detector.model import FrameDetector
from genvis.clip_source import ClipSource
from genvis.errors import InputError
from genvis.infer.detector_source import DetectorClipSource
from genvis.infer.inference import run_inference
from genvis.model.genvis import GenVIS
from genvis.train.config import ExperimentConfig
from genvis.train.loop import train

TINY = dict(backbone="tiny_resnet", num_classes=6, hidden_dim=32, num_queries=5, decoder_layers=4,
            encoder_layers=1, num_heads=4, dim_feedforward=64, encoder_feedforward_dim=64,
            min_size=32, max_size=64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tiny_synth_dir, tmp_path_factory):
    torch.manual_seed(0)
    det = FrameDetector(DetectorConfig(**TINY)).eval()
    ds = load_vis_json(tiny_synth_dir / "valid.json")
    store = tmp_path_factory.mktemp("dsrc") / "valid.zarr"
    extract(ds, tiny_synth_dir / "frames", det, store, batch_size=4, progress=False)
    return det, ds, tiny_synth_dir / "frames", CacheReader(store)


def test_clips_match_the_extracted_cache(setup):
    det, ds, root, reader = setup
    src = DetectorClipSource.from_dataset(det, ds, root, batch_size=3)
    assert src.video_ids == reader.video_ids
    assert src.provenance == reader.provenance
    vid = ds.videos[0].id
    for key in ("original_size", "resized_size", "padded_size", "length"):
        assert src.video_attrs(vid)[key] == reader.video_attrs(vid)[key]
    n = src.length(vid)
    fields = ("frame_queries", "mask_features", "class_logits", "mask_embeddings")
    got = src.read_clip(vid, 1, n, fields=fields, layers=None)
    want = reader.read_clip(vid, 1, n, fields=fields)
    for f in fields:
        assert got[f].dtype == torch.float32 and got[f].shape == want[f].shape
        torch.testing.assert_close(got[f], want[f], atol=2e-2, rtol=1e-2)  # cache is float16
    last = src.read_clip(vid, 0, 2, fields=("frame_queries",), layers=slice(-1, None))
    assert last["frame_queries"].shape[1] == 1
    assert isinstance(src, ClipSource)
    clips = list(src.iter_clips(vid, 2, ("frame_queries",), layers=slice(-1, None)))
    assert [(s, e) for s, e, _ in clips] == [(s, min(s + 2, n)) for s in range(0, n, 2)]
    torch.testing.assert_close(clips[0][2]["frame_queries"], last["frame_queries"])
    with pytest.raises(InputError, match="out of range"):
        src.read_clip(vid, 0, n + 1)
    with pytest.raises(InputError, match="not in the clip source"):
        src.read_clip(12345, 0, 1)


def test_spill_runs_the_detector_once_per_frame(setup):
    det, ds, root, _ = setup
    vid = ds.videos[0].id
    n = ds.video(vid).length
    with DetectorClipSource.from_dataset(det, ds, root, spill_dir=True, batch_size=4) as src:
        spill = src.spill_dir
        # clips of 3 do not line up with batches of 4: still once per frame
        first = [src.read_clip(vid, s, min(s + 3, n), fields=("frame_queries",)) for s in range(0, n, 3)]
        assert src.frames_detected == n
        again = src.read_clip(vid, 0, n, fields=("frame_queries", "mask_features"))
        assert src.frames_detected == n  # served from the spill files
        torch.testing.assert_close(again["frame_queries"], torch.cat([c["frame_queries"] for c in first]),
                                   atol=2e-2, rtol=1e-2)
        assert again["frame_queries"].dtype == torch.float32
    assert not spill.exists()


def test_video_file_is_repeated_to_the_requested_length(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    torch.manual_seed(0)
    det = FrameDetector(DetectorConfig(**TINY)).eval()
    src = DetectorClipSource.from_video(det, folder, length=7, video_id=3)
    assert src.video_ids == [3] and src.length(3) == 7
    assert src.video_attrs(3)["original_size"] == [40, 56]
    a = src.read_clip(3, 0, 1)["mask_features"]
    b = src.read_clip(3, 6, 7)["mask_features"]   # frame 6 = frame 0 of the folder again
    torch.testing.assert_close(a, b)
    assert DetectorClipSource.from_video(det, folder).length(1) == 3


def test_training_and_inference_run_on_the_detector_source(setup, tmp_path):
    det, ds, root, reader = setup
    train_ds = load_vis_json(root.parent / "train.json")
    src = DetectorClipSource.from_dataset(det, train_ds, root)
    cfg = ExperimentConfig.from_dict({
        "name": "t", "model": {"num_queries": 6, "num_heads": 4, "dim_feedforward": 64,
                               "enc_layers": 1, "dec_layers": 2},
        "train": {"n_v": 2, "n_f": 1, "batch_videos": 1, "iterations": 1, "num_points": 32,
                  "checkpoint_every": 100, "decay_steps": [1000]}})
    out = train(cfg, src, train_ds, tmp_path / "m.pt", progress=False)
    assert out.is_file()

    torch.manual_seed(0)
    mcfg = cfg.model_config(ds.num_classes, TINY["hidden_dim"], TINY["num_queries"])
    model = GenVIS(mcfg).eval()
    with DetectorClipSource.from_dataset(det, ds, root, spill_dir=True) as e2e:
        got = run_inference(model, e2e, ds, n_f_eval=2, top_k=3, progress=False)
        assert e2e.frames_detected == sum(v.length for v in ds.videos)
    want = run_inference(model, reader, ds, n_f_eval=2, top_k=3, progress=False)
    assert len(got) == len(want) == 3 * len(ds.videos)
    for g, w in zip(got, want):
        assert g.video_id == w.video_id and len(g.segmentations) == len(w.segmentations)
        assert abs(g.score - w.score) < 0.05
