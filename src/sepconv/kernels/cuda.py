"""The CUDA kernel: cuDNN's depthwise convolution and a cuBLAS GEMM, chosen per shape.

Three compositions of torch's own kernels, each differentiated by autograd (cuDNN's and
cuBLAS' backward kernels):

- ``nhwc_mm`` (channels_last data): ``x.transpose(1, 2).unsqueeze(2)`` *is* a
  ``(batch, channels, 1, steps)`` tensor in ``torch.channels_last`` memory format (a view,
  no copy), which cuDNN's NHWC depthwise convolution reads directly; its NHWC result is
  the ``(batch * out_steps, channels * M)`` matrix that one ``addmm`` multiplies into the
  ``(batch, out_steps, filters)`` output.  TensorFlow's asymmetric padding is one
  ``F.pad`` along the steps of the ``(batch, steps, channels)`` tensor, so the padded
  input is NHWC too (padding the 4-D view gave an NCHW tensor that cuDNN transposed
  three times per step in bfloat16: H200, 2026-11-26).
- ``nhwc``: the same depthwise step, then the pointwise step as a 1x1 NHWC ``conv2d``
  whose NHWC result is the ``(batch, out_steps, filters)`` output (a view).  cuDNN, so in
  TF32 under torch's default ``torch.backends.cudnn.allow_tf32 = True``, like every torch
  convolution; ``nhwc_mm``'s ``addmm`` follows ``torch.backends.cuda.matmul.allow_tf32``
  (default False) instead.
- ``ncl``: grouped ``conv1d`` then a 1x1 ``conv1d`` on ``(batch, channels, steps)``
  (the reference kernel's composition).  channels_last data costs one transposing copy
  of ``x`` (fused with the padding) and the result is returned as a transposed view.

Which is faster depends on the dtype, the shape and whether gradients are needed.  Two
runs on an H200 (2026-11-26, ``bench/gpu.py --skip-triton``, torch 2.11, cuDNN 9) gave
the rule in :func:`choice`: cuDNN's NHWC depthwise kernels are fast in bfloat16 but in
float32 3-11x slower than the NCL ones for long kernels (k75, k87), and their float32
weight gradient is slow for most shapes, while ``nhwc_mm`` wins where the transposes
would cost more than the depthwise step (1536 channels, or a stride).  Dilations and
depth multipliers are faster in NCL in every dtype.  Under torch's defaults (cuDNN in
TF32) float32 behaves otherwise (H200, 2026-11-27, ``bench/gpu.py --dtypes
float32_torch_default``, ``bench/gpu-h200-20261127-rule.json``): ``ncl``'s TF32 pointwise
wins every training step (up to 4x over ``nhwc_mm``: 64 x 4096 steps x 1536 channels) and
long kernels; ``nhwc`` wins inference of wide (>= 512 channels: 1.5-3.6x) or large
(channels x rows >= 2**26) layers, and where the GEMM is large (channels x filters x rows
> 2**30: citrinet 384 x 384 x 12800 rows 1.1-1.8x, 256 x 256 x 51200 strided 1.3x in runs
2 and 3; below it the two tie or ``nhwc_mm`` wins by up to 20%).  (Measuring each shape's
choice at its first call, as ``torch.backends.cudnn.benchmark`` does, was tried: timings of
single calls of these sub-millisecond, launch-bound compositions were too noisy to choose
by.)

Pure torch, so it also runs (and is tested against the reference) on the CPU.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def _depthwise_weight(depthwise: torch.Tensor) -> torch.Tensor:
    k, c, m = depthwise.shape
    return depthwise.permute(1, 2, 0).reshape(c * m, 1, k)  # output channel c*M + m


def _nhwc_depthwise(x, depthwise, *, stride, dilation, pad_left, pad_right):
    """cuDNN's NHWC depthwise convolution of channels_last ``x`` ``(batch, steps,
    channels)``: a ``(batch, channels * M, 1, out_steps)`` tensor, NHWC in memory."""
    k, c, m = depthwise.shape
    symmetric = pad_left == pad_right
    if not symmetric:  # pad the steps of (B, L, C): the result is NHWC for cuDNN
        x = F.pad(x, (0, 0, pad_left, pad_right))
    x4 = x.transpose(1, 2).unsqueeze(2)  # (N, C, 1, L), NHWC in memory when x is contiguous
    return F.conv2d(x4, _depthwise_weight(depthwise).unsqueeze(2), None, (1, stride),
                    (0, pad_left if symmetric else 0), (1, dilation), c)


def _channels_last_only(name: str, channels_last: bool) -> None:
    if not channels_last:
        raise ValueError(f"kernels.cuda.{name} takes channels_last data (batch, steps, "
                         "channels); channels_first goes to ncl")


def nhwc_mm(x, depthwise, pointwise, bias, *, stride, dilation, pad_left, pad_right,
            channels_last=True):
    """channels_last ``x`` ``(batch, steps, channels)``: NHWC depthwise + one GEMM."""
    _channels_last_only("nhwc_mm", channels_last)
    c_m = depthwise.shape[1] * depthwise.shape[2]
    z = _nhwc_depthwise(x, depthwise, stride=stride, dilation=dilation, pad_left=pad_left,
                        pad_right=pad_right)
    rows = z.permute(0, 2, 3, 1).reshape(-1, c_m)  # a view when cuDNN returned NHWC
    y = rows @ pointwise if bias is None else torch.addmm(bias, rows, pointwise)
    return y.view(x.shape[0], -1, pointwise.shape[1])


def nhwc(x, depthwise, pointwise, bias, *, stride, dilation, pad_left, pad_right,
         channels_last=True):
    """channels_last ``x``: NHWC depthwise + a 1x1 NHWC ``conv2d`` (cuDNN, so TF32 where
    ``torch.backends.cudnn.allow_tf32`` allows it, as every torch convolution)."""
    _channels_last_only("nhwc", channels_last)
    z = _nhwc_depthwise(x, depthwise, stride=stride, dilation=dilation, pad_left=pad_left,
                        pad_right=pad_right)
    y = F.conv2d(z, pointwise.t()[:, :, None, None], bias)  # (N, F, 1, L_out), NHWC
    return y.squeeze(2).transpose(1, 2)  # (batch, out_steps, filters): a view of NHWC


def ncl(x, depthwise, pointwise, bias, *, stride, dilation, pad_left, pad_right,
        channels_last=True):
    """Grouped ``conv1d`` + 1x1 ``conv1d`` on ``(batch, channels, steps)``; channels_last
    ``x`` is transposed (one copy, with the padding) and the result transposed back (a view)."""
    c = depthwise.shape[1]
    symmetric = pad_left == pad_right
    if channels_last:
        x = x.transpose(1, 2)
        x = (x if symmetric else F.pad(x, (pad_left, pad_right))).contiguous()
    elif not symmetric:
        x = F.pad(x, (pad_left, pad_right))
    z = F.conv1d(x, _depthwise_weight(depthwise), None, stride,
                 pad_left if symmetric else 0, dilation, c)
    y = F.conv1d(z, pointwise.t().unsqueeze(-1), bias)
    return y.transpose(1, 2) if channels_last else y


def choice(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor,
           bias: Optional[torch.Tensor], *, stride: int, dilation: int,
           channels_last: bool, training: Optional[bool] = None) -> str:
    """``"nhwc_mm"``, ``"nhwc"`` or ``"ncl"`` for this call (the rule of the module doc).
    ``training``: whether autograd records the call (``None``: found out here).  Under
    CUDA autocast the rule reads autocast's dtype, the one the convolutions run in."""
    k, c, m = depthwise.shape
    if not channels_last or dilation > 1 or m > 1:
        return "ncl"
    dtype = x.dtype
    if dtype == torch.float32 and x.is_cuda and torch.is_autocast_enabled("cuda"):
        dtype = torch.get_autocast_dtype("cuda")
    if dtype not in (torch.float32, torch.float64):
        return "nhwc_mm"
    if training is None:
        training = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (x, depthwise, pointwise, bias))
    if dtype == torch.float32 and torch.backends.cudnn.allow_tf32:
        # torch's default: cuDNN's convolutions in TF32, cuBLAS' matmuls not, so the GEMM
        # of nhwc_mm is the one IEEE float32 step (and 2-4x slower than cuDNN's TF32 1x1)
        if training or k > 40:
            return "ncl"
        rows = x.shape[0] * x.shape[1]
        big = c >= 512 or c * rows >= 1 << 26 or c * pointwise.shape[1] * rows > 1 << 30
        return "nhwc" if big else "nhwc_mm"
    if training:
        return "nhwc_mm" if c >= 1024 or stride > 1 else "ncl"
    return "ncl" if k > 40 else "nhwc_mm"


#: The compositions by name, one signature (the kernel contract's, ``channels_last``
#: included): what ``functional`` calls once it has remembered a call's :func:`choice`.
COMPOSITIONS = {"nhwc_mm": nhwc_mm, "nhwc": nhwc, "ncl": ncl}


def separable_conv1d(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor,
                     bias: Optional[torch.Tensor], *, stride: int, dilation: int,
                     pad_left: int, pad_right: int, channels_last: bool) -> torch.Tensor:
    """Same contract as :func:`sepconv.kernels.reference.separable_conv1d`; the composition
    :func:`choice` picks, asked at every call."""
    variant = choice(x, depthwise, pointwise, bias, stride=stride, dilation=dilation,
                     channels_last=channels_last)
    return COMPOSITIONS[variant](x, depthwise, pointwise, bias, stride=stride,
                                 dilation=dilation, pad_left=pad_left, pad_right=pad_right,
                                 channels_last=channels_last)
