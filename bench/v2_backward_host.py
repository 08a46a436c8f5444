"""Host time of Triton variant 2's backward (``triton_v2._backward``) with its kernel
launches replaced by a no-op, this checkout against another one, on any machine.

Small layers' training steps on a GPU are bound by the host (issue 12): what is left of the
backward without its kernels is its Python and torch's calls (``mm``, ``sum``, ``empty``,
casts).  Here both checkouts' ``triton_v2`` are imported into one process (under
``TRITON_INTERPRET=1``, CPU tensors: a tiny 1 x 64 x 32 k3 layer, every gradient asked
for), launches stubbed, and their ``_backward`` calls timed in alternated rounds of 2000
calls; medians and the median per-round ratio.  On a CPU, torch's calls compute (tiny)
results; on a GPU they would launch kernels: compare ratios, not absolute times.  One
torch thread.

    python bench/v2_backward_host.py --baseline /path/to/other/checkout/src
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def load(src: str):
    """``sepconv.kernels.triton_v2`` from checkout ``src`` (``bench/conv1d_call_ab.py``'s
    fresh import of its ``sepconv``), launches stubbed."""
    from conv1d_call_ab import load as load_sepconv  # (this script's folder: on sys.path)

    load_sepconv(src)
    v2 = importlib.import_module("sepconv.kernels.triton_v2")  # (while it is sys.modules')
    v2._fast.launch = lambda *args, **kwargs: None
    return v2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, help="the other checkout's src folder")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args(argv)
    os.environ["TRITON_INTERPRET"] = "1"
    import torch

    torch.set_num_threads(1)
    variants = {"baseline": load(args.baseline),
                "this": load(os.path.join(os.path.dirname(HERE), "src"))}
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        x, dy = (torch.randn(1, 64, 32, generator=gen).to(dtype) for _ in range(2))
        w = torch.randn(3, 32, generator=gen).to(dtype)
        p = torch.randn(32, 32, generator=gen).to(dtype)
        calls = {name: (lambda v=v: v._backward(dy, x, w, p, True, 1, 1, 1, True,
                                                True, True, True, True))
                 for name, v in variants.items()}
        times = {name: [] for name in calls}
        for _ in range(args.rounds):
            for name, call in calls.items():
                for _ in range(args.calls // 10):
                    call()
                start = time.perf_counter()
                for _ in range(args.calls):
                    call()
                times[name].append((time.perf_counter() - start) / args.calls * 1e6)
        ratio = statistics.median(a / b for a, b in zip(times["this"], times["baseline"]))
        print(f"{str(dtype)[6:]:9s} " + "  ".join(
            f"{name} {statistics.median(t):7.2f} us" for name, t in times.items())
            + f"  this/baseline {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
