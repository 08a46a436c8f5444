"""Conv1D/2D/3D and Conv1D/2D/3DTranspose against tf-keras 2.21 (what R keras wraps).

Every case builds the sepconv layer, gives it random weights, copies them into tf-keras
with ``set_weights(get_weights())`` (Keras' shapes and order) and compares the output and
the gradients of a random projection of it with respect to the input, the kernel and the
bias, computed by TensorFlow (``tf.GradientTape``) and by torch autograd.

Where tf-keras cannot run a configuration on this CPU the reference is still TensorFlow's:

- ``data_format="channels_first"``: TensorFlow's CPU convolutions are NHWC only, so the
  reference is tf-keras' channels_last layer on the transposed input, transposed back (with
  the activation applied afterwards), as test_parity_tfkeras.py does.
- transposed convolutions tf-keras refuses or ignores (dilated ``Conv1DTranspose``: CPU
  kernels refuse it; ``Conv2DTranspose`` with unequal dilations: tf-keras refuses it;
  ``Conv3DTranspose`` ``dilation_rate``: tf-keras ignores it): TensorFlow's own definition
  of the op, the gradient of ``tf.nn.convolution`` from the tf-keras output shape
  (``conv_utils.deconv_output_length``) back to the input, by a nested ``GradientTape``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
from tf_keras.src.utils import conv_utils  # noqa: E402

import sepconv  # noqa: E402
from numpy_reference import tf_pads  # noqa: E402
from tf_keras_compare import check_sgd_step, check_signature, strip_config  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")

CONVS = ["Conv1D", "Conv2D", "Conv3D"]
TRANSPOSES = ["Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"]
RANK = {name: int(name[4]) for name in CONVS + TRANSPOSES}
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.filter_too_much])


def _to_last(t, rank):
    return tf.transpose(t, [0, *range(2, rank + 2), 1])


def _to_first(t, rank):
    return tf.transpose(t, [0, rank + 1, *range(1, rank + 1)])


def _tf_keras_runs(layer) -> bool:
    """Whether tf-keras computes this configuration itself on the CPU (see module doc)."""
    d = layer.dilation_rate
    if not layer.TRANSPOSE or max(d) == 1:
        return True
    return layer.RANK == 2 and d[0] == d[1]


def _tf_conv_transpose(x, kernel, layer):
    """TensorFlow's transposed convolution by definition: the input gradient of the
    convolution from the tf-keras output shape to the shape of ``x`` (channels_last)."""
    out_pad = layer.output_padding or (None,) * layer.RANK
    out = [conv_utils.deconv_output_length(n, k, padding=layer.padding, output_padding=p,
                                           stride=s, dilation=d)
           for n, k, p, s, d in zip(x.shape[1:-1], layer.kernel_size, out_pad,
                                    layer.strides, layer.dilation_rate)]
    z = tf.zeros([x.shape[0], *out, layer.filters], x.dtype)
    with tf.GradientTape() as inner:
        inner.watch(z)
        y = tf.nn.convolution(z, kernel, strides=layer.strides,
                              padding=layer.padding.upper(), dilations=layer.dilation_rate,
                              data_format=("NWC", "NHWC", "NDHWC")[layer.RANK - 1])
    return inner.gradient(y, z, output_gradients=x)


def _eigen_same_shift(layer) -> bool:
    """TensorFlow's Eigen Conv3D (the CPU kernel with TF_ENABLE_ONEDNN_OPTS=0, as the tests
    run it) mis-pads ``"same"`` when a kernel span is smaller than the stride: its window
    starts one step late (``tf.nn.conv3d`` of [1, 2, 3], k=1, stride 3 gives 2, where
    Conv1D, Conv2D, oneDNN's Conv3D, the default, and TensorFlow's documented padding give
    1; see test_tf_eigen_conv3d_same_shift).  There the reference pads by the documented
    amounts itself."""
    return layer.RANK == 3 and layer.padding == "same" and any(
        (k - 1) * d + 1 < s for k, d, s in zip(layer.kernel_size, layer.dilation_rate,
                                              layer.strides))


def _same_pads(spatial, layer):
    """TensorFlow's documented "same" padding, [[before, after], ...] (channels_last)."""
    pads = [[0, 0]]
    for n, k, s, d in zip(spatial, layer.kernel_size, layer.strides, layer.dilation_rate):
        pads.append(list(tf_pads(n, k, s, d, "same")))
    return pads + [[0, 0]]


def tf_reference(layer, x: np.ndarray, g: np.ndarray):
    """TensorFlow's output for ``layer`` on ``x`` and the gradients of ``sum(output * g)``
    with respect to the input, kernel and bias (numpy arrays)."""
    rank, cf = layer.RANK, layer.data_format == "channels_first"
    weights = layer.get_weights()
    x = tf.constant(x)
    shift = _eigen_same_shift(layer)
    with tf.GradientTape() as tape:
        tape.watch(x)
        x_last = _to_last(x, rank) if cf else x
        padding = layer.padding
        if shift and not layer.TRANSPOSE:
            x_last = tf.pad(x_last, _same_pads(x_last.shape[1:-1], layer))
            padding = "valid"
        if _tf_keras_runs(layer):
            config = dict(filters=layer.filters, kernel_size=layer.kernel_size,
                          strides=layer.strides, padding=padding,
                          dilation_rate=layer.dilation_rate, use_bias=layer.use_bias,
                          dtype=layer.dtype)
            if layer.TRANSPOSE:
                config["output_padding"] = layer.output_padding
            else:
                config["groups"] = layer.groups
            ref = getattr(tf_keras.layers, type(layer).__name__)(**config)
            ref.build(x_last.shape)
            ref.set_weights(weights)
            variables = ref.trainable_weights
            y = ref(x_last)
        else:
            variables = [tf.Variable(w) for w in weights]
            y = _tf_conv_transpose(x_last, variables[0], layer)
            if layer.use_bias:
                y = y + variables[1]
        if cf:
            y = _to_first(y, rank)
        y = tf_keras.activations.get(sepconv.activations.serialize(layer.activation))(y)
        loss = tf.reduce_sum(y * g)
    grads = tape.gradient(loss, [x, *variables])
    if shift and layer.TRANSPOSE:
        # The input gradient of a transposed convolution is the convolution of the output
        # gradient: there TensorFlow runs the mis-padded Conv3D, so pad it here instead.
        g_last = _to_last(tf.constant(g), rank) if cf else tf.constant(g)
        dy = tf.pad(g_last * _activation_grad(layer, y, cf), _same_pads(g_last.shape[1:-1],
                                                                     layer))
        dx = tf.nn.conv3d(dy, variables[0], strides=[1, *layer.strides, 1], padding="VALID")
        grads[0] = _to_first(dx, rank) if cf else dx
    return y.numpy(), [np.asarray(v) for v in grads]


def _activation_grad(layer, y, cf):
    """d activation / d pre-activation at output ``y`` (channels_last), for the activations
    the cases draw."""
    name = sepconv.activations.serialize(layer.activation)
    y = _to_last(y, layer.RANK) if cf else y
    if name == "tanh":
        return 1 - y * y
    if name == "sigmoid":
        return y * (1 - y)
    if name == "relu":
        return tf.cast(y > 0, y.dtype)
    return tf.ones_like(y)


def torch_result(layer, x: np.ndarray, g: np.ndarray):
    xt = torch.from_numpy(x).requires_grad_(True)
    y = layer(xt)
    (y * torch.from_numpy(g)).sum().backward()
    return y.detach().numpy(), [xt.grad.numpy()] + [w.grad.numpy() for w in layer.weights]


def _close(got, want, dtype, what):
    tol = 1e-5 if dtype == "float32" else 1e-10
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    assert got.shape == want.shape, what
    np.testing.assert_allclose(got, want, atol=tol * scale, rtol=tol, err_msg=what)


@st.composite
def cases(draw, class_name):
    rank, transpose = RANK[class_name], class_name in TRANSPOSES
    kernel = tuple(draw(st.integers(1, 4 if rank < 3 else 3)) for _ in range(rank))
    if draw(st.booleans()):  # strided (tf-keras refuses strides with dilations)
        strides, dilation = tuple(draw(st.integers(1, 3)) for _ in range(rank)), (1,) * rank
    else:
        strides, dilation = (1,) * rank, tuple(draw(st.integers(1, 3)) for _ in range(rank))
    paddings = ["valid", "same"] + (["causal"] * 2 if class_name == "Conv1D" else [])
    padding = draw(st.sampled_from(paddings))
    args = dict(kernel_size=kernel if draw(st.booleans()) or len(set(kernel)) > 1
                else kernel[0],
                strides=strides, padding=draw(st.sampled_from([padding, padding.upper()])),
                dilation_rate=dilation, use_bias=draw(st.booleans()),
                activation=draw(st.sampled_from([None, "tanh", "relu", "sigmoid"])),
                data_format=draw(st.sampled_from(["channels_last", "channels_first"])),
                dtype=draw(st.sampled_from(["float32", "float32", "float64"])))
    groups = 1
    if transpose:
        if draw(st.booleans()):
            out_pad = tuple(draw(st.integers(0, s - 1)) for s in strides)
            # TensorFlow fails on "same" with an even span and output_padding 0 (refused
            # at construction, tested below): give those axes output_padding 1 or None.
            if sepconv.padding.deconv_mismatch((4,) * rank, kernel, strides, dilation,
                                               padding, out_pad):
                out_pad = tuple(1 if p == 0 and s > 1 else p
                                for p, s in zip(out_pad, strides))
            if not sepconv.padding.deconv_mismatch((4,) * rank, kernel, strides, dilation,
                                                   padding, out_pad):
                args["output_padding"] = out_pad
    else:
        groups = draw(st.sampled_from([1, 1, 2, 3]))
        args["groups"] = groups
    args["filters"] = groups * draw(st.integers(1, 3 if rank < 3 else 2))
    channels = groups * draw(st.integers(1, 3 if rank < 3 else 2))
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    spatial = []
    for span in spans:
        low = span if padding == "valid" and not transpose else 1
        spatial.append(draw(st.one_of(st.just(low), st.integers(low, low + (5 if rank < 3
                                                                            else 2)))))
    return args, dict(batch=draw(st.integers(1, 2)), spatial=spatial, channels=channels,
                      seed=draw(st.integers(0, 2**31 - 1)))


def _make(class_name, args, shape):
    rng = np.random.default_rng(shape["seed"])
    layer = getattr(sepconv, class_name)(**args)
    c = shape["channels"]
    x_shape = ((shape["batch"], *shape["spatial"], c) if layer.data_format == "channels_last"
               else (shape["batch"], c, *shape["spatial"]))
    x = rng.standard_normal(x_shape).astype(layer.dtype)
    layer.build(x_shape)
    layer.set_weights([rng.standard_normal(w.shape).astype(layer.dtype) * 0.5
                       for w in layer.get_weights()])
    out_shape = layer.compute_output_shape(x_shape)
    g = rng.standard_normal(out_shape).astype(layer.dtype)
    return layer, x, g


def _check(class_name, case):
    args, shape = case
    layer, x, g = _make(class_name, args, shape)
    want_y, want_grads = tf_reference(layer, x, g)
    got_y, got_grads = torch_result(layer, x, g)
    assert got_y.dtype == np.dtype(layer.dtype)
    _close(got_y, want_y, layer.dtype, "output")
    names = ["input"] + layer._weight_order
    assert len(got_grads) == len(want_grads) == len(names)
    for name, got, want in zip(names, got_grads, want_grads):
        _close(got, want, layer.dtype, f"gradient of {name}")


@SETTINGS
@given(cases("Conv1D"))
def test_conv1d_forward_and_gradients_match_tf(case):
    _check("Conv1D", case)


@SETTINGS
@given(cases("Conv2D"))
def test_conv2d_forward_and_gradients_match_tf(case):
    _check("Conv2D", case)


@SETTINGS
@given(cases("Conv3D"))
def test_conv3d_forward_and_gradients_match_tf(case):
    _check("Conv3D", case)


@SETTINGS
@given(cases("Conv1DTranspose"))
def test_conv1d_transpose_forward_and_gradients_match_tf(case):
    _check("Conv1DTranspose", case)


@SETTINGS
@given(cases("Conv2DTranspose"))
def test_conv2d_transpose_forward_and_gradients_match_tf(case):
    _check("Conv2DTranspose", case)


@SETTINGS
@given(cases("Conv3DTranspose"))
def test_conv3d_transpose_forward_and_gradients_match_tf(case):
    _check("Conv3DTranspose", case)


def test_adjoint_reference_is_tf_keras_where_tf_keras_runs():
    """The by-definition reference used for the configurations tf-keras cannot run equals
    tf-keras where it can, so it is TensorFlow's op and not an assumption of ours."""
    rng = np.random.default_rng(5)
    for cls, kw, shape in [
        (sepconv.Conv1DTranspose, dict(strides=3, padding="same", output_padding=1), (2, 5, 3)),
        (sepconv.Conv2DTranspose, dict(strides=(2, 3), padding="same"), (1, 4, 3, 2)),
        (sepconv.Conv2DTranspose, dict(dilation_rate=2, padding="same"), (1, 4, 5, 2)),
        (sepconv.Conv3DTranspose, dict(strides=(1, 2, 2), padding="valid"), (1, 3, 2, 3, 2)),
    ]:
        layer = cls(3, 3, use_bias=False, dtype="float64", **kw)
        layer.build(shape)
        assert _tf_keras_runs(layer)
        x = rng.standard_normal(shape)
        ref = getattr(tf_keras.layers, cls.__name__)(3, 3, use_bias=False, dtype="float64",
                                                     **kw)
        ref.build(shape)
        ref.set_weights(layer.get_weights())
        np.testing.assert_allclose(
            _tf_conv_transpose(tf.constant(x), ref.kernel, layer).numpy(), ref(x).numpy(),
            atol=1e-12)


# -- tf-keras' refusals, and where sepconv does better ----------------------------------

def test_tf_eigen_conv3d_same_shift():
    """The TensorFlow fact ``_eigen_same_shift`` works around: the Eigen Conv3D kernel's
    window starts one step late ("same", kernel span < stride); Conv2D on the same data,
    and sepconv, start where TensorFlow's documented padding says (oneDNN's Conv3D, on by
    default in TensorFlow for x86, does too)."""
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0":
        pytest.skip("TensorFlow runs oneDNN's Conv3D here, not Eigen's")
    x = np.arange(1, 4, dtype=np.float32)
    k = np.ones((1, 1, 1, 1, 1), np.float32)
    eigen = tf.nn.conv3d(x.reshape(1, 1, 1, 3, 1), k, [1, 1, 1, 3, 1], "SAME").numpy()
    conv2d = tf.nn.conv2d(x.reshape(1, 1, 3, 1), k[0], [1, 1, 3, 1], "SAME").numpy()
    assert eigen.ravel().tolist() == [2.0] and conv2d.ravel().tolist() == [1.0]
    ours = sepconv.functional.conv(torch.from_numpy(x.reshape(1, 1, 1, 3, 1)),
                                   torch.from_numpy(k), strides=(1, 1, 3), padding="same")
    assert ours.numpy().ravel().tolist() == [1.0]


def _tf_call_fails(layer, shape):
    try:
        layer(np.zeros(shape, np.float32))
    except Exception:  # noqa: BLE001 - TensorFlow raises several kinds
        return True
    return False


def test_tf_keras_facts_sepconv_is_better_on():
    # dilated Conv1DTranspose: the CPU kernels refuse it; sepconv computes it.
    assert _tf_call_fails(tf_keras.layers.Conv1DTranspose(2, 3, dilation_rate=2), (1, 5, 2))
    assert sepconv.Conv1DTranspose(2, 3, dilation_rate=2)(torch.zeros(1, 5, 2)).shape == \
        (1, 9, 2)
    # Conv2DTranspose with unequal dilations: tf-keras refuses it at call.
    assert _tf_call_fails(tf_keras.layers.Conv2DTranspose(2, 3, dilation_rate=(1, 2)),
                          (1, 5, 5, 2))
    assert sepconv.Conv2DTranspose(2, 3, dilation_rate=(1, 2))(torch.zeros(1, 5, 5, 2)).shape \
        == (1, 7, 9, 2)
    # Conv3DTranspose: tf-keras ignores dilation_rate (undilated output) and drops it from
    # its config; sepconv honours it and keeps it.
    ref = tf_keras.layers.Conv3DTranspose(2, 3, dilation_rate=2)
    assert tuple(ref(np.zeros((1, 4, 4, 4, 1), np.float32)).shape) == (1, 6, 6, 6, 2)
    assert "dilation_rate" not in ref.get_config()
    ours = sepconv.Conv3DTranspose(2, 3, dilation_rate=2)
    assert ours(torch.zeros(1, 4, 4, 4, 1)).shape == (1, 8, 8, 8, 2)
    assert ours.get_config()["dilation_rate"] == (2, 2, 2)
    # A tf-keras config loads as what tf-keras computed: undilated.
    loaded = sepconv.Conv3DTranspose.from_config(ref.get_config())
    assert loaded.dilation_rate == (1, 1, 1)
    loaded.set_weights(ref.get_weights())
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 4, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).detach().numpy(), ref(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("make,argument", [
    # padding="causal" on a transposed convolution: tf-keras constructs it, fails at call.
    (lambda m: m.Conv1DTranspose(2, 3, padding="causal"), "padding"),
    # "same", even kernel, strides 2, output_padding 0: the output does not convolve back.
    (lambda m: m.Conv1DTranspose(2, 2, strides=2, padding="same", output_padding=0),
     "output_padding"),
    (lambda m: m.Conv2DTranspose(2, (3, 4), strides=2, padding="same", output_padding=0),
     "output_padding"),
])
def test_what_tf_keras_fails_at_call_is_refused_at_construction(make, argument):
    theirs = make(tf_keras.layers)
    rank = theirs.rank
    assert _tf_call_fails(theirs, (1,) + (5,) * rank + (2,))
    with pytest.raises(ValueError, match=f"`{argument}`"):
        make(sepconv)


@pytest.mark.parametrize("class_name,kwargs,argument", [
    ("Conv2D", dict(padding="causal"), "padding"),
    ("Conv3D", dict(padding="causal"), "padding"),
    ("Conv1D", dict(strides=2, dilation_rate=2), "dilation_rate"),
    ("Conv2D", dict(strides=(2, 1), dilation_rate=(1, 2)), "dilation_rate"),
    ("Conv2DTranspose", dict(strides=(1, 2), dilation_rate=(2, 1)), "dilation_rate"),
    ("Conv2D", dict(filters=3, groups=2), "groups"),
    ("Conv1DTranspose", dict(strides=2, output_padding=2), "output_padding"),
    ("Conv2DTranspose", dict(strides=(2, 1), output_padding=(1, 1)), "output_padding"),
    ("Conv2D", dict(filters=0), "filters"),
    ("Conv3D", dict(kernel_size=(2, 2)), "kernel_size"),
])
def test_tf_keras_refusals_are_refused_too(class_name, kwargs, argument):
    args = dict(dict(filters=4, kernel_size=3), **kwargs)
    with pytest.raises(ValueError):
        getattr(tf_keras.layers, class_name)(**args)
    with pytest.raises(ValueError, match=argument):
        getattr(sepconv, class_name)(**args)


def test_groups_not_dividing_the_channels_fails_in_both():
    with pytest.raises(ValueError):
        tf_keras.layers.Conv2D(4, 3, groups=2).build((None, 5, 5, 3))
    with pytest.raises(ValueError, match="groups"):
        sepconv.Conv2D(4, 3, groups=2)(torch.zeros(1, 5, 5, 3))
    with pytest.raises(ValueError, match="input_shape"):
        sepconv.Conv2D(4, 3, groups=2, input_shape=(5, 5, 3))


# -- shapes, configs, signatures ---------------------------------------------------------

@pytest.mark.parametrize("class_name", CONVS + TRANSPOSES)
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_compute_output_shape_matches_tf_keras(class_name, fmt):
    rank = RANK[class_name]
    paddings = ["valid", "same"] + (["causal"] if class_name == "Conv1D" else [])
    for pad in paddings:
        for k, s, d, op in [(1, 1, 1, None), (3, 1, 1, None), (4, 2, 1, None), (3, 3, 1, 1),
                            (3, 1, 2, None), (2, 3, 1, 2), (5, 2, 1, 1)]:
            kw = dict(kernel_size=k, strides=s, dilation_rate=d, padding=pad,
                      data_format=fmt)
            if class_name in TRANSPOSES:
                if class_name == "Conv3DTranspose" and d > 1:
                    continue  # tf-keras ignores it (tested above)
                kw["output_padding"] = op
            ours = getattr(sepconv, class_name)(6, **kw)
            ref = getattr(tf_keras.layers, class_name)(6, **kw)
            for n in [None, 1, 2, 7, 9]:
                spatial = [n] + [8] * (rank - 1)
                shape = (4, *spatial, 3) if fmt == "channels_last" else (4, 3, *spatial)
                try:
                    expected = tuple(ref.compute_output_shape(tf.TensorShape(shape)).as_list())
                except ValueError:
                    expected = None  # tf-keras: an output axis <= 0
                if expected is not None and all(v is None or v > 0 for v in expected):
                    assert ours.compute_output_shape(shape) == expected, (kw, n)
                else:
                    with pytest.raises(ValueError):
                        ours.compute_output_shape(shape)


_FULL = dict(filters=4, kernel_size=3, strides=2, padding="same", activation="relu6",
             use_bias=False, kernel_initializer=dict(class_name="RandomNormal",
                                                     config=dict(mean=0.1, stddev=0.3,
                                                                 seed=3)),
             bias_initializer="ones", kernel_regularizer="l1_l2",
             bias_regularizer=dict(class_name="L1", config=dict(l1=0.5)),
             activity_regularizer="l2", kernel_constraint="max_norm",
             bias_constraint="unit_norm", trainable=False, data_format="channels_last")


@pytest.mark.parametrize("class_name", CONVS + TRANSPOSES)
def test_get_config_has_tf_keras_keys_and_values(class_name):
    kw = dict(_FULL, name=f"cfg_{class_name.lower()}")
    if class_name in TRANSPOSES:
        kw["output_padding"] = 1
    else:
        kw["groups"] = 2
    ours = getattr(sepconv, class_name)(**kw).get_config()
    theirs = getattr(tf_keras.layers, class_name)(**kw).get_config()
    extra = {"dilation_rate"} if class_name == "Conv3DTranspose" else set()
    assert set(ours) == set(theirs) | extra
    for key in theirs:
        assert strip_config(ours[key]) == strip_config(theirs[key]), key


@pytest.mark.parametrize("class_name", CONVS + TRANSPOSES)
def test_from_tf_keras_config_and_weights(class_name):
    rank = RANK[class_name]
    kw = dict(_FULL, name=f"from_tf_{class_name.lower()}", use_bias=True,
              trainable=True, bias_constraint=None)
    if class_name in TRANSPOSES:
        kw["output_padding"] = 1
    ref = getattr(tf_keras.layers, class_name)(**kw)
    shape = (2,) + (5,) * rank + (2,)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    y_ref = ref(x)
    ours = getattr(sepconv, class_name).from_config(ref.get_config())
    ours.set_weights(ref.get_weights())
    for key, value in ref.get_config().items():
        assert strip_config(ours.get_config()[key]) == strip_config(value), key
    np.testing.assert_allclose(ours(x).detach().numpy(), y_ref.numpy(), atol=1e-5)
    np.testing.assert_allclose([v.item() for v in ours.losses],
                               [float(v) for v in ref.losses], rtol=1e-5)


@pytest.mark.parametrize("class_name", CONVS + TRANSPOSES)
def test_signature_is_tf_keras_then_r_keras_extras(class_name):
    check_signature(getattr(sepconv, class_name), getattr(tf_keras.layers, class_name),
                    getattr(sepconv, sepconv.r.r_name(class_name)), required=2)


# -- initializer fans, regularizers, constraints, dtype policies ---------------------------

@pytest.mark.parametrize("class_name,kernel_size,filters,channels", [
    ("Conv2D", (3, 3), 64, 8), ("Conv2DTranspose", (3, 3), 64, 8),
    ("Conv1DTranspose", 5, 4, 96), ("Conv3D", (2, 3, 2), 16, 12)])
def test_glorot_fans_follow_the_keras_kernel_shape(class_name, kernel_size, filters,
                                                   channels):
    """glorot_uniform draws from +-sqrt(6 / (fan_in + fan_out)) with Keras' fans of the
    Keras kernel shape: the transposed kernel (*k, filters, in) has fan_in = k * filters."""
    rank = RANK[class_name]
    shape = (None,) * (rank + 1) + (channels,)
    ours = getattr(sepconv, class_name)(filters, kernel_size, batch_input_shape=shape)
    ref = getattr(tf_keras.layers, class_name)(filters, kernel_size)
    ref.build(shape)
    w_ours, w_ref = ours.get_weights()[0], ref.get_weights()[0]
    assert w_ours.shape == w_ref.shape
    limit_ref = np.abs(w_ref).max()
    receptive = int(np.prod(w_ref.shape[:-2]))
    limit = np.sqrt(6 / (receptive * (w_ref.shape[-2] + w_ref.shape[-1])))
    assert limit_ref <= limit and np.abs(w_ours).max() <= limit
    assert np.abs(w_ours).max() > 0.95 * limit  # the bound is reached, not a smaller one
    np.testing.assert_allclose(w_ours.std(), w_ref.std(), rtol=0.1)
    np.testing.assert_allclose(w_ours.std(), limit / np.sqrt(3), rtol=0.1)


@pytest.mark.parametrize("class_name", ["Conv1D", "Conv2DTranspose"])
def test_optimizer_step_with_regularizers_and_constraints_matches_tf_keras(class_name):
    rng = np.random.default_rng(4)
    kwargs = dict(filters=3, kernel_size=2, padding="same", kernel_constraint="max_norm",
                  bias_constraint=dict(class_name="MaxNorm", config=dict(max_value=0.1)),
                  kernel_regularizer="l2", activity_regularizer="l1")
    rank = RANK[class_name]
    shape = (4,) + (5,) * rank + (2,)
    ours = getattr(sepconv, class_name)(batch_input_shape=(None,) + shape[1:], **kwargs)
    ours.set_weights([rng.standard_normal(w.shape).astype(np.float32)
                      for w in ours.get_weights()])
    ref = getattr(tf_keras.layers, class_name)(**kwargs)
    ref.build(shape)
    ref.set_weights(ours.get_weights())
    x = rng.standard_normal(shape).astype(np.float32)
    target = rng.standard_normal(ours.compute_output_shape(x.shape)).astype(np.float32)
    check_sgd_step(ours, ref, x, target)


@pytest.mark.parametrize("class_name", CONVS + TRANSPOSES)
@pytest.mark.parametrize("dtype,tol", [("mixed_float16", 1e-2), ("mixed_bfloat16", 3e-2),
                                       ("float64", 1e-12)])
def test_dtype_policies_match_tf_keras(class_name, dtype, tol):
    """Half precision: TensorFlow's CPU kernels round differently from oneDNN's (sums of up
    to 81 products differ by a few float16 ulps at |y| ~ 1), hence 1e-2."""
    rank = RANK[class_name]
    ref = getattr(tf_keras.layers, class_name)(4, 3, padding="same", dtype=dtype,
                                              activation="tanh")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2,) + (4,) * rank + (3,))  # float64
    ref.build(x.shape)
    ref.set_weights([rng.standard_normal(w.shape) * 0.3 for w in ref.get_weights()])
    y_ref = ref(x)
    ours = getattr(sepconv, class_name).from_config(ref.get_config())
    assert ours.dtype == dtype
    ours.set_weights(ref.get_weights())
    y = ours(x)
    assert str(y.dtype).replace("torch.", "") == y_ref.dtype.name
    assert str(ours.kernel.dtype).replace("torch.", "") == ref.kernel.dtype.name
    y, y_ref = y.detach().double().numpy(), tf.cast(y_ref, tf.float64).numpy()
    # where the two differ by more than tol, ours must be at least as close as TensorFlow's
    # to the float64 result on the same half-precision inputs and weights (on AVX2 CPUs
    # TensorFlow's bfloat16 Conv3DTranspose is 0.04 off it at one element, ours 0.016)
    half = getattr(torch, dtype.replace("mixed_", ""))
    config = {**ref.get_config(), "dtype": "float64"}
    exact = getattr(sepconv, class_name).from_config(config)
    exact.set_weights([torch.tensor(w).to(half).double().numpy() for w in ref.get_weights()])
    truth = exact(torch.tensor(x).to(half).double()).detach().numpy()
    far = np.abs(y - y_ref) > tol * (1 + np.abs(y_ref))
    worse = np.abs(y - truth) > np.abs(y_ref - truth) + tol / 4
    assert not (far & worse).any(), (y[far & worse], y_ref[far & worse], truth[far & worse])
    assert far.mean() < 0.01  # the rest within tol of TensorFlow's
