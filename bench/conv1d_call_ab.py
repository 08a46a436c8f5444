"""Per-call cost of batch-1 Conv1D inference, two checkouts side by side in ONE process.

Both checkouts' ``sepconv`` are imported into one process (``sys.modules`` swapped between
the imports; each keeps its own module globals), the same layer (same weights) built in
each, and calls of the two alternated block by block (``rounds`` blocks each, order
flipped every round) under ``torch.inference_mode()``, one thread, CPU time
(``time.thread_time``).  On the shared 2-core machine separate worker processes differed by
10-30% from each other at the same code (A/A); here A/A stays within 0.5%, so a per-call
change of a few microseconds shows.  Printed: median block time per call of each, and the
median and quartiles of the paired per-round ratios B/A.  Only for paths that stay in
Python and torch (the C routines of ``kernels/_*_native.py`` would load twice).

    python bench/conv1d_call_ab.py /path/to/other/src src 81 --functional   # functional.conv
    python bench/conv1d_call_ab.py /path/to/other/src src 41                # the layer call
"""
import os
import statistics
import sys
import time

import torch

CASES = [  # (shape, filters, kernel_size, strides, dilation, padding, data_format)
    ((1, 101, 64), 128, 11, 2, 1, "same", "channels_last"),   # kws stem: unfold
    ((1, 64, 16), 16, 2, 1, 8, "causal", "channels_last"),    # small WaveNet layer: taps
    ((1, 16, 64), 16, 2, 1, 8, "causal", "channels_first"),   # the same, channels_first
    ((1, 4000, 32), 32, 2, 1, 8, "causal", "channels_last"),  # WaveNet at batch 1: taps
    ((1, 64, 16), 16, 3, 1, 1, "same", "channels_last"),      # k3 undilated: unfold
]


def load(src):
    """``src``'s sepconv, imported afresh (the modules of an earlier import left aside)."""
    src = os.path.abspath(src)
    for name in [m for m in sys.modules if m == "sepconv" or m.startswith("sepconv.")]:
        del sys.modules[name]
    sys.path.insert(0, src)
    import sepconv
    sys.path.remove(src)
    assert sepconv.__file__.startswith(src), sepconv.__file__
    return sepconv


FUNCTIONAL = "--functional" in sys.argv


def main():
    torch.set_num_threads(1)
    args = [a for a in sys.argv[1:] if a != "--functional"]
    srcs = args[:2]
    rounds = int(args[2]) if len(args) > 2 else 21
    g = torch.Generator().manual_seed(0)
    libs = [load(s) for s in srcs]
    calls = []  # per case: (call A, call B), same weights and input
    for shape, f, k, s, d, p, fmt in CASES:
        x = torch.randn(shape, generator=g)
        pair, weights = [], None
        for lib in libs:
            layer = lib.Conv1D(f, k, strides=s, dilation_rate=d, padding=p, data_format=fmt)
            with torch.no_grad():
                layer(x)
                if weights is None:
                    weights = layer.get_weights()
                layer.set_weights(weights)
            if FUNCTIONAL:  # the op alone: functional.conv with the layer's tensors
                w_, b_ = layer.kernel.detach(), layer.bias.detach()
                pair.append(lambda F=lib.functional, x=x, w_=w_, b_=b_, s=s, p=p, d=d,
                            fmt=fmt: F.conv(x, w_, b_, strides=s, padding=p,
                                            dilation_rate=d, data_format=fmt))
            else:
                pair.append(lambda layer=layer, x=x: layer(x))
        with torch.inference_mode():
            torch.testing.assert_close(pair[0](), pair[1](), rtol=0, atol=0)
        calls.append(pair)
    with torch.inference_mode():
        for (shape, *_), (a, b) in zip(CASES, calls):
            n = 20 if shape[1] >= 1000 else 200
            for fn in (a, b):
                for _ in range(n):
                    fn()
            ts = ([], [])
            for r in range(rounds):
                for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                    fn = (a, b)[i]
                    t0 = time.thread_time()
                    for _ in range(n):
                        fn()
                    ts[i].append((time.thread_time() - t0) / n * 1e6)
            ma, mb = statistics.median(ts[0]), statistics.median(ts[1])
            ratios = sorted(y / x for x, y in zip(*ts))
            print(f"{shape}: A {ma:.2f} us  B {mb:.2f} us  B/A {mb / ma:.3f}  "
                  f"paired ratios median {statistics.median(ratios):.3f} "
                  f"(quartiles {ratios[len(ratios) // 4]:.3f}-{ratios[3 * len(ratios) // 4]:.3f})",
                  flush=True)


if __name__ == "__main__":
    main()
