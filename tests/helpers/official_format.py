"""Official-format checkpoints for tests: the parameter names and shapes the official
Mask2Former / VITA / GenVIS code saves (detectron2 names, ``{"model": state_dict}``), with
deterministic weights -- no real training, no download.

``official_keys`` lists (name, shape) for a Mask2Former detector with a ResNet (R50/R101
layout: ``backbone.stem`` / ``backbone.res2..res5``) or Swin backbone (``backbone.patch_embed``
/ ``backbone.layers.i.blocks.j`` / ``backbone.norm{i}``), the MSDeformAttn pixel decoder, the
masked-attention decoder, and optionally the GenVIS video modules (``vita_module.*``) and the
criterion buffers. ``tests/test_official_config.py`` checks the Swin-L list against the
official key list of ``../shared/fixtures/official_swinl/keys.json``.
"""

from __future__ import annotations

import math

import torch


def _ln(name, c):
    return [(f"{name}.weight", (c,)), (f"{name}.bias", (c,))]


def _lin(name, cout, cin, bias=True):
    return [(f"{name}.weight", (cout, cin))] + ([(f"{name}.bias", (cout,))] if bias else [])


def _bn_conv(name, cout, cin, k):
    return [(f"{name}.weight", (cout, cin, k, k))] + [(f"{name}.norm.{p}", (cout,)) for p in
                                                       ("weight", "bias", "running_mean", "running_var")]


def resnet_keys(depths=(3, 4, 6, 3), stem=64, widths=(256, 512, 1024, 2048)):
    keys = _bn_conv("backbone.stem.conv1", stem, 3, 7)
    cin = stem
    for s, (n, cout) in enumerate(zip(depths, widths)):
        mid = cout // 4
        for b in range(n):
            p = f"backbone.res{s + 2}.{b}"
            if b == 0:
                keys += _bn_conv(f"{p}.shortcut", cout, cin, 1)
            keys += _bn_conv(f"{p}.conv1", mid, cin if b == 0 else cout, 1)
            keys += _bn_conv(f"{p}.conv2", mid, mid, 3)
            keys += _bn_conv(f"{p}.conv3", cout, mid, 1)
        cin = cout
    return keys, list(widths)


def swin_keys(embed_dim=192, depths=(2, 2, 18, 2), heads=(6, 12, 24, 48), window=12):
    keys = [("backbone.patch_embed.proj.weight", (embed_dim, 3, 4, 4)), ("backbone.patch_embed.proj.bias", (embed_dim,))]
    keys += _ln("backbone.patch_embed.norm", embed_dim)
    dims = [embed_dim * 2 ** i for i in range(len(depths))]
    for i, (n, h, c) in enumerate(zip(depths, heads, dims)):
        for j in range(n):
            p = f"backbone.layers.{i}.blocks.{j}"
            keys += _ln(f"{p}.norm1", c)
            keys += [(f"{p}.attn.relative_position_bias_table", ((2 * window - 1) ** 2, h)),
                     (f"{p}.attn.relative_position_index", (window * window, window * window))]
            keys += _lin(f"{p}.attn.qkv", 3 * c, c) + _lin(f"{p}.attn.proj", c, c)
            keys += _ln(f"{p}.norm2", c) + _lin(f"{p}.mlp.fc1", 4 * c, c) + _lin(f"{p}.mlp.fc2", c, 4 * c)
        if i < len(depths) - 1:
            keys += _lin(f"backbone.layers.{i}.downsample.reduction", 2 * c, 4 * c, bias=False)
            keys += _ln(f"backbone.layers.{i}.downsample.norm", 4 * c)
    for i, c in enumerate(dims):
        keys += _ln(f"backbone.norm{i}", c)
    return keys, dims


def head_keys(channels, num_classes, num_queries=100, hidden=256, dec_layers=10, enc_layers=6, ff=2048,
              enc_ff=1024, heads=8, levels=3, points=4):
    pd = "sem_seg_head.pixel_decoder"
    keys = []
    for lvl, cin in enumerate(reversed(channels[1:])):           # res5, res4, res3
        keys += [(f"{pd}.input_proj.{lvl}.0.weight", (hidden, cin, 1, 1)), (f"{pd}.input_proj.{lvl}.0.bias", (hidden,))]
        keys += _ln(f"{pd}.input_proj.{lvl}.1", hidden)
    keys.append((f"{pd}.transformer.level_embed", (levels, hidden)))
    for i in range(enc_layers):
        p = f"{pd}.transformer.encoder.layers.{i}"
        keys += _lin(f"{p}.self_attn.sampling_offsets", heads * levels * points * 2, hidden)
        keys += _lin(f"{p}.self_attn.attention_weights", heads * levels * points, hidden)
        keys += _lin(f"{p}.self_attn.value_proj", hidden, hidden) + _lin(f"{p}.self_attn.output_proj", hidden, hidden)
        keys += _ln(f"{p}.norm1", hidden) + _lin(f"{p}.linear1", enc_ff, hidden) + _lin(f"{p}.linear2", hidden, enc_ff)
        keys += _ln(f"{p}.norm2", hidden)
    keys += [(f"{pd}.mask_features.weight", (hidden, hidden, 1, 1)), (f"{pd}.mask_features.bias", (hidden,))]
    keys += [(f"{pd}.adapter_1.weight", (hidden, channels[0], 1, 1))] + _ln(f"{pd}.adapter_1.norm", hidden)
    keys += [(f"{pd}.layer_1.weight", (hidden, hidden, 3, 3))] + _ln(f"{pd}.layer_1.norm", hidden)
    tp = "sem_seg_head.predictor"
    for i in range(dec_layers - 1):
        p = f"{tp}.transformer_self_attention_layers.{i}"
        keys += [(f"{p}.self_attn.in_proj_weight", (3 * hidden, hidden)), (f"{p}.self_attn.in_proj_bias", (3 * hidden,))]
        keys += _lin(f"{p}.self_attn.out_proj", hidden, hidden) + _ln(f"{p}.norm", hidden)
        p = f"{tp}.transformer_cross_attention_layers.{i}"
        keys += [(f"{p}.multihead_attn.in_proj_weight", (3 * hidden, hidden)),
                 (f"{p}.multihead_attn.in_proj_bias", (3 * hidden,))]
        keys += _lin(f"{p}.multihead_attn.out_proj", hidden, hidden) + _ln(f"{p}.norm", hidden)
        p = f"{tp}.transformer_ffn_layers.{i}"
        keys += _lin(f"{p}.linear1", ff, hidden) + _lin(f"{p}.linear2", hidden, ff) + _ln(f"{p}.norm", hidden)
    keys += _ln(f"{tp}.decoder_norm", hidden)
    keys += [(f"{tp}.query_feat.weight", (num_queries, hidden)), (f"{tp}.query_embed.weight", (num_queries, hidden)),
             (f"{tp}.level_embed.weight", (levels, hidden))]
    keys += _lin(f"{tp}.class_embed", num_classes + 1, hidden)
    for k in range(3):
        keys += _lin(f"{tp}.mask_embed.layers.{k}", hidden, hidden)
    return keys


def genvis_keys(num_classes, num_frame_queries, hidden=256, num_queries=100, enc_layers=6, dec_layers=3, ff=2048):
    """``vita_module.*`` of a GenVIS checkpoint (as genvis's official name mapping writes them)."""
    from genvis.model.checkpoint import to_official_state_dict
    from genvis.model.config import GenVISConfig
    from genvis.model.genvis import GenVIS

    with torch.device("meta"):
        model = GenVIS(GenVISConfig(num_classes=num_classes, hidden_dim=hidden, num_frame_queries=num_frame_queries,
                                    mask_feature_dim=hidden, num_queries=num_queries, dim_feedforward=ff,
                                    enc_layers=enc_layers, dec_layers=dec_layers))
    return [(k, tuple(v.shape)) for k, v in to_official_state_dict(model).items()]


def official_keys(backbone: str, num_classes: int, num_queries: int, genvis: bool = True, hidden=256,
                  dec_layers=10, enc_layers=6, ff=2048, enc_ff=1024, swin=None, resnet=None, video=None):
    """(name, shape) list of an official-format checkpoint (detector [+ GenVIS video modules])."""
    if backbone == "swin":
        keys, channels = swin_keys(**(swin or {}))
    else:
        keys, channels = resnet_keys(**(resnet or {}))
    keys += head_keys(channels, num_classes, num_queries, hidden, dec_layers, enc_layers, ff, enc_ff)
    keys.append(("criterion.empty_weight", (num_classes + 1,)))
    if genvis:
        keys += genvis_keys(num_classes, num_queries, hidden, **(video or {}))
        keys += [("vita_criterion.empty_weight", (num_classes + 1,)), ("genvis_criterion.empty_weight", (num_classes + 1,))]
    return keys


def _standard_index(n: int) -> torch.Tensor:
    w = math.isqrt(n)
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (w - 1)
    return rel[..., 0] * (2 * w - 1) + rel[..., 1]


def make_official_weights(keys, seed: int = 0, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Deterministic weights for a key list (each tensor from its own seeded generator):
    matrices ~ N(0, 1/fan_in) * scale, norm weights ~ 1, biases ~ 0, BN running variances in
    [0.75, 1.25], position index tables the standard Swin ones (as real checkpoints hold)."""
    sd = {}
    for i, (name, shape) in enumerate(keys):
        g = torch.Generator().manual_seed(seed * 100003 + i)
        if name.endswith("relative_position_index"):
            sd[name] = _standard_index(shape[0])
        elif name.endswith("running_var"):
            sd[name] = torch.rand(shape, generator=g) * 0.5 + 0.75
        elif name.endswith("running_mean"):
            sd[name] = torch.randn(shape, generator=g) * 0.1
        elif name.endswith("empty_weight"):
            sd[name] = torch.ones(shape)
        elif len(shape) <= 1 or name.endswith("level_embed"):
            base = 1.0 if name.endswith("weight") and "embed" not in name else 0.0
            sd[name] = base + torch.randn(shape, generator=g) * 0.05
        else:
            sd[name] = torch.randn(shape, generator=g) * scale / math.sqrt(math.prod(shape[1:]))
    return sd


def write_official_checkpoint(path, keys, seed: int = 0) -> dict[str, torch.Tensor]:
    """Write ``{"model": weights, "iteration": 0}`` (a VITA/GenVIS ``.pth``); returns the weights."""
    sd = make_official_weights(keys, seed)
    torch.save({"model": sd, "iteration": 0}, path)
    return sd
