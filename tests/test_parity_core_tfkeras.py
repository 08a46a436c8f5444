"""The core layers (Dense, activations, reshaping, normalization, pooling, merging,
Embedding, TimeDistributed) against tf-keras 2.21, the implementation R keras wraps.

Each case builds the layer in both libraries, copies sepconv's (randomised) weights into
tf-keras with ``set_weights(get_weights())`` (so Keras' shapes and order are checked too)
and compares outputs, gradients (input and weights, through ``tf.GradientTape``), configs,
signatures and, for ``BatchNormalization``, the moving statistics after training steps.

TensorFlow's CPU pooling kernels only support channels_last; for channels_first the
reference is tf-keras' channels_last layer on the transposed input, transposed back
(what tf-keras computes on a device that supports NCHW).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

import sepconv  # noqa: E402
from tf_keras_compare import config_without_names as _strip  # noqa: E402
from sepconv.layers import CORE_LAYERS  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
COMMON = ["input_shape", "batch_input_shape", "batch_size", "dtype", "name", "trainable",
          "weights"]
# Arguments tf-keras takes through **kwargs (they are in its configs) that sepconv names.
EXTRAS = {"GlobalAveragePooling1D": ["keepdims"], "SpatialDropout1D": ["seed"],
          "SpatialDropout2D": ["seed"], "SpatialDropout3D": ["seed"]}


def _randomise(layer, rng, scale=0.5):
    weights = layer.get_weights()
    new = []
    for name, w in zip(layer._weight_order if hasattr(layer, "_weight_order") else [],
                       weights):
        v = rng.standard_normal(w.shape).astype(w.dtype) * scale
        if name == "moving_variance":
            v = np.abs(v) + 0.5
        new.append(v)
    layer.set_weights(new)


def _grads(ours, ref, x, weighted=True, training=False, tol=1e-5):
    """Input and weight gradients of ``sum(out * r)`` in both libraries."""
    rng = np.random.default_rng(11)
    xt = torch.tensor(x, requires_grad=True)
    y = ours(xt)
    r = rng.standard_normal(tuple(y.shape)).astype(x.dtype)
    (y * torch.from_numpy(r)).sum().backward()
    xv = tf.Variable(x)
    with tf.GradientTape() as tape:
        yr = ref(xv, training=training)
        loss = tf.reduce_sum(yr * r)
    tvars = ref.trainable_weights if weighted else []
    grads = tape.gradient(loss, [xv] + list(tvars))
    np.testing.assert_allclose(y.detach().numpy(), yr.numpy(), atol=tol, rtol=tol)
    np.testing.assert_allclose(xt.grad.numpy(), grads[0].numpy(), atol=tol * 10, rtol=1e-4)
    ours_params = [p for p in ours.weights if p.requires_grad] if weighted else []
    assert len(ours_params) == len(grads) - 1
    for p, g in zip(ours_params, grads[1:]):
        np.testing.assert_allclose(p.grad.numpy(), np.asarray(g), atol=tol * 10, rtol=1e-4)


# -- signatures and configs ---------------------------------------------------------------

@pytest.mark.parametrize("name", CORE_LAYERS)
def test_signature_is_tf_keras_then_common_extras(name):
    theirs = [p for p in inspect.signature(getattr(tf_keras.layers, name)).parameters.values()
              if p.kind is not p.VAR_KEYWORD]
    ours = list(inspect.signature(getattr(sepconv, name)).parameters.values())
    assert [(p.name, p.default) for p in ours[:len(theirs)]] == \
        [(p.name, p.default) for p in theirs]
    rest = [p.name for p in ours[len(theirs):]]
    extras = EXTRAS.get(name, [])
    assert rest == extras + [c for c in COMMON if c not in {p.name for p in theirs}]
    assert all(p.default in (None, False) for p in ours[len(theirs):])
    r = sepconv.r.r_name(name)
    assert hasattr(sepconv, r)


CONFIG_CASES = [
    ("Dense", dict(units=3, activation="relu", use_bias=False, kernel_initializer="he_normal",
                   kernel_regularizer="l2", activity_regularizer="l1",
                   bias_constraint="non_neg")),
    ("Activation", dict(activation="tanh")),
    ("ReLU", dict(max_value=6.0, negative_slope=0.1, threshold=0.5)),
    ("LeakyReLU", dict(alpha=0.2)),
    ("PReLU", dict(alpha_initializer="ones", shared_axes=[1, 2])),
    ("ELU", dict(alpha=0.7)),
    ("Softmax", dict(axis=1)),
    ("Dropout", dict(rate=0.3, noise_shape=(None, 1, 4), seed=3)),
    ("SpatialDropout1D", dict(rate=0.2)),
    ("SpatialDropout2D", dict(rate=0.2, data_format="channels_first")),
    ("GaussianNoise", dict(stddev=0.5, seed=2)),
    ("Flatten", dict(data_format="channels_first")),
    ("Reshape", dict(target_shape=(2, -1))),
    ("Permute", dict(dims=(2, 1))),
    ("RepeatVector", dict(n=4)),
    ("BatchNormalization", dict(axis=1, momentum=0.9, epsilon=1e-4, center=False,
                                gamma_regularizer="l2", beta_constraint="max_norm")),
    ("LayerNormalization", dict(axis=[1, 2], epsilon=1e-5, scale=False)),
    ("MaxPooling1D", dict(pool_size=3, strides=1, padding="same")),
    ("MaxPooling2D", dict(pool_size=(2, 3), padding="SAME", data_format="channels_first")),
    ("AveragePooling3D", dict(pool_size=2, strides=(1, 2, 1))),
    ("GlobalMaxPooling2D", dict(keepdims=True)),
    ("GlobalAveragePooling1D", dict(data_format="channels_first", keepdims=True)),
    ("GlobalAveragePooling3D", dict()),
    ("Add", dict()), ("Subtract", dict()), ("Multiply", dict()), ("Average", dict()),
    ("Maximum", dict()), ("Minimum", dict()), ("Concatenate", dict(axis=1)),
    ("Embedding", dict(input_dim=10, output_dim=3, mask_zero=True, input_length=5)),
    ("InputLayer", dict(input_shape=(4, 3), dtype="float64")),
]


@pytest.mark.parametrize("name,kwargs", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_matches_tf_keras_and_round_trips(name, kwargs):
    theirs = getattr(tf_keras.layers, name)(**kwargs).get_config()
    layer = getattr(sepconv, name)(**kwargs)
    ours = layer.get_config()
    expected = set(theirs)
    if name == "SpatialDropout2D":  # tf-keras drops data_format; sepconv keeps it
        expected.add("data_format")
        assert theirs.get("data_format") is None
    assert set(ours) == expected
    for key in theirs:
        if key != "name":
            assert _strip(ours[key]) == _strip(theirs[key]), key
    # tf-keras' config builds the same layer in sepconv, and ours round-trips
    again = getattr(sepconv, name).from_config(dict(theirs, name=f"{ours['name']}_tf"))
    assert _strip({k: v for k, v in again.get_config().items() if k in theirs}) == \
        _strip({k: v for k, v in theirs.items()})
    assert _strip(type(layer).from_config(dict(ours, name=ours["name"] + "_rt")).get_config()) \
        == _strip(ours)


def test_time_distributed_config_nests_the_inner_layer():
    ref = tf_keras.layers.TimeDistributed(tf_keras.layers.Dense(2, activation="tanh"))
    theirs = ref.get_config()
    ours = sepconv.TimeDistributed.from_config(theirs)
    assert isinstance(ours.layer, sepconv.Dense) and ours.layer.units == 2
    cfg = ours.get_config()
    assert set(cfg) == set(theirs)
    assert cfg["layer"]["class_name"] == "Dense"
    assert _strip(cfg["layer"]["config"]) == _strip(theirs["layer"]["config"])


def test_leaky_relu_reads_keras3_negative_slope():
    layer = sepconv.LeakyReLU.from_config({"name": "lk3", "negative_slope": 0.1,
                                           "trainable": True, "dtype": "float32"})
    assert layer.alpha == pytest.approx(0.1)


# -- forward (and gradients) --------------------------------------------------------------

FORWARD_CASES = [
    ("Dense", dict(units=4), (3, 5)),
    ("Dense", dict(units=3, activation="tanh"), (2, 4, 5)),
    ("Dense", dict(units=2, use_bias=False), (2, 3, 4, 5)),
    ("Activation", dict(activation="softplus"), (3, 4)),
    ("Activation", dict(activation="hard_sigmoid"), (3, 4)),
    ("ReLU", dict(), (4, 5)),
    ("ReLU", dict(max_value=1.0), (4, 5)),
    ("ReLU", dict(negative_slope=0.2), (4, 5)),
    ("ReLU", dict(negative_slope=0.1, max_value=1.5, threshold=0.3), (4, 5)),
    ("ReLU", dict(threshold=0.5), (4, 5)),
    ("ReLU", dict(max_value=6.0), (4, 5)),
    ("LeakyReLU", dict(), (4, 5)),
    ("LeakyReLU", dict(alpha=1.7), (4, 5)),
    ("PReLU", dict(), (2, 3, 4)),
    ("PReLU", dict(shared_axes=[1]), (2, 3, 4)),
    ("PReLU", dict(shared_axes=[1, 2]), (2, 3, 4, 5)),
    ("ELU", dict(), (4, 5)),
    ("ELU", dict(alpha=0.5), (4, 5)),
    ("Softmax", dict(), (3, 5)),
    ("Softmax", dict(axis=1), (2, 3, 4)),
    ("Softmax", dict(axis=[1, 2]), (2, 3, 4)),
    ("Dropout", dict(rate=0.5), (3, 4)),
    ("SpatialDropout1D", dict(rate=0.5), (2, 3, 4)),
    ("SpatialDropout2D", dict(rate=0.5), (2, 3, 4, 2)),
    ("SpatialDropout3D", dict(rate=0.5), (2, 3, 4, 2, 2)),
    ("GaussianNoise", dict(stddev=1.0), (3, 4)),
    ("Flatten", dict(), (2, 3, 4)),
    ("Flatten", dict(data_format="channels_first"), (2, 3, 4, 5)),
    ("Flatten", dict(data_format="channels_first"), (2, 3)),
    ("Reshape", dict(target_shape=(4, -1)), (2, 3, 4)),
    ("Reshape", dict(target_shape=(2, 3, 2)), (2, 12)),
    ("Permute", dict(dims=(2, 1)), (2, 3, 4)),
    ("Permute", dict(dims=(3, 1, 2)), (2, 3, 4, 5)),
    ("RepeatVector", dict(n=3), (2, 4)),
    ("BatchNormalization", dict(), (4, 3)),
    ("BatchNormalization", dict(axis=1, center=False), (4, 3, 5)),
    ("BatchNormalization", dict(scale=False), (4, 3, 5, 2)),
    ("BatchNormalization", dict(axis=[1, 3]), (4, 3, 5, 2)),
    ("LayerNormalization", dict(), (4, 3)),
    ("LayerNormalization", dict(axis=1), (4, 3, 5)),
    ("LayerNormalization", dict(axis=[1, 2], center=False), (2, 3, 4, 5)),
    ("GlobalMaxPooling1D", dict(), (2, 5, 3)),
    ("GlobalMaxPooling2D", dict(keepdims=True), (2, 5, 4, 3)),
    ("GlobalMaxPooling3D", dict(data_format="channels_first"), (2, 3, 2, 4, 3)),
    ("GlobalAveragePooling1D", dict(data_format="channels_first"), (2, 3, 5)),
    ("GlobalAveragePooling2D", dict(), (2, 5, 4, 3)),
    ("GlobalAveragePooling3D", dict(keepdims=True), (2, 2, 3, 4, 3)),
]


@pytest.mark.parametrize("name,kwargs,shape", FORWARD_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(FORWARD_CASES)])
def test_forward_and_gradients_match_tf_keras(name, kwargs, shape):
    """Inference mode (eval / training=False) outputs, input gradients and weight
    gradients; dropout and noise layers are the identity there."""
    rng = np.random.default_rng(len(shape) + 7 * len(kwargs))
    x = rng.standard_normal(shape).astype(np.float32)
    ours = getattr(sepconv, name)(**kwargs).eval()
    ours(torch.from_numpy(x))
    _randomise(ours, rng)
    ref = getattr(tf_keras.layers, name)(**kwargs)
    ref.build(shape)
    ref.set_weights(ours.get_weights())
    _grads(ours, ref, x, weighted=bool(ours.get_weights()))
    assert ours.compute_output_shape(shape) == tuple(ref.compute_output_shape(shape))
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in ref.get_weights()]


def test_batch_normalization_training_forward_and_gradients():
    """Batch statistics in training: outputs, input and gamma/beta gradients."""
    rng = np.random.default_rng(5)
    for shape, axis in [((6, 3), -1), ((4, 5, 3), -1), ((3, 4, 5, 2), -1), ((3, 2, 4, 5), 1),
                        ((2, 3, 2, 2, 4), -1)]:
        x = rng.standard_normal(shape).astype(np.float32) * 2 + 1
        ours = sepconv.BatchNormalization(axis=axis).train()
        ours(torch.from_numpy(x))
        _randomise(ours, rng)
        ref = tf_keras.layers.BatchNormalization(axis=axis)
        ref.build(shape)
        ref.set_weights(ours.get_weights())
        _grads(ours, ref, x, training=True, tol=2e-5)


# -- BatchNormalization's moving statistics ----------------------------------------------

BN_STEPS = [
    ("2d", dict(), (8, 3), "float32"),
    ("3d", dict(momentum=0.9), (4, 6, 3), "float32"),
    ("4d-fused", dict(momentum=0.8), (4, 3, 3, 2), "float32"),
    ("4d-axis1-fused", dict(axis=1, momentum=0.8), (4, 2, 3, 3), "float32"),
    ("5d-fused", dict(momentum=0.7), (2, 2, 3, 2, 3), "float32"),
    ("4d-axis2", dict(axis=2, momentum=0.8), (4, 3, 3, 2), "float32"),
    ("4d-float64", dict(momentum=0.8), (4, 3, 3, 2), "float64"),
    ("4d-tiny-epsilon", dict(momentum=0.5, epsilon=1e-7), (2, 2, 2, 2), "float32"),
    ("3d-multi-axis", dict(axis=[1, 2], momentum=0.8), (5, 3, 2), "float32"),
    ("batch-of-one", dict(momentum=0.6), (1, 2, 2, 3), "float32"),
]


@pytest.mark.parametrize("case,kwargs,shape,dtype", BN_STEPS, ids=[c[0] for c in BN_STEPS])
def test_batch_normalization_moving_statistics_match_tf_keras(case, kwargs, shape, dtype):
    """Three training calls, then inference: tf-keras' moving mean and variance (the
    unbiased batch variance on its fused 4D/5D path, the biased one elsewhere) and
    outputs, step by step."""
    rng = np.random.default_rng(9)
    ours = sepconv.BatchNormalization(dtype=dtype, **kwargs).train()
    ref = tf_keras.layers.BatchNormalization(dtype=dtype, **kwargs)
    ref.build(shape)
    ours(torch.zeros(shape, dtype=getattr(torch, dtype)))  # build (updates: reset below)
    _randomise(ours, rng)
    ref.set_weights(ours.get_weights())
    tol = 1e-5 if dtype == "float32" else 1e-12
    for _ in range(3):
        x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
        y = ours(torch.from_numpy(x)).detach().numpy()
        yr = ref(x, training=True).numpy()
        np.testing.assert_allclose(y, yr, atol=tol, rtol=tol)
        for got, want in zip(ours.get_weights(), ref.get_weights()):
            np.testing.assert_allclose(got, want, atol=tol, rtol=tol)
    ours.eval()
    x = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_allclose(ours(torch.from_numpy(x)).detach().numpy(),
                               ref(x, training=False).numpy(), atol=tol, rtol=tol)


def test_batch_normalization_moving_statistics_under_model_fit():
    """model.fit (compiled tf.function) updates as the eager calls do: the same moving
    statistics as sepconv after an epoch of batches, weights included (SGD)."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((12, 4, 4, 3)) * 2 + 1).astype(np.float32)
    t = rng.standard_normal((12, 4, 4, 3)).astype(np.float32)
    ours = sepconv.BatchNormalization(momentum=0.9, input_shape=(4, 4, 3)).train()
    _randomise(ours, rng)
    model = tf_keras.Sequential([tf_keras.Input((4, 4, 3)),
                                 tf_keras.layers.BatchNormalization(momentum=0.9)])
    model.layers[0].set_weights(ours.get_weights())
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
    model.fit(x, t, batch_size=4, epochs=1, shuffle=False, verbose=0)
    opt = torch.optim.SGD(ours.parameters(), lr=0.1)
    for i in range(0, 12, 4):
        opt.zero_grad()
        loss = torch.mean((ours(torch.from_numpy(x[i:i + 4])) - torch.from_numpy(t[i:i + 4]))
                          ** 2)
        loss.backward()
        opt.step()
    for got, want in zip(ours.get_weights(), model.layers[0].get_weights()):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_frozen_batch_normalization_runs_in_inference_mode():
    """tf-keras 2: trainable=False makes BatchNormalization use its moving statistics even
    in training (and leave them alone)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 3, 2)).astype(np.float32)
    ours = sepconv.BatchNormalization(trainable=False).train()
    ours(torch.from_numpy(x))
    _randomise(ours, rng)
    ref = tf_keras.layers.BatchNormalization(trainable=False)
    ref.build(x.shape)
    ref.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours(torch.from_numpy(x)).detach().numpy(),
                               ref(x, training=True).numpy(), atol=1e-5)
    for got, want in zip(ours.get_weights(), ref.get_weights()):
        np.testing.assert_array_equal(got, want)


# -- pooling ------------------------------------------------------------------------------

@st.composite
def pool_cases(draw):
    rank = draw(st.integers(1, 3))
    pool = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    strides = draw(st.one_of(st.none(), st.tuples(*[st.integers(1, 3)] * rank)))
    padding = draw(st.sampled_from(["valid", "same"]))
    spatial = tuple(draw(st.integers(p, p + 4)) for p in pool)
    return dict(rank=rank, pool=pool, strides=strides, padding=padding, spatial=spatial,
                op=draw(st.sampled_from(["Max", "Average"])),
                fmt=draw(st.sampled_from(["channels_last", "channels_first"])),
                # TensorFlow has no float64 3D pooling kernels
                dtype=draw(st.sampled_from(["float32", "float64"] if rank < 3 else
                                           ["float32"])),
                seed=draw(st.integers(0, 1000)))


def _numpy_pool(x, pool, strides, padding, op):
    """TensorFlow's pooling by loops, channels_last: 'same' windows start at
    ``o * s - total // 2`` with ``total = max((ceil(n / s) - 1) * s + k - n, 0)``, and
    take only the real elements."""
    spatial = x.shape[1:-1]
    if padding == "same":
        out = [-(-n // s) for n, s in zip(spatial, strides)]
        left = [max((o - 1) * s + k - n, 0) // 2
                for o, s, k, n in zip(out, strides, pool, spatial)]
    else:
        out = [(n - k) // s + 1 for n, s, k in zip(spatial, strides, pool)]
        left = [0] * len(spatial)
    y = np.zeros((x.shape[0], *out, x.shape[-1]), x.dtype)
    for o in np.ndindex(*out):
        window = tuple(slice(max(i * s - p, 0), min(i * s - p + k, n))
                       for i, s, p, k, n in zip(o, strides, left, pool, spatial))
        block = x[(slice(None),) + window + (slice(None),)]
        axes = tuple(range(1, 1 + len(out)))
        y[(slice(None),) + o + (slice(None),)] = (block.max(axis=axes) if op == "Max"
                                                  else block.mean(axis=axes))
    return y


@SETTINGS
@given(pool_cases())
def test_pooling_matches_tf_keras(case):
    """Outputs and input gradients of Max/AveragePooling1D/2D/3D, TF's 'same' included,
    against tf-keras and a loop reference."""
    rank, fmt = case["rank"], case["fmt"]
    name = f"{case['op']}Pooling{rank}D"
    rng = np.random.default_rng(case["seed"])
    shape = (2,) + case["spatial"] + (3,)
    x = rng.standard_normal(shape).astype(case["dtype"])
    kwargs = dict(pool_size=case["pool"], strides=case["strides"], padding=case["padding"])
    ref = getattr(tf_keras.layers, name)(dtype=case["dtype"], **kwargs)
    xv = tf.Variable(x)
    r = rng.standard_normal(ref.compute_output_shape(shape)).astype(case["dtype"])
    with tf.GradientTape() as tape:
        yr = ref(xv)
        loss = tf.reduce_sum(yr * r)
    gr = tape.gradient(loss, xv).numpy()
    ours = getattr(sepconv, name)(data_format=fmt, dtype=case["dtype"], **kwargs)
    perm = (0, rank + 1) + tuple(range(1, rank + 1))
    back = (0,) + tuple(range(2, rank + 2)) + (1,)
    xin = x if fmt == "channels_last" else np.transpose(x, perm)
    xt = torch.tensor(np.ascontiguousarray(xin), requires_grad=True)
    y = ours(xt)
    rin = r if fmt == "channels_last" else np.transpose(r, perm)
    (y * torch.from_numpy(np.ascontiguousarray(rin))).sum().backward()
    yo, go = y.detach().numpy(), xt.grad.numpy()
    if fmt == "channels_first":
        yo, go = np.transpose(yo, back), np.transpose(go, back)
    tol = 1e-6 if case["dtype"] == "float32" else 1e-12
    strides = case["strides"] or case["pool"]
    np.testing.assert_allclose(yo, _numpy_pool(x, case["pool"], strides, case["padding"],
                                               case["op"]), atol=tol, rtol=1e-5)
    # TensorFlow's CPU (Eigen) 3D pooling returns wrong numbers under 'same' when a pool
    # is smaller than its stride (see test_tf_3d_same_pooling_bug); compare elsewhere.
    if not (rank == 3 and case["padding"] == "same" and
            any(p < s for p, s in zip(case["pool"], strides))):
        np.testing.assert_allclose(yo, yr.numpy(), atol=tol, rtol=1e-5)
        np.testing.assert_allclose(go, gr, atol=tol, rtol=1e-5)
    assert ours.compute_output_shape(xin.shape) == tuple(y.shape)
    assert y.dtype == getattr(torch, case["dtype"])


def test_tf_3d_same_pooling_bug():
    """Where tf-keras is wrong, sepconv is not: TensorFlow's Eigen MaxPool3D with
    pool (1, 1, 1), strides (1, 1, 3), 'same' on 3 steps should return step 0 (as its 1D
    and 2D pools, and its oneDNN build, do).  If TensorFlow fixes this, drop the carve-out
    in test_pooling_matches_tf_keras."""
    x = np.random.default_rng(0).standard_normal((2, 1, 1, 3, 3)).astype(np.float32)
    ours = sepconv.MaxPooling3D((1, 1, 1), (1, 1, 3), padding="same")(x).numpy()
    np.testing.assert_array_equal(ours, x[:, :, :, :1])
    tf2d = tf.nn.max_pool2d(x[:, 0], (1, 1), (1, 3), "SAME").numpy()
    np.testing.assert_array_equal(ours[:, 0], tf2d)


# -- merging, Embedding, TimeDistributed --------------------------------------------------

MERGE_CASES = [
    ("Add", {}, [(2, 3), (2, 3), (2, 3)]),
    ("Add", {}, [(2, 3, 4), (2, 1, 4)]),
    ("Add", {}, [(2, 3, 4), (2, 4)]),
    ("Subtract", {}, [(2, 3), (2, 3)]),
    ("Multiply", {}, [(2, 3, 4), (2, 3, 1)]),
    ("Average", {}, [(2, 3), (2, 3), (2, 3)]),
    ("Maximum", {}, [(2, 5), (2, 5)]),
    ("Minimum", {}, [(2, 5), (2, 5), (2, 5)]),
    ("Concatenate", {}, [(2, 3), (2, 4)]),
    ("Concatenate", dict(axis=1), [(2, 3, 4), (2, 1, 4), (2, 2, 4)]),
    ("Concatenate", dict(axis=-2), [(2, 3, 4), (2, 5, 4)]),
]


@pytest.mark.parametrize("name,kwargs,shapes", MERGE_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(MERGE_CASES)])
def test_merging_matches_tf_keras(name, kwargs, shapes):
    rng = np.random.default_rng(len(shapes))
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ref = getattr(tf_keras.layers, name)(**kwargs)
    want = ref(xs).numpy()
    ours = getattr(sepconv, name)(**kwargs)
    got = ours([torch.from_numpy(x) for x in xs]).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert ours.compute_output_shape(shapes) == tuple(ref.compute_output_shape(shapes))
    r_fn = getattr(sepconv, sepconv.r.r_name(name))
    np.testing.assert_allclose(r_fn(xs, **kwargs).numpy(), want, atol=1e-6)


def test_embedding_matches_tf_keras():
    rng = np.random.default_rng(2)
    ours = sepconv.Embedding(7, 3, input_length=4)
    _randomise(ours, rng)
    ref = tf_keras.layers.Embedding(7, 3, input_length=4)
    ref.build((None, 4))
    ref.set_weights(ours.get_weights())
    idx = rng.integers(0, 7, (5, 4))
    np.testing.assert_array_equal(ours(idx).detach().numpy(), ref(idx).numpy())
    np.testing.assert_array_equal(ours(idx.astype(np.float32) + 0.7).detach().numpy(),
                                  ref(idx.astype(np.float32) + 0.7).numpy())
    # Keras' default initializer: RandomUniform(-0.05, 0.05)
    w = sepconv.Embedding(400, 50).get_weights()[0]
    assert w.shape == (400, 50) and -0.05 <= w.min() < -0.04 and 0.04 < w.max() <= 0.05


def test_time_distributed_matches_tf_keras():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    for inner_ours, inner_ref in [
            (sepconv.Dense(2, activation="relu"), tf_keras.layers.Dense(2, activation="relu")),
            (sepconv.MaxPooling1D(2, padding="same"),
             tf_keras.layers.MaxPooling1D(2, padding="same")),
            (sepconv.SeparableConv1D(3, 2, padding="causal"),
             tf_keras.layers.SeparableConv1D(3, 2, padding="causal"))]:
        ours = sepconv.TimeDistributed(inner_ours).eval()
        ours(torch.from_numpy(x))
        _randomise(ours.layer, rng)
        ref = tf_keras.layers.TimeDistributed(inner_ref)
        ref.build(x.shape)
        ref.set_weights(ours.get_weights())
        _grads(ours, ref, x, weighted=bool(ours.get_weights()))
        assert ours.compute_output_shape(x.shape) == tuple(ref.compute_output_shape(x.shape))


def test_dense_regularizers_and_mixed_precision_match_tf_keras():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    kw = dict(units=3, kernel_regularizer="l2", bias_regularizer="l1",
              activity_regularizer="l1_l2")
    ours = sepconv.Dense(**kw, input_shape=(2, 4))
    _randomise(ours, rng)
    ref = tf_keras.layers.Dense(**kw)
    ref.build((None, 2, 4))
    ref.set_weights(ours.get_weights())
    ours(torch.from_numpy(x))
    ref(x)
    np.testing.assert_allclose([float(v) for v in ours.losses], [float(v) for v in ref.losses],
                               rtol=1e-5)
    for dtype in ("mixed_float16", "float64"):
        ref = tf_keras.layers.Dense(3, dtype=dtype, activation="tanh")
        y_ref = ref(x)
        ours = sepconv.Dense.from_config(ref.get_config())
        ours.set_weights(ref.get_weights())
        y = ours(x)
        assert str(y.dtype).replace("torch.", "") == y_ref.dtype.name
        np.testing.assert_allclose(y.detach().double().numpy(),
                                   tf.cast(y_ref, tf.float64).numpy(), atol=2e-3)
    for cls, dtype in [("BatchNormalization", "mixed_float16"),
                       ("BatchNormalization", "float16"),
                       ("LayerNormalization", "mixed_float16"),
                       ("LayerNormalization", "float16")]:
        ref = getattr(tf_keras.layers, cls)(dtype=dtype)
        y_ref = ref(x * 3)
        ours = getattr(sepconv, cls).from_config(ref.get_config()).eval()
        ours.set_weights(ref.get_weights())
        y = ours(x * 3)
        assert y.dtype == torch.float16 and y_ref.dtype.name == "float16"
        # a 16-bit batch norm keeps float32 weights in tf-keras
        assert [str(w.dtype).replace("torch.", "") for w in ours.weights] == \
            [w.dtype.name for w in ref.weights]
        np.testing.assert_allclose(y.float().detach().numpy(),
                                   tf.cast(y_ref, tf.float32).numpy(), atol=2e-3)


@SETTINGS
@given(st.one_of(st.none(), st.floats(0, 3)), st.sampled_from([0.0, 0.1, 0.5, 2.0]),
       st.sampled_from([0.0, 0.2, 1.0]), st.sampled_from(["float32", "float64"]))
def test_relu_arguments_match_tf_keras(max_value, negative_slope, threshold, dtype):
    """Every branch of tf-keras' backend.relu (leaky, thresholded, clipped, relu6)."""
    x = np.concatenate([np.linspace(-4, 4, 81), [threshold, max_value or 0.0]]).astype(dtype)
    kwargs = dict(max_value=max_value, negative_slope=negative_slope, threshold=threshold)
    ours = sepconv.ReLU(dtype=dtype, **kwargs)(torch.from_numpy(x)).numpy()
    theirs = tf_keras.layers.ReLU(dtype=dtype, **kwargs)(x).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_relu6_shortcut_and_leaky_relu_above_one():
    x = np.linspace(-8, 8, 33).astype(np.float32)
    for layer, ref in [(sepconv.ReLU(max_value=6), tf_keras.layers.ReLU(max_value=6)),
                       (sepconv.LeakyReLU(2.5), tf_keras.layers.LeakyReLU(2.5))]:
        np.testing.assert_allclose(layer(x).numpy(), ref(x).numpy(), atol=1e-6)
