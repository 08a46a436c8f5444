"""Variant 2 of the Triton separable 1D convolution: Triton for the stencils, cuBLAS for the
GEMMs (issue 12; ``functional._cuda_kernel`` chooses it where H200 runs measured it faster).

Same signature, results, fallbacks and autograd behaviour as ``triton_sepconv`` (variant 1,
whose helpers and transposed-stencil kernel it reuses); ``TRITON.md`` beside this file says
why it exists and what a GPU window must measure.  The layout of ``x`` and the notation are
variant 1's: ``w`` is the depthwise kernel as a contiguous ``(K, C*M)`` matrix, ``p`` the
pointwise ``(C*M, F)``, rows ``r = b * L_out + t``.

Forward.  ``F <= FUSED_MAX_F``: variant 1's fused ``_fwd_kernel`` launched with one
filter block covering every filter (``BLOCK_F = next_power_of_2(F)``), so each depthwise
tile ``z`` is computed once per row block instead of once per filter block.  Wider layers: the
depthwise step alone (``_depthwise_kernel``, or ``_depthwise_unrolled_kernel`` under
``DEPTHWISE_KERNEL``; ``z`` written once in the input dtype) then
cuBLAS (``addmm`` / ``baddbmm``), as the two-kernel composition but with no padded copy or
layout change of ``x``.

Backward (no atomics; deterministic):

1. ``dz = dy @ p^T`` by cuBLAS, ``(R, C*M)`` in the input dtype (the composition rounds its
   intermediate gradient the same way);
2. ``d(depthwise)``: ``_dw_rows_once_kernel`` (or ``_dw_partials_kernel``, see
   ``DW_KERNEL``), per (channel block, row range) float32 partial sums ``(splits, K, C*M)``
   of ``x[shift_k(r), c_j] * dz[r, j]``, summed by torch;
3. ``dx``: variant 1's transposed stencil ``_bwd_dx_kernel`` on that ``dz``;
4. ``d(pointwise) = z^T @ dy`` by cuBLAS, ``z`` recomputed by ``_depthwise_kernel``
   (or, with ``SAVE_Z``, kept from the forward, which then writes it);
   ``d(bias) = sum_r dy`` by torch, accumulated in float32.

Configs are fixed (``PICKS``: the d(depthwise) tiles measured on an H200, the others chosen
by reasoning about registers; the autotuner is not used here even with
``SEPCONV_TRITON_AUTOTUNE=1``).  Under
``TRITON_INTERPRET=1`` small tiles are used so that tests cover several blocks.
"""

from __future__ import annotations

import functools
import os
from typing import Optional

import torch

import triton
import triton.language as tl

from .. import padding as _padding
from . import reference as _reference
from . import triton_launch as _fast
from . import triton_sepconv as _v1
from .triton_sepconv import (_block_start, _cdiv, _interior, _next_pow2, _rows,
                             _split_blocks, _wide, _z_tile)

INTERPRET = _v1.INTERPRET

#: Widest layer whose forward is one fused kernel (accumulators for every filter); wider
#: layers run the depthwise kernel then cuBLAS.  ``SEPCONV_TRITON_V2_FUSED_MAX_F`` (read
#: at import; at most 512, the widest fused tile) changes it, so GPU runs can time both
#: forwards on the same shape.  128: on an H200 (2026-11-27, ``bench/gpu_probe.py --only v2``,
#: ``bench/gpu-h200-20261127-v2-probe.json``) the unfused forward was 1.7-2.5x faster than
#: every fused tile at 256 filters (64 x 4096 steps, k31; 1.19 vs 2.04-3.00 ms float32,
#: 0.49 vs 1.23-2.17 ms bfloat16) and 3-4.6x at 512 (QuartzNet k75), a tie at 128.
FUSED_MAX_F = int(os.environ.get("SEPCONV_TRITON_V2_FUSED_MAX_F", "128"))

#: Keep the forward's depthwise output ``z`` for the backward's ``d(pointwise)`` instead of
#: recomputing it: ``R x C*M`` more memory held between forward and backward (what the
#: two-kernel composition holds anyway), one depthwise pass less.  The fused kernel then
#: stores ``z`` too (16-bit dtypes), or float32 takes the unfused forward.  Off by default
#: (the fused kernel's point is that ``z`` never exists); ``SEPCONV_TRITON_V2_SAVE_Z=1``
#: (read at import) or setting this attribute turns it on.
SAVE_Z = os.environ.get("SEPCONV_TRITON_V2_SAVE_Z", "0") == "1"

#: Which kernel computes the d(depthwise) partials (both give the same float32 partials
#: ``(splits, K, C*M)``, deterministic): ``"per_tile"``, ``_dw_partials_kernel``, a column
#: sum across the row tile for every (row block, tap); ``"rows_once"``,
#: ``_dw_rows_once_kernel``, elementwise products accumulated in registers and summed over
#: rows once per program.  ``"rows_once"`` since an H200 probe (2026-11-27, fifteenth
#: session, ``bench/gpu-h200-20261127-s15-probe.json``): 1.7-2.0x faster than per_tile's best
#: tile on 64 x 4096 x 256 k31 (float32 0.97 vs 1.67 ms, bfloat16 1.08 vs 2.10) and 2.0x on
#: 256 x 200 x 128 k4 float32 (0.059 vs 0.119 ms; bfloat16 0.097 vs 0.103).
#: ``SEPCONV_TRITON_V2_DW`` (read at import) or setting this attribute picks one.
DW_KERNEL = os.environ.get("SEPCONV_TRITON_V2_DW", "rows_once")
DW_KERNELS = ("per_tile", "rows_once")

#: Which kernel computes the depthwise step ``z`` (unfused forward, recomputed ``z``):
#: ``"rows"``, ``_depthwise_kernel`` (row blocks over the flattened rows, taps in a loop);
#: ``"unrolled"``, ``_depthwise_unrolled_kernel`` (row blocks inside one sequence, taps
#: unrolled ``UNROLL`` at a time; no faster on the H200, 2026-11-27).
#: ``SEPCONV_TRITON_V2_DEPTHWISE`` (read at import) or setting this attribute picks one.
DEPTHWISE_KERNEL = os.environ.get("SEPCONV_TRITON_V2_DEPTHWISE", "rows")
DEPTHWISE_KERNELS = ("rows", "unrolled")


#: Give the row blocks that touch no padding and no sequence edge their own unmasked tap
#: loops, in every kernel variant 2 launches (the depthwise and d(depthwise) kernels here,
#: variant 1's fused forward and dx kernels): the same results, bit for bit, with fewer
#: instructions a tap (SASS for sm_90a from ptxas and nvdisasm, triton 3.9,
#: ``bench/ptx_report.py``; see TRITON.md), not yet timed on a GPU.
#: ``SEPCONV_TRITON_V2_INTERIOR=0`` (read at import) or setting this attribute (then
#: ``_clear_plans()``) turns them off, so that a GPU run can time both.
INTERIOR = os.environ.get("SEPCONV_TRITON_V2_INTERIOR", "1") != "0"

#: The fused forward's interior tiles (with :data:`INTERIOR`): ``"auto"`` (the default),
#: for 16-bit inputs only; True for every dtype; False never.  ``SEPCONV_TRITON_V2_FUSED_INTERIOR``
#: (read at import: ``1``, ``0``, else ``auto``) or this attribute (then ``_clear_plans()``).
#: Its 16-bit tap loop goes from 53 to 41 instructions (BLOCK_F 128; 84-85 to 66 for 32-64;
#: SASS for sm_90a, triton 3.9, ``bench/ptx_report.py``), no spills; in float32 the filter
#: loop is dominated by the pointwise product's 1088 FFMA a channel block (tl.dot in IEEE
#: float32 has no tensor cores), and the float32 tile of ``F <= 32`` spills 8 bytes with it.
FUSED_INTERIOR = {"1": True, "0": False}.get(
    os.environ.get("SEPCONV_TRITON_V2_FUSED_INTERIOR", "auto"), "auto")


def _fused_interior(dtype: torch.dtype) -> bool:
    """Whether the fused forward of ``dtype`` takes the interior tiles (see
    :data:`FUSED_INTERIOR`)."""
    if FUSED_INTERIOR == "auto":
        return INTERIOR and dtype != torch.float32
    return INTERIOR and bool(FUSED_INTERIOR)


# --------------------------------------------------------------------------- kernels


@triton.jit
def _depthwise_kernel(x_ptr, w_ptr, z_ptr,
                      R, L, L_out, M, CM, K, stride, dilation, pad_left,
                      sxb, sxl, sxc, szb, szl, szj,
                      INT64: tl.constexpr, SEQ_TILES: tl.constexpr,
                      BLOCK_R: tl.constexpr, BLOCK_J: tl.constexpr,
                      EVEN_J: tl.constexpr = False, INTERIOR: tl.constexpr = True):
    """``z[b, t, j] = sum_k x[b, t*stride + k*dilation - pad_left, j // M] * w[k, j]``,
    written through ``z``'s strides in ``z``'s dtype (float32 accumulation).

    With ``INTERIOR`` (:data:`INTERIOR`), a row block whose rows lie in one sequence and
    whose every tap falls inside it (all but the first and last blocks of a long
    sequence) takes :func:`_depthwise_tile_interior`: no row masks, pointers stepped from
    tap to tap (``EVEN_J``: ``CM`` a multiple of ``BLOCK_J``, no channel mask either); the
    others the masked :func:`_depthwise_tile`.  Same products, same order: the same ``z``."""
    pid = tl.program_id(0)
    num_j = tl.cdiv(CM, BLOCK_J)
    pid_r = pid // num_j
    pid_j = pid % num_j
    b, t, row_mask = _rows(pid_r, R, L_out, INT64, SEQ_TILES, BLOCK_R)
    j = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)
    j_mask = j < CM
    b0, t0 = _block_start(pid_r, L_out, INT64, SEQ_TILES, BLOCK_R)
    if INTERIOR:
        if _interior(t0, L, L_out, K, stride, dilation, pad_left, BLOCK_R):
            z = _z_tile(x_ptr, w_ptr, b, t, row_mask, b0, t0, j, j_mask, M, CM, K, L, stride,
                        dilation, pad_left, sxb, sxl, sxc, INT64, BLOCK_R, BLOCK_J, EVEN_J,
                        True)
        else:
            z = _z_tile(x_ptr, w_ptr, b, t, row_mask, b0, t0, j, j_mask, M, CM, K, L, stride,
                        dilation, pad_left, sxb, sxl, sxc, INT64, BLOCK_R, BLOCK_J, EVEN_J,
                        False)
    else:
        z = _z_tile(x_ptr, w_ptr, b, t, row_mask, b0, t0, j, j_mask, M, CM, K, L, stride,
                    dilation, pad_left, sxb, sxl, sxc, INT64, BLOCK_R, BLOCK_J, EVEN_J, False)
    z_off = (b * szb + t * szl)[:, None] + _wide(j, INT64)[None, :] * szj
    tl.store(z_ptr + z_off, z.to(z_ptr.dtype.element_ty),
             mask=row_mask[:, None] & j_mask[None, :])


@triton.jit
def _depthwise_unrolled_kernel(x_ptr, w_ptr, z_ptr,
                               L, L_out, M, CM, K, stride, dilation, pad_left,
                               sxb, sxl, sxc, szb, szl, szj,
                               INT64: tl.constexpr, BLOCK_R: tl.constexpr,
                               BLOCK_J: tl.constexpr, UNROLL: tl.constexpr):
    """``_depthwise_kernel``'s ``z`` with each row block inside one sequence (``b`` a
    scalar: one base pointer per program, each tap a scalar step from it) and the taps
    unrolled ``UNROLL`` at a time (taps past ``K`` masked), so that many loads can be in
    flight before their multiply-adds.  (Unrolling all 31 taps of a k31 layer spills under
    ptxas for sm_90a: every load is hoisted.)"""
    pid = tl.program_id(0)
    num_j = tl.cdiv(CM, BLOCK_J)
    pid_r = pid // num_j
    pid_j = pid % num_j
    b, t, row_mask = _rows(pid_r, 0, L_out, INT64, True, BLOCK_R)
    j = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)
    j_mask = j < CM
    start = t * stride - pad_left
    ptrs = x_ptr + b * sxb + (start * sxl)[:, None] + (_wide(j // M, INT64) * sxc)[None, :]
    z = tl.zeros((BLOCK_R, BLOCK_J), dtype=tl.float32)
    for k0 in range(0, K, UNROLL):
        for i in tl.static_range(UNROLL):
            k = k0 + i
            pos = start + k * dilation
            # vectors, as in _dw_partials_kernel: the interpreter's scalar comparisons
            # joined to a mask make an integer mask
            ok = row_mask & (pos >= 0) & (pos < L) & (tl.zeros_like(t) + k < K)
            xv = tl.load(ptrs + _wide(k * dilation, INT64) * sxl,
                         mask=ok[:, None] & j_mask[None, :], other=0.0)
            wv = tl.load(w_ptr + k * CM + j, mask=j_mask & (tl.zeros_like(j) + k < K),
                         other=0.0)
            z += xv.to(tl.float32) * wv.to(tl.float32)[None, :]
    z_off = (b * szb + t * szl)[:, None] + _wide(j, INT64)[None, :] * szj
    tl.store(z_ptr + z_off, z.to(z_ptr.dtype.element_ty),
             mask=row_mask[:, None] & j_mask[None, :])


@triton.jit
def _dw_partials_kernel(x_ptr, dz_ptr, part_ptr,
                        R, B, NUM_SPLITS, L, L_out, M, CM, K, stride, dilation, pad_left,
                        sxb, sxl, sxc,
                        INT64: tl.constexpr, SEQ_TILES: tl.constexpr,
                        BLOCK_R: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_K: tl.constexpr):
    """``part[s, k, j] = sum over the rows r of split s of x[shift_k(r), j // M] * dz[r, j]``.

    ``dz`` is ``(R, CM)`` contiguous.  The row blocks of ``_rows`` are dealt out to
    ``NUM_SPLITS`` contiguous ranges (an empty range stores zeros).  Taps go ``BLOCK_K`` at
    a time, so each ``dz`` tile is loaded ``ceil(K / BLOCK_K)`` times; the ``BLOCK_K``
    column sums land in a ``(BLOCK_K, BLOCK_J)`` accumulator.
    """
    pid_j = tl.program_id(0)
    split = tl.program_id(1)
    j = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)
    j_mask = j < CM
    col = _wide(j // M, INT64) * sxc
    lo, hi = _split_blocks(split, NUM_SPLITS, R, B, L_out, SEQ_TILES, BLOCK_R)
    kk = tl.arange(0, BLOCK_K)
    base = _wide(split, INT64) * K * CM
    for k0 in range(0, K, BLOCK_K):
        acc = tl.zeros((BLOCK_K, BLOCK_J), dtype=tl.float32)
        for block in range(lo, hi):
            b, t, row_mask = _rows(block, R, L_out, INT64, SEQ_TILES, BLOCK_R)
            r = b * L_out + t
            dz = tl.load(dz_ptr + r[:, None] * CM + j[None, :],
                         mask=row_mask[:, None] & j_mask[None, :], other=0.0).to(tl.float32)
            row = b * sxb
            start = t * stride - pad_left
            for i in tl.static_range(BLOCK_K):
                pos = start + (k0 + i) * dilation
                # taps past K (last group) are never stored: the mask only spares their
                # loads.  A vector, as triton 3.9's interpreter turns a scalar comparison
                # joined to a mask into an integer mask, which tl.load rejects
                tap = tl.zeros((BLOCK_R,), dtype=tl.int32) + (k0 + i)
                ok = row_mask & (pos >= 0) & (pos < L) & (tap < K)
                xv = tl.load(x_ptr + (row + pos * sxl)[:, None] + col[None, :],
                             mask=ok[:, None] & j_mask[None, :], other=0.0)
                s = tl.sum(xv.to(tl.float32) * dz, axis=0)
                acc += tl.where(kk[:, None] == i, s[None, :], 0.0)
        k = k0 + kk
        tl.store(part_ptr + base + k[:, None] * CM + j[None, :], acc,
                 mask=(k < K)[:, None] & j_mask[None, :])


@triton.jit
def _dw_tiles(x_ptr, dz_ptr, block, R, L, L_out, CM, stride, sxb, sxl, j, j_mask, col, shift,
              k_mask, INT64: tl.constexpr, SEQ_TILES: tl.constexpr, BLOCK_R: tl.constexpr):
    """Row block ``block``'s ``dz`` ``(BLOCK_R, BLOCK_J)`` and its ``BLOCK_K`` shifted ``x``
    tiles ``(BLOCK_K, BLOCK_R, BLOCK_J)``, masked (padding, sequence edges, the last
    channels and taps), in their dtypes."""
    b, t, row_mask = _rows(block, R, L_out, INT64, SEQ_TILES, BLOCK_R)
    r = b * L_out + t
    dz = tl.load(dz_ptr + r[:, None] * CM + j[None, :],
                 mask=row_mask[:, None] & j_mask[None, :], other=0.0)
    pos = (t * stride)[None, :] + shift[:, None]  # (BLOCK_K, BLOCK_R)
    ok = row_mask[None, :] & k_mask[:, None] & (pos >= 0) & (pos < L)
    off = (b * sxb + pos * sxl)[:, :, None] + col[None, None, :]
    xv = tl.load(x_ptr + off, mask=ok[:, :, None] & j_mask[None, None, :], other=0.0)
    return dz, xv


@triton.jit
def _dw_rows_once_kernel(x_ptr, dz_ptr, part_ptr,
                         R, B, NUM_SPLITS, L, L_out, M, CM, K, stride, dilation, pad_left,
                         sxb, sxl, sxc,
                         INT64: tl.constexpr, SEQ_TILES: tl.constexpr,
                         BLOCK_R: tl.constexpr, BLOCK_J: tl.constexpr,
                         BLOCK_K: tl.constexpr, EVEN_J: tl.constexpr = False,
                         EVEN_K: tl.constexpr = False, INTERIOR: tl.constexpr = True):
    """``_dw_partials_kernel``'s partials, summed over rows once per program.

    Grid (tap group, channel block, row range): a program owns taps
    ``k0 .. k0 + BLOCK_K - 1`` of one channel block over one row range; the tap groups of
    one (channel block, row range) are adjacent programs, so they run together and read the
    same ``x`` and ``dz`` tiles through L2 rather than each from memory.  Per row block it
    loads the ``BLOCK_K`` shifted ``x`` tiles as one ``(BLOCK_K, BLOCK_R, BLOCK_J)`` masked
    load and adds ``x * dz[None]`` elementwise into a float32 accumulator of that shape (no
    cross-thread traffic in the loop); after its last row block one sum over the rows gives
    the ``(BLOCK_K, BLOCK_J)`` partials.  Each ``dz`` tile is loaded once per tap group
    (by ``ceil(K / BLOCK_K)`` programs, from L2).

    With ``INTERIOR`` (:data:`INTERIOR`), a row block inside one sequence whose taps all
    fall inside it loads both tiles unmasked (``EVEN_J``: ``CM`` a multiple of ``BLOCK_J``;
    ``EVEN_K``: ``K`` of ``BLOCK_K``; else those loop-invariant masks only) from a scalar
    base and offsets computed once per program.  The same products in the same order.
    """
    k0 = tl.program_id(0) * BLOCK_K
    pid_j = tl.program_id(1)
    split = tl.program_id(2)
    j = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)
    j_mask = j < CM
    col = _wide(j // M, INT64) * sxc
    k = k0 + tl.arange(0, BLOCK_K)
    k_mask = k < K
    shift = _wide(k, INT64) * dilation - pad_left  # (BLOCK_K,)
    lo, hi = _split_blocks(split, NUM_SPLITS, R, B, L_out, SEQ_TILES, BLOCK_R)
    acc = tl.zeros((BLOCK_K, BLOCK_R, BLOCK_J), dtype=tl.float32)
    # the interior tiles' offsets from a block's first row (step t0, x row t0*stride)
    tr = _wide(tl.arange(0, BLOCK_R), INT64)
    # dz's tile as (BLOCK_K, BLOCK_R, BLOCK_J) with the same address for every tap: loaded
    # in the x tiles' own layout, it needs no conversion through shared memory
    dz_rel = (tr[:, None] * CM + j[None, :])[None, :, :] + tl.zeros((BLOCK_K, 1, 1),
                                                                    dtype=tr.dtype)
    x_rel = ((tr * stride)[None, :] + shift[:, None]) * sxl  # (BLOCK_K, BLOCK_R)
    x_rel = x_rel[:, :, None] + col[None, None, :]
    kj_mask = k_mask[:, None, None] & j_mask[None, None, :]
    for block in range(lo, hi):
        # (each branch adds its own products: the branches then meet on the accumulator,
        # whose layout is fixed, not on the loaded tiles, which a compiler may lay out
        # differently per branch and convert through shared memory where they meet)
        if INTERIOR:
            b0, t0 = _block_start(block, L_out, INT64, SEQ_TILES, BLOCK_R)
            if _interior(t0, L, L_out, K, stride, dilation, pad_left, BLOCK_R):
                dz_ptrs = dz_ptr + (b0 * L_out + t0) * CM + dz_rel
                x_ptrs = x_ptr + (b0 * sxb + t0 * stride * sxl) + x_rel
                if EVEN_J:
                    dz3 = tl.load(dz_ptrs)
                    if EVEN_K:
                        x3 = tl.load(x_ptrs)
                    else:
                        x3 = tl.load(x_ptrs, mask=k_mask[:, None, None], other=0.0)
                else:
                    dz3 = tl.load(dz_ptrs, mask=j_mask[None, None, :], other=0.0)
                    x3 = tl.load(x_ptrs, mask=kj_mask, other=0.0)
                acc = tl.fma(x3.to(tl.float32), dz3.to(tl.float32), acc)
            else:
                dz, xv = _dw_tiles(x_ptr, dz_ptr, block, R, L, L_out, CM, stride, sxb, sxl,
                                   j, j_mask, col, shift, k_mask, INT64, SEQ_TILES, BLOCK_R)
                acc = tl.fma(xv.to(tl.float32), dz.to(tl.float32)[None, :, :], acc)
        else:
            dz, xv = _dw_tiles(x_ptr, dz_ptr, block, R, L, L_out, CM, stride, sxb, sxl,
                               j, j_mask, col, shift, k_mask, INT64, SEQ_TILES, BLOCK_R)
            acc = tl.fma(xv.to(tl.float32), dz.to(tl.float32)[None, :, :], acc)
    part = tl.sum(acc, axis=1)
    base = _wide(split, INT64) * K * CM
    tl.store(part_ptr + base + _wide(k, INT64)[:, None] * CM + j[None, :], part,
             mask=k_mask[:, None] & j_mask[None, :])


# ------------------------------------------------------------------------- configs


def _cfg(num_warps, num_stages, **blocks):
    return triton.Config(blocks, num_warps=num_warps, num_stages=num_stages)


#: Fixed tiles per kernel, every dtype (d(depthwise)'s measured; ``bench/gpu_probe.py --only v2``
#: times alternatives by replacing entries).  ``fused``: ``(BLOCK_R, BLOCK_J)`` by
#: ``BLOCK_F``, which is ``F`` rounded up to a power of two.
PICKS = {
    "fused": {16: _cfg(4, 3, BLOCK_R=64, BLOCK_J=32), 32: _cfg(4, 3, BLOCK_R=64, BLOCK_J=32),
              64: _cfg(4, 3, BLOCK_R=64, BLOCK_J=32), 128: _cfg(8, 3, BLOCK_R=64, BLOCK_J=32),
              256: _cfg(8, 2, BLOCK_R=64, BLOCK_J=32), 512: _cfg(8, 2, BLOCK_R=32, BLOCK_J=32)},
    "depthwise": _cfg(8, 2, BLOCK_R=64, BLOCK_J=64),
    "depthwise_unrolled": _cfg(8, 2, BLOCK_R=64, BLOCK_J=64, UNROLL=4),
    "dw": _cfg(8, 2, BLOCK_R=64, BLOCK_J=64, BLOCK_K=4),
    # rows_once: BLOCK_K x BLOCK_R x BLOCK_J float32 accumulators, 32 per thread in both
    # tiles (64 per thread takes 250+ registers with int64 offsets and spills, ptxas for
    # sm_90a).  The H200 probe's fastest (2026-11-27): 8 taps a pass for K >= 8 (k31:
    # 0.97 / 1.08 ms float32 / bfloat16 against 1.12-1.45 / 1.31-1.32 for the 4-tap tiles),
    # 4 taps for shorter kernels (k4: 0.059 / 0.097 ms against 0.091 / 0.145 for 8 taps).
    "dw_rows_once": _cfg(4, 2, BLOCK_R=32, BLOCK_J=32, BLOCK_K=4),
    "dw_rows_once_long": _cfg(8, 2, BLOCK_R=16, BLOCK_J=64, BLOCK_K=8),
}
_INTERPRETER = {"fused_rows": 32, "depthwise": _cfg(4, 1, BLOCK_R=32, BLOCK_J=16),
                "depthwise_unrolled": _cfg(4, 1, BLOCK_R=16, BLOCK_J=16, UNROLL=2),
                "dw": _cfg(4, 1, BLOCK_R=16, BLOCK_J=16, BLOCK_K=2),
                "dw_rows_once": _cfg(4, 1, BLOCK_R=16, BLOCK_J=16, BLOCK_K=2),
                "dw_rows_once_long": _cfg(4, 1, BLOCK_R=16, BLOCK_J=16, BLOCK_K=4)}


@functools.lru_cache(maxsize=None)
def _fused_config(f: int) -> triton.Config:
    block_f = max(16, _next_pow2(f))
    if INTERPRET:
        return _cfg(4, 1, BLOCK_R=_INTERPRETER["fused_rows"], BLOCK_J=16, BLOCK_F=block_f)
    tile = PICKS["fused"][block_f]
    return _cfg(tile.num_warps, tile.num_stages, **tile.kwargs, BLOCK_F=block_f)


def _config(name: str) -> triton.Config:
    return (_INTERPRETER if INTERPRET else PICKS)[name]


# ------------------------------------------------------------------------ launchers


def _geometry(x, w, channels_last):
    batch = x.shape[0]
    length, channels = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[1])
    k, cm = w.shape
    return batch, length, channels, k, cm


def _depthwise(x, w, stride, dilation, pad_left, l_out, channels_last, z, kernel=None):
    """Fill ``z`` (``(B, L_out, CM)`` strides given as a tensor) with the depthwise step;
    ``kernel`` one of :data:`DEPTHWISE_KERNELS` (:data:`DEPTHWISE_KERNEL` when ``None``)."""
    kernel = DEPTHWISE_KERNEL if kernel is None else kernel
    if kernel not in DEPTHWISE_KERNELS:
        raise ValueError(f"triton_v2.DEPTHWISE_KERNEL (or SEPCONV_TRITON_V2_DEPTHWISE) must "
                         f"be one of {DEPTHWISE_KERNELS}; received {kernel!r}")
    grid, ints, constexprs, warps, stages, compiled = _depthwise_plan(
        x.shape, x.stride(), z.shape, z.stride(), w.shape[0], stride, dilation, pad_left,
        channels_last, kernel)
    _fast.launch(_depthwise_unrolled_kernel if kernel == "unrolled" else _depthwise_kernel,
                 grid, (x, w, z) + ints, constexprs, warps, stages, compiled)
    return z


@functools.lru_cache(maxsize=1024)
def _depthwise_plan(x_shape, x_strides, z_shape, z_strides, k, stride, dilation, pad_left,
                    channels_last, kernel) -> tuple:
    """:func:`_depthwise`'s launch for one call signature: ``(grid, arguments after the
    tensors, constexprs, num_warps, num_stages, compiled kernels)``."""
    batch = x_shape[0]
    length, channels = (x_shape[1], x_shape[2]) if channels_last else (x_shape[2], x_shape[1])
    l_out, cm = z_shape[1], z_shape[2]
    sxb, sxl, sxc = _v1._bsc(x_strides, channels_last)
    int64 = _v1._int64(max(_v1._span(x_shape, x_strides), _v1._span(z_shape, z_strides)))
    geometry = (length, l_out, cm // channels, cm, k, stride, dilation, pad_left,
                sxb, sxl, sxc, *z_strides)
    if kernel == "unrolled":
        config = _config("depthwise_unrolled")
        grid = (batch * _cdiv(l_out, config.kwargs["BLOCK_R"])
                * _cdiv(cm, config.kwargs["BLOCK_J"]),)
        return grid, geometry, dict(INT64=int64, **config.kwargs), config.num_warps, \
            config.num_stages, {}
    config = _config("depthwise")
    seq = sxl == 1  # _v1._seq_tiles
    grid = (_v1._row_blocks(batch, l_out, config.kwargs["BLOCK_R"], seq)
            * _cdiv(cm, config.kwargs["BLOCK_J"]),)
    return grid, (batch * l_out,) + geometry, dict(
        INT64=int64, SEQ_TILES=seq, EVEN_J=cm % config.kwargs["BLOCK_J"] == 0,
        INTERIOR=INTERIOR, **config.kwargs), config.num_warps, config.num_stages, {}


@functools.lru_cache(maxsize=1024)
def _fused_plan(x_shape, x_strides, dtype, k, cm, f, has_bias, stride, dilation, pad_left,
                l_out, channels_last, want_z, precision) -> tuple:
    """The fused forward's launch for one call signature: ``(y shape, grid, integer
    arguments, constexprs, num_warps, num_stages, compiled kernels)`` (the last for
    ``triton_launch.launch``'s ``plan``).  Remembered: working it out took
    ~10 us of Python a call, more than the small layers' kernels (issue 12)."""
    batch = x_shape[0]
    length, channels = (x_shape[1], x_shape[2]) if channels_last else (x_shape[2], x_shape[1])
    rows = batch * l_out
    config = _fused_config(f)
    sxb, sxl, sxc = _v1._bsc(x_strides, channels_last)
    seq = sxl == 1  # _v1._seq_tiles
    if channels_last:
        y_shape, (syb, syl, syf) = (batch, l_out, f), (l_out * f, f, 1)
    else:
        y_shape, (syb, syl, syf) = (batch, f, l_out), (f * l_out, 1, l_out)
    x_span = _v1._span(x_shape, x_strides)
    int64 = _v1._int64(max(x_span, rows * f, cm * f, rows * cm if want_z else 0))
    grid = (_v1._row_blocks(batch, l_out, config.kwargs["BLOCK_R"], seq),)
    ints = (rows, length, l_out, cm // channels, cm, f, k, stride, dilation, pad_left,
            sxb, sxl, sxc, syb, syl, syf)
    constexprs = dict(HAS_BIAS=has_bias, STORE_Z=want_z, PRECISION=precision,
                      UPCAST=_v1._upcast(dtype), INT64=int64, SEQ_TILES=seq,
                      EVEN_J=cm % config.kwargs["BLOCK_J"] == 0,
                      INTERIOR=_fused_interior(dtype), **config.kwargs)
    return y_shape, grid, ints, constexprs, config.num_warps, config.num_stages, {}


def _forward(x, w, p, bias, stride, dilation, pad_left, pad_right, channels_last,
             want_z=False):
    """``(y, z)``: ``y`` in ``x``'s layout (contiguous); ``z`` the depthwise output as
    ``(B, L_out, C*M)`` (a view) when ``want_z``, else ``None``.  ``w`` ``(K, C*M)`` and
    ``p`` contiguous."""
    batch, length, channels, k, cm = _geometry(x, w, channels_last)
    f = p.shape[1]
    l_out = _padding.padded_output_length(length, k, stride, dilation, pad_left,
                                          pad_right)
    rows = batch * l_out
    if rows == 0 or f == 0:
        shape = (batch, l_out, f) if channels_last else (batch, f, l_out)
        return torch.empty(shape, device=x.device, dtype=x.dtype), None
    # float32 tiles that also store z spill registers under triton 3.6 (ptxas -v for
    # sm_90): a float32 forward that keeps z takes the unfused path, which writes z anyway.
    fused = f <= min(FUSED_MAX_F, 512) and not (want_z and x.dtype == torch.float32)
    if fused:  # one filter block: each z tile computed once
        y_shape, grid, ints, constexprs, warps, stages, compiled = _fused_plan(
            x.shape, x.stride(), x.dtype, k, cm, f, bias is not None, stride, dilation,
            pad_left, l_out, channels_last, want_z, _v1._precision(x.dtype))
        y = torch.empty(y_shape, device=x.device, dtype=x.dtype)
        z = torch.empty((rows, cm), device=x.device, dtype=x.dtype) if want_z else p
        _fast.launch(_v1._fwd_kernel, grid,
                     (x, w, p, bias if bias is not None else p, y, z) + ints, constexprs,
                     warps, stages, compiled)
        return y, (z.view(batch, l_out, cm) if want_z else None)
    if channels_last:
        z = torch.empty((rows, cm), device=x.device, dtype=x.dtype)
        _depthwise(x, w, stride, dilation, pad_left, l_out, True, z.view(batch, l_out, cm))
        y = torch.addmm(bias, z, p) if bias is not None else torch.mm(z, p)
        return y.view(batch, l_out, f), (z.view(batch, l_out, cm) if want_z else None)
    z = torch.empty((batch, cm, l_out), device=x.device, dtype=x.dtype)
    _depthwise(x, w, stride, dilation, pad_left, l_out, False, z.transpose(1, 2))
    pt = p.t().expand(batch, f, cm)
    if bias is not None:
        y = torch.baddbmm(bias.view(1, f, 1).expand(batch, f, l_out), pt, z)
    else:
        y = torch.bmm(pt, z)
    return y, (z.transpose(1, 2) if want_z else None)


def _dw_splits(num_blocks: int, cm: int, block_j: int, sms: int, tap_groups: int = 1) -> int:
    """Row ranges of the d(depthwise) partials kernels: about 4 programs per SM counting
    channel blocks and tap groups (``_dw_rows_once_kernel``'s first grid axis), at most one
    range per row block (the float32 partials, ``(splits, K, CM)``, are summed by torch)."""
    programs = _cdiv(cm, block_j) * tap_groups
    return max(1, min(_cdiv(4 * sms, programs), num_blocks))


@functools.lru_cache(maxsize=1024)
def _dw_plan(x_shape, x_strides, cm, k, stride, dilation, pad_left, l_out, channels_last,
             kernel, sms) -> tuple:
    """:func:`_depthwise_grad`'s launch for one call signature: ``(partials shape,
    rows_once, grid, arguments after the tensors, constexprs, num_warps, num_stages,
    compiled kernels)``."""
    rows_once = kernel == "rows_once"
    batch = x_shape[0]
    length, channels = (x_shape[1], x_shape[2]) if channels_last else (x_shape[2], x_shape[1])
    config = _config(("dw_rows_once_long" if k >= 8 else "dw_rows_once") if rows_once
                     else "dw")
    block_r, block_j = config.kwargs["BLOCK_R"], config.kwargs["BLOCK_J"]
    tap_groups = _cdiv(k, config.kwargs["BLOCK_K"]) if rows_once else 1
    sxb, sxl, sxc = _v1._bsc(x_strides, channels_last)
    seq = sxl == 1  # _v1._seq_tiles
    num_blocks = _v1._row_blocks(batch, l_out, block_r, seq)
    splits = _dw_splits(num_blocks, cm, block_j, sms, tap_groups)
    x_span = _v1._span(x_shape, x_strides)
    int64 = _v1._int64(max(x_span, batch * l_out * cm, splits * k * cm))
    grid = (((tap_groups,) if rows_once else ()) + (_cdiv(cm, block_j), splits))
    ints = (batch * l_out, batch, splits, length, l_out, cm // channels, cm, k, stride,
            dilation, pad_left, sxb, sxl, sxc)
    constexprs = dict(INT64=int64, SEQ_TILES=seq, **config.kwargs)
    if rows_once:
        constexprs.update(EVEN_J=cm % block_j == 0, EVEN_K=k % config.kwargs["BLOCK_K"] == 0,
                          INTERIOR=INTERIOR)
    return ((splits, k, cm), rows_once, grid, ints, constexprs, config.num_warps,
            config.num_stages, {})


def _depthwise_grad(x, dz, k, stride, dilation, pad_left, l_out, channels_last,
                    kernel=None):
    """``d(depthwise)`` as float32 ``(K, C*M)``: ``sum_r x[shift_k(r), j // M] * dz[r, j]``.
    ``dz`` is ``(B * L_out, C*M)`` contiguous; ``kernel`` one of :data:`DW_KERNELS`
    (:data:`DW_KERNEL` when ``None``)."""
    kernel = DW_KERNEL if kernel is None else kernel
    if kernel not in DW_KERNELS:
        raise ValueError(f"triton_v2.DW_KERNEL (or SEPCONV_TRITON_V2_DW) must be one of "
                         f"{DW_KERNELS}; received {kernel!r}")
    shape, rows_once, grid, ints, constexprs, warps, stages, compiled = _dw_plan(
        x.shape, x.stride(), dz.shape[1], k, stride, dilation, pad_left, l_out,
        channels_last, kernel, _v1._num_sms(x.device))
    part = torch.empty(shape, device=x.device, dtype=torch.float32)
    _fast.launch(_dw_rows_once_kernel if rows_once else _dw_partials_kernel, grid,
                 (x, dz, part) + ints, constexprs, warps, stages, compiled)
    return part[0] if shape[0] == 1 else part.sum(0)


@functools.lru_cache(maxsize=1024)
def _dx_plan(x_shape, x_strides, dy_shape, dy_strides, cm, k, stride, dilation, pad_left,
             channels_last) -> tuple:
    """Variant 1's transposed stencil (``_bwd_dx_kernel``, its fixed config) for ``dx``,
    contiguous in ``x``'s layout: ``(grid, arguments after the tensors, constexprs,
    num_warps, num_stages, compiled kernels)``."""
    batch = x_shape[0]
    length, channels = (x_shape[1], x_shape[2]) if channels_last else (x_shape[2], x_shape[1])
    l_out = dy_shape[1] if channels_last else dy_shape[2]
    config = _v1._pick_dx({})
    # dx: contiguous, x's shape; strides as (batch, step, channel)
    sdb, sdl, sdc = ((length * channels, channels, 1) if channels_last
                     else (channels * length, 1, length))
    seq = sdl == 1
    int64 = _v1._int64(max(_v1._span(x_shape, x_strides), _v1._span(dy_shape, dy_strides),
                           batch * l_out * cm, batch * length * channels))
    grid = (_v1._row_blocks(batch, length, config.kwargs["BLOCK_I"], seq)
            * _cdiv(channels, config.kwargs["BLOCK_C"]),)
    ints = (batch * length, length, l_out, channels, cm // channels, cm, k, stride, dilation,
            pad_left, sdb, sdl, sdc)
    return grid, ints, dict(INT64=int64, SEQ_TILES=seq, INTERIOR=INTERIOR,
                            EVEN_C=channels % config.kwargs["BLOCK_C"] == 0,
                            **config.kwargs), config.num_warps, config.num_stages, {}


def _clear_plans() -> None:
    """Forget the remembered launches: whoever changes what plans read (``PICKS``,
    ``triton_sepconv.INT64_SPAN``; the probe, tests) calls it."""
    for plan in (_fused_config, _depthwise_plan, _fused_plan, _dw_plan, _dx_plan):
        plan.cache_clear()


def _backward(dy, x, w, p, has_bias, stride, dilation, pad_left, channels_last,
              need_dx, need_dw, need_dp, need_db, z=None):
    """Gradients ``(dx, dw (K, C*M), dp (C*M, F), db)``; ``None`` where not needed.
    ``z``: the forward's depthwise output ``(B, L_out, C*M)`` if it was saved, else it is
    recomputed for ``d(pointwise)``."""
    batch, length, channels, k, cm = _geometry(x, w, channels_last)
    f = p.shape[1]
    l_out = dy.shape[1] if channels_last else dy.shape[2]
    rows = batch * l_out
    if rows == 0:  # an empty batch: every gradient is zero, no kernel to launch
        return (torch.zeros_like(x) if need_dx else None, torch.zeros_like(w),
                torch.zeros_like(p), torch.zeros((f,), device=x.device, dtype=p.dtype))
    # dy as (R, F) rows: a view for channels_last, a transposing copy for channels_first.
    dy_rows = (dy if channels_last else dy.transpose(1, 2)).reshape(rows, f)
    dx = dw = dp = db = None
    if need_dx or need_dw:
        dz = torch.mm(dy_rows, p.t())  # (R, CM) contiguous, x's dtype
        if need_dw:
            dw = _depthwise_grad(x, dz, k, stride, dilation, pad_left, l_out,
                                 channels_last)
            if w.dtype != torch.float32:  # (a call less when it is: host time, issue 12)
                dw = dw.to(w.dtype)
        if need_dx:
            dx = torch.empty_like(x, memory_format=torch.contiguous_format)
            grid, ints, constexprs, warps, stages, compiled = _dx_plan(
                x.shape, x.stride(), dy.shape, dy.stride(), cm, k, stride, dilation, pad_left,
                channels_last)
            _fast.launch(_v1._bwd_dx_kernel, grid, (dz, w, dx) + ints, constexprs, warps,
                         stages, compiled)
    if need_dp:
        if z is None:
            z = torch.empty((rows, cm), device=x.device, dtype=x.dtype)
            _depthwise(x, w, stride, dilation, pad_left, l_out, channels_last,
                       z.view(batch, l_out, cm))
        dp = torch.mm(z.reshape(rows, cm).t(), dy_rows)  # (p's dtype: _v1._supported)
    if need_db and has_bias:
        if p.dtype == torch.float32:
            db = dy_rows.sum(0)
        else:  # accumulated in float32, rounded once
            db = dy_rows.sum(0, dtype=torch.float32).to(p.dtype)
    return dx, dw, dp, db


class _products_in_tf32:
    """float32 products as a torch convolution's: in TF32 exactly when cuDNN's flag
    (``torch.backends.cudnn.allow_tf32``, True by default) allows it, as
    ``kernels/cuda.py``'s compositions and every torch convolution.  cuBLAS' own flag
    (``torch.backends.cuda.matmul.allow_tf32``, False by default), which the GEMMs here and
    the fused kernel's ``tl.dot`` (``triton_sepconv._precision``) read, is set to it for the
    duration and restored.  (A class: a generator context manager costs ~1.5 us a call.)"""

    __slots__ = ("allowed", "before")

    def __init__(self, allowed: bool):
        self.allowed = allowed

    def __enter__(self):
        self.before = torch._C._get_cublas_allow_tf32()
        if self.before != self.allowed:
            torch._C._set_cublas_allow_tf32(self.allowed)

    def __exit__(self, *exc):
        if self.before != self.allowed:
            torch._C._set_cublas_allow_tf32(self.before)


def _forward_call(x, depthwise, pointwise, bias, stride, dilation, pad_left, pad_right,
                  channels_last, want_z, tf32):
    """:func:`_forward` on ``x``'s device from the layer's weights, float32 products in TF32
    where ``tf32`` (:func:`_products_in_tf32`): ``(y, z)``."""
    w, p = _v1._weights(depthwise, pointwise)
    with _v1._on(x.device), _products_in_tf32(tf32):
        return _forward(x, w, p, bias, stride, dilation, pad_left, pad_right, channels_last,
                        want_z)


class _SeparableConv1d(_v1._SeparableConv1d):
    """Variant 2's forward (the intermediate saved for d(pointwise) under ``SAVE_Z``);
    variant 1's backward, with variant 2's kernels; double backward as variant 1 (the
    reference's differentiable gradients under ``create_graph=True``).  float32 products
    in TF32 where cuDNN's flag allows it at the forward (:func:`_products_in_tf32`)."""

    @staticmethod
    def forward(ctx, x, depthwise, pointwise, bias, stride, dilation, pad_left, pad_right,
                channels_last, save_z):
        want_z = save_z and ctx.needs_input_grad[2]  # d(pointwise) = z^T @ dy
        ctx.tf32 = torch._C._get_cudnn_allow_tf32()
        y, z = _forward_call(x, depthwise, pointwise, bias, stride, dilation, pad_left,
                             pad_right, channels_last, want_z, ctx.tf32)
        # z when saved is an intermediate: fine here, as create_graph=True goes to the
        # reference's differentiable gradients
        _v1._save(ctx, x, depthwise, pointwise, bias, stride, dilation, pad_left, pad_right,
                  channels_last, _backward, *([z] if want_z else []))
        return y

    @staticmethod
    def backward(ctx, dy):
        with _products_in_tf32(ctx.tf32):
            return _v1._SeparableConv1d.backward(ctx, dy) + (None,)  # (save_z)


def separable_conv1d(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor,
                     bias: Optional[torch.Tensor], *, stride: int, dilation: int,
                     pad_left: int, pad_right: int, channels_last: bool,
                     save_z: Optional[bool] = None) -> torch.Tensor:
    """Variant 2 of :func:`sepconv.kernels.triton_sepconv.separable_conv1d`: same
    signature, result and fallbacks (the reference kernel for what Triton cannot run).

    ``save_z``: keep the forward's depthwise output for the backward (see :data:`SAVE_Z`,
    the default when ``None``); the dispatcher asks for it when training."""
    if not _v1._supported(x, depthwise, pointwise, bias):
        return _reference.separable_conv1d(x, depthwise, pointwise, bias, stride=stride,
                                           dilation=dilation, pad_left=pad_left,
                                           pad_right=pad_right, channels_last=channels_last)
    if not (torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (x, depthwise, pointwise, bias))):
        # inference: the forward alone, without an autograd node's bookkeeping
        return _forward_call(x, depthwise, pointwise, bias, stride, dilation, pad_left,
                             pad_right, channels_last, False,
                             torch._C._get_cudnn_allow_tf32())[0]
    return _SeparableConv1d.apply(x, depthwise, pointwise, bias, stride, dilation,
                                  pad_left, pad_right, channels_last,
                                  SAVE_Z if save_z is None else bool(save_z))
