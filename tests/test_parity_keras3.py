"""Parity with Keras 3.15 on its torch backend (conftest sets ``KERAS_BACKEND=torch``).

Keras 3 computes on torch tensors, so besides outputs the gradients of the input and of
every weight are compared, both taken by torch autograd through the two implementations.
Keras 3 has no ``padding="causal"`` for this layer (checked below; tf-keras covers it).
Initializers are compared by the statistics of large draws for both Keras kernel shapes,
which checks the fans.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

keras = pytest.importorskip("keras")
from keras.src.activations import ALL_OBJECTS_DICT as K3_ACTIVATION_NAMES  # noqa: E402
if keras.backend.backend() != "torch":  # pragma: no cover - conftest sets it
    pytest.skip("Keras 3 must run on the torch backend", allow_module_level=True)

import sepconv  # noqa: E402
from sepconv import activations, initializers  # noqa: E402
from kernel_env import kernel_choice  # noqa: E402

pytestmark = [pytest.mark.usefixtures("torch_single_thread"),
              # Keras 3.15's torch backend calls np.array(tensor) with numpy 2's copy=...
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

ATOL = 1e-5
SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

# hard_sigmoid follows tf-keras (what R keras wraps): Keras 3's formula differs on purpose.
K3_ACTIVATIONS = [n for n in activations.registry.known()
                  if n in K3_ACTIVATION_NAMES and n != "hard_sigmoid"]


def _keras_layer(layer: sepconv.SeparableConv1D, **overrides):
    """Keras 3's layer with sepconv ``layer``'s arguments and weights."""
    kwargs = dict(filters=layer.filters, kernel_size=layer.kernel_size, strides=layer.strides,
                  padding=layer.padding, data_format=layer.data_format,
                  dilation_rate=layer.dilation_rate, depth_multiplier=layer.depth_multiplier,
                  use_bias=layer.use_bias,
                  activation=activations.serialize(layer.activation))
    kwargs.update(overrides)
    ref = keras.layers.SeparableConv1D(**kwargs)
    shape = ((None, None, layer.input_channels) if layer.data_format == "channels_last"
             else (None, layer.input_channels, None))
    ref.build(shape)
    ref.set_weights(layer.get_weights())
    return ref


def _grads(module_call, x, weights, r):
    x = x.clone().requires_grad_(True)
    y = module_call(x)
    loss = (y * r).sum()
    grads = torch.autograd.grad(loss, [x] + list(weights))
    return y.detach(), [g.detach().numpy() for g in grads]


@st.composite
def layer_args(draw):
    kernel_size = draw(st.integers(1, 5))
    strides = draw(st.integers(1, 3))
    dilation = 1 if strides > 1 else draw(st.integers(1, 3))
    pad = draw(st.sampled_from(["valid", "same"]))
    span = (kernel_size - 1) * dilation + 1
    min_len = span if pad == "valid" else 1
    args = dict(filters=draw(st.integers(1, 5)), kernel_size=kernel_size, strides=strides,
                padding=pad, dilation_rate=dilation, depth_multiplier=draw(st.integers(1, 3)),
                use_bias=draw(st.booleans()),
                activation=draw(st.sampled_from(K3_ACTIVATIONS)),
                data_format=draw(st.sampled_from(["channels_last", "channels_first"])))
    if args["activation"] == "glu" and args["data_format"] == "channels_last":
        args["filters"] = 2 * args["filters"]  # glu halves the last axis
    shape = dict(batch=draw(st.integers(1, 3)),
                 steps=draw(st.one_of(st.just(min_len), st.integers(min_len, min_len + 9))),
                 channels=draw(st.integers(1, 4)), seed=draw(st.integers(0, 2**31 - 1)),
                 kernel=draw(st.sampled_from(["", "reference"])))
    if args["activation"] == "glu" and args["data_format"] == "channels_first":
        # glu halves the last axis, here the steps: keep it even.
        args.update(padding="same", strides=1)
        shape["steps"] += shape["steps"] % 2
    return args, shape


@SETTINGS
@given(layer_args())
def test_forward_and_gradients_match_keras3(case):
    args, shape = case
    rng = np.random.default_rng(shape["seed"])
    c = shape["channels"]
    layer = sepconv.SeparableConv1D(input_shape=(None, c) if args["data_format"] ==
                                    "channels_last" else (c, None), **args)
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5
                       for w in layer.get_weights()])
    ref = _keras_layer(layer)
    x_shape = ((shape["batch"], shape["steps"], c) if layer.data_format == "channels_last"
               else (shape["batch"], c, shape["steps"]))
    x = torch.from_numpy(rng.standard_normal(x_shape).astype(np.float32))
    ref_y = ref(x)
    r = torch.from_numpy(rng.standard_normal(tuple(ref_y.shape)).astype(np.float32))

    with kernel_choice(shape["kernel"]):  # default dispatch or the reference kernel
        y, grads = _grads(layer, x, layer.weights, r)
    ref_y, ref_grads = _grads(ref, x, [v.value for v in ref.trainable_weights], r)
    assert tuple(y.shape) == tuple(ref_y.shape)
    np.testing.assert_allclose(y.numpy(), ref_y.numpy(), atol=ATOL, rtol=1e-5)
    assert len(grads) == len(ref_grads)
    for got, want in zip(grads, ref_grads):
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(set(K3_ACTIVATION_NAMES)
                                        - {"threshold"}))
def test_every_keras3_activation_name_is_known(name):
    """Every Keras 3 activation name works (threshold has required arguments, so Keras
    cannot call it by name either); values equal Keras 3's except hard_sigmoid
    (tf-keras' formula, see test_parity_tfkeras.py)."""
    x = torch.linspace(-4, 4, 32).reshape(2, 16)
    ours = activations.get(name)(x)
    theirs = keras.activations.get(name)(x)
    if name == "hard_sigmoid":
        assert not torch.allclose(ours, theirs)
        return
    if name == "sparsemax":
        # Keras 3.15's sparsemax (every backend) sums the cumulative sums over the support
        # to get the threshold, so its rows do not sum to 1 once the support has two or
        # more elements.  sepconv keeps the definition: compare with a bisection for tau.
        assert not np.allclose(np.asarray(theirs).sum(-1), 1)
        np.testing.assert_allclose(ours.numpy(), _sparsemax_bisection(x.numpy()), atol=1e-5)
        np.testing.assert_allclose(ours.sum(-1).numpy(), 1, atol=1e-5)
        return
    np.testing.assert_allclose(ours.numpy(), np.asarray(theirs), atol=1e-6, rtol=1e-6)


def _sparsemax_bisection(x: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the simplex: tau with sum(max(x - tau, 0)) = 1."""
    x = x.astype(np.float64)
    lo, hi = x.min(-1, keepdims=True) - 1, x.max(-1, keepdims=True)
    for _ in range(100):
        mid = (lo + hi) / 2
        too_big = np.maximum(x - mid, 0).sum(-1, keepdims=True) > 1
        lo, hi = np.where(too_big, mid, lo), np.where(too_big, hi, mid)
    return np.maximum(x - (lo + hi) / 2, 0)


def test_keras3_has_no_causal_for_this_layer():
    with pytest.raises(ValueError):
        keras.layers.SeparableConv1D(2, 3, padding="causal")
    sepconv.SeparableConv1D(2, 3, padding="causal")  # sepconv follows tf-keras


def test_too_short_input_is_a_value_error_as_in_keras3():
    ref = keras.layers.SeparableConv1D(2, 5)
    with pytest.raises(ValueError):
        ref(np.zeros((1, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(1, 4, 3\)"):
        sepconv.SeparableConv1D(2, 5)(torch.zeros(1, 4, 3))


@pytest.mark.parametrize("pad", ["valid", "same"])
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_compute_output_shape_matches_keras3(pad, fmt):
    for k, s, d in [(1, 1, 1), (3, 1, 1), (4, 2, 1), (5, 3, 1), (3, 1, 2)]:
        ours = sepconv.SeparableConv1D(6, k, strides=s, dilation_rate=d, padding=pad,
                                       data_format=fmt)
        ref = keras.layers.SeparableConv1D(6, k, strides=s, dilation_rate=d, padding=pad,
                                           data_format=fmt)
        span = (k - 1) * d + 1
        for steps in [None, span, span + 1, span + 6]:
            shape = (4, steps, 3) if fmt == "channels_last" else (4, 3, steps)
            assert ours.compute_output_shape(shape) == tuple(ref.compute_output_shape(shape))


def test_from_keras3_config_builds_the_same_layer():
    ref = keras.layers.SeparableConv1D(
        4, 3, strides=2, padding="same", depth_multiplier=2, activation="gelu",
        depthwise_initializer=keras.initializers.HeNormal(seed=1),
        pointwise_regularizer=keras.regularizers.L1L2(0.1, 0.2),
        depthwise_constraint=keras.constraints.MaxNorm(1.5), dtype="float64",
        name="k3_cfg_layer")
    ref.build((None, None, 3))
    ours = sepconv.SeparableConv1D.from_config(ref.get_config())
    assert ours.name == "k3_cfg_layer" and ours.dtype == "float64"
    assert isinstance(ours.depthwise_initializer, initializers.HeNormal)
    assert (ours.pointwise_regularizer.l1, ours.pointwise_regularizer.l2) == \
        pytest.approx((0.1, 0.2))
    assert ours.depthwise_constraint.max_value == 1.5
    ours.set_weights(ref.get_weights())
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    np.testing.assert_allclose(ours(x).detach().numpy(), np.asarray(ref(x).detach()),
                               atol=1e-12)


# -- initializers -----------------------------------------------------------------------

DEPTHWISE = (7, 256, 4)      # (kernel_size, channels, depth_multiplier)
POINTWISE = (1, 1024, 128)   # (1, channels * depth_multiplier, filters)

_BOUNDED = {"random_uniform", "uniform", "glorot_uniform", "he_uniform", "lecun_uniform",
            "truncated_normal", "glorot_normal", "he_normal", "lecun_normal",
            "variance_scaling"}
_RANDOM = _BOUNDED | {"random_normal", "normal"}


_TRUNCATED = {"truncated_normal", "glorot_normal", "he_normal", "lecun_normal",
              "variance_scaling"}


def _keras3_initializer(name):
    if name == "constant":  # Keras 3.15 cannot build Constant from its bare name
        return keras.initializers.Constant()
    return keras.initializers.get(name)


@pytest.mark.parametrize("shape", [DEPTHWISE, POINTWISE], ids=["depthwise", "pointwise"])
@pytest.mark.parametrize("name", sorted(n for n in initializers.registry.known()
                                        if n not in ("identity", "orthogonal")))
def test_initializer_statistics_match_keras3(name, shape):
    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    ours = initializers.get(name)(shape, dtype=torch.float32).numpy()
    theirs = np.asarray(_keras3_initializer(name)(shape, dtype="float32"))
    assert ours.shape == theirs.shape == shape
    assert ours.dtype == np.float32
    if name not in _RANDOM:
        np.testing.assert_array_equal(ours, theirs)
        return
    n = ours.size
    std = theirs.std()
    assert abs(ours.mean() - theirs.mean()) < 8 * std / np.sqrt(n)
    assert ours.std() == pytest.approx(std, rel=0.05)
    for q, tol in [(0.01, 0.3), (0.1, 0.15), (0.5, 0.1), (0.9, 0.15), (0.99, 0.3)]:
        assert abs(np.quantile(ours, q) - np.quantile(theirs, q)) < tol * std, q
    # The bounds of bounded draws.  Keras 3's torch truncated_normal keeps an out-of-range
    # value when 4 tries all miss (about 4e-6 of the draws), so the truncation point is
    # taken from its standard deviation: 2 sigma, sigma = std / 0.8796 (a unit normal
    # truncated at +-2 has standard deviation 0.8796).
    if name in _TRUNCATED:
        bound = 2 * std / 0.87962566
    elif name in _BOUNDED:
        bound = np.abs(theirs).max()
    else:
        return
    assert np.abs(ours).max() <= bound * 1.02
    assert np.abs(ours).max() >= bound * 0.97


@pytest.mark.parametrize("shape", [DEPTHWISE, POINTWISE, (1, 64, 256)],
                         ids=["depthwise", "pointwise", "wide"])
def test_orthogonal_is_orthonormal_like_keras3(shape):
    ours = initializers.get("orthogonal")(shape).numpy().astype(np.float64)
    theirs = np.asarray(keras.initializers.get("orthogonal")(shape)).astype(np.float64)
    rows, cols = int(np.prod(shape[:-1])), shape[-1]
    for w in (ours, theirs):
        flat = w.reshape(rows, cols)
        gram = flat.T @ flat if rows >= cols else flat @ flat.T
        np.testing.assert_allclose(gram, np.eye(min(rows, cols)), atol=1e-5)
    gain = initializers.Orthogonal(gain=2.0)(shape).numpy().reshape(rows, cols)
    gram = gain.T @ gain if rows >= cols else gain @ gain.T
    np.testing.assert_allclose(gram, 4 * np.eye(min(rows, cols)), atol=1e-4)


@pytest.mark.parametrize("shape", [DEPTHWISE, POINTWISE])
def test_identity_rejects_3d_shapes_as_keras3(shape):
    with pytest.raises(ValueError):
        keras.initializers.get("identity")(shape)
    with pytest.raises(ValueError, match="2D"):
        initializers.get("identity")(shape)
    np.testing.assert_array_equal(initializers.get("identity")((3, 5)).numpy(),
                                  np.asarray(keras.initializers.get("identity")((3, 5))))
    # In a layer the error surfaces at build, naming the weight.
    with pytest.raises(ValueError):
        sepconv.SeparableConv1D(2, 3, depthwise_initializer="identity", input_shape=(None, 4))


def test_keras3_initializer_configs_with_fan_axes():
    """Keras 3's VarianceScaling configs carry input_axes/output_axes; they set the fans."""
    cfg = keras.initializers.serialize(
        keras.initializers.VarianceScaling(scale=2.0, mode="fan_in", distribution="uniform",
                                           input_axes=[0], output_axes=[2]))
    ours = initializers.get(cfg)
    keras.utils.set_random_seed(1)
    theirs = np.asarray(keras.initializers.get(cfg)(DEPTHWISE))
    got = ours(DEPTHWISE).numpy()
    # fan_in = kernel_size = 7: limit sqrt(3 * 2 / 7).
    assert got.max() == pytest.approx(np.sqrt(6 / 7), rel=0.01)
    assert got.max() == pytest.approx(theirs.max(), rel=0.01)
    plain = keras.initializers.serialize(keras.initializers.GlorotUniform(seed=4))
    assert initializers.get(plain).get_config() == {"seed": 4}
