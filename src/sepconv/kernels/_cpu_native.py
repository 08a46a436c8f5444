"""A small C routine for the one step oneDNN does slowly: the depthwise weight gradient.

``grad_w[k, c*M + m] = sum_{n, l} x[n, l*s + k*d - pad_left, c] * grad_z[n, l, c*M + m]``

oneDNN's depthwise backward-weights (and TensorFlow's) runs at a few GFLOP/s on this
machine, 20-30x slower than the forward convolution; torch has no other route (grouped
"transposed" convolutions, FFT and unfolding were measured and are slower still).

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
from typing import Optional

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
#define T 128    /* output steps per tile */

typedef void *(*job_fn)(void *);

typedef float vf __attribute__((vector_size(VW * sizeof(float)), aligned(4)));
typedef int32_t vi __attribute__((vector_size(VW * sizeof(int32_t)), aligned(4)));

/* A tail chunk's rows (channels [cm0, cm), fewer than VW), lanes past the end zeroed: a
   full vector read masked where it stays inside the tensor (ending at end), else lane by
   lane.  dst: nrows rows of VW floats; row r from src0 + r * step, or zeros where
   lo <= r < hi fails. */
static void tail_rows(float *dst, const float *src0, int64_t step, int64_t nrows,
                      int64_t lo, int64_t hi, int64_t lanes, const float *end) {
    int32_t mk[VW];
    for (int v = 0; v < VW; v++) mk[v] = v < lanes ? -1 : 0;
    vi mask;
    memcpy(&mask, mk, sizeof mask);
    for (int64_t r = 0; r < nrows; r++) {
        const float *src = src0 + r * step;
        if (r < lo || r >= hi) {
            *(vf *)(dst + r * VW) = (vf){0};
        } else if (src + VW <= end) {
            *(vf *)(dst + r * VW) = (vf)((vi)(*(const vf *)src) & mask);
        } else {
            for (int v = 0; v < VW; v++) dst[r * VW + v] = v < lanes ? src[v] : 0.0f;
        }
    }
}

typedef struct {
    const float *x, *g;
    float *out;
    int64_t n, length, out_len, c, m, k, stride, dilation, pad_left;
    int64_t chunk_begin, chunk_end;
} job_t;

/* acc[kk] += sum_l xt[l*xs + kk*xd] * gt[l] for NB taps held in registers.  Fewer than 8
   taps would leave the FMA latency exposed, so those blocks keep two partial sums (even
   and odd steps). */
#define TAPS(NB)                                                                   \
    for (; k0 + NB <= j->k; k0 += NB) {                                            \
        vf a[NB];                                                                  \
        for (int q = 0; q < NB; q++) a[q] = (vf){0};                               \
        const float *xp = xt + k0 * xd;                                            \
        for (int64_t l = 0; l < tl; l++, xp += xs) {                               \
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

/* One tile (batch item n, output steps [l0, l0 + tl)) of one channel chunk [cm0, cm0 + VW). */
static void tile(const job_t *j, int64_t n, int64_t l0, int64_t tl, int64_t cm0,
                 float *xt, float *gt, float *acc) {
    const int64_t cm = j->c * j->m;
    const int64_t span = (j->k - 1) * j->dilation + 1;
    const float *xn = j->x + n * j->length * j->c;
    const float *gn = j->g + n * j->out_len * cm;
    const int64_t t0 = l0 * j->stride - j->pad_left;
    const int64_t nrows = (tl - 1) * j->stride + span;
    /* Copy the tiles: zero padding and the multiplier's channel repeat applied here. */
    if (j->m == 1 && cm0 + VW <= cm) {
        for (int64_t r = 0; r < nrows; r++) {
            const int64_t t = t0 + r;
            *(vf *)(xt + r * VW) = (t < 0 || t >= j->length) ? (vf){0}
                                                             : *(const vf *)(xn + t * j->c + cm0);
        }
        for (int64_t l = 0; l < tl; l++)
            *(vf *)(gt + l * VW) = *(const vf *)(gn + (l0 + l) * cm + cm0);
    } else if (j->m == 1) {
        tail_rows(xt, xn + t0 * j->c + cm0, j->c, nrows, -t0, j->length - t0, cm - cm0,
                  j->x + j->n * j->length * j->c);
        tail_rows(gt, gn + l0 * cm + cm0, cm, tl, 0, tl, cm - cm0,
                  j->g + j->n * j->out_len * cm);
    } else {
        int64_t idx[VW];  /* input channel of each lane, -1 past the end */
        for (int v = 0; v < VW; v++) idx[v] = cm0 + v < cm ? (cm0 + v) / j->m : -1;
        for (int64_t r = 0; r < nrows; r++) {
            const int64_t t = t0 + r;
            const float *src = xn + t * j->c;
            for (int v = 0; v < VW; v++)
                xt[r * VW + v] = (t < 0 || t >= j->length || idx[v] < 0) ? 0.0f : src[idx[v]];
        }
        for (int64_t l = 0; l < tl; l++) {
            const float *src = gn + (l0 + l) * cm + cm0;
            for (int v = 0; v < VW; v++) gt[l * VW + v] = idx[v] >= 0 ? src[v] : 0.0f;
        }
    }
    const int64_t xs = j->stride * VW, xd = j->dilation * VW;
    int64_t k0 = 0;
    TAPS(8)
    TAPS2(4)
    TAPS2(2)
    TAPS2(1)
}

static void *run(void *arg) {
    const job_t *j = (const job_t *)arg;
    const int64_t cm = j->c * j->m;
    const int64_t span = (j->k - 1) * j->dilation + 1;
    const int64_t rows = (T - 1) * j->stride + span;
    const int64_t chunks = j->chunk_end - j->chunk_begin;
    float *xt = aligned_alloc(64, ((sizeof(float) * VW * rows + 63) / 64) * 64);
    float *gt = aligned_alloc(64, sizeof(float) * VW * T);
    float *acc = aligned_alloc(64, ((sizeof(float) * VW * j->k * chunks + 63) / 64) * 64);
    if (xt && gt && acc) {
        memset(acc, 0, sizeof(float) * VW * j->k * chunks);
        /* Chunks innermost: a tile's rows of x and g stay in cache across chunks. */
        for (int64_t n = 0; n < j->n; n++)
            for (int64_t l0 = 0; l0 < j->out_len; l0 += T) {
                const int64_t tl = j->out_len - l0 < T ? j->out_len - l0 : T;
                for (int64_t ch = 0; ch < chunks; ch++)
                    tile(j, n, l0, tl, (j->chunk_begin + ch) * VW, xt, gt, acc + ch * VW * j->k);
            }
        for (int64_t ch = 0; ch < chunks; ch++) {
            const int64_t cm0 = (j->chunk_begin + ch) * VW;
            for (int64_t kk = 0; kk < j->k; kk++)
                for (int v = 0; v < VW; v++)
                    if (cm0 + v < cm) j->out[kk * cm + cm0 + v] = acc[(ch * j->k + kk) * VW + v];
        }
    }
    free(xt); free(gt); free(acc);
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

int sepconv_vector_width(void) { return VW; }

/* x: (n, length, c) contiguous; g: (n, out_len, c*m) contiguous; out: (k, c*m). */
int sepconv_dw_grad_weight(const float *x, const float *g, float *out, int64_t n,
                           int64_t length, int64_t out_len, int64_t c, int64_t m, int64_t k,
                           int64_t stride, int64_t dilation, int64_t pad_left, int threads) {
    const int64_t chunks = (c * m + VW - 1) / VW;
    if (threads < 1) threads = 1;
    if (threads > chunks) threads = (int)chunks;
    if (threads > 64) threads = 64;
    job_t jobs[64];
    for (int i = 0; i < threads; i++) {
        job_t j = {x, g, out, n, length, out_len, c, m, k, stride, dilation, pad_left,
                   chunks * i / threads, chunks * (i + 1) / threads};
        jobs[i] = j;
    }
    dispatch(run, jobs, threads);
    return 0;
}

/* ---- forward: z[n, l, q] = sum_k x[n, l*s + k*d - pad_left, q / m] * w[k, q] ----------
   The same tiles as above; NB output steps held in registers, the kernel taps streamed. */
#define ROWS(NB)                                                                   \
    for (; l + NB <= tl; l += NB) {                                                \
        vf a[NB];                                                                  \
        for (int q = 0; q < NB; q++) a[q] = (vf){0};                               \
        const float *xp = xt + l * xs;                                             \
        for (int64_t kk = 0; kk < j->k; kk++) {                                    \
            const vf wv = *(const vf *)(wt + kk * VW);                             \
            const float *xk = xp + kk * xd;                                        \
            for (int q = 0; q < NB; q++) a[q] += *(const vf *)(xk + q * xs) * wv;  \
        }                                                                          \
        for (int q = 0; q < NB; q++) {                                             \
            float *dst = zn + (l0 + l + q) * cm + cm0;                             \
            if (full) *(vf *)dst = a[q];                                           \
            else for (int v = 0; v < cm - cm0; v++) dst[v] = a[q][v];              \
        }                                                                          \
    }

static void fwd_tile(const job_t *j, int64_t n, int64_t l0, int64_t tl, int64_t cm0,
                     float *xt, float *wt) {
    const int64_t cm = j->c * j->m;
    const int64_t span = (j->k - 1) * j->dilation + 1;
    const float *xn = j->x + n * j->length * j->c;
    float *zn = j->out + n * j->out_len * cm;
    const int64_t t0 = l0 * j->stride - j->pad_left;
    const int64_t nrows = (tl - 1) * j->stride + span;
    const int full = cm0 + VW <= cm;
    if (j->m == 1 && full) {
        for (int64_t r = 0; r < nrows; r++) {
            const int64_t t = t0 + r;
            *(vf *)(xt + r * VW) = (t < 0 || t >= j->length) ? (vf){0}
                                                             : *(const vf *)(xn + t * j->c + cm0);
        }
        for (int64_t kk = 0; kk < j->k; kk++)
            *(vf *)(wt + kk * VW) = *(const vf *)(j->g + kk * cm + cm0);
    } else if (j->m == 1) {
        tail_rows(xt, xn + t0 * j->c + cm0, j->c, nrows, -t0, j->length - t0, cm - cm0,
                  j->x + j->n * j->length * j->c);
        for (int64_t kk = 0; kk < j->k; kk++)
            for (int v = 0; v < VW; v++)
                wt[kk * VW + v] = cm0 + v < cm ? j->g[kk * cm + cm0 + v] : 0.0f;
    } else {
        int64_t idx[VW];
        for (int v = 0; v < VW; v++) idx[v] = cm0 + v < cm ? (cm0 + v) / j->m : -1;
        for (int64_t r = 0; r < nrows; r++) {
            const int64_t t = t0 + r;
            const float *src = xn + t * j->c;
            for (int v = 0; v < VW; v++)
                xt[r * VW + v] = (t < 0 || t >= j->length || idx[v] < 0) ? 0.0f : src[idx[v]];
        }
        for (int64_t kk = 0; kk < j->k; kk++)
            for (int v = 0; v < VW; v++)
                wt[kk * VW + v] = idx[v] >= 0 ? j->g[kk * cm + cm0 + v] : 0.0f;
    }
    const int64_t xs = j->stride * VW, xd = j->dilation * VW;
    int64_t l = 0;
    ROWS(8)
    ROWS(4)
    ROWS(2)
    ROWS(1)
}

static void *run_fwd(void *arg) {
    const job_t *j = (const job_t *)arg;
    const int64_t span = (j->k - 1) * j->dilation + 1;
    const int64_t rows = (T - 1) * j->stride + span;
    float *xt = aligned_alloc(64, ((sizeof(float) * VW * rows + 63) / 64) * 64);
    float *wt = aligned_alloc(64, ((sizeof(float) * VW * j->k + 63) / 64) * 64);
    if (xt && wt)
        for (int64_t n = 0; n < j->n; n++)
            for (int64_t l0 = 0; l0 < j->out_len; l0 += T) {
                const int64_t tl = j->out_len - l0 < T ? j->out_len - l0 : T;
                for (int64_t ch = j->chunk_begin; ch < j->chunk_end; ch++)
                    fwd_tile(j, n, l0, tl, ch * VW, xt, wt);
            }
    free(xt); free(wt);
    return NULL;
}

/* x: (n, length, c) contiguous; w: (k, c*m) contiguous; z: (n, out_len, c*m). */
int sepconv_dw_forward(const float *x, const float *w, float *z, int64_t n, int64_t length,
                       int64_t out_len, int64_t c, int64_t m, int64_t k, int64_t stride,
                       int64_t dilation, int64_t pad_left, int threads) {
    const int64_t chunks = (c * m + VW - 1) / VW;
    if (threads < 1) threads = 1;
    if (threads > chunks) threads = (int)chunks;
    if (threads > 64) threads = 64;
    job_t jobs[64];
    for (int i = 0; i < threads; i++) {
        job_t j = {x, w, z, n, length, out_len, c, m, k, stride, dilation, pad_left,
                   chunks * i / threads, chunks * (i + 1) / threads};
        jobs[i] = j;
    }
    dispatch(run_fwd, jobs, threads);
    return 0;
}
"""

_FLAGS = ["-O3", "-march=native", "-fPIC", "-std=gnu11"]
_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_tried = False
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


def _build(path: str, gomp: Optional[str]) -> None:
    """Compile ``SOURCE`` to ``path``: on ``gomp`` (an OpenMP runtime's path) when given,
    with pthreads otherwise."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise OSError("no C compiler")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as tmp:
        src = os.path.join(tmp, "dw_grad.c")
        obj = os.path.join(tmp, "dw_grad.o")
        out = os.path.join(tmp, "dw_grad.so")
        with open(src, "w") as f:
            f.write(SOURCE)
        if gomp:
            # compiled with -fopenmp, linked against torch's own libgomp (not the system's):
            # one runtime, one thread pool in the process
            steps = [[compiler, *_FLAGS, "-fopenmp", "-DSEPCONV_OMP", "-c", src, "-o", obj],
                     [compiler, "-shared", "-pthread", obj, gomp,
                      "-Wl,-rpath," + os.path.dirname(gomp), "-o", out]]
        else:
            steps = [[compiler, *_FLAGS, "-shared", "-pthread", src, "-o", out]]
        for cmd in steps:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=120)
        os.replace(out, path)  # atomic: concurrent builders never see half a file


def _open(path: str, gomp: Optional[str]) -> ctypes.CDLL:
    if not os.path.exists(path):
        _build(path, gomp)
    lib = ctypes.CDLL(path)
    for fn in (lib.sepconv_dw_grad_weight, lib.sepconv_dw_forward):
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 9 + [ctypes.c_int]
    return lib


def load() -> Optional[ctypes.CDLL]:
    """The compiled library, built on first use; ``None`` where it cannot be built."""
    global _lib, _tried, _openmp
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        _tried = True
        if os.environ.get("SEPCONV_NATIVE", "1").strip() in ("0", "false", "no"):
            return None
        # -march=native: the CPU's flags belong in the key (a shared home across machines).
        key = SOURCE + " ".join(_FLAGS) + sys.platform + platform.machine() + _cpu_flags()
        gomp = _torch_openmp() if os.environ.get("SEPCONV_NATIVE_OPENMP", "1").strip() \
            not in ("0", "false", "no") else None
        for runtime in ([gomp] if gomp else []) + [None]:
            digest = hashlib.sha256((key + str(runtime)).encode()).hexdigest()[:16]
            path = os.path.join(_cache_dir(), f"dw_grad_{digest}.so")
            try:
                _lib = _open(path, runtime)
                _openmp = runtime
                break
            except (OSError, subprocess.SubprocessError, AttributeError):
                _lib = None
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
