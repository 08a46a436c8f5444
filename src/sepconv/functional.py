"""Pure tensor functions.  ``separable_conv1d`` validates, pads and picks one kernel.

This is the only place that branches on device, dtype and shape.  The choice follows
measured rules (see ``bench/``); ``SEPCONV_KERNEL=reference|cpu|triton`` forces one
kernel for debugging.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Callable, Optional, Sequence, Union

import torch

from . import padding as _padding
from .kernels import reference as _reference

IntOrTuple = Union[int, Sequence[int]]

KERNELS = ("reference", "cpu", "triton")


def _single(value: IntOrTuple, name: str) -> int:
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"Invalid value for argument `{name}`. Expected an int or a "
                             f"tuple of 1 int. Received {name}={value!r}")
        value = value[0]
    return int(value)


def separable_conv1d(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor,
                     bias: Optional[torch.Tensor] = None, strides: IntOrTuple = 1,
                     padding: str = "valid", dilation_rate: IntOrTuple = 1,
                     data_format: str = "channels_last") -> torch.Tensor:
    """Keras' separable 1D convolution (no activation).

    Args:
        x: ``(batch, steps, channels)`` for ``"channels_last"``, ``(batch, channels, steps)``
            for ``"channels_first"``.
        depthwise: ``(kernel_size, channels, depth_multiplier)``, Keras' layout.
        pointwise: ``(1, channels * depth_multiplier, filters)`` or
            ``(channels * depth_multiplier, filters)``.
        bias: ``(filters,)`` or ``None``.
        strides, dilation_rate: ints (or 1-tuples); not both greater than 1.
        padding: ``"valid"``, ``"same"`` or ``"causal"`` (TensorFlow's arithmetic).
        data_format: ``"channels_last"`` or ``"channels_first"``.

    Returns:
        ``(batch, out_steps, filters)`` or ``(batch, filters, out_steps)``.
    """
    stride = _single(strides, "strides")
    dilation = _single(dilation_rate, "dilation_rate")
    padding = str(padding).lower()
    if padding not in _padding.PADDINGS:
        raise ValueError(f"Invalid value for argument `padding`. Expected one of "
                         f"{_padding.PADDINGS}. Received padding={padding!r}")
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError("Invalid value for argument `data_format`. Expected "
                         "'channels_last' or 'channels_first'. "
                         f"Received data_format={data_format!r}")
    if stride < 1 or dilation < 1:
        raise ValueError(f"`strides` and `dilation_rate` must be >= 1. Received "
                         f"strides={stride}, dilation_rate={dilation}")
    if stride > 1 and dilation > 1:
        raise ValueError("`strides > 1` is incompatible with `dilation_rate > 1`. "
                         f"Received strides={stride}, dilation_rate={dilation}")
    if pointwise.dim() == 3:
        pointwise = pointwise[0]
    if depthwise.dim() != 3 or pointwise.dim() != 2:
        raise ValueError("Expected depthwise of shape (kernel_size, channels, depth_multiplier) "
                         "and pointwise of shape (1, channels * depth_multiplier, filters). "
                         f"Received {tuple(depthwise.shape)} and {tuple(pointwise.shape)}")
    k, c, m = depthwise.shape
    if pointwise.shape[0] != c * m:
        raise ValueError(f"pointwise has {pointwise.shape[0]} input channels, expected "
                         f"channels * depth_multiplier = {c * m}")
    if bias is not None and tuple(bias.shape) != (pointwise.shape[1],):
        raise ValueError(f"bias must have shape ({pointwise.shape[1]},). "
                         f"Received {tuple(bias.shape)}")
    channels_last = data_format == "channels_last"
    if x.dim() != 3:
        raise ValueError(f"Input must be 3D, {_layout(channels_last)}. "
                         f"Received input of shape {tuple(x.shape)}")
    length = x.shape[1] if channels_last else x.shape[2]
    channels = x.shape[2] if channels_last else x.shape[1]
    if channels != c:
        raise ValueError(f"Input has {channels} channels, expected {c} "
                         f"({_layout(channels_last)}). Received input of shape {tuple(x.shape)}")
    out_len = _padding.conv_output_length(length, k, stride, dilation, padding)
    if out_len <= 0:
        raise ValueError(f"Input of shape {tuple(x.shape)} is too short for kernel_size={k}, "
                         f"dilation_rate={dilation}, padding={padding!r}: the output would "
                         f"have {out_len} steps")
    pad_left, pad_right = _padding.padding_amounts(length, k, stride, dilation, padding)
    kernel = _pick_kernel(x, depthwise, pointwise, stride, dilation, out_len)
    return kernel(x, depthwise, pointwise, bias, stride=stride, dilation=dilation,
                  pad_left=pad_left, pad_right=pad_right, channels_last=channels_last)


def _ints(value: IntOrTuple, rank: int, name: str) -> tuple:
    """An int or a ``rank``-tuple of ints, each >= 1."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * rank
    if len(values) != rank:
        raise ValueError(f"Invalid value for argument `{name}`. Expected an int or a tuple "
                         f"of {rank} ints. Received {name}={value!r}")
    values = tuple(int(v) for v in values)
    if min(values) < 1:
        raise ValueError(f"Invalid value for argument `{name}`. Expected values >= 1. "
                         f"Received {name}={value!r}")
    return values


def _check_geometry(padding: str, data_format: str, rank: int):
    padding = str(padding).lower()
    allowed = _padding.PADDINGS if rank == 1 else ("valid", "same")
    if padding not in allowed:
        raise ValueError(f"Invalid value for argument `padding`. Expected one of {allowed}. "
                         f"Received padding={padding!r}")
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError("Invalid value for argument `data_format`. Expected "
                         "'channels_last' or 'channels_first'. "
                         f"Received data_format={data_format!r}")
    return padding, data_format == "channels_last"


def conv(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor] = None,
         strides: IntOrTuple = 1, padding: str = "valid", dilation_rate: IntOrTuple = 1,
         groups: int = 1, data_format: str = "channels_last") -> torch.Tensor:
    """Keras' ``Conv1D`` / ``Conv2D`` / ``Conv3D`` (no activation); the rank is the kernel's.

    Args:
        x: ``(batch, *spatial, channels)`` for ``"channels_last"``,
            ``(batch, channels, *spatial)`` for ``"channels_first"``.
        kernel: ``(*kernel_size, channels // groups, filters)``, Keras' layout.
        bias: ``(filters,)`` or ``None``.
        strides, dilation_rate: an int or one per spatial axis; TensorFlow refuses
            ``strides > 1`` on any axis with ``dilation_rate > 1`` on any axis.
        padding: ``"valid"``, ``"same"``, or ``"causal"`` (1D only); TensorFlow's arithmetic.
        groups: channel groups; must divide both the channels and ``filters``.
        data_format: ``"channels_last"`` or ``"channels_first"``.

    Returns:
        ``(batch, *out_spatial, filters)`` or ``(batch, filters, *out_spatial)``.
    """
    rank = kernel.dim() - 2
    if rank not in (1, 2, 3):
        raise ValueError("Expected a kernel of shape (*kernel_size, channels // groups, "
                         f"filters) with 1 to 3 spatial axes. Received {tuple(kernel.shape)}")
    stride = _ints(strides, rank, "strides")
    dilation = _ints(dilation_rate, rank, "dilation_rate")
    padding, channels_last = _check_geometry(padding, data_format, rank)
    if max(stride) > 1 and max(dilation) > 1:
        raise ValueError("`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                         f"Received strides={stride}, dilation_rate={dilation}")
    *ksize, in_per_group, filters = kernel.shape
    layout = _layout_nd(rank, channels_last)
    if x.dim() != rank + 2:
        raise ValueError(f"Input must be {rank + 2}D, {layout}. "
                         f"Received input of shape {tuple(x.shape)}")
    channels = x.shape[-1] if channels_last else x.shape[1]
    spatial = tuple(x.shape[1:-1] if channels_last else x.shape[2:])
    if groups < 1 or channels % groups or filters % groups:
        raise ValueError(f"Invalid value for argument `groups`. Expected a divisor of the "
                         f"input channels ({channels}) and of filters ({filters}). "
                         f"Received groups={groups}")
    if channels // groups != in_per_group:
        raise ValueError(f"Input has {channels} channels, the kernel expects "
                         f"{in_per_group * groups} ({layout}, groups={groups}). "
                         f"Received input of shape {tuple(x.shape)}")
    if bias is not None and tuple(bias.shape) != (filters,):
        raise ValueError(f"bias must have shape ({filters},). Received {tuple(bias.shape)}")
    out = _padding.conv_output_shape(spatial, ksize, stride, dilation, padding)
    if min(out) <= 0:
        raise ValueError(f"Input of shape {tuple(x.shape)} is too small for kernel_size="
                         f"{tuple(ksize)}, dilation_rate={dilation}, padding={padding!r}: "
                         f"the output would have shape {out}")
    pads = _padding.padding_amounts_nd(spatial, ksize, stride, dilation, padding)
    return _reference.conv(x, kernel, bias, strides=stride, dilation=dilation, pads=pads,
                           groups=groups, channels_last=channels_last)


def _layout_nd(rank: int, channels_last: bool) -> str:
    axes = ("steps",) if rank == 1 else ("rows", "cols") if rank == 2 else \
        ("depth", "rows", "cols")
    return (f"(batch, {', '.join(axes)}, channels)" if channels_last
            else f"(batch, channels, {', '.join(axes)})")


def _layout(channels_last: bool) -> str:
    return "(batch, steps, channels)" if channels_last else "(batch, channels, steps)"


def _pick_kernel(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor,
                 stride: int, dilation: int, out_len: int) -> Callable:
    """The one place that chooses a kernel, from device, dtype and shape."""
    forced = os.environ.get("SEPCONV_KERNEL", "").strip().lower()
    if forced:
        if forced not in KERNELS:
            raise ValueError(f"SEPCONV_KERNEL must be one of {KERNELS}. Received {forced!r}")
        return _load(forced)
    if x.is_cuda and x.dtype in (torch.float32, torch.float16, torch.bfloat16) \
            and _triton_installed():
        return _load("triton")
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16, torch.float16):
        # bench/README.md (python -m sepconv bench): cpu/composition geomean 0.40 fwd, 0.36
        # fwd+bwd, every shape faster (worst 0.97, GEMM-bound); half precision 10-20x faster
        # (the composition's half GEMMs are emulated here).  float64: a tie, reference.
        return _load("cpu")
    return _reference.separable_conv1d


@functools.lru_cache(maxsize=None)
def _triton_installed() -> bool:
    """Looked up once, without importing triton (``import sepconv`` stays free of it)."""
    return importlib.util.find_spec("triton") is not None


def _load(name: str) -> Callable:
    if name == "reference":
        return _reference.separable_conv1d
    if name == "cpu":
        from .kernels import cpu
        return cpu.separable_conv1d
    from .kernels import triton_sepconv
    return triton_sepconv.separable_conv1d


def conv_transpose(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor] = None,
                   strides: IntOrTuple = 1, padding: str = "valid",
                   output_padding: Optional[IntOrTuple] = None,
                   dilation_rate: IntOrTuple = 1,
                   data_format: str = "channels_last") -> torch.Tensor:
    """Keras' ``Conv1DTranspose`` / ``Conv2DTranspose`` / ``Conv3DTranspose`` (no
    activation); the rank is the kernel's.

    TensorFlow's definition: the gradient, with respect to its input, of the convolution
    (same kernel, strides, dilation, padding) from the output shape to the input shape.
    The output shape is tf-keras' (:func:`sepconv.padding.deconv_output_length`); one that
    does not convolve back to the input shape (``"same"``, an even kernel span and
    ``output_padding=0``, say) is refused, as TensorFlow refuses it.

    Args:
        x: ``(batch, *spatial, channels)`` for ``"channels_last"``,
            ``(batch, channels, *spatial)`` for ``"channels_first"``.
        kernel: ``(*kernel_size, filters, channels)``, Keras' layout.
        bias: ``(filters,)`` or ``None``.
        strides, dilation_rate: an int or one per spatial axis; not ``strides > 1``
            together with ``dilation_rate > 1`` (TensorFlow refuses it).
        padding: ``"valid"`` or ``"same"``.
        output_padding: ``None`` (tf-keras infers the length) or an int or one per axis,
            each ``>= 0`` and smaller than that axis' stride.
        data_format: ``"channels_last"`` or ``"channels_first"``.

    Returns:
        ``(batch, *out_spatial, filters)`` or ``(batch, filters, *out_spatial)``.
    """
    rank = kernel.dim() - 2
    if rank not in (1, 2, 3):
        raise ValueError("Expected a kernel of shape (*kernel_size, filters, channels) with "
                         f"1 to 3 spatial axes. Received {tuple(kernel.shape)}")
    stride = _ints(strides, rank, "strides")
    dilation = _ints(dilation_rate, rank, "dilation_rate")
    padding, channels_last = _check_geometry(padding, data_format, 2)
    if max(stride) > 1 and max(dilation) > 1:
        raise ValueError("`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                         f"Received strides={stride}, dilation_rate={dilation}")
    out_pad = None
    if output_padding is not None:
        out_pad = tuple(output_padding) if isinstance(output_padding, (tuple, list)) \
            else (output_padding,) * rank
        if len(out_pad) != rank or any(int(p) != p or p < 0 for p in out_pad):
            raise ValueError(f"Invalid value for argument `output_padding`. Expected None, an "
                             f"int or a tuple of {rank} ints >= 0. "
                             f"Received output_padding={output_padding!r}")
        out_pad = tuple(int(p) for p in out_pad)
        if any(p >= s for p, s in zip(out_pad, stride)):
            raise ValueError("Invalid value for argument `output_padding`. Strides must be "
                             f"greater than output padding. Received strides={stride}, "
                             f"output_padding={out_pad}")
    *ksize, filters, in_channels = kernel.shape
    layout = _layout_nd(rank, channels_last)
    if x.dim() != rank + 2:
        raise ValueError(f"Input must be {rank + 2}D, {layout}. "
                         f"Received input of shape {tuple(x.shape)}")
    channels = x.shape[-1] if channels_last else x.shape[1]
    spatial = tuple(x.shape[1:-1] if channels_last else x.shape[2:])
    if channels != in_channels:
        raise ValueError(f"Input has {channels} channels, the kernel expects {in_channels} "
                         f"({layout}). Received input of shape {tuple(x.shape)}")
    if bias is not None and tuple(bias.shape) != (filters,):
        raise ValueError(f"bias must have shape ({filters},). Received {tuple(bias.shape)}")
    problem = _padding.deconv_mismatch(spatial, ksize, stride, dilation, padding, out_pad)
    if problem is not None:
        raise ValueError(f"Input of shape {tuple(x.shape)} cannot be transposed-convolved "
                         f"with kernel_size={tuple(ksize)}, strides={stride}, dilation_rate="
                         f"{dilation}, padding={padding!r}, output_padding={out_pad}: "
                         f"{problem}")
    out = _padding.deconv_output_shape(spatial, ksize, stride, dilation, padding, out_pad)
    pads = _padding.padding_amounts_nd(out, ksize, stride, dilation, padding)
    return _reference.conv_transpose(x, kernel, bias, strides=stride, dilation=dilation,
                                     pads=pads, out_spatial=out, channels_last=channels_last)
