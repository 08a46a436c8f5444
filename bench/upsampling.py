"""UpSampling2D forward and forward+backward: sepconv vs tf-keras 2.21 (TensorFlow CPU).

    PYTHONPATH=src python bench/upsampling.py [--shape 8 64 64 16] [--repeats 9]

Alternates the two implementations within one process and prints the median time of each
(milliseconds) and the ratio sepconv / tf-keras per interpolation.  Both use 2 threads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[8, 64, 64, 16])
    parser.add_argument("--size", type=int, nargs=2, default=[2, 2])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--methods", nargs="+", default=["nearest", "bilinear", "bicubic",
                                                         "lanczos5"])
    args = parser.parse_args()

    import numpy as np
    import torch
    import tensorflow as tf
    import tf_keras

    import sepconv

    torch.set_num_threads(2)
    x = np.random.default_rng(0).standard_normal(args.shape).astype(np.float32)
    print(f"input {tuple(args.shape)} (batch, rows, cols, channels), size={tuple(args.size)}")
    print(f"{'interpolation':14s} {'fwd ms':>15s} {'ratio':>6s} {'fwd+bwd ms':>17s} {'ratio':>6s}")
    for method in args.methods:
        ours = sepconv.UpSampling2D(tuple(args.size), interpolation=method)
        theirs = tf_keras.layers.UpSampling2D(tuple(args.size), interpolation=method)
        xt, xtf = torch.from_numpy(x), tf.constant(x)

        def ours_fwd():
            ours(xt)

        def theirs_fwd():
            theirs(xtf).numpy()

        def ours_bwd():
            xx = xt.clone().requires_grad_(True)
            ours(xx).sum().backward()

        def theirs_bwd():
            with tf.GradientTape() as tape:
                tape.watch(xtf)
                y = tf.reduce_sum(theirs(xtf))
            if method == "area":  # TensorFlow has no gradient for it
                return
            tape.gradient(y, xtf).numpy()

        row = f"{method:14s}"
        for pair in ((ours_fwd, theirs_fwd), (ours_bwd, theirs_bwd)):
            times = ([], [])
            for f in pair:
                f()  # warm-up
            for _ in range(args.repeats):
                for i, f in enumerate(pair):
                    t = time.perf_counter()
                    f()
                    times[i].append(time.perf_counter() - t)
            a, b = (statistics.median(t) * 1e3 for t in times)
            row += f" {a:7.2f} / {b:6.2f} {a / b:6.2f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
