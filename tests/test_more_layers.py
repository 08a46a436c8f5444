"""The Keras layers sequence models' files hold beyond the core set: ``Dot``,
``GaussianDropout``, ``AlphaDropout``, ``ActivityRegularization``, ``Identity``,
``ThresholdedReLU``, ``UnitNormalization``, ``Rescaling``, ``GroupNormalization`` and
``EinsumDense``, against tf-keras 2.21 (what R keras wraps) and, where it has the layer,
Keras 3 (torch backend).

Each parity case builds the layer in both libraries, copies sepconv's randomised weights
into the reference with ``set_weights(get_weights())`` (Keras' shapes and order checked
too) and compares outputs and gradients (inputs and weights, through
``tf.GradientTape`` / torch autograd).  The random layers cannot draw TensorFlow's
numbers: their eval identity is exact, their training formulas are checked through
statistics and through the affine constants read off tf-keras' own training outputs.

Differences between tf-keras 2.21 and Keras 3.15 found here (tested below):
``Dot(normalize=True)``: tf-keras ``x * rsqrt(max(sum(x**2), 1e-12))``, Keras 3
``x / max(norm(x), 1e-7)``; ``UnitNormalization``: Keras 3 ``x / max(norm(x), 1e-12)``
(the same away from zero vectors); ``AlphaDropout``: tf-keras leaves ``noise_shape`` out
of its config, Keras 3 writes it (sepconv too); ``GroupNormalization``: Keras 3 takes no
mask and uses ``ops.moments``; ``ThresholdedReLU``: Keras 3 has none; ``EinsumDense``:
tf-keras ignores ``activity_regularizer`` (never passed to its base layer), Keras 3 applies
it; Keras 3's symbolic output shape keeps ``None`` where ``output_shape`` has one
(tf-keras takes the input's size); Keras 3 adds ``lora_rank`` etc. to its config (ignored
when read).
"""

from __future__ import annotations

import inspect
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

import sepconv  # noqa: E402
from tf_keras_compare import config_without_names as _strip  # noqa: E402
from keras_files import Cases, check, outputs  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SETTINGS = settings(max_examples=15, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
COMMON = ["input_shape", "batch_input_shape", "batch_size", "dtype", "name", "trainable",
          "weights"]
NAMES = ["Dot", "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity",
         "ThresholdedReLU", "UnitNormalization", "Rescaling", "GroupNormalization",
         "EinsumDense"]


def _keras3():
    return pytest.importorskip("keras")


def _randomise(layer, rng, scale=0.5):
    layer.set_weights([rng.standard_normal(w.shape).astype(w.dtype) * scale
                       for w in layer.get_weights()])


def _compare(ours, ref, xs, tol=1e-5, call=None, training=False):
    """Outputs and gradients of ``sum(out * r)`` w.r.t. every input and trainable weight;
    ``xs`` a list of arrays (one per input; a merge layer takes the list)."""
    rng = np.random.default_rng(11)
    merge = len(xs) > 1
    xts = [torch.tensor(x, requires_grad=True) for x in xs]
    y = ours(xts if merge else xts[0])
    r = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    (y * torch.from_numpy(r)).sum().backward()
    xvs = [tf.Variable(x) for x in xs]
    with tf.GradientTape() as tape:
        yr = (call or ref)(xvs if merge else xvs[0], training=training)
        loss = tf.reduce_sum(yr * r)
    tvars = list(ref.trainable_weights)
    grads = tape.gradient(loss, xvs + tvars)
    np.testing.assert_allclose(y.detach().numpy(), yr.numpy(), atol=tol, rtol=tol)
    for xt, g in zip(xts, grads[:len(xs)]):
        np.testing.assert_allclose(xt.grad.numpy(), np.asarray(g), atol=tol * 10, rtol=1e-4)
    params = [p for p in ours.weights if p.requires_grad]
    assert len(params) == len(tvars)
    for p, g in zip(params, grads[len(xs):]):
        np.testing.assert_allclose(p.grad.numpy(), np.asarray(g), atol=tol * 10, rtol=1e-4)


def _parity(name, kwargs, shapes, rng, tol=1e-5, mask=None):
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours = getattr(sepconv, name)(**kwargs).eval()
    ours(xs if len(xs) > 1 else xs[0])
    if ours.get_weights():
        _randomise(ours, rng)
    ref = getattr(tf_keras.layers, name)(**kwargs)
    ref(xs if len(xs) > 1 else xs[0])
    ref.set_weights(ours.get_weights())
    _compare(ours, ref, xs, tol)
    expected = ref.compute_output_shape(shapes if len(shapes) > 1 else shapes[0])
    assert ours.compute_output_shape(shapes if len(shapes) > 1 else shapes[0]) == \
        tuple(tf.TensorShape(expected).as_list())
    return ours, ref


# -- signatures, configs, masking flags -------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_signature_is_tf_keras_then_common_and_r_function_exists(name):
    theirs = [p for p in inspect.signature(getattr(tf_keras.layers, name)).parameters.values()
              if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    ours = list(inspect.signature(getattr(sepconv, name)).parameters.values())
    assert [(p.name, p.default) for p in ours[:len(theirs)]] == \
        [(p.name, p.default) for p in theirs]
    assert [p.name for p in ours[len(theirs):]] == COMMON
    assert all(p.default is None for p in ours[len(theirs):])
    assert hasattr(sepconv, sepconv.r.r_name(name))


CONFIG_CASES = [
    ("Dot", dict(axes=[1, -1], normalize=True)),
    ("Dot", dict(axes=2)),
    ("GaussianDropout", dict(rate=0.3, seed=4)),
    ("AlphaDropout", dict(rate=0.2, noise_shape=(None, 1, 3), seed=1)),
    ("ActivityRegularization", dict(l1=0.01, l2=0.2)),
    ("Identity", dict()),
    ("ThresholdedReLU", dict(theta=0.3)),
    ("UnitNormalization", dict(axis=[1, 2])),
    ("Rescaling", dict(scale=1 / 255, offset=-1.0)),
    ("Rescaling", dict(scale=[0.5, 2.0], offset=[1.0, 0.0])),
    ("GroupNormalization", dict(groups=4, axis=1, epsilon=1e-5, center=False,
                                gamma_regularizer="l2", beta_constraint="non_neg")),
    ("EinsumDense", dict(equation="abc,cde->abde", output_shape=[None, 2, 3],
                         bias_axes="de", activation="relu", kernel_initializer="he_normal",
                         kernel_regularizer="l1", activity_regularizer="l2")),
    ("EinsumDense", dict(equation="...b,bc->...c", output_shape=4)),
]


@pytest.mark.parametrize("name,kwargs", CONFIG_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CONFIG_CASES)])
def test_config_matches_tf_keras_and_round_trips(name, kwargs):
    theirs = dict(getattr(tf_keras.layers, name)(**kwargs).get_config())
    layer = getattr(sepconv, name)(**kwargs)
    ours = layer.get_config()
    expected = set(theirs)
    if name == "AlphaDropout":  # tf-keras drops noise_shape from its config; Keras 3 and
        expected.add("noise_shape")  # sepconv keep it
        assert tuple(ours["noise_shape"]) == (None, 1, 3)
    assert set(ours) == expected
    for key in theirs:
        if key != "name":
            assert _strip(ours[key]) == _strip(theirs[key]), key
    again = getattr(sepconv, name).from_config(dict(theirs, name=f"{ours['name']}_tf"))
    assert _strip({k: v for k, v in again.get_config().items() if k in theirs}) == \
        _strip(theirs)
    assert _strip(type(layer).from_config(dict(ours, name=ours["name"] + "_rt")).get_config()) \
        == _strip(ours)


@pytest.mark.parametrize("name,kwargs", [(n, k) for n, k in CONFIG_CASES
                                         if n not in ("EinsumDense", "UnitNormalization")]
                         + [("EinsumDense", CONFIG_CASES[-1][1])])
def test_supports_masking_as_tf_keras(name, kwargs):
    assert getattr(sepconv, name)(**kwargs).supports_masking is \
        bool(getattr(tf_keras.layers, name)(**kwargs).supports_masking)
    assert sepconv.UnitNormalization().supports_masking


def test_masks_pass_through_or_stop_as_in_tf_keras():
    mask = torch.tensor([[True, False, True]])
    x = torch.randn(1, 3, 4)
    assert sepconv.Dot(axes=2).compute_mask([x, x], [mask, mask]) is None
    for layer in (sepconv.ThresholdedReLU(), sepconv.AlphaDropout(0.1),
                  sepconv.UnitNormalization(), sepconv.ActivityRegularization(0.1)):
        assert torch.equal(layer.compute_mask(x, mask), mask)
    with pytest.raises(TypeError, match="does not support masking"):
        sepconv.Rescaling(2.0).compute_mask(x, mask)
    # in a model: Masking -> Identity drops the mask (tf-keras: Identity has no masking)
    model = sepconv.Sequential(sepconv.Masking(), sepconv.Identity(),
                               sepconv.LSTM(2, return_sequences=True))
    assert model(x).shape == (1, 3, 2)


# -- forward and gradients against tf-keras ------------------------------------------

FORWARD_CASES = [
    ("ThresholdedReLU", dict(), [(4, 5)]),
    ("ThresholdedReLU", dict(theta=0.3), [(2, 3, 4)]),
    ("ThresholdedReLU", dict(theta=0.0), [(4, 5)]),
    ("UnitNormalization", dict(), [(3, 5)]),
    ("UnitNormalization", dict(axis=1), [(2, 3, 4)]),
    ("UnitNormalization", dict(axis=[1, 2]), [(2, 3, 4)]),
    ("Rescaling", dict(scale=0.5, offset=1.5), [(3, 4)]),
    ("Rescaling", dict(scale=[1.0, 2.0, 3.0], offset=[0.1, 0.2, 0.3]), [(2, 4, 3)]),
    ("Identity", dict(), [(3, 4)]),
    ("ActivityRegularization", dict(l1=0.1, l2=0.01), [(3, 4)]),
    ("GaussianDropout", dict(rate=0.4), [(3, 4)]),
    ("AlphaDropout", dict(rate=0.4), [(3, 4)]),
    ("Dot", dict(axes=1), [(3, 4), (3, 4)]),
    ("Dot", dict(axes=(1, 2), normalize=True), [(2, 4, 3), (2, 5, 4)]),
    ("Dot", dict(axes=[2, 3]), [(2, 3, 4, 5), (2, 2, 6, 4)]),
    ("Dot", dict(axes=[-3, 1]), [(2, 3, 4, 5), (2, 3, 2)]),
    ("Dot", dict(axes=-1), [(2, 3), (2, 4, 3)]),
]


@pytest.mark.parametrize("name,kwargs,shapes", FORWARD_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(FORWARD_CASES)])
def test_forward_and_gradients_match_tf_keras(name, kwargs, shapes):
    """Inference outputs and gradients (the random layers are the identity there)."""
    _parity(name, kwargs, shapes, np.random.default_rng(len(kwargs) + 5 * len(shapes)))


@st.composite
def dot_cases(draw):
    rank1, rank2 = draw(st.integers(2, 4)), draw(st.integers(2, 4))
    batch, n = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    a1, a2 = draw(st.integers(1, rank1 - 1)), draw(st.integers(1, rank2 - 1))
    s1 = [batch] + [draw(st.integers(1, 3)) for _ in range(rank1 - 1)]
    s2 = [batch] + [draw(st.integers(1, 3)) for _ in range(rank2 - 1)]
    s1[a1], s2[a2] = n, n
    if rank1 == rank2 and a1 == a2 and draw(st.booleans()):
        axes = a1 - rank1 if draw(st.booleans()) else a1  # an int, maybe negative
    else:
        axes = [a1 - rank1 if draw(st.booleans()) else a1,
                a2 - rank2 if draw(st.booleans()) else a2]
    return dict(axes=axes, normalize=draw(st.booleans())), [tuple(s1), tuple(s2)]


@settings(SETTINGS, max_examples=30)
@given(dot_cases())
def test_dot_matches_tf_keras_batch_dot(case):
    """Every rank pair 2..4, axes as an int or a list, negative axes, normalize."""
    kwargs, shapes = case
    _parity("Dot", kwargs, shapes, np.random.default_rng(3))


@st.composite
def group_norm_cases(draw):
    rank = draw(st.integers(2, 4))
    groups = draw(st.sampled_from([1, 2, 3, -1]))
    per = draw(st.integers(1, 3))
    channels = (groups if groups > 0 else draw(st.integers(1, 4))) * per
    axis = draw(st.integers(1, rank - 1))
    shape = [draw(st.integers(1, 3))] + [draw(st.integers(1, 4)) for _ in range(rank - 1)]
    shape[axis] = channels
    if draw(st.booleans()):
        axis -= rank
    return dict(groups=groups, axis=axis, epsilon=draw(st.sampled_from([1e-3, 1e-5])),
                center=draw(st.booleans()), scale=draw(st.booleans())), tuple(shape)


@SETTINGS
@given(group_norm_cases())
def test_group_normalization_matches_tf_keras(case):
    kwargs, shape = case
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    ours = sepconv.GroupNormalization(**kwargs)
    ours(x)
    _randomise(ours, rng)
    ref = tf_keras.layers.GroupNormalization(**kwargs)
    ref(x)
    assert ours.get_config()["groups"] == ref.get_config()["groups"]  # -1 resolved
    ref.set_weights(ours.get_weights())
    _compare(ours, ref, [x], tol=2e-5)


def test_group_normalization_mask_weights_the_moments_as_tf_keras():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)[..., None]  # (2, 5, 1)
    ours = sepconv.GroupNormalization(groups=2)
    ours(x)
    _randomise(ours, rng)
    ref = tf_keras.layers.GroupNormalization(groups=2)
    ref(x)
    ref.set_weights(ours.get_weights())
    got = ours(torch.from_numpy(x), mask=torch.from_numpy(mask)).detach().numpy()
    want = ref(x, mask=tf.constant(mask)).numpy()
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert np.abs(got - ours(x).detach().numpy()).max() > 1e-3  # the mask mattered
    # a (batch, time) mask does not broadcast to (batch, time, channels) from the right:
    # tf-keras fails there too (so Masking -> GroupNormalization fails in both)
    with pytest.raises(ValueError, match=r"mask of shape \(2, 5\) does not broadcast"):
        ours(x, mask=torch.from_numpy(mask[..., 0]))
    with pytest.raises(Exception):
        ref(x, mask=tf.constant(mask[..., 0]))


EINSUM_CASES = [
    ("ab,bc->ac", 4, "c", (3, 5)),
    ("ab,bc->ac", [4], None, (3, 5)),
    ("abc,cd->abd", [None, 4], "d", (2, 3, 5)),
    ("abc,cde->abde", [None, 2, 3], "de", (2, 3, 5)),
    ("abc,cde->abde", [None, 2, 3], "e", (2, 3, 5)),
    ("abcd,cde->abe", [None, 4], "e", (2, 3, 2, 5)),
    ("abc,bcd->ad", 4, "d", (2, 3, 5)),
    ("abc,dc->abd", [3, 4], "bd", (2, 3, 5)),
    ("...b,bc->...c", 4, "c", (2, 3, 5)),
    ("...b,bc->...c", [4], None, (2, 3, 2, 5)),
    ("...cd,dce->...e", 3, "e", (2, 3, 2, 5)),
    ("ab...,bc->ac...", [4], "c", (2, 5, 3)),
    ("ab...,bc->ac...", [4], "c", (2, 5, 3, 2)),
    ("abc,cd->abd", [3, 4], None, (2, 3, 5)),
]


@pytest.mark.parametrize("equation,output_shape,bias_axes,shape", EINSUM_CASES,
                         ids=[f"{i}-{c[0]}" for i, c in enumerate(EINSUM_CASES)])
def test_einsum_dense_matches_tf_keras(equation, output_shape, bias_axes, shape):
    """Weight shapes from tf-keras' _analyze_einsum_string (left-elided, right-elided,
    full forms; bias on some output letters), outputs and gradients."""
    kwargs = dict(equation=equation, output_shape=output_shape, bias_axes=bias_axes,
                  activation="tanh")
    ours, ref = _parity("EinsumDense", kwargs, [shape], np.random.default_rng(1))
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in ref.weights]
    assert [n for n in ours._weight_order] == \
        [w.name.split("/")[-1].split(":")[0] for w in ref.weights]


def test_einsum_dense_equation_errors_as_tf_keras():
    for kwargs, shape in [(dict(equation="ab,bc->acd", output_shape=[3, 4]), (2, 5)),
                          (dict(equation="ab,bcx->ac", output_shape=3), (2, 5)),
                          (dict(equation="ab,bc->ac", output_shape=3, bias_axes="x"),
                           (2, 5)),
                          (dict(equation="abc,cd->abd", output_shape=[4, 3]), (2, 3, 5))]:
        with pytest.raises(ValueError) as theirs:
            tf_keras.layers.EinsumDense(**kwargs).build(shape)
        with pytest.raises(ValueError) as ours:
            sepconv.EinsumDense(**kwargs).build(shape)
        assert str(ours.value)[:40] == str(theirs.value)[:40]


def test_activity_penalties_equal_tf_keras_losses():
    """tf-keras divides ActivityRegularization's penalty by the batch size; its
    EinsumDense drops ``activity_regularizer`` (no penalty), and sepconv's follows."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    for ours, ref in [(sepconv.ActivityRegularization(l1=0.1, l2=0.3),
                       tf_keras.layers.ActivityRegularization(l1=0.1, l2=0.3)),
                      (sepconv.EinsumDense("abc,cd->abd", [None, 2],
                                           activity_regularizer="l1_l2",
                                           kernel_regularizer="l2"),
                       tf_keras.layers.EinsumDense("abc,cd->abd", [None, 2],
                                                   activity_regularizer="l1_l2",
                                                   kernel_regularizer="l2"))]:
        out = ours(x)
        ref(x)
        ref.set_weights(ours.get_weights())
        ref_out = ref(x)
        np.testing.assert_allclose(out.detach().numpy(), ref_out.numpy(), atol=1e-5)
        want = [float(v) for v in ref.losses]
        assert len(ours.losses) == len(want) == 1
        np.testing.assert_allclose(float(ours.losses[0]), want[0], rtol=1e-5)
        np.testing.assert_allclose(float(sepconv.regularization_loss(ours)), want[0],
                                   rtol=1e-5)


def test_rescaling_casts_inputs_and_rounds_scale_as_tf_keras():
    x = np.arange(12, dtype=np.uint8).reshape(2, 6)
    for kwargs in [dict(scale=1 / 255), dict(scale=0.1, offset=-0.3, dtype="float64")]:
        got = sepconv.Rescaling(**kwargs)(x)
        want = tf_keras.layers.Rescaling(**kwargs)(x).numpy()
        assert str(got.dtype).replace("torch.", "") == want.dtype.name
        np.testing.assert_array_equal(got.numpy(), want)  # bit for bit


def test_identity_and_thresholded_relu_dtypes_as_tf_keras():
    x64 = np.array([[0.1, 0.10000000149, 2.0]])
    got = sepconv.ThresholdedReLU(0.1, dtype="float64")(x64).numpy()
    np.testing.assert_array_equal(
        got, tf_keras.layers.ThresholdedReLU(0.1, dtype="float64")(x64).numpy())
    assert sepconv.Identity()(x64).dtype == torch.float32
    ints = np.array([[1, 2]], np.int32)
    assert sepconv.Identity()(ints).dtype == torch.int32
    pair = sepconv.Identity()([torch.ones(1, 2), torch.zeros(1, 3)])
    assert isinstance(pair, list) and [t.shape[1] for t in pair] == [2, 3]


# -- the random layers in training ---------------------------------------------------

def _affine_from_training(y, x, dropped_mask):
    """(a, b, dropped value) of ``y = a * x + b`` on kept elements, constant elsewhere."""
    kept = ~dropped_mask
    a, b = np.polyfit(x[kept], y[kept], 1)
    return a, b, y[dropped_mask]


def test_alpha_dropout_constants_and_statistics_are_tf_keras():
    rate = 0.3
    x = np.linspace(-3, 3, 4000, dtype=np.float32).reshape(40, 100)
    ref = tf_keras.layers.AlphaDropout(rate, seed=1)
    yr = ref(x, training=True).numpy()
    alpha_p = -sepconv.functional.SELU_ALPHA * sepconv.functional.SELU_SCALE
    layer = sepconv.AlphaDropout(rate, seed=1).train()
    y = layer(x).detach().numpy()
    a = ((1 - rate) * (1 + rate * alpha_p ** 2)) ** -0.5
    b = -a * alpha_p * rate
    for out in (yr, y):  # the dropped value is a * alpha_p + b in both
        dropped = np.isclose(out, a * alpha_p + b, atol=1e-6)
        assert 0.25 < dropped.mean() < 0.35
        fa, fb, values = _affine_from_training(out, x, dropped)
        np.testing.assert_allclose([fa, fb], [a, b], rtol=1e-5, atol=1e-6)
    # standard-normal input keeps mean 0 and variance 1 (the layer's purpose)
    torch.manual_seed(0)
    z = torch.randn(400, 1000)
    out = sepconv.AlphaDropout(rate).train()(z)
    assert abs(float(out.mean())) < 0.01 and abs(float(out.var()) - 1) < 0.01
    # noise_shape: one draw per (sample, feature), shared along the steps
    out = sepconv.AlphaDropout(0.5, noise_shape=(None, 1, 7), seed=3).train()(
        torch.zeros(5, 4, 7))
    assert torch.equal(out, out[:, :1].expand_as(out))
    # eval: the identity, exactly; seeded layers repeat their draws
    assert torch.equal(sepconv.AlphaDropout(rate).eval()(z), z)
    draws = [sepconv.AlphaDropout(rate, seed=5).train()(z) for _ in range(2)]
    assert torch.equal(draws[0], draws[1])


def test_gaussian_dropout_statistics_are_tf_keras():
    rate = 0.2
    x = np.ones((500, 400), np.float32)
    yr = tf_keras.layers.GaussianDropout(rate, seed=2)(x, training=True).numpy()
    y = sepconv.GaussianDropout(rate, seed=2).train()(x).detach().numpy()
    std = np.sqrt(rate / (1 - rate))
    for out in (yr, y):
        assert abs(out.mean() - 1) < 0.01 and abs(out.std() - std) < 0.01
    z = torch.randn(3, 4)
    assert torch.equal(sepconv.GaussianDropout(rate).eval()(z), z)
    assert torch.equal(sepconv.GaussianDropout(1.0).train()(z), z)  # rate 1: identity too


# -- errors -------------------------------------------------------------------------

BAD = [
    ("Dot", dict(axes=0), ValueError, "axes"),
    ("Dot", dict(axes=[1, 2, 3]), ValueError, r"axes=\[1, 2, 3\]"),
    ("Dot", dict(axes="1"), TypeError, "axes='1'"),
    ("Dot", dict(axes=[1, 1.5]), ValueError, "axes"),
    ("Dot", dict(axes=1, normalize="yes"), TypeError, "normalize"),
    ("GaussianDropout", dict(rate=1.5), ValueError, "rate=1.5"),
    ("AlphaDropout", dict(rate=-0.1), ValueError, "rate=-0.1"),
    ("AlphaDropout", dict(rate=0.1, noise_shape=3), TypeError, "noise_shape=3"),
    ("ActivityRegularization", dict(l1=-1.0), ValueError, "l1"),
    ("ActivityRegularization", dict(l2="x"), TypeError, "l2='x'"),
    ("ThresholdedReLU", dict(theta=-0.5), ValueError, "theta=-0.5"),
    ("ThresholdedReLU", dict(theta=None), ValueError, "theta=None"),
    ("UnitNormalization", dict(axis="x"), TypeError, "axis='x'"),
    ("Rescaling", dict(scale="big"), TypeError, "scale='big'"),
    ("Rescaling", dict(scale=1.0, offset=[]), ValueError, r"offset=\[\]"),
    ("GroupNormalization", dict(groups=0), ValueError, "groups=0"),
    ("GroupNormalization", dict(groups=2.5), ValueError, "groups=2.5"),
    ("GroupNormalization", dict(axis=[1, 2]), TypeError, "axis"),
    ("GroupNormalization", dict(epsilon=-1.0), ValueError, "epsilon"),
    ("EinsumDense", dict(equation="ab*bc", output_shape=2), ValueError, "equation='ab\\*bc'"),
    ("EinsumDense", dict(equation="ab,bc->ac", output_shape=0), ValueError, "output_shape"),
    ("EinsumDense", dict(equation="ab,bc->ac", output_shape=2, bias_axes=1), TypeError,
     "bias_axes=1"),
]


@pytest.mark.parametrize("name,kwargs,error,match", BAD,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_arguments_name_the_argument_and_value(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        getattr(sepconv, name)(**kwargs)


def test_bad_inputs_raise_value_errors_naming_shapes():
    with pytest.raises(ValueError, match=r"axis values 3 \(at axis 1\) != 4"):
        sepconv.Dot(axes=1)([torch.ones(2, 3), torch.ones(2, 4)])
    with pytest.raises(ValueError, match="exactly 2 inputs"):
        sepconv.Dot(axes=1)([torch.ones(2, 3)] * 3)
    with pytest.raises(ValueError, match=r"axis 3 of an input of shape \(2, 3\)"):
        sepconv.Dot(axes=3)([torch.ones(2, 3), torch.ones(2, 3, 4, 5)])
    with pytest.raises(ValueError, match=r"must be a multiple of the number of channels"):
        sepconv.GroupNormalization(groups=2)(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"cannot be more than the number of channels"):
        sepconv.GroupNormalization(groups=4)(torch.ones(2, 3))
    layer = sepconv.GroupNormalization(groups=2)
    layer(torch.ones(2, 5, 4))
    with pytest.raises(ValueError, match=r"Received input of shape \(2, 5, 6\)"):
        layer(torch.ones(2, 5, 6))
    dense = sepconv.EinsumDense("abc,cd->abd", [None, 3])
    dense(torch.ones(2, 4, 5))
    with pytest.raises(ValueError, match=r"kernel of shape \(5, 3\)"):
        dense(torch.ones(2, 4, 6))
    with pytest.raises(ValueError, match="input of rank 3"):
        sepconv.UnitNormalization(axis=3)(torch.ones(2, 3, 4))


# -- R functions -----------------------------------------------------------------------

def test_r_functions_follow_r_keras():
    x = np.random.default_rng(0).standard_normal((2, 3, 4))  # R arrays are float64
    y = np.random.default_rng(1).standard_normal((2, 5, 4))
    out = sepconv.layer_dot(list((x, y)), axes=2.0)  # R doubles for integers
    np.testing.assert_allclose(out.numpy(), np.einsum("bik,bjk->bij", x, y), atol=1e-5)
    assert isinstance(sepconv.layer_dot(axes=c(1, 1)), sepconv.Dot)
    with pytest.raises(ValueError, match="Argument `axes` is required"):
        sepconv.layer_dot(list((x, y)))
    model = torch.nn.Sequential()
    assert sepconv.layer_group_normalization(model, groups=2.0, input_shape=c(3.0, 4.0)) \
        is model
    assert model[0].groups == 2 and model[0].built
    sepconv.layer_einsum_dense(model, "abc,cd->abd", output_shape=list((None, 6.0)),
                               bias_axes="d")
    sepconv.layer_activation_thresholded_relu(model, theta=0.5)
    sepconv.layer_unit_normalization(model, axis=-1.0)
    sepconv.layer_rescaling(model, scale=2.0, offset=1.0)
    sepconv.layer_activity_regularization(model, l1=0.01)
    sepconv.layer_gaussian_dropout(model, rate=0.1, seed=1.0)
    sepconv.layer_alpha_dropout(model, rate=0.1, seed=2.0)
    sepconv.layer_identity(model)
    assert model.eval()(torch.ones(2, 3, 4)).shape == (2, 3, 6)
    assert isinstance(sepconv.layer_thresholded_re_lu(theta=0.5), sepconv.ThresholdedReLU)
    with pytest.raises(ValueError, match="groups=2.5"):
        sepconv.layer_group_normalization(groups=2.5)
    with pytest.raises(ValueError, match="Argument `equation` is required"):
        sepconv.layer_einsum_dense(output_shape=3)


def c(*values):
    """R's ``c()``: numbers arrive as doubles."""
    return [float(v) for v in values]


# -- Keras 3 ---------------------------------------------------------------------------

def _keras3_parity(name, kwargs, shapes, tol=1e-5):
    keras = _keras3()
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours = getattr(sepconv, name)(**kwargs).eval()
    ours(xs if len(xs) > 1 else xs[0])
    if ours.get_weights():
        _randomise(ours, rng)
    ref = getattr(keras.layers, name)(**kwargs)
    arg = [torch.from_numpy(x) for x in xs]
    ref(arg if len(arg) > 1 else arg[0])
    ref.set_weights(ours.get_weights())
    got = ours(xs if len(xs) > 1 else xs[0]).detach().numpy()
    want = keras.ops.convert_to_numpy(ref(arg if len(arg) > 1 else arg[0]))
    np.testing.assert_allclose(got, want, atol=tol, rtol=tol)
    theirs = ref.get_config()
    again = getattr(sepconv, name).from_config(theirs).eval()  # Keras 3's config
    again(xs if len(xs) > 1 else xs[0])
    if ours.get_weights():
        again.set_weights(ours.get_weights())
    np.testing.assert_allclose(again(xs if len(xs) > 1 else xs[0]).detach().numpy(), got,
                               atol=tol)
    return ours, ref


KERAS3_CASES = [
    ("Dot", dict(axes=[2, 1]), [(2, 3, 4), (2, 4, 5)]),
    ("Dot", dict(axes=-1, normalize=True), [(2, 3, 4), (2, 5, 4)]),
    ("UnitNormalization", dict(axis=[1, 2]), [(2, 3, 4)]),
    ("Rescaling", dict(scale=0.5, offset=[1.0, 2.0]), [(3, 2)]),
    ("Identity", dict(), [(2, 3)]),
    ("GroupNormalization", dict(groups=2, axis=1), [(2, 4, 3)]),
    ("GroupNormalization", dict(groups=-1), [(2, 3, 4)]),
    ("EinsumDense", dict(equation="abc,cde->abde", output_shape=[None, 2, 3],
                         bias_axes="e"), [(2, 3, 4)]),
    ("EinsumDense", dict(equation="...b,bc->...c", output_shape=4, bias_axes="c"),
     [(2, 3, 5)]),
    ("AlphaDropout", dict(rate=0.2, noise_shape=(None, 1, 3)), [(2, 4, 3)]),
    ("GaussianDropout", dict(rate=0.2), [(2, 4, 3)]),
]


@pytest.mark.parametrize("name,kwargs,shapes", KERAS3_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(KERAS3_CASES)])
def test_keras3_outputs_and_configs(name, kwargs, shapes):
    """Keras 3 (torch backend) in inference; its configs load into sepconv."""
    _keras3_parity(name, kwargs, shapes, tol=2e-5)


def test_keras3_normalize_epsilons_differ_from_tf_keras_near_zero():
    """Dot(normalize=True): tf-keras floors the squared norm at 1e-12 (a norm of 1e-6),
    Keras 3 the norm at 1e-7; sepconv follows tf-keras (R keras 2)."""
    keras = _keras3()
    x = np.full((1, 4), 1e-8, np.float32)
    y = np.ones((1, 4), np.float32)
    ours = sepconv.Dot(axes=1, normalize=True)([x, y]).numpy()
    tf_ref = tf_keras.layers.Dot(axes=1, normalize=True)([x, y]).numpy()
    k3 = keras.ops.convert_to_numpy(keras.layers.Dot(axes=1, normalize=True)(
        [torch.from_numpy(x), torch.from_numpy(y)]))
    np.testing.assert_allclose(ours, tf_ref, rtol=1e-5)
    assert not np.allclose(k3, tf_ref, rtol=1e-2)


def test_keras3_activity_regularization_also_divides_by_batch():
    keras = _keras3()
    x = torch.ones(4, 3)
    ref = keras.layers.ActivityRegularization(l1=0.1, l2=0.2)
    ref(x)
    ours = sepconv.ActivityRegularization(l1=0.1, l2=0.2)
    ours(x)
    np.testing.assert_allclose(float(ours.losses[0]),
                               float(keras.ops.convert_to_numpy(ref.losses[0])), rtol=1e-6)


# -- model files -----------------------------------------------------------------------

def luong_seq2seq(K, keras3):
    """A small encoder-decoder with hand-written Luong attention (Dot, Softmax, Dot),
    then the other layers around it."""
    L = K.layers
    enc_in = K.Input((6, 4), name="source")
    dec_in = K.Input((5, 4), name="target")
    enc = L.Dense(8, activation="tanh", name="enc")(enc_in)
    enc = L.GroupNormalization(groups=2, name="gn")(enc)
    # (an explicit 5, not None: Keras 3's symbolic EinsumDense output keeps None there,
    # which the Dense at the end cannot be built on)
    dec = L.EinsumDense("abc,cd->abd", output_shape=[5, 8], bias_axes="d",
                        name="dec")(dec_in)
    scores = L.Dot(axes=[2, 2], name="scores")([dec, enc])
    weights = L.Softmax(name="attn")(scores)
    context = L.Dot(axes=[2, 1], name="context")([weights, enc])
    cos = L.Dot(axes=-1, normalize=True, name="cos")([dec, context])
    h = L.Concatenate(name="cat")([context, dec, cos])
    h = L.UnitNormalization(name="unit")(h)
    h = L.Rescaling(2.0, offset=-0.5, name="rescale")(h)
    h = L.AlphaDropout(0.2, name="alpha_drop")(h)
    h = L.GaussianDropout(0.2, name="gauss_drop")(h)
    h = L.ActivityRegularization(l1=0.01, name="act_reg")(h)
    h = L.Identity(name="ident")(h)
    if not keras3:  # Keras 3 has no ThresholdedReLU
        h = L.ThresholdedReLU(0.1, name="thr")(h)
    out = L.Dense(3, name="out")(h)
    return K.Model([enc_in, dec_in], out, name="luong_seq2seq")


FORMATS = [("tf_keras", ".h5"), ("tf_keras", ".keras"), ("keras3", ".keras")]


@pytest.fixture(scope="module")
def file_results(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("more_layer_files"))
    cases = Cases(root)
    models = {}
    for writer, ext in FORMATS:
        K = tf_keras if writer == "tf_keras" else _keras3()
        K.utils.set_random_seed(3)
        model = luong_seq2seq(K, writer == "keras3")
        rng = np.random.default_rng(5)
        for layer in model.layers:
            if layer.get_weights():
                layer.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                                   for w in layer.get_weights()])
        x = [rng.standard_normal((2,) + tuple(t.shape)[1:]).astype(np.float32)
             for t in model.inputs]
        y = outputs(model.predict(x, verbose=0))
        path = os.path.join(root, f"luong-{writer}{ext}")
        model.save(path)
        cases.add(f"{writer}{ext}", "model", path, x, y)
        models[f"{writer}{ext}"] = model
    return cases.run(timeout=300), models


@pytest.mark.parametrize("fmt", [w + e for w, e in FORMATS])
def test_model_files_with_these_layers_load_without_tensorflow(file_results, fmt):
    results, models = file_results
    r = results[fmt]
    check(r)
    assert r["names"] == [layer.name for layer in models[fmt].layers]
