"""``python -m sepconv bench --family``: the Keras convolution family on real model shapes.

Each shape is one layer of a published model, on Keras' channels_last data.  Peers, run
by :func:`sepconv.bench.main` exactly as the default suite's (alternating rounds, medians,
``fwd`` and ``fb``, float32, the roofline):

- ``sepconv``: the sepconv layer (``sepconv.Conv2D`` ...), channels_last in and out;
- ``torch``: the plain torch module doing the same work (``nn.Conv2d`` with TensorFlow's
  padding: ``padding="same"`` where torch's equals it, else an explicit ``F.pad``;
  ``nn.ConvTranspose2d`` with ``padding`` / ``output_padding`` and a crop for the odd
  element; ``nn.Conv2d(groups=C)`` then a 1x1 ``nn.Conv2d`` for ``SeparableConv2D``) on the
  same channels_last tensor, the layout conversion counted (``movedim`` in and out: torch
  sees channels_last strides and may pick its channels_last path);
- ``torch-nc``: the same module on channels_first contiguous data (no layout change at
  all: a native PyTorch model's layout);
- ``tf-keras``: the tf-keras layer, ``tf.function``, in its own process.

The torch modules hold the sepconv layer's weights, and their outputs are checked equal to
the layer's before timing (a comparison of different work would mean nothing).
``--tiny`` shrinks every shape (batch 1, 3 channels, a few steps per axis, kernels,
strides and dilations kept): a smoke run of the whole mechanism in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Tuple

from .. import padding as _padding
from . import _inference, _train_step, _TorchPeer  # imported after the package's __init__

# The layer classes this suite knows how to give a torch counterpart.
_CONV = ("Conv1D", "Conv2D", "Conv3D")
_TRANSPOSE = ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
_DEPTHWISE = ("DepthwiseConv1D", "DepthwiseConv2D")
_SEPARABLE = ("SeparableConv2D",)


@dataclass(frozen=True)
class FamilyShape:
    name: str
    source: str
    layer: str                      # tf-keras / sepconv class name
    kwargs: Dict = field(hash=False)  # the layer's arguments (Keras names)
    input_shape: Tuple[int, ...] = ()  # (batch, *spatial, channels), channels_last
    large: bool = False   # big enough that the roofline is a fair yardstick
    quick: bool = False   # part of ``--quick``

    # -- geometry -------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return len(self.input_shape) - 2

    def _arg(self, key: str, default):
        value = self.kwargs.get(key, default)
        return tuple(value) if isinstance(value, (tuple, list)) else (value,) * self.rank

    @property
    def output_shape(self) -> Tuple[int, ...]:
        batch, *spatial, channels = self.input_shape
        k, s = self._arg("kernel_size", 1), self._arg("strides", 1)
        d, p = self._arg("dilation_rate", 1), self.kwargs.get("padding", "valid")
        if self.layer in _TRANSPOSE:
            out = _padding.deconv_output_shape(tuple(spatial), k, s, d, p,
                                               self.kwargs.get("output_padding"))
        else:
            out = _padding.conv_output_shape(tuple(spatial), k, s, d, p)
        if self.layer in _DEPTHWISE:
            filters = channels * self.kwargs.get("depth_multiplier", 1)
        else:
            filters = self.kwargs["filters"]
        return (batch, *out, filters)

    def _weights(self) -> int:
        channels = self.input_shape[-1]
        k = math.prod(self._arg("kernel_size", 1))
        m = self.kwargs.get("depth_multiplier", 1)
        if self.layer in _DEPTHWISE:
            return k * channels * m + channels * m
        if self.layer in _SEPARABLE:
            f = self.kwargs["filters"]
            return k * channels * m + channels * m * f + f
        f = self.kwargs["filters"]
        return k * channels * f // self.kwargs.get("groups", 1) + f

    def flops(self, backward: bool) -> float:
        """2 x multiply-adds of the forward pass (backward: 3x forward)."""
        channels = self.input_shape[-1]
        out = self.output_shape
        k = math.prod(self._arg("kernel_size", 1))
        m = self.kwargs.get("depth_multiplier", 1)
        if self.layer in _TRANSPOSE:
            macs = math.prod(self.input_shape) * k * out[-1]
        elif self.layer in _DEPTHWISE:
            macs = math.prod(out) * k
        elif self.layer in _SEPARABLE:
            macs = math.prod(out[:-1]) * channels * m * (k + out[-1])
        else:
            macs = math.prod(out) * k * channels // self.kwargs.get("groups", 1)
        return 2.0 * macs * (3 if backward else 1)

    def bytes(self, backward: bool) -> float:
        """Compulsory float32 traffic: read x and the weights, write y; the backward pass
        also reads x and dy, writes dx and the weight gradients."""
        x, y, w = math.prod(self.input_shape), math.prod(self.output_shape), self._weights()
        words = x + y + w
        if backward:
            words += 2 * x + y + 2 * w
        return 4.0 * words

    def as_dict(self) -> Dict:
        return {"name": self.name, "source": self.source, "layer": self.layer,
                "kwargs": dict(self.kwargs), "input_shape": list(self.input_shape),
                "output_shape": list(self.output_shape), "large": self.large,
                "quick": self.quick}

    def tiny(self) -> "FamilyShape":
        """The same layer on a tiny input: batch 1, 3 channels (filters 4), each spatial
        axis just long enough for the kernel (valid padding) plus a few steps."""
        k, d = self._arg("kernel_size", 1), self._arg("dilation_rate", 1)
        spatial = tuple(5 + (kk - 1) * dd for kk, dd in zip(k, d))
        kwargs = dict(self.kwargs)
        if "filters" in kwargs:
            kwargs["filters"] = 4
        return replace(self, kwargs=kwargs, input_shape=(1, *spatial, 3), large=False)


SHAPES: List[FamilyShape] = [
    FamilyShape("mobilenet_dw3", "MobileNet v1 depthwise 3x3 same, 112x112x32",
                "DepthwiseConv2D", dict(kernel_size=3, padding="same"), (8, 112, 112, 32),
                large=True, quick=True),
    FamilyShape("mobilenet_dw3_s2", "MobileNet v1 depthwise 3x3 stride 2 same, 56x56x128",
                "DepthwiseConv2D", dict(kernel_size=3, strides=2, padding="same"),
                (8, 56, 56, 128), large=True),
    FamilyShape("mobilenet_dw5", "MobileNet v3 / EfficientNet-B0 depthwise 5x5 same, "
                "28x28x240", "DepthwiseConv2D", dict(kernel_size=5, padding="same"),
                (8, 28, 28, 240), large=True),
    FamilyShape("conformer_dw1d", "Conformer convolution module, depthwise k31 same, "
                "250 steps x 256", "DepthwiseConv1D", dict(kernel_size=31, padding="same"),
                (8, 250, 256), large=True),
    FamilyShape("xception_entry", "Xception entry flow SeparableConv2D 3x3 same, "
                "128 -> 256 ch at 74x74", "SeparableConv2D",
                dict(filters=256, kernel_size=3, padding="same"), (4, 74, 74, 128),
                large=True),
    FamilyShape("xception_middle", "Xception middle flow SeparableConv2D 3x3 same, "
                "728 ch at 19x19", "SeparableConv2D",
                dict(filters=728, kernel_size=3, padding="same"), (8, 19, 19, 728),
                large=True, quick=True),
    FamilyShape("wavenet_causal_d8", "WaveNet residual block: causal Conv1D k2 dilation 8, "
                "64 -> 128 ch, 1 s at 16 kHz", "Conv1D",
                dict(filters=128, kernel_size=2, padding="causal", dilation_rate=8),
                (4, 16000, 64), large=True, quick=True),
    FamilyShape("wavenet_causal_d512", "WaveNet, last dilation of a stack (512)", "Conv1D",
                dict(filters=128, kernel_size=2, padding="causal", dilation_rate=512),
                (4, 16000, 64), large=True),
    FamilyShape("unet_up_2x2", "U-Net Conv2DTranspose 2x2 stride 2, 128 -> 64 ch, "
                "64x64 -> 128x128", "Conv2DTranspose",
                dict(filters=64, kernel_size=2, strides=2), (4, 64, 64, 128), large=True,
                quick=True),
    FamilyShape("unet_up_3x3_same", "decoder Conv2DTranspose 3x3 stride 2 same (odd crop), "
                "64 -> 32 ch", "Conv2DTranspose",
                dict(filters=32, kernel_size=3, strides=2, padding="same"),
                (4, 64, 64, 64), large=True),
    FamilyShape("medical_conv3d", "3D U-Net encoder Conv3D 3x3x3 same, 32 -> 32 ch, "
                "32^3 patch", "Conv3D", dict(filters=32, kernel_size=3, padding="same"),
                (2, 32, 32, 32, 32), large=True, quick=True),
    FamilyShape("medical_conv3d_s2", "3D down-conv 3x3x3 stride 2 same (odd padding), "
                "32 -> 64 ch", "Conv3D",
                dict(filters=64, kernel_size=3, strides=2, padding="same"),
                (2, 32, 32, 32, 32), large=True),
]


# ----------------------------------------------------------------------------- peers

def build(s: FamilyShape):
    """The sepconv layer (seeded weights, bias nonzero), an input and an output gradient."""
    import torch
    import sepconv
    g = torch.Generator().manual_seed(0)
    layer = getattr(sepconv, s.layer)(**s.kwargs, input_shape=s.input_shape[1:])
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.1 if p.dim() == 1 else 1.0))
    x = torch.randn(s.input_shape, generator=g)
    dy = torch.randn(s.output_shape, generator=g)
    return layer, x, dy


def torch_module(layer, s: FamilyShape):
    """``(modules, call_channels_first)``: the plain torch module(s) computing ``layer``
    (its weights copied) on ``(batch, channels, *spatial)`` input of ``s``'s size."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    rank = s.rank
    spatial = s.input_shape[1:-1]
    channels = s.input_shape[-1]
    conv_cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[rank - 1]
    k, st, d = layer.kernel_size, layer.strides, layer.dilation_rate
    pads, crop = None, None

    def conv_padding():
        nonlocal pads
        if layer.padding == "causal":
            pads = ((k[0] - 1) * d[0], 0)
            return 0
        if layer.padding == "same" and max(st) == 1:
            return "same"  # torch's odd element goes after, as TensorFlow's
        if layer.padding == "same":
            amounts = _padding.padding_amounts_nd(spatial, k, st, d, "same")
            if all(a == b for a, b in amounts):
                return tuple(a for a, _ in amounts)
            pads = tuple(p for pair in reversed(amounts) for p in pair)
        return 0

    if s.layer in _TRANSPOSE:
        cls = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[rank - 1]
        # TensorFlow's "same" with stride s crops max(K - s, 0) from torch's full output,
        # the smaller half before: torch's padding crops that half on both sides, and an
        # odd total needs one more step cropped after (torch has no negative output_padding).
        total = [max(kk - ss, 0) if layer.padding == "same" else 0 for kk, ss in zip(k, st)]
        module = cls(channels, layer.filters, k, st, padding=tuple(t // 2 for t in total),
                     dilation=d)
        crop = [t % 2 for t in total]
        modules = [module]
        weight = layer.kernel.detach().permute(rank + 1, rank, *range(rank))
        biases = [layer.bias]
    elif s.layer in _DEPTHWISE or s.layer in _SEPARABLE:
        m = layer.depth_multiplier
        dk = layer.depthwise_kernel.detach()
        module = conv_cls(channels, channels * m, k, st, padding=conv_padding(), dilation=d,
                          groups=channels, bias=s.layer in _DEPTHWISE)
        weight = dk.reshape(*k, 1, channels * m).permute(rank + 1, rank, *range(rank))
        modules, biases = [module], [layer.bias if s.layer in _DEPTHWISE else None]
        if s.layer in _SEPARABLE:
            pointwise = conv_cls(channels * m, layer.filters, 1)
            with torch.no_grad():
                pointwise.weight.copy_(layer.pointwise_kernel.detach().reshape(
                    channels * m, layer.filters).t().reshape(pointwise.weight.shape))
                pointwise.bias.copy_(layer.bias.detach())
            modules.append(pointwise)
    else:
        module = conv_cls(channels, layer.filters, k, st, padding=conv_padding(), dilation=d,
                          groups=layer.groups)
        weight = layer.kernel.detach().permute(rank + 1, rank, *range(rank))
        modules, biases = [module], [layer.bias]
    with torch.no_grad():
        modules[0].weight.copy_(weight)
        if biases[0] is not None:
            modules[0].bias.copy_(biases[0].detach())

    def call_first(x):
        if pads is not None:
            x = F.pad(x, pads)
        for mod in modules:
            x = mod(x)
        if crop and any(crop):
            x = x[(slice(None), slice(None)) + tuple(slice(0, n - c) for n, c
                                                     in zip(x.shape[2:], crop))]
        return x
    return modules, call_first


class LayerPeer(_TorchPeer):
    """The sepconv layer on channels_last data."""

    name = "sepconv"

    def setup(self, s: FamilyShape) -> Dict[str, Callable[[], object]]:
        import torch
        import sepconv
        self.version = f"sepconv {sepconv.__version__}, torch {torch.__version__}"
        layer, x, dy = build(s)
        xg = x.clone().requires_grad_()
        return {"fwd": _inference(layer, x),
                "fb": _train_step(layer, xg, dy, list(layer.parameters()))}


class TorchModulePeer(_TorchPeer):
    """The plain torch module: ``channels_first=False`` on the same channels_last tensor
    (``movedim`` in and out, counted), ``True`` on channels_first contiguous data."""

    def __init__(self, channels_first: bool = False):
        self.channels_first = channels_first
        self.name = "torch-nc" if channels_first else "torch"

    def setup(self, s: FamilyShape) -> Dict[str, Callable[[], object]]:
        import torch
        self.version = f"torch {torch.__version__}"
        layer, x, dy = build(s)
        modules, call_first = torch_module(layer, s)
        if self.channels_first:
            x, dy, forward = x.movedim(-1, 1).contiguous(), dy.movedim(-1, 1).contiguous(), \
                call_first
        else:
            def forward(x):
                return call_first(x.movedim(-1, 1)).movedim(1, -1)
        with torch.no_grad():  # the same numbers, or the comparison means nothing
            want = layer(x.movedim(1, -1) if self.channels_first else x)
            got = forward(x)
            torch.testing.assert_close(got.movedim(1, -1) if self.channels_first else got,
                                       want, atol=1e-3 * max(1.0, float(want.abs().max())),
                                       rtol=1e-4)
        params = [p for mod in modules for p in mod.parameters()]
        xg = x.clone().requires_grad_()
        return {"fwd": _inference(forward, x), "fb": _train_step(forward, xg, dy, params)}


def peers() -> List[object]:
    """The in-process peers of this suite (tf-keras is added by the driver)."""
    return [LayerPeer(), TorchModulePeer(False), TorchModulePeer(True)]


def memory_peer(name: str):
    return {"sepconv": LayerPeer, "torch": lambda: TorchModulePeer(False),
            "torch-nc": lambda: TorchModulePeer(True)}[name]()

