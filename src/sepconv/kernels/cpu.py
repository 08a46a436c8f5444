"""The CPU kernel: a depthwise convolution on ``(batch, steps, channels)``, then one GEMM.

Why this shape of computation (measured on the project's 2-core AVX2 machine, see
``bench/README.md``):

- The depthwise convolution (and the input gradient, a depthwise convolution of the
  intermediate's gradient with the flipped kernel) runs in a small C routine
  (:mod:`._cpu_native`): tiles of steps x 8 channels built in L1 with the zero padding and
  the multiplier's channel repeat applied on the fly (no padded or repeated copies),
  8 output steps held in registers.  It is 1.2-3x faster than oneDNN's depthwise kernel
  here (6x with a multiplier, which oneDNN runs as a slow grouped convolution), and
  torch's ``F.conv1d(..., groups=C)`` on ``(N, C, L)`` is 5-10x slower still.
- The pointwise convolution is one GEMM on the ``(batch * steps, channels * multiplier)``
  view of the intermediate, with the bias folded in (``addmm``); its result already is
  the ``(batch, steps, filters)`` output.  No transposes, no copies.
- The backward pass is written by hand (a ``torch.autograd.Function``): two GEMMs for the
  pointwise part, the C routine for the input gradient (stride 1) and for the depthwise
  weight gradient (oneDNN's runs ~20x slower than its forward).  Strided input gradients
  use ``torch.ops.aten.convolution_backward``.  The function keeps the input and the
  intermediate, drops the intermediate as soon as the pointwise weight gradient is done
  and frees temporaries early: a training step's peak memory stays below the plain
  composition's.
- Without a C compiler (or with ``SEPCONV_NATIVE=0``), and for float64 or native half
  precision, the depthwise parts go through oneDNN as a channels_last 2D convolution on
  ``(N, C, 1, L)`` (a view of the input): channels repeated for a multiplier, dilated
  convolutions padded by a copy (oneDNN's padded dilated path is ~10x slower).

Dtypes: float32 runs as above.  bfloat16 (float16) runs natively when oneDNN has kernels
for it on this CPU (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``); otherwise (no
AVX512-BF16 / AMX, where bf16 GEMMs are emulated and ~80x slower) it computes in float32
and rounds the result and the gradients to the half-precision dtype.  float64 takes the
oneDNN-free fallback path in contiguous (NCHW) memory, which is what the gradient check
exercises.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import _cpu_native
from . import reference as _reference

_conv = torch.ops.aten.convolution
_conv_backward = torch.ops.aten.convolution_backward


def separable_conv1d(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor,
                     bias: Optional[torch.Tensor], *, stride: int, dilation: int,
                     pad_left: int, pad_right: int, channels_last: bool) -> torch.Tensor:
    """Depthwise then pointwise convolution; same contract as the reference kernel.

    Args:
        x: ``(batch, steps, channels)`` if ``channels_last`` else ``(batch, channels, steps)``.
        depthwise: ``(kernel_size, channels, depth_multiplier)`` (Keras' layout).
        pointwise: ``(channels * depth_multiplier, filters)``.
        bias: ``(filters,)`` or ``None``.
        stride, dilation: step and dilation of the depthwise convolution.
        pad_left, pad_right: zeros added before and after the steps.
        channels_last: layout of ``x`` and of the result.

    Returns:
        ``(batch, out_steps, filters)`` if ``channels_last`` else ``(batch, filters, out_steps)``.
    """
    geometry = (stride, dilation, pad_left, pad_right, channels_last)
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or depthwise.requires_grad or pointwise.requires_grad
        or (bias is not None and bias.requires_grad))
    if not needs_grad:
        return _forward(x, depthwise, pointwise, bias, geometry)[0]
    return _SeparableConv1d.apply(x, depthwise, pointwise, bias, geometry)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the arithmetic runs in for inputs of ``dtype``: half precision widens to
    float32 where oneDNN has no native kernels for it on this CPU."""
    if dtype in (torch.bfloat16, torch.float16) and not _native(dtype):
        return torch.float32
    return dtype


_NATIVE: dict = {}


def _native(dtype: torch.dtype) -> bool:
    if dtype not in _NATIVE:
        probe = {torch.bfloat16: "_is_mkldnn_bf16_supported",
                 torch.float16: "_is_mkldnn_fp16_supported"}[dtype]
        try:
            _NATIVE[dtype] = bool(getattr(torch.ops.mkldnn, probe)())
        except (AttributeError, RuntimeError):
            _NATIVE[dtype] = False
    return _NATIVE[dtype]


def _memory_format(dtype: torch.dtype) -> torch.memory_format:
    # oneDNN (channels_last) has float32 and bfloat16 kernels only; float64 in
    # channels_last falls to a generic loop ~10x slower than the NCHW one.
    return torch.contiguous_format if dtype == torch.float64 else torch.channels_last


def _steps_major(x: torch.Tensor, channels_last: bool, dtype: torch.dtype) -> torch.Tensor:
    """``x`` as a contiguous ``(batch, steps, channels)`` tensor of ``dtype``."""
    if not channels_last:
        x = x.transpose(1, 2)
    return x.to(dtype).contiguous()


def _as_4d(xs: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """``(N, L, C)`` -> ``(N, C, 1, L)`` in ``fmt`` (a view for a contiguous channels_last)."""
    return xs.transpose(1, 2).unsqueeze(2).contiguous(memory_format=fmt)


def _pad_steps(xs: torch.Tensor, left: int, right: int, m: int = 1) -> torch.Tensor:
    """``(N, L, C)`` -> ``(N, left + L + right, C*m)``, each channel repeated ``m`` times
    (channel ``c*m + j``), in one pass; negative amounts crop."""
    if left < 0:
        xs, left = xs[:, -left:], 0
    if right < 0:
        xs, right = xs[:, :xs.shape[1] + right], 0
    if not (left or right or m > 1):
        return xs
    n, length, c = xs.shape
    out = xs.new_empty(n, left + length + right, c * m)
    if left:
        out[:, :left].zero_()
    if right:
        out[:, left + length:].zero_()
    out[:, left:left + length].view(n, length, c, m).copy_(xs.unsqueeze(-1))
    return out


def _padded_4d(xs: torch.Tensor, pad_left: int, pad_right: int, dilation: int,
               fmt: torch.memory_format, m: int = 1) -> Tuple[torch.Tensor, int, int]:
    """``(N, L, C)`` -> ``(N, C*m, 1, L')`` in ``fmt`` (channels repeated ``m`` times),
    padded here except for a symmetric part left to the convolution (returned, with the
    left padding applied here).

    Dilated convolutions get all their padding here: oneDNN takes a slow generic path
    for a padded dilated convolution (10x slower measured), not for an unpadded one.
    """
    sym = 0 if dilation > 1 else max(min(pad_left, pad_right), 0)
    extra_left, extra_right = pad_left - sym, pad_right - sym
    return _as_4d(_pad_steps(xs, extra_left, extra_right, m), fmt), sym, extra_left


def _depthwise_4d(depthwise: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Keras ``(K, C, M)`` -> torch ``(C*M, 1, 1, K)``, output channel ``c*M + m``."""
    k, c, m = depthwise.shape
    return depthwise.to(dtype).permute(1, 2, 0).reshape(c * m, 1, 1, k)


def _forward(x, depthwise, pointwise, bias, geometry):
    """Returns ``(y, z2)``: the output and the ``(N*L_out, C*M)`` intermediate."""
    stride, dilation, pad_left, pad_right, channels_last = geometry
    cdt = compute_dtype(x.dtype)
    fmt = _memory_format(cdt)
    n = x.shape[0]
    k, c, m = depthwise.shape
    xs = _steps_major(x, channels_last, cdt)
    if _use_native(cdt):
        length = xs.shape[1]
        out_len = (length + pad_left + pad_right - (k - 1) * dilation - 1) // stride + 1
        z2 = _native_depthwise(xs, depthwise.to(cdt).reshape(k, c * m), out_len, m,
                               stride, dilation, pad_left).view(n * out_len, c * m)
    else:
        # Each channel repeated M times (channel c*M + m): oneDNN's grouped convolution
        # with M outputs per group runs ~10x slower than its depthwise one on C*M channels.
        x4, sym, _ = _padded_4d(xs, pad_left, pad_right, dilation, fmt, m)
        w4 = _depthwise_4d(depthwise, cdt)
        z4 = _conv(x4, w4, None, (1, stride), (0, sym), (1, dilation), False, (0, 0), c * m)
        del x4, xs  # a padded (or repeated) copy of x must not outlive the convolution
        out_len = z4.shape[-1]
        # channels_last (N, CM, 1, Lout) is (N, Lout, CM) in memory: this reshape is a view.
        z2 = z4.permute(0, 2, 3, 1).reshape(n * out_len, c * m)
    pw = pointwise.to(cdt)
    if bias is None:
        y2 = torch.mm(z2, pw)
    else:
        y2 = torch.addmm(bias.to(cdt), z2, pw)
    y = y2.view(n, out_len, pw.shape[1]).to(x.dtype)
    return (y if channels_last else y.transpose(1, 2)), z2


def _use_native(cdt: torch.dtype) -> bool:
    return cdt == torch.float32 and _cpu_native.load() is not None


def _native_depthwise(xs: torch.Tensor, w2: torch.Tensor, out_len: int, m: int, stride: int,
                      dilation: int, pad_left: int) -> torch.Tensor:
    """The C depthwise convolution: contiguous float32 ``xs`` ``(N, L, C)`` and ``w2``
    ``(K, C*M)`` -> ``(N, out_len, C*M)``; zero padding (``pad_left`` on the left, the rest
    on the right) and the multiplier's channel repeat are done inside, with no copy."""
    n, length, c = xs.shape
    k = w2.shape[0]
    z = torch.empty(n, out_len, c * m, dtype=torch.float32)
    _cpu_native.dw_forward(xs, w2.contiguous(), z, n=n, length=length, out_len=out_len, c=c,
                           m=m, k=k, stride=stride, dilation=dilation, pad_left=pad_left,
                           threads=torch.get_num_threads())
    return z


def _layout_back(g4: torch.Tensor, m: int, channels_last: bool,
                 dtype: torch.dtype) -> torch.Tensor:
    """``(N, C*M, 1, L)`` -> summed over the multiplier, in the input's layout and dtype."""
    g = g4.squeeze(2).transpose(1, 2)  # (N, L, C*M)
    return _sum_multiplier(g, m, channels_last, dtype)


def _sum_multiplier(g: torch.Tensor, m: int, channels_last: bool,
                    dtype: torch.dtype) -> torch.Tensor:
    """``(N, L, C*M)`` -> summed over the multiplier, in the input's layout and dtype."""
    if m > 1:  # slice adds: a sum over a last dim of size M is a slow strided reduction
        g = g.reshape(g.shape[0], g.shape[1], g.shape[2] // m, m)
        total = g[..., 0] + g[..., 1]
        for j in range(2, m):
            total += g[..., j]
        g = total
    return (g if channels_last else g.transpose(1, 2)).to(dtype)


class _SeparableConv1d(torch.autograd.Function):
    """Forward: oneDNN depthwise + one GEMM.  Backward: two GEMMs + oneDNN depthwise backward."""

    @staticmethod
    def forward(ctx, x, depthwise, pointwise, bias, geometry):
        y, z2 = _forward(x, depthwise, pointwise, bias, geometry)
        ctx.geometry = geometry
        ctx.bias_dtype = None if bias is None else bias.dtype
        if z2.dtype != x.dtype:
            z2 = z2.to(x.dtype)  # keep no more than a same-dtype composition would
        ctx.save_for_backward(x, depthwise, pointwise)
        # The intermediate is held on ctx, not saved: the backward pass drops it as soon as
        # the pointwise weight gradient is done, so it never coexists with grad_z and
        # grad_x (the composition holds all three).  It is a fresh tensor outside any
        # graph, so this creates no reference cycle and nothing else can modify it.
        ctx.z2 = z2
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, depthwise, pointwise = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiable gradients
            ctx.z2 = None
            stride, dilation, pad_left, pad_right, channels_last = ctx.geometry
            return _reference.differentiable_backward(
                grad_y, x, depthwise, pointwise, ctx.bias_dtype, ctx.needs_input_grad[:4],
                stride=stride, dilation=dilation, pad_left=pad_left, pad_right=pad_right,
                channels_last=channels_last) + (None,)
        z2, ctx.z2 = ctx.z2, None
        if z2 is None and ctx.needs_input_grad[2]:  # a second backward (retain_graph=True)
            z2 = _forward(x.detach(), depthwise.detach(), pointwise.detach(), None,
                          ctx.geometry)[1]
        stride, dilation, pad_left, pad_right, channels_last = ctx.geometry
        need_x, need_dw, need_pw, need_b = ctx.needs_input_grad[:4]
        cdt = compute_dtype(x.dtype)
        fmt = _memory_format(cdt)
        k, c, m = depthwise.shape
        n = x.shape[0]
        g2 = _steps_major(grad_y, channels_last, cdt)
        out_len = g2.shape[1]
        g2 = g2.view(n * out_len, g2.shape[2])
        grad_x = grad_dw = grad_pw = grad_b = None
        if need_b:
            grad_b = g2.sum(0).to(ctx.bias_dtype)
        if need_pw:
            grad_pw = torch.mm(z2.to(cdt).t(), g2).to(pointwise.dtype)
        del z2
        if need_x or need_dw:
            gz2 = torch.mm(g2, pointwise.to(cdt).t())  # (N*Lout, CM)
            xs = _steps_major(x, channels_last, cdt) if need_dw else None
            if need_dw and cdt in (torch.float32, torch.bfloat16, torch.float16) \
                    and _cpu_native.load() is not None:
                # a float32 routine: half-precision operands widen exactly, and it
                # accumulates in float32 as oneDNN does
                xs32 = xs.float().contiguous()
                gz32 = gz2.float().contiguous()
                gw = torch.empty(k, c * m, dtype=torch.float32)
                _cpu_native.dw_grad_weight(
                    xs32, gz32, gw, n=n, length=xs.shape[1], out_len=out_len, c=c, m=m, k=k,
                    stride=stride, dilation=dilation, pad_left=pad_left,
                    threads=torch.get_num_threads())
                del xs32, gz32
                grad_dw = gw.view(k, c, m).to(depthwise.dtype)
                need_dw = False
            w4 = _depthwise_4d(depthwise, cdt)
            flipped = need_x and stride == 1
            if need_dw or (need_x and not flipped):
                # oneDNN's backward: the weight gradient without the C routine (or in
                # float64), the input gradient of a strided convolution.
                gz4 = gz2.view(n, 1, out_len, c * m).permute(0, 3, 1, 2).contiguous(
                    memory_format=fmt)
                if need_dw:
                    xs = _steps_major(x, channels_last, cdt) if xs is None else xs
                    x4, sym, extra_left = _padded_4d(xs, pad_left, pad_right, dilation, fmt)
                else:  # the input gradient reads the input's shape only, not its values
                    sym = 0 if dilation > 1 else max(min(pad_left, pad_right), 0)
                    extra_left = pad_left - sym
                    length = x.shape[1] if channels_last else x.shape[2]
                    x4 = torch.empty((n, c, 1, length + pad_left + pad_right - 2 * sym),
                                     dtype=cdt, memory_format=fmt)
                gx4, gw4, _ = _conv_backward(
                    gz4, x4, w4, None, (1, stride), (0, sym), (1, dilation), False, (0, 0), c,
                    (need_x and not flipped, need_dw, False))
                del gz4, x4
                if need_x and not flipped:
                    length = x.shape[1] if channels_last else x.shape[2]
                    gx4 = gx4[:, :, :, extra_left:extra_left + length]
                    grad_x = _layout_back(gx4, 1, channels_last, x.dtype)
                if need_dw:
                    grad_dw = gw4.reshape(c, m, k).permute(2, 0, 1).to(depthwise.dtype)
            if flipped and _use_native(cdt):
                # grad_x is a depthwise convolution of grad_z with the flipped kernel,
                # summed over the multiplier
                span = (k - 1) * dilation
                length = x.shape[1] if channels_last else x.shape[2]
                gx = _native_depthwise(
                    gz2.view(n, out_len, c * m),
                    depthwise.to(cdt).reshape(k, c * m).flip(0), length, 1, 1, dilation,
                    span - pad_left)
                del gz2, xs
                grad_x = _sum_multiplier(gx, m, channels_last, x.dtype)
            elif flipped:
                # the same through oneDNN's forward kernel, where its backward-data is slow
                # when dilated or grouped
                span = (k - 1) * dilation
                gx4, sym, _ = _padded_4d(gz2.view(n, out_len, c * m), span - pad_left,
                                         span - pad_right, dilation, fmt)
                del gz2, xs  # a padded copy (or a view) of grad_z is all that is left to read
                gx4 = _conv(gx4, w4.flip(-1), None, (1, 1), (0, sym), (1, dilation), False,
                            (0, 0), c * m)
                grad_x = _layout_back(gx4, m, channels_last, x.dtype)
        return grad_x, grad_dw, grad_pw, grad_b, None
