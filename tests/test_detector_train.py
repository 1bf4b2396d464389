"""train-detector: Mask2Former loss training, exact resume, frame mask AP via COCOeval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from genvis.data.ytvis import load_vis_json
from genvis.detector import train as train_mod
from genvis.detector.config import DetectorConfig
from genvis.detector.model import FrameDetector
from genvis.detector.train import TrainDetectorConfig, evaluate_frame_ap, frame_samples, train_detector
from genvis.errors import ConfigError, InputError

CFG = DetectorConfig(backbone="tiny_resnet", num_classes=2, hidden_dim=32, num_queries=4, decoder_layers=3,
                     encoder_layers=1, num_heads=4, dim_feedforward=32, encoder_feedforward_dim=32,
                     keep_layers=2, min_size=32, max_size=64)


def make_annotated_split(root: Path, h=32, w=48) -> Path:
    """Two videos of 3 frames: a bright square (class 1) moving, a dark disc (class 2) in one."""
    videos, anns = [], []
    yy, xx = np.mgrid[:h, :w]
    for vid in (1, 2):
        names, sq_segs, disc_segs = [], [], []
        for t in range(3):
            img = np.full((h, w, 3), 90, np.uint8)
            sq = np.zeros((h, w), bool)
            sq[6:18, 4 + 6 * t + vid:16 + 6 * t + vid] = True
            img[sq] = (240, 40, 40)
            disc = (yy - 22) ** 2 + (xx - 34 + 2 * t) ** 2 < 36
            if vid == 2:
                img[disc] = (20, 20, 200)
            name = f"v{vid}/{t}.png"
            (root / "frames" / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / "frames" / name)
            names.append(name)
            for m, segs in ((sq, sq_segs), (disc, disc_segs)):
                rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode()
                segs.append(rle)
        videos.append({"id": vid, "file_names": names, "length": 3, "width": w, "height": h})
        anns.append({"id": len(anns) + 1, "video_id": vid, "category_id": 1, "segmentations": sq_segs,
                     "areas": [144.0] * 3, "bboxes": [None] * 3, "iscrowd": 0})
        if vid == 2:
            anns.append({"id": len(anns) + 1, "video_id": vid, "category_id": 2, "segmentations": disc_segs,
                         "areas": [1.0] * 3, "bboxes": [None] * 3, "iscrowd": 0})
    doc = {"videos": videos, "annotations": anns,
           "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "disc"}]}
    (root / "train.json").write_text(json.dumps(doc))
    return root / "train.json"


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("dettrain")
    return root, make_annotated_split(root)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


TCFG = dict(iterations=6, batch_size=2, lr=1e-3, backbone_lr_multiplier=1.0, num_points=256,
            checkpoint_every=100, seed=3, scale_jitter=[0.8, 1.2])


def test_resume_is_exact(split, tmp_path):
    root, path = split
    ds = load_vis_json(path)
    tcfg = TrainDetectorConfig.from_dict(TCFG)
    full = train_detector(ds, root / "frames", CFG, tcfg, tmp_path / "full.pt", progress=False)
    assert (tmp_path / "full.pt").is_file() and not (tmp_path / "full.pt.state.pt").exists()
    part = train_detector(ds, root / "frames", CFG, tcfg, tmp_path / "res.pt", progress=False, stop_after=3)
    assert not (tmp_path / "res.pt").exists() and (tmp_path / "res.pt.state.pt").is_file()
    assert part.fingerprint() != full.fingerprint()
    resumed = train_detector(ds, root / "frames", CFG, tcfg, tmp_path / "res.pt", resume=True, progress=False)
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert FrameDetector.load(tmp_path / "res.pt").fingerprint() == full.fingerprint()
    other = TrainDetectorConfig.from_dict({**TCFG, "lr": 2e-3})
    train_detector(ds, root / "frames", CFG, other, tmp_path / "x.pt", progress=False, stop_after=1)
    with pytest.raises(InputError, match="another config"):
        train_detector(ds, root / "frames", CFG, tcfg, tmp_path / "x.pt", resume=True, progress=False)
    with pytest.raises(InputError, match="no training state"):
        train_detector(ds, root / "frames", CFG, tcfg, tmp_path / "none.pt", resume=True, progress=False)


def test_resume_interrupted_continues_only_its_own_run(split, tmp_path, capsys):
    """The workflow's --resume-interrupted: a stopped run continues exactly; no state, or a
    state of another config or of another annotation file, starts afresh instead of failing."""
    root, path = split
    ds = load_vis_json(path)
    tcfg = TrainDetectorConfig.from_dict(TCFG)
    full = train_detector(ds, root / "frames", CFG, tcfg, tmp_path / "full.pt", progress=False)
    fresh = train_detector(ds, root / "frames", CFG, tcfg, tmp_path / "none.pt", resume="interrupted",
                           progress=False)
    assert fresh.fingerprint() == full.fingerprint() and "afresh" not in capsys.readouterr().err
    train_detector(ds, root / "frames", CFG, tcfg, tmp_path / "res.pt", progress=False, stop_after=3)
    resumed = train_detector(ds, root / "frames", CFG, tcfg, tmp_path / "res.pt", resume="interrupted",
                             progress=False)
    err = capsys.readouterr().err
    assert resumed.fingerprint() == full.fingerprint() and "afresh" not in err and "continuing from iteration 3" in err
    other = TrainDetectorConfig.from_dict({**TCFG, "lr": 2e-3})
    train_detector(ds, root / "frames", CFG, other, tmp_path / "x.pt", progress=False, stop_after=1)
    again = train_detector(ds, root / "frames", CFG, tcfg, tmp_path / "x.pt", resume="interrupted", progress=False)
    assert again.fingerprint() == full.fingerprint() and "starting afresh" in capsys.readouterr().err
    # same configs, the annotation file has changed since the state was written
    copy = tmp_path / "train.json"
    copy.write_bytes(path.read_bytes())
    ds2 = load_vis_json(copy)
    train_detector(ds2, root / "frames", CFG, tcfg, tmp_path / "y.pt", progress=False, stop_after=3)
    copy.write_bytes(path.read_bytes() + b" ")
    again = train_detector(ds2, root / "frames", CFG, tcfg, tmp_path / "y.pt", resume="interrupted", progress=False)
    assert again.fingerprint() == full.fingerprint() and "starting afresh" in capsys.readouterr().err


def test_training_lowers_the_mask2former_loss(split, tmp_path):
    root, path = split
    ds = load_vis_json(path)
    samples = frame_samples(ds)
    assert len(samples) == 6
    tcfg = TrainDetectorConfig.from_dict({**TCFG, "iterations": 25, "hflip": False, "scale_jitter": [1.0, 1.0]})
    batch = train_mod._make_batch(ds, root / "frames", samples, CFG, tcfg, torch.Generator().manual_seed(0))

    def loss_of(det):
        torch.manual_seed(0)
        det.m2f.criterion.num_points = 256
        det.m2f.criterion.matcher.num_points = 256
        with torch.no_grad():
            return det.run(*batch)[0].loss.item()

    torch.manual_seed(tcfg.seed)
    before = loss_of(FrameDetector(CFG))
    det = train_detector(ds, root / "frames", CFG, tcfg, tmp_path / "d.pt", progress=False)
    after = loss_of(det)
    assert after < 0.7 * before


def test_frame_ap_with_perfect_and_wrong_predictions(split, monkeypatch):
    root, path = split
    ds = load_vis_json(path)
    det = FrameDetector(CFG)

    def oracle(shift):
        def predict(det, frames, top_k=20, device="cpu", min_size=None, max_size=None):
            out = []
            for f in frames:  # find the GT of this frame from its pixels
                sq = (f[..., 0] == 240)
                disc = (f[..., 2] == 200)
                masks, classes = [np.roll(sq, shift, axis=1)], [0]
                if disc.any():
                    masks.append(np.roll(disc, shift, axis=1))
                    classes.append(1)
                out.append((np.linspace(0.9, 0.8, len(masks)), np.array(classes), np.stack(masks)))
            return out
        return predict

    monkeypatch.setattr(train_mod, "predict_frame_instances", oracle(0))
    perfect = evaluate_frame_ap(det, ds, root / "frames", progress=False)
    assert perfect["AP"] == pytest.approx(100.0) and perfect["frames"] == 6
    monkeypatch.setattr(train_mod, "predict_frame_instances", oracle(4))
    shifted = evaluate_frame_ap(det, ds, root / "frames", progress=False)
    assert 0 <= shifted["AP"] < 60 and shifted["AP50"] > shifted["AP75"]


def test_config_and_input_errors(split, tmp_path):
    root, path = split
    ds = load_vis_json(path)
    with pytest.raises(ConfigError, match="unknown keys \\['iters'\\]"):
        TrainDetectorConfig.from_dict({"iters": 3}, source="d.yaml")
    with pytest.raises(ConfigError, match="d.yaml: train.batch_size"):
        TrainDetectorConfig.from_dict({"batch_size": 0}, source="d.yaml")
    wrong_k = DetectorConfig(**{**CFG.to_dict(), "num_classes": 5})
    with pytest.raises(InputError, match="has 2 categories but the detector config says num_classes 5"):
        train_detector(ds, root / "frames", wrong_k, TrainDetectorConfig.from_dict(TCFG), tmp_path / "a.pt",
                       progress=False)


def test_cli_train_detector_with_eval(split, tmp_path, capsys):
    from genvis.cli import main

    root, path = split
    cfg_yaml = tmp_path / "det.yaml"
    import yaml

    cfg_yaml.write_text(yaml.safe_dump({**CFG.to_dict(), "train": {**TCFG, "iterations": 2}}))
    rc = main(["train-detector", "--annotations", str(path), "--image-root", str(root / "frames"),
               "--config", str(cfg_yaml), "--out", str(tmp_path / "d.pt"), "--iterations", "1",
               "--eval-annotations", str(path), "--eval-image-root", str(root / "frames"),
               "--eval-out", str(tmp_path / "ap.json"), "--no-progress"])
    assert rc == 0
    ap = json.loads((tmp_path / "ap.json").read_text())
    assert set(ap) >= {"AP", "AP50", "AP75", "AR10", "frames"} and ap["frames"] == 6
    assert "frame mask AP" in capsys.readouterr().out
    rc = main(["train-detector", "--annotations", str(path), "--image-root", str(root / "frames"),
               "--config", str(cfg_yaml), "--out", str(tmp_path / "e.pt"), "--eval-out", "x.json"])
    assert rc == 2


def test_finetuning_from_init_keeps_backbone_norm_statistics(split, tmp_path):
    root, path = split
    ds = load_vis_json(path)
    torch.manual_seed(5)
    start = FrameDetector(CFG)
    start.save(tmp_path / "init.pt")
    tcfg = TrainDetectorConfig.from_dict({**TCFG, "iterations": 2})
    det = train_detector(ds, root / "frames", CFG, tcfg, tmp_path / "ft.pt", progress=False, init=tmp_path / "init.pt")
    key = "m2f.model.pixel_level_module.encoder.embedder.embedder.normalization.running_mean"
    assert torch.equal(det.state_dict()[key], start.state_dict()[key])
    conv = "m2f.model.pixel_level_module.encoder.embedder.embedder.convolution.weight"
    assert not torch.equal(det.state_dict()[conv], start.state_dict()[conv])  # weights still train


def test_detector_ap_command(split, tmp_path, monkeypatch, capsys):
    """genvis detector-ap: the oracle's frame AP written to --out; frame sampling recorded."""
    from genvis.cli import main

    root, path = split
    det_path = tmp_path / "det.pt"
    FrameDetector(CFG).save(det_path)

    def perfect(det, frames, top_k=20, device="cpu", min_size=None, max_size=None):
        out = []
        for f in frames:
            masks, classes = [f[..., 0] == 240], [0]
            if (f[..., 2] == 200).any():
                masks.append(f[..., 2] == 200)
                classes.append(1)
            out.append((np.linspace(0.9, 0.8, len(masks)), np.array(classes), np.stack(masks)))
        return out

    monkeypatch.setattr(train_mod, "predict_frame_instances", perfect)
    out = tmp_path / "ap.json"
    assert main(["detector-ap", "--detector", str(det_path), "--annotations", str(path), "--image-root",
                 str(root / "frames"), "--out", str(out), "--frames-per-video", "2", "--no-progress"]) == 0
    m = json.loads(out.read_text())
    assert m["AP"] == pytest.approx(100.0) and m["frames"] == 4 and m["frames_per_video"] == 2
    assert "frame mask AP" in capsys.readouterr().out
    assert main(["detector-ap", "--detector", str(det_path), "--annotations", str(path), "--image-root",
                 str(root / "frames"), "--out", str(out), "--frames-per-video", "-1"]) == 2
