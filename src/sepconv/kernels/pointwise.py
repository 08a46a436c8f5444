"""The pointwise (1x1, stride 1, unpadded, ungrouped) convolution on channels_last data:
one GEMM over the channel axis (``F.linear``), no layout copies.

The reference kernel moves channels first, copies to row-major and runs a 1x1
``F.convNd``; on channels_last data (the separable layers' second step, Keras' default
layout) a matrix product on the last axis is the same sum without the copies.
``sepconv.functional.conv`` picks it; tested against the reference kernel and tf-keras.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def conv(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor], *,
         strides: tuple, dilation: tuple, pads: tuple, groups: int,
         channels_last: bool) -> torch.Tensor:
    """The reference kernel's signature (``sepconv.kernels.reference.conv``).

    Args:
        x: ``(batch, *spatial, channels)``.
        kernel: ``(1, ..., 1, channels, filters)`` (Keras' layout).
        bias: ``(filters,)`` or ``None``.
        strides, dilation, pads, groups: all trivial (ones, zeros, 1).
        channels_last: must be True.

    Returns:
        ``(batch, *spatial, filters)``.
    """
    if not channels_last or groups != 1 or any(k != 1 for k in kernel.shape[:-2]) \
            or any(s != 1 for s in strides) or any(p for pair in pads for p in pair):
        raise ValueError("pointwise.conv runs unpadded, stride-1, ungrouped 1x1 "
                         "convolutions on channels_last data only")
    weight = kernel.reshape(kernel.shape[-2], kernel.shape[-1]).t()  # (filters, channels)
    return F.linear(x, weight, bias)
