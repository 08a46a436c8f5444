"""Eager inference latency, one request at a time: sepconv against tf-keras on the same file.

A user who ports a Keras model serves it by calling ``model(x)`` eagerly on small batches
(1-32).  For each model of ``bench/model_train.py`` this script builds the network in
tf-keras 2.21, saves it as ``.h5``, loads that file with ``sepconv.load_keras_model`` and
times one forward pass at each batch size:

- **tf-keras**: ``tf.function`` of ``model(x, training=False)`` (traced once per shape:
  tf-keras' fastest eager-call path);
- **sepconv**: ``model(x)`` under ``torch.inference_mode()`` (the model in eval mode).

Both on one thread (``torch.set_num_threads(1)``; TensorFlow's intra- and inter-op pools
of one), CPU time (``time.process_time``); each peer in its own process, the processes
taking turns (A B, B A, ...) for ``--rounds`` rounds of ``--calls`` calls; the figure is
the median over rounds of each round's median call.  The outputs of the first batch are
compared (tf-keras against sepconv: float32 rounding; ``--baseline`` against this
checkout: printed as the largest difference, 0 when bit-identical).

    python bench/eval_latency.py                          # every model, ~3 min
    python bench/eval_latency.py --only kws_matchbox --batch 1,32
    python bench/eval_latency.py --baseline /work/main/src   # before / after, same rounds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model_train  # noqa: E402  (the models, their data, the CPU flags)

#: the models of the survey and their small request batches
DEFAULT_BATCHES = {"main_job": (1, 16), "kws_matchbox": (1, 32), "text_cnn": (1, 32),
                   "eegnet": (1, 32), "wavenet_stack": (1, 4)}


def _inputs(name, batches):
    """One fixed numpy input per batch size (the model's own sample shape)."""
    import numpy as np
    _, shape, vocab, _ = model_train.MODELS[name]
    rng = np.random.default_rng(0)
    out = {}
    for b in batches:
        dims = (b,) + tuple(shape[1:])
        out[b] = rng.integers(1, vocab, size=dims).astype("int32") if vocab else \
            rng.standard_normal(dims).astype("float32")
    return out


def _reply(obj):
    sys.stdout.write("@@" + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _tf_worker(name, batches, path):
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import tf_keras
    tf_keras.utils.set_random_seed(0)
    model = model_train.build_tf_model(name, tf_keras)
    import logging
    tf.get_logger().setLevel(logging.ERROR)
    model.save(path)
    data = {b: tf.constant(x) for b, x in _inputs(name, batches).items()}
    predict = tf.function(lambda x: model(x, training=False))
    first = predict(data[batches[0]]).numpy()
    _reply({"first": first.tolist()})
    _serve(lambda b: predict(data[b]).numpy(), batches)


def _sepconv_worker(name, batches, path):
    import torch
    import sepconv
    torch.set_num_threads(1)
    model = sepconv.load_keras_model(path).eval()
    data = {b: torch.from_numpy(x) for b, x in _inputs(name, batches).items()}

    def predict(b):
        with torch.inference_mode():
            return model(data[b])

    _reply({"first": predict(batches[0]).tolist()})
    _serve(predict, batches)


def _serve(predict, batches):
    for b in batches:  # warm-up
        for _ in range(5):
            predict(b)
    for line in sys.stdin:
        b, n = (int(v) for v in line.split())
        times = []
        for _ in range(n):
            t0 = time.process_time()
            predict(b)
            times.append(time.process_time() - t0)
        _reply({"median": statistics.median(times)})


class _Peer(model_train.Worker):
    def __init__(self, peer, name, batches, path, src=None):
        super().__init__([__file__, "--worker", peer, "--only", name, "--batch",
                          ",".join(map(str, batches)), "--path", path], src,
                         {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"})

    def time(self, batch, calls):
        return self.ask(f"{batch} {calls}")["median"]


def _max_diff(a, b):
    import numpy as np
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma-separated model names "
                    f"(default: {','.join(DEFAULT_BATCHES)})")
    ap.add_argument("--batch", default="", help="comma-separated batch sizes (default: 1 "
                    "and the model's small batch)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--baseline", default="", help="a third peer: sepconv from this src "
                    "directory (e.g. /work/main/src), alternated with the others")
    ap.add_argument("--json", default="", help="write the results here")
    ap.add_argument("--worker", choices=("tf", "sepconv"), help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(DEFAULT_BATCHES)
    chosen = tuple(int(b) for b in args.batch.split(",") if b)
    if args.worker:
        (_tf_worker if args.worker == "tf" else _sepconv_worker)(names[0], chosen, args.path)
        return 0
    print(f"machine: {os.cpu_count()} cpus ({model_train._cpu_flags()}); load average "
          f"{os.getloadavg()[0]:.2f}; CPU ms per call, one thread; medians of {args.rounds} "
          f"rounds x {args.calls} calls")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            batches = chosen or DEFAULT_BATCHES.get(name, (1, model_train.MODELS[name][1][0]))
            path = os.path.join(tmp, f"{name}.h5")
            peers = [("tf-keras", _Peer("tf", name, batches, path)),
                     ("sepconv", _Peer("sepconv", name, batches, path))]
            if args.baseline:
                peers.append(("base", _Peer("sepconv", name, batches, path,
                                            src=args.baseline)))
            hello = {label: peer.hello["first"] for label, peer in peers}
            agree = _max_diff(hello["tf-keras"], hello["sepconv"])
            same = _max_diff(hello["base"], hello["sepconv"]) if args.baseline else None
            for b in batches:
                times = {label: [] for label, _ in peers}
                for r in range(args.rounds):
                    for label, peer in peers[r % len(peers):] + peers[:r % len(peers)]:
                        times[label].append(peer.time(b, args.calls) * 1e3)
                med = {label: statistics.median(v) for label, v in times.items()}
                row = {"batch": b, **{f"{k}_ms": v for k, v in med.items()},
                       "ratio": med["sepconv"] / med["tf-keras"]}
                line = (f"{name:14s} b{b:<3d} sepconv {med['sepconv']:7.3f}  tf-keras "
                        f"{med['tf-keras']:7.3f}  sepconv/tf-keras {row['ratio']:5.2f}")
                if args.baseline:
                    row.update(base_ratio=med["base"] / med["tf-keras"],
                               this_over_base=med["sepconv"] / med["base"])
                    line += (f"  | base {med['base']:7.3f}  base/tf-keras "
                             f"{row['base_ratio']:5.2f}  sepconv/base {row['this_over_base']:5.2f}")
                print(line, flush=True)
                results[f"{name} b{b}"] = row
            print(f"{'':14s} outputs (batch {batches[0]}): |tf-keras - sepconv| <= {agree:.1e}"
                  + ("" if same is None else f", |base - sepconv| <= {same:.1e}"), flush=True)
            for _, peer in peers:
                peer.close()
    print(f"load average now {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
