"""DepthwiseConv1D / DepthwiseConv2D training on CPU: today's kernel (oneDNN forward, oneDNN's backward through
autograd) against ``kernels/depthwise_train.py`` (the C routines' backward), side by side.

One process; the variants alternate call by call (``depthwise_train.ENABLED`` /
``NATIVE_FORWARD``, the module switches the dispatcher reads): forward (autograd
recording, as in training) and forward+backward of ``sepconv.functional.depthwise_conv``
with input, kernel and bias requiring grad.  Medians of ``--calls`` calls each: one thread
CPU time (``time.process_time``: robust to a loaded machine) and two-thread wall-clock.
The library's thread policy is switched off here (every call on the thread count set), so
each figure is the kernels' own.

Usage: ``PYTHONPATH=src python bench/depthwise_train.py [--calls 9] [--only k9,k31]
[--threads 1]``  (``--only 2d``: the DepthwiseConv2D shapes)
"""

import argparse
import statistics
import time

import torch

from sepconv import functional as F
from sepconv.kernels import depthwise_train, threads

# name, (batch, steps, channels), kernel size, depth multiplier, stride, dilation, padding
SHAPES = [
    ("k9 same", (8, 4000, 128), 9, 1, 1, 1, "same"),
    ("k3 d4 causal", (8, 4000, 128), 3, 1, 1, 4, "causal"),
    ("k5 m2 same", (8, 4000, 64), 5, 2, 1, 1, "same"),
    ("k31 same (Conformer)", (8, 1000, 256), 31, 1, 1, 1, "same"),
    ("k9 s2 same", (8, 4000, 128), 9, 1, 2, 1, "same"),
    # DepthwiseConv2D (kernels more than one row high: the 2D C routines)
    ("2d MobileNet 3x3", (8, 112, 112, 32), (3, 3), 1, 1, 1, "same"),
    ("2d MobileNet 3x3 s2", (8, 56, 56, 128), (3, 3), 1, 2, 1, "same"),
    ("2d MobileNetV3 5x5", (8, 28, 28, 240), (5, 5), 1, 1, 1, "same"),
    ("2d Xception 3x3", (4, 74, 74, 128), (3, 3), 1, 1, 1, "same"),
    ("2d EEGNet (64,1) m2", (16, 64, 128, 8), (64, 1), 2, 1, 1, "valid"),
    ("2d 3x3 d2 same", (4, 64, 64, 128), (3, 3), 1, 1, 2, "same"),
    ("2d 7x7 same", (8, 56, 56, 96), (7, 7), 1, 1, 1, "same"),
]
# ENABLED, NATIVE_FORWARD, TAKES_2D: today's kernel; the new one (its own forward rule and,
# in 2D, its rule for which geometries it takes); the new one with the C forward always;
# with oneDNN's forward always (both taking every 2D geometry)
VARIANTS = {"old": (False, None, None), "new": (True, None, None),
            "C fwd": (True, True, True), "oneDNN fwd": (True, False, True)}


def _switch(variant):
    (depthwise_train.ENABLED, depthwise_train.NATIVE_FORWARD,
     depthwise_train.TAKES_2D) = VARIANTS[variant]


def _calls(shape, k, m, stride, dilation, padding):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).requires_grad_(True)
    ks = k if isinstance(k, tuple) else (k,)
    w = (torch.randn(*ks, shape[-1], m, generator=g) * 0.1).requires_grad_(True)
    b = torch.zeros(shape[-1] * m).requires_grad_(True)

    def fwd():
        return F.depthwise_conv(x, w, b, strides=stride, padding=padding,
                                dilation_rate=dilation)

    def fb():
        y = fwd()
        y.backward(torch.ones_like(y))
        x.grad = w.grad = b.grad = None

    return {"fwd": fwd, "fb": fb}


def _measure(fns, variants, calls, clock):
    times = {(v, p): [] for v in variants for p in fns}
    for r in range(calls):
        order = variants if r % 2 else variants[::-1]
        for v in order:
            _switch(v)
            for p, fn in fns.items():
                t0 = clock()
                fn()
                times[v, p].append(clock() - t0)
    return {key: statistics.median(t) * 1e3 for key, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=9)
    ap.add_argument("--only", default="")
    ap.add_argument("--threads", default="1,2", help="1: one-thread CPU time only")
    args = ap.parse_args()
    threads.THREADS.min_work = float("inf")  # the policy off: the thread count set below
    variants = list(VARIANTS)
    print(f"{'shape':22} {'clock':16} " + " ".join(f"{v + ' ' + p:>16}" for v in variants
                                                   for p in ("fwd", "fwd+bwd"))
          + "   /old: " + ", ".join(f"{v} {p}" for v in variants[1:] for p in ("fwd", "fb")))
    for name, shape, k, m, stride, dilation, padding in SHAPES:
        if args.only and not any(o in name for o in args.only.split(",")):
            continue
        fns = _calls(shape, k, m, stride, dilation, padding)
        for n_threads, clock, label in ((1, time.process_time, "1 thread CPU"),
                                        (2, time.perf_counter, "2 threads wall")):
            if str(n_threads) not in args.threads.split(","):
                continue
            torch.set_num_threads(n_threads)
            for v in variants:  # warm-up: first-call page faults, oneDNN set-up
                _switch(v)
                fns["fb"]()
            med = _measure(fns, variants, args.calls, clock)
            cells = " ".join(f"{med[v, p]:16.2f}" for v in variants for p in ("fwd", "fb"))
            ratio = ", ".join(f"{med[v, p] / med['old', p]:.2f}" for v in variants[1:]
                              for p in ("fwd", "fb"))
            print(f"{name:22} {label:16} {cells}   {ratio}", flush=True)
    _switch("new")


if __name__ == "__main__":
    main()
