"""One-thread A/B of ``kernels/gemm1d.py`` against the reference kernel (oneDNN), per shape.

Both kernels are called directly (the rule in ``gemm1d.pick_conv`` / ``takes_transpose``
is what this measures), alternated call by call in ONE process on one thread
(``torch.set_num_threads(1)``), median ``time.process_time()`` of ``--calls`` calls each:
CPU time, which moves little with the other processes on a shared machine.  Ratios below
1: the GEMM form costs less.  Rows time the forward (inference) and forward+backward, with
the GEMM forwards on every shape the kernels can run them on (``gemm1d.FORWARD_DILATION``
and ``gemm1d.TRANSPOSE_FORWARD_*`` opened up: this measures the forms, the rule is made
from it); ``--rule`` keeps the library's rule for the forwards.  The process keeps freed
memory (``kernels/memory.py``), as the library's CPU calls do.

    python bench/gemm1d_ab.py                 # ~3 min on one core
    python bench/gemm1d_ab.py --only wavenet  # rows whose name contains the word
    python bench/gemm1d_ab.py --layers        # the family bench's layers, through the
                                              # dispatch, gemm1d.ENABLED toggled
    python bench/gemm1d_ab.py --layers --threads 2   # the same, wall clock on 2 threads
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import sepconv
from sepconv import padding as _padding
from sepconv.kernels import gemm1d, memory, reference

# name, kind, (batch, steps, channels), kernel_size, filters, stride, dilation, padding
SHAPES = [
    ("wavenet_d512", "conv", (4, 16000, 64), 2, 128, 1, 512, "causal"),
    ("wavenet_d8", "conv", (4, 16000, 64), 2, 128, 1, 8, "causal"),
    ("wavenet_d256", "conv", (4, 16000, 64), 2, 128, 1, 256, "causal"),
    ("wavenet_d128", "conv", (4, 16000, 64), 2, 128, 1, 128, "causal"),
    ("wavenet_d64", "conv", (4, 16000, 64), 2, 128, 1, 64, "causal"),
    ("wavenet_d1", "conv", (4, 16000, 64), 2, 128, 1, 1, "causal"),
    ("wavenet_narrow_d64", "conv", (4, 16000, 32), 2, 32, 1, 64, "causal"),
    # bench/model_train.py's WaveNet stack (32 channels, 4 x 4000) and narrower
    ("wavenet_narrow32_d1", "conv", (4, 4000, 32), 2, 32, 1, 1, "causal"),
    ("wavenet_narrow32_d8", "conv", (4, 4000, 32), 2, 32, 1, 8, "causal"),
    ("wavenet_narrow32_d32", "conv", (4, 4000, 32), 2, 32, 1, 32, "causal"),
    ("wavenet_narrow16_d4", "conv", (4, 4000, 16), 2, 16, 1, 4, "causal"),
    ("wavenet_narrow64_d16", "conv", (4, 4000, 64), 2, 64, 1, 16, "causal"),
    # bench/model_train.py's TCN (k3 causal, 64 channels, 8 x 2000) and narrower
    ("tcn_narrow64_k3_d1", "conv", (8, 2000, 64), 3, 64, 1, 1, "causal"),
    ("tcn_narrow64_k3_d4", "conv", (8, 2000, 64), 3, 64, 1, 4, "causal"),
    ("tcn_narrow32_k3_d8", "conv", (4, 4000, 32), 3, 32, 1, 8, "causal"),
    ("tcn_k3_d4", "conv", (8, 4000, 128), 3, 128, 1, 4, "causal"),
    ("k3_same", "conv", (8, 4000, 128), 3, 128, 1, 1, "same"),
    ("k4_same", "conv", (8, 4000, 128), 4, 128, 1, 1, "same"),
    ("k5_same", "conv", (8, 4000, 64), 5, 64, 1, 1, "same"),
    ("k9_same", "conv", (8, 4000, 64), 9, 64, 1, 1, "same"),
    ("k4_s2_same", "conv", (8, 4000, 128), 4, 128, 2, 1, "same"),
    ("short_k3", "conv", (64, 256, 128), 3, 128, 1, 1, "same"),
    ("melgan_k16_s8", "transpose", (4, 250, 512), 16, 256, 8, 1, "same"),
    ("melgan2_k16_s8", "transpose", (4, 2000, 256), 16, 128, 8, 1, "same"),
    ("melgan3_k4_s2", "transpose", (4, 16000, 128), 4, 64, 2, 1, "same"),
    ("k8_s4_valid", "transpose", (4, 1000, 128), 8, 128, 4, 1, "valid"),
    ("k8_s4_long", "transpose", (4, 4000, 128), 8, 128, 4, 1, "same"),
    ("k8_s4_wide", "transpose", (4, 1000, 512), 8, 256, 4, 1, "same"),
    ("k4_s2_wide", "transpose", (4, 4000, 256), 4, 128, 2, 1, "same"),
    ("k16_s8_narrow", "transpose", (4, 1000, 128), 16, 64, 8, 1, "same"),
    ("k2_s2 (kernel == stride)", "transpose", (4, 4000, 128), 2, 64, 2, 1, "valid"),
    ("k3_s2_same", "transpose", (4, 4000, 128), 3, 64, 2, 1, "same"),
    ("k3_s1_same", "transpose", (4, 4000, 128), 3, 64, 1, 1, "same"),
    ("small_k4_s2", "transpose", (16, 64, 64), 4, 64, 2, 1, "same"),
]


def _calls(kind, shape, k, filters, stride, dilation, padding):
    n, steps, c = shape
    x = torch.randn(n, steps, c, requires_grad=True)
    if kind == "conv":
        w = torch.randn(k, c, filters, requires_grad=True)
        pads = _padding.padding_amounts_nd((steps,), (k,), (stride,), (dilation,), padding)
        geometry = dict(strides=(stride,), dilation=(dilation,), pads=pads, groups=1,
                        channels_last=True)
        kernels = (reference.conv, gemm1d.conv)
    else:
        w = torch.randn(k, filters, c, requires_grad=True)
        out = _padding.deconv_output_shape((steps,), (k,), (stride,), (1,), padding, None)
        pads = _padding.padding_amounts_nd(out, (k,), (stride,), (1,), padding)
        geometry = dict(strides=(stride,), dilation=(1,), pads=pads, out_spatial=out,
                        channels_last=True)
        kernels = (reference.conv_transpose, gemm1d.conv_transpose)
    b = torch.randn(filters, requires_grad=True)
    dy = torch.randn_like(kernels[0](x, w, b, **geometry))

    def fb(kernel):
        x.grad = w.grad = b.grad = None
        kernel(x, w, b, **geometry).backward(dy)

    def fwd(kernel):
        with torch.no_grad():
            kernel(x, w, b, **geometry)

    return kernels, fwd, fb


#: CPU time on one thread; wall clock with ``--threads`` > 1 (set in main)
_clock = time.process_time


def _ab(step, kernels, calls):
    times = ([], [])
    for i in range(calls + 2):
        for j, kernel in enumerate(kernels):
            t0 = _clock()
            step(kernel)
            if i >= 2:  # two warm-up calls each
                times[j].append(_clock() - t0)
    old, new = (statistics.median(t) * 1e3 for t in times)
    return old, new


# the family bench's (bench/family_cpu_time.py) 1D rows: name, class, arguments, input shape
LAYERS = [
    ("wavenet_d512", "Conv1D",
     dict(filters=128, kernel_size=2, padding="causal", dilation_rate=512), (4, 16000, 64)),
    ("wavenet_d8 (not picked)", "Conv1D",
     dict(filters=128, kernel_size=2, padding="causal", dilation_rate=8), (4, 16000, 64)),
    ("melgan_up_k16_s8", "Conv1DTranspose",
     dict(filters=256, kernel_size=16, strides=8, padding="same"), (4, 250, 512)),
]


def _layers(calls: int) -> None:
    print(f"{'layer':26s} {'fwd before':>10s} {'now':>7s} {'ratio':>6s}  "
          f"{'fb before':>9s} {'now':>7s} {'ratio':>6s}  "
          f"(gemm1d.ENABLED off / on, {torch.get_num_threads()} thread(s), "
          f"{'CPU' if _clock is time.process_time else 'wall-clock'} ms)")
    for name, cls, kwargs, shape in LAYERS:
        layer = getattr(sepconv, cls)(**kwargs)
        x = torch.randn(*shape, requires_grad=True)
        dy = torch.randn_like(layer(x))

        def fwd(enabled):
            gemm1d.ENABLED = enabled
            with torch.no_grad():
                layer(x)

        def fb(enabled):
            gemm1d.ENABLED = enabled
            x.grad = None
            for p in layer.parameters():
                p.grad = None
            layer(x).backward(dy)

        a, b = _ab(fwd, (False, True), calls)
        c, d = _ab(fb, (False, True), calls)
        gemm1d.ENABLED = True
        print(f"{name:26s} {a:10.1f} {b:7.1f} {b / a:6.2f}  {c:9.1f} {d:7.1f} {d / c:6.2f}",
              flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=9)
    parser.add_argument("--only", default="")
    parser.add_argument("--layers", action="store_true")
    parser.add_argument("--rule", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    global _clock
    if args.threads > 1:
        _clock = time.perf_counter
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    memory.keep_freed_memory()
    if args.layers:
        _layers(args.calls)
        return 0
    if not args.rule:
        gemm1d.FORWARD_DILATION = 1
        gemm1d.TRANSPOSE_FORWARD_CHANNELS = 1
        gemm1d.TRANSPOSE_FORWARD_BYTES = 2 ** 62
    print(f"{'shape':26s} {'kind':9s} {'fwd oneDNN':>10s} {'GEMM':>7s} {'ratio':>6s}  "
          f"{'fb oneDNN':>9s} {'GEMM':>7s} {'ratio':>6s}  (CPU ms, one thread)")
    for name, kind, *spec in SHAPES:
        if args.only not in name:
            continue
        kernels, fwd, fb = _calls(kind, *spec)
        a, b = _ab(fwd, kernels, args.calls)
        line = f"{name:26s} {kind:9s} {a:10.1f} {b:7.1f} {b / a:6.2f}  "
        a, b = _ab(fb, kernels, args.calls)
        print(line + f"{a:9.1f} {b:7.1f} {b / a:6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
