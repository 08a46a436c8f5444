"""Survey: every name in ``sepconv.activations`` against tf-keras 2.21 (eager; inside a
layer's ``predict``, a ``tf.function``) and Keras 3 (torch backend), bit for bit on CPU
float32, forward and gradient (``tf.GradientTape`` / torch autograd).

    PYTHONPATH=src python bench/activation_survey.py             # oneDNN as the env says
    TF_ENABLE_ONEDNN_OPTS=1 PYTHONPATH=src python bench/activation_survey.py

Prints, per name and reference, the fraction of elements whose bits differ and the
largest difference in ulp (NaN == NaN; -0 == +0 counted equal).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import importlib.util  # noqa: E402

if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401,E402  (before TensorFlow)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

import sepconv  # noqa: E402
from sepconv import activations  # noqa: E402

EDGES = np.float32([
    0.0, -0.0, 1e-40, -1e-40, 1e-8, -1e-8, 0.0004, -0.0004, 0.5, -0.5, 1.0, -1.0, 2.9999,
    3.0, -3.0, -3.0001, 5.9999, 6.0, 6.0001, 7.90738964, 9.0, -9.0, 13.94, -13.94, 15.9,
    -15.9, 20.0, -20.0, 44.0, -87.0, -88.7, -89.5, -103.0, -104.0, -150.0, 88.0, 88.8,
    1e30, -1e30, 3.4028235e38, -3.4028235e38, np.inf, -np.inf, np.nan])


def draw(n=40_000, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([EDGES, rng.normal(0, 3, n).astype(np.float32),
                           rng.normal(0, 30, n // 4).astype(np.float32),
                           np.linspace(-120, 100, n // 4, dtype=np.float32)])


def compare(a, b):
    a, b = np.asarray(a, np.float32).ravel(), np.asarray(b, np.float32).ravel()
    nan = np.isnan(a) & np.isnan(b)
    diff = (a != b) & ~nan
    if not diff.any():
        return "exact"
    ia, ib = a.view(np.int32).astype(np.int64), b.view(np.int32).astype(np.int64)
    ia = np.where(ia < 0, -(ia & 0x7FFFFFFF), ia)
    ib = np.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    ulp = np.abs(ia - ib)[diff]
    return f"{diff.mean():7.2%} differ, max {int(ulp.max()) if ulp.max() < 2**31 else 'huge'} ulp"


def tf_eager_grad(fn, x, dy):
    xv = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xv)
        y = fn(xv)
    return y.numpy(), tape.gradient(y, xv, output_gradients=tf.constant(dy)).numpy()


def ours_grad(fn, x, dy):
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    y = fn(xt)
    (g,) = torch.autograd.grad(y, xt, torch.from_numpy(dy))
    return y.detach().numpy(), g.numpy()


def tf_reference(name):
    """tf-keras' activation, or the TensorFlow op tf-keras would use for Keras-3-only names."""
    special = {
        "relu6": tf.nn.relu6, "leaky_relu": lambda t: tf.nn.leaky_relu(t, 0.2),
        "log_softmax": tf.nn.log_softmax,
        "gelu_approximate": lambda t: tf_keras.activations.gelu(t, approximate=True),
        "hard_silu": lambda t: t * tf.nn.relu6(t + 3.0) / 6.0,
    }
    if name in special:
        return special[name]
    try:
        return tf_keras.activations.get(name)
    except (ValueError, TypeError):
        return None


def keras3_reference(name):
    if name == "gelu_approximate":
        return lambda t: keras.activations.gelu(t, approximate=True)
    try:
        return keras.activations.get(name)
    except (ValueError, TypeError):
        return None


NAMES = ["elu", "selu", "gelu", "gelu_approximate", "softplus", "softsign", "swish", "silu",
         "hard_sigmoid", "hard_swish", "hard_silu", "mish", "relu", "relu6", "leaky_relu",
         "exponential", "tanh", "sigmoid", "log_softmax", "softmax", "linear"]


def ours_fn(name):
    if name == "gelu_approximate":
        return lambda t: torch.nn.functional.gelu(t, approximate="tanh")
    return activations.get(name)


def main(names=None):
    x = draw()
    rng = np.random.default_rng(1)
    dy = rng.normal(0, 1, x.size).astype(np.float32)
    for name in names or NAMES:
        ours = ours_fn(name)
        if name == "gelu_approximate" and hasattr(activations, "gelu_approximate"):
            ours = activations.gelu_approximate
        shape = (-1,) if "softmax" not in name else (len(x) // 40, 40)
        xs = x[: (len(x) // 40) * 40].reshape(shape) if "softmax" in name else x
        xs = np.where(np.isfinite(xs), xs, 0).astype(np.float32) if "softmax" in name else xs
        dys = dy[: xs.size].reshape(xs.shape)
        y, g = ours_grad(ours, xs, dys)
        row = [f"{name:17s}"]
        ref = tf_reference(name)
        if ref is not None:
            ty, tg = tf_eager_grad(ref, xs, dys)
            row.append(f"tf eager fwd {compare(y, ty)}; grad {compare(g, tg)}")
            graph = tf.function(lambda t: ref(t))
            row.append(f"tf.function fwd {compare(y, graph(tf.constant(xs)).numpy())}")
            if name not in ("gelu_approximate", "relu6", "leaky_relu", "log_softmax",
                            "hard_silu"):
                model = tf_keras.Sequential([tf_keras.layers.Activation(name)])
                pred = model.predict(xs.reshape(-1, 1) if xs.ndim == 1 else xs, verbose=0,
                                     batch_size=len(xs))
                row.append(f"Activation predict {compare(y, pred.reshape(xs.shape))}")
        ref3 = keras3_reference(name)
        if ref3 is not None:
            xt = torch.from_numpy(xs.copy()).requires_grad_(True)
            y3 = ref3(xt)
            (g3,) = torch.autograd.grad(y3, xt, torch.from_numpy(dys))
            row.append(f"keras3 fwd {compare(y, y3.detach().numpy())}; "
                       f"grad {compare(g, g3.numpy())}")
        print(" | ".join(row), flush=True)
    if names:
        return
    # softmax over each axis: the Softmax layer against tf-keras' Softmax layer
    x3 = np.random.default_rng(3).normal(0, 3, (16, 9, 33)).astype(np.float32)
    dy3 = np.random.default_rng(4).normal(0, 1, x3.shape).astype(np.float32)
    for axis in (-1, 1, 0, [1, 2]):
        ours = sepconv.Softmax(axis=axis)
        y, g = ours_grad(ours, x3, dy3)
        theirs = tf_keras.layers.Softmax(axis=axis)
        ty, tg = tf_eager_grad(theirs, x3, dy3)
        k3 = keras.layers.Softmax(axis=axis)
        xt = torch.from_numpy(x3.copy()).requires_grad_(True)
        y3 = k3(xt)
        (g3,) = torch.autograd.grad(y3, xt, torch.from_numpy(dy3))
        print(f"Softmax axis={axis!s:7s} | tf eager fwd {compare(y, ty)}; grad "
              f"{compare(g, tg)} | keras3 fwd {compare(y, y3.detach().numpy())}; grad "
              f"{compare(g, g3.numpy())}", flush=True)


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
