"""Fused Triton kernel for the separable 1D convolution (depthwise then pointwise).

Layout of this file (Triton tutorial 03 style): the ``@triton.jit`` kernels top to
bottom, their autotune configs, the thin Python launchers that check shapes and
strides, then the ``torch.autograd.Function`` and the one-line public function.
See ``TRITON.md`` beside this file for the design in prose.

Notation.  ``x`` has ``B`` sequences of ``L`` steps and ``C`` channels (either layout:
the kernels read ``x`` through its strides, so ``channels_first`` is never copied).
``depthwise`` is Keras' ``(K, C, M)``; read as a contiguous ``(K, C*M)`` matrix, its
column ``j = c*M + m`` is exactly the intermediate channel ``j``.  ``pointwise`` is
``(C*M, F)``.  The ``R = B * L_out`` output rows are flattened, so a row block may span
two sequences (short sequences waste no work) and a row ``r`` is step ``r % L_out`` of
sequence ``r // L_out``; when steps are the unit-stride axis (``channels_first``) a row
block stays in one sequence instead (``SEQ_TILES``), so its rows are provably
contiguous and Triton coalesces along them.

Forward (one kernel).  A program owns ``BLOCK_R`` output rows and ``BLOCK_F`` filters.
For each block of ``BLOCK_J`` intermediate channels it computes the depthwise tile
``z`` (``BLOCK_R x BLOCK_J``, float32, registers only) from ``K`` shifted, masked loads
of ``x`` (the halo and the padding are masks: no padded copy exists) and accumulates
``z @ pointwise[j, f]`` with ``tl.dot``.  ``z`` never touches memory.

Backward (three kernels, nothing but ``x`` and the weights saved by the forward):

1. ``_bwd_dz_dw``: ``dz = dy @ pointwise^T`` per row block (``tl.dot``), written once
   to a float32 scratch, and ``d(depthwise)[k, j] += sum_r x[shift_k(r), c] * dz[r, j]``
   accumulated with float32 atomics.  ``dz`` must go through memory because the
   transposed stencil below reads it at ``K`` shifted rows; recomputing it there would
   cost ``K`` matmuls.
2. ``_bwd_dx``: ``dx[i, c] = sum_{k, m} dz[(i + pad_left - k*d) / s, c*M + m] * w[k, c, m]``
   (masked where the division is not exact or out of range): the depthwise transpose.
3. ``_bwd_dp``: ``d(pointwise) = z^T @ dy`` with ``z`` recomputed per row block (like
   the forward), and ``d(bias) = sum_r dy``, the row blocks split into ``NUM_SPLITS``
   ranges with float32 partials summed by torch (deterministic; no atomics).

Precision: every product is accumulated in float32; in half precision ``z`` is rounded
to the input dtype before ``tl.dot`` (as the two-kernel composition rounds its stored
intermediate).  float32 uses IEEE dot products unless
``torch.backends.cuda.matmul.allow_tf32`` is set.  ``d(depthwise)`` uses atomics, so it
is not bitwise reproducible from run to run (float32 rounding only).

Unsupported (falls back to the reference kernel): tensors that are neither CUDA nor
run under ``TRITON_INTERPRET=1``, dtypes other than float32/float16/bfloat16 (bfloat16
needs compute capability 8.0), and weights whose dtype or device differs from the
input's.  Everything else (every padding, stride,
dilation, depth multiplier, layout, bias or none, any length) runs here; when some
offset can pass 2**31 the kernels are compiled with int64 offsets (``INT64``), else
with int32 ones, which take fewer registers.

Configs: by default each launch takes one tile config picked from the dtype and the
channel counts (``_pick_*``: the best fixed configs of an H200 probe, ``bench/gpu_probe.py``,
2026-11-26), so a first call compiles four kernels and tunes nothing.
``SEPCONV_TRITON_AUTOTUNE=1`` autotunes a few configs per kernel and shape instead (tens
of seconds per new shape).  Under ``TRITON_INTERPRET=1`` one small config is used.  Both
variables are read when this module is imported.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Callable, Optional

import torch

import triton
import triton.language as tl

from .. import padding as _padding
from . import reference as _reference
from . import triton_launch as _fast

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
AUTOTUNE = not INTERPRET and os.environ.get("SEPCONV_TRITON_AUTOTUNE", "0") == "1"

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _interpreter_compat() -> None:
    """Let triton < 3.7's interpreter run loops with runtime bounds under numpy >= 2.4.

    Those interpreters give ``tl.tensor.__index__`` as ``int(handle.data)`` on a
    one-element 1-D array, which numpy 2.4 rejects, so every ``range(K)`` fails.  Later
    versions squeeze first; this does the same, only when the installed source has the bug.
    """
    import inspect

    from triton.runtime import interpreter

    patch = getattr(interpreter, "_patch_lang_tensor", None)
    try:
        buggy = patch is not None and "int(self.handle.data)" in inspect.getsource(patch)
    except (OSError, TypeError):
        buggy = False
    if not buggy:
        return

    def _patch_lang_tensor(tensor, scope, *args, **kwargs):
        patch(tensor, scope, *args, **kwargs)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.squeeze()))

    interpreter._patch_lang_tensor = _patch_lang_tensor


if INTERPRET:
    _interpreter_compat()


def available() -> bool:
    """True when Triton can run: a CUDA device, or the interpreter (this module imports
    Triton, so it is installed)."""
    return INTERPRET or torch.cuda.is_available()


# --------------------------------------------------------------------------- kernels


@triton.jit
def _wide(v, INT64: tl.constexpr):
    """``v`` as int64 when offsets may pass 2**31 (``INT64``), else unchanged: int32
    offsets halve the registers that pointer arithmetic takes."""
    if INT64:
        return tl.cast(v, tl.int64)  # tl.cast, unlike .to, also takes the interpreter's ints
    else:
        return v


@triton.jit
def _rows(pid, R, L_out, INT64: tl.constexpr, SEQ_TILES: tl.constexpr,
          BLOCK_R: tl.constexpr):
    """Sequence ``b``, steps ``t`` and mask of the ``BLOCK_R`` rows of row block ``pid``.

    Flattened (``R = B * L_out`` rows; a block may straddle sequences, ``b`` a vector),
    or with ``SEQ_TILES`` one sequence per block (``b`` a scalar): then ``t`` is provably
    contiguous, so step-major (``channels_first``) tensors get coalesced accesses.
    """
    if SEQ_TILES:
        num_t = tl.cdiv(L_out, BLOCK_R)
        b = _wide(pid // num_t, INT64)
        t = _wide(pid % num_t, INT64) * BLOCK_R + tl.arange(0, BLOCK_R)
        return b, t, t < L_out
    else:
        r = _wide(pid, INT64) * BLOCK_R + tl.arange(0, BLOCK_R)
        return r // L_out, r % L_out, r < R


@triton.jit
def _split_blocks(split, NUM_SPLITS, R, B, L_out, SEQ_TILES: tl.constexpr,
                  BLOCK_R: tl.constexpr):
    """Row blocks ``lo .. hi - 1`` of ``_rows``'s blocks dealt out to ``NUM_SPLITS``
    contiguous ranges: split ``split``'s (empty past the last block)."""
    if SEQ_TILES:
        num_blocks = B * tl.cdiv(L_out, BLOCK_R)
    else:
        num_blocks = tl.cdiv(R, BLOCK_R)
    per_split = tl.cdiv(num_blocks, NUM_SPLITS)
    lo = split * per_split
    return lo, tl.minimum(lo + per_split, num_blocks)


@triton.jit
def _depthwise_tile(x_ptr, w_ptr, b, t, row_mask, j, j_mask, M, CM, K, L,
                    stride, dilation, pad_left, sxb, sxl, sxc, INT64: tl.constexpr,
                    BLOCK_R: tl.constexpr, BLOCK_J: tl.constexpr):
    """``z[r, j] = sum_k x[b_r, t_r*stride + k*dilation - pad_left, j // M] * w[k, j]``.

    ``b`` and ``t`` are (``BLOCK_R``,) row indices; taps outside ``[0, L)`` are the padding
    (masked to zero).  Returns float32 ``(BLOCK_R, BLOCK_J)``.
    """
    c = j // M
    col = _wide(c, INT64) * sxc
    row = b * sxb
    start = t * stride - pad_left
    z = tl.zeros((BLOCK_R, BLOCK_J), dtype=tl.float32)
    for k in range(K):
        pos = start + k * dilation
        ok = row_mask & (pos >= 0) & (pos < L)
        xv = tl.load(x_ptr + (row + pos * sxl)[:, None] + col[None, :],
                     mask=ok[:, None] & j_mask[None, :], other=0.0)
        wv = tl.load(w_ptr + k * CM + j, mask=j_mask, other=0.0)
        z += xv.to(tl.float32) * wv.to(tl.float32)[None, :]
    return z


@triton.jit
def _block_start(pid_r, L_out, INT64: tl.constexpr, SEQ_TILES: tl.constexpr,
                 BLOCK_R: tl.constexpr):
    """Sequence and first step ``(b0, t0)`` (scalars) of ``_rows``'s row block ``pid_r``."""
    if SEQ_TILES:
        num_t = tl.cdiv(L_out, BLOCK_R)
        return _wide(pid_r // num_t, INT64), _wide(pid_r % num_t, INT64) * BLOCK_R
    else:
        r0 = _wide(pid_r, INT64) * BLOCK_R
        b0 = r0 // L_out
        return b0, r0 - b0 * L_out


@triton.jit
def _interior(t0, L, L_out, K, stride, dilation, pad_left, BLOCK_R: tl.constexpr):
    """Whether output steps ``t0 .. t0 + BLOCK_R - 1`` of one sequence all exist and read
    only steps ``0 .. L - 1`` of ``x`` (no padding, no row past the sequence)."""
    last = (t0 + BLOCK_R - 1) * stride + (K - 1) * dilation - pad_left
    return (t0 + BLOCK_R <= L_out) & (t0 * stride >= pad_left) & (last < L)


@triton.jit
def _depthwise_tile_interior(x_ptr, w_ptr, b0, t0, j, j_mask, M, CM, K, stride, dilation,
                             pad_left, sxb, sxl, sxc, INT64: tl.constexpr,
                             BLOCK_R: tl.constexpr, BLOCK_J: tl.constexpr,
                             EVEN_J: tl.constexpr):
    """:func:`_depthwise_tile` for ``BLOCK_R`` rows ``t0 ..`` of sequence ``b0`` (scalars)
    whose taps all fall inside the sequence: the tap loop's loads need no row mask and
    its pointers step by ``dilation`` rows, so each tap costs its loads and multiply-adds
    (the masked tile recomputes every row's position, bounds and offset per tap: ~3x the
    instructions per product, ptxas for sm_90a, ``bench/ptx_report.py``)."""
    t = _wide(t0, INT64) + tl.arange(0, BLOCK_R)
    col = _wide(j // M, INT64) * sxc
    ptrs = x_ptr + _wide(b0, INT64) * sxb + ((t * stride - pad_left) * sxl)[:, None] \
        + col[None, :]
    w_ptrs = w_ptr + j
    step = _wide(dilation, INT64) * sxl
    z = tl.zeros((BLOCK_R, BLOCK_J), dtype=tl.float32)
    for _ in range(K):
        if EVEN_J:
            xv = tl.load(ptrs)
            wv = tl.load(w_ptrs)
        else:
            xv = tl.load(ptrs, mask=j_mask[None, :], other=0.0)
            wv = tl.load(w_ptrs, mask=j_mask, other=0.0)
        z += xv.to(tl.float32) * wv.to(tl.float32)[None, :]
        ptrs += step
        w_ptrs += CM
    return z


@triton.jit
def _z_tile(x_ptr, w_ptr, b, t, row_mask, b0, t0, j, j_mask, M, CM, K, L, stride, dilation,
            pad_left, sxb, sxl, sxc, INT64: tl.constexpr, BLOCK_R: tl.constexpr,
            BLOCK_J: tl.constexpr, EVEN_J: tl.constexpr, INTERIOR_TILE: tl.constexpr):
    """The depthwise tile by :func:`_depthwise_tile_interior` (``INTERIOR_TILE``: rows
    ``t0 ..`` of sequence ``b0``, every tap inside it) or :func:`_depthwise_tile`."""
    if INTERIOR_TILE:
        return _depthwise_tile_interior(x_ptr, w_ptr, b0, t0, j, j_mask, M, CM, K, stride,
                                        dilation, pad_left, sxb, sxl, sxc, INT64, BLOCK_R,
                                        BLOCK_J, EVEN_J)
    else:
        return _depthwise_tile(x_ptr, w_ptr, b, t, row_mask, j, j_mask, M, CM, K, L, stride,
                               dilation, pad_left, sxb, sxl, sxc, INT64, BLOCK_R, BLOCK_J)


@triton.jit
def _mma(a, b, acc, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """``acc + a @ b``.  ``UPCAST`` works around the interpreter's bfloat16 ``tl.dot``
    (wrong in triton 3.9's interpreter): bf16 products are exact in float32, so the
    result matches a GPU's bf16 dot with float32 accumulation."""
    if UPCAST:
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    return acc


@triton.jit
def _fwd_kernel(x_ptr, w_ptr, p_ptr, bias_ptr, y_ptr, z_ptr,
                R, L, L_out, M, CM, F, K, stride, dilation, pad_left,
                sxb, sxl, sxc, syb, syl, syf,
                HAS_BIAS: tl.constexpr, STORE_Z: tl.constexpr, PRECISION: tl.constexpr,
                UPCAST: tl.constexpr, INT64: tl.constexpr, SEQ_TILES: tl.constexpr,
                BLOCK_R: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_F: tl.constexpr,
                EVEN_J: tl.constexpr = False, INTERIOR: tl.constexpr = False):
    """``y[r, f] = sum_j z[r, j] * p[j, f] + bias[f]`` with ``z`` kept in registers.
    ``STORE_Z`` (variant 2, ``triton_v2.py``, which launches one filter block): the first
    filter block also writes each ``z`` tile (in ``z``'s dtype) to the ``(R, CM)`` rows
    of ``z``; off, the store is compiled out."""
    pid = tl.program_id(0)
    num_f = tl.cdiv(F, BLOCK_F)
    pid_r = pid // num_f  # filter blocks of one row block run side by side: x stays in L2
    pid_f = pid % num_f
    b, t, row_mask = _rows(pid_r, R, L_out, INT64, SEQ_TILES, BLOCK_R)
    f = pid_f * BLOCK_F + tl.arange(0, BLOCK_F)
    f_mask = f < F
    if INTERIOR:  # (see triton_v2._depthwise_kernel and FUSED_INTERIOR): one filter loop
        # per kind of row block, each with its own registers, no merge inside the loop
        b0, t0 = _block_start(pid_r, L_out, INT64, SEQ_TILES, BLOCK_R)
        if _interior(t0, L, L_out, K, stride, dilation, pad_left, BLOCK_R):
            acc = _fwd_loop(x_ptr, w_ptr, p_ptr, z_ptr, b, t, row_mask, f, f_mask, pid_f, b0,
                            t0, L, L_out, M, CM, F, K, stride, dilation, pad_left, sxb, sxl,
                            sxc, STORE_Z, PRECISION, UPCAST, INT64, BLOCK_R, BLOCK_J,
                            BLOCK_F, EVEN_J, True)
        else:
            acc = _fwd_loop(x_ptr, w_ptr, p_ptr, z_ptr, b, t, row_mask, f, f_mask, pid_f, b0,
                            t0, L, L_out, M, CM, F, K, stride, dilation, pad_left, sxb, sxl,
                            sxc, STORE_Z, PRECISION, UPCAST, INT64, BLOCK_R, BLOCK_J,
                            BLOCK_F, EVEN_J, False)
    else:
        acc = _fwd_loop(x_ptr, w_ptr, p_ptr, z_ptr, b, t, row_mask, f, f_mask, pid_f, b, t,
                        L, L_out, M, CM, F, K, stride, dilation, pad_left, sxb, sxl, sxc,
                        STORE_Z, PRECISION, UPCAST, INT64, BLOCK_R, BLOCK_J, BLOCK_F, EVEN_J,
                        False)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + f, mask=f_mask, other=0.0).to(tl.float32)[None, :]
    y_off = (b * syb + t * syl)[:, None] + _wide(f, INT64)[None, :] * syf
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty),
             mask=row_mask[:, None] & f_mask[None, :])


@triton.jit
def _fwd_loop(x_ptr, w_ptr, p_ptr, z_ptr, b, t, row_mask, f, f_mask, pid_f, b0, t0,
              L, L_out, M, CM, F, K, stride, dilation, pad_left, sxb, sxl, sxc,
              STORE_Z: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
              INT64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_J: tl.constexpr,
              BLOCK_F: tl.constexpr, EVEN_J: tl.constexpr, INTERIOR_TILE: tl.constexpr):
    """:func:`_fwd_kernel`'s loop over channel blocks: float32 ``(BLOCK_R, BLOCK_F)`` sums
    of ``z @ p``; ``z`` tiles by :func:`_depthwise_tile_interior` (``INTERIOR_TILE``,
    rows ``t0 ..`` of sequence ``b0``) or :func:`_depthwise_tile`."""
    acc = tl.zeros((BLOCK_R, BLOCK_F), dtype=tl.float32)
    for j0 in range(0, CM, BLOCK_J):
        j = j0 + tl.arange(0, BLOCK_J)
        j_mask = j < CM
        z = _z_tile(x_ptr, w_ptr, b, t, row_mask, b0, t0, j, j_mask, M, CM, K, L, stride,
                    dilation, pad_left, sxb, sxl, sxc, INT64, BLOCK_R, BLOCK_J, EVEN_J,
                    INTERIOR_TILE)
        if STORE_Z:
            if pid_f == 0:
                tl.store(z_ptr + (b * L_out + t)[:, None] * CM + j[None, :],
                         z.to(z_ptr.dtype.element_ty),
                         mask=row_mask[:, None] & j_mask[None, :])
        p = tl.load(p_ptr + j[:, None] * F + f[None, :],
                    mask=j_mask[:, None] & f_mask[None, :], other=0.0)
        acc = _mma(z.to(p.dtype), p, acc, PRECISION, UPCAST)
    return acc


@triton.jit
def _bwd_dz_dw_kernel(x_ptr, p_ptr, dy_ptr, dz_ptr, dw_ptr,
                      R, L, L_out, M, CM, F, K, stride, dilation, pad_left,
                      sxb, sxl, sxc, sdb, sdl, sdf,
                      PRECISION: tl.constexpr, UPCAST: tl.constexpr, INT64: tl.constexpr,
                      SEQ_TILES: tl.constexpr,
                      BLOCK_R: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_F: tl.constexpr):
    """``dz = dy @ p^T`` (stored, float32) and ``dw[k, j] += sum_r x[shift_k(r), c_j] dz[r, j]``."""
    pid = tl.program_id(0)
    num_j = tl.cdiv(CM, BLOCK_J)
    pid_r = pid // num_j
    pid_j = pid % num_j
    b, t, row_mask = _rows(pid_r, R, L_out, INT64, SEQ_TILES, BLOCK_R)
    r = b * L_out + t
    j = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)
    j_mask = j < CM
    dy_row = b * sdb + t * sdl
    dz = tl.zeros((BLOCK_R, BLOCK_J), dtype=tl.float32)
    for f0 in range(0, F, BLOCK_F):
        f = f0 + tl.arange(0, BLOCK_F)
        f_mask = f < F
        dy = tl.load(dy_ptr + dy_row[:, None] + _wide(f, INT64)[None, :] * sdf,
                     mask=row_mask[:, None] & f_mask[None, :], other=0.0)
        pt = tl.load(p_ptr + j[None, :] * F + f[:, None],
                     mask=j_mask[None, :] & f_mask[:, None], other=0.0)  # p^T tile (F, J)
        dz = _mma(dy.to(pt.dtype), pt, dz, PRECISION, UPCAST)
    tl.store(dz_ptr + r[:, None] * CM + j[None, :], dz,
             mask=row_mask[:, None] & j_mask[None, :])
    # d(depthwise): correlate x (shifted as in the forward) with dz over the rows.
    c = j // M
    col = _wide(c, INT64) * sxc
    row = b * sxb
    start = t * stride - pad_left
    for k in range(K):
        pos = start + k * dilation
        ok = row_mask & (pos >= 0) & (pos < L)
        xv = tl.load(x_ptr + (row + pos * sxl)[:, None] + col[None, :],
                     mask=ok[:, None] & j_mask[None, :], other=0.0)
        tl.atomic_add(dw_ptr + k * CM + j, tl.sum(xv.to(tl.float32) * dz, axis=0), mask=j_mask,
                      sem="relaxed")  # a pure sum: no ordering needed


@triton.jit
def _bwd_dx_kernel(dz_ptr, w_ptr, dx_ptr,
                   RX, L, L_out, C, M, CM, K, stride, dilation, pad_left,
                   sxb, sxl, sxc, INT64: tl.constexpr, SEQ_TILES: tl.constexpr,
                   BLOCK_I: tl.constexpr, BLOCK_C: tl.constexpr,
                   EVEN_C: tl.constexpr = False, INTERIOR: tl.constexpr = True):
    """``dx[b, i, c] = sum_{k, m} dz[b, (i + pad_left - k*d) / s, c*M + m] * w[k, c*M + m]``.

    With ``INTERIOR`` and ``stride == 1``, a block of input rows inside one sequence whose
    every tap reads an existing ``dz`` row takes :func:`_dx_tile_interior` (unmasked
    loads, pointers stepped from tap to tap; ``EVEN_C``: ``C`` a multiple of ``BLOCK_C``);
    the same products in the same order."""
    pid = tl.program_id(0)
    num_c = tl.cdiv(C, BLOCK_C)
    pid_i = pid // num_c
    pid_c = pid % num_c
    b, i, row_mask = _rows(pid_i, RX, L, INT64, SEQ_TILES, BLOCK_I)  # input rows (b, i)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    if INTERIOR:
        b0, i0 = _block_start(pid_i, L, INT64, SEQ_TILES, BLOCK_I)
        if (stride == 1) & (i0 + BLOCK_I <= L) & (i0 + pad_left - (K - 1) * dilation >= 0) \
                & (i0 + BLOCK_I - 1 + pad_left < L_out):
            acc = _dx_tile_interior(dz_ptr, w_ptr, b0, i0, c, c_mask, L_out, M, CM, K,
                                    dilation, pad_left, INT64, BLOCK_I, BLOCK_C, EVEN_C)
        else:
            acc = _dx_tile(dz_ptr, w_ptr, b, i, row_mask, c, c_mask, L_out, M, CM, K, stride,
                           dilation, pad_left, BLOCK_I, BLOCK_C)
    else:
        acc = _dx_tile(dz_ptr, w_ptr, b, i, row_mask, c, c_mask, L_out, M, CM, K, stride,
                       dilation, pad_left, BLOCK_I, BLOCK_C)
    dx_off = (b * sxb + i * sxl)[:, None] + _wide(c, INT64)[None, :] * sxc
    tl.store(dx_ptr + dx_off, acc.to(dx_ptr.dtype.element_ty),
             mask=row_mask[:, None] & c_mask[None, :])


@triton.jit
def _dx_tile(dz_ptr, w_ptr, b, i, row_mask, c, c_mask, L_out, M, CM, K, stride, dilation,
             pad_left, BLOCK_I: tl.constexpr, BLOCK_C: tl.constexpr):
    """:func:`_bwd_dx_kernel`'s float32 ``(BLOCK_I, BLOCK_C)`` sums, every load masked."""
    acc = tl.zeros((BLOCK_I, BLOCK_C), dtype=tl.float32)
    for k in range(K):
        q = i + pad_left - k * dilation
        tq = q // stride
        ok = row_mask & (q >= 0) & (tq * stride == q) & (tq < L_out)
        dz_row = (b * L_out + tq) * CM
        for m in range(M):
            jj = c * M + m
            dz = tl.load(dz_ptr + dz_row[:, None] + jj[None, :],
                         mask=ok[:, None] & c_mask[None, :], other=0.0)
            wv = tl.load(w_ptr + k * CM + jj, mask=c_mask, other=0.0).to(tl.float32)
            acc += dz * wv[None, :]
    return acc


@triton.jit
def _dx_tile_interior(dz_ptr, w_ptr, b0, i0, c, c_mask, L_out, M, CM, K, dilation, pad_left,
                      INT64: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_C: tl.constexpr,
                      EVEN_C: tl.constexpr):
    """:func:`_dx_tile` for stride 1 and input rows ``i0 ..`` of sequence ``b0`` whose taps
    all read existing ``dz`` rows: ``dz`` row ``i + pad_left - k*dilation``, a pointer
    stepped back ``dilation`` rows a tap; no row masks."""
    ti = _wide(i0, INT64) + tl.arange(0, BLOCK_I)
    rows = dz_ptr + ((_wide(b0, INT64) * L_out + ti + pad_left) * CM)[:, None]
    step = _wide(dilation, INT64) * CM
    acc = tl.zeros((BLOCK_I, BLOCK_C), dtype=tl.float32)
    for k in range(K):
        for m in range(M):
            jj = c * M + m
            if EVEN_C:
                dz = tl.load(rows + jj[None, :])
                wv = tl.load(w_ptr + k * CM + jj).to(tl.float32)
            else:
                dz = tl.load(rows + jj[None, :], mask=c_mask[None, :], other=0.0)
                wv = tl.load(w_ptr + k * CM + jj, mask=c_mask, other=0.0).to(tl.float32)
            acc += dz * wv[None, :]
        rows -= step
    return acc


@triton.jit
def _bwd_dp_kernel(x_ptr, w_ptr, dy_ptr, dp_ptr, db_ptr,
                   R, B, NUM_SPLITS, L, L_out, M, CM, F, K, stride, dilation, pad_left,
                   sxb, sxl, sxc, sdb, sdl, sdf,
                   HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                   INT64: tl.constexpr, SEQ_TILES: tl.constexpr,
                   BLOCK_R: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_F: tl.constexpr):
    """Partial ``dp[s] = z^T @ dy`` and ``db[s] = sum dy`` over the row blocks of split
    ``s`` (the row blocks of ``_rows``, dealt out to ``NUM_SPLITS`` contiguous ranges)."""
    pid = tl.program_id(0)
    split = tl.program_id(1)
    num_f = tl.cdiv(F, BLOCK_F)
    pid_j = pid // num_f
    pid_f = pid % num_f
    j = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)
    j_mask = j < CM
    f = pid_f * BLOCK_F + tl.arange(0, BLOCK_F)
    f_mask = f < F
    lo, hi = _split_blocks(split, NUM_SPLITS, R, B, L_out, SEQ_TILES, BLOCK_R)
    acc = tl.zeros((BLOCK_J, BLOCK_F), dtype=tl.float32)
    db = tl.zeros((BLOCK_F,), dtype=tl.float32)
    for block in range(lo, hi):  # an empty range leaves zeros: every split stores
        b, t, row_mask = _rows(block, R, L_out, INT64, SEQ_TILES, BLOCK_R)
        z = _depthwise_tile(x_ptr, w_ptr, b, t, row_mask, j, j_mask, M, CM, K, L,
                            stride, dilation, pad_left, sxb, sxl, sxc, INT64, BLOCK_R, BLOCK_J)
        dy = tl.load(dy_ptr + (b * sdb + t * sdl)[:, None] + _wide(f, INT64)[None, :] * sdf,
                     mask=row_mask[:, None] & f_mask[None, :], other=0.0)
        acc = _mma(tl.trans(z.to(dy.dtype)), dy, acc, PRECISION, UPCAST)
        if HAS_BIAS:
            db += tl.sum(dy.to(tl.float32), axis=0)
    base = _wide(split, INT64) * CM * F
    tl.store(dp_ptr + base + j[:, None] * F + f[None, :], acc,
             mask=j_mask[:, None] & f_mask[None, :])
    if HAS_BIAS:
        if pid_j == 0:
            tl.store(db_ptr + _wide(split, INT64) * F + f, db, mask=f_mask)


# ------------------------------------------------------------------- autotune configs


def _cfg(num_warps, num_stages, **blocks):
    return triton.Config(blocks, num_warps=num_warps, num_stages=num_stages)


def _prune(configs, named_args, **kwargs):
    """Drop configs whose tiles are far larger than the problem (keep at least one)."""
    cm, f = named_args["CM"], named_args["F"]
    ok = [c for c in configs
          if c.kwargs.get("BLOCK_J", 16) <= max(16, _next_pow2(cm))
          and c.kwargs.get("BLOCK_F", 16) <= max(16, _next_pow2(f))]
    return ok or configs[:1]


# (BLOCK_R, BLOCK_J, BLOCK_F, warps, stages) per kernel: tiles that compile for sm_90
# without register spills in float32 and bfloat16 (ptxas -v).  Wide filter tiles (256,
# 512) compute the depthwise tile once for all filters.
_tiles = lambda *ts: [_cfg(w, st, BLOCK_R=r, BLOCK_J=j, BLOCK_F=f) for r, j, f, w, st in ts]
_FWD_CONFIGS = _tiles((64, 32, 64, 4, 3), (64, 32, 128, 8, 3), (128, 32, 64, 8, 3),
                      (128, 32, 128, 8, 3), (64, 64, 64, 8, 2), (32, 32, 64, 4, 3),
                      (32, 16, 64, 4, 3), (64, 16, 32, 4, 3), (64, 32, 256, 8, 2),
                      (32, 32, 256, 8, 2), (32, 32, 512, 8, 2), (128, 64, 128, 8, 2))
_DZ_CONFIGS = _tiles((64, 32, 64, 4, 3), (64, 32, 128, 8, 3), (128, 32, 64, 8, 3),
                     (64, 64, 64, 8, 2), (32, 32, 64, 4, 3), (32, 16, 64, 4, 3),
                     (64, 16, 32, 4, 3), (32, 32, 256, 8, 2), (32, 32, 512, 8, 2))
_DP_CONFIGS = _tiles((32, 32, 64, 4, 3), (64, 32, 64, 8, 3), (64, 32, 128, 8, 3),
                     (128, 32, 64, 8, 3), (64, 64, 64, 8, 2), (32, 64, 128, 8, 2),
                     (32, 16, 128, 4, 3), (32, 32, 256, 8, 2))
_DX_CONFIGS = [
    _cfg(4, 2, BLOCK_I=64, BLOCK_C=64),
    _cfg(4, 2, BLOCK_I=32, BLOCK_C=128),
    _cfg(8, 2, BLOCK_I=128, BLOCK_C=64),
    _cfg(4, 2, BLOCK_I=128, BLOCK_C=32),
    _cfg(4, 2, BLOCK_I=32, BLOCK_C=64),
    _cfg(2, 2, BLOCK_I=32, BLOCK_C=32),
]
_INTERPRETER_ROWS = _cfg(4, 2, BLOCK_R=32, BLOCK_J=16, BLOCK_F=16)
_INTERPRETER_DX = _cfg(4, 2, BLOCK_I=32, BLOCK_C=16)


def _pick_fwd(args: dict) -> triton.Config:
    """The forward's tile: on an H200 (probe of 2026-11-26) ``(128, 64, 128)`` with 8 warps
    was fastest or within 10% for 16-bit data and for large float32 channel counts;
    ``(64, 32, 64)`` with 4 warps for small float32 layers (64-128 channels)."""
    if INTERPRET:
        return _INTERPRETER_ROWS
    half = args["x_ptr"].dtype != torch.float32
    return _FWD_CONFIGS[-1] if half or args["CM"] * args["F"] > 256 * 256 else _FWD_CONFIGS[0]


def _pick_dz(args: dict) -> triton.Config:
    return _INTERPRETER_ROWS if INTERPRET else _DZ_CONFIGS[0]


def _pick_dp(args: dict) -> triton.Config:
    return _INTERPRETER_ROWS if INTERPRET else _DP_CONFIGS[1]


def _pick_dx(args: dict) -> triton.Config:
    return _INTERPRETER_DX if INTERPRET else _DX_CONFIGS[0]


#: What a GPU launch without autotuning can run, per kernel (compiled for sm_90 in the tests).
GPU_PICKS = {"_fwd_kernel": (_FWD_CONFIGS[0], _FWD_CONFIGS[-1]),
             "_bwd_dz_dw_kernel": (_DZ_CONFIGS[0],), "_bwd_dp_kernel": (_DP_CONFIGS[1],),
             "_bwd_dx_kernel": (_DX_CONFIGS[0],)}


class _Fixed:
    """Stands in for an autotuned kernel: ``kernel[grid](*args)`` with the one config
    ``pick(named arguments)`` returns."""

    def __init__(self, kernel, pick):
        self.kernel, self.pick = kernel, pick

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            named = dict(zip(self.kernel.arg_names, args), **kwargs)
            config = self.pick(named)
            constexprs = {**kwargs, **config.kwargs}
            return _fast.launch(self.kernel, grid({**named, **config.kwargs})
                                if callable(grid) else grid, args, constexprs,
                                config.num_warps, config.num_stages)
        return launch


if AUTOTUNE:
    _PRUNE = {"early_config_prune": _prune, "perf_model": None, "top_k": None}
    _KEY = ["CM", "F", "K", "stride", "dilation"]
    _fwd = triton.autotune(_FWD_CONFIGS, key=_KEY, prune_configs_by=_PRUNE)(_fwd_kernel)
    # The atomics accumulate into dw: restore it after every trial run of the autotuner.
    _bwd_dz_dw = triton.autotune(_DZ_CONFIGS, key=_KEY, prune_configs_by=_PRUNE,
                                 restore_value=["dw_ptr"])(_bwd_dz_dw_kernel)
    _bwd_dx = triton.autotune(_DX_CONFIGS, key=["C", "M", "K", "stride", "dilation"])(
        _bwd_dx_kernel)
    _bwd_dp = triton.autotune(_DP_CONFIGS, key=_KEY, prune_configs_by=_PRUNE)(_bwd_dp_kernel)
else:
    _fwd = _Fixed(_fwd_kernel, _pick_fwd)
    _bwd_dz_dw = _Fixed(_bwd_dz_dw_kernel, _pick_dz)
    _bwd_dx = _Fixed(_bwd_dx_kernel, _pick_dx)
    _bwd_dp = _Fixed(_bwd_dp_kernel, _pick_dp)


# ------------------------------------------------------------------------- launchers


def _cdiv(a: int, b: int) -> int:
    """``triton.cdiv`` on the host (triton 3.9's is a constexpr function whose host call
    costs microseconds of Python)."""
    return -(-a // b)


def _next_pow2(n: int) -> int:
    """``triton.next_power_of_2`` on the host (see :func:`_cdiv`), for ``n >= 0``."""
    return 1 << (n - 1).bit_length() if n > 0 else 0


def _x_strides(x: torch.Tensor, channels_last: bool):
    """``(batch, step, channel)`` strides of ``x`` in either layout."""
    return _bsc(x.stride(), channels_last)


def _bsc(strides: tuple, channels_last: bool) -> tuple:
    """A 3-D tensor's strides as ``(batch, step, channel)`` in either layout."""
    return strides if channels_last else (strides[0], strides[2], strides[1])


def _span(shape: tuple, strides: tuple) -> int:
    """Elements from a tensor's first to its last, plus one."""
    return sum((n - 1) * abs(st) for n, st in zip(shape, strides)) + 1


def _precision(dtype: torch.dtype) -> str:
    # (torch.backends.cuda.matmul.allow_tf32's own getter: the property costs ~2 us a call)
    if dtype == torch.float32 and not torch._C._get_cublas_allow_tf32():
        return "ieee"
    return "tf32"  # ignored by tl.dot for 16-bit inputs


#: Spans (in elements) from which the kernels take int64 offsets (tests lower it to 0).
INT64_SPAN = 2 ** 30


def _int64(span: int) -> bool:
    """Whether element offsets over ``span`` may pass the int32 range (see
    :func:`_needs_int64`)."""
    return span >= INT64_SPAN


def _needs_int64(*tensors: torch.Tensor) -> bool:
    """Whether some element offset may pass the int32 range.

    The bound is 2**30, not 2**31: masked lanes past the end (the last row block, taps
    in the padding) compute offsets somewhat beyond a tensor's span.
    """
    return _int64(max((t.numel() if t.is_contiguous() else _span(t.shape, t.stride())
                       for t in tensors if t.numel() > 0), default=0))


def _upcast(dtype: torch.dtype) -> bool:
    return INTERPRET and dtype == torch.bfloat16


def _seq_tiles(t: torch.Tensor, channels_last: bool) -> bool:
    """One sequence per row block when steps are the unit-stride axis (``channels_first``):
    then the kernels can prove consecutive rows contiguous and coalesce along them."""
    return _x_strides(t, channels_last)[1] == 1


def _row_blocks(batch: int, steps: int, block: int, seq_tiles: bool) -> int:
    """Row blocks of ``_rows``: per sequence, or over the flattened rows."""
    return batch * _cdiv(steps, block) if seq_tiles else _cdiv(batch * steps, block)


def _num_sms(device: torch.device) -> int:
    return _sms_of(device.index) if device.type == "cuda" else 1


@functools.lru_cache(maxsize=None)
def _sms_of(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _row_splits(rows: int, cm: int, f: int, sms: int) -> int:
    """How many row ranges ``_bwd_dp`` reduces separately (float32 partials, summed by
    torch): enough programs to fill the device, about 4 per SM counting nominal 32x64
    tiles of ``d(pointwise)``, and about 64 rows per range at least (a range may end up
    empty when row blocks are larger: it then contributes zeros)."""
    tiles = _cdiv(cm, 32) * _cdiv(f, 64)
    return max(1, min(_cdiv(4 * sms, tiles), _cdiv(rows, 64)))


def _output(x, batch: int, l_out: int, f: int, channels_last: bool):
    """The output in ``x``'s layout and dtype, and its strides as (batch, step, filter)."""
    if channels_last:
        y = torch.empty((batch, l_out, f), device=x.device, dtype=x.dtype)
        syb, syl, syf = y.stride()
    else:
        y = torch.empty((batch, f, l_out), device=x.device, dtype=x.dtype)
        syb, syf, syl = y.stride()
    return y, (syb, syl, syf)


def _forward(x, w, p, bias, stride, dilation, pad_left, pad_right, channels_last):
    """Launch the forward kernel.  ``w`` is ``(K, C*M)`` contiguous, ``p`` ``(C*M, F)``."""
    batch = x.shape[0]
    length, channels = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[1])
    k, cm = w.shape
    f = p.shape[1]
    l_out = _padding.padded_output_length(length, k, stride, dilation, pad_left,
                                          pad_right)
    y, (syb, syl, syf) = _output(x, batch, l_out, f, channels_last)
    rows = batch * l_out
    if rows == 0 or f == 0:
        return y
    seq = _seq_tiles(x, channels_last)
    grid = lambda meta: (_row_blocks(batch, l_out, meta["BLOCK_R"], seq)
                         * _cdiv(f, meta["BLOCK_F"]),)
    _fwd[grid](x, w, p, bias if bias is not None else p, y, y,
               rows, length, l_out, cm // channels, cm, f, k, stride, dilation, pad_left,
               *_x_strides(x, channels_last), syb, syl, syf,
               HAS_BIAS=bias is not None, STORE_Z=False, PRECISION=_precision(x.dtype),
               UPCAST=_upcast(x.dtype),
               INT64=_needs_int64(x, y, p), SEQ_TILES=seq)
    return y


def _backward(dy, x, w, p, has_bias, stride, dilation, pad_left, channels_last,
              need_dx, need_dw, need_dp, need_db):
    """Gradients ``(dx, dw (K, C*M), dp (C*M, F), db)``; ``None`` where not needed."""
    batch = x.shape[0]
    length, channels = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[1])
    k, cm = w.shape
    m = cm // channels
    f = p.shape[1]
    l_out = dy.shape[1] if channels_last else dy.shape[2]
    rows = batch * l_out
    sxb, sxl, sxc = _x_strides(x, channels_last)
    sdb, sdl, sdf = _x_strides(dy, channels_last)
    precision = _precision(x.dtype)
    if rows == 0:  # an empty batch: every gradient is zero, no kernel to launch
        return (torch.zeros_like(x) if need_dx else None, torch.zeros_like(w),
                torch.zeros_like(p), torch.zeros((f,), device=x.device, dtype=p.dtype))
    dx = dw = dp = db = None
    splits = _row_splits(rows, cm, f, _num_sms(x.device))
    # Every tensor the backward kernels index: x, dy, dx (contiguous, x.numel() even when
    # x is an expanded view), the dz (rows, cm) and d(pointwise) partials scratch.
    int64 = (_needs_int64(x, dy, p)
             or _int64(max(x.numel(), rows * cm, splits * cm * f)))
    if need_dx or need_dw:
        dz = torch.empty((rows, cm), device=x.device, dtype=torch.float32)
        dw32 = torch.zeros((k, cm), device=x.device, dtype=torch.float32)
        seq = _seq_tiles(x, channels_last)
        grid = lambda meta: (_row_blocks(batch, l_out, meta["BLOCK_R"], seq)
                             * _cdiv(cm, meta["BLOCK_J"]),)
        _bwd_dz_dw[grid](x, p, dy, dz, dw32,
                         rows, length, l_out, m, cm, f, k, stride, dilation, pad_left,
                         sxb, sxl, sxc, sdb, sdl, sdf, PRECISION=precision,
                         UPCAST=_upcast(x.dtype), INT64=int64, SEQ_TILES=seq)
        dw = dw32.to(w.dtype)
        if need_dx:
            dx = torch.empty_like(x, memory_format=torch.contiguous_format)
            seq_x = _seq_tiles(dx, channels_last)
            grid = lambda meta: (_row_blocks(batch, length, meta["BLOCK_I"], seq_x)
                                 * _cdiv(channels, meta["BLOCK_C"]),)
            _bwd_dx[grid](dz, w, dx, batch * length, length, l_out, channels, m, cm, k,
                          stride, dilation, pad_left, *_x_strides(dx, channels_last),
                          INT64=int64, SEQ_TILES=seq_x)
    if need_dp or need_db:
        dp32 = torch.empty((splits, cm, f), device=x.device, dtype=torch.float32)
        db32 = torch.empty((splits, f), device=x.device, dtype=torch.float32) if has_bias else dp32
        grid = lambda meta: (_cdiv(cm, meta["BLOCK_J"]) * _cdiv(f, meta["BLOCK_F"]),
                             splits)
        _bwd_dp[grid](x, w, dy, dp32, db32,
                      rows, batch, splits, length, l_out, m, cm, f, k, stride, dilation, pad_left,
                      sxb, sxl, sxc, sdb, sdl, sdf,
                      HAS_BIAS=has_bias, PRECISION=precision, UPCAST=_upcast(x.dtype),
                      INT64=int64, SEQ_TILES=_seq_tiles(x, channels_last))
        dp = dp32.sum(0).to(p.dtype)
        if has_bias:
            db = db32.sum(0).to(p.dtype)
    return dx, dw, dp, db


_NOTHING = contextlib.nullcontext()


def _on(device: torch.device):
    """Make ``device`` current while launching: Triton launches on the current device
    (nothing to do, the common case, when it is current already)."""
    if device.type != "cuda" or device.index == torch._C._cuda_getDevice():
        return _NOTHING
    return torch.cuda.device(device)


def _weights(depthwise: torch.Tensor, pointwise: torch.Tensor):
    """The kernels' weights: ``(K, C*M)`` and ``(C*M, F)``, contiguous."""
    return depthwise.reshape(depthwise.shape[0], -1).contiguous(), pointwise.contiguous()


def _save(ctx, x, depthwise, pointwise, bias, stride, dilation, pad_left, pad_right,
          channels_last, backward: Callable, *extra: torch.Tensor) -> None:
    """What :meth:`_SeparableConv1d.backward` needs: the inputs (double backward goes to
    the reference with them), ``backward`` (a variant's ``_backward``) and the tensors
    ``extra`` it takes after its own arguments (variant 2's saved intermediate)."""
    ctx.save_for_backward(x, depthwise, pointwise, *extra)
    ctx.backward_kernel = backward
    ctx.has_bias = bias is not None
    ctx.bias_dtype = None if bias is None else bias.dtype
    ctx.pad_right = pad_right
    ctx.args = (stride, dilation, pad_left, channels_last, tuple(depthwise.shape))


class _SeparableConv1d(torch.autograd.Function):
    """Fused forward; backward recomputes the depthwise tile instead of saving it.  Its
    backward serves variant 2 too (``triton_v2._SeparableConv1d`` subclasses it)."""

    @staticmethod
    def forward(ctx, x, depthwise, pointwise, bias, stride, dilation, pad_left, pad_right,
                channels_last):
        w, p = _weights(depthwise, pointwise)
        with _on(x.device):
            y = _forward(x, w, p, bias, stride, dilation, pad_left, pad_right, channels_last)
        _save(ctx, x, depthwise, pointwise, bias, stride, dilation, pad_left, pad_right,
              channels_last, _backward)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, depthwise, pointwise, *extra = ctx.saved_tensors
        stride, dilation, pad_left, channels_last, dw_shape = ctx.args
        need = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph=True: differentiable gradients
            return _reference.differentiable_backward(
                dy, x, depthwise, pointwise, ctx.bias_dtype, need[:4], stride=stride,
                dilation=dilation, pad_left=pad_left, pad_right=ctx.pad_right,
                channels_last=channels_last) + (None,) * 5
        w, p = _weights(depthwise, pointwise)
        with _on(x.device):
            dx, dw, dp, db = ctx.backward_kernel(
                dy, x, w, p, ctx.has_bias, stride, dilation, pad_left, channels_last,
                need[0], need[1], need[2], ctx.has_bias and need[3], *extra)
        if dw is not None:
            dw = dw.reshape(dw_shape)
        return (dx if need[0] else None, dw if need[1] else None,
                dp if need[2] else None, db,
                None, None, None, None, None)


@functools.lru_cache(maxsize=None)
def _capability(index: int) -> tuple:
    return torch.cuda.get_device_capability(index)


def _supported(x, depthwise, pointwise, bias) -> bool:
    if not (x.is_cuda or INTERPRET) or x.dtype not in _DTYPES:
        return False
    if x.is_cuda and x.dtype == torch.bfloat16 and _capability(x.device.index) < (8, 0):
        return False  # no bfloat16 tensor-core dot before Ampere
    tensors = [depthwise, pointwise] + ([bias] if bias is not None else [])
    return all(t.dtype == x.dtype and t.device == x.device for t in tensors)


def separable_conv1d(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor,
                     bias: Optional[torch.Tensor], *, stride: int, dilation: int,
                     pad_left: int, pad_right: int, channels_last: bool) -> torch.Tensor:
    """Depthwise then pointwise convolution in fused Triton kernels.

    Same signature and result as :func:`sepconv.kernels.reference.separable_conv1d`:
    ``x`` ``(batch, steps, channels)`` if ``channels_last`` else ``(batch, channels,
    steps)``; ``depthwise`` ``(kernel_size, channels, depth_multiplier)``; ``pointwise``
    ``(channels * depth_multiplier, filters)``; ``bias`` ``(filters,)`` or ``None``.
    Returns ``(batch, out_steps, filters)`` or ``(batch, filters, out_steps)``.

    Falls back to the reference kernel (and says nothing) only for inputs Triton cannot
    run: tensors that are not on a CUDA device (outside ``TRITON_INTERPRET=1``), dtypes
    other than float32, float16 and bfloat16 (bfloat16 from compute capability 8.0 on),
    and weights of another dtype or device than ``x``.  Under ``create_graph=True``
    (double backward) the backward returns the reference composition's differentiable
    gradients instead of running the fused kernels.

    ``SEPCONV_TRITON_VARIANT=v2`` (read at each call; default ``v1``, this module's
    kernels) runs ``triton_v2`` instead: same signature and results, not yet measured.
    """
    variant = os.environ.get("SEPCONV_TRITON_VARIANT", "") or "v1"
    if variant == "v2":
        from . import triton_v2
        return triton_v2.separable_conv1d(x, depthwise, pointwise, bias, stride=stride,
                                          dilation=dilation, pad_left=pad_left,
                                          pad_right=pad_right, channels_last=channels_last)
    if variant != "v1":
        raise ValueError("Invalid value for environment variable `SEPCONV_TRITON_VARIANT`. "
                         f"Expected 'v1' or 'v2'. Received SEPCONV_TRITON_VARIANT={variant!r}.")
    if not _supported(x, depthwise, pointwise, bias):
        from . import reference
        return reference.separable_conv1d(x, depthwise, pointwise, bias, stride=stride,
                                          dilation=dilation, pad_left=pad_left,
                                          pad_right=pad_right, channels_last=channels_last)
    return _SeparableConv1d.apply(x, depthwise, pointwise, bias, stride, dilation,
                                  pad_left, pad_right, channels_last)
