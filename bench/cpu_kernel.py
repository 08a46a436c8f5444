"""Side-by-side timing of the CPU kernel against the plain torch composition (issue 15).

One process, the default environment (no OMP_* variables), float32 channels_last; the
implementations alternate (each round runs every configuration ``reps`` times, in a
shuffled order), medians over rounds reported.
Usage: ``PYTHONPATH=src python bench/cpu_kernel.py [--rounds R] [--lib PATH.so ...]``:
each ``--lib`` is another build of ``_cpu_native`` timed beside the current one.
"""

import argparse
import random
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
    p.add_argument("--lib", action="append", default=[],
                   help="another build of the C routine, timed beside the current one")
    p.add_argument("--threads", default="",
                   help="comma-separated torch thread counts to alternate (default: torch's)")
    p.add_argument("--only", default="",
                   help="comma-separated labels to keep (e.g. composition,cpu,main.so/C2)")
    p.add_argument("--fixed", action="store_true",
                   help="also time each build on torch's thread count and on one thread "
                        "(instead of the kernel's adaptive choice)")
    args = p.parse_args()
    import ctypes
    libs = {"cpu": _cpu_native.load()}
    for path in args.lib:
        lib = ctypes.CDLL(path)
        for fn in (lib.sepconv_dw_grad_weight, lib.sepconv_dw_forward):
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 9 + [ctypes.c_int]
        libs[path.rsplit("/", 1)[-1]] = lib
    default_threads = torch.get_num_threads()
    thread_counts = [int(t) for t in args.threads.split(",")] if args.threads \
        else [default_threads]
    class Fixed:
        def __init__(self, threads=None):
            self.threads = threads

        def run(self, name, work, call):
            if not self.threads:
                return call()
            saved = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                return call()
            finally:
                torch.set_num_threads(saved)

    configs = {}  # label -> (kernel, lib, torch threads, the C routine's thread policy)
    for t in thread_counts:
        at = f"@{t}" if len(thread_counts) > 1 else ""
        configs["composition" + at] = (reference.separable_conv1d, None, t, None)
        for lname, lib in libs.items():
            configs[lname + at] = (cpu.separable_conv1d, lib, t, cpu._ThreadPolicy())
            if args.fixed and t > 1:
                configs[lname + at + "/C" + str(t)] = (cpu.separable_conv1d, lib, t, Fixed())
                configs[lname + at + "/C1"] = (cpu.separable_conv1d, lib, t, Fixed(1))
    if args.only:
        keep = args.only.split(",")
        configs = {key: config for key, config in configs.items() if key in keep}
    print(f"torch {torch.__version__}, default {default_threads} threads, "
          f"C routine on {_cpu_native._openmp or 'pthreads'}")

    def use(config):
        kernel, lib, t, pol = config
        _cpu_native._lib = lib
        cpu._threads = pol
        torch.set_num_threads(t)
        return kernel

    rng = random.Random(0)
    for name, n, length, c, f, k in SHAPES:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, length, c, generator=g, requires_grad=True)
        dw = torch.randn(k, c, 1, generator=g, requires_grad=True)
        pw = torch.randn(c, f, generator=g, requires_grad=True)
        b = torch.randn(f, generator=g, requires_grad=True)
        causal = name.startswith("causal")
        for backward in (False, True):
            times = {key: [] for key in configs}
            for config in configs.values():  # warm up
                step(use(config), x, dw, pw, b, k, backward, causal)
            order = list(configs.items())
            for _ in range(args.rounds):
                rng.shuffle(order)  # no configuration always runs after the same one
                for key, config in order:
                    kernel = use(config)
                    t0 = time.perf_counter()
                    for _ in range(args.reps):
                        step(kernel, x, dw, pw, b, k, backward, causal)
                    times[key].append((time.perf_counter() - t0) / args.reps * 1e3)
            cells = "  ".join(f"{key} {statistics.median(v):6.2f}" for key, v in times.items())
            print(f"{name:26s} {'fwd+bwd' if backward else 'fwd    '} {cells} (ms)", flush=True)
    use((None, libs["cpu"], default_threads, cpu._ThreadPolicy()))


if __name__ == "__main__":
    main()
