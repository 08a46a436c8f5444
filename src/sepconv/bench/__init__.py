"""``python -m sepconv bench``: sepconv against its peers and the machine's roofline.

For every shape of :mod:`sepconv.bench.shapes`, in one run, side by side:

- ``sepconv``: :func:`sepconv.functional.separable_conv1d` (the dispatcher's choice),
  channels_last ``(batch, steps, channels)``, Keras' layout;
- ``torch``: the composition a PyTorch user writes, ``nn.Conv1d(groups=C)`` then a 1x1
  ``nn.Conv1d``, on ``(batch, channels, steps)`` (explicit ``F.pad`` for causal/strided);
- ``keras3``: Keras 3 ``SeparableConv1D`` on the torch backend (causal via a left pad, as
  Keras 3 has no causal padding for this layer), skipped if Keras 3 is missing;
- ``tf-keras``: tf-keras ``SeparableConv1D`` in its own process (TensorFlow and torch
  thread pools must not fight), inside ``tf.function``; skipped if TensorFlow is missing;
- ``roofline``: ``max(FLOPs / matmul rate, bytes / copy rate)``, both rates measured in
  the same run (a 1024^3 float32 matmul, the faster of ``torch.mm`` and oneDNN's inner
  product; a 32 MiB copy), interleaved with the peers.

Modes: ``fwd`` (inference, no autograd) and ``fb`` (forward + backward: gradients of the
input and all weights), float32.  Each shape runs ``--rounds`` rounds; in each round every
implementation runs ``--reps`` timed calls, implementations alternating (in the orders of
a Williams design, ``_order``: each runs right after each other one equally often) so
machine noise and each one's effect on the next spread evenly; the figure is the median over rounds of each
round's mean call time (the first call of a round follows the other implementations, the
next ones its own: see ``_round_median``), after
two warm-up calls.  Threads: ``torch.set_num_threads(--threads)`` and TensorFlow's
intra- and inter-op pools set to the same number.

The run measures in the environment the user has: ``OMP_WAIT_POLICY`` and the other
variables are left as they are (``--omp-wait-policy passive`` or ``active`` re-runs the
bench with that setting, for comparison: on a shared, loaded machine OpenMP's spinning
threads lost their time slices and slowed every torch implementation, sepconv included).
The JSON records the CPU model and its vector extensions (AVX2, AVX-512, ...) beside the
figures, and the 1-minute load average before and after (others' work on the cores);
``bench.txt`` opens with the command and that machine line.

Peak memory of a training step (``fb``) is measured per implementation in a child
process with ``MALLOC_MMAP_THRESHOLD_=16384`` (so every tensor is its own mapping and
freed memory leaves the process): peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs``) minus the resident set before the step, after one warm-up step.

``--family`` runs the Keras convolution family instead (:mod:`sepconv.bench.family`:
MobileNet depthwise, Xception separable, WaveNet causal Conv1D, U-Net Conv2DTranspose, 3D
Conv3D), with the same rounds, medians and roofline; its peers are the sepconv layer, the
plain torch module on the same channels_last data (layout conversion counted), that module
on channels_first data, and the tf-keras layer.  ``--tiny`` shrinks the family's shapes
to a few steps per axis: a smoke run in seconds.

Outputs (``--out``, default ``bench/results/``; ``bench/results/family/`` with
``--family``): a table on the terminal, ``bench.json``, ``bench.txt``, ``bench.md`` (the
tables in Markdown) and ``bench.png`` (ratios per shape, log scale).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

from .shapes import SHAPES, Shape

MODES = ("fwd", "fb")
PEERS = ("sepconv", "torch", "keras3", "tf-keras")


# ----------------------------------------------------------------------------- peers

class _TorchPeer:
    """An in-process implementation: ``setup(shape)`` returns ``{mode: callable}``."""

    name = ""
    version = ""

    def available(self) -> Optional[str]:
        return None

    def setup(self, shape: Shape) -> Dict[str, Callable[[], object]]:
        raise NotImplementedError

    def time(self, fn: Callable[[], object], reps: int) -> List[float]:
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return times

    def close(self) -> None:
        pass


def _train_step(forward: Callable, x, dy, params) -> Callable[[], object]:
    def step():
        for p in params:
            p.grad = None
        x.grad = None
        forward(x).backward(dy)
    return step


def _inference(forward: Callable, x) -> Callable[[], object]:
    import torch

    def run():
        with torch.no_grad():
            return forward(x)
    return run


class SepconvPeer(_TorchPeer):
    name = "sepconv"

    def setup(self, s: Shape):
        import torch
        from .. import functional
        import sepconv
        self.version = f"sepconv {sepconv.__version__}, torch {torch.__version__}"
        g = torch.Generator().manual_seed(0)
        cm = s.channels * s.depth_multiplier
        dw = torch.randn(s.kernel_size, s.channels, s.depth_multiplier, generator=g)
        pw = torch.randn(cm, s.filters, generator=g) / cm ** 0.5
        b = torch.zeros(s.filters)
        params = [p.requires_grad_() for p in (dw, pw, b)]
        x = torch.randn(s.batch, s.steps, s.channels, generator=g)

        def forward(x):
            return functional.separable_conv1d(x, dw, pw, b, strides=s.strides,
                                               padding=s.padding, dilation_rate=s.dilation_rate)
        dy = torch.randn(s.batch, s.out_steps, s.filters, generator=g)
        xg = x.clone().requires_grad_()
        return {"fwd": _inference(forward, x), "fb": _train_step(forward, xg, dy, params)}


class TorchCompositionPeer(_TorchPeer):
    name = "torch"

    def setup(self, s: Shape):
        import torch
        from torch import nn
        import torch.nn.functional as F
        from .. import padding as _padding
        self.version = f"torch {torch.__version__}"
        torch.manual_seed(0)
        cm = s.channels * s.depth_multiplier
        builtin_same = s.padding == "same" and s.strides == 1
        depthwise = nn.Conv1d(s.channels, cm, s.kernel_size, stride=s.strides,
                              dilation=s.dilation_rate, groups=s.channels, bias=False,
                              padding="same" if builtin_same else 0)
        pointwise = nn.Conv1d(cm, s.filters, 1)
        pad = (0, 0) if builtin_same else _padding.padding_amounts(
            s.steps, s.kernel_size, s.strides, s.dilation_rate, s.padding)

        def forward(x):
            if pad != (0, 0):
                x = F.pad(x, pad)
            return pointwise(depthwise(x))
        g = torch.Generator().manual_seed(0)
        x = torch.randn(s.batch, s.channels, s.steps, generator=g)
        dy = torch.randn(s.batch, s.filters, s.out_steps, generator=g)
        params = list(depthwise.parameters()) + list(pointwise.parameters())
        xg = x.clone().requires_grad_()
        return {"fwd": _inference(forward, x), "fb": _train_step(forward, xg, dy, params)}


class Keras3Peer(_TorchPeer):
    name = "keras3"

    def available(self) -> Optional[str]:
        if "keras" not in sys.modules:
            os.environ["KERAS_BACKEND"] = "torch"
        try:
            import keras
        except Exception as exc:
            return f"Keras 3 not importable ({type(exc).__name__}: {exc})"
        if keras.backend.backend() != "torch":
            return f"Keras 3 loaded with backend {keras.backend.backend()!r}, not torch"
        self.version = f"keras {keras.__version__} (torch backend)"
        return None

    def setup(self, s: Shape):
        import keras
        import torch
        import torch.nn.functional as F
        causal = s.padding == "causal"
        layer = keras.layers.SeparableConv1D(
            s.filters, s.kernel_size, strides=s.strides, dilation_rate=s.dilation_rate,
            depth_multiplier=s.depth_multiplier, padding="valid" if causal else s.padding)
        left = (s.kernel_size - 1) * s.dilation_rate

        def forward(x):
            return layer(F.pad(x, (0, 0, left, 0)) if causal else x)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(s.batch, s.steps, s.channels, generator=g)
        layer(x)
        dy = torch.randn(s.batch, s.out_steps, s.filters, generator=g)
        params = [v.value for v in layer.trainable_variables]
        xg = x.clone().requires_grad_()
        return {"fwd": _inference(forward, x), "fb": _train_step(forward, xg, dy, params)}


class TfKerasPeer:
    """tf-keras in a child process (see ``_tf_worker.py``)."""

    name = "tf-keras"
    version = ""

    def __init__(self, threads: int):
        self.threads = threads
        self.proc: Optional[subprocess.Popen] = None

    def _ask(self, msg: Dict) -> Dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def _read(self) -> Dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("tf-keras worker exited")
            if line.startswith("@@"):
                return json.loads(line[2:])

    def available(self) -> Optional[str]:
        import importlib.util
        if importlib.util.find_spec("tensorflow") is None or \
                importlib.util.find_spec("tf_keras") is None:
            return "tensorflow / tf-keras not installed"
        worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_tf_worker.py")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
                   OMP_NUM_THREADS=str(self.threads))
        env.pop("KERAS_BACKEND", None)  # set for Keras 3 in this process; not TensorFlow's
        self.proc = subprocess.Popen([sys.executable, worker, str(self.threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)
        try:
            hello = self._read()
        except RuntimeError as exc:
            hello = {"ok": False, "error": str(exc)}
        if not hello.get("ok"):
            self.close()
            return f"tf-keras worker failed: {hello.get('error')}"
        self.version = hello["version"]
        return None

    def setup(self, s: Shape):
        reply = self._ask({"op": "setup", "shape": s.as_dict()})
        if not reply.get("ok"):
            raise RuntimeError(reply.get("error"))
        return {mode: mode for mode in MODES}

    def time(self, mode: str, reps: int) -> List[float]:
        reply = self._ask({"op": "time", "mode": mode, "reps": reps})
        if "times" not in reply:
            raise RuntimeError(reply.get("error"))
        return reply["times"]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.kill()
        self.proc = None


def _loadavg() -> Optional[float]:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


# ----------------------------------------------------------------------------- roofline

class Roofline:
    """Matmul GFLOP/s and copy GB/s, sampled between the peers' calls.

    The matmul rate is the faster of the GEMMs torch offers on the machine: ``torch.mm``
    (MKL or OpenBLAS) and oneDNN's inner product (``torch.ops.mkldnn._linear_pointwise``,
    what torch's 1x1 convolutions and TensorFlow run; on AMD CPUs it is the faster, MKL
    taking a non-AVX-512 path), each a median over the run: a roofline that a peer
    beats is no roofline."""

    def __init__(self):
        import torch
        self.a = torch.randn(1024, 1024)
        self.b = torch.randn(1024, 1024)
        self.c = torch.empty(1024, 1024)
        self.src = torch.randn(8 * 1024 * 1024)
        self.dst = torch.zeros_like(self.src)  # touched: no page faults in the timing
        self.gemms: Dict[str, Callable[[], object]] = {
            "torch.mm": lambda: torch.mm(self.a, self.b, out=self.c)}
        try:
            onednn = torch.ops.mkldnn._linear_pointwise
            onednn(self.a[:4, :4], self.b[:4, :4], None, "none", [], "")
            # the same product a @ b (a linear layer's weight is the transpose, read in place)
            self.gemms["onednn"] = lambda: onednn(self.a, self.b.t(), None, "none", [], "")
        except (AttributeError, RuntimeError):
            pass
        self.matmuls: Dict[str, List[float]] = {name: [] for name in self.gemms}
        self.copy: List[float] = []

    @property
    def matmul(self) -> List[float]:
        """The samples of the faster GEMM."""
        return self.matmuls[self.gemm()]

    def gemm(self) -> str:
        """The name of the faster GEMM (by median rate)."""
        return max(self.matmuls, key=lambda n: statistics.median(self.matmuls[n] or [0.0]))

    def sample(self, reps: int = 3) -> None:
        for _ in range(reps):
            for name, gemm in self.gemms.items():
                t0 = time.perf_counter()
                gemm()
                self.matmuls[name].append(2 * 1024 ** 3 / (time.perf_counter() - t0) / 1e9)
            t0 = time.perf_counter()
            self.dst.copy_(self.src)
            self.copy.append(2 * 4 * self.src.numel() / (time.perf_counter() - t0) / 1e9)

    def rates(self) -> Tuple[float, float]:
        return statistics.median(self.matmul), statistics.median(self.copy)

    def seconds(self, s: Shape, mode: str) -> float:
        gflops, gbs = self.rates()
        fb = mode == "fb"
        return max(s.flops(fb) / (gflops * 1e9), s.bytes(fb) / (gbs * 1e9))


# ----------------------------------------------------------------------------- memory

def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(key + r":\s+(\d+)", f.read()).group(1)) * 1024


def _memory_child(peer_name: str, shapes: List, threads: int, family: bool = False) -> int:
    """Print ``{shape: peak extra bytes of one training step}`` as JSON."""
    import gc
    import torch
    torch.set_num_threads(threads)
    if family:
        from . import family as _family
        peer = _family.memory_peer(peer_name)
    else:
        peer = {"sepconv": SepconvPeer, "torch": TorchCompositionPeer,
                "keras3": Keras3Peer}[peer_name]()
    if peer.available() is not None:
        print(json.dumps({}))
        return 0
    result = {}
    for s in shapes:
        step = peer.setup(s)["fb"]
        step()
        gc.collect()
        before = _status_bytes("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        step()
        result[s.name] = _status_bytes("VmHWM") - before
        del step
        gc.collect()
    print(json.dumps(result))
    return 0


def _measure_memory(peers: List[str], names: List[str], threads: int,
                    extra: Tuple[str, ...] = ()) -> Dict[str, Dict]:
    out: Dict[str, Dict] = {}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="16384")
    for peer in peers:
        cmd = [sys.executable, "-m", "sepconv", "bench", "--memory-child", peer,
               "--only", ",".join(names), "--threads", str(threads), *extra]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
            out[peer] = json.loads(res.stdout.strip().splitlines()[-1])
        except Exception as exc:  # memory is informative; never fail the run for it
            print(f"  (peak memory of {peer} not measured: {type(exc).__name__})")
            out[peer] = {}
    return out


# ----------------------------------------------------------------------------- report

def _order(n: int, r: int) -> List[int]:
    """The implementations' order in round ``r``: the rows of a Williams design, in turn,
    so that over ``n`` rounds (``2n`` for an odd ``n``) each implementation runs right
    after each other one equally often.

    Which implementation runs just before matters: the first call after tf-keras' process
    (whose threads ran while this process's OpenMP threads fell asleep) ran 0.5-0.7 ms
    slower than after a peer in this process (issue 15).  The rotations of one list that
    the bench used before keep every implementation behind the same predecessor (sepconv
    always followed tf-keras; the torch composition never did)."""
    first = [0]
    lo, hi = 1, n - 1
    while len(first) < n:  # 0, 1, n-1, 2, n-2, ...
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    rows = [[(i + k) % n for i in first] for k in range(n)]
    if n % 2:
        rows += [row[::-1] for row in rows]
    return rows[r % len(rows)]


def _round_median(samples: List[float], reps: int) -> float:
    """The median over rounds of each round's mean call time (``reps`` calls a round).

    The calls of a round are not alike: the first follows the other implementations' runs
    (caches holding their data, this process's OpenMP threads asleep while TensorFlow's
    process ran: up to ~0.7 ms more on the project's VM), the next ones follow its own.
    With two calls a round the times fall in two clusters and the median of all calls
    lands in the gap between them, where one stray sample moves it across the whole gap
    (matchboxnet_kws: 0.83 <-> 1.01 ms between runs of the same code, issue 15); the
    rounds' means weigh both kinds of call alike in every run."""
    means = [statistics.fmean(samples[i:i + reps]) for i in range(0, len(samples), reps)]
    return statistics.median(means)


def _geomean(values: List[float]) -> Optional[float]:
    values = [v for v in values if v and v > 0 and math.isfinite(v)]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _fmt(v: Optional[float], spec: str = "8.2f") -> str:
    if v is not None:
        return format(v, spec)
    width = spec.split(".")[0]
    return "-".rjust(int(width)) if width else "-"


def _summaries(rows: List[Dict], peers: List[str]) -> Dict[str, Dict[str, Optional[float]]]:
    geo: Dict[str, Dict[str, Optional[float]]] = {}
    for mode in MODES:
        g = {}
        for other in [p for p in peers if p != "sepconv"] + ["roofline"]:
            g[f"sepconv/{other}"] = _geomean([r["ratios"][mode].get(other) for r in rows])
        g["sepconv/roofline (large shapes)"] = _geomean(
            [r["ratios"][mode].get("roofline") for r in rows if r["shape"]["large"]])
        geo[mode] = g
    return geo


def _print_table(rows: List[Dict], peers: List[str], geo: Dict, memory: Dict) -> str:
    cols = peers + ["roofline"]
    lines = []
    for mode, title in (("fwd", "forward (inference), ms"),
                        ("fb", "forward + backward (training step), ms")):
        lines.append(f"\n{title}; median")
        lines.append(f"{'shape':24s}" + "".join(f"{c:>10s}" for c in cols)
                     + "".join(f"{'/' + c:>10s}" for c in cols if c != "sepconv"))
        for r in rows:
            ms = r["ms"][mode]
            lines.append(f"{r['shape']['name']:24s}"
                         + "".join(f"{_fmt(ms.get(c), '10.2f')}" for c in cols)
                         + "".join(f"{_fmt(r['ratios'][mode].get(c), '10.2f')}"
                                   for c in cols if c != "sepconv"))
        lines.append(f"{'geomean sepconv/peer':24s}" + " " * 10 * len(cols)
                     + "".join(f"{_fmt(geo[mode].get('sepconv/' + c), '10.2f')}"
                               for c in cols if c != "sepconv"))
        lines.append(f"  sepconv/roofline on large shapes: "
                     f"{_fmt(geo[mode]['sepconv/roofline (large shapes)'], '.2f')}")
    if memory:
        lines.append("\npeak extra memory of a training step, MiB")
        mpeers = list(memory)
        lines.append(f"{'shape':24s}" + "".join(f"{p:>10s}" for p in mpeers))
        for r in rows:
            name = r["shape"]["name"]
            lines.append(f"{name:24s}" + "".join(
                _fmt(memory[p].get(name) / 2 ** 20 if name in memory[p] else None, "10.1f")
                for p in mpeers))
    text = "\n".join(lines)
    print(text)
    return text


def _markdown(rows: List[Dict], peers: List[str], geo: Dict) -> str:
    """The forward and forward+backward tables as Markdown (``bench.md``), for READMEs."""
    others = [p for p in peers if p != "sepconv"]
    head = ("| shape | mode | " + " | ".join(f"{p} ms" for p in peers) + " | "
            + " | ".join(f"sepconv / {p}" for p in others) + " |")
    lines = [head, "|" + "---|" * (2 + len(peers) + len(others))]
    for mode in MODES:
        for r in rows:
            ms, ratio = r["ms"][mode], r["ratios"][mode]
            lines.append(f"| {r['shape']['name']} | {mode} | "
                         + " | ".join(_fmt(ms.get(p), ".2f").strip() for p in peers) + " | "
                         + " | ".join(_fmt(ratio.get(p), ".2f").strip() for p in others) + " |")
        lines.append(f"| geomean | {mode} | " + " | ".join("" for _ in peers) + " | "
                     + " | ".join(_fmt(geo[mode].get("sepconv/" + p), ".2f").strip()
                                  for p in others) + " |")
    return "\n".join(lines) + "\n"


def _plot(rows: List[Dict], peers: List[str], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    others = [p for p in peers if p != "sepconv"] + ["roofline"]
    names = [r["shape"]["name"] for r in rows]
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.9 * len(names) + 3), 8), sharex=True)
    width = 0.8 / len(others)
    for ax, mode, title in zip(axes, MODES, ("forward (inference)", "forward + backward")):
        for i, other in enumerate(others):
            vals = [r["ratios"][mode].get(other) or float("nan") for r in rows]
            ax.bar([j + (i - (len(others) - 1) / 2) * width for j in range(len(names))],
                   vals, width, label=f"sepconv / {other}")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.set_ylabel("time ratio (lower is better)")
        ax.set_title(f"{title}, float32, channels_last")
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].legend(fontsize=8, ncol=len(others))
    axes[1].set_xticks(range(len(names)))
    axes[1].set_xticklabels(names, rotation=35, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- main

def _parse(argv: List[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m sepconv bench",
                                 description="Benchmark sepconv against its peers.")
    ap.add_argument("--quick", action="store_true", help="4 shapes, fewer repetitions")
    ap.add_argument("--family", action="store_true",
                    help="the Keras convolution family's suite (sepconv.bench.family) "
                         "instead of SeparableConv1D's")
    ap.add_argument("--tiny", action="store_true",
                    help="with --family: every shape shrunk to a few steps (smoke run)")
    ap.add_argument("--out", default=None,
                    help="output folder (default: bench/results, bench/results/family "
                         "with --family)")
    ap.add_argument("--threads", type=int, default=2, help="threads for every peer (2)")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds per shape")
    ap.add_argument("--reps", type=int, default=None, help="timed calls per round")
    ap.add_argument("--only", default="", help="comma-separated shape names")
    ap.add_argument("--skip", default="", help="comma-separated peers to leave out")
    ap.add_argument("--no-memory", action="store_true", help="skip peak-memory children")
    ap.add_argument("--omp-wait-policy", default="inherit",
                    choices=("passive", "active", "inherit"),
                    help="OMP_WAIT_POLICY for torch (default: the environment's, as users "
                         "have it; passive helps on a loaded shared machine)")
    ap.add_argument("--memory-child", default="", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def cpu_info() -> Dict[str, object]:
    """The CPU model and the vector extensions that matter for the kernels (Linux)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    wanted = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
              "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")
    return {"model": model, "vector_extensions": [f for f in wanted if f in flags]}


def main(command: str = "bench", argv: Optional[List[str]] = None) -> int:
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    if args.tiny and not args.family:
        print("--tiny applies to --family only", file=sys.stderr)
        return 2
    suite = SHAPES
    if args.family:
        from . import family as _family
        suite = [s.tiny() for s in _family.SHAPES] if args.tiny else _family.SHAPES
    if args.out is None:
        args.out = os.path.join("bench", "results", *(["family"] if args.family else []))
    shapes = [s for s in suite if (not args.quick or s.quick)]
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {s.name for s in suite}
        if unknown:
            print(f"unknown shape(s): {', '.join(sorted(unknown))}; choose from "
                  f"{', '.join(s.name for s in suite)}", file=sys.stderr)
            return 2
        shapes = [s for s in suite if s.name in wanted]
    if args.memory_child:
        return _memory_child(args.memory_child, shapes, args.threads, args.family)
    policy = args.omp_wait_policy.upper()
    if policy != "INHERIT" and os.environ.get("OMP_WAIT_POLICY", "").upper() != policy:
        # OpenMP reads it once, when torch loads: run again in a process that has it.
        env = dict(os.environ, OMP_WAIT_POLICY=policy)
        argv = list(sys.argv[1:] if argv is None else argv)
        return subprocess.call([sys.executable, "-m", "sepconv", "bench", *argv], env=env)

    import torch
    torch.set_num_threads(args.threads)
    rounds = args.rounds or (4 if args.quick else 8)
    reps = args.reps or 2
    skip = set(filter(None, args.skip.split(",")))

    if args.family:
        candidates = _family.peers() + [TfKerasPeer(args.threads)]
    else:
        candidates = [SepconvPeer(), TorchCompositionPeer(), Keras3Peer(),
                      TfKerasPeer(args.threads)]
    peers, notes = [], []
    for p in candidates:
        if p.name in skip and p.name != "sepconv":
            notes.append(f"{p.name}: skipped (--skip)")
            continue
        why = p.available()
        if why is None:
            peers.append(p)
        else:
            notes.append(f"{p.name}: skipped, {why}")
    for n in notes:
        print("note:", n)
    names = [p.name for p in peers]
    roof = Roofline()
    started = time.time()
    load_before = _loadavg()
    rows = []
    try:
        for s in shapes:
            print(f"[{time.time() - started:6.1f}s] {s.name}: {s.source}", flush=True)
            fns = {}
            for p in peers:
                fns[p.name] = p.setup(s)
                for mode in MODES:  # warm-up
                    if isinstance(p, TfKerasPeer):
                        p.time(mode, 2)
                    else:
                        p.time(fns[p.name][mode], 2)
            times = {p.name: {m: [] for m in MODES} for p in peers}
            for r in range(rounds):
                order = [peers[i] for i in _order(len(peers), r)]
                roof.sample(1)
                for mode in MODES:
                    for p in order:
                        arg = mode if isinstance(p, TfKerasPeer) else fns[p.name][mode]
                        times[p.name][mode] += p.time(arg, reps)
            del fns
            ms = {m: {n: 1e3 * _round_median(times[n][m], reps) for n in names}
                  for m in MODES}
            for m in MODES:
                ms[m]["roofline"] = 1e3 * roof.seconds(s, m)
            ratios = {m: {c: ms[m]["sepconv"] / v for c, v in ms[m].items() if c != "sepconv"}
                      for m in MODES}
            rows.append({"shape": s.as_dict(), "ms": ms, "ratios": ratios,
                         "samples_ms": {n: {m: [1e3 * t for t in times[n][m]] for m in MODES}
                                        for n in names}})
    finally:
        for p in peers:
            p.close()
    # roofline with the rates of the whole run (medians over all samples)
    for r, s in zip(rows, shapes):
        for m in MODES:
            r["ms"][m]["roofline"] = 1e3 * roof.seconds(s, m)
            r["ratios"][m]["roofline"] = r["ms"][m]["sepconv"] / r["ms"][m]["roofline"]

    memory = {}
    if not args.no_memory:
        print(f"[{time.time() - started:6.1f}s] peak memory of a training step", flush=True)
        memory = _measure_memory([n for n in names if n in ("sepconv", "torch")],
                                 [s.name for s in shapes], args.threads,
                                 ("--family",) + (("--tiny",) if args.tiny else ())
                                 if args.family else ())
        for r in rows:
            r["peak_bytes"] = {p: memory[p].get(r["shape"]["name"]) for p in memory}

    geo = _summaries(rows, names)
    gflops, gbs = roof.rates()
    cpu = cpu_info()
    load_after = _loadavg()
    machine = (f"machine: {cpu['model']} ({', '.join(cpu['vector_extensions']) or 'no AVX'}), "
               f"{os.cpu_count()} cpus, threads {args.threads}; "
               f"matmul {gflops:.0f} GFLOP/s ({roof.gemm()}; "
               + ", ".join(f"{n} {statistics.median(v):.0f}" for n, v in roof.matmuls.items())
               + f"), copy {gbs:.1f} GB/s (medians of this run); load average "
               + " -> ".join("?" if v is None else f"{v:.2f}" for v in (load_before, load_after))
               + f"; {time.time() - started:.0f} s")
    print("\n" + machine)
    text = _print_table(rows, names, geo, memory)

    os.makedirs(args.out, exist_ok=True)
    command_line = "python -m sepconv bench " + " ".join(argv if argv is not None
                                                         else sys.argv[1:])
    report = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command_line.strip(),
            "python": platform.python_version(),
            "versions": {p.name: p.version for p in peers},
            "cpus": os.cpu_count(), "threads": args.threads, "cpu": cpu,
            "rounds": rounds, "reps": reps,
            "matmul_gflops": gflops, "copy_gbs": gbs,
            "matmul_gflops_max": max(roof.matmul), "copy_gbs_max": max(roof.copy),
            "matmul_gemm": roof.gemm(),
            "matmul_gflops_by_gemm": {n: statistics.median(v)
                                      for n, v in roof.matmuls.items()},
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
            # 1-minute load average before and after the timings: others' work on the cores
            "load_average": [load_before, load_after],
            "notes": notes,
        },
        "geomeans": geo,
        "rows": rows,
        "memory_bytes": memory,
    }
    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "bench.txt"), "w") as f:
        f.write(f"{command_line.strip()}\n{machine}\n{text}\n")
    with open(os.path.join(args.out, "bench.md"), "w") as f:
        f.write(_markdown(rows, names, geo))
    try:
        _plot(rows, names, os.path.join(args.out, "bench.png"))
    except Exception as exc:
        print(f"note: chart not drawn ({type(exc).__name__}: {exc})")
    print(f"\nwrote {os.path.join(args.out, 'bench.json')}, bench.txt, bench.md, bench.png")
    return 0
