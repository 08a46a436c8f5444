"""One-thread A/B/C of kernel == stride transposed convolutions: the reference kernel
(oneDNN's deconvolution), ``kernels/kstride.py`` (one GEMM and a pixel shuffle) and
tf-keras 2.21's layer, per shape.

All three run in ONE process, alternated call by call (torch: ``torch.set_num_threads(1)``;
TensorFlow: one intra-op and one inter-op thread, ``tf.function``), median
``time.process_time()`` of ``--calls`` calls each: CPU time, which moves little with the
other processes on a shared machine.  Rows time the forward (inference) and
forward+backward (input, kernel and bias gradients).  The 1D rows add ``kernels/gemm1d.py``
(phase GEMMs, called directly) where it can run them.

    python bench/kstride_ab.py                # ~2 min on one core
    python bench/kstride_ab.py --only 1d      # rows whose name contains the word
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sepconv.kernels import gemm1d, kstride, memory, reference

# name, input shape (channels_last), kernel == stride, filters, channels_last
SHAPES = [
    ("unet 8x64x64x64->32 k2s2", (8, 64, 64, 64), 2, 32, True),
    ("unet 8x32x32x128->64 k2s2", (8, 32, 32, 128), 2, 64, True),
    ("unet 8x16x16x256->128 k2s2", (8, 16, 16, 256), 2, 128, True),
    ("2d 8x32x32x64->32 k4s4", (8, 32, 32, 64), 4, 32, True),
    ("unet NCHW 8x64x64x64->32 k2s2", (8, 64, 64, 64), 2, 32, False),
    ("unet NCHW 8x32x32x128->64 k2s2", (8, 32, 32, 128), 2, 64, False),
    ("1d 16x1000x128->64 k2s2", (16, 1000, 128), 2, 64, True),
    ("1d 16x1000x128->64 k4s4", (16, 1000, 128), 4, 64, True),
    ("1d 16x1000x128->64 k8s8", (16, 1000, 128), 8, 64, True),
    ("1d NCW 16x1000x128->64 k4s4", (16, 1000, 128), 4, 64, False),
    ("3d 2x16x16x16x64->32 k2s2", (2, 16, 16, 16, 64), 2, 32, True),
    ("3d 2x32x32x32x32->16 k2s2", (2, 32, 32, 32, 32), 2, 16, True),
    ("3d NCDHW 2x16x16x16x64->32 k2s2", (2, 16, 16, 16, 64), 2, 32, False),
]


def _timed(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def _peers(shape, k, filters, channels_last, train):
    import tensorflow as tf
    import tf_keras
    rank = len(shape) - 2
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    w = torch.randn(*(k,) * rank, filters, shape[-1], generator=g) * 0.1
    b = torch.randn(filters, generator=g)
    if not channels_last:
        x = x.movedim(-1, 1).contiguous()
    spatial = shape[1:-1]
    kw = dict(strides=(k,) * rank, dilation=(1,) * rank, pads=((0, 0),) * rank,
              out_spatial=tuple(n * k for n in spatial), channels_last=channels_last)
    peers = {}

    def torch_call(fn):
        if not train:
            def run():
                with torch.no_grad():
                    fn(x, w, b, **kw)
            return run
        xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))

        def run():
            y = fn(xs, ws, bs, **kw)
            y.backward(torch.ones_like(y))
        return run

    peers["reference"] = torch_call(reference.conv_transpose)
    peers["kstride"] = torch_call(kstride.conv_transpose)
    if rank == 1 and channels_last and train:
        peers["gemm1d"] = torch_call(gemm1d.conv_transpose)
    cls = (tf_keras.layers.Conv1DTranspose, tf_keras.layers.Conv2DTranspose,
           tf_keras.layers.Conv3DTranspose)[rank - 1]
    layer = cls(filters, k, strides=k,
                data_format="channels_last" if channels_last else "channels_first")
    tx = tf.constant(x.numpy())
    layer(tx)
    layer.set_weights([w.numpy(), b.numpy()])
    if train:
        @tf.function
        def tf_step(t):
            with tf.GradientTape() as tape:
                tape.watch(t)
                y = layer(t)
            # y returned too: else the forward is dead code (no gradient reads it)
            return [y] + tape.gradient(y, [t] + layer.trainable_weights)
    else:
        tf_step = tf.function(lambda t: layer(t))
    peers["tf-keras"] = lambda: [v.numpy() for v in tf.nest.flatten(tf_step(tx))]
    return peers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    memory.keep_freed_memory()
    print(f"{'shape':34s} {'pass':9s} {'reference':>10s} {'kstride':>10s} {'gemm1d':>10s} "
          f"{'tf-keras':>10s}  kstride/ref  kstride/tf  ref/tf  (ms, one thread)")
    for name, shape, k, filters, cl in SHAPES:
        if args.only and args.only not in name:
            continue
        for train in (False, True):
            peers = _peers(shape, k, filters, cl, train)
            for fn in peers.values():  # warm-up
                fn()
                fn()
            times = {p: [] for p in peers}
            for _ in range(args.calls):
                for p, fn in peers.items():
                    times[p].append(_timed(fn))
            med = {p: statistics.median(t) * 1e3 for p, t in times.items()}
            gemm = f"{med['gemm1d']:10.2f}" if "gemm1d" in med else f"{'':10s}"
            print(f"{name:34s} {'fwd+bwd' if train else 'forward':9s} "
                  f"{med['reference']:10.2f} {med['kstride']:10.2f} {gemm} "
                  f"{med['tf-keras']:10.2f}  {med['kstride'] / med['reference']:11.2f} "
                  f"{med['kstride'] / med['tf-keras']:10.2f} "
                  f"{med['reference'] / med['tf-keras']:7.2f}", flush=True)


if __name__ == "__main__":
    main()
