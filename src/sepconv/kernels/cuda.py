"""The CUDA kernel: cuDNN's depthwise convolution and a cuBLAS GEMM, no layout copies.

On an H200 (2026-11-26, ``bench/gpu.py --reps 10 --warmup 3``, torch 2.11, triton 3.6)
the best two-kernel torch composition beat the fused Triton kernel on every suite shape
(Triton / composition: 0.26-0.85 forward, 0.35-0.80 forward + backward, float32 and
bfloat16), so this is what ``functional`` runs on CUDA tensors.  It is the composition
``bench/gpu.py`` calls ``nhwc+mm`` for channels_last data and ``ncl`` for channels_first,
each on the layout the data already has:

- channels_last ``(batch, steps, channels)``: ``x.transpose(1, 2).unsqueeze(2)`` *is* a
  ``(batch, channels, 1, steps)`` tensor in ``torch.channels_last`` memory format (a view,
  no copy), which cuDNN's NHWC depthwise convolution reads directly; its result, also
  NHWC, is the ``(batch * out_steps, channels * M)`` matrix the pointwise ``addmm``
  multiplies, and the product already is the ``(batch, out_steps, filters)`` output.
- channels_first ``(batch, channels, steps)``: grouped ``conv1d`` then a 1x1 ``conv1d``.

Autograd differentiates both (cuDNN's and cuBLAS' own backward kernels, through views:
no transposes materialised).  Symmetric padding goes to cuDNN; TensorFlow's asymmetric
``same`` / ``causal`` padding costs one ``F.pad`` of the input.  Pure torch, so it also
runs (and is tested against the reference) on the CPU.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def separable_conv1d(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor,
                     bias: Optional[torch.Tensor], *, stride: int, dilation: int,
                     pad_left: int, pad_right: int, channels_last: bool) -> torch.Tensor:
    """Same contract as :func:`sepconv.kernels.reference.separable_conv1d`."""
    k, c, m = depthwise.shape
    weight = depthwise.permute(1, 2, 0).reshape(c * m, 1, k)  # output channel c*M + m
    symmetric = pad_left == pad_right
    if not channels_last:
        if not symmetric:
            x = F.pad(x, (pad_left, pad_right))
        z = F.conv1d(x, weight, None, stride, pad_left if symmetric else 0, dilation, c)
        return F.conv1d(z, pointwise.t().unsqueeze(-1), bias)
    n = x.shape[0]
    x4 = x.transpose(1, 2).unsqueeze(2)              # (N, C, 1, L), NHWC in memory
    if not symmetric:
        x4 = F.pad(x4, (pad_left, pad_right))
    z = F.conv2d(x4, weight.unsqueeze(2), None, (1, stride),
                 (0, pad_left if symmetric else 0), (1, dilation), c)
    rows = z.permute(0, 2, 3, 1).reshape(-1, c * m)   # a view when cuDNN returned NHWC
    y = rows @ pointwise if bias is None else torch.addmm(bias, rows, pointwise)
    return y.view(n, -1, pointwise.shape[1])
