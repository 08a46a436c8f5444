"""Per-call Python of ``functional.separable_conv1d``'s dispatch: host time per call.

On a CUDA machine (real tensors, the shared suite at the GPU bench's batch sizes plus a
tiny layer): ``functional`` (the API, its checks, the kernel's pick and the call) against
``direct``, the kernel functional picks (``kernels/cuda.py``'s composition or Triton's
variant 2) called directly with the geometry as keywords, inference (``torch.no_grad``) and
a training forward (weights that require gradients; no backward, whose host cost is the
same for both).  Host time: ``time.perf_counter`` around a block of 50 calls, no
synchronisation inside it, ``torch.cuda.synchronize()`` before and after (these layers'
kernels take less time than their Python, so the queue does not fill).

Without CUDA (``--fake``, the default there; ``--real`` times the CPU kernel as above): the same calls with the kernels replaced by a
no-op that returns ``x`` (``kernels/cuda.py``'s compositions and ``functional._load``'s),
on stand-ins for CUDA tensors (``tests/kernel_env.fake_cuda``) and on CPU tensors: what is
left is the dispatch alone; ``direct`` is then the no-op called with the keywords (the
floor).  CPU time of this thread (``time.thread_time``).

``--baseline SRC`` adds ``baseline``: another checkout's ``functional`` imported into the
same process (``bench/conv1d_call_ab.py``'s ``load``), alternated with this one's in every
round.  Contenders take turns block by block, the order rotated each round; medians, and
the median of the per-round ratios to ``direct`` (or ``baseline``).  One torch thread.

    python bench/dispatch_overhead.py --out /tmp/dispatch.json                 # GPU machine
    python bench/dispatch_overhead.py --baseline /path/to/old/src --out /tmp/d.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from conv1d_call_ab import load  # noqa: E402  (one checkout's sepconv, imported afresh)

TINY = ("tiny_k3", 1, 64, 32, 32, 3, 1, 1, 1, "same")  # gpu.py's host_overhead layer


def suite(fake: bool) -> list:
    """``(name, batch, steps, channels, filters, k, stride, dilation, multiplier,
    padding)``: the tiny layer and the shared suite at 8x the CPU batch (``bench/gpu.py``)."""
    sys.path.insert(0, os.path.join(ROOT, "src"))
    from sepconv.bench.shapes import SHAPES
    return [TINY] + [(s.name, 8 * s.batch, s.steps, s.channels, s.filters, s.kernel_size,
                      s.strides, s.dilation_rate, s.depth_multiplier, s.padding)
                     for s in SHAPES]


def _noop(x, *args, **kwargs):
    return x


@contextlib.contextmanager
def kernels_replaced(libs):
    """Every kernel functional can pick, in each of ``libs``, a no-op returning ``x``."""
    saved = []
    for lib in libs:
        cuda = lib.kernels.cuda
        saved.append((lib.functional, "_load", lib.functional._load))
        saved.append((cuda, "COMPOSITIONS", cuda.COMPOSITIONS))
        lib.functional._load = lambda name: _noop
        cuda.COMPOSITIONS = dict.fromkeys(cuda.COMPOSITIONS, _noop)
        for memo in ("_SEPARABLE_CALLS", "_CUDA_PICKS"):  # (this checkout's; the old one's)
            getattr(lib.functional, memo, {}).clear()
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def contenders(libs: dict, shape, device: str, dtype, training: bool, fake: bool):
    """``{name: zero-argument call}`` for one shape, and the kernel functional picked."""
    import torch
    from sepconv import padding as _padding
    name, batch, steps, c, f, k, stride, dilation, m, padding = shape
    gen = torch.Generator().manual_seed(0)
    dev = "cpu" if fake else device
    w, p, b = (torch.randn(*s, generator=gen).to(dev, dtype) for s in ((k, c, m), (c * m, f),
                                                                        (f,)))
    if fake and device == "cuda":
        from kernel_env import fake_cuda
        x = fake_cuda((batch, steps, c), dtype, training)
    else:
        x = torch.randn(batch, steps, c, generator=gen).to(dev, dtype)
        x.requires_grad_(training)
    for t in (w, p, b):
        t.requires_grad_(training)
    left, right = _padding.padding_amounts(steps, k, stride, dilation, padding)
    kw = dict(stride=stride, dilation=dilation, pad_left=left, pad_right=right,
              channels_last=True)
    api = dict(strides=stride, padding=padding, dilation_rate=dilation)
    out_len = _padding.conv_output_length(steps, k, stride, dilation, padding)
    this = libs["functional"]
    kernel = _noop if fake else this.functional._pick_kernel(x, w, p, stride, dilation,
                                                             out_len, True)
    calls = {lib: (lambda F=mod.functional: F.separable_conv1d(x, w, p, b, **api))
             for lib, mod in libs.items()}
    calls["direct"] = lambda: kernel(x, w, p, b, **kw)
    return calls, kernel


def kernel_name(kernel) -> str:
    if kernel is _noop:
        return "no-op"
    from gpu import kernel_name as named  # (cuda:<composition>, triton_v2[_savez])
    return named(kernel)


def timed(calls: dict, cuda: bool, rounds: int, n: int) -> dict:
    """Microseconds per call of each of ``calls``: ``{name: [one per round]}``."""
    import torch
    clock = time.perf_counter if cuda else time.thread_time
    names = list(calls)
    for fn in calls.values():  # warm-up (the memo's first call, cuDNN's plans)
        for _ in range(max(3, n // 10)):
            fn()
    samples = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = calls[name]
            if cuda:
                torch.cuda.synchronize()
            t0 = clock()
            for _ in range(n):
                fn()
            samples[name].append((clock() - t0) / n * 1e6)
            if cuda:
                torch.cuda.synchronize()
    return samples


def summary(samples: dict, against: str) -> dict:
    row = {f"{name} us": statistics.median(v) for name, v in samples.items()}
    for name, v in samples.items():
        if name != against:
            ratios = [a / b for a, b in zip(v, samples[against])]
            row[f"{name} / {against}"] = statistics.median(ratios)
            row[f"{name} - {against} us"] = statistics.median(
                [a - b for a, b in zip(v, samples[against])])
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="JSON path")
    ap.add_argument("--baseline", help="another checkout's src, timed beside this one")
    ap.add_argument("--fake", action="store_true",
                    help="no-op kernels on stand-in CUDA tensors and on CPU tensors "
                         "(the default without CUDA)")
    ap.add_argument("--real", action="store_true",
                    help="without CUDA: the real kernels on CPU tensors, functional "
                         "against the CPU kernel called directly")
    ap.add_argument("--dtypes", default="float32", help="comma-separated torch dtypes")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=50, help="calls per timed block")
    ap.add_argument("--only", help="comma-separated shape names")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    fake = args.fake or not (cuda or args.real)
    if fake:
        sys.path.insert(0, os.path.join(ROOT, "tests"))
    libs = {}
    for name, src in (("baseline", args.baseline), ("functional", os.path.join(ROOT, "src"))):
        if src:
            libs[name] = load(src)
            # (imported while it is sys.modules' sepconv; functional's lazy imports of
            # kernel modules find the last checkout's, the same kernels/cuda.py)
            importlib.import_module("sepconv.kernels.cuda")
    devices = ["cuda", "cpu"] if fake else ["cuda"] if cuda else ["cpu"]
    shapes = suite(fake)
    if args.only:
        shapes = [s for s in shapes if s[0] in args.only.split(",")]
    against = "baseline" if args.baseline and fake else "direct"
    rows = []
    report = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                          "cpu": platform.processor() or platform.machine(),
                          "device": "fake" if fake else torch.cuda.get_device_name()
                          if cuda else "cpu",
                          "clock": "thread_time" if fake else "perf_counter (host)",
                          "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32},
              "args": vars(args), "rows": rows}
    started = time.perf_counter()
    with kernels_replaced(libs.values()) if fake else contextlib.nullcontext():
        for device in devices:
            for dname in args.dtypes.split(","):
                dtype = getattr(torch, dname)
                for shape in shapes:
                    for training in (False, True):
                        calls, kernel = contenders(libs, shape, device, dtype, training,
                                                   fake)
                        with contextlib.nullcontext() if training else torch.no_grad():
                            samples = timed(calls, device == "cuda" and not fake,
                                            args.rounds, args.calls)
                        row = {"shape": shape[0], "device": device, "dtype": dname,
                               "phase": "training" if training else "inference",
                               "kernel": kernel_name(kernel), **summary(samples, against)}
                        rows.append(row)
                        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                          for k, v in row.items()}), flush=True)
    report["seconds"] = time.perf_counter() - started
    for device in devices:  # medians over the shapes, per device and phase
        for phase in ("inference", "training"):
            mine = [r for r in rows if r["device"] == device and r["phase"] == phase]
            keys = [k for k in mine[0] if k.endswith(" us") or " / " in k]
            report[f"median {device} {phase}"] = {
                k: statistics.median(r[k] for r in mine) for k in keys}
            print(device, phase, json.dumps({k: round(v, 3) for k, v in
                                             report[f"median {device} {phase}"].items()}))
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
