"""--device: validated the same way by every command; stage two trains and infers on it.

The CUDA comparison runs only where a GPU is present (a lent GPU machine); on CPU-only
machines the device checks and the CPU path are tested.
"""

import pytest
import torch

from genvis.model.checkpoint import load_model
from genvis.cli import main
from genvis.errors import InputError
from genvis.infer.inference import run_inference
from genvis.train.config import ExperimentConfig
from genvis.train.loop import train
from tests.helpers.toy import make_toy_problem
from genvis.utils.device import resolve_device

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COMMANDS = [
    ["train", "--cache", "c.zarr", "--annotations", "a.json", "--config", "e.yaml", "--out", "m.pt"],
    ["infer", "--cache", "c.zarr", "--annotations", "a.json", "--model", "m.pt", "--out", "r.json"],
    ["extract", "--annotations", "a.json", "--image-root", "f", "--detector", "d.pt", "--out", "s.zarr"],
    ["train-detector", "--annotations", "a.json", "--image-root", "f", "--config", "d.yaml", "--out", "d.pt"],
    ["demo", "--video", "v.mp4", "--detector", "d.pt", "--model", "m.pt", "--out-dir", "o"],
]


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="--device.*not a torch device: 'gpu0'"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="'cuda:1' requested but CUDA is not available"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_every_command_refuses_an_unusable_device_before_reading_anything(command, capsys, tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(command + ["--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert main(command + ["--device", "tpu:x"]) == 2
    assert "not a torch device" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written


def _config():
    return ExperimentConfig.from_dict({
        "name": "d", "model": {"num_queries": 6, "num_heads": 4, "dim_feedforward": 64, "enc_layers": 1,
                               "dec_layers": 2},
        "train": {"n_v": 3, "n_f": 1, "batch_videos": 2, "iterations": 3, "lr": 1e-3, "num_points": 32,
                  "clip_grad_norm": 1.0, "checkpoint_every": 100, "decay_steps": [1000],
                  "carry_state": True}})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on a lent GPU machine)")
def test_cuda_training_and_inference_match_cpu(tmp_path):
    """Same clips, same points, same weights at the start: CUDA and CPU runs agree up to
    float rounding; MODEL.pt from the GPU holds CPU tensors and loads anywhere."""
    src, ds = make_toy_problem(num_videos=3, length=6)
    runs = {}
    for device in ("cpu", "cuda"):
        out = train(_config(), src, ds, tmp_path / device / "m.pt", progress=False, device=device)
        model, _ = load_model(out)
        assert all(t.device.type == "cpu" for t in model.state_dict().values())
        losses = (tmp_path / device / "m.losses.csv").read_text().splitlines()[1:]
        runs[device] = (model, [float(r.split(",")[2]) for r in losses])
    assert runs["cuda"][1] == pytest.approx(runs["cpu"][1], rel=1e-3)
    cpu_res = run_inference(runs["cpu"][0], src, ds, 2, top_k=3, progress=False)
    gpu_res = run_inference(runs["cpu"][0].to("cuda"), src, ds, 2, top_k=3, progress=False)
    assert [r.score for r in gpu_res] == pytest.approx([r.score for r in cpu_res], abs=1e-4)
    assert [r.category_id for r in gpu_res] == [r.category_id for r in cpu_res]
