"""Parity of ``DepthwiseConv1D``, ``DepthwiseConv2D`` and ``SeparableConv2D`` with tf-keras
2.21 (what R keras wraps): outputs and the gradients of the input and of every weight,
configs, signatures, weights, errors, losses, constraints and dtype policies.

Every comparison copies sepconv's weights into tf-keras with ``set_weights(get_weights())``
(so Keras' shapes and order are checked too).  Where TensorFlow's CPU kernels cannot run a
configuration, the reference is still TensorFlow, computed another way:

- ``channels_first``: TensorFlow's CPU depthwise kernel is NHWC only, so ``DepthwiseConv1D``
  and ``SeparableConv2D`` fail there (``DepthwiseConv2D`` transposes internally and runs:
  it is compared directly).  The reference is tf-keras' channels_last layer (without
  activation) on the transposed input, transposed back, then tf-keras' activation.
- unequal strides (``strides=(1, 2)``): TensorFlow's CPU depthwise kernel refuses them at
  call; sepconv computes them.  The reference is ``tf.nn.conv2d`` with the depthwise kernel
  expanded into the equivalent dense block-diagonal kernel (TensorFlow's own padding
  arithmetic), checked against tf-keras on equal strides below.
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

pytestmark = pytest.mark.usefixtures("torch_single_thread")

CLASSES = ["DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv2D"]
RANK = {"DepthwiseConv1D": 1, "DepthwiseConv2D": 2, "SeparableConv2D": 2}
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
ACTIVATIONS = [None, "relu", "tanh", "elu", "softmax", "sigmoid"]


def _ours(cls_name):
    return getattr(sepconv, cls_name)


def _theirs(cls_name):
    return getattr(tf_keras.layers, cls_name)


# -- TensorFlow references ------------------------------------------------------------------

def _dense_depthwise(dw):
    """``(*k, C, M)`` -> the dense ``(*k, C, C*M)`` kernel of the same convolution
    (output channel ``c*M + m`` reads input channel ``c`` only)."""
    c, m = dw.shape[-2], dw.shape[-1]
    dense = tf.einsum("...cm,cd->...cdm", dw, tf.eye(c, dtype=dw.dtype))
    return tf.reshape(dense, tuple(dw.shape[:-2]) + (c, c * m))


def _tf_dense_forward(layer, x, variables):
    """TensorFlow's plain convolution on the dense kernel (NHWC / NWC), any strides."""
    dw = variables[0]
    kernel = _dense_depthwise(dw)
    y = tf.nn.convolution(x, kernel, strides=layer.strides, padding=layer.padding.upper(),
                          dilations=layer.dilation_rate)
    rest = list(variables[1:])
    if layer._SEPARABLE:
        y = tf.nn.conv2d(y, rest.pop(0), 1, "VALID")
    if layer.use_bias:
        y = tf.nn.bias_add(y, rest.pop(0))
    return y


def _to_last(x, rank):
    return tf.transpose(x, (0,) + tuple(range(2, rank + 2)) + (1,))


def _to_first(x, rank):
    return tf.transpose(x, (0, rank + 1) + tuple(range(1, rank + 1)))


def tf_reference(layer, x, cotangent, dense=False):
    """TensorFlow's output and gradients (input, then each weight) for sepconv ``layer``'s
    arguments and weights on numpy ``x``, loss ``sum(y * cotangent)``."""
    cls_name = type(layer).__name__
    rank = layer.RANK
    activation = sepconv.activations.serialize(layer.activation)
    channels_first = layer.data_format == "channels_first"
    unequal = len(set(layer.strides)) > 1
    direct = not dense and not unequal and (not channels_first or cls_name == "DepthwiseConv2D")
    x_tf = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_tf)
        if direct:
            ref = _theirs(cls_name).from_config(dict(layer.get_config(), name=None))
            ref.build(x.shape)
            ref.set_weights(layer.get_weights())
            variables = ref.trainable_weights
            y = ref(x_tf)
        else:
            x_last = _to_last(x_tf, rank) if channels_first else x_tf
            if dense or unequal:
                variables = [tf.Variable(w) for w in layer.get_weights()]
                y = _tf_dense_forward(layer, x_last, variables)
            else:
                config = dict(layer.get_config(), name=None, activation=None,
                              data_format="channels_last")
                ref = _theirs(cls_name).from_config(config)
                ref.build(x_last.shape)
                ref.set_weights(layer.get_weights())
                variables = ref.trainable_weights
                y = ref(x_last)
            if channels_first:
                y = _to_first(y, rank)
            y = tf_keras.activations.get(activation)(y)
        loss = tf.reduce_sum(y * cotangent)
    grads = tape.gradient(loss, [x_tf] + list(variables))
    return y.numpy(), [g.numpy() for g in grads]


def torch_run(layer, x, cotangent):
    xt = torch.from_numpy(x).requires_grad_(True)
    y = layer(xt)
    grads = torch.autograd.grad((y * torch.from_numpy(cotangent)).sum(), [xt] + layer.weights)
    return y.detach().numpy(), [g.numpy() for g in grads]


def assert_close(got, want, dtype):
    tol = 1e-5 if dtype == "float32" else 1e-10
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, atol=tol * scale, rtol=tol)


# -- forward and gradients on drawn configurations ----------------------------------------

@st.composite
def cases(draw, cls_name):
    rank = RANK[cls_name]
    kernel_size = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    if draw(st.booleans()):
        strides = tuple(draw(st.integers(1, 3)) for _ in range(rank))
        dilation = (1,) * rank
    else:
        strides = (1,) * rank
        dilation = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    padding = draw(st.sampled_from(["valid", "same"]))
    spans = [(k - 1) * d + 1 for k, d in zip(kernel_size, dilation)]
    spatial = tuple(draw(st.one_of(st.just(s if padding == "valid" else 1),
                                   st.integers(s if padding == "valid" else 1, s + 6)))
                    for s in spans)
    args = dict(kernel_size=kernel_size if draw(st.booleans()) or rank == 1
                else list(kernel_size),
                strides=strides[0] if len(set(strides)) == 1 and draw(st.booleans())
                else strides,
                dilation_rate=dilation, padding=draw(st.sampled_from([padding,
                                                                      padding.upper()])),
                depth_multiplier=draw(st.integers(1, 3)), use_bias=draw(st.booleans()),
                activation=draw(st.sampled_from(ACTIVATIONS)),
                data_format=draw(st.sampled_from(["channels_last", "channels_first"])),
                dtype=draw(st.sampled_from(["float32", "float64"])))
    if cls_name == "SeparableConv2D":
        args["filters"] = draw(st.integers(1, 4))
    shape = dict(batch=draw(st.integers(1, 2)), spatial=spatial,
                 channels=draw(st.integers(1, 4)), seed=draw(st.integers(0, 2**31 - 1)))
    return args, shape


def _make(cls_name, args, shape):
    rng = np.random.default_rng(shape["seed"])
    layer = _ours(cls_name)(**args)
    c, dtype = shape["channels"], args["dtype"]
    x_shape = ((shape["batch"],) + shape["spatial"] + (c,)
               if layer.data_format == "channels_last"
               else (shape["batch"], c) + shape["spatial"])
    x = rng.standard_normal(x_shape).astype(dtype)
    layer(torch.from_numpy(x[:1]))  # lazy build
    layer.set_weights([rng.standard_normal(w.shape).astype(dtype) * 0.5
                       for w in layer.get_weights()])
    out_shape = layer.compute_output_shape(x.shape)
    cotangent = rng.standard_normal(out_shape).astype(dtype)
    return layer, x, cotangent


@pytest.mark.parametrize("cls_name", CLASSES)
def test_forward_and_gradients_match_tf_keras(cls_name):
    @SETTINGS
    @given(cases(cls_name))
    def check(case):
        layer, x, cotangent = _make(cls_name, *case)
        y, grads = torch_run(layer, x, cotangent)
        ref_y, ref_grads = tf_reference(layer, x, cotangent)
        assert y.shape == ref_y.shape and y.dtype == ref_y.dtype
        assert_close(y, ref_y, layer.dtype)
        assert len(grads) == len(ref_grads) == 1 + len(layer.weights)
        for got, want in zip(grads, ref_grads):
            assert got.shape == want.shape
            assert_close(got, want, layer.dtype)

    check()


@pytest.mark.parametrize("cls_name", CLASSES)
def test_dense_reference_is_tf_keras_where_both_run(cls_name):
    """The dense TensorFlow reference used for unequal strides equals tf-keras' layer."""
    for strides, dilation, pad in [(1, 1, "same"), (2, 1, "same"), (3, 1, "valid"),
                                   (1, 2, "same"), (2, 1, "valid")]:
        rank = RANK[cls_name]
        args = dict(kernel_size=(3,) * rank, strides=strides, dilation_rate=dilation,
                    padding=pad, depth_multiplier=2, dtype="float64", activation="tanh")
        if cls_name == "SeparableConv2D":
            args["filters"] = 3
        shape = dict(batch=2, spatial=(7,) * rank, channels=3, seed=strides + 7 * dilation)
        layer, x, cotangent = _make(cls_name, args, shape)
        y, grads = tf_reference(layer, x, cotangent)
        ref_y, ref_grads = tf_reference(layer, x, cotangent, dense=True)
        assert_close(y, ref_y, "float64")
        for got, want in zip(grads, ref_grads):
            assert_close(got, want, "float64")


def test_tf_keras_refuses_unequal_strides_on_cpu_sepconv_computes_them():
    x = np.random.default_rng(0).standard_normal((2, 9, 8, 3)).astype(np.float32)
    for cls_name in ["DepthwiseConv2D", "SeparableConv2D"]:
        args = dict(kernel_size=3, strides=(1, 2), padding="same")
        if cls_name == "SeparableConv2D":
            args["filters"] = 2
        with pytest.raises(tf.errors.InvalidArgumentError):
            _theirs(cls_name)(**args)(x)
        layer = _ours(cls_name)(**args)
        assert tuple(layer(x).shape)[1:3] == (9, 4)


def test_tf_keras_channels_first_fails_on_cpu_where_sepconv_runs():
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 8)).astype(np.float32)
    with pytest.raises(tf.errors.UnimplementedError):
        tf_keras.layers.SeparableConv2D(2, 3, data_format="channels_first")(x)
    with pytest.raises(tf.errors.UnimplementedError):
        tf_keras.layers.DepthwiseConv1D(3, data_format="channels_first")(x[..., 0])
    assert tuple(sepconv.SeparableConv2D(2, 3, data_format="channels_first")(x).shape) == \
        (2, 2, 7, 6)


# -- 1 channel, length-1 output axes, strided (the oneDNN trap of the issue) --------------

@pytest.mark.parametrize("cls_name", CLASSES)
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_one_channel_and_length_one_outputs_match_tf(cls_name, fmt):
    rank = RANK[cls_name]
    for spatial, k, s in [((9, 5), 4, (1, 2)), ((4, 9), 4, (2, 1)), ((4, 4), 4, (2, 2)),
                          ((1, 7), 1, (3, 1)), ((5, 1), (3, 1), (2, 2))]:
        k = k if rank == 2 or isinstance(k, int) else k[0]
        args = dict(kernel_size=k, strides=s[:rank], padding="valid", data_format=fmt,
                    depth_multiplier=2, dtype="float32")
        if cls_name == "SeparableConv2D":
            args["filters"] = 1
        layer, x, cot = _make(cls_name, args, dict(batch=2, spatial=spatial[:rank],
                                                   channels=1, seed=1))
        # The input as the issue builds it: channels_last memory seen as channels_first.
        if fmt == "channels_first":
            xt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, 1, -1))).movedim(-1, 1)
        else:
            xt = torch.from_numpy(x)
        y = layer(xt).detach().numpy()
        ref_y, _ = tf_reference(layer, x, cot)
        assert_close(y, ref_y, "float32")


# -- signatures, configs, weights ---------------------------------------------------------

@pytest.mark.parametrize("cls_name", CLASSES)
def test_signature_is_tf_keras_then_r_keras_extras(cls_name):
    check_signature(_ours(cls_name), _theirs(cls_name),
                    getattr(sepconv, sepconv.r.r_name(cls_name)),
                    required=2 if cls_name == "SeparableConv2D" else 1)


def _full(cls_name):
    rank = RANK[cls_name]
    args = dict(kernel_size=(3, 2)[:rank], strides=(2, 2)[:rank], padding="same",
                data_format="channels_last", depth_multiplier=2, activation="relu6",
                use_bias=False,
                depthwise_initializer=dict(class_name="RandomNormal",
                                           config=dict(mean=0.1, stddev=0.3, seed=3)),
                bias_initializer="ones", depthwise_regularizer="l1_l2",
                bias_regularizer=dict(class_name="L1", config=dict(l1=0.5)),
                activity_regularizer="l1", depthwise_constraint="max_norm",
                bias_constraint="unit_norm", trainable=False, name=f"full_{cls_name}")
    if cls_name == "SeparableConv2D":
        args.update(filters=5, pointwise_initializer="he_uniform",
                    pointwise_regularizer="l2", pointwise_constraint="non_neg")
    return args


@pytest.mark.parametrize("cls_name", CLASSES)
def test_get_config_has_tf_keras_keys_and_values(cls_name):
    ours = _ours(cls_name)(**_full(cls_name)).get_config()
    theirs = _theirs(cls_name)(**_full(cls_name)).get_config()
    expected = set(theirs) - {"kernel_initializer", "kernel_regularizer", "kernel_constraint"}
    assert set(ours) == expected
    for key in expected:
        assert strip_config(ours[key]) == strip_config(theirs[key]), key
    # Defaults too: tuples for strides / dilation_rate, data_format resolved.
    args = dict(filters=2) if cls_name == "SeparableConv2D" else {}
    d_ours = _ours(cls_name)(kernel_size=3, **args).get_config()
    d_theirs = _theirs(cls_name)(kernel_size=3, **args).get_config()
    for key in ["kernel_size", "strides", "dilation_rate", "data_format", "padding",
                "depth_multiplier", "groups", "use_bias", "activation"]:
        assert strip_config(d_ours[key]) == strip_config(d_theirs[key]), key


@pytest.mark.parametrize("cls_name", CLASSES)
def test_from_tf_keras_config_weights_and_losses(cls_name):
    rank = RANK[cls_name]
    ref = _theirs(cls_name)(**dict(_full(cls_name), name=None, trainable=True))
    shape = (None,) * (rank + 1) + (3,)
    ref.build(shape)
    ours = _ours(cls_name).from_config(ref.get_config())
    for key, value in ours.get_config().items():
        if key != "name":
            assert strip_config(value) == strip_config(ref.get_config()[key]), key
    ours.set_weights(ref.get_weights())  # builds from the weights' shapes
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in ref.weights]
    assert [p for p, _ in ours.named_parameters()] == \
        [w.name.split("/")[-1].split(":")[0] for w in ref.weights]
    x = np.random.default_rng(0).standard_normal((2,) + (7,) * rank + (3,)).astype(np.float32)
    np.testing.assert_allclose(ours(torch.from_numpy(x)).detach().numpy(), ref(x).numpy(),
                               atol=1e-5)
    np.testing.assert_allclose([v.item() for v in ours.losses],
                               [float(v) for v in ref.losses], rtol=1e-5)


@pytest.mark.parametrize("cls_name", CLASSES)
@pytest.mark.parametrize("use_bias", [True, False])
def test_weight_shapes_match_tf_keras(cls_name, use_bias):
    rank = RANK[cls_name]
    args = dict(kernel_size=(3, 5)[:rank], depth_multiplier=3, use_bias=use_bias)
    if cls_name == "SeparableConv2D":
        args["filters"] = 7
    for fmt in ["channels_last", "channels_first"]:
        shape = ((None,) * (rank + 1) + (4,) if fmt == "channels_last"
                 else (None, 4) + (None,) * rank)
        ref = _theirs(cls_name)(data_format=fmt, **args)
        ref.build(shape)
        ours = _ours(cls_name)(data_format=fmt, input_shape=shape[1:], **args)
        assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in ref.weights]
        ours.set_weights(ref.get_weights())
        for got, want in zip(ours.get_weights(), ref.get_weights()):
            np.testing.assert_array_equal(got, want)
        with pytest.raises(ValueError, match="expects"):
            ours.set_weights(ref.get_weights()[:-1])
        bad = [np.zeros((w.shape[0] + 1,) + w.shape[1:], np.float32)
               for w in ref.get_weights()]
        with pytest.raises(ValueError, match="shape"):
            ours.set_weights(bad)


@pytest.mark.parametrize("cls_name", CLASSES)
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_compute_output_shape_matches_tf_keras(cls_name, fmt):
    rank = RANK[cls_name]
    extra = dict(filters=6) if cls_name == "SeparableConv2D" else {}
    for k, s, d in [(1, 1, 1), (3, 1, 1), (4, 2, 1), (5, 3, 1), (3, 1, 2), (2, 1, 3)]:
        for pad in ["valid", "same"]:
            kw = dict(kernel_size=k, strides=s, dilation_rate=d, padding=pad,
                      data_format=fmt, depth_multiplier=2, **extra)
            ours, ref = _ours(cls_name)(**kw), _theirs(cls_name)(**kw)
            span = (k - 1) * d + 1
            for n in [None, span, span + 1, span + 6]:
                spatial = (n, span + 2)[:rank]
                shape = ((4,) + spatial + (3,) if fmt == "channels_last"
                         else (4, 3) + spatial)
                expected = tuple(ref.compute_output_shape(tf.TensorShape(shape)).as_list())
                assert ours.compute_output_shape(shape) == expected, (k, s, d, pad, n)


# -- errors where tf-keras raises ---------------------------------------------------------

@pytest.mark.parametrize("cls_name", CLASSES)
def test_refusals_match_tf_keras_and_name_the_argument(cls_name):
    rank = RANK[cls_name]
    base = dict(filters=2) if cls_name == "SeparableConv2D" else {}
    refused = [
        (dict(kernel_size=3, padding="causal"), "padding", "causal"),
        (dict(kernel_size=3, strides=2, dilation_rate=2), "dilation_rate", "2"),
        (dict(kernel_size=3, strides=0), "strides", "0"),
        (dict(kernel_size=0), "kernel_size", "0"),
    ]
    if rank == 2:
        # Any stride > 1 with any dilation > 1, even on different axes.
        refused.append((dict(kernel_size=3, strides=(2, 1), dilation_rate=(1, 2)),
                        "dilation_rate", "(1, 2)"))
    for kwargs, argument, value in refused:
        with pytest.raises(ValueError):
            _theirs(cls_name)(**base, **kwargs)
        with pytest.raises(ValueError) as info:
            _ours(cls_name)(**base, **kwargs)
        assert argument in str(info.value) and value in str(info.value), str(info.value)
    # Dilation alone, unequal per axis, is accepted by both.
    if rank == 2:
        _theirs(cls_name)(**base, kernel_size=3, dilation_rate=(1, 2))
        _ours(cls_name)(**base, kernel_size=3, dilation_rate=(1, 2))


@pytest.mark.parametrize("cls_name", CLASSES)
def test_too_short_input_fails_in_tf_and_is_a_value_error_here(cls_name):
    rank = RANK[cls_name]
    base = dict(filters=2) if cls_name == "SeparableConv2D" else {}
    shape = (1,) + (3,) * rank + (2,)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        _theirs(cls_name)(kernel_size=5, **base)(np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match="too short"):
        _ours(cls_name)(kernel_size=5, **base)(torch.zeros(shape))
    with pytest.raises(ValueError, match="input_shape"):
        _ours(cls_name)(kernel_size=5, input_shape=shape[1:], **base)


# -- regularizers, constraints, dtype policies --------------------------------------------

@pytest.mark.parametrize("cls_name", CLASSES)
def test_optimizer_step_with_constraints_and_losses_matches_tf_keras(cls_name):
    rank = RANK[cls_name]
    rng = np.random.default_rng(4)
    kwargs = dict(kernel_size=3, padding="same", depth_multiplier=2,
                  depthwise_constraint="max_norm", depthwise_regularizer="l2",
                  activity_regularizer="l1",
                  bias_constraint=dict(class_name="MaxNorm", config=dict(max_value=0.1)))
    if cls_name == "SeparableConv2D":
        kwargs.update(filters=3, pointwise_constraint="non_neg", pointwise_regularizer="l1")
    ours = _ours(cls_name)(input_shape=(None,) * rank + (2,), **kwargs)
    ours.set_weights([rng.standard_normal(w.shape).astype(np.float32)
                      for w in ours.get_weights()])
    ref = _theirs(cls_name)(**kwargs)
    ref.build((None,) * (rank + 1) + (2,))
    ref.set_weights(ours.get_weights())
    x = rng.standard_normal((4,) + (6,) * rank + (2,)).astype(np.float32)
    target = rng.standard_normal(ours.compute_output_shape(x.shape)).astype(np.float32)
    check_sgd_step(ours, ref, x, target)


@pytest.mark.parametrize("cls_name", CLASSES)
@pytest.mark.parametrize("dtype,tol", [("mixed_float16", 2e-3), ("mixed_bfloat16", 2e-2),
                                       ("float64", 1e-12)])
def test_dtype_policies_match_tf_keras(cls_name, dtype, tol):
    rank = RANK[cls_name]
    kwargs = dict(kernel_size=3, padding="same", dtype=dtype, activation="tanh",
                  depth_multiplier=2)
    if cls_name == "SeparableConv2D":
        kwargs["filters"] = 4
    ref = _theirs(cls_name)(**kwargs)
    x = np.random.default_rng(0).standard_normal((2,) + (6,) * rank + (3,))  # float64
    y_ref = ref(x)
    ours = _ours(cls_name).from_config(dict(ref.get_config(), name=None))
    assert ours.dtype == dtype
    ours.set_weights(ref.get_weights())
    y = ours(x)
    assert str(y.dtype).replace("torch.", "") == y_ref.dtype.name
    assert str(ours.depthwise_kernel.dtype).replace("torch.", "") == \
        ref.depthwise_kernel.dtype.name
    np.testing.assert_allclose(y.detach().double().numpy(),
                               tf.cast(y_ref, tf.float64).numpy(), atol=tol, rtol=tol)


# -- initializer fans ---------------------------------------------------------------------

@pytest.mark.parametrize("cls_name", CLASSES)
@pytest.mark.parametrize("init", ["glorot_uniform", "he_normal", "lecun_uniform"])
def test_initializer_fans_match_tf_keras(cls_name, init):
    """Keras computes the fans of each kernel from its Keras shape: the statistics of the
    built kernels agree with tf-keras' on the same shapes."""
    rank = RANK[cls_name]
    kwargs = dict(kernel_size=(5, 3)[:rank], depth_multiplier=3, depthwise_initializer=init)
    if cls_name == "SeparableConv2D":
        kwargs.update(filters=48, pointwise_initializer=init)
    shape = (None,) * (rank + 1) + (128,)
    tf_keras.utils.set_random_seed(0)
    torch.manual_seed(0)
    ref = _theirs(cls_name)(**kwargs)
    ref.build(shape)
    ours = _ours(cls_name)(input_shape=shape[1:], **kwargs)
    for got, want in zip(ours.get_weights()[:-1], ref.get_weights()[:-1]):
        assert got.shape == want.shape
        assert got.std() == pytest.approx(want.std(), rel=0.05)
        if init.endswith("uniform"):
            assert np.abs(got).max() == pytest.approx(np.abs(want).max(), rel=0.02)
