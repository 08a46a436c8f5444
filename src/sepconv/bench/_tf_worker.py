"""tf-keras layers timed in their own process (run as a script, never imported).

TensorFlow and torch each size their own thread pools; in one process they fight, and
importing triton after TensorFlow crashes.  This script imports TensorFlow and numpy only,
and answers JSON lines on stdin with ``@@``-prefixed JSON lines on stdout:

- ``{"op": "setup", "shape": {...}}`` -> ``{"ok": true}`` (builds the layer, traces, warms up):
  a ``SeparableConv1D`` from a :class:`sepconv.bench.shapes.Shape`, or, when the dict has
  ``layer``, ``kwargs`` and ``input_shape`` (:class:`sepconv.bench.family.FamilyShape`),
  that tf-keras layer
- ``{"op": "time", "mode": "fwd" | "fb", "reps": n}`` -> ``{"times": [seconds, ...]}``
- ``{"op": "quit"}``
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _reply(obj):
    sys.stdout.write("@@" + json.dumps(obj) + "\n")
    sys.stdout.flush()


def steps(tf, layer, x, dy):
    """``{"fwd": ..., "fb": ...}``: the timed calls, each a ``tf.function``.

    ``fb`` returns y beside the gradients of x and the weights: a training step needs y
    for its loss, and ``tf.function`` prunes what it does not return (a y-less step
    skipped the pointwise GEMM, a third of a GEMM-bound SeparableConv1D step)."""

    @tf.function
    def fwd(x):
        return layer(x, training=False)

    @tf.function
    def fb(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        return [y] + tape.gradient(y, [x] + layer.trainable_variables, output_gradients=dy)

    return {"fwd": lambda: fwd(x), "fb": lambda: fb(x, dy)}


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    try:
        import numpy as np
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        import tf_keras
    except Exception as exc:  # report any import failure as "peer missing"
        _reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    _reply({"ok": True, "version": f"tf {tf.__version__}, tf-keras {tf_keras.__version__}"})
    fns = {}
    for line in sys.stdin:
        msg = json.loads(line)
        op = msg["op"]
        if op == "quit":
            break
        try:
            if op == "setup":
                s = msg["shape"]
                rng = np.random.default_rng(0)
                if "layer" in s:  # the family suite: any tf-keras layer, channels_last input
                    layer = getattr(tf_keras.layers, s["layer"])(**s["kwargs"])
                    x_shape = tuple(s["input_shape"])
                else:
                    layer = tf_keras.layers.SeparableConv1D(
                        s["filters"], s["kernel_size"], strides=s["strides"],
                        padding=s["padding"], dilation_rate=s["dilation_rate"],
                        depth_multiplier=s["depth_multiplier"])
                    x_shape = (s["batch"], s["steps"], s["channels"])
                x = tf.constant(rng.standard_normal(x_shape).astype("float32"))
                y = layer(x)
                dy = tf.constant(rng.standard_normal(y.shape).astype("float32"))
                fns = steps(tf, layer, x, dy)
                for f in fns.values():
                    f()
                    f()
                _reply({"ok": True})
            elif op == "time":
                f = fns[msg["mode"]]
                times = []
                for _ in range(msg["reps"]):
                    t0 = time.perf_counter()
                    out = f()
                    _ = [o.shape for o in (out if isinstance(out, list) else [out])]
                    times.append(time.perf_counter() - t0)
                _reply({"times": times})
        except Exception as exc:
            _reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    main()
