"""One-thread CPU cost of TensorFlow's numbers for swish, elu, selu, exponential, softplus,
mish (the C routine of kernels/_activation_native.py) against torch's own functions
(``kernels.activation.ENABLED = False``: what sepconv computed before), alone and inside a
layer, forward and forward + backward.  A/B alternated in one process, medians of
``time.process_time``.

    PYTHONPATH=src python bench/activation_exact_ab.py [--reps 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import sepconv
from sepconv.kernels import activation as kernel

NAMES = ["swish", "elu", "selu", "exponential", "softplus", "mish", "softsign",
         "attention"]


def _timer(fn, inner):
    def run():
        t = time.process_time()
        for _ in range(inner):
            fn()
        return (time.process_time() - t) / inner
    return run


def attention_cases():
    q = torch.randn(8, 64, 32, requires_grad=True)
    v = torch.randn(8, 64, 32, requires_grad=True)
    out = {}
    for label, layer in (("AdditiveAttention (8,64,32)^2 fwd+bwd", sepconv.AdditiveAttention()),
                         ("Attention(concat) (8,64,32)^2 fwd+bwd",
                          sepconv.Attention(score_mode="concat"))):
        layer([q, v])

        def go(layer=layer):
            layer([q, v]).sum().backward()
        out[label] = (go, 3)
    return out


def cases(name):
    if name == "attention":
        return attention_cases()
    x = torch.randn(512 * 1024)
    xg = x.clone().requires_grad_(True)
    act = sepconv.activations.get(name)
    dense = sepconv.Dense(256, activation=name)
    xd = torch.randn(512, 256, requires_grad=True)
    dense(xd)
    conv = sepconv.Conv2D(32, 3, padding="same", activation=name)
    xc = torch.randn(8, 32, 32, 16, requires_grad=True)
    conv(xc)

    def fwd_bwd(module, inp):
        def go():
            module(inp).sum().backward()
        return go

    def fwd(module, inp):
        def go():
            with torch.no_grad():
                module(inp)
        return go

    return {
        "alone 512k fwd": (fwd(act, x), 10),
        "alone 512k fwd+bwd": (fwd_bwd(act, xg), 5),
        "Dense(256) on (512,256) fwd+bwd": (fwd_bwd(dense, xd), 5),
        "Conv2D(32,3) on (8,32,32,16) fwd+bwd": (fwd_bwd(conv, xc), 3),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("names", nargs="*", default=NAMES)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("one thread, process_time medians (ms), TensorFlow's numbers vs torch's")
    for name in args.names:
        for what, (fn, inner) in cases(name).items():
            run = _timer(fn, inner)
            times = {True: [], False: []}
            for flag in (True, False):  # warm up
                kernel.ENABLED = flag
                run()
            for _ in range(args.reps):
                for flag in (True, False):
                    kernel.ENABLED = flag
                    times[flag].append(run())
            kernel.ENABLED = True
            tf_ms = statistics.median(times[True]) * 1e3
            torch_ms = statistics.median(times[False]) * 1e3
            print(f"{name:12s} {what:40s} TF {tf_ms:8.3f}  torch {torch_ms:8.3f}  "
                  f"ratio {tf_ms / torch_ms:5.2f}", flush=True)


if __name__ == "__main__":
    main()
