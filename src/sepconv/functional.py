"""Pure tensor functions.  ``separable_conv1d`` validates, pads and picks one kernel.

This is the only place that branches on device, dtype and shape.  The choice follows
measured rules (see ``bench/``); ``SEPCONV_KERNEL`` (one of :data:`KERNELS`) forces one
kernel for debugging.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import numbers
import os
import re
from typing import Callable, Optional, Sequence, Tuple, Union

import torch

from . import padding as _padding
from .kernels import depthwise_cpu as _depthwise_cpu
from .kernels import depthwise_train as _depthwise_train
from .kernels import _norm_native
from .kernels import gemm1d as _gemm1d
from .kernels import graphs as _graphs
from .kernels import kstride as _kstride
from .kernels import memory as _memory
from .kernels import pointwise as _pointwise
from .kernels import reference as _reference
from .kernels import threads as _threads

IntOrTuple = Union[int, Sequence[int]]

KERNELS = ("reference", "cpu", "cuda", "triton", "triton_v2", "triton_v2_savez")


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
                     data_format: str = "channels_last", *,
                     strided_dilation: bool = False) -> torch.Tensor:
    """Keras' separable 1D convolution (no activation).

    Args:
        x: ``(batch, steps, channels)`` for ``"channels_last"``, ``(batch, channels, steps)``
            for ``"channels_first"``.
        depthwise: ``(kernel_size, channels, depth_multiplier)``, Keras' layout.
        pointwise: ``(1, channels * depth_multiplier, filters)`` or
            ``(channels * depth_multiplier, filters)``.
        bias: ``(filters,)`` or ``None``.
        strides, dilation_rate: ints (or 1-tuples); not both greater than 1 (TensorFlow's
            rule) unless ``strided_dilation``.
        padding: ``"valid"``, ``"same"`` or ``"causal"`` (TensorFlow's arithmetic).
        data_format: ``"channels_last"`` or ``"channels_first"``.
        strided_dilation: compute ``strides > 1`` with ``dilation_rate > 1`` as Keras 3's
            torch and JAX backends do (TensorFlow refuses them).

    Returns:
        ``(batch, out_steps, filters)`` or ``(batch, filters, out_steps)``.
    """
    if pointwise.dim() == 3 and pointwise.shape[0] == 1:
        # Keras' (1, C*M, F): squeezed, whose gradient is a view (indexing it, [0], made
        # autograd allocate a zero tensor and copy the gradient into it at every step: two
        # more kernels per training step); any other 3-D shape fails the checks below
        pointwise = pointwise.squeeze(0)
    if not _graphs.standard_ops_wanted():
        # an eager call: its kernel, geometry bound, remembered per everything the checks
        # and the kernel rules read (see _SEPARABLE_CALLS)
        key = (x.shape, depthwise.shape, pointwise.shape,
               None if bias is None else bias.shape, strides, padding, dilation_rate,
               data_format, strided_dilation, x.device, x.dtype, _ENVIRON.get(_FORCED_KEY))
        if x.is_cuda:  # (the CPU rule reads the dtype only; the CUDA rules these too)
            key += (depthwise.dtype, pointwise.dtype,
                    torch.is_grad_enabled() and (x.requires_grad or depthwise.requires_grad
                                                 or pointwise.requires_grad),
                    torch._C._get_cudnn_allow_tf32(),
                    # (no argument: CUDA's autocast, as torch.cuda.graphs asks it; 0.1 us
                    # less than with "cuda")
                    torch.is_autocast_enabled() and torch.get_autocast_dtype("cuda"))
        try:
            call = _SEPARABLE_CALLS.get(key)
        except TypeError:  # unhashable (lists, symbolic sizes): checked afresh below
            pass
        else:
            if call is None:
                call = _separable_call(x, depthwise, pointwise, bias, strides, padding,
                                       dilation_rate, data_format, strided_dilation)
                if len(_SEPARABLE_CALLS) >= _SEPARABLE_CALLS_MAX:
                    _SEPARABLE_CALLS.clear()  # a bound, for programs of ever-new shapes
                _SEPARABLE_CALLS[key] = call
            return call(x, depthwise, pointwise, bias)
    key = (tuple(x.shape), tuple(depthwise.shape), tuple(pointwise.shape),
           None if bias is None else tuple(bias.shape),
           tuple(strides) if isinstance(strides, list) else strides, padding,
           tuple(dilation_rate) if isinstance(dilation_rate, list) else dilation_rate,
           data_format, strided_dilation)
    try:  # (remembered per shapes and arguments, as conv's: see _conv_plan)
        plan = _separable_plan(*key) if torch.jit.is_tracing() else \
            _separable_plan_cached(*key)
    except TypeError:
        plan = _separable_plan(*key)
    stride, dilation, out_len, pad_left, pad_right, channels_last = plan
    kernel = _pick_kernel(x, depthwise, pointwise, stride, dilation, out_len, channels_last)
    return kernel(x, depthwise, pointwise, bias, stride=stride, dilation=dilation,
                  pad_left=pad_left, pad_right=pad_right, channels_last=channels_last)


#: :func:`separable_conv1d`'s memory of eager calls: everything its checks and the kernel
#: rules read (shapes and arguments, device, dtypes, ``SEPCONV_KERNEL``; for CUDA also
#: whether autograd records the call, cuDNN's TF32 flag, CUDA autocast) -> the kernel with
#: the call's geometry bound (:func:`_separable_call`).  One look-up instead of the
#: checks' cache, the rules' and a call with keywords: a CUDA call's Python is host time
#: that small layers pay 1:1 (bench/dispatch_overhead.py).  Calls under tracing, export,
#: ``torch.compile``, ``torch.func`` or CPU autocast (:func:`_graphs.standard_ops_wanted`)
#: and calls whose arguments cannot be a key go the long way, every time; a failing check
#: raises before anything is kept.
_SEPARABLE_CALLS: dict = {}
_SEPARABLE_CALLS_MAX = 4096


def _separable_call(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor,
                    bias: Optional[torch.Tensor], strides, padding, dilation_rate,
                    data_format, strided_dilation) -> Callable:
    """The kernel :func:`separable_conv1d` runs for these arguments (``pointwise`` 2-D),
    ``(x, depthwise, pointwise, bias) -> y`` with the checked geometry bound; raises what
    the checks raise.  Not remembered (:data:`_SEPARABLE_CALLS` is)."""
    stride, dilation, out_len, pad_left, pad_right, channels_last = _separable_plan(
        tuple(x.shape), tuple(depthwise.shape), tuple(pointwise.shape),
        None if bias is None else tuple(bias.shape), strides, padding, dilation_rate,
        data_format, strided_dilation)
    kernel = _pick_kernel(x, depthwise, pointwise, stride, dilation, out_len, channels_last)

    def call(x, depthwise, pointwise, bias):  # (a closure calls in half a partial's time)
        return kernel(x, depthwise, pointwise, bias, stride=stride, dilation=dilation,
                      pad_left=pad_left, pad_right=pad_right, channels_last=channels_last)
    call.kernel = kernel  # (what it runs, for tests and benches)
    call.geometry = dict(stride=stride, dilation=dilation, pad_left=pad_left,
                         pad_right=pad_right, channels_last=channels_last)
    return call


def _separable_plan(x_shape: tuple, depthwise_shape: tuple, pointwise_shape: tuple,
                    bias_shape: Optional[tuple], strides, padding, dilation_rate,
                    data_format, strided_dilation) -> tuple:
    """:func:`separable_conv1d`'s checks: ``(stride, dilation, out_len, pad_left,
    pad_right, channels_last)``."""
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
    if stride > 1 and dilation > 1 and not strided_dilation:
        raise ValueError("`strides > 1` is incompatible with `dilation_rate > 1`. "
                         f"Received strides={stride}, dilation_rate={dilation}")
    if len(depthwise_shape) != 3 or len(pointwise_shape) != 2:
        raise ValueError("Expected depthwise of shape (kernel_size, channels, depth_multiplier) "
                         "and pointwise of shape (1, channels * depth_multiplier, filters). "
                         f"Received {depthwise_shape} and {pointwise_shape}")
    k, c, m = depthwise_shape
    if pointwise_shape[0] != c * m:
        raise ValueError(f"pointwise has {pointwise_shape[0]} input channels, expected "
                         f"channels * depth_multiplier = {c * m}")
    if bias_shape is not None and bias_shape != (pointwise_shape[1],):
        raise ValueError(f"bias must have shape ({pointwise_shape[1]},). "
                         f"Received {bias_shape}")
    channels_last = data_format == "channels_last"
    if len(x_shape) != 3:
        raise ValueError(f"Input must be 3D, {_layout(channels_last)}. "
                         f"Received input of shape {x_shape}")
    length = x_shape[1] if channels_last else x_shape[2]
    channels = x_shape[2] if channels_last else x_shape[1]
    if channels != c:
        raise ValueError(f"Input has {channels} channels, expected {c} "
                         f"({_layout(channels_last)}). Received input of shape {x_shape}")
    out_len = _padding.conv_output_length(length, k, stride, dilation, padding)
    if out_len <= 0:
        raise ValueError(f"Input of shape {x_shape} is too short for kernel_size={k}, "
                         f"dilation_rate={dilation}, padding={padding!r}: the output would "
                         f"have {out_len} steps")
    pad_left, pad_right = _padding.padding_amounts(length, k, stride, dilation, padding)
    return stride, dilation, out_len, pad_left, pad_right, channels_last


_separable_plan_cached = functools.lru_cache(maxsize=1024)(_separable_plan)


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


def _strides_and_dilation(strides: IntOrTuple, dilation_rate: IntOrTuple, rank: int,
                          strided_dilation: bool = False) -> tuple:
    """Both as ``rank``-tuples; TensorFlow refuses ``strides > 1`` on any axis together with
    ``dilation_rate > 1`` on any axis (computed with ``strided_dilation``, as Keras 3's
    torch and JAX backends compute them)."""
    stride = _ints(strides, rank, "strides")
    dilation = _ints(dilation_rate, rank, "dilation_rate")
    if max(stride) > 1 and max(dilation) > 1 and not strided_dilation:
        raise ValueError("`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                         f"Received strides={stride}, dilation_rate={dilation}")
    return stride, dilation


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
         groups: int = 1, data_format: str = "channels_last", *,
         strided_dilation: bool = False) -> torch.Tensor:
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
        strided_dilation: compute ``strides > 1`` with ``dilation_rate > 1`` (what Keras
            3's torch and JAX backends compute for its depthwise and separable layers)
            instead of refusing them as TensorFlow does.

    Returns:
        ``(batch, *out_spatial, filters)`` or ``(batch, filters, *out_spatial)``.
    """
    stride, dilation, pads, channels_last, work, kind = _conv_plan(
        x, kernel, bias, strides, padding, dilation_rate, groups, data_format,
        strided_dilation)
    kernel_fn = _pick_conv_kernel(x, kernel, stride, pads, groups, channels_last, dilation)
    call = functools.partial(kernel_fn, x, kernel, bias, strides=stride, dilation=dilation,
                             pads=pads, groups=groups, channels_last=channels_last)
    if not x.is_cpu:
        return call()
    return _on_cpu_policy(kind, work, call,
                          (x.shape, kernel.shape, stride, dilation, pads, groups),
                          hook=kernel_fn is not _depthwise_train.conv)


def _conv_plan(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor],
               strides, padding, dilation_rate, groups, data_format,
               strided_dilation) -> tuple:
    """:func:`conv`'s checked geometry ``(strides, dilation, pads, channels_last,
    multiply-adds, thread-policy key)``, remembered per shapes and arguments: a layer
    calls it with the same few every step, and checking them again cost ~15 us a call
    (the WaveNet stack's 15 convolutions a step; bench/README.md "Per-call cost").  The
    arguments that cannot be a cache key (symbolic sizes under ``torch.export``, lists)
    are checked afresh; a failing check raises every time (errors are not remembered)."""
    key = (tuple(x.shape), tuple(kernel.shape), None if bias is None else tuple(bias.shape),
           tuple(strides) if isinstance(strides, list) else strides, padding,
           tuple(dilation_rate) if isinstance(dilation_rate, list) else dilation_rate,
           groups, data_format, strided_dilation)
    if torch.jit.is_tracing():  # (sizes may be traced tensors: no key of those kept)
        return _conv_plan_uncached(*key)
    try:
        return _conv_plan_cached(*key)
    except TypeError:  # unhashable (or a wrong type, which the plain call reports)
        return _conv_plan_uncached(*key)


def _conv_plan_uncached(x_shape: tuple, kernel_shape: tuple, bias_shape: Optional[tuple],
                        strides, padding, dilation_rate, groups, data_format,
                        strided_dilation) -> tuple:
    rank = len(kernel_shape) - 2
    if rank not in (1, 2, 3):
        raise ValueError("Expected a kernel of shape (*kernel_size, channels // groups, "
                         f"filters) with 1 to 3 spatial axes. Received {kernel_shape}")
    stride, dilation = _strides_and_dilation(strides, dilation_rate, rank, strided_dilation)
    padding, channels_last = _check_geometry(padding, data_format, rank)
    *ksize, in_per_group, filters = kernel_shape
    channels, spatial = _channels_and_spatial_of(x_shape, rank, channels_last)
    if groups < 1 or channels % groups or filters % groups:
        raise ValueError(f"Invalid value for argument `groups`. Expected a divisor of the "
                         f"input channels ({channels}) and of filters ({filters}). "
                         f"Received groups={groups}")
    if channels // groups != in_per_group:
        raise ValueError(f"Input has {channels} channels, the kernel expects "
                         f"{in_per_group * groups} ({_layout_nd(rank, channels_last)}, "
                         f"groups={groups}). "
                         f"Received input of shape {x_shape}")
    if bias_shape is not None and bias_shape != (filters,):
        raise ValueError(f"bias must have shape ({filters},). Received {bias_shape}")
    out, pads = _conv_geometry(spatial, tuple(ksize), stride, dilation, padding)
    if min(out) <= 0:
        raise ValueError(f"Input of shape {x_shape} is too small for kernel_size="
                         f"{tuple(ksize)}, dilation_rate={dilation}, padding={padding!r}: "
                         f"the output would have shape {out}")
    work = x_shape[0] * math.prod(out) * math.prod(ksize) * in_per_group * filters
    # one policy key per kind of convolution (its kernel geometry and grouping; the
    # data's size goes in the policy's size class): a depthwise convolution's time per
    # multiply-add is many times a dense one's, and one key for both had the policy
    # compare one kind's one-thread calls with the other's two-thread calls
    kind = f"conv{rank}d k{tuple(ksize)} s{stride} d{dilation} " + (
        "depthwise" if in_per_group == 1 and groups > 1 else f"g{groups}")
    return stride, dilation, pads, channels_last, work, kind


_conv_plan_cached = functools.lru_cache(maxsize=1024)(_conv_plan_uncached)


# The autograd nodes of the CPU kernels' expensive step (the convolution; the small
# pointwise GEMM).
_POLICY_NODES = ("ConvolutionBackward0", "AddmmBackward0", "MmBackward0")
# (kernels/gemm1d.py's backward nodes: their GEMMs)
_POLICY_NODES += ("_Conv1dGemmBackward", "_ConvTranspose1dGemmBackward")


def _on_cpu_policy(name: str, work: int, call: Callable, shape: tuple,
                   hook: bool = True) -> torch.Tensor:
    """``call()`` (a CPU kernel) on the thread count the library's thread policy picks
    (``kernels/threads.py``: one thread where the cores are busy, measured per call),
    and its backward's convolution node too, through hooks on the node.

    Measured on the project's 2-core AVX-512 EPYC with one core busy (another process):
    the family bench's layers ran 1.5-23x faster on one thread than on two (MobileNet
    depthwise fwd+bwd 8.7 vs 48 ms, Conv3D stride 2 35 vs 138 ms); idle, two threads win
    and the policy keeps them.  Its first call keeps glibc's malloc from handing the
    steps' buffers back to the system (``kernels/memory.py``)."""
    _memory.keep_freed_memory()
    y = _threads.run(name, work, call, shape)
    if hook and y.requires_grad and not torch.compiler.is_compiling() \
            and not torch._C._functorch.is_functorch_wrapped_tensor(y):
        _threads.hook_backward(y, _POLICY_NODES, name + "-backward", work, shape)
    return y


def _layout_nd(rank: int, channels_last: bool) -> str:
    axes = ("steps",) if rank == 1 else ("rows", "cols") if rank == 2 else \
        ("depth", "rows", "cols")
    return (f"(batch, {', '.join(axes)}, channels)" if channels_last
            else f"(batch, channels, {', '.join(axes)})")


def _channels_and_spatial(x: torch.Tensor, rank: int, channels_last: bool) -> tuple:
    """The channel count and the spatial shape of ``x``, which must have ``rank + 2`` axes
    (the convolutions' input check)."""
    return _channels_and_spatial_of(tuple(x.shape), rank, channels_last)


def _channels_and_spatial_of(shape: tuple, rank: int, channels_last: bool) -> tuple:
    """:func:`_channels_and_spatial` of an input shape."""
    if len(shape) != rank + 2:
        raise ValueError(f"Input must be {rank + 2}D, {_layout_nd(rank, channels_last)}. "
                         f"Received input of shape {shape}")
    channels = shape[-1] if channels_last else shape[1]
    return channels, tuple(shape[1:-1] if channels_last else shape[2:])


def _check_bias(bias: Optional[torch.Tensor], filters: int) -> None:
    if bias is not None and tuple(bias.shape) != (filters,):
        raise ValueError(f"bias must have shape ({filters},). Received {tuple(bias.shape)}")


def _layout(channels_last: bool) -> str:
    return "(batch, steps, channels)" if channels_last else "(batch, channels, steps)"


def _pick_kernel(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor,
                 stride: int, dilation: int, out_len: int,
                 channels_last: bool = True) -> Callable:
    """The one place that chooses a kernel, from device, dtype and shape."""
    if _graphs.recording():
        # torch.export, the ONNX exporter and torch.jit.trace record standard ops only:
        # the reference composition (F.pad + two F.conv1d), which every runtime knows.
        return _reference.separable_conv1d
    forced = _forced_kernel()
    if forced:
        if forced not in KERNELS:
            raise ValueError(f"SEPCONV_KERNEL must be one of {KERNELS}. Received {forced!r}")
        return _load(forced)
    if x.is_cuda:
        # H200 runs (bench/gpu.py, issue 12; tables in bench/README.md): the cuDNN / cuBLAS
        # compositions (kernels/cuda.py, which picks among three) everywhere but in the
        # classes where Triton's variant 2 measured faster, see _cuda_kernel.
        return _cuda_pick(x, depthwise, pointwise, stride, dilation, channels_last)
    if x.is_cpu and x.dtype in (torch.float32, torch.bfloat16, torch.float16):
        # bench/README.md (python -m sepconv bench): cpu/composition geomean 0.40 fwd, 0.36
        # fwd+bwd, every shape faster (worst 0.97, GEMM-bound); half precision 10-20x faster
        # (the composition's half GEMMs are emulated here).  float64: a tie, reference.
        return _load("cpu")
    return _reference.separable_conv1d


def _cuda_pick(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor,
               stride: int, dilation: int, channels_last: bool) -> Callable:
    """The kernel function for a CUDA call: :func:`_cuda_kernel`'s, or for ``"cuda"`` the
    composition ``kernels/cuda.choice`` picks.  Asking both rules costs 5-7 us of Python
    (the project's 2-core EPYC): :func:`separable_conv1d` remembers the answer per call
    signature (:data:`_SEPARABLE_CALLS`)."""
    if _graphs.standard_ops_wanted():
        return _load("cuda")  # tracers and torch.func see through the composition
    name = _cuda_kernel(x, depthwise, pointwise, dilation, channels_last)
    if name != "cuda":
        return _load(name)
    from .kernels import cuda
    training = torch.is_grad_enabled() and (x.requires_grad or depthwise.requires_grad
                                            or pointwise.requires_grad)
    return cuda.COMPOSITIONS[cuda.choice(x, depthwise, pointwise, None, stride=stride,
                                         dilation=dilation, channels_last=channels_last,
                                         training=training)]


def _cuda_kernel(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor,
                 dilation: int, channels_last: bool) -> str:
    """The CUDA kernel for this call: ``"cuda"`` (the compositions), ``"triton_v2"`` or
    ``"triton_v2_savez"`` (variant 2 keeping ``z`` for the backward).

    Variant 2 where H200 runs (``bench/gpu.py``; JSON beside it, tables in bench/README.md)
    measured it faster than what ``kernels/cuda.py`` does with the same channels_last input;
    channels_last, depth multiplier 1, one dtype throughout ("rows": batch x steps of the
    input, "size": channels x rows, "large": size >= 2**25).  Since the sixteenth session
    variant 2 launches through ``kernels/triton_launch.py`` (the compiled kernel's launcher,
    not ``JITFunction.run``) with its launches planned once per call signature: on the
    H200's host an inference call costs 29-42 us against 85-124 for the compositions
    (cuDNN's host time is ~35 us a convolution), a training step about as much as theirs.
    This rule is the one run 2 of that session measured (``bench/gpu-h200-20261127-s16-
    run2.json``, ``functional`` against the best composition in alternated samples); run 3
    tried the compositions for mid-size inference and small TF32 training and did no better
    (``-run3.json``: 0.82-0.99 where variant 2 had 0.83-1.32):

    - inference: every layer but IEEE float32 of >= 1024 channels below "large" (a
      1536-channel stream: cuDNN's NHWC depthwise + cuBLAS 5-7% faster).  The fused forward
      (<= 128 filters, one launch) 1.2-2.1x; long kernels and large layers 1.1-1.7x;
      strided 1.1-1.3x; the unfused forward of mid-size layers (256-384 channels, k25-k33)
      0.83-0.97x, a tie with the compositions' 0.82-0.99x there;
    - float32 training: every layer, with TF32 from 128 channels (MatchboxNet's and a time
      series' 64: ncl 0.8-0.85x either way); IEEE float32 1.1-2.3x, TF32 1.0-2.2x but
      0.8-0.93x for QuartzNet k33, Citrinet and a 128-channel causal stream (ncl's TF32 1x1;
      the compositions as dispatched did 0.83-0.90x there); ``z`` kept for size > 2**23, the
      dilated class, and long kernels (k >= 25 in IEEE float32, k > 40 with TF32);
    - bfloat16 training (cuDNN's NHWC kernels are strong in bfloat16), keeping ``z``:
      dilated, k <= 4, <= 128 channels and filters (TCN / WaveNet: 1.07-1.6x); k <= 4 with
      <= 128 channels (a causal stream, 1.04-1.08x); k > 40 from size 2**22 (QuartzNet k75 /
      k87: 1.1-1.6x); >= 1024 channels from size 2**26; k >= 31 when large (1.07x).

    Elsewhere (depth multipliers, channels_first, other dtypes, CUDA autocast, tracing) the
    compositions."""
    if _graphs.standard_ops_wanted():
        return "cuda"  # tracers and torch.func see through the composition, not Triton
    k, c, m = depthwise.shape
    if m != 1 or not channels_last:
        return "cuda"
    if x.is_cuda and torch.is_autocast_enabled("cuda"):
        return "cuda"  # autocast casts the compositions' convolutions and GEMMs, not Triton
    dtype = x.dtype
    if dtype not in (torch.float32, torch.bfloat16) or depthwise.dtype != dtype \
            or pointwise.dtype != dtype:
        return "cuda"  # (mixed dtypes would send the Triton module to its reference fallback)
    training = torch.is_grad_enabled() and (x.requires_grad or depthwise.requires_grad
                                            or pointwise.requires_grad)
    size = c * x.shape[0] * x.shape[1]
    tf32 = dtype == torch.float32 and torch._C._get_cudnn_allow_tf32()
    large = size >= 1 << 25
    dilated = dilation > 1 and k <= 4 and c <= 128 and pointwise.shape[1] <= 128
    if not training:
        chosen = not (dtype == torch.float32 and not tf32 and c >= 1024 and not large)
        save_z = False
    elif dtype == torch.float32:
        chosen = c >= 128 or not tf32
        save_z = dilated or size > 1 << 23 or (k > 40 if tf32 else k >= 25)
    else:  # bfloat16
        # (k <= 4 with <= 128 channels covers the dilated class)
        chosen = save_z = (k > 40 and size >= 1 << 22) or (k <= 4 and c <= 128) \
            or (c >= 1024 and size >= 1 << 26) or (large and k >= 31)
    if not chosen or not _triton_installed():
        return "cuda"
    if dtype == torch.bfloat16 and x.is_cuda \
            and torch.cuda.get_device_capability(x.device) < (8, 0):
        return "cuda"  # no bfloat16 tensor-core dot before Ampere
    return "triton_v2_savez" if training and save_z else "triton_v2"


@functools.lru_cache(maxsize=None)
def _triton_installed() -> bool:
    """Whether Triton can be imported: looked up once (``find_spec`` walks ``sys.path``
    while Triton is not yet imported, tens of microseconds on every inference call)."""
    return importlib.util.find_spec("triton") is not None


# os.environ's own dict (bytes on POSIX) and the key in it: ``os.environ.get`` of an unset
# variable raises and catches a KeyError inside, ~1 us on every convolution call
# (``separable_conv1d``'s memo keys on the raw value: equal raw values, equal settings)
_ENVIRON = getattr(os.environ, "_data", None)
if _ENVIRON is None:  # (not CPython's os.environ: the mapping itself, its own keys)
    _ENVIRON, _FORCED_KEY, _decode = os.environ, "SEPCONV_KERNEL", str
else:
    _FORCED_KEY, _decode = os.environ.encodekey("SEPCONV_KERNEL"), os.environ.decodevalue


def _forced_kernel() -> str:
    """``SEPCONV_KERNEL`` (the debugging override), normalised; ``""`` when unset.  Read at
    every call (``monkeypatch.setenv`` and ``os.environ[...] = ...`` write the dict read)."""
    raw = _ENVIRON.get(_FORCED_KEY)
    return "" if raw is None else _decode(raw).strip().lower()


@functools.lru_cache(maxsize=None)
def _load(name: str) -> Callable:
    """The ``separable_conv1d`` of kernel module ``name``, imported on first use (the
    import statement's look-ups, ~1-2 us, once rather than on every call)."""
    if name == "reference":
        return _reference.separable_conv1d
    if name == "cpu":
        from .kernels import cpu
        return cpu.separable_conv1d
    if name == "cuda":
        from .kernels import cuda
        return cuda.separable_conv1d
    if name.startswith("triton_v2"):
        from .kernels import triton_v2
        return functools.partial(triton_v2.separable_conv1d, save_z=name == "triton_v2_savez")
    from .kernels import triton_sepconv
    return triton_sepconv.separable_conv1d


# -- the plain Keras layers a model file needs (core, normalization, pooling) ---------------

def dense(x: torch.Tensor, kernel: torch.Tensor,
          bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Keras' ``Dense`` (no activation) on the last axis of an input of any rank >= 2.

    Args:
        x: ``(batch, ..., in)``.
        kernel: ``(in, units)``, Keras' layout.
        bias: ``(units,)`` or ``None``.

    Returns:
        ``(batch, ..., units)``.
    """
    if kernel.dim() != 2 or x.shape[-1] != kernel.shape[0]:
        raise ValueError(f"Input has {x.shape[-1]} features on its last axis, the kernel of "
                         f"shape {tuple(kernel.shape)} expects {kernel.shape[0]}. Received "
                         f"input of shape {tuple(x.shape)}")
    y = torch.matmul(x, kernel)
    return y if bias is None else y + bias


def einsum_dense(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor],
                 bound: int) -> torch.Tensor:
    """Keras' ``EinsumDense`` as ``MultiHeadAttention`` uses it: the last ``bound`` axes of
    ``x`` contracted with the first ``bound`` axes of ``kernel``.

    Args:
        x: ``(batch, ..., *kernel.shape[:bound])``.
        kernel: ``(*contracted, *out)``.
        bias: ``out``-shaped or ``None``.

    Returns:
        ``(batch, ..., *out)``.
    """
    inner = tuple(kernel.shape[:bound])
    if tuple(x.shape[x.dim() - bound:]) != inner:
        raise ValueError(f"Input of shape {tuple(x.shape)} does not end in {inner}, the axes "
                         f"the kernel of shape {tuple(kernel.shape)} contracts")
    out = tuple(kernel.shape[bound:])
    lead = tuple(x.shape[:x.dim() - bound])
    y = torch.matmul(x.reshape(lead + (-1,)), kernel.reshape(math.prod(inner), -1))
    y = y.reshape(lead + out)
    return y if bias is None else y + bias


# -- Dot, UnitNormalization, GroupNormalization, EinsumDense, the SELU-aware dropouts -------

def l2_normalize(x: torch.Tensor, axis: Union[int, Sequence[int]] = -1,
                 epsilon: float = 1e-12) -> torch.Tensor:
    """TensorFlow's ``tf.math.l2_normalize``: ``x * rsqrt(max(sum(x**2, axis), epsilon))``
    (the sum over ``axis``, an int or several, kept for broadcasting)."""
    axes = tuple(int(a) for a in axis) if isinstance(axis, (list, tuple)) else (int(axis),)
    square_sum = torch.sum(x * x, dim=axes, keepdim=True)
    return x * torch.rsqrt(torch.clamp(square_sum, min=epsilon))


def batch_dot(x: torch.Tensor, y: torch.Tensor, axes: Sequence[int]) -> torch.Tensor:
    """tf-keras' ``backend.batch_dot``: for each sample, the dot product of ``x`` and
    ``y`` over ``x``'s axis ``axes[0]`` and ``y``'s axis ``axes[1]`` (both non-negative,
    neither the batch axis).

    Args:
        x: ``(batch, *a)`` of rank >= 2.
        y: ``(batch, *b)`` of rank >= 2, ``y.shape[axes[1]] == x.shape[axes[0]]``.

    Returns:
        ``(batch, *a_rest, *b_rest)``: ``x``'s other axes, then ``y``'s other non-batch
        axes, in order; two rank-2 inputs give ``(batch, 1)``.  Computed as TensorFlow
        does: the contracted axis moved last in ``x`` and first (after the batch) in
        ``y``, the others flattened, one batched matmul.
    """
    if x.dim() < 2 or y.dim() < 2:
        raise ValueError(f"Cannot do batch_dot on inputs with rank < 2. Received inputs "
                         f"with shapes {tuple(x.shape)} and {tuple(y.shape)}")
    a0, a1 = int(axes[0]), int(axes[1])
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"Cannot do batch_dot on inputs with different batch sizes. "
                         f"Received inputs with shapes {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    if not (0 < a0 < x.dim() and 0 < a1 < y.dim()):
        raise ValueError(f"Cannot perform batch_dot over axes {[a0, a1]} of inputs of "
                         f"shapes {tuple(x.shape)} and {tuple(y.shape)} (axis 0 is the "
                         f"batch)")
    if x.shape[a0] != y.shape[a1]:
        raise ValueError(f"Cannot do batch_dot on inputs with shapes {tuple(x.shape)} and "
                         f"{tuple(y.shape)} with axes={[a0, a1]}. x.shape[{a0}] != "
                         f"y.shape[{a1}] ({x.shape[a0]} != {y.shape[a1]})")
    xm = x.movedim(a0, -1)
    ym = y.movedim(a1, 1)
    x_mid, y_trail = tuple(xm.shape[1:-1]), tuple(ym.shape[2:])
    out = torch.matmul(xm.reshape(x.shape[0], -1, xm.shape[-1]),
                       ym.reshape(y.shape[0], ym.shape[1], -1))
    if x.dim() == 2 and y.dim() == 2:
        return out.reshape(x.shape[0], 1)
    return out.reshape((x.shape[0],) + x_mid + y_trail)


def group_normalization(x: torch.Tensor, groups: int, axis: int,
                        gamma: Optional[torch.Tensor], beta: Optional[torch.Tensor],
                        epsilon: float, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """tf-keras 2.21's ``GroupNormalization``: the ``channels`` of ``axis`` (a non-negative
    axis of ``x``) split into ``groups`` consecutive groups; each sample's group
    normalised over its channels and every non-batch axis with ``tf.nn.weighted_moments``
    (weights: ``mask`` broadcast to ``x``, else ones: ``mean = sum(w x) * (1 / sum(w))``,
    ``var = sum(w (x - mean)**2) * (1 / sum(w))``, no stop-gradient), then
    ``tf.nn.batch_normalization`` with ``gamma`` / ``beta`` of shape ``(channels,)``.

    Args:
        x: ``(batch, ...)`` with ``x.shape[axis] % groups == 0``.
        mask: optional, broadcastable to ``x`` (right-aligned, as ``tf.broadcast_to``).

    Returns:
        ``x``'s shape.
    """
    shape = tuple(x.shape)
    channels = shape[axis]
    grouped = shape[:axis] + (groups, channels // groups) + shape[axis + 1:]
    xg = x.reshape(grouped)
    reduce = tuple(a for a in range(1, xg.dim()) if a != axis)
    if mask is None:
        weights = torch.ones_like(xg)
    else:
        try:
            weights = torch.broadcast_to(mask.to(x.dtype), shape).reshape(grouped)
        except RuntimeError:  # (tf-keras' tf.broadcast_to fails there too)
            raise ValueError(f"A mask of shape {tuple(mask.shape)} does not broadcast to "
                             f"the input of shape {shape} (right-aligned, as "
                             f"tf.broadcast_to)") from None
    divisor = torch.sum(weights, dim=reduce, keepdim=True)
    divisor = torch.where(divisor == 0, torch.zeros_like(divisor), 1.0 / divisor)
    mean = torch.sum(weights * xg, dim=reduce, keepdim=True) * divisor
    variance = torch.sum(weights * torch.square(xg - mean), dim=reduce, keepdim=True) * divisor
    bshape = [1] * len(grouped)
    bshape[axis], bshape[axis + 1] = groups, channels // groups
    gamma = None if gamma is None else gamma.reshape(bshape)
    beta = None if beta is None else beta.reshape(bshape)
    return batch_normalization(xg, mean, variance, beta, gamma, epsilon).reshape(shape)


_EINSUM_FORMS = (
    (re.compile(r"^([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)$"), False),
    (re.compile(r"^0([a-zA-Z]+),([a-zA-Z]+)->0([a-zA-Z]+)$"), True),
    (re.compile(r"^([a-zA-Z]{2,})0,([a-zA-Z]+)->([a-zA-Z]+)0$"), False),
)


def einsum_dense_shapes(equation: str, bias_axes: Optional[str],
                        input_shape: Sequence[Optional[int]],
                        output_shape: Sequence[Optional[int]]) -> tuple:
    """tf-keras 2.21's ``_analyze_einsum_string`` for ``EinsumDense``: from the equation
    (``"ab,bc->ac"``, ``"...b,bc->...c"`` or ``"ab...,bc->ac..."``), the input shape
    (batch included) and the layer's partial ``output_shape`` (batch excluded, ``None``
    for sizes taken from the input), returns ``(kernel_shape, bias_shape or None,
    full_output_shape)``; a ``ValueError`` as tf-keras' for an equation it refuses."""
    replaced = equation.replace("...", "0")
    for pattern, left_elided in _EINSUM_FORMS:
        match = pattern.match(replaced)
        if match:
            break
    else:
        raise ValueError(f"Invalid einsum equation '{equation}'. Equations must be in the "
                         f"form [X],[Y]->[Z], ...[X],[Y]->...[Z], or [X]...,[Y]->[Z]....")
    input_spec, weight_spec, output_spec = match.groups()
    input_shape = list(input_shape)
    elided = len(input_shape) - len(input_spec)
    output_shape = [input_shape[0]] + list(output_shape)
    if elided > 0 and left_elided:
        for i in range(1, elided):  # tf-keras' loop, kept as it is
            output_shape.insert(1, input_shape[i])
    elif elided > 0:
        output_shape.extend(input_shape[len(input_shape) - elided:])
    if left_elided:
        input_map = {d: i + elided - len(input_shape) for i, d in enumerate(input_spec)}
        output_map = {d: i + elided for i, d in enumerate(output_spec)}
    else:
        input_map = {d: i for i, d in enumerate(input_spec)}
        output_map = {d: i for i, d in enumerate(output_spec)}
    if any(not -len(output_shape) <= i < len(output_shape) for i in output_map.values()):
        # tf-keras fails here with an IndexError; say what is wrong instead
        raise ValueError(f"Invalid value for argument `output_shape`. The equation's output "
                         f"'{output_spec}' has {len(output_spec)} axes, the batch axis "
                         f"included; output_shape gives {len(output_shape) - 1} after the "
                         f"batch axis. Received output_shape={tuple(output_shape[1:])}")
    for d in input_spec:
        if d in output_map:
            out_size = output_shape[output_map[d]]
            if out_size is not None and out_size != input_shape[input_map[d]]:
                raise ValueError(f"Input shape and output shape do not match at shared "
                                 f"dimension '{d}'. Input shape is "
                                 f"{input_shape[input_map[d]]}, and output shape is "
                                 f"{out_size}.")
    for d in output_spec:
        if d not in input_spec and d not in weight_spec:
            raise ValueError(f"Dimension '{d}' was specified in the output '{output_spec}' "
                             f"but has no corresponding dim in the input spec "
                             f"'{input_spec}' or weight spec '{weight_spec}'")
    kernel_shape = []
    for d in weight_spec:
        if d in input_map:
            kernel_shape.append(input_shape[input_map[d]])
        elif d in output_map:
            kernel_shape.append(output_shape[output_map[d]])
        else:
            raise ValueError(f"Weight dimension '{d}' did not have a match in either the "
                             f"input spec '{input_spec}' or the output spec "
                             f"'{output_spec}'. For this layer, the weight must be fully "
                             f"specified.")
    bias_shape = None
    if bias_axes is not None:
        shift = elided if left_elided else 0
        sizes = {c: output_shape[i + shift] for i, c in enumerate(output_spec)}
        for c in bias_axes:
            if c not in output_spec:
                raise ValueError(f"Bias dimension '{c}' was requested, but is not part of "
                                 f"the output spec '{output_spec}'")
        first = min(output_spec.find(c) for c in bias_axes)
        bias_shape = [sizes[c] if c in bias_axes else 1 for c in output_spec[first:]]
        if not left_elided:
            bias_shape.extend([1] * max(elided, 0))
    return kernel_shape, bias_shape, output_shape


def einsum_dense_equation(x: torch.Tensor, equation: str, kernel: torch.Tensor,
                          bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Keras' ``EinsumDense`` in its general form (no activation):
    ``einsum(equation, x, kernel) + bias``.

    Args:
        x: the input, its axes as ``equation``'s first operand (``...`` for the others).
        kernel: as ``equation``'s second operand
            (see :func:`einsum_dense_shapes`).
        bias: broadcastable against the output from the right, or ``None``.

    Returns:
        the output, its axes as ``equation``'s result.
    """
    y = torch.einsum(equation, x, kernel)
    return y if bias is None else y + bias


#: SELU's constants as tf-keras' ``AlphaDropout`` writes them.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def alpha_dropout(x: torch.Tensor, rate: float, noise_shape: Optional[Sequence[int]] = None,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """tf-keras' training-time ``AlphaDropout`` (``0 < rate < 1``): with ``kept`` a draw of
    ``uniform >= rate`` per element of ``noise_shape`` (broadcast against ``x``; by
    default ``x.shape``), ``a * (x * kept + alpha_p * (1 - kept)) + b`` where
    ``alpha_p = -SELU_ALPHA * SELU_SCALE``, ``a = ((1 - rate) * (1 + rate * alpha_p**2))
    ** -0.5``, ``b = -a * alpha_p * rate``: keeps zero mean and unit variance."""
    shape = tuple(x.shape) if noise_shape is None else tuple(noise_shape)
    alpha_p = -SELU_ALPHA * SELU_SCALE
    kept = (torch.rand(shape, dtype=torch.float32, device=x.device,
                       generator=generator) >= rate).to(x.dtype)
    a = ((1 - rate) * (1 + rate * alpha_p ** 2)) ** -0.5
    b = -a * alpha_p * rate
    return a * (x * kept + alpha_p * (1 - kept)) + b


def gaussian_dropout(x: torch.Tensor, rate: float,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """tf-keras' training-time ``GaussianDropout`` (``0 < rate < 1``): ``x`` times
    ``N(1, rate / (1 - rate))`` noise, one draw per element."""
    stddev = math.sqrt(rate / (1.0 - rate))
    noise = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    return x * (1.0 + stddev * noise)


def dot_product_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_axes: Sequence[int], mask: Optional[torch.Tensor] = None,
                          dropout_rate: float = 0.0, masking: str = "add",
                          causal: bool = False, need_scores: bool = True,
                          generator: Optional[torch.Generator] = None) -> tuple:
    """Keras' multi-head scaled dot-product attention on projected tensors.

    Args:
        query: ``(batch, ..., heads, key_dim)``: the axes in ``attention_axes`` are the
            query steps ``T...``, the others (with the heads) batch-like.
        key: ``(batch, ..., heads, key_dim)``, the same batch-like axes, steps ``S...``;
            fewer heads than the query (a divisor: grouped-query attention) stand for each
            head repeated ``query heads / key heads`` times in place (Keras'
            ``ops.repeat(key, n, axis=2)``, torch's ``repeat_interleave``).
        value: like ``key`` with ``value_dim`` features (``key``'s head count).
        attention_axes: axes of the inputs (between batch and heads) attended over.
        mask: boolean, broadcastable to the scores after Keras' expansion (singleton axes
            inserted before the query steps: ``(batch, T, S)`` for one attention axis);
            False keeps a query step from a key step.
        dropout_rate: of the dropout on the attention probabilities (0: none).
        masking: whose masked softmax: ``"add"`` (tf-keras: ``-1e9`` times ``1 - mask``
            added to the scores; float16: its lowest value), ``"where"`` (tf-keras'
            robust masking: masked scores replaced by it), ``"keras3"`` (Keras 3's
            ``Softmax``: replaced by ``-1e9``, float16 ``-3e4``, and masked probabilities
            zeroed, so a query step with every key masked gets zeros) or
            ``"keras3_fused"`` (Keras 3's ``dot_product_attention`` route: ``-0.7`` times
            the dtype's largest value added; such a step gets the mean of the values).
        causal: AND the lower-triangular mask ``(T, S)`` (one attention axis) into ``mask``.
        need_scores: ``False`` where the caller drops the probabilities: with one attention
            axis and no dropout the output comes from torch's fused
            ``scaled_dot_product_attention``, which never stores the ``(batch, heads, T,
            S)`` probabilities, where it computes the same formula: no mask but
            ``causal`` (no query step then sees no key), or an additive masking
            (``"add"``, ``"keras3_fused"``: the offsets become its float ``attn_mask``).
            Same math; float32 rounding differs (~1e-7 relative).
        generator: of the dropout's random numbers (``None``: torch's global one).

    Returns:
        ``(output, scores)``: output like ``query`` with ``value_dim`` features, the
        probabilities ``(batch-like axes..., T..., S...)`` (``None`` from the fused route).
    """
    rank = query.dim()
    groups = query.shape[-2] // key.shape[-2]
    if groups * key.shape[-2] != query.shape[-2] or value.shape[-2] != key.shape[-2]:
        raise ValueError(f"The key and value heads ({key.shape[-2]}, {value.shape[-2]}) "
                         f"must be equal and divide the query heads ({query.shape[-2]})")
    if causal:
        if len(attention_axes) != 1:
            raise ValueError("A causal mask needs one attention axis")
        t, s = query.shape[attention_axes[0]], key.shape[attention_axes[0]]
        tri = torch.ones((t, s), dtype=torch.bool, device=query.device).tril()
        mask = None if mask is None else mask & tri
    fused = rank == 4 and tuple(attention_axes) == (1,) and not need_scores and \
        dropout_rate == 0 and (mask is None or masking in ("add", "keras3_fused"))
    if fused:
        bias = None
        if mask is not None:  # (batch, T, S) -> (batch, 1, T, S): the same for every head
            while mask.dim() < 3:
                mask = mask.unsqueeze(0)
            bias = _additive_mask(mask.unsqueeze(1), query.dtype, masking)
        # (batch, T, heads, d) -> (batch, heads, T, d)
        extra = {"enable_gqa": True} if groups > 1 else {}  # (torch repeats in place)
        out = torch.nn.functional.scaled_dot_product_attention(
            query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2),
            attn_mask=bias, is_causal=causal and mask is None, **extra)
        return out.transpose(1, 2), None
    if groups > 1:
        key = key.repeat_interleave(groups, dim=-2)
        value = value.repeat_interleave(groups, dim=-2)
    if causal:
        mask = tri if mask is None else mask
    attn = tuple(attention_axes)
    batch_axes = tuple(a for a in range(rank - 1) if a not in attn)
    perm = batch_axes + attn + (rank - 1,)
    q = query * (1.0 / math.sqrt(float(query.shape[-1])))  # Keras scales the query
    q, k, v = q.permute(perm), key.permute(perm), value.permute(perm)
    nb = len(batch_axes)
    lead, steps_q, steps_k = q.shape[:nb], q.shape[nb:-1], k.shape[nb:-1]
    t, s = math.prod(steps_q), math.prod(steps_k)
    scores = torch.matmul(q.reshape(-1, t, q.shape[-1]),
                          k.reshape(-1, s, k.shape[-1]).transpose(1, 2))
    scores = scores.reshape(tuple(lead) + tuple(steps_q) + tuple(steps_k))
    if mask is not None:
        at = -2 * len(attn) - 1
        while mask.dim() < scores.dim():
            mask = mask.unsqueeze(at)
        if masking in ("where", "keras3"):
            half = scores.dtype == torch.float16
            negative = -3e4 if masking == "keras3" and half else \
                torch.finfo(torch.float16).min if half else -1e9
            scores = torch.where(mask, scores, torch.full((), negative, dtype=scores.dtype,
                                                          device=scores.device))
        else:
            scores = scores + _additive_mask(mask, scores.dtype, masking)
    norm = tuple(range(scores.dim() - len(attn), scores.dim()))
    scores = keras_softmax(scores, norm if len(norm) > 1 else norm[0])
    if mask is not None and masking == "keras3":
        scores = torch.where(mask, scores, torch.zeros((), dtype=scores.dtype,
                                                       device=scores.device))
    probs = dropout(scores, dropout_rate, generator=generator) if dropout_rate > 0 \
        else scores
    out = torch.matmul(probs.reshape(-1, t, s), v.reshape(-1, s, v.shape[-1]))
    out = out.reshape(tuple(lead) + tuple(steps_q) + (v.shape[-1],))
    return out.permute(tuple(sorted(range(rank), key=perm.__getitem__))), scores


def _additive_mask(mask: torch.Tensor, dtype: torch.dtype, masking: str) -> torch.Tensor:
    """The offsets an additive masking adds to the scores where ``mask`` is False:
    tf-keras' ``(1 - mask) * -1e9`` (float16: its lowest value), Keras 3's fused route's
    ``-0.7`` times the dtype's largest value."""
    half = dtype == torch.float16
    if masking == "keras3_fused":
        return torch.where(mask, 0.0, -0.7 * (65500.0 if half else 3.38953e38)).to(dtype)
    negative = torch.finfo(torch.float16).min if half else -1e9
    return (1.0 - mask.to(dtype)) * negative


def dense_attention(scores: torch.Tensor, value: torch.Tensor,
                    mask: Optional[torch.Tensor] = None,
                    dropout_rate: float = 0.0) -> tuple:
    """Keras' ``Attention`` / ``AdditiveAttention`` after the scores: ``1e9`` (float16:
    65504) subtracted where ``mask`` is False, softmax over the value steps, dropout,
    then the weighted sum of the values.

    Args:
        scores: ``(batch, Tq, Tv)``.
        value: ``(batch, Tv, dim)``.
        mask: boolean, broadcastable to ``scores``, or ``None``.
        dropout_rate: of the dropout on the probabilities (0: none).

    Returns:
        ``(output (batch, Tq, dim), probabilities (batch, Tq, Tv))``.
    """
    if mask is not None:
        big = 65504.0 if scores.dtype == torch.float16 else 1.0e9
        scores = scores - big * torch.logical_not(mask).to(scores.dtype)
    probs = torch.softmax(scores, dim=-1)
    weights = dropout(probs, dropout_rate) if dropout_rate > 0 else probs
    return torch.matmul(weights, value), probs


def keras_relu(x: torch.Tensor, negative_slope: float = 0.0, max_value: Optional[float] = None,
               threshold: float = 0.0) -> torch.Tensor:
    """tf-keras' ``backend.relu``: ``x`` above ``threshold`` (else 0), clipped at
    ``max_value``, minus ``negative_slope * relu(threshold - x)``."""
    if negative_slope != 0 and max_value is None and threshold == 0:
        return torch.nn.functional.leaky_relu(x, negative_slope)
    negative = torch.relu(threshold - x) if negative_slope != 0 else None
    if threshold != 0:
        y = x * (x > threshold).to(x.dtype)
    else:
        y = torch.relu(x)
    if max_value is not None:
        y = torch.clamp(y, 0.0, max_value)
    if negative is not None:
        y = y - negative_slope * negative
    return y


def prelu(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Keras' ``PReLU``: ``relu(x) - alpha * relu(-x)``, ``alpha`` broadcast from the
    non-batch axes (``x.shape[1:]`` with shared axes of size 1)."""
    return torch.relu(x) - alpha * torch.relu(-x)


def keras_softmax(x: torch.Tensor, axis: Union[int, Sequence[int]] = -1) -> torch.Tensor:
    """Keras' softmax over one axis or several (then ``exp(x - logsumexp(x, axes))``,
    with TensorFlow's ``reduce_logsumexp``: ``log(sum(exp(x - m))) + m`` for the largest
    ``m``, held constant for the gradient; at tf-keras' ``-1e9`` mask offsets its rounding
    and gradient differ from ``torch.logsumexp``'s)."""
    if isinstance(axis, (tuple, list)):
        axes = tuple(int(a) for a in axis)
        m = torch.amax(x.detach(), dim=axes, keepdim=True)
        m = torch.where(torch.isfinite(m), m, torch.zeros((), dtype=m.dtype, device=m.device))
        lse = torch.log(torch.sum(torch.exp(x - m), dim=axes, keepdim=True)) + m
        return torch.exp(x - lse)
    return torch.softmax(x, dim=int(axis))


def flatten(x: torch.Tensor, data_format: str = "channels_last") -> torch.Tensor:
    """Keras' ``Flatten``: ``(batch, ...) -> (batch, prod(...))``; under ``channels_first``
    the channel axis is moved last first, so both formats give the same order."""
    if data_format == "channels_first" and x.dim() > 2:
        x = x.permute(0, *range(2, x.dim()), 1)
    if x.dim() == 1:
        return x.unsqueeze(1)
    return x.reshape(x.shape[0], -1)


def batch_normalization(x: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor,
                        beta: Optional[torch.Tensor], gamma: Optional[torch.Tensor],
                        epsilon: float) -> torch.Tensor:
    """TensorFlow's ``tf.nn.batch_normalization``: ``x * inv + (beta - mean * inv)`` with
    ``inv = gamma / sqrt(variance + epsilon)``; statistics broadcast against ``x``."""
    return scale_offset(x, *batch_norm_factors(mean, variance, beta, gamma, epsilon))


def batch_norm_factors(mean: torch.Tensor, variance: torch.Tensor,
                       beta: Optional[torch.Tensor], gamma: Optional[torch.Tensor],
                       epsilon: float) -> tuple:
    """``(inv, offset)`` of :func:`batch_normalization`: ``inv = gamma / sqrt(variance +
    epsilon)``, ``offset = beta - mean * inv`` (in TensorFlow's order of operations)."""
    inv = torch.rsqrt(variance + epsilon)
    if gamma is not None:
        inv = inv * gamma
    offset = -mean * inv
    if beta is not None:
        offset = offset + beta
    return inv, offset


def scale_offset(x: torch.Tensor, inv: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``x * inv + offset``, two roundings as TensorFlow's (no fused multiply-add), for
    ``inv`` and ``offset`` that broadcast against ``x``."""
    if not _graphs.standard_ops_wanted() and _graphs.plain(x, inv, offset) \
            and not (torch.is_grad_enabled() and (x.requires_grad or inv.requires_grad
                                                  or offset.requires_grad)) \
            and _norm_native.takes(x, range(x.dim() - 1), inv, offset):
        # inference with per-channel statistics (a batch norm in eval mode): one pass in C,
        # where x * inv + offset is two (and slow broadcasts over a few channels)
        return _norm_native.affine(x.contiguous(), inv, offset)
    return x * inv + offset


def moments(x: torch.Tensor, axes: Sequence[int]) -> tuple:
    """``tf.nn.moments``: mean and the biased (population) variance over ``axes``,
    keeping dimensions."""
    axes = tuple(axes)
    mean = x.mean(dim=axes, keepdim=True)
    centered = x - mean.detach()
    variance = (centered * centered).mean(dim=axes, keepdim=True)
    # tf.nn.moments: variance = mean(squared_difference(x, stop_gradient(mean))); the
    # gradient through the mean's subtraction is zero in exact arithmetic either way.
    # d * d, not torch.square: the same numbers, and square's backward is torch's generic
    # pow(x, 1.0) (3-6x the cost of a multiply on CPU).
    return mean, variance


def normalize(x: torch.Tensor, axes: Sequence[int], gamma: Optional[torch.Tensor],
              beta: Optional[torch.Tensor], epsilon: float) -> tuple:
    """:func:`moments` over ``axes`` then :func:`batch_normalization`: ``(y, mean,
    variance)``, what Keras' batch normalization in training and layer normalization
    compute (``gamma`` / ``beta`` broadcast against ``x`` or ``None``).

    With autograd on, one autograd node (:class:`_Normalize`) with the textbook backward
    (``dx = gamma * rstd * (dy - mean(dy) - xhat * mean(dy * xhat))``), which the
    composition's autograd also computes in exact arithmetic: the composition's graph
    (a dozen full-size passes and torch's slow ``pow`` backward) cost 2-2.6x as much on
    CPU (one thread, ``bench/model_train.py``'s batch norms: (16, 150, 64) forward+backward
    0.74 -> 0.33 ms, (8, 112, 112, 32) 18.0 -> 7.9 ms), and the result is as close to
    float64's (1-3e-7 of scale against 3-6e-7).  ``mean`` and ``variance`` come back
    detached there (Keras updates its moving statistics from them, no gradient)."""
    axes = tuple(axes)
    if torch.is_grad_enabled() and x.dtype in (torch.float32, torch.float64) and (
            x.requires_grad or any(t is not None and t.requires_grad for t in (gamma, beta))) \
            and not _graphs.standard_ops_wanted():
        # (traced, exported, compiled and torch.func graphs keep the composition: standard
        # ops that those tools differentiate and fuse themselves)
        return _Normalize.apply(x, gamma, beta, epsilon, axes)
    mean, variance = moments(x, axes)
    return batch_normalization(x, mean, variance, beta, gamma, epsilon), mean, variance


def layer_normalization(x: torch.Tensor, axes: Sequence[int], gamma: Optional[torch.Tensor],
                        beta: Optional[torch.Tensor], epsilon: float) -> torch.Tensor:
    """Keras' layer normalization: :func:`normalize`'s ``y``.  Over trailing axes with
    ``gamma`` / ``beta`` of those axes' sizes (``LayerNormalization(axis=-1)``, every
    Transformer's) it is torch's fused ``layer_norm`` kernels (:class:`_LayerNorm`; the same
    formula, float32 rounding apart): forward+backward one thread 0.32-0.56x the
    composition's CPU time on (8, 250, 256), (32, 100, 64), (4, 1000, 144), as close to
    float64 (1-2e-7 of scale)."""
    if _graphs.standard_ops_wanted():
        return normalize(x, axes, gamma, beta, epsilon)[0]
    rank, axes = x.dim(), sorted(a % max(x.dim(), 1) for a in axes)
    shape = tuple(x.shape[rank - len(axes):])
    params = [p for p in (gamma, beta) if p is not None]
    if axes and axes == list(range(rank - len(axes), rank)) and \
            x.dtype in (torch.float32, torch.float64) and all(
                p.dtype == x.dtype and p.numel() == math.prod(shape) and
                tuple(p.shape[p.dim() - len(axes):]) == shape for p in params):
        return _LayerNorm.apply(x, None if gamma is None else gamma.reshape(shape),
                                None if beta is None else beta.reshape(shape), epsilon, shape)
    return normalize(x, axes, gamma, beta, epsilon)[0]


class _LayerNorm(torch.autograd.Function):
    """torch's ``native_layer_norm`` and its backward for the input gradient; ``gamma``'s
    and ``beta``'s gradients summed here, with torch's pairwise reductions: the fused
    backward sums them row after row in float32 (1-2e-6 of scale off float64 on 1000-25000
    rows, against 1-2e-7 this way).  ``create_graph=True``: the composition's gradients."""

    @staticmethod
    def forward(ctx, x, gamma, beta, epsilon, shape):
        y, mean, rstd = torch.ops.aten.native_layer_norm(x, list(shape), gamma, beta, epsilon)
        ctx.save_for_backward(x, gamma, beta, mean, rstd)
        ctx.shape, ctx.epsilon = shape, epsilon
        return y

    @staticmethod
    def backward(ctx, dy):
        x, gamma, beta, mean, rstd = ctx.saved_tensors
        shape = ctx.shape
        axes = tuple(range(x.dim() - len(shape), x.dim()))
        wants = [t is not None and need for t, need in zip((x, gamma, beta),
                                                             ctx.needs_input_grad[:3])]
        if torch.is_grad_enabled():  # create_graph: the composition, differentiable
            with torch.enable_grad():
                inputs = [t for t, want in zip((x, gamma, beta), wants) if want]
                y = normalize(x, axes, gamma, beta, ctx.epsilon)[0]
                grads = iter(torch.autograd.grad(y, inputs, dy, create_graph=True))
            return tuple(next(grads) if want else None for want in wants) + (None, None)
        dx = dgamma = dbeta = None
        if wants[0]:
            dx = torch.ops.aten.native_layer_norm_backward(
                dy, x, list(shape), mean, rstd, gamma, beta, [True, False, False])[0]
        rows = dy.reshape(-1, math.prod(shape))
        if wants[1]:
            xhat = (x - mean) * rstd
            dgamma = (rows * xhat.reshape(rows.shape)).sum(0).view(shape)
        if wants[2]:
            dbeta = rows.sum(0).view(shape)
        return dx, dgamma, dbeta, None, None


class _Normalize(torch.autograd.Function):
    """:func:`normalize` as one node; under ``create_graph=True`` its backward returns the
    composition's differentiable gradients (double backward, e.g. a gradient penalty).

    Batch normalization of contiguous CPU float32 data over every axis but the last (Keras'
    ``axis=-1``, any rank) runs its passes in C (``kernels/_norm_native.py``): forward +
    backward 0.19-0.57x the composition's one-thread CPU time on (16, 150, 32) ...
    (8, 112, 112, 32), 0.84x on a 65k-element (32, 1, 128, 16); elsewhere torch ops."""

    @staticmethod
    def forward(ctx, x, gamma, beta, epsilon, axes):
        native = _graphs.plain(x, gamma, beta) and _norm_native.takes(x, axes, gamma, beta)
        if native:
            x = x.contiguous()
            keep = (1,) * (x.dim() - 1) + (x.shape[-1],)
            mean, variance = (t.view(keep) for t in _norm_native.stats(x))
            centered = mean  # backward takes x - mean inside the C routine
        else:
            mean = x.mean(dim=axes, keepdim=True)
            centered = x - mean
            variance = (centered * centered).mean(dim=axes, keepdim=True)
        rstd = torch.rsqrt(variance + epsilon)
        scale = rstd if gamma is None else rstd * gamma
        offset = -mean * scale  # batch_normalization's x * inv + (beta - mean * inv)
        if beta is not None:
            offset = offset + beta
        ctx.save_for_backward(x, gamma, beta, centered, rstd, scale)
        ctx.epsilon, ctx.axes, ctx.native = epsilon, axes, native
        ctx.mark_non_differentiable(mean, variance)
        if native:
            return _norm_native.affine(x, scale, offset), mean, variance
        return torch.addcmul(offset, x, scale), mean, variance

    @staticmethod
    def backward(ctx, dy, _dmean, _dvariance):
        x, gamma, beta, centered, rstd, scale = ctx.saved_tensors
        axes = ctx.axes
        wants = [t is not None and need for t, need in zip((x, gamma, beta),
                                                             ctx.needs_input_grad[:3])]
        if torch.is_grad_enabled():  # create_graph: the composition, differentiable
            with torch.enable_grad():
                inputs = [t for t, want in zip((x, gamma, beta), wants) if want]
                mean, variance = moments(x, axes)
                y = batch_normalization(x, mean, variance, beta, gamma, ctx.epsilon)
                grads = iter(torch.autograd.grad(y, inputs, dy, create_graph=True))
            return tuple(next(grads) if want else None for want in wants) + (None, None)
        count = x.numel() // rstd.numel()
        dx = dgamma = dbeta = None
        if gamma is None or all(gamma.shape[a] == 1 for a in axes):
            # gamma constant over each normalised group (batch normalization)
            if ctx.native:
                mean = centered
                dy = dy.contiguous()
                dsum, dot = (t.view(mean.shape) for t in _norm_native.grad_sums(dy, x, mean))
            else:
                dsum = dy.sum(dim=axes, keepdim=True)
                dot = (dy * centered).sum(dim=axes, keepdim=True)
            if wants[0]:
                k1 = scale * rstd * rstd * dot / -count
                k0 = scale * dsum / -count
                if ctx.native:
                    dx = _norm_native.affine(dy, scale, k0, x, mean, k1)
                else:
                    dx = torch.addcmul(torch.addcmul(k0, centered, k1), dy, scale)
            if wants[1]:
                dgamma = (dot * rstd).sum_to_size(gamma.shape)
            if wants[2]:
                dbeta = (dsum if all(beta.shape[a] == 1 for a in axes) else dy) \
                    .sum_to_size(beta.shape)
            return dx, dgamma, dbeta, None, None
        # gamma varies inside a group (layer normalization's per-feature scale)
        xhat = centered * rstd
        dxhat = dy * gamma
        if wants[0]:
            m1 = dxhat.mean(dim=axes, keepdim=True)
            m2 = (dxhat * xhat).mean(dim=axes, keepdim=True)
            dx = torch.addcmul(dxhat - m1, xhat, m2, value=-1.0) * rstd
        if wants[1]:
            dgamma = (dy * xhat).sum_to_size(gamma.shape)
        if wants[2]:
            dbeta = dy.sum_to_size(beta.shape)
        return dx, dgamma, dbeta, None, None



def _pool_geometry(x: torch.Tensor, pool_size: IntOrTuple, strides: Optional[IntOrTuple],
                   padding: str, data_format: str, rank: int):
    pool = _ints(pool_size, rank, "pool_size")
    stride = pool if strides is None else _ints(strides, rank, "strides")
    padding, channels_last = _check_geometry(padding, data_format, rank)
    if padding == "causal":
        raise ValueError(f"Invalid value for argument `padding`. Expected 'valid' or 'same'. "
                         f"Received padding={padding!r}")
    _channels_and_spatial(x, rank, channels_last)  # the rank check
    if channels_last:
        x = x.permute(0, x.dim() - 1, *range(1, x.dim() - 1))
    spatial = tuple(x.shape[2:])
    out = _padding.conv_output_shape(spatial, pool, stride, (1,) * rank, padding)
    if min(out) <= 0:
        raise ValueError(f"Input of shape {tuple(x.shape)} is too small for pool_size={pool}, "
                         f"strides={stride}, padding={padding!r}: the output would have "
                         f"shape {out}")
    pads = _padding.padding_amounts_nd(spatial, pool, stride, (1,) * rank, padding)
    flat = tuple(v for left_right in reversed(pads) for v in left_right)
    return x, pool, stride, flat, channels_last


def _restore(y: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return y.permute(0, *range(2, y.dim()), 1) if channels_last else y


_MAX_POOL = {1: torch.nn.functional.max_pool1d, 2: torch.nn.functional.max_pool2d,
             3: torch.nn.functional.max_pool3d}
_AVG_POOL = {1: torch.nn.functional.avg_pool1d, 2: torch.nn.functional.avg_pool2d,
             3: torch.nn.functional.avg_pool3d}


def max_pool(x: torch.Tensor, pool_size: IntOrTuple, strides: Optional[IntOrTuple] = None,
             padding: str = "valid", data_format: str = "channels_last",
             rank: Optional[int] = None) -> torch.Tensor:
    """Keras' ``MaxPooling1D/2D/3D`` (TensorFlow's ``same``: the pads never win).

    Args:
        x: ``(batch, *spatial, channels)`` or ``(batch, channels, *spatial)``.
        pool_size, strides: an int or one per spatial axis; ``strides=None`` is ``pool_size``.
        rank: spatial axes (default ``x.dim() - 2``).
    """
    rank = x.dim() - 2 if rank is None else rank
    x, pool, stride, pads, channels_last = _pool_geometry(x, pool_size, strides, padding,
                                                          data_format, rank)
    if any(pads):
        x = torch.nn.functional.pad(x, pads, value=float("-inf"))
    if rank == 1 and torch.compiler.is_exporting():
        # aten's max_pool1d specialises a dynamic length to the example's under
        # torch.export; max_pool2d over a unit width keeps it symbolic (same numbers)
        y = torch.nn.functional.max_pool2d(x.unsqueeze(-1), (pool[0], 1), (stride[0], 1))
        return _restore(y.squeeze(-1), channels_last)
    return _restore(_MAX_POOL[rank](x, pool, stride), channels_last)


def average_pool(x: torch.Tensor, pool_size: IntOrTuple, strides: Optional[IntOrTuple] = None,
                 padding: str = "valid", data_format: str = "channels_last",
                 rank: Optional[int] = None) -> torch.Tensor:
    """Keras' ``AveragePooling1D/2D/3D`` (TensorFlow's ``same``: each window's mean over
    its real elements only, the pads are not counted)."""
    rank = x.dim() - 2 if rank is None else rank
    if rank == 3 and x.is_cpu and x.dtype in (torch.float16, torch.bfloat16):
        # torch 2.13 has no CPU avg_pool3d for half types (mixed precision policies):
        # computed in float32 and rounded, as TensorFlow's kernel accumulates
        return average_pool(x.float(), pool_size, strides, padding, data_format,
                            rank).to(x.dtype)
    x, pool, stride, pads, channels_last = _pool_geometry(x, pool_size, strides, padding,
                                                          data_format, rank)
    if not any(pads):
        return _restore(_AVG_POOL[rank](x, pool, stride), channels_last)
    total = _AVG_POOL[rank](torch.nn.functional.pad(x, pads), pool, stride)
    ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
    count = _AVG_POOL[rank](torch.nn.functional.pad(ones, pads), pool, stride)
    return _restore(total / count, channels_last)


def global_pool(x: torch.Tensor, op: str = "max", data_format: str = "channels_last",
                keepdims: bool = False) -> torch.Tensor:
    """Keras' ``GlobalMax/GlobalAveragePooling1D/2D/3D``: ``op`` ("max" or "average") over
    every spatial axis; ``(batch, channels)``, or with ``keepdims`` size-1 spatial axes."""
    if x.dim() < 3:
        raise ValueError(f"Expected an input with spatial axes, (batch, ..., channels). "
                         f"Received input of shape {tuple(x.shape)}")
    axes = tuple(range(1, x.dim() - 1)) if data_format == "channels_last" \
        else tuple(range(2, x.dim()))
    if op == "max":
        return torch.amax(x, dim=axes, keepdim=keepdims)
    return torch.mean(x, dim=axes, keepdim=keepdims)


def dropout(x: torch.Tensor, rate: float, noise_shape: Optional[Sequence[int]] = None,
            generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Keras' (``tf.nn.dropout``'s) training-time dropout: zero with probability ``rate``,
    scale the kept elements by ``1 / (1 - rate)``; one draw per element of ``noise_shape``
    (broadcast against ``x``), by default ``x.shape``.  ``rate=1`` gives zeros."""
    shape = tuple(x.shape) if noise_shape is None else tuple(noise_shape)
    if rate >= 1:
        return x * torch.zeros(shape, dtype=x.dtype, device=x.device)
    keep = torch.rand(shape, dtype=torch.float32, device=x.device,
                      generator=generator) >= rate
    return x * keep.to(x.dtype) * (1.0 / (1.0 - rate))
def depthwise_conv(x: torch.Tensor, depthwise_kernel: torch.Tensor,
                   bias: Optional[torch.Tensor] = None, strides: IntOrTuple = 1,
                   padding: str = "valid", dilation_rate: IntOrTuple = 1,
                   data_format: str = "channels_last", *,
                   strided_dilation: bool = False) -> torch.Tensor:
    """Keras' ``DepthwiseConv1D`` / ``DepthwiseConv2D`` (no activation); rank from the kernel.

    Each input channel ``c`` is convolved with its own ``depth_multiplier`` kernels; output
    channel ``c * depth_multiplier + m`` comes from input channel ``c`` (TensorFlow's order).
    This is :func:`conv` with ``groups = channels`` (same validation, padding and kernel).

    Args:
        x: ``(batch, *spatial, channels)`` for ``"channels_last"``,
            ``(batch, channels, *spatial)`` for ``"channels_first"``.
        depthwise_kernel: ``(*kernel_size, channels, depth_multiplier)``, Keras' layout.
        bias: ``(channels * depth_multiplier,)`` or ``None``.
        strides, dilation_rate: an int or one per spatial axis; not ``strides > 1`` on any
            axis with ``dilation_rate > 1`` on any axis (TensorFlow's rule) unless
            ``strided_dilation``.
        padding: ``"valid"`` or ``"same"`` (``"causal"`` too for rank 1); TensorFlow's
            arithmetic.
        data_format: ``"channels_last"`` or ``"channels_first"``.
        strided_dilation: compute ``strides > 1`` with ``dilation_rate > 1`` as Keras 3's
            torch and JAX backends do (TensorFlow refuses them).

    Returns:
        ``(batch, *out_spatial, channels * depth_multiplier)`` or
        ``(batch, channels * depth_multiplier, *out_spatial)``.
    """
    rank = depthwise_kernel.dim() - 2
    if rank not in (1, 2, 3):
        raise ValueError("Expected a depthwise kernel of shape (*kernel_size, channels, "
                         "depth_multiplier) with 1 to 3 spatial axes. Received "
                         f"{tuple(depthwise_kernel.shape)}")
    *ksize, c, m = depthwise_kernel.shape
    _, channels_last = _check_geometry(padding, data_format, rank)
    if x.dim() == rank + 2:
        channels = x.shape[-1] if channels_last else x.shape[1]
        if channels != c:
            raise ValueError(f"Input has {channels} channels, the depthwise kernel expects "
                             f"{c} ({_layout_nd(rank, channels_last)}). Received input of "
                             f"shape {tuple(x.shape)}")
    # (*k, C, M) -> (*k, 1, C*M): a grouped kernel whose group c holds filters c*M .. c*M+M-1.
    kernel = depthwise_kernel.reshape(*ksize, 1, c * m)
    return conv(x, kernel, bias, strides=strides, padding=padding,
                dilation_rate=dilation_rate, groups=c, data_format=data_format,
                strided_dilation=strided_dilation)


def separable_conv2d(x: torch.Tensor, depthwise_kernel: torch.Tensor,
                     pointwise_kernel: torch.Tensor, bias: Optional[torch.Tensor] = None,
                     strides: IntOrTuple = 1, padding: str = "valid",
                     dilation_rate: IntOrTuple = 1,
                     data_format: str = "channels_last", *,
                     strided_dilation: bool = False) -> torch.Tensor:
    """Keras' separable 2D convolution (no activation): :func:`depthwise_conv`, then a 1x1
    :func:`conv`.

    Args:
        x: ``(batch, rows, cols, channels)`` or ``(batch, channels, rows, cols)``.
        depthwise_kernel: ``(kernel_rows, kernel_cols, channels, depth_multiplier)``.
        pointwise_kernel: ``(1, 1, channels * depth_multiplier, filters)``.
        bias: ``(filters,)`` or ``None``.
        strides, dilation_rate, padding, data_format, strided_dilation: as
            :func:`depthwise_conv` (of the depthwise step; the pointwise step has stride 1).

    Returns:
        ``(batch, out_rows, out_cols, filters)`` or ``(batch, filters, out_rows, out_cols)``.
    """
    if depthwise_kernel.dim() != 4 or pointwise_kernel.dim() != 4 \
            or tuple(pointwise_kernel.shape[:2]) != (1, 1):
        raise ValueError("Expected depthwise_kernel of shape (kernel_rows, kernel_cols, "
                         "channels, depth_multiplier) and pointwise_kernel of shape "
                         "(1, 1, channels * depth_multiplier, filters). Received "
                         f"{tuple(depthwise_kernel.shape)} and "
                         f"{tuple(pointwise_kernel.shape)}")
    c, m = depthwise_kernel.shape[2:]
    if pointwise_kernel.shape[2] != c * m:
        raise ValueError(f"pointwise_kernel has {pointwise_kernel.shape[2]} input channels, "
                         f"expected channels * depth_multiplier = {c * m}")
    z = depthwise_conv(x, depthwise_kernel, None, strides=strides, padding=padding,
                       dilation_rate=dilation_rate, data_format=data_format,
                       strided_dilation=strided_dilation)
    return conv(z, pointwise_kernel, bias, data_format=data_format)


def _pick_conv_kernel(x: torch.Tensor, kernel: torch.Tensor, strides: tuple, pads: tuple,
                      groups: int, channels_last: bool,
                      dilation: Optional[tuple] = None) -> Callable:
    """:func:`conv`'s kernel, on CPU channels_last data (Keras' default layout; channels_first
    data: the reference kernel, or ``gemm1d``'s inference forward):

    - depthwise (one input channel per group, several channels), rank 1-2, float32/64 or
      bfloat16: ``kernels/depthwise_cpu.py`` (keeps the data channels_last, where torch's
      depthwise convolution is fast; 1 channel stays on the reference: the oneDNN trap);
      when autograd records a rank-1 one (or one with a kernel one row high, or a 2D one
      where ``depthwise_train.takes_2d``'s measured rule says so) in float32 or bfloat16,
      ``kernels/depthwise_train.py`` (the C routines' backward: oneDNN's depthwise weight
      gradient is ~20x slower than its forward);
    - 1x1, stride 1, unpadded, ungrouped: ``kernels/pointwise.py`` (one GEMM, no copies);
    - rank 1 where ``kernels/gemm1d.py``'s rule says shifted GEMMs cost less than oneDNN
      (``gemm1d.pick_conv``: WaveNet's k2 layers, dilation >= 64 under autograd: the
      backward; >= 256: the forward too; on AVX2-only CPUs, where oneDNN's backward is
      3-5x its forward, the backward of every narrow k2 / k3 stride-1 layer), and, where
      no gradient is recorded, small float32 calls of either data format
      (``gemm1d.small_form``: the forward as GEMMs, batch 1-4 / short sequences).

    Else, and under ``SEPCONV_KERNEL=reference``, the reference kernel.
    """
    # x.is_cpu, not x.device.type: no device object per call (issue 9's per-call cost)
    if not x.is_cpu or _forced_kernel() == "reference":
        return _reference.conv
    if not channels_last:  # (inference only: gemm1d.small_form's rule)
        if kernel.dim() == 3:
            return _gemm1d.pick_conv(x, kernel, strides, dilation or (1,), pads, groups,
                                     channels_last=False) or _reference.conv
        return _reference.conv
    if kernel.dim() in (3, 4) and kernel.shape[-2] == 1 and groups == x.shape[-1] > 1 \
            and x.dtype in (torch.float32, torch.float64, torch.bfloat16):
        if _depthwise_train.takes(x, kernel, pads, strides,
                                  dilation or (1,) * len(strides)):  # training: C backward
            return _depthwise_train.conv
        return _depthwise_cpu.conv
    if groups == 1 and all(k == 1 for k in kernel.shape[:-2]) \
            and all(s == 1 for s in strides) and not any(p for pair in pads for p in pair):
        return _pointwise.conv
    if kernel.dim() == 3:
        return _gemm1d.pick_conv(x, kernel, strides, dilation or (1,), pads, groups) \
            or _reference.conv
    return _reference.conv


# -- cropping, zero padding, upsampling (Keras' Cropping/ZeroPadding/UpSampling 1D-3D) ----

def _pairs(value, name: str) -> tuple:
    """(begin, end) pairs of whole numbers >= 0, one per spatial axis (an int: both ends)."""
    if not isinstance(value, (tuple, list)) or not 1 <= len(value) <= 3:
        raise ValueError(f"Invalid value for argument `{name}`. Expected one (begin, end) "
                         f"pair per spatial axis (1 to 3 axes). Received {name}={value!r}")
    pairs = []
    for pair in value:
        pair = tuple(pair) if isinstance(pair, (tuple, list)) else (pair, pair)
        if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Real)
                                 or int(v) != v or v < 0 for v in pair):
            raise ValueError(f"Invalid value for argument `{name}`. Expected whole numbers "
                             f">= 0 in (begin, end) pairs. Received {name}={value!r}")
        pairs.append((int(pair[0]), int(pair[1])))
    return tuple(pairs)


def _spatial(x: torch.Tensor, rank: int, data_format: str):
    _, channels_last = _check_geometry("valid", data_format, rank)
    _channels_and_spatial(x, rank, channels_last)  # the rank check
    first = 1 if channels_last else 2
    return channels_last, first


def crop(x: torch.Tensor, cropping: Sequence, data_format: str = "channels_last"
         ) -> torch.Tensor:
    """Keras' ``Cropping1D/2D/3D``: remove ``(begin, end)`` elements from each spatial axis.

    Args:
        x: ``(batch, *spatial, channels)`` or ``(batch, channels, *spatial)``.
        cropping: one ``(begin, end)`` pair (or one int for both ends) per spatial axis.
        data_format: ``"channels_last"`` or ``"channels_first"``.

    Returns:
        ``x`` with ``spatial[i] - begin_i - end_i`` elements on axis ``i`` (a view).
        Cropping that leaves nothing on an axis is an error (tf-keras' Cropping3D returns an
        empty tensor).
    """
    pairs = _pairs(cropping, "cropping")
    channels_last, first = _spatial(x, len(pairs), data_format)
    for axis, (begin, end) in enumerate(pairs, start=first):
        if begin + end >= x.shape[axis]:
            raise ValueError(f"Invalid value for argument `cropping`: cropping={pairs} leaves "
                             f"nothing of input of shape {tuple(x.shape)} "
                             f"{_layout_nd(len(pairs), channels_last)}")
        x = x.narrow(axis, begin, x.shape[axis] - begin - end)
    return x


def zero_pad(x: torch.Tensor, padding: Sequence, data_format: str = "channels_last"
             ) -> torch.Tensor:
    """Keras' ``ZeroPadding1D/2D/3D``: add ``(begin, end)`` zeros to each spatial axis.

    Args:
        x: ``(batch, *spatial, channels)`` or ``(batch, channels, *spatial)``.
        padding: one ``(begin, end)`` pair (or one int for both ends) per spatial axis.
        data_format: ``"channels_last"`` or ``"channels_first"``.

    Returns:
        ``x`` with ``spatial[i] + begin_i + end_i`` elements on axis ``i``.
    """
    pairs = _pairs(padding, "padding")
    channels_last, first = _spatial(x, len(pairs), data_format)
    # torch's pad lists the last axis first.
    flat = [0, 0] if channels_last else []
    for begin, end in reversed(pairs):
        flat += [begin, end]
    return torch.nn.functional.pad(x, flat)


def upsample(x: torch.Tensor, size: Sequence[int], interpolation: str = "nearest",
             data_format: str = "channels_last") -> torch.Tensor:
    """Keras' ``UpSampling1D/2D/3D``: each spatial axis ``i`` grows by the whole factor
    ``size[i]``.

    Args:
        x: ``(batch, *spatial, channels)`` or ``(batch, channels, *spatial)``.
        size: one whole factor >= 1 per spatial axis.
        interpolation: ``"nearest"`` (repetition, what UpSampling1D/3D do) or one of
            ``bilinear, bicubic, area, gaussian, lanczos3, lanczos5, mitchellcubic``:
            TensorFlow's ``tf.image.resize`` as tf-keras' UpSampling2D calls it (see
            :mod:`sepconv.kernels.resize`), applied separably to every spatial axis.
        data_format: ``"channels_last"`` or ``"channels_first"``.

    Returns:
        ``(batch, *[s * f for s, f in zip(spatial, size)], channels)`` (or channels_first).
    """
    from .kernels import resize as _resize
    if not isinstance(size, (tuple, list)) or not size or \
            any(isinstance(f, bool) or not isinstance(f, numbers.Real) or int(f) != f or f < 1
                for f in size):
        raise ValueError(f"Invalid value for argument `size`. Expected one whole factor >= 1 "
                         f"per spatial axis. Received size={size!r}")
    method = str(interpolation).lower()
    if method not in _resize.METHODS:
        raise ValueError(f"Invalid value for argument `interpolation`. Expected one of "
                         f"{_resize.METHODS}. Received interpolation={interpolation!r}")
    channels_last, _ = _spatial(x, len(size), data_format)
    if not x.is_floating_point() and method not in ("nearest", "area"):
        raise TypeError(f"interpolation={method!r} needs a floating input. Received input "
                        f"of dtype {x.dtype}")
    return _resize.upsample(x, tuple(int(f) for f in size), method, channels_last)
def conv_lstm(x: torch.Tensor, kernel: torch.Tensor, recurrent_kernel: torch.Tensor,
              bias: Optional[torch.Tensor] = None, strides: IntOrTuple = 1,
              padding: str = "valid", dilation_rate: IntOrTuple = 1,
              data_format: str = "channels_last", activation: Callable = torch.tanh,
              recurrent_activation: Callable = torch.sigmoid,
              initial_state: Optional[Sequence[torch.Tensor]] = None,
              go_backwards: bool = False, return_sequences: bool = False,
              dropout_mask: Optional[torch.Tensor] = None,
              recurrent_dropout_mask: Optional[torch.Tensor] = None,
              mask: Optional[torch.Tensor] = None):
    """Keras' ConvLSTM1D / 2D / 3D recurrence (the rank is the kernel's); gates i, f, c, o.

    Per step ``t``: ``z = conv(x_t, kernel) + bias + conv_same(h, recurrent_kernel)``,
    ``i, f, g, o = split(z, 4)``, ``c = ra(f) * c + ra(i) * a(g)``, ``h = ra(o) * a(c)``
    with ``a = activation``, ``ra = recurrent_activation``.  The input convolution takes
    ``strides``, ``padding`` and ``dilation_rate``; the recurrent one is always stride 1,
    dilation 1, TensorFlow ``"same"``.  With stride 1, dilation 1 and no dropout masks the
    two run as one channels-last convolution of ``[x_t, h]`` per step (and, without
    autograd, the gate activations in place); else the input convolution runs on chunks
    of steps through :func:`conv` and the recurrent one channels-first.

    Args:
        x: ``(batch, time, *spatial, channels)`` for ``"channels_last"``,
            ``(batch, time, channels, *spatial)`` for ``"channels_first"``.
        kernel: ``(*kernel_size, channels, 4 * filters)``.
        recurrent_kernel: ``(*kernel_size, filters, 4 * filters)``.
        bias: ``(4 * filters,)`` or ``None``.
        activation, recurrent_activation: applied to tensors in ``data_format``'s layout.
        initial_state: ``[h, c]``, each ``(batch, *out_spatial, filters)`` (channels_last) or
            ``(batch, filters, *out_spatial)``; zeros when ``None``.
        go_backwards: process the steps last to first; outputs come in processing order.
        return_sequences: return every step's ``h`` (``(batch, time, ...)``), else the last.
        dropout_mask: ``(4, batch, *spatial, channels)`` (or channels_first), one mask per
            gate multiplying the input of that gate's convolution at every step.
        recurrent_dropout_mask: ``(4, *state_shape)``, the same for ``h``.
        mask: ``(batch, time)`` booleans, Keras' timestep mask: at a masked step the
            states are kept and the output repeats the previous step's (zeros before the
            first unmasked step), as tf-keras' ``backend.rnn``.  Or ``(batch, time,
            *m)`` with ``m`` the leading axes of a step's output ``(*out_spatial,
            filters)`` (channels_first: ``(filters, *out_spatial)``), e.g. ``Masking``'s
            ``(batch, time, *spatial)`` where the output keeps the input's spatial shape
            (``padding="same"``, strides 1): the same per output position, as tf-keras
            2.21's ``backend.rnn`` broadcasts it (each position keeps its own ``h``,
            ``c`` and last output where masked).

    Returns:
        ``(output, h, c)``.
    """
    F = torch.nn.functional
    rank = kernel.dim() - 2
    if rank not in (1, 2, 3) or recurrent_kernel.dim() != rank + 2:
        raise ValueError("Expected kernel (*kernel_size, channels, 4 * filters) and "
                         "recurrent_kernel (*kernel_size, filters, 4 * filters) with 1 to 3 "
                         f"spatial axes. Received {tuple(kernel.shape)} and "
                         f"{tuple(recurrent_kernel.shape)}")
    padding, channels_last = _check_geometry(padding, data_format, rank)
    if padding == "causal":
        raise ValueError("Invalid value for argument `padding`. Expected one of "
                         "('valid', 'same'). Received padding='causal'")
    gates = kernel.shape[-1]
    if gates % 4 or tuple(recurrent_kernel.shape[-2:]) != (gates // 4, gates):
        raise ValueError(f"Expected recurrent_kernel of shape (*kernel_size, {gates // 4}, "
                         f"{gates}) for a kernel with {gates} = 4 * filters outputs. "
                         f"Received {tuple(recurrent_kernel.shape)}")
    filters = gates // 4
    if x.dim() != rank + 3:
        raise ValueError(f"Input must be {rank + 3}D, (batch, time, "
                         f"{_layout_nd(rank, channels_last)[8:]}. "
                         f"Received input of shape {tuple(x.shape)}")
    batch, steps = x.shape[:2]
    if steps == 0:
        raise ValueError(f"Input of shape {tuple(x.shape)} has no time steps")
    spatial = tuple(x.shape[2:-1] if channels_last else x.shape[3:])
    out_spatial = _padding.conv_output_shape(spatial, kernel.shape[:rank],
                                             _ints(strides, rank, "strides"),
                                             _ints(dilation_rate, rank, "dilation_rate"),
                                             padding)
    if min(out_spatial) <= 0:
        raise ValueError(f"Input of shape {tuple(x.shape)} is too small for kernel_size="
                         f"{tuple(kernel.shape[:rank])}, dilation_rate={dilation_rate}, "
                         f"padding={padding!r}: the output would have shape {out_spatial}")
    state_layout = ((batch,) + out_spatial + (filters,)) if channels_last \
        else (batch, filters) + out_spatial
    for arg, value, shape in (("dropout_mask", dropout_mask, (4, batch) + tuple(x.shape[2:])),
                              ("recurrent_dropout_mask", recurrent_dropout_mask,
                               (4,) + state_layout)):
        if value is not None and tuple(value.shape) != shape:
            raise ValueError(f"Invalid value for argument `{arg}`. Expected shape {shape}. "
                             f"Received {tuple(value.shape)}")
    if mask is not None:
        out_step = (out_spatial + (filters,)) if channels_last else (filters,) + out_spatial
        step_masks = _conv_lstm_mask(mask, batch, steps, out_step).to(x.device).unbind(1)
        if go_backwards:
            step_masks = step_masks[::-1]
    input_mask = None
    if dropout_mask is not None:
        input_mask = dropout_mask.movedim(-1, 2) if channels_last else dropout_mask
        input_mask = input_mask.transpose(0, 1).unsqueeze(1)  # (batch, 1, 4, channels, ...)

    def input_term(t0: int, t1: int) -> torch.Tensor:
        """``conv(x_t, kernel) + bias`` for steps t0..t1-1: ``(batch, t1-t0, 4F, *out)``.
        Steps go in chunks of about 2M output values: one convolution per chunk is as
        fast as one per step, and its output is still in cache when the steps read it."""
        frames = x[:, t0:t1]
        if channels_last:
            frames = frames.movedim(-1, 2)
        groups = 1
        if input_mask is not None:
            # one masked copy of the input per gate, convolved group-wise with that gate's
            # kernel
            frames = (frames.unsqueeze(2) * input_mask).flatten(2, 3)
            groups = 4
        z = conv(frames.flatten(0, 1), kernel, bias, strides, padding, dilation_rate,
                 groups, "channels_first")
        return z.view((batch, t1 - t0, gates) + out_spatial)

    per_step = batch * gates * math.prod(out_spatial)
    chunk = max(1, (1 << 21) // max(1, per_step))
    starts = list(range(0, steps, chunk))
    if go_backwards:
        starts.reverse()

    def step_inputs():
        for t0 in starts:
            z = input_term(t0, min(t0 + chunk, steps)).unbind(1)
            yield from (z[::-1] if go_backwards else z)

    state_shape = (batch, filters) + out_spatial
    if initial_state is None:
        h = x.new_zeros(state_shape)
        c = torch.zeros_like(h)
    else:
        if len(initial_state) != 2:
            raise ValueError("Invalid value for argument `initial_state`. Expected [h, c]. "
                             f"Received {len(initial_state)} tensors")
        h, c = (s.movedim(-1, 1) if channels_last else s for s in initial_state)
        for s in (h, c):
            if tuple(s.shape) != state_shape:
                raise ValueError(f"Invalid value for argument `initial_state`. Expected "
                                 f"states of shape {state_layout}. Received "
                                 f"{[tuple(t.shape) for t in initial_state]}")
        h, c = h.to(x.dtype), c.to(x.dtype)

    weight = recurrent_kernel.permute(rank + 1, rank, *range(rank))  # (4F, F, *k)
    pads = _padding.padding_amounts_nd(out_spatial, recurrent_kernel.shape[:rank],
                                       (1,) * rank, (1,) * rank, "same")
    symmetric = all(left == right for left, right in pads)
    flat_pads = [p for pair in reversed(pads) for p in pair]
    conv_nd = (F.conv1d, F.conv2d, F.conv3d)[rank - 1]
    in_pads = _padding.padding_amounts_nd(spatial, kernel.shape[:rank],
                                          _ints(strides, rank, "strides"),
                                          _ints(dilation_rate, rank, "dilation_rate"), padding)
    if input_mask is None and recurrent_dropout_mask is None and \
            _ints(strides, rank, "strides") == (1,) * rank and \
            _ints(dilation_rate, rank, "dilation_rate") == (1,) * rank:
        return _conv_lstm_fused(x, kernel, recurrent_kernel, bias, in_pads, pads, channels_last,
                                activation, recurrent_activation, h, c, go_backwards,
                                return_sequences, step_masks if mask is not None else None)
    rec_groups = 1
    if recurrent_dropout_mask is not None:
        rmask = recurrent_dropout_mask.movedim(-1, 2) if channels_last \
            else recurrent_dropout_mask
        rmask = rmask.transpose(0, 1)  # (batch, 4, filters, *out_spatial)
        rec_groups = 4

    def recurrent(h):
        if rec_groups == 4:
            h = (h.unsqueeze(1) * rmask).reshape((batch, gates) + out_spatial)
        if symmetric:
            return conv_nd(h, weight, None, padding=tuple(p[0] for p in pads),
                           groups=rec_groups)
        return conv_nd(F.pad(h, flat_pads), weight, None, groups=rec_groups)

    def in_layout(fn):
        # An activation over an axis (softmax, ...) sees the tensor in the caller's layout.
        if not channels_last or _elementwise(fn):
            return fn
        return lambda t: fn(t.movedim(1, -1)).movedim(-1, 1)

    act, rec_act = in_layout(activation), in_layout(recurrent_activation)
    outputs = []
    out = h.new_zeros(state_shape) if mask is not None else None
    for t, z_t in enumerate(step_inputs()):
        z = recurrent(h)
        z += z_t  # in place: the convolution's backward does not need its output
        zi, zf, zc, zo = z.chunk(4, dim=1)
        c_new = torch.addcmul(rec_act(zf) * c, rec_act(zi), act(zc))
        h_new = rec_act(zo) * act(c_new)
        if mask is None:
            h, c = h_new, c_new
            out = h_new
        else:  # the mask in this loop's channels-first layout
            keep = step_masks[t].movedim(-1, 1) if channels_last else step_masks[t]
            out = torch.where(keep, h_new, out)
            h, c = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
        if return_sequences:
            outputs.append(out)
    output = torch.stack(outputs, 1) if return_sequences else out
    if channels_last:  # views: the recurrence ran channels-first (measured faster)
        output = output.movedim(2 if return_sequences else 1, -1)
        h, c = h.movedim(1, -1), c.movedim(1, -1)
    return output, h, c


def _conv_lstm_mask(mask, batch: int, steps: int, out_step: Tuple[int, ...]):
    """A ConvLSTM mask as booleans ``(batch, time, *m, 1, ...)`` broadcasting against the
    steps' outputs ``(batch, time, *out_step)``; ``m`` must be ``out_step``'s leading axes
    (tf-keras 2.21 tiles the mask over the remaining ones and fails on other shapes)."""
    if not isinstance(mask, torch.Tensor):
        mask = torch.as_tensor(mask)
    m = tuple(mask.shape[2:])
    if mask.dim() < 2 or tuple(mask.shape[:2]) != (batch, steps) or \
            len(m) > len(out_step) or m != tuple(out_step[:len(m)]):
        raise ValueError(f"Invalid value for argument `mask`. Expected a (batch, time) mask "
                         f"{(batch, steps)}, or one per output position whose later axes "
                         f"lead a step's output shape {tuple(out_step)} (Masking's (batch, "
                         f"time, *spatial) mask fits where the output keeps the input's "
                         f"spatial shape: padding='same', strides 1). Received a mask of "
                         f"shape {tuple(mask.shape)}")
    return mask.to(torch.bool).reshape((batch, steps) + m + (1,) * (len(out_step) - len(m)))


def _conv_lstm_fused(x, kernel, recurrent_kernel, bias, in_pads, pads, channels_last,
                     activation, recurrent_activation, h, c, go_backwards, return_sequences,
                     step_masks):
    """:func:`conv_lstm` when the input convolution has stride 1 and dilation 1 (any
    padding) and there are no dropout masks: one convolution per step of ``[x_t, h]``
    (channels concatenated, each padded by its own convolution's padding: ``x_t`` padded
    by ``in_pads`` and ``h`` by the recurrent ``pads`` have the same size and line up)
    with ``[kernel, recurrent_kernel]``, channels-last in memory (oneDNN's fast layout:
    1.4x the channels-first speed for 64 -> 256 channels 3x3; and a 1-channel input
    convolution on its own costs half the recurrent one).  ``h`` and ``c`` come
    channels-first ``(batch, filters, *out_spatial)``."""
    F = torch.nn.functional
    rank = kernel.dim() - 2
    if rank == 1:  # as 2D over a height-1 axis: oneDNN's 2D path is faster than its 1D
        axis = -3 if channels_last else -2
        output, h, c = _conv_lstm_fused(
            x.unsqueeze(2 if channels_last else 3), kernel.unsqueeze(0),
            recurrent_kernel.unsqueeze(0), bias, ((0, 0),) + tuple(in_pads),
            ((0, 0),) + tuple(pads), channels_last,
            activation, recurrent_activation, h.unsqueeze(2), c.unsqueeze(2), go_backwards,
            return_sequences, None if step_masks is None else
            [k.unsqueeze(1 if channels_last else 2) for k in step_masks])
        return output.squeeze(axis), h.squeeze(axis), c.squeeze(axis)
    filters = recurrent_kernel.shape[-2]
    conv_nd = (F.conv1d, F.conv2d, F.conv3d)[rank - 1]
    elementwise_ra = _elementwise(recurrent_activation)
    weight = torch.cat([kernel, recurrent_kernel.to(kernel.dtype)], rank)  # (*k, in+F, 4F)
    if elementwise_ra:
        # gates reordered (i, f, o, c): one recurrent_activation call over i, f, o
        order = torch.cat([torch.arange(2 * filters), torch.arange(3 * filters, 4 * filters),
                           torch.arange(2 * filters, 3 * filters)]).to(weight.device)
        weight = weight.index_select(rank + 1, order)
        bias = None if bias is None else bias.index_select(0, order)
    weight = weight.permute(rank + 1, rank, *range(rank)).contiguous()  # (4F, in+F, *k)
    # the convolution pads both when they are equal and symmetric ("same", odd kernels);
    # else x once and h at each step
    own = tuple(in_pads) == tuple(pads) and all(left == right for left, right in pads)
    conv_pads = tuple(p[0] for p in pads) if own else 0
    h_pads = None if own else [0, 0] + [p for pair in reversed(pads) for p in pair]

    def last(fn):
        # An activation over an axis (softmax, ...) sees the tensor in the caller's layout.
        if channels_last or _elementwise(fn):
            return fn
        return lambda t: fn(t.movedim(-1, 1)).movedim(1, -1)

    act, rec_act = last(activation), last(recurrent_activation)
    x = x if channels_last else x.movedim(2, -1)  # (batch, time, *spatial, in)
    if not own and any(p for pair in in_pads for p in pair):
        x = F.pad(x, [0, 0] + [p for pair in reversed(in_pads) for p in pair])
    frames = x.unbind(1)
    if go_backwards:
        frames = frames[::-1]
    h, c = h.movedim(1, -1), c.movedim(1, -1)
    batch = x.shape[0]
    out = torch.zeros_like(h) if step_masks is not None else None
    outputs = []
    act_, rec_act_ = _in_place(activation), _in_place(recurrent_activation)
    if step_masks is None and act_ is not None and rec_act_ is not None and \
            not torch.compiler.is_compiling() and not torch.jit.is_tracing() and \
            not (torch.is_grad_enabled() and any(
                t is not None and t.requires_grad
                for t in (x, kernel, recurrent_kernel, bias, h, c))):
        # Inference: the same operations in place on the convolution's output, and each
        # h written straight into the output sequence (the same numbers: no autograd to
        # keep the inputs for).
        output = x.new_empty((batch, len(frames)) + tuple(h.shape[1:])) \
            if return_sequences else None
        for t, frame in enumerate(frames):
            xh = torch.cat([frame, h if own else F.pad(h, h_pads)], -1)
            z = conv_nd(xh.movedim(-1, 1), weight, bias, padding=conv_pads).movedim(1, -1)
            sig, zc = z.split([3 * filters, filters], -1)
            zi, zf, zo = rec_act_(sig).split(filters, -1)
            c = (zf * c).addcmul_(zi, act_(zc))
            # (an activation writing into a strided out= may take another loop, and
            # another rounding: multiply into the sequence instead)
            h = activation(c)
            h = h.mul_(zo) if output is None else torch.mul(h, zo, out=output[:, t])
        if output is None:
            output = h
        else:
            h = h.clone()  # the state, not a view of the returned sequence
    else:
        output = None
    for t, frame in enumerate(frames if output is None else ()):
        xh = torch.cat([frame, h if own else F.pad(h, h_pads)], -1)
        z = conv_nd(xh.movedim(-1, 1), weight, bias, padding=conv_pads).movedim(1, -1)
        if elementwise_ra:
            sig, zc = z.split([3 * filters, filters], -1)
            zi, zf, zo = rec_act(sig).split(filters, -1)
        else:
            zi, zf, zc, zo = z.split(filters, -1)
            zi, zf, zo = rec_act(zi), rec_act(zf), rec_act(zo)
        c_new = torch.addcmul(zf * c, zi, act(zc))
        h_new = zo * act(c_new)
        if step_masks is None:
            h, c = h_new, c_new
            out = h_new
        else:  # the mask in this loop's channels-last layout
            keep = step_masks[t] if channels_last else step_masks[t].movedim(1, -1)
            out = torch.where(keep, h_new, out)
            h, c = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
        if return_sequences:
            outputs.append(out)
    if output is None:
        output = torch.stack(outputs, 1) if return_sequences else out
    if not channels_last:
        output = output.movedim(-1, 2 if return_sequences else 1)
        h, c = h.movedim(-1, 1), c.movedim(-1, 1)
    return output, h, c


def _in_place(fn: Callable) -> Optional[Callable]:
    """The in-place form of an elementwise activation (the same operations, the same
    numbers), or ``None``: for the few the recurrent layers default to."""
    from . import activations
    if fn is activations.hard_sigmoid:
        return lambda t: t.mul_(0.2).add_(0.5).clamp_(0.0, 1.0)
    if fn in (torch.tanh, activations.tanh):
        return torch.tanh_
    if fn in (torch.sigmoid, activations.sigmoid):
        return torch.sigmoid_
    return None


def _elementwise(fn: Callable) -> bool:
    """Whether an activation acts on each element alone (then any layout will do)."""
    if fn in (torch.tanh, torch.sigmoid, torch.relu):
        return True
    from . import activations
    return getattr(fn, "__module__", None) == activations.__name__ and \
        fn.__name__ not in ("softmax", "log_softmax", "glu", "sparsemax")


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
    stride, dilation = _strides_and_dilation(strides, dilation_rate, rank)
    padding, channels_last = _check_geometry(padding, data_format, 2)
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
    channels, spatial = _channels_and_spatial(x, rank, channels_last)
    if channels != in_channels:
        raise ValueError(f"Input has {channels} channels, the kernel expects {in_channels} "
                         f"({_layout_nd(rank, channels_last)}). "
                         f"Received input of shape {tuple(x.shape)}")
    _check_bias(bias, filters)
    problem = _padding.deconv_mismatch(spatial, ksize, stride, dilation, padding, out_pad)
    if problem is not None:
        raise ValueError(f"Input of shape {tuple(x.shape)} cannot be transposed-convolved "
                         f"with kernel_size={tuple(ksize)}, strides={stride}, dilation_rate="
                         f"{dilation}, padding={padding!r}, output_padding={out_pad}: "
                         f"{problem}")
    out = _padding.deconv_output_shape(spatial, ksize, stride, dilation, padding, out_pad)
    pads = _padding.padding_amounts_nd(out, ksize, stride, dilation, padding)
    transpose_fn = _reference.conv_transpose
    if x.is_cpu and _forced_kernel() != "reference" \
            and _kstride.takes(x, kernel, stride, dilation, pads, out, channels_last):
        transpose_fn = _kstride.conv_transpose  # kernel == stride: one GEMM (kstride.py)
    elif rank == 1 and channels_last and x.is_cpu and _forced_kernel() != "reference" \
            and _gemm1d.takes_transpose(x, kernel, stride, dilation):
        transpose_fn = _gemm1d.conv_transpose  # phase GEMMs (kernels/gemm1d.py's rule)
    call = functools.partial(transpose_fn, x, kernel, bias, strides=stride,
                             dilation=dilation, pads=pads, out_spatial=out,
                             channels_last=channels_last)
    if not x.is_cpu:
        return call()
    work = x.numel() * math.prod(ksize) * filters
    kind = f"conv{rank}d-transpose k{tuple(ksize)} s{stride} d{dilation}"
    return _on_cpu_policy(kind, work, call, (x.shape, kernel.shape, stride, dilation, pads,
                                             out))


# -- per-call cost (issue 9) ---------------------------------------------------------------

def _conv_geometry_uncached(spatial: tuple, ksize: tuple, stride: tuple, dilation: tuple,
                            padding: str) -> tuple:
    return (_padding.conv_output_shape(spatial, ksize, stride, dilation, padding),
            _padding.padding_amounts_nd(spatial, ksize, stride, dilation, padding))


_conv_geometry_cached = functools.lru_cache(maxsize=512)(_conv_geometry_uncached)


def _conv_geometry(spatial: tuple, ksize: tuple, stride: tuple, dilation: tuple,
                   padding: str) -> tuple:
    """:func:`conv`'s ``(output spatial shape, pads)``, remembered: a layer calls it with
    the same few shapes every step.  Symbolic sizes (``torch.export`` with dynamic shapes)
    are not hashable and are computed afresh."""
    try:
        return _conv_geometry_cached(spatial, ksize, stride, dilation, padding)
    except TypeError:
        return _conv_geometry_uncached(spatial, ksize, stride, dilation, padding)


# -- recurrent layers (LSTM, GRU, SimpleRNN) ----------------------------------------------

def _check_recurrent(x: torch.Tensor, kernel: torch.Tensor, recurrent_kernel: torch.Tensor,
                     gates: int, what: str):
    """``(batch, steps, units)`` after checking ``x`` ``(batch, time, features)``,
    ``kernel`` ``(features, gates * units)``, ``recurrent_kernel`` ``(units, gates * units)``."""
    if kernel.dim() != 2 or kernel.shape[1] % gates:
        raise ValueError(f"{what}: expected kernel of shape (features, {gates} * units). "
                         f"Received {tuple(kernel.shape)}")
    units = kernel.shape[1] // gates
    if tuple(recurrent_kernel.shape) != (units, gates * units):
        raise ValueError(f"{what}: expected recurrent_kernel of shape ({units}, "
                         f"{gates * units}) for a kernel with {gates * units} = {gates} * "
                         f"units outputs. Received {tuple(recurrent_kernel.shape)}")
    if x.dim() != 3 or x.shape[2] != kernel.shape[0]:
        raise ValueError(f"{what}: input must be 3D, (batch, time, {kernel.shape[0]}). "
                         f"Received input of shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"{what}: input of shape {tuple(x.shape)} has no time steps")
    return x.shape[0], x.shape[1], units


def _recurrent_masks(dropout_mask, recurrent_dropout_mask, gates, batch, features, units):
    for arg, value, shape in (("dropout_mask", dropout_mask, (gates, batch, features)),
                              ("recurrent_dropout_mask", recurrent_dropout_mask,
                               (gates, batch, units))):
        if value is not None and tuple(value.shape) != shape:
            raise ValueError(f"Invalid value for argument `{arg}`. Expected shape {shape} "
                             f"(one mask per gate). Received {tuple(value.shape)}")


def _recurrent_state(initial_state, count: int, batch: int, units: int, x, what: str):
    """``initial_state`` (``count`` tensors of ``(batch, units)``; one may come bare) as a
    tuple, zeros when ``None``."""
    if initial_state is None:
        return tuple(x.new_zeros((batch, units)) for _ in range(count))
    if isinstance(initial_state, torch.Tensor):
        initial_state = [initial_state]
    states = tuple(initial_state)
    if len(states) != count or any(tuple(s.shape) != (batch, units) for s in states):
        raise ValueError(f"{what}: invalid value for argument `initial_state`. Expected "
                         f"{count} tensor(s) of shape {(batch, units)}. Received "
                         f"{[tuple(getattr(s, 'shape', ())) for s in states]}")
    return states


def _input_projection(x, kernel, bias, gates, dropout_mask):
    """``x_t @ kernel + bias`` for every step at once: ``(batch, time, gates * units)``;
    with ``dropout_mask`` ``(gates, batch, features)`` each gate sees its masked input."""
    if dropout_mask is None:
        z = torch.matmul(x, kernel)
    else:
        units = kernel.shape[1] // gates
        xm = x.unsqueeze(0) * dropout_mask.unsqueeze(2)  # (gates, batch, time, features)
        z = torch.einsum("gbtd,dgu->btgu", xm, kernel.view(kernel.shape[0], gates, units))
        z = z.flatten(2)
    return z if bias is None else z + bias


def _recurrent_term(h, recurrent_kernel, gates, rmask):
    """``h @ recurrent_kernel``, each gate's block with its own masked ``h`` when
    ``rmask`` ``(gates, batch, units)`` is given."""
    if rmask is None:
        return torch.matmul(h, recurrent_kernel)
    units = h.shape[-1]
    return torch.einsum("gbu,ugv->bgv", h.unsqueeze(0) * rmask,
                        recurrent_kernel.view(units, gates, units)).flatten(1)


def _timestep_mask(mask, batch: int, steps: int, what: str):
    """``mask`` ``(batch, time)`` as booleans (nonzero: the step counts), or ``None``."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        mask = torch.as_tensor(mask)
    if tuple(mask.shape) != (batch, steps):
        raise ValueError(f"{what}: invalid value for argument `mask`. Expected shape "
                         f"{(batch, steps)} (batch, time). Received {tuple(mask.shape)}")
    return mask.to(torch.bool)


def _run_steps(z, step, state, go_backwards: bool, return_sequences: bool, mask=None,
               zero_output_for_mask: bool = False):
    """Run ``state = step(z_t, state)`` (``state[0]`` is the output) over the steps of
    ``z`` ``(batch, time, ...)``, last to first with ``go_backwards``; the outputs come in
    processing order, as tf-keras' ``backend.rnn``.  With ``mask`` ``(batch, time)``
    booleans, a masked step keeps the states and outputs the previous step's output
    (zeros before the first unmasked step), or zeros with ``zero_output_for_mask``."""
    steps = z.shape[1]
    if isinstance(steps, torch.SymInt) and torch.compiler.is_exporting():
        return _scan_steps(z, step, state, go_backwards, return_sequences, mask,
                           zero_output_for_mask)
    order = range(steps - 1, -1, -1) if go_backwards else range(steps)
    outputs = []
    if mask is not None:
        keeps = mask.to(z.device).unsqueeze(-1).unbind(1)
        out = zeros = torch.zeros_like(state[0])
        for t in order:
            new = step(z[:, t], state)
            keep = keeps[t]
            out = torch.where(keep, new[0], zeros if zero_output_for_mask else out)
            state = tuple(torch.where(keep, n, s) for n, s in zip(new, state))
            outputs.append(out)
        output = torch.stack(outputs, 1) if return_sequences else out
        return output, state
    for t in order:
        state = step(z[:, t], state)
        if return_sequences:
            outputs.append(state[0])
    output = torch.stack(outputs, 1) if return_sequences else state[0]
    return output, state


def _scan_steps(z, step, state, go_backwards: bool, return_sequences: bool, mask=None,
                zero_output_for_mask: bool = False):
    """:func:`_run_steps` as one ``scan`` (torch's higher-order op): what ``torch.export``
    records when the number of steps is dynamic (a Python loop would fix it to the
    example's; the ONNX exporter writes a ``Scan``).  The same step, the same numbers."""
    from torch._higher_order_ops.scan import scan
    # (time, batch, ...): scan runs over the first axis; a copy, not a view (scan's
    # guards on a view's base fail at batch 1, where the transpose is contiguous)
    zs = z.transpose(0, 1).clone(memory_format=torch.contiguous_format)
    if go_backwards:
        zs = zs.flip(0)
    state = tuple(state)
    if mask is None:
        def body(carry, zt):
            new = tuple(step(zt, carry))
            return new, new[0].clone()

        state, ys = scan(body, state, zs)
        return (ys.transpose(0, 1) if return_sequences else state[0]), state
    keeps = mask.to(z.device).unsqueeze(-1).transpose(0, 1).clone(
        memory_format=torch.contiguous_format)
    if go_backwards:
        keeps = keeps.flip(0)

    def masked_body(carry, inputs):
        out, old = carry[0], carry[1:]
        zt, keep = inputs
        new = tuple(step(zt, old))
        out = torch.where(keep, new[0], torch.zeros_like(out) if zero_output_for_mask
                          else out)
        return (out,) + tuple(torch.where(keep, n, s) for n, s in zip(new, old)), out.clone()

    carry, ys = scan(masked_body, (torch.zeros_like(state[0]),) + state, (zs, keeps))
    return (ys.transpose(0, 1) if return_sequences else carry[0]), carry[1:]


# -- torch's fused recurrences for the standard cells ------------------------------------

def _is_act(fn: Callable, name: str) -> bool:
    from . import activations
    return fn is getattr(torch, name) or fn is getattr(activations, name)


def _fused_rnn(kind: str, x: torch.Tensor, hx, weights: list, go_backwards: bool,
               return_sequences: bool, mask: Optional[torch.Tensor] = None,
               zero_output_for_mask: bool = False):
    """torch's fused recurrence (``torch.lstm`` / ``gru`` / ``rnn_tanh`` / ``rnn_relu``:
    ATen's loop, one input projection for all steps) on ``(batch, time, features)``;
    ``weights``:
    ``[w_ih, w_hh, b_ih, b_hh]`` in torch's layout and gate order, or the first two
    (no bias).  ``go_backwards``: the steps last to first, outputs in processing order
    (Keras').  ``mask``: ``(batch, time)`` booleans that are right padding (each row some
    ``True`` then ``False``, at least one ``True``; :func:`_right_padded`): the valid steps
    run as a packed sequence, and the padded ones are Keras' masked steps (states kept;
    output the previous output, or zeros with ``zero_output_for_mask``; zeros before the
    first valid step).  Returns ``(output, *last states)``, each state ``(batch, units)``.

    The same operations in the same order as the step loop of :func:`lstm` / :func:`gru`
    / :func:`simple_rnn` (the input projection ``x @ W + b`` once, then per step ``+ h @
    U`` and the gates), in ATen instead of a Python loop (float32: oneDNN's RNN kernel).
    32 x 100 x 64 -> 128, two threads, ms forward / forward+backward (quiet 2-core AVX-512
    EPYC): LSTM 16.7 / 59.4 -> 4.3 / 13.9, GRU 13.8 / 48.0 -> 6.7 / 29.0, SimpleRNN
    3.0 / 14.2 -> 3.0 / 10.2 (torch.nn's modules: 4.0 / 13.5, 7.1 / 28.4, 2.7 / 10.1;
    tf-keras 2.21: 11.1 / 33.3, 9.8 / 26.8, 3.8 / 9.0).  The loop's numbers up to
    rounding (tests/test_recurrent.py: 1e-12 in float64, 2e-6 in float32)."""
    fn = {"lstm": torch.lstm, "gru": torch.gru, "rnn": torch.rnn_tanh,
          "rnn_relu": torch.rnn_relu}[kind]
    has_biases = len(weights) == 4
    if mask is not None and bool(mask.all()):
        mask = None  # no padding: the unpacked op (oneDNN's kernel; packed runs ATen's)
    if mask is None:
        xs = x.flip(1) if go_backwards else x
        hx = tuple(h.unsqueeze(0) for h in hx)
        result = fn(xs, hx if kind == "lstm" else hx[0], weights, has_biases, 1, 0.0, False,
                    False, True)
        output, states = result[0], [s[0] for s in result[1:]]
        return (output if return_sequences else states[0]), *states
    from torch.nn.utils import rnn as _rnn
    steps = x.shape[1]
    lengths = mask.sum(1)
    ar = torch.arange(steps, device=x.device)
    valid = ar[None, :] < lengths[:, None]  # == mask
    xs = x
    if go_backwards:  # each sequence's valid steps last to first (the padding runs first
        #               in Keras' order, keeping the initial states: no effect)
        rev = torch.where(valid, lengths[:, None] - 1 - ar[None, :], ar[None, :])
        xs = x.gather(1, rev[:, :, None].expand(-1, -1, x.shape[2]))
    if kind == "lstm":
        # The padded steps run too, with their forget gate saturated open (exactly 1) and
        # their input gate shut (exactly 0) by an extra input feature, 1 at padded steps,
        # whose kernel row is +-_SATURATE on those gates: c' = 1 * c + 0 * g = c, so the
        # cell state leaves the padding as it entered it (and its gradient goes back
        # through it unchanged; the saturated gates' derivatives are exactly 0).  The
        # last valid h comes from the outputs.  One unpacked call: oneDNN's kernel in
        # float32 (a packed sequence runs ATen's per-step loop, 4x slower here).
        units = weights[1].shape[1]
        flag = (~valid).to(x.dtype)[:, :, None]
        # the padding's values never reach the gates (a NaN or inf there would, times 0)
        xs = torch.where(valid[:, :, None], xs, torch.zeros((), dtype=x.dtype,
                                                            device=x.device))
        row = x.new_zeros(4 * units, 1)
        row[:units] = -_SATURATE
        row[units:2 * units] = _SATURATE
        aug = [torch.cat([weights[0], row], 1)] + list(weights[1:])
        result = fn(torch.cat([xs, flag], -1), tuple(h.unsqueeze(0) for h in hx), aug,
                    has_biases, 1, 0.0, False, False, True)
        seq = result[0]
        last = seq.gather(1, (lengths - 1)[:, None, None].expand(-1, 1, units))[:, 0]
        states = [last, result[2][0]]
        if not go_backwards:
            seq = torch.where(valid[:, :, None], seq,
                              torch.zeros((), dtype=seq.dtype, device=seq.device)
                              if zero_output_for_mask else last[:, None, :])
    else:
        packed = _rnn.pack_padded_sequence(xs, lengths.cpu(), batch_first=True,
                                           enforce_sorted=False)
        hx = tuple(h.index_select(0, packed.sorted_indices).unsqueeze(0) for h in hx)
        result = fn(packed.data, packed.batch_sizes, hx[0], weights, has_biases, 1, 0.0,
                    False, False)
        states = [s[0].index_select(0, packed.unsorted_indices) for s in result[1:]]
        seq, _ = _rnn.pad_packed_sequence(
            _rnn.PackedSequence(result[0], packed.batch_sizes, packed.sorted_indices,
                                packed.unsorted_indices), batch_first=True,
            total_length=steps)
        if not go_backwards and not zero_output_for_mask:  # repeat the last valid output
            seq = torch.where(valid[:, :, None], seq, states[0][:, None, :])
    if go_backwards:  # the valid outputs come last in processing order, zeros before
        first = steps - lengths
        idx = (ar[None, :] - first[:, None]).clamp_min(0)
        seq = seq.gather(1, idx[:, :, None].expand(-1, -1, seq.shape[2]))
        seq = torch.where((ar[None, :] >= first[:, None])[:, :, None], seq,
                          torch.zeros((), dtype=seq.dtype, device=seq.device))
    return (seq if return_sequences else seq[:, -1]), *states


# The pre-activation that saturates a gate exactly (sigmoid(+-1e6) is 1.0 / 0.0 in float32
# and float64, its derivative 0.0): the masked LSTM's padded steps (see _fused_rnn).
_SATURATE = 1e6


def _right_padded(mask: Optional[torch.Tensor]) -> bool:
    """``mask`` ``(batch, time)`` is right padding with at least one valid step a row (what
    :func:`_fused_rnn` packs); holes, left padding and empty rows take the step loop."""
    if mask is None:
        return True
    lengths = mask.sum(1)
    ar = torch.arange(mask.shape[1], device=mask.device)
    return bool((lengths > 0).all()) and torch.equal(mask, ar[None, :] < lengths[:, None])


def _fused_ok(x: torch.Tensor, masks) -> bool:
    """torch's fused recurrence computes the step loop's numbers: no dropout masks,
    float32 / float64, on CPU (CUDA's is cuDNN's, whose float32 products may run in TF32
    by default: not measured here), eager (``torch.compile`` fails on its oneDNN op,
    ``torch.func.vmap`` has no batching rule for it, exporters want the loop's ops)."""
    return all(m is None for m in masks) and x.dtype in (torch.float32, torch.float64) \
        and x.is_cpu and not _graphs.standard_ops_wanted()


def _gates(t: torch.Tensor, order, units: int, dim: int) -> torch.Tensor:
    parts = t.split(units, dim=dim)
    return torch.cat([parts[i] for i in order], dim=dim)


def lstm(x: torch.Tensor, kernel: torch.Tensor, recurrent_kernel: torch.Tensor,
         bias: Optional[torch.Tensor] = None, activation: Callable = torch.tanh,
         recurrent_activation: Callable = torch.sigmoid,
         initial_state: Optional[Sequence[torch.Tensor]] = None, go_backwards: bool = False,
         return_sequences: bool = False, dropout_mask: Optional[torch.Tensor] = None,
         recurrent_dropout_mask: Optional[torch.Tensor] = None,
         mask: Optional[torch.Tensor] = None, zero_output_for_mask: bool = False):
    """Keras' LSTM recurrence (tf-keras 2.21 ``LSTMCell``), gates in Keras' order i, f, c, o.

    Per step: ``z = x_t @ kernel + bias + h @ recurrent_kernel``, ``i, f, g, o =
    split(z, 4)``, ``c = ra(f) * c + ra(i) * a(g)``, ``h = ra(o) * a(c)`` with
    ``a = activation``, ``ra = recurrent_activation``.  The input projection of all steps
    is one matrix product.

    Args:
        x: ``(batch, time, features)``.
        kernel: ``(features, 4 * units)``; recurrent_kernel: ``(units, 4 * units)``;
            bias: ``(4 * units,)`` or ``None``.
        initial_state: ``[h, c]``, each ``(batch, units)``; zeros when ``None``.
        go_backwards: process the steps last to first; outputs come in processing order.
        return_sequences: return every step's ``h`` ``(batch, time, units)``, else the last.
        dropout_mask / recurrent_dropout_mask: ``(4, batch, features)`` / ``(4, batch,
            units)``, one mask per gate on the input / on ``h`` at every step (tf-keras'
            ``implementation=1``).  tf-keras' other dropout forms multiply ``x`` before the
            call.
        mask: ``(batch, time)`` booleans, Keras' timestep mask (``False``: padding): a
            masked step keeps ``h`` and ``c`` and outputs the previous step's output (zeros
            before the first unmasked step), as tf-keras' ``backend.rnn``.
        zero_output_for_mask: output zeros at masked steps instead (tf-keras'
            ``Bidirectional`` sets it on its layers when they return sequences).

    Returns:
        ``(output, h, c)``.
    """
    batch, _, units = _check_recurrent(x, kernel, recurrent_kernel, 4, "lstm")
    _recurrent_masks(dropout_mask, recurrent_dropout_mask, 4, batch, x.shape[2], units)
    state = _recurrent_state(initial_state, 2, batch, units, x, "lstm")
    mask = _timestep_mask(mask, batch, x.shape[1], "lstm")
    if _fused_ok(x, (dropout_mask, recurrent_dropout_mask)) and _right_padded(mask) \
            and _is_act(activation, "tanh") and _is_act(recurrent_activation, "sigmoid"):
        # Keras' gate order i, f, c, o is torch's i, f, g, o
        weights = [kernel.t(), recurrent_kernel.t()]
        if bias is not None:
            weights += [bias, torch.zeros_like(bias)]
        return _fused_rnn("lstm", x, state, weights, go_backwards, return_sequences,
                          mask, zero_output_for_mask)
    z = _input_projection(x, kernel, bias, 4, dropout_mask)

    def step(zx, state):
        return lstm_step(zx, state, recurrent_kernel, activation, recurrent_activation,
                         recurrent_dropout_mask)

    output, (h, c) = _run_steps(z, step, state, go_backwards, return_sequences, mask,
                                zero_output_for_mask)
    return output, h, c


def gru(x: torch.Tensor, kernel: torch.Tensor, recurrent_kernel: torch.Tensor,
        bias: Optional[torch.Tensor] = None, activation: Callable = torch.tanh,
        recurrent_activation: Callable = torch.sigmoid, reset_after: bool = True,
        initial_state: Optional[torch.Tensor] = None, go_backwards: bool = False,
        return_sequences: bool = False, dropout_mask: Optional[torch.Tensor] = None,
        recurrent_dropout_mask: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None, zero_output_for_mask: bool = False):
    """Keras' GRU recurrence (tf-keras 2.21 ``GRUCell``), gates in Keras' order z, r, h.

    ``x_z, x_r, x_h = split(x_t @ kernel + b_in, 3)``; with ``reset_after`` (TF2's default,
    bias ``(2, 3 * units)``: input row, recurrent row) ``r_z, r_r, r_h = split(h @
    recurrent_kernel + b_rec, 3)`` and ``hh = a(x_h + ra(x_r + r_r) * r_h)``; without
    (bias ``(3 * units,)``) ``hh = a(x_h + (ra(x_r + r_r) * h) @ recurrent_kernel_h)``.
    Then ``z = ra(x_z + r_z)`` and ``h = z * h + (1 - z) * hh``.

    Args as :func:`lstm` (3 gates; ``initial_state`` is ``h`` ``(batch, units)`` or
    ``[h]``).  Returns ``(output, h)``.
    """
    batch, _, units = _check_recurrent(x, kernel, recurrent_kernel, 3, "gru")
    _recurrent_masks(dropout_mask, recurrent_dropout_mask, 3, batch, x.shape[2], units)
    input_bias = recurrent_bias = None
    if bias is not None:
        expected = (2, 3 * units) if reset_after else (3 * units,)
        if tuple(bias.shape) != expected:
            raise ValueError(f"gru: expected bias of shape {expected} with "
                             f"reset_after={reset_after}. Received {tuple(bias.shape)}")
        input_bias, recurrent_bias = (bias[0], bias[1]) if reset_after else (bias, None)
    h0 = _recurrent_state(initial_state, 1, batch, units, x, "gru")
    mask = _timestep_mask(mask, batch, x.shape[1], "gru")
    if reset_after and _fused_ok(x, (dropout_mask, recurrent_dropout_mask)) \
            and _right_padded(mask) \
            and _is_act(activation, "tanh") and _is_act(recurrent_activation, "sigmoid"):
        # Keras' gates z, r, h -> torch's r, z, n (torch's GRU is reset_after's)
        order = (1, 0, 2)
        weights = [_gates(kernel, order, units, 1).t(),
                   _gates(recurrent_kernel, order, units, 1).t()]
        if bias is not None:
            weights += [_gates(input_bias, order, units, 0),
                        _gates(recurrent_bias, order, units, 0)]
        return _fused_rnn("gru", x, h0, weights, go_backwards, return_sequences,
                          mask, zero_output_for_mask)
    z = _input_projection(x, kernel, input_bias, 3, dropout_mask)

    def step(zx, state):
        return gru_step(zx, state, recurrent_kernel, recurrent_bias, activation,
                        recurrent_activation, reset_after, recurrent_dropout_mask)

    output, (h,) = _run_steps(z, step, h0, go_backwards, return_sequences, mask,
                              zero_output_for_mask)
    return output, h


def simple_rnn(x: torch.Tensor, kernel: torch.Tensor, recurrent_kernel: torch.Tensor,
               bias: Optional[torch.Tensor] = None, activation: Callable = torch.tanh,
               initial_state: Optional[torch.Tensor] = None, go_backwards: bool = False,
               return_sequences: bool = False, dropout_mask: Optional[torch.Tensor] = None,
               recurrent_dropout_mask: Optional[torch.Tensor] = None,
               mask: Optional[torch.Tensor] = None, zero_output_for_mask: bool = False):
    """Keras' SimpleRNN recurrence: ``h = a(x_t @ kernel + bias + h @ recurrent_kernel)``.

    Args as :func:`lstm` (one gate: masks ``(1, batch, features)`` / ``(1, batch,
    units)``; ``initial_state`` is ``h`` or ``[h]``).  Returns ``(output, h)``.
    """
    batch, _, units = _check_recurrent(x, kernel, recurrent_kernel, 1, "simple_rnn")
    _recurrent_masks(dropout_mask, recurrent_dropout_mask, 1, batch, x.shape[2], units)
    h0 = _recurrent_state(initial_state, 1, batch, units, x, "simple_rnn")
    mask = _timestep_mask(mask, batch, x.shape[1], "simple_rnn")
    relu = _is_act(activation, "relu")
    if _fused_ok(x, (dropout_mask, recurrent_dropout_mask)) and _right_padded(mask) \
            and (_is_act(activation, "tanh") or relu):
        weights = [kernel.t(), recurrent_kernel.t()]
        if bias is not None:
            weights += [bias, torch.zeros_like(bias)]
        return _fused_rnn("rnn_relu" if relu else "rnn", x, h0, weights, go_backwards,
                          return_sequences, mask, zero_output_for_mask)
    z = _input_projection(x, kernel, bias, 1, dropout_mask)

    def step(zx, state):
        return simple_rnn_step(zx, state, recurrent_kernel, activation,
                               recurrent_dropout_mask)

    output, (h,) = _run_steps(z, step, h0, go_backwards, return_sequences, mask,
                              zero_output_for_mask)
    return output, h


# -- audio front ends (Keras 3's STFTSpectrogram and MelSpectrogram) ------------------------

#: Window names computed here (SciPy's formulas, ``scipy.signal.get_window``'s names);
#: another SciPy window name works where SciPy is installed.
_COSINE_WINDOWS = {"hann": (0.5, 0.5), "hamming": (0.54, 0.46),
                   "blackman": (0.42, 0.50, 0.08)}
_WINDOW_NAMES = tuple(_COSINE_WINDOWS) + ("boxcar", "bartlett")
#: Keras' ``backend.epsilon()``, the floor of STFTSpectrogram's magnitude and log.
KERAS_EPSILON = 1e-7


def window(name: str, length: int, periodic: bool = False) -> "np.ndarray":
    """``scipy.signal.get_window(name, length, fftbins=periodic)`` in float64 (Keras'
    ``STFTSpectrogram`` window): ``"hann"``, ``"hamming"``, ``"blackman"``, ``"boxcar"``,
    ``"bartlett"`` here, any other SciPy window name through SciPy where installed.
    ``periodic`` drops the last point of a ``length + 1`` symmetric window."""
    import numpy as np
    key = name  # case-sensitive, as SciPy's names (and so Keras')
    if key not in _WINDOW_NAMES:
        try:
            from scipy.signal import get_window
        except ImportError:
            raise ValueError(f"Invalid value for argument `window`. Expected one of "
                             f"{_WINDOW_NAMES}, an array or None (other SciPy window names "
                             f"need SciPy). Received window={name!r}") from None
        try:
            return np.asarray(get_window(name, length, bool(periodic)), dtype=np.float64)
        except ValueError as err:
            raise ValueError(f"Invalid value for argument `window`: {err}. "
                             f"Received window={name!r}") from None
    if length == 1:
        return np.ones(1)
    m = length + 1 if periodic else length
    if key in _COSINE_WINDOWS:
        fac = np.linspace(-np.pi, np.pi, m)
        w = np.zeros(m)
        for k, a in enumerate(_COSINE_WINDOWS[key]):
            w += a * np.cos(k * fac)
    elif key == "boxcar":
        w = np.ones(m)
    else:  # bartlett
        n = np.arange(m)
        w = np.where(n <= (m - 1) / 2.0, 2.0 * n / (m - 1), 2.0 - 2.0 * n / (m - 1))
    return w[:length]


def stft_kernel(side: str, frame_length: int, freq_bins: int, window_: object = "hann",
                scaling: Optional[str] = "density", periodic: bool = False,
                dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Keras 3's ``initializers.STFT``: the ``(frame_length, 1, freq_bins)`` DFT kernel of
    ``side`` ``"real"`` (cosines) or ``"imag"`` (minus sines), windowed and scaled.

    Bin ``k`` at time ``t`` is ``cos(-2 pi t k / n)`` (``sin`` for ``"imag"``) with
    ``n = 2 * (freq_bins - 1)`` (Keras' rule: an odd ``fft_length`` uses ``fft_length -
    1`` here), computed in ``dtype`` in Keras' order of operations.  ``window_``: a SciPy
    window name, a ``(frame_length,)`` array, or ``None`` (no window, no scaling);
    ``scaling`` ``"density"`` divides by the window's L2 norm, ``"spectrum"`` by its L1
    norm."""
    if window_ is not None:
        if isinstance(window_, str):
            win = window(window_, frame_length, periodic)
        else:
            win = window_.detach().cpu() if isinstance(window_, torch.Tensor) else window_
        win = torch.as_tensor(win, dtype=dtype, device=device)
        if win.dim() != 1 or win.shape[0] != frame_length:
            raise ValueError(f"Invalid value for argument `window`. Expected a window of "
                             f"shape ({frame_length},) (frame_length). Received a window "
                             f"of shape {tuple(win.shape)}")
        win = win.reshape(frame_length, 1, 1)
    n = (freq_bins - 1) * 2
    freq = torch.arange(freq_bins, dtype=dtype, device=device).reshape(1, 1, -1) / n
    time = torch.arange(frame_length, dtype=dtype, device=device).reshape(-1, 1, 1)
    pi = torch.arccos(torch.tensor(-1.0, dtype=dtype, device=device))
    args = (-2 * time) * freq * pi
    kernel = torch.cos(args) if side == "real" else torch.sin(args)
    if window_ is not None:
        if scaling == "density":
            kernel = kernel * win / torch.sqrt(torch.sum(torch.square(win)))
        elif scaling == "spectrum":
            kernel = kernel * win / torch.sum(torch.abs(win))
        else:
            kernel = kernel * win
    return kernel


_STFT_MODES = ("log", "magnitude", "psd", "real", "imag", "angle", "stft")


def stft_spectrogram(x: torch.Tensor, real_kernel: Optional[torch.Tensor],
                     imag_kernel: Optional[torch.Tensor], mode: str = "log",
                     frame_step: int = 128, padding: str = "valid", expand_dims: bool = False,
                     data_format: str = "channels_last") -> torch.Tensor:
    """Keras 3's ``STFTSpectrogram``: every channel framed by a strided convolution with
    the DFT kernels ``(frame_length, 1, freq)`` (:func:`stft_kernel`), then ``mode``.

    Args:
        x: ``(batch, steps, channels)`` (``"channels_last"``) or ``(batch, channels,
            steps)``.
        real_kernel, imag_kernel: the kernels; ``mode="real"`` needs only the first,
            ``"imag"`` only the second.
        mode: ``"real"``, ``"imag"``, ``"angle"`` (``atan2(imag, real)``), ``"stft"`` (real
            bins then imaginary ones), ``"psd"`` (power, the bins between the first and the
            last doubled), ``"magnitude"`` (``sqrt(max(power, 1e-7))``), ``"log"`` (its log,
            floored at 1e-7).
        frame_step: the hop; padding ``"valid"`` or ``"same"`` (TensorFlow's arithmetic).

    Returns:
        ``(batch, frames, channels * freq)`` (channel-major), or with ``expand_dims``
        ``(batch, frames, freq, channels)``; channels first: ``(batch, channels * freq,
        frames)`` or ``(batch, channels, frames, freq)``.  ``freq`` is doubled for
        ``"stft"``.
    """
    if mode not in _STFT_MODES:
        raise ValueError(f"Invalid value for argument `mode`. Expected one of {_STFT_MODES}. "
                         f"Received mode={mode!r}")
    channels_last = data_format == "channels_last"
    if x.dim() != 3:
        raise ValueError(f"Expected input of rank 3, "
                         f"{'(batch, steps, channels)' if channels_last else '(batch, channels, steps)'}"
                         f". Received input of shape {tuple(x.shape)}")
    batch = x.shape[0]
    channels = x.shape[2] if channels_last else x.shape[1]
    signal = (x.transpose(1, 2) if channels_last else x).reshape(-1, 1, x.shape[1 if
                                                                            channels_last else 2])
    needed = [k for k, used in ((real_kernel, mode != "imag"), (imag_kernel, mode != "real"))
              if used]
    if any(k is None for k in needed):
        raise ValueError(f"mode={mode!r} needs the "
                         f"{'real' if real_kernel is None else 'imaginary'} kernel")
    kernel = needed[0] if len(needed) == 1 else torch.cat(needed, dim=-1)
    freq = needed[0].shape[-1]
    frame_length = kernel.shape[0]
    left, right = _padding.padding_amounts(signal.shape[-1], frame_length, frame_step, 1,
                                           padding)
    if signal.shape[-1] + left + right < frame_length:
        raise ValueError(f"Input of shape {tuple(x.shape)} is shorter than frame_length="
                         f"{frame_length} (padding={padding!r}): no frame")
    # one convolution of one input channel with the 1 or 2 * freq DFT filters, as Keras 3
    # computes it (its torch backend: torch's conv1d, symmetric pads inside it); Keras'
    # kernel layout (frame_length, 1, filters) -> torch's (filters, 1, frame_length)
    weight = kernel.to(x.dtype).permute(2, 1, 0)
    if left == right:
        frames = torch.nn.functional.conv1d(signal, weight, stride=frame_step, padding=left)
    else:
        frames = torch.nn.functional.conv1d(torch.nn.functional.pad(signal, (left, right)),
                                            weight, stride=frame_step)
    # (batch * channels, freq [* 2], frames)
    frames = frames.reshape(batch, channels, -1, frames.shape[-1])
    if mode in ("real", "imag", "stft"):
        out = frames
    else:
        real, imag = frames[:, :, :freq], frames[:, :, freq:]
        if mode == "angle":
            out = torch.atan2(imag, real)
        else:
            power = real * real + imag * imag
            if mode == "psd":
                out = power.clone()
                out[:, :, 1:-1] = out[:, :, 1:-1] + power[:, :, 1:-1]
            else:
                out = torch.sqrt(torch.clamp_min(power, KERAS_EPSILON))
                if mode == "log":
                    out = torch.log(torch.clamp_min(out, KERAS_EPSILON))
    # out: (batch, channels, freq, frames)
    if expand_dims:
        return out.permute(0, 3, 2, 1) if channels_last else out.transpose(2, 3)
    out = out.reshape(batch, -1, out.shape[-1])
    return out.transpose(1, 2) if channels_last else out


def hertz_to_mel(frequencies: torch.Tensor) -> torch.Tensor:
    """HTK's mel scale (Keras'): ``1127 * log(1 + f / 700)``."""
    return 1127.0 * torch.log(1.0 + frequencies / 700.0)


def mel_weight_matrix(num_mel_bins: int = 20, num_spectrogram_bins: int = 129,
                      sampling_rate: float = 8000, lower_edge_hertz: float = 125.0,
                      upper_edge_hertz: float = 3800.0,
                      dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Keras 3's ``linear_to_mel_weight_matrix`` (TensorFlow's): the
    ``(num_spectrogram_bins, num_mel_bins)`` matrix of triangular HTK mel filters of peak
    1 between ``lower_edge_hertz`` and ``upper_edge_hertz``, for bins linearly spaced over
    ``[0, sampling_rate / 2]``; the DC bin gets no weight.  Computed in ``dtype`` in Keras'
    order of operations (Keras' ``MelSpectrogram`` uses float32 whatever its dtype)."""
    def tensor(v):
        return torch.as_tensor(v, dtype=dtype, device=device)

    def linspace(start, stop, num):  # Keras' torch linspace for tensor endpoints
        steps = torch.arange(num, dtype=dtype, device=device) / (num - 1)
        return start[None] + steps * (stop - start)[None]

    nyquist = tensor(sampling_rate) / 2.0
    linear = linspace(tensor(0.0), nyquist, num_spectrogram_bins)[1:]
    bins_mel = hertz_to_mel(linear)[:, None]
    edges = linspace(hertz_to_mel(tensor(lower_edge_hertz)),
                     hertz_to_mel(tensor(upper_edge_hertz)), num_mel_bins + 2)
    lower, center, upper = edges[:-2][None], edges[1:-1][None], edges[2:][None]
    lower_slopes = (bins_mel - lower) / (center - lower)
    upper_slopes = (upper - bins_mel) / (upper - center)
    weights = torch.maximum(tensor(0.0), torch.minimum(lower_slopes, upper_slopes))
    return torch.nn.functional.pad(weights, (0, 0, 1, 0))


@functools.lru_cache(maxsize=32)
def _mel_matrix_cached(num_mel_bins: int, bins: int, sampling_rate: float, low: float,
                       high: float, device: torch.device) -> torch.Tensor:
    """:func:`mel_weight_matrix` in float32 (what Keras' layer uses), made once per
    setting and device (Keras remakes it at every call); read-only."""
    return mel_weight_matrix(num_mel_bins, bins, sampling_rate, low, high,
                             dtype=torch.float32, device=device)


def mel_spectrogram(x: torch.Tensor, fft_length: int = 2048, sequence_stride: int = 512,
                    sequence_length: Optional[int] = None, window_: object = "hann",
                    sampling_rate: float = 16000, num_mel_bins: int = 128,
                    min_freq: float = 20.0, max_freq: Optional[float] = None,
                    power_to_db: bool = True, top_db: Optional[float] = 80.0,
                    mag_exp: float = 2.0, min_power: float = 1e-10,
                    ref_power: float = 1.0) -> torch.Tensor:
    """Keras 3's ``MelSpectrogram``: ``|stft|^mag_exp`` (``torch.stft``, centred with
    reflected edges, periodic ``"hann"`` / ``"hamming"`` window of ``sequence_length``
    centred in ``fft_length``, an array, or ``None`` for none) through
    :func:`mel_weight_matrix` (float32, as Keras), then, with ``power_to_db``,
    ``10 log10(max(S, min_power) / max(|ref_power|, min_power))`` floored at the largest
    value **of the whole batch** minus ``top_db`` (Keras' rule; ``top_db=None``: no floor).

    Args:
        x: ``(..., samples)``, float32 or float64 (computed in float32 otherwise).

    Returns:
        ``(..., num_mel_bins, 1 + samples // sequence_stride)`` for even ``fft_length``.
    """
    sequence_length = sequence_length or fft_length
    max_freq = max_freq or int(sampling_rate / 2)
    if x.shape[-1] <= fft_length // 2:
        raise ValueError(f"Input of {x.shape[-1]} samples is too short for fft_length="
                         f"{fft_length}: the centred STFT reflects fft_length // 2 = "
                         f"{fft_length // 2} samples at each end and needs more samples "
                         f"than that. Received input of shape {tuple(x.shape)}")
    if window_ is None:
        win = torch.ones(sequence_length, dtype=x.dtype, device=x.device)
    elif isinstance(window_, str):
        make = torch.hann_window if window_ == "hann" else torch.hamming_window
        win = make(sequence_length, periodic=True, dtype=x.dtype, device=x.device)
    else:
        win = torch.as_tensor(window_, dtype=x.dtype, device=x.device)
    *batch_shape, samples = x.shape
    flat = x.reshape(-1, samples) if x.dim() > 2 else x
    spec = torch.stft(flat, n_fft=fft_length, hop_length=sequence_stride,
                      win_length=sequence_length, window=win, center=True,
                      return_complex=True)
    if x.dim() > 2:
        spec = spec.reshape(*batch_shape, *spec.shape[-2:])
    spec = spec.transpose(-2, -1)  # (..., frames, bins)
    real, imag = spec.real, spec.imag
    power = torch.pow(torch.sqrt(real * real + imag * imag), mag_exp)
    matrix = _mel_matrix_cached(num_mel_bins, power.shape[-1], float(sampling_rate),
                                float(min_freq), float(max_freq), x.device)
    out = torch.tensordot(power, matrix.to(power.dtype), dims=1)
    if power_to_db:
        out = 10.0 * torch.log10(torch.clamp_min(out, min_power))
        # Keras makes ``ref_power`` a float32 tensor whatever the signal's dtype
        ref = torch.abs(torch.as_tensor(ref_power, dtype=torch.float32, device=out.device))
        out = out - 10.0 * torch.log10(torch.clamp_min(ref, min_power))
        if top_db is not None:
            out = torch.maximum(out, torch.max(out) - top_db)
    return out.transpose(-1, -2)
# -- one step of Keras' recurrent cells: the layers' recurrences and the cells share these --

def lstm_step(zx: torch.Tensor, state: Sequence[torch.Tensor], recurrent_kernel: torch.Tensor,
              activation: Callable = torch.tanh, recurrent_activation: Callable = torch.sigmoid,
              recurrent_dropout_mask: Optional[torch.Tensor] = None):
    """One step of Keras' LSTM (tf-keras' ``LSTMCell``) from the step's input projection
    ``zx = x_t @ kernel + bias`` ``(batch, 4 * units)`` and ``state`` ``(h, c)``:
    returns ``(h, c)``.  ``recurrent_dropout_mask`` ``(4, batch, units)``: each gate's mask
    on ``h``.  :func:`lstm` runs it at every step (off its fused path)."""
    h, c = state
    activation, recurrent_activation = _step_fn(activation), _step_fn(recurrent_activation)
    zt = zx + _recurrent_term(h, recurrent_kernel, 4, recurrent_dropout_mask)
    i, f, g, o = zt.chunk(4, dim=1)
    c = recurrent_activation(f) * c + recurrent_activation(i) * activation(g)
    return recurrent_activation(o) * activation(c), c


def gru_step(zx: torch.Tensor, state: Sequence[torch.Tensor], recurrent_kernel: torch.Tensor,
             recurrent_bias: Optional[torch.Tensor] = None, activation: Callable = torch.tanh,
             recurrent_activation: Callable = torch.sigmoid, reset_after: bool = True,
             recurrent_dropout_mask: Optional[torch.Tensor] = None):
    """One step of Keras' GRU (tf-keras' ``GRUCell``) from ``zx = x_t @ kernel + b_in``
    ``(batch, 3 * units)`` and ``state`` ``(h,)``; ``recurrent_bias`` is the bias' second
    row with ``reset_after`` (else None).  Returns ``(h,)``.  See :func:`gru`."""
    (h,) = state
    activation, recurrent_activation = _step_fn(activation), _step_fn(recurrent_activation)
    units = h.shape[-1]
    rmask = recurrent_dropout_mask
    x_z, x_r, x_h = zx.split(units, dim=1)
    if reset_after:
        inner = _recurrent_term(h, recurrent_kernel, 3, rmask)
        if recurrent_bias is not None:
            inner = inner + recurrent_bias
        r_z, r_r, r_h = inner.split(units, dim=1)
        zg = recurrent_activation(x_z + r_z)
        r = recurrent_activation(x_r + r_r)
        hh = activation(x_h + r * r_h)
    else:
        rk_zr, rk_h = recurrent_kernel[:, :2 * units], recurrent_kernel[:, 2 * units:]
        inner = _recurrent_term(h, rk_zr, 2, None if rmask is None else rmask[:2])
        r_z, r_r = inner.split(units, dim=1)
        zg = recurrent_activation(x_z + r_z)
        r = recurrent_activation(x_r + r_r)
        hm = h if rmask is None else h * rmask[2]
        hh = activation(x_h + torch.matmul(r * hm, rk_h))
    return (zg * h + (1 - zg) * hh,)


def simple_rnn_step(zx: torch.Tensor, state: Sequence[torch.Tensor],
                    recurrent_kernel: torch.Tensor, activation: Callable = torch.tanh,
                    recurrent_dropout_mask: Optional[torch.Tensor] = None):
    """One step of Keras' SimpleRNN (``SimpleRNNCell``): ``(a(zx + h @ recurrent_kernel),)``
    from ``zx = x_t @ kernel + bias`` and ``state`` ``(h,)``.  See :func:`simple_rnn`."""
    (h,) = state
    activation = _step_fn(activation)
    return (activation(zx + _recurrent_term(h, recurrent_kernel, 1, recurrent_dropout_mask)),)


def recurrent_input_projection(x: torch.Tensor, kernel: torch.Tensor,
                               bias: Optional[torch.Tensor], gates: int,
                               dropout_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x @ kernel + bias`` of one step ``x`` ``(batch, features)`` (or of every step,
    ``(batch, time, features)``), each gate's input masked by ``dropout_mask``
    ``(gates, batch, features)``: the input half of :func:`lstm_step` / :func:`gru_step` /
    :func:`simple_rnn_step`, as the whole-sequence functions compute it."""
    if x.dim() == 2:
        return _input_projection(x.unsqueeze(1), kernel, bias, gates, dropout_mask)[:, 0]
    return _input_projection(x, kernel, bias, gates, dropout_mask)
def rms_normalization(x: torch.Tensor, axes: Sequence[int], scale: Optional[torch.Tensor] = None,
                      epsilon: float = 1e-6) -> torch.Tensor:
    """Keras 3's ``ops.rms_normalization``: ``x * rsqrt(mean(x ** 2 over axes) + epsilon)
    * scale``.  ``x`` any shape; ``axes`` distinct axes of ``x``; ``scale`` ``None`` or of
    the sizes of ``x`` on the sorted ``axes`` (Keras' weight shape), broadcast on those
    axes.  16-bit inputs compute in float32 and return their dtype, as Keras 3 does.
    Trailing axes run ``torch.nn.functional.rms_norm`` (what Keras 3's torch backend
    calls); others the formula (Keras 3's torch backend refuses those)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"rms_normalization expects a floating tensor. Received "
                        f"{type(x).__name__ if not isinstance(x, torch.Tensor) else x.dtype}")
    rank = x.dim()
    norm = sorted(int(a) % rank for a in axes if rank and -rank <= int(a) < rank)
    if len(norm) != len(tuple(axes)) or len(set(norm)) != len(norm) or not norm:
        raise ValueError(f"Invalid value for argument `axis`. Expected distinct axes of an "
                         f"input of rank {rank}. Received axis={list(axes)}")
    sizes = tuple(x.shape[a] for a in norm)
    if scale is not None and tuple(scale.shape) != sizes:
        raise ValueError(f"`scale` must have the input's sizes {sizes} on axes {norm}. "
                         f"Received scale of shape {tuple(scale.shape)}")
    dtype = x.dtype
    xc = x.float() if dtype in (torch.float16, torch.bfloat16) else x
    if scale is not None:
        scale = scale.to(xc.dtype)
    if norm == list(range(rank - len(norm), rank)):
        y = torch.nn.functional.rms_norm(xc, sizes, scale, epsilon)
    else:
        y = xc * torch.rsqrt(torch.mean(torch.square(xc), dim=norm, keepdim=True) + epsilon)
        if scale is not None:
            y = y * scale.reshape([x.shape[a] if a in norm else 1 for a in range(rank)])
    return y.to(dtype)


def adaptive_pool(x: torch.Tensor, output_size: Sequence[int], op: str = "average",
                  data_format: str = "channels_last") -> torch.Tensor:
    """Keras 3's ``ops.adaptive_average_pool`` / ``adaptive_max_pool``: ``x`` ``(batch,
    *spatial, channels)`` (channels_first: ``(batch, channels, *spatial)``) with
    ``len(output_size)`` spatial axes (1 to 3) pooled to ``output_size``: output ``i`` of
    an axis of length ``L`` pools the inputs ``floor(i * L / n) .. ceil((i + 1) * L / n)
    - 1`` (``n = output_size``; the windows overlap where ``n`` does not divide ``L``, and
    repeat inputs where ``n > L``).  These are torch's adaptive pooling bins, which Keras
    3's torch backend calls and its other backends compute too."""
    rank = len(tuple(output_size))
    if rank not in (1, 2, 3):
        raise ValueError(f"Invalid value for argument `output_size`. Expected 1 to 3 sizes. "
                         f"Received output_size={tuple(output_size)}")
    size = _ints(output_size, rank, "output_size")
    if op not in ("average", "max"):
        raise ValueError(f"Invalid value for argument `op`. Expected 'average' or 'max'. "
                         f"Received op={op!r}")
    _, channels_last = _check_geometry("valid", data_format, rank)
    _channels_and_spatial(x, rank, channels_last)  # the rank check
    if min(x.shape[1:]) == 0:
        raise ValueError(f"Adaptive pooling needs a non-empty input. Received input of "
                         f"shape {tuple(x.shape)}")
    if channels_last:
        x = x.movedim(-1, 1)
    fn = {("average", 1): torch.nn.functional.adaptive_avg_pool1d,
          ("average", 2): torch.nn.functional.adaptive_avg_pool2d,
          ("average", 3): torch.nn.functional.adaptive_avg_pool3d,
          ("max", 1): torch.nn.functional.adaptive_max_pool1d,
          ("max", 2): torch.nn.functional.adaptive_max_pool2d,
          ("max", 3): torch.nn.functional.adaptive_max_pool3d}[op, rank]
    y = fn(x, size)
    return y.movedim(1, -1) if channels_last else y


# -- locally connected (unshared) convolutions: tf-keras 2.21's LocallyConnected1D/2D -----

import numpy as np  # noqa: E402  (the connectivity masks are built once, at build)

def locally_connected_output_shape(spatial: Sequence[int], kernel_size: Sequence[int],
                                   strides: Sequence[int], padding: str) -> Tuple[int, ...]:
    """tf-keras' ``conv_output_length`` per axis: ``ceil(L / s)`` for ``"same"``,
    ``ceil((L - k + 1) / s)`` for ``"valid"``."""
    return tuple((L + s - 1) // s if padding == "same" else (L - k + s) // s
                 for L, k, s in zip(spatial, kernel_size, strides))


def _lc_axis_mask(length: int, out: int, k: int, s: int, padding: str) -> np.ndarray:
    """``(length, out)`` booleans: input ``i`` feeds output ``o`` (tf-keras'
    ``conv_connected_inputs``: the window around ``o * s`` (``"same"``) or ``o * s + k //
    2`` (``"valid"``), ``k // 2`` before it and ``k - k // 2`` from it on, clipped)."""
    o = np.arange(out)
    center = o * s + (k // 2 if padding == "valid" else 0)
    start = np.maximum(0, center - k // 2)
    end = np.minimum(length, center + k - k // 2)
    i = np.arange(length)[:, None]
    return (i >= start[None, :]) & (i < end[None, :])


def locally_connected_mask(spatial: Sequence[int], channels: int, filters: int,
                           kernel_size: Sequence[int], strides: Sequence[int], padding: str,
                           data_format: str) -> np.ndarray:
    """The connectivity of a locally connected layer as a boolean matrix ``(in_total,
    out_total)``: rows the input elements, columns the outputs, each raveled in the
    data format's order (``(*spatial, channels)`` or ``(channels, *spatial)``).  tf-keras'
    ``implementation=2`` kernel is ``kernel * mask`` in this layout; ``implementation=3``
    stores the weights of the ``True`` entries of its transpose, in row-major order (its
    sorted ``conv_kernel_idxs``)."""
    out = locally_connected_output_shape(spatial, kernel_size, strides, padding)
    rank = len(spatial)
    mask = np.ones((1,) * (2 * rank), dtype=bool)
    for d in range(rank):
        m = _lc_axis_mask(spatial[d], out[d], kernel_size[d], strides[d], padding)
        shape = [1] * (2 * rank)
        shape[d], shape[rank + d] = m.shape
        mask = mask & m.reshape(shape)
    if data_format == "channels_last":
        mask = mask.reshape(tuple(spatial) + (1,) + tuple(out) + (1,))
        full = np.broadcast_to(mask, tuple(spatial) + (channels,) + tuple(out) + (filters,))
    else:
        mask = mask.reshape((1,) + tuple(spatial) + (1,) + tuple(out))
        full = np.broadcast_to(mask, (channels,) + tuple(spatial) + (filters,) + tuple(out))
    size_in = channels * int(np.prod(spatial))
    return np.ascontiguousarray(full).reshape(size_in, -1)


def locally_connected_pairs(spatial: Sequence[int], channels: int, filters: int,
                            kernel_size: Sequence[int], strides: Sequence[int], padding: str,
                            data_format: str) -> torch.Tensor:
    """``(2, nnz)`` int64: the connected (output index, input index) pairs of
    :func:`locally_connected_mask`, sorted by output then input (tf-keras' sorted
    ``conv_kernel_idxs``): ``implementation=3``'s ``kernel[p]`` joins input
    ``pairs[1, p]`` to output ``pairs[0, p]``, each raveled in the data format's order."""
    mask = locally_connected_mask(spatial, channels, filters, kernel_size, strides, padding,
                                  data_format)
    outs, ins = np.nonzero(mask.T)  # row-major: sorted by output, then input
    return torch.as_tensor(np.stack([outs, ins]).astype(np.int64))


def locally_connected_window_index(spatial: Sequence[int], channels: int, filters: int,
                                   kernel_size: Sequence[int], strides: Sequence[int],
                                   padding: str, data_format: str,
                                   implementation: int) -> torch.Tensor:
    """``(prod(out), prod(kernel_size) * channels, filters)`` int64: where each weight of
    every output's window sits in ``implementation`` 2's or 3's kernel, flattened, with one
    zero appended (index ``kernel.numel()``) for the window positions that fall in the
    ``"same"`` padding.  ``cat([kernel.flatten(), 0])[index]`` is then an
    ``implementation=1``-style kernel over the zero-padded input (windows ``(*kernel_size,
    channels)``), so every layout computes as one batched matmul."""
    rank = len(spatial)
    out = locally_connected_output_shape(spatial, kernel_size, strides, padding)
    grids = np.meshgrid(*[np.arange(n) for n in out], *[np.arange(k) for k in kernel_size],
                        np.arange(channels), np.arange(filters), indexing="ij")
    o, j = grids[:rank], grids[rank:2 * rank]
    c, f = grids[2 * rank], grids[2 * rank + 1]
    pos = [o[d] * strides[d] - (kernel_size[d] // 2 if padding == "same" else 0) + j[d]
           for d in range(rank)]
    inside = np.ones(c.shape, dtype=bool)
    for d in range(rank):
        inside &= (pos[d] >= 0) & (pos[d] < spatial[d])
    pos = [np.clip(p, 0, L - 1) for p, L in zip(pos, spatial)]
    last = data_format == "channels_last"
    if implementation == 2:
        dims = ((*spatial, channels, *out, filters) if last
                else (channels, *spatial, filters, *out))
        where = (*pos, c, *o, f) if last else (c, *pos, f, *o)
        index = np.ravel_multi_index(where, dims)
        size = int(np.prod(dims))
    else:
        in_dims = (*spatial, channels) if last else (channels, *spatial)
        out_dims = (*out, filters) if last else (filters, *out)
        in_idx = np.ravel_multi_index((*pos, c) if last else (c, *pos), in_dims)
        out_idx = np.ravel_multi_index((*o, f) if last else (f, *o), out_dims)
        pairs = locally_connected_pairs(spatial, channels, filters, kernel_size, strides,
                                        padding, data_format).numpy()
        size_in = int(np.prod(in_dims))
        keys = pairs[0] * size_in + pairs[1]  # sorted
        index = np.searchsorted(keys, out_idx * size_in + in_idx)
        size = pairs.shape[1]
        index = np.minimum(index, size - 1) if size else index
    index = np.where(inside, index, size)
    k = int(np.prod(kernel_size))
    return torch.as_tensor(index.reshape(int(np.prod(out)), k * channels, filters)
                           .astype(np.int64))


def locally_connected(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor],
                      kernel_size: Sequence[int], strides: Sequence[int],
                      padding: str = "valid", data_format: str = "channels_last",
                      implementation: int = 1, mask: Optional[torch.Tensor] = None,
                      pairs: Optional[torch.Tensor] = None,
                      filters: Optional[int] = None,
                      index: Optional[torch.Tensor] = None) -> torch.Tensor:
    """tf-keras 2.21's unshared convolution (``LocallyConnected1D/2D``; any rank here):
    each output position has its own weights.  ``x`` ``(batch, *spatial, channels)`` (or
    channels_first); the output ``(batch, *out, filters)`` (or channels_first), ``out``
    from :func:`locally_connected_output_shape`.  ``kernel`` in tf-keras' layout for
    ``implementation``:

    - ``1`` (``padding="valid"`` only): ``(prod(out), prod(kernel_size) * channels,
      filters)``, each window flattened as ``(*kernel_size, channels)`` (channels_first:
      ``(channels, *kernel_size)``);
    - ``2``: dense ``(*spatial, channels, *out, filters)`` (channels_first: ``(channels,
      *spatial, filters, *out)``), multiplied by the connectivity ``mask`` (a ``(in_total,
      out_total)`` tensor from :func:`locally_connected_mask`, built here when ``None``);
    - ``3``: ``(nnz,)``, the weights of the connected (output, input) pairs in sorted order;
      ``pairs`` (from :func:`locally_connected_pairs`) says which, ``filters`` how many
      outputs per position.

    With ``index`` (:func:`locally_connected_window_index`, which a layer keeps)
    implementations 2 and 3 gather their windows' weights and compute as 1 does (one
    batched matmul); without it, 2 multiplies by the dense masked kernel and 3 gathers
    and scatter-adds over ``pairs``, as tf-keras' own formulas do.

    ``bias`` has tf-keras' shape ``(*out, filters)``; under channels_first tf-keras adds it
    *reshaped* (not transposed) to ``(filters, *out)``, and so does this function."""
    rank = len(tuple(kernel_size))
    padding, channels_last = _check_geometry(padding, data_format, rank)
    if implementation not in (1, 2, 3):
        raise ValueError(f"Invalid value for argument `implementation`. Expected 1, 2 or 3. "
                         f"Received implementation={implementation!r}")
    if implementation == 1 and padding != "valid":
        raise ValueError(f"Invalid value for argument `padding`: implementation=1 supports "
                         f"only 'valid'. Received padding={padding!r}")
    channels, spatial = _channels_and_spatial(x, rank, channels_last)
    ksize, stride = _ints(kernel_size, rank, "kernel_size"), _ints(strides, rank, "strides")
    out = locally_connected_output_shape(spatial, ksize, stride, padding)
    if min(out) <= 0:
        raise ValueError(f"Input of shape {tuple(x.shape)} is too small for kernel_size="
                         f"{ksize}, strides={stride}, padding={padding!r}: the output would "
                         f"have spatial shape {out}")
    batch = x.shape[0]
    if implementation == 1:
        want = (int(np.prod(out)), int(np.prod(ksize)) * channels, kernel.shape[-1])
        if tuple(kernel.shape) != want:
            raise ValueError(f"kernel must have shape {want} for this input (implementation"
                             f"=1). Received kernel of shape {tuple(kernel.shape)}")
        patches = x
        first = 1 if channels_last else 2
        for d in range(rank):
            patches = patches.unfold(first + d, ksize[d], stride[d])
        # channels_last: (B, *out, C, *k) -> (B, *out, *k, C); channels_first: (B, C, *out,
        # *k) -> (B, *out, C, *k)
        if channels_last:
            order = [0, *range(1, rank + 1), *range(rank + 2, 2 * rank + 2), rank + 1]
        else:
            order = [0, *range(2, rank + 2), 1, *range(rank + 2, 2 * rank + 2)]
        patches = patches.permute(order).reshape(batch, want[0], want[1])
        y = torch.einsum("bpi,pif->bpf", patches, kernel)
        y = y.reshape((batch,) + out + (want[2],))
        if not channels_last:
            y = y.movedim(-1, 1)
    elif index is not None:
        k = int(np.prod(ksize))
        if index.shape[:2] != (int(np.prod(out)), k * channels):
            raise ValueError(f"`index` is for another input size: shape {tuple(index.shape)}"
                             f", expected ({int(np.prod(out))}, {k * channels}, filters)")
        weights = torch.cat([kernel.reshape(-1), kernel.new_zeros(1)])[index]
        xl = x if channels_last else x.movedim(1, -1)
        pads = []
        for d in reversed(range(rank)):  # F.pad's order: last axis first
            left = ksize[d] // 2 if padding == "same" else 0
            right = max(0, (out[d] - 1) * stride[d] - left + ksize[d] - spatial[d])
            pads += [left, right]
        xl = torch.nn.functional.pad(xl, [0, 0] + pads)
        patches = xl
        for d in range(rank):
            patches = patches.unfold(1 + d, ksize[d], stride[d]).narrow(1 + d, 0, out[d])
        # (B, *out, C, *k) -> (B, *out, *k, C), windows as the index orders them
        order = [0, *range(1, rank + 1), *range(rank + 2, 2 * rank + 2), rank + 1]
        patches = patches.permute(order).reshape(batch, -1, k * channels)
        filters = weights.shape[-1]
        y = torch.einsum("bpi,pif->bpf", patches, weights).reshape((batch,) + out +
                                                                   (filters,))
        if not channels_last:
            y = y.movedim(-1, 1)
    else:
        if implementation == 2:
            filters = kernel.shape[-1] if channels_last else kernel.shape[rank + 1]
            want = ((*spatial, channels, *out, filters) if channels_last
                    else (channels, *spatial, filters, *out))
        else:
            want = None
        size_in = channels * int(np.prod(spatial))
        fmt = "channels_last" if channels_last else "channels_first"
        if implementation == 2:
            if mask is None:
                mask = torch.as_tensor(locally_connected_mask(
                    spatial, channels, filters, ksize, stride, padding, fmt),
                    device=x.device)
            if tuple(kernel.shape) != want:
                raise ValueError(f"kernel must have shape {want} for this input "
                                 f"(implementation=2). Received kernel of shape "
                                 f"{tuple(kernel.shape)}")
            if mask.shape[0] != size_in:
                raise ValueError(f"The mask is for inputs of {mask.shape[0]} elements per "
                                 f"sample. Received input of shape {tuple(x.shape)}")
            y = x.reshape(batch, size_in) @ (kernel.reshape(size_in, -1) *
                                              mask.to(kernel.dtype))
        else:
            if pairs is None:
                raise ValueError("implementation=3 needs `pairs`, the connected (output, "
                                 "input) indices (locally_connected_pairs; the layer keeps "
                                 "them)")
            if kernel.shape != (pairs.shape[1],):
                raise ValueError(f"kernel must have shape ({pairs.shape[1]},) for this input "
                                 f"(implementation=3). Received kernel of shape "
                                 f"{tuple(kernel.shape)}")
            if filters is None:
                raise ValueError("implementation=3 needs `filters` (its kernel does not tell)")
            # y[:, o] = sum of kernel[p] * x[:, i] over the pairs p = (o, i): a gather and
            # a scatter-add, nothing dense (tf-keras: a sparse matmul)
            out_total = int(np.prod(out)) * int(filters)
            contrib = x.reshape(batch, size_in)[:, pairs[1]] * kernel
            y = torch.zeros((batch, out_total), dtype=contrib.dtype, device=x.device)
            y = y.index_add(1, pairs[0], contrib)
        y = y.reshape((batch,) + ((*out, -1) if channels_last else (-1, *out)))
        filters = y.shape[-1] if channels_last else y.shape[1]
    if bias is not None:
        if tuple(bias.shape) != (*out, filters):
            raise ValueError(f"bias must have shape {(*out, filters)}. Received "
                             f"{tuple(bias.shape)}")
        y = y + (bias.reshape((1,) + tuple(bias.shape)) if channels_last
                 else bias.reshape((1, filters) + out))
    return y


# -- image resizing (tf-keras' Resizing: tf.image.resize v2) -------------------------------
#: ``tf.image.resize`` methods :func:`resize` computes.
RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "lanczos3", "lanczos5", "gaussian",
                  "mitchellcubic", "area")


def resize(x: torch.Tensor, size: Sequence[int], interpolation: str = "bilinear",
           crop_to_aspect_ratio: bool = False) -> torch.Tensor:
    """``tf.image.resize(x, size, method=interpolation)`` (v2: half-pixel centres, no
    antialiasing) of images ``(batch, rows, cols, channels)`` or ``(rows, cols,
    channels)``, as tf-keras' ``Resizing`` calls it; ``crop_to_aspect_ratio`` first crops
    the centred window of the target's aspect ratio (tf-keras' ``smart_resize``: sizes in
    float32, truncated).  The weights are TensorFlow's for every method
    (:mod:`sepconv.kernels.resize`; ``area`` is ``ResizeArea``, box averaging over the
    overlapped input pixels, which ``antialias`` does not change in TensorFlow); the
    interpolating methods compute in float32 (as ``tf.image.resize`` does whatever the
    input) and return float32, ``nearest`` keeps the input's dtype."""
    import numpy as np
    from .kernels import resize as _resize
    if interpolation not in RESIZE_METHODS:
        raise ValueError(f"Invalid value for argument `interpolation`. Expected one of "
                         f"{RESIZE_METHODS}. Received interpolation={interpolation!r}")
    if x.dim() not in (3, 4):
        raise ValueError(f"resize expects images of rank 4, (batch, rows, cols, channels), "
                         f"or 3. Received input of shape {tuple(x.shape)}")
    height, width = (int(v) for v in size)
    first = x.dim() - 3
    rows, cols = int(x.shape[first]), int(x.shape[first + 1])
    if crop_to_aspect_ratio:
        crop_h = min(rows, int(np.float32(cols * height) / np.float32(width)))
        crop_w = min(cols, int(np.float32(rows * width) / np.float32(height)))
        if crop_h == 0 or crop_w == 0:  # TensorFlow fails there too
            raise ValueError(f"crop_to_aspect_ratio: a {rows}x{cols} image has no "
                             f"non-empty window of the aspect ratio {height}:{width}")
        x = x.narrow(first, int(np.float32(rows - crop_h) / np.float32(2)), crop_h)
        x = x.narrow(first + 1, int(np.float32(cols - crop_w) / np.float32(2)), crop_w)
    if interpolation == "nearest":  # a gather: any dtype
        for axis, n_out in ((first, height), (first + 1, width)):
            index = _resize.band(int(x.shape[axis]), n_out, "nearest")[0][:, 0]
            x = x.index_select(axis, torch.as_tensor(index, device=x.device))
        return x
    x = x.float()
    for axis, n_out in ((first, height), (first + 1, width)):
        x = _resize.apply_axis(x, axis, n_out, interpolation)
    return x.contiguous()


# -- image augmentation (tf-keras' RandomRotation / RandomTranslation / RandomZoom, ...) ----
#: ``fill_mode`` values of :func:`image_transform` (TensorFlow's ``ImageProjectiveTransformV3``).
FILL_MODES = ("reflect", "wrap", "constant", "nearest")
#: ``interpolation`` values of :func:`image_transform`.
TRANSFORM_INTERPOLATIONS = ("nearest", "bilinear")


def _map_coordinate(c: torch.Tensor, length: int, fill_mode: str) -> torch.Tensor:
    """TensorFlow's ``MapCoordinate<fill_mode>`` (``image_ops.h``), in float32: an input
    coordinate outside ``[0, length - 1]`` mapped back inside (``constant`` leaves it)."""
    if fill_mode == "constant":
        return c
    if fill_mode == "nearest" or length <= 1:
        return c.clamp(0.0, float(length - 1)) if length > 1 else torch.zeros_like(c)
    if fill_mode == "reflect":
        sz2 = 2 * length
        low = sz2 * torch.trunc(-c / sz2) + c
        low = torch.where(low < -length, low + sz2, -low - 1)
        high = c - sz2 * torch.trunc(c / sz2)
        high = torch.where(high >= length, sz2 - high - 1, high)
    else:  # wrap (TensorFlow divides by length - 1 and steps by length, as written)
        sz = length - 1
        low = c + length * (torch.trunc(-c / sz) + 1)
        high = c - length * torch.trunc(c / sz)
    c = torch.where(c < 0, low, torch.where(c > length - 1, high, c))
    return c.clamp(0.0, float(length - 1))


def image_transform(images: torch.Tensor, transforms, fill_mode: str = "reflect",
                    interpolation: str = "bilinear", fill_value: float = 0.0,
                    output_shape: Optional[Sequence[int]] = None) -> torch.Tensor:
    """TensorFlow's ``ImageProjectiveTransformV3`` (tf-keras' ``transform``): images
    ``(batch, rows, cols, channels)`` sampled at projectively mapped points.

    ``transforms``: ``(8,)``, ``(1, 8)`` (one for all images) or ``(batch, 8)``; a row
    ``[a0, a1, a2, b0, b1, b2, c0, c1]`` maps the *output* point ``(x, y)`` to the *input*
    point ``((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k)``, ``k = c0 x + c1 y + 1``
    (``k == 0`` gives ``fill_value``).  ``fill_mode``: ``reflect`` (``d c b a | a b c d |
    d c b a``), ``wrap``, ``constant`` (``fill_value`` outside, blended at the edges by
    bilinear), ``nearest``; ``interpolation``: ``bilinear`` or ``nearest`` (rounding half
    away from zero).  The coordinates and the bilinear blend are computed in float32 as
    TensorFlow's kernel does (a float64 image is read as float32 there too); the result
    has the images' dtype.  The gradient with respect to ``images`` is the exact adjoint
    of the sampling (TensorFlow's registered one samples the output gradient through the
    inverse transform instead, which agrees only for whole-pixel shifts); none for the
    transforms, as in TensorFlow.  Output ``(batch, *output_shape, channels)``,
    ``output_shape`` defaulting to ``(rows, cols)``.

    Two routes, the same numbers: CPU float images that need no gradient (an augmentation
    layer's input) run a C routine, TensorFlow's kernel statement for statement in one
    pass (:mod:`sepconv.kernels._transform_native`, 6-11x less CPU time than the torch
    operations); images that require a gradient, other devices and dtypes, tracing and
    ``torch.compile``, or a machine without a C compiler (``SEPCONV_NATIVE=0``) take the
    torch operations."""
    if fill_mode not in FILL_MODES:
        raise ValueError(f"Invalid value for argument `fill_mode`. Expected one of "
                         f"{FILL_MODES}. Received fill_mode={fill_mode!r}")
    if interpolation not in TRANSFORM_INTERPOLATIONS:
        raise ValueError(f"Invalid value for argument `interpolation`. Expected one of "
                         f"{TRANSFORM_INTERPOLATIONS}. Received interpolation={interpolation!r}")
    if images.dim() != 4:
        raise ValueError(f"image_transform expects images of rank 4, (batch, rows, cols, "
                         f"channels). Received input of shape {tuple(images.shape)}")
    batch, rows, cols, channels = (int(s) for s in images.shape)
    t = torch.as_tensor(transforms, dtype=torch.float32, device=images.device).detach()
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2 or t.shape[1] != 8 or t.shape[0] not in (1, batch):
        raise ValueError(f"Invalid value for argument `transforms`. Expected shape (8,), "
                         f"(1, 8) or ({batch}, 8). Received transforms of shape "
                         f"{tuple(t.shape)}")
    out_h, out_w = (rows, cols) if output_shape is None else (int(v) for v in output_shape)
    if _native_transform_applies(images, batch * out_h * out_w * channels):
        return _image_transform_native(images, t, fill_mode, interpolation, fill_value,
                                       out_h, out_w)
    return _image_transform_torch(images, t, fill_mode, interpolation, fill_value, out_h,
                                  out_w)


_NATIVE_TRANSFORM_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _native_transform_applies(images: torch.Tensor, out_numel: int) -> bool:
    """:func:`image_transform` runs the C routine (:mod:`sepconv.kernels._transform_native`)
    for CPU floating images that need no gradient, in eager mode, where it builds."""
    if (images.device.type != "cpu" or images.dtype not in _NATIVE_TRANSFORM_DTYPES
            or out_numel == 0 or (images.requires_grad and torch.is_grad_enabled())
            or torch.jit.is_scripting() or _graphs.standard_ops_wanted()
            or not _graphs.plain(images)):
        return False
    from .kernels import _transform_native
    return _transform_native.load() is not None


def _image_transform_native(images, t, fill_mode, interpolation, fill_value, out_h, out_w):
    """The C routine: TensorFlow's kernel statement for statement (bit-exact), one pass."""
    from .kernels import _transform_native
    dtype = images.dtype
    x = images if dtype in (torch.float32, torch.float64) else images.float()
    x = x.contiguous()
    batch, _, _, channels = x.shape
    out = torch.empty((batch, out_h, out_w, channels), dtype=x.dtype)
    # the fill value as TensorFlow's kernel reads it: float32, cast to the images' dtype
    fill = float(torch.tensor(float(fill_value), dtype=torch.float32).to(dtype).float())
    _transform_native.transform(x, t.contiguous(), out, fill_mode=FILL_MODES.index(fill_mode),
                                interpolation=TRANSFORM_INTERPOLATIONS.index(interpolation),
                                fill=fill, threads=torch.get_num_threads())
    return out if out.dtype == dtype else out.to(dtype)


def _image_transform_torch(images, t, fill_mode, interpolation, fill_value, out_h, out_w):
    """:func:`image_transform` in torch operations (differentiable; any device and dtype)."""
    batch, rows, cols, channels = (int(s) for s in images.shape)
    t = t.expand(batch, 8)[:, :, None, None]
    ox = torch.arange(out_w, dtype=torch.float32, device=images.device)[None, None, :]
    oy = torch.arange(out_h, dtype=torch.float32, device=images.device)[None, :, None]
    a0, a1, a2, b0, b1, b2, c0, c1 = (t[:, i] for i in range(8))
    infinite = None
    if bool((t[:, 1] == 0).all() and (t[:, 3] == 0).all() and (t[:, 6:] == 0).all()):
        # each axis on its own (translations, zooms): the coordinates stay (batch, 1, out_w)
        # and (batch, out_h, 1), the same numbers (0 * y and / 1 change nothing)
        x = a0 * ox + a2
        y = b1 * oy + b2
    elif bool((t[:, 6:] == 0).all()):  # affine (rotations): k = 1, no division
        x = a0 * ox + a1 * oy + a2
        y = b0 * ox + b1 * oy + b2
    else:
        projection = c0 * ox + c1 * oy + 1.0
        infinite = projection == 0
        projection = torch.where(infinite, torch.ones_like(projection), projection)
        x = (a0 * ox + a1 * oy + a2) / projection
        y = (b0 * ox + b1 * oy + b2) / projection
    x = _map_coordinate(x, cols, fill_mode)
    y = _map_coordinate(y, rows, fill_mode)
    fill = torch.tensor(float(fill_value), dtype=torch.float32).to(images.dtype)
    # one gather per corner from the pixels as rows, a last row of fill_value for every
    # point outside the image
    table = torch.cat([images.reshape(-1, channels),
                       fill.to(images.device).expand(1, channels)])
    outside = batch * rows * cols
    first = (torch.arange(batch, device=images.device) * (rows * cols))[:, None, None]

    def offsets(c: torch.Tensor, length: int, stride: int):
        """Whole coordinates ``c`` (float): their offsets in the table, and where they
        fall inside ``[0, length)``."""
        inside = (c >= 0) & (c < length)
        return torch.where(inside, c, 0).to(torch.int64) * stride, inside

    def read(row, col) -> torch.Tensor:
        index = torch.where(row[1] & col[1], first + row[0] + col[0], outside)
        index = index.expand(batch, out_h, out_w)
        return table.index_select(0, index.reshape(-1)).reshape(batch, out_h, out_w,
                                                                channels)

    if interpolation == "nearest":
        def half_away(v):  # std::round
            return torch.sign(v) * torch.floor(torch.abs(v) + 0.5)
        out = read(offsets(half_away(y), rows, cols), offsets(half_away(x), cols, 1))
    else:
        y0, x0 = torch.floor(y), torch.floor(x)
        y1, x1 = y0 + 1, x0 + 1
        r0, r1 = offsets(y0, rows, cols), offsets(y1, rows, cols)
        k0, k1 = offsets(x0, cols, 1), offsets(x1, cols, 1)
        wx0, wx1 = (x1 - x)[..., None], (x - x0)[..., None]
        wy0, wy1 = (y1 - y)[..., None], (y - y0)[..., None]
        top = wx0 * read(r0, k0).float() + wx1 * read(r0, k1).float()
        bottom = wx0 * read(r1, k0).float() + wx1 * read(r1, k1).float()
        out = (wy0 * top + wy1 * bottom).to(images.dtype)
    if infinite is not None and bool(infinite.any()):
        out = torch.where(infinite[..., None], fill.to(out.device), out)
    return out


def rotation_matrix(angles: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """tf-keras' ``get_rotation_matrix``: ``(batch, 8)`` transforms (for
    :func:`image_transform`) rotating each image by ``angles`` (radians, counter-clockwise)
    about its centre, in float32."""
    a = torch.as_tensor(angles, dtype=torch.float32)
    h, w = torch.tensor(float(rows)), torch.tensor(float(cols))
    cos, sin = torch.cos(a), torch.sin(a)
    x_offset = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2.0
    y_offset = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2.0
    zeros = torch.zeros_like(a)
    return torch.stack([cos, -sin, x_offset, sin, cos, y_offset, zeros, zeros], dim=1)


def translation_matrix(translations: torch.Tensor) -> torch.Tensor:
    """tf-keras' ``get_translation_matrix``: ``(batch, 8)`` transforms shifting each image
    by ``translations[:, 0]`` pixels right and ``translations[:, 1]`` down."""
    d = torch.as_tensor(translations, dtype=torch.float32)
    ones, zeros = torch.ones_like(d[:, 0]), torch.zeros_like(d[:, 0])
    return torch.stack([ones, zeros, -d[:, 0], zeros, ones, -d[:, 1], zeros, zeros], dim=1)


def zoom_matrix(zooms: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """tf-keras' ``get_zoom_matrix``: ``(batch, 8)`` transforms scaling the sampling grid
    of each image by ``zooms[:, 0]`` horizontally and ``zooms[:, 1]`` vertically about its
    centre (a factor above 1 zooms out)."""
    z = torch.as_tensor(zooms, dtype=torch.float32)
    x_offset = ((torch.tensor(float(cols)) - 1.0) / 2.0) * (1.0 - z[:, 0])
    y_offset = ((torch.tensor(float(rows)) - 1.0) / 2.0) * (1.0 - z[:, 1])
    zeros = torch.zeros_like(z[:, 0])
    return torch.stack([z[:, 0], zeros, x_offset, zeros, z[:, 1], y_offset, zeros, zeros],
                       dim=1)


def ctc_greedy_decode(inputs: torch.Tensor, sequence_lengths: torch.Tensor,
                      merge_repeated: bool = True,
                      mask_index: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Greedy (best-path) CTC decoding of a speech model's per-step scores, as Keras 3's
    ``ops.ctc_decode(strategy="greedy")`` and TensorFlow's ``ctc_greedy_decoder`` (under
    tf-keras' ``backend.ctc_decode(greedy=True)``) compute it.

    ``inputs`` ``(batch, steps, classes)`` (probabilities or their logs),
    ``sequence_lengths`` ``(batch,)``: the valid steps of each row.  At each valid step the
    best class (the first of equal ones); with ``merge_repeated`` a class repeated at
    consecutive steps counts once (before the blanks go: ``a, blank, a`` keeps both);
    then the blank ``mask_index`` is removed (``None``: the last class, TensorFlow's
    blank; Keras 3's ``ops.ctc_decode`` defaults to ``0``).  Returns ``(decoded,
    scores)``: ``decoded`` ``(batch, steps)`` int64, each row's labels first, then
    ``-1``; ``scores`` ``(batch, 1)``, minus the sum of the best scores of the valid
    steps.  tf-keras' ``ctc_decode(y_pred, input_length)`` is
    ``ctc_greedy_decode(torch.log(y_pred + 1e-7), input_length)`` (its ``log_prob`` the
    scores); Keras 3's ``ops.ctc_decode(x, lengths)`` is ``ctc_greedy_decode(x, lengths,
    mask_index=0)`` with a leading axis of 1 (``top_paths``)."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 3:
        raise ValueError(f"Invalid value for argument `inputs`. Expected a tensor of shape "
                         f"(batch, steps, classes). Received inputs with shape "
                         f"{tuple(getattr(inputs, 'shape', ()))}")
    batch, steps, classes = inputs.shape
    blank = classes - 1 if mask_index is None else int(mask_index)
    if not 0 <= blank < classes:
        raise ValueError(f"Invalid value for argument `mask_index`. Expected a class in "
                         f"[0, {classes}). Received mask_index={mask_index}")
    lengths = torch.as_tensor(sequence_lengths, device=inputs.device).reshape(-1).long()
    if lengths.shape[0] != batch:
        raise ValueError(f"Invalid value for argument `sequence_lengths`. Expected "
                         f"{batch} lengths (one per row). Received {lengths.shape[0]}")
    scores, best = inputs.max(dim=-1)
    padded = torch.arange(steps, device=inputs.device)[None, :] >= lengths[:, None]
    best = torch.where(padded, blank, best)
    scores = torch.where(padded, torch.zeros_like(scores), scores)
    if merge_repeated:
        repeat = torch.zeros_like(padded)
        repeat[:, 1:] = best[:, 1:] == best[:, :-1]
        best = torch.where(repeat, blank, best)
    dropped = best == blank
    best = torch.where(dropped, -1, best)
    order = torch.where(dropped, steps, torch.arange(steps, device=inputs.device)[None, :])
    decoded = torch.gather(best, 1, torch.argsort(order, dim=1, stable=True))
    return decoded, -scores.sum(dim=1, keepdim=True)


def ctc_batch_cost(y_true: torch.Tensor, y_pred: torch.Tensor, input_length: torch.Tensor,
                   label_length: torch.Tensor) -> torch.Tensor:
    """tf-keras' (R keras') ``backend.ctc_batch_cost``: the CTC loss of a speech model's
    softmax outputs, what keras.io's "CTC ASR" example compiles.

    ``y_true`` ``(batch, max_labels)`` label ids (the first ``label_length`` of each row
    count), ``y_pred`` ``(batch, steps, classes)`` probabilities (the last class is the
    blank), ``input_length`` and ``label_length`` ``(batch, 1)`` (or ``(batch,)``).
    Returns ``(batch, 1)``.  As tf-keras: TensorFlow's ``ctc_loss`` takes
    ``log(y_pred + 1e-7)`` as logits (it applies a log-softmax to them), so this is
    torch's ``ctc_loss`` of ``log_softmax(log(y_pred + 1e-7))`` with the blank last, no
    reduction.  (Keras 3's ``ops.ctc_loss(target, output, target_length, output_length)``
    is torch's ``ctc_loss`` of ``log_softmax(output)`` with ``blank=0``.)"""
    if not isinstance(y_pred, torch.Tensor) or y_pred.dim() != 3:
        raise ValueError(f"Invalid value for argument `y_pred`. Expected a tensor of shape "
                         f"(batch, steps, classes). Received y_pred with shape "
                         f"{tuple(getattr(y_pred, 'shape', ()))}")
    batch, steps, classes = y_pred.shape
    labels = torch.as_tensor(y_true, device=y_pred.device)
    if labels.dim() != 2 or labels.shape[0] != batch:
        raise ValueError(f"Invalid value for argument `y_true`. Expected a tensor of shape "
                         f"({batch}, max_labels). Received y_true with shape "
                         f"{tuple(labels.shape)}")
    lengths = []
    for name, value, most in (("input_length", input_length, steps),
                              ("label_length", label_length, labels.shape[1])):
        n = torch.as_tensor(value, device=y_pred.device).reshape(-1).long()
        if n.shape[0] != batch or bool((n < 0).any()) or bool((n > most).any()):
            raise ValueError(f"Invalid value for argument `{name}`. Expected {batch} "
                             f"lengths in [0, {most}]. Received {name}={n.tolist()}")
        lengths.append(n)
    logits = torch.log(y_pred + 1e-7).transpose(0, 1).log_softmax(-1)
    loss = torch.nn.functional.ctc_loss(logits, labels.long(), lengths[0], lengths[1],
                                        blank=classes - 1, reduction="none")
    return loss.unsqueeze(1)


def stochastic_depth(x: torch.Tensor, rate: float,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Keras Applications' (ConvNeXt's) training-time stochastic depth: ``(x / keep) *
    floor(keep + u)``, ``keep = 1 - rate``, one uniform ``u`` per sample (axis 0), so each
    sample of ``x`` (``(batch, ...)``) is kept whole, scaled by ``1 / keep``, or zeroed.
    ``rate`` in ``[0, 1)``."""
    keep = 1.0 - rate
    u = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device,
                   generator=generator)
    return (x / keep) * torch.floor(keep + u)


def _step_fn(fn: Callable) -> Callable:
    """The activation a recurrent step runs for ``fn``: torch's ``tanh`` / ``sigmoid`` for
    sepconv's (whose CPU float32 path, TensorFlow's numbers through a C routine,
    costs a few microseconds more per call than torch's op: on a step's small gate tensors
    that made an LSTM step loop ~30% slower, 32 x 100 x 64 -> 64 forward+backward, and the
    step cannot match TensorFlow bit for bit anyway, its matrix products summing in
    another order); ``fn`` itself otherwise."""
    from . import activations
    if fn is activations.tanh:
        return torch.tanh
    if fn is activations.sigmoid:
        return torch.sigmoid
    return fn


def ctc_beam_decode(inputs: torch.Tensor, sequence_lengths: torch.Tensor,
                    beam_width: int = 100, top_paths: int = 1,
                    mask_index: Optional[int] = None, merge_repeated: bool = True,
                    like: str = "tf_keras") -> Tuple[torch.Tensor, torch.Tensor]:
    """Beam-search CTC decoding of a speech model's per-step scores, the companion of
    :func:`ctc_greedy_decode`, as one of the two Kerases computes it (``like``):

    - ``"tf_keras"``: TensorFlow's ``ctc_beam_search_decoder`` (v1, what tf-keras'
      ``backend.ctc_decode(y_pred, input_length, greedy=False, beam_width, top_paths)``
      runs on ``log(y_pred + 1e-7)``): each step of ``inputs`` normalised as a
      log-softmax (TensorFlow 2.21 subtracts ``max + log(sum(exp(x - max)))``); with
      ``merge_repeated`` equal consecutive labels of a decoded path are merged (``a,
      blank, a`` gives ``a``, as TensorFlow's v1 decoder does).  tf-keras' call is
      ``ctc_beam_decode(torch.log(y_pred + 1e-7), input_length, beam_width,
      top_paths)``.  A C++ routine (``kernels/_ctc_native.py``) that is TensorFlow's
      decoder step for step, equal scores ordered as TensorFlow orders them, float64
      inputs decoded in float64 as TensorFlow does; a slower Python fallback
      (``_ctc_beam.tf_row``) where no C++ compiler is found.
    - ``"keras3"``: Keras 3.15's ``ops.ctc_decode(inputs, sequence_lengths,
      strategy="beam_search", beam_width, top_paths, mask_index=0)``: a log-softmax of
      ``inputs`` first; ``merge_repeated`` is ignored, as Keras 3 ignores it in beam
      search.  Keras 3's call is ``ctc_beam_decode(inputs, lengths, beam_width,
      top_paths, mask_index=0, like="keras3")`` (Keras 3 starts every row from its first
      step, even a row of length 0; it decodes in float32, float64 inputs included, and
      pads with empty paths of log probability ``-inf`` where fewer than ``top_paths``
      paths are found).  Batched torch operations over the rows, the beam and the
      classes (``_ctc_beam.keras3_fast``: Keras' sums, maxima and order by path hash,
      without materialising its candidate paths): equal to Keras' results to the bit,
      its order of equal scores included.

    ``inputs`` ``(batch, steps, classes)``, ``sequence_lengths`` ``(batch,)``; the blank
    is class ``mask_index`` (``None``: the last class, TensorFlow's only blank).
    Returns ``(decoded, log_probs)``: ``decoded`` ``(top_paths, batch, steps)`` int64,
    each path's labels first, then ``-1`` (tf-keras returns the ``top_paths`` tensors
    as a list, Keras 3 this stack, as int32); ``log_probs`` ``(batch, top_paths)``, best
    first (float32 for ``"keras3"``; the input's floating dtype for ``"tf_keras"``); no
    gradients."""
    if like not in ("tf_keras", "keras3"):
        raise ValueError(f"Invalid value for argument `like`. Expected 'tf_keras' or "
                         f"'keras3'. Received like={like!r}")
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 3:
        raise ValueError(f"Invalid value for argument `inputs`. Expected a tensor of shape "
                         f"(batch, steps, classes). Received inputs with shape "
                         f"{tuple(getattr(inputs, 'shape', ()))}")
    for name, value in (("beam_width", beam_width), ("top_paths", top_paths)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"Invalid value for argument `{name}`. Expected an int >= 1. "
                             f"Received {name}={value!r}")
    if top_paths > beam_width:
        raise ValueError(f"Invalid value for argument `top_paths`. Expected at most "
                         f"beam_width={beam_width} paths. Received top_paths={top_paths}")
    batch, steps, classes = inputs.shape
    blank = classes - 1 if mask_index is None else int(mask_index)
    if not 0 <= blank < classes:
        raise ValueError(f"Invalid value for argument `mask_index`. Expected a class in "
                         f"[0, {classes}). Received mask_index={mask_index}")
    lengths = torch.as_tensor(sequence_lengths).reshape(-1).long().tolist()
    if len(lengths) != batch or any(not 0 <= n <= steps for n in lengths):
        raise ValueError(f"Invalid value for argument `sequence_lengths`. Expected "
                         f"{batch} lengths in [0, {steps}]. Received {lengths}")
    from . import _ctc_beam

    x = inputs.detach()
    if like == "keras3":
        # Keras 3.15 casts to result_type(inputs.dtype, "float32"), float32 even for
        # float64 inputs (its promotion of a float64 tensor with the "float32" name)
        return _ctc_beam.keras3_fast(torch.log_softmax(x.float(), dim=-1), lengths,
                                      beam_width, top_paths, blank)
    from .kernels import _ctc_native

    if x.dtype != torch.float64:
        x = x.float()  # TensorFlow's decoder: float32 or float64
    out_dtype = inputs.dtype if inputs.is_floating_point() else torch.float32
    if _ctc_native.load() is not None:
        decoded, log_probs, leaves = _ctc_native.tf_decode(
            x.cpu().contiguous(), torch.as_tensor(lengths, dtype=torch.int64), beam_width,
            top_paths, blank, merge_repeated)
        for b in range(batch):
            if leaves[b] < top_paths:
                _ctc_beam.too_few_leaves(int(leaves[b]), lengths[b], top_paths)
        return decoded.to(inputs.device), log_probs.to(out_dtype).to(inputs.device)
    x = x.cpu().numpy()
    decoded = torch.full((top_paths, batch, steps), -1, dtype=torch.int64)
    log_probs = torch.empty((batch, top_paths), dtype=out_dtype)
    for b in range(batch):
        paths, scores = _ctc_beam.tf_row(x[b], lengths[b], beam_width, top_paths, blank,
                                         merge_repeated)
        for i, path in enumerate(paths):
            decoded[i, b, :len(path)] = torch.as_tensor(path, dtype=torch.int64)
        log_probs[b] = torch.as_tensor(scores)
    return decoded.to(inputs.device), log_probs.to(inputs.device)
