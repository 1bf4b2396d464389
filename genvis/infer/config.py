"""Inference settings of an experiment (the ``inference:`` section of its YAML).

N_f^eval, top-k and the association between clips (paper Sec. 3, appendix A.2 / Table 7);
read by :mod:`genvis.infer.inference` and the ``infer`` / ``demo`` commands.
"""

from __future__ import annotations

from dataclasses import dataclass

from genvis.errors import ConfigError
from genvis.utils.checks import check_int

#: associations :func:`genvis.infer.inference.clip_predictions` knows
ASSOCIATIONS = ("propagate", "minvis", "oracle")
#: associations an experiment may configure (oracle needs the ground truth: a diagnostic;
#: idol only with an ``idol`` section, :mod:`genvis.infer.idol`)
EXPERIMENT_ASSOCIATIONS = ("propagate", "minvis", "idol")


@dataclass
class InferenceConfig:
    """Inference settings.

    Attributes:
        n_f_eval: N_f^eval, frames per clip at test time (None: the training N_f).
        top_k: predictions kept per video, top-k over (query, class) (OVIS: 20).
        association: "propagate" (GenVIS: queries propagated clip to clip) or "minvis"
            (each clip decoded from fresh queries, clips associated by cosine similarity of
            instance prototypes + Hungarian; the N_v = 1 baseline of Table 4), or "idol"
            (frame-by-frame IDOL association of the detector's detections; only with an
            ``idol`` section, :mod:`genvis.infer.idol`).
    """

    n_f_eval: int | None = None
    top_k: int = 20
    association: str = "propagate"

    def validate(self, source: str = "inference", associations: tuple[str, ...] = EXPERIMENT_ASSOCIATIONS,
                 names: dict[str, str] | None = None) -> "InferenceConfig":
        """Check every field; return self.

        Args:
            source: where the values come from (``source.field`` in errors).
            associations: the allowed associations (an experiment: :data:`EXPERIMENT_ASSOCIATIONS`;
                the command line also allows ``oracle``).
            names: field -> the name to give in errors instead of ``source.field`` (e.g.
                ``{"top_k": "--top-k"}``).

        Raises:
            ConfigError: naming the field.
        """
        def name(f: str) -> str:
            return (names or {}).get(f, f"{source}.{f}")

        if self.n_f_eval is not None:
            check_int(name("n_f_eval"), self.n_f_eval, 1)
        check_int(name("top_k"), self.top_k, 1)
        if self.association not in associations:
            raise ConfigError(name("association"), f"must be one of {associations}, got {self.association!r}")
        return self
