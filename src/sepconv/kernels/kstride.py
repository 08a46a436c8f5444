"""Transposed convolutions whose kernel equals their stride, as one GEMM and a pixel shuffle.

With ``kernel_size == strides`` on every axis (U-Net's 2x2 stride-2 ``Conv2DTranspose``,
the k = s upsamplers of audio decoders), dilation 1 and no cropping (``"valid"`` or
``"same"``, output = input * stride), every output pixel receives exactly one tap: output
pixel ``(h * kh + i, w * kw + j)`` is ``x[h, w] @ kernel[i, j]^T``.  So the whole layer is
one matrix product of the ``(pixels, channels)`` input with the kernel as it lies in Keras'
layout, ``(kh * kw * filters, channels)`` (its transpose), the bias in that product, then
the pixels' ``kh x kw`` blocks shuffled into place (one copy; none for 1D channels_last,
whose product is already the output).  The backward is the same in reverse: the output
gradient unshuffled into ``G`` (``(pixels, kh * kw * filters)``, one copy), then
``dX = G @ W`` and ``dW = G^T @ X`` (already Keras' kernel layout), the bias gradient a
column sum.  channels_first data run the same products per sample (``W @ X[n]``).

oneDNN's transposed convolution (the reference kernel) costs more here in training: the
one-thread A/B (``bench/kstride_ab.py``, bench/README.md "Transposed convolutions with
kernel == stride") measured forward+backward 0.64-0.90 of oneDNN's for U-Net's 2x2 and a
4x4 (channels_last, 0.85-0.96 of tf-keras 2.21's where oneDNN was 1.03-1.41) and
0.48-0.83 for 1D k = s = 2, 4, 8 (0.80-0.91 of tf-keras'; also below kernels/gemm1d.py's
phase GEMMs), and the channels_first forward 0.76-0.94.  :func:`takes` says where
``sepconv.functional.conv_transpose`` picks it (before gemm1d); ``ENABLED = False``
restores the reference kernel everywhere.  Under
``create_graph=True`` the backward returns the reference composition's differentiable
gradients (double backward).  Tested against the reference kernel and tf-keras in
tests/test_kstride.py.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from . import graphs as _graphs
from . import reference as _reference
from .gemm1d import linear

#: The switch :func:`takes` reads (``False``: the reference kernel everywhere, as before).
ENABLED = True
#: Where the rule takes this path, ``(rank, channels_last)`` pairs measured faster on one
#: thread (bench/kstride_ab.py): while autograd records (the GEMM backward), and in
#: inference (the GEMM forward).  channels_last inference and channels_first training
#: keep oneDNN's (1.0-1.15x and 1.0-1.4x there: its forward writes the shuffled output
#: directly; the channels_first unshuffle is a strided gather).
TRAIN_LAYOUTS = {(1, True), (2, True)}
INFERENCE_LAYOUTS = {(1, False), (2, False)}
#: The forward of the layouts here is oneDNN's (the reference kernel's) also under
#: autograd: 2D channels_last, where the GEMM's output needs a shuffle oneDNN avoids.
REFERENCE_FORWARD = {(2, True), (3, True)}

_DTYPES = (torch.float32, torch.float64)


def fits(x: torch.Tensor, kernel: torch.Tensor, strides: tuple, dilation: tuple,
         pads: tuple, out_spatial: tuple, channels_last: bool) -> bool:
    """Whether this path computes the transposed convolution at all: kernel == stride and
    dilation 1 on every axis, no padding, output = input * stride."""
    rank = kernel.dim() - 2
    spatial = x.shape[1:1 + rank] if channels_last else x.shape[2:]
    return all(k == s and d == 1 and p == (0, 0) and o == n * s
               for k, s, d, p, o, n in zip(kernel.shape[:rank], strides, dilation, pads,
                                           out_spatial, spatial))


def takes(x: torch.Tensor, kernel: torch.Tensor, strides: tuple, dilation: tuple,
          pads: tuple, out_spatial: tuple, channels_last: bool) -> bool:
    """Whether ``sepconv.functional.conv_transpose`` runs this path: CPU float32 / float64
    data and kernel, a stride >= 2, :func:`fits`, a layout in :data:`TRAIN_LAYOUTS` where
    autograd records, in :data:`INFERENCE_LAYOUTS` where not; not while exporting,
    tracing, compiling, under torch.func transforms or CPU autocast (the graph must hold
    standard ops there)."""
    rank = kernel.dim() - 2
    recording = torch.is_grad_enabled() and (x.requires_grad or kernel.requires_grad)
    layouts = TRAIN_LAYOUTS if recording else INFERENCE_LAYOUTS
    if not ENABLED or not x.is_cpu or x.dtype not in _DTYPES or kernel.dtype != x.dtype \
            or (rank, channels_last) not in layouts or min(strides) < 2:
        return False
    if _graphs.standard_ops_wanted():  # (first: export's symbolic sizes are not compared)
        return False
    return fits(x, kernel, strides, dilation, pads, out_spatial, channels_last)


def conv_transpose(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor], *,
                   strides: tuple, dilation: tuple, pads: tuple, out_spatial: tuple,
                   channels_last: bool) -> torch.Tensor:
    """The reference kernel's ``conv_transpose`` where :func:`fits` (same arguments): one
    GEMM and a pixel shuffle, the backward by hand where autograd records.

    Args:
        x: ``(batch, *spatial, channels)`` if ``channels_last`` else
            ``(batch, channels, *spatial)``.
        kernel: ``(*kernel_size, filters, channels)`` (Keras' layout).
        bias: ``(filters,)`` or ``None``.
        strides, dilation, pads, out_spatial: as the reference kernel's; must satisfy
            :func:`fits`.
        channels_last: layout of ``x`` and of the result.

    Returns:
        ``(batch, *out_spatial, filters)`` or ``(batch, filters, *out_spatial)``.
    """
    if not fits(x, kernel, strides, dilation, pads, out_spatial, channels_last):
        raise ValueError("kstride.conv_transpose runs transposed convolutions whose kernel "
                         "equals their stride (dilation 1, output = input * stride) only")
    if bias is not None and bias.dtype != x.dtype:
        return _reference.conv_transpose(x, kernel, bias, strides=strides,
                                         dilation=dilation, pads=pads,
                                         out_spatial=out_spatial,
                                         channels_last=channels_last)
    if torch.is_grad_enabled() and (x.requires_grad or kernel.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _KernelStride.apply(x, kernel, bias, channels_last)
    return _forward(x, kernel, bias, channels_last)


def _reference_call(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor],
                    channels_last: bool) -> torch.Tensor:
    """The reference kernel on the same geometry (kernel == stride, no padding)."""
    rank = kernel.dim() - 2
    ksize = tuple(kernel.shape[:rank])
    spatial = x.shape[1:1 + rank] if channels_last else x.shape[2:]
    return _reference.conv_transpose(
        x, kernel, bias, strides=ksize, dilation=(1,) * rank, pads=((0, 0),) * rank,
        out_spatial=tuple(s * k for s, k in zip(spatial, ksize)),
        channels_last=channels_last)


def _shuffle_order(rank: int, channels_last: bool) -> tuple:
    """The permutation of the product ``(batch, *spatial, *k, filters)`` (channels_last)
    or ``(batch, *k, filters, *spatial)`` (channels_first) into the output's axes
    ``(batch, s1, k1, s2, k2, ..., filters)`` / ``(batch, filters, s1, k1, ...)``."""
    if channels_last:  # spatial at 1..rank, taps at rank+1..2rank, filters last
        inner = [a for i in range(rank) for a in (1 + i, 1 + rank + i)]
        return (0, *inner, 1 + 2 * rank)
    # taps at 1..rank, filters at rank+1, spatial at rank+2..2rank+1
    inner = [a for i in range(rank) for a in (rank + 2 + i, 1 + i)]
    return (0, rank + 1, *inner)


def _forward(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor],
             channels_last: bool) -> torch.Tensor:
    rank = kernel.dim() - 2
    ksize, (f, c) = tuple(kernel.shape[:rank]), kernel.shape[rank:]
    taps = math.prod(ksize)
    w = kernel.reshape(taps * f, c)
    n = x.shape[0]
    if channels_last:
        spatial = tuple(x.shape[1:1 + rank])
        b = None if bias is None else bias.repeat(taps)
        z = linear(x.reshape(-1, c), w.t(), b).view(n, *spatial, *ksize, f)
    else:
        spatial = tuple(x.shape[2:])
        xs = x.reshape(n, c, -1)
        if bias is None:
            z = torch.matmul(w, xs)
        else:
            z = torch.baddbmm(bias.repeat(taps).view(1, -1, 1), w.expand(n, -1, -1), xs)
        z = z.view(n, *ksize, f, *spatial)
    out = [sz * k for sz, k in zip(spatial, ksize)]
    shape = (n, *out, f) if channels_last else (n, f, *out)
    return z.permute(_shuffle_order(rank, channels_last)).reshape(shape)


def _backward(grad_y: torch.Tensor, x: torch.Tensor, kernel: torch.Tensor,
              bias_dtype: Optional[torch.dtype], needs: tuple, channels_last: bool) -> tuple:
    need_x, need_w, need_b = needs
    rank = kernel.dim() - 2
    ksize, (f, c) = tuple(kernel.shape[:rank]), kernel.shape[rank:]
    taps = math.prod(ksize)
    n = x.shape[0]
    spatial = tuple(x.shape[1:1 + rank]) if channels_last else tuple(x.shape[2:])
    # the output gradient as the product's layout (the inverse shuffle: one copy)
    split = [a for s, k in zip(spatial, ksize) for a in (s, k)]
    order = _shuffle_order(rank, channels_last)
    inverse = tuple(sorted(range(len(order)), key=order.__getitem__))
    if channels_last:
        g = grad_y.reshape(n, *split, f).permute(inverse)
        g = g.reshape(-1, taps * f)  # (pixels, taps * filters)
    else:
        g = grad_y.reshape(n, f, *split).permute(inverse)
        g = g.reshape(n, taps * f, -1)  # (batch, taps * filters, pixels)
    w = kernel.reshape(taps * f, c)
    grad_x = grad_w = grad_b = None
    if channels_last:
        xm = x.reshape(-1, c)
        if need_x:
            grad_x = linear(g, w, None).view(x.shape)
        if need_w:
            grad_w = torch.mm(g.t(), xm).view(kernel.shape)
        if need_b:
            grad_b = g.reshape(-1, f).sum(0).to(bias_dtype)
    else:
        xs = x.reshape(n, c, -1)
        if need_x:
            grad_x = torch.matmul(w.t(), g).view(x.shape)
        if need_w:
            gw = torch.mm(g[0], xs[0].t())
            for b in range(1, n):
                gw.addmm_(g[b], xs[b].t())
            grad_w = gw.view(kernel.shape)
        if need_b:
            grad_b = grad_y.sum([a for a in range(grad_y.dim()) if a != 1]).to(bias_dtype)
    return grad_x, grad_w, grad_b


class _KernelStride(torch.autograd.Function):
    """:func:`_forward` (oneDNN's for :data:`REFERENCE_FORWARD`), the backward as two GEMMs
    on the unshuffled output gradient."""

    @staticmethod
    def forward(ctx, x, kernel, bias, channels_last):
        ctx.channels_last = channels_last
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.save_for_backward(x, kernel)
        if (kernel.dim() - 2, channels_last) in REFERENCE_FORWARD:
            return _reference_call(x, kernel, bias, channels_last)
        return _forward(x, kernel, bias, channels_last)

    @staticmethod
    def backward(ctx, grad_y):
        x, kernel = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[:3])
        if torch.is_grad_enabled():  # create_graph=True: differentiable gradients
            bias = _reference.stand_in_bias(ctx.bias_dtype, kernel.shape[-2], x.device)
            return _reference.differentiable_grads(
                lambda x, kernel, bias: _reference_call(x, kernel, bias, ctx.channels_last),
                grad_y, (x, kernel, bias), needs) + (None,)
        return _backward(grad_y, x, kernel, ctx.bias_dtype, needs,
                         ctx.channels_last) + (None,)
