"""Side-by-side timing of the CPU kernel against the plain torch composition (issue 15).

One process, the default environment (no OMP_* variables), float32 channels_last; the
implementations alternate call by call (rounds x reps), medians reported.
Usage: ``PYTHONPATH=src python bench/cpu_kernel.py [--rounds R] [--lib PATH.so ...]``:
each ``--lib`` is another build of ``_cpu_native`` timed beside the current one.
"""

import argparse
import statistics
import time

import torch

from sepconv.kernels import _cpu_native, cpu, reference

SHAPES = [  # name, n, length, channels, filters, kernel
    ("kws 64x101x64->64 k13", 64, 101, 64, 64, 13),
    ("32x512x64->128 k9", 32, 512, 64, 128, 9),
    ("4x1024x512->512 k7", 4, 1024, 512, 512, 7),
    ("causal 8x1000x128->128 k4", 8, 1000, 128, 128, 4),
]


def step(kernel, x, dw, pw, b, k, backward, causal):
    pad = (k - 1, 0) if causal else ((k - 1) // 2, k // 2)
    if backward:
        for t in (x, dw, pw, b):
            t.grad = None
        y = kernel(x, dw, pw, b, stride=1, dilation=1, pad_left=pad[0], pad_right=pad[1],
                   channels_last=True)
        y.backward(torch.ones_like(y))
    else:
        with torch.no_grad():
            kernel(x, dw, pw, b, stride=1, dilation=1, pad_left=pad[0], pad_right=pad[1],
                   channels_last=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--lib", action="append", default=[])
    args = p.parse_args()
    import ctypes
    libs = {"cpu": _cpu_native.load()}
    for path in args.lib:
        lib = ctypes.CDLL(path)
        for fn in (lib.sepconv_dw_grad_weight, lib.sepconv_dw_forward):
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 9 + [ctypes.c_int]
        libs[path.rsplit("/", 1)[-1]] = lib
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, n, length, c, f, k in SHAPES:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, length, c, generator=g, requires_grad=True)
        dw = torch.randn(k, c, 1, generator=g, requires_grad=True)
        pw = torch.randn(c, f, generator=g, requires_grad=True)
        b = torch.randn(f, generator=g, requires_grad=True)
        causal = name.startswith("causal")
        for backward in (False, True):
            impls = {"composition": (reference.separable_conv1d, None)}
            impls.update({lname: (cpu.separable_conv1d, lib) for lname, lib in libs.items()})
            times = {key: [] for key in impls}
            for key, (kernel, lib) in impls.items():  # warm up
                _cpu_native._lib = lib
                step(kernel, x, dw, pw, b, k, backward, causal)
            for _ in range(args.rounds):
                for key, (kernel, lib) in impls.items():
                    _cpu_native._lib = lib
                    t0 = time.perf_counter()
                    for _ in range(args.reps):
                        step(kernel, x, dw, pw, b, k, backward, causal)
                    times[key].append((time.perf_counter() - t0) / args.reps * 1e3)
            _cpu_native._lib = libs["cpu"]
            cells = "  ".join(f"{key} {statistics.median(v):7.2f}" for key, v in times.items())
            print(f"{name:28s} {'fwd+bwd' if backward else 'fwd    '}  {cells}  (ms)")


if __name__ == "__main__":
    main()
