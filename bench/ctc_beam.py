"""Beam-search CTC decoding: ``sepconv.functional.ctc_beam_decode`` against tf-keras 2.21's
``backend.ctc_decode(greedy=False)`` and Keras 3.15's ``ops.ctc_decode(strategy=
"beam_search")`` (torch backend), one thread, CPU time (``time.process_time``), the four
alternating call by call in one process, medians of ``--reps`` rounds.

Shape: 4 rows of 50 steps, 30 classes (softmax outputs), beam width 16, 2 paths.

Usage: ``PYTHONPATH=src python bench/ctc_beam.py [--reps 5]``
"""

import argparse
import os
import statistics
import time

os.environ["KERAS_BACKEND"] = "torch"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    import keras  # noqa: F401  (before TensorFlow, see tests/conftest.py)
    import numpy as np
    import tensorflow as tf
    import tf_keras
    import torch

    from sepconv.functional import ctc_beam_decode

    torch.set_num_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rng = np.random.default_rng(0)
    batch, steps, classes, beam, top = 4, 50, 30, 16, 2
    logits = rng.standard_normal((batch, steps, classes)).astype(np.float32) * 2
    y = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    lengths = np.full(batch, steps, np.int32)
    x, n = torch.from_numpy(y), torch.from_numpy(lengths)
    fns = {
        "sepconv like='tf_keras'": lambda: ctc_beam_decode(torch.log(x + 1e-7), n, beam,
                                                           top),
        "tf-keras backend.ctc_decode": lambda: tf_keras.backend.ctc_decode(
            y, lengths, greedy=False, beam_width=beam, top_paths=top),
        "sepconv like='keras3'": lambda: ctc_beam_decode(x, n, beam, top, mask_index=0,
                                                         like="keras3"),
        "Keras 3 ops.ctc_decode": lambda: keras.ops.ctc_decode(
            y, lengths, strategy="beam_search", beam_width=beam, top_paths=top,
            mask_index=0),
    }
    times = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(args.reps):
        for k, f in fns.items():
            t = time.process_time()
            f()
            times[k].append(time.process_time() - t)
    for k, v in times.items():
        print(f"{k:30s} {statistics.median(v) * 1000:8.1f} ms CPU (median of {len(v)})")


if __name__ == "__main__":
    main()
