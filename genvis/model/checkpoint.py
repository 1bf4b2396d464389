"""Stage-two model files: genvis checkpoints and official GenVIS weights.

* :func:`save_model` / :func:`load_model`: the ``MODEL.pt`` written by ``genvis train``
  (model config, experiment config, weights, cache provenance), loaded with
  ``torch.load(weights_only=True)``.
* :func:`load_official_genvis`: a :class:`GenVIS` from the ``vita_module.*`` weights of an
  official GenVIS checkpoint (detectron2 ``.pth``: ``{"model": state_dict, ...}``). In the
  official model every stage-two tensor lives under ``vita_module``: the object encoder
  (``input_proj_dec``, ``enc_self_attn``, ``enc_ffn``), the object decoder
  (``transformer_*_layers``, ``decoder_norm``, ``query_feat``, ``query_embed``, ``fq_pos``),
  the heads (``class_embed``, ``mask_embed``, ``sim_embed_frame``, ``sim_embed_clip``), the
  1x1 conv on the raw mask features (``vita_mask_features``) and the memory
  (``pre_query_embed_k/v``, ``pre_memory_embed_k/v``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from genvis.errors import ConfigError, InputError
from genvis.model.config import GenVISConfig
from genvis.model.genvis import GenVIS
from genvis.utils.io import atomic_path
from genvis.utils.torch_io import load_weights_only

FORMAT = "genvis-stage2"
OFFICIAL_PREFIX = "vita_module."

#: (official name prefix under vita_module., genvis name prefix); {i} = layer index
_NAME_MAP: list[tuple[str, str]] = [
    ("input_proj_dec.", "encoder.input_proj."),
    ("enc_self_attn.{i}.", "encoder.self_attn.{i}."),
    ("enc_ffn.{i}.", "encoder.ffn.{i}."),
    ("transformer_cross_attention_layers.{i}.", "decoder.cross_attn.{i}."),
    ("transformer_self_attention_layers.{i}.", "decoder.self_attn.{i}."),
    ("transformer_ffn_layers.{i}.", "decoder.ffn.{i}."),
    ("decoder_norm.", "decoder.norm."),
    ("query_feat.", "decoder.query_feat."),
    ("query_embed.", "decoder.query_embed."),
    ("fq_pos.", "decoder.fq_pos."),
    ("class_embed.", "heads.class_embed."),
    ("mask_embed.", "heads.mask_embed."),
    ("vita_mask_features.", "heads.mask_features."),
    ("sim_embed_frame.", "heads.sim_embed_frame."),
    ("sim_embed_clip.", "heads.sim_embed_clip."),
    ("pre_query_embed_k.", "memory.query_k."),
    ("pre_query_embed_v.", "memory.query_v."),
    ("pre_memory_embed_k.", "memory.memory_k."),
    ("pre_memory_embed_v.", "memory.memory_v."),
]


def _convert(name: str, src_side: int) -> str | None:
    for pair in _NAME_MAP:
        src, dst = pair[src_side], pair[1 - src_side]
        if "{i}" in src:
            pattern = "^" + re.escape(src).replace(r"\{i\}", r"(\d+)")
            m = re.match(pattern, name)
            if m:
                return dst.replace("{i}", m.group(1)) + name[m.end():]
        elif name.startswith(src):
            return dst + name[len(src):]
    return None


def official_to_genvis_name(name: str) -> str | None:
    """genvis parameter name of an official name without the ``vita_module.`` prefix (None if unknown)."""
    return _convert(name, 0)


def genvis_to_official_name(name: str) -> str | None:
    """Official name (without ``vita_module.``) of a genvis parameter name (None if unknown)."""
    return _convert(name, 1)


def to_official_state_dict(model: GenVIS) -> dict[str, torch.Tensor]:
    """The model's weights under the official ``vita_module.*`` names."""
    out = {}
    for k, v in model.state_dict().items():
        name = genvis_to_official_name(k)
        if name is None:
            raise ValueError(f"no official name for parameter {k}")
        out[OFFICIAL_PREFIX + name] = v
    return out


def _count_layers(keys, prefix: str) -> int:
    idx = {int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return (max(idx) + 1) if idx else 0


def load_official_genvis(path_or_state_dict: str | os.PathLike | Mapping[str, Any],
                         num_classes: int | None = None, hidden_dim: int | None = None,
                         num_heads: int = 8) -> GenVIS:
    """Build a :class:`GenVIS` from official GenVIS weights.

    Sizes (C, N_q, Q_f, K, FFN width, encoder/decoder layers, memory, mask-feature
    channels) are read from the tensors; the number of attention heads is not stored in
    the weights (official default 8).

    Args:
        path_or_state_dict: a ``.pth`` file (``{"model": state_dict}`` or a bare state
            dict) or a state dict.
        num_classes, hidden_dim: if given, the checkpoint must have these sizes.
        num_heads: attention heads.

    Returns:
        the model in eval mode.

    Raises:
        InputError: unreadable file; no ``vita_module.*`` weights; missing keys; official
            tensors that have no genvis counterpart (listed).
        ConfigError: the checkpoint's class count or hidden size differs from the requested.
    """
    source = "state dict"
    if isinstance(path_or_state_dict, Mapping):
        ckpt = path_or_state_dict
    else:
        source = str(path_or_state_dict)
        path = Path(path_or_state_dict)
        if not path.is_file():
            raise InputError(path, "checkpoint not found")
        ckpt = load_weights_only(path, "checkpoint")
    if "model" in ckpt and isinstance(ckpt["model"], Mapping):
        ckpt = ckpt["model"]
    sd = {k[len(OFFICIAL_PREFIX):]: v for k, v in ckpt.items() if k.startswith(OFFICIAL_PREFIX)}
    if not sd:
        raise InputError(source, "no 'vita_module.*' weights: not a VITA/GenVIS checkpoint")
    for key in ("query_feat.weight", "class_embed.weight", "fq_pos.weight", "vita_mask_features.weight",
                "transformer_ffn_layers.0.linear1.weight"):
        if key not in sd:
            raise InputError(source, f"missing official tensor vita_module.{key}")
    n_q, c = sd["query_feat.weight"].shape
    k = sd["class_embed.weight"].shape[0] - 1
    if num_classes is not None and num_classes != k:
        raise ConfigError("num_classes", f"{source} has {k} classes (class_embed {k}+1 outputs), "
                          f"expected {num_classes}")
    if hidden_dim is not None and hidden_dim != c:
        raise ConfigError("hidden_dim", f"{source} has hidden size {c}, expected {hidden_dim}")
    has_memory = "pre_memory_embed_k.weight" in sd
    cfg = GenVISConfig(
        num_classes=k, hidden_dim=c, num_frame_queries=sd["fq_pos.weight"].shape[0],
        mask_feature_dim=sd["vita_mask_features.weight"].shape[1], num_queries=n_q,
        num_heads=num_heads, dim_feedforward=sd["transformer_ffn_layers.0.linear1.weight"].shape[0],
        enc_layers=_count_layers(sd, "enc_self_attn."),
        dec_layers=_count_layers(sd, "transformer_cross_attention_layers."),
        enc_window=0, memory="index" if has_memory else "none",
        sim_embed="sim_embed_clip.weight" in sd)
    model = GenVIS(cfg)
    mapped, unmapped = {}, []
    for name, tensor in sd.items():
        ours = official_to_genvis_name(name)
        if ours is None:
            unmapped.append(OFFICIAL_PREFIX + name)
        else:
            mapped[ours] = tensor
    own = model.state_dict()
    extra = [OFFICIAL_PREFIX + genvis_to_official_name(n) for n in mapped if n not in own]
    if unmapped or extra:
        bad = unmapped + extra
        raise InputError(source, f"{len(bad)} official tensor(s) have no genvis counterpart: {bad[:10]}")
    missing = [OFFICIAL_PREFIX + genvis_to_official_name(n) for n in own if n not in mapped]
    if missing:
        raise InputError(source, f"missing {len(missing)} tensor(s): {missing[:10]}")
    for name, tensor in mapped.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise InputError(source, f"vita_module.{genvis_to_official_name(name)} has shape "
                             f"{tuple(tensor.shape)}, expected {tuple(own[name].shape)}")
    model.load_state_dict(mapped)
    return model.eval()


def save_model(path: str | os.PathLike, model: GenVIS, experiment: dict[str, Any],
               extra: dict[str, Any] | None = None) -> None:
    """Write ``MODEL.pt`` atomically: format tag, model config, experiment, weights, extras."""
    payload = {"format": FORMAT, "version": 1, "model_config": model.cfg.to_dict(),
               "experiment": experiment, "state_dict": model.state_dict()}
    payload.update(extra or {})
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model(path: str | os.PathLike) -> tuple[GenVIS, dict[str, Any]]:
    """Load a model written by :func:`save_model` (or ``genvis train``).

    Returns:
        (model in eval mode, the whole payload without the weights).

    Raises:
        InputError: missing or unreadable file, or not a genvis stage-two model.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "model file not found; run `genvis train` first")
    payload = load_weights_only(path, "model file")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(path, f"not a genvis stage-two model (format tag {FORMAT!r} missing)")
    cfg = GenVISConfig.from_dict(payload["model_config"], source=f"{path}: model_config")
    model = GenVIS(cfg)
    model.load_state_dict(payload["state_dict"])
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model.eval(), meta


def load_any_model(path: str | os.PathLike) -> tuple[GenVIS, dict[str, Any]]:
    """Load a genvis MODEL.pt, or else an official GenVIS ``.pth`` (``vita_module.*`` weights).

    Returns:
        (model in eval mode, meta); for an official checkpoint meta is
        ``{"official": True, "experiment": None}``.

    Raises:
        InputError: missing/unreadable file, or neither format.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "model file not found")
    payload = load_weights_only(path, "model file")
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        return load_model(path)
    if isinstance(payload, Mapping):
        model = load_official_genvis(payload)
        return model, {"official": True, "experiment": None}
    raise InputError(path, "neither a genvis stage-two model nor an official GenVIS checkpoint")


#: genvis head parameter <- transformers Mask2Former parameter of a genvis FrameDetector
_DETECTOR_HEADS = {
    "heads.class_embed.weight": "m2f.class_predictor.weight",
    "heads.class_embed.bias": "m2f.class_predictor.bias",
    "heads.mask_features.weight": "m2f.model.pixel_level_module.decoder.mask_projection.weight",
    "heads.mask_features.bias": "m2f.model.pixel_level_module.decoder.mask_projection.bias",
    **{f"heads.mask_embed.layers.{i}.{p}":
       f"m2f.model.transformer_module.decoder.mask_predictor.mask_embedder.{i}.0.{p}"
       for i in range(3) for p in ("weight", "bias")},
}


def init_heads_from_detector(model: GenVIS, detector_path: str | os.PathLike) -> list[str]:
    """Initialise the class head, the mask-embedding MLP and the mask-feature 1x1 conv from the
    frame detector's own heads (Mask2Former ``class_predictor``, ``mask_embedder``,
    ``mask_projection``).

    Instance prototypes are decoder-normed like the detector's frame queries, so the
    detector's heads give usable classes and masks from the first iteration; the official
    GenVIS likewise starts from trained heads (VITA weights), which a from-scratch run on a
    small benchmark lacks.

    Returns:
        the genvis parameter names that were set.

    Raises:
        InputError: unreadable detector file.
        ConfigError: the detector's class count or hidden size differs from the model's.
    """
    from genvis.detector.model import FrameDetector

    det = FrameDetector.load(detector_path)
    sd = det.state_dict()
    own = model.state_dict()
    if det.cfg.num_classes != model.cfg.num_classes:
        raise ConfigError("--init-heads", f"detector {detector_path} has {det.cfg.num_classes} classes, "
                          f"the model {model.cfg.num_classes}")
    if det.cfg.hidden_dim != model.cfg.hidden_dim:
        raise ConfigError("--init-heads", f"detector {detector_path} has hidden size {det.cfg.hidden_dim}, "
                          f"the model {model.cfg.hidden_dim}")
    done = []
    with torch.no_grad():
        for ours, theirs in _DETECTOR_HEADS.items():
            if theirs not in sd or tuple(sd[theirs].shape) != tuple(own[ours].shape):
                raise InputError(detector_path, f"detector tensor {theirs} missing or of another shape")
            own[ours].copy_(sd[theirs])
            done.append(ours)
    return done


def init_from_model(model: GenVIS, source: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Initialise a stage-two model from another trained stage-two model (fine-tuning).

    The paper's protocol (GenVIS appendix A.1): GenVIS starts from the weights of a trained
    VITA model (N_v = 1, per-clip assignment) and fine-tunes the video modules with its own
    training strategy. Every parameter present in both models with the same name and shape
    is copied; parameters only the new model has (e.g. the memory projections of IPM when
    the source had no memory) keep their fresh initialisation.

    Args:
        model: the new GenVIS (its architecture comes from its own experiment YAML).
        source: a genvis MODEL.pt or an official GenVIS ``.pth``.

    Returns:
        (names copied, names left at their initialisation).

    Raises:
        InputError: unreadable file / not a stage-two model.
        ConfigError: different class count, hidden size, frame-query count or number of
            instance queries (N_q), or a parameter of the same name with another shape.
    """
    src, _ = load_any_model(source)
    for field in ("num_classes", "hidden_dim", "num_queries"):
        a, b = getattr(src.cfg, field, None), getattr(model.cfg, field, None)
        if a != b:
            raise ConfigError("--init-model", f"{source} has {field}={a}, this experiment {b}")
    theirs = src.state_dict()
    own = model.state_dict()
    copied, fresh = [], []
    with torch.no_grad():
        for name, tensor in own.items():
            if name not in theirs:
                fresh.append(name)
                continue
            if tuple(theirs[name].shape) != tuple(tensor.shape):
                raise ConfigError("--init-model", f"{source}: parameter {name} has shape "
                                  f"{tuple(theirs[name].shape)}, this experiment {tuple(tensor.shape)}")
            tensor.copy_(theirs[name])
            copied.append(name)
    return copied, fresh


def check_model_provenance(model_path: str | os.PathLike, meta: Mapping[str, Any],
                           actual: Mapping[str, Any], source: str | os.PathLike,
                           allow_other_detector: bool = False) -> list[str]:
    """Refuse to run a model on features of another detector or resolution than it was trained on.

    ``genvis train`` records the training cache's provenance in ``MODEL.pt`` (meta key
    ``provenance``); the features a model reads must come from the same detector weights
    and input resolution (the cache contract, docs/ARCHITECTURE.md), or its outputs are meaningless.

    Args:
        model_path: the model file (named in the error).
        meta: the model's meta dict (:func:`load_model` / :func:`load_any_model`).
        actual: provenance of the features now: ``CacheReader.provenance`` or
            ``DetectorClipSource.provenance``.
        source: the cache or detector file (named in the error).
        allow_other_detector: return the differences instead of raising
            (``--allow-other-detector``).

    Returns:
        the differing keys as ``"key: model=... now=..."`` items (empty when they match or
        when the model records no detector: official weights, in-memory training).

    Raises:
        InputError: the provenances differ and ``allow_other_detector`` is False (names the
            model, the source and every differing key).
    """
    from genvis.cache.layout import features_differences

    diffs = features_differences(meta.get("provenance"), actual) or []
    if diffs and not allow_other_detector:
        raise InputError(model_path, f"was trained on features of another detector or resolution "
                         f"than {source} (" + "; ".join(diffs) + "); pass --allow-other-detector "
                         "to run it anyway")
    return diffs
