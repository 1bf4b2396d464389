"""genvis.settings: one resolver of N_f^eval, top-k, association and iterations."""

from __future__ import annotations

from pathlib import Path

import pytest

from genvis.errors import ConfigError
from genvis.settings import (OFFICIAL_INFERENCE, InferenceSettings, apply_training_overrides, cli_flags,
                             resolve_inference, workflow_overrides)
from genvis.train.config import ExperimentConfig


def _experiment(**inference):
    return {"name": "x", "train": {"n_f": 3, "iterations": 700, "decay_steps": [500]}, "inference": inference}


def test_experiment_settings_and_command_line_overrides():
    # N_f^eval falls back to the training N_f, top-k and association to the experiment's
    assert resolve_inference(_experiment()) == InferenceSettings(3, 20, "propagate")
    assert resolve_inference(_experiment(n_f_eval=5, top_k=7, association="minvis")) == InferenceSettings(5, 7, "minvis")
    # the command line wins, and may ask for the oracle (not allowed in an experiment)
    got = resolve_inference(_experiment(n_f_eval=5), n_f_eval=2, top_k=4, association="oracle")
    assert got == InferenceSettings(2, 4, "oracle")


def test_official_weights_get_the_papers_online_setting():
    assert OFFICIAL_INFERENCE.n_f_eval == 1
    assert resolve_inference(None) == InferenceSettings(1, 20, "propagate")
    assert resolve_inference({}, n_f_eval=3) == InferenceSettings(3, 20, "propagate")
    # the official configs keep 20 predictions per video on OVIS (25 classes), 10 on YouTube-VIS (40)
    assert resolve_inference(None, num_classes=25) == InferenceSettings(1, 20, "propagate")
    assert resolve_inference(None, num_classes=40) == InferenceSettings(1, 10, "propagate")
    assert resolve_inference(None, top_k=15, num_classes=40).top_k == 15
    # an experiment's own top-k is never replaced by the official one
    assert resolve_inference(_experiment(top_k=7), num_classes=40).top_k == 7


def test_bad_values_name_their_source():
    with pytest.raises(ConfigError, match="--n-f-eval: must be an integer >= 1, got 0"):
        resolve_inference(_experiment(), n_f_eval=0)
    with pytest.raises(ConfigError, match="--top-k: must be an integer >= 1, got -1"):
        resolve_inference(None, top_k=-1)
    with pytest.raises(ConfigError, match="--association: must be one of"):
        resolve_inference(None, association="greedy")
    with pytest.raises(ConfigError, match=r"m\.pt: experiment: inference\.association"):
        resolve_inference(_experiment(association="oracle"), source="m.pt")


def test_training_overrides_scale_the_schedule():
    cfg = ExperimentConfig.from_dict(_experiment())
    apply_training_overrides(cfg, iterations=350, seed=4)
    assert (cfg.train.iterations, cfg.train.decay_steps, cfg.train.seed) == (350, [250], 4)
    with pytest.raises(ConfigError, match="--iterations: must be >= 1"):
        apply_training_overrides(cfg, iterations=0)
    with pytest.raises(ConfigError, match="--seed: must be an integer >= 0"):
        apply_training_overrides(cfg, seed=-2)


def test_workflow_overrides_and_flags():
    assert workflow_overrides({"config": "c.yaml"}) == {"n_f_eval": None, "iterations": None}
    entry = {"config": "c.yaml", "n_f_eval": 5, "iterations": 2100}
    assert workflow_overrides(entry, {"train_iterations": None}) == {"n_f_eval": 5, "iterations": 2100}
    assert workflow_overrides(entry, {"train_iterations": 9000})["iterations"] == 9000
    assert cli_flags(n_f_eval=5, association=None) == " --n-f-eval 5"
    assert cli_flags(n_f_eval=None, association="minvis") == " --association minvis"
    assert cli_flags(iterations=None) == ""


def test_idol_settings_resolve_with_the_same_rules():
    import yaml

    from genvis.settings import resolve_idol

    exp = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/experiments/idol.yaml").read_text())
    settings, k = resolve_idol(exp)
    assert (settings.matching, settings.temporal, k) == ("embeddings", True, exp["inference"]["top_k"])
    settings, k = resolve_idol(exp, matching="multi_cue", temporal="off", top_k=5)
    assert (settings.matching, settings.temporal, k) == ("multi_cue", False, 5)
    with pytest.raises(ConfigError, match="--top-k: must be an integer >= 1, got 0"):
        resolve_idol(exp, top_k=0)
    with pytest.raises(ConfigError, match=r"m\.pt: idol"):
        resolve_idol(exp, matching="greedy", source="m.pt")
