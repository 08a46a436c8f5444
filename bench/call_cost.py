"""Per-call cost of a whole model's training step, this checkout against another one.

The per-call Python of a layer (its checks, the kernel's pick, the thread policy, the
functional-model runner) is what is left of a step when the tensors are tiny: this script
loads a ``bench/model_train.py`` model (built in tf-keras and saved once, as that script
does) in two worker processes, sepconv imported from ``--baseline`` in one and from this
checkout's ``src`` in the other, and times forward, backward and the Adam step
(``time.process_time``, one thread) on a batch of ``--shape`` (tiny: the per-call cost;
``real``: the model's own batches), the workers taking turns round by round; medians.

    python bench/call_cost.py --model wavenet_stack --shape 4,64,1 --baseline /work/main/src
    python bench/call_cost.py --model main_job --shape real --baseline /work/main/src
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _worker(name: str, shape: str, path: str) -> None:
    sys.path.insert(0, HERE)
    import torch
    import model_train
    import sepconv
    torch.set_num_threads(1)
    model = sepconv.load_keras_model(path).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    if shape == "real":
        data = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in
                model_train.batches(name)]
    else:
        dims = tuple(int(v) for v in shape.split(","))
        data = [(torch.randn(*dims), torch.zeros(dims[0], dtype=torch.long))]

    def step(x, y):
        t0 = time.process_time()
        p = model(x)
        loss = torch.nn.functional.nll_loss(torch.log(p.clamp(1e-7, 1 - 1e-7)), y)
        t1 = time.process_time()
        loss.backward()
        t2 = time.process_time()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return t1 - t0, t2 - t1, time.process_time() - t2

    for i in range(5):
        step(*data[i % len(data)])
    print("@@ready", flush=True)
    for line in sys.stdin:
        parts = [step(*data[i % len(data)]) for i in range(int(line))]
        print("@@" + json.dumps([statistics.median(v) * 1e3 for v in zip(*parts)]),
              flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="wavenet_stack")
    ap.add_argument("--shape", default="4,64,1", help="a batch shape, or 'real'")
    ap.add_argument("--baseline", required=True, help="the other checkout's src directory")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args.model, args.shape, args.path)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{args.model}.h5")
        import model_train
        import tf_keras
        tf_keras.utils.set_random_seed(0)
        model_train.build_tf_model(args.model, tf_keras).save(path)
        srcs = {"base": args.baseline, "this": os.path.join(HERE, "..", "src")}
        procs = {}
        for label, src in srcs.items():
            env = {**os.environ, "PYTHONPATH": os.path.abspath(src)}
            procs[label] = subprocess.Popen(
                [sys.executable, __file__, "--worker", "--model", args.model, "--shape",
                 args.shape, "--baseline", args.baseline, "--path", path],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

        def read(proc):
            for line in proc.stdout:
                if line.startswith("@@"):
                    return line[2:]
            raise RuntimeError(f"worker ended: exit {proc.wait()}")

        for proc in procs.values():
            read(proc)
        times = {label: [] for label in procs}
        for r in range(args.rounds):
            for label in (list(procs) if r % 2 else list(procs)[::-1]):
                procs[label].stdin.write(f"{args.steps}\n")
                procs[label].stdin.flush()
                times[label].append(json.loads(read(procs[label])))
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
    med = {label: [statistics.median(c) for c in zip(*v)] for label, v in times.items()}
    print(f"{args.model} batch {args.shape}, CPU ms per step, one thread, medians of "
          f"{args.rounds} rounds x {args.steps} steps; load average {os.getloadavg()[0]:.2f}")
    for label, (f, b, o) in med.items():
        print(f"  {label:5s} forward {f:7.3f}  backward {b:7.3f}  Adam {o:6.3f}  "
              f"total {f + b + o:7.3f}")
    (bf, bb, bo), (tf_, tb, to) = med["base"], med["this"]
    print(f"  this/base: forward {tf_ / bf:.3f}  backward {tb / bb:.3f}  total "
          f"{(tf_ + tb + to) / (bf + bb + bo):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
