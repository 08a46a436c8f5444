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
- ``area``: ``ResizeArea`` (``tf.image.resize`` ignores ``antialias`` for it): output pixel
  ``i`` averages the input over ``[i * scale, (i + 1) * scale)`` (float32 ``scale = in /
  out``, no half-pixel shift), each input pixel ``j`` from ``floor`` to ``ceil`` of that
  window weighted by its overlap (TensorFlow's float32 arithmetic; an index past the edge,
  which float rounding can reach, reads the last pixel), divided by ``scale``.  At whole
  upsampling factors each output pixel lies inside one input pixel: ``UpSampling2D``
  repeats (``nearest``, equal to float rounding).  TensorFlow has no gradient for it; the
  adjoint of the same weights is used.
- ``bilinear``: ``ResizeBilinear``: source ``(i + 0.5) * scale - 0.5`` (float32
  ``scale = in / out``), the two neighbours clamped to the edge.
- ``bicubic``: ``ResizeBicubic`` with half-pixel centres: Keys' cubic with coefficient
  ``a = -0.5``, looked up in TensorFlow's 1025-entry table at ``lrint(delta * 1024)`` (the
  exact formula's weights differ from the table's by up to 5.4e-4 at factors 1-8); taps outside the image get weight 0 and the rest
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
from typing import Sequence, Tuple

import numpy as np
import torch

METHODS = ("nearest", "bilinear", "bicubic", "area", "gaussian", "lanczos3", "lanczos5",
           "mitchellcubic")

_F = np.float32
_TABLE_SIZE = 1024
Band = Tuple[np.ndarray, np.ndarray]


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


def _nearest(n_in: int, n_out: int) -> Band:
    """``ResizeNearestNeighbor`` with half-pixel centres: source ``floor((i + 0.5) *
    scale)`` (float32 ``scale = in / out``), at most ``in - 1``; ``i // factor`` at a
    whole factor."""
    scale = _F(n_in) / _F(n_out)
    src = np.floor((np.arange(n_out, dtype=_F) + _F(0.5)) * scale).astype(np.int64)
    return np.clip(src, 0, n_in - 1)[:, None], np.ones((n_out, 1), _F)


def _source(n_in: int, n_out: int) -> np.ndarray:
    """TensorFlow's ``HalfPixelScaler``: ``(i + 0.5) * scale - 0.5`` in float32,
    ``scale = in / out``."""
    scale = _F(n_in) / _F(n_out)
    return (np.arange(n_out, dtype=_F) + _F(0.5)) * scale - _F(0.5)


def _bilinear(n_in: int, n_out: int) -> Band:
    src = _source(n_in, n_out)
    floor = np.floor(src)
    lerp = (src - floor).astype(_F)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(src).astype(np.int64), n_in - 1)
    return np.stack([lower, upper], 1), np.stack([_F(1) - lerp, lerp], 1)


def _bicubic(n_in: int, n_out: int) -> Band:
    src = _source(n_in, n_out)
    floor_f = np.floor(src)
    floor = floor_f.astype(np.int64)
    delta = (src - floor_f).astype(_F)
    offset = np.rint(delta * _F(_TABLE_SIZE)).astype(np.int64)  # lrintf: half to even
    table = _cubic_table(-0.5)
    taps = np.stack([table[offset, 1], table[offset, 0], table[_TABLE_SIZE - offset, 0],
                     table[_TABLE_SIZE - offset, 1]], 1)
    index = floor[:, None] + np.arange(-1, 3)
    # Taps outside the image weigh 0 and the others are renormalised (v2 behaviour).
    taps = np.where((index >= 0) & (index < n_in), taps, _F(0)).astype(_F)
    total = ((taps[:, 0] + taps[:, 1]) + taps[:, 2]) + taps[:, 3]
    ok = np.abs(total) >= 1000 * np.finfo(_F).tiny
    inv = np.where(ok, _F(1) / np.where(ok, total, _F(1)), _F(1)).astype(_F)
    return np.clip(index, 0, n_in - 1), (taps * inv[:, None]).astype(_F)


def _lanczos(radius: float):
    def kernel(x):
        pi = _F(3.14159265359)
        safe = np.where(x <= _F(1e-3), _F(1), x)
        value = (_F(radius) * np.sin(pi * safe)) * np.sin((pi * safe) / _F(radius)) / \
            ((pi * pi) * safe * safe)
        return np.where(x > radius, _F(0), np.where(x <= _F(1e-3), _F(1), value))
    return kernel, radius


def _gaussian():
    sigma, radius = 0.5, 1.5

    def kernel(x):
        value = np.exp((-x * x).astype(np.float64) / (2.0 * sigma * sigma)).astype(_F)
        return np.where(x >= radius, _F(0), value)
    return kernel, radius


def _mitchell():
    def kernel(x):
        far = ((_F(-7.0 / 18.0) * x + _F(2)) * x - _F(10.0 / 3.0)) * x + _F(16.0 / 9.0)
        near = ((_F(7.0 / 6.0) * x - _F(2)) * x) * x + _F(8.0 / 9.0)
        return np.where(x >= 2, _F(0), np.where(x >= 1, far, near))
    return kernel, 2.0


def _area(n_in: int, n_out: int) -> Band:
    """``ResizeArea``'s weights (``resize_area_op.cc``): output ``i`` covers ``[i * scale,
    (i + 1) * scale)``; input ``j`` in ``[floor(start), ceil(end))`` weighs
    ``min(j + 1, end) - max(j, start)`` as TensorFlow computes it in float32, the whole
    divided by ``scale`` (TensorFlow divides by ``rows_scale * cols_scale`` once)."""
    scale = _F(n_in) / _F(n_out)
    start = np.arange(n_out, dtype=_F) * scale
    end = np.arange(1, n_out + 1, dtype=_F) * scale
    first = np.floor(start).astype(np.int64)
    span = int((np.ceil(end).astype(np.int64) - first).max())
    index = first[:, None] + np.arange(span)
    inside = index < np.ceil(end).astype(np.int64)[:, None]
    j = index.astype(_F)
    before = j < start[:, None]
    past = j + _F(1) > end[:, None]
    taps = np.where(before, np.where(past, scale, (j + _F(1)) - start[:, None]),
                    np.where(past, end[:, None] - j, _F(1))).astype(_F)
    taps = np.where(inside, taps, _F(0)).astype(_F)
    return np.minimum(index, n_in - 1), (taps / scale).astype(_F)


_SCALE_AND_TRANSLATE = {"lanczos3": lambda: _lanczos(3.0), "lanczos5": lambda: _lanczos(5.0),
                        "gaussian": _gaussian, "mitchellcubic": _mitchell}


def _scale_and_translate(n_in: int, n_out: int, method: str) -> Band:
    """TensorFlow's ``ComputeSpansCore`` without antialiasing (``tf.image.resize``'s
    default: the kernel keeps its width when downsampling too)."""
    kernel, radius = _SCALE_AND_TRANSLATE[method]()
    scale = _F(n_out) / _F(n_in)
    inv_scale = _F(1.0 / float(scale))
    span = min(2 * math.ceil(radius) + 1, n_in)
    sample = (np.arange(n_out, dtype=_F) + _F(0.5)) * inv_scale
    start = np.ceil((sample - _F(radius)) - _F(0.5)).astype(np.int64)
    end = np.floor((sample + _F(radius)) - _F(0.5)).astype(np.int64)
    start = np.clip(start, 0, n_in - 1)
    end = np.clip(end, 0, n_in - 1) + 1
    index = start[:, None] + np.arange(span)
    inside = index < end[:, None]
    position = (index.astype(_F) + _F(0.5)) - sample[:, None]
    taps = np.where(inside, kernel(np.abs(position).astype(_F)), _F(0)).astype(_F)
    total = np.zeros(n_out, _F)
    for k in range(span):  # TensorFlow's summation order
        total = (total + taps[:, k]).astype(_F)
    ok = np.abs(total) >= 1000 * np.finfo(_F).tiny
    inv = np.where(ok, _F(1) / np.where(ok, total, _F(1)), _F(0)).astype(_F)
    return np.minimum(index, n_in - 1), (taps * inv[:, None]).astype(_F)


@functools.lru_cache(maxsize=256)
def band(n_in: int, n_out: int, method: str) -> Band:
    """TensorFlow's weights for one axis of length ``n_in`` resized to ``n_out``, as
    ``(index, weight)``, both ``(n_out, taps)``: output ``i`` is
    ``sum_k weight[i, k] * input[index[i, k]]`` (float32 weights)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if method == "nearest":
            return _nearest(n_in, n_out)
        if method == "area":
            return _area(n_in, n_out)
        if method == "bilinear":
            return _bilinear(n_in, n_out)
        if method == "bicubic":
            return _bicubic(n_in, n_out)
        return _scale_and_translate(n_in, n_out, method)


@functools.lru_cache(maxsize=256)
def weight_matrix(n_in: int, n_out: int, method: str) -> np.ndarray:
    """The same weights as a dense ``(n_out, n_in)`` float32 matrix."""
    index, weight = band(n_in, n_out, method)
    w = np.zeros((n_out, n_in), _F)
    np.add.at(w, (np.arange(n_out)[:, None].repeat(index.shape[1], 1), index), weight)
    return w


def upsample(x: torch.Tensor, size: Sequence[int], method: str,
             channels_last: bool) -> torch.Tensor:
    """``x``: ``(batch, *spatial, channels)`` or ``(batch, channels, *spatial)``; each spatial
    axis upsampled by its whole factor in ``size`` with ``method`` (arguments validated by
    :func:`sepconv.functional.upsample`).  Nearest and area: one expand + reshape copy;
    the others: one matmul per axis with TensorFlow's weights (autograd's gradient is the
    transposed product, TensorFlow's scatter-add of the same weights).  Half-precision inputs are weighted in float32, as TensorFlow does, then cast back."""
    first = 1 if channels_last else 2
    if method in ("nearest", "area"):
        return repeat(x, size, first)
    if x.dtype in (torch.float16, torch.bfloat16):
        return upsample(x.float(), size, method, channels_last).to(x.dtype)
    for axis, factor in enumerate(size, start=first):
        if factor == 1 and method in ("bilinear", "bicubic"):
            continue  # the identity at factor 1 (TF's bicubic table too: weights 0, 1, 0, 0)
        x = apply_axis(x, axis, int(x.shape[axis]) * factor, method)
    return x.contiguous()


@torch.library.custom_op("sepconv::resize_weights", mutates_args=())
def _weights_op(n_in: int, n_out: int, method: str) -> torch.Tensor:
    """:func:`weight_matrix` as an op torch.compile does not trace into (numpy's calls
    cannot be traced): it runs when the compiled graph runs."""
    return torch.from_numpy(weight_matrix(n_in, n_out, method)).clone()


@_weights_op.register_fake
def _(n_in: int, n_out: int, method: str) -> torch.Tensor:
    return torch.empty((n_out, n_in), dtype=torch.float32)


def _weights(n_in: int, n_out: int, method: str) -> torch.Tensor:
    """TensorFlow's weights as a ``(n_out, n_in)`` float32 tensor: numpy's (cached) in
    eager mode and under torch.export (a constant of the exported graph), the op under
    torch.compile."""
    if torch.compiler.is_compiling() and not torch.compiler.is_exporting():
        return _weights_op(n_in, n_out, method)
    return torch.from_numpy(weight_matrix(n_in, n_out, method))


def apply_axis(x: torch.Tensor, axis: int, n_out: int, method: str) -> torch.Tensor:
    """``W`` applied along ``axis`` as one 2-D matmul (the axis moved last): TensorFlow's
    weights in a dense ``(n_out, n)`` matrix, mostly zeros.  It costs ``n``
    multiply-adds per output where TensorFlow's loops cost 2 to 11, traded for one BLAS
    call; a broadcast batched matmul was 100x slower in its backward here."""
    n = int(x.shape[axis])
    w = _weights(n, n_out, method).to(device=x.device, dtype=x.dtype)
    moved = torch.movedim(x, axis, -1)
    y = moved.reshape(-1, n) @ w.t()
    return torch.movedim(y.reshape(*moved.shape[:-1], n_out), -1, axis)


def repeat(x: torch.Tensor, size: Sequence[int], first: int) -> torch.Tensor:
    """Each of the spatial axes ``first, first + 1, ...`` repeated element-wise by its factor
    (``np.repeat``), in one copy; the gradient sums over the repeats."""
    view, expanded, final = [], [], []
    for dim, n in enumerate(x.shape):
        view.append(n)
        expanded.append(n)
        final.append(n)
        if first <= dim < first + len(size):
            view.append(1)
            expanded.append(size[dim - first])
            final[-1] = n * size[dim - first]
    return x.reshape(view).expand(expanded).reshape(final)
