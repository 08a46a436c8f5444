"""One-thread A/B of batch normalization's C passes (``kernels/_norm_native.py``) against an
earlier commit's C source, and of ``functional.normalize`` (training, forward + input,
gamma and beta gradients) against TensorFlow's ``FusedBatchNormV3`` and its gradient (what
tf-keras' ``BatchNormalization`` runs for 4D channels_last input), per shape.

Both builds of the C routine are loaded in ONE process (the baseline's source read with
``git show COMMIT:src/sepconv/kernels/_norm_native.py``) and swapped call by call; torch
on one thread, TensorFlow on one intra-op and one inter-op thread (``tf.function``, the
output returned with the gradients, so that TensorFlow cannot drop the forward);
median ``time.process_time()`` of ``--calls`` alternated calls (old and new take turns
going first).

    python bench/norm_ab.py                      # baseline: 5306e8a (before this session)
    python bench/norm_ab.py --baseline HEAD~3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

import torch

from sepconv import functional as F
from sepconv.kernels import _cpu_native, _norm_native, memory

SHAPES = [(32, 64, 128, 8), (8, 112, 112, 32), (16, 150, 64), (8, 250, 256),
          (32, 1, 128, 16)]


def _baseline_library(commit: str):
    text = subprocess.run(["git", "show", f"{commit}:src/sepconv/kernels/_norm_native.py"],
                          capture_output=True, text=True, check=True).stdout
    scope: dict = {}
    start = text.index('SOURCE = r"""')
    exec(text[start:text.index('"""', start + 13) + 3], scope)
    lib = _cpu_native.Library(f"batchnorm_{commit.replace('~', '_')}", scope["SOURCE"],
                              _norm_native._FLAGS, _norm_native._declare,
                              openmp_args=("-fopenmp", "-DSEPCONV_OMP"))
    return lib.load()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=31)
    parser.add_argument("--baseline", default="5306e8a")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    memory.keep_freed_memory()
    libs = {"new": _norm_native.load(), "old": _baseline_library(args.baseline)}
    print(f"{'shape':18s} {'pass':18s} {'old':>8s} {'new':>8s} {'tf':>8s}  new/old  new/tf  "
          "(ms, one thread)")
    for shape in SHAPES:
        c = shape[-1]
        g = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=g) * 2 + 0.5
        dy = torch.randn(shape, generator=g)
        mean = x.mean(tuple(range(x.dim() - 1)))
        keep = (1,) * (x.dim() - 1) + (c,)
        gamma = torch.ones(keep, requires_grad=True)
        beta = torch.zeros(keep, requires_grad=True)
        xr = x.clone().requires_grad_()
        axes = tuple(range(x.dim() - 1))

        def step():
            y = F.normalize(xr, axes, gamma, beta, 1e-3)[0]
            torch.autograd.grad(y, [xr, gamma, beta], dy)

        tx, tdy = tf.constant(x.numpy()), tf.constant(dy.numpy())
        tx4 = tf.reshape(tx, (-1, 1, shape[-2], c)) if len(shape) == 3 else tx
        tdy4 = tf.reshape(tdy, tx4.shape)
        tg, tb = tf.Variable(tf.ones(c)), tf.Variable(tf.zeros(c))

        @tf.function
        def tf_step(t):
            with tf.GradientTape() as tape:
                tape.watch(t)
                y = tf.compat.v1.nn.fused_batch_norm(t, tg, tb, epsilon=1e-3,
                                                     is_training=True)[0]
            return [y] + tape.gradient(y, [t, tg, tb], output_gradients=tdy4)

        rows = {"stats (reads x)": lambda: _norm_native.stats(x),
                "grad_sums (dy, x)": lambda: _norm_native.grad_sums(dy, x, mean),
                "normalize fwd+bwd": step}
        tf_run = lambda: [v.numpy() for v in tf_step(tx4)]  # noqa: E731
        for _ in range(2):
            tf_run()
            for fn in rows.values():
                for lib in libs.values():
                    _norm_native._lib = lib
                    fn()
        for name, fn in rows.items():
            times = {"old": [], "new": [], "tf": []}
            for i in range(args.calls):
                for which in ("old", "new") if i % 2 else ("new", "old"):  # no order bias
                    _norm_native._lib = libs[which]
                    t0 = time.process_time()
                    fn()
                    times[which].append(time.process_time() - t0)
                if name == "normalize fwd+bwd":
                    t0 = time.process_time()
                    tf_run()
                    times["tf"].append(time.process_time() - t0)
            med = {k: statistics.median(v) * 1e3 if v else float("nan")
                   for k, v in times.items()}
            print(f"{str(shape):18s} {name:18s} {med['old']:8.2f} {med['new']:8.2f} "
                  f"{med['tf']:8.2f}  {med['new'] / med['old']:7.2f} "
                  f"{med['new'] / med['tf']:6.2f}", flush=True)
    _norm_native._lib = libs["new"]


if __name__ == "__main__":
    main()
