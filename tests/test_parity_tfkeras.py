"""Parity with tf-keras 2.21, the implementation R keras wraps (and the only one with
``padding="causal"`` for this layer).

Every test builds the same layer in tf-keras and in sepconv, copies sepconv's weights into
tf-keras with ``set_weights(get_weights())`` (so the Keras shapes and order are checked
too) and compares what tf-keras computes: outputs, output shapes, configs, regularizer
penalties, constraint projections and the weights after an optimizer step.

TensorFlow's CPU depthwise convolution only supports NHWC, so tf-keras cannot run
``data_format="channels_first"`` here.  For that format the reference is tf-keras'
channels_last layer (without activation) on the transposed input, transposed back, with
tf-keras' activation applied to the channels_first tensor, which is what tf-keras computes
on a device that supports NCW.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

import sepconv  # noqa: E402
from tf_keras_compare import check_sgd_step, check_signature, strip_config  # noqa: E402
from sepconv import activations  # noqa: E402
from kernel_env import kernel_choice  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")

ATOL = 1e-5
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

# Names tf-keras 2.21 resolves; the others are Keras 3 additions (tested in
# test_parity_keras3.py).
TF_ACTIVATIONS = []
for _name in activations.registry.known():
    try:
        tf_keras.activations.get(_name)
        TF_ACTIVATIONS.append(_name)
    except (ValueError, TypeError):
        pass


def _tf_reference(layer: sepconv.SeparableConv1D, x: np.ndarray, **kwargs) -> np.ndarray:
    """tf-keras' output for sepconv ``layer``'s arguments and weights on ``x``."""
    config = dict(filters=layer.filters, kernel_size=layer.kernel_size,
                  strides=layer.strides, padding=layer.padding,
                  dilation_rate=layer.dilation_rate, depth_multiplier=layer.depth_multiplier,
                  use_bias=layer.use_bias, dtype=layer.dtype)
    config.update(kwargs)
    activation = activations.serialize(layer.activation)
    channels_first = layer.data_format == "channels_first"
    ref = tf_keras.layers.SeparableConv1D(activation=None if channels_first else activation,
                                          **config)
    ref.build((None, None, layer.input_channels))
    ref.set_weights(layer.get_weights())
    if not channels_first:
        return ref(x).numpy()
    y = tf.transpose(ref(np.transpose(x, (0, 2, 1))), (0, 2, 1))
    return tf_keras.activations.get(activation)(y).numpy()


@st.composite
def layer_args(draw, activation=st.sampled_from(TF_ACTIVATIONS)):
    kernel_size = draw(st.integers(1, 5))
    strides = draw(st.integers(1, 3))
    dilation = 1 if strides > 1 else draw(st.integers(1, 3))
    pad = draw(st.sampled_from(["valid", "same", "causal"]))
    span = (kernel_size - 1) * dilation + 1
    min_len = span if pad == "valid" else 1
    length = draw(st.one_of(st.just(min_len), st.integers(min_len, min_len + 9)))
    return dict(
        filters=draw(st.integers(1, 5)), kernel_size=kernel_size, strides=strides,
        padding=draw(st.sampled_from([pad, pad.upper()])), dilation_rate=dilation,
        depth_multiplier=draw(st.integers(1, 3)), use_bias=draw(st.booleans()),
        activation=draw(activation),
        data_format=draw(st.sampled_from(["channels_last", "channels_first"])),
        dtype=draw(st.sampled_from(["float32", "float32", "float64"])),
    ), dict(batch=draw(st.integers(1, 3)), steps=length, channels=draw(st.integers(1, 4)),
            seed=draw(st.integers(0, 2**31 - 1)),
            # the default dispatch and the reference kernel, both against tf-keras
            kernel=draw(st.sampled_from(["", "reference"])))


def _make(args, shape):
    rng = np.random.default_rng(shape["seed"])
    layer = sepconv.SeparableConv1D(**args)
    c = shape["channels"]
    x_shape = ((shape["batch"], shape["steps"], c) if layer.data_format == "channels_last"
               else (shape["batch"], c, shape["steps"]))
    x = rng.standard_normal(x_shape).astype(layer.dtype)
    layer(torch.from_numpy(x[:1]))  # lazy build
    # Non-zero bias and unit-scale kernels so every term is exercised.
    layer.set_weights([rng.standard_normal(w.shape).astype(layer.dtype) * 0.5
                       for w in layer.get_weights()])
    return layer, x


@SETTINGS
@given(layer_args())
def test_forward_matches_tf_keras(case):
    args, shape = case
    with kernel_choice(shape["kernel"]):
        layer, x = _make(args, shape)
        out = layer(torch.from_numpy(x)).detach().numpy()
    ref = _tf_reference(layer, x)
    assert out.shape == ref.shape and out.dtype == ref.dtype == np.dtype(layer.dtype)
    tol = ATOL if layer.dtype == "float32" else 1e-9  # tf-keras gelu: float32 constants
    np.testing.assert_allclose(out, ref, atol=tol, rtol=tol)
    # The layer's own shape arithmetic agrees with what tf-keras produced.
    assert layer.compute_output_shape(x.shape) == ref.shape


@pytest.mark.parametrize("name", TF_ACTIVATIONS)
def test_every_activation_matches_tf_keras(name):
    rng = np.random.default_rng(7)
    layer = sepconv.SeparableConv1D(4, 3, padding="same", activation=name,
                                    depth_multiplier=2, input_shape=(None, 3))
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32)
                       for w in layer.get_weights()])
    x = rng.standard_normal((2, 9, 3)).astype(np.float32) * 2
    out = layer(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(out, _tf_reference(layer, x), atol=ATOL * 4, rtol=1e-5)


def test_hard_sigmoid_is_the_tf_keras_formula():
    x = np.linspace(-4, 4, 81, dtype=np.float32)
    ours = activations.get("hard_sigmoid")(torch.from_numpy(x)).numpy()
    theirs = tf_keras.activations.hard_sigmoid(tf.constant(x)).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-7)
    np.testing.assert_allclose(ours, np.clip(0.2 * x + 0.5, 0, 1), atol=1e-7)


@pytest.mark.parametrize("pad", ["valid", "same", "causal"])
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_compute_output_shape_matches_tf_keras(pad, fmt):
    for k, s, d in [(1, 1, 1), (3, 1, 1), (4, 2, 1), (5, 3, 1), (3, 1, 2), (2, 1, 3)]:
        ours = sepconv.SeparableConv1D(6, k, strides=s, dilation_rate=d, padding=pad,
                                       data_format=fmt)
        ref = tf_keras.layers.SeparableConv1D(6, k, strides=s, dilation_rate=d, padding=pad,
                                              data_format=fmt)
        span = (k - 1) * d + 1
        for steps in [None, span, span + 1, span + 7, 1 if pad != "valid" else span]:
            shape = (4, steps, 3) if fmt == "channels_last" else (4, 3, steps)
            expected = tuple(ref.compute_output_shape(tf.TensorShape(shape)).as_list())
            assert ours.compute_output_shape(shape) == expected, (k, s, d, steps)
            assert ours.compute_output_shape((None,) + shape[1:]) == (None,) + expected[1:]


def test_too_short_valid_input_is_an_error():
    """tf-keras silently returns zero steps here; sepconv raises, as Keras 3 does (see
    test_parity_keras3.py) and as the issue asks: an error, never a wrong answer."""
    ref = tf_keras.layers.SeparableConv1D(2, 5, padding="valid")
    assert tuple(ref(np.zeros((1, 4, 3), np.float32)).shape) == (1, 0, 2)
    ours = sepconv.SeparableConv1D(2, 5, padding="valid")
    with pytest.raises(ValueError, match=r"\(1, 4, 3\)"):
        ours(torch.zeros(1, 4, 3))


# -- configs --------------------------------------------------------------------------

_FULL = dict(filters=5, kernel_size=3, strides=2, padding="causal", data_format="channels_last",
             depth_multiplier=2, activation="relu6", use_bias=False,
             depthwise_initializer=dict(class_name="RandomNormal",
                                        config=dict(mean=0.1, stddev=0.3, seed=3)),
             pointwise_initializer="he_uniform", bias_initializer="ones",
             depthwise_regularizer="l1_l2", pointwise_regularizer="l2",
             bias_regularizer=dict(class_name="L1", config=dict(l1=0.5)),
             activity_regularizer="l1", depthwise_constraint="max_norm",
             pointwise_constraint="non_neg", bias_constraint="unit_norm",
             trainable=False, name="full_layer_cfg")


def test_get_config_has_tf_keras_keys_and_values():
    ours = sepconv.SeparableConv1D(**_FULL).get_config()
    theirs = tf_keras.layers.SeparableConv1D(**_FULL).get_config()
    expected_keys = set(theirs) - {"kernel_initializer", "kernel_regularizer",
                                   "kernel_constraint"}
    assert set(ours) == expected_keys
    for key in expected_keys:
        assert strip_config(ours[key]) == strip_config(theirs[key]), key


def test_from_tf_keras_config_builds_the_same_layer():
    ref = tf_keras.layers.SeparableConv1D(**dict(_FULL, name="from_tf_cfg"))
    ref.build((None, None, 3))
    ours = sepconv.SeparableConv1D.from_config(ref.get_config())
    theirs = ref.get_config()
    for key, value in ours.get_config().items():
        assert strip_config(value) == strip_config(theirs[key]), key
    ours.set_weights(ref.get_weights())
    x = np.random.default_rng(0).standard_normal((2, 11, 3)).astype(np.float32)
    np.testing.assert_allclose(ours(torch.from_numpy(x)).detach().numpy(), ref(x).numpy(),
                               atol=ATOL)
    # The weight penalties are the same functions as well.
    np.testing.assert_allclose([v.item() for v in ours.losses],
                               [float(v) for v in ref.losses], rtol=1e-5)


# -- regularizers -----------------------------------------------------------------------

@pytest.mark.parametrize("regs", [
    dict(depthwise_regularizer="l1", pointwise_regularizer="l2", bias_regularizer="l1_l2",
         activity_regularizer="l2"),
    dict(depthwise_regularizer=dict(class_name="L1L2", config=dict(l1=0.3, l2=0.1)),
         activity_regularizer="l1_l2"),
    dict(pointwise_regularizer=dict(class_name="L2", config=dict(l2=1.5)),
         activity_regularizer=dict(class_name="L1", config=dict(l1=0.2))),
])
def test_layer_losses_match_tf_keras(regs):
    rng = np.random.default_rng(1)
    ours = sepconv.SeparableConv1D(4, 3, depth_multiplier=2, padding="same",
                                   input_shape=(None, 3), **regs)
    ours.set_weights([rng.standard_normal(w.shape).astype(np.float32)
                      for w in ours.get_weights()])
    ref = tf_keras.layers.SeparableConv1D(4, 3, depth_multiplier=2, padding="same", **regs)
    ref.build((None, None, 3))
    ref.set_weights(ours.get_weights())
    x = rng.standard_normal((5, 8, 3)).astype(np.float32)
    ours(torch.from_numpy(x))
    with tf.GradientTape() as tape:
        ref(x)
        tf_total = tf.add_n(ref.losses)
    got = [v.item() for v in ours.losses]
    want = [float(v) for v in ref.losses]
    assert len(got) == len(want)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # The model-wide sum is the same total, with the same gradients.
    total = sepconv.regularization_loss(torch.nn.Sequential(ours))
    np.testing.assert_allclose(total.item(), sum(want), rtol=1e-5)
    total.backward()
    for param, grad in zip(ours.weights, tape.gradient(tf_total, ref.trainable_weights)):
        np.testing.assert_allclose(param.grad.numpy(), np.asarray(grad), atol=1e-5, rtol=1e-4)


def test_l1_l2_by_name_is_001_each_as_in_tf_keras():
    reg = sepconv.regularizers.get("l1_l2")
    ref = tf_keras.regularizers.get("l1_l2")
    assert (reg.l1, reg.l2) == pytest.approx((0.01, 0.01))
    x = np.random.default_rng(2).standard_normal((3, 4, 2)).astype(np.float32)
    np.testing.assert_allclose(float(reg(torch.from_numpy(x))), float(ref(x)), rtol=1e-6)
    np.testing.assert_allclose(float(reg(torch.from_numpy(x))),
                               0.01 * np.abs(x).sum() + 0.01 * np.square(x).sum(), rtol=1e-5)


# -- constraints ------------------------------------------------------------------------

_CONSTRAINTS = ["max_norm", "non_neg", "unit_norm", "min_max_norm",
                dict(class_name="MaxNorm", config=dict(max_value=0.5, axis=[0, 1])),
                dict(class_name="MinMaxNorm",
                     config=dict(min_value=0.8, max_value=1.2, rate=0.5, axis=1)),
                dict(class_name="UnitNorm", config=dict(axis=-1))]


def _constraint_cases():
    for constraint in _CONSTRAINTS:
        axis = None if isinstance(constraint, str) else constraint["config"].get("axis")
        for shape in [(3, 4, 2), (1, 8, 5), (5,)]:
            if len(shape) == 1 and axis not in (None, 0, -1):
                continue  # an axis a vector does not have
            name = constraint if isinstance(constraint, str) else constraint["class_name"]
            yield pytest.param(constraint, shape, id=f"{name}-{shape}")


@pytest.mark.parametrize("constraint,shape", list(_constraint_cases()))
def test_constraints_match_tf_keras(constraint, shape):
    w = np.random.default_rng(3).standard_normal(shape).astype(np.float32) * 1.5
    ours = sepconv.constraints.get(constraint)(torch.from_numpy(w)).numpy()
    theirs = tf_keras.constraints.get(constraint)(tf.constant(w)).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=1e-5)


def test_optimizer_step_with_constraints_matches_tf_keras():
    """One SGD step in both libraries: gradients, update and the projection afterwards."""
    rng = np.random.default_rng(4)
    kwargs = dict(filters=3, kernel_size=3, padding="causal", depth_multiplier=2,
                  depthwise_constraint="max_norm", pointwise_constraint="non_neg",
                  bias_constraint=dict(class_name="MaxNorm", config=dict(max_value=0.1)))
    ours = sepconv.SeparableConv1D(input_shape=(None, 2), **kwargs)
    ours.set_weights([rng.standard_normal(w.shape).astype(np.float32)
                      for w in ours.get_weights()])
    ref = tf_keras.layers.SeparableConv1D(**kwargs)
    ref.build((None, None, 2))
    ref.set_weights(ours.get_weights())
    x = rng.standard_normal((4, 7, 2)).astype(np.float32)
    target = rng.standard_normal((4, 7, 3)).astype(np.float32)
    check_sgd_step(ours, ref, x, target)
    assert (ours.get_weights()[1] >= 0).all()


# -- dtype policies -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype,tol", [("mixed_float16", 2e-3), ("mixed_bfloat16", 2e-2),
                                       ("float16", 2e-3), ("bfloat16", 2e-2),
                                       ("float64", 1e-12)])
def test_dtype_policies_match_tf_keras(dtype, tol):
    """Weights, output dtype and values of each policy; tf-keras' weights (ml_dtypes
    bfloat16 arrays included) load with set_weights, and its policy config is read."""
    ref = tf_keras.layers.SeparableConv1D(4, 3, padding="causal", dtype=dtype,
                                          activation="tanh", depth_multiplier=2)
    x = np.random.default_rng(0).standard_normal((2, 9, 3))  # float64 input
    y_ref = ref(x)
    ours = sepconv.SeparableConv1D.from_config(ref.get_config())
    assert ours.dtype == dtype
    ours.set_weights(ref.get_weights())
    y = ours(x)
    assert str(y.dtype).replace("torch.", "") == y_ref.dtype.name
    want_weights = [np.asarray(w, np.float32 if dtype != "float64" else np.float64)
                    for w in ref.get_weights()]
    for got, want in zip(ours.get_weights(), want_weights):
        np.testing.assert_array_equal(got.astype(want.dtype), want)
    assert str(ours.depthwise_kernel.dtype).replace("torch.", "") == \
        ref.depthwise_kernel.dtype.name
    np.testing.assert_allclose(y.detach().double().numpy(),
                               tf.cast(y_ref, tf.float64).numpy(), atol=tol, rtol=tol)


def test_signature_is_tf_keras_then_r_keras_extras():
    """Names, order and defaults of tf-keras' arguments, then the R/Keras 2 base-layer
    arguments; the R-style function takes the same after ``object``."""
    check_signature(sepconv.SeparableConv1D, tf_keras.layers.SeparableConv1D,
                    sepconv.layer_separable_conv_1d, required=2)
