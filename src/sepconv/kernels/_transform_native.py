"""TensorFlow's ``ImageProjectiveTransformV3`` CPU kernel as a small C routine, for
:func:`sepconv.functional.image_transform` (the augmentation layers' training path).

The torch formulation (``functional._image_transform_torch``) spends its time in a dozen
full-size passes: coordinates, fill-mode mapping and bounds per output point, four
``index_select`` gathers of ``channels``-wide rows and nine broadcast multiply-adds of
``(batch, rows, cols, 1)`` weights against ``(batch, rows, cols, channels)`` corners (an
inner loop of 3 elements for RGB).  This routine does one pass: per output point the
coordinate, its fill-mode mapping, the corner reads from the channels-last image and the
blend, written straight to the output; output rows are shared out between threads.
Separable transforms (translations, zooms: ``a1 = b0 = c0 = c1 = 0``) map each output
column once per image (corner offsets, weights) and each output line once, leaving the
reads and the blend to the inner loop (3x less time than point by point).

Exactness: the arithmetic is TensorFlow's ``ProjectiveGenerator`` (``image_ops.h``)
statement for statement in float32 -- the same expressions in the same order, the same
``DenseIndex`` (int64) casts in ``MapCoordinate``, ``std::round`` (half away from zero)
for nearest -- compiled with ``-ffp-contract=off`` (GCC would otherwise fuse multiply-adds
into FMAs, which round once where TensorFlow rounds twice) and no fast-math.  float32 and
float64 images are read in their own type (float64 bilinear reads are rounded to float32
as TensorFlow's ``static_cast<float>`` does; nearest copies the float64 value); float16
and bfloat16 go through float32 (exact both ways).

Built once per machine with the system C compiler into the cache that
:mod:`._cpu_native` uses (``-O3 -march=native``), on torch's own OpenMP runtime where it
is found (one thread pool), single-threaded otherwise; :func:`load` returns ``None`` where
there is no compiler or the build fails (``image_transform`` then takes the torch route).
``SEPCONV_NATIVE=0`` disables it as it disables the depthwise routine.
"""

from __future__ import annotations

import ctypes
from typing import Optional

from . import _cpu_native

SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* MapCoordinate<FILL_*> of tensorflow/core/kernels/image/image_ops.h, as written there
   (float coordinate, int64 length; the int64 casts are TensorFlow's). */
static inline float clamp_len(float c, int64_t len) {
    float lo = 0.0f, hi = (float)(len - 1);
    c = (c < lo) ? lo : c;      /* numext::maxi(c, lo) = std::max */
    return (hi < c) ? hi : c;   /* numext::mini(c, hi) = std::min */
}

static inline float map_reflect(float in, int64_t len) {
    if (in < 0) {
        if (len <= 1) {
            in = 0;
        } else {
            const int64_t sz2 = 2 * len;
            if (in < sz2) in = sz2 * (int64_t)(-in / sz2) + in;
            in = (in < -len) ? in + sz2 : -in - 1;
        }
    } else if (in > len - 1) {
        if (len <= 1) {
            in = 0;
        } else {
            const int64_t sz2 = 2 * len;
            in -= sz2 * (int64_t)(in / sz2);
            if (in >= len) in = sz2 - in - 1;
        }
    }
    return clamp_len(in, len);
}

static inline float map_wrap(float in, int64_t len) {
    if (in < 0) {
        if (len <= 1) {
            in = 0;
        } else {
            const int64_t sz = len - 1;
            in += len * ((int64_t)(-in / sz) + 1);
        }
    } else if (in > len - 1) {
        if (len <= 1) {
            in = 0;
        } else {
            const int64_t sz = len - 1;
            in -= len * (int64_t)(in / sz);
        }
    }
    return clamp_len(in, len);
}

/* fill modes: 0 reflect, 1 wrap, 2 constant, 3 nearest */
static inline __attribute__((always_inline)) float map_coord(float c, int64_t len, int mode) {
    switch (mode) {
        case 0: return map_reflect(c, len);
        case 1: return map_wrap(c, len);
        case 2: return c;
        default: return clamp_len(c, len);
    }
}

/* std::round (half away from zero) inline: y - truncf(y) is exact */
static inline float round_half_away(float y) {
    const float t = truncf(y);
    return fabsf(y - t) >= 0.5f ? t + copysignf(1.0f, y) : t;
}

/* whole coordinate (a float holding an integer, or inf / nan) inside [0, len)?  The same
   as TensorFlow's DenseIndex(c) in [0, len) for every c that converts. */
#define INSIDE(c, len) ((c) >= 0.0f && (c) < (float)(len))

/* one output column of a separable transform: its corners' offsets in an image row (-1:
   outside, the fill value) and their bilinear weights */
typedef struct { int64_t o0, o1; float w0, w1; } colmap_t;

/* images (batch, rows, cols, channels) of T, contiguous; transforms (ntr, 8) float32,
   ntr 1 or batch; out (batch, out_h, out_w, channels) of T; output lines [l0, l1);
   interp 0 nearest, 1 bilinear; fill: the fill value as the kernel reads it (T(fill_value)
   as float).  MODE and INTERP are constants at each call (the loop is built 8 times). */
#define DEFINE_LINES(NAME, T)                                                              \
static inline __attribute__((always_inline)) void NAME(                                    \
        const T *img, const float *tr, int64_t ntr, T *out, int64_t rows, int64_t cols,    \
        int64_t ch, int64_t out_h, int64_t out_w, const int mode, const int interp,        \
        float fill, int64_t l0, int64_t l1, colmap_t *cm) {                                \
    const T fill_t = (T)fill;                                                              \
    const float *cm_t = 0;  /* the transform cm maps the columns of */                     \
    for (int64_t line = l0; line < l1; line++) {                                           \
        const int64_t b = line / out_h, oy = line % out_h;                                 \
        const float *t = tr + (ntr == 1 ? 0 : 8 * b);                                      \
        const T *im = img + b * rows * cols * ch;                                          \
        const int affine = t[6] == 0 && t[7] == 0;                                         \
        if (cm && affine && t[1] == 0 && t[3] == 0) {                                      \
            /* separable (translations, zooms): x from the column alone, y from the line   \
               alone.  The same numbers as the point-by-point loop below: a1 * fy and      \
               b0 * fx are the same signed zero for every fy, fx >= 0. */                  \
            T *o = out + line * out_w * ch;                                                \
            if (cm_t != t) {                                                               \
                for (int64_t ox = 0; ox < out_w; ox++) {                                   \
                    const float fx = (float)ox;                                            \
                    const float x = map_coord(t[0] * fx + t[1] * 0.0f + t[2], cols, mode); \
                    if (interp == 0) {                                                     \
                        const float rx = round_half_away(x);                               \
                        cm[ox].o0 = INSIDE(rx, cols) ? (int64_t)rx * ch : -1;              \
                    } else {                                                               \
                        const float x_floor = floorf(x), x_ceil = x_floor + 1;             \
                        cm[ox].o0 = INSIDE(x_floor, cols) ? (int64_t)x_floor * ch : -1;    \
                        cm[ox].o1 = INSIDE(x_ceil, cols) ? (int64_t)x_ceil * ch : -1;      \
                        cm[ox].w0 = x_ceil - x;                                            \
                        cm[ox].w1 = x - x_floor;                                           \
                    }                                                                      \
                }                                                                          \
                cm_t = t;                                                                  \
            }                                                                              \
            const float fy = (float)oy;                                                    \
            const float y = map_coord(t[3] * 0.0f + t[4] * fy + t[5], rows, mode);         \
            if (interp == 0) {                                                             \
                const float ry = round_half_away(y);                                       \
                const T *r = INSIDE(ry, rows) ? im + (int64_t)ry * cols * ch : 0;          \
                for (int64_t ox = 0; ox < out_w; ox++, o += ch) {                          \
                    const T *p = (r && cm[ox].o0 >= 0) ? r + cm[ox].o0 : 0;                \
                    for (int64_t c = 0; c < ch; c++) o[c] = p ? p[c] : fill_t;             \
                }                                                                          \
                continue;                                                                  \
            }                                                                              \
            const float y_floor = floorf(y), y_ceil = y_floor + 1;                         \
            const T *r0 = INSIDE(y_floor, rows) ? im + (int64_t)y_floor * cols * ch : 0;   \
            const T *r1 = INSIDE(y_ceil, rows) ? im + (int64_t)y_ceil * cols * ch : 0;     \
            const float wy0 = y_ceil - y, wy1 = y - y_floor;                               \
            for (int64_t ox = 0; ox < out_w; ox++, o += ch) {                              \
                const colmap_t *m = cm + ox;                                               \
                const float wx0 = m->w0, wx1 = m->w1;                                      \
                const T *p00 = (r0 && m->o0 >= 0) ? r0 + m->o0 : 0;                        \
                const T *p01 = (r0 && m->o1 >= 0) ? r0 + m->o1 : 0;                        \
                const T *p10 = (r1 && m->o0 >= 0) ? r1 + m->o0 : 0;                        \
                const T *p11 = (r1 && m->o1 >= 0) ? r1 + m->o1 : 0;                        \
                for (int64_t c = 0; c < ch; c++) {                                         \
                    const float v00 = p00 ? (float)p00[c] : fill;                          \
                    const float v01 = p01 ? (float)p01[c] : fill;                          \
                    const float v10 = p10 ? (float)p10[c] : fill;                          \
                    const float v11 = p11 ? (float)p11[c] : fill;                          \
                    const float value_yfloor = wx0 * v00 + wx1 * v01;                      \
                    const float value_yceil = wx0 * v10 + wx1 * v11;                       \
                    o[c] = (T)(wy0 * value_yfloor + wy1 * value_yceil);                    \
                }                                                                          \
            }                                                                              \
            continue;                                                                      \
        }                                                                                  \
        T *o = out + line * out_w * ch;                                                    \
        for (int64_t ox = 0; ox < out_w; ox++, o += ch) {                                  \
            const float fx = (float)ox, fy = (float)oy;                                    \
            const float projection = t[6] * fx + t[7] * fy + 1.f;                          \
            if (projection == 0) {                                                         \
                for (int64_t c = 0; c < ch; c++) o[c] = fill_t;                            \
                continue;                                                                  \
            }                                                                              \
            /* affine rows (c0 = c1 = 0): projection is 1, and v / 1 == v */               \
            const float input_x = affine ? t[0] * fx + t[1] * fy + t[2]                    \
                : (t[0] * fx + t[1] * fy + t[2]) / projection;                             \
            const float input_y = affine ? t[3] * fx + t[4] * fy + t[5]                    \
                : (t[3] * fx + t[4] * fy + t[5]) / projection;                             \
            const float x = map_coord(input_x, cols, mode);                                \
            const float y = map_coord(input_y, rows, mode);                                \
            if (interp == 0) {                                                             \
                const float ry = round_half_away(y), rx = round_half_away(x);              \
                if (INSIDE(ry, rows) && INSIDE(rx, cols)) {                                \
                    const T *p = im + ((int64_t)ry * cols + (int64_t)rx) * ch;             \
                    for (int64_t c = 0; c < ch; c++) o[c] = p[c];                          \
                } else {                                                                   \
                    for (int64_t c = 0; c < ch; c++) o[c] = fill_t;                        \
                }                                                                          \
                continue;                                                                  \
            }                                                                              \
            const float y_floor = floorf(y), x_floor = floorf(x);                          \
            const float y_ceil = y_floor + 1, x_ceil = x_floor + 1;                        \
            const int iy0 = INSIDE(y_floor, rows), iy1 = INSIDE(y_ceil, rows);             \
            const int ix0 = INSIDE(x_floor, cols), ix1 = INSIDE(x_ceil, cols);             \
            const int64_t y0 = iy0 ? (int64_t)y_floor : 0, y1 = iy1 ? (int64_t)y_ceil : 0; \
            const int64_t x0 = ix0 ? (int64_t)x_floor : 0, x1 = ix1 ? (int64_t)x_ceil : 0; \
            const T *p00 = (iy0 && ix0) ? im + (y0 * cols + x0) * ch : 0;                  \
            const T *p01 = (iy0 && ix1) ? im + (y0 * cols + x1) * ch : 0;                  \
            const T *p10 = (iy1 && ix0) ? im + (y1 * cols + x0) * ch : 0;                  \
            const T *p11 = (iy1 && ix1) ? im + (y1 * cols + x1) * ch : 0;                  \
            const float wx0 = x_ceil - x, wx1 = x - x_floor;                               \
            const float wy0 = y_ceil - y, wy1 = y - y_floor;                               \
            for (int64_t c = 0; c < ch; c++) {                                             \
                const float v00 = p00 ? (float)p00[c] : fill;                              \
                const float v01 = p01 ? (float)p01[c] : fill;                              \
                const float v10 = p10 ? (float)p10[c] : fill;                              \
                const float v11 = p11 ? (float)p11[c] : fill;                              \
                const float value_yfloor = wx0 * v00 + wx1 * v01;                          \
                const float value_yceil = wx0 * v10 + wx1 * v11;                           \
                o[c] = (T)(wy0 * value_yfloor + wy1 * value_yceil);                        \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
}

#define CASE(LINES, M, I)                                                                 \
    case 2 * M + I:                                                                       \
                LINES(img, tr, ntr, out, rows, cols, ch, out_h, out_w, M, I, fill, l0, l1, cm);    \
        break;

/* the exported routine: output lines shared out between threads in contiguous blocks */
#define DEFINE_TRANSFORM(NAME, LINES, T)                                                   \
void NAME(const T *img, const float *tr, int64_t ntr, T *out, int64_t batch,               \
          int64_t rows, int64_t cols, int64_t ch, int64_t out_h, int64_t out_w,            \
          int mode, int interp, float fill, int threads) {                                 \
    const int64_t lines = batch * out_h;                                                   \
    if (threads > lines) threads = lines > 0 ? (int)lines : 1;                             \
    (void)threads;                                                                         \
    _Pragma("omp parallel for schedule(static, 1) num_threads(threads)")                   \
    for (int i = 0; i < threads; i++) {                                                    \
        const int64_t l0 = lines * i / threads, l1 = lines * (i + 1) / threads;            \
        /* scratch for separable transforms (without it, the point-by-point loop) */       \
        colmap_t *cm = malloc(sizeof(colmap_t) * (out_w > 0 ? out_w : 1));                 \
        switch (2 * mode + interp) {                                                       \
            CASE(LINES, 0, 0) CASE(LINES, 0, 1) CASE(LINES, 1, 0) CASE(LINES, 1, 1)        \
            CASE(LINES, 2, 0) CASE(LINES, 2, 1) CASE(LINES, 3, 0) CASE(LINES, 3, 1)        \
        }                                                                                  \
        free(cm);                                                                          \
    }                                                                                      \
}

DEFINE_LINES(lines_f32, float)
DEFINE_LINES(lines_f64, double)
DEFINE_TRANSFORM(sepconv_image_transform_f32, lines_f32, float)
DEFINE_TRANSFORM(sepconv_image_transform_f64, lines_f64, double)
"""

# -ffp-contract=off: no FMAs (TensorFlow's expressions round after each product);
# -fno-math-errno lets floorf / roundf inline (their results do not change)
_FLAGS = ["-O3", "-march=native", "-fPIC", "-std=gnu11", "-ffp-contract=off",
          "-fno-math-errno"]
_lib: Optional[ctypes.CDLL] = None
_ARGS = ([ctypes.c_void_p] * 2 + [ctypes.c_int64] + [ctypes.c_void_p] + [ctypes.c_int64] * 6
         + [ctypes.c_int] * 2 + [ctypes.c_float, ctypes.c_int])


def _declare(lib: ctypes.CDLL) -> None:
    for fn in (lib.sepconv_image_transform_f32, lib.sepconv_image_transform_f64):
        fn.restype = None
        fn.argtypes = _ARGS


_LIBRARY = _cpu_native.Library("transform", SOURCE, _FLAGS, _declare,
                               plain_args=("-Wno-unknown-pragmas",), libs=("-lm",))


def load() -> Optional[ctypes.CDLL]:
    """The compiled library, built on first use (as ``_cpu_native``'s, same cache and
    OpenMP runtime); ``None`` where it cannot be built."""
    global _lib
    _lib = _LIBRARY.load()
    return _lib


def transform(images, transforms, out, *, fill_mode: int, interpolation: int, fill: float,
              threads: int) -> None:
    """Fill ``out`` (``(batch, out_h, out_w, channels)``, contiguous, float32 or float64 as
    ``images``) from contiguous CPU ``images`` and contiguous float32 ``transforms``
    ``(1 or batch, 8)``; ``fill_mode`` 0-3 (reflect, wrap, constant, nearest),
    ``interpolation`` 0 nearest / 1 bilinear, ``fill`` the fill value as read (``T(v)``
    as float32).  ``load()`` must have succeeded."""
    fn = (_lib.sepconv_image_transform_f64 if images.element_size() == 8
          else _lib.sepconv_image_transform_f32)
    batch, rows, cols, ch = images.shape
    fn(images.data_ptr(), transforms.data_ptr(), transforms.shape[0], out.data_ptr(),
       batch, rows, cols, ch, out.shape[1], out.shape[2], fill_mode, interpolation, fill,
       max(1, int(threads)))
