"""Batch normalization's training passes on CPU: a C routine of the library's build
(``_cpu_native.build``: same cache, compiler flags and OpenMP runtime).

``functional.normalize`` in training computes, per channel of a ``(rows, channels)``
float32 view, the mean and biased variance, then ``y = x * scale + offset``; its backward
the sums of ``dy`` and ``dy * (x - mean)``, then ``dx = dy * scale + (x - mean) * k1 +
k0``.  In torch ops those are ~8 full passes over the data forward and ~10 backward
(temporaries included), and elementwise loops over a broadcast of a few channels run 3-4x
slower than over wide rows; here forward reads ``x`` twice and writes ``y`` once, backward
reads ``dy`` and ``x`` twice and writes ``dx`` once.  Sums run in double (8 doubles per
AVX-512 vector; the torch ops summed in float32; each pass takes both sums of its
column, the variance as ``E[x^2] - mean^2``), over chunks of whole rows at least 64 floats
long so that any channel count vectorises, strips of 64 columns of a chunk summed in
vector registers over blocks of 64 chunks (0.7-0.95x the time of an in-memory
accumulator per element, bench/norm_ab.py); threads share blocks of rows and their
partial sums are added in thread order at the end (one order per thread count:
deterministic).
"""

from __future__ import annotations

import ctypes
from typing import Optional

import torch

from . import _cpu_native
from . import threads as _policy

SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef SEPCONV_OMP
#include <omp.h>
#endif

/* whole rows per chunk: chunks of at least 64 contiguous floats */
static int64_t rows_per_chunk(int64_t c) { return c >= 64 ? 1 : (64 + c - 1) / c; }

/* s1[j] = sum over rows of a[:, j] and s2[j] = sum of a[:, j] * b[:, j] (b == NULL: of
   a[:, j]^2), both in double, in one pass over the data.  Each thread takes blocks of
   BLOCK chunks; within a block, strips of STRIP columns of the chunk sum in registers
   (fixed-size locals the compiler keeps in vector registers) and are added into the
   thread's per-column sums once per block: the per-element load and store of an
   in-memory accumulator is gone (the passes were bound by it, not by memory). */
#define STRIP 64
#define BLOCK 64
static void column_sums(const float *a, const float *b, int64_t m, int64_t c, double *s1,
                        double *s2, int threads) {
    const int64_t u = rows_per_chunk(c), len = u * c, chunks = m / u;
    const int64_t blocks = (chunks + BLOCK - 1) / BLOCK, strips = len / STRIP;
    memset(s1, 0, (size_t)c * sizeof(double));
    memset(s2, 0, (size_t)c * sizeof(double));
    if (threads < 1) threads = 1;
    /* one pair of partial sums per thread, added in thread order after the team (an
       order that does not depend on which thread finishes first: deterministic) */
    double *part = calloc((size_t)threads * len * 2, sizeof(double));
    int team = 1;
#ifdef SEPCONV_OMP
    #pragma omp parallel num_threads(threads)
#endif
    {
        int me = 0;
#ifdef SEPCONV_OMP
        me = omp_get_thread_num();
        #pragma omp single
        team = omp_get_num_threads();
#endif
        double *acc = part + (size_t)me * len * 2, *acc2 = acc + len;
#ifdef SEPCONV_OMP
        #pragma omp for schedule(static)
#endif
        for (int64_t qb = 0; qb < blocks; ++qb) {
            const int64_t q0 = qb * BLOCK, q1 = q0 + BLOCK < chunks ? q0 + BLOCK : chunks;
            for (int64_t t = 0; t < strips; ++t) {
                double r1[STRIP] = {0}, r2[STRIP] = {0};
                for (int64_t q = q0; q < q1; ++q) {
                    const float *pa = a + q * len + t * STRIP;
                    const float *pb = (b ? b : a) + q * len + t * STRIP;
                    for (int i = 0; i < STRIP; ++i) {
                        const double va = pa[i];
                        r1[i] += va;
                        r2[i] += va * (double)pb[i];
                    }
                }
                for (int i = 0; i < STRIP; ++i) {
                    acc[t * STRIP + i] += r1[i];
                    acc2[t * STRIP + i] += r2[i];
                }
            }
            for (int64_t q = q0; q < q1; ++q) {  /* the columns after the last strip */
                const float *pa = a + q * len, *pb = (b ? b : a) + q * len;
                for (int64_t i = strips * STRIP; i < len; ++i) {
                    const double va = pa[i];
                    acc[i] += va;
                    acc2[i] += va * (double)pb[i];
                }
            }
        }
    }
    for (int t = 0; t < team; ++t)
        for (int64_t i = 0; i < len; ++i) {
            s1[i % c] += part[(size_t)t * len * 2 + i];
            s2[i % c] += part[(size_t)t * len * 2 + len + i];
        }
    free(part);
    for (int64_t i = chunks * len; i < m * c; ++i) {  /* the rows after the last chunk */
        const double va = a[i];
        s1[i % c] += va;
        s2[i % c] += va * (double)(b ? b : a)[i];
    }
}

/* mean and biased variance of each column of x (m, c): E[x^2] - mean^2 in double (float32
   data: exact products, 53-bit sums; the cancellation costs accuracy only where
   |mean| / std is beyond ~1e5) */
void sepconv_bn_stats(const float *x, int64_t m, int64_t c, float *mean, float *var,
                      int threads) {
    double *s = malloc((size_t)c * 2 * sizeof(double)), *s2 = s + c;
    column_sums(x, NULL, m, c, s, s2, threads);
    for (int64_t j = 0; j < c; ++j) {
        const double mu = s[j] / (double)m, v = s2[j] / (double)m - mu * mu;
        mean[j] = (float)mu;
        var[j] = (float)(v > 0.0 ? v : 0.0);
    }
    free(s);
}

/* the backward's sums: dsum[j] = sum dy[:, j], dot[j] = sum dy[:, j] * (x[:, j] - mean[j]) */
void sepconv_bn_grad_sums(const float *dy, const float *x, const float *mean, int64_t m,
                          int64_t c, float *dsum, float *dot, int threads) {
    double *s = malloc((size_t)c * 2 * sizeof(double)), *s2 = s + c;
    column_sums(dy, x, m, c, s, s2, threads);
    for (int64_t j = 0; j < c; ++j) {
        dsum[j] = (float)s[j];
        dot[j] = (float)(s2[j] - (double)mean[j] * s[j]);
    }
    free(s);
}

/* out = a * s1[j] + (b - mean[j]) * s2[j] + s0[j] per column j; b == NULL: a * s1 + s0 */
void sepconv_bn_affine(const float *a, const float *b, const float *mean, const float *s1,
                       const float *s2, const float *s0, int64_t m, int64_t c, float *out,
                       int threads) {
    const int64_t u = rows_per_chunk(c), len = u * c, chunks = m / u;
    float *rep = malloc((size_t)len * 4 * sizeof(float));
    for (int64_t i = 0; i < len; ++i) {
        const int64_t j = i % c;
        rep[i] = s1[j];
        rep[len + i] = s0[j];
        rep[2 * len + i] = b ? s2[j] : 0.0f;
        rep[3 * len + i] = b ? mean[j] : 0.0f;
    }
    const float *r1 = rep, *r0 = rep + len, *r2 = rep + 2 * len, *rm = rep + 3 * len;
#ifdef SEPCONV_OMP
    #pragma omp parallel for schedule(static) num_threads(threads)
#endif
    for (int64_t q = 0; q < chunks; ++q) {
        const float *pa = a + q * len;
        float *po = out + q * len;
        if (b) {
            const float *pb = b + q * len;
            for (int64_t i = 0; i < len; ++i)
                po[i] = pa[i] * r1[i] + (pb[i] - rm[i]) * r2[i] + r0[i];
        } else {
            for (int64_t i = 0; i < len; ++i) po[i] = pa[i] * r1[i] + r0[i];
        }
    }
    for (int64_t r = chunks * u; r < m; ++r)
        for (int64_t j = 0; j < c; ++j) {
            const int64_t i = r * c + j;
            out[i] = b ? a[i] * s1[j] + (b[i] - mean[j]) * s2[j] + s0[j] : a[i] * s1[j] + s0[j];
        }
    free(rep);
}
"""

# -ffp-contract=off: no fused multiply-adds, so the affine pass rounds after the product as
# TensorFlow and torch's two ops do (functional.scale_offset); with GCC's default
# contraction under -march=native about one output in four differed in its last bit.
_FLAGS = ["-O3", "-march=native", "-fPIC", "-std=gnu11", "-ffp-contract=off"]
_lib: Optional[ctypes.CDLL] = None
_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int

#: The switch :func:`takes` reads (benchmarks alternate it; ``False``: the torch ops).
ENABLED = True
#: Below this many elements one thread (the OpenMP team costs more than it saves).
MIN_PARALLEL = 1 << 16


def _declare(lib: ctypes.CDLL) -> None:
    lib.sepconv_bn_stats.argtypes = [_P, _I64, _I64, _P, _P, _INT]
    lib.sepconv_bn_grad_sums.argtypes = [_P, _P, _P, _I64, _I64, _P, _P, _INT]
    lib.sepconv_bn_affine.argtypes = [_P, _P, _P, _P, _P, _P, _I64, _I64, _P, _INT]
    for fn in (lib.sepconv_bn_stats, lib.sepconv_bn_grad_sums, lib.sepconv_bn_affine):
        fn.restype = None


_LIBRARY = _cpu_native.Library("batchnorm", SOURCE, _FLAGS, _declare,
                               openmp_args=("-fopenmp", "-DSEPCONV_OMP"))


def load() -> Optional[ctypes.CDLL]:
    """The compiled library, built on first use; ``None`` where it cannot be built."""
    global _lib
    _lib = _LIBRARY.load()
    return _lib


def takes(x: torch.Tensor, axes: tuple, *params: Optional[torch.Tensor]) -> bool:
    """Whether the C routine runs this normalization: a CPU float32 input normalised over
    every axis but the last (the routine reads it contiguous: the caller copies a strided
    one, e.g. a convolution's NCHW result of one input channel seen channels_last, which
    costs one pass and still beats torch's ops on strided data), per-channel float32
    ``params``, the routine built."""
    rank = x.dim()
    if not ENABLED or x.dtype != torch.float32 or not x.is_cpu or rank < 2 or x.numel() == 0:
        return False
    if axes != range(rank - 1) and sorted(a % rank for a in axes) != list(range(rank - 1)):
        return False
    c = x.shape[-1]
    for p in params:  # (rank axes, the last of c channels and c elements: 1 elsewhere)
        if p is not None and (p.dtype != torch.float32 or not p.is_cpu or p.dim() != rank
                              or p.shape[-1] != c or p.numel() != c):
            return False
    return _lib is not None or load() is not None


def _threads(work: int) -> int:
    return torch.get_num_threads() if work >= MIN_PARALLEL else 1


def _vector(t: torch.Tensor, channels: int) -> torch.Tensor:
    return t.reshape(channels).contiguous()


def stats(x: torch.Tensor) -> tuple:
    """``(mean, variance)``, each ``(channels,)`` float32, of contiguous ``x`` over every
    axis but the last."""
    c = x.shape[-1]
    m = x.numel() // c
    mean, var = torch.empty(c), torch.empty(c)

    def call():
        _lib.sepconv_bn_stats(x.data_ptr(), m, c, mean.data_ptr(), var.data_ptr(),
                              _threads(x.numel()))
    _policy.run("batchnorm stats", x.numel(), call, (m, c))
    return mean, var


def affine(a: torch.Tensor, s1: torch.Tensor, s0: torch.Tensor,
           b: Optional[torch.Tensor] = None, mean: Optional[torch.Tensor] = None,
           s2: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``a * s1 + s0`` (per-channel ``s1``, ``s0``), plus ``(b - mean) * s2`` when ``b`` is
    given; contiguous float32 operands of ``a``'s shape."""
    c = a.shape[-1]
    m = a.numel() // c
    out = torch.empty_like(a)
    vec = [_vector(v, c) if v is not None else None for v in (mean, s1, s2, s0)]
    ptr = [v.data_ptr() if v is not None else None for v in vec]

    def call():
        _lib.sepconv_bn_affine(a.data_ptr(), b.data_ptr() if b is not None else None,
                               ptr[0], ptr[1], ptr[2], ptr[3], m, c, out.data_ptr(),
                               _threads(a.numel()))
    _policy.run("batchnorm affine", a.numel(), call, (m, c, b is None))
    return out


def grad_sums(dy: torch.Tensor, x: torch.Tensor, mean: torch.Tensor) -> tuple:
    """``(sum(dy), sum(dy * (x - mean)))`` per channel, float32 ``(channels,)``."""
    c = x.shape[-1]
    m = x.numel() // c
    mean = _vector(mean, c)
    dsum, dot = torch.empty(c), torch.empty(c)

    def call():
        _lib.sepconv_bn_grad_sums(dy.data_ptr(), x.data_ptr(), mean.data_ptr(), m, c,
                                  dsum.data_ptr(), dot.data_ptr(), _threads(x.numel()))
    _policy.run("batchnorm grad sums", x.numel(), call, (m, c))
    return dsum, dot
