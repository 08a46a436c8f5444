"""GPU benchmark: the fused Triton kernel against cuDNN's two-kernel composition.

    python bench/gpu.py                    # on a CUDA machine: table, JSON and PNG
    python bench/gpu.py --dry-run          # anywhere: tiny shapes, Triton interpreter on CPU

For every shape of the suite and for float32 and bfloat16 it times, forward and
forward + backward, on channels_last ``(batch, steps, channels)`` data as Keras has it:

- ``triton``: ``sepconv.kernels.triton_sepconv`` (the fused kernel, variant 1);
- ``triton_v2``: ``sepconv.kernels.triton_v2`` (``SEPCONV_TRITON_VARIANT=v2``: z once per
  row block, cuBLAS for the backward's GEMMs, d(depthwise) from deterministic partials),
  with the same forward and gradient checks against float64 as ``triton``;
- ``triton_v2_savez``: the same with ``save_z=True`` (the forward keeps ``z`` for
  d(pointwise); its forward rows are ``triton_v2``'s, as inference keeps nothing);
- ``cudnn``: the best of torch's own two-kernel compositions, each on the layout it
  likes best and *without* the layout conversion counted (a lower bound for torch):
  ``ncl`` (grouped ``conv1d`` + 1x1 ``conv1d`` on ``(B, C, L)``), ``nhwc`` (grouped
  ``conv2d`` + 1x1 ``conv2d`` on ``(B, C, 1, L)`` in ``channels_last`` memory format) and
  ``nhwc+mm`` (the same depthwise, pointwise as a matmul on ``(B*L, C*M)``);
- ``reference``: ``sepconv.kernels.reference`` (transpose, pad, two ``conv1d``);
- ``sepconv``: ``functional.separable_conv1d`` itself, as a user calls it (its dispatch,
  ``functional._cuda_pick``: ``kernels/cuda.py``'s composition that ``cuda.choice``
  picks, or Triton's variant 2; forward rows get the inference choice and forward +
  backward rows the training one; layout conversion and padding included; the kernel's
  name is in the JSON's ``sepconv_kernel``), also timed against the best composition in
  alternated samples (``sepconv_vs_cudnn_paired``), and the host time per call of both
  on a tiny layer (``machine.host_overhead``).

The suite is the shared one (``sepconv.bench.shapes``) at 8x the CPU batch sizes, plus four
long sequences (batch 64, 4096 steps).

float32 runs with TF32 off everywhere (``torch.backends.cudnn.allow_tf32`` and
``torch.backends.cuda.matmul.allow_tf32`` False), as Keras' float32 numerics need;
``--dtypes float32,bfloat16,tf32`` adds rows that allow TF32 on both sides, and
``float32_torch_default`` rows with torch's own defaults (cuDNN's convolutions in TF32,
cuBLAS' matmuls not): what a user who sets nothing gets.  Timing:
``torch.cuda.Event`` pairs around batches of calls, median of ``--reps`` samples after
``--warmup`` calls (which also compile Triton's kernels, and autotune them with
``SEPCONV_TRITON_AUTOTUNE=1``).  The same run measures
device-to-device copy bandwidth (``copy_`` between two 256 MiB tensors: bytes read +
written per second) and matmul throughput, and reports for each shape the minimum bytes
it must move divided by its time, as a % of the copy bandwidth (meaningful for
memory-bound shapes: arithmetic intensity below the measured matmul/copy balance, marked
``*`` in the table).

Writes ``<out>.json`` (rewritten after each shape, so a run cut short keeps what it
measured) and ``<out>.png``; prints a table.  The first call of each shape and dtype
includes Triton's compilation (in the warm-up, not in the timings), so a
full run takes minutes: ``--only`` and ``--dtypes`` split it into shorter ones.  No
figure in this file or its docs was measured unless a JSON produced by this script says
so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List


@dataclass
class Shape:
    name: str
    batch: int
    steps: int
    channels: int
    filters: int
    kernel_size: int
    stride: int = 1
    dilation: int = 1
    multiplier: int = 1
    padding: str = "same"


def _suite() -> List[Shape]:
    """The shared suite (``sepconv.bench.shapes``) at GPU batch sizes (x8 the CPU's), plus
    long sequences at batch 64, where a memory-bound kernel should approach the copy
    bandwidth."""
    from sepconv.bench.shapes import SHAPES
    shared = [Shape(s.name, 8 * s.batch, s.steps, s.channels, s.filters, s.kernel_size,
                    s.strides, s.dilation_rate, s.depth_multiplier, s.padding)
              for s in SHAPES]
    return shared + [
        Shape("long-256-k31", 64, 4096, 256, 256, 31),
        Shape("long-512-k9", 64, 4096, 512, 512, 9),
        Shape("long-causal-k4-1536", 64, 4096, 1536, 1536, 4, padding="causal"),
        Shape("long-dilated8-128-k3-causal", 64, 4096, 128, 128, 3, dilation=8,
              padding="causal"),
    ]


# --dry-run: the same code paths on shapes the interpreter finishes in seconds.
DRY_SUITE = [
    Shape("tiny-same", 2, 19, 4, 8, 5),
    # functional._cuda_kernel sends this class to triton_v2 (savez when training)
    Shape("tiny-dilated-causal", 2, 21, 4, 6, 3, dilation=2, padding="causal"),
    Shape("tiny-causal-m2-strided", 2, 23, 3, 5, 3, stride=2, multiplier=2, padding="causal"),
    Shape("tiny-wide-300", 2, 9, 3, 300, 3),  # triton_v2's unfused forward (F > 256)
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny shapes on CPU under TRITON_INTERPRET=1: checks the logic only")
    parser.add_argument("--out", default=None,
                        help="output prefix for .json/.png (default bench/results/gpu-<time>)")
    parser.add_argument("--reps", type=int, default=20, help="timed samples per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls first")
    parser.add_argument("--dtypes", default="float32,bfloat16",
                        help="comma list of float32, bfloat16, float16, tf32")
    parser.add_argument("--only", default="",
                        help="comma list of substrings: shapes whose name contains one")
    parser.add_argument("--skip-triton", action="store_true",
                        help="time the compositions only (no Triton compile / autotune time)")
    parser.add_argument("--variants", default="triton,triton_v2,triton_v2_savez",
                        help="comma list of the Triton kernels to time: triton (variant 1), "
                             "triton_v2, triton_v2_savez")
    parser.add_argument("--v2-fused-max-f", type=int, default=None,
                        help="triton_v2.FUSED_MAX_F for this run (widest fused forward; "
                             "default: the module's, 128)")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- timing


class Timer:
    """Median time of a callable: CUDA events on a GPU, perf_counter otherwise."""

    def __init__(self, torch, device, warmup: int, reps: int, sample_s: float = 1e-3):
        self.torch, self.device = torch, device
        self.warmup, self.reps, self.sample_s = warmup, reps, sample_s

    def _sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def _once(self, fn: Callable, n: int) -> float:
        if self.device.type == "cuda":
            start = self.torch.cuda.Event(enable_timing=True)
            end = self.torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(n):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / n
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n

    def _calls(self, fn: Callable) -> int:
        # Batch calls so one sample lasts about sample_s: event overhead stays small.
        return max(1, min(1000, int(self.sample_s / max(self._once(fn, 1), 1e-7))))

    def __call__(self, fn: Callable) -> float:
        for _ in range(self.warmup):
            fn()
        self._sync()
        n = self._calls(fn)
        return statistics.median(self._once(fn, n) for _ in range(self.reps))

    def paired(self, fa: Callable, fb: Callable) -> tuple:
        """Medians of ``fa`` and ``fb`` from alternated samples (a, b, a, b, ...), the same
        number of calls per sample: drift of clocks or of other work on the machine
        touches both alike, so their ratio is steadier than two separate runs'."""
        for _ in range(self.warmup):
            fa()
            fb()
        self._sync()
        n = min(self._calls(fa), self._calls(fb))
        a, b = [], []
        for _ in range(self.reps):
            a.append(self._once(fa, n))
            b.append(self._once(fb, n))
        return statistics.median(a), statistics.median(b)


def copy_bandwidth(torch, device, timer: Timer) -> float:
    """Device-to-device copy GB/s (bytes read + written), from clones of 256 MiB."""
    src = torch.empty(64 * 2 ** 20, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    seconds = timer(lambda: dst.copy_(src))
    return 2 * src.numel() * 4 / seconds / 1e9


def matmul_tflops(torch, device, timer: Timer, dtype) -> float:
    n = 4096 if device.type == "cuda" else 256
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n ** 3 / timer(lambda: a @ b) / 1e12


# ------------------------------------------------------------------------ the contenders


def make_inputs(torch, shape: Shape, dtype, device):
    gen = torch.Generator(device="cpu").manual_seed(0)
    c, m, f, k = shape.channels, shape.multiplier, shape.filters, shape.kernel_size
    x = torch.randn(shape.batch, shape.steps, c, generator=gen)
    w = torch.randn(k, c, m, generator=gen) / math.sqrt(k)
    p = torch.randn(c * m, f, generator=gen) / math.sqrt(c * m)
    b = torch.randn(f, generator=gen)
    return [t.to(device=device, dtype=dtype) for t in (x, w, p, b)]


def compositions(torch, shape: Shape, x, w, p, b, pad_left, pad_right):
    """torch's two-kernel compositions, each given ``x`` in its own layout.

    Returns ``{name: (inputs, fn, to_blf)}``; ``fn(*inputs)`` computes the output in that
    variant's layout and ``to_blf`` views it as ``(batch, steps, filters)``.  Weight
    reshapes are part of ``fn`` (they are views or tiny).  ``ncl`` and ``nhwc+mm`` are
    ``kernels/cuda.py``'s own ``ncl`` (given NCL data) and ``nhwc_mm`` (whose NHWC input is
    a view of ``x``); ``nhwc`` is cuda.py's NHWC depthwise followed by a 1x1 ``conv2d``.
    """
    from sepconv.kernels import cuda

    F = torch.nn.functional
    k, c, m = w.shape
    s, d = shape.stride, shape.dilation
    geometry = dict(stride=s, dilation=d, pad_left=pad_left, pad_right=pad_right)
    x_ncl = x.transpose(1, 2).contiguous()
    x_nhwc = x.transpose(1, 2).unsqueeze(2).contiguous(memory_format=torch.channels_last)
    symmetric = pad_left == pad_right

    def ncl(x, w, p, b):
        return cuda.ncl(x, w, p, b, channels_last=False, **geometry)

    def nhwc(x, w, p, b):
        weight = cuda._depthwise_weight(w).unsqueeze(2)
        if symmetric:
            z = F.conv2d(x, weight, None, (1, s), (0, pad_left), (1, d), c)
        else:
            z = F.conv2d(F.pad(x, (pad_left, pad_right)), weight, None, (1, s), 0, (1, d), c)
        return F.conv2d(z, p.t()[:, :, None, None], b)

    def nhwc_mm(x, w, p, b):
        return cuda.nhwc_mm(x, w, p, b, **geometry)

    def from_ncl(y):
        return y.transpose(1, 2)

    def from_nhwc(y):
        return y.squeeze(2).transpose(1, 2)

    return {"ncl": ([x_ncl, w, p, b], ncl, from_ncl),
            "nhwc": ([x_nhwc, w, p, b], nhwc, from_nhwc),
            "nhwc+mm": ([x, w, p, b], nhwc_mm, lambda y: y)}


def timed_pair(torch, timer: Timer, fn: Callable, inputs) -> Dict[str, float]:
    """Forward time, and forward + backward time with every input requiring grad."""
    with torch.no_grad():  # (around the whole measurement: no context entered per call)
        fwd = timer(lambda: fn(*inputs))
    return {"fwd": fwd, "fwd+bwd": timer(steps(torch, fn, inputs)["fwd+bwd"])}


def steps(torch, fn: Callable, inputs) -> Dict[str, Callable]:
    """Two measurements as calls: inference (``no_grad`` inside the call: the paired
    samples alternate two of these) and forward + backward with every input requiring
    grad (``timed_pair``'s too)."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    with torch.no_grad():
        dy = torch.randn_like(fn(*leaves))

    def fwd():
        with torch.no_grad():
            fn(*inputs)

    def train():
        for t in leaves:
            t.grad = None
        fn(*leaves).backward(dy)

    return {"fwd": fwd, "fwd+bwd": train}


def host_overhead(torch, device, contenders: Dict[str, Callable],
                  calls: int = 2000) -> Dict[str, float]:
    """Microseconds of host time per call (``perf_counter`` over 2000 calls, no
    synchronisation inside: a tiny layer's kernels take less than its Python, so the
    queue never fills) of each ``contenders[name](x, w, p, b, **geometry)`` on a tiny
    layer (1 x 64 steps x 32 channels, k3 "same"), inference and training, median of 5."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    x, w, p, b = (torch.randn(*s, generator=gen).to(device)
                  for s in ((1, 64, 32), (3, 32, 1), (32, 32), (32,)))
    kw = dict(stride=1, dilation=1, pad_left=1, pad_right=1, channels_last=True)
    out = {}
    for name, contender in contenders.items():
        fn = lambda *t, contender=contender: contender(*t, **kw)
        for phase, step in steps(torch, fn, [x, w, p, b]).items():
            samples = []
            for _ in range(5):
                for _ in range(min(50, calls)):
                    step()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                for _ in range(calls):
                    step()
                samples.append((time.perf_counter() - t0) / calls * 1e6)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            out[f"{name} {phase} us"] = statistics.median(samples)
    return out


def plain_launch(kernel: Callable) -> Callable:
    """``kernel`` with Triton's own ``kernel[grid]`` launches (``kernels/triton_launch.py``'s
    fast launch off for the call), to time what the fast launch saves."""
    from sepconv.kernels import triton_launch

    def call(*args, **kwargs):
        fast, triton_launch.FAST = triton_launch.FAST, False
        try:
            return kernel(*args, **kwargs)
        finally:
            triton_launch.FAST = fast
    return call


def kernel_name(kernel: Callable) -> str:
    """What ``functional._cuda_pick`` (or ``_pick_kernel``) returned, by name:
    ``cuda:<composition>``, ``triton_v2`` or ``triton_v2_savez`` (``<module>:<function>``
    for the others: ``cpu:separable_conv1d``)."""
    keywords = getattr(kernel, "keywords", None)
    if keywords is not None:
        return "triton_v2_savez" if keywords.get("save_z") else "triton_v2"
    return kernel.__module__.rsplit(".", 1)[-1] + ":" + kernel.__name__


def triton_errors(torch, reference, fn: Callable, inputs, y_ref, kw):
    """``fn``'s forward error (max abs) and worst gradient error (max abs / max abs of the
    float64 reference's gradient, over x, depthwise, pointwise, bias) for one random dy."""
    with torch.no_grad():
        err = (fn(*inputs).double() - y_ref).abs().max().item()
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    leaves64 = [t.detach().double().requires_grad_() for t in inputs]
    y = fn(*leaves)
    dy = torch.randn_like(y)
    y.backward(dy)
    reference.separable_conv1d(*leaves64, **kw).backward(dy.double())
    grad_err = max((a.grad.double() - r.grad).abs().max().item()
                   / max(r.grad.abs().max().item(), 1e-30)
                   for a, r in zip(leaves, leaves64))
    return err, grad_err


def min_bytes(shape: Shape, out_steps: int, itemsize: int) -> Dict[str, int]:
    """Bytes a perfect kernel must move: x in, y out (+ weights); backward adds dy in,
    x in again and dx out."""
    x = shape.batch * shape.steps * shape.channels * itemsize
    y = shape.batch * out_steps * shape.filters * itemsize
    weights = (shape.kernel_size * shape.channels * shape.multiplier
               + shape.channels * shape.multiplier * shape.filters + shape.filters) * itemsize
    return {"fwd": x + y + weights, "fwd+bwd": x + y + weights + (y + x + x) + 2 * weights}


def flops(shape: Shape, out_steps: int) -> Dict[str, float]:
    rows = shape.batch * out_steps
    cm = shape.channels * shape.multiplier
    fwd = 2.0 * rows * cm * (shape.kernel_size + shape.filters)
    return {"fwd": fwd, "fwd+bwd": 3 * fwd}


# ------------------------------------------------------------------------------- main


def run(args, checkpoint: Callable[[Dict], None] = lambda report: None) -> Dict:
    """Measure the suite; ``checkpoint(report)`` after each shape (partial results)."""
    if args.dry_run:
        # Must precede the first triton import (sepconv never imports it by itself).
        os.environ["TRITON_INTERPRET"] = "1"
    import torch

    from sepconv import functional, padding
    from sepconv.kernels import cuda, reference, triton_sepconv, triton_v2

    # the `triton` column is variant 1 whatever the environment says (read at each call)
    os.environ["SEPCONV_TRITON_VARIANT"] = "v1"
    if args.v2_fused_max_f is not None:
        triton_v2.FUSED_MAX_F = args.v2_fused_max_f
    def v2_savez(*tensors, **kw):
        return triton_v2.separable_conv1d(*tensors, save_z=True, **kw)

    variants = {"triton": triton_sepconv.separable_conv1d,
                "triton_v2": triton_v2.separable_conv1d, "triton_v2_savez": v2_savez}
    chosen = [] if args.skip_triton else [v for v in args.variants.split(",") if v]
    unknown = sorted(set(chosen) - set(variants))
    if unknown:
        sys.exit(f"--variants: unknown {unknown}; expected some of {sorted(variants)}")

    if args.dry_run:
        device = torch.device("cpu")
        suite = DRY_SUITE
        args.reps, args.warmup = min(args.reps, 3), min(args.warmup, 1)
    else:
        if not torch.cuda.is_available():
            sys.exit("bench/gpu.py needs a CUDA device (or --dry-run for a CPU logic check)")
        device = torch.device("cuda")
        suite = _suite()
    wanted = [w for w in args.only.split(",") if w] or [""]
    suite = [s for s in suite if any(w in s.name for w in wanted)]
    timer = Timer(torch, device, args.warmup, args.reps)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]

    machine = {
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else "cpu (interpreter)"),
        "torch": torch.__version__, "triton": __import__("triton").__version__,
        "python": platform.python_version(), "dry_run": args.dry_run,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "variants": chosen, "v2_fused_max_f": triton_v2.FUSED_MAX_F,
    }
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    machine["copy_GBps"] = copy_bandwidth(torch, device, timer)
    machine["matmul_TFLOPs_fp32"] = matmul_tflops(torch, device, timer, torch.float32)
    if device.type == "cuda":
        machine["matmul_TFLOPs_bf16"] = matmul_tflops(torch, device, timer, torch.bfloat16)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        machine["matmul_TFLOPs_tf32"] = matmul_tflops(torch, device, timer, torch.float32)
        torch.backends.cuda.matmul.allow_tf32 = False

    api = lambda *t, **kw: functional.separable_conv1d(*t, padding="same")
    # functional's API (kwargs for the kernels' geometry) and the compositions; functional
    # both first and last (a first contender may meet the GPU's clocks still rising)
    contenders = {"functional": api, "nhwc_mm": cuda.nhwc_mm, "ncl": cuda.ncl}
    if not args.dry_run:  # (the interpreter would take minutes for 2000 calls)
        contenders["triton_v2"] = triton_v2.separable_conv1d
        contenders["triton_v2 plain launch"] = plain_launch(triton_v2.separable_conv1d)
    contenders["functional again"] = api
    machine["host_overhead"] = host_overhead(torch, device, contenders,
                                             calls=5 if args.dry_run else 2000)
    rows: List[Dict] = []
    report = {"machine": machine, "rows": rows}
    for shape in suite:
        checkpoint(report)
        left, right = padding.padding_amounts(shape.steps, shape.kernel_size, shape.stride,
                                              shape.dilation, shape.padding)
        out_steps = padding.conv_output_length(shape.steps, shape.kernel_size, shape.stride,
                                               shape.dilation, shape.padding)
        kw = dict(stride=shape.stride, dilation=shape.dilation, pad_left=left,
                  pad_right=right, channels_last=True)
        api_kw = dict(strides=shape.stride, padding=shape.padding,
                      dilation_rate=shape.dilation)

        def dispatched(*t):  # what a user's call runs: functional's API, its dispatch
            if args.dry_run:  # (CPU tensors: functional would take the CPU kernel)
                return functional._cuda_pick(*t[:3], shape.stride, shape.dilation,
                                             True)(*t, **kw)
            return functional.separable_conv1d(*t, **api_kw)
        for dname in dtypes:
            tf32 = dname == "tf32"
            torch_default = dname == "float32_torch_default"
            dtype = torch.float32 if tf32 or torch_default else getattr(torch, dname)
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32 or torch_default
            x, w, p, b = make_inputs(torch, shape, dtype, device)
            results: Dict[str, Dict[str, float]] = {}
            nan = {"fwd": float("nan"), "fwd+bwd": float("nan")}
            errors = {}  # variant: (forward error, gradient error) against float64
            with torch.no_grad():
                y_ref = reference.separable_conv1d(*(t.double() for t in (x, w, p, b)), **kw)
            for variant in variants:
                if variant not in chosen:
                    results[variant] = nan
                    errors[variant] = (float("nan"), float("nan"))
                    continue
                tri = lambda *t, fn=variants[variant]: fn(*t, **kw)
                results[variant] = timed_pair(torch, timer, tri, [x, w, p, b])
                errors[variant] = triton_errors(torch, reference, tri, (x, w, p, b), y_ref, kw)
            ref = lambda *t: reference.separable_conv1d(*t, **kw)
            results["reference"] = timed_pair(torch, timer, ref, [x, w, p, b])
            # functional.separable_conv1d as a user calls it (its dispatch included)
            results["sepconv"] = timed_pair(torch, timer, dispatched, [x, w, p, b])
            pick = lambda *t: kernel_name(functional._cuda_pick(*t, shape.stride,
                                                                shape.dilation, True))
            with torch.no_grad():
                kernel_fwd = pick(x, w, p)
            kernel_train = pick(*(t.detach().requires_grad_() for t in (x, w, p)))
            errors["sepconv"] = triton_errors(torch, reference, dispatched, (x, w, p, b),
                                              y_ref, kw)
            tol = 1e-3 if dtype == torch.float32 and not (tf32 or torch_default) else 0.1
            scale = max(1.0, y_ref.abs().max().item())
            comps = compositions(torch, shape, x, w, p, b, left, right)
            for name, (inputs, fn, to_blf) in comps.items():
                with torch.no_grad():  # never time a composition that computes another thing
                    y = to_blf(fn(*inputs)).double()
                if y.shape != y_ref.shape or (y - y_ref).abs().max().item() > tol * scale:
                    raise AssertionError(f"composition {name} disagrees with the reference "
                                         f"on {shape.name} {dname}")
                results["cudnn:" + name] = timed_pair(torch, timer, fn, inputs)
            paired = {}  # sepconv and the best composition, alternated samples
            for phase in ("fwd", "fwd+bwd"):
                name = min((k for k in results if k.startswith("cudnn:")),
                           key=lambda k: results[k][phase])[len("cudnn:"):]
                inputs, fn, _ = comps[name]
                ours = steps(torch, dispatched, [x, w, p, b])[phase]
                t_ours, t_best = timer.paired(ours, steps(torch, fn, inputs)[phase])
                paired[phase] = (name, t_best / t_ours)
            nbytes = min_bytes(shape, out_steps, x.element_size())
            nflops = flops(shape, out_steps)
            peak = machine.get("matmul_TFLOPs_bf16" if dtype != torch.float32 else
                               ("matmul_TFLOPs_tf32" if tf32 else "matmul_TFLOPs_fp32"))
            for phase in ("fwd", "fwd+bwd"):
                best = min((k for k in results if k.startswith("cudnn:")),
                           key=lambda k: results[k][phase])
                t_tri = results["triton"][phase]
                t_v2 = results["triton_v2"][phase]
                t_v2s = results["triton_v2_savez"][phase]
                balance = peak * 1e12 / (machine["copy_GBps"] * 1e9) if peak else 0.0
                rows.append({
                    "shape": shape.name, "dtype": dname, "phase": phase,
                    "triton_ms": t_tri * 1e3, "reference_ms": results["reference"][phase] * 1e3,
                    "cudnn_ms": results[best][phase] * 1e3, "cudnn_best": best[len("cudnn:"):],
                    "cudnn_all_ms": {k[len("cudnn:"):]: v[phase] * 1e3
                                     for k, v in results.items() if k.startswith("cudnn:")},
                    "speedup_vs_cudnn": results[best][phase] / t_tri,
                    "triton_v2_ms": t_v2 * 1e3,
                    "v2_speedup_vs_cudnn": results[best][phase] / t_v2,
                    "v2_speedup_vs_triton": t_tri / t_v2,
                    "v2_pct_copy_bw": 100 * nbytes[phase] / t_v2 / 1e9 / machine["copy_GBps"],
                    "triton_v2_savez_ms": t_v2s * 1e3,
                    "v2s_speedup_vs_cudnn": results[best][phase] / t_v2s,
                    "sepconv_ms": results["sepconv"][phase] * 1e3,
                    "sepconv_kernel": kernel_fwd if phase == "fwd" else kernel_train,
                    "sepconv_max_abs_err_vs_fp64": errors["sepconv"][0],
                    "sepconv_max_rel_grad_err_vs_fp64": errors["sepconv"][1],
                    "sepconv_vs_cudnn": results[best][phase] / results["sepconv"][phase],
                    "paired_best": paired[phase][0],
                    "sepconv_vs_cudnn_paired": paired[phase][1],
                    "speedup_vs_reference": results["reference"][phase] / t_tri,
                    "min_bytes": nbytes[phase], "flops": nflops[phase],
                    "memory_bound": nflops[phase] / nbytes[phase] < balance,
                    "pct_copy_bw": 100 * nbytes[phase] / t_tri / 1e9 / machine["copy_GBps"],
                    "sepconv_pct_copy_bw": 100 * nbytes[phase] / results["sepconv"][phase]
                    / 1e9 / machine["copy_GBps"],
                    "max_abs_err_vs_fp64": errors["triton"][0],
                    "max_rel_grad_err_vs_fp64": errors["triton"][1],
                    "v2_max_abs_err_vs_fp64": errors["triton_v2"][0],
                    "v2_max_rel_grad_err_vs_fp64": errors["triton_v2"][1],
                    "v2s_max_abs_err_vs_fp64": errors["triton_v2_savez"][0],
                    "v2s_max_rel_grad_err_vs_fp64": errors["triton_v2_savez"][1],
                    "shape_args": asdict(shape),
                })
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return report


_SHORT = {"cuda": "cd", "triton_v2": "v2", "triton_v2_savez": "v2s",
          "cuda:nhwc_mm": "mm", "cuda:nhwc": "nh", "cuda:ncl": "ncl",
          "float32_torch_default": "fp32dflt"}


def print_table(report: Dict) -> None:
    m = report["machine"]
    print(f"# {m['device']}  torch {m['torch']}  triton {m['triton']}  "
          f"copy {m['copy_GBps']:.0f} GB/s  fp32 mm {m['matmul_TFLOPs_fp32']:.1f} TFLOP/s"
          + ("  (DRY RUN: interpreter on CPU, times mean nothing)" if m["dry_run"] else ""))
    if m.get("host_overhead"):
        print("host time per call of a tiny layer (us): " + ", ".join(
            f"{k[:-3]} {v:.1f}" for k, v in m["host_overhead"].items()))
    head = (f"{'shape':28s} {'dtype':8s} {'phase':8s} {'triton':>9s} {'v2':>9s} "
            f"{'v2 savez':>9s} {'cudnn':>9s} {'(best)':9s} {'ref':>9s} {'sepconv':>9s} {'sc/best':>7s} {'paired':>6s} {'is':>3s} {'x cudnn':>8s} "
            f"{'v2 x cd':>8s} {'v2s x cd':>8s} {'x ref':>7s} {'%copy':>6s} {'err':>8s} {'grad err':>8s} "
            f"{'v2 err':>8s} {'v2 grad':>8s} {'v2s grad':>8s}")
    print(head)
    print("-" * len(head))
    for r in report["rows"]:
        nan = float("nan")
        print(f"{r['shape']:28s} {_SHORT.get(r['dtype'], r['dtype']):8s} {r['phase']:8s} {r['triton_ms']:9.3f} "
              f"{r.get('triton_v2_ms', nan):9.3f} {r.get('triton_v2_savez_ms', nan):9.3f} "
              f"{r['cudnn_ms']:9.3f} {r['cudnn_best']:9s} {r['reference_ms']:9.3f} "
              f"{r['sepconv_ms']:9.3f} {r['sepconv_vs_cudnn']:7.2f} "
              f"{r.get('sepconv_vs_cudnn_paired', nan):6.2f} "
              f"{_SHORT.get(r.get('sepconv_kernel'), '?'):>3s} "
              f"{r['speedup_vs_cudnn']:8.2f} {r.get('v2_speedup_vs_cudnn', nan):8.2f} "
              f"{r.get('v2s_speedup_vs_cudnn', nan):8.2f} "
              f"{r['speedup_vs_reference']:7.2f} "
              f"{r['pct_copy_bw']:5.0f}{'*' if r['memory_bound'] else ' '} "
              f"{r['max_abs_err_vs_fp64']:8.1e} {r.get('max_rel_grad_err_vs_fp64', nan):8.1e} "
              f"{r.get('v2_max_abs_err_vs_fp64', nan):8.1e} "
              f"{r.get('v2_max_rel_grad_err_vs_fp64', nan):8.1e} "
              f"{r.get('v2s_max_rel_grad_err_vs_fp64', nan):8.1e}")
    print("sepconv err / grad err (dispatched, vs float64): "
          + ", ".join(f"{r['shape']} {r['dtype']} {r['sepconv_max_abs_err_vs_fp64']:.1e} / "
                      f"{r['sepconv_max_rel_grad_err_vs_fp64']:.1e}"
                      for r in report["rows"] if r["phase"] == "fwd"))
    print("times in ms (median); sepconv: what functional dispatches CUDA to (is: cd = kernels/cuda.py, "
          "v2 / v2s = triton_v2 / with save_z), "
          "sc/best: best composition's time / sepconv's (>= 1: never slower); paired: the same\n"
          "from alternated samples of the two; "
          "x = speedup of triton (v2 x cd: of triton_v2 over the best composition); "
          "%copy (triton): min bytes / time vs measured "
          "copy bandwidth (* = memory-bound shape)")


def plot(report: Dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    groups = sorted({(r["dtype"], r["phase"]) for r in rows})
    fig, axes = plt.subplots(len(groups), 1, figsize=(11, 2.8 * len(groups)), squeeze=False)
    for ax, (dtype, phase) in zip(axes[:, 0], groups):
        sel = [r for r in rows if r["dtype"] == dtype and r["phase"] == phase]
        names = [r["shape"] for r in sel]
        xs = range(len(sel))
        ax.bar([i - 0.27 for i in xs], [r["speedup_vs_cudnn"] for r in sel], 0.27,
               label="v1 vs best cuDNN composition")
        ax.bar(list(xs), [r.get("v2_speedup_vs_cudnn", float("nan")) for r in sel], 0.27,
               label="v2 vs best cuDNN composition")
        ax.bar([i + 0.27 for i in xs], [r["speedup_vs_reference"] for r in sel], 0.27,
               label="v1 vs reference")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("speedup (x)")
        ax.set_title(f"Triton kernels (v1 fused, v2), {dtype}, {phase}", fontsize=9)
        ax.legend(fontsize=7)
    title = report["machine"]["device"] + (" (DRY RUN)" if report["machine"]["dry_run"] else "")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = args.out
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
        out = os.path.join(folder, ("gpu-dry-" if args.dry_run else "gpu-") + stamp)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)

    def write_json(report: Dict) -> None:  # after every shape: a killed run keeps its rows
        with open(out + ".json", "w") as fh:
            json.dump(report, fh, indent=1)

    report = run(args, write_json)
    write_json(report)
    if not report["rows"]:
        print(f"no shape matched --only {args.only!r}; wrote {out}.json")
        return 1
    plot(report, out + ".png")
    print_table(report)
    print(f"wrote {out}.json and {out}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
