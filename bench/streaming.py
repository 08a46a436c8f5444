"""Streaming inference bench: memory and per-step latency of ``sepconv.stream``.

    python bench/streaming.py [--quick] [--out bench/streaming.json]

The model: 6 causal ``SeparableConv1D`` layers (16 -> 32 channels, kernel 5, dilations
1, 2, 4, 8, 16, 32, ReLU; a WaveNet-style stack, 6.7k parameters, 253 steps of receptive
field), batch 1, float32, CPU.

1. Memory.  A fresh process per run streams a random sequence of 2^16 or 2^20 steps
   through the model in chunks of 4096 steps (each chunk drawn when needed, each output
   reduced to a checksum and dropped) and reports its peak resident set size
   (``ru_maxrss``).  Beside it, the same model on the whole sequence at once.
2. Latency, on one thread (``torch.set_num_threads(1)``): the median wall time of
   ``stream(chunk)`` for a one-step chunk (the live-stream case), the whole-sequence
   forward's time per step (2^16 steps), and the per-step cost of chunks of 4096.
3. The same latencies for a keyword-spotting front end with windows and a mask
   (``Masking`` -> strided ``"valid"`` ``Conv1D`` (32, kernel 5, strides 2) ->
   ``MaxPooling1D(2)`` -> ``GRU(32)`` -> ``Dense(12)``): a one-step chunk mostly passes
   through (an output every 4 steps), the whole sequence is 2^12 steps.

No timing thresholds here or in the tests: this prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CHANNELS, WIDTH, KERNEL, DILATIONS, CHUNK = 16, 32, 5, (1, 2, 4, 8, 16, 32), 4096


def build_model():
    import torch
    import sepconv
    torch.manual_seed(0)
    layers, channels = [], CHANNELS
    for d in DILATIONS:
        layers.append(sepconv.SeparableConv1D(WIDTH, KERNEL, padding="causal",
                                              dilation_rate=d, activation="relu",
                                              input_shape=(None, channels)))
        channels = WIDTH
    return torch.nn.Sequential(*layers).eval()


def build_kws_model():
    import torch
    import sepconv
    torch.manual_seed(0)
    return sepconv.Sequential(
        sepconv.Masking(0.0, input_shape=(None, CHANNELS)),
        sepconv.Conv1D(WIDTH, KERNEL, strides=2, activation="relu"),
        sepconv.MaxPooling1D(2), sepconv.GRU(WIDTH, return_sequences=True),
        sepconv.Dense(12)).eval()


def child(mode: str, length: int) -> dict:
    """One memory run in this (fresh) process: peak RSS after it, in MiB."""
    import torch
    model = build_model()
    generator = torch.Generator().manual_seed(1)
    start = time.perf_counter()
    checksum = 0.0
    with torch.inference_mode():
        if mode == "stream":
            stream = __import__("sepconv").stream(model)
            for begin in range(0, length, CHUNK):
                n = min(CHUNK, length - begin)
                checksum += float(stream(torch.randn(1, n, CHANNELS,
                                                     generator=generator)).sum())
        else:
            checksum = float(model(torch.randn(1, length, CHANNELS,
                                               generator=generator)).sum())
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"mode": mode, "steps": length, "peak_rss_mib": peak_kib / 1024,
            "seconds": seconds, "checksum": checksum}


def memory(lengths, reps) -> list:
    rows = []
    for mode in ("stream", "whole"):
        for length in lengths:
            runs = []
            for _ in range(reps):
                out = subprocess.run([sys.executable, __file__, "--child", mode, str(length)],
                                     check=True, capture_output=True, text=True,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"})
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            rows.append({"mode": mode, "steps": length,
                         "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
                         "seconds": statistics.median(r["seconds"] for r in runs)})
    return rows


def latency(one_step_calls: int, whole_steps: int, reps: int, model=None) -> dict:
    import torch
    import sepconv
    torch.set_num_threads(1)
    model = build_model() if model is None else model
    generator = torch.Generator().manual_seed(2)
    with torch.inference_mode():
        stream = sepconv.stream(model)
        steps = torch.randn(1, one_step_calls + 200, CHANNELS, generator=generator)
        times = []
        for i in range(steps.shape[1]):
            chunk = steps[:, i:i + 1]
            t0 = time.perf_counter()
            stream(chunk)
            times.append(time.perf_counter() - t0)
        times = sorted(times[200:])  # after warm-up
        whole = torch.randn(1, whole_steps, CHANNELS, generator=generator)
        model(whole)
        chunked, full = [], []
        for _ in range(reps):  # alternating, side by side
            t0 = time.perf_counter()
            model(whole)
            full.append(time.perf_counter() - t0)
            stream.reset()
            t0 = time.perf_counter()
            for begin in range(0, whole_steps, CHUNK):
                stream(whole[:, begin:begin + CHUNK])
            chunked.append(time.perf_counter() - t0)
    return {
        "one_step_median_us": 1e6 * times[len(times) // 2],
        "one_step_p90_us": 1e6 * times[int(len(times) * 0.9)],
        "whole_sequence_us_per_step": 1e6 * statistics.median(full) / whole_steps,
        "chunks_of_4096_us_per_step": 1e6 * statistics.median(chunked) / whole_steps,
        "one_step_calls": one_step_calls, "whole_steps": whole_steps, "reps": reps,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__),
                                                      "streaming.json"))
    parser.add_argument("--child", nargs=2, metavar=("MODE", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return 0
    lengths = (2 ** 12, 2 ** 14) if args.quick else (2 ** 16, 2 ** 20)
    mem = memory(lengths, 1 if args.quick else 3)
    lat = latency(200 if args.quick else 2000, 2 ** 12 if args.quick else 2 ** 16,
                  2 if args.quick else 5)
    kws = latency(200 if args.quick else 2000, 2 ** 10 if args.quick else 2 ** 12,
                  2 if args.quick else 5, build_kws_model())
    print(f"6-layer causal SeparableConv1D model ({CHANNELS}->{WIDTH} channels, kernel "
          f"{KERNEL}, dilations {DILATIONS}), batch 1, float32")
    print("\nmemory (fresh process per run, peak RSS):")
    print(f"{'mode':<28}{'steps':>10}{'peak RSS MiB':>14}")
    for row in mem:
        mode = f"stream, chunks of {CHUNK}" if row["mode"] == "stream" else "whole sequence"
        print(f"{mode:<28}{row['steps']:>10}{row['peak_rss_mib']:>14.0f}")
    print("\nlatency, one thread:")
    print(f"  stream(one step): median {lat['one_step_median_us']:.0f} us, "
          f"p90 {lat['one_step_p90_us']:.0f} us")
    print(f"  whole sequence ({lat['whole_steps']} steps): "
          f"{lat['whole_sequence_us_per_step']:.2f} us per step")
    print(f"  stream, chunks of {CHUNK}: {lat['chunks_of_4096_us_per_step']:.2f} us per step")
    print("\nkeyword-spotting front end (Masking, strided valid Conv1D, MaxPooling1D, GRU), "
          "one thread:")
    print(f"  stream(one step): median {kws['one_step_median_us']:.0f} us, "
          f"p90 {kws['one_step_p90_us']:.0f} us")
    print(f"  whole sequence ({kws['whole_steps']} steps): "
          f"{kws['whole_sequence_us_per_step']:.2f} us per step")
    print(f"  stream, chunks of {CHUNK}: {kws['chunks_of_4096_us_per_step']:.2f} us per step")
    with open(args.out, "w") as f:
        json.dump({"memory": mem, "latency": lat, "kws_latency": kws,
                   "torch_threads_latency": 1}, f, indent=1)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
