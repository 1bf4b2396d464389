"""Import the detector part of official Mask2Former / VITA / GenVIS checkpoints.

Two file formats are read, never by executing pickled code:

* detectron2 ``.pkl`` (official Mask2Former model zoo): a pickled dict with ``"model"`` ->
  {name: numpy array}. Read with :class:`RestrictedUnpickler`, which admits only numpy
  arrays / dtypes / scalars and plain containers; any other global (e.g. ``os.system`` in
  a ``__reduce__``) is refused.
* PyTorch ``.pth`` (VITA / GenVIS): ``{"model": state_dict}``, read with
  ``torch.load(..., weights_only=True)``.

Official names (detectron2 Mask2Former; VITA/GenVIS reuse them for the frame detector):
``backbone.*`` (ResNet ``stem/res2..res5`` or Swin ``patch_embed/layers/norm{i}``),
``sem_seg_head.pixel_decoder.*`` (MSDeformAttn pixel decoder), ``sem_seg_head.predictor.*``
(masked-attention transformer decoder, class and mask-embedding heads). They are mapped onto
:class:`~genvis.detector.model.FrameDetector` (transformers' Mask2Former). Every detector key
must be used and every model weight supplied, otherwise the import fails listing the keys;
keys of other modules (``vita_module.*``, criterion buffers, ...) are ignored and counted.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from genvis.detector.config import DetectorConfig
from genvis.detector.model import FrameDetector
from genvis.errors import InputError
from genvis.utils.torch_io import exception_line, torch_load_problem

DETECTOR_PREFIXES = ("backbone.", "sem_seg_head.")

# --------------------------------------------------------------------------- safe reading

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
}
_NUMPY_DTYPE_MODULES = ("numpy", "numpy.dtypes")


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global (function/class) outside the numpy allow-list."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array/dtype/scalar reconstruction and OrderedDict.

    Raises:
        RefusedGlobal: on any other global (functions, classes, modules).
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS or (module in _NUMPY_DTYPE_MODULES and name.endswith("DType")):
            return super().find_class(module, name)
        raise RefusedGlobal(f"global '{module}.{name}' is not allowed in a checkpoint")


def read_official_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an official checkpoint's weights as {name: float array}, without running code.

    Args:
        path: ``.pkl`` (detectron2, numpy arrays) or ``.pth``/``.pt`` (PyTorch, tensors); a
            top-level ``"model"`` entry is unwrapped.

    Returns:
        dict name -> numpy array (all keys, detector and other modules).

    Raises:
        InputError: missing, truncated or corrupt file; a pickle that needs code other than
            numpy arrays and plain containers (refused, names the global); not a dict of arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint file not found")
    suffix = path.suffix.lower()
    if suffix == ".pkl":
        try:
            with open(path, "rb") as f:
                obj = RestrictedUnpickler(f).load()
        except RefusedGlobal as exc:
            raise InputError(path, f"refused: {exc} (only numpy arrays and plain containers are read "
                             f"from .pkl checkpoints)") from exc
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, MemoryError) as exc:
            raise InputError(path, f"truncated or corrupt checkpoint: {type(exc).__name__}: {exc}") from exc
    elif suffix in (".pth", ".pt"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise InputError(path, f"refused or corrupt checkpoint: {torch_load_problem(exc)}") from None
        except (RuntimeError, EOFError, ValueError, OSError, KeyError) as exc:
            raise InputError(path, f"truncated or corrupt checkpoint ({exception_line(exc)})") from None
    else:
        raise InputError(path, f"unknown checkpoint type {suffix!r}; expected .pkl (detectron2) or .pth")
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj:
        raise InputError(path, "not a checkpoint: expected a dict of weights (optionally under 'model')")
    out = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy()
        if not isinstance(v, np.ndarray):
            raise InputError(path, f"entry {k!r} is a {type(v).__name__}, not an array")
        out[str(k)] = v
    return out


# --------------------------------------------------------------------------- key mapping

_BN = r"(weight|bias|running_mean|running_var)"
BACKBONE = "m2f.model.pixel_level_module.encoder."
PIXEL_DECODER = "m2f.model.pixel_level_module.decoder."
TRANSFORMER = "m2f.model.transformer_module."

# (official regex, expansion into (target key, array transform) pairs); target templates use
# the regex's named groups plus derived indices (see _rule).
Rule = tuple[re.Pattern, Callable[[re.Match], list[tuple[str, Callable[[np.ndarray], np.ndarray]]]]]


def _same(a: np.ndarray) -> np.ndarray:
    return a


def _chunk(i: int) -> Callable[[np.ndarray], np.ndarray]:
    """The i-th third along dim 0 (q, k, v of a fused in_proj / qkv)."""
    def f(a: np.ndarray) -> np.ndarray:
        n = a.shape[0] // 3
        return a[i * n:(i + 1) * n]
    return f


def _rule(pattern: str, *targets: str | tuple[str, Callable]) -> Rule:
    rx = re.compile(pattern + "$")

    def expand(m: re.Match) -> list[tuple[str, Callable]]:
        g = m.groupdict()
        if "stage" in g:  # detectron2 res2..res5 -> transformers stages 0..3
            g["s"] = int(g["stage"]) - 2
        if "conv" in g:  # conv1..conv3 -> layer 0..2
            g["c"] = int(g["conv"]) - 1
        if "norm" in g:  # Swin output norm0..norm3 -> hidden_states_norms.stage1..4
            g["stage1"] = int(g["norm"]) + 1
        out = []
        for t in targets:
            tpl, fn = (t, _same) if isinstance(t, str) else t
            out.append((tpl.format(**g), fn))
        return out

    return rx, expand


def _qkv(prefix: str, names: tuple[str, str, str], suffix: str) -> tuple[tuple[str, Callable], ...]:
    return tuple((f"{prefix}{n}.{suffix}", _chunk(i)) for i, n in enumerate(names))


_RESNET_RULES: list[Rule] = [
    _rule(r"backbone\.stem\.conv1\.weight", BACKBONE + "embedder.embedder.convolution.weight"),
    _rule(r"backbone\.stem\.conv1\.norm\.(?P<p>" + _BN[1:-1] + ")",
          BACKBONE + "embedder.embedder.normalization.{p}"),
    _rule(r"backbone\.res(?P<stage>[2-5])\.(?P<b>\d+)\.shortcut\.weight",
          BACKBONE + "encoder.stages.{s}.layers.{b}.shortcut.convolution.weight"),
    _rule(r"backbone\.res(?P<stage>[2-5])\.(?P<b>\d+)\.shortcut\.norm\.(?P<p>" + _BN[1:-1] + ")",
          BACKBONE + "encoder.stages.{s}.layers.{b}.shortcut.normalization.{p}"),
    _rule(r"backbone\.res(?P<stage>[2-5])\.(?P<b>\d+)\.conv(?P<conv>[1-3])\.weight",
          BACKBONE + "encoder.stages.{s}.layers.{b}.layer.{c}.convolution.weight"),
    _rule(r"backbone\.res(?P<stage>[2-5])\.(?P<b>\d+)\.conv(?P<conv>[1-3])\.norm\.(?P<p>" + _BN[1:-1] + ")",
          BACKBONE + "encoder.stages.{s}.layers.{b}.layer.{c}.normalization.{p}"),
]

_SW = BACKBONE + "swin."
_SWB = _SW + "encoder.layers.{i}.blocks.{j}."
_SWIN_RULES: list[Rule] = [
    _rule(r"backbone\.patch_embed\.proj\.(?P<p>weight|bias)", _SW + "embeddings.patch_embeddings.projection.{p}"),
    _rule(r"backbone\.patch_embed\.norm\.(?P<p>weight|bias)", _SW + "embeddings.norm.{p}"),
    _rule(r"backbone\.layers\.(?P<i>\d+)\.blocks\.(?P<j>\d+)\.norm1\.(?P<p>weight|bias)", _SWB + "layernorm_before.{p}"),
    _rule(r"backbone\.layers\.(?P<i>\d+)\.blocks\.(?P<j>\d+)\.norm2\.(?P<p>weight|bias)", _SWB + "layernorm_after.{p}"),
    _rule(r"backbone\.layers\.(?P<i>\d+)\.blocks\.(?P<j>\d+)\.attn\.relative_position_bias_table",
          _SWB + "attention.relative_position_bias.relative_position_bias_table"),
    _rule(r"backbone\.layers\.(?P<i>\d+)\.blocks\.(?P<j>\d+)\.attn\.qkv\.(?P<p>weight|bias)",
          *_qkv(_SWB + "attention.", ("q_proj", "k_proj", "v_proj"), "{p}")),
    _rule(r"backbone\.layers\.(?P<i>\d+)\.blocks\.(?P<j>\d+)\.attn\.proj\.(?P<p>weight|bias)", _SWB + "attention.o_proj.{p}"),
    _rule(r"backbone\.layers\.(?P<i>\d+)\.blocks\.(?P<j>\d+)\.mlp\.fc(?P<f>[12])\.(?P<p>weight|bias)", _SWB + "mlp.fc{f}.{p}"),
    _rule(r"backbone\.layers\.(?P<i>\d+)\.downsample\.reduction\.weight", _SW + "encoder.layers.{i}.downsample.reduction.weight"),
    _rule(r"backbone\.layers\.(?P<i>\d+)\.downsample\.norm\.(?P<p>weight|bias)", _SW + "encoder.layers.{i}.downsample.norm.{p}"),
    _rule(r"backbone\.norm(?P<norm>[0-3])\.(?P<p>weight|bias)", BACKBONE + "hidden_states_norms.stage{stage1}.{p}"),
]
#: the official Swin blocks' persistent relative position index buffers (int64 [ws*ws, ws*ws])
_SWIN_INDEX = re.compile(r"backbone\.layers\.(?P<i>\d+)\.blocks\.(?P<j>\d+)\.attn\.relative_position_index$")
_SWIN_INDEX_TARGET = _SWB + "attention.relative_position_bias.relative_position_index"


def official_position_index(arr: np.ndarray, table_rows: int, key: str,
                            source: str | os.PathLike) -> torch.Tensor:
    """An official checkpoint's Swin relative position index as the official code uses it.

    The official block's ``relative_position_index`` is a persistent int64 buffer, so
    ``load_state_dict`` copies the stored values into it with ``Tensor.copy_``, which casts
    floating values to int64 by truncation toward zero; the table is then used as stored.

    Args:
        arr: the stored buffer, ``[ws*ws, ws*ws]`` (any numeric dtype).
        table_rows: rows of the block's relative position bias table, ``(2 ws - 1)**2``.
        key, source: for error messages.

    Returns:
        int64 tensor ``[ws**4]`` (flat, the layout of the genvis buffer).

    Raises:
        InputError: not square, non-finite values, or an entry outside the bias table
            (the official code would fail with an index error).
    """
    a = np.asarray(arr)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise InputError(source, f"{key}: expected a square [ws*ws, ws*ws] index, got shape {a.shape}")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise InputError(source, f"{key}: non-finite values in the relative position index")
        a = np.trunc(a)
    index = torch.from_numpy(np.ascontiguousarray(a).astype(np.int64)).reshape(-1)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= table_rows):
        raise InputError(source, f"{key}: relative position index entries must lie in [0, {table_rows}) "
                         f"(the rows of relative_position_bias_table), got [{int(index.min())}, "
                         f"{int(index.max())}]")
    return index

_PD = "sem_seg_head.pixel_decoder."
_PDE = _PD + r"transformer\.encoder\.layers\.(?P<i>\d+)\."
_TD = "sem_seg_head.predictor."
_L = TRANSFORMER + "decoder.layers.{i}."
_HEAD_RULES: list[Rule] = [
    _rule(_PD + r"input_proj\.(?P<l>\d+)\.(?P<m>[01])\.(?P<p>weight|bias)", PIXEL_DECODER + "input_projections.{l}.{m}.{p}"),
    _rule(_PD + r"transformer\.level_embed", PIXEL_DECODER + "level_embed"),
    _rule(_PDE + r"self_attn\.(?P<n>sampling_offsets|attention_weights|value_proj|output_proj)\.(?P<p>weight|bias)",
          PIXEL_DECODER + "encoder.layers.{i}.self_attn.{n}.{p}"),
    _rule(_PDE + r"norm1\.(?P<p>weight|bias)", PIXEL_DECODER + "encoder.layers.{i}.self_attn_layer_norm.{p}"),
    _rule(_PDE + r"linear(?P<f>[12])\.(?P<p>weight|bias)", PIXEL_DECODER + "encoder.layers.{i}.fc{f}.{p}"),
    _rule(_PDE + r"norm2\.(?P<p>weight|bias)", PIXEL_DECODER + "encoder.layers.{i}.final_layer_norm.{p}"),
    _rule(_PD + r"mask_features\.(?P<p>weight|bias)", PIXEL_DECODER + "mask_projection.{p}"),
    _rule(_PD + r"(?P<n>adapter|layer)_(?P<k>\d+)\.weight", PIXEL_DECODER + "{n}_{k}.0.weight"),
    _rule(_PD + r"(?P<n>adapter|layer)_(?P<k>\d+)\.norm\.(?P<p>weight|bias)", PIXEL_DECODER + "{n}_{k}.1.{p}"),
    _rule(_TD + r"transformer_self_attention_layers\.(?P<i>\d+)\.self_attn\.in_proj_(?P<p>weight|bias)",
          *_qkv(_L + "self_attn.", ("q_proj", "k_proj", "v_proj"), "{p}")),
    _rule(_TD + r"transformer_self_attention_layers\.(?P<i>\d+)\.self_attn\.out_proj\.(?P<p>weight|bias)",
          _L + "self_attn.out_proj.{p}"),
    _rule(_TD + r"transformer_self_attention_layers\.(?P<i>\d+)\.norm\.(?P<p>weight|bias)", _L + "self_attn_layer_norm.{p}"),
    _rule(_TD + r"transformer_cross_attention_layers\.(?P<i>\d+)\.multihead_attn\.(?P<n>in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)",
          _L + "cross_attn.{n}"),
    _rule(_TD + r"transformer_cross_attention_layers\.(?P<i>\d+)\.norm\.(?P<p>weight|bias)", _L + "cross_attn_layer_norm.{p}"),
    _rule(_TD + r"transformer_ffn_layers\.(?P<i>\d+)\.linear(?P<f>[12])\.(?P<p>weight|bias)", _L + "fc{f}.{p}"),
    _rule(_TD + r"transformer_ffn_layers\.(?P<i>\d+)\.norm\.(?P<p>weight|bias)", _L + "final_layer_norm.{p}"),
    _rule(_TD + r"decoder_norm\.(?P<p>weight|bias)", TRANSFORMER + "decoder.layernorm.{p}"),
    _rule(_TD + r"query_feat\.weight", TRANSFORMER + "queries_features.weight"),
    _rule(_TD + r"query_embed\.weight", TRANSFORMER + "queries_embedder.weight"),
    _rule(_TD + r"level_embed\.weight", TRANSFORMER + "level_embed.weight"),
    _rule(_TD + r"input_proj\.(?P<l>\d+)\.(?P<p>weight|bias)", TRANSFORMER + "input_projections.{l}.{p}"),
    _rule(_TD + r"class_embed\.(?P<p>weight|bias)", "m2f.class_predictor.{p}"),
    _rule(_TD + r"mask_embed\.layers\.(?P<k>[0-2])\.(?P<p>weight|bias)",
          TRANSFORMER + "decoder.mask_predictor.mask_embedder.{k}.0.{p}"),
]

#: model entries no official checkpoint needs to carry: buffers recomputed or unused by the
#: detector (a Swin checkpoint without its position index tables gets the standard ones)
_NOT_IN_CHECKPOINTS = re.compile(
    r".*num_batches_tracked$|m2f\.criterion\..*|" + re.escape(BACKBONE) + r"swin\.layernorm\.(weight|bias)$"
    r"|.*\.relative_position_bias\.relative_position_index$")


def _rules_for(cfg: DetectorConfig) -> list[Rule]:
    if cfg.backbone in ("resnet", "tiny_resnet"):
        return _RESNET_RULES + _HEAD_RULES
    if cfg.backbone == "swin":
        return _SWIN_RULES + _HEAD_RULES
    raise InputError("backbone", f"official checkpoints use ResNet or Swin backbones, not {cfg.backbone!r}")


def convert_official_state(official: dict[str, np.ndarray], cfg: DetectorConfig,
                           source: str | os.PathLike = "checkpoint") -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Map official detector weights onto a FrameDetector state dict.

    Args:
        official: all keys of an official checkpoint (``read_official_checkpoint``).
        cfg: the detector config they must fit.
        source: name used in error messages.

    Swin: the stored relative position index tables are used as stored (see
    :func:`official_position_index`), as the official code does; ``position_index`` counts
    them and ``nonstandard_position_index`` those that differ from the standard Swin table
    (0 for a checkpoint written by the official training code).

    Returns:
        ``(state_dict, report)``: the FrameDetector weights (float32 tensors; int64 position
        index tables) and counts ``{"mapped", "ignored_non_detector", "position_index",
        "nonstandard_position_index"}``.

    Raises:
        InputError: detector keys no rule maps (listed); model weights not supplied by the
            checkpoint (listed); shape mismatches, with the class count (K+1 rows of
            ``class_embed``) or hidden size named when those are the cause.
    """
    return _convert(official, cfg, FrameDetector(cfg).state_dict(), source)


def _convert(official: dict[str, np.ndarray], cfg: DetectorConfig, model_state: dict[str, torch.Tensor],
             source: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    model_shapes = {k: tuple(v.shape) for k, v in model_state.items()}
    rules = _rules_for(cfg)
    state: dict[str, torch.Tensor] = {}
    unmapped, ignored, n_index, nonstandard = [], 0, 0, 0
    for key, arr in official.items():
        if not key.startswith(DETECTOR_PREFIXES):
            ignored += 1
            continue
        m = _SWIN_INDEX.match(key) if cfg.backbone == "swin" else None
        if m:
            target = _SWIN_INDEX_TARGET.format(**m.groupdict())
            table = target.replace("relative_position_index", "relative_position_bias_table")
            if target not in model_state or table not in model_state:
                unmapped.append(key)
                continue
            index = official_position_index(arr, model_state[table].shape[0], key, source)
            if index.shape != model_state[target].shape:
                raise InputError(source, f"{key}: index of {tuple(np.shape(arr))} does not fit the configured "
                                 f"window (model index has {model_state[target].numel()} entries; window_size?)")
            state[target] = index
            n_index += 1
            nonstandard += int(not torch.equal(index, model_state[target]))
            continue
        for rx, expand in rules:
            m = rx.match(key)
            if m:
                for target, fn in expand(m):
                    state[target] = torch.from_numpy(np.ascontiguousarray(fn(np.asarray(arr)))).float()
                break
        else:
            unmapped.append(key)
    if unmapped:
        raise InputError(source, f"{len(unmapped)} detector key(s) have no place in the "
                         f"{cfg.backbone} Mask2Former of the config (left unmapped): "
                         + ", ".join(sorted(unmapped)[:30]) + (" ..." if len(unmapped) > 30 else ""))
    cls_key = "m2f.class_predictor.weight"
    if cls_key in state and state[cls_key].shape[0] != cfg.num_classes + 1:
        raise InputError(source, f"checkpoint has {state[cls_key].shape[0] - 1} classes (class_embed has "
                         f"{state[cls_key].shape[0]} rows incl. no-object) but the config says "
                         f"num_classes {cfg.num_classes}")
    q_key = TRANSFORMER + "queries_features.weight"
    if q_key in state:
        nq, c = state[q_key].shape
        if c != cfg.hidden_dim:
            raise InputError(source, f"checkpoint hidden size is {c} but the config says hidden_dim {cfg.hidden_dim}")
        if nq != cfg.num_queries:
            raise InputError(source, f"checkpoint has {nq} queries but the config says num_queries {cfg.num_queries}")
    unknown = sorted(k for k in state if k not in model_shapes)
    if unknown:
        raise InputError(source, f"{len(unknown)} checkpoint weight(s) do not exist in the configured model "
                         f"(more layers than decoder_layers/encoder_layers/depths?): " + ", ".join(unknown[:20]))
    bad = [f"{k}: checkpoint {tuple(v.shape)} vs model {model_shapes[k]}"
           for k, v in state.items() if tuple(v.shape) != model_shapes[k]]
    if bad:
        raise InputError(source, "shape mismatch (config does not fit the checkpoint): " + "; ".join(bad[:10]))
    missing = sorted(k for k in model_shapes if k not in state and not _NOT_IN_CHECKPOINTS.match(k))
    if missing:
        raise InputError(source, f"{len(missing)} model weight(s) missing from the checkpoint: "
                         + ", ".join(missing[:30]) + (" ..." if len(missing) > 30 else ""))
    return state, {"mapped": len(state) - n_index, "ignored_non_detector": ignored, "position_index": n_index,
                   "nonstandard_position_index": nonstandard}


def import_official_checkpoint(path: str | os.PathLike, cfg: DetectorConfig) -> tuple[FrameDetector, dict[str, int]]:
    """Build a FrameDetector from an official ``.pkl`` / ``.pth`` checkpoint.

    Returns:
        ``(detector in eval mode, report of convert_official_state)``.

    Raises:
        InputError: see :func:`read_official_checkpoint` and :func:`convert_official_state`.
    """
    return import_official_weights(read_official_checkpoint(path), cfg, source=path)


def import_official_weights(official: Mapping[str, Any], cfg: DetectorConfig,
                            source: str | os.PathLike = "checkpoint") -> tuple[FrameDetector, dict[str, int]]:
    """Build a FrameDetector from official weights already in memory.

    Args:
        official: official name -> numpy array or CPU tensor (all keys of the checkpoint).
        cfg: the detector config they must fit.
        source: name used in error messages.

    Returns:
        ``(detector in eval mode, report of convert_official_state)``.

    Raises:
        InputError: no detector keys, or see :func:`convert_official_state`.
    """
    official = {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
                for k, v in official.items()}
    if not any(k.startswith(DETECTOR_PREFIXES) for k in official):
        raise InputError(source, "no detector weights (no 'backbone.' or 'sem_seg_head.' keys); "
                         "is this a Mask2Former / VITA / GenVIS checkpoint?")
    cfg = DetectorConfig.from_dict({**cfg.to_dict(), "pretrained_backbone": False})
    det = FrameDetector(cfg)
    state, report = _convert(official, cfg, det.state_dict(), source=source)
    det.load_state_dict(state, strict=False)
    return det.eval(), report


def load_official_detector(path: str | os.PathLike, cfg: DetectorConfig | None = None, dataset: str | None = None,
                           min_size: int | None = None, max_size: int | None = None
                           ) -> tuple[FrameDetector, dict[str, int], dict[str, np.ndarray]]:
    """Read an official checkpoint once and build its frame detector, with or without a YAML.

    Args:
        path: official ``.pkl`` / ``.pth``.
        cfg: the detector config; None infers it from the keys and shapes
            (:func:`genvis.detector.official_config.detector_config_from_official`, with
            ``dataset`` / ``min_size`` / ``max_size``).
        min_size, max_size: with ``cfg`` given, override its input size.

    Returns:
        ``(detector in eval mode, import report, all official arrays)`` -- the arrays also
        hold the video modules (``vita_module.*``) for :func:`genvis.model.checkpoint.load_official_genvis`.

    Raises:
        InputError / ConfigError: see :func:`read_official_checkpoint`,
            :func:`convert_official_state` and ``detector_config_from_official``.
    """
    from genvis.detector.official_config import detector_config_from_official

    official = read_official_checkpoint(path)
    if cfg is None:
        cfg = detector_config_from_official(official, dataset, min_size, max_size, source=path)
    elif min_size or max_size:
        cfg = DetectorConfig.from_dict({**cfg.to_dict(), "min_size": int(min_size or cfg.min_size),
                                        "max_size": int(max_size or max(cfg.max_size, int(min_size or 0)))},
                                       source=f"{path}: --min-size/--max-size")
    det, report = import_official_weights(official, cfg, source=path)
    return det, report, official
