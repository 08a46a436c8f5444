"""ConvLSTM2D speed: sepconv against a plain torch loop of conv2d calls and tf-keras.

    python bench/conv_lstm.py [--batch 4] [--frames 10] [--size 64] [--filters 64]
                              [--rounds 7] [--threads 2] [--json out.json]
                              [--before DIR]

The shape is moving-MNIST sized: ``(batch, frames, size, size, 1)`` in, ``filters``
filters, 3x3 kernels, ``padding="same"``, ``return_sequences=True``, float32, CPU.
Three implementations, timed forward and forward+backward (gradients of input and
weights):

- ``sepconv``: ``sepconv.ConvLSTM2D`` (channels_last, as Keras);
- ``torch loop``: the straightforward PyTorch version a user would write: NCHW, per step
  ``conv2d(x_t, W_x, b) + conv2d(h, W_h)``, chunk into the four gates, hard_sigmoid/tanh;
- ``tf-keras``: ``tf_keras.layers.ConvLSTM2D`` inside ``tf.function``, in its own process
  (TensorFlow and torch size their own thread pools and fight in one process):
  ``python -m sepconv bench``'s worker (:class:`sepconv.bench.TfKerasPeer`);
- ``before`` (with ``--before DIR``): the ``sepconv`` package found in ``DIR`` (an older
  revision, e.g. ``git archive <rev> src | tar -x -C /tmp/old`` then ``--before
  /tmp/old/src``), imported as another package, same weights: before/after in one run.

Rounds alternate the three (one timing of each per round, after two warm-up runs), and
the table shows the medians.  The sepconv and torch-loop outputs are checked against each
other first (same weights).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


class _TfShape(dict):
    """What :meth:`sepconv.bench.TfKerasPeer.setup` sends its worker: a tf-keras layer by
    class name, its arguments and a channels_last input shape."""

    def as_dict(self):
        return dict(self)


def torch_loop(x, w_x, w_h, b):
    """The plain PyTorch ConvLSTM: ``x`` (batch, frames, 1, H, W) NCHW, weights in torch's
    (out, in, kh, kw) layout, 'same' padding for 3x3 kernels, Keras' gates and formulas."""
    import torch
    import torch.nn.functional as F
    batch, frames, _, height, width = x.shape
    filters = w_h.shape[1]
    h = x.new_zeros(batch, filters, height, width)
    c = torch.zeros_like(h)
    outputs = []
    for t in range(frames):
        z = F.conv2d(x[:, t], w_x, b, padding=1) + F.conv2d(h, w_h, padding=1)
        i, f, g, o = z.chunk(4, 1)
        i, f, o = (torch.clamp(0.2 * v + 0.5, 0, 1) for v in (i, f, o))
        c = f * c + i * torch.tanh(g)
        h = o * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs, 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-tf", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--before", metavar="DIR")
    args = parser.parse_args(argv)

    import torch
    import sepconv
    from sepconv.bench import TfKerasPeer
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = dict(batch=args.batch, frames=args.frames, size=args.size, filters=args.filters)
    layer = sepconv.ConvLSTM2D(args.filters, 3, padding="same", return_sequences=True,
                               input_shape=(None, args.size, args.size, 1))
    layer.eval()
    x = torch.randn(args.batch, args.frames, args.size, args.size, 1)
    w_x = layer.kernel.detach().permute(3, 2, 0, 1).contiguous().requires_grad_()
    w_h = layer.recurrent_kernel.detach().permute(3, 2, 0, 1).contiguous().requires_grad_()
    b = layer.bias.detach().clone().requires_grad_()
    x_nchw = x.permute(0, 1, 4, 2, 3).contiguous()
    before = None
    if args.before:
        import importlib.util
        package = os.path.join(args.before, "sepconv")
        spec = importlib.util.spec_from_file_location(
            "sepconv_before", os.path.join(package, "__init__.py"),
            submodule_search_locations=[package])
        old = importlib.util.module_from_spec(spec)
        sys.modules["sepconv_before"] = old
        spec.loader.exec_module(old)
        before = old.ConvLSTM2D(args.filters, 3, padding="same", return_sequences=True,
                                input_shape=(None, args.size, args.size, 1))
        before.set_weights(layer.get_weights())
        before.eval()
    with torch.no_grad():
        diff = (layer(x) - torch_loop(x_nchw, w_x, w_h, b).permute(0, 1, 3, 4, 2)).abs().max()
    assert diff < 1e-4, f"sepconv and the torch loop disagree by {diff}"
    dy = torch.randn(args.batch, args.frames, args.size, args.size, args.filters)
    dy_nchw = dy.permute(0, 1, 4, 2, 3).contiguous()

    def run_sepconv_fwd(layer=layer):
        with torch.no_grad():
            layer(x)

    def run_sepconv_fb(layer=layer):
        xg = x.clone().requires_grad_()
        torch.autograd.grad(layer(xg), [xg] + layer.weights, dy)

    def run_loop_fwd():
        with torch.no_grad():
            torch_loop(x_nchw, w_x, w_h, b)

    def run_loop_fb():
        xg = x_nchw.clone().requires_grad_()
        torch.autograd.grad(torch_loop(xg, w_x, w_h, b), [xg, w_x, w_h, b], dy_nchw)

    def timed(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    tf = None if args.no_tf else TfKerasPeer(args.threads)
    if tf is not None:
        problem = tf.available()
        if problem:
            sys.exit(problem)
        tf.setup(_TfShape(layer="ConvLSTM2D", input_shape=[
            args.batch, args.frames, args.size, args.size, 1], kwargs=dict(
                filters=args.filters, kernel_size=3, padding="same", return_sequences=True)))
    runs = {("sepconv", "fwd"): run_sepconv_fwd, ("sepconv", "fb"): run_sepconv_fb,
            ("torch loop", "fwd"): run_loop_fwd, ("torch loop", "fb"): run_loop_fb}
    if before is not None:
        with torch.no_grad():
            diff = (before(x) - layer(x)).abs().max()
        assert diff < 1e-4, f"sepconv and --before disagree by {diff}"
        runs[("before", "fwd")] = lambda: run_sepconv_fwd(before)
        runs[("before", "fb")] = lambda: run_sepconv_fb(before)
    for fn in runs.values():
        fn(), fn()
    times = {key: [] for key in runs}
    if tf is not None:
        times.update({("tf-keras", "fwd"): [], ("tf-keras", "fb"): []})
    for _ in range(args.rounds):
        for mode in ("fwd", "fb"):
            for name in ("sepconv", "before", "torch loop", "tf-keras"):
                if (name, mode) not in runs and name != "tf-keras":
                    continue
                if name == "tf-keras":
                    if tf is not None:
                        times[(name, mode)].append(tf.time(mode, 1)[0])
                else:
                    times[(name, mode)].append(timed(runs[(name, mode)]))
    if tf is not None:
        tf.close()
    medians = {f"{name} {mode}": statistics.median(v) for (name, mode), v in times.items()}
    print(f"ConvLSTM2D, input {(args.batch, args.frames, args.size, args.size, 1)}, "
          f"{args.filters} filters, 3x3, same, return_sequences; torch {torch.__version__}, "
          f"{args.threads} threads; {tf.version if tf else 'no tf'}; "
          f"median of {args.rounds} alternating rounds")
    print(f"{'implementation':<12} {'forward ms':>11} {'fwd+bwd ms':>11} "
          f"{'fwd vs sepconv':>15} {'fwd+bwd vs sepconv':>19}")
    for name in ("sepconv", "before", "torch loop", "tf-keras"):
        if f"{name} fwd" not in medians:
            continue
        f, fb = medians[f"{name} fwd"], medians[f"{name} fb"]
        print(f"{name:<12} {f * 1e3:>11.1f} {fb * 1e3:>11.1f} "
              f"{f / medians['sepconv fwd']:>14.2f}x {fb / medians['sepconv fb']:>18.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"shape": shape, "threads": args.threads, "rounds": args.rounds,
                       "median_seconds": medians,
                       "all_seconds": {f"{n} {m}": v for (n, m), v in times.items()}},
                      fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
