"""The family's work per call on ONE thread, measured as CPU time, against tf-keras.

On a shared, loaded machine wall-clock medians of two-thread calls swing 3-6x from run to
run (other processes take the cores); the CPU time a one-thread call consumes barely moves
with load.  So this compares what each implementation costs, not how fast a quiet machine
runs it: each peer in its own process (torch: ``torch.set_num_threads(1)``; TensorFlow:
one intra-op and one inter-op thread, ``tf.function``), median ``time.process_time()`` of
5 calls after 2 warm-up calls, forward (inference) and forward + backward (input and weight
gradients).  Ratios below 1: sepconv costs less.

    python bench/family_cpu_time.py          # ~2 min on 2 cores
    FAMILY_ONLY=dw python bench/family_cpu_time.py   # the rows whose name holds "dw"
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

SHAPES = [
    ("unet_up_2x2", "Conv2DTranspose", dict(filters=64, kernel_size=2, strides=2), (4, 64, 64, 128)),
    ("unet_up_3x3_same", "Conv2DTranspose",
     dict(filters=32, kernel_size=3, strides=2, padding="same"), (4, 64, 64, 64)),
    ("conv3d_s2", "Conv3D", dict(filters=64, kernel_size=3, strides=2, padding="same"),
     (2, 32, 32, 32, 32)),
    ("conv3d", "Conv3D", dict(filters=32, kernel_size=3, padding="same"), (2, 32, 32, 32, 32)),
    ("wavenet_d8", "Conv1D", dict(filters=128, kernel_size=2, padding="causal", dilation_rate=8),
     (4, 16000, 64)),
    ("wavenet_d512", "Conv1D",
     dict(filters=128, kernel_size=2, padding="causal", dilation_rate=512), (4, 16000, 64)),
    ("xception_entry", "SeparableConv2D", dict(filters=256, kernel_size=3, padding="same"),
     (4, 74, 74, 128)),
    ("mobilenet_dw3_s2", "DepthwiseConv2D", dict(kernel_size=3, strides=2, padding="same"),
     (8, 56, 56, 128)),
    ("mobilenet_dw5", "DepthwiseConv2D", dict(kernel_size=5, padding="same"), (8, 28, 28, 240)),
    ("mobilenet_dw3", "DepthwiseConv2D", dict(kernel_size=3, padding="same"), (8, 112, 112, 32)),
    ("convnext_dw7", "DepthwiseConv2D", dict(kernel_size=7, padding="same"), (8, 56, 56, 96)),
    ("deeplab_dw3_d2", "DepthwiseConv2D", dict(kernel_size=3, padding="same", dilation_rate=2),
     (4, 64, 64, 128)),
    ("melgan_up_k16_s8", "Conv1DTranspose",
     dict(filters=256, kernel_size=16, strides=8, padding="same"), (4, 250, 512)),
]

SHAPES = [s for s in SHAPES if any(o in s[0] for o in os.environ.get("FAMILY_ONLY", "").split(","))]


def _median(fn, n=5, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times) * 1e3


def _torch():
    import torch
    import sepconv
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = {}
    for name, cls, kwargs, shape in SHAPES:
        layer = getattr(sepconv, cls)(**kwargs)
        x = torch.randn(*shape, requires_grad=True)
        dy = torch.randn_like(layer(x))

        def fwd():
            with torch.no_grad():
                layer(x)

        def fb():
            x.grad = None
            for p in layer.parameters():
                p.grad = None
            layer(x).backward(dy)
        out[name] = (_median(fwd), _median(fb))
    return out


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tf_keras
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    out = {}
    for name, cls, kwargs, shape in SHAPES:
        layer = getattr(tf_keras.layers, cls)(**kwargs)
        x = tf.random.normal(shape)
        dy = tf.random.normal(layer(x).shape)
        fwd = tf.function(lambda x: layer(x))

        @tf.function
        def fb(x, dy):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
            return y, tape.gradient(y, [x] + layer.trainable_variables, output_gradients=dy)
        out[name] = (_median(lambda: fwd(x).numpy()),
                     _median(lambda: [t.numpy() for t in tf.nest.flatten(fb(x, dy))]))
    return out


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ("torch", "tf"):
        print("@@" + json.dumps(_torch() if sys.argv[1] == "torch" else _tf()))
        return 0
    results = {}
    for peer in ("torch", "tf"):
        proc = subprocess.run([sys.executable, __file__, peer], capture_output=True, text=True,
                              check=True)
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("@@"))
        results[peer] = json.loads(line[2:])
    sep, tfk = results["torch"], results["tf"]
    print(f"{'shape':18s} {'sepconv fwd':>11s} {'tf-keras':>9s} {'ratio':>6s}   "
          f"{'sepconv fb':>10s} {'tf-keras':>9s} {'ratio':>6s}   (CPU ms, one thread)")
    for name in sep:
        (a, b), (c, d) = sep[name], tfk[name]
        print(f"{name:18s} {a:11.1f} {c:9.1f} {a / c:6.2f}   {b:10.1f} {d:9.1f} {b / d:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
