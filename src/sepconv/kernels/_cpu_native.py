"""A small C routine for the one step oneDNN does slowly: the depthwise weight gradient.

``grad_w[k, c*M + m] = sum_{n, l} x[n, l*s + k*d - pad_left, c] * grad_z[n, l, c*M + m]``

oneDNN's depthwise backward-weights (and TensorFlow's) runs at a few GFLOP/s on this
machine, 20-30x slower than the forward convolution; torch has no other route (grouped
"transposed" convolutions, FFT and unfolding were measured and are slower still).

The work is cut into tiles of 128 output steps x 8 vectors of channels (issue 15): each
tile copies its input rows into a buffer row by row (512-byte contiguous runs of each
row), and the threads share out tiles, not channels.  The earlier loops walked one vector
of channels down the rows (64-byte reads C floats apart, each thread half of every row)
and ran at 11-13 GB/s on a 2-core AMD EPYC with AVX-512 where a copy runs at 27-34.  With
stride 1 and no dilation, 4 kernel taps (forward) or 4 steps (weight gradient) share one
window of rows held in registers: ~0.5 vector loads per FMA instead of ~1.1.  Together
1.2-2.8x faster on the bench suite's shapes on two threads, 1.1-2.1x on one (interleaved
builds; figures in bench/README.md).  Tile sizes 32-192 steps x 2-16 vectors were tried.

The source below is compiled once per machine with the system C compiler (no torch
headers, no build-time torch; ``-march=native``: 16-float vectors where the CPU has
AVX-512, 8 otherwise) into a per-user cache and loaded through ``ctypes``.  It runs its
threads on torch's own OpenMP runtime: built with ``-fopenmp`` and linked against the
``libgomp`` torch mapped from its ``lib`` folder, so its parallel regions reuse torch's
thread pool (no second set of threads competing with torch's spin-waiting ones); where
that runtime is not found or the OpenMP build fails, a pthreads build.  If there is no
compiler or the build fails, :func:`load` returns ``None`` and the kernel falls back to
``torch.ops.aten.convolution_backward``.  ``SEPCONV_NATIVE_OPENMP=0`` forces the pthreads
build.
Set ``SEPCONV_NATIVE=0`` to disable it.

The same source holds the 2D depthwise routines of ``kernels/depthwise_train.py``
(``sepconv_dw2d_forward``, ``sepconv_dw2d_grad_weight``, ``sepconv_dw2d_input_grad``):
channels_last ``(n, height, width, c)``, the same tiles over the columns of one output
row, the kernel's input rows kept in a ring of row buffers.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from typing import Callable, Optional, Tuple

SOURCE = r"""
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* channels per vector: one register of float (512-bit where the machine has AVX-512) */
#ifndef VW
#ifdef __AVX512F__
#define VW 16
#else
#define VW 8
#endif
#endif
#ifndef T
#define T 128    /* output steps per tile */
#endif
#ifndef G
#define G 8      /* channel chunks (of VW channels) per tile */
#endif

typedef void *(*job_fn)(void *);

typedef float vf __attribute__((vector_size(VW * sizeof(float)), aligned(4)));
typedef int32_t vi __attribute__((vector_size(VW * sizeof(int32_t)), aligned(4)));

/* The work is cut into tiles: (batch item, T output steps, G chunks of VW channels),
   numbered in that order (channel groups innermost); each thread takes a contiguous
   range of tiles.  A tile first copies its input rows into a small buffer, row by row
   (G * VW contiguous floats of each row: the reads stream through memory in order, which
   channel-chunk-major loops over rows C floats apart do not), applying the zero padding
   and the multiplier's channel repeat, then computes from the buffer. */
typedef struct {
    const float *x, *g;
    float *out;
    int64_t n, length, out_len, c, m, k, stride, dilation, pad_left;
    int64_t tile_begin, tile_end;
    /* forward only: output row l of batch item b goes to row l * out_step + out_off of
       out's out_rows rows per item (the polyphase input gradient writes one phase's rows) */
    int64_t out_rows, out_step, out_off;
    /* the fused backward only: the flipped kernel (k, c*m) and the input gradient */
    const float *w;
    float *out2;
    /* 2D only (zero in 1D jobs): a 2D job is a 1D job over the columns (k, stride,
       dilation, pad_left, length = width, out_len = out_w the columns') whose n "batch
       items" are the output lines (batch item b, output row i), n = batch * out_h; the rows'
       geometry: kh taps, stride sh, dilation dh, pad_top pt, height input rows.  The
       forward writes output line (b, i) to row i * rstep + roff of rows_total rows. */
    int64_t kh, sh, dh, pt, height, out_h, rows_total, rstep, roff;
} job_t;

typedef struct {
    int64_t n, l0, tl, ch0, gn, t0, nrows;
} tile_t;

static int64_t chunks_of(const job_t *j) { return (j->c * j->m + VW - 1) / VW; }
static int64_t groups_of(const job_t *j) { return (chunks_of(j) + G - 1) / G; }
static int64_t tiles_of(const job_t *j) {
    return j->n * ((j->out_len + T - 1) / T) * groups_of(j);
}
static int64_t rows_cap(const job_t *j) { return (T - 1) * j->stride + (j->k - 1) * j->dilation + 1; }

static tile_t tile_at(const job_t *j, int64_t i) {
    const int64_t groups = groups_of(j), steps = (j->out_len + T - 1) / T;
    tile_t t;
    t.n = i / (steps * groups);
    t.l0 = (i / groups) % steps * T;
    t.tl = j->out_len - t.l0 < T ? j->out_len - t.l0 : T;
    t.ch0 = (i % groups) * G;
    t.gn = chunks_of(j) - t.ch0 < G ? chunks_of(j) - t.ch0 : G;
    t.t0 = t.l0 * j->stride - j->pad_left;
    t.nrows = (t.tl - 1) * j->stride + (j->k - 1) * j->dilation + 1;
    return t;
}

/* xt[gi][r] (gi < gn, r < nrows, rows rows_cap apart) = the tile's input rows: x[n, t0 + r,
   channel of lane (ch0 + gi) * VW + v], zero outside the input and past the last channel. */
static void copy_x(const job_t *j, const tile_t *t, float *xt, int64_t cap) {
    const int64_t cm = j->c * j->m;
    const float *xn = j->x + t->n * j->length * j->c;
    const float *end = j->x + j->n * j->length * j->c;
    const int64_t full = (j->m == 1) ? ((cm - t->ch0 * VW) / VW < t->gn ? (cm - t->ch0 * VW) / VW : t->gn) : 0;
    int32_t idx[G][VW];  /* input channel of each lane of the other chunks, -1 past the end */
    vi mask[G];
    for (int64_t gi = full; gi < t->gn; gi++) {
        int32_t mk[VW];
        for (int v = 0; v < VW; v++) {
            const int64_t q = (t->ch0 + gi) * VW + v;
            idx[gi][v] = q < cm ? (int32_t)(q / j->m) : -1;
            mk[v] = q < cm ? -1 : 0;
        }
        memcpy(&mask[gi], mk, sizeof mk);
    }
    for (int64_t r = 0; r < t->nrows; r++) {
        const int64_t s = t->t0 + r;
        if (s < 0 || s >= j->length) {
            for (int64_t gi = 0; gi < t->gn; gi++) *(vf *)(xt + (gi * cap + r) * VW) = (vf){0};
            continue;
        }
        const float *src = xn + s * j->c + t->ch0 * VW;
        for (int64_t gi = 0; gi < full; gi++)
            *(vf *)(xt + (gi * cap + r) * VW) = *(const vf *)(src + gi * VW);
        for (int64_t gi = full; gi < t->gn; gi++) {
            float *dst = xt + (gi * cap + r) * VW;
            if (j->m == 1 && src + gi * VW + VW <= end) {
                *(vf *)dst = (vf)((vi)(*(const vf *)(src + gi * VW)) & mask[gi]);
            } else {
                const float *row = xn + s * j->c;
                for (int v = 0; v < VW; v++) dst[v] = idx[gi][v] >= 0 ? row[idx[gi][v]] : 0.0f;
            }
        }
    }
}

/* buf[gi][r] (gi < gn, r < rows, rows cap apart) = src[row0 + r, (ch0 + gi) * VW + v] of
   a (rows_total, cm) array, zero outside its rows and past its cm channels. */
static void copy_rows(const float *src, int64_t rows_total, int64_t cm, int64_t row0,
                      int64_t rows, int64_t ch0, int64_t gn, float *buf, int64_t cap) {
    const int64_t full = (cm - ch0 * VW) / VW < gn ? (cm - ch0 * VW) / VW : gn;
    for (int64_t r = 0; r < rows; r++) {
        const int64_t row = row0 + r;
        if (row < 0 || row >= rows_total) {
            for (int64_t gi = 0; gi < gn; gi++) *(vf *)(buf + (gi * cap + r) * VW) = (vf){0};
            continue;
        }
        const float *s = src + row * cm + ch0 * VW;
        for (int64_t gi = 0; gi < full; gi++)
            *(vf *)(buf + (gi * cap + r) * VW) = *(const vf *)(s + gi * VW);
        for (int64_t gi = full; gi < gn; gi++)
            for (int v = 0; v < VW; v++)
                buf[(gi * cap + r) * VW + v] = (ch0 + gi) * VW + v < cm ? s[gi * VW + v] : 0.0f;
    }
}

/* wt[gi][u] (gi < gn, u < k) = tap rows[u] of w (., cm) (tap u where rows is NULL) for
   chunk ch0 + gi, zero past cm. */
static void load_weights(const float *w, const int64_t *rows, int64_t k, int64_t cm,
                         int64_t ch0, int64_t gn, float *wt) {
    for (int64_t gi = 0; gi < gn; gi++) {
        const int64_t q0 = (ch0 + gi) * VW;
        for (int64_t kk = 0; kk < k; kk++) {
            const float *src = w + (rows ? rows[kk] : kk) * cm + q0;
            float *dst = wt + (gi * k + kk) * VW;
            if (q0 + VW <= cm) *(vf *)dst = *(const vf *)src;
            else for (int v = 0; v < VW; v++) dst[v] = q0 + v < cm ? src[v] : 0.0f;
        }
    }
}

/* out[kk, q] = the threads' partial sums acc[i][chunk][kk][VW], added in thread order. */
static void reduce_partials(const float *acc, int threads, int64_t per, int64_t chunks,
                            int64_t k, int64_t cm, float *out) {
    for (int64_t ch = 0; ch < chunks; ch++)
        for (int64_t kk = 0; kk < k; kk++)
            for (int v = 0; v < VW; v++) {
                const int64_t q = ch * VW + v;
                if (q >= cm) continue;
                float s = 0.0f;
                for (int i = 0; i < threads; i++) s += acc[per * i + (ch * k + kk) * VW + v];
                out[kk * cm + q] = s;
            }
}

/* acc[kk] += sum_l xt[l*xs + kk*xd] * gt[l] for NB taps held in registers.  Fewer than 8
   taps would leave the FMA latency exposed, so those blocks keep two partial sums (even
   and odd steps). */
#define TAPS(NB)                                                                   \
    for (; k0 + NB <= j->k; k0 += NB) {                                            \
        vf a[NB];                                                                  \
        for (int q = 0; q < NB; q++) a[q] = (vf){0};                               \
        int64_t l = 0;                                                             \
        if (unit) /* rows l + k0 + q: 4 steps share a window of NB + 3 rows */     \
            for (; l + 4 <= tl; l += 4) {                                          \
                vf xw[NB + 3];                                                     \
                for (int i = 0; i < NB + 3; i++)                                   \
                    xw[i] = *(const vf *)(xt + (k0 + l + i) * VW);                 \
                for (int p = 0; p < 4; p++) {                                      \
                    const vf gv = *(const vf *)(gt + (l + p) * VW);                \
                    for (int q = 0; q < NB; q++) a[q] += xw[q + p] * gv;           \
                }                                                                  \
            }                                                                      \
        for (; l < tl; l++) {                                                      \
            const float *xp = xt + k0 * xd + l * xs;                               \
            const vf gv = *(const vf *)(gt + l * VW);                              \
            for (int q = 0; q < NB; q++) a[q] += *(const vf *)(xp + q * xd) * gv;  \
        }                                                                          \
        for (int q = 0; q < NB; q++) *(vf *)(acc + (k0 + q) * VW) += a[q];         \
    }
#define TAPS2(NB)                                                                  \
    for (; k0 + NB <= j->k; k0 += NB) {                                            \
        vf a[NB], b[NB];                                                           \
        for (int q = 0; q < NB; q++) a[q] = b[q] = (vf){0};                        \
        const float *xp = xt + k0 * xd;                                            \
        int64_t l = 0;                                                             \
        for (; l + 1 < tl; l += 2, xp += 2 * xs) {                                 \
            const vf g0 = *(const vf *)(gt + l * VW);                              \
            const vf g1 = *(const vf *)(gt + (l + 1) * VW);                        \
            for (int q = 0; q < NB; q++) {                                         \
                a[q] += *(const vf *)(xp + q * xd) * g0;                           \
                b[q] += *(const vf *)(xp + xs + q * xd) * g1;                      \
            }                                                                      \
        }                                                                          \
        if (l < tl) {                                                              \
            const vf g0 = *(const vf *)(gt + l * VW);                              \
            for (int q = 0; q < NB; q++) a[q] += *(const vf *)(xp + q * xd) * g0;  \
        }                                                                          \
        for (int q = 0; q < NB; q++) *(vf *)(acc + (k0 + q) * VW) += a[q] + b[q];  \
    }

static void taps(const job_t *j, const float *xt, const float *gt, int64_t tl, float *acc) {
    const int64_t xs = j->stride * VW, xd = j->dilation * VW;
    const int unit = j->stride == 1 && j->dilation == 1;
    int64_t k0 = 0;
    TAPS(8)
    TAPS2(4)
    TAPS2(2)
    TAPS2(1)
}

/* One thread's tiles of the weight gradient, summed into its own acc[chunk][k][VW]. */
static void *run(void *arg) {
    const job_t *j = (const job_t *)arg;
    const int64_t cm = j->c * j->m, cap = rows_cap(j);
    float *acc = j->out;
    float *xt = aligned_alloc(64, ((sizeof(float) * VW * G * cap + 63) / 64) * 64);
    float *gt = aligned_alloc(64, sizeof(float) * VW * G * T);
    if (xt && gt) {
        for (int64_t i = j->tile_begin; i < j->tile_end; i++) {
            const tile_t t = tile_at(j, i);
            copy_x(j, &t, xt, cap);
            copy_rows(j->g + t.n * j->out_len * cm, j->out_len, cm, t.l0, t.tl, t.ch0, t.gn,
                      gt, T);
            for (int64_t gi = 0; gi < t.gn; gi++)
                taps(j, xt + gi * cap * VW, gt + gi * T * VW, t.tl,
                     acc + (t.ch0 + gi) * j->k * VW);
        }
    }
    free(xt); free(gt);
    return NULL;
}

/* One job per thread.  Built with SEPCONV_OMP, the jobs run on the OpenMP runtime torch
   itself loaded (its libgomp): the same thread pool as torch's GEMMs, whose threads would
   otherwise still be spin-waiting after a GEMM while ours start (2 cores, 3-4 busy
   threads).  Without it, plain pthreads. */
static void dispatch(job_fn fn, job_t *jobs, int threads) {
#ifdef SEPCONV_OMP
#pragma omp parallel for schedule(static, 1) num_threads(threads)
    for (int i = 0; i < threads; i++) fn(&jobs[i]);
#else
    pthread_t tid[64];
    int spawned = 0;
    for (int i = 1; i < threads; i++, spawned++)
        if (pthread_create(&tid[i], NULL, fn, &jobs[i]) != 0) break;
    fn(&jobs[0]);
    for (int i = 1; i <= spawned; i++) pthread_join(tid[i], NULL);
    for (int i = spawned + 1; i < threads; i++) fn(&jobs[i]);
#endif
}

/* threads jobs over tiles_of(base) tiles (at most one job per tile, at most 64) */
static int split_tiles(const job_t *base, job_t *jobs, int threads, int64_t tiles) {
    if (threads < 1) threads = 1;
    if (threads > tiles) threads = tiles > 0 ? (int)tiles : 1;
    if (threads > 64) threads = 64;
    for (int i = 0; i < threads; i++) {
        jobs[i] = *base;
        jobs[i].tile_begin = tiles * i / threads;
        jobs[i].tile_end = tiles * (i + 1) / threads;
    }
    return threads;
}

static int split(const job_t *base, job_t *jobs, int threads) {
    return split_tiles(base, jobs, threads, tiles_of(base));
}

/* Runs fn on the jobs, each summing the weight gradient into its own zeroed
   acc[chunk][k][VW]; out (k, c*m) gets their sums, in thread order. */
static int run_summed(job_fn fn, job_t *jobs, int threads, float *out) {
    const job_t *j = &jobs[0];
    const int64_t kt = j->k * (j->kh > 0 ? j->kh : 1);  /* taps: 2D jobs kh * k */
    const int64_t cm = j->c * j->m, chunks = chunks_of(j), per = chunks * kt * VW;
    float *acc = aligned_alloc(64, ((sizeof(float) * per * threads + 63) / 64) * 64);
    if (!acc) return -1;
    memset(acc, 0, sizeof(float) * per * threads);
    for (int i = 0; i < threads; i++) jobs[i].out = acc + per * i;
    dispatch(fn, jobs, threads);
    reduce_partials(acc, threads, per, chunks, kt, cm, out);
    free(acc);
    return 0;
}

int sepconv_vector_width(void) { return VW; }

/* x: (n, length, c) contiguous; g: (n, out_len, c*m) contiguous; out: (k, c*m). */
int sepconv_dw_grad_weight(const float *x, const float *g, float *out, int64_t n,
                           int64_t length, int64_t out_len, int64_t c, int64_t m, int64_t k,
                           int64_t stride, int64_t dilation, int64_t pad_left, int threads) {
    job_t base = {x, g, NULL, n, length, out_len, c, m, k, stride, dilation, pad_left, 0, 0};
    job_t jobs[64];
    threads = split(&base, jobs, threads);
    return run_summed(run, jobs, threads, out);
}

/* ---- forward: z[n, l, q] = sum_k x[n, l*s + k*d - pad_left, q / m] * w[k, q] ----------
   The same tiles; NB output steps held in registers, the kernel taps streamed, the
   tile's chunks innermost so each output row is written G * VW floats at a time. */
#define ROWS(NB)                                                                   \
    for (; l + NB <= t.tl; l += NB)                                                \
        for (int64_t gi = 0; gi < t.gn; gi++) {                                    \
            vf a[NB];                                                              \
            for (int q = 0; q < NB; q++) a[q] = (vf){0};                           \
            const float *xp = xt + gi * cap * VW + l * xs;                         \
            const float *wg = wt + gi * j->k * VW;                                 \
            int64_t kk = 0;                                                        \
            if (unit) /* rows l + q + kk: 4 taps share a window of NB + 3 rows */  \
                for (; kk + 4 <= j->k; kk += 4) {                                  \
                    vf xw[NB + 3];                                                 \
                    for (int i = 0; i < NB + 3; i++)                               \
                        xw[i] = *(const vf *)(xp + (kk + i) * VW);                 \
                    for (int p = 0; p < 4; p++) {                                  \
                        const vf wv = *(const vf *)(wg + (kk + p) * VW);           \
                        for (int q = 0; q < NB; q++) a[q] += xw[q + p] * wv;       \
                    }                                                              \
                }                                                                  \
            for (; kk < j->k; kk++) {                                              \
                const vf wv = *(const vf *)(wg + kk * VW);                         \
                const float *xk = xp + kk * xd;                                    \
                for (int q = 0; q < NB; q++) a[q] += *(const vf *)(xk + q * xs) * wv; \
            }                                                                      \
            const int64_t cm0 = (t.ch0 + gi) * VW;                                 \
            for (int q = 0; q < NB; q++) {                                         \
                float *dst = zn + ((t.l0 + l + q) * ostep + ooff) * cm + cm0;      \
                if (cm0 + VW <= cm) *(vf *)dst = a[q];                             \
                else for (int v = 0; v < cm - cm0; v++) dst[v] = a[q][v];          \
            }                                                                      \
        }

static void *run_fwd(void *arg) {
    const job_t *j = (const job_t *)arg;
    const int64_t cm = j->c * j->m, cap = rows_cap(j);
    const int64_t xs = j->stride * VW, xd = j->dilation * VW;
    const int unit = j->stride == 1 && j->dilation == 1;
    float *xt = aligned_alloc(64, ((sizeof(float) * VW * G * cap + 63) / 64) * 64);
    float *wt = aligned_alloc(64, ((sizeof(float) * VW * G * j->k + 63) / 64) * 64);
    int64_t prev_ch0 = -1;
    if (xt && wt)
        for (int64_t i = j->tile_begin; i < j->tile_end; i++) {
            const tile_t t = tile_at(j, i);
            copy_x(j, &t, xt, cap);
            if (t.ch0 != prev_ch0)  /* the weights of these chunks */
                load_weights(j->g, NULL, j->k, cm, t.ch0, t.gn, wt);
            prev_ch0 = t.ch0;
            float *zn = j->out + t.n * j->out_rows * cm;
            const int64_t ostep = j->out_step, ooff = j->out_off;
            int64_t l = 0;
            ROWS(8)
            ROWS(4)
            ROWS(2)
            ROWS(1)
        }
    free(xt); free(wt);
    return NULL;
}

/* ---- backward: the weight gradient and the input gradient in one pass over gz ----------
   gw[kk, q]    = sum_{n, l} x[n, l*s + kk*d - pad_left, q / m] * gz[n, l, q]
   gxf[n, i, q] = sum over (l, kk) with l*s + kk*d - pad_left = i of gz[n, l, q] * w[kk, q]
   Tile (batch item, step tile, channel group): gz rows l0 - H .. l0 + T - 1 (l0 = step
   tile * T, H = ceil(span / s), span = (k - 1) * d; zero outside gz) are copied once.  The
   weight gradient reads the last T of them with the input rows from l0*s - pad_left; the
   input gradient's rows l0*s - pad_left .. (l0 + T)*s - pad_left - 1 read all of them, by
   phase: rows r, r + s, ... of the tile (r < s) are a stride-1 convolution of the buffer
   with the flipped kernel's taps jj = j0, j0 + s/g, ... (those with r - span + jj*d a
   multiple of s; g = gcd(s, d)) at dilation d/g.  The step tiles cover gz's rows and the
   input's (issue 15: two passes over gz, and one per phase when strided, were too many). */
static int64_t gcd64(int64_t a, int64_t b) { while (b) { const int64_t t = a % b; a = b; b = t; } return a; }

static int64_t bwd_halo(const job_t *j) {
    return ((j->k - 1) * j->dilation + j->stride - 1) / j->stride;
}

static int64_t bwd_steps(const job_t *j) {
    const int64_t in_steps = (j->length + j->pad_left + j->stride - 1) / j->stride;
    const int64_t rows = j->out_len > in_steps ? j->out_len : in_steps;
    return (rows + T - 1) / T;
}

static void *run_bwd(void *arg) {
    const job_t *j = (const job_t *)arg;
    const int64_t cm = j->c * j->m, span = (j->k - 1) * j->dilation, s = j->stride;
    const int64_t halo = bwd_halo(j), g = gcd64(s, j->dilation), q = s / g;
    const int64_t capx = rows_cap(j), cap = T + halo;  /* cap: gz rows per chunk */
    const int64_t steps = bwd_steps(j), groups = groups_of(j), chunks = chunks_of(j);
    const int64_t xs = VW, xd = j->dilation / g * VW;
    const int unit = j->dilation / g == 1;
    float *acc = j->out;
    float *xt = aligned_alloc(64, ((sizeof(float) * VW * G * capx + 63) / 64) * 64);
    float *gtb = aligned_alloc(64, ((sizeof(float) * VW * G * cap + 63) / 64) * 64);
    float *wt = aligned_alloc(64, ((sizeof(float) * VW * G * j->k + 63) / 64) * 64);
    /* phase r: taps[first[r] ..] (nk[r] of them), reading buffer rows from off[r] on */
    int64_t *taps_of_phase = malloc(sizeof(int64_t) * (j->k + 3 * s + 1));
    int64_t prev_ch0 = -1;
    if (xt && gtb && wt && taps_of_phase) {
        int64_t *first = taps_of_phase + j->k, *nk = first + s + 1, *off = nk + s;
        first[0] = 0;
        for (int64_t r = 0; r < s; r++) {
            int64_t j0 = -1;
            for (int64_t jj = 0; jj < q && jj < j->k; jj++)
                if ((r - span + jj * j->dilation) % s == 0) { j0 = jj; break; }
            nk[r] = 0;
            if (j0 >= 0)
                for (int64_t jj = j0; jj < j->k; jj += q) taps_of_phase[first[r] + nk[r]++] = jj;
            off[r] = j0 >= 0 ? halo + (r - span + j0 * j->dilation) / s : 0;
            first[r + 1] = first[r] + nk[r];
        }
        for (int64_t i = j->tile_begin; i < j->tile_end; i++) {
            const int64_t n = i / (steps * groups), l0 = (i / groups) % steps * T;
            const int64_t ch0 = (i % groups) * G;
            const int64_t gn = chunks - ch0 < G ? chunks - ch0 : G;
            copy_rows(j->g + n * j->out_len * cm, j->out_len, cm, l0 - halo, cap, ch0, gn,
                      gtb, cap);  /* gz rows l0 - halo .. l0 + T - 1 */
            /* the weight gradient: gz rows l0 .. l0 + tg - 1 */
            const int64_t tg = j->out_len - l0 < T ? j->out_len - l0 : T;
            if (tg > 0) {
                tile_t t = {n, l0, tg, ch0, gn, l0 * s - j->pad_left, (tg - 1) * s + span + 1};
                copy_x(j, &t, xt, capx);
                for (int64_t gi = 0; gi < gn; gi++)
                    taps(j, xt + gi * capx * VW, gtb + (gi * cap + halo) * VW, tg,
                         acc + (ch0 + gi) * j->k * VW);
            }
            if (ch0 != prev_ch0)  /* the flipped kernel of these chunks, phase by phase */
                for (int64_t r = 0; r < s; r++)
                    load_weights(j->w, taps_of_phase + first[r], nk[r], cm, ch0, gn,
                                 wt + G * first[r] * VW);
            prev_ch0 = ch0;
            float *zn = j->out2 + n * j->length * cm;
            for (int64_t r = 0; r < s; r++) {
                /* the tile's rows of phase r: base + t*s, t in [t_lo, t_hi) */
                const int64_t base = l0 * s - j->pad_left + r;
                const int64_t t_lo = base >= 0 ? 0 : (-base + s - 1) / s;
                const int64_t left = j->length - base;
                const int64_t t_hi = left <= 0 ? 0 : ((left + s - 1) / s < T ? (left + s - 1) / s : T);
                if (t_hi <= t_lo) continue;
                if (nk[r] == 0) {  /* no tap ever reaches these rows */
                    for (int64_t tt = t_lo; tt < t_hi; tt++)
                        for (int64_t gi = 0; gi < gn; gi++) {
                            const int64_t cm0 = (ch0 + gi) * VW;
                            float *dst = zn + (base + tt * s) * cm + cm0;
                            for (int v = 0; v < VW && cm0 + v < cm; v++) dst[v] = 0.0f;
                        }
                    continue;
                }
                /* ROWS reads xt + gi * cap * VW + l * xs and the taps j->k of wt (its own
                   weights: gi * j->k apart), writes rows (t.l0 + l) * ostep + ooff */
                job_t phase = *j;
                phase.k = nk[r];
                const job_t *j = &phase;
                const tile_t t = {n, t_lo, t_hi - t_lo, ch0, gn, 0, 0};
                const float *xt = gtb + (off[r] + t_lo) * VW;
                const float *wt_ = wt + G * first[r] * VW;
                const int64_t ostep = s, ooff = base;
                int64_t l = 0;
                {
                    const float *wt = wt_;
                    ROWS(8)
                    ROWS(4)
                    ROWS(2)
                    ROWS(1)
                }
            }
        }
    }
    free(xt); free(gtb); free(wt); free(taps_of_phase);
    return NULL;
}

/* x: (n, length, c); gz: (n, out_len, c*m); wf: (k, c*m), the kernel flipped along k;
   gw: (k, c*m); gxf: (n, length, c*m), all contiguous; pad_left >= 0. */
int sepconv_dw_backward(const float *x, const float *gz, const float *wf, float *gw,
                        float *gxf, int64_t n, int64_t length, int64_t out_len, int64_t c,
                        int64_t m, int64_t k, int64_t stride, int64_t dilation,
                        int64_t pad_left, int threads) {
    job_t base = {x, gz, NULL, n, length, out_len, c, m, k, stride, dilation, pad_left, 0, 0,
                  0, 1, 0, wf, gxf};
    job_t jobs[64];
    threads = split_tiles(&base, jobs, threads, n * bwd_steps(&base) * groups_of(&base));
    return run_summed(run_bwd, jobs, threads, gw);
}

/* x: (n, length, c) contiguous; w: (k, c*m) contiguous; z: (n, out_rows, c*m), output
   step l written to row l * out_step + out_off (out_len steps; the other rows untouched). */
int sepconv_dw_forward_rows(const float *x, const float *w, float *z, int64_t n,
                            int64_t length, int64_t out_len, int64_t c, int64_t m, int64_t k,
                            int64_t stride, int64_t dilation, int64_t pad_left, int threads,
                            int64_t out_rows, int64_t out_step, int64_t out_off) {
    job_t base = {x, w, z, n, length, out_len, c, m, k, stride, dilation, pad_left, 0, 0,
                  out_rows, out_step, out_off};
    job_t jobs[64];
    threads = split(&base, jobs, threads);
    dispatch(run_fwd, jobs, threads);
    return 0;
}

/* x: (n, length, c) contiguous; w: (k, c*m) contiguous; z: (n, out_len, c*m). */
int sepconv_dw_forward(const float *x, const float *w, float *z, int64_t n, int64_t length,
                       int64_t out_len, int64_t c, int64_t m, int64_t k, int64_t stride,
                       int64_t dilation, int64_t pad_left, int threads) {
    return sepconv_dw_forward_rows(x, w, z, n, length, out_len, c, m, k, stride, dilation,
                                   pad_left, threads, out_len, 1, 0);
}

/* ---- 2D depthwise (channels_last (n, height, width, c)): a 2D job (job_t's 2D fields) ----
   Tiles: (output line (b, i), T output columns, G chunks); each tile reads the input rows
   r = i*sh + kh*dh - pt inside the input (the others are zero padding: skipped), each row
   copied by copy_x as a 1D sequence of width steps. */

/* the tile's output line: batch item *b, output row *i; the valid taps [*kh0, *kh1) */
static void line_of(const job_t *j, const tile_t *t, int64_t *b, int64_t *i, int64_t *kh0,
                    int64_t *kh1) {
    *b = t->n / j->out_h;
    *i = t->n % j->out_h;
    const int64_t r0 = *i * j->sh - j->pt;
    int64_t lo = 0, hi = j->kh;
    while (lo < hi && r0 + lo * j->dh < 0) lo++;
    while (hi > lo && r0 + (hi - 1) * j->dh >= j->height) hi--;
    *kh0 = lo;
    *kh1 = hi;
}

/* copy_x of input row r of batch item b (the tile's columns) into xt */
static void copy_row2d(const job_t *j, const tile_t *t, int64_t b, int64_t r, float *xt,
                       int64_t cap) {
    job_t jr = *j;
    jr.x = j->x + (b * j->height + r) * j->length * j->c;
    jr.n = 1;
    tile_t tr = *t;
    tr.n = 0;
    copy_x(&jr, &tr, xt, cap);
}

/* 2D tiles run line by line: tile ti is (batch item, channel group, column tile, output
   row), rows innermost, so a thread's consecutive tiles are consecutive output rows of
   the same columns and channels, which share kh - sh input rows (held_row). */
static tile_t tile2d_at(const job_t *j, int64_t ti) {
    const int64_t steps = (j->out_len + T - 1) / T, groups = groups_of(j);
    const int64_t line = ti % j->out_h, rest = ti / j->out_h;
    const int64_t step = rest % steps, group = rest / steps % groups;
    const int64_t b = rest / (steps * groups);
    return tile_at(j, ((b * j->out_h + line) * steps + step) * groups + group);
}

typedef struct { int64_t b, r, l0, ch0; } rowtag_t;

/* The buffer (of slots nslots, G * cap * VW floats apart) holding input row r of batch
   item b for the tile's columns and channels: copied into a slot unless one holds it
   already; the slot taken holds none of the line's rows need[0 .. nneed - 1] (nneed <=
   nslots, so one exists). */
static float *held_row(const job_t *j, const tile_t *t, int64_t b, int64_t r, float *xt,
                       int64_t cap, rowtag_t *tags, int64_t nslots, const int64_t *need,
                       int64_t nneed) {
    const int64_t size = G * cap * VW;
    for (int64_t s = 0; s < nslots; s++)
        if (tags[s].b == b && tags[s].r == r && tags[s].l0 == t->l0 && tags[s].ch0 == t->ch0)
            return xt + s * size;
    int64_t s = 0;
    for (; s < nslots; s++) {
        int used = 0;
        if (tags[s].b == b && tags[s].l0 == t->l0 && tags[s].ch0 == t->ch0)
            for (int64_t q = 0; q < nneed; q++) used |= need[q] == tags[s].r;
        if (!used) break;
    }
    copy_row2d(j, t, b, r, xt + s * size, cap);
    tags[s].b = b; tags[s].r = r; tags[s].l0 = t->l0; tags[s].ch0 = t->ch0;
    return xt + s * size;
}

/* The forward's NB output columns in registers, summed over the valid kernel rows (nv of
   them, from kh0; buffer rows xt[kx][gi][cap]) and their taps. */
#define ROWS2D(NB)                                                                 \
    for (; l + NB <= t.tl; l += NB)                                                \
        for (int64_t gi = 0; gi < t.gn; gi++) {                                    \
            vf a[NB];                                                              \
            for (int q = 0; q < NB; q++) a[q] = (vf){0};                           \
            for (int64_t kx = 0; kx < nv; kx++) {                                  \
                const float *xp = rowp[kx] + gi * cap * VW + l * xs;               \
                const float *wg = wt + (gi * j->kh + kh0 + kx) * j->k * VW;        \
                int64_t kk = 0;                                                    \
                if (unit) {                                                        \
                    for (; kk + 4 <= j->k; kk += 4) {                              \
                        vf xw[NB + 3];                                             \
                        for (int i = 0; i < NB + 3; i++)                           \
                            xw[i] = *(const vf *)(xp + (kk + i) * VW);             \
                        for (int p = 0; p < 4; p++) {                              \
                            const vf wv = *(const vf *)(wg + (kk + p) * VW);       \
                            for (int q = 0; q < NB; q++) a[q] += xw[q + p] * wv;   \
                        }                                                          \
                    }                                                              \
                    if (j->k - kk == 3) { /* 3 taps share a window of NB + 2 */    \
                        vf xw[NB + 2];                                             \
                        for (int i = 0; i < NB + 2; i++)                           \
                            xw[i] = *(const vf *)(xp + (kk + i) * VW);             \
                        for (int p = 0; p < 3; p++) {                              \
                            const vf wv = *(const vf *)(wg + (kk + p) * VW);       \
                            for (int q = 0; q < NB; q++) a[q] += xw[q + p] * wv;   \
                        }                                                          \
                        kk += 3;                                                   \
                    }                                                              \
                }                                                                  \
                for (; kk < j->k; kk++) {                                          \
                    const vf wv = *(const vf *)(wg + kk * VW);                     \
                    const float *xk = xp + kk * xd;                                \
                    for (int q = 0; q < NB; q++) a[q] += *(const vf *)(xk + q * xs) * wv; \
                }                                                                  \
            }                                                                      \
            const int64_t cm0 = (t.ch0 + gi) * VW;                                 \
            for (int q = 0; q < NB; q++) {                                         \
                float *dst = zrow + ((t.l0 + l + q) * ostep + ooff) * cm + cm0;    \
                if (cm0 + VW <= cm) *(vf *)dst = a[q];                             \
                else for (int v = 0; v < cm - cm0; v++) dst[v] = a[q][v];          \
            }                                                                      \
        }

static void *run_fwd2d(void *arg) {
    const job_t *j = (const job_t *)arg;
    const int64_t cm = j->c * j->m, cap = rows_cap(j);
    const int64_t xs = j->stride * VW, xd = j->dilation * VW;
    const int unit = j->stride == 1 && j->dilation == 1;
    const int64_t ostep = j->out_step, ooff = j->out_off;
    float *xt = aligned_alloc(64, ((sizeof(float) * VW * G * cap * j->kh + 63) / 64) * 64);
    float *wt = aligned_alloc(64, ((sizeof(float) * VW * G * j->k * j->kh + 63) / 64) * 64);
    int64_t prev_ch0 = -1;
    rowtag_t *tags = malloc(sizeof(rowtag_t) * j->kh);
    int64_t *need = malloc(sizeof(int64_t) * j->kh);
    const float **rowp = malloc(sizeof(float *) * j->kh);
    if (xt && wt && tags && need && rowp) {
        for (int64_t s = 0; s < j->kh; s++) tags[s].b = -1;
        for (int64_t ti = j->tile_begin; ti < j->tile_end; ti++) {
            const tile_t t = tile2d_at(j, ti);
            int64_t b, i, kh0, kh1;
            line_of(j, &t, &b, &i, &kh0, &kh1);
            const int64_t nv = kh1 - kh0;
            for (int64_t kx = 0; kx < nv; kx++) need[kx] = i * j->sh + (kh0 + kx) * j->dh - j->pt;
            for (int64_t kx = 0; kx < nv; kx++)
                rowp[kx] = held_row(j, &t, b, need[kx], xt, cap, tags, j->kh, need, nv);
            if (t.ch0 != prev_ch0)  /* the weights of these chunks: wt[gi][kh][kw] */
                load_weights(j->g, NULL, j->kh * j->k, cm, t.ch0, t.gn, wt);
            prev_ch0 = t.ch0;
            float *zrow = j->out + (b * j->rows_total + i * j->rstep + j->roff) * j->out_rows * cm;
            int64_t l = 0;
            ROWS2D(8)
            ROWS2D(4)
            ROWS2D(2)
            ROWS2D(1)
        }
    }
    free(xt); free(wt); free(tags); free(need); free(rowp);
    return NULL;
}

#ifndef SEPCONV_TAPS3
#define SEPCONV_TAPS3 1
#endif

/* The weight gradient of a 3-wide kernel at unit column stride and dilation over nv <= 3
   input rows at once (rows[u]: the tile's buffered row of kernel row kh0 + u): nine
   partial sums in registers, each input row read through a window of 6 vectors per 4
   steps, grad_y once (the row-by-row taps read grad_y once per row and keep 3 sums). */
static void taps3x3(const job_t *j, const float *const *rows, int64_t nv, int64_t kh0,
                    const float *gt, int64_t tl, int64_t cap, int64_t ch0, int64_t gn,
                    float *acc) {
    for (int64_t gi = 0; gi < gn; gi++) {
        vf a[3][3];
        for (int u = 0; u < 3; u++) for (int q = 0; q < 3; q++) a[u][q] = (vf){0};
        const float *g = gt + gi * T * VW;
        int64_t l = 0;
        for (; l + 4 <= tl; l += 4) {
            const vf g0 = *(const vf *)(g + l * VW), g1 = *(const vf *)(g + (l + 1) * VW);
            const vf g2 = *(const vf *)(g + (l + 2) * VW), g3 = *(const vf *)(g + (l + 3) * VW);
            for (int u = 0; u < 3; u++) {
                if (u >= nv) break;
                const float *xr = rows[u] + (gi * cap + l) * VW;
                vf xw[6];
                for (int i = 0; i < 6; i++) xw[i] = *(const vf *)(xr + i * VW);
                for (int q = 0; q < 3; q++)
                    a[u][q] += xw[q] * g0 + xw[q + 1] * g1 + xw[q + 2] * g2 + xw[q + 3] * g3;
            }
        }
        for (; l < tl; l++) {
            const vf g0 = *(const vf *)(g + l * VW);
            for (int u = 0; u < 3; u++) {
                if (u >= nv) break;
                const float *xr = rows[u] + (gi * cap + l) * VW;
                for (int q = 0; q < 3; q++) a[u][q] += *(const vf *)(xr + q * VW) * g0;
            }
        }
        for (int u = 0; u < nv; u++)
            for (int q = 0; q < 3; q++)
                *(vf *)(acc + (((ch0 + gi) * j->kh + kh0 + u) * 3 + q) * VW) += a[u][q];
    }
}

/* One thread's tiles of the 2D weight gradient, summed into its acc[chunk][kh][kw][VW]. */
static void *run_gw2d(void *arg) {
    const job_t *j = (const job_t *)arg;
    const int64_t cm = j->c * j->m, cap = rows_cap(j);
    float *acc = j->out;
    float *xt = aligned_alloc(64, ((sizeof(float) * VW * G * cap * j->kh + 63) / 64) * 64);
    float *gt = aligned_alloc(64, sizeof(float) * VW * G * T);
    rowtag_t *tags = malloc(sizeof(rowtag_t) * j->kh);
    int64_t *need = malloc(sizeof(int64_t) * j->kh);
    const int fused3 = SEPCONV_TAPS3 && j->k == 3 && j->kh <= 3 && j->stride == 1
        && j->dilation == 1;
    if (xt && gt && tags && need) {
        for (int64_t s = 0; s < j->kh; s++) tags[s].b = -1;
        for (int64_t ti = j->tile_begin; ti < j->tile_end; ti++) {
            const tile_t t = tile2d_at(j, ti);
            int64_t b, i, kh0, kh1;
            line_of(j, &t, &b, &i, &kh0, &kh1);
            if (kh1 <= kh0) continue;
            copy_rows(j->g + t.n * j->out_len * cm, j->out_len, cm, t.l0, t.tl, t.ch0, t.gn,
                      gt, T);
            for (int64_t kr = kh0; kr < kh1; kr++) need[kr - kh0] = i * j->sh + kr * j->dh - j->pt;
            if (fused3) {
                const float *rows[3];
                for (int64_t u = 0; u < kh1 - kh0; u++)
                    rows[u] = held_row(j, &t, b, need[u], xt, cap, tags, j->kh, need, kh1 - kh0);
                taps3x3(j, rows, kh1 - kh0, kh0, gt, t.tl, cap, t.ch0, t.gn, acc);
                continue;
            }
            for (int64_t kr = kh0; kr < kh1; kr++) {
                const float *row = held_row(j, &t, b, need[kr - kh0], xt, cap, tags, j->kh,
                                            need, kh1 - kh0);
                for (int64_t gi = 0; gi < t.gn; gi++)
                    taps(j, row + gi * cap * VW, gt + gi * T * VW, t.tl,
                         acc + ((t.ch0 + gi) * j->kh + kr) * j->k * VW);
            }
        }
    }
    free(xt); free(gt); free(tags); free(need);
    return NULL;
}

static job_t job2d(const float *x, const float *g, float *out, int64_t n, int64_t height,
                   int64_t width, int64_t out_h, int64_t out_w, int64_t c, int64_t m,
                   int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw,
                   int64_t pt, int64_t pl) {
    job_t j;
    memset(&j, 0, sizeof j);
    j.x = x; j.g = g; j.out = out;
    j.n = n * out_h; j.length = width; j.out_len = out_w; j.c = c; j.m = m;
    j.k = kw; j.stride = sw; j.dilation = dw; j.pad_left = pl;
    j.kh = kh; j.sh = sh; j.dh = dh; j.pt = pt; j.height = height; j.out_h = out_h;
    j.out_rows = out_w; j.out_step = 1; j.rows_total = out_h; j.rstep = 1;
    return j;
}

/* x: (n, height, width, c); w: (kh, kw, c*m); z: (n, rows_total, cols_total, c*m), all
   contiguous float32: output (i, l) written to row i*rstep + roff, column l*cstep + coff
   (the other rows and columns untouched).  Any pt, pl (negative: the window starts inside
   the input).  Returns 0, -1 where memory ran out. */
int sepconv_dw2d_forward(const float *x, const float *w, float *z, int64_t n, int64_t height,
                         int64_t width, int64_t out_h, int64_t out_w, int64_t c, int64_t m,
                         int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh,
                         int64_t dw, int64_t pt, int64_t pl, int64_t rows_total,
                         int64_t rstep, int64_t roff, int64_t cols_total, int64_t cstep,
                         int64_t coff, int threads) {
    job_t base = job2d(x, w, z, n, height, width, out_h, out_w, c, m, kh, kw, sh, sw, dh, dw,
                       pt, pl);
    base.rows_total = rows_total; base.rstep = rstep; base.roff = roff;
    base.out_rows = cols_total; base.out_step = cstep; base.out_off = coff;
    if (kh < 1 || kw < 1) return -1;
    job_t jobs[64];
    threads = split(&base, jobs, threads);
    dispatch(run_fwd2d, jobs, threads);
    return 0;
}

/* x: (n, height, width, c); g: (n, out_h, out_w, c*m); out: (kh, kw, c*m): the weight
   gradient, all contiguous float32. */
int sepconv_dw2d_grad_weight(const float *x, const float *g, float *out, int64_t n,
                             int64_t height, int64_t width, int64_t out_h, int64_t out_w,
                             int64_t c, int64_t m, int64_t kh, int64_t kw, int64_t sh,
                             int64_t sw, int64_t dh, int64_t dw, int64_t pt, int64_t pl,
                             int threads) {
    job_t base = job2d(x, g, NULL, n, height, width, out_h, out_w, c, m, kh, kw, sh, sw, dh,
                       dw, pt, pl);
    if (kh < 1 || kw < 1) return -1;
    job_t jobs[64];
    threads = split(&base, jobs, threads);
    return run_summed(run_gw2d, jobs, threads, out);
}
/* ---- 2D input gradient in one pass (strided or not) ------------------------------------
   gx[b, ri, ci, q] = sum of gz[b, i, l, q] * w[kh, kw, q] over i*sh + kh*dh - pt = ri and
   l*sw + kw*dw - pl = ci (the transposed convolution; q < cm, the multiplier's sum is the
   caller's).  The job is over gz (x = gz, height = oh rows, length = ow columns, c = cm,
   m = 1; k, stride, dilation, pad_left the columns'; kh, sh, dh, pt the rows'), out = gx
   (n, out_h = H, out_len = W, cm).  Tiles (b, channel group, T*sw gx columns, gx row),
   rows innermost: the gz rows of a gx row's taps (those kh with ri + pt - kh*dh a multiple
   of sh) come from a ring of row buffers (held_row), each copied once; column phase r
   (columns c0 + r + sw*t) sums its taps kw (c0 + r + pl - kw*dw a multiple of sw) at
   buffer offsets (c0 + r + pl - kw*dw)/sw - lmin + t: no zero-spread copy, every
   multiply-add a real one. */
static int64_t floordiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

#define GXROWS(NB)                                                                 \
    for (; tb + NB <= count; tb += NB)                                             \
        for (int64_t gi = 0; gi < gn; gi++) {                                      \
            vf a[NB];                                                              \
            for (int q = 0; q < NB; q++) a[q] = (vf){0};                           \
            for (int64_t u = 0; u < nv; u++) {                                     \
                const float *xp = rowp[u] + (gi * cap + tb) * VW;                  \
                const float *wg = wt + (gi * j->kh + khs[u]) * j->k * VW;          \
                for (int64_t v = 0; v < nk; v++) {                                 \
                    const vf wv = *(const vf *)(wg + kws[v] * VW);                 \
                    const float *xk = xp + offs[v] * VW;                           \
                    for (int q = 0; q < NB; q++) a[q] += *(const vf *)(xk + q * VW) * wv; \
                }                                                                  \
            }                                                                      \
            const int64_t cm0 = (ch0 + gi) * VW;                                   \
            for (int q = 0; q < NB; q++) {                                         \
                float *dst = grow + (ci0 + (tb + q) * sw) * cm + cm0;              \
                if (cm0 + VW <= cm) *(vf *)dst = a[q];                             \
                else for (int v = 0; v < cm - cm0; v++) dst[v] = a[q][v];          \
            }                                                                      \
        }

static int64_t gx2d_cap(const job_t *j) {
    return T + ((j->k - 1) * j->dilation + j->stride - 1) / j->stride + 2;
}

static int64_t gx2d_tiles(const job_t *j) {
    const int64_t tw = T * j->stride;
    return j->n * j->out_h * ((j->out_len + tw - 1) / tw) * groups_of(j);
}

static void *run_gx2d(void *arg) {
    const job_t *j = (const job_t *)arg;
    const int64_t cm = j->c, cap = gx2d_cap(j), sw = j->stride, tw = T * sw;
    const int64_t width = j->out_len, height = j->out_h;
    const int64_t colsteps = (width + tw - 1) / tw, groups = groups_of(j), chunks = chunks_of(j);
    float *xt = aligned_alloc(64, ((sizeof(float) * VW * G * cap * j->kh + 63) / 64) * 64);
    float *wt = aligned_alloc(64, ((sizeof(float) * VW * G * j->k * j->kh + 63) / 64) * 64);
    rowtag_t *tags = malloc(sizeof(rowtag_t) * j->kh);
    int64_t *need = malloc(sizeof(int64_t) * j->kh * 2 + sizeof(int64_t) * j->k * 2);
    const float **rowp = malloc(sizeof(float *) * j->kh);
    int64_t prev_ch0 = -1;
    if (xt && wt && tags && need && rowp) {
        int64_t *khs = need + j->kh, *offs = khs + j->kh, *kws = offs + j->k;
        for (int64_t s = 0; s < j->kh; s++) tags[s].b = -1;
        for (int64_t ti = j->tile_begin; ti < j->tile_end; ti++) {
            const int64_t ri = ti % height, rest = ti / height;
            const int64_t c0 = rest % colsteps * tw, ch0 = rest / colsteps % groups * G;
            const int64_t b = rest / (colsteps * groups);
            const int64_t gn = chunks - ch0 < G ? chunks - ch0 : G;
            int64_t nv = 0;
            for (int64_t kr = 0; kr < j->kh; kr++) {
                const int64_t num = ri + j->pt - kr * j->dh;
                if (num >= 0 && num % j->sh == 0 && num / j->sh < j->height) {
                    khs[nv] = kr;
                    need[nv++] = num / j->sh;
                }
            }
            const int64_t lmin = floordiv(c0 + j->pad_left - (j->k - 1) * j->dilation, sw);
            const int64_t lmax = floordiv(c0 + tw - 1 + j->pad_left, sw);
            tile_t t = {0, c0, 0, ch0, gn, lmin, lmax - lmin + 1};
            for (int64_t u = 0; u < nv; u++)
                rowp[u] = held_row(j, &t, b, need[u], xt, cap, tags, j->kh, need, nv);
            if (ch0 != prev_ch0)
                load_weights(j->g, NULL, j->kh * j->k, cm, ch0, gn, wt);
            prev_ch0 = ch0;
            float *grow = j->out + (b * height + ri) * width * cm;
            for (int64_t r = 0; r < sw; r++) {
                const int64_t ci0 = c0 + r;
                if (ci0 >= width) break;
                const int64_t end = c0 + tw < width ? c0 + tw : width;
                const int64_t count = (end - ci0 + sw - 1) / sw;
                int64_t nk = 0;
                for (int64_t kc = 0; kc < j->k; kc++) {
                    const int64_t num = ci0 + j->pad_left - kc * j->dilation;
                    if (((num % sw) + sw) % sw == 0) {
                        kws[nk] = kc;
                        offs[nk++] = floordiv(num, sw) - lmin;
                    }
                }
                int64_t tb = 0;
                GXROWS(8)
                GXROWS(4)
                GXROWS(2)
                GXROWS(1)
            }
        }
    }
    free(xt); free(wt); free(tags); free(need); free(rowp);
    return NULL;
}

/* gz: (n, out_h, out_w, cm); w: (kh, kw, cm); gx: (n, height, width, cm): the input
   gradient before the multiplier's sum, all contiguous float32. */
int sepconv_dw2d_input_grad(const float *gz, const float *w, float *gx, int64_t n,
                            int64_t height, int64_t width, int64_t out_h, int64_t out_w,
                            int64_t cm, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                            int64_t dh, int64_t dw, int64_t pt, int64_t pl, int threads) {
    job_t base;
    memset(&base, 0, sizeof base);
    base.x = gz; base.g = w; base.out = gx;
    base.n = n; base.length = out_w; base.c = cm; base.m = 1;
    base.k = kw; base.stride = sw; base.dilation = dw; base.pad_left = pl;
    base.kh = kh; base.sh = sh; base.dh = dh; base.pt = pt; base.height = out_h;
    base.out_h = height; base.out_len = width;
    if (kh < 1 || kw < 1 || sh < 1 || sw < 1) return -1;
    job_t jobs[64];
    threads = split_tiles(&base, jobs, threads, gx2d_tiles(&base));
    dispatch(run_gx2d, jobs, threads);
    return 0;
}
"""

_FLAGS = ["-O3", "-march=native", "-fPIC", "-std=gnu11"]
_lib: Optional[ctypes.CDLL] = None  # LIBRARY.lib once load() ran
_openmp: Optional[str] = None  # the OpenMP runtime the library runs on; None: pthreads


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return ""


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sepconv")


def _torch_openmp() -> Optional[str]:
    """The path of the GNU OpenMP runtime torch runs on (mapped in this process from
    torch's own ``lib`` folder), if any.  Other packages may map their own copies
    (scikit-learn does): those are other thread pools."""
    torch = sys.modules.get("torch")
    if torch is None or not getattr(torch, "__file__", None):
        return None
    torch_lib = os.path.join(os.path.dirname(os.path.realpath(torch.__file__)), "lib")
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                name = os.path.basename(path)
                if name.startswith("libgomp") and ".so" in name \
                        and os.path.dirname(os.path.realpath(path)) == torch_lib:
                    return path
    except (OSError, IndexError):
        pass
    return None


def _compile(path: str, source: str, flags: list, gomp: Optional[str],
             openmp_args: tuple, plain_args: tuple, libs: tuple) -> None:
    """Compile ``source`` to ``path``: on ``gomp`` (an OpenMP runtime's path) when given,
    with pthreads otherwise."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise OSError("no C compiler")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as tmp:
        src = os.path.join(tmp, "routine.c")
        obj = os.path.join(tmp, "routine.o")
        out = os.path.join(tmp, "routine.so")
        with open(src, "w") as f:
            f.write(source)
        if gomp:
            # compiled with -fopenmp, linked against torch's own libgomp (not the system's):
            # one runtime, one thread pool in the process
            steps = [[compiler, *flags, *openmp_args, "-c", src, "-o", obj],
                     [compiler, "-shared", "-pthread", obj, gomp, *libs,
                      "-Wl,-rpath," + os.path.dirname(gomp), "-o", out]]
        else:
            steps = [[compiler, *flags, *plain_args, "-shared", "-pthread", src, *libs,
                      "-o", out]]
        for cmd in steps:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=120)
        os.replace(out, path)  # atomic: concurrent builders never see half a file


def open_library(path: str, source: str, flags: list, gomp: Optional[str],
                 declare: Callable[[ctypes.CDLL], None], *, openmp_args: tuple = ("-fopenmp",),
                 plain_args: tuple = (), libs: tuple = ()) -> ctypes.CDLL:
    """The library at ``path``, compiled there first if absent; ``declare`` sets its
    functions' ctypes signatures."""
    if not os.path.exists(path):
        _compile(path, source, flags, gomp, openmp_args, plain_args, libs)
    lib = ctypes.CDLL(path)
    declare(lib)
    return lib


def build(name: str, source: str, flags: list, declare: Callable[[ctypes.CDLL], None],
          **options) -> Tuple[Optional[ctypes.CDLL], Optional[str]]:
    """One of the library's C routines, built once per machine into the cache and loaded:
    ``(library, OpenMP runtime or None)``, on torch's own OpenMP runtime when it is found
    (``SEPCONV_NATIVE_OPENMP=0``: pthreads), ``(None, None)`` where nothing can be built or
    under ``SEPCONV_NATIVE=0``.  The cache key holds the source, the flags and the CPU's
    flags (``-march=native``: a home shared across machines gets one build per CPU).
    ``options``: :func:`open_library`'s compile options."""
    if os.environ.get("SEPCONV_NATIVE", "1").strip() in ("0", "false", "no"):
        return None, None
    key = source + " ".join(flags) + sys.platform + platform.machine() + _cpu_flags()
    gomp = _torch_openmp() if os.environ.get("SEPCONV_NATIVE_OPENMP", "1").strip() \
        not in ("0", "false", "no") else None
    for runtime in ([gomp] if gomp else []) + [None]:
        digest = hashlib.sha256((key + str(runtime)).encode()).hexdigest()[:16]
        path = os.path.join(_cache_dir(), f"{name}_{digest}.so")
        try:
            return open_library(path, source, flags, runtime, declare, **options), runtime
        except (OSError, subprocess.SubprocessError, AttributeError):
            continue
    return None, None



class Library:
    """One C routine's library (:func:`build`'s arguments), built and loaded once, on the
    first :meth:`load` of any thread: ``lib`` (``None`` until then, or where nothing can be
    built or ``available()`` says no) and ``runtime`` (its OpenMP runtime, ``None``:
    pthreads).  Every C module of the library holds one."""

    def __init__(self, name: str, source: str, flags: list,
                 declare: Callable[[ctypes.CDLL], None],
                 available: Callable[[], bool] = lambda: True, **options):
        self.name, self.source, self.flags, self.declare = name, source, flags, declare
        self.available, self.options = available, options
        self.lib: Optional[ctypes.CDLL] = None
        self.runtime: Optional[str] = None
        self._tried = False
        self._lock = threading.Lock()

    def load(self) -> Optional[ctypes.CDLL]:
        """The compiled library, built on first use; ``None`` where it cannot be built."""
        if self._tried:
            return self.lib
        with self._lock:
            if not self._tried:
                if self.available():
                    self.lib, self.runtime = build(self.name, self.source, self.flags,
                                                   self.declare, **self.options)
                self._tried = True
        return self.lib

def _declare(lib: ctypes.CDLL) -> None:
    for fn in (lib.sepconv_dw_grad_weight, lib.sepconv_dw_forward):
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 9 + [ctypes.c_int]
    lib.sepconv_dw_backward.restype = ctypes.c_int
    lib.sepconv_dw_backward.argtypes = ([ctypes.c_void_p] * 5 + [ctypes.c_int64] * 9
                                        + [ctypes.c_int])
    lib.sepconv_dw_forward_rows.restype = ctypes.c_int
    lib.sepconv_dw_forward_rows.argtypes = ([ctypes.c_void_p] * 3 + [ctypes.c_int64] * 9
                                            + [ctypes.c_int] + [ctypes.c_int64] * 3)
    lib.sepconv_dw2d_forward.restype = ctypes.c_int
    lib.sepconv_dw2d_forward.argtypes = ([ctypes.c_void_p] * 3 + [ctypes.c_int64] * 21
                                         + [ctypes.c_int])
    lib.sepconv_dw2d_input_grad.restype = ctypes.c_int
    lib.sepconv_dw2d_input_grad.argtypes = ([ctypes.c_void_p] * 3 + [ctypes.c_int64] * 14
                                            + [ctypes.c_int])
    lib.sepconv_dw2d_grad_weight.restype = ctypes.c_int
    lib.sepconv_dw2d_grad_weight.argtypes = ([ctypes.c_void_p] * 3 + [ctypes.c_int64] * 15
                                             + [ctypes.c_int])


_OPTIONS = dict(openmp_args=("-fopenmp", "-DSEPCONV_OMP"))
LIBRARY = Library("dw_grad", SOURCE, _FLAGS, _declare, **_OPTIONS)


def _open(path: str, gomp: Optional[str]) -> ctypes.CDLL:
    """This module's library at ``path`` (built there if absent) on ``gomp`` or pthreads."""
    return open_library(path, SOURCE, _FLAGS, gomp, _declare, **_OPTIONS)


def load() -> Optional[ctypes.CDLL]:
    """The compiled library, built on first use; ``None`` where it cannot be built."""
    global _lib, _openmp
    _lib = LIBRARY.load()
    _openmp = LIBRARY.runtime
    return _lib


def dw_grad_weight(x, g, out, *, n, length, out_len, c, m, k, stride, dilation, pad_left,
                   threads) -> None:
    """Fill ``out`` (``(k, c*m)`` float32, contiguous) from contiguous float32 ``x``
    ``(n, length, c)`` and ``g`` ``(n, out_len, c*m)``; ``load()`` must have succeeded."""
    _lib.sepconv_dw_grad_weight(x.data_ptr(), g.data_ptr(), out.data_ptr(), n, length, out_len,
                                c, m, k, stride, dilation, pad_left, threads)


def dw_forward(x, w, out, *, n, length, out_len, c, m, k, stride, dilation, pad_left,
               threads) -> None:
    """Fill ``out`` (``(n, out_len, c*m)`` float32, contiguous) with the depthwise
    convolution of contiguous float32 ``x`` ``(n, length, c)`` by ``w`` ``(k, c*m)``
    (Keras' layout, flattened), zero padding ``pad_left`` on the left and as needed on the
    right; ``load()`` must have succeeded."""
    _lib.sepconv_dw_forward(x.data_ptr(), w.data_ptr(), out.data_ptr(), n, length, out_len,
                            c, m, k, stride, dilation, pad_left, threads)


def dw_forward_rows(x, w, out, *, n, length, out_len, c, m, k, stride, dilation, pad_left,
                    threads, out_step, out_off) -> None:
    """:func:`dw_forward` writing output step ``l`` to row ``l * out_step + out_off`` of
    ``out`` (``(n, R, c*m)`` float32, contiguous, any ``R`` holding those rows); its other
    rows are left as they are."""
    if out_len > 0 and (out_len - 1) * out_step + out_off >= out.shape[1]:
        raise ValueError("dw_forward_rows: the output rows run past `out`")
    _lib.sepconv_dw_forward_rows(x.data_ptr(), w.data_ptr(), out.data_ptr(), n, length,
                                 out_len, c, m, k, stride, dilation, pad_left, threads,
                                 out.shape[1], out_step, out_off)


def dw_backward(x, gz, wf, gw, gxf, *, n, length, out_len, c, m, k, stride, dilation,
                pad_left, threads) -> None:
    """The depthwise backward in one pass over ``gz``: fills ``gw`` (``(k, c*m)``, the
    weight gradient, as :func:`dw_grad_weight`) and ``gxf`` (``(n, length, c*m)``, the input
    gradient before the sum over the multiplier: the transposed strided convolution of
    ``gz`` by the kernel, given flipped as ``wf``), all contiguous float32;
    ``pad_left >= 0``."""
    if pad_left < 0:
        raise ValueError("dw_backward: pad_left must be >= 0")
    _lib.sepconv_dw_backward(x.data_ptr(), gz.data_ptr(), wf.data_ptr(), gw.data_ptr(),
                             gxf.data_ptr(), n, length, out_len, c, m, k, stride, dilation,
                             pad_left, threads)


def dw2d_forward(x, w, out, *, kernel, strides, dilation, pad_top, pad_left, out_size,
                 threads) -> None:
    """Fill ``out`` (``(n, out_h, out_w, c*m)`` float32, contiguous; ``out_size`` its
    ``(out_h, out_w)``) with the 2D depthwise convolution of contiguous float32 ``x``
    ``(n, height, width, c)`` by ``w`` (``(kh, kw, c*m)``, contiguous), zero padding
    ``pad_top`` / ``pad_left`` before (negative: the windows start inside) and as needed
    after; ``load()`` must have succeeded.  (The C routine can also write output rows and
    columns with a step and an offset: unused.)"""
    row_step, row_off, col_step, col_off = 1, 0, 1, 0
    n, height, width, c = x.shape
    kh, kw, cm = w.shape
    out_h, out_w = out_size
    if out_h > 0 and out_w > 0 and (
            (out_h - 1) * row_step + row_off >= out.shape[1]
            or (out_w - 1) * col_step + col_off >= out.shape[2] or min(row_off, col_off) < 0
            or tuple(kernel) != (kh, kw) or out.shape[-1] != cm or cm % c
            or not (x.is_contiguous() and w.is_contiguous() and out.is_contiguous())):
        raise ValueError("dw2d_forward: inconsistent shapes or output rows past `out`")
    if _lib.sepconv_dw2d_forward(x.data_ptr(), w.data_ptr(), out.data_ptr(), n, height, width,
                                 out_h, out_w, c, cm // c, kh, kw, strides[0], strides[1],
                                 dilation[0], dilation[1], pad_top, pad_left, out.shape[1],
                                 row_step, row_off, out.shape[2], col_step, col_off,
                                 threads) != 0:
        raise MemoryError("dw2d_forward: out of memory")


def dw2d_grad_weight(x, g, out, *, strides, dilation, pad_top, pad_left, threads) -> None:
    """Fill ``out`` (``(kh, kw, c*m)`` float32, contiguous) with the 2D depthwise weight
    gradient from contiguous float32 ``x`` ``(n, height, width, c)`` and ``g``
    ``(n, out_h, out_w, c*m)``; ``load()`` must have succeeded."""
    n, height, width, c = x.shape
    _, out_h, out_w, cm = g.shape
    kh, kw, _ = out.shape
    if g.shape[0] != n or out.shape[-1] != cm or cm % c or not (
            x.is_contiguous() and g.is_contiguous() and out.is_contiguous()):
        raise ValueError("dw2d_grad_weight: inconsistent shapes")
    if _lib.sepconv_dw2d_grad_weight(x.data_ptr(), g.data_ptr(), out.data_ptr(), n, height,
                                     width, out_h, out_w, c, cm // c, kh, kw, strides[0],
                                     strides[1], dilation[0], dilation[1], pad_top, pad_left,
                                     threads) != 0:
        raise MemoryError("dw2d_grad_weight: out of memory")


def dw2d_input_grad(gz, w, gx, *, strides, dilation, pad_top, pad_left, threads) -> None:
    """Fill ``gx`` (``(n, height, width, c*m)`` float32, contiguous) with the input
    gradient, before the sum over the multiplier, of the 2D depthwise convolution whose
    output gradient is ``gz`` (``(n, out_h, out_w, c*m)``) and kernel ``w``
    (``(kh, kw, c*m)``), both contiguous float32: the transposed convolution, strided axes
    by phases in one pass; ``load()`` must have succeeded."""
    n, height, width, cm = gx.shape
    _, out_h, out_w, _ = gz.shape
    kh, kw, _ = w.shape
    if gz.shape[0] != n or gz.shape[-1] != cm or w.shape[-1] != cm or not (
            gz.is_contiguous() and w.is_contiguous() and gx.is_contiguous()):
        raise ValueError("dw2d_input_grad: inconsistent shapes")
    if _lib.sepconv_dw2d_input_grad(gz.data_ptr(), w.data_ptr(), gx.data_ptr(), n, height,
                                    width, out_h, out_w, cm, kh, kw, strides[0], strides[1],
                                    dilation[0], dilation[1], pad_top, pad_left,
                                    threads) != 0:
        raise MemoryError("dw2d_input_grad: out of memory")
