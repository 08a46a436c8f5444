"""The CUDA kernel: cuDNN's depthwise convolution and a cuBLAS GEMM, chosen per shape.

Two compositions of torch's own kernels, both differentiated by autograd (cuDNN's and
cuBLAS' backward kernels):

- ``nhwc_mm`` (channels_last data): ``x.transpose(1, 2).unsqueeze(2)`` *is* a
  ``(batch, channels, 1, steps)`` tensor in ``torch.channels_last`` memory format (a view,
  no copy), which cuDNN's NHWC depthwise convolution reads directly; its NHWC result is
  the ``(batch * out_steps, channels * M)`` matrix that one ``addmm`` multiplies into the
  ``(batch, out_steps, filters)`` output.  TensorFlow's asymmetric padding is one
  ``F.pad`` along the steps of the ``(batch, steps, channels)`` tensor, so the padded
  input is NHWC too (padding the 4-D view gave an NCHW tensor that cuDNN transposed
  three times per step in bfloat16: H200, 2026-11-26).
- ``ncl``: grouped ``conv1d`` then a 1x1 ``conv1d`` on ``(batch, channels, steps)``
  (the reference kernel's composition).  channels_last data costs one transposing copy
  of ``x`` (fused with the padding) and the result is returned as a transposed view.

Which is faster depends on the GPU, the dtype and the shape: on an H200 (2026-11-26,
``bench/gpu.py``, torch 2.11) cuDNN's NHWC depthwise kernels were fast in bfloat16 but,
in float32, 3-11x slower than the NCL ones for long kernels (k >= 33), dilations and
depth multipliers, while ``nhwc_mm`` won for short kernels on wide channels (k4, 1536
channels) where the transposes cost more than the depthwise step.  No fixed rule held
for forward + backward, so the choice is measured, like ``torch.backends.cudnn.benchmark``:
the first call of each (shape class, dtype, layout, geometry, training or not) times both
compositions on scratch copies of its inputs (forward, plus backward when gradients are
needed) and remembers the faster.  Measuring is skipped, and :func:`static_choice` used
instead, while a CUDA graph is being captured, under ``torch.compile`` tracing, for
channels_first data (``ncl`` needs no copy there) and with ``SEPCONV_CUDA_TUNE=0``.

Pure torch, so it also runs (and is tested against the reference) on the CPU, where the
measurement uses the host clock.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F

VARIANTS = ("nhwc_mm", "ncl")


def _depthwise_weight(depthwise: torch.Tensor) -> torch.Tensor:
    k, c, m = depthwise.shape
    return depthwise.permute(1, 2, 0).reshape(c * m, 1, k)  # output channel c*M + m


def nhwc_mm(x, depthwise, pointwise, bias, *, stride, dilation, pad_left, pad_right):
    """channels_last ``x`` ``(batch, steps, channels)``: NHWC depthwise + one GEMM."""
    k, c, m = depthwise.shape
    symmetric = pad_left == pad_right
    if not symmetric:  # pad the steps of (B, L, C): the result is NHWC for cuDNN
        x = F.pad(x, (0, 0, pad_left, pad_right))
    x4 = x.transpose(1, 2).unsqueeze(2)  # (N, C, 1, L), NHWC in memory when x is contiguous
    z = F.conv2d(x4, _depthwise_weight(depthwise).unsqueeze(2), None, (1, stride),
                 (0, pad_left if symmetric else 0), (1, dilation), c)
    rows = z.permute(0, 2, 3, 1).reshape(-1, c * m)  # a view when cuDNN returned NHWC
    y = rows @ pointwise if bias is None else torch.addmm(bias, rows, pointwise)
    return y.view(x.shape[0], -1, pointwise.shape[1])


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


def static_choice(x: torch.Tensor, depthwise: torch.Tensor, stride: int, dilation: int,
                  channels_last: bool) -> str:
    """The choice without measuring, from the H200 run above: ``ncl`` for channels_first
    data, dilations, depth multipliers and, in float32, kernels longer than 16 steps;
    else ``nhwc_mm``."""
    k, c, m = depthwise.shape
    if not channels_last or dilation > 1 or m > 1:
        return "ncl"
    if x.dtype in (torch.float32, torch.float64) and k > 16:
        return "ncl"
    return "nhwc_mm"


_CHOICES: Dict[Tuple, str] = {}


def _bucket(n: int) -> int:
    """Sizes rounded up to a power of two: one measurement serves nearby lengths."""
    return 1 << max(0, int(n) - 1).bit_length()


def _key(x, depthwise, pointwise, bias, stride, dilation, pad_left, pad_right, grad):
    batch, steps = x.shape[0], x.shape[1]
    return (x.device, x.dtype, _bucket(batch), _bucket(steps), tuple(depthwise.shape),
            pointwise.shape[1], bias is not None, stride, dilation, pad_left, pad_right,
            x.is_contiguous(), grad)


def _tuning_allowed(x: torch.Tensor) -> bool:
    if os.environ.get("SEPCONV_CUDA_TUNE", "1").strip() == "0":
        return False
    if torch.compiler.is_compiling():
        return False
    return not (x.is_cuda and torch.cuda.is_current_stream_capturing())


def _time(fn: Callable[[], None], device: torch.device, reps: int = 5) -> float:
    """Median seconds of ``fn`` after one untimed call (CUDA events on a GPU)."""
    fn()
    samples = []
    for _ in range(reps):
        if device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    return sorted(samples)[len(samples) // 2]


def measure(x, depthwise, pointwise, bias, geometry: dict, grad: bool) -> Dict[str, float]:
    """Seconds per call of each variant on scratch copies of the inputs (forward, and
    backward when ``grad``)."""
    tensors = [t.detach().clone() for t in (x, depthwise, pointwise)]
    tensors.append(None if bias is None else bias.detach().clone())
    if grad:
        for t in tensors:
            if t is not None:
                t.requires_grad_(True)
    dy = None
    times = {}
    for name in VARIANTS:
        fn = nhwc_mm if name == "nhwc_mm" else ncl

        def call():
            if not grad:
                with torch.no_grad():
                    fn(*tensors, **geometry)
                return
            nonlocal dy
            y = fn(*tensors, **geometry)
            if dy is None:
                dy = torch.randn_like(y)
            y.backward(dy)
            for t in tensors:
                if t is not None:
                    t.grad = None

        times[name] = _time(call, x.device)
    return times


def choose(x, depthwise, pointwise, bias, *, stride, dilation, pad_left, pad_right,
           channels_last) -> str:
    """The variant this call runs: measured once per shape class (see the module doc)."""
    if not channels_last:
        return "ncl"
    if not _tuning_allowed(x):
        return static_choice(x, depthwise, stride, dilation, channels_last)
    grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, depthwise, pointwise, bias))
    key = _key(x, depthwise, pointwise, bias, stride, dilation, pad_left, pad_right, grad)
    choice = _CHOICES.get(key)
    if choice is None:
        geometry = dict(stride=stride, dilation=dilation, pad_left=pad_left,
                        pad_right=pad_right)
        times = measure(x, depthwise, pointwise, bias, geometry, grad)
        choice = _CHOICES[key] = min(times, key=times.get)
    return choice


def separable_conv1d(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor,
                     bias: Optional[torch.Tensor], *, stride: int, dilation: int,
                     pad_left: int, pad_right: int, channels_last: bool) -> torch.Tensor:
    """Same contract as :func:`sepconv.kernels.reference.separable_conv1d`."""
    geometry = dict(stride=stride, dilation=dilation, pad_left=pad_left, pad_right=pad_right)
    variant = choose(x, depthwise, pointwise, bias, channels_last=channels_last, **geometry)
    if variant == "nhwc_mm":
        return nhwc_mm(x, depthwise, pointwise, bias, **geometry)
    return ncl(x, depthwise, pointwise, bias, channels_last=channels_last, **geometry)
