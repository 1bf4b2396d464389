"""--threads is validated and applied the same way by every stage sub-command."""

import argparse

import pytest
import torch

from genvis.cli import main
from genvis.commands import add_threads_argument, apply_threads
from genvis.errors import ConfigError


@pytest.mark.parametrize("command", [
    ["train", "--cache", "c.zarr", "--annotations", "a.json", "--config", "e.yaml", "--out", "m.pt"],
    ["infer", "--cache", "c.zarr", "--annotations", "a.json", "--model", "m.pt", "--out", "r.json"],
    ["extract", "--annotations", "a.json", "--image-root", "f", "--detector", "d.pt", "--out", "s.zarr"],
])
def test_threads_below_one_is_a_named_cli_error(command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(command + ["--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert "--threads: must be >= 1, got 0" in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_apply_threads_sets_torch_threads():
    parser = argparse.ArgumentParser()
    add_threads_argument(parser)
    before = torch.get_num_threads()
    try:
        apply_threads(parser.parse_args(["--threads", "1"]))
        assert torch.get_num_threads() == 1
        apply_threads(parser.parse_args([]))  # not given: unchanged
        assert torch.get_num_threads() == 1
        with pytest.raises(ConfigError):
            apply_threads(parser.parse_args(["--threads", "-2"]))
    finally:
        torch.set_num_threads(before)
