"""tanh / sigmoid on CPU float32: torch's ops (sepconv before) against the TensorFlow-exact
C routine (``sepconv.kernels.activation``), one thread, CPU time.

For each size, the forward (``x -> y``) and the backward (``(y, dy) -> dx``, what autograd
runs: ``aten.tanh_backward`` / ``aten.sigmoid_backward`` before, the routine's TanhGrad /
SigmoidGrad now) are timed alternately in one process (old, new, old, new, ...), both
allocating their outputs; the figure is the median of ``--repeats`` calls, in ms of
``time.process_time`` (the measure that moves least on a shared machine).

    python bench/activations.py                    # 512k and 8M elements
    python bench/activations.py --sizes 65536 --repeats 51
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sepconv.kernels import _activation_native as native
from sepconv.kernels import activation as kernel


def cases(n: int):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=g) * 3
    dy = torch.randn(n, generator=g)
    y_t, y_s = torch.tanh(x), torch.sigmoid(x)
    return {
        "tanh forward": (lambda: torch.tanh(x), lambda: kernel.tanh(x)),
        "tanh backward": (lambda: torch.ops.aten.tanh_backward(dy, y_t),
                          lambda: kernel._compute(native.TANH_GRAD, y_t, dy)),
        "sigmoid forward": (lambda: torch.sigmoid(x), lambda: kernel.sigmoid(x)),
        "sigmoid backward": (lambda: torch.ops.aten.sigmoid_backward(dy, y_s),
                             lambda: kernel._compute(native.SIGMOID_GRAD, y_s, dy)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="524288,8388608")
    ap.add_argument("--repeats", type=int, default=21)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if native.load() is None:
        raise SystemExit("the C routine cannot be built here")
    print(f"{'op':18} {'elements':>9} {'torch ms':>9} {'sepconv ms':>10} {'speed-up':>8}")
    for n in (int(s) for s in args.sizes.split(",")):
        for name, (old, new) in cases(n).items():
            old(), new()  # warm up
            t_old, t_new = [], []
            for _ in range(args.repeats):
                for fn, out in ((old, t_old), (new, t_new)):
                    t0 = time.process_time()
                    fn()
                    out.append(time.process_time() - t0)
            a, b = statistics.median(t_old) * 1e3, statistics.median(t_new) * 1e3
            print(f"{name:18} {n:>9} {a:>9.3f} {b:>10.3f} {a / b:>7.2f}x")


if __name__ == "__main__":
    main()
