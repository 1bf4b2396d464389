"""Training sampler: consecutive windows and the official code's sparse sampling (train.frame_range)."""

import csv
import math

import pytest
import torch

from genvis.errors import ConfigError, InputError
from genvis.model.genvis import GenVIS
from tests.helpers.clip_source import InMemoryClipSource
from genvis.train.config import ExperimentConfig
from genvis.train.criterion import SetCriterion
from genvis.clip_source import probe_sizes
from genvis.train.loop import sample_losses, train
from genvis.train.sampler import ClipSampler
from genvis.train.targets import DatasetTargets
from tests.helpers.toy import make_toy_problem

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODEL = {"num_queries": 6, "num_heads": 4, "dim_feedforward": 64, "enc_layers": 1, "dec_layers": 2}


def config(**train_kw):
    t = {"n_v": 2, "n_f": 2, "batch_videos": 2, "iterations": 3, "lr": 1e-3, "num_points": 32,
         "clip_grad_norm": 1.0, "checkpoint_every": 100, "decay_steps": [1000]}
    t.update(train_kw)
    return ExperimentConfig.from_dict({"name": "t", "model": dict(MODEL), "train": t}).validate()


def test_consecutive_windows_stay_inside_the_video_and_skip_short_videos():
    with pytest.warns(UserWarning, match="1 video\\(s\\) shorter than 6 frames"):
        sampler = ClipSampler({1: 6, 2: 20, 3: 5}, n_v=3, n_f=2)
    gen = torch.Generator().manual_seed(0)
    starts = {1: set(), 2: set()}
    for vid, frames in sampler.sample(400, gen):
        assert frames == tuple(range(frames[0], frames[0] + 6))
        assert 0 <= frames[0] and frames[-1] < {1: 6, 2: 20}[vid]
        starts[vid].add(frames[0])
    assert starts[1] == {0} and starts[2] == set(range(15))   # every start of video 2 is drawn


def test_sparse_sampling_follows_the_reference_frame_window():
    r, window = 3, 6
    sampler = ClipSampler({1: 40, 2: 4}, n_v=3, n_f=2, frame_range=r)   # video 2 < window: still used
    gen = torch.Generator().manual_seed(1)
    spans, repeats, gaps, vids, n1 = [], 0, 0, set(), 0
    for vid, frames in sampler.sample(2000, gen):
        vids.add(vid)
        assert len(frames) == window and list(frames) == sorted(frames)
        assert 0 <= frames[0] and frames[-1] < {1: 40, 2: 4}[vid]
        spans.append(frames[-1] - frames[0])
        assert spans[-1] <= 2 * r            # every frame is within R of the reference
        gaps += any(b - a > 1 for a, b in zip(frames, frames[1:]))
        if vid == 1:
            n1 += 1
            repeats += len(set(frames)) < window
    assert vids == {1, 2}
    assert max(spans) == 2 * r               # samples reach the whole 2R + 1 window
    assert gaps > 0                          # not consecutive
    # with replacement: for a reference with 2R = 6 neighbours, 5 draws are all distinct
    # with probability 6!/6^5 = 0.093; fewer neighbours near the ends -> about 0.92 repeat
    assert 0.88 < repeats / n1 < 0.96


def test_sparse_sampling_skips_one_frame_videos_and_checks_its_range():
    with pytest.warns(UserWarning, match="shorter than 2 frames"):
        sampler = ClipSampler({1: 1, 2: 3}, n_v=5, n_f=1, frame_range=6)
    assert sampler.video_ids == [2]
    with pytest.raises(InputError, match="2 frames sparse sampling needs"):
        ClipSampler({1: 1}, n_v=5, n_f=1, frame_range=6)
    with pytest.raises(ConfigError, match="train.frame_range"):
        ClipSampler({1: 8}, n_v=2, n_f=1, frame_range=0)


@pytest.mark.parametrize("bad, match", [({"frame_range": 0}, "integer >= 1"),
                                        ({"frame_range": 2.5}, "integer >= 1"),
                                        ({"frame_range": 4, "carry_state": True}, "carry_state")])
def test_frame_range_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        config(**bad)


def test_sparse_sample_equals_the_same_frames_as_a_consecutive_video():
    """A sparse sample (repeats and gaps) gives exactly the losses of a consecutive window
    over a video made of those frames: the right frame queries, mask features and targets."""
    src, ds = make_toy_problem(num_videos=1, length=10, num_instances=3, absent_prob=0.3, seed=4)
    vid = ds.videos[0].id
    frames = (1, 1, 4, 8)
    video = src._video(vid)
    index = list(frames)
    remade = InMemoryClipSource({vid: {"frame_queries": video["frame_queries"][index],
                                       "mask_features": video["mask_features"][index],
                                       "attrs": dict(video["attrs"])}}, name="remade")
    targets = DatasetTargets(ds, src)
    cfg = config()
    sizes = probe_sizes(src, vid)
    torch.manual_seed(0)
    model = GenVIS(cfg.model_config(ds.num_classes, sizes["hidden_dim"], sizes["num_frame_queries"],
                                    sizes["mask_feature_dim"])).eval()
    crit = SetCriterion(cfg.train, model.cfg.num_classes)
    with torch.no_grad():
        sparse, parts, _ = sample_losses(model, crit, cfg, src, targets, [(vid, frames)], sizes["layers"],
                                         torch.Generator().manual_seed(3))
        same, parts2, _ = sample_losses(model, crit, cfg, remade, lambda v: targets(v).select(index),
                                        [(vid, (0, 1, 2, 3))], sizes["layers"], torch.Generator().manual_seed(3))
        other, _, _ = sample_losses(model, crit, cfg, src, targets, [(vid, (1, 2, 3, 4))], sizes["layers"],
                                    torch.Generator().manual_seed(3))
    assert math.isfinite(float(sparse)) and float(sparse) == pytest.approx(float(same), rel=1e-6)
    assert parts == pytest.approx(parts2, rel=1e-6)
    assert float(other) != pytest.approx(float(sparse), rel=1e-3)


def test_training_with_frame_range_runs_and_differs_from_consecutive(tmp_path):
    src, ds = make_toy_problem(num_videos=3, length=9, num_instances=2, seed=2)
    totals = {}
    for name, cfg in (("sparse", config(frame_range=2)), ("plain", config())):
        out = train(cfg, src, ds, tmp_path / name / "m.pt", progress=False)
        with open(out.parent / "m.losses.csv") as f:
            totals[name] = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(totals["sparse"]) == 3 and all(math.isfinite(t) for t in totals["sparse"])
    assert totals["sparse"] != pytest.approx(totals["plain"])
