"""Swin-L equal to the official code, on the official GenVIS Swin-L OVIS fixture.

``../shared/fixtures/official_swinl`` holds an official-format GenVIS Swin-L OVIS online
checkpoint (official key names and shapes + a seed; ``make_weights.py`` rebuilds the weights)
and what the official implementation (detectron2 + the official GenVIS code) computed with it
on 3 real DAVIS frames at their native 240 x 427 (no resize, padded to 256 x 448):
decoder-normed frame queries of the last decoder layer, sampled raw mask features, the
final online predictions (top-20 scores, labels, masks).

The whole path runs here: official import (``import_official_weights``, with the stored
Swin relative position index tables used as stored, as the official code does), the frame
detector (transformers' Mask2Former with :func:`genvis.detector.backbones.make_official_swin`),
the official GenVIS video modules (``load_official_genvis``) and genvis inference (N_f^eval =
1, the fixture's ``len_clip_window``). Swin-L on 3 frames takes about a minute on 2 CPU cores.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers.clip_source import InMemoryClipSource

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-4


@pytest.fixture(scope="module")
def official(shared_fixtures):
    """(official weights, the official outputs) of the fixture."""
    fx = shared_fixtures / "official_swinl"
    if not (fx / "io.pt").is_file():
        pytest.skip(f"official Swin-L fixture not found in {fx}")
    spec = importlib.util.spec_from_file_location("official_swinl_make_weights", fx / "make_weights.py")
    make_weights = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_weights)
    keys = json.loads((fx / "keys.json").read_text())
    weights = make_weights.make_weights(keys["keys"], keys["seed"])
    return weights, torch.load(fx / "io.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def ours(official):
    """Our detector outputs on the fixture's frames (one Swin-L forward of the 3 frames)."""
    from genvis.detector.official_import import import_official_weights
    from genvis.detector.config import load_detector_yaml
    from genvis.detector.preprocess import preprocess_frames

    weights, io = official
    cfg, _ = load_detector_yaml(ROOT / "config" / "detectors" / "swinl_ovis.yaml")
    det, report = import_official_weights(weights, cfg, source="official_swinl")
    frames = io["frames"].permute(0, 2, 3, 1).contiguous()          # uint8 [3, 240, 427, 3]
    h, w = frames.shape[1:3]
    pixel_values, sizes = preprocess_frames(frames, cfg, min_size=min(h, w), max_size=max(h, w))
    with torch.no_grad():
        out = det(pixel_values)
    return out, sizes, report


def test_import_uses_the_stored_position_index(ours):
    _, sizes, report = ours
    assert sizes.resized == (240, 427) and sizes.padded == (256, 448)  # native size, divisibility 32
    # 24 Swin-L blocks, each with its stored table; the fixture's tables (random floats cast
    # to int64 by load_state_dict, as the official code loads them) are not the standard one
    assert report["position_index"] == 24 and report["nonstandard_position_index"] == 24
    assert report["ignored_non_detector"] > 0 and report["mapped"] > 700


def test_frame_queries_and_mask_features_equal_the_official(official, ours):
    _, io = official
    out, _, _ = ours
    fq = out.frame_queries[:, -1]                                   # last layer, decoder-normed
    assert fq.shape == io["frame_queries"].shape == (3, 200, 256)
    assert (fq - io["frame_queries"]).abs().max().item() <= TOL
    assert tuple(out.mask_features.shape) == tuple(io["mask_features_shape"]) == (3, 256, 64, 112)
    sample = out.mask_features.flatten()[io["mask_features_sample_idx"]]
    assert (sample - io["mask_features_sample"]).abs().max().item() <= TOL
    channel_mean = out.mask_features.mean(dim=(0, 2, 3))
    assert (channel_mean - io["mask_features_channel_mean"]).abs().max().item() <= TOL


def test_final_predictions_equal_the_official(official, ours):
    from genvis.model.checkpoint import load_official_genvis
    from genvis.infer.inference import clip_predictions, select_topk, video_masks

    weights, io = official
    out, sizes, _ = ours
    model = load_official_genvis(weights).eval()
    # no float16 spill: the comparison is at float32
    source = InMemoryClipSource({1: {"frame_queries": out.frame_queries, "mask_features": out.mask_features,
                                     "attrs": sizes.to_dict()}})
    n_f = int(io["len_clip_window"])
    with torch.no_grad():
        logits, embeds = clip_predictions(model, source, 1, n_f)
        scores, queries, labels = select_topk(logits, len(io["pred_scores"]))
        clips = []
        spool, factor = video_masks(model, source, 1, n_f, embeds, queries,
                                    on_clip=lambda s, e, hard: clips.append(hard))
    spool.close()
    final = (scores * factor).clamp(0, 1)
    assert (final - io["pred_scores"]).abs().max().item() <= TOL
    assert torch.equal(labels, io["pred_labels"])
    shape = tuple(io["pred_masks_shape"])
    ref = np.unpackbits(io["pred_masks_packed"].numpy())[: int(np.prod(shape))].reshape(shape).astype(bool)
    masks = torch.cat(clips, dim=1).numpy()
    assert masks.shape == shape == (20, 3, 240, 427)
    assert 0.01 < ref.mean() < 0.99                                  # the check is not trivial
    assert (masks == ref).mean() >= 0.999
