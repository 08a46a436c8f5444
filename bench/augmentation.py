"""The image augmentation layers' training path (CPU) against tf-keras 2.21.

Each peer runs in its own long-lived worker process: sepconv (``torch.set_num_threads``),
tf-keras (intra- and inter-op threads, the layer called with ``training=True`` inside a
``tf.function``) and, with ``--before SRC``, sepconv from another source tree (e.g. the
version before the speed work).  Two workers per peer: one thread, timed by
``time.process_time`` (the CPU the call consumed, little moved by other processes on a
shared machine), and two threads, timed by the wall clock.  The main process asks the
workers in turn, rotating their order each round, for ``--calls`` timed calls of one
layer on one input shape (after warm-up), so every peer sees the same machine; the figure
is the median over all rounds' calls.  Ratios above 1: sepconv costs more.

    PYTHONPATH=src python bench/augmentation.py                       # ~4 min on 2 cores
    git archive 8e1ea5b src | tar -x -C /tmp/before
    PYTHONPATH=src python bench/augmentation.py --before /tmp/before/src
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

LAYERS = [  # name, args (the same for both Kerases; crop sizes from the input)
    ("RandomRotation", (0.2,)),
    ("RandomTranslation", (0.2, 0.2)),
    ("RandomZoom", (0.2,)),
    ("RandomFlip", ()),
    ("RandomCrop", "7/8"),
    ("RandomContrast", (0.3,)),
    ("RandomBrightness", (0.3,)),
]
SHAPES = {"32x224x224x3": (32, 224, 224, 3), "8x64x64x3": (8, 64, 64, 3)}


def _args(name, args, shape):
    return (shape[1] * 7 // 8, shape[2] * 7 // 8) if args == "7/8" else args


def _worker(peer: str, threads: int, src: str) -> None:
    """Serve requests ``layer shape calls`` on stdin: time that many calls after 2 warm-up
    calls, answer ``@@[seconds, ...]``."""
    import numpy as np
    clock = time.process_time if threads == 1 else time.perf_counter
    if peer == "tf":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf
        import tf_keras
        tf.get_logger().setLevel("ERROR")  # one tf.function per layer: no retracing notes
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    else:
        if src:
            sys.path.insert(0, src)
        import torch
        import sepconv
        torch.set_num_threads(threads)
    calls = {}
    print("@@ready", flush=True)
    for line in sys.stdin:
        name, shape_name, n = line.split()
        shape = SHAPES[shape_name]
        key = (name, shape_name)
        if key not in calls:
            args = _args(name, dict(LAYERS)[name], shape)
            x = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
            if peer == "tf":
                layer = getattr(tf_keras.layers, name)(*args, seed=1)
                fn = tf.function(lambda t, layer=layer: layer(t, training=True))
                xt = tf.constant(x)
                calls[key] = lambda fn=fn, xt=xt: fn(xt).numpy()
            else:
                layer = getattr(sepconv, name)(*args, seed=1).train()
                xt = torch.from_numpy(x)
                calls[key] = lambda layer=layer, xt=xt: layer(xt)
            for _ in range(2):
                calls[key]()
        times = []
        for _ in range(int(n)):
            t0 = clock()
            calls[key]()
            times.append(clock() - t0)
        print("@@" + json.dumps(times), flush=True)


class _Peer:
    def __init__(self, peer: str, threads: int, src: str = ""):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", peer, str(threads), src],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        self._answer()

    def _answer(self) -> str:
        for line in self.proc.stdout:
            if line.startswith("@@"):
                return line[2:]
        raise RuntimeError("benchmark worker died")

    def time(self, name: str, shape: str, calls: int) -> list:
        self.proc.stdin.write(f"{name} {shape} {calls}\n")
        self.proc.stdin.flush()
        return json.loads(self._answer())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--before", default="", help="another sepconv source tree (its src)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--layers", default=",".join(n for n, _ in LAYERS))
    parser.add_argument("--json", default="", help="write the raw times here")
    args = parser.parse_args()
    peers = ["sepconv", "tf-keras"] + (["before"] if args.before else [])
    layers = args.layers.split(",")
    results = {}
    for threads in (int(t) for t in args.threads.split(",")):
        workers = {"sepconv": _Peer("torch", threads), "tf-keras": _Peer("tf", threads)}
        if args.before:
            workers["before"] = _Peer("torch", threads, os.path.abspath(args.before))
        times = {}
        for r in range(args.rounds):
            order = peers[r % len(peers):] + peers[:r % len(peers)]
            for shape in SHAPES:
                for name in layers:
                    for peer in order:
                        times.setdefault((shape, name, peer), []).extend(
                            workers[peer].time(name, shape, args.calls))
        for w in workers.values():
            w.close()
        results[threads] = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        what = "CPU ms (process_time), one thread" if threads == 1 else \
            f"wall ms, {threads} threads"
        print(f"\n{what}; medians of {args.rounds} rounds x {args.calls} calls")
        print(f"{'shape':13s} {'layer':18s} " + " ".join(f"{p:>9s}" for p in peers)
              + "  sepconv/tf-keras" + ("  before/sepconv" if args.before else ""))
        for shape in SHAPES:
            for name in layers:
                row = [results[threads][(shape, name, p)] for p in peers]
                line = f"{shape:13s} {name:18s} " + " ".join(f"{v:9.2f}" for v in row)
                line += f"  {row[0] / row[1]:16.2f}"
                if args.before:
                    line += f"  {row[2] / row[0]:15.2f}"
                print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({str(t): {"|".join(k): v for k, v in res.items()}
                       for t, res in results.items()}, f, indent=1)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "")
        sys.exit(0)
    sys.exit(main())
