"""1D convolutions as shifted GEMMs on CPU, where torch's oneDNN convolution costs more.

A 1D convolution is a sum over its taps of one matrix product each: tap ``k`` of
``Conv1D`` multiplies the input rows ``t * stride + k * dilation - pad_left`` by
``kernel[k]`` (``(channels, filters)``), and a row-strided slice of the
``(batch, steps, channels)`` data is a matrix BLAS reads in place (leading dimension
``stride * channels``).  So each gradient is a few GEMMs into views of one buffer
(``addmm_`` accumulates with beta = 1, no copies, no padded input):

- ``Conv1D`` (:func:`conv`): the forward pass is oneDNN's (the reference kernel's) but
  from dilation 256 on, where oneDNN's costs ~1.2x one GEMM over all rows for the tap
  reading every row (oneDNN's matmul, into the output with the bias) plus one ``addmm_``
  per other tap and sequence; the backward is written by hand: input gradient
  ``dX[rows_k] += dY @ kernel[k]^T`` per tap, weight gradient
  ``dW[k] = X[rows_k]^T @ dY``, bias gradient a sum.  Measured on one thread
  (bench/README.md, "1D convolutions as GEMMs"), WaveNet's k2 causal layers at dilation
  64-512: forward+backward 0.74-0.91 of oneDNN's.
- ``Conv1DTranspose`` (:func:`conv_transpose`), ``dilation_rate`` 1: the backward sees
  the taps, zero-padded to ``J * stride``
  (``J = ceil(kernel / stride)``), as ``J`` phase matrices ``W_j``
  (``(channels, stride * filters)``: taps ``j * stride .. j * stride + stride - 1`` side by
  side): the full output viewed as ``(batch, steps + J - 1, stride * filters)`` is
  ``sum_j shift_j(X @ W_j)``, so with the output gradient zero-extended to that view
  (one pad), ``dX = sum_j dY_j @ W_j^T`` and ``dW_j = X^T @ dY_j``: GEMMs whose inner
  dimension is ``stride * filters`` or the steps.  The forward pass: oneDNN's, but for
  wide inputs (512+ channels) whose phase columns fit in 32 MiB (MelGAN's first
  upsampler), where TensorFlow's own form is cheaper: one GEMM of all rows into the
  columns ``(batch * steps, J * stride * filters)`` (oneDNN's matmul), an overlap-add,
  the crop with the bias.  The phases as ``addmm_`` into the output measured 1.0-1.25x
  oneDNN's forward everywhere, and the one-GEMM form 1.0-2.0x for narrower or longer
  inputs.

- ``Conv1D``'s inference forward at small calls (:func:`gemm_forward`, where no gradient
  is recorded and :func:`small_form`'s measured rule says so; either data format): one
  GEMM per tap accumulated into the output rows it reaches (``"taps"``: dilated or k2
  layers, e.g. WaveNet's at batch 1), or the padded windows unfolded into one
  ``(batch * out_steps, kernel_size * channels)`` matrix and one GEMM with the bias
  (``"unfold"``: windows that fit in L2, e.g. the keyword-spotting stem k11 stride 2 at
  batch 1).  torch's small-batch convolution (THNN's im2col, oneDNN's setup) cost
  1.1-2x these there (bench/README.md, "Conv1D at small batches as GEMMs").

Both are autograd.Functions over torch ops (aten GEMMs and oneDNN's matmul op,
``torch.ops.mkldnn._linear_pointwise``, where available); :func:`pick_conv` /
:func:`takes_transpose` say where ``sepconv.functional`` picks them: CPU channels_last
float32 / float64 data, the shape classes measured faster (their docstrings), not while
exporting or tracing (``torch.export``, ``torch.jit.trace``: the graph must hold standard
ops), compiling, under torch.func transforms or CPU autocast.  Under
``create_graph=True`` the backward returns the reference composition's differentiable
gradients (double backward).  ``ENABLED = False`` (benchmarks and tests alternate it)
restores the reference kernel everywhere.  bfloat16 / float16 data (only when a caller
forces this kernel: the rule leaves them on oneDNN, unmeasured) run the reference forward
and the backward GEMMs widened to float32, one rounding per gradient.
Tested against the reference kernel and tf-keras in tests/test_gemm1d.py.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .. import padding as _padding
from . import graphs as _graphs
from . import reference as _reference

#: The switch :func:`pick_conv` and :func:`takes_transpose` read (``False``: the
#: reference kernel everywhere, as before).
ENABLED = True
#: Conv1D's forward as shifted GEMMs from this dilation on (oneDNN's forward costs ~25%
#: more from dilation 256 on, none below 128: bench/README.md); ``None``: never.
FORWARD_DILATION = 256

#: Conv1DTranspose's forward as one GEMM into per-phase columns plus an overlap-add
#: (TensorFlow's form) for at least this many input channels and at most this many bytes
#: of columns (MelGAN's first upsampler: 0.56-0.8 of oneDNN's time; more rows, whose
#: columns leave the caches, or fewer channels: 1.0-1.2, bench/README.md); ``None``: never.
TRANSPOSE_FORWARD_CHANNELS = 512
TRANSPOSE_FORWARD_BYTES = 32 * 2 ** 20

#: On CPUs whose widest vectors torch's kernels use are AVX2 (no AVX-512), Conv1D's GEMM
#: backward for 2 or 3 taps, stride 1, any dilation, from this many channels in and out
#: (:func:`pick_conv`); ``None``: never.
NARROW_CHANNELS = 16

#: Conv1D's inference forward as GEMMs (:func:`gemm_forward`) where :func:`small_form`'s
#: measured rule says so; ``False``: never.
SMALL_FORWARD = True

_ONEDNN_LINEAR = torch.backends.mkldnn.is_available() \
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")

_DTYPES = (torch.float32, torch.float64)
_WIDE = (torch.float32, torch.float64)


# -- the rule --------------------------------------------------------------------------------

def pick_conv(x: torch.Tensor, kernel: torch.Tensor, strides: tuple, dilation: tuple,
              pads: tuple, groups: int, channels_last: bool = True) -> Optional[Callable]:
    """Which of this module's kernels runs this convolution (``None``: none;
    ``sepconv.functional._pick_conv_kernel`` asks, for CPU data): rank 1, ungrouped; where
    no gradient is recorded, the small float32 calls of :func:`small_form` (either data
    format, ``channels_last`` says which): :func:`conv_taps` or :func:`conv_unfold`, the
    form's own kernel (the rule is asked once per call, here); else :func:`conv`,
    channels_last only, float32 / float64; WaveNet's shape class: 2 taps,
    stride 1, at least 64 channels in and out and 1024 output steps
    per sequence, and dilation >= 64 where autograd records (the GEMM backward), >= 256
    in inference (the GEMM forward, :data:`FORWARD_DILATION`).  The one-thread A/B
    (``bench/gemm1d_ab.py``, bench/README.md "1D convolutions as GEMMs") measured there
    0.76-0.91 of oneDNN's forward+backward and 0.85 of its forward; at dilation 8 1.00 /
    1.07, with 32 channels 1.2, with 3 or more taps or a stride 1.1-1.3 (oneDNN reuses each
    input row across taps; the GEMMs read it once per tap).  Measured again for narrow
    stacks (2026-11-27, ``bench/gemm1d_ab.py --only narrow``; bench/README.md "Per-call
    cost"): 16, 32 and 64 channels over 4 x 4000 steps, dilations 1-512, forward+backward
    0.95-1.24 of oneDNN's, and the two taps as one GEMM over ``[x[t - d], x[t]]`` (inner
    dimension 2 x channels) 0.96-1.24: the rule stays where it was on AVX-512.

    On AVX2-only CPUs (:func:`_avx2_only`; AMD EPYC Zen 3, 2026-11-27) oneDNN's backward of
    these layers runs 3-5x its forward (AVX-512: ~2x), so where autograd records the GEMM
    backward takes every k2 / k3 stride-1 layer with :data:`NARROW_CHANNELS` or more
    channels in and out and 1024+ output steps, any dilation: forward+backward (one thread,
    scratch A/B of the two kernels called directly, as ``bench/gemm1d_ab.py``) k2: 0.59-0.83
    of oneDNN's at 32 channels x 4 x 4000 steps, dilations 1-64; 0.57-0.85 at 64;
    0.85-0.94 at 16; k3 (a TCN's causal layers): 0.75-0.92 at 64 channels x 8 x 2000,
    dilations 1-4; 0.75-0.79 at 32, 0.69-0.77 at 16 channels x 4 x 4000; k5: 0.81 at
    dilation 1 but 1.01 at 2, left to oneDNN."""
    if not ENABLED or kernel.dim() != 3 or groups != 1 or x.dtype not in _DTYPES \
            or kernel.dtype != x.dtype:
        return None
    if _graphs.standard_ops_wanted():
        return None
    recording = torch.is_grad_enabled() and (x.requires_grad or kernel.requires_grad)
    if not recording:
        form = small_form(x, kernel, strides, dilation, pads, channels_last)
        if form is not None:
            return _SMALL_KERNELS[form]
    if not channels_last:
        return None
    k, c, f = kernel.shape
    (left, right), = pads
    if recording and NARROW_CHANNELS is not None and k in (2, 3) and strides[0] == 1 \
            and min(c, f) >= NARROW_CHANNELS and _avx2_only():  # oneDNN's slow backward
        return conv if _padding.padded_output_length(x.shape[1], k, strides[0], dilation[0],
                                                     left, right) >= 1024 else None
    least = 64 if recording else FORWARD_DILATION
    if least is None or k != 2 or strides[0] != 1 or dilation[0] < least or c < 64 \
            or f < 64:
        return None
    return conv if _padding.padded_output_length(x.shape[1], k, strides[0], dilation[0],
                                                 left, right) >= 1024 else None


@functools.lru_cache(maxsize=None)
def _avx2_only() -> bool:
    """Whether torch's CPU kernels run AVX2 code here (``torch.backends.cpu.
    get_cpu_capability()``: an x86 CPU without AVX-512), where oneDNN's convolution
    backward measured 3-5x its forward for narrow k2 / k3 layers (:func:`pick_conv`)."""
    return torch.backends.cpu.get_cpu_capability() == "AVX2"


def takes_transpose(x: torch.Tensor, kernel: torch.Tensor, strides: tuple,
                    dilation: tuple) -> bool:
    """Whether :func:`conv_transpose` runs this transposed convolution (CPU channels_last
    data): rank 1, float32 / float64, dilation 1, stride >= 2, a kernel a whole multiple of
    the stride (no zero taps), and either autograd recording with at least 64 channels in
    and out, 128 input steps and 2^26 multiply-adds per sequence (the phase-GEMM backward:
    the one-thread A/B measured 0.71-0.85 of oneDNN's forward+backward for MelGAN's k16 s8
    and k4 s2 upsamplers, k8 s4, k2 s2; k3 s2 (zero taps) 1.3, stride 1 1.3, small calls
    ((16, 64, 64) k4 s2) 1.2), or the forward's class (:func:`_gemm_forward_fits`)."""
    if not ENABLED or kernel.dim() != 3 or x.dtype not in _DTYPES \
            or kernel.dtype != x.dtype or _graphs.standard_ops_wanted():
        return False
    k, f, c = kernel.shape
    s, steps = strides[0], x.shape[1]
    if dilation[0] != 1 or s < 2 or k % s:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or kernel.requires_grad):
        return c >= 64 and f >= 64 and steps >= 128 and steps * c * k * f >= 2 ** 26
    return _gemm_forward_fits(x, kernel, s)


def _gemm_forward_fits(x: torch.Tensor, kernel: torch.Tensor, stride: int) -> bool:
    """Whether :func:`_transpose_forward` runs the GEMM form: float32 / float64, at least
    :data:`TRANSPOSE_FORWARD_CHANNELS` input channels, the columns at most
    :data:`TRANSPOSE_FORWARD_BYTES`."""
    k, f, c = kernel.shape
    if TRANSPOSE_FORWARD_CHANNELS is None or c < TRANSPOSE_FORWARD_CHANNELS \
            or x.dtype not in _WIDE or kernel.dtype != x.dtype:
        return False
    phases = -(-k // stride)
    columns = x.shape[0] * x.shape[1] * phases * stride * f * x.element_size()
    return columns <= TRANSPOSE_FORWARD_BYTES


# -- Conv1D ----------------------------------------------------------------------------------

def conv(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor], *,
         strides: tuple, dilation: tuple, pads: tuple, groups: int,
         channels_last: bool) -> torch.Tensor:
    """The reference kernel's ``conv`` for rank-1, ungrouped convolutions: channels_last,
    the forward as shifted GEMMs where :func:`_conv_forward` can (else the reference's), the
    backward by hand (:func:`conv_backward`) where autograd records; channels_first, the
    reference kernel.  (The small inference calls of :func:`small_form` run
    :func:`conv_taps` / :func:`conv_unfold`, which :func:`pick_conv` names.)

    Args:
        x: ``(batch, steps, channels)``, or ``(batch, channels, steps)`` if not
            ``channels_last``.
        kernel: ``(kernel_size, channels, filters)``.
        bias: ``(filters,)`` or ``None``.
        strides, dilation, pads: one entry each (``pads``: ``((left, right),)``).
        groups: must be 1.
        channels_last: the layout of ``x`` and of the result.

    Returns:
        ``(batch, out_steps, filters)``, or ``(batch, filters, out_steps)``.
    """
    if kernel.dim() != 3 or groups != 1 or x.dim() != 3:
        raise ValueError("gemm1d.conv runs ungrouped 1D convolutions only")
    (left, right), = pads
    geometry = (strides[0], dilation[0], left, right)
    recording = torch.is_grad_enabled() and (x.requires_grad or kernel.requires_grad
                                             or (bias is not None and bias.requires_grad))
    if not channels_last:
        return _reference.conv(x, kernel, bias, strides=strides, dilation=dilation,
                               pads=pads, groups=1, channels_last=False)
    if recording:
        return _Conv1dGemm.apply(x, kernel, bias, geometry)
    return _conv_forward(x, kernel, bias, geometry)


def _conv_forward(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor],
                  geometry: tuple) -> torch.Tensor:
    """The output ``(batch, out_steps, filters)``: shifted GEMMs (float32 / float64, stride
    1, a tap reading every input row: ``causal`` and odd ``same``, dilation at least
    :data:`FORWARD_DILATION`), else the reference kernel's oneDNN convolution."""
    stride, dilation, left, right = geometry
    n, steps, c = x.shape
    k, _, f = kernel.shape
    out_steps = _padding.padded_output_length(steps, k, stride, dilation, left, right)
    whole = next((j for j in range(k) if j * dilation == left), None)
    if FORWARD_DILATION is None or dilation < FORWARD_DILATION or stride != 1 \
            or out_steps != steps or whole is None or x.dtype not in _WIDE \
            or kernel.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        return _reference.conv(x, kernel, bias, strides=(stride,), dilation=(dilation,),
                               pads=((left, right),), groups=1, channels_last=True)
    xc = x.contiguous()
    y = linear(xc.view(n * steps, c), kernel[whole], bias).view(n, steps, f)
    for j in range(k):
        rows = _padding.tap_output_range(steps, j, stride, dilation, left, out_steps)
        if rows is None or j == whole:
            continue
        t0, t1, start = rows
        for b in range(n):
            y[b, t0:t1].addmm_(xc[b, start:start + t1 - t0], kernel[j])
    return y


def linear(a: torch.Tensor, w: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``a @ w (+ bias)`` into a new ``(rows, w.shape[1])`` tensor: oneDNN's matmul for
    float32 (``torch.ops.mkldnn._linear_pointwise``, what torch.compile's CPU code calls:
    0.75-0.85x MKL's time for WaveNet's (64000, 64) @ (64, 128) on this Zen 4, where MKL
    runs its AVX2 code), else ``torch.addmm`` (MKL), as where the user switched oneDNN off
    (``torch.backends.mkldnn.flags(enabled=False)``).  kstride.py's GEMMs call it too."""
    if a.dtype == torch.float32 and _ONEDNN_LINEAR and torch.backends.mkldnn.enabled:
        return torch.ops.mkldnn._linear_pointwise(a, w.t().contiguous(), bias, "none",
                                                  [None], "")
    return torch.mm(a, w) if bias is None else torch.addmm(bias, a, w)


def _rows(x: torch.Tensor, start: int, count: int, stride: int) -> torch.Tensor:
    """Rows ``start, start + stride, ...`` (``count`` of them) of a 2D tensor, a view."""
    return x[start:start + (count - 1) * stride + 1:stride]


class _Conv1dGemm(torch.autograd.Function):
    """:func:`_conv_forward`, the backward as shifted GEMMs."""

    @staticmethod
    def forward(ctx, x, kernel, bias, geometry):
        ctx.geometry = geometry
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.save_for_backward(x, kernel)
        return _conv_forward(x, kernel, bias, geometry)

    @staticmethod
    def backward(ctx, grad_y):
        x, kernel = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[:3])
        stride, dilation, left, right = ctx.geometry
        if torch.is_grad_enabled():  # create_graph=True: differentiable gradients
            bias = _reference.stand_in_bias(ctx.bias_dtype, kernel.shape[-1], x.device)
            return _reference.differentiable_grads(
                lambda x, kernel, bias: _reference.conv(
                    x, kernel, bias, strides=(stride,), dilation=(dilation,),
                    pads=((left, right),), groups=1, channels_last=True),
                grad_y, (x, kernel, bias), needs) + (None,)
        return conv_backward(grad_y, x, kernel, ctx.bias_dtype, needs, ctx.geometry) + (None,)


def conv_backward(grad_y: torch.Tensor, x: torch.Tensor, kernel: torch.Tensor,
                  bias_dtype: Optional[torch.dtype], needs: tuple, geometry: tuple) -> tuple:
    """Gradients of ``(x, kernel, bias)`` of the channels_last Conv1D, ``None`` where
    ``needs`` says so.

    Args:
        grad_y: ``(batch, out_steps, filters)``.
        x: ``(batch, steps, channels)``.
        kernel: ``(kernel_size, channels, filters)``.
        bias_dtype: the bias' dtype, ``None`` without a bias.
        needs: three booleans.
        geometry: ``(stride, dilation, pad_left, pad_right)``.
    """
    need_x, need_w, need_b = needs
    stride, dilation, left, _ = geometry
    out_dtype = x.dtype
    work = x.dtype if x.dtype in _WIDE else torch.float32
    gy = grad_y.to(work).contiguous()
    xc = x.to(work).contiguous()
    w = kernel.to(work)
    n, steps, c = xc.shape
    k, _, f = w.shape
    out_steps = gy.shape[1]
    taps = [(j, _padding.tap_output_range(steps, j, stride, dilation, left, out_steps))
            for j in range(k)]
    # a tap reading every input row once, in order (stride 1, offset 0, as many outputs as
    # inputs): one GEMM over all sequences at once writes (or starts) its gradient
    whole = next((j for j, rows in taps if stride == 1 and rows == (0, steps, 0)
                  and out_steps == steps), None)
    grad_x = grad_w = grad_b = None
    if need_x:
        if whole is not None:
            grad_x = linear(gy.view(n * steps, f), w[whole].t(), None).view(n, steps, c)
        else:
            grad_x = xc.new_zeros(n, steps, c)
        for j, rows in taps:
            if rows is None or j == whole:
                continue
            t0, t1, start = rows
            for b in range(n):
                _rows(grad_x[b], start, t1 - t0, stride).addmm_(gy[b, t0:t1], w[j].t())
        grad_x = grad_x.to(out_dtype)
    if need_w:
        grad_w = w.new_empty(k, c, f)
        for j, rows in taps:
            if rows is None:
                grad_w[j].zero_()
            elif j == whole:
                torch.mm(xc.view(n * steps, c).t(), gy.view(n * steps, f), out=grad_w[j])
            else:
                t0, t1, start = rows
                for b in range(n):
                    a = _rows(xc[b], start, t1 - t0, stride).t()
                    if b == 0:
                        torch.mm(a, gy[b, t0:t1], out=grad_w[j])
                    else:
                        grad_w[j].addmm_(a, gy[b, t0:t1])
        grad_w = grad_w.to(kernel.dtype)
    if need_b:
        grad_b = gy.sum((0, 1)).to(bias_dtype)
    return grad_x, grad_w, grad_b


# -- Conv1D's inference forward as GEMMs -----------------------------------------------------

def small_form(x: torch.Tensor, kernel: torch.Tensor, strides: tuple, dilation: tuple,
               pads: tuple, channels_last: bool = True) -> Optional[str]:
    """Which form of :func:`gemm_forward` runs this Conv1D forward where no gradient is
    recorded (``"taps"`` or ``"unfold"``; ``None``: the reference kernel's oneDNN / THNN
    convolution): float32 data and kernel, :data:`SMALL_FORWARD`, and the shapes of
    :func:`_small_rule`.  ``x``: ``(batch, steps, channels)``, or ``(batch, channels,
    steps)`` if not ``channels_last``; ``kernel``: ``(kernel_size, channels, filters)``."""
    if not SMALL_FORWARD or x.dtype != torch.float32 or kernel.dtype != x.dtype:
        return None
    k, c, f = kernel.shape
    (left, right), = pads
    steps = x.shape[1 if channels_last else 2]
    out_steps = _padding.padded_output_length(steps, k, strides[0], dilation[0], left, right)
    return _small_rule(x.shape[0], out_steps, c, k, f, strides[0], dilation[0])


def _small_rule(batch: int, out_steps: int, channels: int, k: int, filters: int,
                stride: int, dilation: int) -> Optional[str]:
    """The measured rule (``bench/conv1d_small_ab.py``, ``bench/conv1d_small.json``: 633
    shapes, batch 1-32, 50-4000 steps, 16-256 channels in and out, kernel 1-11, stride 1-2,
    dilation 1-64; one thread, CPU time, each form in its own process, alternated, 3
    rounds; AMD EPYC Zen 3, AVX2, 2026-11-27).  Chosen where every measured shape of the
    class ran at most 0.99 of the path it replaces (173 shapes, median 0.67):

    - ``"taps"``: kernel 2 or 3, stride 1, dilated or kernel 2, batch <= 4, <= 64 channels
      in and out, ``batch * out_steps * max(channels, filters) <= 2^17`` (WaveNet's
      k2 layers, 1 x 4000 x 32, dilations 1-64: 0.78-0.90 in the 7-round confirmation;
      16 channels: 0.75-0.87; 64 channels x 4000 steps, 0.72-1.06, left out); k5 dilated
      taps lost (1.04-1.39), as did batches of 16+ (oneDNN blocks over the batch);
    - ``"unfold"``: the windows ``batch * out_steps * kernel * channels <= 2^16`` floats
      (256 KiB, in L2), and for kernel <= 3 stride 1 undilated, where oneDNN's direct
      convolution is good, ``<= 2^14`` (k3 at 2^15-2^16: 1.08-1.13); the keyword-spotting
      stem, k11 stride 2 on 1 x 101 x 64: 0.87-0.91; larger windows leave the caches and
      lost up to 10x."""
    if k <= 3 and stride == 1 and (dilation > 1 or k == 2) and batch <= 4 \
            and max(channels, filters) <= 64 \
            and batch * out_steps * max(channels, filters) <= 2 ** 17:
        return "taps"
    cols = batch * out_steps * k * channels
    if cols > 2 ** 16 or (k <= 3 and stride == 1 and dilation == 1 and cols > 2 ** 14):
        return None
    return "unfold"


def gemm_forward(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor], *,
                 strides: tuple, dilation: tuple, pads: tuple, channels_last: bool,
                 form: str) -> torch.Tensor:
    """The reference kernel's ``conv`` (rank 1, ungrouped) as GEMMs on the
    ``(steps, channels)`` rows of each sequence, no oneDNN / THNN convolution:

    - ``"taps"``: one GEMM per tap, accumulated (``addmm_`` / ``baddbmm_``, beta = 1) into
      the output rows that tap reaches; its input rows are a row-strided view of the
      unpadded data (leading dimension ``stride * channels``), no copy, no padding;
    - ``"unfold"``: the padded data's windows as one ``(batch * out_steps, kernel_size *
      channels)`` matrix (im2col: one copy) times the kernel as it lies
      (``(kernel_size * channels, filters)``), the bias in the same GEMM.

    channels_first data is read through its transposed view and the output written
    ``(filters, out_steps)`` per sequence by the same GEMMs transposed (no transposes
    copied).  Differentiable by torch's autograd (standard ops), but
    ``sepconv.functional`` runs it (:func:`conv_taps`, :func:`conv_unfold`) only where no
    gradient is recorded (:func:`pick_conv`).

    Args:
        x: ``(batch, steps, channels)``, or ``(batch, channels, steps)`` if not
            ``channels_last``.
        kernel: ``(kernel_size, channels, filters)``.
        bias: ``(filters,)`` or ``None``.
        strides, dilation, pads: one entry each (``pads``: ``((left, right),)``).
        form: ``"taps"`` or ``"unfold"``.

    Returns:
        ``(batch, out_steps, filters)``, or ``(batch, filters, out_steps)``.
    """
    if form not in ("taps", "unfold"):
        raise ValueError(f"form must be 'taps' or 'unfold'. Received form={form!r}")
    xl = x if channels_last else x.transpose(1, 2)
    stride, dil = strides[0], dilation[0]
    (left, right), = pads
    k, _, f = kernel.shape
    out_steps = _padding.padded_output_length(xl.shape[1], k, stride, dil, left, right)
    if form == "unfold":
        return _unfold_forward(xl, kernel, bias, stride, dil, left, right, out_steps,
                               channels_last)
    return _taps_forward(xl, kernel, bias, stride, dil, left, out_steps, channels_last)


def conv_taps(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor], *,
              strides: tuple, dilation: tuple, pads: tuple, groups: int,
              channels_last: bool) -> torch.Tensor:
    """:func:`gemm_forward`'s ``"taps"`` as a kernel (the reference's ``conv`` signature;
    ``groups`` is 1): what :func:`pick_conv` names where :func:`small_form` says
    ``"taps"``, so the call does not ask the rule again."""
    return gemm_forward(x, kernel, bias, strides=strides, dilation=dilation, pads=pads,
                        channels_last=channels_last, form="taps")


def conv_unfold(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor], *,
                strides: tuple, dilation: tuple, pads: tuple, groups: int,
                channels_last: bool) -> torch.Tensor:
    """:func:`gemm_forward`'s ``"unfold"`` as a kernel, as :func:`conv_taps`."""
    return gemm_forward(x, kernel, bias, strides=strides, dilation=dilation, pads=pads,
                        channels_last=channels_last, form="unfold")


#: :func:`small_form`'s answer -> the kernel :func:`pick_conv` names for it
_SMALL_KERNELS = {"taps": conv_taps, "unfold": conv_unfold}


def _taps_forward(xl, kernel, bias, stride, dilation, left, out_steps, channels_last):
    """:func:`gemm_forward`'s ``"taps"``; ``xl``: ``(batch, steps, channels)`` (a view)."""
    n, steps, c = xl.shape
    k, _, f = kernel.shape
    taps = [(j, _padding.tap_output_range(steps, j, stride, dilation, left, out_steps))
            for j in range(k)]
    taps = [(j, rows) for j, rows in taps if rows is not None]
    whole = next((j for j, (t0, t1, _) in taps if t0 == 0 and t1 == out_steps), None)

    def rows(j, t0, t1, start):  # (n, t1 - t0, c): input rows of tap j, a view
        return xl[:, start:start + (t1 - t0 - 1) * stride + 1:stride]

    if whole is not None:  # the first GEMM writes the output (with the bias)
        a = rows(whole, *dict(taps)[whole])
        y = _gemm(a, kernel[whole], bias, channels_last)
    else:
        y = xl.new_empty((n, out_steps, f) if channels_last else (n, f, out_steps))
        if bias is None:
            y.zero_()
        else:
            y.copy_(bias.view(1, 1, f) if channels_last else bias.view(1, f, 1))
    for j, (t0, t1, start) in taps:
        if j == whole:
            continue
        a, w = rows(j, t0, t1, start), kernel[j]
        if channels_last:
            out, a, w = y[:, t0:t1], a, w.expand(n, c, f)
        else:
            out, a, w = y[:, :, t0:t1], w.t().expand(n, f, c), a.transpose(1, 2)
        if n == 1:
            out[0].addmm_(a[0], w[0])
        else:
            out.baddbmm_(a, w)
    return y


def _gemm(a, w, bias, channels_last):
    """``a @ w + bias`` per sequence, ``a``: ``(n, rows, c)``, ``w``: ``(c, f)``; into a new
    ``(n, rows, f)`` tensor, or ``(n, f, rows)`` (``(a @ w)`` transposed) if not
    ``channels_last``."""
    n, _, c = a.shape
    f = w.shape[1]
    if channels_last:
        if n == 1:
            y = torch.mm(a[0], w) if bias is None else torch.addmm(bias, a[0], w)
            return y.unsqueeze(0)
        w = w.expand(n, c, f)
        return torch.bmm(a, w) if bias is None else torch.baddbmm(bias.view(1, 1, f), a, w)
    wt, at = w.t(), a.transpose(1, 2)
    if n == 1:
        y = torch.mm(wt, at[0]) if bias is None else torch.addmm(bias.view(f, 1), wt, at[0])
        return y.unsqueeze(0)
    wt = wt.expand(n, f, c)
    return torch.bmm(wt, at) if bias is None else torch.baddbmm(bias.view(1, f, 1), wt, at)


def _unfold_forward(xl, kernel, bias, stride, dilation, left, right, out_steps,
                    channels_last):
    """:func:`gemm_forward`'s ``"unfold"``; ``xl``: ``(batch, steps, channels)`` (a view)."""
    n, steps, c = xl.shape
    k, _, f = kernel.shape
    padded = steps + left + right
    if left or right or not xl.is_contiguous():
        xp = xl.new_empty(n, padded, c)
        xp[:, :left].zero_()
        xp[:, left + steps:].zero_()
        xp[:, left:left + steps] = xl
    else:
        xp = xl
    cols = xp.as_strided((n, out_steps, k * c) if dilation == 1 else (n, out_steps, k, c),
                         (padded * c, stride * c, 1) if dilation == 1
                         else (padded * c, stride * c, dilation * c, 1),
                         xp.storage_offset())
    w = kernel.reshape(k * c, f)
    if channels_last:  # all sequences' windows as one matrix (the copy), one GEMM
        return _gemm(cols.reshape(1, n * out_steps, k * c), w, bias, True).view(
            n, out_steps, f)
    return _gemm(cols.reshape(n, out_steps, k * c), w, bias, False)


# -- Conv1DTranspose -------------------------------------------------------------------------

def conv_transpose(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor], *,
                   strides: tuple, dilation: tuple, pads: tuple, out_spatial: tuple,
                   channels_last: bool) -> torch.Tensor:
    """The reference kernel's ``conv_transpose`` for rank-1, channels_last, undilated
    transposed convolutions: the forward as one GEMM and an overlap-add where
    :func:`_transpose_forward` takes it (else the reference's), the backward as phase GEMMs
    (:func:`transpose_backward`) where autograd records.

    Args:
        x: ``(batch, steps, channels)``.
        kernel: ``(kernel_size, filters, channels)`` (Keras' layout).
        bias: ``(filters,)`` or ``None``.
        strides, dilation: one entry each; dilation must be 1.
        pads: ``((left, right),)`` of the convolution from ``out_spatial``.
        out_spatial: ``(out_steps,)``.
        channels_last: must be True.

    Returns:
        ``(batch, out_steps, filters)``.
    """
    if not channels_last or kernel.dim() != 3 or x.dim() != 3 or dilation[0] != 1:
        raise ValueError("gemm1d.conv_transpose runs undilated 1D transposed convolutions "
                         "on channels_last data only")
    (left, right), = pads
    geometry = (strides[0], left, right, out_spatial[0])
    if torch.is_grad_enabled() and (x.requires_grad or kernel.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _ConvTranspose1dGemm.apply(x, kernel, bias, geometry)
    return _transpose_forward(x, kernel, bias, geometry)


def _transpose_forward(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor],
                       geometry: tuple) -> torch.Tensor:
    """The output ``(batch, out_steps, filters)``: where :func:`_gemm_forward_fits`, one GEMM
    of all rows into the phases' columns ``(batch, steps, J, stride * filters)`` (the
    kernel, zero-padded to ``J * stride`` taps, is that GEMM's ``(J * stride * filters,
    channels)`` weight as it lies), their overlap-add into the full output, then the crop
    to Keras' output with the bias in one pass; else the reference kernel's."""
    stride, left, right, out_steps = geometry
    if (bias is not None and bias.dtype != x.dtype) or not _gemm_forward_fits(x, kernel,
                                                                              stride):
        return _reference.conv_transpose(x, kernel, bias, strides=(stride,), dilation=(1,),
                                         pads=((left, right),), out_spatial=(out_steps,),
                                         channels_last=True)
    n, steps, c = x.shape
    k, f, _ = kernel.shape
    j = -(-k // stride)
    if j * stride != k:
        kernel = F.pad(kernel, (0, 0, 0, 0, 0, j * stride - k))
    z = linear(x.reshape(n * steps, c), kernel.reshape(j * stride * f, c).t(), None)
    z = z.view(n, steps, j, stride * f)
    rows = steps + j - 1
    if j == 1:
        full = z[:, :, 0]
    else:
        full = z.new_empty(n, rows, stride * f)
        torch.add(z[:, 1:, 0], z[:, :-1, 1], out=full[:, 1:steps])
        full[:, 0] = z[:, 0, 0]
        full[:, steps] = z[:, steps - 1, 1]
        full[:, steps + 1:] = 0
        for p in range(2, j):
            full[:, p:p + steps] += z[:, :, p]
    full = full.reshape(n, rows * stride, f)
    kept = min(out_steps, rows * stride - left)  # the rest (if any): zeros, plus the bias
    y = z.new_empty(n, out_steps, f)
    if bias is None:
        y[:, :kept] = full[:, left:left + kept]
        y[:, kept:] = 0
    else:
        torch.add(full[:, left:left + kept], bias, out=y[:, :kept])
        y[:, kept:] = bias
    return y


def _phases(kernel: torch.Tensor, stride: int) -> torch.Tensor:
    """``(J, channels, stride * filters)``: phase ``j``'s column block ``r`` is tap
    ``j * stride + r`` transposed (zeros past the kernel)."""
    k, f, c = kernel.shape
    j = -(-k // stride)
    if j * stride != k:
        kernel = F.pad(kernel, (0, 0, 0, 0, 0, j * stride - k))
    return kernel.reshape(j, stride, f, c).permute(0, 3, 1, 2).reshape(j, c, stride * f)


def transpose_backward(grad_y: torch.Tensor, x: torch.Tensor, kernel: torch.Tensor,
                       bias_dtype: Optional[torch.dtype], needs: tuple,
                       geometry: tuple) -> tuple:
    """Gradients of ``(x, kernel, bias)``, ``None`` where ``needs`` says so.

    Args:
        grad_y: ``(batch, out_steps, filters)``.
        x: ``(batch, steps, channels)``.
        kernel: ``(kernel_size, filters, channels)``.
        bias_dtype: the bias' dtype, ``None`` without a bias.
        needs: three booleans.
        geometry: ``(stride, pad_left, pad_right, out_steps)``.
    """
    need_x, need_w, need_b = needs
    stride, left, _, out_steps = geometry
    work = x.dtype if x.dtype in _WIDE else torch.float32
    gy = grad_y.to(work)
    xc = x.to(work).contiguous()
    n, steps, c = xc.shape
    k, f, _ = kernel.shape
    wj = _phases(kernel.to(work), stride)
    j = wj.shape[0]
    rows = steps + j - 1
    # the output gradient on the full output's rows (zeros where Keras' output is cropped)
    g = F.pad(gy, (0, 0, left, rows * stride - left - out_steps)).contiguous()
    g = g.view(n, rows, stride * f)
    grad_x = grad_w = grad_b = None
    if need_x:
        grad_x = xc.new_empty(n, steps, c)
        for b in range(n):
            torch.mm(g[b, :steps], wj[0].t(), out=grad_x[b])
            for p in range(1, j):
                grad_x[b].addmm_(g[b, p:p + steps], wj[p].t())
        grad_x = grad_x.to(x.dtype)
    if need_w:
        gw = xc.new_empty(j, c, stride * f)
        for p in range(j):
            torch.mm(xc[0].t(), g[0, p:p + steps], out=gw[p])
            for b in range(1, n):
                gw[p].addmm_(xc[b].t(), g[b, p:p + steps])
        grad_w = gw.view(j, c, stride, f).permute(0, 2, 3, 1).reshape(j * stride, f, c)[:k]
        grad_w = grad_w.to(kernel.dtype)
    if need_b:
        grad_b = gy.sum((0, 1)).to(bias_dtype)
    return grad_x, grad_w, grad_b


class _ConvTranspose1dGemm(torch.autograd.Function):
    """:func:`_transpose_forward`, the backward as phase GEMMs."""

    @staticmethod
    def forward(ctx, x, kernel, bias, geometry):
        ctx.geometry = geometry
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.save_for_backward(x, kernel)
        return _transpose_forward(x, kernel, bias, geometry)

    @staticmethod
    def backward(ctx, grad_y):
        x, kernel = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[:3])
        if torch.is_grad_enabled():  # create_graph=True: differentiable gradients
            stride, left, right, out_steps = ctx.geometry
            bias = _reference.stand_in_bias(ctx.bias_dtype, kernel.shape[1], x.device)
            return _reference.differentiable_grads(
                lambda x, kernel, bias: _reference.conv_transpose(
                    x, kernel, bias, strides=(stride,), dilation=(1,),
                    pads=((left, right),), out_spatial=(out_steps,), channels_last=True),
                grad_y, (x, kernel, bias), needs) + (None,)
        return transpose_backward(grad_y, x, kernel, ctx.bias_dtype, needs,
                                  ctx.geometry) + (None,)
