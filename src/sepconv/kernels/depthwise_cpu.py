"""Depthwise convolution on channels_last data, kept channels_last (CPU).

torch's depthwise convolution is fast on channels_last memory (oneDNN) and slow on
contiguous NCHW (its native depthwise loop); the reference kernel copies Keras'
``(batch, *spatial, channels)`` input into NCHW and pads it with ``F.pad`` (NCHW again).
Here the convolution pads the equal part of each axis' padding itself, the rest (TensorFlow's
odd element after) is built channels_last (one copy, none for equal padding), and
``F.conv2d`` reads it through a channels_last view, so oneDNN's depthwise kernel runs and
the output comes back already ``(batch, *out_spatial, channels * M)``.  Rank 1 runs as
rank 2 with one row.

``sepconv.functional.depthwise_conv`` picks this for CPU channels_last input with more
than one channel (a 1-channel tensor's strides also read as NCHW: the oneDNN trap the
reference kernel works around).  Tested against the reference kernel and tf-keras.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .. import padding as _padding


#: Inference turns TensorFlow's unequal padding into zero kernel taps where cheaper
#: (:func:`_rest_as_zero_taps`; ``False``: always the padded copy; benchmarks and tests
#: alternate it).
ZERO_TAPS = True


def _rest_as_zero_taps(kernel: torch.Tensor, spatial: tuple, channels: int, strides: tuple,
                       dilation: tuple, both: tuple, rest: tuple) -> tuple:
    """Unequal padding without a padded copy, for inference: an axis padded ``(L, L + r)``
    (TensorFlow's "same" with an odd total) is padded ``(L + r, L + r)`` by the
    convolution itself and the kernel gets ``r`` zero taps in front, which re-aligns every
    window; ``(L + r, L)`` gets them behind.  The windows then read exactly
    TensorFlow's elements with nonzero weights.

    A depthwise convolution is memory-bound, so the extra taps cost less than the padded
    copy of the input while they add at most 3 multiply-adds per input element (MobileNet's
    3x3 stride-2 layer: 1.75): forward 0.75x, a 1D k4 "same" layer 0.67x on one CPU thread
    (bench/README.md).  Above that (a 4x4 stride-1 layer: 9) the copy is cheaper.  Their
    backward is slower than the copy's (oneDNN's depthwise weight gradient), so ``conv``
    takes this only without autograd.  Dilated convolutions keep the copy: oneDNN's
    dilated depthwise convolution with its own padding is slow (k3 dilation 4 causal: 14.1
    against 5.8 ms with the copy).

    The zero taps multiply real inputs, so an infinite input next to a window gives NaN
    there where TensorFlow gives +-inf; finite inputs give TensorFlow's numbers.
    """
    if any(d > 1 for d in dilation):
        return kernel, both, rest
    widen, new_both, new_rest = [], [], []
    for (a, b), m in zip(rest, both):
        r = a + b
        if r and min(a, b) == 0:
            widen.append((r, 0) if b else (0, r))
            new_both.append(m + r)
            new_rest.append((0, 0))
        else:
            widen.append((0, 0))
            new_both.append(m)
            new_rest.append((a, b))
    if not any(t for pair in widen for t in pair):
        return kernel, both, rest
    taps = new_taps = 1
    outputs = inputs = 1
    for k, (front, back), n, (a, b), m, s, d in zip(kernel.shape[:2], widen, spatial, rest,
                                                    both, strides, dilation):
        taps, new_taps = taps * k, new_taps * (k + front + back)
        outputs *= _padding.padded_output_length(n, k, s, d, a + m, b + m)
        inputs *= n
    outputs *= kernel.shape[-1]  # channels * depth_multiplier
    inputs *= channels
    if (new_taps - taps) * outputs > 3 * inputs:
        return kernel, both, rest
    amounts = [0, 0, 0, 0]  # kernel (kh, kw, 1, C*M): its first two axes, last one first
    for front, back in reversed(widen):
        amounts += [front, back]
    return F.pad(kernel, amounts), tuple(new_both), tuple(new_rest)


def conv(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor], *,
         strides: tuple, dilation: tuple, pads: tuple, groups: int,
         channels_last: bool) -> torch.Tensor:
    """A depthwise convolution of rank 1 or 2 on channels_last data, with the reference
    kernel's signature (``sepconv.kernels.reference.conv``).

    Args:
        x: ``(batch, *spatial, channels)``.
        kernel: ``(*kernel_size, 1, channels * depth_multiplier)`` (Keras' grouped layout,
            ``groups == channels``: output channel ``c * M + m`` reads input channel ``c``).
        bias: ``(channels * depth_multiplier,)`` or ``None``.
        strides, dilation: one int per spatial axis.
        pads: ``((before, after), ...)`` per spatial axis.
        groups: the number of channels.
        channels_last: must be True.

    Returns:
        ``(batch, *out_spatial, channels * depth_multiplier)``.
    """
    if not channels_last or kernel.shape[-2] != 1 or x.shape[-1] != groups:
        raise ValueError("depthwise_cpu.conv runs depthwise convolutions on channels_last "
                         "data only")
    rank = kernel.dim() - 2
    if rank == 1:  # one row
        x, kernel = x.unsqueeze(1), kernel.unsqueeze(0)
        strides, dilation = (1,) + tuple(strides), (1,) + tuple(dilation)
        pads = ((0, 0),) + tuple(pads)
    # The equal part of each axis' padding is the convolution's own (no padded copy: on a
    # loaded 2-core machine, zero-filling and copying MobileNet's 112x112x32 input cost 2x
    # the convolution); only the rest (TensorFlow's odd element after) is copied in.
    both = tuple(min(pair) for pair in pads)
    rest = tuple((a - m, b - m) for (a, b), m in zip(pads, both))
    if ZERO_TAPS and any(p for pair in rest for p in pair) and not (
            torch.is_grad_enabled() and (x.requires_grad or kernel.requires_grad)):
        kernel, both, rest = _rest_as_zero_taps(kernel, x.shape[1:-1], groups, strides,
                                                dilation, both, rest)
    if any(p for pair in rest for p in pair):
        (top, bottom), (left, right) = rest
        # one op (as nn.Conv2d users pad): on a loaded machine each extra pass (zeroing
        # only the border, say) cost more in page faults and thread wake-ups than it saved
        x = F.pad(x, (0, 0, left, right, top, bottom))
    else:
        x = x.contiguous()
    weight = kernel.permute(3, 2, 0, 1)  # (C*M, 1, kh, kw)
    dtype = x.dtype
    if dtype in (torch.bfloat16, torch.float16) and kernel.shape[-1] != groups and \
            any(s > 1 for s in strides):
        # torch 2.13's CPU channels_last 16-bit grouped convolution with a multiplier and
        # a stride reads garbage on narrow inputs (a (1, 3, 4, 16) bfloat16 input, kernel
        # 1x3, multiplier 2, strides (1, 2): outputs of 6e27): computed in float32 and
        # rounded once, which is what oneDNN's 16-bit kernel does (float32 sums)
        x, weight = x.float(), weight.float()
        bias = bias.float() if bias is not None else None
    y = F.conv2d(x.movedim(-1, 1), weight, bias, stride=tuple(strides), padding=both,
                 dilation=tuple(dilation), groups=groups).movedim(1, -1).to(dtype)
    return y.squeeze(1) if rank == 1 else y
