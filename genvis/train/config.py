"""Experiment configuration for stage two: model, training and inference settings (YAML).

An experiment YAML (``config/experiments/*.yaml``) has up to four top-level keys::

    name: genvis_online            # free text
    description: ...               # free text
    model: {...}                   # GenVISConfig fields; num_classes, hidden_dim,
                                   # num_frame_queries, mask_feature_dim come from the cache
    train: {...}                   # TrainConfig fields
    inference: {...}               # InferenceConfig fields (genvis.infer.config)

Unknown keys are refused (ConfigError naming the file and key), so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from genvis.errors import ConfigError, InputError
from genvis.infer.config import InferenceConfig
from genvis.model.config import GenVISConfig
from genvis.utils.checks import check_float, check_int, dataclass_from_mapping

ASSIGNMENTS = ("uvla", "cl", "per_clip")
#: model fields that are read from the cache / dataset, never from the YAML
DERIVED_MODEL_FIELDS = ("num_classes", "hidden_dim", "num_frame_queries", "mask_feature_dim")


@dataclass
class TrainConfig:
    """Stage-two training settings (defaults: the paper / official OVIS configuration).

    Attributes:
        n_v: N_v, consecutive clips per training sample (paper default 5).
        n_f: N_f^train, frames per clip (1 online, 3 semi-online).
        batch_videos: videos per iteration (paper: 8).
        iterations: total iterations (OVIS 140k, YTVIS19 15k, YTVIS21/22 90k).
        lr, weight_decay: AdamW (5e-5, 0.05); norm and embedding parameters get no decay.
        decay_steps, decay_gamma: step decay of the learning rate (OVIS: 100k, x0.1).
        warmup_iters: linear warm-up iterations (0 as in the official configs).
        clip_grad_norm: max total L2 gradient norm (Mask2Former "full_model" clipping
            0.01); 0 disables.
        num_points, oversample_ratio, importance_sample_ratio: point sampling of the mask
            losses (12544, 3.0, 0.75).
        class_weight, mask_weight, dice_weight, no_object_weight, sim_weight: loss weights
            (2, 5, 5, 0.1, 0.5); sim_weight 0 disables the similarity loss.
        assignment: "uvla" (GenVIS), "cl" (correspondence learning) or "per_clip" (VITA
            assignment in each clip independently; with n_v = 1 the VITA baseline).
        deep_supervision: losses on every decoder layer.
        detector_layers: last decoder layers of the detector whose frame queries are used,
            each as its own batch element (3).
        seed: seed of the initialisation, sampler and point sampling.
        checkpoint_every: iterations between resumable checkpoints.
        carry_state: NOT in the paper (default False). Each of the ``batch_videos`` slots
            plays its video from frame 0 to the end, N_v clips per iteration, and carries
            the decoder output, the memory's prototypes and the UVLA assignment (detached)
            from one iteration to the next -- truncated back-propagation through time
            (:mod:`genvis.train.carry`), so that the model is trained on the states it meets
            after many clips at inference. Requires ``assignment: uvla``.
        frame_range: None (default): a sample is N_v x N_f consecutive frames. An integer R:
            the official code's sparse sampling (``INPUT.SAMPLING_FRAME_RANGE``, 6 online and
            12 semi-online on OVIS): a reference frame and N_v x N_f - 1 frames drawn with
            replacement within R frames of it, sorted (:mod:`genvis.train.sampler`). Not
            with ``carry_state``, which plays videos frame by frame.
    """

    n_v: int = 5
    n_f: int = 1
    batch_videos: int = 8
    iterations: int = 140000
    lr: float = 5e-5
    weight_decay: float = 0.05
    decay_steps: list[int] = field(default_factory=lambda: [100000])
    decay_gamma: float = 0.1
    warmup_iters: int = 0
    clip_grad_norm: float = 0.01
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    sim_weight: float = 0.5
    assignment: str = "uvla"
    deep_supervision: bool = True
    detector_layers: int = 3
    seed: int = 0
    checkpoint_every: int = 500
    carry_state: bool = False
    frame_range: int | None = None

    def validate(self, source: str = "train") -> "TrainConfig":
        """Check every field; return self. Raises ConfigError naming ``source.field``."""
        for name in ("n_v", "n_f", "batch_videos", "iterations", "num_points", "detector_layers",
                     "checkpoint_every"):
            check_int(f"{source}.{name}", getattr(self, name), 1)
        check_int(f"{source}.warmup_iters", self.warmup_iters, 0)
        check_int(f"{source}.seed", self.seed, 0)
        for name in ("lr", "weight_decay", "decay_gamma", "clip_grad_norm", "class_weight",
                     "mask_weight", "dice_weight", "no_object_weight", "sim_weight"):
            check_float(f"{source}.{name}", getattr(self, name))
        check_float(f"{source}.oversample_ratio", self.oversample_ratio, 1.0)
        if not 0.0 <= float(self.importance_sample_ratio) <= 1.0:
            raise ConfigError(f"{source}.importance_sample_ratio", "must be in [0, 1]")
        if not isinstance(self.decay_steps, list):
            raise ConfigError(f"{source}.decay_steps", "must be a list of iterations")
        for s in self.decay_steps:
            check_int(f"{source}.decay_steps", s, 1)
        if self.assignment not in ASSIGNMENTS:
            raise ConfigError(f"{source}.assignment", f"must be one of {ASSIGNMENTS}, got {self.assignment!r}")
        if not isinstance(self.carry_state, bool):
            raise ConfigError(f"{source}.carry_state", f"must be true or false, got {self.carry_state!r}")
        if self.carry_state and self.assignment != "uvla":
            raise ConfigError(f"{source}.carry_state", "carrying the state across iterations needs "
                              f"assignment: uvla (got {self.assignment!r})")
        if self.frame_range is not None:
            check_int(f"{source}.frame_range", self.frame_range, 1)
            if self.carry_state:
                raise ConfigError(f"{source}.frame_range", "sparse sampling cannot be combined with "
                                  "carry_state (which plays each video's consecutive frames)")
        return self


@dataclass
class ExperimentConfig:
    """One stage-two experiment: model overrides, training and inference settings.

    Attributes:
        name, description: free text.
        model: overrides of :class:`GenVISConfig` fields except the derived ones
            (``num_classes``, ``hidden_dim``, ``num_frame_queries``, ``mask_feature_dim``).
        train: :class:`TrainConfig`. inference: :class:`InferenceConfig`.
        idol: None (GenVIS), or the settings of an IDOL experiment
            (:class:`genvis.train.idol_config.IDOLSettings`): ``genvis train`` then trains
            the IDOL embedding head and ``inference.association`` must be "idol".
    """

    name: str = "genvis"
    description: str = ""
    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    idol: Any = None

    def validate(self, source: str = "experiment") -> "ExperimentConfig":
        """Check the sections; return self. Raises ConfigError naming ``source:key``."""
        known = {f.name for f in fields(GenVISConfig)} - set(DERIVED_MODEL_FIELDS)
        bad = sorted(set(self.model) - known)
        if bad:
            raise ConfigError(f"{source}: model", f"unknown or derived key(s) {bad}; "
                              f"settable: {sorted(known)}")
        self.model_config(1, 8 * int(self.model.get("num_heads", 8)), 1, source=source)
        self.train.validate(f"{source}: train")
        self.inference.validate(f"{source}: inference")
        if (self.idol is None) != (self.inference.association != "idol"):
            raise ConfigError(f"{source}: inference.association", "an experiment with an 'idol' section "
                              "needs association: idol, and association idol needs an 'idol' section")
        if self.idol is not None:
            self.idol.validate(f"{source}: idol")
        return self

    def model_config(self, num_classes: int, hidden_dim: int, num_frame_queries: int,
                     mask_feature_dim: int | None = None, source: str = "experiment") -> GenVISConfig:
        """The full GenVISConfig for a cache with these sizes (K, C, Q_f, C_m)."""
        cfg = GenVISConfig(num_classes=num_classes, hidden_dim=hidden_dim,
                           num_frame_queries=num_frame_queries, mask_feature_dim=mask_feature_dim,
                           **self.model)
        cfg.sim_embed = bool(cfg.sim_embed)
        return cfg.validate(f"{source}: model")

    @property
    def n_f_eval(self) -> int:
        """N_f^eval: the inference setting, else the training N_f."""
        return self.inference.n_f_eval or self.train.n_f

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML-able)."""
        out = {"name": self.name, "description": self.description, "model": dict(self.model),
               "train": asdict(self.train), "inference": asdict(self.inference)}
        if self.idol is not None:
            out["idol"] = self.idol.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "experiment") -> "ExperimentConfig":
        """Build and validate from a mapping. Raises ConfigError naming ``source``."""
        if not isinstance(data, Mapping):
            raise ConfigError(source, "experiment config must be a mapping")
        unknown = sorted(set(data) - {"name", "description", "model", "train", "inference", "idol"})
        if unknown:
            raise ConfigError(source, f"unknown top-level key(s) {unknown}")
        model = data.get("model") or {}
        if not isinstance(model, Mapping):
            raise ConfigError(f"{source}: model", "must be a mapping")
        cfg = cls(name=str(data.get("name", "genvis")), description=str(data.get("description", "")),
                  model=dict(model),
                  train=dataclass_from_mapping(TrainConfig, data.get("train"), f"{source}: train"),
                  inference=dataclass_from_mapping(InferenceConfig, data.get("inference"), f"{source}: inference"))
        if "idol" in data:
            from genvis.train.idol_config import IDOLSettings

            cfg.idol = IDOLSettings.from_dict(data["idol"], f"{source}: idol")
        return cfg.validate(source)


def load_experiment(path: str | os.PathLike) -> ExperimentConfig:
    """Read and validate an experiment YAML.

    Raises:
        InputError: the file is missing or not valid YAML.
        ConfigError: unknown keys or invalid values (names the file and key).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "experiment config not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(path, f"not valid YAML: {exc}") from None
    return ExperimentConfig.from_dict(data or {}, source=str(path))
