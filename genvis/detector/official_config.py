"""The DetectorConfig of an official Mask2Former / VITA / GenVIS checkpoint, read from its keys.

Official checkpoints hold no configuration, but their parameter names and shapes fix the
architecture (detectron2 Mask2Former names, as :mod:`genvis.detector.official_import` maps them):

* backbone: ``backbone.patch_embed.*`` -> Swin (``embed_dim`` = rows of the patch
  projection, patch size = its kernel, ``depths`` = blocks per ``layers.i``, ``num_heads``
  = columns of each stage's ``relative_position_bias_table``, window ``w`` from its
  ``(2w - 1)**2`` rows); ``backbone.stem.*`` + ``backbone.res{2..5}`` -> ResNet (bottleneck
  blocks per stage: 3,4,6,3 is R50, 3,4,23,3 R101; stem and stage widths from the convs);
* ``sem_seg_head.predictor``: queries and hidden size (``query_feat``), classes
  (``class_embed`` rows - 1), decoder layers (self-attention layers + 1, Mask2Former's
  DEC_LAYERS), decoder FFN width;
* ``sem_seg_head.pixel_decoder``: encoder layers and FFN width.

Not stored in the weights: the attention heads (8 in every official model; checked against
the deformable-attention shapes), the frame-query layers to keep (genvis's L = 3) and the
input size. The input size comes from :data:`KNOWN_DATASETS` (the official test settings,
found from the class count or named with ``dataset``) or from ``min_size`` / ``max_size``;
when neither gives it the error names what to pass.

Sources: the official configs (GenVIS ``configs/vita/*/vita_{R50,SWIN}_bs8.yaml``:
MIN_SIZE_TEST 360 for R50 and 448 for Swin-L on YouTube-VIS 2019/2021 and OVIS, detectron2's
default MAX_SIZE_TEST 1333; Mask2Former COCO instance segmentation: 800 / 1333).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

from genvis.detector.config import DetectorConfig
from genvis.errors import ConfigError, InputError


@dataclass(frozen=True)
class KnownDataset:
    """Official test settings of a dataset: class count and shortest-side sizes (pixels)."""

    name: str
    num_classes: int
    min_size_resnet: int
    min_size_swin: int
    max_size: int = 1333


#: the datasets official checkpoints are trained on (YouTube-VIS 2022 is evaluated with the
#: YouTube-VIS 2021 models)
KNOWN_DATASETS = {
    "ovis": KnownDataset("ovis", 25, 360, 448),
    "ytvis19": KnownDataset("ytvis19", 40, 360, 448),
    "ytvis21": KnownDataset("ytvis21", 40, 360, 448),
    "coco": KnownDataset("coco", 80, 800, 800),
}

#: backbone names used in config names (``r50-ovis``, ``swinl-ovis``)
_SWIN_NAMES = {(96, (2, 2, 6, 2)): "swint", (96, (2, 2, 18, 2)): "swins", (128, (2, 2, 18, 2)): "swinb",
               (192, (2, 2, 18, 2)): "swinl"}
_RESNET_NAMES = {(3, 4, 6, 3): "r50", (3, 4, 23, 3): "r101"}
_R50_DEPTHS = (3, 4, 6, 3)


def _count(keys, pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` (one group) over ``keys``."""
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def _blocks(keys, prefix: str, source="checkpoint") -> int:
    idx = _count(keys, re.escape(prefix) + r"(\d+)\.")
    if idx and idx != list(range(len(idx))):
        raise InputError(source, f"{prefix}*: non-contiguous layer indices {idx}")
    return len(idx)


def _shape(official: Mapping[str, Any], key: str, source) -> tuple[int, ...]:
    if key not in official:
        raise InputError(source, f"cannot infer the architecture: {key} is missing")
    return tuple(int(x) for x in official[key].shape)


def _swin(official: Mapping[str, Any], source) -> tuple[dict[str, Any], str]:
    keys = list(official)
    proj = _shape(official, "backbone.patch_embed.proj.weight", source)
    n_stages = _blocks(keys, "backbone.layers.", source)
    if n_stages == 0:
        raise InputError(source, "Swin backbone without backbone.layers.* blocks")
    depths, heads, windows = [], [], set()
    for i in range(n_stages):
        depths.append(_blocks(keys, f"backbone.layers.{i}.blocks.", source))
        rows, h = _shape(official, f"backbone.layers.{i}.blocks.0.attn.relative_position_bias_table", source)
        w = (math.isqrt(rows) + 1) // 2
        if (2 * w - 1) ** 2 != rows:
            raise InputError(source, f"backbone.layers.{i}: relative_position_bias_table has {rows} rows, "
                             f"not (2 w - 1)**2 for a window w")
        heads.append(h)
        windows.add(w)
    if len(windows) != 1:
        raise InputError(source, f"Swin stages use different windows {sorted(windows)}; genvis needs one")
    opts: dict[str, Any] = {"embed_dim": proj[0], "depths": depths, "num_heads": heads, "window_size": windows.pop()}
    if proj[-1] != 4:
        opts["patch_size"] = proj[-1]
    return opts, _SWIN_NAMES.get((proj[0], tuple(depths)), f"swin{proj[0]}")


def _resnet(official: Mapping[str, Any], source) -> tuple[dict[str, Any], str]:
    keys = list(official)
    depths = [_blocks(keys, f"backbone.res{s}.", source) for s in range(2, 6)]
    if 0 in depths:
        raise InputError(source, f"ResNet backbone without blocks in every stage res2..res5 (found {depths})")
    if "backbone.res2.0.conv3.weight" not in official:
        raise InputError(source, "ResNet with basic blocks (no conv3): official checkpoints use bottleneck "
                         "ResNet-50/101; not supported")
    stem = _shape(official, "backbone.stem.conv1.weight", source)[0]
    widths = [_shape(official, f"backbone.res{s}.0.conv3.weight", source)[0] for s in range(2, 6)]
    opts: dict[str, Any] = {}
    if tuple(depths) != _R50_DEPTHS:
        opts["depths"] = depths
    if stem != 64:
        opts["embedding_size"] = stem
    if widths != [256, 512, 1024, 2048]:
        opts["hidden_sizes"] = widths
    return opts, _RESNET_NAMES.get(tuple(depths), f"resnet{sum(depths) * 3 + 2}")


def _dataset(num_classes: int, dataset: str | None, source) -> KnownDataset | None:
    if dataset is not None:
        if dataset not in KNOWN_DATASETS:
            raise ConfigError("--dataset", f"unknown dataset {dataset!r}; known: {sorted(KNOWN_DATASETS)}")
        known = KNOWN_DATASETS[dataset]
        if known.num_classes != num_classes:
            raise ConfigError("--dataset", f"{source} has {num_classes} classes but {dataset} has "
                              f"{known.num_classes}")
        return known
    matches = [d for d in KNOWN_DATASETS.values() if d.num_classes == num_classes]
    return matches[0] if matches else None


def detector_config_from_official(official: Mapping[str, Any], dataset: str | None = None,
                                  min_size: int | None = None, max_size: int | None = None,
                                  source: str | os.PathLike = "checkpoint") -> DetectorConfig:
    """Infer the :class:`DetectorConfig` of official detector weights (see the module doc).

    Args:
        official: official name -> array or tensor (anything with ``.shape``); keys of other
            modules (``vita_module.*``, criterion buffers) are ignored.
        dataset: one of :data:`KNOWN_DATASETS` (``ovis``, ``ytvis19``, ``ytvis21``, ``coco``):
            sets the official test size and the config name; by default found from the class
            count (25: OVIS; 40: YouTube-VIS, whose 2019 and 2021 test sizes agree; 80: COCO).
        min_size, max_size: input size in pixels, overriding the dataset's.

    Returns:
        the validated config; ``name`` is ``<backbone>-<dataset>`` (e.g. ``swinl-ovis``;
        ``ytvis`` when 40 classes and no ``dataset``).

    Raises:
        InputError: no detector keys, an unknown backbone layout, or a tensor the inference
            needs is missing (named).
        ConfigError: the input size cannot be inferred (class count of no known dataset and
            no ``min_size``; the message names ``--dataset`` and ``--min-size/--max-size``),
            or ``dataset`` contradicts the class count.
    """
    keys = [k for k in official if k.startswith(("backbone.", "sem_seg_head."))]
    if not keys:
        raise InputError(source, "no detector weights (no 'backbone.' or 'sem_seg_head.' keys)")
    if "backbone.patch_embed.proj.weight" in official:
        backbone, (opts, tag) = "swin", _swin(official, source)
    elif "backbone.stem.conv1.weight" in official:
        backbone, (opts, tag) = "resnet", _resnet(official, source)
    else:
        raise InputError(source, "cannot infer the backbone: neither Swin (backbone.patch_embed.*) nor "
                         "ResNet (backbone.stem.*) keys")
    p = "sem_seg_head.predictor."
    e = "sem_seg_head.pixel_decoder.transformer.encoder.layers."
    num_queries, hidden = _shape(official, p + "query_feat.weight", source)
    num_classes = _shape(official, p + "class_embed.weight", source)[0] - 1
    decoder_layers = _blocks(keys, p + "transformer_self_attention_layers.", source) + 1
    encoder_layers = _blocks(keys, e, source)
    dim_ff = _shape(official, p + "transformer_ffn_layers.0.linear1.weight", source)[0]
    enc_ff = _shape(official, e + "0.linear1.weight", source)[0]
    heads = 8
    levels, points = 3, 4  # official MSDeformAttn: 3 levels (res3..res5), 4 points
    attn_rows = _shape(official, e + "0.self_attn.attention_weights.weight", source)[0]
    if attn_rows != heads * levels * points:
        raise InputError(source, f"pixel decoder attention_weights has {attn_rows} rows; genvis expects "
                         f"{heads} heads x {levels} levels x {points} points = {heads * levels * points}")
    known = _dataset(num_classes, dataset, source)
    if min_size is None:
        if known is None:
            raise ConfigError("input size", f"{source}: cannot infer the input size: {num_classes} classes "
                              f"is none of the known datasets ("
                              + ", ".join(f"{d.name} {d.num_classes}" for d in KNOWN_DATASETS.values())
                              + "); pass --min-size and --max-size (or --dataset)")
        min_size = known.min_size_swin if backbone == "swin" else known.min_size_resnet
    if max_size is None:
        max_size = known.max_size if known is not None else max(int(min_size), 1333)
    if known is None:
        ds_name = "custom"
    elif dataset is None and known.num_classes == 40:
        ds_name = "ytvis"
    else:
        ds_name = known.name
    return DetectorConfig(
        name=f"{tag}-{ds_name}", backbone=backbone, backbone_options=opts, num_classes=num_classes,
        hidden_dim=hidden, num_queries=num_queries, decoder_layers=decoder_layers,
        encoder_layers=encoder_layers, num_heads=heads, dim_feedforward=dim_ff,
        encoder_feedforward_dim=enc_ff, keep_layers=3, min_size=int(min_size), max_size=int(max_size))
