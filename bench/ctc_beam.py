"""Beam-search CTC decoding: ``sepconv.functional.ctc_beam_decode`` against tf-keras 2.21's
``backend.ctc_decode(greedy=False)`` and Keras 3.15's ``ops.ctc_decode(strategy=
"beam_search")`` (torch backend), and against sepconv's own row-by-row Python decoders
of before this change (``--before``: ``_ctc_beam.py`` of commit 5306e8a, read with
``git show``).  One thread, CPU time (``time.process_time``), the implementations
alternating call by call in one process, medians of ``--reps`` rounds (a call over 2 s is
measured once).

Grid: batch 8/32 x steps 50/200/800 x classes 29 (characters) / 1000 (word pieces) x beam
width 10/100 x top paths 1/3, softmax outputs of N(0, 2^2) logits, every row full length.
An implementation is not run (``-``) where a smaller configuration's time, scaled by the
size (``batch * steps * classes * beam``, steps squared for Keras 3 and the old Keras 3
port, which copy whole paths), predicts more than ``--budget`` seconds.

Usage: ``PYTHONPATH=src python bench/ctc_beam.py [--reps 3] [--budget 30] [--before]
[--quick] [--only "sepconv tf_keras,sepconv keras3"] [--json out.json]``
"""

import argparse
import itertools
import json
import os
import statistics
import subprocess
import time
import types

os.environ["KERAS_BACKEND"] = "torch"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _before_module():
    """sepconv's ``_ctc_beam`` module as it was before the vectorised decoders."""
    here = os.path.dirname(os.path.abspath(__file__))
    src = subprocess.run(["git", "show", "5306e8a:src/sepconv/_ctc_beam.py"], cwd=here,
                         check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("ctc_beam_before")
    exec(compile(src, "ctc_beam_before.py", "exec"), module.__dict__)
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--before", action="store_true")
    parser.add_argument("--quick", action="store_true", help="batch 8, steps 50/200")
    parser.add_argument("--only", help="comma-separated column names to run")
    parser.add_argument("--json")
    args = parser.parse_args()
    import keras  # noqa: F401  (before TensorFlow, see tests/conftest.py)
    import numpy as np
    import tensorflow as tf
    import tf_keras
    import torch

    from sepconv.functional import ctc_beam_decode

    torch.set_num_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    before = _before_module() if args.before else None

    def before_decode(x, lengths, beam, top, like):
        """The pre-change ctc_beam_decode: one row at a time in Python."""
        if like == "keras3":
            x = torch.log_softmax(x, dim=-1)
        x = x.numpy()
        out = []
        for b in range(x.shape[0]):
            if like == "keras3":
                out.append(before.keras3_row(x[b], int(lengths[b]), beam, top, 0))
            else:
                out.append(before.tf_row(x[b], int(lengths[b]), beam, top, x.shape[2] - 1,
                                         True))
        return out

    batches, steps_list = ([8], [50, 200]) if args.quick else ([8, 32], [50, 200, 800])
    grid = list(itertools.product(batches, steps_list, [29, 1000], [10, 100], [1, 3]))
    grid.sort(key=lambda c: (c[0] * c[1] * c[2] * c[3], c))
    names = ["sepconv tf_keras", "tf-keras", "sepconv keras3", "Keras 3"]
    if before is not None:
        names += ["before tf_keras", "before keras3"]
    if args.only:
        names = [k for k in names if k in args.only.split(",")]
    measured = {k: [] for k in names}
    quadratic = ("Keras 3", "before keras3")  # they copy whole paths: steps^2

    def predict(name, size):
        """The time a smaller measured configuration predicts (cost ~ batch * steps *
        classes * beam, steps squared for the decoders that copy whole paths)."""
        guess = 0.0
        for small, t in measured[name]:
            if all(a >= b for a, b in zip(size, small)):
                ratio = 1.0
                for i, (a, b) in enumerate(zip(size, small)):
                    ratio *= (a / b) ** (2 if i == 1 and name in quadratic else 1)
                guess = max(guess, t * ratio)
        return guess

    warm = torch.rand(2, 5, 4)
    ctc_beam_decode(warm, torch.tensor([5, 3]), 3, 1)  # builds / loads the C++ routine
    ctc_beam_decode(warm, torch.tensor([5, 3]), 3, 1, mask_index=0, like="keras3")
    rows = []
    for batch, steps, classes, beam, top in grid:
        rng = np.random.default_rng(0)
        logits = rng.standard_normal((batch, steps, classes)).astype(np.float32) * 2
        y = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        lengths = np.full(batch, steps, np.int32)
        x, n = torch.from_numpy(y), torch.from_numpy(lengths)
        fns = {
            "sepconv tf_keras": lambda: ctc_beam_decode(torch.log(x + 1e-7), n, beam, top),
            "tf-keras": lambda: tf_keras.backend.ctc_decode(
                y, lengths, greedy=False, beam_width=beam, top_paths=top),
            "sepconv keras3": lambda: ctc_beam_decode(x, n, beam, top, mask_index=0,
                                                      like="keras3"),
            "Keras 3": lambda: keras.ops.ctc_decode(
                y, lengths, strategy="beam_search", beam_width=beam, top_paths=top,
                mask_index=0),
            "before tf_keras": lambda: before_decode(torch.log(x + 1e-7), n, beam, top,
                                                     "tf_keras"),
            "before keras3": lambda: before_decode(x, n, beam, top, "keras3"),
        }
        size = (batch, steps, classes, beam)
        run = [k for k in names if predict(k, size) <= args.budget]
        times = {k: [] for k in run}
        for rep in range(args.reps):
            for k in run:
                if rep and times[k][0] > 2.0:
                    continue
                t = time.process_time()
                fns[k]()
                times[k].append(time.process_time() - t)
        row = {"batch": batch, "steps": steps, "classes": classes, "beam": beam, "top": top}
        for k in names:
            row[k] = statistics.median(times[k]) if k in times else None
            if k in times:
                measured[k].append((size, row[k]))
        rows.append(row)
        cells = " | ".join("-" if row[k] is None else f"{row[k] * 1000:.1f}" for k in names)
        print(f"{batch:3d} x {steps:3d} x {classes:4d}, beam {beam:3d}, top {top} | {cells}",
              flush=True)
    print("columns (ms CPU, one thread, median):", " | ".join(names))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
