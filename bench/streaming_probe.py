"""What the time-locality probe and the per-call state snapshot of ``sepconv.stream`` cost.

    python bench/streaming_probe.py

One thread (``torch.set_num_threads(1)``), ``time.process_time`` (CPU time: the machine
may be shared), medians.

1. The probe: a WaveNet of 6 gated blocks written with TensorFlow operations in tf-keras
   (``tf.tanh(a) * tf.sigmoid(b)``, ``h + r``: 25 operation nodes), saved as .h5 and
   loaded; the first one-step chunk of a fresh stream (which runs the probe) against the
   next one-step chunk.
2. The snapshot a call takes of the states (so that a refused chunk changes nothing):
   one-step chunks through 6 causal ``SeparableConv1D`` layers, the call as it is against
   the call without the snapshot, alternated in this process.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time


def _wavenet_file(path):
    import tensorflow as tf
    import tf_keras
    L = tf_keras.layers
    x = tf_keras.Input((None, 32))
    h = L.Conv1D(32, 1)(x)
    for d in (1, 2, 4, 8, 16, 32):
        g = tf.tanh(L.Conv1D(32, 2, dilation_rate=d, padding="causal")(h)) * \
            tf.sigmoid(L.Conv1D(32, 2, dilation_rate=d, padding="causal")(h))
        h = h + L.Conv1D(32, 1)(g)
    tf_keras.Model(x, h).save(path)


def main():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import triton  # noqa: F401  (before TensorFlow: see tests/conftest.py)
    except ImportError:
        pass
    import torch
    import sepconv
    from sepconv import streaming
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "wavenet_ops.h5")
        _wavenet_file(path)
        model = sepconv.load_keras_model(path)
    chunk = torch.randn(1, 1, 32)
    first, later = [], []
    with torch.no_grad():
        for _ in range(7):
            stream = sepconv.stream(model)
            t = time.process_time()
            stream(chunk)
            first.append(time.process_time() - t)
            t = time.process_time()
            stream(chunk)
            later.append(time.process_time() - t)
    print(f"probe: first chunk {statistics.median(first) * 1e3:.1f} ms, "
          f"next one-step chunk {statistics.median(later) * 1e3:.2f} ms (median of 7)")

    stack = torch.nn.Sequential(*[
        sepconv.SeparableConv1D(32, 5, padding="causal", input_shape=(None, 32))
        for _ in range(6)]).eval()
    with_snapshot = streaming.Stream.__call__

    def without_snapshot(self, *chunks):
        return self._run([self._checked(c) for c in chunks])

    def per_step(call, n=2000):
        streaming.Stream.__call__ = call
        try:
            stream = sepconv.stream(stack)
            with torch.no_grad():
                t = time.process_time()
                for _ in range(n):
                    stream(chunk)
                return (time.process_time() - t) / n * 1e6
        finally:
            streaming.Stream.__call__ = with_snapshot

    runs = {"with snapshot": [], "without": []}
    for _ in range(7):
        runs["with snapshot"].append(per_step(with_snapshot))
        runs["without"].append(per_step(without_snapshot))
    print("one-step chunk, 6 SeparableConv1D layers: " + ", ".join(
        f"{k} {statistics.median(v):.1f} us" for k, v in runs.items()) + " (median of 7)")


if __name__ == "__main__":
    main()
