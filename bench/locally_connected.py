"""LocallyConnected1D forward, sepconv vs tf-keras 2.21 (tf.function), per implementation.

Run one library per process and alternate, e.g. (one thread each, as the machine is shared):

    for r in 1 2 3; do for w in sepconv tf_keras; do
      NT=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 PYTHONPATH=src \\
        python bench/locally_connected.py $w; done; done

Prints the median milliseconds of 30 calls for implementation 1, 2, 3 on a (32, 64, 16)
input, 32 filters, kernel 3.  No thresholds: the numbers are for the README / reports.
"""

import os
import statistics
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _median_ms(fn, reps=30, warm=5):
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(which: str) -> None:
    x = np.random.default_rng(0).standard_normal((32, 64, 16)).astype(np.float32)
    out = []
    if which == "sepconv":
        import torch
        import sepconv
        torch.set_num_threads(int(os.environ.get("NT", "1")))
        xt = torch.from_numpy(x)
        for impl in (1, 2, 3):
            layer = sepconv.LocallyConnected1D(32, 3, implementation=impl,
                                               input_shape=(64, 16)).eval()
            with torch.no_grad():
                out.append(_median_ms(lambda: layer(xt)))
    else:
        import tensorflow as tf
        import tf_keras
        xtf = tf.constant(x)
        for impl in (1, 2, 3):
            layer = tf_keras.layers.LocallyConnected1D(32, 3, implementation=impl)
            layer.build(x.shape)
            fn = tf.function(layer)
            out.append(_median_ms(lambda: fn(xtf).numpy()))
    print(which, " ".join(f"impl{i + 1}={v:.2f}ms" for i, v in enumerate(out)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sepconv")
