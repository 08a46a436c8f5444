"""The CPU kernel: a depthwise convolution on ``(batch, steps, channels)``, then one GEMM.

Why this shape of computation (measured on the project's 2-core AVX2 machine, see
``bench/README.md``):

- The depthwise convolution (and the input gradient, a depthwise convolution of the
  intermediate's gradient with the flipped kernel) runs in a small C routine
  (:mod:`._cpu_native`): tiles of steps x 8 (16 with AVX-512) channels built in L1 with the zero padding and
  the multiplier's channel repeat applied on the fly (no padded or repeated copies),
  8 output steps held in registers.  It is 1.2-3x faster than oneDNN's depthwise kernel
  here (6x with a multiplier, which oneDNN runs as a slow grouped convolution), and
  torch's ``F.conv1d(..., groups=C)`` on ``(N, C, L)`` is 5-10x slower still.
- The pointwise convolution is one GEMM on the ``(batch * steps, channels * multiplier)``
  view of the intermediate, with the bias folded in (oneDNN's inner product from 2^16
  output elements, ``addmm`` below: :func:`_matmul`); its result already is the
  ``(batch, steps, filters)`` output.  No transposes, no copies.
- Forward and backward are torch custom ops (``torch.ops.sepconv.separable_conv1d_cpu`` and
  ``..._backward``, registered with ``torch.library``: fake implementations, a vmap rule,
  an autograd formula), so torch.compile, torch.func and FakeTensor tracing see opaque,
  differentiable ops; export takes the reference composition (see the op's comment).
- The backward pass is written by hand: two GEMMs for the pointwise part (oneDNN's
  where faster: :func:`_matmul`, :func:`_weight_grad`), the C routine for the input
  gradient (strided: on grad_z spread out with zeros) and for the depthwise weight
  gradient (oneDNN's runs ~20x slower than its forward).  The function keeps the input
  and the intermediate, drops the intermediate as soon as the pointwise weight gradient
  is done and frees temporaries early: a training step's peak memory stays below the
  plain composition's.
- Threads: each forward or backward pass runs on torch's thread count or on one thread,
  whichever its own recent timings say is cheaper (:class:`_ThreadPolicy`): on busy cores a
  two-thread pass waits for descheduled OpenMP threads and is many times slower.
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

import math
from typing import List, Optional, Tuple

import torch

from .. import padding as _padding
from . import _cpu_native
from . import graphs as _graphs
from . import memory as _memory
from . import threads as _policy
from . import pointwise as _pointwise
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
        if _graphs.plain(x, depthwise, pointwise):  # eager inference: skip the op's dispatch (~8 us)
            return _forward(x, depthwise, pointwise, bias, geometry)[0]
        return _separable_conv1d_op(x, depthwise, pointwise, bias, *geometry)[0]
    if _graphs.plain(x, depthwise, pointwise) and not torch._C._are_functorch_transforms_active():
        return _apply_eager(x, depthwise, pointwise, bias, geometry)[0]
    return _SeparableConv1d.apply(x, depthwise, pointwise, bias, geometry)[0]


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


def _as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t.to(dtype)`` without the call where it is one already (a no-op ``to`` costs ~1 us
    of dispatch, six per call: a one-step streaming call is ~50 us in all)."""
    return t if t.dtype == dtype else t.to(dtype)


def _steps_major(x: torch.Tensor, channels_last: bool, dtype: torch.dtype) -> torch.Tensor:
    """``x`` as a contiguous ``(batch, steps, channels)`` tensor of ``dtype``."""
    if not channels_last:
        x = x.transpose(1, 2)
    return _as(x, dtype).contiguous()


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
    _memory.keep_freed_memory()
    k, _, m = depthwise.shape
    return _threads.run("forward", x.numel() * m * (k + pointwise.shape[1]),
                        lambda: _forward_pass(x, depthwise, pointwise, bias, geometry),
                        (x.shape, depthwise.shape, pointwise.shape, geometry))


def _forward_pass(x, depthwise, pointwise, bias, geometry):
    stride, dilation, pad_left, pad_right, channels_last = geometry
    cdt = compute_dtype(x.dtype)
    fmt = _memory_format(cdt)
    n = x.shape[0]
    k, c, m = depthwise.shape
    xs = _steps_major(x, channels_last, cdt)
    if _use_native(cdt):
        length = xs.shape[1]
        out_len = _padding.padded_output_length(length, k, stride, dilation, pad_left,
                                                pad_right)
        z2 = _native_depthwise(xs, _as(depthwise, cdt).reshape(k, c * m), out_len, m,
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
    y2 = _matmul(z2, _as(pointwise, cdt), None if bias is None else _as(bias, cdt))
    y = _as(y2.view(n, out_len, pointwise.shape[1]), x.dtype)
    return (y if channels_last else y.transpose(1, 2)), z2


# Output elements from which oneDNN's GEMM runs the pointwise products (measured on a
# 2-core AMD EPYC with AVX-512, issue 15: below, its ~15 us set-up per call loses to MKL).
ONEDNN_GEMM_FROM = 2 ** 16

_ONEDNN_LINEAR: list = []


def _onednn_linear():
    """``torch.ops.mkldnn._linear_pointwise`` where this torch has it and it computes a
    GEMM right (checked once on a small product), else ``None``."""
    if not _ONEDNN_LINEAR:
        op = None
        try:
            if torch.backends.mkldnn.is_available():
                candidate = torch.ops.mkldnn._linear_pointwise
                g = torch.Generator().manual_seed(0)
                a, b = torch.randn(5, 7, generator=g), torch.randn(7, 3, generator=g)
                bias = torch.randn(3, generator=g)
                got = candidate(a, b.t(), bias, "none", [], "")
                if torch.allclose(got, torch.addmm(bias, a, b), rtol=1e-5, atol=1e-5):
                    op = candidate
        except (AttributeError, RuntimeError):
            op = None
        _ONEDNN_LINEAR.append(op)
    return _ONEDNN_LINEAR[0]


def _matmul(a: torch.Tensor, b: torch.Tensor,
            bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``a @ b (+ bias)`` for a contiguous ``(R, K)`` ``a`` and a ``(K, F)`` ``b`` of any
    strides (a weight or its transpose, read in place).

    float32 products of ``ONEDNN_GEMM_FROM`` output elements or more run on oneDNN's
    inner-product (brgemm) kernel, the one torch's 1x1 convolutions and TensorFlow use:
    on AMD CPUs MKL's SGEMM takes a slower path (oneDNN picks AVX-512 where the CPU has it,
    MKL does not say), and ``addmm`` writes the broadcast bias into the output before the
    GEMM where oneDNN adds it in the GEMM's epilogue.  Measured on a 2-core AMD EPYC with
    AVX-512 (issue 15): 5-30% faster on the bench suite's products, slower below ~2^16
    output elements (per-call set-up).  Elsewhere, and where the user switched oneDNN off
    (``torch.backends.mkldnn.flags(enabled=False)``), ``torch.mm`` / ``torch.addmm``.
    """
    if a.dtype == torch.float32 and a.shape[0] * b.shape[1] >= ONEDNN_GEMM_FROM \
            and torch.backends.mkldnn.enabled:
        op = _onednn_linear()
        if op is not None:
            return op(a, b.t(), bias, "none", [], "")
    return torch.mm(a, b) if bias is None else torch.addmm(bias, a, b)


# Where oneDNN's 1x1-convolution weight gradient runs the pointwise weight's gradient:
# at least this many rows (batch x steps) ...
WEIGHT_GRAD_ONEDNN_ROWS = 2 ** 12
# ... into a weight of at most this many elements (channels x filters).
WEIGHT_GRAD_ONEDNN_MAX = 2 ** 16


def _weight_grad(z2: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    """``z2.t() @ g2``, contiguous: the pointwise weight's gradient, ``(C*M, F)``.

    A long reduction (``R`` rows) into a small weight runs on oneDNN's 1x1-convolution
    backward-weights kernel, both operands read in place as channels_last views: on a
    2-core AMD EPYC with AVX-512 (issue 15) 10-35% faster than MKL's ``z2.t() @ g2`` from
    4096 rows into weights of up to 256 x 256; into larger weights (1536 x 1536: 1.4x
    slower) or from fewer rows, MKL's is as fast or faster.  oneDNN's inner product
    (:func:`_matmul`) would copy the transposed operand first."""
    rows, cm = z2.shape
    f = g2.shape[1]
    if z2.dtype == torch.float32 and rows >= WEIGHT_GRAD_ONEDNN_ROWS \
            and z2.is_contiguous() and g2.is_contiguous() \
            and cm * f <= WEIGHT_GRAD_ONEDNN_MAX and torch.backends.mkldnn.is_available() \
            and torch.backends.mkldnn.enabled:
        # (B, CM, 1, R/B) and (B, F, 1, R/B) channels_last views: a batch of 16 or more,
        # or torch runs a single-threaded 1x1 convolution on its slow THNN path (15%
        # slower than oneDNN's here, measured with the thread policy on one thread)
        b = _pointwise.onednn_batch(rows) or 1
        x4 = z2.view(b, 1, rows // b, cm).permute(0, 3, 1, 2)
        g4 = g2.view(b, 1, rows // b, f).permute(0, 3, 1, 2)
        w4 = z2.new_empty(f, cm, 1, 1)  # its shape only
        gw = _conv_backward(g4, x4, w4, None, (1, 1), (0, 0), (1, 1), False, (0, 0), 1,
                            (False, True, False))[1]
        return gw.view(f, cm).t().contiguous()
    return torch.mm(z2.t(), g2)


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


def _native_input_grad_strided(gz: torch.Tensor, wf: torch.Tensor, length: int, stride: int,
                               dilation: int, pad: int) -> torch.Tensor:
    """``(N, length, CM)``: the stride-1 depthwise convolution (flipped kernel ``wf``
    ``(K, CM)``, dilation, ``pad`` on the left) of ``gz`` spread out with ``stride - 1``
    zero steps between its steps, without the spread copy: polyphase (issue 15).

    Output step ``i = r + stride*t`` reads spread step ``i - pad + j*dilation``, nonzero
    only for the taps ``j`` with ``r - pad + j*dilation`` divisible by the stride: every
    ``stride / g``-th tap from the first such ``j0`` (``g = gcd(stride, dilation)``), at
    grad_z steps ``t + (r - pad + j0*dilation)/stride + u*(dilation/g)``.  So each phase
    ``r`` is a stride-1 convolution of ``gz`` with that sub-kernel and dilation
    ``dilation/g``, written by the C routine straight to rows ``r, r + stride, ...``; the
    taps it skips only ever added zeros, so the sums are the same, in the same order."""
    n, steps, cm = gz.shape
    k = wf.shape[0]
    g = math.gcd(stride, dilation)
    tap_step, sub_dilation = stride // g, dilation // g
    gx = torch.empty(n, length, cm, dtype=torch.float32)
    threads = torch.get_num_threads()
    for r in range(min(stride, length)):
        rows = (length - r + stride - 1) // stride
        j0 = next((j for j in range(min(tap_step, k)) if (r - pad + j * dilation) % stride == 0),
                  None)
        if j0 is None:  # no tap of this phase ever meets a grad_z step
            gx[:, r::stride] = 0
            continue
        taps = wf[j0::tap_step].contiguous()
        first = (r - pad + j0 * dilation) // stride
        _cpu_native.dw_forward_rows(
            gz, taps, gx, n=n, length=steps, out_len=rows, c=cm, m=1, k=taps.shape[0],
            stride=1, dilation=sub_dilation, pad_left=-first, threads=threads,
            out_step=stride, out_off=r)
    return gx


def native_depthwise_backward(xs: torch.Tensor, gz: torch.Tensor, w2: torch.Tensor, m: int,
                              stride: int, dilation: int,
                              pad_left: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Both gradients of the C depthwise convolution (:func:`_native_depthwise`'s
    geometry) in one pass over ``gz`` (``_cpu_native.dw_backward``): float32 ``xs``
    ``(N, L, C)``, ``gz`` ``(N, L_out, C*M)``, ``w2`` ``(K, C*M)``; ``pad_left >= 0``.
    Returns the input gradient before the sum over the multiplier, ``(N, L, C*M)``, and
    the weight gradient ``(K, C*M)``.  Shared by this kernel and
    ``kernels/depthwise_train.py``."""
    n, length, c = xs.shape
    k = w2.shape[0]
    gw = torch.empty(k, c * m, dtype=torch.float32)
    gx = torch.empty(n, length, c * m, dtype=torch.float32)
    wf = w2.flip(0)  # a contiguous copy
    _cpu_native.dw_backward(xs.contiguous(), gz.contiguous(), wf, gw, gx, n=n, length=length,
                            out_len=gz.shape[1], c=c, m=m, k=k, stride=stride,
                            dilation=dilation, pad_left=pad_left,
                            threads=torch.get_num_threads())
    return gx, gw


def native_depthwise_grad_weight(xs: torch.Tensor, gz: torch.Tensor, k: int, m: int,
                                 stride: int, dilation: int, pad_left: int) -> torch.Tensor:
    """The weight gradient alone, ``(K, C*M)`` float32 (``_cpu_native.dw_grad_weight``),
    from ``xs`` ``(N, L, C)`` and ``gz`` ``(N, L_out, C*M)`` of float32 or a half-precision
    dtype (widened exactly; the sums run in float32 as oneDNN's do)."""
    n, length, c = xs.shape
    xs32 = xs.float().contiguous()
    gz32 = gz.float().contiguous()
    gw = torch.empty(k, c * m, dtype=torch.float32)
    _cpu_native.dw_grad_weight(xs32, gz32, gw, n=n, length=length, out_len=gz.shape[1], c=c,
                               m=m, k=k, stride=stride, dilation=dilation, pad_left=pad_left,
                               threads=torch.get_num_threads())
    return gw


def native_depthwise_input_grad(gz: torch.Tensor, w2: torch.Tensor, length: int, stride: int,
                                dilation: int, pad_left: int) -> torch.Tensor:
    """The input gradient alone, before the sum over the multiplier, ``(N, length, C*M)``:
    a depthwise convolution of float32 ``gz`` ``(N, L_out, C*M)`` with the flipped kernel
    (``w2``: ``(K, C*M)``), strided by phases (:func:`_native_input_grad_strided`)."""
    span = (w2.shape[0] - 1) * dilation
    wf = w2.flip(0)
    gz = gz.contiguous()
    if stride > 1:
        return _native_input_grad_strided(gz, wf, length, stride, dilation, span - pad_left)
    return _native_depthwise(gz, wf, length, 1, 1, dilation, span - pad_left)


# The one thread policy every CPU kernel of the library shares (kernels/threads.py).
_ThreadPolicy = _policy.ThreadPolicy
_threads = _policy.THREADS



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


# -- the custom op ------------------------------------------------------------------------
# The kernel is one opaque torch operator, ``torch.ops.sepconv.separable_conv1d_cpu``, with a
# fake (shape-only) implementation, an autograd formula and a vmap rule registered through
# torch.library: torch.compile(fullgraph=True), torch.func (grad, vmap, functional_call)
# and FakeTensor tracing see one differentiable op instead of reading data pointers inside
# a Python autograd.Function.  It returns the output and the (N*L_out, C*M) intermediate
# the backward pass reuses; callers drop the second.  Export (torch.export, ONNX,
# torch.jit.trace) never reaches it: the dispatcher takes the reference composition there
# so the exported graph holds standard ops only (sepconv.functional._pick_kernel).

@torch.library.custom_op("sepconv::separable_conv1d_cpu", mutates_args=(), device_types="cpu")
def _separable_conv1d_op(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor,
                         bias: Optional[torch.Tensor], stride: int, dilation: int,
                         pad_left: int, pad_right: int,
                         channels_last: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    return _op_forward(x, depthwise, pointwise, bias,
                       (stride, dilation, pad_left, pad_right, channels_last))


def _op_forward(x, depthwise, pointwise, bias, geometry):
    """The op's results: the output and the intermediate in the input's dtype."""
    y, z2 = _forward(x, depthwise, pointwise, bias, geometry)
    if z2.dtype != x.dtype:
        z2 = z2.to(x.dtype)  # keep no more than a same-dtype composition would
    return y, z2


@_separable_conv1d_op.register_fake
def _fake(x, depthwise, pointwise, bias, stride, dilation, pad_left, pad_right,
          channels_last):
    """Shapes, dtypes and strides of the real op's results, computed without data."""
    k, c, m = depthwise.shape
    n = x.shape[0]
    length = x.shape[1] if channels_last else x.shape[2]
    out_len = _padding.padded_output_length(length, k, stride, dilation, pad_left, pad_right)
    y = x.new_empty(n, out_len, pointwise.shape[1])
    return (y if channels_last else y.transpose(1, 2)), x.new_empty(n * out_len, c * m)


def _setup_context(ctx, inputs, output):
    """Saves what the backward pass needs; ``inputs`` are the op's."""
    x, depthwise, pointwise, bias, *geometry = inputs
    z2 = output[1]
    ctx.geometry = tuple(geometry)
    ctx.bias_dtype = None if bias is None else bias.dtype
    ctx.mark_non_differentiable(z2)
    ctx.set_materialize_grads(False)  # no zero-filled gradient for the intermediate
    if _graphs.plain(x, z2):
        # Eager: the intermediate is held on ctx, not saved, so the backward pass can drop
        # it as soon as the pointwise weight gradient is done: it never coexists with
        # grad_z and grad_x (the composition holds all three).  A non-differentiable
        # output has no grad_fn: no reference cycle.
        ctx.save_for_backward(x, depthwise, pointwise)
        ctx.z2 = z2
    else:  # traced (torch.compile, functorch): the graph decides what lives when
        ctx.save_for_backward(x, depthwise, pointwise, z2)
        ctx.z2 = None


def _grads(ctx, grad_y):
    """Gradients of (x, depthwise, pointwise, bias)."""
    if grad_y is None:
        return None, None, None, None
    x, depthwise, pointwise, *saved = ctx.saved_tensors
    needs = tuple(ctx.needs_input_grad[:4])
    if torch.is_grad_enabled():  # create_graph=True: differentiable gradients
        ctx.z2 = None
        stride, dilation, pad_left, pad_right, channels_last = ctx.geometry
        return _reference.differentiable_backward(
            grad_y, x, depthwise, pointwise, ctx.bias_dtype, needs, stride=stride,
            dilation=dilation, pad_left=pad_left, pad_right=pad_right,
            channels_last=channels_last)
    if saved:
        grads = _backward_op(grad_y, x, depthwise, pointwise, saved[0], ctx.bias_dtype,
                             needs, *ctx.geometry)
        return tuple(g if need else None for g, need in zip(grads, needs))
    box, ctx.z2 = [ctx.z2], None
    return _hand_backward(grad_y, x, depthwise, pointwise, box, ctx.bias_dtype, needs,
                          ctx.geometry)


_separable_conv1d_op.register_autograd(
    lambda ctx, grad_y, _grad_z2: _grads(ctx, grad_y) + (None,) * 5,
    setup_context=_setup_context)


class _SeparableConv1d(torch.autograd.Function):
    """The op's autograd formula as a torch.func-ready autograd.Function (an op's own
    registered formula is refused under torch.func transforms in torch 2.13); its vmap rule
    goes through the op's."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, depthwise, pointwise, bias, geometry):
        if _graphs.plain(x, depthwise, pointwise):  # eager: skip the op's Python dispatch
            return _op_forward(x, depthwise, pointwise, bias, geometry)
        return _separable_conv1d_op(x, depthwise, pointwise, bias, *geometry)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, depthwise, pointwise, bias, geometry = inputs
        _setup_context(ctx, (x, depthwise, pointwise, bias, *geometry), output)

    @staticmethod
    def backward(ctx, grad_y, _grad_z2):
        return _grads(ctx, grad_y) + (None,)


# What ``_SeparableConv1d.apply`` ends in, in eager mode without torch.func transforms:
# torch's C ``apply``.  The Python ``Function.apply`` first binds the arguments to
# ``forward``'s signature (``inspect.signature``, ~15 us a call: a quarter of a small
# training call's overhead), which binds nothing here (no defaults, no keywords).
_apply_eager = super(torch.autograd.Function, _SeparableConv1d).apply


@torch.library.custom_op("sepconv::separable_conv1d_cpu_backward", mutates_args=(),
                         device_types="cpu")
def _backward_op(grad_y: torch.Tensor, x: torch.Tensor, depthwise: torch.Tensor,
                 pointwise: torch.Tensor, z2: torch.Tensor, bias_dtype: Optional[torch.dtype],
                 needs: List[bool], stride: int, dilation: int, pad_left: int,
                 pad_right: int, channels_last: bool) -> List[torch.Tensor]:
    """The backward pass as one opaque op (what torch.compile's graphs call).  Gradients
    not asked for come back as empty tensors; all are contiguous (what the fake promises,
    whichever path computed them)."""
    grads = _hand_backward(grad_y, x, depthwise, pointwise, [z2], bias_dtype, tuple(needs),
                           (stride, dilation, pad_left, pad_right, channels_last))
    return [x.new_empty(0) if g is None else g.contiguous() for g in grads]


@_backward_op.register_fake
def _backward_fake(grad_y, x, depthwise, pointwise, z2, bias_dtype, needs, *geometry):
    return fake_grads(x, needs, (x, depthwise, pointwise, None), pointwise.shape[1],
                      bias_dtype)


def fake_grads(x: torch.Tensor, needs, likes: tuple, bias_size, bias_dtype) -> list:
    """A backward op's fake (shape-only) result: an empty tensor for each gradient not
    asked for, the bias' ``(bias_size,)`` in ``bias_dtype`` where ``likes`` holds ``None``,
    else a contiguous tensor like the input in ``likes`` (shared with
    ``kernels/depthwise_train.py``)."""
    out = []
    for need, like in zip(needs, likes):
        if not need:
            out.append(x.new_empty(0))
        elif like is None:
            out.append(x.new_empty(bias_size, dtype=bias_dtype))
        else:
            out.append(torch.empty_like(like, memory_format=torch.contiguous_format))
    return out


@_backward_op.register_vmap
def _backward_vmap(info, in_dims, grad_y, x, depthwise, pointwise, z2, bias_dtype, needs,
                   *geometry):
    """The backward pass of a call made under vmap: one call per member (the gradients of
    weights shared by the members are summed by autograd afterwards)."""
    tensors = (grad_y, x, depthwise, pointwise, z2)
    outs = [_backward_op(*[t if d is None else t.select(d, i)
                           for t, d in zip(tensors, in_dims[:5])],
                         bias_dtype, needs, *geometry)
            for i in range(info.batch_size)]
    return [torch.stack(list(g)) for g in zip(*outs)], [0] * len(outs[0])


@_separable_conv1d_op.register_vmap
def _vmap(info, in_dims, x, depthwise, pointwise, bias, *geometry):
    """A batch of inputs folds into the kernel's batch axis (one call); batched weights
    (ensembles) run one call per member."""
    x_dim, dw_dim, pw_dim, b_dim = in_dims[:4]
    if dw_dim is None and pw_dim is None and b_dim is None:
        v = x.shape[x_dim]
        xf = x.movedim(x_dim, 0)
        xf = xf.reshape(v * xf.shape[1], *xf.shape[2:])
        y, z2 = _separable_conv1d_op(xf, depthwise, pointwise, bias, *geometry)
        return (y.reshape(v, -1, *y.shape[1:]), z2.reshape(v, -1, z2.shape[-1])), (0, 0)
    size = info.batch_size
    outs = []
    for i in range(size):
        args = [t if d is None or t is None else t.select(d, i)
                for t, d in zip((x, depthwise, pointwise, bias), in_dims[:4])]
        outs.append(_separable_conv1d_op(*args, *geometry))
    return (torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])), (0, 0)


def _hand_backward(grad_y, x, depthwise, pointwise, z2_box, bias_dtype, needs, geometry):
    """Gradients of (x, depthwise, pointwise, bias): :func:`_backward_pass` on the thread
    count :class:`_ThreadPolicy` picks."""
    k, _, m = depthwise.shape
    return _threads.run("backward", x.numel() * m * (k + pointwise.shape[1]),
                        lambda: _backward_pass(grad_y, x, depthwise, pointwise, z2_box,
                                               bias_dtype, needs, geometry),
                        (x.shape, depthwise.shape, pointwise.shape, geometry, needs))


def _backward_pass(grad_y, x, depthwise, pointwise, z2_box, bias_dtype, needs, geometry):
    """Gradients of (x, depthwise, pointwise, bias) (``None`` where ``needs`` says so): two
    GEMMs for the pointwise part, the C depthwise routines (or oneDNN) for the rest.
    ``z2_box`` is a one-element list holding the intermediate (or ``None`` after a first
    backward); it is emptied so the intermediate can be freed mid-way."""
    z2 = z2_box.pop()
    if z2 is None and needs[2]:  # a second backward (retain_graph=True)
        z2 = _forward(x.detach(), depthwise.detach(), pointwise.detach(), None, geometry)[1]
    stride, dilation, pad_left, pad_right, channels_last = geometry
    need_x, need_dw, need_pw, need_b = needs
    cdt = compute_dtype(x.dtype)
    fmt = _memory_format(cdt)
    k, c, m = depthwise.shape
    n = x.shape[0]
    g2 = _steps_major(grad_y, channels_last, cdt)
    out_len = g2.shape[1]
    g2 = g2.view(n * out_len, g2.shape[2])
    grad_x = grad_dw = grad_pw = grad_b = None
    if need_b:
        grad_b = _as(g2.sum(0), bias_dtype)
    if need_pw:
        grad_pw = _as(_weight_grad(_as(z2, cdt), g2), pointwise.dtype)
    del z2
    if need_x or need_dw:
        gz2 = _matmul(g2, _as(pointwise, cdt).t())  # (N*Lout, CM)
        xs = _steps_major(x, channels_last, cdt) if need_dw else None
        if need_x and need_dw and pad_left >= 0 and _use_native(cdt):
            # both depthwise gradients in one pass over grad_z (issue 15: 0.72-0.98x the
            # time of the two passes below on the bench suite's shapes, strided: of the
            # weight gradient's pass and one pass per phase)
            gx, gw = native_depthwise_backward(xs, gz2.view(n, out_len, c * m),
                                               _as(depthwise, cdt).reshape(k, c * m), m,
                                               stride, dilation, pad_left)
            del gz2, xs
            return (_sum_multiplier(gx, m, channels_last, x.dtype),
                    _as(gw.view(k, c, m), depthwise.dtype), grad_pw, grad_b)
        if need_dw and cdt in (torch.float32, torch.bfloat16, torch.float16) \
                and _cpu_native.load() is not None:
            # a float32 routine: half-precision operands widen exactly, and it
            # accumulates in float32 as oneDNN does
            gw = native_depthwise_grad_weight(xs, gz2.view(n, out_len, c * m), k, m, stride,
                                              dilation, pad_left)
            grad_dw = _as(gw.view(k, c, m), depthwise.dtype)
            need_dw = False
        w4 = _depthwise_4d(depthwise, cdt)
        flipped = need_x and (stride == 1 or _use_native(cdt))
        if need_dw or (need_x and not flipped):
            # oneDNN's backward: the weight gradient without the C routine (or in
            # float64), the input gradient of a strided convolution without it.
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
            # summed over the multiplier (oneDNN's strided backward-data and the layout
            # copies around it took 2x as long, issue 15); strided, one stride-1
            # convolution per output phase (issue 15: no zero-spread copy of grad_z)
            length = x.shape[1] if channels_last else x.shape[2]
            gx = native_depthwise_input_grad(gz2.view(n, out_len, c * m),
                                             _as(depthwise, cdt).reshape(k, c * m), length,
                                             stride, dilation, pad_left)
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
    return grad_x, grad_dw, grad_pw, grad_b
