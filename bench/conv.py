"""Conv1D / Conv2DTranspose / Conv3D against the plain torch module and tf-keras, CPU float32.

``python bench/conv.py [--rounds 8] [--reps 2] [--threads 2] [--no-tf] [--out FILE.json]``

For each shape (real model layers): **sepconv** is the layer (``sepconv.Conv1D`` ...) on
channels_last input, Keras' layout; **torch** is the ``nn.Conv1d`` / ``nn.ConvTranspose2d``
/ ``nn.Conv3d`` doing the same work on the same channels_last data (``permute`` in and out,
explicit ``F.pad`` for causal padding, ``padding`` / ``output_padding`` for TensorFlow's
"same"); **torch NC** is that module on channels_first data, no layout change at all;
**tf-keras** is the tf-keras layer (channels_last, ``tf.function``) in its own process
(TensorFlow's and torch's thread pools must not share the cores), same thread count.
Modes: ``fwd`` (``no_grad``) and ``fb`` (forward + gradients of the input and all
weights).  Implementations alternate within each round (order rotating); the figure is the
median of ``rounds x reps`` timed calls after two warm-up calls.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def tf_worker(threads: int) -> None:
    """``--tf-worker``: answer JSON lines on stdin (setup / time / quit) with ``@@`` lines;
    imports TensorFlow only, never torch."""
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import tf_keras

    def reply(obj):
        sys.stdout.write("@@" + json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply({"version": f"tf {tf.__version__}"})
    fns = {}
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["op"] == "quit":
            break
        if msg["op"] == "setup":
            layer = getattr(tf_keras.layers, msg["cls"])(**msg["kwargs"])
            x = tf.constant(np.random.default_rng(0).standard_normal(msg["shape"]), tf.float32)
            y = layer(x)
            dy = tf.ones_like(y)

            @tf.function
            def fwd(x):
                return layer(x, training=False)

            @tf.function
            def fb(x, dy):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = layer(x, training=True)
                return tape.gradient(y, [x] + layer.trainable_variables, output_gradients=dy)

            fns = {"fwd": lambda: fwd(x), "fb": lambda: fb(x, dy)}
            for f in fns.values():
                f()
                f()
            reply({"ok": True})
        else:
            times = []
            for _ in range(msg["reps"]):
                t0 = time.perf_counter()
                out = fns[msg["mode"]]()
                _ = [o.numpy().shape for o in (out if isinstance(out, list) else [out])][:1]
                times.append(time.perf_counter() - t0)
            reply({"times": times})


if __name__ == "__main__" and sys.argv[1:2] == ["--tf-worker"]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf_worker(int(sys.argv[2]))
    sys.exit(0)

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import sepconv  # noqa: E402

# name, source, layer class, layer kwargs, channels_last input shape
SHAPES = [
    ("wavenet_causal_d8", "WaveNet residual block: causal k2 dilation 8, 64 ch, 1 s at 16 kHz",
     sepconv.Conv1D, dict(filters=128, kernel_size=2, padding="causal", dilation_rate=8),
     (4, 16000, 64)),
    ("wavenet_causal_d512", "WaveNet, last dilation of a stack (512), 64 ch",
     sepconv.Conv1D, dict(filters=128, kernel_size=2, padding="causal", dilation_rate=512),
     (4, 16000, 64)),
    ("unet_up_64", "U-Net up-convolution 2x2 stride 2, 128 -> 64 ch, 64x64 -> 128x128",
     sepconv.Conv2DTranspose, dict(filters=64, kernel_size=2, strides=2), (4, 64, 64, 128)),
    ("unet_up_k3_same", "decoder up-conv 3x3 stride 2 same (odd padding), 64 -> 32 ch",
     sepconv.Conv2DTranspose, dict(filters=32, kernel_size=3, strides=2, padding="same"),
     (4, 64, 64, 64)),
    ("medical_conv3d", "3D U-Net encoder conv 3x3x3 same, 32 -> 32 ch, 32^3 patch",
     sepconv.Conv3D, dict(filters=32, kernel_size=3, padding="same"), (2, 32, 32, 32, 32)),
    ("medical_conv3d_s2", "3D down-conv 3x3x3 stride 2 same (odd padding), 32 -> 64 ch",
     sepconv.Conv3D, dict(filters=64, kernel_size=3, strides=2, padding="same"),
     (2, 32, 32, 32, 32)),
]


def torch_peer(layer, spatial):
    """The plain torch module computing ``layer`` (weights copied) on inputs of
    ``spatial`` shape, and its calls on channels_last and on channels_first input."""
    rank, k = layer.RANK, layer.kernel
    w = k.detach().permute(rank + 1, rank, *range(rank))
    pads = None
    if layer.TRANSPOSE:
        cls = (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d,
               torch.nn.ConvTranspose3d)[rank - 1]
        # TensorFlow's "same" with stride s crops max(K - s, 0) from torch's full output,
        # the smaller half before: torch's padding crops that half on both sides, and an
        # odd total needs one more step cropped after (torch has no negative
        # output_padding).
        total = [max(kk - s, 0) if layer.padding == "same" else 0
                 for kk, s in zip(layer.kernel_size, layer.strides)]
        module = cls(layer.input_channels, layer.filters, layer.kernel_size, layer.strides,
                     padding=tuple(t // 2 for t in total), dilation=layer.dilation_rate)
        crop = [t % 2 for t in total]
    else:
        cls = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)[rank - 1]
        if layer.padding == "causal":
            pads = ((layer.kernel_size[0] - 1) * layer.dilation_rate[0], 0)
            padding = 0
        elif layer.padding == "same" and max(layer.strides) == 1:
            padding = "same"
        elif layer.padding == "same":
            amounts = sepconv.padding.padding_amounts_nd(
                spatial, layer.kernel_size, layer.strides, layer.dilation_rate, "same")
            pads = tuple(p for pair in reversed(amounts) for p in pair)
            padding = 0
        else:
            padding = 0
        module = cls(layer.input_channels, layer.filters, layer.kernel_size, layer.strides,
                     padding=padding, dilation=layer.dilation_rate, groups=layer.groups)
        crop = None
    with torch.no_grad():
        module.weight.copy_(w)
        module.bias.copy_(layer.bias.detach())

    def call_first(x):
        if pads is not None:
            x = F.pad(x, pads)
        y = module(x)
        if crop and any(crop):
            y = y[(slice(None), slice(None)) + tuple(slice(0, n - c) for n, c
                                                     in zip(y.shape[2:], crop))]
        return y

    def call_last(x):
        return call_first(x.movedim(-1, 1)).movedim(1, -1)

    return module, call_last, call_first


class TfPeer:
    """The tf-keras worker process, driven from the benchmark process."""

    def __init__(self, threads: int):
        env = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(threads),
                   TF_NUM_INTEROP_THREADS=str(threads))
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--tf-worker",
                                      str(threads)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.version = self._read()["version"]

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("@@"):
                return json.loads(line[2:])
        raise RuntimeError("the tf-keras worker stopped")

    def ask(self, **msg):
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def bench_shape(name, cls, kwargs, shape, rounds, reps, tf_peer=None):
    torch.manual_seed(0)
    layer = cls(**kwargs, input_shape=(None,) * (len(shape) - 2) + (shape[-1],))
    x_last = torch.randn(shape)
    x_first = x_last.movedim(-1, 1).contiguous()
    module, call_last, call_first = torch_peer(layer, shape[1:-1])
    with torch.no_grad():  # the same numbers, or the comparison means nothing
        ref = call_last(x_last)
        torch.testing.assert_close(layer(x_last), ref, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(call_first(x_first).movedim(1, -1), ref, atol=1e-3,
                                   rtol=1e-4)
    impls = {"sepconv": (layer, x_last, list(layer.parameters())),
             "torch": (call_last, x_last, list(module.parameters())),
             "torch NC": (call_first, x_first, list(module.parameters()))}
    if tf_peer is not None:
        tf_peer.ask(op="setup", cls=cls.__name__, kwargs=kwargs, shape=list(shape))
    result = {}
    for mode in ("fwd", "fb"):
        fns = {}
        for impl, (fn, x, params) in impls.items():
            if mode == "fwd":
                def run(fn=fn, x=x):
                    with torch.no_grad():
                        fn(x)
            else:
                xg = x.clone().requires_grad_(True)

                def run(fn=fn, x=xg, params=params):
                    y = fn(x)
                    torch.autograd.grad(y.sum(), [x] + params)
            fns[impl] = run
        times = {impl: [] for impl in fns}
        for fn in fns.values():
            fn()
            fn()
        order = list(fns) + (["tf-keras"] if tf_peer is not None else [])
        times.update({"tf-keras": []} if tf_peer is not None else {})
        for r in range(rounds):
            for impl in order[r % len(order):] + order[:r % len(order)]:
                if impl == "tf-keras":
                    times[impl] += tf_peer.ask(op="time", mode=mode, reps=reps)["times"]
                    continue
                for _ in range(reps):
                    t0 = time.perf_counter()
                    fns[impl]()
                    times[impl].append(time.perf_counter() - t0)
        result[mode] = {impl: statistics.median(t) * 1e3 for impl, t in times.items()}
        result[mode + "_samples"] = times
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated shape names")
    parser.add_argument("--out", default="", help="write all samples as JSON here")
    parser.add_argument("--no-tf", action="store_true", help="skip the tf-keras peer")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tf_peer = None if args.no_tf else TfPeer(args.threads)
    only = set(filter(None, args.only.split(",")))
    rows, dump = [], {}
    print(f"torch {torch.__version__}{', ' + tf_peer.version if tf_peer else ''}, "
          f"{args.threads} threads, rounds {args.rounds} x reps {args.reps}, medians in ms")
    print("| shape | mode | sepconv | torch (same layout) | torch NC | tf-keras | /torch | "
          "/torch NC | /tf-keras |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, source, cls, kwargs, shape in SHAPES:
        if only and name not in only:
            continue
        res = bench_shape(name, cls, kwargs, shape, args.rounds, args.reps, tf_peer)
        dump[name] = dict(source=source, shape=shape, kwargs=kwargs, **res)
        for mode in ("fwd", "fb"):
            t = res[mode]
            tfk = t.get("tf-keras")
            ratio_tf = t["sepconv"] / tfk if tfk else None
            row = (f"| {name} | {mode} | {t['sepconv']:.2f} | {t['torch']:.2f} | "
                   f"{t['torch NC']:.2f} | {f'{tfk:.2f}' if tfk else '-'} | "
                   f"{t['sepconv'] / t['torch']:.2f} | {t['sepconv'] / t['torch NC']:.2f} | "
                   f"{f'{ratio_tf:.2f}' if tfk else '-'} |")
            rows.append(row)
            print(row, flush=True)
    if tf_peer is not None:
        tf_peer.close()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dump, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
