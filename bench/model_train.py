"""Whole models' training steps: sepconv against tf-keras on the same model file.

A user porting from R / tf-keras trains the same network; what matters to them is the cost
of a whole training step (forward, loss, backward, optimizer), not of one layer.  For each
model below this script builds the network in tf-keras 2.21, saves it as ``.h5``, loads that
file with ``sepconv.load_keras_model`` (so both start from the same weights), and runs the
same Adam training step on the same batches in both:

- **tf-keras**: ``tf.GradientTape`` + ``optimizer.apply_gradients`` inside one
  ``tf.function`` (the fastest tf-keras step; ``model.fit`` adds its own per-step overhead);
- **sepconv**: ``model(x)``, the same loss, ``loss.backward()``, ``torch.optim.Adam`` (the
  same epsilon 1e-7 as Keras), ``zero_grad(set_to_none=True)``.

Each peer runs in its own process (TensorFlow and torch each size their own thread pools)
and the processes take turns (A B, B A, ...) for ``--rounds`` rounds of ``--steps`` steps; the
figure is the median over rounds of each round's mean step.  ``--threads 0`` (the default)
sets nothing: each library's default thread count, the environment users have; ``--threads
1`` pins both to one thread and reports CPU time (``time.process_time``), the measure that
moves least on a shared machine.  Before timing, the first three steps' losses of the two
peers are compared (same weights, same batches, no dropout in these models): they agree to
float32 rounding, which says both train the same network.

    python bench/model_train.py                      # ~3 min on 2 cores
    python bench/model_train.py --threads 1 --only text_cnn,eegnet
    python bench/model_train.py --threads 1 --baseline /work/main/src   # before / after

``--baseline SRC`` adds a third peer, sepconv imported from ``SRC`` (another checkout's
``src``: the code before a change), taking its turns with the other two in the same rounds
(``--steps`` steps each, order rotated every round); it reports ``sepconv/base``, the ratio
of the medians, beside each peer's ratio to tf-keras.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

#: name -> (description, batch input shape, integer inputs' vocabulary or 0, classes)
MODELS = {
    "main_job": ("sepconv's main job: 3 x (SeparableConv1D + BN + ReLU), GAP, Dense "
                 "(GunPoint, batch 16)", (16, 150, 1), 0, 2),
    "kws_matchbox": ("keyword spotting, MatchboxNet-style: Conv1D, 3 x (SeparableConv1D k13-17 "
                     "+ BN + ReLU), 1x1 Conv1D, GAP, Dense (batch 32 x 101 MFCC x 64)",
                     (32, 101, 64), 0, 12),
    "text_cnn": ("text CNN: Embedding(20000, 128), Conv1D(128, 5, relu), GlobalMaxPooling1D, "
                 "Dense (batch 32 x 400 ids)", (32, 400), 20000, 2),
    "eegnet": ("EEGNet: Conv2D (1, 64), BN, DepthwiseConv2D (64, 1) x2, BN, ELU, AvgPool, "
               "SeparableConv2D (1, 16), BN, ELU, AvgPool, Dense (batch 32 x 64 ch x 128)",
               (32, 64, 128, 1), 0, 4),
    "wavenet_stack": ("WaveNet-style stack: causal Conv1D k2, dilations 1-64, 32 ch, residual "
                      "adds, GAP, Dense (batch 4 x 4000 x 1)", (4, 4000, 1), 0, 10),
    "lstm_text": ("Embedding(20000, 64), LSTM(64), Dense (batch 32 x 100 ids)",
                  (32, 100), 20000, 2),
    "tcn": ("TCN (Bai et al.) for sensor series: 1x1 Conv1D, 4 residual blocks of 2 x (causal "
            "Conv1D k3, dilations 1-8, 64 ch, ReLU, LayerNormalization), GAP, Dense "
            "(batch 8 x 2000 x 8)", (8, 2000, 8), 0, 6),
}


def build_tf_model(name, tf_keras):
    """The tf-keras model ``name`` (softmax outputs)."""
    L = tf_keras.layers
    _, shape, vocab, classes = MODELS[name]
    inp = L.Input(shape[1:], dtype="int32" if vocab else "float32")
    if name == "main_job":
        x = inp
        for filters, k in ((32, 8), (64, 5), (32, 3)):
            x = L.SeparableConv1D(filters, k, padding="same")(x)
            x = L.BatchNormalization()(x)
            x = L.ReLU()(x)
        x = L.GlobalAveragePooling1D()(x)
    elif name == "kws_matchbox":
        x = L.Conv1D(128, 11, strides=2, padding="same")(inp)
        x = L.ReLU()(L.BatchNormalization()(x))
        for k in (13, 15, 17):
            x = L.SeparableConv1D(64, k, padding="same")(x)
            x = L.ReLU()(L.BatchNormalization()(x))
        x = L.Conv1D(128, 1)(x)
        x = L.GlobalAveragePooling1D()(x)
    elif name == "text_cnn":
        x = L.Embedding(vocab, 128)(inp)
        x = L.Conv1D(128, 5, activation="relu")(x)
        x = L.GlobalMaxPooling1D()(x)
    elif name == "eegnet":
        x = L.Conv2D(8, (1, 64), padding="same", use_bias=False)(inp)
        x = L.BatchNormalization()(x)
        x = L.DepthwiseConv2D((64, 1), depth_multiplier=2, use_bias=False)(x)
        x = L.Activation("elu")(L.BatchNormalization()(x))
        x = L.AveragePooling2D((1, 4))(x)
        x = L.SeparableConv2D(16, (1, 16), padding="same", use_bias=False)(x)
        x = L.Activation("elu")(L.BatchNormalization()(x))
        x = L.AveragePooling2D((1, 8))(x)
        x = L.Flatten()(x)
    elif name == "wavenet_stack":
        x = L.Conv1D(32, 1)(inp)
        for d in (1, 2, 4, 8, 16, 32, 64):
            y = L.Conv1D(32, 2, padding="causal", dilation_rate=d, activation="tanh")(x)
            x = L.Add()([x, L.Conv1D(32, 1)(y)])
        x = L.GlobalAveragePooling1D()(x)
    elif name == "tcn":
        x = L.Conv1D(64, 1)(inp)
        for d in (1, 2, 4, 8):
            y = x
            for _ in range(2):
                y = L.Conv1D(64, 3, padding="causal", dilation_rate=d, activation="relu")(y)
                y = L.LayerNormalization()(y)
            x = L.Add()([x, y])
        x = L.GlobalAveragePooling1D()(x)
    elif name == "lstm_text":
        x = L.Embedding(vocab, 64)(inp)
        x = L.LSTM(64)(x)
    else:
        raise KeyError(name)
    out = L.Dense(classes, activation="softmax")(x)
    return tf_keras.Model(inp, out)


def batches(name, count=4, seed=0):
    """``count`` fixed (x, labels) numpy batches for ``name``."""
    import numpy as np
    _, shape, vocab, classes = MODELS[name]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        x = rng.integers(1, vocab, size=shape).astype("int32") if vocab else \
            rng.standard_normal(shape).astype("float32")
        out.append((x, rng.integers(0, classes, size=shape[0]).astype("int64")))
    return out


def _reply(obj):
    sys.stdout.write("@@" + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _clock(threads):
    return time.process_time if threads == 1 else time.perf_counter


def _tf_worker(name, threads, path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    import tf_keras
    tf_keras.utils.set_random_seed(0)
    model = build_tf_model(name, tf_keras)
    model.save(path)
    opt = tf_keras.optimizers.Adam(1e-3)
    data = [(tf.constant(x), tf.constant(y)) for x, y in batches(name)]

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            loss = tf.reduce_mean(tf_keras.losses.sparse_categorical_crossentropy(y, p))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                model.trainable_variables))
        return loss

    losses = [float(step(*data[i])) for i in range(3)]
    _reply({"ok": True, "losses": losses, "params": int(model.count_params())})
    _serve(lambda i: step(*data[i % len(data)]).numpy(), threads)


def _sepconv_worker(name, threads, path):
    import torch
    import sepconv
    if threads:
        torch.set_num_threads(threads)
    model = sepconv.load_keras_model(path).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    data = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in batches(name)]

    def step(x, y):
        p = model(x)
        loss = torch.nn.functional.nll_loss(torch.log(p.clamp(1e-7, 1 - 1e-7)), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    losses = [float(step(*data[i])) for i in range(3)]
    _reply({"ok": True, "losses": losses,
            "params": sum(p.numel() for p in model.parameters() if p.requires_grad)})
    _serve(lambda i: step(*data[i % len(data)]).item(), threads)


def _serve(step, threads):
    clock = _clock(threads)
    for i in range(3):  # warm-up
        step(i)
    for line in sys.stdin:
        n = int(line)
        times = []
        for i in range(n):
            t0 = clock()
            step(i)
            times.append(clock() - t0)
        _reply({"times": times})


class Worker:
    """A worker process of these benches (this script's, bench/eval_latency.py's): started
    as ``python argv...``, with sepconv from ``src`` first on its path where given (the
    code before a change); it answers each request with one line ``@@<json>``."""

    def __init__(self, argv, src=None, env=None):
        env = {**os.environ, **(env or {})}
        if src:
            env["PYTHONPATH"] = os.pathsep.join(
                [os.path.abspath(src)] + [p for p in os.environ.get("PYTHONPATH", "").split(
                    os.pathsep) if p])
        self.proc = subprocess.Popen([sys.executable] + list(argv), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.hello = self.read()

    def read(self):
        for line in self.proc.stdout:
            if line.startswith("@@"):
                return json.loads(line[2:])
        raise RuntimeError(f"worker ended: exit {self.proc.wait()}")

    def ask(self, request: str):
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


class _Peer(Worker):
    def __init__(self, peer, name, threads, path, src=None):
        super().__init__([__file__, "--worker", peer, "--only", name, "--threads", str(threads),
                          "--path", path], src)

    def time(self, steps):
        return statistics.fmean(self.ask(f"{steps}")["times"])



def _cpu_flags():
    try:
        flags = open("/proc/cpuinfo").read().split("flags")[1].split("\n")[0]
    except (OSError, IndexError):
        return "?"
    keep = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16")
    return ", ".join(f for f in keep if f" {f} " in flags + " ")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma-separated model names")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="0: each library's default")
    ap.add_argument("--json", default="", help="write the results here")
    ap.add_argument("--baseline", default="", help="a third peer: sepconv from this src "
                    "directory (e.g. /work/main/src), alternated with the others")
    ap.add_argument("--worker", choices=("tf", "sepconv"), help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(MODELS)
    if args.worker:
        (_tf_worker if args.worker == "tf" else _sepconv_worker)(names[0], args.threads, args.path)
        return 0
    unit = "CPU ms, one thread" if args.threads == 1 else \
        ("wall ms, default threads" if not args.threads else f"wall ms, {args.threads} threads")
    print(f"machine: {os.cpu_count()} cpus ({_cpu_flags()}); load average "
          f"{os.getloadavg()[0]:.2f}; {unit}; {args.rounds} rounds x {args.steps} steps")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = os.path.join(tmp, f"{name}.h5")
            tf_peer = _Peer("tf", name, args.threads, path)
            sc_peer = _Peer("sepconv", name, args.threads, path)
            peers = [("sepconv", sc_peer), ("tf-keras", tf_peer)]
            if args.baseline:
                peers.append(("base", _Peer("sepconv", name, args.threads, path,
                                            src=args.baseline)))
            agree = max(abs(a - b) / abs(a) for a, b in
                        zip(tf_peer.hello["losses"], sc_peer.hello["losses"]))
            times = {label: [] for label, _ in peers}
            for r in range(args.rounds):
                # A B (C), then B (C) A, ...: each peer in each position as often
                for label, peer in peers[r % len(peers):] + peers[:r % len(peers)]:
                    times[label].append(peer.time(args.steps) * 1e3)
            for _, peer in peers:
                peer.close()
            sc, tk = statistics.median(times["sepconv"]), statistics.median(times["tf-keras"])
            results[name] = {"sepconv_ms": sc, "tf_keras_ms": tk, "ratio": sc / tk,
                             "loss_rel_diff_3_steps": agree,
                             "params": sc_peer.hello["params"], "times": times}
            line = (f"{name:14s} sepconv {sc:8.2f}  tf-keras {tk:8.2f}  sepconv/tf-keras "
                    f"{sc / tk:5.2f}   first 3 losses agree to {agree:.1e}  "
                    f"({sc_peer.hello['params']} parameters)")
            if args.baseline:
                base = statistics.median(times["base"])
                results[name].update(base_ms=base, base_ratio=base / tk)
                line += f"\n{'':14s} base    {base:8.2f}  base/tf-keras {base / tk:5.2f}  " \
                        f"sepconv/base {sc / base:5.2f}"
            print(line, flush=True)
    ratios = [r["ratio"] for r in results.values()]
    geo = statistics.geometric_mean(ratios)
    print(f"geomean sepconv/tf-keras {geo:.2f}; load average now {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"unit": unit, "results": results, "geomean": geo}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
