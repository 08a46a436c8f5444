"""MultiHeadAttention self-attention: sepconv against torch.nn.MultiheadAttention and
tf-keras 2.21 (inside ``tf.function``), CPU float32, forward (no gradients), in one process
with the implementations alternating call by call (medians of ``--reps`` rounds).

Shapes: ``(batch, steps, features)`` with 4 heads of 32; ``plain`` (no mask: sepconv's
fused route), ``causal`` (``use_causal_mask``: fused too), ``masked`` (an explicit
``attention_mask``: the explicit route, tf-keras' -1e9 formula).  torch.nn's module gets
the same causal mask as a float mask where it applies.  Prints the CPU's vector extensions
with the table.

Usage: ``PYTHONPATH=src python bench/attention.py [--threads N] [--reps 15]``
(default: torch's own thread count, the user's environment).
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHAPES = [(16, 256, 128), (4, 1024, 128)]
HEADS, KEY_DIM = 4, 32


def _cpu_flags() -> str:
    try:
        flags = open("/proc/cpuinfo").read().split("flags")[1].split("\n")[0].split()
    except (OSError, IndexError):
        return "?"
    return " ".join(sorted(f for f in flags if f.startswith(("avx", "fma"))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    import numpy as np
    import torch
    import sepconv
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        import tensorflow as tf
        import tf_keras
    except ImportError:
        tf = tf_keras = None
    print(f"CPU vector extensions: {_cpu_flags()}; torch threads {torch.get_num_threads()}")
    print(f"{'shape':>16} {'case':>7} {'sepconv':>9} {'torch.nn':>9} {'tf-keras':>9}  ms")
    for b, t, d in SHAPES:
        x = np.random.default_rng(0).standard_normal((b, t, d)).astype(np.float32)
        xt = torch.from_numpy(x)
        mask = np.tril(np.ones((t, t), bool))[None].repeat(b, 0)
        mask[:, :, : t // 8] = True  # not causal, not triangular
        ours = sepconv.MultiHeadAttention(HEADS, KEY_DIM)
        ours.build([(None, t, d)] * 2)
        ours.eval()
        module = torch.nn.MultiheadAttention(d, HEADS, batch_first=True).eval()
        causal_float = torch.nn.Transformer.generate_square_subsequent_mask(t)
        ref = None
        if tf_keras is not None:
            ref = tf_keras.layers.MultiHeadAttention(HEADS, KEY_DIM)
            ref(x[:1], x[:1])
            ref.set_weights(ours.get_weights())
            xtf, mtf = tf.constant(x), tf.constant(mask)
            tf_plain = tf.function(lambda a: ref(a, a))
            tf_causal = tf.function(lambda a: ref(a, a, use_causal_mask=True))
            tf_masked = tf.function(lambda a, m: ref(a, a, attention_mask=m))
        mt = torch.from_numpy(mask)
        cases = {
            "plain": (lambda: ours(xt, xt), lambda: module(xt, xt, xt, need_weights=False),
                      (lambda: tf_plain(xtf).numpy()) if ref else None),
            "causal": (lambda: ours(xt, xt, use_causal_mask=True),
                       lambda: module(xt, xt, xt, need_weights=False,
                                      attn_mask=causal_float, is_causal=True),
                       (lambda: tf_causal(xtf).numpy()) if ref else None),
            "masked": (lambda: ours(xt, xt, attention_mask=mt), None,
                       (lambda: tf_masked(xtf, mtf).numpy()) if ref else None),
        }
        with torch.no_grad():
            for case, fns in cases.items():
                fns = [f for f in fns if f is not None]
                for f in fns:
                    f()
                    f()
                times = [[] for _ in fns]
                for _ in range(args.reps):
                    for i, f in enumerate(fns):
                        t0 = time.perf_counter()
                        f()
                        times[i].append(1e3 * (time.perf_counter() - t0))
                med = [statistics.median(v) for v in times]
                row = dict(zip(("sepconv", "torch.nn", "tf-keras"),
                               med if len(med) == 3 else [med[0], None, med[-1]]))
                cells = " ".join(f"{row[k]:9.2f}" if row[k] is not None else f"{'-':>9}"
                                 for k in ("sepconv", "torch.nn", "tf-keras"))
                print(f"{str((b, t, d)):>16} {case:>7} {cells}")


if __name__ == "__main__":
    main()
