"""Depthwise 1D and 2D convolution on CPU for training: the C depthwise routines' backward.

``kernels/depthwise_cpu.py`` runs the forward pass through oneDNN's depthwise kernel and
leaves the backward to autograd, i.e. to oneDNN's depthwise backward, whose weight
gradient runs ~20x slower than its forward: measured on one thread, (8, 4000, 128)
float32, kernel 9 "same", forward 3.0 ms and forward+backward 41.7 ms.  The separable
kernel (``kernels/cpu.py``) computes the same gradients with the C routines of
``kernels/_cpu_native.py``; this module gives them to ``DepthwiseConv1D`` (and to
``DepthwiseConv2D`` with a kernel one row high, which is a 1D convolution of each row):

- forward: oneDNN's, through ``depthwise_cpu.conv`` (with autograd off there, so it takes
  that kernel's inference paths: TensorFlow's odd "same" element as zero taps), except in
  float32 with a depth multiplier or a dilation, where the C forward is faster
  (:func:`_native_forward`; oneDNN runs a grouped or a generic dilated convolution there);
- backward, written by hand: both depthwise gradients in one C pass over grad_y
  (``cpu.native_depthwise_backward``), or either alone (``cpu.native_depthwise_grad_weight``,
  ``cpu.native_depthwise_input_grad``: strided input gradients by phases), the bias'
  gradient a sum, the multiplier's input gradients summed by ``cpu._sum_multiplier``; on the
  thread count of the library's thread policy (``kernels/threads.py``).

bfloat16 (float16) data: forward as today (oneDNN in bfloat16); the backward widens the
operands to float32 (exactly), runs the C routines and rounds the gradients, as the
separable kernel does for its weight gradient: its sums run in float32, as oneDNN's do.

The kernel is an opaque torch custom op, ``torch.ops.sepconv.depthwise_conv1d_cpu``, with a
fake implementation and an autograd formula whose backward is a second op
(``..._backward``), so torch.compile(fullgraph=True) sees two opaque ops; under
``create_graph=True`` the formula returns the reference composition's differentiable
gradients (double backward).  Eager calls go through an autograd.Function that skips the
op's Python dispatch (as ``kernels/cpu.py`` does).

``sepconv.functional._pick_conv_kernel`` picks it (:func:`takes`) for CPU channels_last
float32 / bfloat16 data with several channels when autograd records the call and the C
routines could be built; not while exporting or tracing (``torch.export``,
``torch.jit.trace``: the graph must hold standard ops), nor under torch.func transforms
(``grad``, ``vmap``: the op has no vmap rule; today's kernel runs there), nor under
``torch.autocast("cpu")`` (which casts torch's convolution, not this op), nor for float64
(the gradient checks' dtype) or without a C compiler: there ``depthwise_cpu.conv`` as
before.  Tested against the reference kernel in tests/test_depthwise_cpu_train.py.

Rank 2 (``DepthwiseConv2D`` and ``SeparableConv2D``'s depthwise step with a kernel more than
one row high) has its own pair of ops, ``sepconv::depthwise_conv2d_cpu`` and
``..._backward`` (geometry: strides, dilations and pads of both axes), behind the same
autograd formula: forward oneDNN's through ``depthwise_cpu.conv`` without autograd (the C
forward ``_cpu_native.dw2d_forward`` only for bfloat16 with a multiplier, see
:func:`_forward_2d`), backward the 2D C routines (``_cpu_native.dw2d_grad_weight``,
``dw2d_input_grad``; bfloat16 widened, as in 1D).  The dispatcher takes it only where
:func:`takes_2d`'s measured rule says it is faster than today's kernel.
"""

from __future__ import annotations

from typing import List, Optional

import torch

from .. import padding as _padding
from . import _cpu_native
from . import cpu as _cpu
from . import depthwise_cpu as _depthwise_cpu
from . import graphs as _graphs
from . import reference as _reference
from . import threads as _policy

#: The switch :func:`takes` reads (benchmarks alternate it; ``False``: today's kernel).
ENABLED = True
#: The forward pass through the C routine (float32) instead of oneDNN's depthwise kernel:
#: ``None`` (the default) where :func:`_native_forward` says it is faster, else always
#: (``True``) or never (``False``).
NATIVE_FORWARD = None
#: 2D kernels more than one row high: ``None`` (the default) where :func:`takes_2d`'s
#: measured rule says the C backward is faster than today's kernel, else always (``True``)
#: or never (``False``).
TAKES_2D = None

_DTYPES = (torch.float32, torch.bfloat16)


def takes(x: torch.Tensor, kernel: torch.Tensor, pads: tuple, strides: tuple = (1,),
          dilation: tuple = (1,)) -> bool:
    """Whether this kernel runs a depthwise convolution that ``depthwise_cpu.conv`` would
    (CPU channels_last, several channels, Keras' grouped kernel ``(*k, 1, C*M)``): rank 1,
    rank 2 with a kernel one row high, or rank 2 where :func:`takes_2d` says the C routines
    are faster; float32 or bfloat16; autograd recording; not exporting, not under
    torch.func transforms or CPU autocast; the C routines built."""
    if not ENABLED or x.dtype not in _DTYPES or kernel.dtype != x.dtype:
        return False
    if kernel.dim() == 4 and (kernel.shape[0] != 1 or tuple(pads[0]) != (0, 0)) \
            and not takes_2d(x, kernel, strides, dilation):
        return False
    if not (torch.is_grad_enabled() and (x.requires_grad or kernel.requires_grad)):
        return False
    if _graphs.standard_ops_wanted(compiled=True):  # (a custom op: it compiles)
        return False
    return _cpu_native.load() is not None


def takes_2d(x: torch.Tensor, kernel: torch.Tensor, strides: tuple,
             dilation: tuple = (1, 1)) -> bool:
    """Whether a 2D kernel more than one row high runs here (:data:`TAKES_2D` unset): where
    bench/depthwise_train.py measured the new kernel faster than today's (oneDNN's
    depthwise backward, which autograd runs on a padded copy for TensorFlow's odd "same"
    element).  One-thread CPU time of forward+backward, new / old, one process, alternated
    (bench/README.md, "DepthwiseConv2D training on CPU"): dilated (3x3 dilation 2:
    0.26), 5x5 and larger (MobileNetV3 5x5: 0.36, 7x7: 0.30), strided in both axes
    (MobileNet 3x3 stride 2: 0.79).  Left to today's kernel, where oneDNN's 3x3 backward
    is as fast or faster: 3x3 stride 1 (MobileNet 112x112x32: 1.18, Xception 74x74x128:
    1.10), a single tall column (EEGNet's (64, 1) with multiplier 2: 1.05), and the
    geometries not measured (small kernels with one axis strided)."""
    if TAKES_2D is not None:
        return TAKES_2D
    kh, kw = kernel.shape[:2]
    if kw == 1:
        return False
    return max(dilation) > 1 or kh * kw >= 25 or (min(strides) > 1 and min(kh, kw) >= 3)


def conv(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor], *,
         strides: tuple, dilation: tuple, pads: tuple, groups: int,
         channels_last: bool) -> torch.Tensor:
    """``depthwise_cpu.conv``'s contract (the reference kernel's signature) for what
    :func:`takes` accepts.

    Args:
        x: ``(batch, steps, channels)`` or ``(batch, rows, cols, channels)``.
        kernel: ``(k, 1, channels * M)`` or ``(kh, kw, 1, channels * M)``.
        bias: ``(channels * M,)`` or ``None``.
        strides, dilation, pads: per spatial axis.
        groups: the number of channels.
        channels_last: must be True.

    Returns:
        ``(batch, out_steps, channels * M)`` or ``(batch, out_rows, out_cols, channels * M)``.
    """
    if not channels_last or kernel.shape[-2] != 1 or x.shape[-1] != groups:
        raise ValueError("depthwise_train.conv runs depthwise convolutions on channels_last "
                         "data only")
    if kernel.dim() == 4 and kernel.shape[0] == 1 and tuple(pads[0]) == (0, 0):
        # one row high: each (strided) row of x is a 1D convolution
        rows = x[:, ::strides[0]]
        n, h, w, c = rows.shape
        y = conv(rows.reshape(n * h, w, c), kernel[0], bias, strides=strides[1:],
                 dilation=dilation[1:], pads=pads[1:], groups=groups, channels_last=True)
        return y.view(n, h, *y.shape[1:])
    w2 = kernel.squeeze(-2)  # (k, C*M) or (kh, kw, C*M)
    geometry = (*strides, *dilation, *(p for pair in pads for p in pair)) \
        if kernel.dim() == 4 else (strides[0], dilation[0], pads[0][0], pads[0][1])
    if _graphs.plain(x, w2, bias):
        return _apply_eager(x, w2, bias, geometry)
    return _DepthwiseConv.apply(x, w2, bias, geometry)


def _unpack(geometry: tuple) -> tuple:
    """``(strides, dilation, pads)`` per spatial axis from a 1D ``(stride, dilation,
    pad_left, pad_right)`` or a 2D ``(sh, sw, dh, dw, top, bottom, left, right)``."""
    if len(geometry) == 4:
        stride, dilation, left, right = geometry
        return (stride,), (dilation,), ((left, right),)
    sh, sw, dh, dw, top, bottom, left, right = geometry
    return (sh, sw), (dh, dw), ((top, bottom), (left, right))


def _out_shape(x: torch.Tensor, w2: torch.Tensor, geometry: tuple) -> tuple:
    strides, dilation, pads = _unpack(geometry)
    return (x.shape[0], *(_padding.padded_output_length(n, k, s, d, *p) for n, k, s, d, p
                          in zip(x.shape[1:-1], w2.shape[:-1], strides, dilation, pads)),
            w2.shape[-1])


def _forward(x: torch.Tensor, w2: torch.Tensor, bias: Optional[torch.Tensor],
             geometry: tuple) -> torch.Tensor:
    """The output ``(N, *out, C*M)``, contiguous (what the fake promises)."""
    if w2.dim() == 3:
        return _forward_2d(x, w2, bias, geometry)
    stride, dilation, pad_left, pad_right = geometry
    n, length, c = x.shape
    k, cm = w2.shape
    if x.dtype == torch.float32 and w2.dtype == torch.float32 \
            and _native_forward(cm // c, dilation):
        out_len = _padding.padded_output_length(length, k, *geometry)
        y = _cpu._native_depthwise(x.contiguous(), w2, out_len, cm // c, stride, dilation,
                                   pad_left)
        return y if bias is None else y.add_(bias)
    with torch.no_grad():
        y = _depthwise_cpu.conv(x, w2.view(k, 1, cm), bias, strides=(stride,),
                                dilation=(dilation,), pads=((pad_left, pad_right),),
                                groups=c, channels_last=True)
    return y.contiguous()


def _native_forward(m: int, dilation: int) -> bool:
    """Whether the C forward runs (float32): with a depth multiplier (oneDNN runs a
    grouped convolution, not its depthwise kernel) or a dilation (oneDNN's padded dilated
    convolution takes a slow generic path; a padded copy costs a pass).  Measured in
    bench/README.md (bench/depthwise_train.py): elsewhere oneDNN's forward is as fast or
    faster (k9, k31 "same" on one thread: 0.6-0.9x the C routine's time)."""
    if NATIVE_FORWARD is None:
        return m > 1 or dilation > 1
    return NATIVE_FORWARD


def _forward_2d(x, w2, bias, geometry):
    strides, dilation, pads = _unpack(geometry)
    n, height, width, c = x.shape
    kh, kw, cm = w2.shape
    # bfloat16 with a multiplier: torch 2.13's channels_last bfloat16 grouped convolution
    # (oneDNN) returns wrong numbers on some small strided inputs (x (1, 3, 4, 16), kernel
    # 1x3, multiplier 2, stride (1, 2): errors of 7 on outputs of ~3, one thread), so the C
    # forward runs there, widened to float32 and rounded once (as oneDNN accumulates)
    if (x.dtype == torch.float32 and w2.dtype == torch.float32
            and _native_forward_2d(cm // c, strides, dilation)) \
            or (x.dtype == torch.bfloat16 and cm > c):
        out = _out_shape(x, w2, geometry)
        y = torch.empty(out, dtype=torch.float32)
        # (on the thread count sepconv.functional.conv's policy set)
        _cpu_native.dw2d_forward(_cpu._as(x, torch.float32).contiguous(),
                                 _cpu._as(w2, torch.float32).contiguous(), y,
                                 kernel=(kh, kw), strides=strides, dilation=dilation,
                                 pad_top=pads[0][0], pad_left=pads[1][0], out_size=out[1:3],
                                 threads=torch.get_num_threads())
        if bias is not None:
            y.add_(bias)
        return _cpu._as(y, x.dtype)
    with torch.no_grad():
        y = _depthwise_cpu.conv(x, w2.unsqueeze(-2), bias, strides=strides,
                                dilation=dilation, pads=pads, groups=c, channels_last=True)
    return y.contiguous()


def _native_forward_2d(m: int, strides: tuple, dilation: tuple) -> bool:
    """Whether the 2D C forward runs (float32; :data:`NATIVE_FORWARD` unset: never).
    bench/depthwise_train.py, one thread: oneDNN's forward was faster on every 2D shape,
    with a multiplier (EEGNet's m2: C 1.49 against 1.14 ms) and dilated (3x3 d2: 3.48
    against 2.52 ms) too; the C routine serves the input gradient."""
    if NATIVE_FORWARD is not None:
        return NATIVE_FORWARD
    return False


# -- the custom ops (as kernels/cpu.py: opaque to torch.compile, a fake for shapes) ---------
# One op per rank (the geometry's ints differ), the same formula behind both.

@torch.library.custom_op("sepconv::depthwise_conv1d_cpu", mutates_args=(), device_types="cpu")
def _op(x: torch.Tensor, w2: torch.Tensor, bias: Optional[torch.Tensor], stride: int,
        dilation: int, pad_left: int, pad_right: int) -> torch.Tensor:
    return _forward(x, w2, bias, (stride, dilation, pad_left, pad_right))


@torch.library.custom_op("sepconv::depthwise_conv2d_cpu", mutates_args=(), device_types="cpu")
def _op_2d(x: torch.Tensor, w2: torch.Tensor, bias: Optional[torch.Tensor], stride_h: int,
           stride_w: int, dilation_h: int, dilation_w: int, pad_top: int, pad_bottom: int,
           pad_left: int, pad_right: int) -> torch.Tensor:
    return _forward(x, w2, bias, (stride_h, stride_w, dilation_h, dilation_w, pad_top,
                                  pad_bottom, pad_left, pad_right))


def _fake(x, w2, bias, *geometry):
    return x.new_empty(_out_shape(x, w2, geometry))


_op.register_fake(_fake)
_op_2d.register_fake(_fake)
_OPS = {4: _op, 8: _op_2d}


def _setup_context(ctx, inputs, output):
    x, w2, bias, *geometry = inputs
    ctx.geometry = tuple(geometry)
    ctx.bias_dtype = None if bias is None else bias.dtype
    ctx.save_for_backward(x, w2)


def _grads(ctx, grad_y):
    """Gradients of (x, w2, bias)."""
    if grad_y is None:
        return None, None, None
    x, w2 = ctx.saved_tensors
    needs = tuple(ctx.needs_input_grad[:3])
    if torch.is_grad_enabled():  # create_graph=True: differentiable gradients
        strides, dilation, pads = _unpack(ctx.geometry)
        bias = _reference.stand_in_bias(ctx.bias_dtype, w2.shape[-1], x.device)
        return _reference.differentiable_grads(
            lambda x, w2, bias: _reference.conv(
                x, w2.unsqueeze(-2), bias, strides=strides, dilation=dilation, pads=pads,
                groups=x.shape[-1], channels_last=True),
            grad_y, (x, w2, bias), needs)
    if _graphs.plain(grad_y, x, w2):
        return _hand_backward(grad_y, x, w2, ctx.bias_dtype, needs, ctx.geometry)
    grads = _BACKWARD_OPS[len(ctx.geometry)](grad_y, x, w2, ctx.bias_dtype, list(needs),
                                             *ctx.geometry)
    return tuple(g if need else None for g, need in zip(grads, needs))


_op.register_autograd(lambda ctx, grad_y: _grads(ctx, grad_y) + (None,) * 4,
                      setup_context=_setup_context)
_op_2d.register_autograd(lambda ctx, grad_y: _grads(ctx, grad_y) + (None,) * 8,
                         setup_context=_setup_context)


class _DepthwiseConv(torch.autograd.Function):
    """The ops' autograd formula as an autograd.Function: eager calls skip the op's
    Python dispatch; traced ones (torch.compile) record the op of the geometry's rank."""

    @staticmethod
    def forward(x, w2, bias, geometry):
        if _graphs.plain(x, w2):
            return _forward(x, w2, bias, geometry)
        return _OPS[len(geometry)](x, w2, bias, *geometry)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w2, bias, geometry = inputs
        _setup_context(ctx, (x, w2, bias, *geometry), output)

    @staticmethod
    def backward(ctx, grad_y):
        return _grads(ctx, grad_y) + (None,)


_DepthwiseConv1d = _DepthwiseConv  # the name it had while it ran rank 1 only
# torch's C ``apply`` (kernels/cpu.py's ``_apply_eager``: no signature binding per call)
_apply_eager = super(torch.autograd.Function, _DepthwiseConv).apply


@torch.library.custom_op("sepconv::depthwise_conv1d_cpu_backward", mutates_args=(),
                         device_types="cpu")
def _backward_op(grad_y: torch.Tensor, x: torch.Tensor, w2: torch.Tensor,
                 bias_dtype: Optional[torch.dtype], needs: List[bool], stride: int,
                 dilation: int, pad_left: int, pad_right: int) -> List[torch.Tensor]:
    """The backward pass as one opaque op (torch.compile's graphs call it).  Gradients not
    asked for come back as empty tensors; all are contiguous (as the fake promises)."""
    return _backward_op_impl(grad_y, x, w2, bias_dtype, needs,
                             (stride, dilation, pad_left, pad_right))


@torch.library.custom_op("sepconv::depthwise_conv2d_cpu_backward", mutates_args=(),
                         device_types="cpu")
def _backward_op_2d(grad_y: torch.Tensor, x: torch.Tensor, w2: torch.Tensor,
                    bias_dtype: Optional[torch.dtype], needs: List[bool], stride_h: int,
                    stride_w: int, dilation_h: int, dilation_w: int, pad_top: int,
                    pad_bottom: int, pad_left: int, pad_right: int) -> List[torch.Tensor]:
    """:func:`_backward_op` of the 2D op."""
    return _backward_op_impl(grad_y, x, w2, bias_dtype, needs,
                             (stride_h, stride_w, dilation_h, dilation_w, pad_top,
                              pad_bottom, pad_left, pad_right))


def _backward_op_impl(grad_y, x, w2, bias_dtype, needs, geometry):
    grads = _hand_backward(grad_y, x, w2, bias_dtype, tuple(needs), geometry)
    return [x.new_empty(0) if g is None else g.contiguous() for g in grads]


def _backward_fake(grad_y, x, w2, bias_dtype, needs, *geometry):
    return _cpu.fake_grads(x, needs, (x, w2, None), w2.shape[-1], bias_dtype)


_backward_op.register_fake(_backward_fake)
_backward_op_2d.register_fake(_backward_fake)
_BACKWARD_OPS = {4: _backward_op, 8: _backward_op_2d}


def _hand_backward(grad_y, x, w2, bias_dtype, needs, geometry):
    """:func:`_backward_pass` on the thread count the library's policy picks."""
    if w2.dim() == 3:
        kh, kw, cm = w2.shape
        strides, dilation, _ = _unpack(geometry)
        return _policy.run(f"depthwise2d k{kh}x{kw} s{strides} d{dilation} backward",
                           x[..., 0].numel() * cm * kh * kw,
                           lambda: _backward_pass(grad_y, x, w2, bias_dtype, needs, geometry),
                           (x.shape, w2.shape, geometry, needs))
    k, cm = w2.shape
    stride, dilation = geometry[:2]
    return _policy.run(f"depthwise1d k{k} s{stride} d{dilation} backward",
                       x.shape[0] * x.shape[1] * cm * k,
                       lambda: _backward_pass(grad_y, x, w2, bias_dtype, needs, geometry),
                       (x.shape, w2.shape, geometry, needs))


def _backward_pass(grad_y, x, w2, bias_dtype, needs, geometry):
    """Gradients of (x, w2, bias), ``None`` where ``needs`` says so: the C routines on
    float32 (half precision widened)."""
    if w2.dim() == 3:
        return _backward_pass_2d(grad_y, x, w2, bias_dtype, needs, geometry)
    stride, dilation, pad_left, _ = geometry
    need_x, need_w, need_b = needs
    n, length, c = x.shape
    k, cm = w2.shape
    m = cm // c
    gz = _cpu._as(grad_y, torch.float32).contiguous()  # (N, L_out, C*M)
    grad_x = grad_w = grad_b = None
    if need_b:
        grad_b = _cpu._as(gz.sum((0, 1)), bias_dtype)
    w32 = _cpu._as(w2, torch.float32)
    gx = gw = None
    if need_x and need_w:
        gx, gw = _cpu.native_depthwise_backward(_cpu._as(x, torch.float32), gz, w32, m,
                                                stride, dilation, pad_left)
    elif need_w:
        gw = _cpu.native_depthwise_grad_weight(x, gz, k, m, stride, dilation, pad_left)
    elif need_x:
        gx = _cpu.native_depthwise_input_grad(gz, w32, length, stride, dilation, pad_left)
    del gz
    if gx is not None:
        grad_x = _cpu._sum_multiplier(gx, m, True, x.dtype)
    if gw is not None:
        grad_w = _cpu._as(gw, w2.dtype)
    return grad_x, grad_w, grad_b


def _backward_pass_2d(grad_y, x, w2, bias_dtype, needs, geometry):
    """:func:`_backward_pass` of a 2D convolution: the weight gradient one C pass over
    grad_y (``_cpu_native.dw2d_grad_weight``), the input gradient a C depthwise
    convolution of grad_y by the flipped kernel (:func:`_input_grad_2d`)."""
    strides, dilation, pads = _unpack(geometry)
    need_x, need_w, need_b = needs
    n, height, width, c = x.shape
    kh, kw, cm = w2.shape
    m = cm // c
    gz = _cpu._as(grad_y, torch.float32).contiguous()  # (N, H_out, W_out, C*M)
    grad_x = grad_w = grad_b = None
    threads = torch.get_num_threads()
    if need_b:
        grad_b = _cpu._as(gz.sum((0, 1, 2)), bias_dtype)
    if need_w:
        gw = torch.empty(kh, kw, cm, dtype=torch.float32)
        _cpu_native.dw2d_grad_weight(_cpu._as(x, torch.float32).contiguous(), gz, gw,
                                     strides=strides, dilation=dilation, pad_top=pads[0][0],
                                     pad_left=pads[1][0], threads=threads)
        grad_w = _cpu._as(gw, w2.dtype)
    if need_x:
        gx = _input_grad_2d(gz, _cpu._as(w2, torch.float32), (height, width), strides,
                            dilation, (pads[0][0], pads[1][0]), threads)
        del gz
        grad_x = _cpu._sum_multiplier(gx.view(n, height * width, cm), m, True,
                                      x.dtype).view(n, height, width, c)
    return grad_x, grad_w, grad_b


def _input_grad_2d(gz: torch.Tensor, w32: torch.Tensor, size: tuple, strides: tuple,
                   dilation: tuple, pads_before: tuple, threads: int) -> torch.Tensor:
    """``(N, H, W, C*M)`` float32: the input gradient before the sum over the multiplier,
    the transposed convolution of ``gz`` ``(N, H_out, W_out, C*M)`` by ``w32``
    ``(kh, kw, C*M)`` in one C pass (``_cpu_native.dw2d_input_grad``: strided axes by
    phases inside, no zero-spread copy of ``gz``).  A first version ran one C forward
    pass per phase pair (4 for stride 2): 3x3 stride 2 on (8, 56, 56, 128), one thread,
    5.4 ms against 2.6 ms for the one pass."""
    n, _, _, cm = gz.shape
    gx = torch.empty(n, *size, cm, dtype=torch.float32)
    _cpu_native.dw2d_input_grad(gz, w32.contiguous(), gx, strides=strides, dilation=dilation,
                                pad_top=pads_before[0], pad_left=pads_before[1],
                                threads=threads)
    return gx
