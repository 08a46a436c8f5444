"""Model files whose functional graph holds tensor operations between layers.

Users write ``x + inputs``, ``tf.nn.tanh(a) * tf.sigmoid(b)``, ``x[:, -1, :]``,
``tf.concat``, ``tf.reduce_mean(x, axis=1)`` ... between layers.  tf-keras saves each as a
``TFOpLambda`` / ``SlicingOpLambda`` layer naming the TensorFlow function
(:mod:`sepconv.interop.tf_ops`); Keras 3 as an operation node (``Add``, ``GetItem``,
``Mean``, ...; :mod:`sepconv.interop.keras_ops`).  Each family of functions is one model
with many outputs, built with tf-keras 2.21 and with Keras 3, saved in the formats each
writes, and loaded by sepconv in ONE child process where TensorFlow and Keras cannot be
imported; its outputs are compared with ``model.predict`` (atol 1e-5 at unit scale).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

from keras import ops  # noqa: E402

import sepconv  # noqa: E402
from sepconv.interop import keras_ops, tf_ops  # noqa: E402
from keras_files import Cases, call_outputs, check  # noqa: E402

SHAPE = (6, 4)  # (steps, channels) of both inputs: x ~ N(0, 1), p ~ U(0.5, 2)


# -- tf-keras: TensorFlow functions on Keras tensors ----------------------------------
def _tk_arithmetic(x, p):
    return [x + p, 2.0 + x, 1.0 - x, x * 2.0, -x, abs(x), x ** 2, 2.0 ** x, x / p, 1.0 / p,
            x // p, x % p, tf.math.floormod(x, p), tf.add(x, p), tf.subtract(x, p),
            tf.multiply(x, p), tf.divide(x, p), tf.math.divide(x, 3.0),
            tf.math.truediv(x, 3.0), tf.math.floordiv(x, p),
            tf.maximum(x, 0.5), tf.minimum(x, p), tf.square(x), tf.sqrt(p),
            tf.math.rsqrt(p), tf.exp(x), tf.math.log(p), tf.math.log1p(p),
            tf.math.reciprocal(p), tf.sign(x), tf.floor(x * 3.0), tf.math.ceil(x * 3.0),
            tf.round(x * 3.0), tf.math.erf(x), tf.clip_by_value(x, -0.5, 0.5),
            tf.math.cumsum(x, axis=1),
            # broadcasting with constants: a list, a numpy array, a tensor
            x * [1.0, 2.0, 3.0, 4.0], x - np.arange(4, dtype="float32"),
            tf.add(x, tf.constant([[0.5], [1.0], [1.5], [2.0], [2.5], [3.0]]))]


def _tk_activations(x, p):
    return [tf.nn.relu(x), tf.nn.relu6(x * 4.0), tf.sigmoid(x), tf.nn.sigmoid(x),
            tf.math.sigmoid(x), tf.tanh(x), tf.nn.tanh(x), tf.nn.softmax(x),
            tf.nn.softmax(x, axis=1), tf.math.softmax(x), tf.nn.log_softmax(x, axis=-1),
            tf.nn.gelu(x), tf.nn.gelu(x, approximate=True), tf.nn.silu(x),
            tf.nn.swish(x, beta=1.5), tf.nn.elu(x), tf.nn.selu(x),
            tf.nn.leaky_relu(x, alpha=0.1), tf.nn.leaky_relu(x), tf.nn.softplus(x),
            tf.math.softplus(x * 10.0), tf.nn.softsign(x),
            tf.math.l2_normalize(x, axis=-1), tf.nn.l2_normalize(x, axis=[1, 2])]


def _tk_shapes(x, p):
    a, b = tf.split(x, 2, axis=-1)  # one node, two outputs
    first, rest = tf.split(x, [1, -1], axis=-1)
    return [tf.concat([x, p], axis=-1), tf.concat([x, p, x], 1),  # x read twice
            tf.stack([x, p], axis=1), tf.stack([x, p], axis=-1), tf.unstack(x, axis=1)[2],
            a * tf.sigmoid(b), first - rest[:, :, :1],
            tf.reshape(x, (-1, 24)), tf.reshape(x, [-1, 3, 8]),
            tf.reshape(x, [tf.shape(x)[0], -1]),  # a tensor inside the shape list
            tf.transpose(x), tf.transpose(x, perm=[0, 2, 1]), tf.expand_dims(x, 1),
            tf.expand_dims(x, -1), tf.squeeze(tf.expand_dims(x, 2), axis=2),
            tf.squeeze(x[:, :1, :]), tf.tile(x, [1, 2, 1]), tf.identity(x),
            tf.ones_like(x) * 3.0 + x, tf.zeros_like(p) - x,
            tf.pad(x, [[0, 0], [3, 2], [1, 0]], mode="REFLECT"),  # MelGAN's padding
            tf.pad(x, [[0, 0], [6, 1], [0, 4]], mode="symmetric"),
            tf.pad(x, [[0, 0], [1, 2], [0, 1]], constant_values=-1.5)]


def _tk_reductions(x, p):
    return [tf.reduce_mean(x, axis=1), tf.reduce_mean(x, axis=[1, 2]),
            tf.reduce_sum(x, axis=[1, 2], keepdims=True), tf.reduce_sum(x, axis=-1),
            tf.reduce_max(x, axis=-1), tf.reduce_min(x, axis=1, keepdims=True),
            tf.reduce_prod(p, axis=2), tf.math.reduce_std(x, axis=1),
            tf.math.reduce_variance(x, axis=[-1]), tf.reduce_logsumexp(x, axis=-1),
            x - tf.reduce_mean(x),  # axis=None: every axis, the batch included
            tf.reduce_max(x, axis=[])]  # axis=[]: no axis


def _tk_slicing(x, p):
    return [x[:, -1, :], x[:, ::-2], x[:, tf.newaxis, 1:5:2, 0], x[:, -3:], x[:, 1],
            x[:, ::-1, ::2], x[:, 5:1:-2], x[:, -1:-9:-1], x[:, 2:100], x[:, :, -2]]


def _tk_ellipsis(x, p):  # tf-keras' .keras writer cannot serialise the ellipsis
    return [x[..., 0], x[..., ::-2], x[:, ..., 1:3], x[..., tf.newaxis]]


def _tk_matmul(x, p):
    return [tf.matmul(x, p, transpose_b=True), x @ tf.transpose(p, [0, 2, 1]),
            tf.linalg.matmul(x, p, transpose_a=True),
            tf.matmul(x, np.linspace(-1, 1, 12).reshape(4, 3).astype("float32"))]


def _tk_dtypes(x, p):
    xi = tf.cast(x * 4.0, "int32")  # truncates towards zero
    return [tf.cast(xi, "float32"), xi / 2, xi // 3, tf.math.floormod(xi, 3),
            tf.reduce_mean(xi, axis=1), tf.reduce_sum(xi, axis=1), xi * 2 - 1,
            tf.cast(x > 0, "float32"), tf.where(x > 0, x, 0.1 * x),
            tf.cast(tf.logical_and(x > 0, p > 1), tf.float32),
            tf.cast(tf.math.equal(xi, 0), "float32"), tf.cast(x <= p, "float32"),
            tf.cast(x, tf.float64) * 2.0, tf.cast(x >= p, "float32"),
            tf.cast(x < p, "float32"), tf.cast(tf.logical_not(x > 0), "float32"),
            tf.cast(tf.logical_or(x > 1, p > 1.5), "float32"),
            tf.cast(tf.not_equal(xi, 0), "float32"),
            tf.cast(tf.reduce_any(x > 1, axis=1), "float32"),
            tf.cast(tf.reduce_all(x > -1, axis=[1, 2], keepdims=True), "float32")]


def _tk_broadcasts(x, p):
    """``tf.broadcast_to`` (to a list and to ``tf.shape(x)``), ``tf.stop_gradient``,
    ``tf.convert_to_tensor`` and ``tf.identity`` between layers."""
    return [tf.broadcast_to(x[:, :1, :], tf.shape(x)) + p,
            tf.broadcast_to(tf.reduce_mean(x, axis=[0, 1]), [6, 4]) + p,
            tf.stop_gradient(x) * 2.0, tf.convert_to_tensor(x) - p, tf.identity(x) + 1.0]


def _tk_transformer(K=tf_keras):
    """Keras' time-series Transformer encoder: attention as matmul and softmax, the
    residual ``x + inputs`` (read twice), LayerNormalization, a pooled and a last-step
    head over ``tf.concat``."""
    L = K.layers
    x = K.Input((8, 16), name="x")
    q, k, v = (L.Dense(16, name=n)(x) for n in ("q", "k", "v"))
    weights = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) / 4.0, axis=-1)
    attended = L.Dense(16, name="proj")(tf.matmul(weights, v))
    res = attended + x
    h = L.LayerNormalization(epsilon=1e-6, name="ln1")(res)
    f = L.Dense(16, name="ff2")(L.Dense(32, activation="relu", name="ff1")(h))
    out = L.LayerNormalization(epsilon=1e-6, name="ln2")(f + res)
    pooled, last = tf.reduce_mean(out, axis=1), out[:, -1, :]
    head = L.Dense(3, name="head")(tf.concat([pooled, last], axis=-1))
    return K.Model(x, [head, out], name="tk_transformer")


def _tk_wavenet(K=tf_keras):
    """WaveNet's gated unit ``tanh(conv) * sigmoid(conv)`` over causal dilated Conv1D,
    residual and skip sums, and a GLU made with ``tf.split``."""
    L = K.layers
    x = K.Input((20, 3), name="x")
    h = L.Conv1D(8, 1, name="embed")(x)
    skips = []
    for d in (1, 2, 4):
        a = L.Conv1D(8, 2, padding="causal", dilation_rate=d, name=f"filter{d}")(h)
        b = L.Conv1D(8, 2, padding="causal", dilation_rate=d, name=f"gate{d}")(h)
        skip = L.Conv1D(8, 1, name=f"skip{d}")(tf.nn.tanh(a) * tf.sigmoid(b))
        h = h + skip
        skips.append(skip)
    out = L.Conv1D(2, 1, name="out")(tf.nn.relu(skips[0] + skips[1] + skips[2]))
    glu_a, glu_b = tf.split(L.Conv1D(8, 3, padding="causal", name="glu")(h), 2, axis=-1)
    return K.Model(x, [out, glu_a * tf.sigmoid(glu_b)], name="tk_wavenet")


TK_FAMILIES = {"arithmetic": _tk_arithmetic, "activations": _tk_activations,
               "shapes": _tk_shapes, "reductions": _tk_reductions, "slicing": _tk_slicing,
               "ellipsis": _tk_ellipsis, "matmul": _tk_matmul, "dtypes": _tk_dtypes,
               "broadcasts": _tk_broadcasts}


# -- Keras 3: keras.ops on Keras tensors -----------------------------------------------
def _k3_arithmetic(x, p):
    return [x + p, 2.0 + x, 1.0 - x, x * 2.0, -x, abs(x), x ** 2, 2.0 ** x, x / p, 1.0 / p,
            x // p, x % p, ops.add(x, p), ops.subtract(x, p), ops.multiply(x, p),
            ops.divide(x, p), ops.true_divide(x, 3.0), ops.floor_divide(x, p),
            ops.mod(x, p), ops.power(p, x), ops.maximum(x, 0.5), ops.minimum(x, p),
            ops.square(x), ops.sqrt(p), ops.rsqrt(p), ops.exp(x), ops.log(p),
            ops.log1p(p), ops.reciprocal(p), ops.sign(x), ops.floor(x * 3.0),
            ops.ceil(x * 3.0), ops.round(x * 3.0), ops.round(x, decimals=1), ops.erf(x),
            ops.clip(x, -0.5, 0.5), ops.negative(x), ops.absolute(x), ops.tanh(x),
            x * np.array([1.0, 2.0, 3.0, 4.0], "float32"), x - 2]


def _k3_activations(x, p):
    return [ops.relu(x), ops.relu6(x * 4.0), ops.sigmoid(x), ops.softmax(x),
            ops.softmax(x, axis=1), ops.log_softmax(x), ops.gelu(x),
            ops.gelu(x, approximate=False), ops.silu(x), ops.elu(x, alpha=0.5),
            ops.selu(x), ops.leaky_relu(x, negative_slope=0.1), ops.softplus(x),
            ops.softsign(x), ops.hard_sigmoid(x * 4.0), ops.hard_silu(x * 4.0)]


def _k3_shapes(x, p):
    a, b = ops.split(x, 2, axis=-1)
    head, tail = ops.split(x, [1], axis=-1)  # NumPy's split: cut indices, not sizes
    return [ops.concatenate([x, p], axis=-1), ops.concatenate([x, p, x], axis=1),
            ops.stack([x, p], axis=1), a * ops.sigmoid(b), head - tail[:, :, :1],
            ops.reshape(x, (-1, 24)), ops.reshape(x, (-1, 3, 8)), ops.transpose(x),
            ops.transpose(x, axes=(0, 2, 1)), ops.swapaxes(x, 1, 2),
            ops.expand_dims(x, 1), ops.expand_dims(x, (1, -1)),
            ops.squeeze(ops.expand_dims(x, 2), axis=2), ops.tile(x, (1, 2, 1)),
            ops.ones_like(x) * 3.0 + x, ops.zeros_like(p) - x,
            ops.pad(x, [[0, 0], [3, 2], [1, 0]], mode="reflect"),  # MelGAN's padding
            ops.pad(x, [[0, 0], [1, 2], [0, 1]], constant_values=-1.5)]


def _k3_reductions(x, p):
    return [ops.mean(x, axis=1), ops.mean(x, axis=(1, 2)),
            ops.sum(x, axis=(1, 2), keepdims=True), ops.max(x, axis=-1),
            ops.min(x, axis=1, keepdims=True), ops.max(x, axis=-1, initial=0.3),
            ops.prod(p, axis=2), ops.std(x, axis=1), ops.var(x, axis=-1),
            ops.logsumexp(x, axis=-1), x - ops.mean(x)]


def _k3_slicing(x, p):
    return [x[:, -1, :], x[:, ::2], x[:, None, 1:5:2, 0], x[:, -3:], x[:, 1],
            x[..., 0], x[:, ..., 1:3], x[..., None], x[:, 2:100], x[:, :, -2]]


def _k3_matmul(x, p):
    return [ops.matmul(x, ops.transpose(p, (0, 2, 1))), x @ ops.swapaxes(p, 1, 2),
            ops.matmul(ops.swapaxes(x, 1, 2), p),
            ops.matmul(x, np.linspace(-1, 1, 12).reshape(4, 3).astype("float32"))]


def _k3_dtypes(x, p):
    xi = ops.cast(x * 4.0, "int32")
    return [ops.cast(xi, "float32"), xi / 2, xi // 3, xi % 3, ops.mean(xi, axis=1),
            ops.sum(xi, axis=1), xi * 2 - 1, xi * 0.5, ops.cast(x > 0, "float32"),
            ops.where(x > 0, x, 0.1 * x),
            ops.cast(ops.logical_and(x > 0, p > 1), "float32"),
            ops.cast(ops.equal(xi, 0), "float32"), ops.cast(x <= p, "float32"),
            ops.cast(ops.greater_equal(x, p), "float32"), ops.cast(x < p, "float32"),
            ops.cast(ops.logical_not(x > 0), "float32"),
            ops.cast(ops.logical_or(x > 1, p > 1.5), "float32"),
            ops.cast(ops.not_equal(xi, 0), "float32"),
            ops.cast(ops.any(x > 1, axis=1), "float32"),
            ops.cast(ops.all(x > -1, axis=(1, 2), keepdims=True), "float32"),
            ops.convert_to_tensor(x) * 2.0, ops.convert_to_tensor(xi, dtype="float32")]


def _k3_sequence(x, p):
    """What sequence models call between layers (cumulative sums, shifts, differences,
    normalisation, top-k, one-hot, padding, causal triangles, einsum, ...)."""
    values, indices = ops.top_k(x, 2)
    order = ops.argsort(x, axis=1)
    return [ops.cumsum(x, axis=1), ops.cumsum(ops.cast(x > 0, "int32"), axis=-1),
            ops.cumprod(p, axis=-1), ops.cumsum(x, axis=1, dtype="float64"),
            ops.flip(x, axis=1), ops.flip(x, axis=(1, 2)), ops.roll(x, 2, axis=1),
            ops.roll(x, -1, axis=-1), ops.diff(x, axis=1), ops.diff(x, n=2, axis=-1),
            ops.normalize(x), ops.normalize(x, axis=1, order=1),
            ops.normalize(x * 1e-9, epsilon=1e-3), values, indices,
            ops.argmax(x, axis=-1), ops.argmin(x, axis=1, keepdims=True),
            ops.sort(x, axis=1), order, ops.take_along_axis(x, order, axis=1),
            ops.amax(x, axis=1), ops.amin(x, axis=-1, keepdims=True),
            ops.one_hot(ops.argmax(x, axis=-1), 4),
            ops.one_hot(ops.cast(ops.clip(x * 2.0, -2.0, 2.0), "int32"), 3, axis=1),
            ops.pad(x, ((0, 0), (2, 0), (0, 0))),
            ops.pad(x, ((0, 0), (1, 1), (0, 2)), constant_values=0.5),
            ops.repeat(x, 2, axis=1), ops.moveaxis(x, 1, 2),
            ops.einsum("bij,bkj->bik", x, p), ops.triu(x), ops.tril(x, k=-1),
            ops.sin(x), ops.cos(x), ops.expm1(x), ops.log2(p), ops.log10(p),
            ops.glu(x), ops.log_sigmoid(x), ops.hard_tanh(x * 2.0)]


def _k3_gathers(x, p):
    """Broadcasts, gathers, products, slices and frames (Keras 3 ops added for sequence
    models; none fixes the batch: save_keras_model runs the model on zeros)."""
    parts = ops.unstack(x, axis=1)
    return [ops.broadcast_to(ops.mean(x, axis=(0, 1)), (6, 4)) + p,
            ops.broadcast_to(ops.mean(x, axis=(0, 2))[:, None], (6, 4)) * p,
            ops.stop_gradient(x) * 2.0, ops.copy(x) - p,
            ops.take(x, [0, 2, 5], axis=1), ops.take(x, [[0, -1], [2, 3]], axis=1),
            ops.take(x, [1, 7]), ops.take(p, ops.cast(ops.floor(p * 2.0), "int32"), axis=2),
            ops.dot(x, np.linspace(-1, 1, 12).reshape(4, 3).astype("float32")),
            ops.dot(x, ops.transpose(p, (0, 2, 1))),
            ops.tensordot(x, np.ones((4, 2), "float32"), axes=1),
            ops.tensordot(x, p, axes=[[1, 2], [1, 2]]),
            parts[0], parts[5] * 2.0, ops.full_like(x, 3.0),
            ops.full_like(x, 2, dtype="int32"),
            ops.slice(ops.mean(x, axis=0), (1, 0), (2, 4)) + p[:, :2],
            ops.cast(ops.logical_xor(x > 0, p > 1), "float32"), ops.tan(x * 0.5),
            ops.divide_no_nan(x, ops.floor(p)), ops.nan_to_num(ops.log(x)),
            ops.nan_to_num(ops.log(x), nan=-1.0, neginf=-5.0),
            ops.logaddexp(x, p), ops.average(x, axis=1), ops.average(x, axis=-1, weights=p),
            ops.extract_sequences(x[:, :, 0], 3, 2)]


def _k3_transformer():
    L = keras.layers
    x = keras.Input((8, 16), name="x")
    q, k, v = (L.Dense(16, name=n)(x) for n in ("q", "k", "v"))
    weights = ops.softmax(ops.matmul(q, ops.swapaxes(k, 1, 2)) / 4.0, axis=-1)
    attended = L.Dense(16, name="proj")(ops.matmul(weights, v))
    res = attended + x
    h = L.LayerNormalization(epsilon=1e-6, name="ln1")(res)
    f = L.Dense(16, name="ff2")(L.Dense(32, activation="relu", name="ff1")(h))
    out = L.LayerNormalization(epsilon=1e-6, name="ln2")(f + res)
    pooled, last = ops.mean(out, axis=1), out[:, -1, :]
    head = L.Dense(3, name="head")(ops.concatenate([pooled, last], axis=-1))
    return keras.Model(x, [head, out], name="k3_transformer")


def _k3_wavenet():
    L = keras.layers
    x = keras.Input((20, 3), name="x")
    h = L.Conv1D(8, 1, name="embed")(x)
    skips = []
    for d in (1, 2, 4):
        a = L.Conv1D(8, 2, padding="causal", dilation_rate=d, name=f"filter{d}")(h)
        b = L.Conv1D(8, 2, padding="causal", dilation_rate=d, name=f"gate{d}")(h)
        skip = L.Conv1D(8, 1, name=f"skip{d}")(ops.tanh(a) * ops.sigmoid(b))
        h = h + skip
        skips.append(skip)
    out = L.Conv1D(2, 1, name="out")(ops.relu(skips[0] + skips[1] + skips[2]))
    glu_a, glu_b = ops.split(L.Conv1D(8, 3, padding="causal", name="glu")(h), 2, axis=-1)
    return keras.Model(x, [out, glu_a * ops.sigmoid(glu_b)], name="k3_wavenet")


K3_FAMILIES = {"arithmetic": _k3_arithmetic, "activations": _k3_activations,
               "shapes": _k3_shapes, "reductions": _k3_reductions, "slicing": _k3_slicing,
               "matmul": _k3_matmul, "dtypes": _k3_dtypes, "sequence": _k3_sequence,
               "gathers": _k3_gathers}

#: What each writer saves: tf-keras' .keras writer cannot serialise an ellipsis index.
TK_FORMATS = {name: (".h5",) if name == "ellipsis" else (".h5", ".keras")
              for name in list(TK_FAMILIES) + ["transformer", "wavenet"]}
# (Keras 3's legacy .h5 writer drops the module of every entry: operations are told by
# their configs there, see keras_ops.is_op)
K3_FORMATS = (".keras", ".h5")

MODEL_CASES = [f"tk_{n}{ext}" for n, exts in TK_FORMATS.items() for ext in exts] + \
    [f"k3_{n}{ext}" for n in list(K3_FAMILIES) + ["transformer", "wavenet"]
     for ext in K3_FORMATS]

ERROR_CASES = {
    # name: pieces the one-line message must contain
    "tk_unsupported": ("'tf.math.cumprod'", "tf.math.cumprod", "does not run"),
    "k3_unsupported": ("'erfinv'", "'Erfinv'", "does not run"),
}


def _inputs(model, seed: int, batch: int = 3):
    """``x ~ N(0, 1)`` and ``p ~ U(0.5, 2)`` (positive: divisors, logs, roots)."""
    rng = np.random.default_rng(seed)
    shapes = [tuple(t.shape)[1:] for t in model.inputs]
    xs = [rng.standard_normal((batch,) + shapes[0]).astype(np.float32)]
    if len(shapes) > 1:
        xs.append(rng.uniform(0.5, 2.0, (batch,) + shapes[1]).astype(np.float32))
    return xs


def _family_model(K, name, build):
    x, p = K.Input(SHAPE, name="x"), K.Input(SHAPE, name="p")
    return K.Model([x, p], build(x, p), name=name)


def _models():
    """Every model of both writers by case stem."""
    models = {f"tk_{n}": _family_model(tf_keras, f"tk_{n}", b) for n, b in TK_FAMILIES.items()}
    models["tk_transformer"], models["tk_wavenet"] = _tk_transformer(), _tk_wavenet()
    models.update({f"k3_{n}": _family_model(keras, f"k3_{n}", b)
                   for n, b in K3_FAMILIES.items()})
    models["k3_transformer"], models["k3_wavenet"] = _k3_transformer(), _k3_wavenet()
    return models


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Every model saved in its writer's formats, the error files, and the child's
    results."""
    root = str(tmp_path_factory.mktemp("op_files"))
    cases = Cases(root)
    tf_keras.utils.set_random_seed(3)
    keras.utils.set_random_seed(3)
    p = lambda name: os.path.join(root, name)  # noqa: E731
    models = _models()
    data = {}
    for seed, (stem, model) in enumerate(models.items()):
        x = _inputs(model, seed)
        y = call_outputs(model, x if len(x) > 1 else x[0])
        data[stem] = (model, x, y)
        exts = TK_FORMATS[stem[3:]] if stem.startswith("tk_") else K3_FORMATS
        for ext in exts:
            model.save(p(stem + ext))
            # `python -m sepconv convert` (torch.save of the whole module, the op nodes
            # pickled) on the first file of each writer's transformer
            convert = p(stem + ext + ".pt") if stem.endswith("transformer") and \
                ext == exts[0] else None
            cases.add(stem + ext, "model", p(stem + ext), x, y, convert=convert)
    x, q = tf_keras.Input(SHAPE, name="x"), tf_keras.Input(SHAPE, name="p")
    tf_keras.Model([x, q], [tf.math.cumprod(x, axis=1) + q]).save(p("tk_unsupported.h5"))
    x, q = keras.Input(SHAPE, name="x"), keras.Input(SHAPE, name="p")
    keras.Model([x, q], [ops.erfinv(x * 0.5) + q]).save(p("k3_unsupported.keras"))
    for name in ERROR_CASES:
        cases.add(name, "error", p(name + (".h5" if name.startswith("tk") else ".keras")))
    return dict(root=root, results=cases.run(), data=data)


@pytest.mark.parametrize("case", MODEL_CASES)
def test_operations_give_keras_outputs_without_tensorflow(saved, case):
    r = saved["results"][case]
    check(r)
    assert r["type"] == "KerasFunctional"
    if "convert_rc" in r:  # the whole module saved with torch.save and loaded again
        assert r["convert_rc"] == 0 and r["convert_err"] <= 1e-5


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_unsupported_function_is_one_line_naming_node_and_function(saved, case):
    r = saved["results"][case]
    assert "crash" not in r, r["crash"]
    assert r["error"] is not None, "no error raised"
    assert "\n" not in r["error"]
    for piece in ERROR_CASES[case]:
        assert piece in r["error"], f"{piece!r} not in {r['error']!r}"


@pytest.mark.parametrize("stem", ["tk_dtypes", "k3_dtypes"])
def test_output_dtypes_follow_the_writer(saved, stem):
    """Integer ``truediv`` is float64 in TensorFlow, float32 in Keras 3; integer sums and
    means keep int32 in TensorFlow, Keras 3's mean is float32: the dtypes match predict's."""
    import torch
    model, x, y = saved["data"][stem]
    ext = ".h5" if stem.startswith("tk_") else ".keras"
    loaded = sepconv.load_keras_model(os.path.join(saved["root"], stem + ext))
    with torch.no_grad():
        got = loaded(*[torch.from_numpy(a) for a in x])
    assert [str(g.dtype).replace("torch.", "") for g in got] == [str(e.dtype) for e in y]


# Each model goes back to the format of the Keras that wrote it: tf-keras' files (.h5 and
# .keras, both read by tf-keras as TFOpLambda nodes) to .h5, Keras 3's (.keras, and its
# legacy .h5 whose entries lost their modules) to .keras.
WRITE_BACK = [(f"tk_{n}", ext, ".h5") for n, exts in TK_FORMATS.items() for ext in exts] + \
    [(f"k3_{n}", ext, ".keras") for n in list(K3_FAMILIES) + ["transformer", "wavenet"]
     for ext in K3_FORMATS]


@pytest.mark.parametrize("stem,ext,out", WRITE_BACK,
                         ids=[f"{s}{e}->{o}" for s, e, o in WRITE_BACK])
def test_operations_are_written_back_and_read_by_their_keras(saved, stem, ext, out,
                                                              tmp_path):
    """Loaded, saved by sepconv, loaded by the Keras that wrote the file: the same outputs
    (the operation nodes, their constants, keywords and node names are written as that
    Keras writes them)."""
    model, x, y = saved["data"][stem]
    loaded = sepconv.load_keras_model(os.path.join(saved["root"], stem + ext))
    path = str(tmp_path / ("back" + out))
    sepconv.save_keras_model(loaded, path)
    back = tf_keras.models.load_model(path) if out == ".h5" else \
        keras.saving.load_model(path)
    got = call_outputs(back, x if len(x) > 1 else x[0])
    assert len(got) == len(y)
    for g, e in zip(got, y):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-6)


@pytest.mark.parametrize("stem", ["tk_transformer", "k3_transformer"])
def test_operations_for_the_other_keras_are_refused_naming_them(saved, stem, tmp_path):
    """TensorFlow functions mean nothing to Keras 3, Keras 3 operations nothing to
    tf-keras: the other format is refused in one line naming every such node."""
    ext, other = (".h5", ".keras") if stem.startswith("tk_") else (".keras", ".h5")
    loaded = sepconv.load_keras_model(os.path.join(saved["root"], stem + ext))
    with pytest.raises(ValueError) as err:
        sepconv.save_keras_model(loaded, str(tmp_path / ("back" + other)))
    msg = str(err.value)
    assert "\n" not in msg and f"save as {ext}" in msg
    nodes = [m.name for m in loaded.children()
             if isinstance(m, (tf_ops.TFOp, keras_ops.KerasOp))]
    assert len(nodes) == (9 if ext == ".h5" else 10)  # matmul, softmax, +, [], concat...
    assert all(repr(n) in msg for n in nodes)
    assert ("(tf.math.truediv)" if ext == ".h5" else "(TrueDivide)") in msg
    assert not (tmp_path / ("back" + other)).exists()


def test_each_keras3_operation_is_written_with_its_module():
    """The module a written operation names holds its class (Keras 3 finds it there)."""
    import importlib
    for cls in keras_ops._OPS:
        module = keras_ops.KerasOp(cls, {"name": "x"}).keras3_entry()["module"]
        assert isinstance(getattr(importlib.import_module(module), cls), type), cls


def test_every_tf_function_in_the_table_is_exercised(saved):
    """Each function of :data:`tf_ops.FUNCTIONS` appears in a saved tf-keras model (so a
    test above compares it with TensorFlow); ``math.divide`` is TensorFlow's name for the
    same ``truediv``."""
    import json
    import h5py
    seen = set()
    for stem in saved["data"]:
        if stem.startswith("tk_"):
            with h5py.File(os.path.join(saved["root"], stem + ".h5"), "r") as f:
                config = json.loads(f.attrs["model_config"])
            seen |= {e["config"].get("function") for e in config["config"]["layers"]}
    missing = sorted(set(tf_ops.FUNCTIONS) - seen)
    assert missing == [], f"not exercised: {missing}"


def test_every_keras3_operation_in_the_table_is_exercised(saved):
    """Each operation :class:`keras_ops.KerasOp` runs appears in a saved Keras 3 model
    here (and so is compared with Keras 3 above)."""
    import json
    import zipfile
    seen = set()
    for stem in saved["data"]:
        if stem.startswith("k3_"):
            with zipfile.ZipFile(os.path.join(saved["root"], stem + ".keras")) as z:
                config = json.loads(z.read("config.json"))
            seen |= {e["class_name"] for e in config["config"]["layers"]}
    missing = sorted(set(keras_ops._OPS) - seen)
    assert missing == [], f"not exercised: {missing}"


def test_broadcast_to_a_saved_none_takes_the_input_size():
    """``ops.broadcast_to(t, ops.shape(x))`` stores the unknown batch as ``None`` (Keras
    3.15 then fails at run time: torch's broadcast_to takes no None); sepconv takes the
    input's size there, and refuses a None on an axis the input lacks, naming it."""
    import torch
    op = keras_ops.KerasOp("BroadcastTo", {"name": "b", "shape": [None, 6, 4]})
    t = torch.randn(3, 1, 4)
    np.testing.assert_array_equal(op(t).numpy(), np.broadcast_to(t.numpy(), (3, 6, 4)))
    with pytest.raises(ValueError, match="broadcast_to: shape .* None on axis 0"):
        op(torch.randn(1, 4))
