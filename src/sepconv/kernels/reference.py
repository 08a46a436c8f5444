"""The reference kernel: the plain torch composition, the oracle for every faster kernel.

Keep it short and obviously right.  Weight layouts are Keras' (the layer stores them
that way), so the channel order of the intermediate is Keras' too: depthwise output
channel ``c * depth_multiplier + m`` comes from input channel ``c``.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .. import padding as _padding
from . import graphs as _graphs


def separable_conv1d(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor,
                     bias: Optional[torch.Tensor], *, stride: int, dilation: int,
                     pad_left: int, pad_right: int, channels_last: bool) -> torch.Tensor:
    """Depthwise then pointwise convolution.

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
    k, c, m = depthwise.shape
    if channels_last:
        x = x.transpose(1, 2)
    x = F.pad(x, (pad_left, pad_right))
    # (K, C, M) -> (C*M, 1, K): output channel c*M + m, as TensorFlow orders it.
    weight = depthwise.permute(1, 2, 0).reshape(c * m, 1, k)
    z = F.conv1d(x, weight, None, stride=stride, dilation=dilation, groups=c)
    y = F.conv1d(z, pointwise.t().unsqueeze(-1), bias)
    return y.transpose(1, 2) if channels_last else y


def differentiable_backward(grad_y: torch.Tensor, x: torch.Tensor, depthwise: torch.Tensor,
                            pointwise: torch.Tensor, bias_dtype: Optional[torch.dtype],
                            needs, **geometry) -> tuple:
    """Gradients of (x, depthwise, pointwise, bias) through this composition, themselves
    differentiable.

    A fast kernel's ``backward`` returns these when it runs with ``create_graph=True``
    (double backward, gradient penalties), so higher-order gradients are right on every
    kernel.  ``depthwise`` and ``pointwise`` may be reshaped views of the saved weights;
    ``bias_dtype`` is ``None`` when there is no bias (its gradient does not depend on its
    value, so a zero stands in for it).
    """
    bias = stand_in_bias(bias_dtype, pointwise.shape[-1], x.device)
    return differentiable_grads(
        lambda *inputs: separable_conv1d(*inputs, **geometry), grad_y,
        (x, depthwise, pointwise, bias), needs)


def stand_in_bias(bias_dtype: Optional[torch.dtype], size: int,
                  device: torch.device) -> Optional[torch.Tensor]:
    """A zero bias requiring grad (``None`` for ``bias_dtype=None``): a bias' gradient does
    not depend on its value, so a fast kernel's differentiable backward need not save it."""
    if bias_dtype is None:
        return None
    return torch.zeros(size, dtype=bias_dtype, device=device, requires_grad=True)


def differentiable_grads(fn: Callable, grad_y: torch.Tensor, inputs: tuple,
                         needs) -> tuple:
    """The gradients of ``fn(*inputs)`` (weighted by ``grad_y``) with respect to the
    ``inputs`` that ``needs`` asks for (``None`` for the others and for ``None`` inputs),
    recorded with ``create_graph=True``: a fast kernel's backward under double backward."""
    wanted = [t for t, need in zip(inputs, needs) if need and t is not None]
    with torch.enable_grad():
        y = fn(*inputs)
        grads = iter(torch.autograd.grad(y, wanted, grad_y, create_graph=True,
                                         allow_unused=True))
    return tuple(next(grads) if need and t is not None else None
                 for t, need in zip(inputs, needs))


def conv(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor], *,
         strides: tuple, dilation: tuple, pads: tuple, groups: int,
         channels_last: bool) -> torch.Tensor:
    """Keras' N-d convolution (N = 1, 2, 3) as ``F.pad`` (the unequal part of the padding)
    then ``F.conv2d`` / ``F.conv3d`` (1D runs as 2D).

    Args:
        x: ``(batch, *spatial, channels)`` if ``channels_last`` else
            ``(batch, channels, *spatial)``.
        kernel: ``(*kernel_size, channels // groups, filters)`` (Keras' layout).
        bias: ``(filters,)`` or ``None``.
        strides, dilation: one int per spatial axis.
        pads: ``((left, right), ...)`` per spatial axis.
        groups: channel groups (TensorFlow's: filters split evenly over them).
        channels_last: layout of ``x`` and of the result.

    Returns:
        ``(batch, *out_spatial, filters)`` or ``(batch, filters, *out_spatial)``.
    """
    rank = kernel.dim() - 2
    weight = _torch_weight(x, kernel, channels_last)
    if rank == 1:  # as 2D over a height-1 axis: oneDNN's 2D path is 2-3x faster than 1D
        axis = 1 if channels_last else 2
        return _conv(x.unsqueeze(axis), weight, bias, strides=(1, *strides),
                     dilation=(1, *dilation), pads=((0, 0), *pads), groups=groups,
                     channels_last=channels_last).squeeze(axis)
    return _conv(x, weight, bias, strides=strides, dilation=dilation, pads=pads,
                 groups=groups, channels_last=channels_last)


def _torch_weight(x: torch.Tensor, kernel: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Keras' ``(*k, in // groups, filters)`` kernel as torch's ``(filters, in // groups,
    *k)`` weight (a 1D kernel as 2D, ``(filters, in // groups, 1, k)``).

    Contiguous where autograd will run, or torch 2.13's slow_conv2d (picked for some small
    shapes with a non-contiguous input) fails in backward ("grad_weight must be
    contiguous").  Without autograd: a module's weight (a ``Parameter``) laid out once in
    the input's memory format (channels_last for channels_last data) and remembered while
    it is unchanged (:func:`graphs.remembered`); torch's kernels read it with no copy of
    their own, and compute the same numbers from it as from the permuted view, which
    oneDNN reorders and THNN copies on every call.  One thread, this AMD EPYC Zen 3
    (AVX2), the bench models' convolutions, view -> remembered: the keyword-spotting stem
    Conv1D(128, 11, strides=2) 0.39 -> 0.21 ms at batch 1 (THNN) and 5.34 -> 5.10 at 32,
    the text CNN's Conv1D(128, 5) 0.99 -> 0.89 at batch 1, EEGNet's (1, 64) Conv2D 3.46 ->
    3.19, WaveNet's k2 layers 0.38 -> 0.36 (/tmp scratch A/B, alternated medians; a plain
    contiguous weight was slower than the view at the text CNN's batch 32).  Any other
    tensor: the permuted view, which torch copies itself (a copy of ours would be a
    second)."""
    rank = kernel.dim() - 2

    def view():
        weight = kernel.permute(rank + 1, rank, *range(rank))
        return weight.unsqueeze(2) if rank == 1 else weight

    # (torch.jit.trace records one graph whatever the grad mode: its check reruns it)
    if torch.jit.is_tracing() or (torch.is_grad_enabled() and
                                  (kernel.requires_grad or x.requires_grad)):
        return view().contiguous()
    if type(kernel) is not torch.nn.Parameter:
        return view()

    def laid_out():  # (made by remembered outside inference mode: an ordinary tensor)
        if not channels_last:
            return view().contiguous()
        return view().contiguous(memory_format=torch.channels_last_3d if rank == 3
                                 else torch.channels_last)

    return _graphs.remembered(kernel, "reference.conv", (kernel,), laid_out,
                              channels_last)


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], *,
          strides: tuple, dilation: tuple, pads: tuple, groups: int,
          channels_last: bool) -> torch.Tensor:
    """:func:`conv` of rank 2 or 3 with torch's ``(filters, in // groups, *k)`` weight."""
    rank = weight.dim() - 2
    # The equal part of each axis' padding is the convolution's own (no padded copy); the
    # rest (TensorFlow's odd element after, causal's left side) goes to F.pad, in the
    # input's own layout (channels_last data stays channels_last).
    both = tuple(min(pair) for pair in pads)
    rest = [p - b for pair, b in zip(reversed(pads), reversed(both)) for p in pair]
    if any(rest):
        x = F.pad(x, [0, 0] + rest if channels_last else rest)
    if channels_last:
        x = x.movedim(-1, 1)  # a view: oneDNN reads channels_last strides as they are
    if x.shape[1] == 1 and _misread(x, weight, strides, dilation, both, rank):
        x = _plain_strides(x)
    conv_nd = (F.conv1d, F.conv2d, F.conv3d)[rank - 1]
    y = conv_nd(x, weight, bias, stride=tuple(strides), padding=both,
                dilation=tuple(dilation), groups=groups)
    return y.movedim(1, -1) if channels_last else y


def _misread(x: torch.Tensor, weight: torch.Tensor, strides: tuple, dilation: tuple,
             both: tuple, rank: int) -> bool:
    """Whether oneDNN would misread this 1-channel input's channels_last strides: a
    strided axis whose output has length 1 (:func:`_plain_strides`).  Only there: the
    row-major copy makes oneDNN take its plain layout, 3-12x slower for a 1-channel input
    (one thread: EEGNet's (1, 64) Conv2D 21.8 against 5.4 ms forward, a wav2vec-style k10
    s5 Conv1D 30.4 against 2.5; swept: 13400 small geometries outside that condition give
    the copy's outputs and gradients)."""
    for n, k, s, d, p in zip(x.shape[2:], weight.shape[2:], strides, dilation, both):
        if s > 1 and _padding.padded_output_length(n, k, s, d, p, p) == 1:
            return True
    return False


def _plain_strides(x: torch.Tensor) -> torch.Tensor:
    """``x`` with row-major strides, size-1 axes included (used for 1-channel inputs).

    torch 2.13's oneDNN convolution misreads a 1-channel tensor whose strides also read as
    channels_last (``.contiguous()`` keeps those: size-1 axes do not count) when a strided
    output axis has length 1; a fresh row-major copy is always read right.
    """
    expected, step = [], 1
    for n in reversed(x.shape):
        expected.append(step)
        step *= n
    if tuple(reversed(expected)) == x.stride():
        return x
    return torch.empty(x.shape, dtype=x.dtype, device=x.device).copy_(x)


#: :func:`conv_transpose` adds the bias after torch's call where that is faster on CPU
#: (``False``: always fused, as before; benchmarks and tests alternate it).
LATE_BIAS = True


def conv_transpose(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor], *,
                   strides: tuple, dilation: tuple, pads: tuple, out_spatial: tuple,
                   channels_last: bool) -> torch.Tensor:
    """Keras' N-d transposed convolution (N = 1, 2, 3): the adjoint of Keras' convolution
    from ``out_spatial`` (padded by ``pads``) to the spatial shape of ``x``.

    That adjoint is torch's transposed convolution without padding (length
    ``(n - 1) * s + (K - 1) * d + 1`` per axis) cropped by the left padding and cut, or
    extended with zeros, to ``out_spatial``.  torch's own ``padding`` / ``output_padding``
    do that in the convolution when they can (equal cropping on both sides, the rest on the
    right); otherwise the result is narrowed here.

    Args:
        x: ``(batch, *spatial, channels)`` if ``channels_last`` else
            ``(batch, channels, *spatial)``.
        kernel: ``(*kernel_size, filters, channels)`` (Keras' layout).
        bias: ``(filters,)`` or ``None``.
        strides, dilation: one int per spatial axis.
        pads: ``((left, right), ...)`` of the convolution from ``out_spatial``.
        out_spatial: the output's spatial shape.
        channels_last: layout of ``x`` and of the result.

    Returns:
        ``(batch, *out_spatial, filters)`` or ``(batch, filters, *out_spatial)``.
    """
    rank = kernel.dim() - 2
    if rank == 1:  # as 2D over a height-1 axis (see ``conv``)
        axis = 1 if channels_last else 2
        return conv_transpose(x.unsqueeze(axis), kernel.unsqueeze(0), bias,
                              strides=(1, *strides), dilation=(1, *dilation),
                              pads=((0, 0), *pads), out_spatial=(1, *out_spatial),
                              channels_last=channels_last).squeeze(axis)
    if channels_last:
        x = x.movedim(-1, 1)
    weight = kernel.permute(rank + 1, rank, *range(rank)).contiguous()  # (in, filters, *k)
    torch_pad, torch_out_pad, cuts, grow = [], [], [], False
    for n, o, (left, _), k, s, d in zip(x.shape[2:], out_spatial, pads, kernel.shape[:rank],
                                        strides, dilation):
        full = (n - 1) * s + (k - 1) * d + 1
        extra = o + 2 * left - full  # torch's output_padding for padding=left
        # (not an output_padding past the kernel's extent: rows no tap reaches; there
        # torch 2.13's CPU weight gradient of a channels_last input corrupted the heap,
        # e.g. kernel 1, stride 3, output_padding 2 — the zeros are added below instead)
        if 0 <= extra < max(s, d) and (extra == 0 or extra <= (k - 1) * d):
            torch_pad.append(left)
            torch_out_pad.append(extra)
            cuts.append(None)
        else:  # torch's output is longer (narrowed below) or shorter (zeros added below)
            p = max(0, min(left, full - o - left))
            torch_pad.append(p)
            torch_out_pad.append(0)
            cuts.append((left - p, o))
            grow = grow or left - p + o > full - 2 * p
    conv_nd = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[rank - 1]
    if x.shape[1] == 1:
        x = _plain_strides(x)
    # torch 2.13's CPU (oneDNN) transposed convolution costs ~2x more with the bias fused
    # when the kernel overlaps (extent > stride) and torch crops nothing: the "same" 3x3
    # stride-2 upsamplers of U-Nets.  The bias is added afterwards there (bench/README.md,
    # "Transposed convolutions: the bias").
    overlaps = any((k - 1) * d + 1 > s
                   for k, s, d in zip(kernel.shape[:rank], strides, dilation))
    late_bias = grow or (LATE_BIAS and x.is_cpu and max(strides) > 1
                         and overlaps and not any(torch_pad))
    y = conv_nd(x, weight, None if late_bias else bias, stride=tuple(strides),
                padding=tuple(torch_pad), output_padding=tuple(torch_out_pad),
                dilation=tuple(dilation))
    if any(cut is not None for cut in cuts):
        # One pad with negative amounts crops (and zero-extends where torch's output is
        # short): its backward is one copy, where a narrow per axis costs a zero fill and a
        # layout-changing copy each (20% of a 3x3 stride-2 forward+backward on CPU).
        amounts = []
        for axis in reversed(range(rank)):
            start, length = cuts[axis] or (0, y.shape[2 + axis])
            amounts += [-start, start + length - y.shape[2 + axis]]
        y = F.pad(y, amounts)
    if late_bias and bias is not None:
        y = y + bias.view(-1, *([1] * rank))
    return y.movedim(1, -1) if channels_last else y

