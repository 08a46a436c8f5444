"""A/B of Conv1D's inference forward as GEMMs (``kernels/gemm1d.py``'s ``gemm_forward``,
forms ``taps`` and ``unfold``) against the path it replaces (the kernel
``sepconv.functional._pick_conv_kernel`` picks with ``gemm1d.SMALL_FORWARD = False``: the
reference kernel, torch's oneDNN / THNN convolution), over a grid of shapes, each call
through ``sepconv.functional.conv`` (the dispatch and the library's thread policy, as a
served model runs it); the rule in ``gemm1d._small_rule`` is read off its JSON.

Each (form, thread count) runs in its own process, the processes taking turns (A B C,
C B A, ...) for ``--rounds`` rounds; a process times every shape of the grid: the median of
``--reps`` repetitions of enough calls for ~``--ms`` ms, CPU time (``time.process_time``:
all threads' time) and wall time, under ``torch.inference_mode()`` with the layer's
weights as ``Parameter`` s (the reference's remembered weight layout applies, as in a
served model).  The figure per shape is the median over rounds.

    python bench/conv1d_small_ab.py --rounds 3 --out grid.json     # the grid, ~20 min
    python bench/conv1d_small_ab.py --set confirm --rounds 7 --threads 1   # the targets

``bench/conv1d_small.json`` holds both runs of 2026-11-27 ("grid", "confirm").
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time

FORMS = ("current", "taps", "unfold")
# (batch, steps, channels in = out, kernel_size, stride, dilation, padding)
BATCHES, STEPS, CHANNELS, KERNELS = (1, 4, 16, 32), (50, 250, 1000, 4000), (16, 64, 256), \
    (1, 2, 3, 5, 11)
GEOMETRIES = ((1, 1, "same"), (2, 1, "same"), (1, 8, "causal"), (1, 64, "causal"))
#: shapes above this many multiply-adds per call are left out (seconds per call: oneDNN's
#: blocked kernels rule there, and the grid would take hours)
MAX_WORK = 2 ** 29
QUICK = [(1, 101, 64, 11, 2, 1, "same", 128), (1, 4000, 32, 2, 1, 8, "causal", 32),
         (32, 101, 64, 11, 2, 1, "same", 128), (4, 4000, 32, 2, 1, 8, "causal", 32)]
#: the rule's target shapes (the keyword-spotting stem, WaveNet's k2 layers at batch 1, both
#: data formats: a trailing "first" is channels_first) and the grid's chosen shapes nearest
#: 1.0, measured again with more rounds
CONFIRM = [(1, 101, 64, 11, 2, 1, "same", 128), (1, 101, 64, 11, 2, 1, "same", 128, "first")] \
    + [(1, 4000, 32, 2, 1, d, "causal", 32) for d in (1, 2, 4, 8, 16, 32, 64)] \
    + [(1, 4000, 32, 2, 1, 8, "causal", 32, "first"), (4, 1000, 32, 2, 1, 8, "causal", 32),
       (1, 2000, 64, 2, 1, 8, "causal", 64), (1, 1000, 64, 2, 1, 64, "causal", 64),
       (4, 1000, 16, 3, 1, 64, "causal", 16), (1, 250, 16, 2, 1, 1, "same", 16),
       (1, 50, 64, 5, 1, 1, "same", 64), (1, 250, 16, 11, 1, 1, "same", 16),
       (32, 250, 16, 1, 2, 1, "same", 16), (1, 1000, 64, 3, 1, 8, "causal", 64),
       (4, 1000, 16, 3, 1, 8, "causal", 16), (1, 50, 256, 2, 1, 1, "same", 256),
       (1, 60, 256, 3, 1, 1, "same", 256), (16, 50, 16, 2, 1, 64, "causal", 16),
       (1, 4000, 64, 2, 1, 8, "causal", 64)]


def grid():
    out = []
    for n, steps, c, k, (s, d, pad) in itertools.product(BATCHES, STEPS, CHANNELS, KERNELS,
                                                         GEOMETRIES):
        if k == 1 and (d > 1 or s == 1):  # k1 stride 1: kernels/pointwise.py's
            continue
        out_steps = -(-steps // s)
        if n * out_steps * k * c * c > MAX_WORK:
            continue
        out.append((n, steps, c, k, s, d, pad, c))
    return out


def _worker(form, threads, cases, reps, ms):
    import torch
    torch.set_num_threads(threads)
    from sepconv import functional as F
    from sepconv.kernels import gemm1d, memory
    memory.keep_freed_memory()
    gemm1d.SMALL_FORWARD = form != "current"
    if form != "current":
        gemm1d._small_rule = lambda *a, form=form: form
    gen = torch.Generator().manual_seed(0)
    result = []
    with torch.inference_mode():
        for n, steps, c, k, s, d, pad, f, *fmt in cases:
            fmt = "channels_first" if fmt == ["first"] else "channels_last"
            x = torch.randn(n, steps, c, generator=gen)
            if fmt == "channels_first":
                x = x.transpose(1, 2).contiguous()
            with torch.inference_mode(False):
                w = torch.nn.Parameter(torch.randn(k, c, f, generator=gen) * 0.1)
                b = torch.nn.Parameter(torch.randn(f, generator=gen))

            def call():
                return F.conv(x, w, b, strides=s, padding=pad, dilation_rate=d,
                              data_format=fmt)
            call()
            t0 = time.perf_counter()
            call()
            calls = max(1, min(200, int(ms / 1e3 / max(time.perf_counter() - t0, 1e-6))))
            cpu, wall = [], []
            for _ in range(reps):
                c0, w0 = time.process_time(), time.perf_counter()
                for _ in range(calls):
                    call()
                cpu.append((time.process_time() - c0) / calls * 1e6)
                wall.append((time.perf_counter() - w0) / calls * 1e6)
            result.append((statistics.median(cpu), statistics.median(wall)))
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ms", type=float, default=4.0)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--set", choices=("grid", "quick", "confirm"), default="grid")
    ap.add_argument("--out", default="")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cases = {"grid": grid, "quick": lambda: QUICK, "confirm": lambda: CONFIRM}[args.set]()
    if args.worker:
        form, threads = args.worker
        res = _worker(form, int(threads), cases, args.reps, args.ms)
        sys.stdout.write("@@" + json.dumps(res) + "\n")
        return
    threads = [int(t) for t in args.threads.split(",")]
    times = {(f, t): [] for f in FORMS for t in threads}
    order = [(f, t) for t in threads for f in FORMS]
    for r in range(args.rounds):
        for form, t in (order if r % 2 == 0 else order[::-1]):
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", form, str(t),
                   "--reps", str(args.reps), "--ms", str(args.ms), "--set", args.set]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            times[form, t].append(json.loads(out.split("@@")[-1]))
            print(f"round {r} {form} {t} thread(s) done", file=sys.stderr, flush=True)
    rows = []
    for i, case in enumerate(cases):
        row = dict(zip(("batch", "steps", "channels", "kernel_size", "stride", "dilation",
                        "padding", "filters", "data_format"), case + ("last",) * (len(case) < 9)))
        for form, t in times:
            runs = times[form, t]
            row[f"{form}_cpu_{t}"] = statistics.median(run[i][0] for run in runs)
            row[f"{form}_wall_{t}"] = statistics.median(run[i][1] for run in runs)
        rows.append(row)
    for row in rows:
        ratios = " ".join(f"{form}/{t}t {row[f'{form}_cpu_{t}'] / row[f'current_cpu_{t}']:.2f}"
                          for t in threads for form in FORMS[1:])
        print(f"{row['batch']:3d} x {row['steps']:5d} x {row['channels']:3d} "
              f"k{row['kernel_size']:<2d} s{row['stride']} d{row['dilation']:<2d} "
              f"{row['data_format']:5s} current {row['current_cpu_1']:9.1f} us  {ratios}")
    if args.out:
        import torch
        columns = list(rows[0])  # (one list per row: the grid's JSON stays small)
        with open(args.out, "w") as fh:
            json.dump({"cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0]
                       .strip(" :\t"), "torch": torch.__version__, "rounds": args.rounds,
                       "reps": args.reps, "command": " ".join(sys.argv), "columns": columns,
                       "rows": [[row.get(c) for c in columns] for row in rows]}, fh,
                      separators=(",", ":"))


if __name__ == "__main__":
    main()
