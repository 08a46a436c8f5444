"""Upsampling by whole factors as TensorFlow's ``tf.image.resize`` computes it.

tf-keras' ``UpSampling2D(interpolation=...)`` calls ``tf.image.resize`` (v2: half-pixel
centres, ``antialias=False``) with the size multiplied by whole factors.  Every method is
separable, so each axis gets a 1-D weight matrix ``W`` of shape ``(in * factor, in)``
computed here the way TensorFlow's C++ kernels compute their weights (in float32, with
their rounding), and the resize is ``W_rows @ image @ W_cols.T``.  TensorFlow's gradients
of these ops are the adjoints of the same weights, so autograd through the matrices gives
TensorFlow's gradients too.

- ``nearest``: ``ResizeNearestNeighbor`` with half-pixel centres: source
  ``floor((i + 0.5) / factor) = i // factor``, i.e. each element repeated ``factor`` times.
- ``area``: ``ResizeArea``; at whole upsampling factors each output pixel lies inside one
  input pixel, so it equals ``nearest``.  TensorFlow has no gradient for it; nearest's is
  used.
- ``bilinear``: ``ResizeBilinear``: source ``(i + 0.5) * scale - 0.5`` (float32
  ``scale = in / out``), the two neighbours clamped to the edge.
- ``bicubic``: ``ResizeBicubic`` with half-pixel centres: Keys' cubic with coefficient
  ``a = -0.5``, looked up in TensorFlow's 1025-entry table at ``lrint(delta * 1024)`` (the
  exact formula differs by up to 8e-4); taps outside the image get weight 0 and the rest
  are renormalised.  (``a = -0.75`` and edge repetition are the legacy v1 op, which tf-keras
  2.21 does not call.)
- ``gaussian``, ``lanczos3``, ``lanczos5``, ``mitchellcubic``: ``ScaleAndTranslate``:
  sample point ``(i + 0.5) / scale``, kernel taps at ``j + 0.5`` within the kernel's radius,
  clamped to the image, normalised to sum 1.  Gaussian (sigma 0.5, radius 1.5) and Mitchell
  do not interpolate, so they blur even at factor 1.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import torch

METHODS = ("nearest", "bilinear", "bicubic", "area", "gaussian", "lanczos3", "lanczos5",
           "mitchellcubic")

_F = np.float32
_TABLE_SIZE = 1024


@functools.lru_cache(maxsize=None)
def _cubic_table(a: float) -> np.ndarray:
    """TensorFlow's ``InitCoeffsTable(a)``: ``table[i] = (k(x), k(x + 1))``, ``x = i / 1024``,
    computed in double and stored as float."""
    table = np.zeros((_TABLE_SIZE + 1, 2), _F)
    for i in range(_TABLE_SIZE + 1):
        x = float(_F(i * 1.0 / _TABLE_SIZE))
        table[i, 0] = ((a + 2) * x - (a + 3)) * x * x + 1
        x = float(_F(x + 1.0))
        table[i, 1] = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return table


def _nearest(n_in: int, factor: int) -> np.ndarray:
    w = np.zeros((n_in * factor, n_in), _F)
    w[np.arange(n_in * factor), np.arange(n_in * factor) // factor] = 1
    return w


def _bilinear(n_in: int, factor: int) -> np.ndarray:
    n_out = n_in * factor
    scale = _F(n_in) / _F(n_out)
    w = np.zeros((n_out, n_in), _F)
    for i in range(n_out):
        src = (_F(i) + _F(0.5)) * scale - _F(0.5)
        floor = math.floor(src)
        lerp = _F(src - _F(floor))
        lower, upper = max(floor, 0), min(math.ceil(src), n_in - 1)
        w[i, lower] += _F(1) - lerp
        w[i, upper] += lerp
    return w


def _bicubic(n_in: int, factor: int) -> np.ndarray:
    n_out = n_in * factor
    scale = _F(n_in) / _F(n_out)
    table = _cubic_table(-0.5)
    w = np.zeros((n_out, n_in), _F)
    for i in range(n_out):
        src = (_F(i) + _F(0.5)) * scale - _F(0.5)
        floor = math.floor(src)
        delta = _F(src - _F(floor))
        offset = int(np.rint(delta * _F(_TABLE_SIZE)))  # lrintf: half to even
        taps = (table[offset, 1], table[offset, 0], table[_TABLE_SIZE - offset, 0],
                table[_TABLE_SIZE - offset, 1])
        weights = [_F(t) if 0 <= floor - 1 + k < n_in else _F(0) for k, t in enumerate(taps)]
        total = _F(_F(_F(weights[0] + weights[1]) + weights[2]) + weights[3])
        if abs(total) >= 1000 * np.finfo(_F).tiny:
            inv = _F(_F(1) / total)
            weights = [_F(v * inv) for v in weights]
        for k, v in enumerate(weights):
            j = min(max(floor - 1 + k, 0), n_in - 1)
            w[i, j] += v
    return w


def _lanczos(radius: float):
    def kernel(x):
        x = abs(_F(x))
        if x > radius:
            return _F(0)
        if x <= _F(1e-3):
            return _F(1)
        pi = _F(3.14159265359)
        return _F(_F(_F(_F(radius) * np.sin(_F(pi * x))) * np.sin(_F(_F(pi * x) / _F(radius))))
                  / _F(_F(pi * pi) * x * x))
    return kernel, radius


def _gaussian():
    sigma, radius = _F(0.5), 1.5

    def kernel(x):
        x = abs(_F(x))
        if x >= radius:
            return _F(0)
        return _F(np.exp(-float(x) * float(x) / (2.0 * float(sigma) * float(sigma))))
    return kernel, radius


def _mitchell():
    def kernel(x):
        x = abs(_F(x))
        if x >= 2:
            return _F(0)
        if x >= 1:
            return _F(_F(_F(_F(_F(-7.0 / 18.0) * x + _F(2)) * x) - _F(10.0 / 3.0)) * x
                      + _F(16.0 / 9.0))
        return _F(_F(_F(_F(_F(7.0 / 6.0) * x) - _F(2)) * x) * x + _F(8.0 / 9.0))
    return kernel, 2.0


_SCALE_AND_TRANSLATE = {"lanczos3": lambda: _lanczos(3.0), "lanczos5": lambda: _lanczos(5.0),
                        "gaussian": _gaussian, "mitchellcubic": _mitchell}


def _scale_and_translate(n_in: int, factor: int, method: str) -> np.ndarray:
    kernel, radius = _SCALE_AND_TRANSLATE[method]()
    n_out = n_in * factor
    scale = _F(_F(n_out) / _F(n_in))
    inv_scale = _F(1.0 / float(scale))
    w = np.zeros((n_out, n_in), _F)
    for i in range(n_out):
        sample = _F(_F(i) + _F(0.5)) * inv_scale
        if sample < 0 or sample > n_in:
            continue
        start = math.ceil(float(_F(sample - _F(radius)) - _F(0.5)))
        end = math.floor(float(_F(sample + _F(radius)) - _F(0.5)))
        start = min(max(start, 0), n_in - 1)
        end = min(max(end, 0), n_in - 1) + 1
        taps = [kernel(_F(_F(j) + _F(0.5)) - sample) for j in range(start, end)]
        total = _F(0)
        for t in taps:
            total = _F(total + t)
        if abs(total) >= 1000 * np.finfo(_F).tiny:
            inv = _F(_F(1) / total)
            w[i, start:end] = [_F(t * inv) for t in taps]
    return w


@functools.lru_cache(maxsize=256)
def weight_matrix(n_in: int, factor: int, method: str) -> np.ndarray:
    """The ``(n_in * factor, n_in)`` float32 matrix TensorFlow's ``method`` applies to one
    axis of length ``n_in`` upsampled by ``factor``."""
    if method in ("nearest", "area"):
        return _nearest(n_in, factor)
    if method == "bilinear":
        return _bilinear(n_in, factor)
    if method == "bicubic":
        return _bicubic(n_in, factor)
    return _scale_and_translate(n_in, factor, method)


def upsample(x: torch.Tensor, size: Sequence[int], method: str,
             channels_last: bool) -> torch.Tensor:
    """``x``: ``(batch, *spatial, channels)`` or ``(batch, channels, *spatial)``; each spatial
    axis upsampled by its whole factor in ``size`` with ``method`` (arguments validated by
    :func:`sepconv.functional.upsample`)."""
    first = 1 if channels_last else 2
    for axis, factor in enumerate(size, start=first):
        if factor == 1 and method in ("nearest", "area", "bilinear"):
            continue  # these are the identity at factor 1 (bicubic is not: TF's table)
        if method in ("nearest", "area"):
            x = torch.repeat_interleave(x, factor, dim=axis)
            continue
        w = torch.from_numpy(weight_matrix(int(x.shape[axis]), factor, method))
        w = w.to(device=x.device, dtype=x.dtype)
        x = torch.movedim(torch.tensordot(x, w, dims=([axis], [1])), -1, axis)
    return x
