"""The pointwise (1x1, stride 1, unpadded, ungrouped) convolution on channels_last data:
oneDNN's 1x1 convolution read through a channels_last view (no copy of the data), what
``nn.Conv2d(c, f, 1)`` runs on the same tensor.

It was one ``F.linear`` GEMM over the channel axis: the same forward numbers, but
``addmm`` first broadcasts the bias into the whole output (a full extra write) and its
backward is two plain GEMMs and a bias sum where oneDNN's 1x1 backward fuses them; on
Xception's entry flow (4x74x74, 128 -> 256) forward+backward the GEMM cost 1.16x the torch
module's time.  Small outputs (fewer than ``LINEAR_BELOW`` elements) keep the GEMM: there
the per-call cost rules, and ``F.linear`` is one op where the convolution needs a weight
copy, two views and oneDNN's setup.  Rank 1 runs as rank 2 with one row (oneDNN's 2D path
is faster than 1D).
``sepconv.functional.conv`` picks it; tested against the reference kernel and tf-keras.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from . import graphs as _graphs
from .reference import _plain_strides


# Output elements below which the GEMM is faster (measured on a 2-core AVX-512 EPYC: tiny
# shapes and 2x16^3x32 -> 32 faster as a GEMM; 8x250x256 -> 256 and larger as oneDNN's).
LINEAR_BELOW = 2 ** 19


def onednn_batch(rows: int) -> Optional[int]:
    """A batch of 16 to 63 that divides ``rows`` (``None`` if none does): a 1x1 convolution
    does not care how its rows are split into batch and space, and torch sends a single-
    threaded 1x1 convolution of batch < 16 to its slow THNN kernel instead of oneDNN's
    (issue 15).  Used here and by ``cpu.py``'s pointwise weight gradient."""
    return next((b for b in range(16, 64) if rows % b == 0), None)


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
    rank = kernel.dim() - 2
    channels, filters = kernel.shape[-2:]
    rows = x.numel() // max(channels, 1)
    if rows * filters < LINEAR_BELOW:
        return F.linear(x, kernel.reshape(channels, filters).t(), bias)
    # (filters, channels, 1, ...): contiguous (a few KiB), or torch's non-oneDNN fallback
    # slow_conv2d, picked for some small shapes, fails in backward (see reference.conv);
    # a module's weight laid out once while it is unchanged where no gradient of it is
    # recorded (graphs.remembered)
    def laid_out():
        return kernel.reshape(channels, filters).t().contiguous()

    weight = _graphs.remembered(kernel if type(kernel) is torch.nn.Parameter else None,
                                "pointwise.conv", (kernel,), laid_out)
    shape = x.shape
    if shape[0] < 16 and x.is_contiguous():
        b = onednn_batch(rows)  # keeps torch on oneDNN
        if b is not None:
            x = x.view(b, 1, rows // b, channels)
            rank = 2
    if rank == 1:
        x = x.unsqueeze(1)
    x = x.movedim(-1, 1)  # a view: oneDNN reads channels_last strides as they are
    if channels == 1:
        x = _plain_strides(x)  # the 1-channel oneDNN trap (see reference._plain_strides)
    if rank == 3:
        y = F.conv3d(x, weight.view(filters, channels, 1, 1, 1), bias)
    else:
        y = F.conv2d(x, weight.view(filters, channels, 1, 1), bias)
    y = y.movedim(1, -1)
    return y.reshape(*shape[:-1], filters)
