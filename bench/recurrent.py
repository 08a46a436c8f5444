"""LSTM / GRU / SimpleRNN: sepconv against torch.nn's modules and tf-keras 2.21, CPU float32.

Each layer ``(batch, time, features) -> units``, ``return_sequences=True``: forward
(no_grad) and forward+backward (gradients of the input and all weights), medians of
``--reps`` calls after warm-up.  tf-keras runs in a child process (its thread pools and
torch's never share the cores at once), inside ``tf.function``; skipped if TensorFlow is
missing.  ``--padded``: a right-padded timestep mask (lengths drawn in [T/2, T]) for the
sepconv layers.

Usage: ``PYTHONPATH=src python bench/recurrent.py [--threads 2] [--reps 10] [--padded]``
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SHAPE = dict(batch=32, time=100, features=64, units=128)
KINDS = ("LSTM", "GRU", "SimpleRNN")


def _median_ms(fn, reps):
    for _ in range(2):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def torch_rows(threads, reps, padded):
    import torch
    import sepconv
    torch.set_num_threads(threads)
    b, t, c, u = (SHAPE[k] for k in ("batch", "time", "features", "units"))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, t, c, generator=g)
    mask = None
    if padded:
        lengths = torch.randint(t // 2, t + 1, (b,), generator=g)
        mask = torch.arange(t)[None, :] < lengths[:, None]
    rows = {}
    for kind in KINDS:
        ours = getattr(sepconv, kind)(u, return_sequences=True)
        theirs = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU,
                  "SimpleRNN": torch.nn.RNN}[kind](c, u, batch_first=True)
        xs = x.clone().requires_grad_()
        dy = torch.randn(b, t, u, generator=g)
        ours(xs)

        def fwd():
            with torch.no_grad():
                ours(x, mask=mask)

        def fb():
            xs.grad = None
            for p in ours.parameters():
                p.grad = None
            ours(xs, mask=mask).backward(dy)

        def tfwd():
            with torch.no_grad():
                theirs(x)

        def tfb():
            xs.grad = None
            theirs.zero_grad(set_to_none=True)
            theirs(xs)[0].backward(dy)

        rows[kind] = {"sepconv": (_median_ms(fwd, reps), _median_ms(fb, reps)),
                      "torch.nn" + (" (unpadded)" if padded else ""):
                          (_median_ms(tfwd, reps), _median_ms(tfb, reps))}
    return rows


def tf_rows(threads, reps):
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import tf_keras
    b, t, c, u = (SHAPE[k] for k in ("batch", "time", "features", "units"))
    x = tf.random.normal((b, t, c), seed=0)
    rows = {}
    for kind in KINDS:
        layer = getattr(tf_keras.layers, kind)(u, return_sequences=True)
        dy = tf.random.normal(layer(x).shape, seed=1)

        @tf.function
        def fwd():
            return layer(x)

        @tf.function
        def fb():
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
            return y, tape.gradient(y, [x] + layer.trainable_variables, output_gradients=dy)

        def run(f):
            return lambda: [v.numpy() for v in tf.nest.flatten(f())][:1]

        rows[kind] = {"tf-keras": (_median_ms(run(fwd), reps), _median_ms(run(fb), reps))}
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--padded", action="store_true")
    ap.add_argument("--tf-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tf_child:
        print(json.dumps(tf_rows(args.threads, args.reps)))
        return
    rows = torch_rows(args.threads, args.reps, args.padded)
    try:
        import importlib.util
        if importlib.util.find_spec("tf_keras") is not None and not args.padded:
            out = subprocess.run([sys.executable, __file__, "--tf-child", "--threads",
                                  str(args.threads), "--reps", str(args.reps)],
                                 capture_output=True, text=True, check=True,
                                 env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            for kind, r in json.loads(out.stdout.strip().splitlines()[-1]).items():
                rows[kind].update(r)
    except (subprocess.CalledProcessError, ValueError) as e:
        print(f"tf-keras: skipped ({e})", file=sys.stderr)
    print(f"{SHAPE['batch']} x {SHAPE['time']} x {SHAPE['features']} -> {SHAPE['units']} "
          f"units, return_sequences, float32, {args.threads} threads"
          f"{', right-padded mask' if args.padded else ''}; ms forward / forward+backward")
    for kind, r in rows.items():
        print(f"{kind:10s}", " | ".join(f"{peer} {f:.1f} / {b:.1f}" for peer, (f, b)
                                        in r.items()))


if __name__ == "__main__":
    main()
