"""tanh / sigmoid on CPU float32: torch's ops (sepconv before) against the TensorFlow-exact
C routine (``sepconv.kernels.activation``), one thread, CPU time.

For each size, the forward (``x -> y``) and the backward (``(y, dy) -> dx``, what autograd
runs: ``aten.tanh_backward`` / ``aten.sigmoid_backward`` before, the routine's TanhGrad /
SigmoidGrad now) are timed alternately in one process (old, new, old, new, ...), both
allocating their outputs; the figure is the median of ``--repeats`` calls, in ms of
``time.process_time`` (the measure that moves least on a shared machine).

    python bench/activations.py                    # 512k and 8M elements
    python bench/activations.py --sizes 65536 --repeats 51

``--models wavenet_stack,lstm_text``: whole training steps of bench/model_train.py's models
(the tf-keras model saved as .h5 by a child process, loaded with
``sepconv.load_keras_model``, Adam), the C routine switched off and on
(``kernels.activation.ENABLED``) step by step in ONE process: the medians of ``--repeats``
steps each, one thread, CPU ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sepconv.kernels import _activation_native as native
from sepconv.kernels import activation as kernel


def cases(n: int):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=g) * 3
    dy = torch.randn(n, generator=g)
    y_t, y_s = torch.tanh(x), torch.sigmoid(x)
    return {
        "tanh forward": (lambda: torch.tanh(x), lambda: kernel.tanh(x)),
        "tanh backward": (lambda: torch.ops.aten.tanh_backward(dy, y_t),
                          lambda: kernel._compute(native.TANH_GRAD, y_t, dy)),
        "sigmoid forward": (lambda: torch.sigmoid(x), lambda: kernel.sigmoid(x)),
        "sigmoid backward": (lambda: torch.ops.aten.sigmoid_backward(dy, y_s),
                             lambda: kernel._compute(native.SIGMOID_GRAD, y_s, dy)),
    }


def model_steps(name: str, repeats: int) -> None:
    """Old / new training steps of bench/model_train.py's ``name``, alternating."""
    import os
    import subprocess
    import sys
    import tempfile
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    import model_train
    import sepconv
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.h5")
        code = ("import sys; sys.path.insert(0, %r); import tf_keras, model_train; "
                "tf_keras.utils.set_random_seed(0); "
                "model_train.build_tf_model(%r, tf_keras).save(%r)" % (here, name, path))
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        subprocess.run([sys.executable, "-c", code], check=True, env=env,
                       stderr=subprocess.DEVNULL)
        model = sepconv.load_keras_model(path).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    data = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in model_train.batches(name)]

    def step(i):
        x, y = data[i % len(data)]
        p = model(x)
        loss = torch.nn.functional.nll_loss(torch.log(p.clamp(1e-7, 1 - 1e-7)), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    times = {False: [], True: []}
    for i in range(repeats + 2):
        for enabled in (False, True):
            kernel.ENABLED = enabled
            calls = kernel.CALLS
            t0 = time.process_time()
            step(i)
            if i >= 2:  # warm-up
                times[enabled].append(time.process_time() - t0)
            assert (kernel.CALLS > calls) == enabled or name == "lstm_text"
    kernel.ENABLED = True
    a, b = statistics.median(times[False]) * 1e3, statistics.median(times[True]) * 1e3
    print(f"{name:18} step: torch's activations {a:.2f} ms, the C routine {b:.2f} ms, "
          f"new / old {b / a:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="524288,8388608")
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--models", default="", help="bench/model_train.py models to time")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if native.load() is None:
        raise SystemExit("the C routine cannot be built here")
    if args.models:
        for name in args.models.split(","):
            model_steps(name, args.repeats)
        return
    print(f"{'op':18} {'elements':>9} {'torch ms':>9} {'sepconv ms':>10} {'speed-up':>8}")
    for n in (int(s) for s in args.sizes.split(",")):
        for name, (old, new) in cases(n).items():
            old(), new()  # warm up
            t_old, t_new = [], []
            for _ in range(args.repeats):
                for fn, out in ((old, t_old), (new, t_new)):
                    t0 = time.process_time()
                    fn()
                    out.append(time.process_time() - t0)
            a, b = statistics.median(t_old) * 1e3, statistics.median(t_new) * 1e3
            print(f"{name:18} {n:>9} {a:>9.3f} {b:>10.3f} {a / b:>7.2f}x")


if __name__ == "__main__":
    main()
