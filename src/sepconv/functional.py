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
    ``strides``, ``padding`` and ``dilation_rate`` (it runs on all steps at once, through
    :func:`conv`); the recurrent one is always stride 1, dilation 1, TensorFlow ``"same"``.

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
            first unmasked step), as tf-keras' ``backend.rnn``.

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
        if tuple(mask.shape) != (batch, steps):
            raise ValueError(f"Invalid value for argument `mask`. Expected shape "
                             f"{(batch, steps)} (batch, time). Received {tuple(mask.shape)}")
        step_masks = mask.to(device=x.device, dtype=torch.bool).unbind(1)
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

    per_step = batch * gates * functools.reduce(lambda a, b: a * b, out_spatial, 1)
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
        else:
            keep = step_masks[t].view((batch,) + (1,) * (rank + 1))
            out = torch.where(keep, h_new, out)
            h, c = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
        if return_sequences:
            outputs.append(out)
    output = torch.stack(outputs, 1) if return_sequences else out
    if channels_last:  # views: the recurrence ran channels-first (measured faster)
        output = output.movedim(2 if return_sequences else 1, -1)
        h, c = h.movedim(1, -1), c.movedim(1, -1)
    return output, h, c


def _elementwise(fn: Callable) -> bool:
    """Whether an activation acts on each element alone (then any layout will do)."""
    if fn in (torch.tanh, torch.sigmoid, torch.relu):
        return True
    from . import activations
    return getattr(fn, "__module__", None) == activations.__name__ and \
        fn.__name__ not in ("softmax", "log_softmax", "glu", "sparsemax")
