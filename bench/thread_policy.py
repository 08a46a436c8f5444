"""The library's CPU thread policy (``sepconv.kernels.threads``) on and off, side by side.

For each shape of the convolution family's bench suite (``sepconv.bench.family``), the
sepconv layer's inference call and training step, alternating call by call between the
policy on (its measured thread count) and off (its lock held: every call runs on torch's
count), medians.  Run it on an idle machine and on a busy one (another process on a core)
to see what the policy does in each.

Usage: ``PYTHONPATH=src python bench/thread_policy.py [--rounds 6] [--only a,b] [--threads 2]``
"""

import argparse
import statistics
import time

import torch

from sepconv.bench import family
from sepconv.kernels import threads


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--only", default="")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    peer = next(p for p in family.peers() if p.name == "sepconv")
    wanted = set(filter(None, args.only.split(",")))
    for s in family.SHAPES:
        if wanted and s.name not in wanted:
            continue
        fns = peer.setup(s)
        for mode in ("fwd", "fb"):
            for _ in range(3):
                fns[mode]()
        times = {(v, m): [] for v in ("on", "off") for m in ("fwd", "fb")}
        for r in range(args.rounds):
            for v in (("on", "off") if r % 2 else ("off", "on")):
                if v == "off":
                    threads.THREADS.lock.acquire()
                try:
                    for mode in ("fwd", "fb"):
                        for _ in range(2):
                            t0 = time.perf_counter()
                            fns[mode]()
                            times[(v, mode)].append(time.perf_counter() - t0)
                finally:
                    if v == "off":
                        threads.THREADS.lock.release()
        cells = []
        for mode in ("fwd", "fb"):
            off, on = (statistics.median(times[(v, mode)]) for v in ("off", "on"))
            cells.append(f"{mode} off {1e3 * off:.2f} ms on {1e3 * on:.2f} ms on/off {on / off:.2f}")
        print(f"{s.name:20s}", " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
