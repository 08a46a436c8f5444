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
    left, right = tf_pads(length, k, strides, dilation_rate, padding.lower())
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


def tf_pads(length, k, s, d, padding):
    """TensorFlow's (left, right) padding of one axis: none for "valid", ``span - 1`` on
    the left for "causal", for "same" the smaller half on the left."""
    span = (k - 1) * d + 1
    if padding == "valid":
        return 0, 0
    if padding == "causal":
        return span - 1, 0
    out = math.ceil(length / s)
    total = max((out - 1) * s + span - length, 0)
    return total // 2, total - total // 2


def conv(x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1, groups=1,
         data_format="channels_last"):
    """Keras' N-d convolution by explicit loops over output positions and kernel taps.

    ``x``: ``(batch, *spatial, channels)`` (or channels_first); ``kernel``:
    ``(*kernel_size, channels // groups, filters)``; TensorFlow's padding per axis.
    """
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    rank = kernel.ndim - 2
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    s = (strides,) * rank if np.isscalar(strides) else tuple(strides)
    d = (dilation_rate,) * rank if np.isscalar(dilation_rate) else tuple(dilation_rate)
    ks, cin, filters = kernel.shape[:rank], kernel.shape[-2], kernel.shape[-1]
    pads = [tf_pads(n, k, si, di, padding.lower())
            for n, k, si, di in zip(x.shape[1:-1], ks, s, d)]
    xp = np.pad(x, [(0, 0)] + pads + [(0, 0)])
    out = [(n - ((k - 1) * di + 1)) // si + 1
           for n, k, si, di in zip(xp.shape[1:-1], ks, s, d)]
    assert min(out) > 0
    fpg = filters // groups
    y = np.zeros((x.shape[0], *out, filters))
    for pos in np.ndindex(*out):
        for tap in np.ndindex(*ks):
            idx = tuple(p * si + t * di for p, t, si, di in zip(pos, tap, s, d))
            v = xp[(slice(None),) + idx]                               # (batch, channels)
            for g in range(groups):
                y[(slice(None),) + pos + (slice(g * fpg, (g + 1) * fpg),)] += \
                    v[:, g * cin:(g + 1) * cin] @ kernel[tap][:, g * fpg:(g + 1) * fpg]
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    if data_format == "channels_first":
        y = np.moveaxis(y, -1, 1)
    return y
