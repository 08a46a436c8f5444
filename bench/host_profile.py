"""Where a small layer's host time goes: cProfile of training steps and inference calls.

Issue 12's small shapes are bound by host time on the GPU machine (the GPU idles while
Python runs), so the functions that cost microseconds per call decide them.  For a tiny layer
(1 x 64 steps x 32 channels, k3 "same", channels_last) this profiles ``calls`` inference
calls and training steps (forward + backward, as ``bench/gpu.py``'s ``steps``) of each
contender and prints the functions with the most own time.  Contenders: ``functional``
(sepconv's dispatch), Triton's variant 2 called directly with the fast launch
(``kernels/triton_launch.py``) and with the plain ``kernel[grid]`` launch, and the ``ncl``
composition.  Runs on CUDA when there is a GPU, else on the CPU (``--dry-run``: a few calls
under ``TRITON_INTERPRET=1``, to check the script).

    python bench/host_profile.py --out results/host_profile.txt
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--out", default=None, help="text file (default: stdout only)")
    args = parser.parse_args(argv)
    import torch
    from gpu import plain_launch, steps
    from sepconv import functional
    from sepconv.kernels import cuda, triton_launch, triton_v2

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    calls = 3 if args.dry_run else args.calls
    gen = torch.Generator().manual_seed(0)
    x, w, p, b = (torch.randn(*s, generator=gen).to(device)
                  for s in ((1, 64, 32), (3, 32, 1), (32, 32), (32,)))
    kw = dict(stride=1, dilation=1, pad_left=1, pad_right=1, channels_last=True)

    contenders = {
        "functional": lambda *t, **k: functional.separable_conv1d(*t, padding="same"),
        "triton_v2 fast launch": triton_v2.separable_conv1d,
        "triton_v2 plain launch": plain_launch(triton_v2.separable_conv1d),
        "ncl": cuda.ncl,
    }
    report = io.StringIO()
    print(f"device {device}, torch {torch.__version__}, {calls} calls each, "
          f"fast launch {'on' if triton_launch.FAST else 'off'}", file=report)
    for name, contender in contenders.items():
        fn = lambda *t, contender=contender: contender(*t, **kw)
        for phase, step in steps(torch, fn, [x, w, p, b]).items():
            for _ in range(min(20, calls)):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(calls):
                step()
            plain_us = (time.perf_counter() - t0) / calls * 1e6
            if device.type == "cuda":
                torch.cuda.synchronize()
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(calls):
                step()
            profile.disable()
            if device.type == "cuda":
                torch.cuda.synchronize()
            text = io.StringIO()
            pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(args.top)
            body = text.getvalue()
            body = body[body.find("ncalls"):] if "ncalls" in body else body
            print(f"\n=== {name} {phase}: {plain_us:.1f} us a call unprofiled "
                  f"(launches fast {triton_launch.COUNTS['fast']}, "
                  f"plain {triton_launch.COUNTS['plain']} so far)\n{body}", file=report)
    print(report.getvalue())
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(report.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
