"""genvis demo: detector in the loop on a frame folder and a video file -> results + overlay mp4."""

import json

import av
import numpy as np
import pytest
import torch
from PIL import Image

from genvis.model.checkpoint import save_model
from genvis.cli import main
from genvis.detector.config import DetectorConfig
from genvis.detector.model import FrameDetector
from genvis.report.overlay import overlay
from genvis.model.genvis import GenVIS
from genvis.train.config import ExperimentConfig

TINY = dict(backbone="tiny_resnet", num_classes=3, hidden_dim=32, num_queries=5, decoder_layers=4,
            encoder_layers=1, num_heads=4, dim_feedforward=64, encoder_feedforward_dim=64,
            min_size=32, max_size=64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("demo")
    FrameDetector(DetectorConfig(**TINY)).save(d / "det.pt")
    exp = ExperimentConfig.from_dict({"model": {"num_queries": 4, "num_heads": 4, "dim_feedforward": 32,
                                                "enc_layers": 1, "dec_layers": 1},
                                      "train": {"n_f": 2}, "inference": {"top_k": 3}})
    model = GenVIS(exp.model_config(3, 32, 5, 32))
    save_model(d / "model.pt", model, exp.to_dict(),
               {"categories": [{"id": 7, "name": "a"}, {"id": 8, "name": "b"}, {"id": 9, "name": "c"}]})
    frames = d / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (45, 61, 3), dtype=np.uint8)).save(frames / f"{i:05d}.jpg")
    return d


def test_demo_on_frame_folder(files, tmp_path):
    out = tmp_path / "out"
    assert main(["demo", "--video", str(files / "frames"), "--detector", str(files / "det.pt"),
                 "--model", str(files / "model.pt"), "--out-dir", str(out), "--score-threshold", "0",
                 "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert len(res) == 3
    assert all(len(r["segmentations"]) == 5 and r["segmentations"][0]["size"] == [45, 61] for r in res)
    assert {r["category_id"] for r in res} <= {7, 8, 9}
    with av.open(str(out / "overlay.mp4")) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == 5 and decoded[0].shape == (46, 62, 3)   # padded to even size


def test_demo_on_video_file_and_errors(files, tmp_path):
    video = tmp_path / "in.mp4"
    with av.open(str(video), "w") as c:
        s = c.add_stream("libx264", rate=5)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(4):
            frame = np.full((48, 64, 3), 40 * i, dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    out = tmp_path / "out"
    assert main(["demo", "--video", str(video), "--detector", str(files / "det.pt"), "--model",
                 str(files / "model.pt"), "--out-dir", str(out), "--n-f-eval", "3", "--no-progress"]) == 0
    assert len(json.loads((out / "results.json").read_text())[0]["segmentations"]) == 4
    assert main(["demo", "--video", str(tmp_path / "missing.mp4"), "--detector", str(files / "det.pt"),
                 "--model", str(files / "model.pt"), "--out-dir", str(out / "x"), "--no-progress"]) == 2


def test_overlay_colours_only_the_mask():
    frame = np.zeros((4, 4, 3), dtype=np.uint8)
    m = np.zeros((4, 4), dtype=bool)
    m[1:3, 1:3] = True
    out = overlay(frame, [m], [np.array([200.0, 0.0, 0.0])])
    assert (out[~m] == 0).all() and (out[m][:, 0] > 0).all()
