"""A float64 numpy separable 1D convolution, written from TensorFlow's documented rules.

It shares no code with sepconv (not even ``sepconv.padding``), so tests that compare the
layer with it can fail.
"""

from __future__ import annotations

import math

import numpy as np


def separable_conv1d(x, depthwise, pointwise, bias=None, strides=1, padding="valid",
                     dilation_rate=1, data_format="channels_last"):
    """``x``: ``(batch, steps, channels)`` (or channels_first); Keras-shaped weights."""
    x = np.asarray(x, np.float64)
    depthwise = np.asarray(depthwise, np.float64)
    pointwise = np.asarray(pointwise, np.float64).reshape(-1, pointwise.shape[-1])
    if data_format == "channels_first":
        x = x.transpose(0, 2, 1)
    k, c, m = depthwise.shape
    batch, length, _ = x.shape
    span = (k - 1) * dilation_rate + 1
    padding = padding.lower()
    if padding == "valid":
        left = right = 0
    elif padding == "causal":
        left, right = span - 1, 0
    else:  # same: TensorFlow puts the odd element on the right
        out = math.ceil(length / strides)
        total = max((out - 1) * strides + span - length, 0)
        left, right = total // 2, total - total // 2
    xp = np.concatenate([np.zeros((batch, left, c)), x, np.zeros((batch, right, c))], axis=1)
    out_len = (xp.shape[1] - span) // strides + 1
    assert out_len > 0
    z = np.zeros((batch, out_len, c * m))
    for t in range(out_len):
        for j in range(k):
            tap = xp[:, t * strides + j * dilation_rate, :]          # (batch, c)
            # depthwise channel c*m + mm, as TensorFlow orders it
            z[:, t, :] += (tap[:, :, None] * depthwise[j][None]).reshape(batch, c * m)
    y = z @ pointwise
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    if data_format == "channels_first":
        y = y.transpose(0, 2, 1)
    return y
