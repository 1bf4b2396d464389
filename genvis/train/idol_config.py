"""Settings of an IDOL experiment: the ``idol:`` section of an experiment YAML.

An experiment YAML with an ``idol`` section trains the IDOL embedding head
(:mod:`genvis.model.idol_head`) instead of the GenVIS video modules; its ``train`` section
(TrainConfig) still gives the optimiser, schedule, batch (``batch_videos`` = key/reference
pairs per iteration), iterations, seed and checkpointing, and ``inference.top_k`` the
tracks kept per video. ``inference.association`` must be ``idol``. Unknown keys are refused.

Defaults follow IDOL (ECCV 2022) and its supplement where they say something, its public
tracker otherwise (thresholds); each field says which.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from genvis.errors import ConfigError
from genvis.utils.checks import dataclass_from_mapping

LOSSES = ("contrastive", "id_head")
SELECTIONS = ("ot", "iou", "hungarian")
MATCHINGS = ("embeddings", "multi_cue")


@dataclass
class IDOLSettings:
    """The ``idol:`` section.

    Attributes:
        embed_dim: D of the embeddings (None: the cache's C). mlp_layers: linear layers of the head.
        loss: "contrastive" (IDOL Sec. 3.1: multi-positive contrastive + auxiliary cosine
            loss) or "id_head" (MaskTrack R-CNN style cross-entropy; Table 1 row 1).
        selection: positives/negatives of the reference frame: "ot" (supplement Sec. 4),
            "iou" (IoU > iou_positive / < iou_negative; Table 1 rows without OT) or
            "hungarian" (one-to-one; used by ``id_head``).
        frame_range: the reference frame is drawn within this many frames of the key frame.
        embed_weight, aux_weight: weights of the contrastive and the auxiliary loss.
        ot_top_pos, ot_top_neg: IoU summing windows of OT (None: scaled from IDOL's 10 / 100
            of 300 queries, :func:`genvis.train.idol_selection.ot_constants`).
        iou_positive, iou_negative: thresholds of "iou" selection (0.7 / 0.3, supplement Sec. 4).
        matching: inference association: "embeddings" (bi-softmax of embeddings, IDOL Sec.
            3.2) or "multi_cue" (embedding + mask IoU + class + score cues, MaskTrack R-CNN
            style; Table 1 rows 1-2).
        temporal: temporally weighted memory (IDOL Sec. 3.2; supplement Table 1 last row).
        tau, memory_frames: tau and T of the temporally weighted softmax (supplement: 0.5, 3).
        momentum: without temporal weighting, a track's memory embedding is updated as
            ``(1 - momentum) m + momentum e`` (public IDOL tracker: 0.5).
        score_threshold: detections below this class score are ignored at inference.
        match_threshold: bi-softmax score needed to join a track (public tracker: 0.5).
        new_track_threshold: a detection matched to no track starts one above this score (0.5).
        init_threshold: the same in the first frame with any detection (0.2).
        nms_threshold: duplicate removal: a detection whose mask IoU with a higher-scoring
            one exceeds this is dropped before matching (public tracker: 0.3 for detections
            above its object score 0.1, which every candidate here is).
        max_absence: a track not matched for this many frames leaves the memory.
        cue_iou, cue_class: weights of the mask-IoU and same-class cues of "multi_cue"
            matching (added to the embedding log-probability; MaskTrack R-CNN's score cue is
            the same for every option of a detection, so it cannot change the choice).
    """

    embed_dim: int | None = None
    mlp_layers: int = 3
    loss: str = "contrastive"
    selection: str = "ot"
    frame_range: int = 3
    embed_weight: float = 1.0
    aux_weight: float = 1.0
    ot_top_pos: int | None = None
    ot_top_neg: int | None = None
    iou_positive: float = 0.7
    iou_negative: float = 0.3
    matching: str = "embeddings"
    temporal: bool = True
    tau: float = 0.5
    memory_frames: int = 3
    momentum: float = 0.5
    score_threshold: float = 0.1
    match_threshold: float = 0.5
    new_track_threshold: float = 0.5
    init_threshold: float = 0.2
    nms_threshold: float = 0.3
    max_absence: int = 30
    cue_iou: float = 1.0
    cue_class: float = 1.0

    def validate(self, source: str = "idol") -> "IDOLSettings":
        """Check every field; returns self. Raises ConfigError naming ``source.field``."""
        def _int(name: str, lo: int, optional: bool = False) -> None:
            v = getattr(self, name)
            if optional and v is None:
                return
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ConfigError(f"{source}.{name}", f"must be an integer >= {lo}, got {v!r}")

        def _num(name: str, lo: float, hi: float | None = None) -> None:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
                rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
                raise ConfigError(f"{source}.{name}", f"must be a number {rng}, got {v!r}")

        _int("embed_dim", 1, optional=True)
        for name in ("mlp_layers", "frame_range", "memory_frames", "max_absence"):
            _int(name, 1)
        _int("ot_top_pos", 1, optional=True)
        _int("ot_top_neg", 1, optional=True)
        for name, allowed in (("loss", LOSSES), ("selection", SELECTIONS), ("matching", MATCHINGS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{source}.{name}", f"must be one of {allowed}, got {getattr(self, name)!r}")
        if not isinstance(self.temporal, bool):
            raise ConfigError(f"{source}.temporal", f"must be true or false, got {self.temporal!r}")
        for name in ("embed_weight", "aux_weight", "tau", "cue_iou", "cue_class"):
            _num(name, 0.0)
        for name in ("iou_positive", "iou_negative", "momentum", "score_threshold", "match_threshold",
                     "new_track_threshold", "init_threshold", "nms_threshold"):
            _num(name, 0.0, 1.0)
        if self.iou_negative > self.iou_positive:
            raise ConfigError(f"{source}.iou_negative", f"({self.iou_negative}) must not exceed "
                              f"iou_positive ({self.iou_positive})")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML-able)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "idol") -> "IDOLSettings":
        """Build and validate from a mapping; unknown keys are a ConfigError."""
        return dataclass_from_mapping(cls, data, source).validate(source)
