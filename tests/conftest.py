"""Shared pytest fixtures (small, fast, useful to every part).

- ``shared_data``: the optional real data (DAVIS 2016 240p frames and masks, vtest.avi) in
  ``../shared/data`` beside the repository; tests using it are skipped when it is absent.
- ``shared_fixtures``: Path of ``../shared/fixtures`` (outputs of the official implementation);
  skips if absent.
- ``tiny_vis_dict`` / ``tiny_vis_json``: a tiny YouTube-VIS ground truth (3 videos of 4-6
  frames at 24x32, 2 categories, an instance absent in some frames, one first appearing
  mid-video), as a dict / written to ``tmp_path / "tiny_vis.json"``. No frames on disk.
- ``tiny_synth_dir``: a session-wide ``genvis synth`` output (6 short videos at 48x64:
  ``frames/``, ``train.json``, ``valid.json``); read-only for tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The optional real data folder (``../shared/data``); the test is skipped when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """``../shared/fixtures`` from the repo root (official outputs to compare with); the test is
    skipped when it is not there."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"official-output fixtures not found at {SHARED_FIXTURES} (read-only, not in the repo)")
    return SHARED_FIXTURES


def make_tiny_vis_dict(seed: int = 0) -> dict:
    """A tiny valid YouTube-VIS ground truth dict (see module docstring)."""
    from genvis.data import masks as mask_ops

    rng = np.random.default_rng(seed)
    h, w = 24, 32
    videos, anns = [], []
    aid = 1
    for vid, t_len in ((1, 4), (2, 6), (3, 5)):
        videos.append({"id": vid, "file_names": [f"vid{vid}/{t:05d}.jpg" for t in range(t_len)],
                       "length": t_len, "width": w, "height": h})
        for k in range(2):
            m = np.zeros((t_len, h, w), bool)
            y, x = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 10))
            start = 2 if (vid, k) == (2, 1) else 0  # first appears mid-video
            for t in range(start, t_len):
                if (vid, k, t) == (1, 0, 2):
                    continue  # absent in one frame
                m[t, y:y + 6 + k, x + t:x + t + 8] = True
            segs = mask_ops.encode_masks_or_none(m)
            anns.append({"id": aid, "video_id": vid, "category_id": 1 + k, "segmentations": segs,
                         "areas": mask_ops.rle_areas(segs), "bboxes": mask_ops.rle_bboxes(segs),
                         "iscrowd": 0})
            aid += 1
    return {"videos": videos, "annotations": anns,
            "categories": [{"id": 1, "name": "disc", "supercategory": "shape"},
                           {"id": 2, "name": "box", "supercategory": "shape"}]}


@pytest.fixture
def tiny_vis_dict() -> dict:
    """A fresh tiny VIS ground-truth dict (mutate freely)."""
    return make_tiny_vis_dict()


@pytest.fixture
def tiny_vis_json(tmp_path) -> Path:
    """Path of the tiny VIS ground truth written as json."""
    path = tmp_path / "tiny_vis.json"
    path.write_text(json.dumps(make_tiny_vis_dict()))
    return path


@pytest.fixture(scope="session")
def tiny_synth_dir(tmp_path_factory) -> Path:
    """A small synthetic benchmark written once per session by ``genvis.data.synth``."""
    from genvis.data.synth import SynthConfig, write_synth_dataset

    out = tmp_path_factory.mktemp("synth")
    write_synth_dataset(out, SynthConfig(num_videos=6, seed=0, height=48, width=64,
                                         min_length=6, max_length=12), progress=False)
    return out


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread, then restore the previous count.

    Tiny models run fastest on one thread (more threads spin on a busy shared machine), and
    results must not depend on thread scheduling. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
