"""Stage-two run settings: the one place that resolves N_f^eval, top-k, association and iterations.

Settings come from four layers, later ones winning:

1. the experiment YAML (``config/experiments/*.yaml``; stored in MODEL.pt by ``genvis train``),
   or, for official GenVIS weights that carry no experiment, :data:`OFFICIAL_INFERENCE`
   (the paper's online inference: N_f^eval = 1, top-k 20, queries propagated);
2. the workflow's ``config/config.yaml`` entries (``experiments.<name>.n_f_eval`` /
   ``.iterations``, ``datasets.<name>.train_iterations``): :func:`workflow_overrides`;
3. the workflow's wildcards (``nf<n>/``, ``<association>/`` in output paths), passed on as
   command-line options (:func:`cli_flags`);
4. the command line (``genvis infer`` / ``genvis demo`` / ``genvis train`` options):
   :func:`resolve_inference`, :func:`apply_training_overrides`.

Every resolved value is validated once, by the config dataclasses
(:meth:`genvis.infer.config.InferenceConfig.validate`, :meth:`ExperimentConfig.validate
<genvis.train.config.ExperimentConfig.validate>`), with errors naming where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from genvis.errors import ConfigError
from genvis.infer.config import ASSOCIATIONS, InferenceConfig
from genvis.train.config import ExperimentConfig

#: inference settings for weights without an experiment (official GenVIS .pth): the paper's
#: online setting (N_f^eval = 1, top-k 20 as for OVIS, instance queries propagated)
OFFICIAL_INFERENCE = InferenceConfig(n_f_eval=1, top_k=20, association="propagate")

#: top-k predictions per video of the official GenVIS configs (``TEST.DETECTIONS_PER_IMAGE``),
#: by the checkpoint's class count: 20 on OVIS (25 classes), 10 on YouTube-VIS 2019/2021 (40)
OFFICIAL_TOP_K = {25: 20, 40: 10}


def official_inference(num_classes: int | None = None) -> InferenceConfig:
    """Inference settings of official GenVIS weights (no experiment stored with them).

    Args:
        num_classes: the checkpoint's class count; 40 (YouTube-VIS) gives the official top-k
            10, 25 (OVIS) and anything else 20 (official configs' ``TEST.DETECTIONS_PER_IMAGE``).

    Returns:
        :class:`InferenceConfig` with N_f^eval 1 (online; pass ``--n-f-eval 3`` for a
        semi-online checkpoint: the clip length is not stored in the weights) and association
        ``propagate``.
    """
    top_k = OFFICIAL_TOP_K.get(int(num_classes), OFFICIAL_INFERENCE.top_k) if num_classes else OFFICIAL_INFERENCE.top_k
    return InferenceConfig(OFFICIAL_INFERENCE.n_f_eval, top_k, OFFICIAL_INFERENCE.association)


@dataclass(frozen=True)
class InferenceSettings:
    """Resolved inference settings of one run.

    Attributes:
        n_f_eval: N_f^eval >= 1, frames per clip at test time (paper Sec. 3, Table 6).
        top_k: predictions kept per video (>= 1), top-k over (query, class).
        association: one of :data:`genvis.infer.config.ASSOCIATIONS`.
    """

    n_f_eval: int
    top_k: int
    association: str


def resolve_inference(experiment: Mapping[str, Any] | None, n_f_eval: int | None = None,
                      top_k: int | None = None, association: str | None = None,
                      source: str = "model", num_classes: int | None = None) -> InferenceSettings:
    """Inference settings of a model: command-line values over its experiment's.

    Args:
        experiment: the experiment dict stored in MODEL.pt (``meta["experiment"]``), or None
            for official weights (then :data:`OFFICIAL_INFERENCE`).
        n_f_eval, top_k, association: command-line overrides (None: keep).
        source: the model file, named in errors about its stored experiment.
        num_classes: the model's class count, for official weights (:func:`official_inference`:
            the official top-k differs between OVIS and YouTube-VIS).

    Returns:
        :class:`InferenceSettings`.

    Raises:
        ConfigError: the stored experiment is invalid, or an override is (``--n-f-eval`` /
            ``--top-k`` < 1, an unknown association), naming the option.
    """
    if experiment:
        exp = ExperimentConfig.from_dict(experiment, source=f"{source}: experiment")
        base = InferenceConfig(exp.n_f_eval, exp.inference.top_k, exp.inference.association)
    else:
        base = official_inference(num_classes)
    chosen = InferenceConfig(base.n_f_eval if n_f_eval is None else n_f_eval,
                             base.top_k if top_k is None else top_k,
                             base.association if association is None else association)
    chosen.validate("command line", associations=ASSOCIATIONS,
                    names={"n_f_eval": "--n-f-eval", "top_k": "--top-k", "association": "--association"})
    return InferenceSettings(int(chosen.n_f_eval), int(chosen.top_k), chosen.association)


def resolve_idol(experiment: Mapping[str, Any], matching: str | None = None, temporal: str | bool | None = None,
                 top_k: int | None = None, source: str = "model") -> tuple[Any, int]:
    """Inference settings of an IDOL model: command-line values over its experiment's.

    Args:
        experiment: the experiment dict stored in the IDOL MODEL.pt (``meta["experiment"]``),
            with its ``idol:`` section.
        matching: ``--idol-matching`` (overrides ``idol.matching``; None: keep).
        temporal: ``--idol-temporal`` "on" / "off" (or a bool) over ``idol.temporal``.
        top_k: ``--top-k`` over ``inference.top_k`` (None: keep).
        source: the model file, named in errors.

    Returns:
        (:class:`genvis.train.idol_config.IDOLSettings`, top-k).

    Raises:
        ConfigError: an invalid stored experiment or IDOL section, an unknown matching, or
            ``--top-k`` < 1, naming the option or the model file.
    """
    exp = ExperimentConfig.from_dict(dict(experiment), source=f"{source}: experiment")
    settings = exp.idol
    if matching is not None:
        settings.matching = matching
    if temporal is not None:
        settings.temporal = temporal in ("on", True)
    settings.validate(f"{source}: idol")
    k = exp.inference.top_k if top_k is None else top_k
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError("--top-k", f"must be an integer >= 1, got {k!r}")
    return settings, int(k)


def apply_training_overrides(cfg: ExperimentConfig, iterations: int | None = None,
                             seed: int | None = None) -> ExperimentConfig:
    """Apply ``genvis train --iterations / --seed`` to an experiment (in place) and validate it.

    Args:
        cfg: the experiment.
        iterations: overrides ``train.iterations``; ``train.decay_steps`` are scaled by the
            same factor (rounded, at least 1), so a shorter run keeps the schedule's shape
            (paper: OVIS decays at 100k of 140k iterations).
        seed: overrides ``train.seed`` (initialisation, clip and point sampling).

    Returns:
        ``cfg``.

    Raises:
        ConfigError: ``--iterations`` < 1, ``--seed`` not an integer >= 0, or an invalid experiment.
    """
    tc = cfg.train
    if iterations is not None:
        if iterations < 1:
            raise ConfigError("--iterations", f"must be >= 1, got {iterations}")
        if int(iterations) != tc.iterations:
            tc.decay_steps = [max(1, round(step * int(iterations) / tc.iterations)) for step in tc.decay_steps]
        tc.iterations = int(iterations)
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ConfigError("--seed", f"must be an integer >= 0, got {seed!r}")
        tc.seed = seed
    return cfg.validate()


def workflow_overrides(experiment_entry: Mapping[str, Any],
                       dataset_entry: Mapping[str, Any] | None = None) -> dict[str, int | None]:
    """The settings ``config/config.yaml`` sets for one experiment on one dataset.

    Args:
        experiment_entry: ``experiments.<name>`` (``n_f_eval``, ``iterations``; validated by
            the workflow schema).
        dataset_entry: ``datasets.<name>`` (``train_iterations`` wins over the experiment's
            ``iterations``, e.g. a GPU overlay's longer runs).

    Returns:
        ``{"n_f_eval": int | None, "iterations": int | None}`` (None: the experiment YAML's).
    """
    iterations = (dataset_entry or {}).get("train_iterations") or experiment_entry.get("iterations")
    n_f_eval = experiment_entry.get("n_f_eval")
    return {"n_f_eval": int(n_f_eval) if n_f_eval else None,
            "iterations": int(iterations) if iterations else None}


def cli_flags(**values: Any) -> str:
    """Command-line options for the values that are set, in the order given:
    ``cli_flags(n_f_eval=5, association=None)`` -> ``" --n-f-eval 5"``."""
    return "".join(f" --{name.replace('_', '-')} {value}" for name, value in values.items() if value is not None)
